//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/server"
	"github.com/opensbx/opensbx/internal/agent/wire"
	"github.com/opensbx/opensbx/internal/outbuf"
)

// TestExecArgvEnvCwd: arguments reach the program literally (no shell in
// between), env additions replace the agent's, HOME and OPENSBX_COMMAND_ID
// are set, cwd is used.
func TestExecArgvEnvCwd(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{Env: []string{"PATH=/usr/bin:/bin", "KEEP=base", "FOO=base"}})
	weird := []string{"a b", `"q"`, "'s'", "$(echo no)", "x;y", "new\nline", "*", ""}
	r := run(t, e.c, agent.ExecRequest{
		ID:   "cmd_argv",
		Argv: sh(`for a in "$@"; do printf '[%s]' "$a"; done; echo; echo "$FOO $KEEP $OPENSBX_COMMAND_ID $HOME"; pwd`, weird...),
		Env:  []string{"FOO=added", "EMPTY="},
		Cwd:  e.dir,
	})
	is.Equal(r.code(), 0) // exit code
	var want strings.Builder
	for _, a := range weird {
		fmt.Fprintf(&want, "[%s]", a)
	}
	home := "/" // the current user's passwd entry decides
	if u, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, l := range strings.Split(string(u), "\n") {
			f := strings.Split(l, ":")
			if len(f) >= 7 && f[2] == strconv.Itoa(os.Getuid()) {
				home = f[5]
				break
			}
		}
	}
	want.WriteString("\nadded base cmd_argv " + home + "\n" + e.dir + "\n")
	is.Equal(string(r.stdout), want.String()) // argv, env, cwd
	is.Equal(string(r.stderr), "")
	is.True(r.cmd.PID > 0)             // pid reported
	is.True(!r.cmd.StartedAt.IsZero()) // start time
	is.True(!r.cmd.FinishedAt.Before(r.cmd.StartedAt))

	r = run(t, e.c, agent.ExecRequest{Argv: sh(`echo "$HOME"`), Env: []string{"HOME=/given"}})
	is.Equal(string(r.stdout), "/given\n") // HOME given wins
}

// TestExecExitCodes: exit codes of programs, and of programs that cannot
// start, the way Docker exec gives them.
func TestExecExitCodes(t *testing.T) {
	e := newEnv(t, server.Config{})
	notExec := filepath.Join(e.dir, "script.txt")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\necho no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		req   agent.ExecRequest
		code  int
		inErr string // in the record's Error and on stderr; "" for a program that ran
	}{
		{"exit 3", agent.ExecRequest{Argv: sh("exit 3")}, 3, ""},
		{"exit 126 kept", agent.ExecRequest{Argv: sh("exit 126")}, 126, ""},
		{"killed by a signal", agent.ExecRequest{Argv: sh("kill -9 $$")}, 137, ""},
		{"not found", agent.ExecRequest{Argv: []string{"no-such-program"}}, 127, `exec: "no-such-program": executable file not found in $PATH`},
		{"missing path", agent.ExecRequest{Argv: []string{"/no/such/prog"}}, 127, `exec: "/no/such/prog": stat /no/such/prog: no such file or directory`},
		{"not executable", agent.ExecRequest{Argv: []string{notExec}}, 126, "permission denied"},
		{"a directory", agent.ExecRequest{Argv: []string{e.dir}}, 126, "is a directory"},
		{"bad cwd", agent.ExecRequest{Argv: []string{"true"}, Cwd: "/no/such/dir"}, 126, `chdir to cwd ("/no/such/dir") failed: no such file or directory`},
		{"cwd is a file", agent.ExecRequest{Argv: []string{"true"}, Cwd: notExec}, 126, "not a directory"},
		{"unknown user", agent.ExecRequest{Argv: []string{"true"}, User: "ghost"}, 126, "unable to find user ghost: no matching entries in passwd file"},
		{"unknown group", agent.ExecRequest{Argv: []string{"true"}, User: "0:ghosts"}, 126, "unable to find group ghosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			r := run(t, e.c, tc.req)
			is.Equal(r.code(), tc.code) // exit code
			if tc.inErr == "" {
				is.Equal(r.cmd.Error, "")
				return
			}
			is.True(strings.Contains(r.cmd.Error, tc.inErr))      // the record explains
			is.True(strings.Contains(string(r.stderr), tc.inErr)) // so does stderr
			is.True(strings.HasSuffix(string(r.stderr), "\n"))    // a whole line
			is.Equal(r.cmd.PID, 0)                                // never started
			is.Equal(r.cmd.State, agent.StateFinished)
		})
	}
}

