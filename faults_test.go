package opensbx

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// TestEngineOutage cuts the Manager off its engine (a TCP proxy in front of
// the socket, as with a remote DOCKER_HOST) and brings it back: calls fail
// fast with ErrUnavailable meanwhile, then work again without a new
// Manager; the deadline that passed during the outage is enforced once the
// engine is back; command records and events carry on.
func TestEngineOutage(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	proxy := testenv.NewEngineProxy(t)
	ns := testNamespace()
	t.Cleanup(func() { removeLabelled(context.Background(), cli, labelNamespace+"="+ns) })
	m, err := New(ctx, WithDockerHost(proxy.Host), WithNamespace(ns), WithStopTimeout(time.Second),
		WithLabels(map[string]string{testRunLabel: testRun}))
	is.NoErr(err)
	defer m.Close()
	long := newBusybox(t, m, CreateOptions{TTL: time.Hour})
	short := newBusybox(t, m, CreateOptions{TTL: 2 * time.Second})
	done, err := m.Run(ctx, long.ID, ExecOptions{Command: "echo", Args: []string{"before"}})
	is.NoErr(err)
	stopped := make(chan Event, 16)
	m.Subscribe(func(ev Event) {
		if ev.Type == EventStopped && ev.SandboxID == short.ID {
			stopped <- ev
		}
	})

	proxy.Cut()
	start := time.Now()
	err = m.Ping(ctx)
	is.True(errors.Is(err, ErrUnavailable)) // the engine is gone
	_, err = m.Get(ctx, long.ID)
	is.True(errors.Is(err, ErrUnavailable)) // calls fail with it, not with 500s
	_, err = m.Exec(ctx, long.ID, ExecOptions{Command: "true"})
	is.True(errors.Is(err, ErrUnavailable))
	is.True(time.Since(start) < 30*time.Second) // and fail fast, not after long timeouts
	time.Sleep(3 * time.Second)                 // short's deadline passes while the engine is away

	proxy.Restore(t)
	waitFor(t, 30*time.Second, "the Manager to reach the engine again", func() bool { return m.Ping(ctx) == nil })
	got, err := m.Get(ctx, long.ID)
	is.NoErr(err)
	is.Equal(got.State, StateRunning)
	waitFor(t, 30*time.Second, "the overdue sandbox to be stopped", func() bool {
		return stateOfSandbox(t, m, short.ID) == StateStopped
	})
	old, err := m.Command(ctx, long.ID, done.Command.ID)
	is.NoErr(err)
	is.Equal(old.State, CommandFinished) // records survive the outage
	res, err := m.Run(ctx, long.ID, ExecOptions{Command: "echo", Args: []string{"after"}})
	is.NoErr(err)
	is.Equal(string(res.Stdout), "after\n") // commands work again
	select {
	case <-stopped: // the expiry's stop reached the subscribers
	case <-time.After(10 * time.Second):
		t.Fatal("no stop event after the outage")
	}
}

// TestDeleteRaces deletes sandboxes while commands, file calls and stats
// run on them: every call either works or fails with ErrNotFound or
// ErrConflict (404 or 409 over HTTP), never with an error of no kind (a
// 500). The load command found the engine's plain answers to such races.
func TestDeleteRaces(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m, _ := newTestManager(t)
	for round := 0; round < 4; round++ {
		sb := newBusybox(t, m, CreateOptions{})
		var wg sync.WaitGroup
		errs := make(chan error, 1000)
		stop := make(chan struct{})
		calls := []func() error{
			func() error { _, err := m.Run(ctx, sb.ID, ExecOptions{Command: "true"}); return err },
			func() error { return m.WriteFile(ctx, sb.ID, "/tmp/f", []byte("x"), 0) },
			func() error { _, _, err := m.ReadFile(ctx, sb.ID, "/etc/passwd"); return err },
			func() error { _, err := m.ListDir(ctx, sb.ID, "/tmp"); return err },
			func() error { _, err := m.Stats(ctx, sb.ID); return err },
		}
		for _, call := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := call(); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(50+round*50) * time.Millisecond)
		is.NoErr(m.Delete(ctx, sb.ID))
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			var ee *ExitError
			if errors.As(err, &ee) {
				continue // a command the deletion ended
			}
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
				t.Errorf("a call racing a delete: %v (no kind: a 500 over HTTP)", err)
			}
		}
	}
}
