package opensbx

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/clock"
	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/engine/enginefake"
)

// slowStartEngine reports its execs not started (no pid yet) until started
// is closed, and records when Pause reaches it.
type slowStartEngine struct {
	*enginefake.Engine
	started  chan struct{}
	paused   atomic.Bool
	inspects atomic.Int32
}

func (e *slowStartEngine) ExecInspect(ctx context.Context, execID string) (engine.ExecStatus, error) {
	e.inspects.Add(1)
	select {
	case <-e.started:
		return e.Engine.ExecInspect(ctx, execID)
	default:
		return engine.ExecStatus{}, nil // created, not started
	}
}

func (e *slowStartEngine) Pause(ctx context.Context, id string) error {
	e.paused.Store(true)
	return e.Engine.Pause(ctx, id)
}

// TestPauseWaitsForStartingExec: a Pause does not freeze a sandbox while
// an engine exec in it has not started (the Docker engine would hang on
// it), and goes ahead once the exec runs.
func TestPauseWaitsForStartingExec(t *testing.T) {
	is := is.New(t)
	clk := clock.NewFake(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	fe := &slowStartEngine{Engine: newFakeEngine(clk), started: make(chan struct{})}
	m, err := New(context.Background(), withEngine(fe), withClock(clk), WithAgent(false), WithNamespace("unit"))
	is.NoErr(err)
	t.Cleanup(func() { m.Close() })
	sb := fakeCreate(t, m, CreateOptions{})
	ctx := context.Background()

	execd := make(chan error, 1)
	go func() {
		_, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1"}})
		execd <- err
	}()
	for fe.inspects.Load() == 0 { // the exec is made, its start awaited
		time.Sleep(time.Millisecond)
	}
	pausedSB := make(chan error, 1)
	go func() {
		_, err := m.Pause(ctx, sb.ID)
		pausedSB <- err
	}()
	time.Sleep(50 * time.Millisecond)
	is.True(!fe.paused.Load()) // held off while the exec starts
	close(fe.started)
	is.NoErr(<-execd)
	is.NoErr(<-pausedSB)
	is.True(fe.paused.Load()) // then frozen

	_, err = m.Exec(ctx, sb.ID, ExecOptions{Command: "sleep", Args: []string{"1"}})
	is.True(err != nil) // and no exec starts in a paused sandbox
}

// TestStartingExecPoolSandbox: a pool's ready sandbox (not in the index,
// never paused) may start an exec, so that its channel opens at fill time;
// a sandbox the index knows paused may not.
func TestStartingExecPoolSandbox(t *testing.T) {
	is := is.New(t)
	m, _, _ := fakeSetup(t)
	release, err := m.startingExec(strings.Repeat("ab", 32)) // unknown to the index
	is.NoErr(err)
	release()
	sb := fakeCreate(t, m, CreateOptions{})
	_, err = m.Pause(context.Background(), sb.ID)
	is.NoErr(err)
	_, err = m.startingExec(sb.ID)
	is.True(errors.Is(err, ErrConflict))
}
