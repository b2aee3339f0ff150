package opensbx

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// ParseSignal parses a POSIX signal given as a number ("9", "15") or a name
// with or without the SIG prefix, in any case ("TERM", "SIGTERM", "kill").
// Numbers are Linux signal numbers 1-64 (real-time signals included). It
// fails with ErrInvalid otherwise.
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(t); err == nil {
		if n < 1 || n > maxSignal {
			return 0, sbxerr.Invalid("signal %q: number must be 1-%d", s, maxSignal)
		}
		return syscall.Signal(n), nil
	}
	t = strings.TrimPrefix(t, "SIG")
	if n, ok := signalNumber(t); ok && t != "" {
		return syscall.Signal(n), nil
	}
	return 0, sbxerr.Invalid("signal %q is not a known signal name or number", s)
}

// maxSignal is the highest Linux signal number (SIGRTMAX).
const maxSignal = 64

// signalNumber returns the Linux signal number of a name without "SIG"
// (the sandbox's kernel's numbers, whatever the Manager is built for).
func signalNumber(name string) (int, bool) {
	const names = "HUP=1 INT=2 QUIT=3 ILL=4 TRAP=5 ABRT=6 IOT=6 BUS=7 FPE=8 KILL=9 USR1=10 SEGV=11 USR2=12 " +
		"PIPE=13 ALRM=14 TERM=15 STKFLT=16 CHLD=17 CONT=18 STOP=19 TSTP=20 TTIN=21 TTOU=22 URG=23 XCPU=24 " +
		"XFSZ=25 VTALRM=26 PROF=27 WINCH=28 IO=29 POLL=29 PWR=30 SYS=31"
	for _, f := range strings.Fields(names) {
		k, v, _ := strings.Cut(f, "=")
		if k == name {
			n, _ := strconv.Atoi(v)
			return n, true
		}
	}
	return 0, false
}

// Linux signal numbers used by kill.
const (
	sigKill = syscall.Signal(9)
	sigCont = syscall.Signal(18)
	sigStop = syscall.Signal(19)
	sigTSTP = syscall.Signal(20)
	sigTTIN = syscall.Signal(21)
	sigTTOU = syscall.Signal(22)
)

// KillCommand sends sig to the command's process tree: the process Exec
// started and every process descended from it, and nothing else; other
// commands, even identical ones, are not touched. The tree is held still
// with SIGSTOP while it is collected, so no child escapes by forking, and
// resumed after the signal; a shell that does not forward SIGTERM to its
// child still sees the child end. With the sandbox's agent (the default)
// the agent does this inside the sandbox's PID namespace, for the
// command's session and every descendant, wherever the Manager runs and
// whatever the image holds. Without it (WithAgent(false)), processes are
// identified by host PID and start time, so a reused PID is never
// signalled, which needs the Manager on the Docker engine's host (it reads
// /proc); as a non-root user it signals from inside the sandbox with the
// image's kill program instead, and when it cannot see the host's
// processes at all it signals from inside the sandbox every process whose
// environment carries the command's OPENSBX_COMMAND_ID, which needs sh, tr,
// grep and kill in the image and misses processes that cleared their
// environment.
//
// It waits up to a second for the command to end and returns its record,
// which is in state killed once the command has ended with an exit code
// of 128 or more.
//
// It fails with ErrInvalid for a signal outside 1-64, ErrConflict when the
// command has ended, ErrNotFound for an unknown sandbox or command, and
// ErrUnsupported (without the agent) when the Manager cannot see the
// engine host's processes and the image lacks the tools to signal from
// inside the sandbox.
func (m *Manager) KillCommand(ctx context.Context, sandboxID, cmdID string, sig syscall.Signal) (*Command, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if sig < 1 || sig > maxSignal {
		return nil, fmt.Errorf("kill command: %w", sbxerr.Invalid("signal %d: must be 1-%d", int(sig), maxSignal))
	}
	e, err := m.cmds.lookup(ctx, sandboxID, cmdID)
	if err != nil {
		return nil, fmt.Errorf("kill command: %w", err)
	}
	if err := m.cmds.kill(ctx, e, sig); err != nil {
		return nil, fmt.Errorf("kill command %s: %w", cmdID, err)
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-e.done:
	case <-t.C:
	case <-ctx.Done():
	}
	return m.cmds.snapshot(e), nil
}

// errEnded is returned by kill for a command that has ended.
var errEnded = sbxerr.Conflict("the command has ended")

func (r *commandRegistry) kill(ctx context.Context, e *cmdEntry, sig syscall.Signal) error {
	select {
	case <-e.done:
		return errEnded
	default:
	}
	r.mu.Lock()
	prev := e.killSent
	e.killSent = true
	r.mu.Unlock()
	var err error
	if e.agent {
		err = r.signalAgent(ctx, e, int(sig))
	} else {
		err = r.signalTree(ctx, e, sig)
	}
	if err != nil {
		r.mu.Lock()
		e.killSent = prev
		r.mu.Unlock()
	}
	return err
}
