package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// childAttr puts the server in a process group of its own, so that a
// Ctrl-C in the terminal reaches only this command (which deletes its
// sandboxes before it stops the server), and has the kernel send it
// SIGTERM if this command dies without stopping it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// readProc samples process pid from /proc: resident and peak memory,
// threads, open files.
func readProc(pid int) (procSample, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, err
	}
	s, err := parseStatus(b)
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.FDs = len(fds)
	}
	return s, nil
}

// parseStatus reads VmRSS, VmHWM (kB) and Threads from a /proc/<pid>/status.
func parseStatus(b []byte) (procSample, error) {
	var s procSample
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		f := bytes.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			continue
		}
		switch string(k) {
		case "VmRSS":
			s.RSS, seen = n<<10, seen|1
		case "VmHWM":
			s.Peak = n << 10
		case "Threads":
			s.Threads = int(n)
		}
	}
	if seen&1 == 0 {
		return s, fmt.Errorf("no VmRSS line")
	}
	return s, nil
}
