//go:build !linux

package main

import (
	"errors"
	"syscall"
)

// childAttr is nil off Linux: the server shares this command's process
// group (a Ctrl-C reaches both) and outlives a killed command.
func childAttr() *syscall.SysProcAttr { return nil }

// readProc needs /proc: memory is sampled on Linux only.
func readProc(int) (procSample, error) {
	return procSample{}, errors.New("memory samples need Linux /proc")
}
