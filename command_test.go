package opensbx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// run runs a command to its end and fails the test on transport errors;
// a non-zero exit is not an error here.
func run(t *testing.T, m *Manager, sandboxID string, opts ExecOptions) *Result {
	t.Helper()
	res, err := m.Run(context.Background(), sandboxID, opts)
	var ee *ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s %q: %v", opts.Command, opts.Args, err)
	}
	return res
}

func sh(script string) ExecOptions { return ExecOptions{Command: "sh", Args: []string{"-c", script}} }

func exitCode(c *Command) int {
	if c.ExitCode == nil {
		return -1
	}
	return *c.ExitCode
}

func TestExecBasics(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	ctx := context.Background()

	t.Run("exit codes", func(t *testing.T) {
		for _, code := range []int{0, 1, 42} {
			is := is.New(t)
			res := run(t, m, sb.ID, sh(fmt.Sprintf("exit %d", code)))
			is.Equal(res.Command.State, CommandFinished) // ended by itself
			is.Equal(exitCode(res.Command), code)        // exit code recorded
			is.True(!res.Command.FinishedAt.IsZero())    // finish time set
		}
	})
	t.Run("stdout and stderr apart, no newline added or lost", func(t *testing.T) {
		is := is.New(t)
		res := run(t, m, sb.ID, sh("printf out1; printf err1 >&2; printf 'out2\\n\\n'; printf 'no-newline' >&2"))
		is.Equal(string(res.Stdout), "out1out2\n\n")   // stdout exact
		is.Equal(string(res.Stderr), "err1no-newline") // stderr exact, partial last line kept
	})
	t.Run("argv is not shell-interpreted", func(t *testing.T) {
		is := is.New(t)
		res := run(t, m, sb.ID, ExecOptions{Command: "echo", Args: []string{"$HOME", "a  b", "'q'", "$(id)"}})
		is.Equal(string(res.Stdout), "$HOME a  b 'q' $(id)\n")
	})
	t.Run("env and cwd", func(t *testing.T) {
		is := is.New(t)
		res := run(t, m, sb.ID, ExecOptions{
			Command: "sh", Args: []string{"-c", `printf '%s|%s|' "$FOO" "$EMPTY"; pwd`},
			Env: map[string]string{"FOO": "bar baz", "EMPTY": ""}, Cwd: "/tmp",
		})
		is.Equal(string(res.Stdout), "bar baz||/tmp\n")
	})
	t.Run("user", func(t *testing.T) {
		is := is.New(t)
		res := run(t, m, sb.ID, ExecOptions{Command: "id", Args: []string{"-u"}, User: "nobody"})
		is.Equal(string(res.Stdout), "65534\n")
	})
	t.Run("record fields", func(t *testing.T) {
		is := is.New(t)
		c, err := m.Exec(ctx, sb.Name, ExecOptions{Command: "echo", Args: []string{"x"}, Cwd: "/"})
		is.NoErr(err)
		is.True(strings.HasPrefix(c.ID, "cmd_") && len(c.ID) == 28) // cmd_ + 24 hex
		is.Equal(c.Name, "echo")
		is.Equal(c.Args, []string{"x"})
		is.Equal(c.Cwd, "/")
		is.Equal(c.SandboxID, sb.ID) // full id even when addressed by name
		is.True(!c.StartedAt.IsZero())
		done, err := m.WaitCommand(ctx, sb.Name, c.ID)
		is.NoErr(err)
		is.Equal(done.State, CommandFinished)
		got, err := m.Command(ctx, sb.ID, c.ID)
		is.NoErr(err)
		is.Equal(got.State, CommandFinished)
		list, err := m.Commands(ctx, sb.ID)
		is.NoErr(err)
		found := false
		for _, l := range list {
			found = found || l.ID == c.ID
		}
		is.True(found) // listed
		_, err = m.Command(ctx, sb.ID, "cmd_nope")
		is.True(errors.Is(err, ErrNotFound)) // unknown command
	})
	t.Run("Run returns ExitError apart from transport errors", func(t *testing.T) {
		is := is.New(t)
		res, err := m.Run(ctx, sb.ID, sh("echo oops >&2; exit 3"))
		var ee *ExitError
		is.True(errors.As(err, &ee)) // non-zero exit is an *ExitError
		is.Equal(ee.ExitCode(), 3)
		is.Equal(string(ee.Stderr), "oops\n")
		is.Equal(exitCode(res.Command), 3) // Result comes with it
		_, err = m.Run(ctx, "no-such-sandbox", sh("true"))
		is.True(errors.Is(err, ErrNotFound)) // transport-side error
		is.True(!errors.As(err, &ee))        // not an ExitError
	})
}

