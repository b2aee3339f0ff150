package sandboxtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"go.uber.org/goleak"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/sandboxtest"
)

func TestExecHelpers(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	sb := sandboxtest.New(t, busybox, sandboxtest.Env("GREETING=hello"))

	stdout, stderr, code := sb.Exec("echo", "hi", "there")
	is.Equal(stdout, "hi there\n")
	is.Equal(stderr, "")
	is.Equal(code, 0)

	stdout, stderr, code = sb.Exec("sh", "-c", "echo out; echo err >&2; exit 3")
	is.Equal(stdout, "out\n")
	is.Equal(stderr, "err\n")
	is.Equal(code, 3) // a non-zero exit is a result, not a failure

	_, _, code = sb.Exec("no-such-program")
	is.Equal(code, 127) // like a shell

	r := sb.Run(opensbx.ExecOptions{Command: "sh", Args: []string{"-c", "pwd; echo $GREETING $X"}, Cwd: "/tmp", Env: map[string]string{"X": "world"}})
	is.Equal(r.Stdout, "/tmp\nhello world\n") // cwd, sandbox env and command env
	is.Equal(r.ExitCode, 0)
	is.True(r.Command != nil && r.Command.State == opensbx.CommandFinished)

	cmd := sb.Start(opensbx.ExecOptions{Command: "sleep", Args: []string{"600"}})
	is.Equal(cmd.State, opensbx.CommandRunning) // Start returns at once

	// A transport error (here: the sandbox is gone) fails the test.
	rec := &recorder{TB: t}
	other := sandboxtest.New(rec, busybox)
	is.NoErr(other.Manager().Delete(context.Background(), other.ID()))
	other.Exec("true")
	is.Equal(len(rec.fatals), 1)
	is.True(strings.Contains(rec.fatals[0], `run ["true"] in sandbox `+other.Name())) // names the command and sandbox
	is.True(strings.Contains(rec.fatals[0], "not found"))                             // and the cause
}

func TestWaitExec(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	sb := sandboxtest.New(t, busybox)

	sb.Start(opensbx.ExecOptions{Command: "sh", Args: []string{"-c", "sleep 1; touch /tmp/ready"}})
	is.NoErr(sandboxtest.ForExec(opensbx.ExecOptions{Command: "test", Args: []string{"-f", "/tmp/ready"}}).
		WithTimeout(30*time.Second).WaitUntilReady(ctx, sb)) // becomes ready

	failing := opensbx.ExecOptions{Command: "sh", Args: []string{"-c", "echo not yet; echo bad >&2; exit 2"}}
	is.NoErr(sandboxtest.ForExec(failing).WithExitCode(2).WithTimeout(30*time.Second).WaitUntilReady(ctx, sb)) // another code

	msg := waitErr(t, sandboxtest.ForExec(failing).WithTimeout(time.Second).WaitUntilReady(ctx, sb))
	t.Log(msg)
	is.True(strings.Contains(msg, `wait for command ["sh" "-c" "echo not yet; echo bad >&2; exit 2"] to exit with code 0: timed out after 1s`)) // what
	is.True(strings.Contains(msg, `last seen: exit code 2, stdout "not yet\n", stderr "bad\n"`))                                                // last run

	hang := opensbx.ExecOptions{Command: "sh", Args: []string{"-c", "echo waiting; sleep 600"}}
	msg = waitErr(t, sandboxtest.ForExec(hang).WithTimeout(time.Second).WaitUntilReady(ctx, sb))
	t.Log(msg)
	is.True(strings.Contains(msg, `last seen: still running when the wait ended (killed), stdout "waiting\n"`)) // a hanging run

	// A stopped sandbox ends the wait at once, not after the timeout.
	_, err := sb.Manager().Stop(ctx, sb.ID())
	is.NoErr(err)
	start := time.Now()
	err = sandboxtest.ForExec(opensbx.ExecOptions{Command: "true"}).WithTimeout(time.Minute).WaitUntilReady(ctx, sb)
	is.True(err != nil)
	is.True(errors.Is(err, opensbx.ErrConflict)) // the Manager's answer
	is.True(time.Since(start) < 30*time.Second)  // gave up without waiting out the minute
}

func TestWaitCommandOutput(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	sb := sandboxtest.New(t, busybox)

	server := opensbx.ExecOptions{Command: "sh", Args: []string{"-c", "echo starting; sleep 1; echo 'server listening on :8080'; sleep 600"}}
	is.NoErr(sandboxtest.ForCommandOutput(server, `listening on :\d+`).WithTimeout(30*time.Second).WaitUntilReady(ctx, sb))
	cmds, err := sb.Manager().Commands(ctx, sb.ID())
	is.NoErr(err)
	running := 0
	for _, c := range cmds {
		if c.State == opensbx.CommandRunning {
			running++
		}
	}
	is.Equal(running, 1) // the matched command keeps running

	sb.WriteFile("/tmp/app.log", []byte("boot\nready\n"))
	follow := opensbx.ExecOptions{Command: "tail", Args: []string{"-f", "/tmp/app.log"}}
	is.NoErr(sandboxtest.ForCommandOutput(follow, `(?m)^ready$`).WithTimeout(30*time.Second).WaitUntilReady(ctx, sb)) // a log file

	booting := opensbx.ExecOptions{Command: "sh", Args: []string{"-c", "echo booting; sleep 600"}}
	msg := waitErr(t, sandboxtest.ForCommandOutput(booting, "ready").WithTimeout(time.Second).WaitUntilReady(ctx, sb))
	t.Log(msg)
	is.True(strings.Contains(msg, `wait for output of command ["sh" "-c" "echo booting; sleep 600"] to match "ready": timed out after 1s`)) // what
	is.True(strings.Contains(msg, `last seen: still running without a match (killed); output "booting\n"`))                                 // output so far

	msg = waitErr(t, sandboxtest.ForCommandOutput(opensbx.ExecOptions{Command: "echo", Args: []string{"nope"}}, "ready").
		WithTimeout(time.Second).WaitUntilReady(ctx, sb))
	t.Log(msg)
	is.True(strings.Contains(msg, `last seen: exited with code 0 without a match; output "nope\n"`)) // a command that ends

	err = sandboxtest.ForCommandOutput(booting, "(").WaitUntilReady(ctx, sb)
	is.True(err != nil && strings.Contains(err.Error(), "bad pattern")) // fails at once
}

// TestNoGoroutineLeak: once a test's cleanups ran, nothing New, the
// helpers or the wait strategies started is left running.
func TestNoGoroutineLeak(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Run("inner", func(t *testing.T) {
		sb := httpd(t, sandboxtest.WaitFor(
			sandboxtest.ForListeningPort("8080").WithTimeout(30*time.Second),
			sandboxtest.ForHTTP("/").WithStatus(404).WithTimeout(30*time.Second),
			sandboxtest.ForCommandOutput(opensbx.ExecOptions{Command: "echo", Args: []string{"up"}}, "up").WithTimeout(30*time.Second),
			sandboxtest.ForExec(opensbx.ExecOptions{Command: "true"}).WithTimeout(30*time.Second),
		))
		sb.Exec("true")
		sb.Start(opensbx.ExecOptions{Command: "sleep", Args: []string{"600"}})
	})
	goleak.VerifyNone(t, ignore)
}
