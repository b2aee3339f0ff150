//go:build linux

package opensbx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// readProc reads the identity of process pid from /proc.
func readProc(pid int) (proc, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return proc{}, err
	}
	ppid, _, start, err := parseStat(string(b))
	if err != nil {
		return proc{}, err
	}
	p := proc{pid: pid, ppid: ppid, start: start}
	if s, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
		p.nspid = parseNSpid(string(s))
	}
	return p, nil
}

// procState returns the state letter of pid ('T' stopped, 'Z' zombie), or
// 0 when it is gone or not p any more.
func procState(p proc) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/stat")
	if err != nil {
		return 0
	}
	_, state, start, err := parseStat(string(b))
	if err != nil || start != p.start {
		return 0
	}
	return state
}

// procInContainer reports whether pid runs in the container with the given
// full id: its cgroup path names the container (cgroupfs "/docker/<id>",
// systemd "docker-<id>.scope", v1 and v2 alike).
func procInContainer(pid int, containerID string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	return err == nil && containerID != "" && strings.Contains(string(b), containerID)
}

// children returns the child PIDs of pid, from every thread's children
// file, or by scanning /proc when the kernel has no children files.
func children(pid int) []int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	if len(tasks) == 0 {
		return scanChildren(pid)
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func scanChildren(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := readProc(n); err == nil && p.ppid == pid {
			out = append(out, n)
		}
	}
	return out
}

// childProcs returns the current children of p, each identified.
func childProcs(p proc) []proc {
	var out []proc
	for _, c := range children(p.pid) {
		cp, err := readProc(c)
		if err != nil || cp.ppid != p.pid || cp.start < p.start {
			continue // gone, or not p's child any more
		}
		out = append(out, cp)
	}
	return out
}

// collectTree lists root and its descendants top-down without stopping
// them (for signalling from inside the sandbox).
func collectTree(root proc) ([]proc, error) {
	tree := []proc{root}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, childProcs(tree[i])...)
	}
	return tree, nil
}

// held is a process opened for signalling: through a pidfd when the kernel
// has them, so the handle cannot reach a process that reused the PID.
type held struct {
	p  proc
	os *os.Process
}

// hold opens p and checks, after opening, that the PID is still p.
func hold(p proc) (*held, bool) {
	h, err := os.FindProcess(p.pid)
	if err != nil {
		return nil, false
	}
	cur, err := readProc(p.pid)
	if err != nil || cur.start != p.start || cur.ppid != p.ppid {
		h.Release()
		return nil, false
	}
	return &held{p: p, os: h}, true
}

// hostSignalTree stops root's tree top-down, signals it deepest first and
// resumes it. It returns syscall.EPERM when this process may not signal
// root, and errEnded when root has ended.
func hostSignalTree(root proc, sig syscall.Signal) error {
	r, ok := hold(root)
	if !ok {
		return errEnded
	}
	tree := []*held{r}
	defer func() {
		for _, h := range tree {
			h.os.Release()
		}
	}()
	freeze := sig != sigCont
	for i := 0; i < len(tree); i++ {
		h := tree[i]
		if freeze {
			if err := h.os.Signal(sigStop); err != nil {
				if i == 0 && errors.Is(err, syscall.EPERM) {
					return syscall.EPERM
				}
				if i == 0 {
					return errEnded
				}
				continue
			}
			waitStopped(h.p)
		}
		for _, c := range childProcs(h.p) {
			if ch, ok := hold(c); ok {
				tree = append(tree, ch)
			}
		}
	}
	var first error
	for i := len(tree) - 1; i >= 0; i-- {
		if err := tree[i].os.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) && first == nil && i == 0 {
			first = err
		}
	}
	if freeze && !isStopSignal(sig) && sig != sigKill {
		for _, h := range tree {
			_ = h.os.Signal(sigCont)
		}
	}
	if first != nil {
		if errors.Is(first, syscall.EPERM) {
			return syscall.EPERM
		}
		return fmt.Errorf("signal pid %d: %w", root.pid, first)
	}
	return nil
}

// waitStopped waits briefly until p has stopped (SIGSTOP is asynchronous),
// so that it cannot fork after its children were read.
func waitStopped(p proc) {
	for i := 0; i < 200; i++ {
		switch procState(p) {
		case 'T', 't', 'Z', 'X', 0:
			return
		}
		time.Sleep(250 * time.Microsecond)
	}
}
