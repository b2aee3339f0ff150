package opensbx

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	if id, client, ok := m.liveAgent(ctx, sandboxID); ok {
		// The fast path: the agent serves the sandbox, no engine call.
		release, err := m.cmds.reserveCommand(id)
		if err != nil {
			return nil, err
		}
		defer release()
		return m.execAgent(ctx, id, client, newCommandID(), opts, env)
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
	if m.usesAgent(c) {
		client, err := m.agents.client(ctx, c.ID)
		if err != nil {
			return nil, err
		}
		return m.execAgent(ctx, c.ID, client, id, opts, env) // the agent sets OPENSBX_COMMAND_ID itself
	}
	env = append(env, commandIDEnv+"="+id)
	started := time.Now()
	x, err := m.startExec(ctx, c.ID, engine.ExecSpec{
		User:       opts.User,
		Stdin:      attachStdin,
		Env:        env,
		WorkingDir: opts.Cwd,
		Cmd:        append([]string{opts.Command}, opts.Args...),
	})
	if err != nil {
		return nil, fmt.Errorf("exec in sandbox %s: %w", shortID(c.ID), m.raced(ctx, c.ID, err))
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
		e.stdin = &stdinPipe{sink: engineSink{x}, open: true}
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
		r.m.goBackground(func(ctx context.Context) { e.stdin.copyFrom(ctx, opts.Stdin, !opts.OpenStdin) })
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
		if why == "" && r.sandboxGone(ctx, e) {
			// The engine refused to start it: the sandbox went away.
			r.finish(e, CommandFailed, nil, "the sandbox stopped or was removed before the command could start")
			return
		}
		if why != "" {
			code = &c
		}
		r.finish(e, CommandFinished, code, why)
	default:
		r.finish(e, CommandFinished, code, "")
	}
}

// sandboxGone reports whether e's sandbox is no longer running.
func (r *commandRegistry) sandboxGone(ctx context.Context, e *cmdEntry) bool {
	c, err := r.m.engine.Inspect(ctx, e.cmd.SandboxID)
	return errors.Is(err, ErrNotFound) || (err == nil && stateOf(c.State) != StateRunning)
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
