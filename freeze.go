package opensbx

import (
	"sync"

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
	if m.index.isPaused(id) {
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
