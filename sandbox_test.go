package opensbx

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/matryer/is"
	"go.uber.org/goleak"

	"github.com/opensbx/opensbx/internal/testenv"
)

// waitFor polls cond every 100 ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stateOfSandbox(t *testing.T, m *Manager, id string) State {
	t.Helper()
	s, err := m.Get(context.Background(), id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return "gone"
		}
		t.Fatalf("get %s: %v", id, err)
	}
	return s.State
}

func TestNewUnreachableEngine(t *testing.T) {
	is := is.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := New(ctx, WithDockerHost("unix://"+filepath.Join(t.TempDir(), "no.sock")))
	is.True(errors.Is(err, ErrUnavailable)) // unreachable engine is ErrUnavailable
	is.True(strings.Contains(err.Error(), "docker-up.sh"))
}

func TestOptionsRejectBadValues(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
	}{
		{"nil client", WithDockerClient(nil)},
		{"empty host", WithDockerHost(" ")},
		{"namespace upper", WithNamespace("Bad")},
		{"namespace empty", WithNamespace("")},
		{"negative default", WithDefaultResources(Resources{MemoryMB: -1})},
		{"negative max", WithMaxResources(Resources{CPUs: -1})},
		{"zero ttl", WithDefaultTTL(0)},
		{"nil logger", WithLogger(nil)},
		{"empty state dir", WithStateDir("")},
		{"bad host ip", WithHostIP("localhost")},
		{"reserved label", WithLabels(map[string]string{"org.opensbx.name": "x"})},
		{"zero output limit", WithOutputLimit(0)},
		{"zero history", WithCommandHistory(0)},
		{"zero file limit", WithFileSizeLimit(0)},
		{"zero pull timeout", WithPullInactivityTimeout(0)},
		{"negative stop timeout", WithStopTimeout(-time.Second)},
		{"default over max", func(c *config) error { c.defaults.MemoryMB = c.max.MemoryMB + 1; return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), tt.opt)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("New(%s) = %v, want ErrInvalid", tt.name, err)
			}
		})
	}
}

