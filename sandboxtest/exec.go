package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/opensbx/opensbx"
)

// Result is what a command run with Sandbox.Run produced.
type Result struct {
	// Stdout and Stderr are the command's output (the newest bytes, up to
	// the Manager's output limit of 1 MiB per stream).
	Stdout, Stderr string
	// ExitCode is the command's exit code: 127 when the program does not
	// exist, 128+N when signal N killed it.
	ExitCode int
	// Command is the command's final record.
	Command *opensbx.Command
}

// Exec runs argv in the sandbox, waits for it and returns its output and
// exit code. A non-zero exit code is not a failure; an error in reaching
// the sandbox or the engine, or a sandbox that stops meanwhile, fails the
// test. There is no shell: run one yourself for pipes and globs
// (Exec("sh", "-c", "ls /tmp | wc -l")).
func (sb *Sandbox) Exec(argv ...string) (stdout, stderr string, code int) {
	sb.tb.Helper()
	if len(argv) == 0 {
		sb.tb.Fatalf("sandboxtest: Exec: empty argv")
		return "", "", -1
	}
	r := sb.Run(opensbx.ExecOptions{Command: argv[0], Args: argv[1:]})
	return r.Stdout, r.Stderr, r.ExitCode
}

// Run runs a command described by opts, waits for it and returns what it
// produced. Like Exec, it fails the test only on errors other than a
// non-zero exit code. When the test's context ends first the command is
// killed.
func (sb *Sandbox) Run(opts opensbx.ExecOptions) Result {
	sb.tb.Helper()
	ctx, cancel := sb.opContext()
	defer cancel()
	opts.KillOnCancel = true
	res, err := sb.m.Run(ctx, sb.info.ID, opts)
	var ee *opensbx.ExitError
	if err != nil && !errors.As(err, &ee) {
		sb.tb.Fatalf("sandboxtest: run %s in sandbox %s: %v", argvString(opts), sb.info.Name, err)
		return Result{ExitCode: -1}
	}
	return result(res)
}

func result(res *opensbx.Result) Result {
	r := Result{Stdout: string(res.Stdout), Stderr: string(res.Stderr), ExitCode: -1, Command: res.Command}
	if res.Command != nil && res.Command.ExitCode != nil {
		r.ExitCode = *res.Command.ExitCode
	}
	return r
}

// Start starts a command described by opts in the background and returns
// its record at once, for a server or a follower the test talks to later
// (see Manager().WaitCommand, CommandOutput, FollowOutput, KillCommand).
// It fails the test when the command cannot be started at all; a missing
// program is not such a case (the command finishes with exit code 127).
// The command ends with the sandbox.
func (sb *Sandbox) Start(opts opensbx.ExecOptions) *opensbx.Command {
	sb.tb.Helper()
	ctx, cancel := sb.opContext()
	defer cancel()
	cmd, err := sb.m.Exec(ctx, sb.info.ID, opts)
	if err != nil {
		sb.tb.Fatalf("sandboxtest: start %s in sandbox %s: %v", argvString(opts), sb.info.Name, err)
		return nil
	}
	return cmd
}

// argvString shows a command for messages.
func argvString(opts opensbx.ExecOptions) string {
	return fmt.Sprintf("%q", append([]string{opts.Command}, opts.Args...))
}

// permanent reports whether err from running a command in a sandbox means
// trying again cannot help: the sandbox is gone, stopped or paused, or the
// Manager closed.
func permanent(err error) bool {
	return errors.Is(err, opensbx.ErrNotFound) || errors.Is(err, opensbx.ErrConflict) ||
		errors.Is(err, opensbx.ErrClosed) || errors.Is(err, opensbx.ErrInvalid)
}

// tail returns the end of s, at most n bytes, for messages.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// ExecStrategy waits for a command to exit with a given code. Make one with
// ForExec.
type ExecStrategy struct {
	opts opensbx.ExecOptions
	code int
	t    timing
}

// ForExec waits until the command described by opts exits with code 0,
// running it again every poll interval while it exits otherwise. A run
// still going when the timeout passes is killed. A sandbox that stops
// ends the wait at once.
func ForExec(opts opensbx.ExecOptions) *ExecStrategy { return &ExecStrategy{opts: opts} }

// WithExitCode sets the exit code to wait for (default 0).
func (s *ExecStrategy) WithExitCode(code int) *ExecStrategy { s.code = code; return s }

// WithTimeout sets how long to wait (default DefaultWaitTimeout).
func (s *ExecStrategy) WithTimeout(d time.Duration) *ExecStrategy { s.t.timeout = d; return s }

// WithPollInterval sets the pause between runs (default 250 ms).
func (s *ExecStrategy) WithPollInterval(d time.Duration) *ExecStrategy { s.t.interval = d; return s }

