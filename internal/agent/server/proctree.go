//go:build linux

package server

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// How a signal reaches exactly one command's process tree.
//
// Every command starts in a session of its own (Setsid), so its processes
// share a session id equal to the command's PID, and that PID cannot be
// reused while any process of the session lives. The tree is the processes
// of that session (started no earlier than the command) plus every
// descendant of them by parent PID, which catches a child that started a
// session of its own. The walk reads /proc inside the sandbox's PID
// namespace:
//
//  1. Each process found is opened (a pidfd, through os.FindProcess), its
//     start time checked again after opening (so a reused PID is never
//     hit), and stopped with SIGSTOP; the walk repeats until a scan finds
//     nothing new, so a process cannot escape by forking meanwhile.
//  2. The signal goes to every process, deepest (last found) first.
//  3. SIGCONT resumes them, except after a stop signal or SIGKILL. A
//     shell that does not forward SIGTERM to its child still sees that
//     child end.
//
// SIGCONT itself is sent without the freeze.

// procStat is what the tree walk needs from /proc/PID/stat.
type procStat struct {
	pid, ppid, pgrp, sid int
	state                byte
	start                uint64 // clock ticks after boot
}

// parseProcStat parses the text of /proc/PID/stat. The command name (field
// 2) may contain spaces and parentheses, so fields are counted after its
// last ')'.
func parseProcStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed stat of pid %d", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), f[1] ppid, f[2] pgrp, f[3] session, f[19] starttime.
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("malformed stat of pid %d", pid)
	}
	st := procStat{pid: pid, state: f[0][0]}
	var err error
	for _, x := range []struct {
		dst *int
		src []byte
	}{{&st.ppid, f[1]}, {&st.pgrp, f[2]}, {&st.sid, f[3]}} {
		if *x.dst, err = strconv.Atoi(string(x.src)); err != nil {
			return procStat{}, fmt.Errorf("malformed stat of pid %d: %v", pid, err)
		}
	}
	if st.start, err = strconv.ParseUint(string(f[19]), 10, 64); err != nil {
		return procStat{}, fmt.Errorf("malformed stat of pid %d: %v", pid, err)
	}
	return st, nil
}

// procFS reads processes from a proc file system.
type procFS string

func (p procFS) stat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(string(p), strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(pid, b)
}

// all returns every process it can read.
func (p procFS) all() ([]procStat, error) {
	ents, err := os.ReadDir(string(p))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	out := make([]procStat, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if st, err := p.stat(pid); err == nil {
			out = append(out, st)
		}
	}
	return out, nil
}

// stopped reports states in which a process cannot fork any more.
func stopped(state byte) bool {
	switch state {
	case 'T', 't', 'Z', 'X', 'x':
		return true
	}
	return false
}

// isStopSignal reports signals after which the tree must stay stopped.
func isStopSignal(sig syscall.Signal) bool {
	return sig == syscall.SIGSTOP || sig == syscall.SIGTSTP || sig == syscall.SIGTTIN || sig == syscall.SIGTTOU
}

// treeMember is one process of a tree, opened for signalling.
type treeMember struct {
	st procStat
	p  *os.Process
}

// maxTreeRounds bounds the scans of one signalTree.
const maxTreeRounds = 64

// signalTree delivers sig to the tree of the command whose session leader
// was pid, started at start (clock ticks). It returns how many processes
// it signalled. self is never signalled, nor PID 1.
func (p procFS) signalTree(pid int, start uint64, sig syscall.Signal) (int, error) {
	self := os.Getpid()
	freeze := sig != syscall.SIGCONT
	held := map[int]*treeMember{}
	var order []*treeMember
	defer func() {
		for _, m := range order {
			m.p.Release()
		}
	}()
	add := func(st procStat) bool {
		if st.pid == self || st.pid == 1 || held[st.pid] != nil {
			return false
		}
		h, err := os.FindProcess(st.pid)
		if err != nil {
			return false
		}
		cur, err := p.stat(st.pid)
		if err != nil || cur.start != st.start || cur.state == 'Z' {
			h.Release() // gone, reused or a zombie
			return false
		}
		if freeze {
			if err := h.Signal(syscall.SIGSTOP); err != nil {
				h.Release()
				return false
			}
		}
		m := &treeMember{st: cur, p: h}
		held[st.pid] = m
		order = append(order, m)
		return true
	}
	for round := 0; round < maxTreeRounds; round++ {
		procs, err := p.all()
		if err != nil {
			return 0, err
		}
		slices.SortFunc(procs, func(a, b procStat) int { return cmp.Compare(a.start, b.start) })
		children := map[int][]procStat{}
		var queue []procStat
		for _, st := range procs {
			children[st.ppid] = append(children[st.ppid], st)
			if st.sid == pid && st.start >= start {
				queue = append(queue, st)
			}
		}
		for q := range held {
			queue = append(queue, procStat{pid: q, start: held[q].st.start})
		}
		var fresh []*treeMember
		seen := map[int]bool{}
		for i := 0; i < len(queue); i++ { // breadth first: parents before children
			st := queue[i]
			if seen[st.pid] {
				continue
			}
			seen[st.pid] = true
			if held[st.pid] == nil {
				if !add(st) {
					continue
				}
				fresh = append(fresh, held[st.pid])
			}
			for _, c := range children[st.pid] {
				if c.start >= st.start {
					queue = append(queue, c)
				}
			}
		}
		if len(fresh) == 0 {
			break
		}
		if freeze {
			p.waitStopped(fresh)
		}
	}
	for i := len(order) - 1; i >= 0; i-- { // deepest first
		_ = order[i].p.Signal(sig)
	}
	if freeze && !isStopSignal(sig) && sig != syscall.SIGKILL {
		for _, m := range order {
			_ = m.p.Signal(syscall.SIGCONT)
		}
	}
	return len(order), nil
}

// waitStopped waits briefly until every member has stopped (SIGSTOP is
// asynchronous), so that none forks after the next scan.
func (p procFS) waitStopped(ms []*treeMember) {
	deadline := time.Now().Add(100 * time.Millisecond)
	for _, m := range ms {
		for {
			st, err := p.stat(m.st.pid)
			if err != nil || st.start != m.st.start || stopped(st.state) || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
}