// TestExecUser runs commands as another user (needs root).
func TestExecUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	is := is.New(t)
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/sh\n# comment\nbad line\nalice:x:4242:4343::/home/alice:/bin/sh\n"), 0o644)
	os.WriteFile(group, []byte("root:x:0:\nalices:x:4343:\nextra:x:4444:bob,alice\nother:x:4545:bob\n"), 0o644)
	e := newEnv(t, server.Config{PasswdFile: passwd, GroupFile: group, DefaultUser: "alice"})
	ids := func(user string) string {
		r := run(t, e.c, agent.ExecRequest{Argv: sh(`echo "$(id -u):$(id -g):$(id -G):$HOME"`), User: user})
		is.Equal(r.code(), 0) // id ran
		return strings.TrimSpace(string(r.stdout))
	}
	is.Equal(ids(""), "4242:4343:4343 4444:/home/alice")       // the default user, with supplementary groups
	is.Equal(ids("alice:extra"), "4242:4444:4444:/home/alice") // name:group: the groups that list alice
	is.Equal(ids("4242"), "4242:4343:4343 4444:/home/alice")   // uid with a passwd entry
	is.Equal(ids("5000:6000"), "5000:6000:6000:/")             // uid:gid without one
	is.Equal(ids("root"), "0:0:0:/root")
}

// TestOutputBinaryAndOrder: output is byte-exact (every byte value, a
// partial last line), and any follower sees the same interleaving of the
// two streams, whenever it joins.
func TestOutputBinaryAndOrder(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	argv, env := helperArgv(t, "binary")
	r := run(t, e.c, agent.ExecRequest{Argv: argv, Env: env})
	is.Equal(r.code(), 0)
	var wantOut, wantErr []byte
	all := make([]byte, 256)
	for j := range all {
		all[j] = byte(j)
	}
	for i := 0; i < 4; i++ {
		wantOut = append(wantOut, all...)
		wantErr = append(wantErr, all[i*64:i*64+64]...)
	}
	wantOut = append(wantOut, "partial"...)
	is.True(bytes.Equal(r.stdout, wantOut)) // stdout byte-exact
	is.True(bytes.Equal(r.stderr, wantErr)) // stderr byte-exact
	is.Equal(r.cmd.StdoutTotal, int64(len(wantOut)))
	is.Equal(r.cmd.StderrTotal, int64(len(wantErr)))

	late := follow(t, e.c, r.cmd.ID, outbuf.Pos{})
	is.Equal(runs(late.chunks), runs(r.chunks)) // same order across the streams
	// Resuming from every chunk end gives exactly the rest.
	for i, ch := range r.chunks {
		rest := follow(t, e.c, r.cmd.ID, ch.End)
		is.Equal(runs(rest.chunks), runs(r.chunks[i+1:])) // resume from a cursor
	}
}

// runs merges adjacent chunks of one stream: the order of the output
// across streams, independent of how it was cut into chunks.
func runs(chunks []outbuf.Chunk) []string {
	var out []string
	last := outbuf.Stream(-1)
	for _, ch := range chunks {
		s := fmt.Sprintf("%s:%q", ch.Stream, ch.Data)
		if ch.Dropped > 0 {
			s = fmt.Sprintf("%s:dropped %d", ch.Stream, ch.Dropped)
			last = -1
			out = append(out, s)
			continue
		}
		if ch.Stream == last {
			prev := out[len(out)-1]
			out[len(out)-1] = prev[:len(prev)-1] + strings.TrimPrefix(fmt.Sprintf("%q", ch.Data), `"`)
			continue
		}
		last = ch.Stream
		out = append(out, s)
	}
	return out
}

