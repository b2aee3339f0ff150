package opensbx

import (
	"context"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/poll"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// An exec that the engine has created but not yet started when its
// container is frozen never starts: runc cannot bring the new process into
// a frozen cgroup, and the Docker engine (20.10) then holds its exec store
// locked, so every later call on the container hangs with it. freezeGates
// keep a sandbox from being frozen while the Manager is starting an exec in
// it, and an exec from starting while it is being frozen.
type freezeGates struct {
	mu    sync.Mutex
	gates map[string]*sync.RWMutex
}

func (g *freezeGates) gate(id string) *sync.RWMutex {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gates == nil {
		g.gates = map[string]*sync.RWMutex{}
	}
	l := g.gates[id]
	if l == nil {
		l = &sync.RWMutex{}
		g.gates[id] = l
	}
	return l
}

// forget drops the gate of a removed sandbox.
func (g *freezeGates) forget(id string) {
	g.mu.Lock()
	delete(g.gates, id)
	g.mu.Unlock()
}

// startingExec holds off a Pause of sandbox id until the returned release
// is called (once the exec's process is known to run); it fails with
// ErrConflict when the sandbox is paused or being paused.
func (m *Manager) startingExec(id string) (release func(), err error) {
	l := m.freeze.gate(id)
	l.RLock()
	// Only a sandbox the index knows is ever paused by a Manager: a pool's
	// ready one (not in the index) is not, and its channel opens at fill.
	if m.index.pausedKnown(id) {
		l.RUnlock()
		return nil, sbxerr.Conflict("sandbox %s is paused", shortID(id))
	}
	var once sync.Once
	return func() { once.Do(l.RUnlock) }, nil
}

// freezing holds off new execs of sandbox id, after the ones starting have
// started, until the returned release is called.
func (m *Manager) freezing(id string) (release func()) {
	l := m.freeze.gate(id)
	l.Lock()
	return l.Unlock
}

// startedWithin bounds how long startExec holds off a Pause for an exec the
// engine has not reported started.
const startedWithin = 5 * time.Second

// startExec starts an engine exec in sandbox id, holding off a Pause until
// the engine reports its process started: the engine's Exec returns with the
// stream attached, which can be before the runtime has brought the process
// in. Every engine exec of the Manager's goes through it (the agent's
// channel holds the gate itself, until the agent answers).
func (m *Manager) startExec(ctx context.Context, id string, spec engine.ExecSpec) (engine.Exec, error) {
	release, err := m.startingExec(id)
	if err != nil {
		return nil, err
	}
	defer release()
	x, err := m.engine.Exec(ctx, id, spec)
	if err != nil || m.onKubernetes() { // nothing freezes a Pod
		return x, err
	}
	wctx, cancel := context.WithTimeout(ctx, startedWithin)
	defer cancel()
	_ = poll.Until(wctx, poll.Backoff{Min: 200 * time.Microsecond, Max: 20 * time.Millisecond}, func() (bool, error) {
		st, err := m.engine.ExecInspect(wctx, x.ID())
		return err != nil || st.Running || st.Pid != 0, nil // started (or gone: nothing to wait for)
	})
	return x, nil
}

// gatedEngine is the Manager's engine with every Exec through startExec,
// for helpers (engine.Run) that take an Engine.
type gatedEngine struct {
	engine.Engine
	m *Manager
}

// Exec starts the exec through the freeze gate.
func (g gatedEngine) Exec(ctx context.Context, id string, spec engine.ExecSpec) (engine.Exec, error) {
	return g.m.startExec(ctx, id, spec)
}
