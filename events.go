package opensbx

import (
	"context"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/poll"
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
	// EventStopping comes before the engine is asked to stop, restart or
	// remove a sandbox, so that a cache of its host ports drops them before
	// the engine frees them for others.
	EventStopping EventType = "stopping"
)

// Event reports a change to one of the Manager's sandboxes: a call that
// succeeded, the expiry stopping or deleting a sandbox, or a change the
// engine reports (a sandbox's main process exited, a container was
// removed behind the Manager's back). One change may be reported twice
// (by the call and by the engine).
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

// publish sends ev to every subscriber (after dropping the sandbox's agent
// session when its agent stops).
func (m *Manager) publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	switch ev.Type {
	case EventStopping, EventStopped, EventRestarted, EventDeleted:
		m.agents.drop(ev.SandboxID)
	}
	s := &m.subs
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, fn := range s.fns {
		fn(ev)
	}
}

// watchEngine follows the engine's events about this namespace's
// containers until ctx ends, so that changes the Manager did not make
// itself (a sandbox's main process exiting, a container removed behind
// its back, a sandbox made by another Manager of the namespace) reach the
// index and the subscribers. The Manager's own changes are reported by the
// engine too, so a subscriber may see an event twice. A broken event
// stream (the engine restarted) is reopened with a growing delay.
func (m *Manager) watchEngine(ctx context.Context) {
	delay := poll.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	wait := delay.Min
	for ctx.Err() == nil {
		evs, errc := m.engine.Events(ctx, m.ownedLabels())
		opened := time.Now()
		for ev := range evs {
			m.engineEvent(ev)
		}
		err := <-errc
		if ctx.Err() != nil {
			return
		}
		if time.Since(opened) > time.Minute {
			wait = delay.Min
		}
		m.log.Debug("engine event stream ended; reopening", "err", err, "after", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, delay.Max)
	}
}

// engineEvent applies one engine event.
func (m *Manager) engineEvent(ev engine.Event) {
	if !m.owns(ev.Labels) || !engine.IsFullID(ev.ContainerID) {
		return
	}
	if m.isPooledName(ev.Name) {
		// The pool's own, invisible until adopted; one that died or was
		// removed behind the pool's back cannot be handed out.
		if ev.Action == "die" || ev.Action == "destroy" {
			m.pool.forget(ev.ContainerID)
		}
		return
	}
	name := m.nameOf(engine.Container{ID: ev.ContainerID, Name: ev.Name, Labels: ev.Labels})
	switch ev.Action {
	case "create", "rename":
		if name != "" {
			m.index.add(ev.ContainerID, name)
		}
	case "pause":
		m.index.setPaused(ev.ContainerID, true)
	case "unpause":
		m.index.setPaused(ev.ContainerID, false)
	case "die":
		m.publish(Event{Type: EventStopped, SandboxID: ev.ContainerID, Name: name, Time: ev.Time})
	case "destroy":
		m.index.drop(ev.ContainerID)
		m.publish(Event{Type: EventDeleted, SandboxID: ev.ContainerID, Name: name, Time: ev.Time})
	}
}
