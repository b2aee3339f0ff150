package opensbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/outbuf"
	"github.com/opensbx/opensbx/internal/poll"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

func (m *Manager) exec(ctx context.Context, sandboxID string, opts ExecOptions) (*cmdEntry, error) {
	env, err := opts.validate()
	if err != nil {
		return nil, err
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return nil, err
	}
	if st := stateOf(c.State); st != StateRunning {
		return nil, sbxerr.Conflict("sandbox %s is %s", shortID(c.ID), st)
	}
	release, err := m.cmds.reserveCommand(c.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	attachStdin := opts.Stdin != nil || opts.OpenStdin
	id := newCommandID()
	env = append(env, commandIDEnv+"="+id)
	started := time.Now()
	x, err := m.engine.Exec(ctx, c.ID, engine.ExecSpec{
		User:       opts.User,
		Stdin:      attachStdin,
		Env:        env,
		WorkingDir: opts.Cwd,
		Cmd:        append([]string{opts.Command}, opts.Args...),
	})
	if err != nil {
		return nil, fmt.Errorf("exec in sandbox %s: %w", shortID(c.ID), err)
	}
	e := &cmdEntry{
		cmd: Command{
			ID:        id,
			Name:      opts.Command,
			Args:      append([]string(nil), opts.Args...),
			Cwd:       opts.Cwd,
			SandboxID: c.ID,
			State:     CommandRunning,
			StartedAt: started,
		},
		out:    outbuf.New(m.cfg.outputLimit),
		done:   make(chan struct{}),
		execID: x.ID(),
		live:   true,
	}
	if attachStdin {
		e.stdin = &stdinPipe{x: x, open: true}
	}
	m.cmds.mu.Lock()
	m.cmds.addLocked(e)
	m.cmds.mu.Unlock()
	m.cmds.save(e)
	if !m.goBackground(func(bctx context.Context) { m.cmds.pump(bctx, e, x, opts) }) {
		x.Close()
		m.cmds.finish(e, CommandFailed, nil, "the manager closed while the command started")
		return nil, ErrClosed
	}
	return e, nil
}

// pump copies the command's output into its buffer until the stream ends,
// then waits for the exit code and records the end.
func (r *commandRegistry) pump(ctx context.Context, e *cmdEntry, x engine.Exec, opts ExecOptions) {
	stop := context.AfterFunc(ctx, func() { x.Close() })
	if opts.Stdin != nil {
		r.m.goBackground(func(context.Context) { e.stdin.copyFrom(opts.Stdin, !opts.OpenStdin) })
	}
	copyErr := x.Output(e.out.Writer(outbuf.Stdout), e.out.Writer(outbuf.Stderr))
	stop()
	if ctx.Err() != nil {
		x.Close()
		r.finish(e, CommandFailed, nil, "the manager closed while the command was running; it may still run in the sandbox")
		return
	}
	if copyErr != nil {
		r.m.log.Debug("exec output stream ended with an error", "command", e.cmd.ID, "err", copyErr)
	}
	code, msg := r.waitExit(ctx, e)
	if e.stdin != nil {
		e.stdin.shutdown()
	}
	x.Close()
	switch {
	case msg != "":
		r.finish(e, CommandFailed, code, msg)
	case code != nil && *code == 126:
		c, why := startFailure(e.out.Snapshot())
		if why != "" {
			code = &c
		}
		r.finish(e, CommandFinished, code, why)
	default:
		r.finish(e, CommandFinished, code, "")
	}
}

// startFailure recognises the output of a program that could not be
// started: the engine (Docker 20.10 with runc) reports exit code 126 for
// every such failure and writes the runtime's message to the output. It
// returns the message and the exit code a shell would give: 127 when the
// program was not found, 126 otherwise (not executable, bad working
// directory or user).
func startFailure(s outbuf.Snapshot) (int, string) {
	msg := strings.TrimSpace(string(s.Stdout) + string(s.Stderr))
	if !(strings.HasPrefix(msg, "OCI runtime exec failed: ") || strings.HasPrefix(msg, "unable to find user ")) ||
		strings.Contains(msg, "\n") || s.StdoutTotal+s.StderrTotal > 4096 {
		return 126, ""
	}
	if strings.Contains(msg, "executable file not found") ||
		(strings.Contains(msg, "exec: \"") && strings.Contains(msg, "no such file or directory")) {
		return 127, msg
	}
	return 126, msg
}

// waitExit polls the exec until the engine reports it ended and returns its
// exit code, or an explanation when the command's end cannot be observed:
// the sandbox stopped or went away, or the Manager closed.
func (r *commandRegistry) waitExit(ctx context.Context, e *cmdEntry) (*int, string) {
	const closed = "the manager closed while the command was running; it may still run in the sandbox"
	var code *int
	why := ""
	checkSandbox := time.Now().Add(time.Second)
	err := poll.Until(ctx, poll.Backoff{Min: 500 * time.Microsecond, Max: 50 * time.Millisecond}, func() (bool, error) {
		st, err := r.m.engine.ExecInspect(ctx, e.execID)
		if err != nil {
			return false, err
		}
		if !st.Running {
			c := st.ExitCode
			code = &c
			return true, nil
		}
		if time.Now().After(checkSandbox) {
			checkSandbox = time.Now().Add(time.Second)
			c, err := r.m.engine.Inspect(ctx, e.cmd.SandboxID)
			switch {
			case errors.Is(err, ErrNotFound):
				why = "the sandbox was removed while the command was running"
				return true, nil
			case err == nil && !c.State.Running:
				why = "the sandbox stopped while the command was running"
				return true, nil
			}
		}
		return false, nil
	})
	switch {
	case ctx.Err() != nil:
		return nil, closed
	case errors.Is(err, ErrNotFound):
		return nil, "the sandbox was removed while the command was running"
	case err != nil:
		return nil, fmt.Sprintf("inspect exec: %v", err)
	}
	return code, why
}

// stdinPipe is the write side of a command's standard input.
type stdinPipe struct {
	mu     sync.Mutex // serialises writers
	x      engine.Exec
	open   bool // accepts SendStdin
	closed bool
}

// copyFrom copies src to the command's input, then closes the input when
// closeAfter. It holds the lock for the whole copy.
func (p *stdinPipe) copyFrom(src io.Reader, closeAfter bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	_, err := io.Copy(p.x, src)
	if closeAfter || err != nil {
		p.closeLocked()
	}
}

func (p *stdinPipe) closeLocked() {
	if !p.closed {
		p.x.CloseWrite()
		p.closed, p.open = true, false
	}
}

// shutdown marks the input closed once the command has ended.
func (p *stdinPipe) shutdown() {
	if p.mu.TryLock() {
		p.closed, p.open = true, false
		p.mu.Unlock()
	}
}

// SendStdin copies r to the standard input of a running command started
// with OpenStdin, then closes the input when closeAfter (r may be nil to
// just close it). Writes wait for an ExecOptions.Stdin copy in progress.
// It fails with ErrConflict when the command has ended or its input is not
// open, ErrNotFound for an unknown sandbox or command, and ctx.Err() when
// ctx ends while the command is not reading.
func (m *Manager) SendStdin(ctx context.Context, sandboxID, cmdID string, r io.Reader, closeAfter bool) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	e, err := m.cmds.lookup(ctx, sandboxID, cmdID)
	if err != nil {
		return fmt.Errorf("send stdin: %w", err)
	}
	if e.stdin == nil {
		return fmt.Errorf("send stdin: %w", sbxerr.Conflict("command %s was started without OpenStdin", cmdID))
	}
	p := e.stdin
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-e.done:
		return fmt.Errorf("send stdin: %w", sbxerr.Conflict("command %s has ended", cmdID))
	default:
	}
	if !p.open || p.closed {
		return fmt.Errorf("send stdin: %w", sbxerr.Conflict("the input of command %s is closed", cmdID))
	}
	if r != nil {
		stop := context.AfterFunc(ctx, func() { p.x.SetWriteDeadline(time.Unix(1, 0)) })
		_, err = io.Copy(p.x, r)
		if !stop() {
			p.x.SetWriteDeadline(time.Time{})
		}
		if err != nil {
			select {
			case <-e.done:
				return fmt.Errorf("send stdin: %w", sbxerr.Conflict("command %s has ended", cmdID))
			default:
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("send stdin: %w", err)
		}
	}
	if closeAfter {
		p.closeLocked()
	}
	return nil
}