func TestExecRefused(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	ctx := context.Background()
	sb := newBusybox(t, m, CreateOptions{})

	_, err := m.Exec(ctx, sb.ID, ExecOptions{})
	is.True(errors.Is(err, ErrInvalid)) // empty command
	_, err = m.Exec(ctx, sb.ID, ExecOptions{Command: "true", Env: map[string]string{"A=B": "x"}})
	is.True(errors.Is(err, ErrInvalid)) // bad env key
	_, err = m.Exec(ctx, "no-such-sandbox", ExecOptions{Command: "true"})
	is.True(errors.Is(err, ErrNotFound)) // unknown sandbox

	_, err = m.Pause(ctx, sb.ID)
	is.NoErr(err)
	_, err = m.Exec(ctx, sb.ID, ExecOptions{Command: "true"})
	is.True(errors.Is(err, ErrConflict)) // paused
	_, err = m.Resume(ctx, sb.ID)
	is.NoErr(err)
	_, err = m.Stop(ctx, sb.ID)
	is.NoErr(err)
	_, err = m.Exec(ctx, sb.ID, ExecOptions{Command: "true"})
	is.True(errors.Is(err, ErrConflict)) // stopped
}

// TestExecMissingBinary documents what a program that cannot start gives:
// a finished command with exit code 127 (126 for a bad cwd) and the
// runtime's message on its output.
func TestExecMissingBinary(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	res := run(t, m, sb.ID, ExecOptions{Command: "no-such-program"})
	is.Equal(res.Command.State, CommandFinished)
	is.Equal(exitCode(res.Command), 127)                                                          // not found, like a shell
	is.True(strings.Contains(res.Command.Error, "no-such-program"))                               // Error names the program
	is.True(strings.Contains(string(res.Stdout)+string(res.Stderr), "executable file not found")) // the message is on the output

	res = run(t, m, sb.ID, ExecOptions{Command: "/tmp"})
	is.Equal(exitCode(res.Command), 126) // not executable
	res = run(t, m, sb.ID, ExecOptions{Command: "pwd", Cwd: "/no/such/dir"})
	is.Equal(exitCode(res.Command), 126) // bad cwd
	is.True(strings.Contains(res.Command.Error, "/no/such/dir"))
	res = run(t, m, sb.ID, ExecOptions{Command: "id", User: "ghost"})
	is.Equal(exitCode(res.Command), 126)                            // unknown user
	is.True(strings.Contains(res.Command.Error, "find user ghost")) // explained
	res = run(t, m, sb.ID, sh("exit 126"))
	is.Equal(exitCode(res.Command), 126) // a program's own 126 is kept
	is.Equal(res.Command.Error, "")
}

func TestOutputBinaryExact(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	// 1 MiB of random bytes: exactly the default limit, nothing dropped.
	res := run(t, m, sb.ID, sh("head -c 1048576 /dev/urandom > /tmp/x && cat /tmp/x"))
	is.Equal(exitCode(res.Command), 0)
	is.Equal(len(res.Stdout), 1<<20)
	is.Equal(res.StdoutDropped, int64(0))
	sum := run(t, m, sb.ID, ExecOptions{Command: "sha256sum", Args: []string{"/tmp/x"}})
	got := sha256.Sum256(res.Stdout)
	is.Equal(strings.Fields(string(sum.Stdout))[0], hex.EncodeToString(got[:])) // byte-exact
}

