package opensbx

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// TestPoolFreshSandboxes: every sandbox handed out by the pool is one no
// one has used: a file written and a process started in one are not in the
// next, each has its own ports, id and name.
func TestPoolFreshSandboxes(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, cli := newTestManager(t, WithPool(PoolTemplate{Image: testenv.BusyboxImage, Ports: []string{"8080"}, Size: 2}))
	waitReadyReal(t, m, 2)

	first, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Ports: []string{"8080"}})
	is.NoErr(err)
	is.True(m.Pool()[0].Hits == 1) // from the pool
	is.NoErr(m.WriteFile(ctx, first.ID, "/tmp/left-behind", []byte("x"), 0))
	_, err = m.Exec(ctx, first.ID, ExecOptions{Command: "sleep", Args: []string{"3600"}})
	is.NoErr(err)
	second, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Ports: []string{"8080"}})
	is.NoErr(err)
	is.True(m.Pool()[0].Hits == 2) // from the pool too
	is.True(first.ID != second.ID && first.Name != second.Name)
	is.True(first.PortMap["8080/tcp"] != "" && first.PortMap["8080/tcp"] != second.PortMap["8080/tcp"]) // own ports
	_, _, err = m.ReadFile(ctx, second.ID, "/tmp/left-behind")
	is.True(errors.Is(err, ErrNotFound)) // fresh filesystem
	res, err := m.Run(ctx, second.ID, ExecOptions{Command: "ps"})
	is.NoErr(err)
	is.True(!strings.Contains(string(res.Stdout), "sleep 3600")) // no process of another sandbox

	// The adopted sandboxes are real sandboxes: listed, stoppable, and left
	// by Close; the ready ones are removed by Close.
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 2) // only the adopted ones are listed
	waitReadyReal(t, m, 2)
	is.NoErr(m.Close())
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", labelNamespace+"="+m.Namespace()))})
	is.NoErr(err)
	is.Equal(len(cs), 2) // the ready ones are gone
}

// TestPoolRestartedManager: a Manager started on the namespace of a killed
// one takes over its ready sandboxes.
func TestPoolRestartedManager(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	tmpl := PoolTemplate{Image: testenv.BusyboxImage, Size: 1}
	m, cli := newTestManager(t, WithPool(tmpl))
	waitReadyReal(t, m, 1)
	m.pool.mu.Lock()
	m.pool.abandon = true // as if killed
	var readyID string
	for _, rs := range m.pool.ready {
		readyID = rs[0].id
	}
	m.pool.mu.Unlock()
	is.NoErr(m.Close())

	m2, err := New(ctx, WithDockerClient(cli), WithNamespace(m.Namespace()), WithPool(tmpl),
		WithLabels(map[string]string{testRunLabel: testRun}))
	is.NoErr(err)
	defer m2.Close()
	waitReadyReal(t, m2, 1)
	res, err := m2.Create(ctx, CreateOptions{Image: testenv.BusyboxImage})
	is.NoErr(err)
	is.Equal(res.ID, readyID) // the earlier Manager's ready sandbox, adopted
	got, err := m2.Get(ctx, res.Name)
	is.NoErr(err)
	is.Equal(got.State, StateRunning)
}

func waitReadyReal(t *testing.T, m *Manager, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if st := m.Pool(); len(st) > 0 && st[0].Ready >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pool never had %d ready: %+v", n, m.Pool())
}
