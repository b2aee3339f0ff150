//go:build linux

package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/outbuf"
	"github.com/opensbx/opensbx/internal/testenv"
)

// The agent against the real engine: containers with the program copied in
// (before start), running `serve` under the engine's init, and a channel
// opened with an exec of `connect`, demultiplexed here as the Manager will.

// agentPath is where the tests put the program in a container.
const agentPath = "/opensbx-agent"

// newSandbox creates and starts a labelled container of image running
// entrypoint and cmd under Init, with the agent program copied in. It is
// removed when the test ends.
func newSandbox(t testing.TB, cli *client.Client, image string, entrypoint, cmd []string) string {
	t.Helper()
	ctx := testCtx(t)
	init := true
	created, err := cli.ContainerCreate(ctx, &container.Config{
		Image:      image,
		Entrypoint: entrypoint,
		Cmd:        cmd,
		Labels:     map[string]string{testRunLabel: testRun, testAgentLabel: t.Name()},
	}, &container.HostConfig{Init: &init, NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cli.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove container: %v", err)
		}
	})
	prog, err := os.ReadFile(agentBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	tw.WriteHeader(&tar.Header{Name: agentPath[1:], Mode: 0o755, Size: int64(len(prog)), Typeflag: tar.TypeReg})
	tw.Write(prog)
	tw.Close()
	if err := cli.CopyToContainer(ctx, created.ID, "/", &archive, container.CopyToContainerOptions{}); err != nil {
		t.Fatalf("copy the agent in: %v", err)
	}
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start container: %v", err)
	}
	return created.ID
}

// execConn is the relay exec's stream as a connection: stdout
// demultiplexed from the engine's framing, stdin written raw.
type execConn struct {
	hj     types.HijackedResponse
	out    *io.PipeReader
	demux  chan struct{} // closed when the demultiplexer ends
	mu     sync.Mutex
	stderr bytes.Buffer
	once   sync.Once
}

func (c *execConn) Read(p []byte) (int, error)  { return c.out.Read(p) }
func (c *execConn) Write(p []byte) (int, error) { return c.hj.Conn.Write(p) }
func (c *execConn) Close() error {
	c.once.Do(func() {
		c.hj.Close()
		c.out.Close()
		<-c.demux
	})
	return nil
}

func (c *execConn) Stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

type lockedWriter struct{ c *execConn }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.stderr.Write(p)
}

// startRelay runs `opensbx-agent connect` in the container as user.
func startRelay(t testing.TB, cli *client.Client, id, user string) (*execConn, string) {
	t.Helper()
	ctx := testCtx(t)
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{
		User: user, AttachStdin: true, AttachStdout: true, AttachStderr: true,
		Cmd: []string{agentPath, "connect"},
	})
	if err != nil {
		t.Fatalf("create relay exec: %v", err)
	}
	hj, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("attach relay exec: %v", err)
	}
	pr, pw := io.Pipe()
	c := &execConn{hj: hj, out: pr, demux: make(chan struct{})}
	go func() {
		defer close(c.demux)
		_, err := stdcopy.StdCopy(pw, lockedWriter{c}, hj.Reader)
		if err == nil {
			err = io.EOF
		}
		pw.CloseWithError(err)
	}()
	return c, ex.ID
}

