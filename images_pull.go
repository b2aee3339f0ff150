package opensbx

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// pullGroup shares concurrent pulls of one normalised reference (with the
// same credentials): the first caller starts a flight, a goroutine owned by
// the Manager that makes the one engine request, and later callers join it.
// A flight is cancelled when its last waiter leaves, and forgotten when it
// ends, so a pull after a finished one asks the engine again.
type pullGroup struct {
	m       *Manager
	mu      sync.Mutex // guards flights and every flight's waiters
	flights map[string]*pullFlight
}

func newPullGroup(m *Manager) *pullGroup {
	return &pullGroup{m: m, flights: map[string]*pullFlight{}}
}

// pullFlight is one engine pull and the callers waiting for it.
type pullFlight struct {
	key    string
	ref    string               // normalised reference
	auth   *engine.RegistryAuth // secret, never logged
	cancel context.CancelFunc
	done   chan struct{} // closed when img and err are final

	img *Image
	err error

	waiters int // guarded by pullGroup.mu

	mu   sync.Mutex // guards subs
	subs []*pullSub
}

// pullSub is one caller's progress callback. Its mutex is held while the
// callback runs, so once leave returns the callback is never called again.
type pullSub struct {
	mu   sync.Mutex
	fn   func(PullProgress)
	gone bool
}

func (s *pullSub) send(p PullProgress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gone {
		s.fn(p)
	}
}

func (s *pullSub) leave() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
}

// do joins (or starts) the flight for ref and auth and waits for it or ctx.
func (g *pullGroup) do(ctx context.Context, ref string, auth *engine.RegistryAuth, progress func(PullProgress)) (*Image, error) {
	key := ref
	if auth != nil {
		b, _ := json.Marshal(auth)
		sum := sha256.Sum256(b)
		key += "\x00" + hex.EncodeToString(sum[:])
	}
	g.mu.Lock()
	f := g.flights[key]
	if f == nil {
		f = &pullFlight{key: key, ref: ref, auth: auth, done: make(chan struct{})}
		var fctx context.Context
		fctx, f.cancel = context.WithCancel(g.m.ctx)
		g.flights[key] = f
		if !g.m.goBackground(func(context.Context) { g.run(fctx, f) }) {
			delete(g.flights, key)
			g.mu.Unlock()
			f.cancel()
			return nil, ErrClosed
		}
	}
	f.waiters++
	g.mu.Unlock()

	var sub *pullSub
	if progress != nil {
		sub = &pullSub{fn: progress}
		f.mu.Lock()
		f.subs = append(f.subs, sub)
		f.mu.Unlock()
	}
	defer g.leave(f, sub)

	select {
	case <-f.done:
		if f.err != nil {
			return nil, f.err
		}
		img := *f.img
		img.Tags = append([]string(nil), f.img.Tags...)
		img.Digests = append([]string(nil), f.img.Digests...)
		return &img, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("pull image %q: %w", ref, context.Cause(ctx))
	}
}

// leave unsubscribes a waiter; the last one to leave an unfinished flight
// cancels it.
func (g *pullGroup) leave(f *pullFlight, sub *pullSub) {
	sub.leave()
	g.mu.Lock()
	defer g.mu.Unlock()
	f.waiters--
	if f.waiters > 0 {
		return
	}
	select {
	case <-f.done:
	default:
		f.cancel()
		if g.flights[f.key] == f {
			delete(g.flights, f.key)
		}
	}
}

// run makes the flight's engine request and publishes the result.
func (g *pullGroup) run(ctx context.Context, f *pullFlight) {
	img, err := g.m.pull(ctx, f)
	g.mu.Lock()
	if g.flights[f.key] == f {
		delete(g.flights, f.key)
	}
	f.img, f.err = img, err
	close(f.done)
	g.mu.Unlock()
	f.cancel()
}

// broadcast sends p to every subscriber still waiting.
func (f *pullFlight) broadcast(p PullProgress) {
	f.mu.Lock()
	subs := append([]*pullSub(nil), f.subs...)
	f.mu.Unlock()
	for _, s := range subs {
		s.send(p)
	}
}

// errPullStalled is the cancel cause of a pull that reported nothing for
// the inactivity timeout.
var errPullStalled = errors.New("pull stalled")

// pull makes the engine request of f, reading its progress to the end, and
// inspects the pulled image.
func (m *Manager) pull(ctx context.Context, f *pullFlight) (*Image, error) {
	idle := m.cfg.pullInactivity
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(idle, func() { cancel(errPullStalled) })
	defer timer.Stop()
	err := m.engine.ImagePull(pctx, f.ref, f.auth, func(p engine.PullProgress) {
		timer.Reset(idle)
		f.broadcast(PullProgress{Layer: p.ID, Status: p.Status, Current: p.Current, Total: p.Total})
	})
	timer.Stop()
	if errors.Is(context.Cause(pctx), errPullStalled) {
		err = sbxerr.Wrap(ErrUnavailable, fmt.Errorf("no progress for %v: %w", idle, context.DeadlineExceeded))
	}
	if err != nil {
		return nil, fmt.Errorf("pull image %q: %w", f.ref, err)
	}
	ii, err := m.engine.ImageInspect(ctx, f.ref)
	if err != nil {
		return nil, fmt.Errorf("pull image %q: inspect after pull: %w", f.ref, err)
	}
	img := imageOf(ii)
	return &img, nil
}