func TestNormalizeValidation(t *testing.T) {
	m := &Manager{cfg: defaultConfig()}
	tests := []struct {
		name string
		in   CreateOptions
	}{
		{"empty image", CreateOptions{}},
		{"blank image", CreateOptions{Image: "  "}},
		{"negative ttl", CreateOptions{Image: "x", TTL: -time.Second}},
		{"negative memory", CreateOptions{Image: "x", Resources: Resources{MemoryMB: -1}}},
		{"memory over max", CreateOptions{Image: "x", Resources: Resources{MemoryMB: 8193}}},
		{"negative cpus", CreateOptions{Image: "x", Resources: Resources{CPUs: -0.5}}},
		{"cpus over max", CreateOptions{Image: "x", Resources: Resources{CPUs: 4.5}}},
		{"tiny memory", CreateOptions{Image: "x", Resources: Resources{MemoryMB: 2}}},
		{"port word", CreateOptions{Image: "x", Ports: []string{"http"}}},
		{"port zero", CreateOptions{Image: "x", Ports: []string{"0"}}},
		{"port too big", CreateOptions{Image: "x", Ports: []string{"65536"}}},
		{"port bad proto", CreateOptions{Image: "x", Ports: []string{"80/icmp"}}},
		{"port leading zero", CreateOptions{Image: "x", Ports: []string{"080"}}},
		{"port twice", CreateOptions{Image: "x", Ports: []string{"80", "80/tcp"}}},
		{"bad name", CreateOptions{Image: "x", Name: "-x"}},
		{"name with slash", CreateOptions{Image: "x", Name: "a/b"}},
		{"env without =", CreateOptions{Image: "x", Env: []string{"SECRET"}}},
		{"keep image cmd and command", CreateOptions{Image: "x", KeepImageCommand: true, Command: []string{"x"}}},
		{"reserved label", CreateOptions{Image: "x", Labels: map[string]string{"org.opensbx.namespace": "other"}}},
		{"empty label key", CreateOptions{Image: "x", Labels: map[string]string{"": "v"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.normalize(tt.in); !errors.Is(err, ErrInvalid) {
				t.Fatalf("normalize = %v, want ErrInvalid", err)
			}
		})
	}
	is := is.New(t)
	o, err := m.normalize(CreateOptions{Image: "x", Ports: []string{"8080", "53/UDP"}})
	is.NoErr(err)
	is.Equal(o.Ports, []string{"8080/tcp", "53/udp"}) // ports normalised
	is.Equal(o.Resources, Resources{MemoryMB: 1024, CPUs: 1})
	is.Equal(o.TTL, DefaultTTL)
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	// A long stop timeout: the exit code then shows whether SIGTERM ended the
	// sandbox (143) or the engine had to kill it (137), however loaded the
	// machine is.
	m, cli := newTestManager(t, WithStopTimeout(30*time.Second))
	sb := newBusybox(t, m, CreateOptions{Ports: []string{"8080", "53/udp"}, Env: []string{"A=1"}, Labels: map[string]string{"team": "graders"}})
	is.Equal(sb.Labels["team"], "graders")     // per-sandbox label
	is.Equal(sb.Labels[testRunLabel], testRun) // manager label
	is.Equal(sb.State, StateRunning)
	is.True(sb.Name != "")
	is.Equal(sb.Ports, []string{"8080/tcp", "53/udp"})
	is.Equal(sb.MainPort(), "8080/tcp")
	is.True(sb.PortMap["8080/tcp"] != "") // host port published
	is.True(sb.PortMap["53/udp"] != "")
	is.True(time.Until(sb.ExpiresAt) > 14*time.Minute) // default TTL armed

	// Ports are published on 127.0.0.1 only.
	ci, err := cli.ContainerInspect(ctx, sb.ID)
	is.NoErr(err)
	for _, b := range ci.HostConfig.PortBindings {
		is.Equal(b[0].HostIP, "127.0.0.1")
	}
	is.True(ci.HostConfig.Init != nil && *ci.HostConfig.Init) // runs under an init

	got, err := m.Get(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(got.Name, sb.Name)
	byName, err := m.Get(ctx, sb.Name)
	is.NoErr(err)
	is.Equal(byName.ID, sb.ID) // lookup by name

	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 1)
	is.Equal(list[0].ID, sb.ID)
	is.Equal(list[0].Image, testenv.BusyboxImage)
	is.Equal(list[0].PortMap["8080/tcp"], sb.PortMap["8080/tcp"])

	netw, err := m.Network(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(netw.MainPort, "8080/tcp")
	is.Equal(netw.Ports["8080/tcp"], sb.PortMap["8080/tcp"])

	// The engine reports a container running once runc has started it, which
	// can be before its init handles signals; a SIGTERM in that window is
	// lost (as with docker run --init; docker stop). A command that ran
	// shows the keep-alive is up.
	_, err = m.Run(ctx, sb.ID, ExecOptions{Command: "true"})
	is.NoErr(err)
	st, err := m.Stop(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(st.State, StateStopped)
	is.True(st.ExpiresAt.IsZero())
	is.Equal(st.ExitCode, 143) // the keep-alive ended on SIGTERM, not after the kill timeout

	_, err = m.Stop(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // stop a stopped sandbox
	_, err = m.Pause(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // pause a stopped sandbox
	_, err = m.Resume(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // resume a stopped sandbox
	_, err = m.Stats(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // stats of a stopped sandbox
	_, err = m.Renew(ctx, sb.ID, time.Minute)
	is.True(errors.Is(err, ErrConflict)) // renew a stopped sandbox

	st, err = m.Start(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(st.State, StateRunning)
	is.True(!st.ExpiresAt.IsZero()) // start re-arms the TTL
	_, err = m.Start(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // start a running sandbox
	_, err = m.Resume(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // resume a running sandbox

	st, err = m.Pause(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(st.State, StatePaused)
	_, err = m.Pause(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // pause a paused sandbox
	_, err = m.Start(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // start a paused sandbox
	st, err = m.Resume(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(st.State, StateRunning)

	before := st.StartedAt
	st, err = m.Restart(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(st.State, StateRunning)
	is.True(st.StartedAt.After(before)) // restarted

	_, err = m.Pause(ctx, sb.ID)
	is.NoErr(err)
	st, err = m.Restart(ctx, sb.ID)
	is.NoErr(err) // restart from paused
	is.Equal(st.State, StateRunning)

	_, err = m.Pause(ctx, sb.ID)
	is.NoErr(err)
	st, err = m.Stop(ctx, sb.ID)
	is.NoErr(err) // a paused sandbox can be stopped
	is.Equal(st.State, StateStopped)

	st, err = m.Restart(ctx, sb.ID)
	is.NoErr(err) // restart from stopped
	is.Equal(st.State, StateRunning)

	is.NoErr(m.Delete(ctx, sb.ID))
	_, err = m.Get(ctx, sb.ID)
	is.True(errors.Is(err, ErrNotFound)) // deleted
	is.True(errors.Is(m.Delete(ctx, sb.ID), ErrNotFound))
	_, err = m.Start(ctx, sb.ID)
	is.True(errors.Is(err, ErrNotFound))
}

func TestDeleteInEveryState(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	running := newBusybox(t, m, CreateOptions{})
	paused := newBusybox(t, m, CreateOptions{})
	stopped := newBusybox(t, m, CreateOptions{})
	_, err := m.Pause(ctx, paused.ID)
	is.NoErr(err)
	_, err = m.Stop(ctx, stopped.ID)
	is.NoErr(err)
	for _, id := range []string{running.ID, paused.ID, stopped.ID} {
		is.NoErr(m.Delete(ctx, id))
	}
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 0) // all deleted
}

func TestForeignContainerIsInvisible(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, cli := newTestManager(t)
	// A container without Opensbx labels, and one with another namespace.
	for _, labels := range []map[string]string{
		{testRunLabel: testRun},
		{testRunLabel: testRun, labelManaged: "true", labelNamespace: "someone-else"},
	} {
		resp, err := cli.ContainerCreate(ctx, &container.Config{Image: testenv.BusyboxImage, Cmd: []string{"true"}, Labels: labels}, nil, nil, nil, "")
		is.NoErr(err)
		t.Cleanup(func() {
			cli.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true})
		})
		_, err = m.Get(ctx, resp.ID)
		is.True(errors.Is(err, ErrNotFound)) // get foreign
		_, err = m.Get(ctx, resp.ID[:12])
		is.True(errors.Is(err, ErrNotFound)) // a foreign prefix is not resolved daemon-wide
		is.True(errors.Is(m.Delete(ctx, resp.ID), ErrNotFound))
		_, err = m.Start(ctx, resp.ID)
		is.True(errors.Is(err, ErrNotFound)) // start foreign
		_, err = cli.ContainerInspect(ctx, resp.ID)
		is.NoErr(err) // still there
	}
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 0) // foreign containers never listed
}

func TestNamespacesAreIsolated(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	a, _ := newTestManager(t)
	b, _ := newTestManager(t)
	sa := newBusybox(t, a, CreateOptions{Name: "same"})
	sb := newBusybox(t, b, CreateOptions{Name: "same"}) // one name in two namespaces
	is.True(sa.ID != sb.ID)
	la, err := a.List(ctx)
	is.NoErr(err)
	is.Equal(len(la), 1)
	is.Equal(la[0].ID, sa.ID)
	_, err = a.Get(ctx, sb.ID)
	is.True(errors.Is(err, ErrNotFound)) // a cannot see b's sandbox
	is.True(errors.Is(b.Delete(ctx, sa.ID), ErrNotFound))
	got, err := a.Get(ctx, "same")
	is.NoErr(err)
	is.Equal(got.ID, sa.ID) // names resolve within the namespace
}

func TestCreateIdempotentByName(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	opts := CreateOptions{Image: testenv.BusyboxImage, Name: "grader-1", Ports: []string{"80"}}
	first, err := m.Create(ctx, opts)
	is.NoErr(err)
	is.True(first.Created)
	again, err := m.Create(ctx, opts)
	is.NoErr(err)
	is.True(!again.Created)      // retried create returns the existing sandbox
	is.Equal(again.ID, first.ID) // same sandbox
	opts.Ports = []string{"81"}
	_, err = m.Create(ctx, opts)
	is.True(errors.Is(err, ErrConflict)) // same name, different settings
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 1)
}

func TestCreateFailuresLeaveNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, _ := newTestManager(t)
	tests := []struct {
		name string
		opts CreateOptions
		want error
		text string
	}{
		{"missing image", CreateOptions{Image: "opensbx-test/does-not-exist:1"}, ErrImageNotFound, "pull it first"},
		{"no sleep in image", CreateOptions{Image: testenv.NoShellImage}, ErrInvalid, "Command"},
		{"missing binary", CreateOptions{Image: testenv.BusyboxImage, Command: []string{"/no/such/binary"}}, nil, ""},
		{"invalid", CreateOptions{Image: testenv.BusyboxImage, Ports: []string{"x"}}, ErrInvalid, "port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			if tt.name == "no sleep in image" && m.cfg.agent {
				// The agent keeps the sandbox alive: no sleep needed.
				res, err := m.Create(ctx, tt.opts)
				is.NoErr(err)
				is.NoErr(m.Delete(ctx, res.ID))
				return
			}
			_, err := m.Create(ctx, tt.opts)
			is.True(err != nil) // create fails
			if tt.want != nil {
				is.True(errors.Is(err, tt.want))
			}
			is.True(strings.Contains(err.Error(), tt.text))
			list, lerr := m.List(ctx)
			is.NoErr(lerr)
			is.Equal(len(list), 0) // no half-made container left
		})
	}
}

func TestShellLessImageWithCommand(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t, WithStopTimeout(30*time.Second)) // see TestLifecycle
	res, err := m.Create(ctx, CreateOptions{Image: testenv.NoShellImage, Command: []string{"/app"}})
	is.NoErr(err)
	is.Equal(res.State, StateRunning)
	st, err := m.Stop(ctx, res.ID)
	is.NoErr(err)
	// The init forwarded SIGTERM: /app exits cleanly (0), or, when the signal
	// came before its Go runtime installed the handler, dies of it (143);
	// an unforwarded one would end in the engine's SIGKILL (137).
	is.True(st.ExitCode == 0 || st.ExitCode == 143)
}

func TestTTLExpiryStops(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{TTL: 2 * time.Second})
	is.True(time.Until(sb.ExpiresAt) <= 2*time.Second)
	// The engine reports the stop a moment before the expiry forgets the
	// deadline: wait for both.
	waitFor(t, 15*time.Second, "TTL expiry to stop the sandbox and drop its deadline", func() bool {
		got, err := m.Get(context.Background(), sb.ID)
		is.NoErr(err)
		return got.State == StateStopped && got.ExpiresAt.IsZero()
	})
}

func TestTTLExpiryDeletesWhenAsked(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, WithDeleteOnExpiry(true))
	sb := newBusybox(t, m, CreateOptions{TTL: time.Second})
	waitFor(t, 15*time.Second, "TTL expiry to delete the sandbox", func() bool {
		return stateOfSandbox(t, m, sb.ID) == "gone"
	})
}

func TestRenewPostponesExpiry(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	control := newBusybox(t, m, CreateOptions{TTL: 2 * time.Second})
	// Created last and renewed at once, so that a slow create on a loaded
	// machine cannot let its first deadline pass first.
	renewed := newBusybox(t, m, CreateOptions{TTL: 3 * time.Second})
	got, err := m.Renew(ctx, renewed.ID, time.Minute)
	is.NoErr(err)
	is.True(got.ExpiresAt.After(renewed.ExpiresAt.Add(50 * time.Second))) // deadline moved
	_, err = m.Renew(ctx, renewed.ID, 0)
	is.True(errors.Is(err, ErrInvalid)) // non-positive renew
	_, err = m.Renew(ctx, renewed.ID, -time.Second)
	is.True(errors.Is(err, ErrInvalid))
	waitFor(t, 15*time.Second, "the control sandbox to expire", func() bool {
		return stateOfSandbox(t, m, control.ID) == StateStopped
	})
	is.Equal(stateOfSandbox(t, m, renewed.ID), StateRunning) // renewed one outlives its first deadline
}

func TestExpirySurvivesRestart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	cli := testenv.Engine(t)
	ns := testNamespace()
	t.Cleanup(func() { removeLabelled(context.Background(), cli, labelNamespace+"="+ns) })
	open := func() *Manager {
		m, err := New(ctx, WithDockerClient(cli), WithNamespace(ns), WithStateDir(dir),
			WithLabels(map[string]string{testRunLabel: testRun}), WithStopTimeout(2*time.Second))
		is.NoErr(err) // open manager on the state dir
		return m
	}
	testenv.Images(t, cli)
	m := open()
	long, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, TTL: 2 * time.Second})
	is.NoErr(err)
	renewed, err := m.Renew(ctx, long.ID, time.Hour)
	is.NoErr(err)
	// Created last and closed at once, so that its deadline passes only
	// once the Manager is gone, even on a loaded machine.
	short, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, TTL: 2 * time.Second})
	is.NoErr(err)
	is.NoErr(m.Close())

	// The first deadline passes while no Manager runs.
	time.Sleep(3 * time.Second)
	ci, err := cli.ContainerInspect(ctx, short.ID)
	is.NoErr(err)
	is.True(ci.State.Running) // nothing stopped it while the manager was down

	m = open()
	defer m.Close()
	got, err := m.Get(ctx, long.ID)
	is.NoErr(err)
	is.True(got.ExpiresAt.Equal(renewed.ExpiresAt)) // the renewal survived the restart
	waitFor(t, 10*time.Second, "the overdue sandbox to be stopped after restart", func() bool {
		return stateOfSandbox(t, m, short.ID) == StateStopped
	})
	is.Equal(stateOfSandbox(t, m, long.ID), StateRunning)
}