// connectAgent opens a Client to the container's agent, retrying while
// the agent starts.
func connectAgent(t testing.TB, cli *client.Client, id string) *agent.Client {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		conn, _ := startRelay(t, cli, id, "0")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := agent.NewClient(ctx, conn)
		cancel()
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to the agent: %v (relay said %q)", err, conn.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// relayExit runs the relay as user with no input and returns its exit
// code and stderr.
func relayExit(t testing.TB, cli *client.Client, id, user string) (int, string) {
	t.Helper()
	conn, execID := startRelay(t, cli, id, user)
	conn.hj.CloseWrite()
	io.Copy(io.Discard, conn)
	conn.Close()
	var code int
	waitFor(t, "the relay exec to end", func() bool {
		ins, err := cli.ContainerExecInspect(testCtx(t), execID)
		if err != nil {
			t.Fatalf("inspect relay exec: %v", err)
		}
		code = ins.ExitCode
		return !ins.Running
	})
	return code, conn.Stderr()
}

func engine(t testing.TB) *client.Client {
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	return cli
}

func TestEngineBusybox(t *testing.T) {
	is := is.New(t)
	cli := engine(t)
	id := newSandbox(t, cli, testenv.BusyboxImage, []string{agentPath}, []string{"serve"})
	c := connectAgent(t, cli, id)
	ctx := testCtx(t)
	info := c.Info()
	is.True(info.PID > 1) // a child of the init
	is.Equal(len(info.Version), 64)

	r := run(t, c, agent.ExecRequest{Argv: []string{"echo", "hi"}})
	is.Equal(string(r.stdout), "hi\n")
	is.Equal(r.code(), 0)
	r = run(t, c, agent.ExecRequest{Argv: sh(`echo "$FOO $OPENSBX_COMMAND_ID $(pwd) $HOME"; echo err >&2; exit 3`), Env: []string{"FOO=bar"}, Cwd: "/tmp", ID: "cmd_busy1"})
	is.Equal(string(r.stdout), "bar cmd_busy1 /tmp /root\n")
	is.Equal(string(r.stderr), "err\n")
	is.Equal(r.code(), 3)
	r = run(t, c, agent.ExecRequest{Argv: []string{"no-such-program"}})
	is.Equal(r.code(), 127)
	is.True(strings.Contains(string(r.stderr), "executable file not found in $PATH"))
	r = run(t, c, agent.ExecRequest{Argv: sh(`echo "$(id -u):$(id -g) $HOME"`), User: "nobody"})
	is.Equal(string(r.stdout), "65534:65534 /nonexistent\n") // from the sandbox's /etc/passwd

	// Signal one of two identical commands: the shell's child gets it.
	script := `trap 'echo got-term' TERM; sleep 1000; echo after`
	var ids []string
	for range 2 {
		cmd, err := c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: sh(script)})
		is.NoErr(err)
		ids = append(ids, cmd.ID)
	}
	waitFor(t, "both sleeps to start", func() bool {
		r := run(t, c, agent.ExecRequest{Argv: sh(`pidof sleep | wc -w`)})
		return strings.TrimSpace(string(r.stdout)) == "2"
	})
	_, err := c.Signal(ctx, ids[0], int(syscall.SIGTERM))
	is.NoErr(err)
	r = follow(t, c, ids[0], outbuf.Pos{})
	is.Equal(string(r.stdout), "got-term\nafter\n") // the trap ran after sleep ended
	cmds, err := c.Commands(ctx)
	is.NoErr(err)
	for _, cmd := range cmds {
		if cmd.ID == ids[1] {
			is.Equal(cmd.State, agent.StateRunning) // the twin is untouched
		}
	}
	_, err = c.Signal(ctx, ids[1], int(syscall.SIGKILL))
	is.NoErr(err)
	is.Equal(follow(t, c, ids[1], outbuf.Pos{}).code(), 137)

	engineFiles(t, c, "/etc/passwd")

	s, err := c.Stats(ctx)
	is.NoErr(err)
	is.True(s.CgroupVersion == 1 || s.CgroupVersion == 2)
	is.True(s.MemoryUsage > 0)
	is.True(s.CPUUsage > 0)
	is.True(s.PIDs >= 2) // the init and the agent

	// Only root may drive the agent.
	code, stderr := relayExit(t, cli, id, "nobody")
	is.Equal(code, agent.ExitRefused)
	is.True(strings.Contains(stderr, "only root"))
	code, _ = relayExit(t, cli, id, "65534:65534")
	is.Equal(code, agent.ExitRefused)

	// Kill the agent: a call in flight fails, later calls too, nothing hangs.
	long, err := c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"sleep", "1000"}})
	is.NoErr(err)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Follow(context.Background(), long.ID, outbuf.Pos{}, func(outbuf.Chunk) error { return nil })
		errc <- err
	}()
	_, err = c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"kill", "-9", fmt.Sprint(info.PID)}})
	// The kill may take the agent down before it answers.
	is.True(err == nil || errors.Is(err, agent.ErrSessionClosed))
	is.True(errors.Is(<-errc, agent.ErrSessionClosed)) // the follow in flight
	<-c.Done()
	_, err = c.Stat(ctx, "/")
	is.True(errors.Is(err, agent.ErrSessionClosed))
}

