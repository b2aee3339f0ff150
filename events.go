package opensbx

import (
	"sync"
	"time"
)

// EventType names a change to a sandbox.
type EventType string

// Event types.
const (
	EventCreated   EventType = "created"
	EventStarted   EventType = "started"
	EventStopped   EventType = "stopped"
	EventRestarted EventType = "restarted"
	EventPaused    EventType = "paused"
	EventResumed   EventType = "resumed"
	EventRenewed   EventType = "renewed"
	EventDeleted   EventType = "deleted"
)

// Event reports a change the Manager made to one of its sandboxes: a call
// that succeeded, or the expiry stopping or deleting a sandbox.
type Event struct {
	// Type is what happened.
	Type EventType
	// SandboxID is the sandbox's full id.
	SandboxID string
	// Name is the sandbox's name.
	Name string
	// Expired is set when the TTL caused the change (stopped or deleted).
	Expired bool
	// Time is when the Manager saw the change.
	Time time.Time
}

// subscribers holds the callbacks of Subscribe.
type subscribers struct {
	mu   sync.RWMutex
	next int
	fns  map[int]func(Event)
}

// Subscribe calls fn with every Event from now until the returned function
// is called (it is idempotent, and once it returns fn is not called again).
// fn runs on the goroutine that made the change, after the change: it must
// return quickly and must not call Subscribe or its cancel function. Caches
// keyed by a sandbox's ports or state (a preview proxy's routes) drop their
// entries here.
func (m *Manager) Subscribe(fn func(Event)) (cancel func()) {
	s := &m.subs
	s.mu.Lock()
	if s.fns == nil {
		s.fns = map[int]func(Event){}
	}
	id := s.next
	s.next++
	s.fns[id] = fn
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.fns, id)
		s.mu.Unlock()
	}
}

// publish sends ev to every subscriber.
func (m *Manager) publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	s := &m.subs
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, fn := range s.fns {
		fn(ev)
	}
}