func TestOutputCapKeepsNewest(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t, WithOutputLimit(1000))
	sb := newBusybox(t, m, CreateOptions{})
	res := run(t, m, sb.ID, sh("seq 1 3000; seq 1 10 >&2"))
	var want bytes.Buffer
	for i := 1; i <= 3000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	all := want.Bytes()
	is.Equal(string(res.Stdout), string(all[len(all)-1000:]))       // newest bytes kept
	is.Equal(res.StdoutDropped, int64(len(all)-1000))               // drop counted exactly
	is.Equal(string(res.Stderr), "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n") // other stream unaffected
	is.Equal(res.StderrDropped, int64(0))

	// A follower from the start is told exactly what it missed.
	var recs []OutputRecord
	err := m.FollowOutput(context.Background(), sb.ID, res.Command.ID, "", func(r OutputRecord) error {
		recs = append(recs, r)
		return nil
	})
	is.NoErr(err)
	// The engine may deliver the short stderr before stdout's last frames, so
	// only the order within stdout is fixed: the drop comes before its bytes.
	dropAt, firstStdout, drops := -1, -1, 0
	for i, r := range recs {
		switch {
		case r.Type == RecordDropped:
			drops++
			dropAt = i
			is.Equal(r.Stream, "stdout")
			is.Equal(r.Dropped, int64(len(all)-1000))
		case r.Type == RecordStdout && firstStdout < 0:
			firstStdout = i
		}
	}
	is.Equal(drops, 1)                           // one dropped record
	is.True(dropAt >= 0 && dropAt < firstStdout) // told of the drop before the kept stdout bytes
	is.Equal(recs[len(recs)-1].Type, RecordExit)
}

func TestFollowLive(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	ctx := context.Background()
	c, err := m.Exec(ctx, sb.ID, sh("echo first; sleep 2; echo second"))
	is.NoErr(err)
	var got []string
	var stateAtFirst CommandState
	err = m.FollowOutput(ctx, sb.ID, c.ID, "", func(r OutputRecord) error {
		if r.Type == RecordStdout && stateAtFirst == "" {
			cur, err := m.Command(ctx, sb.ID, c.ID)
			if err != nil {
				return err
			}
			stateAtFirst = cur.State
		}
		switch r.Type {
		case RecordStdout:
			got = append(got, string(r.Data))
		case RecordExit:
			got = append(got, fmt.Sprintf("exit %d", r.ExitCode))
		}
		return nil
	})
	is.NoErr(err)
	is.Equal(stateAtFirst, CommandRunning)                   // "first" arrived while the command still ran
	is.Equal(got, []string{"first\n", "second\n", "exit 0"}) // then the rest, then the exit
}

