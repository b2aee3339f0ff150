package opensbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// ExecOptions describe a command to run in a sandbox. Only Command is
// required. The command runs directly, with Args as its argv: nothing goes
// through a shell unless Command is one (Command "sh", Args "-c", "...").
type ExecOptions struct {
	// Command is the program to run: a path, or a name looked up in the
	// sandbox's PATH.
	Command string
	// Args are the arguments after the program name (argv[1:]).
	Args []string
	// Cwd is the working directory; empty means the sandbox's own. A
	// directory that does not exist makes the command finish with exit code
	// 126 and the runtime's message on its output.
	Cwd string
	// Env adds to (or replaces in) the sandbox's environment. Keys must not
	// be empty or contain '='. The command also gets OPENSBX_COMMAND_ID set
	// to its id (a reserved key), which KillCommand may use to find the
	// command's processes.
	Env map[string]string
	// User runs the command as this user ("nobody", "1000", "1000:1000");
	// empty means the sandbox's user.
	User string
	// Stdin, when not nil, is copied to the command's standard input until
	// it returns EOF; the input is then closed (unless OpenStdin). The copy
	// runs in a goroutine owned by the Manager, so Close waits for a Read in
	// flight to return: give a reader that does not block forever. Nil means
	// no input (the command reads EOF at once unless OpenStdin).
	Stdin io.Reader
	// OpenStdin keeps standard input open (after Stdin, if any) so that
	// SendStdin can write to it later, for interactive programs.
	OpenStdin bool
	// KillOnCancel is used by Run only: when Run's context ends before the
	// command, Run sends SIGKILL to the command's process tree. Without it
	// the command keeps running and can be waited for or killed later.
	KillOnCancel bool

	// startHold is set by Run: the agent may answer that the command
	// started once it has finished, up to this long, so that a short
	// command's start, output and end travel as one message.
	startHold time.Duration
}

// runStartHold is how long Run lets the agent hold the start of a command
// for its end (see ExecOptions.startHold).
const runStartHold = 10 * time.Millisecond

// CommandState is the lifecycle state of a command.
type CommandState string

// Command states.
const (
	// CommandRunning: the command has started and not yet ended.
	CommandRunning CommandState = "running"
	// CommandFinished: the command exited by itself; ExitCode is set.
	CommandFinished CommandState = "finished"
	// CommandKilled: the command ended after KillCommand signalled it, with
	// an exit code of 128 or more (128+signal when the signal killed it).
	CommandKilled CommandState = "killed"
	// CommandFailed: the Manager lost track of the command: it closed (or
	// stopped without closing) while the command ran, or the sandbox went
	// away. Error says what happened; ExitCode is set when known.
	CommandFailed CommandState = "failed"
)

// Command describes one command run in a sandbox. The Manager returns
// copies: a Command does not change after it is returned.
type Command struct {
	// ID is "cmd_" followed by 24 random hex digits.
	ID string
	// Name is the program (ExecOptions.Command).
	Name string
	// Args are the arguments after Name.
	Args []string
	// Cwd is the requested working directory ("" = the sandbox's).
	Cwd string
	// SandboxID is the full container id of the sandbox.
	SandboxID string
	// State is running, finished, killed or failed.
	State CommandState
	// ExitCode is the exit code once known; nil while running. A command
	// killed by signal N exits with 128+N. A program that cannot be started
	// exits like in a shell: 127 when it is not found, 126 when it is not
	// executable or Cwd or User is wrong; Error and the output then carry
	// the runtime's message.
	ExitCode *int
	// StartedAt is when Exec started the command.
	StartedAt time.Time
	// FinishedAt is when the command ended; zero while running.
	FinishedAt time.Time
	// Error explains a failed command, or why a finished command's program
	// could not be started (then ExitCode is 127 or 126 and the runtime's
	// message is also on the output).
	Error string
}

// Done reports whether the command has ended (any state but running).
func (c *Command) Done() bool { return c.State != CommandRunning }

func (c *Command) clone() *Command {
	out := *c
	out.Args = append([]string(nil), c.Args...)
	if c.ExitCode != nil {
		code := *c.ExitCode
		out.ExitCode = &code
	}
	return &out
}

// commandsBucket is the state-store bucket of finished commands, keyed by
func (o *ExecOptions) validate() ([]string, error) {
	if strings.TrimSpace(o.Command) == "" {
		return nil, sbxerr.Invalid("command is empty")
	}
	if strings.ContainsRune(o.Command, 0) {
		return nil, sbxerr.Invalid("command contains a NUL byte")
	}
	for _, a := range o.Args {
		if strings.ContainsRune(a, 0) {
			return nil, sbxerr.Invalid("argument contains a NUL byte")
		}
	}
	env := make([]string, 0, len(o.Env)+1)
	for k, v := range o.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, sbxerr.Invalid("env key %q: must be non-empty, without '=' or NUL", k)
		}
		if k == commandIDEnv {
			return nil, sbxerr.Invalid("env key %s is reserved", k)
		}
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env, nil
}

// Exec starts a command in a running sandbox and returns at once with its
// record (state running). Output is collected in the background (see
// CommandOutput and FollowOutput); WaitCommand waits for the end.
//
// It fails with ErrInvalid for an empty command or a bad Env key,
// ErrNotFound for an unknown sandbox, ErrConflict when the sandbox is
// stopped or paused, and ErrClosed after Close. A program that does not
// exist is not an error here: the command finishes with exit code 127 (126
// when it is not executable, or Cwd or User is wrong), the runtime's
// message ("exec: \"x\": executable file not found in $PATH") in Error
// and on its output.
func (m *Manager) Exec(ctx context.Context, sandboxID string, opts ExecOptions) (*Command, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	e, err := m.exec(ctx, sandboxID, opts)
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	return m.cmds.snapshot(e), nil
}

