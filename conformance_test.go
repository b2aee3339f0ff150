package opensbx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/kubeenv"
	"github.com/opensbx/opensbx/internal/testenv"
)

// The conformance suite: what every backend must do alike. It runs against
// the Docker engine (TestConformanceDocker) and against the throw-away
// Kubernetes cluster (TestConformanceKubernetes, when OPENSBX_KUBECONFIG
// names it; see docs/kubernetes-cluster.md).

// backend makes Managers of one backend, all in one Opensbx namespace.
type backend struct {
	name string
	ns   string
	opts []Option // the backend's own options
}

// manager returns a new Manager of the backend with extra options; it is
// closed when the test ends.
func (b backend) manager(t *testing.T, extra ...Option) *Manager {
	t.Helper()
	all := append(append([]Option{WithNamespace(b.ns), WithLabels(map[string]string{testRunLabel: testRun}), WithStopTimeout(5 * time.Second)}, b.opts...), extra...)
	m, err := New(context.Background(), all...)
	if err != nil {
		t.Fatalf("new %s manager: %v", b.name, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// sweep removes every sandbox of the backend's namespace (the test's end,
// also when it failed).
func (b backend) sweep(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := New(ctx, append([]Option{WithNamespace(b.ns)}, b.opts...)...)
	if err != nil {
		t.Errorf("sweep %s: %v", b.ns, err)
		return
	}
	defer m.Close()
	list, err := m.List(ctx)
	if err != nil {
		t.Errorf("sweep %s: %v", b.ns, err)
		return
	}
	for _, sb := range list {
		if err := m.Delete(ctx, sb.ID); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("sweep %s: delete %s: %v", b.ns, sb.ID, err)
		}
	}
}

func TestConformanceDocker(t *testing.T) {
	t.Parallel()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	runConformance(t, func(t *testing.T) backend {
		b := backend{name: "docker", ns: testNamespace(), opts: append([]Option{WithDockerClient(cli)}, modeOpts()...)}
		t.Cleanup(func() { b.sweep(t) })
		return b
	})
}

// kubeImages puts the test images and the agent image into the test
// cluster once per test binary.
var kubeImages struct {
	once sync.Once
	err  error
}

func TestConformanceKubernetes(t *testing.T) {
	kubeconfig := kubeenv.Kubeconfig(t)
	if modeOpts() != nil {
		t.Skip("Kubernetes sandboxes always run the agent")
	}
	t.Parallel()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	kubeImportOnce(t, cli)
	runConformance(t, func(t *testing.T) backend {
		b := backend{name: "kubernetes", ns: testNamespace(), opts: []Option{WithKubernetes(KubernetesConfig{Kubeconfig: kubeconfig, PullPolicy: "Never"})}}
		t.Cleanup(func() { b.sweep(t) })
		return b
	})
}

// runConformance runs every conformance case, each with a fresh backend.
func runConformance(t *testing.T, newBackend func(*testing.T) backend) {
	cases := []struct {
		name string
		fn   func(*testing.T, backend)
	}{
		{"Lifecycle", confLifecycle},
		{"Commands", confCommands},
		{"Kill", confKill},
		{"Stdin", confStdin},
		{"Files", confFiles},
		{"StopStart", confStopStart},
		{"Limits", confLimits},
		{"ExpiryStops", confExpiryStops},
		{"TTLAcrossRestart", confTTLAcrossRestart},
		{"CommandsSurviveRestart", confCommandsSurviveRestart},
		{"Pool", confPool},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newBackend(t))
		})
	}
}