// TestOutputDropped: under a small output limit a follower from the start
// learns exactly how many bytes were evicted.
func TestOutputDropped(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	argv, env := helperArgv(t, "bytes", "10000")
	r := run(t, e.c, agent.ExecRequest{Argv: argv, Env: env, OutputLimit: 1000})
	is.Equal(r.code(), 0)
	// The live follower may have caught bytes before they were evicted;
	// a follower after the end cannot.
	late := follow(t, e.c, r.cmd.ID, outbuf.Pos{})
	is.Equal(len(late.chunks), 2) // dropped, then the kept bytes
	is.Equal(late.chunks[0].Dropped, int64(9000))
	is.Equal(late.chunks[0].Stream, outbuf.Stdout)
	is.Equal(late.chunks[0].End, outbuf.Pos{Stdout: 9000})
	is.Equal(string(late.stdout), strings.Repeat("x", 1000))
	is.Equal(late.chunks[1].End, outbuf.Pos{Stdout: 10000})
	// Every byte is accounted for by a live follower too.
	var seen int64
	for _, ch := range r.chunks {
		seen += ch.Dropped + int64(len(ch.Data))
	}
	is.Equal(seen, int64(10000))
	// From inside the kept window: no dropped record.
	mid := follow(t, e.c, r.cmd.ID, outbuf.Pos{Stdout: 9500})
	is.Equal(string(mid.stdout), strings.Repeat("x", 500))
	is.Equal(len(mid.chunks), 1)
	// A position beyond the end gives nothing but the exit.
	past := follow(t, e.c, r.cmd.ID, outbuf.Pos{Stdout: 1 << 40})
	is.Equal(len(past.chunks), 0)
	is.Equal(past.code(), 0)
}

// TestFollowLiveAndLate: a follower sees output as it is produced (before
// the command ends); several followers and late ones all get everything.
func TestFollowLiveAndLate(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	ctx := testCtx(t)
	cmd, err := e.c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: sh(`echo first; read line; echo "got $line"; echo err >&2`), OpenStdin: true})
	is.NoErr(err)
	is.Equal(cmd.State, agent.StateRunning)

	firstSeen := make(chan struct{})
	type res struct {
		out string
		cmd agent.Command
		err error
	}
	results := make(chan res, 3)
	for i := 0; i < 3; i++ {
		go func() {
			var out, errOut []byte
			once := i == 0
			end, err := e.c.Follow(ctx, cmd.ID, outbuf.Pos{}, func(ch outbuf.Chunk) error {
				if ch.Stream == outbuf.Stderr {
					errOut = append(errOut, ch.Data...)
					return nil
				}
				out = append(out, ch.Data...)
				if once && bytes.Contains(out, []byte("first\n")) {
					once = false
					close(firstSeen)
				}
				return nil
			})
			// Order across the two pipes is the order the agent read them,
			// not necessarily the order of the writes: compare per stream.
			results <- res{string(out) + "|" + string(errOut), end, err}
		}()
	}
	<-firstSeen // output arrives while the command waits for input
	n, err := e.c.Stdin(ctx, cmd.ID, strings.NewReader("hello\n"), true)
	is.NoErr(err)
	is.Equal(n, int64(6))
	for i := 0; i < 3; i++ {
		r := <-results
		is.NoErr(r.err)
		is.Equal(r.out, "first\ngot hello\n|err\n") // every follower
		is.Equal(*r.cmd.ExitCode, 0)
	}
	late := follow(t, e.c, cmd.ID, outbuf.Pos{})
	is.Equal(string(late.stdout)+"|"+string(late.stderr), "first\ngot hello\n|err\n") // late follower
	is.Equal(late.cmd.StdinClosed, true)
}

