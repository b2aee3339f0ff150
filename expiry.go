package opensbx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
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

// recover loads stored deadlines and reconciles them with the engine: records
// of containers that are gone are dropped, and running sandboxes without a
// record get their deadline from their start time and TTL label.
func (e *expiry) recover(ctx context.Context) error {
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
	cs, err := e.m.listOwned(ctx)
	if err != nil {
		return err
	}
	alive := map[string]bool{}
	for _, c := range cs {
		alive[c.ID] = true
		st := stateOf(string(c.State), false, false, false)
		if _, ok := e.recs[c.ID]; ok || (st != StateRunning && st != StatePaused) {
			continue
		}
		ttl := labelTTLValue(c.Labels)
		if ttl <= 0 {
			continue
		}
		started := time.Unix(c.Created, 0)
		if ci, err := e.m.docker.ContainerInspect(ctx, c.ID); err == nil && ci.State != nil {
			if t := parseTime(ci.State.StartedAt); !t.IsZero() {
				started = t
			}
		}
		if err := e.put(c.ID, expiryRecord{Deadline: started.Add(ttl), TTL: ttl}); err != nil {
			return err
		}
	}
	for id := range e.recs {
		if !alive[id] {
			e.forget(id)
		}
	}
	return nil
}

func (e *expiry) put(id string, r expiryRecord) error {
	b, _ := json.Marshal(r)
	if err := e.m.store.Put(bucketExpiry, id, b); err != nil {
		return fmt.Errorf("save deadline: %w", err)
	}
	e.mu.Lock()
	e.recs[id] = r
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return nil
}

// arm sets the deadline of id to ttl from now.
func (e *expiry) arm(id string, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = e.m.cfg.ttl
	}
	return e.put(id, expiryRecord{Deadline: time.Now().Add(ttl), TTL: ttl})
}

// forget drops the deadline of id.
func (e *expiry) forget(id string) {
	e.mu.Lock()
	delete(e.recs, id)
	e.mu.Unlock()
	if err := e.m.store.Delete(bucketExpiry, id); err != nil {
		e.m.log.Error("drop deadline", "sandbox", shortID(id), "err", err)
	}
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
	timer := time.NewTimer(0)
	defer timer.Stop()
	var actions sync.WaitGroup
	defer actions.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-e.wake:
		}
		ids, next := e.due(time.Now())
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
			wait = time.Until(next)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(wait, 10*time.Millisecond))
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
	if !ok || rec.Deadline.After(time.Now()) { // forgotten or renewed meanwhile
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	var err error
	action := "stop"
	if e.m.cfg.deleteOnExpiry {
		action = "delete"
		err = e.m.remove(ctx, id)
	} else {
		err = e.m.stop(ctx, id)
	}
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(engine.Classify(err), ErrConflict):
		e.m.log.Info("sandbox expired", "sandbox", shortID(id), "action", action)
		if err == nil {
			ev := Event{Type: EventStopped, SandboxID: id, Expired: true}
			if action == "delete" {
				ev.Type = EventDeleted
			}
			e.m.publish(ev)
		}
		e.mu.Lock()
		cur, still := e.recs[id]
		e.mu.Unlock()
		if still && cur.Deadline.Equal(rec.Deadline) {
			e.forget(id)
		}
	case ctx.Err() != nil:
	default:
		e.m.log.Warn("expire sandbox", "sandbox", shortID(id), "action", action, "err", err)
		rec.Deadline = time.Now().Add(5 * time.Second)
		if perr := e.put(id, rec); perr != nil {
			e.m.log.Error("save deadline", "sandbox", shortID(id), "err", perr)
		}
	}
}