func TestMemoryStateRecoversDeadlineFromLabels(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, cli := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{TTL: 3 * time.Second})
	// A second Manager on the same namespace without a state dir, as after a restart.
	m2, err := New(ctx, WithDockerClient(cli), WithNamespace(m.Namespace()))
	is.NoErr(err)
	defer m2.Close()
	got, err := m2.Get(ctx, sb.ID)
	is.NoErr(err)
	diff := got.ExpiresAt.Sub(sb.ExpiresAt)
	is.True(diff > -2*time.Second && diff < 2*time.Second) // deadline recovered from start time + TTL label
	is.NoErr(m.Close())
	waitFor(t, 15*time.Second, "the recovered deadline to stop the sandbox", func() bool {
		return stateOfSandbox(t, m2, sb.ID) == StateStopped
	})
}

func TestCorruptStateStoreFailsAtNew(t *testing.T) {
	is := is.New(t)
	cli := testenv.Engine(t)
	dir := t.TempDir()
	garbage := []byte(strings.Repeat("not a bolt database ", 1000))
	is.NoErr(os.WriteFile(filepath.Join(dir, "opensbx.db"), garbage, 0o600))
	_, err := New(context.Background(), WithDockerClient(cli), WithNamespace(testNamespace()), WithStateDir(dir))
	is.True(err != nil) // corrupt store is an error, not a panic
	is.True(strings.Contains(err.Error(), "corrupt"))
}

