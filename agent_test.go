package opensbx

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// skipWithoutAgent skips tests of the agent when the suite runs without it.
func skipWithoutAgent(t *testing.T) {
	if os.Getenv(envNoAgent) != "" {
		t.Skip("the suite runs without the agent")
	}
}

// TestAgentCommandSurvivesClose: a command running when the Manager closes
// (as the server does on SIGTERM) goes on in the sandbox's agent, and the
// next Manager on the state directory reports it truthfully: running, then
// finished with every byte of its output and its exit code.
func TestAgentCommandSurvivesClose(t *testing.T) {
	t.Parallel()
	skipWithoutAgent(t)
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	m, cli := newTestManager(t, WithStateDir(dir))
	sb := newBusybox(t, m, CreateOptions{})
	c, err := m.Exec(ctx, sb.ID, sh("echo before; sleep 3; echo after; exit 3"))
	is.NoErr(err)
	waitFor(t, 10*time.Second, "the first line", func() bool {
		out, err := m.CommandOutput(ctx, sb.ID, c.ID)
		return err == nil && string(out.Stdout) == "before\n"
	})
	is.NoErr(m.Close())

	m2, err := New(ctx, WithDockerClient(cli), WithNamespace(m.Namespace()), WithStateDir(dir))
	is.NoErr(err)
	defer m2.Close()
	cur, err := m2.Command(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(cur.State, CommandRunning) // still running, as it is
	done, err := m2.WaitCommand(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(done.State, CommandFinished)
	is.Equal(exitCode(done), 3) // its own exit code
	out, err := m2.CommandOutput(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(string(out.Stdout), "before\nafter\n") // every byte, before and after the restart
}

// envAgentChild makes TestAgentChild run: the process TestAgentCommandSurvivesSIGKILL kills.
const envAgentChild = "OPENSBX_TEST_AGENT_CHILD"

func TestAgentChild(t *testing.T) {
	if os.Getenv(envAgentChild) == "" {
		t.Skip("only as the child of TestAgentCommandSurvivesSIGKILL")
	}
	ctx := context.Background()
	m, err := New(ctx, WithNamespace(os.Getenv(envAgentChild+"_NS")), WithStateDir(os.Getenv(envAgentChild+"_DIR")),
		WithLabels(map[string]string{testRunLabel: testRun}))
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	res, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage})
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	c, err := m.Exec(ctx, res.ID, sh("echo before; sleep 3; echo after"))
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	for {
		out, _ := m.CommandOutput(ctx, res.ID, c.ID)
		if out != nil && string(out.Stdout) == "before\n" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("RUNNING", res.ID, c.ID)
	time.Sleep(time.Hour) // until killed
}

// TestAgentCommandSurvivesSIGKILL kills the Manager's process mid-command:
// the next Manager on the state directory reports the command running,
// then finished with all of its output.
func TestAgentCommandSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	skipWithoutAgent(t)
	is := is.New(t)
	ctx := context.Background()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	dir, ns := t.TempDir(), testNamespace()
	t.Cleanup(func() { removeLabelled(context.Background(), cli, labelNamespace+"="+ns) })
	cmd := exec.Command(os.Args[0], "-test.run=^TestAgentChild$", "-test.v")
	cmd.Env = append(os.Environ(), envAgentChild+"=1", envAgentChild+"_DIR="+dir, envAgentChild+"_NS="+ns)
	out, err := cmd.StdoutPipe()
	is.NoErr(err)
	is.NoErr(cmd.Start())
	var sbID, cmdID string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "RUNNING" {
			sbID, cmdID = f[1], f[2]
			break
		} else if len(f) > 0 && f[0] == "ERROR" {
			t.Fatal(sc.Text())
		}
	}
	is.True(cmdID != "")
	is.NoErr(cmd.Process.Kill()) // SIGKILL, mid-command
	cmd.Wait()

	m, err := New(ctx, WithDockerClient(cli), WithNamespace(ns), WithStateDir(dir))
	is.NoErr(err)
	defer m.Close()
	cur, err := m.Command(ctx, sbID, cmdID)
	is.NoErr(err)
	is.Equal(cur.State, CommandRunning) // still running
	done, err := m.WaitCommand(ctx, sbID, cmdID)
	is.NoErr(err)
	is.Equal(done.State, CommandFinished)
	is.Equal(exitCode(done), 0)
	o, err := m.CommandOutput(ctx, sbID, cmdID)
	is.NoErr(err)
	is.Equal(string(o.Stdout), "before\nafter\n") // nothing lost
}

