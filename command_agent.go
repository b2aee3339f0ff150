package opensbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/outbuf"
	"github.com/opensbx/opensbx/internal/poll"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Commands through the agent
//
// The agent starts the command, keeps its output in bounded rings and its
// exit status, and streams the output to the Manager, which copies it into
// the command's own buffer as it arrives. A session that breaks (the
// engine connection dropped, the Manager closed) leaves the command
// running in the agent: the Manager opens a new session and follows on from
// the bytes it has, with no gap and no duplicate (a "dropped" record if the
// agent's ring evicted some meanwhile). A Manager that restarts does the
// same for the commands its state directory records as running. The
// agent's instance id tells a reconnect from a restarted sandbox, whose
// commands are gone.

// execAgent starts a command in running sandbox sandboxID through its
// agent's session client.
func (m *Manager) execAgent(ctx context.Context, sandboxID string, client *agent.Client, id string, opts ExecOptions, env []string) (*cmdEntry, error) {
	attachStdin := opts.Stdin != nil || opts.OpenStdin
	e := &cmdEntry{
		cmd: Command{
			ID:        id,
			Name:      opts.Command,
			Args:      append([]string(nil), opts.Args...),
			Cwd:       opts.Cwd,
			SandboxID: sandboxID,
			State:     CommandRunning,
			StartedAt: time.Now(),
		},
		out:      outbuf.New(m.cfg.outputLimit),
		done:     make(chan struct{}),
		live:     true,
		agent:    true,
		instance: client.Info().Instance,
	}
	if attachStdin {
		e.stdin = &stdinPipe{sink: agentSink{m: m, sandboxID: sandboxID, id: id}, open: true}
	}
	req := agent.ExecRequest{
		ID: id, Argv: append([]string{opts.Command}, opts.Args...), Env: env, Cwd: opts.Cwd, User: opts.User,
		OpenStdin: attachStdin, OutputLimit: m.cfg.outputLimit, StartHold: opts.startHold,
	}
	started := make(chan error, 1)
	if !m.goBackground(func(bctx context.Context) {
		var begun bool
		final, err := client.ExecFollow(bctx, req, func(agent.Command) {
			// Registered here, so that a command that starts is always
			// found (even when Exec's caller has given up meanwhile).
			begun = true
			m.cmds.mu.Lock()
			m.cmds.addLocked(e)
			m.cmds.mu.Unlock()
			m.cmds.save(e)
			if opts.Stdin != nil {
				m.goBackground(func(bctx context.Context) { e.stdin.copyFrom(bctx, opts.Stdin, !opts.OpenStdin) })
			}
			if opts.KillOnCancel && ctx.Err() != nil {
				// Run gave up before the start was known: it cannot kill
				// what it never saw, so the kill happens here.
				m.goBackground(func(bctx context.Context) {
					kctx, cancel := cleanupContext(bctx)
					defer cancel()
					if _, err := m.KillCommand(kctx, sandboxID, id, sigKill); err != nil && !errors.Is(err, ErrConflict) {
						m.log.Warn("kill a command whose Run gave up", "command", id, "err", err)
					}
				})
			}
			started <- nil
		}, e.write)
		if !begun {
			started <- err
			return
		}
		m.cmds.agentEnded(bctx, e, final, err)
	}) {
		return nil, ErrClosed
	}
	select {
	case err := <-started:
		if err != nil {
			return nil, m.agentErr(ctx, sandboxID, fmt.Errorf("start the command: %w", err))
		}
		return e, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// write copies one chunk the agent sent into the command's buffer.
func (e *cmdEntry) write(ch outbuf.Chunk) error {
	if ch.Dropped > 0 {
		e.out.Skip(ch.Stream, ch.Dropped)
		return nil
	}
	e.out.Write(ch.Stream, ch.Data)
	return nil
}

// agentErr turns a failure of the agent's session into what a caller
// should see: the sandbox stopped meanwhile (ErrConflict), its agent is
// gone (ErrConflict, saying so), or the engine is unreachable.
func (m *Manager) agentErr(ctx context.Context, sandboxID string, err error) error {
	if !errors.Is(err, agent.ErrSessionClosed) && !errors.Is(err, agent.ErrProtocol) {
		return err
	}
	stopping := m.agents.recentlyDropped(sandboxID)
	m.agents.forget(sandboxID)
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	c, ierr := m.engine.Inspect(cctx, sandboxID)
	switch {
	case errors.Is(ierr, ErrNotFound):
		return sbxerr.Wrap(ErrNotFound, fmt.Errorf("sandbox %s was deleted meanwhile: %w", shortID(sandboxID), err))
	case ierr != nil:
		return fmt.Errorf("%w (and inspecting the sandbox failed: %v)", ierr, err)
	case stateOf(c.State) != StateRunning:
		return sbxerr.Conflict("sandbox %s is %s", shortID(sandboxID), stateOf(c.State))
	case stopping:
		return sbxerr.Wrap(ErrConflict, fmt.Errorf("sandbox %s is being stopped, restarted or deleted: %w", shortID(sandboxID), err))
	}
	return fmt.Errorf("%w: %v", errNoAgent(sandboxID, "its session broke"), err)
}

// agentEnded records the end of e's output stream: the command finished,
// or the session broke and the command is followed again from where its
// output stands.
func (r *commandRegistry) agentEnded(ctx context.Context, e *cmdEntry, final agent.Command, err error) {
	for {
		if err == nil && final.State == "finished" {
			if e.stdin != nil {
				e.stdin.shutdown()
			}
			r.finish(e, CommandFinished, final.ExitCode, final.Error)
			return
		}
		if ctx.Err() != nil {
			// The Manager closes: the command goes on in the agent, and
			// the next Manager on the state directory follows it on.
			r.save(e)
			return
		}
		final, err = r.refollow(ctx, e)
		var gone *commandGone
		if errors.As(err, &gone) {
			r.finish(e, CommandFailed, nil, gone.why)
			return
		}
	}
}

// commandGone is a command that cannot be followed any more, and why.
type commandGone struct{ why string }

func (g *commandGone) Error() string { return g.why }

// refollow opens a new session to e's agent and follows e from the output
// it has. It waits (with a growing delay) while the engine or the agent
// cannot be reached, and reports a *commandGone when the command cannot be
// followed again: the sandbox stopped, restarted or went away, or its agent
// no longer knows the command.
func (r *commandRegistry) refollow(ctx context.Context, e *cmdEntry) (agent.Command, error) {
	var final agent.Command
	var ferr error
	err := poll.Until(ctx, poll.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}, func() (bool, error) {
		c, err := r.m.engine.Inspect(ctx, e.cmd.SandboxID)
		switch {
		case errors.Is(err, ErrNotFound):
			return false, &commandGone{"the sandbox was removed while the command was running"}
		case err != nil:
			return false, nil // the engine is away: wait for it
		case stateOf(c.State) == StatePaused:
			return false, nil
		case stateOf(c.State) != StateRunning:
			return false, &commandGone{"the sandbox stopped while the command was running"}
		}
		client, err := r.m.agents.client(ctx, e.cmd.SandboxID)
		if err != nil {
			if errors.Is(err, ErrConflict) {
				return false, &commandGone{"the sandbox's agent is not running any more"}
			}
			return false, nil
		}
		if client.Info().Instance != e.instance {
			return false, &commandGone{"the sandbox restarted while the command was running"}
		}
		final, ferr = client.Follow(ctx, e.cmd.ID, e.out.End(), e.write)
		if errors.Is(ferr, ErrNotFound) {
			return false, &commandGone{"the sandbox's agent no longer knows the command"}
		}
		if ferr != nil {
			r.m.agents.forget(e.cmd.SandboxID)
			return false, nil // a broken session again: retry
		}
		return true, nil
	})
	if err != nil {
		return final, err
	}
	return final, nil
}

// agentSink writes to a command's stdin through its agent.
type agentSink struct {
	m             *Manager
	sandboxID, id string
}

func (s agentSink) write(ctx context.Context, r io.Reader) error {
	client, err := s.m.agents.client(ctx, s.sandboxID)
	if err != nil {
		return err
	}
	_, err = client.Stdin(ctx, s.id, r, false)
	return err
}

func (s agentSink) closeInput(ctx context.Context) error {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	client, err := s.m.agents.client(cctx, s.sandboxID)
	if err != nil {
		return err
	}
	_, err = client.Stdin(cctx, s.id, nil, true)
	return err
}

// signalAgent sends sig to e's process tree through its agent.
func (r *commandRegistry) signalAgent(ctx context.Context, e *cmdEntry, sig int) error {
	client, err := r.m.agents.client(ctx, e.cmd.SandboxID)
	if err != nil {
		return err
	}
	if _, err := client.Signal(ctx, e.cmd.ID, sig); err != nil {
		if errors.Is(err, ErrConflict) {
			return errEnded
		}
		return r.m.agentErr(ctx, e.cmd.SandboxID, err)
	}
	return nil
}

// resumeAgentCommands follows, after a restart, the commands the state
// directory recorded as running in sandboxes with an agent.
func (r *commandRegistry) resumeAgentCommands(ctx context.Context, entries []*cmdEntry) {
	for _, e := range entries {
		e := e
		r.m.goBackground(func(ctx context.Context) {
			final, err := r.refollow(ctx, e)
			var gone *commandGone
			if errors.As(err, &gone) {
				r.finish(e, CommandFailed, nil, gone.why)
				return
			}
			r.agentEnded(ctx, e, final, err)
		})
	}
}