// TestFollowCancel: cancelling a follow returns promptly with the ctx's
// error; the command keeps running and can be followed again.
func TestFollowCancel(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	cmd, err := e.c.Exec(testCtx(t), agent.ExecRequest{ID: newID(), Argv: []string{"sleep", "1000"}})
	is.NoErr(err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = e.c.Follow(ctx, cmd.ID, outbuf.Pos{}, func(outbuf.Chunk) error { return nil })
	is.True(errors.Is(err, context.DeadlineExceeded)) // the ctx's error
	cmds, err := e.c.Commands(testCtx(t))
	is.NoErr(err)
	is.Equal(cmds[0].State, agent.StateRunning) // still running
	_, err = e.c.Signal(testCtx(t), cmd.ID, 9)
	is.NoErr(err)
	r := follow(t, e.c, cmd.ID, outbuf.Pos{})
	is.Equal(r.code(), 137)
	is.Equal(r.cmd.Signal, 9)

	stop := errors.New("stop")
	_, err = e.c.Follow(testCtx(t), cmd.ID, outbuf.Pos{}, func(outbuf.Chunk) error { return stop })
	is.NoErr(err) // no output at all: fn never called

	r = run(t, e.c, agent.ExecRequest{Argv: []string{"echo", "x"}})
	_, err = e.c.Follow(testCtx(t), r.cmd.ID, outbuf.Pos{}, func(outbuf.Chunk) error { return stop })
	is.Equal(err, stop) // fn's error comes back as it is
}

// TestStdin: open stdin takes several writes and a close; stdin of other
// commands is refused.
func TestStdin(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	ctx := testCtx(t)
	cmd, err := e.c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"cat"}, OpenStdin: true})
	is.NoErr(err)
	_, err = e.c.Stdin(ctx, cmd.ID, strings.NewReader("hello"), false)
	is.NoErr(err)
	big := bytes.Repeat([]byte("0123456789"), 50_000) // several frames and windows
	n, err := e.c.Stdin(ctx, cmd.ID, bytes.NewReader(big), false)
	is.NoErr(err)
	is.Equal(n, int64(len(big)))
	_, err = e.c.Stdin(ctx, cmd.ID, nil, true) // just close
	is.NoErr(err)
	r := follow(t, e.c, cmd.ID, outbuf.Pos{})
	is.Equal(r.code(), 0)
	is.True(bytes.Equal(r.stdout, append([]byte("hello"), big...))) // everything, in order

	_, err = e.c.Stdin(ctx, cmd.ID, strings.NewReader("late"), false)
	is.True(errors.Is(err, agent.ErrConflict)) // closed stdin

	r = run(t, e.c, agent.ExecRequest{Argv: []string{"cat"}})
	is.Equal(r.code(), 0) // without open stdin, stdin is /dev/null
	_, err = e.c.Stdin(ctx, r.cmd.ID, strings.NewReader("x"), false)
	is.True(errors.Is(err, agent.ErrConflict)) // not started with open stdin

	_, err = e.c.Stdin(ctx, "cmd_nope", strings.NewReader("x"), false)
	is.True(errors.Is(err, agent.ErrNotFound)) // unknown command

	// Concurrent stdin calls take turns: each one's data stays together.
	cmd, err = e.c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"cat"}, OpenStdin: true})
	is.NoErr(err)
	const size = 300_000
	errs := make(chan error, 2)
	for _, b := range []byte("ab") {
		go func() {
			_, err := e.c.Stdin(ctx, cmd.ID, bytes.NewReader(bytes.Repeat([]byte{b}, size)), false)
			errs <- err
		}()
	}
	is.NoErr(<-errs)
	is.NoErr(<-errs)
	_, err = e.c.Stdin(ctx, cmd.ID, nil, true)
	is.NoErr(err)
	r = follow(t, e.c, cmd.ID, outbuf.Pos{})
	ab := strings.Repeat("a", size) + strings.Repeat("b", size)
	ba := strings.Repeat("b", size) + strings.Repeat("a", size)
	is.True(string(r.stdout) == ab || string(r.stdout) == ba) // not interleaved

	// A blocked write (the command does not read) ends with the ctx.
	cmd, err = e.c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"sleep", "1000"}, OpenStdin: true})
	is.NoErr(err)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = e.c.Stdin(short, cmd.ID, bytes.NewReader(make([]byte, 4<<20)), false)
	is.True(errors.Is(err, context.DeadlineExceeded)) // the ctx's error
	_, err = e.c.Signal(ctx, cmd.ID, 9)
	is.NoErr(err)
	is.Equal(follow(t, e.c, cmd.ID, outbuf.Pos{}).code(), 137)
}

