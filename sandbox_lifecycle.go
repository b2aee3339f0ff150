package opensbx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Start starts a stopped sandbox and arms its TTL anew. Starting a running
// or paused sandbox fails with ErrConflict.
func (m *Manager) Start(ctx context.Context, id string) (*Sandbox, error) {
	return m.transition(ctx, id, EventStarted, func(ctx context.Context, c engine.Container) error {
		switch st := stateOf(c.State); st {
		case StateStopped:
		case StateRunning:
			return sbxerr.Conflict("sandbox is already running")
		default:
			return sbxerr.Conflict("sandbox is %s, not stopped", st)
		}
		if err := m.engine.Start(ctx, c.ID); err != nil {
			return err
		}
		return m.expiry.arm(c.ID, m.ttlOf(c))
	})
}

// Stop stops a running or paused sandbox (SIGTERM, then SIGKILL after the
// stop timeout) and disarms its TTL. Stopping a stopped sandbox fails with
// ErrConflict. On Kubernetes, where a Pod cannot stop and start again, the
// sandbox's agent ends every other process of it, its main command too, and
// runs on: the files stay and can be read and written, as a stopped Docker
// sandbox's, and Start runs the main command anew.
func (m *Manager) Stop(ctx context.Context, id string) (*Sandbox, error) {
	return m.transition(ctx, id, EventStopped, func(ctx context.Context, c engine.Container) error {
		if stateOf(c.State) == StateStopped {
			return sbxerr.Conflict("sandbox is already stopped")
		}
		m.publish(Event{Type: EventStopping, SandboxID: c.ID, Name: m.nameOf(c)})
		if err := m.engine.Stop(ctx, c.ID, m.cfg.stopTimeout); err != nil {
			return err
		}
		return m.expiry.forget(c.ID)
	})
}

// Restart stops (if needed) and starts a sandbox, arming its TTL anew. It
// works from running, paused and stopped.
func (m *Manager) Restart(ctx context.Context, id string) (*Sandbox, error) {
	return m.transition(ctx, id, EventRestarted, func(ctx context.Context, c engine.Container) error {
		m.publish(Event{Type: EventStopping, SandboxID: c.ID, Name: m.nameOf(c)})
		if err := m.engine.Restart(ctx, c.ID, m.cfg.stopTimeout); err != nil {
			return err
		}
		return m.expiry.arm(c.ID, m.ttlOf(c))
	})
}

// Pause freezes every process of a running sandbox. Pausing a paused or
// stopped sandbox fails with ErrConflict. A paused sandbox still expires.
func (m *Manager) Pause(ctx context.Context, id string) (*Sandbox, error) {
	return m.transition(ctx, id, EventPaused, func(ctx context.Context, c engine.Container) error {
		if m.onKubernetes() {
			return kubeUnsupported("pausing a sandbox")
		}
		switch st := stateOf(c.State); st {
		case StateRunning:
		case StatePaused:
			return sbxerr.Conflict("sandbox is already paused")
		default:
			return sbxerr.Conflict("sandbox is %s, not running", st)
		}
		release := m.freezing(c.ID) // no exec may be starting as it freezes
		defer release()
		m.index.setPaused(c.ID, true) // before: nothing may call its frozen agent
		if err := m.engine.Pause(ctx, c.ID); err != nil {
			m.index.setPaused(c.ID, false)
			return err
		}
		return nil
	})
}

// Resume thaws a paused sandbox. Resuming one that is not paused fails with
// ErrConflict.
func (m *Manager) Resume(ctx context.Context, id string) (*Sandbox, error) {
	return m.transition(ctx, id, EventResumed, func(ctx context.Context, c engine.Container) error {
		if m.onKubernetes() {
			return kubeUnsupported("resuming a sandbox")
		}
		if st := stateOf(c.State); st != StatePaused {
			return sbxerr.Conflict("sandbox is %s, not paused", st)
		}
		if err := m.engine.Unpause(ctx, c.ID); err != nil {
			return err
		}
		m.index.setPaused(c.ID, false)
		return nil
	})
}

// Renew sets a running or paused sandbox's deadline to ttl from now (and
// its TTL to ttl for later starts). ttl must be positive (ErrInvalid); a
// stopped sandbox has no deadline to renew (ErrConflict).
func (m *Manager) Renew(ctx context.Context, id string, ttl time.Duration) (*Sandbox, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("renew sandbox: %w", sbxerr.Invalid("TTL must be positive, got %v", ttl))
	}
	return m.transition(ctx, id, EventRenewed, func(ctx context.Context, c engine.Container) error {
		if st := stateOf(c.State); st != StateRunning && st != StatePaused {
			return sbxerr.Conflict("sandbox is %s; start it instead", st)
		}
		return m.expiry.renew(c.ID, ttl)
	})
}

// transition runs one lifecycle step on an owned sandbox, publishes ev and
// returns the sandbox's new description.
func (m *Manager) transition(ctx context.Context, id string, ev EventType, step func(context.Context, engine.Container) error) (*Sandbox, error) {
	verb := string(ev)
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	c, err := m.inspect(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("%s sandbox: %w", verb, err)
	}
	if err := step(ctx, c); err != nil {
		return nil, fmt.Errorf("%s sandbox %s: %w", verb, shortID(c.ID), err)
	}
	m.publish(Event{Type: ev, SandboxID: c.ID, Name: m.nameOf(c)})
	c, err = m.engine.Inspect(ctx, c.ID)
	if err != nil {
		return nil, fmt.Errorf("%s sandbox %s: inspect: %w", verb, shortID(c.ID), err)
	}
	return m.sandboxOf(c), nil
}

// Delete removes a sandbox in any state, with its processes, filesystem and
// command records. An unknown id fails with ErrNotFound.
func (m *Manager) Delete(ctx context.Context, id string) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	c, err := m.inspect(ctx, id)
	if err != nil {
		return fmt.Errorf("delete sandbox: %w", err)
	}
	m.publish(Event{Type: EventStopping, SandboxID: c.ID, Name: m.nameOf(c)})
	if err := m.remove(ctx, c.ID, c.Labels); err != nil {
		return err
	}
	m.publish(Event{Type: EventDeleted, SandboxID: c.ID, Name: m.nameOf(c)})
	return nil
}

// remove force-removes an owned container (with labels, as the engine
// reported them) and forgets its state; an egress network of its own goes
// with it. A container already gone counts as removed.
func (m *Manager) remove(ctx context.Context, id string, labels map[string]string) error {
	err := m.engine.Remove(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete sandbox %s: %w", shortID(id), err)
	}
	m.freeze.forget(id)
	if name := labels[labelEgressNet]; name != "" {
		if err := m.dropEgressNetwork(ctx, name); err != nil {
			return fmt.Errorf("delete sandbox %s: %w", shortID(id), err)
		}
	}
	m.index.drop(id)
	m.stats.drop(id)
	m.cmds.forget(id)
	if err := m.expiry.forget(id); err != nil {
		return fmt.Errorf("delete sandbox %s: %w", shortID(id), err)
	}
	if err := m.records.forget(id); err != nil {
		return fmt.Errorf("delete sandbox %s: %w", shortID(id), err)
	}
	return nil
}