func TestFollowConcurrentAndResume(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	ctx := context.Background()
	// ~110 KB over a few seconds, in several chunks.
	c, err := m.Exec(ctx, sb.ID, sh("for i in 1 2 3 4 5; do seq 1 4000; sleep 0.3; done; printf tail"))
	is.NoErr(err)

	follow := func(cursor string, stopAfter int) (data []byte, last string, records int) {
		last = cursor
		err := m.FollowOutput(ctx, sb.ID, c.ID, cursor, func(r OutputRecord) error {
			if r.Type == RecordDropped {
				return fmt.Errorf("unexpected drop")
			}
			data = append(data, r.Data...)
			last = r.Cursor
			records++
			if stopAfter > 0 && records == stopAfter {
				return errStopFollow
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopFollow) {
			t.Errorf("follow: %v", err)
		}
		return data, last, records
	}
	var wg sync.WaitGroup
	var a, b, part1, part2 []byte
	wg.Add(3)
	go func() { defer wg.Done(); a, _, _ = follow("", 0) }()
	go func() { defer wg.Done(); b, _, _ = follow("", 0) }()
	go func() {
		defer wg.Done()
		var cur string
		part1, cur, _ = follow("", 2) // disconnect after two records
		part2, _, _ = follow(cur, 0)  // and resume
	}()
	wg.Wait()
	out, err := m.CommandOutput(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.True(bytes.HasSuffix(out.Stdout, []byte("4000\ntail")))
	is.True(bytes.Equal(a, out.Stdout))                       // follower 1 saw every byte
	is.True(bytes.Equal(a, b))                                // two followers identical
	is.True(bytes.Equal(append(part1, part2...), out.Stdout)) // resume: no gap, no duplicate
	is.True(len(part1) > 0 && len(part2) > 0)

	// Resuming from the exit record's cursor gives only the exit again.
	_, last, _ := follow("", 0)
	var after []OutputRecord
	is.NoErr(m.FollowOutput(ctx, sb.ID, c.ID, last, func(r OutputRecord) error { after = append(after, r); return nil }))
	is.Equal(len(after), 1)
	is.Equal(after[0].Type, RecordExit)
	err = m.FollowOutput(ctx, sb.ID, c.ID, "garbage", func(OutputRecord) error { return nil })
	is.True(errors.Is(err, ErrInvalid)) // malformed cursor
}

var errStopFollow = errors.New("stop")

// TestFollowKeepsWriteOrder: a replay interleaves stdout and stderr in the
// order the output arrived (writes spaced apart, so the engine saw them in
// that order), also after a restart.
func TestFollowKeepsWriteOrder(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dir := t.TempDir()
	m, cli := newTestManager(t, WithStateDir(dir))
	sb := newBusybox(t, m, CreateOptions{})
	ctx := context.Background()
	res := run(t, m, sb.ID, sh("printf o1; sleep 0.3; printf e1 >&2; sleep 0.3; printf o2; sleep 0.3; printf e2 >&2"))
	replay := func(m *Manager) []string {
		var got []string
		is.NoErr(m.FollowOutput(ctx, sb.ID, res.Command.ID, "", func(r OutputRecord) error {
			got = append(got, r.Type+":"+string(r.Data))
			return nil
		}))
		return got
	}
	want := []string{"stdout:o1", "stderr:e1", "stdout:o2", "stderr:e2", "exit:"}
	is.Equal(replay(m), want) // write order
	is.NoErr(m.Close())
	m2, err := New(ctx, append(modeOpts(), WithDockerClient(cli), WithNamespace(m.cfg.namespace), WithStateDir(dir))...)
	is.NoErr(err)
	defer m2.Close()
	is.Equal(replay(m2), want) // kept across a restart
}

func TestStdin(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	ctx := context.Background()

	t.Run("reader piped to cat", func(t *testing.T) {
		is := is.New(t)
		in := make([]byte, 300<<10)
		rng := rand.New(rand.NewPCG(3, 4))
		for i := range in {
			in[i] = byte(rng.IntN(256))
		}
		res := run(t, m, sb.ID, ExecOptions{Command: "cat", Stdin: bytes.NewReader(in)})
		is.Equal(exitCode(res.Command), 0)   // cat saw EOF
		is.True(bytes.Equal(res.Stdout, in)) // byte-exact
	})
	t.Run("SendStdin to an open input", func(t *testing.T) {
		is := is.New(t)
		c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "cat", OpenStdin: true})
		is.NoErr(err)
		is.NoErr(m.SendStdin(ctx, sb.ID, c.ID, strings.NewReader("hello "), false))
		is.NoErr(m.SendStdin(ctx, sb.ID, c.ID, strings.NewReader("world"), true))
		done, err := m.WaitCommand(ctx, sb.ID, c.ID)
		is.NoErr(err)
		is.Equal(exitCode(done), 0)
		out, err := m.CommandOutput(ctx, sb.ID, c.ID)
		is.NoErr(err)
		is.Equal(string(out.Stdout), "hello world")
		err = m.SendStdin(ctx, sb.ID, c.ID, strings.NewReader("late"), false)
		is.True(errors.Is(err, ErrConflict)) // finished
	})
	t.Run("SendStdin without OpenStdin", func(t *testing.T) {
		is := is.New(t)
		c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"5"}})
		is.NoErr(err)
		err = m.SendStdin(ctx, sb.ID, c.ID, strings.NewReader("x"), false)
		is.True(errors.Is(err, ErrConflict)) // stdin not open
		_, err = m.KillCommand(ctx, sb.ID, c.ID, syscall.Signal(9))
		is.NoErr(err)
	})
}

// psLines lists the sandbox's processes as "pid args" lines.
func psArgs(t *testing.T, m *Manager, sandboxID string) string {
	t.Helper()
	res := run(t, m, sandboxID, ExecOptions{Command: "ps", Args: []string{"-o", "pid,args"}})
	return string(res.Stdout)
}

// countProcs counts the processes of ps output whose command line is
// exactly args.
func countProcs(ps, args string) int {
	n := 0
	for _, l := range strings.Split(ps, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && strings.Join(f[1:], " ") == args {
			n++
		}
	}
	return n
}