func confLifecycle(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	m := b.manager(t)
	res, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Name: "conf-one", Env: []string{"A=1"}, Labels: map[string]string{"team": "graders"},
		Resources: Resources{MemoryMB: 256, CPUs: 0.5}})
	is.NoErr(err)
	sb := res.Sandbox
	is.True(res.Created)
	is.Equal(sb.State, StateRunning)
	is.Equal(sb.Name, "conf-one")
	is.Equal(sb.Labels["team"], "graders")
	is.Equal(sb.Resources.MemoryMB, int64(256))
	is.True(time.Until(sb.ExpiresAt) > 10*time.Minute) // the default TTL armed

	again, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Name: "conf-one", Env: []string{"A=1"}, Labels: map[string]string{"team": "graders"},
		Resources: Resources{MemoryMB: 256, CPUs: 0.5}})
	is.NoErr(err)
	is.True(!again.Created) // the same name and settings: the same sandbox
	is.Equal(again.ID, sb.ID)
	_, err = m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Name: "conf-one", Env: []string{"A=2"}})
	is.True(errors.Is(err, ErrConflict)) // the name with other settings

	byName, err := m.Get(ctx, "conf-one")
	is.NoErr(err)
	is.Equal(byName.ID, sb.ID)
	byPrefix, err := m.Get(ctx, sb.ID[:8])
	is.NoErr(err)
	is.Equal(byPrefix.ID, sb.ID)
	_, err = m.Get(ctx, strings.Repeat("0", 64))
	is.True(errors.Is(err, ErrNotFound))

	other, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage})
	is.NoErr(err)
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 2)

	r, err := m.Run(ctx, sb.ID, ExecOptions{Command: "sh", Args: []string{"-c", "echo $A; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"}})
	is.NoErr(err)
	lines := strings.Fields(string(r.Stdout))
	is.Equal(lines[0], "1")                      // the environment
	is.Equal(lines[len(lines)-1], strconv256MiB) // the memory limit

	renewed, err := m.Renew(ctx, sb.ID, time.Hour)
	is.NoErr(err)
	is.True(time.Until(renewed.ExpiresAt) > 50*time.Minute)

	is.NoErr(m.Delete(ctx, other.ID))
	is.NoErr(m.Delete(ctx, sb.ID))
	_, err = m.Get(ctx, sb.ID)
	is.True(errors.Is(err, ErrNotFound)) // gone
	list, err = m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 0)
}

// strconv256MiB is 256 MiB as the cgroup files print it.
const strconv256MiB = "268435456"

func confCommands(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	m := b.manager(t)
	sb := createConf(t, m)
	r, err := m.Run(ctx, sb.ID, ExecOptions{Command: "sh", Args: []string{"-c", "echo out; echo err >&2; exit 3"}})
	var ee *ExitError
	is.True(errors.As(err, &ee)) // a non-zero exit
	is.Equal(ee.ExitCode(), 3)
	is.Equal(string(r.Stdout), "out\n")
	is.Equal(string(r.Stderr), "err\n")

	r, err = m.Run(ctx, sb.ID, ExecOptions{Command: "pwd", Cwd: "/tmp", User: "65534", Env: map[string]string{"X": "y"}})
	is.NoErr(err)
	is.Equal(string(r.Stdout), "/tmp\n")
	r, err = m.Run(ctx, sb.ID, ExecOptions{Command: "id", Args: []string{"-u"}, User: "65534"})
	is.NoErr(err)
	is.Equal(string(r.Stdout), "65534\n") // as the user asked

	_, err = m.Run(ctx, sb.ID, ExecOptions{Command: "no-such-program"})
	is.True(err != nil)

	// Live output, resumed from a cursor.
	c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sh", Args: []string{"-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"}})
	is.NoErr(err)
	var got bytes.Buffer
	var cursor string
	err = m.FollowOutput(ctx, sb.ID, c.ID, "", func(rec OutputRecord) error {
		got.Write(rec.Data)
		if rec.Type == RecordStdout && cursor == "" {
			cursor = rec.Cursor
		}
		return nil
	})
	is.NoErr(err)
	is.Equal(got.String(), "1\n2\n3\n")
	var rest bytes.Buffer
	is.NoErr(m.FollowOutput(ctx, sb.ID, c.ID, cursor, func(rec OutputRecord) error { rest.Write(rec.Data); return nil }))
	is.Equal(rest.String(), "2\n3\n") // after the cursor
	list, err := m.Commands(ctx, sb.ID)
	is.NoErr(err)
	is.True(len(list) >= 5)
}

