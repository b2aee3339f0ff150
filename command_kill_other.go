//go:build !linux

package opensbx

import (
	"syscall"
)

func readProc(pid int) (proc, error)                   { return proc{}, errNoHostProcs }
func procInContainer(pid int, containerID string) bool { return false }
func collectTree(root proc) ([]proc, error)            { return nil, errNoHostProcs }
func hostSignalTree(root proc, sig syscall.Signal) error {
	return errNoHostProcs
}