// TestAgentRemoteEngine uses the engine over TCP, as a remote DOCKER_HOST:
// the Manager cannot see the engine host's processes, and commands, kill
// and files still work through the agent.
func TestAgentRemoteEngine(t *testing.T) {
	t.Parallel()
	skipWithoutAgent(t)
	is := is.New(t)
	ctx := context.Background()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	proxy := testenv.NewEngineProxy(t)
	ns := testNamespace()
	t.Cleanup(func() { removeLabelled(context.Background(), cli, labelNamespace+"="+ns) })
	m, err := New(ctx, WithDockerHost(proxy.Host), WithNamespace(ns), WithLabels(map[string]string{testRunLabel: testRun}))
	is.NoErr(err)
	defer m.Close()
	sb := newBusybox(t, m, CreateOptions{})
	res := run(t, m, sb.ID, ExecOptions{Command: "echo", Args: []string{"over", "tcp"}})
	is.Equal(string(res.Stdout), "over tcp\n")
	c, err := m.Exec(ctx, sb.ID, sh("sleep 1000; echo never"))
	is.NoErr(err)
	_, err = m.KillCommand(ctx, sb.ID, c.ID, 15)
	is.NoErr(err)
	done, err := m.WaitCommand(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(done.State, CommandKilled) // kill without the host's /proc
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/x", []byte("remote"), 0))
	data, _, err := m.ReadFile(ctx, sb.ID, "/tmp/x")
	is.NoErr(err)
	is.Equal(string(data), "remote")
}

// TestAgentKilled: when the agent dies, its sandbox stops (it is the main
// process), its running commands are reported failed and calls say why.
func TestAgentKilled(t *testing.T) {
	t.Parallel()
	skipWithoutAgent(t)
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1000"}})
	is.NoErr(err)
	// Kill the agent from inside the sandbox (root may): it is the parent
	// of the commands it runs.
	_, err = m.Exec(ctx, sb.ID, sh("kill -9 $PPID"))
	is.True(err == nil || errors.Is(err, ErrConflict))
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	done, err := m.WaitCommand(wctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(done.State, CommandFailed) // the command went with the sandbox
	is.True(done.Error != "")
	waitFor(t, 10*time.Second, "the sandbox to stop", func() bool { return stateOfSandbox(t, m, sb.ID) == StateStopped })
	_, err = m.Exec(ctx, sb.ID, ExecOptions{Command: "true"})
	is.True(errors.Is(err, ErrConflict)) // a clear error: the sandbox is stopped
}

// TestAgentHostile runs sandboxes whose "agent" is a program of the
// sandbox's own that answers garbage, or nothing: calls fail, within
// bounds, without a panic or a hang.
func TestAgentHostile(t *testing.T) {
	t.Parallel()
	skipWithoutAgent(t)
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	prog := filepath.Join(t.TempDir(), "hostile-agent")
	build := exec.Command("go", "build", "-o", prog, "./testdata/hostile-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	is.NoErr(err)
	_ = out
	binary, err := os.ReadFile(prog)
	is.NoErr(err)
	img, err := m.ensureImage(ctx, testenv.BusyboxImage, false)
	is.NoErr(err)
	vol, version, err := m.ensureAgentVolume(ctx, testenv.BusyboxImage)
	is.NoErr(err)
	for _, mode := range []string{"garbage", "stall"} {
		t.Run(mode, func(t *testing.T) {
			is := is.New(t)
			o, err := m.normalize(CreateOptions{Image: testenv.BusyboxImage})
			is.NoErr(err)
			name := "hostile-" + mode
			cs := m.containerSpec(o, img, name, specHash(o), vol, version)
			cs.Entrypoint = []string{"/hostile-agent", mode} // replaces the agent
			id, err := m.engine.Create(ctx, cs)
			is.NoErr(err)
			m.index.add(id, name)
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "hostile-agent", Mode: 0o755, Size: int64(len(binary))})
			tw.Write(binary)
			tw.Close()
			is.NoErr(m.engine.CopyTo(ctx, id, "/", &buf))
			is.NoErr(m.engine.Start(ctx, id))
			time.Sleep(200 * time.Millisecond) // listening

			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			start := time.Now()
			_, err = m.Exec(cctx, id, ExecOptions{Command: "true"})
			is.True(err != nil) // no command through a hostile agent
			t.Logf("exec: %v", err)
			_, _, err = m.ReadFile(cctx, id, "/etc/passwd")
			is.True(err != nil) // nor a file
			is.True(time.Since(start) < 30*time.Second)
			is.NoErr(m.Delete(ctx, id))
		})
	}
}