// Command returns the command cmdID of a sandbox. It fails with ErrNotFound
// when the sandbox or the command is unknown (or forgotten: see
// WithCommandHistory).
func (m *Manager) Command(ctx context.Context, sandboxID, cmdID string) (*Command, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	e, err := m.cmds.lookup(ctx, sandboxID, cmdID)
	if err != nil {
		return nil, fmt.Errorf("get command: %w", err)
	}
	return m.cmds.snapshot(e), nil
}

// Commands lists the commands of a sandbox, running and retained finished
// ones, oldest first. An unknown sandbox gives ErrNotFound.
func (m *Manager) Commands(ctx context.Context, sandboxID string) ([]*Command, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return nil, fmt.Errorf("list commands: %w", err)
	}
	r := m.cmds
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []*Command{}
	if box := r.boxes[c.ID]; box != nil {
		for _, e := range box.order {
			out = append(out, e.cmd.clone())
		}
	}
	return out, nil
}

// WaitCommand blocks until the command has ended and returns its final
// record. When ctx ends first it returns ctx.Err() and leaves the command
// running. Unknown sandbox or command: ErrNotFound.
func (m *Manager) WaitCommand(ctx context.Context, sandboxID, cmdID string) (*Command, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	e, err := m.cmds.lookup(ctx, sandboxID, cmdID)
	if err != nil {
		return nil, fmt.Errorf("wait command: %w", err)
	}
	select {
	case <-e.done:
		return m.cmds.snapshot(e), nil
	case <-ctx.Done():
		if m.ctx.Err() != nil {
			return nil, ErrClosed
		}
		return nil, ctx.Err()
	}
}

// Result is what Run returns: the final command record and its output.
type Result struct {
	// Command is the command's record: final unless Run's context ended.
	Command *Command
	// Stdout and Stderr are the output kept (the newest bytes, up to the
	// Manager's output limit).
	Stdout, Stderr []byte
	// StdoutDropped and StderrDropped count the bytes evicted by the limit.
	StdoutDropped, StderrDropped int64
}

// ExitError reports a command that ran and ended unsuccessfully: with a
// non-zero exit code, or killed. It is kept apart from errors in reaching
// the engine, which Run returns unwrapped from their sentinel.
type ExitError struct {
	// Command is the final record; its ExitCode is set.
	Command *Command
	// Stderr is the end of the command's standard error, for messages.
	Stderr []byte
}

// ExitCode returns the command's exit code.
func (e *ExitError) ExitCode() int {
	if e.Command.ExitCode == nil {
		return -1
	}
	return *e.Command.ExitCode
}

// Error implements error.
func (e *ExitError) Error() string {
	if e.Command.State == CommandKilled {
		return fmt.Sprintf("command %s was killed (exit code %d)", e.Command.ID, e.ExitCode())
	}
	return fmt.Sprintf("command %s exited with code %d", e.Command.ID, e.ExitCode())
}

// Run starts a command like Exec, waits for it like WaitCommand and returns
// its record and output, like os/exec's Cmd.Output.
//
// The error is nil when the command exited with code 0, an *ExitError (with
// the Result) when it exited non-zero or was killed, and otherwise an error
// in reaching the sandbox or the engine, matching the Exec sentinels. When
// the command failed (the sandbox stopped or was removed while it ran) Run
// returns the Result and an error matching ErrConflict. When ctx ends
// first, Run returns the Result so far and ctx.Err(), after killing the
// command if opts.KillOnCancel. Run returns a nil Result only when the
// command could not be started.
func (m *Manager) Run(ctx context.Context, sandboxID string, opts ExecOptions) (*Result, error) {
	if opts.Stdin == nil && !opts.OpenStdin {
		opts.startHold = runStartHold // nobody feeds it meanwhile: Run waits for the end anyway
	}
	cmd, err := m.Exec(ctx, sandboxID, opts)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	final, werr := m.WaitCommand(ctx, cmd.SandboxID, cmd.ID)
	if werr != nil {
		if opts.KillOnCancel && ctx.Err() != nil {
			kctx, cancel := cleanupContext(ctx)
			if _, err := m.KillCommand(kctx, cmd.SandboxID, cmd.ID, sigKill); err != nil && !errors.Is(err, ErrConflict) {
				werr = fmt.Errorf("%w (and killing the command failed: %v)", werr, err)
			}
			final, _ = m.Command(kctx, cmd.SandboxID, cmd.ID)
			cancel()
		}
		if final == nil {
			final = cmd
		}
	}
	res := &Result{Command: final}
	octx, cancel := cleanupContext(ctx)
	defer cancel()
	if out, err := m.CommandOutput(octx, cmd.SandboxID, cmd.ID); err == nil {
		res.Stdout, res.Stderr = out.Stdout, out.Stderr
		res.StdoutDropped, res.StderrDropped = out.StdoutDropped, out.StderrDropped
	}
	switch {
	case werr != nil:
		return res, fmt.Errorf("run %s: %w", cmd.ID, werr)
	case final.State == CommandFailed:
		return res, fmt.Errorf("run %s: %w", cmd.ID, sbxerr.Conflict("%s", final.Error))
	case final.State == CommandKilled || (final.ExitCode != nil && *final.ExitCode != 0):
		return res, &ExitError{Command: final, Stderr: res.Stderr}
	}
	return res, nil
}
