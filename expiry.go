package opensbx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// bucketExpiry holds one record per sandbox with a deadline.
const bucketExpiry = "expiry"

// expiryRecord is the durable deadline of one sandbox.
type expiryRecord struct {
	Deadline time.Time     `json:"deadline"`
	TTL      time.Duration `json:"ttl"`
}

// expiry tracks sandbox deadlines: in memory for lookups, in the state store
// so a restarted Manager keeps enforcing them. One goroutine (run) stops or
// deletes sandboxes whose deadline passed.
type expiry struct {
	m     *Manager
	mu    sync.Mutex
	recs  map[string]expiryRecord
	busy  map[string]bool // ids being expired right now
	wake  chan struct{}   // nudges run when the earliest deadline changes
	limit chan struct{}   // bounds concurrent expiry actions
}

func newExpiry(m *Manager) *expiry {
	return &expiry{m: m, recs: map[string]expiryRecord{}, busy: map[string]bool{}, wake: make(chan struct{}, 1), limit: make(chan struct{}, 8)}
}

// recover loads stored deadlines and reconciles them with owned, the
// engine's list of this namespace's containers: records of containers that
// are gone are dropped, and running sandboxes without a record get their
// deadline from their start time and TTL label.
func (e *expiry) recover(owned []engine.Container) error {
	err := e.m.store.ForEach(bucketExpiry, func(id string, v []byte) error {
		var r expiryRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("record %s: %w", shortID(id), err)
		}
		e.recs[id] = r
		return nil
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.m.ctx, time.Minute)
	defer cancel()
	alive := map[string]bool{}
	for _, c := range owned {
		alive[c.ID] = true
		st := stateOf(c.State)
		if _, ok := e.recs[c.ID]; ok || (st != StateRunning && st != StatePaused) {
			continue
		}
		ttl := e.m.ttlOf(c)
		if ttl <= 0 {
			continue
		}
		started := c.Created
		if ci, err := e.m.engine.Inspect(ctx, c.ID); err == nil && !ci.State.StartedAt.IsZero() {
			started = ci.State.StartedAt
		}
		if err := e.put(c.ID, expiryRecord{Deadline: started.Add(ttl), TTL: ttl}, false); err != nil {
			return err
		}
	}
	for id := range e.recs {
		if !alive[id] {
			if err := e.forget(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// put records r as the deadline of id. With renewal set it fails with
// ErrConflict when the expiry is already stopping id: a renewal that
// succeeds is never followed by the expiry of the old deadline.
func (e *expiry) put(id string, r expiryRecord, renewal bool) error {
	e.mu.Lock()
	if renewal && e.busy[id] {
		e.mu.Unlock()
		return sbxerr.Conflict("the sandbox's TTL passed and it is being stopped")
	}
	e.recs[id] = r
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	b, _ := json.Marshal(r)
	if err := e.m.store.Put(bucketExpiry, id, b); err != nil {
		return fmt.Errorf("save deadline: %w", err)
	}
	return nil
}

// arm sets the deadline of id to ttl from now (the Manager's default TTL
// for ttl <= 0), for a sandbox that was just started.
func (e *expiry) arm(id string, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = e.m.cfg.ttl
	}
	return e.put(id, expiryRecord{Deadline: e.m.now().Add(ttl), TTL: ttl}, false)
}

// renew sets the deadline of a running sandbox to ttl from now.
func (e *expiry) renew(id string, ttl time.Duration) error {
	return e.put(id, expiryRecord{Deadline: e.m.now().Add(ttl), TTL: ttl}, true)
}

// forget drops the deadline of id.
func (e *expiry) forget(id string) error {
	e.mu.Lock()
	delete(e.recs, id)
	e.mu.Unlock()
	if err := e.m.store.Delete(bucketExpiry, id); err != nil {
		return fmt.Errorf("drop deadline of %s: %w", shortID(id), err)
	}
	return nil
}

// deadline returns the deadline of id, or the zero time.
func (e *expiry) deadline(id string) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.recs[id].Deadline
}

// due marks busy and returns the ids whose deadline passed, and the time of
// the next deadline of the others (zero when none).
func (e *expiry) due(now time.Time) (ids []string, next time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, r := range e.recs {
		if e.busy[id] {
			continue
		}
		if !r.Deadline.After(now) {
			e.busy[id] = true
			ids = append(ids, id)
			continue
		}
		if next.IsZero() || r.Deadline.Before(next) {
			next = r.Deadline
		}
	}
	return ids, next
}

// run expires sandboxes until ctx ends.
func (e *expiry) run(ctx context.Context) {
	var actions sync.WaitGroup
	defer actions.Wait()
	for {
		ids, next := e.due(e.m.now())
		for _, id := range ids {
			select {
			case e.limit <- struct{}{}:
			case <-ctx.Done():
				return
			}
			actions.Add(1)
			go func() {
				defer actions.Done()
				defer func() { <-e.limit }()
				e.expire(ctx, id)
			}()
		}
		wait := time.Minute
		if !next.IsZero() {
			wait = max(next.Sub(e.m.now()), 10*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.m.cfg.clock.After(wait):
		case <-e.wake:
		}
	}
}

// expire stops (or deletes) one sandbox whose deadline passed. On a
// transient failure the deadline is retried a few seconds later.
func (e *expiry) expire(ctx context.Context, id string) {
	defer func() {
		e.mu.Lock()
		delete(e.busy, id)
		e.mu.Unlock()
		select { // the next deadline may be this id's retry
		case e.wake <- struct{}{}:
		default:
		}
	}()
	e.mu.Lock()
	rec, ok := e.recs[id]
	if !ok || rec.Deadline.After(e.m.now()) { // forgotten or renewed meanwhile
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	name := e.m.index.nameOf(id)
	e.m.publish(Event{Type: EventStopping, SandboxID: id, Name: name, Expired: true})
	var err error
	action := "stop"
	if e.m.cfg.deleteOnExpiry {
		action = "delete"
		var labels map[string]string
		if c, ierr := e.m.engine.Inspect(ctx, id); ierr == nil {
			labels = c.Labels
		}
		err = e.m.remove(ctx, id, labels)
	} else {
		err = e.m.engine.Stop(ctx, id, e.m.cfg.stopTimeout)
	}
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict):
		e.m.log.Info("sandbox expired", "sandbox", shortID(id), "action", action)
		if err == nil {
			ev := Event{Type: EventStopped, SandboxID: id, Name: name, Expired: true}
			if action == "delete" {
				ev.Type = EventDeleted
			}
			e.m.publish(ev)
		}
		e.mu.Lock()
		cur, still := e.recs[id]
		e.mu.Unlock()
		if still && cur.Deadline.Equal(rec.Deadline) {
			if err := e.forget(id); err != nil {
				e.m.log.Error("expire sandbox", "sandbox", shortID(id), "err", err)
			}
		}
	case ctx.Err() != nil:
	default:
		e.m.log.Warn("expire sandbox", "sandbox", shortID(id), "action", action, "err", err)
		rec.Deadline = e.m.now().Add(5 * time.Second)
		if perr := e.put(id, rec, false); perr != nil {
			e.m.log.Error("save deadline", "sandbox", shortID(id), "err", perr)
		}
	}
}
