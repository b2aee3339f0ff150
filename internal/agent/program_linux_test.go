//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/server"
	"github.com/opensbx/opensbx/internal/agent/wire"
	"github.com/opensbx/opensbx/internal/outbuf"
)

// The opensbx-agent program, built once per test binary from this tree
// into a world-readable directory (so that other users may run it).
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func agentBinary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "opensbx-agent-test-")
		if built.err != nil {
			return
		}
		if built.err = os.Chmod(built.dir, 0o755); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "opensbx-agent")
		cmd := exec.Command("go", "build", "-trimpath", "-o", built.path, "github.com/opensbx/opensbx/internal/agent/cmd/opensbx-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = errors.New("go build opensbx-agent: " + err.Error() + "\n" + string(out))
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

func removeBuilt() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// serveSocket serves a Server of cfg on a fresh abstract socket until the
// test ends, and returns the socket's name.
func serveSocket(t *testing.T, cfg server.Config) string {
	t.Helper()
	sock := socketName()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(cfg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return sock
}

// dialSocket connects to the agent socket sock and reads its handshake byte.
func dialSocket(t *testing.T, sock string) (net.Conn, byte) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatal(err)
	}
	return c, b[0]
}

func socketName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "@opensbx-agent-test-" + hex.EncodeToString(b)
}

// pipeConn is a relay's stdout and stdin as one connection.
type pipeConn struct {
	r io.ReadCloser
	w io.WriteCloser
}

func (p pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p pipeConn) Close() error {
	p.w.Close()
	return p.r.Close()
}

