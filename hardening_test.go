package opensbx

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// TestContainerPolicy reads back, from the engine, the policy every
// sandbox gets, and checks its effects inside one.
func TestContainerPolicy(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, cli := newTestManager(t)
	sb := newBusybox(t, m, CreateOptions{})
	ci, err := cli.ContainerInspect(ctx, sb.ID)
	is.NoErr(err)
	hc := ci.HostConfig
	is.Equal([]string(hc.CapDrop), []string{"ALL"}) // every capability dropped
	want := []string{}
	for _, c := range sandboxCaps() {
		want = append(want, "CAP_"+c)
	}
	got := append([]string(nil), hc.CapAdd...)
	for i, c := range got {
		if !strings.HasPrefix(c, "CAP_") {
			got[i] = "CAP_" + c
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	is.Equal(got, want) // but the minimal set
	is.True(!slices.Contains(sandboxCaps(), "NET_RAW"))
	is.True(slices.Contains(hc.SecurityOpt, "no-new-privileges:true"))
	is.Equal(*hc.PidsLimit, int64(DefaultPidsLimit))
	is.Equal(len(hc.Ulimits), 1)
	is.Equal(hc.Ulimits[0].Name, "nofile")
	is.Equal(hc.Ulimits[0].Hard, int64(DefaultNofile))
	is.True(*hc.Init) // under an init

	run := func(sbID string, args ...string) (string, int) {
		t.Helper()
		res, err := m.Run(ctx, sbID, ExecOptions{Command: args[0], Args: args[1:]})
		var ee *ExitError
		if errors.As(err, &ee) {
			return string(res.Stdout) + string(res.Stderr), ee.ExitCode()
		}
		is.NoErr(err)
		return string(res.Stdout) + string(res.Stderr), 0
	}
	out, _ := run(sb.ID, "sh", "-c", "ulimit -n; grep CapEff /proc/self/status")
	is.True(strings.HasPrefix(out, "16384\n")) // open files bounded
	// CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7,
	// NET_BIND_SERVICE 10: the only bits a root process has.
	is.True(strings.Contains(out, "CapEff:\t00000000000004fb")) // exactly the minimal set
	// Raw sockets are gone (ping needs NET_RAW): loopback only, nothing leaves.
	_, code := run(sb.ID, "ping", "-c", "1", "-W", "1", "127.0.0.1")
	is.True(code != 0) // no raw sockets

	// A read-only root file system keeps /tmp and /work writable.
	ro := newBusybox(t, m, CreateOptions{ReadOnlyRootfs: true})
	_, code = run(ro.ID, "touch", "/etc/x")
	is.True(code != 0) // the root is read-only
	_, code = run(ro.ID, "sh", "-c", "echo a > /tmp/a && echo b > /work/b && cat /tmp/a /work/b")
	is.Equal(code, 0)                                            // /tmp and /work are writable
	is.NoErr(m.WriteFile(ctx, ro.ID, "/work/c", []byte("c"), 0)) // also through the engine's archive API
	data, _, err := m.ReadFile(ctx, ro.ID, "/work/c")
	is.NoErr(err)
	is.Equal(string(data), "c")

	// A non-root user for the sandbox and its commands.
	user := newBusybox(t, m, CreateOptions{User: "nobody"})
	out, _ = run(user.ID, "id", "-u")
	is.Equal(strings.TrimSpace(out), "65534") // commands run as nobody

	// No network: loopback only.
	none := newBusybox(t, m, CreateOptions{Network: "none"})
	out, _ = run(none.ID, "cat", "/proc/net/dev")
	is.True(!strings.Contains(out, "eth0")) // no interface but lo
	_, err = m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Network: "none", Ports: []string{"80"}})
	is.True(errors.Is(err, ErrInvalid)) // ports without a network
	_, err = m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Network: "host"})
	is.True(errors.Is(err, ErrInvalid)) // only the default or none
	_, err = m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, User: "root; rm -rf /"})
	is.True(errors.Is(err, ErrInvalid)) // a user is a name or id
	_, err = m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Runtime: "no-such-runtime"})
	is.True(errors.Is(err, ErrUnsupported)) // an unknown runtime
}

// TestEngineLimitsChecked: options the engine cannot honour fail New.
func TestEngineLimitsChecked(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	cli := testenv.Engine(t)
	_, err := New(context.Background(), WithDockerClient(cli), WithRuntime("no-such-runtime"))
	is.True(errors.Is(err, ErrUnsupported)) // runtime not registered
	info, err := cli.Info(context.Background())
	is.NoErr(err)
	backing := ""
	for _, kv := range info.DriverStatus {
		if kv[0] == "Backing Filesystem" {
			backing = kv[1]
		}
	}
	if info.Driver == "overlay2" && backing != "xfs" {
		_, err = New(context.Background(), WithDockerClient(cli), WithDiskQuota(1<<30))
		is.True(errors.Is(err, ErrUnsupported))         // no quota on this storage
		is.True(strings.Contains(err.Error(), backing)) // says what the engine has
	}
}