// TestSignalTree: a signal reaches a shell's child that the shell does not
// forward it to, and a child in a session of its own, while an identical
// command stays untouched.
func TestSignalTree(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	ctx := testCtx(t)
	// The shell catches TERM but only runs its trap once sleep has ended;
	// a second sleep runs in a session of its own (setsid).
	script := `trap 'echo got-term' TERM; setsid sleep 1000 & echo "$!"; sleep 1000; echo after; wait`
	if _, err := os.Stat("/usr/bin/setsid"); err != nil {
		script = `trap 'echo got-term' TERM; sleep 1000 & echo "$!"; sleep 1000; echo after; wait`
	}
	var ids []string
	for range 2 {
		c, err := e.c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: sh(script)})
		is.NoErr(err)
		ids = append(ids, c.ID)
	}
	// Wait until both have printed the background pid.
	bgPID := func(id string) int {
		var out []byte
		stop := errors.New("seen")
		_, err := e.c.Follow(ctx, id, outbuf.Pos{}, func(ch outbuf.Chunk) error {
			out = append(out, ch.Data...)
			if bytes.Contains(out, []byte("\n")) {
				return stop
			}
			return nil
		})
		is.Equal(err, stop)
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		is.NoErr(err)
		return pid
	}
	bg0, bg1 := bgPID(ids[0]), bgPID(ids[1])
	waitForChild(t, bg0)
	waitForChild(t, bg1)

	cmd, err := e.c.Signal(ctx, ids[0], int(syscall.SIGTERM))
	is.NoErr(err)
	is.Equal(cmd.Signal, 15)
	r := follow(t, e.c, ids[0], outbuf.Pos{})
	is.True(strings.Contains(string(r.stdout), "got-term")) // the shell lived to run its trap
	is.True(strings.Contains(string(r.stdout), "after"))    // after its child ended
	is.Equal(r.code(), 0)
	waitGone(t, bg0) // the child in its own session too

	cmds, err := e.c.Commands(ctx)
	is.NoErr(err)
	for _, c := range cmds {
		if c.ID == ids[1] {
			is.Equal(c.State, agent.StateRunning) // the identical command is untouched
		}
	}
	is.True(alive(bg1)) // and so is its background child

	_, err = e.c.Signal(ctx, ids[0], 15)
	is.True(errors.Is(err, agent.ErrConflict)) // finished
	_, err = e.c.Signal(ctx, ids[1], 0)
	is.True(errors.Is(err, agent.ErrInvalid)) // bad signal
	_, err = e.c.Signal(ctx, ids[1], 65)
	is.True(errors.Is(err, agent.ErrInvalid)) // bad signal
	_, err = e.c.Signal(ctx, "cmd_nope", 15)
	is.True(errors.Is(err, agent.ErrNotFound)) // unknown

	_, err = e.c.Signal(ctx, ids[1], int(syscall.SIGKILL))
	is.NoErr(err)
	is.Equal(follow(t, e.c, ids[1], outbuf.Pos{}).code(), 137) // killed
	waitGone(t, bg1)
}

// TestSignalStopCont: a stop signal leaves the tree stopped, SIGCONT
// resumes it.
func TestSignalStopCont(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	ctx := testCtx(t)
	cmd, err := e.c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"sleep", "1000"}})
	is.NoErr(err)
	_, err = e.c.Signal(ctx, cmd.ID, int(syscall.SIGSTOP))
	is.NoErr(err)
	waitState(t, cmd.PID, 'T')
	_, err = e.c.Signal(ctx, cmd.ID, int(syscall.SIGCONT))
	is.NoErr(err)
	waitState(t, cmd.PID, 'S')
	_, err = e.c.Signal(ctx, cmd.ID, int(syscall.SIGKILL))
	is.NoErr(err)
	is.Equal(follow(t, e.c, cmd.ID, outbuf.Pos{}).code(), 137)
}