func TestKillCommand(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	ctx := context.Background()

	for _, tc := range []struct {
		name  string
		sig   syscall.Signal
		opts  ExecOptions
		sleep string // the sleep process of the tree, as ps shows it
	}{
		{"TERM", 15, ExecOptions{Command: "sleep", Args: []string{"1000"}}, "sleep 1000"},
		{"KILL", 9, ExecOptions{Command: "sleep", Args: []string{"1000"}}, "sleep 1000"},
		// sh forks sleep (a command follows it) and does not forward TERM.
		{"TERM tree", 15, sh("sleep 1001; echo never"), "sleep 1001"},
		{"KILL tree", 9, sh("sleep 1002; echo never"), "sleep 1002"},
		{"TERM deeper tree", 15, sh("sh -c 'sleep 1003; echo a'; echo b"), "sleep 1003"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			// A look-alike command that must survive.
			other, err := m.Exec(ctx, sb.ID, tc.opts)
			is.NoErr(err)
			c, err := m.Exec(ctx, sb.ID, tc.opts)
			is.NoErr(err)
			marker := tc.sleep
			waitUntil(t, func() bool { return countProcs(psArgs(t, m, sb.ID), marker) >= 2 })
			_, err = m.KillCommand(ctx, sb.ID, c.ID, tc.sig)
			is.NoErr(err)
			done, err := m.WaitCommand(ctx, sb.ID, c.ID)
			is.NoErr(err)
			is.Equal(done.State, CommandKilled)       // killed state
			is.Equal(exitCode(done), 128+int(tc.sig)) // died of the signal
			out, err := m.CommandOutput(ctx, sb.ID, c.ID)
			is.NoErr(err)
			is.True(!strings.Contains(string(out.Stdout), "never")) // the shell died too
			ps := psArgs(t, m, sb.ID)
			is.Equal(countProcs(ps, marker), 1) // the killed tree left no sleep; the look-alike lives
			cur, err := m.Command(ctx, sb.ID, other.ID)
			is.NoErr(err)
			is.Equal(cur.State, CommandRunning) // the other command untouched
			_, err = m.KillCommand(ctx, sb.ID, other.ID, 9)
			is.NoErr(err)
			_, err = m.WaitCommand(ctx, sb.ID, other.ID)
			is.NoErr(err)
			_, err = m.KillCommand(ctx, sb.ID, c.ID, 15)
			is.True(errors.Is(err, ErrConflict)) // killing a finished command
		})
	}
	t.Run("invalid signal", func(t *testing.T) {
		is := is.New(t)
		c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1000"}})
		is.NoErr(err)
		_, err = m.KillCommand(ctx, sb.ID, c.ID, 0)
		is.True(errors.Is(err, ErrInvalid))
		_, err = m.KillCommand(ctx, sb.ID, c.ID, 65)
		is.True(errors.Is(err, ErrInvalid))
		_, err = m.KillCommand(ctx, sb.ID, c.ID, 9)
		is.NoErr(err)
	})
	for _, mode := range []killMode{killNSpid, killMarker} {
		t.Run(fmt.Sprintf("in-sandbox fallback %d", mode), func(t *testing.T) {
			is := is.New(t)
			m.cmds.killMode = mode
			defer func() { m.cmds.killMode = killAuto }()
			tree := sh("sleep 1004; echo never")
			other, err := m.Exec(ctx, sb.ID, tree)
			is.NoErr(err)
			c, err := m.Exec(ctx, sb.ID, tree)
			is.NoErr(err)
			waitUntil(t, func() bool { return countProcs(psArgs(t, m, sb.ID), "sleep 1004") == 2 })
			_, err = m.KillCommand(ctx, sb.ID, c.ID, 15)
			is.NoErr(err)
			done, err := m.WaitCommand(ctx, sb.ID, c.ID)
			is.NoErr(err)
			is.Equal(done.State, CommandKilled)
			is.Equal(exitCode(done), 143)
			is.Equal(countProcs(psArgs(t, m, sb.ID), "sleep 1004"), 1) // the tree's sleep is gone, the look-alike's lives
			cur, err := m.Command(ctx, sb.ID, other.ID)
			is.NoErr(err)
			is.Equal(cur.State, CommandRunning) // the look-alike untouched
			_, err = m.KillCommand(ctx, sb.ID, other.ID, 9)
			is.NoErr(err)
			done, err = m.WaitCommand(ctx, sb.ID, other.ID)
			is.NoErr(err)
			is.Equal(exitCode(done), 137)
			is.Equal(countProcs(psArgs(t, m, sb.ID), "sleep 1004"), 0)
		})
	}
	t.Run("command id in the environment", func(t *testing.T) {
		is := is.New(t)
		res := run(t, m, sb.ID, ExecOptions{Command: "sh", Args: []string{"-c", "echo $OPENSBX_COMMAND_ID"}})
		is.Equal(string(res.Stdout), res.Command.ID+"\n")
		_, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "true", Env: map[string]string{"OPENSBX_COMMAND_ID": "x"}})
		is.True(errors.Is(err, ErrInvalid)) // reserved
	})
}

