//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"
	"go.uber.org/goleak"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/server"
	"github.com/opensbx/opensbx/internal/outbuf"
)

// helperEnv selects a helper mode of the test binary (see TestMain).
const helperEnv = "OPENSBX_AGENT_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[1:]))
	}
	code := m.Run()
	removeBuilt()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	if err := sweepContainers(); err != nil {
		fmt.Fprintln(os.Stderr, "sweep test containers:", err)
		code = 1
	}
	os.Exit(code)
}

// helper runs the test binary as a small program for the agent to run.
func helper(mode string, args []string) int {
	switch mode {
	case "binary": // every byte value, interleaved on both streams, no final newline
		for i := 0; i < 4; i++ {
			b := make([]byte, 256)
			for j := range b {
				b[j] = byte(j)
			}
			os.Stdout.Write(b)
			os.Stderr.Write(b[i*64 : i*64+64])
		}
		os.Stdout.Write([]byte("partial"))
		return 0
	case "bytes": // N bytes 'x' on stdout
		var n int
		fmt.Sscan(args[0], &n)
		os.Stdout.Write(bytes.Repeat([]byte("x"), n))
		return 0
	case "dial": // dial an agent socket, print the handshake byte
		c, err := net.Dial("unix", args[0])
		if err != nil {
			fmt.Println("dial error:", err)
			return 1
		}
		defer c.Close()
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			fmt.Println("read error:", err)
			return 1
		}
		fmt.Printf("%c\n", b[0])
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

// helperArgv is the argv that runs the test binary in a helper mode; env
// is the environment addition selecting it.
func helperArgv(t testing.TB, mode string, args ...string) (argv []string, env []string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{exe}, args...), []string{helperEnv + "=" + mode}
}

// socketpair returns the two ends of a connected unix stream socket pair.
func socketpair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// env is a Client connected in-process to a Server that runs real
// commands on this host.
type env struct {
	c   *agent.Client
	srv *server.Server
	dir string // a temporary directory for the test's files
}

// newEnv starts a Server with cfg and a Client connected to it. Both are
// closed when the test ends.
func newEnv(t testing.TB, cfg server.Config) *env {
	t.Helper()
	return newEnvConn(t, cfg, nil)
}

// newEnvConn is newEnv with the server's end of the connection passed
// through wrap first (nil: as it is).
func newEnvConn(t testing.TB, cfg server.Config, wrap func(net.Conn) net.Conn) *env {
	t.Helper()
	// Made first, so that it is removed last: after the server (and any
	// write it is finishing) is done.
	dir := t.TempDir()
	a, b := socketpair(t)
	if wrap != nil {
		b = wrap(b)
	}
	srv := server.New(cfg)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.ServeConn(b)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := agent.NewClient(ctx, a)
	if err != nil {
		srv.Close()
		<-served
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
		<-served
	})
	return &env{c: c, srv: srv, dir: dir}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// result is a command's collected output and end.
type result struct {
	cmd            agent.Command
	stdout, stderr []byte
	chunks         []outbuf.Chunk
}

func (r result) code() int {
	if r.cmd.ExitCode == nil {
		return -1
	}
	return *r.cmd.ExitCode
}

// follow collects the output of command id from pos to its end.
func follow(t testing.TB, c *agent.Client, id string, pos outbuf.Pos) result {
	t.Helper()
	var r result
	var err error
	r.cmd, err = c.Follow(testCtx(t), id, pos, func(ch outbuf.Chunk) error {
		r.chunks = append(r.chunks, ch)
		if ch.Stream == outbuf.Stderr {
			r.stderr = append(r.stderr, ch.Data...)
		} else {
			r.stdout = append(r.stdout, ch.Data...)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("follow %s: %v", id, err)
	}
	return r
}

var idSeq struct {
	sync.Mutex
	n int
}

func newID() string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idSeq.n++
	return fmt.Sprintf("cmd_test%06d", idSeq.n)
}

// run starts req (a fresh id unless set) and follows it to the end.
func run(t testing.TB, c *agent.Client, req agent.ExecRequest) result {
	t.Helper()
	if req.ID == "" {
		req.ID = newID()
	}
	cmd, err := c.Exec(testCtx(t), req)
	if err != nil {
		t.Fatalf("exec %q: %v", req.Argv, err)
	}
	if cmd.ID != req.ID {
		t.Fatalf("exec gave id %q, want %q", cmd.ID, req.ID)
	}
	return follow(t, c, req.ID, outbuf.Pos{})
}

func sh(script string, args ...string) []string {
	return append([]string{"/bin/sh", "-c", script, "sh"}, args...)
}

func TestSmokeEcho(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	r := run(t, e.c, agent.ExecRequest{Argv: []string{"echo", "hi"}})
	is.Equal(string(r.stdout), "hi\n") // output
	is.Equal(r.code(), 0)              // exit code
	is.Equal(r.cmd.State, agent.StateFinished)
	is.True(!strings.Contains(string(r.stderr), "x"))
}