func TestResourceLimits(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, cli := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{Resources: Resources{MemoryMB: 64, CPUs: 0.5}})
	ci, err := cli.ContainerInspect(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(ci.HostConfig.Memory, int64(64<<20))      // memory limit in inspect
	is.Equal(ci.HostConfig.MemorySwap, int64(64<<20))  // no swap beyond it
	is.Equal(ci.HostConfig.NanoCPUs, int64(500000000)) // cpu limit in inspect
	is.Equal(sb.Resources, Resources{MemoryMB: 64, CPUs: 0.5})

	stats, err := m.Stats(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(stats.MemoryLimit, uint64(64<<20)) // stats see the limit
	is.True(stats.PIDs >= 1)
	is.True(stats.MemoryUsage > 0)

	// A memory hog is OOM-killed at the limit: a shell variable of 96 MiB in a 32 MiB sandbox.
	hog, err := m.Create(ctx, CreateOptions{
		Image:     testenv.BusyboxImage,
		Resources: Resources{MemoryMB: 32},
		Command:   []string{"sh", "-c", "x=$(head -c 100663296 /dev/zero | tr '\\000' a); echo survived; sleep 1000"},
	})
	is.NoErr(err)
	waitFor(t, 30*time.Second, "the memory hog to be killed", func() bool {
		return stateOfSandbox(t, m, hog.ID) == StateStopped
	})
	got, err := m.Get(ctx, hog.ID)
	is.NoErr(err)
	is.True(got.OOMKilled) // killed by the OOM killer at the limit
}

func TestStatsStream(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var samples []Stats
	err := m.StatsStream(ctx, sb.ID, func(s Stats) error {
		samples = append(samples, s)
		if len(samples) == 3 {
			cancel()
		}
		return nil
	})
	is.NoErr(err) // a stream ended by its context is not an error
	is.Equal(len(samples), 3)
	is.True(samples[2].Time.After(samples[0].Time)) // distinct samples
	is.Equal(samples[0].MemoryLimit, uint64(1024<<20))
}

func TestPublishedPortReachable(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{
		Ports:   []string{"8080"},
		Command: []string{"sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"},
	})
	addr := net.JoinHostPort(sb.HostIP, sb.PortMap["8080/tcp"])
	// The engine's port proxy accepts connections before httpd listens, so
	// retry the whole request until the server itself answers.
	client := &http.Client{Timeout: 2 * time.Second}
	var body string
	waitFor(t, 15*time.Second, "httpd to answer on "+addr, func() bool {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	})
	is.Equal(body, "hello\n") // served through the published port
}