// waitUntil polls cond (a state, not a duration) for up to 20 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExecNoShellImage(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	ctx := context.Background()
	res, err := m.Create(ctx, CreateOptions{Image: testenv.NoShellImage, KeepImageCommand: true})
	is.NoErr(err)
	out := run(t, m, res.ID, ExecOptions{Command: "/app", Args: []string{"echo", "hi", "there"}})
	is.Equal(string(out.Stdout), "hi there\n")
	out = run(t, m, res.ID, ExecOptions{Command: "/app", Args: []string{"exit", "42"}})
	is.Equal(exitCode(out.Command), 42)
	c, err := m.Exec(ctx, res.ID, ExecOptions{Command: "/app", Args: []string{"sleep", "1000"}})
	is.NoErr(err)
	if !m.cfg.agent {
		m.cmds.killMode = killMarker // as if the Manager did not see the host's processes
		_, err = m.KillCommand(ctx, res.ID, c.ID, 9)
		is.True(errors.Is(err, ErrUnsupported)) // no sh in the image: cannot signal from inside
		m.cmds.killMode = killAuto
	}
	_, err = m.KillCommand(ctx, res.ID, c.ID, 9) // by the agent, or from the host: no kill binary needed
	is.NoErr(err)
	done, err := m.WaitCommand(ctx, res.ID, c.ID)
	is.NoErr(err)
	is.Equal(done.State, CommandKilled)
}