func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

func alive(pid int) bool {
	s := procState(pid)
	return s != 0 && s != 'Z' && s != 'X'
}

// waitFor polls cond until it holds; the test fails after a minute.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitForChild waits until pid runs sleep (the shell has exec'd it).
func waitForChild(t testing.TB, pid int) {
	waitFor(t, fmt.Sprintf("pid %d to run sleep", pid), func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		return strings.TrimSpace(string(b)) == "sleep"
	})
}

func waitGone(t testing.TB, pid int) {
	waitFor(t, fmt.Sprintf("pid %d to end", pid), func() bool { return !alive(pid) })
}

func waitState(t testing.TB, pid int, state byte) {
	waitFor(t, fmt.Sprintf("pid %d in state %c", pid, state), func() bool { return procState(pid) == state })
}

// TestListForget: the agent lists what it knows, forgets finished commands
// on request, and keeps only the newest finished ones.
func TestListForget(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{MaxFinished: 3})
	ctx := testCtx(t)
	long, err := e.c.Exec(ctx, agent.ExecRequest{ID: "cmd_long", Argv: []string{"sleep", "1000"}})
	is.NoErr(err)
	for i := range 5 {
		r := run(t, e.c, agent.ExecRequest{ID: fmt.Sprintf("cmd_quick%d", i), Argv: sh(fmt.Sprintf("exit %d", i))})
		is.Equal(r.code(), i)
	}
	cmds, err := e.c.Commands(ctx)
	is.NoErr(err)
	var got []string
	for _, c := range cmds {
		got = append(got, c.ID+":"+string(c.State))
	}
	is.Equal(got, []string{"cmd_long:running", "cmd_quick2:finished", "cmd_quick3:finished", "cmd_quick4:finished"}) // by start, oldest finished dropped

	is.True(errors.Is(e.c.Forget(ctx, long.ID), agent.ErrConflict))      // running
	is.True(errors.Is(e.c.Forget(ctx, "cmd_quick0"), agent.ErrNotFound)) // dropped already
	is.NoErr(e.c.Forget(ctx, "cmd_quick3"))
	_, err = e.c.Follow(ctx, "cmd_quick3", outbuf.Pos{}, func(outbuf.Chunk) error { return nil })
	is.True(errors.Is(err, agent.ErrNotFound)) // forgotten

	_, err = e.c.Exec(ctx, agent.ExecRequest{ID: long.ID, Argv: []string{"true"}})
	is.True(errors.Is(err, agent.ErrConflict)) // duplicate id
	for _, bad := range []agent.ExecRequest{
		{ID: "", Argv: []string{"true"}},
		{ID: "bad id", Argv: []string{"true"}},
		{ID: newID()},
		{ID: newID(), Argv: []string{""}},
		{ID: newID(), Argv: []string{"true"}, Env: []string{"NOEQUALS"}},
		{ID: newID(), Argv: []string{"true"}, Env: []string{"=x"}},
		{ID: newID(), Argv: []string{"true"}, Cwd: "relative"},
		{ID: newID(), Argv: []string{"tr\x00ue"}},
		{ID: newID(), Argv: []string{"true"}, OutputLimit: -1},
	} {
		_, err := e.c.Exec(ctx, bad)
		is.True(errors.Is(err, agent.ErrInvalid)) // refused
	}
	_, err = e.c.Signal(ctx, long.ID, 9)
	is.NoErr(err)
}