func confKill(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	m := b.manager(t)
	sb := createConf(t, m)
	c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sh", Args: []string{"-c", "trap 'exit 9' TERM; echo ready; while true; do sleep 0.05; done"}})
	is.NoErr(err)
	waitFor(t, 30*time.Second, "the trap to be set", func() bool {
		out, err := m.CommandOutput(ctx, sb.ID, c.ID)
		return err == nil && string(out.Stdout) == "ready\n"
	})
	_, err = m.KillCommand(ctx, sb.ID, c.ID, syscall.SIGTERM)
	is.NoErr(err)
	done, err := m.WaitCommand(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(exitCode(done), 9) // the trap ran
	c, err = m.Exec(ctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1000"}})
	is.NoErr(err)
	_, err = m.KillCommand(ctx, sb.ID, c.ID, syscall.SIGKILL)
	is.NoErr(err)
	done, err = m.WaitCommand(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(done.State, CommandKilled)
	_, err = m.KillCommand(ctx, sb.ID, c.ID, syscall.SIGKILL)
	is.True(errors.Is(err, ErrConflict)) // it ended
}

func confStdin(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	m := b.manager(t)
	sb := createConf(t, m)
	r, err := m.Run(ctx, sb.ID, ExecOptions{Command: "wc", Args: []string{"-c"}, Stdin: strings.NewReader(strings.Repeat("x", 100000))})
	is.NoErr(err)
	is.Equal(strings.TrimSpace(string(r.Stdout)), "100000")
	c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "cat", OpenStdin: true})
	is.NoErr(err)
	is.NoErr(m.SendStdin(ctx, sb.ID, c.ID, strings.NewReader("hello "), false))
	is.NoErr(m.SendStdin(ctx, sb.ID, c.ID, strings.NewReader("world"), true))
	_, err = m.WaitCommand(ctx, sb.ID, c.ID)
	is.NoErr(err)
	out, err := m.CommandOutput(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(string(out.Stdout), "hello world")
}

func confFiles(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	m := b.manager(t)
	sb := createConf(t, m)
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/dir/a b.bin", data, 0o640))
	got, info, err := m.ReadFile(ctx, sb.ID, "/tmp/dir/a b.bin")
	is.NoErr(err)
	is.True(bytes.Equal(got, data)) // every byte back
	is.Equal(info.Size, int64(len(data)))
	is.Equal(info.Mode.Perm(), fs.FileMode(0o640))
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/dir/$(x);y", []byte("literal"), 0o644))
	list, err := m.ListDir(ctx, sb.ID, "/tmp/dir")
	is.NoErr(err)
	names := []string{}
	for _, f := range list {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	is.Equal(names, []string{"$(x);y", "a b.bin"}) // names are literal
	is.NoErr(m.DeleteFile(ctx, sb.ID, "/tmp/dir"))
	_, _, err = m.ReadFile(ctx, sb.ID, "/tmp/dir/a b.bin")
	is.True(errors.Is(err, ErrNotFound))
	_, _, err = m.ReadFile(ctx, sb.ID, "/etc")
	is.True(err != nil) // a directory is not a file
}

func confTTLAcrossRestart(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	m := b.manager(t, WithStateDir(dir), WithDeleteOnExpiry(true))
	short := createConf(t, m, func(o *CreateOptions) { o.TTL = 4 * time.Second })
	long := createConf(t, m, func(o *CreateOptions) { o.TTL = time.Hour })
	is.NoErr(m.Close())
	// The expiry of the first passes while no Manager runs.
	time.Sleep(5 * time.Second)
	m2 := b.manager(t, WithStateDir(dir), WithDeleteOnExpiry(true))
	waitFor(t, 30*time.Second, "the expired sandbox to go", func() bool {
		_, err := m2.Get(ctx, short.ID)
		return errors.Is(err, ErrNotFound)
	})
	got, err := m2.Get(ctx, long.ID)
	is.NoErr(err)
	is.Equal(got.State, StateRunning)
	is.True(time.Until(got.ExpiresAt) > 50*time.Minute) // its deadline kept
}

func confCommandsSurviveRestart(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	m := b.manager(t, WithStateDir(dir))
	sb := createConf(t, m)
	c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sh", Args: []string{"-c", "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after; exit 4"}})
	is.NoErr(err)
	waitFor(t, 30*time.Second, "the first line", func() bool {
		out, err := m.CommandOutput(ctx, sb.ID, c.ID)
		return err == nil && string(out.Stdout) == "before\n"
	})
	is.NoErr(m.Close())
	m2 := b.manager(t, WithStateDir(dir))
	cur, err := m2.Command(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(cur.State, CommandRunning) // it kept running without a Manager
	is.NoErr(m2.WriteFile(ctx, sb.ID, "/tmp/go", nil, 0o644))
	done, err := m2.WaitCommand(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(exitCode(done), 4)
	out, err := m2.CommandOutput(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(string(out.Stdout), "before\nafter\n") // no output lost
}

// confLimits: a sandbox's processes get the open-file limit, and a fork
// bomb stops at the process bound (DefaultPidsLimit: Docker's pids limit, a
// Pod's the kubelet's podPidsLimit) inside its own sandbox.
func confLimits(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	m := b.manager(t)
	sb := createConf(t, m)
	res, err := m.Run(ctx, sb.ID, ExecOptions{Command: "sh", Args: []string{"-c", "ulimit -Sn; ulimit -Hn"}})
	is.NoErr(err)
	is.Equal(string(res.Stdout), fmt.Sprintf("%d\n%d\n", DefaultNofile, DefaultNofile))
	// More sleeps than the bound allows: the shell cannot fork them all.
	bomb := fmt.Sprintf("i=0; while [ $i -lt %d ]; do sleep 600 >/dev/null 2>&1 & i=$((i+1)); done; echo all started", DefaultPidsLimit+64)
	res, err = m.Run(ctx, sb.ID, ExecOptions{Command: "sh", Args: []string{"-c", bomb}})
	is.True(err != nil)                                           // the shell failed...
	is.True(!strings.Contains(string(res.Stdout), "all started")) // ...before the last fork
	is.True(strings.Contains(string(res.Stderr), "fork"))         // for want of processes
	is.NoErr(m.Delete(ctx, sb.ID))                                // and the sandbox goes with them all
}

// confExpiryStops: without WithDeleteOnExpiry an expired sandbox is
// stopped, keeps its files and starts again.
func confExpiryStops(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	m := b.manager(t)
	sb := createConf(t, m, func(o *CreateOptions) { o.TTL = 3 * time.Second })
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/kept", []byte("before the expiry"), 0))
	waitFor(t, 60*time.Second, "the expired sandbox to stop", func() bool {
		got, err := m.Get(ctx, sb.ID)
		return err == nil && got.State == StateStopped
	})
	_, err := m.Start(ctx, sb.ID)
	is.NoErr(err)
	res, err := m.Run(ctx, sb.ID, ExecOptions{Command: "cat", Args: []string{"/tmp/kept"}})
	is.NoErr(err)
	is.Equal(string(res.Stdout), "before the expiry")
}

// confStopStart: Stop ends the sandbox's processes and keeps its files
// (readable while stopped), refuses commands until Start, and another
// Manager sees it stopped; Start and Restart run it again. On Kubernetes
// the Pod runs on and its agent does the stopping.
func confStopStart(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	m := b.manager(t)
	sb := createConf(t, m, func(o *CreateOptions) {
		o.Command = []string{"sh", "-c", "echo $$ >> /tmp/main.pids; exec sleep 100000"}
	})
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/kept", []byte("written before the stop"), 0))
	long, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1000"}})
	is.NoErr(err)
	mains := func(m *Manager) int {
		t.Helper()
		b, _, err := m.ReadFile(ctx, sb.ID, "/tmp/main.pids")
		is.NoErr(err)
		return len(strings.Fields(string(b)))
	}
	waitFor(t, 30*time.Second, "the main command", func() bool { return mains(m) == 1 })

	stopped, err := m.Stop(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(stopped.State, StateStopped)
	_, err = m.Stop(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // stopped already
	_, err = m.Exec(ctx, sb.ID, ExecOptions{Command: "true"})
	is.True(errors.Is(err, ErrConflict)) // no command runs in a stopped sandbox
	done, err := m.WaitCommand(ctx, sb.ID, long.ID)
	is.NoErr(err)
	is.True(done.State != CommandRunning) // ended with the sandbox
	got, _, err := m.ReadFile(ctx, sb.ID, "/tmp/kept")
	is.NoErr(err)
	is.Equal(string(got), "written before the stop") // files of a stopped sandbox
	other := b.manager(t)
	seen, err := other.Get(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(seen.State, StateStopped) // another Manager sees it stopped

	started, err := other.Start(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(started.State, StateRunning)
	_, err = m.Start(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // running already
	waitFor(t, 30*time.Second, "the main command to run again", func() bool { return mains(m) == 2 })
	r, err := m.Run(ctx, sb.ID, ExecOptions{Command: "cat", Args: []string{"/tmp/kept"}})
	is.NoErr(err)
	is.Equal(string(r.Stdout), "written before the stop") // the file system kept

	restarted, err := m.Restart(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(restarted.State, StateRunning)
	waitFor(t, 30*time.Second, "the main command after the restart", func() bool { return mains(m) == 3 })
	r, err = m.Run(ctx, sb.ID, ExecOptions{Command: "echo", Args: []string{"after the restart"}})
	is.NoErr(err)
	is.Equal(string(r.Stdout), "after the restart\n")
}

// createConf creates a busybox sandbox for a conformance case.
func createConf(t *testing.T, m *Manager, edit ...func(*CreateOptions)) *Sandbox {
	t.Helper()
	o := CreateOptions{Image: testenv.BusyboxImage}
	for _, e := range edit {
		e(&o)
	}
	res, err := m.Create(context.Background(), o)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return res.Sandbox
}

func confPool(t *testing.T, b backend) {
	is := is.New(t)
	ctx := context.Background()
	m := b.manager(t, WithPool(PoolTemplate{Image: testenv.BusyboxImage, Size: 2}))
	waitFor(t, 2*time.Minute, "the pool to fill", func() bool {
		st := m.Pool()
		return len(st) == 1 && st[0].Ready == 2
	})
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 0) // pooled sandboxes are not the caller's
	res, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Name: "pooled-one", Labels: map[string]string{"k": "v"}})
	is.NoErr(err)
	is.Equal(m.Pool()[0].Hits, uint64(1)) // served from the pool
	is.Equal(res.Name, "pooled-one")
	got, err := m.Get(ctx, "pooled-one")
	is.NoErr(err)
	is.Equal(got.ID, res.ID)
	is.Equal(got.Labels["k"], "v")
	r, err := m.Run(ctx, res.ID, ExecOptions{Command: "echo", Args: []string{"hi"}})
	is.NoErr(err)
	is.Equal(string(r.Stdout), "hi\n")
	waitFor(t, 2*time.Minute, "the pool to refill", func() bool { return m.Pool()[0].Ready == 2 })
	is.NoErr(m.Delete(ctx, res.ID))
}