func TestConcurrentCommands(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t)
	ctx := context.Background()
	var sbs []*Sandbox
	for i := 0; i < 5; i++ {
		sbs = append(sbs, newBusybox(t, m, CreateOptions{}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sb := sbs[i%len(sbs)]
			res, err := m.Run(ctx, sb.ID, ExecOptions{Command: "sh", Args: []string{"-c", fmt.Sprintf("echo out-%d; echo err-%d >&2", i, i)}})
			switch {
			case err != nil:
				errs <- fmt.Errorf("command %d: %v", i, err)
			case string(res.Stdout) != fmt.Sprintf("out-%d\n", i) || string(res.Stderr) != fmt.Sprintf("err-%d\n", i):
				errs <- fmt.Errorf("command %d: stdout %q stderr %q", i, res.Stdout, res.Stderr)
			case res.Command.State != CommandFinished || exitCode(res.Command) != 0:
				errs <- fmt.Errorf("command %d: state %s code %d", i, res.Command.State, exitCode(res.Command))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	is := is.New(t)
	for _, sb := range sbs {
		list, err := m.Commands(ctx, sb.ID)
		is.NoErr(err)
		is.Equal(len(list), 20) // every command recorded in its own sandbox
	}
}

func TestCommandHistoryAndDelete(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t, WithCommandHistory(3))
	sb := newBusybox(t, m, CreateOptions{})
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		res := run(t, m, sb.ID, ExecOptions{Command: "echo", Args: []string{fmt.Sprint(i)}})
		ids = append(ids, res.Command.ID)
	}
	list, err := m.Commands(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(len(list), 3) // capped
	is.Equal(list[0].ID, ids[2])
	_, err = m.Command(ctx, sb.ID, ids[0])
	is.True(errors.Is(err, ErrNotFound)) // oldest finished forgotten
	is.NoErr(m.Delete(ctx, sb.ID))
	_, err = m.Command(ctx, sb.ID, ids[4])
	is.True(errors.Is(err, ErrNotFound)) // deleted with the sandbox
}

func TestCommandsSurviveRestart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dir := t.TempDir()
	m, cli := newTestManager(t, WithStateDir(dir), WithOutputLimit(64))
	sb := newBusybox(t, m, CreateOptions{})
	ctx := context.Background()
	fin := run(t, m, sb.ID, sh("seq 1 100; printf err >&2; exit 7"))
	var cursor string
	err := m.FollowOutput(ctx, sb.ID, fin.Command.ID, "", func(r OutputRecord) error {
		if r.Type == RecordDropped { // seq's first 228 bytes are over the limit
			cursor = r.Cursor
			return errStopFollow
		}
		return nil
	})
	is.True(errors.Is(err, errStopFollow)) // fn's error comes back
	is.True(cursor != "")
	long, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1000"}})
	is.NoErr(err)
	// A record left "running" by a Manager that crashed (no Close).
	crashed := storedCommand{Command: Command{ID: "cmd_crashed", Name: "x", SandboxID: sb.ID, State: CommandRunning, StartedAt: time.Now()}}
	b, err := json.Marshal(crashed)
	is.NoErr(err)
	is.NoErr(m.store.Put(commandsBucket, sb.ID+"/cmd_crashed", b))
	is.NoErr(m.Close())
	_, err = m.Commands(ctx, sb.ID)
	is.True(errors.Is(err, ErrClosed)) // closed

	m2, err := New(ctx, append(modeOpts(), WithDockerClient(cli), WithNamespace(m.cfg.namespace), WithStateDir(dir), WithOutputLimit(64))...)
	is.NoErr(err)
	defer m2.Close()
	list, err := m2.Commands(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(len(list), 3)
	got, err := m2.Command(ctx, sb.ID, fin.Command.ID)
	is.NoErr(err)
	is.Equal(got.State, CommandFinished)
	is.Equal(exitCode(got), 7)
	out, err := m2.CommandOutput(ctx, sb.ID, fin.Command.ID)
	is.NoErr(err)
	is.Equal(out.Stdout, fin.Stdout) // capped output kept
	is.Equal(out.StdoutDropped, fin.StdoutDropped)
	is.Equal(string(out.Stderr), "err")
	lost, err := m2.Command(ctx, sb.ID, long.ID)
	is.NoErr(err)
	if m2.cfg.agent {
		is.Equal(lost.State, CommandRunning) // running at Close: the agent still runs it
		_, err = m2.KillCommand(ctx, sb.ID, long.ID, 9)
		is.NoErr(err)
		lost, err = m2.WaitCommand(ctx, sb.ID, long.ID)
		is.NoErr(err)
		is.Equal(lost.State, CommandKilled) // and the new Manager can kill it
	} else {
		is.Equal(lost.State, CommandFailed) // running at Close: recorded, not lost
		is.True(lost.Error != "")
	}
	lost, err = m2.Command(ctx, sb.ID, "cmd_crashed")
	is.NoErr(err)
	is.Equal(lost.State, CommandFailed) // running at a crash: recorded failed
	is.True(!lost.FinishedAt.IsZero())
	// A cursor from before the restart still resumes exactly.
	var rest []byte
	is.NoErr(m2.FollowOutput(ctx, sb.ID, fin.Command.ID, cursor, func(r OutputRecord) error {
		if r.Type == RecordStdout {
			rest = append(rest, r.Data...)
		}
		return nil
	}))
	is.Equal(rest, fin.Stdout) // exactly the kept bytes after the drop
}

func TestRunContextCancel(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	ctx := context.Background()

	// Cancel only once the command runs: a context that ends before Exec
	// has started it fails the call without a command.
	cctx, cancel := context.WithCancel(ctx)
	cancelWhenRunning(t, m, sb.ID, cancel)
	res, err := m.Run(cctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1000"}, KillOnCancel: true})
	cancel()
	is.True(errors.Is(err, context.Canceled)) // the context's error
	is.True(res != nil)
	done, err := m.WaitCommand(ctx, sb.ID, res.Command.ID)
	is.NoErr(err)
	is.Equal(done.State, CommandKilled) // KillOnCancel killed it

	cctx, cancel = context.WithCancel(ctx)
	cancelWhenRunning(t, m, sb.ID, cancel)
	res, err = m.Run(cctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1000"}})
	cancel()
	is.True(errors.Is(err, context.Canceled))
	is.True(res != nil)
	cur, err := m.Command(ctx, sb.ID, res.Command.ID)
	is.NoErr(err)
	is.Equal(cur.State, CommandRunning) // without KillOnCancel it keeps running
	_, err = m.KillCommand(ctx, sb.ID, res.Command.ID, 9)
	is.NoErr(err)

	wctx, wcancel := context.WithCancel(ctx)
	wcancel()
	c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1000"}})
	is.NoErr(err)
	_, err = m.WaitCommand(wctx, sb.ID, c.ID)
	is.True(errors.Is(err, context.Canceled)) // WaitCommand gives up, does not kill
	_, err = m.KillCommand(ctx, sb.ID, c.ID, 9)
	is.NoErr(err)
}

// cancelWhenRunning calls cancel once the sandbox has a running command, or
// when the test ends.
func cancelWhenRunning(t *testing.T, m *Manager, sandboxID string, cancel context.CancelFunc) {
	t.Helper()
	stop := make(chan struct{})
	finished := make(chan struct{})
	t.Cleanup(func() { close(stop); <-finished })
	go func() {
		defer close(finished)
		defer cancel()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			cmds, err := m.Commands(context.Background(), sandboxID)
			if err != nil {
				continue
			}
			for _, c := range cmds {
				if c.State == CommandRunning {
					return
				}
			}
		}
	}()
}

func TestParseSignal(t *testing.T) {
	is := is.New(t)
	for in, want := range map[string]int{"15": 15, "TERM": 15, "SIGTERM": 15, "kill": 9, "9": 9, "sigusr1": 10, "64": 64, " hup ": 1} {
		got, err := ParseSignal(in)
		is.NoErr(err)
		is.Equal(int(got), want) // parsed
	}
	for _, in := range []string{"", "0", "65", "-1", "TERMINATE", "SIG", "1.5"} {
		_, err := ParseSignal(in)
		is.True(errors.Is(err, ErrInvalid)) // rejected
	}
}

func TestParseStatAndCursor(t *testing.T) {
	is := is.New(t)
	ppid, state, start, err := parseStat("123 (a) b (c)) S 45 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0")
	is.NoErr(err)
	is.Equal(ppid, 45)
	is.Equal(state, byte('S'))
	is.Equal(start, uint64(98765))
	is.Equal(parseNSpid("Name:\tsh\nNSpid:\t10548\t8\n"), 8)
	p, err := parseCursor(encodeCursor(struct{ Stdout, Stderr int64 }{5, 7}))
	is.NoErr(err)
	is.Equal(p.Stdout, int64(5))
	is.Equal(p.Stderr, int64(7))
	for _, bad := range []string{"x", "c1.1", "c1.-1.0", "c2.1.1", "c1.a.b"} {
		_, err := parseCursor(bad)
		is.True(errors.Is(err, ErrInvalid))
	}
}

// TestCloseStopsCommandGoroutines checks that Close ends every goroutine
// the commands feature started: output pumps, stdin copies, followers. Not
// parallel, so other tests' goroutines do not count.
func TestCloseStopsCommandGoroutines(t *testing.T) {
	is := is.New(t)
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	ctx := context.Background()
	run(t, m, sb.ID, ExecOptions{Command: "true"}) // warm the client's connections
	base := runtime.NumGoroutine()

	pr, pw := io.Pipe() // a stdin reader that only ends when closed
	defer pw.Close()
	c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "cat", Stdin: pr})
	is.NoErr(err)
	_, err = m.Exec(ctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1000"}, OpenStdin: true})
	is.NoErr(err)
	followed := make(chan error, 1)
	go func() {
		followed <- m.FollowOutput(ctx, sb.ID, c.ID, "", func(OutputRecord) error { return nil })
	}()
	pw.Write([]byte("x"))
	waitUntil(t, func() bool {
		out, err := m.CommandOutput(ctx, sb.ID, c.ID)
		return err == nil && string(out.Stdout) == "x"
	})
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	pw.Close() // the stdin copy's Read returns; Close can finish
	is.NoErr(<-closed)
	ferr := <-followed // ended by Close: either cut off, or after the command was recorded failed
	is.True(ferr == nil || errors.Is(ferr, ErrClosed))
	waitUntil(t, func() bool { return runtime.NumGoroutine() <= base })
}
