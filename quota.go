package opensbx

import (
	"sync"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// quota counts the sandboxes being made, so that WithMaxSandboxes holds
// under concurrent Creates: a Create reserves a place before it asks the
// engine and releases it when the sandbox is in the index (or failed).
type quota struct {
	mu      sync.Mutex
	pending int
}

// roomForPool reports whether the pool, with pooled sandboxes ready or
// filling, may make one more without going over WithMaxSandboxes.
func (m *Manager) roomForPool(pooled int) bool {
	if m.cfg.maxSandboxes == 0 {
		return true
	}
	m.quota.mu.Lock()
	defer m.quota.mu.Unlock()
	return m.index.size()+m.quota.pending+pooled < m.cfg.maxSandboxes
}

// reserveCommand takes a place for one more running command in sandbox
// id, or fails with ErrRateLimited (WithMaxCommands).
func (r *commandRegistry) reserveCommand(id string) (release func(), err error) {
	max := r.m.cfg.maxCommands
	if max == 0 {
		return func() {}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.starting[id]
	if box := r.boxes[id]; box != nil {
		for _, e := range box.order {
			if e.cmd.State == CommandRunning {
				n++
			}
		}
	}
	if n >= max {
		return nil, sbxerr.New(ErrRateLimited, "sandbox %s runs %d commands, its maximum (WithMaxCommands %d)", shortID(id), n, max)
	}
	if r.starting == nil {
		r.starting = map[string]int{}
	}
	r.starting[id]++
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if r.starting[id]--; r.starting[id] <= 0 {
				delete(r.starting, id)
			}
			r.mu.Unlock()
		})
	}, nil
}

// reserveSandbox takes a place for one more sandbox, or fails with
// ErrRateLimited. release must be called once the sandbox is made or not.
func (m *Manager) reserveSandbox() (release func(), err error) {
	max := m.cfg.maxSandboxes
	if max == 0 {
		return func() {}, nil
	}
	pooled := m.pool.size() // before quota.mu: the pool takes them the other way round
	m.quota.mu.Lock()
	defer m.quota.mu.Unlock()
	n := m.index.size() + m.quota.pending + pooled
	if n >= max {
		return nil, sbxerr.New(ErrRateLimited, "this manager has %d sandboxes, its maximum (WithMaxSandboxes %d); delete one first", n, max)
	}
	m.quota.pending++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.quota.mu.Lock()
			m.quota.pending--
			m.quota.mu.Unlock()
		})
	}, nil
}