// TestRunningCap: the agent refuses commands beyond MaxRunning.
func TestRunningCap(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{MaxRunning: 2})
	ctx := testCtx(t)
	for range 2 {
		_, err := e.c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"sleep", "1000"}})
		is.NoErr(err)
	}
	_, err := e.c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"true"}})
	is.True(errors.Is(err, agent.ErrConflict)) // full
	// Server close (at test end) kills the sleeps.
}

// TestExecFollow: one stream starts the command and carries its output to
// the exit; started comes first.
func TestExecFollow(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	ctx := testCtx(t)
	var events []string
	end, err := e.c.ExecFollow(ctx, agent.ExecRequest{ID: "cmd_ef", Argv: sh("echo out; echo err >&2; exit 4")},
		func(c agent.Command) {
			events = append(events, "started:"+string(c.State))
			is.True(c.PID > 0)
		},
		func(ch outbuf.Chunk) error {
			events = append(events, ch.Stream.String()+":"+string(ch.Data))
			return nil
		})
	is.NoErr(err)
	is.Equal(*end.ExitCode, 4)
	is.Equal(events[0], "started:running") // before any output
	sort.Strings(events[1:])               // the two pipes' order is the agent's
	is.Equal(events[1:], []string{"stderr:err\n", "stdout:out\n"})
	r := follow(t, e.c, "cmd_ef", outbuf.Pos{})
	is.Equal(string(r.stdout), "out\n") // kept for later followers

	var got agent.Command
	end, err = e.c.ExecFollow(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"no-such-program"}}, func(c agent.Command) { got = c }, func(ch outbuf.Chunk) error {
		is.True(strings.Contains(string(ch.Data), "executable file not found"))
		return nil
	})
	is.NoErr(err)
	is.Equal(got.State, agent.StateFinished) // started and finished at once
	is.Equal(*end.ExitCode, 127)

	_, err = e.c.ExecFollow(ctx, agent.ExecRequest{ID: "cmd_ef", Argv: []string{"true"}}, nil, func(outbuf.Chunk) error { return nil })
	is.True(errors.Is(err, agent.ErrConflict)) // a known id

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = e.c.ExecFollow(short, agent.ExecRequest{ID: "cmd_efsleep", Argv: []string{"sleep", "1000"}}, nil, func(outbuf.Chunk) error { return nil })
	is.True(errors.Is(err, context.DeadlineExceeded))
	cmds, err := e.c.Commands(ctx)
	is.NoErr(err)
	is.Equal(cmds[len(cmds)-1].State, agent.StateRunning) // still running
	_, err = e.c.Signal(ctx, "cmd_efsleep", 9)
	is.NoErr(err)
}

// TestExecFollowStartHold: with StartHold the first answer waits for a
// short command's end (one write of start, output and end), and for a long
// one no longer than the hold; a hold beyond the limit is refused.
func TestExecFollowStartHold(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	ctx := testCtx(t)
	var first agent.Command
	end, err := e.c.ExecFollow(ctx, agent.ExecRequest{ID: newID(), Argv: sh("echo hi"), StartHold: wire.MaxStartHold},
		func(c agent.Command) { first = c }, func(outbuf.Chunk) error { return nil })
	is.NoErr(err)
	is.Equal(first.State, agent.StateFinished) // held until the end
	is.Equal(*end.ExitCode, 0)

	begun := time.Now()
	var held time.Duration
	id := newID()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = e.c.ExecFollow(short, agent.ExecRequest{ID: id, Argv: []string{"sleep", "1000"}, StartHold: 20 * time.Millisecond},
		func(c agent.Command) {
			held = time.Since(begun)
			first = c
			cancel() // seen: stop following
		}, func(outbuf.Chunk) error { return nil })
	is.True(errors.Is(err, context.Canceled))
	is.Equal(first.State, agent.StateRunning) // answered while it runs, once the hold passed
	t.Logf("answered after %v", held)
	_, err = e.c.Signal(ctx, id, 9)
	is.NoErr(err)

	_, err = e.c.ExecFollow(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"true"}, StartHold: time.Second}, nil, func(outbuf.Chunk) error { return nil })
	is.True(errors.Is(err, agent.ErrInvalid)) // over MaxStartHold
}