// WaitUntilReady implements WaitStrategy.
func (s *ExecStrategy) WaitUntilReady(ctx context.Context, sb *Sandbox) error {
	what := fmt.Sprintf("command %s to exit with code %d", argvString(s.opts), s.code)
	opts := s.opts
	opts.KillOnCancel = true
	return poll(ctx, s.t.orDefault(250*time.Millisecond), what, func(ctx context.Context) (bool, string, error) {
		res, err := sb.m.Run(ctx, sb.info.ID, opts)
		var ee *opensbx.ExitError
		switch {
		case err == nil, errors.As(err, &ee):
			r := result(res)
			if r.ExitCode == s.code {
				return true, "", nil
			}
			return false, fmt.Sprintf("exit code %d, stdout %q, stderr %q", r.ExitCode, tail(r.Stdout, 300), tail(r.Stderr, 300)), nil
		case res != nil && ctx.Err() != nil:
			r := result(res)
			return false, fmt.Sprintf("still running when the wait ended (killed), stdout %q, stderr %q", tail(r.Stdout, 300), tail(r.Stderr, 300)), nil
		case permanent(err):
			return false, "", err
		default:
			return false, err.Error(), nil
		}
	})
}

// OutputStrategy waits for a command's output to match a regular
// expression. Make one with ForCommandOutput.
type OutputStrategy struct {
	opts    opensbx.ExecOptions
	pattern string
	re      *regexp.Regexp
	reErr   error
	t       timing
}

// ForCommandOutput starts the command described by opts and follows its
// output (stdout and stderr together) until it matches the regular
// expression pattern (RE2 syntax; use (?m) for ^ and $ at line ends).
//
// Main-process output is not captured by Opensbx, so this is the way to
// wait for a log line: follow a log file (`tail -f /var/log/app.log`), or
// start the server itself with this strategy (it keeps running after the
// match; the sandbox's main process can then be the default keep-alive).
// After a match the command is left running; it ends with the sandbox. A
// command that exits without a match is run again after the poll interval;
// one still running when the timeout passes is killed. A bad pattern fails
// the wait at once.
func ForCommandOutput(opts opensbx.ExecOptions, pattern string) *OutputStrategy {
	re, err := regexp.Compile(pattern)
	return &OutputStrategy{opts: opts, pattern: pattern, re: re, reErr: err}
}

// WithTimeout sets how long to wait (default DefaultWaitTimeout).
func (s *OutputStrategy) WithTimeout(d time.Duration) *OutputStrategy { s.t.timeout = d; return s }

// WithPollInterval sets the pause before running the command again after
// it exited without a match (default 250 ms).
func (s *OutputStrategy) WithPollInterval(d time.Duration) *OutputStrategy {
	s.t.interval = d
	return s
}

// errMatched ends FollowOutput once the pattern matched.
var errMatched = errors.New("pattern matched")

// maxMatchBytes bounds the output kept for matching: the newest bytes.
const maxMatchBytes = 1 << 20

// WaitUntilReady implements WaitStrategy.
func (s *OutputStrategy) WaitUntilReady(ctx context.Context, sb *Sandbox) error {
	what := fmt.Sprintf("output of command %s to match %q", argvString(s.opts), s.pattern)
	if s.reErr != nil {
		return fmt.Errorf("wait for %s: bad pattern: %w", what, s.reErr)
	}
	opts := s.opts
	opts.KillOnCancel = false
	return poll(ctx, s.t.orDefault(250*time.Millisecond), what, func(ctx context.Context) (bool, string, error) {
		cmd, err := sb.m.Exec(ctx, sb.info.ID, opts)
		if err != nil {
			if permanent(err) {
				return false, "", err
			}
			return false, err.Error(), nil
		}
		var out []byte
		exit := ""
		err = sb.m.FollowOutput(ctx, sb.info.ID, cmd.ID, "", func(rec opensbx.OutputRecord) error {
			switch rec.Type {
			case opensbx.RecordStdout, opensbx.RecordStderr:
				out = append(out, rec.Data...)
				if len(out) > maxMatchBytes {
					out = append(out[:0], out[len(out)-maxMatchBytes:]...)
				}
				if s.re.Match(out) {
					return errMatched
				}
			case opensbx.RecordExit:
				exit = fmt.Sprintf("exited with code %d without a match", rec.ExitCode)
			}
			return nil
		})
		switch {
		case errors.Is(err, errMatched):
			return true, "", nil
		case err == nil:
			return false, fmt.Sprintf("%s; output %q", exit, tail(string(out), 500)), nil
		case ctx.Err() != nil:
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if _, kerr := sb.m.KillCommand(kctx, sb.info.ID, cmd.ID, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, opensbx.ErrConflict) {
				return false, fmt.Sprintf("still running without a match (kill: %v); output %q", kerr, tail(string(out), 500)), nil
			}
			return false, fmt.Sprintf("still running without a match (killed); output %q", tail(string(out), 500)), nil
		case permanent(err):
			return false, "", err
		default:
			return false, strings.TrimSpace(err.Error()), nil
		}
	})
}

var (
	_ WaitStrategy = (*ExecStrategy)(nil)
	_ WaitStrategy = (*OutputStrategy)(nil)
)