func TestCloseStopsEverything(t *testing.T) {
	is := is.New(t)
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	ignore := goleak.IgnoreCurrent()
	ctx := context.Background()
	ns := testNamespace()
	t.Cleanup(func() { removeLabelled(context.Background(), cli, labelNamespace+"="+ns) })
	m, err := New(ctx, WithDockerClient(cli), WithNamespace(ns), WithStateDir(t.TempDir()),
		WithLabels(map[string]string{testRunLabel: testRun}))
	is.NoErr(err)
	sb, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, TTL: time.Hour})
	is.NoErr(err)
	streamDone := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		var once bool
		streamDone <- m.StatsStream(ctx, sb.ID, func(Stats) error {
			if !once {
				once = true
				close(started)
			}
			return nil
		})
	}()
	<-started
	is.NoErr(m.Close())
	is.True(errors.Is(<-streamDone, ErrClosed)) // Close ends a running stream
	is.NoErr(m.Close())                         // idempotent
	_, err = m.Get(ctx, sb.ID)
	is.True(errors.Is(err, ErrClosed)) // calls after Close
	_, err = m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage})
	is.True(errors.Is(err, ErrClosed))
	goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"))
	ci, err := cli.ContainerInspect(ctx, sb.ID)
	is.NoErr(err)
	is.True(ci.State.Running) // Close leaves sandboxes running
}

func TestCreateCancelledLeavesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t, WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil))))
	// Cancel at many points of Create's work; whatever it did must be undone
	// unless it returned a sandbox.
	for _, d := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
		20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond, 320 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		res, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage})
		cancel()
		if err == nil {
			is.NoErr(m.Delete(context.Background(), res.ID)) // a finished create is the caller's to delete
		}
	}
	var left []*Sandbox
	defer func() {
		for _, sb := range left {
			t.Logf("left: %s %s %s created %s", sb.ID, sb.Name, sb.State, sb.CreatedAt.Format(time.RFC3339Nano))
		}
	}()
	waitFor(t, time.Minute, "containers of cancelled creates to be removed", func() bool {
		var err error
		left, err = m.List(context.Background())
		is.NoErr(err)
		return len(left) == 0
	})
}