// engineFiles exercises the file operations in a sandbox; known is a file
// the image has.
func engineFiles(t *testing.T, c *agent.Client, known string) {
	is := is.New(t)
	ctx := testCtx(t)
	p := "/tmp/dir with space/$(x) 'q'.txt"
	data := []byte("hello\x00world\n")
	_, err := c.WriteFile(ctx, p, bytes.NewReader(data), int64(len(data)), 0o600)
	is.NoErr(err)
	got, fi, err := readAll(t, c, p, 0)
	is.NoErr(err)
	is.True(bytes.Equal(got, data))
	is.Equal(fi.Mode.Perm(), os.FileMode(0o600))
	fi, err = c.Stat(ctx, "/tmp/dir with space")
	is.NoErr(err)
	is.Equal(string(fi.Type), "dir")
	var names []string
	_, err = c.ListDir(ctx, "/tmp/dir with space", func(fi agent.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	})
	is.NoErr(err)
	is.Equal(names, []string{"$(x) 'q'.txt"})
	_, _, err = readAll(t, c, known, 0)
	is.NoErr(err)

	rc, _, err := c.TarOut(ctx, "/tmp/dir with space")
	is.NoErr(err)
	entries := readTar(t, rc)
	rc.Close()
	is.Equal(entries["#first"], "dir with space/")
	is.Equal(entries["dir with space/$(x) 'q'.txt"], "0:"+string(data))

	archive := makeTar(t,
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "sub/"}},
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "sub/f"}, body: "from tar"})
	n, err := c.TarIn(ctx, "/opt/new/place", bytes.NewReader(archive))
	is.NoErr(err)
	is.Equal(n, 2)
	got, _, err = readAll(t, c, "/opt/new/place/sub/f", 0)
	is.NoErr(err)
	is.Equal(string(got), "from tar")
	_, err = c.TarIn(ctx, "/opt", bytes.NewReader(makeTar(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "../escape"}, body: "x"})))
	is.True(errors.Is(err, agent.ErrInvalid))

	is.NoErr(c.Remove(ctx, "/opt/new"))
	_, err = c.Stat(ctx, "/opt/new")
	is.True(errors.Is(err, agent.ErrNotFound))
	is.True(errors.Is(c.Remove(ctx, "/"), agent.ErrInvalid))
}

func TestEngineNoShell(t *testing.T) {
	is := is.New(t)
	cli := engine(t)
	// The image's own program is the supervised main command.
	id := newSandbox(t, cli, testenv.NoShellImage, []string{agentPath}, []string{"serve", "--", "/app"})
	c := connectAgent(t, cli, id)
	ctx := testCtx(t)

	r := run(t, c, agent.ExecRequest{Argv: []string{"/app", "echo", "no", "shell"}})
	is.Equal(string(r.stdout), "no shell\n")
	is.Equal(r.code(), 0)
	r = run(t, c, agent.ExecRequest{Argv: []string{"/app", "exit", "5"}, User: "65534:65534"})
	is.Equal(r.code(), 5) // a numeric user needs no passwd file
	r = run(t, c, agent.ExecRequest{Argv: []string{"sh", "-c", "true"}})
	is.Equal(r.code(), 127) // no shell here
	r = run(t, c, agent.ExecRequest{Argv: []string{"/app"}, User: "nobody"})
	is.Equal(r.code(), 126) // no passwd file to find a name in
	is.True(strings.Contains(r.cmd.Error, "unable to find user nobody"))

	cmd, err := c.Exec(ctx, agent.ExecRequest{ID: newID(), Argv: []string{"/app", "sleep", "1000"}})
	is.NoErr(err)
	_, err = c.Signal(ctx, cmd.ID, int(syscall.SIGTERM))
	is.NoErr(err)
	is.Equal(follow(t, c, cmd.ID, outbuf.Pos{}).code(), 143) // app's own 128+15

	engineFiles(t, c, "/app")
	rc, _, err := c.TarOut(ctx, "/app")
	is.NoErr(err)
	entries := readTar(t, rc)
	rc.Close()
	is.Equal(entries["#first"], "app")

	s, err := c.Stats(ctx)
	is.NoErr(err)
	is.True(s.MemoryUsage > 0)

	code, _ := relayExit(t, cli, id, "65534")
	is.Equal(code, agent.ExitRefused) // not root

	// A stop forwards SIGTERM to /app, which exits 0, and so does the agent.
	timeout := 30
	is.NoErr(cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &timeout}))
	ins, err := cli.ContainerInspect(ctx, id)
	is.NoErr(err)
	is.Equal(ins.State.ExitCode, 0)
	<-c.Done() // the session ended with the sandbox
	_, err = c.Stat(ctx, "/")
	is.True(errors.Is(err, agent.ErrSessionClosed))
}

// TestEngineNoAgent: a relay in a sandbox whose agent is not running exits
// with ExitNoAgent, in both images.
func TestEngineNoAgent(t *testing.T) {
	cli := engine(t)
	for _, tc := range []struct {
		image string
		cmd   []string
	}{
		{testenv.BusyboxImage, []string{"sleep", "1000"}},
		{testenv.NoShellImage, []string{"/app"}},
	} {
		t.Run(tc.image, func(t *testing.T) {
			is := is.New(t)
			id := newSandbox(t, cli, tc.image, nil, tc.cmd)
			code, stderr := relayExit(t, cli, id, "0")
			is.Equal(code, agent.ExitNoAgent)
			is.True(strings.Contains(stderr, "the sandbox's agent is not running"))
		})
	}
}