// syncBuffer is a bytes.Buffer safe for a writing process and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs `opensbx-agent serve` on a fresh socket; it is stopped
// with SIGKILL when the test ends unless the test waited for it.
func startServe(t testing.TB, args ...string) (*exec.Cmd, string, *syncBuffer) {
	t.Helper()
	sock := socketName()
	cmd := exec.Command(agentBinary(t), append([]string{"serve", "-socket", sock}, args...)...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, sock, stderr
}

// waitListening waits until something accepts on sock.
func waitListening(t testing.TB, sock string) {
	waitFor(t, "the agent to listen on "+sock, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// connectClient runs `opensbx-agent connect` and opens a Client over its
// stdin and stdout.
func connectClient(t testing.TB, sock string) (*agent.Client, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(agentBinary(t), "connect", "-socket", sock)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := agent.NewClient(testCtx(t), pipeConn{stdout, stdin})
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	return c, cmd
}

func exitCode(t testing.TB, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("not an exit: %v", err)
	}
	if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}

// TestProgramServeConnect: the program's daemon and relay, end to end on
// this host: a session through the relay, several relays at once, the
// relay's exit when the client leaves, and a prompt exit on SIGTERM.
func TestProgramServeConnect(t *testing.T) {
	is := is.New(t)
	serve, sock, stderr := startServe(t)
	waitListening(t, sock)
	c, relay := connectClient(t, sock)
	info := c.Info()
	is.Equal(info.Protocol, wire.ProtocolVersion)
	is.Equal(info.PID, serve.Process.Pid)
	exe, err := os.ReadFile(agentBinary(t))
	is.NoErr(err)
	sum := sha256.Sum256(exe)
	is.Equal(info.Version, hex.EncodeToString(sum[:])) // the hex SHA-256 of the program

	r := run(t, c, agent.ExecRequest{Argv: []string{"echo", "through", "the relay"}})
	is.Equal(string(r.stdout), "through the relay\n")
	is.Equal(r.code(), 0)

	c2, relay2 := connectClient(t, sock) // a second session sees the same commands
	is.Equal(c2.Info().Instance, info.Instance)
	cmds, err := c2.Commands(testCtx(t))
	is.NoErr(err)
	is.Equal(len(cmds), 1)
	is.Equal(cmds[0].ID, r.cmd.ID)
	late := follow(t, c2, r.cmd.ID, outbuf.Pos{})
	is.Equal(string(late.stdout), "through the relay\n") // replayed to the other session

	is.NoErr(c.Close())
	is.Equal(exitCode(t, relay.Wait()), 0) // the relay ends with its client
	is.NoErr(c2.Close())
	is.Equal(exitCode(t, relay2.Wait()), 0)

	is.NoErr(serve.Process.Signal(syscall.SIGTERM))
	is.Equal(exitCode(t, serve.Wait()), 143) // SIGTERM: exit 128+15
	is.Equal(stderr.String(), "")            // nothing logged
}

// TestProgramAgentDies: when the daemon dies, the relay ends and so does
// the session; calls fail instead of hanging.
func TestProgramAgentDies(t *testing.T) {
	is := is.New(t)
	serve, sock, _ := startServe(t)
	waitListening(t, sock)
	c, relay := connectClient(t, sock)
	cmd, err := c.Exec(testCtx(t), agent.ExecRequest{ID: newID(), Argv: []string{"sleep", "1000"}})
	is.NoErr(err)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Follow(context.Background(), cmd.ID, outbuf.Pos{}, func(outbuf.Chunk) error { return nil })
		errc <- err
	}()
	is.NoErr(serve.Process.Kill())
	serve.Wait()
	is.True(errors.Is(<-errc, agent.ErrSessionClosed)) // the follow in flight
	<-c.Done()
	_, err = c.Stat(testCtx(t), "/")
	is.True(errors.Is(err, agent.ErrSessionClosed))
	relay.Wait()
	c.Close()
	syscall.Kill(cmd.PID, syscall.SIGKILL) // the orphaned sleep
}

// TestProgramConnectErrors: the relay's exit codes without an agent, and
// for a user the agent refuses.
func TestProgramConnectErrors(t *testing.T) {
	is := is.New(t)
	var stderr bytes.Buffer
	cmd := exec.Command(agentBinary(t), "connect", "-socket", socketName())
	cmd.Stderr = &stderr
	is.Equal(exitCode(t, cmd.Run()), agent.ExitNoAgent)                              // no agent
	is.True(strings.Contains(stderr.String(), "the sandbox's agent is not running")) // says so

	if os.Getuid() != 0 {
		t.Skip("the refusal needs root to run the relay as another user")
	}
	_, sock, serveErr := startServe(t, "-v")
	waitListening(t, sock)
	stderr.Reset()
	cmd = exec.Command(agentBinary(t), "connect", "-socket", sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	cmd.Stderr = &stderr
	is.Equal(exitCode(t, cmd.Run()), agent.ExitRefused) // not root
	is.True(strings.Contains(stderr.String(), "only root"))
	waitFor(t, "the refusal to be logged", func() bool { return strings.Contains(serveErr.String(), "refused a connection") })
}

// TestProgramMainCommand: serve supervises a main command: its exit status
// becomes the agent's, SIGTERM is forwarded to it, and one that cannot
// start exits like a shell would.
func TestProgramMainCommand(t *testing.T) {
	is := is.New(t)
	serve, _, _ := startServe(t, "--", "/bin/sh", "-c", "exit 7")
	is.Equal(exitCode(t, serve.Wait()), 7) // the main command's status

	serve, sock, _ := startServe(t, "--", "/bin/sh", "-c", `trap 'echo term; exit 42' TERM; while :; do sleep 0.01; done`)
	waitListening(t, sock)
	c, relay := connectClient(t, sock) // the agent serves while the main command runs
	r := run(t, c, agent.ExecRequest{Argv: []string{"true"}})
	is.Equal(r.code(), 0)
	is.NoErr(serve.Process.Signal(syscall.SIGTERM))
	is.Equal(exitCode(t, serve.Wait()), 42) // forwarded; the trap's status
	c.Close()
	relay.Wait()

	serve, _, serveErr := startServe(t, "--", "no-such-program")
	is.Equal(exitCode(t, serve.Wait()), 127) // not found
	is.True(strings.Contains(serveErr.String(), "executable file not found"))
}

// TestServePeerCheck: Serve lets root in (handshake '+'), refuses another
// user ('-') and a session beyond MaxSessions ('!').
func TestServePeerCheck(t *testing.T) {
	is := is.New(t)
	sock := serveSocket(t, server.Config{MaxSessions: 1})

	handshake := func() (net.Conn, byte) { return dialSocket(t, sock) }
	if os.Getuid() == 0 {
		conn, b := handshake()
		is.Equal(b, wire.HandshakeOK) // root
		c, err := agent.NewClient(testCtx(t), conn)
		is.NoErr(err)
		defer c.Close()
		r := run(t, c, agent.ExecRequest{Argv: []string{"echo", "ok"}})
		is.Equal(string(r.stdout), "ok\n")

		busy, b := handshake()
		is.Equal(b, wire.HandshakeBusy) // one session at most
		busy.Close()

		cmd := exec.Command(agentBinary(t), "connect", "-socket", sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
		is.Equal(exitCode(t, cmd.Run()), agent.ExitRefused) // another user
	} else {
		conn, b := handshake()
		is.Equal(b, wire.HandshakeRefused) // not root
		conn.Close()
	}
}

// TestServeHandoff: a client that sends wire.Handoff with two pipes gets
// its session served on those pipes, not on the socket; the end of the
// session (the client closes its side) closes the socket, which is how
// connect learns it may exit; a handoff without descriptors is refused;
// and `opensbx-agent connect` hands its stdin and stdout over.
func TestServeHandoff(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the agent lets only root connect")
	}
	is := is.New(t)
	sock := serveSocket(t, server.Config{})
	dial := func() *net.UnixConn {
		c, b := dialSocket(t, sock)
		is.Equal(b, wire.HandshakeOK)
		return c.(*net.UnixConn)
	}

	ctl := dial()
	defer ctl.Close()
	toAgent, agentIn, err := os.Pipe() // the agent reads toAgent
	is.NoErr(err)
	fromAgent, agentOut, err := os.Pipe() // the agent writes agentOut
	is.NoErr(err)
	_, _, err = ctl.WriteMsgUnix([]byte{wire.Handoff}, syscall.UnixRights(int(toAgent.Fd()), int(agentOut.Fd())), nil)
	is.NoErr(err)
	inLink, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", toAgent.Fd()))
	is.NoErr(err)
	outLink, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", agentOut.Fd()))
	is.NoErr(err)
	toAgent.Close() // the agent holds them now
	agentOut.Close()
	c, err := agent.NewClient(testCtx(t), pipeConn{r: fromAgent, w: agentIn})
	is.NoErr(err)
	r := run(t, c, agent.ExecRequest{Argv: []string{"echo", "handed over"}})
	is.Equal(string(r.stdout), "handed over\n")
	// The command did not inherit the session's pipes.
	r = run(t, c, agent.ExecRequest{Argv: []string{"ls", "-l", "/proc/self/fd/"}})
	is.True(strings.Contains(string(r.stdout), "/proc/")) // the listing ran
	is.True(!strings.Contains(string(r.stdout), inLink))  // not inherited
	is.True(!strings.Contains(string(r.stdout), outLink))
	c.Close()
	ctl.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := ctl.Read(make([]byte, 1))
	is.Equal(n, 0)
	is.Equal(err, io.EOF) // the session's end closes the socket

	bad := dial()
	defer bad.Close()
	_, err = bad.Write([]byte{wire.Handoff}) // no descriptors
	is.NoErr(err)
	bad.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = bad.Read(make([]byte, 1))
	is.Equal(err, io.EOF) // refused: closed

	// The program: connect's stdin and stdout are pipes, handed over.
	cmd := exec.Command(agentBinary(t), "connect", "-socket", sock)
	stdin, err := cmd.StdinPipe()
	is.NoErr(err)
	stdout, err := cmd.StdoutPipe()
	is.NoErr(err)
	is.NoErr(cmd.Start())
	c, err = agent.NewClient(testCtx(t), pipeConn{r: stdout, w: stdin})
	is.NoErr(err)
	r = run(t, c, agent.ExecRequest{Argv: []string{"echo", "through connect"}})
	is.Equal(string(r.stdout), "through connect\n")
	// The agent (this process) holds the read end of connect's stdin: the
	// pipe's both ends are here, where a relay would leave only the
	// write end.
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", cmd.Process.Pid))
	is.NoErr(err)
	fds, err := os.ReadDir("/proc/self/fd")
	is.NoErr(err)
	ends := 0
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && l == link {
			ends++
		}
	}
	is.Equal(ends, 2)
	c.Close()
	is.NoErr(cmd.Wait()) // connect exits 0 once the session ended
}

// TestServePendingCounts: a connection that has not begun its session yet
// (its first byte, a handoff or not, still to come) counts toward
// MaxSessions, so that idle connections cannot pile up; its end frees the
// place.
func TestServePendingCounts(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the agent lets only root connect")
	}
	is := is.New(t)
	sock := serveSocket(t, server.Config{MaxSessions: 1})
	handshake := func() (net.Conn, byte) { return dialSocket(t, sock) }
	idle, b := handshake()
	is.Equal(b, wire.HandshakeOK)
	busy, b := handshake()
	is.Equal(b, wire.HandshakeBusy) // the idle one holds the only place
	busy.Close()
	idle.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, b := handshake()
		c.Close()
		if b == wire.HandshakeOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the closed connection's place was not freed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
