//go:build linux

package server

import (
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Sandbox is what OpHalt and OpUnhalt act on: the sandbox the agent runs
// in as its main process (opensbx-agent serve). A Server without one (an
// in-process server, tests) refuses both: ending "every other process"
// outside a sandbox's PID namespace would end the host's.
type Sandbox interface {
	// Halt ends every process of the sandbox but the agent's own: SIGTERM,
	// then SIGKILL for what is left after grace. It returns how many
	// processes got each.
	Halt(grace time.Duration) (signalled, killed int, err error)
	// Unhalt starts the main command again.
	Unhalt() error
}

// Supervisor runs the sandbox's main command and is the Sandbox of the
// agent's Server: Halt ends the sandbox's processes, the main command
// among them, without the agent exiting; Unhalt runs the main command anew.
type Supervisor struct {
	argv []string
	user string
	cfg  Config
	proc procFS

	mu     sync.Mutex
	main   *Main // the running main command; nil without one or halted
	halted bool
	exit   chan int
}

// NewSupervisor returns the supervisor of main command argv (none if
// empty), run as user, resolved as StartMain does.
func NewSupervisor(argv []string, user string, cfg Config) *Supervisor {
	cfg.defaults()
	return &Supervisor{argv: argv, user: user, cfg: cfg, proc: procFS(cfg.ProcDir), exit: make(chan int, 1)}
}

// Start starts the main command, if there is one. It fails with a
// *StartError.
func (s *Supervisor) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}

func (s *Supervisor) startLocked() error {
	if len(s.argv) == 0 {
		return nil
	}
	m, err := StartMain(s.argv, s.user, s.cfg)
	if err != nil {
		return err
	}
	s.main = m
	go func() {
		<-m.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.main == m {
			s.main = nil
			if !s.halted {
				s.exit <- m.ExitCode()
			}
		}
	}()
	return nil
}

// Exit delivers the main command's exit status when it ends by itself
// (not by Halt): the agent then exits with it, as the sandbox's main
// process.
func (s *Supervisor) Exit() <-chan int { return s.exit }

// Signal forwards sig to the main command and reports whether it runs.
func (s *Supervisor) Signal(sig os.Signal) bool {
	s.mu.Lock()
	m := s.main
	s.mu.Unlock()
	if m == nil {
		return false
	}
	_ = m.Signal(sig)
	return true
}

// Halt implements Sandbox.
func (s *Supervisor) Halt(grace time.Duration) (signalled, killed int, err error) {
	s.mu.Lock()
	s.halted = true // from now on the main command's end is not an exit
	s.mu.Unlock()
	return s.proc.endOthers(grace)
}

// Unhalt implements Sandbox. Unhalting a sandbox that is not halted does
// nothing.
func (s *Supervisor) Unhalt() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.halted {
		return nil
	}
	if s.main != nil { // its end not seen yet: Halt ended it
		<-s.main.Done()
		s.main = nil
	}
	if err := s.startLocked(); err != nil {
		return err
	}
	s.halted = false
	return nil
}

// member is a process Halt ends, opened so that a reused PID is never
// signalled.
type member struct {
	st procStat
	p  *os.Process
}

// others opens every live process of the PID namespace but PID 1 (the
// engine's init or the Pod's infrastructure process), the agent itself and
// other runs of its program (the Manager's relays and probes).
func (p procFS) others() ([]member, error) {
	all, err := p.all()
	if err != nil {
		return nil, err
	}
	self, _ := os.Stat(string(p) + "/self/exe")
	var out []member
	for _, st := range all {
		if st.pid == 1 || st.pid == os.Getpid() || st.state == 'Z' || st.state == 'X' || st.state == 'x' {
			continue
		}
		if self != nil {
			if exe, err := os.Stat(string(p) + "/" + strconv.Itoa(st.pid) + "/exe"); err == nil && os.SameFile(self, exe) {
				continue
			}
		}
		proc, err := os.FindProcess(st.pid)
		if err != nil {
			continue
		}
		if again, err := p.stat(st.pid); err != nil || again.start != st.start {
			proc.Release() // gone or reused meanwhile
			continue
		}
		out = append(out, member{st: st, p: proc})
	}
	return out, nil
}

// gone reports whether m has ended (or is a zombie).
func (p procFS) gone(m member) bool {
	st, err := p.stat(m.st.pid)
	return err != nil || st.start != m.st.start || st.state == 'Z' || st.state == 'X' || st.state == 'x'
}

// Bounds of endOthers' SIGKILL rounds and of its waits.
const (
	maxKillRounds = 64
	killWait      = 5 * time.Second
	pollEvery     = 10 * time.Millisecond
)

// endOthers sends SIGTERM to every process others finds, waits up to grace
// for them to end, then stops (SIGSTOP, so that none forks meanwhile) and
// kills (SIGKILL) what is left, scanning again until nothing is, and waits
// for those to end.
func (p procFS) endOthers(grace time.Duration) (signalled, killed int, err error) {
	ms, err := p.others()
	if err != nil {
		return 0, 0, err
	}
	for _, m := range ms {
		if m.p.Signal(syscall.SIGTERM) == nil {
			signalled++
		}
	}
	deadline := time.Now().Add(grace)
	for _, m := range ms {
		for !p.gone(m) && time.Now().Before(deadline) {
			time.Sleep(pollEvery)
		}
		m.p.Release()
	}
	var last []member
	for range maxKillRounds {
		ms, err := p.others()
		if err != nil {
			return signalled, killed, err
		}
		if len(ms) == 0 {
			break
		}
		for _, m := range ms {
			_ = m.p.Signal(syscall.SIGSTOP)
		}
		for _, m := range ms {
			if m.p.Signal(syscall.SIGKILL) == nil {
				killed++
			}
		}
		for _, m := range last {
			m.p.Release()
		}
		last = ms
		time.Sleep(pollEvery)
	}
	deadline = time.Now().Add(killWait)
	for _, m := range last {
		for !p.gone(m) && time.Now().Before(deadline) {
			time.Sleep(pollEvery)
		}
		m.p.Release()
	}
	if rest, err := p.others(); err == nil && len(rest) > 0 {
		for _, m := range rest {
			m.p.Release()
		}
		return signalled, killed, errors.New(strconv.Itoa(len(rest)) + " processes did not end")
	}
	return signalled, killed, nil
}
