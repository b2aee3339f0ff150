package opensbx

// Unit tests of the Manager's own logic against the in-memory engine fake:
// id resolution and ownership, the lifecycle state machine, TTLs and
// renewals on a fake clock, error mapping. They run without Docker in a
// fraction of a second; the integration tests prove the features work.

import (
	"context"
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/clock"
	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/engine/enginefake"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

const fakeImage = "fake/busybox:1"

// newFakeEngine returns a fake engine with one image that has a sleep.
func newFakeEngine(clk *clock.Fake) *enginefake.Engine {
	fe := enginefake.New(clk.Now)
	fe.AddImage([]string{fakeImage}, map[string]enginefake.File{
		"/bin/sleep": {Mode: 0o755, Data: []byte("ELF")},
		"/bin/sh":    {Mode: 0o755, Data: []byte("ELF")},
	}, engine.Image{Env: []string{"PATH=/usr/bin:/bin"}})
	return fe
}

// newFakeManager returns a Manager on fe keeping time by clk.
func newFakeManager(t *testing.T, fe *enginefake.Engine, clk *clock.Fake, opts ...Option) *Manager {
	t.Helper()
	all := append([]Option{withEngine(fe), withClock(clk), WithAgent(false), WithNamespace("unit")}, opts...)
	m, err := New(context.Background(), all...)
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func fakeSetup(t *testing.T, opts ...Option) (*Manager, *enginefake.Engine, *clock.Fake) {
	clk := clock.NewFake(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	fe := newFakeEngine(clk)
	return newFakeManager(t, fe, clk, opts...), fe, clk
}

func fakeCreate(t *testing.T, m *Manager, o CreateOptions) *Sandbox {
	t.Helper()
	o.Image = fakeImage
	res, err := m.Create(context.Background(), o)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return res.Sandbox
}

func TestUnitResolveIDs(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	m, fe, _ := fakeSetup(t)
	a := fakeCreate(t, m, CreateOptions{Name: "alpha"})
	b := fakeCreate(t, m, CreateOptions{Name: "beta"})

	for _, ref := range []string{a.ID, a.ID[:4], a.ID[:12], "alpha"} {
		got, err := m.Get(ctx, ref)
		is.NoErr(err)          // a full id, a prefix of 4+ or the name resolves
		is.Equal(got.ID, a.ID) // to the right sandbox
		is.Equal(got.Name, "alpha")
	}
	// A name wins over a prefix: a sandbox named like another's id prefix.
	c := fakeCreate(t, m, CreateOptions{Name: b.ID[:6]})
	got, err := m.Get(ctx, b.ID[:6])
	is.NoErr(err)
	is.Equal(got.ID, c.ID) // the name, not b's prefix

	// Foreign containers: no labels, and another namespace's. Neither is
	// found by id, prefix or name, nor listed.
	plain := fe.AddContainer("plain", fakeImage, nil)
	other := fe.AddContainer("opensbx5-other-x", fakeImage, map[string]string{labelManaged: "true", labelNamespace: "other", labelName: "x"})
	for _, ref := range []string{plain, plain[:8], "plain", other, other[:8], "x"} {
		_, err := m.Get(ctx, ref)
		is.True(errors.Is(err, ErrNotFound)) // foreign container is not found
	}
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 3) // only this namespace's sandboxes

	// Ids that would resolve to other Engine API paths never reach the
	// engine: they are not found before any call.
	before := len(fe.Calls())
	for _, ref := range []string{"../distribution/busybox", "..%2Fdistribution%2Fbusybox", "../networks/bridge",
		"../../info", "a/b", "x\x00y", "..", ".", " alpha", "alpha/", strings.Repeat("a", 65), "abc"} {
		_, err := m.Get(ctx, ref)
		is.True(errors.Is(err, ErrNotFound)) // hostile id is not found
	}
	for _, c := range fe.Calls()[before:] {
		// Only a refresh of the index (List, no id) answers them; the
		// Manager's background work (a stats sample, the agent volumes'
		// prune) may call meanwhile, with full ids of its own or none.
		if c.Arg != "" && !engine.IsFullID(c.Arg) {
			t.Errorf("a hostile id reached the engine: %s(%q)", c.Method, c.Arg)
		}
	}

	// An empty id is invalid; a short prefix is not a prefix.
	_, err = m.Get(ctx, "")
	is.True(errors.Is(err, ErrInvalid))
	_, err = m.Get(ctx, a.ID[:3])
	is.True(errors.Is(err, ErrNotFound))
}

func TestUnitAmbiguousPrefix(t *testing.T) {
	is := is.New(t)
	m, _, _ := fakeSetup(t)
	x := newSandboxIndex(m)
	one, two := strings.Repeat("ab", 32), "abab"+strings.Repeat("cd", 30)
	x.add(one, "one")
	x.add(two, "two")
	_, _, err := x.lookup("abab")
	is.True(errors.Is(err, ErrInvalid))                 // ambiguous prefix
	is.True(strings.Contains(err.Error(), "ambiguous")) // says so
	id, _, err := x.lookup("ababab")
	is.NoErr(err)
	is.Equal(id, one) // a longer prefix is unique
	id, _, err = x.lookup("ababcd")
	is.NoErr(err)
	is.Equal(id, two)
	_, _, err = x.lookup("abcd")
	is.True(errors.Is(err, errMiss)) // no match is a miss, to refresh
}

func TestUnitNamespacedNamesDoNotCollide(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	clk := clock.NewFake(time.Now())
	fe := newFakeEngine(clk)
	a := newFakeManager(t, fe, clk, WithNamespace("a"))
	ab := newFakeManager(t, fe, clk, WithNamespace("a-b"))
	is.True(a.containerName("b-x") != ab.containerName("x")) // distinct container names
	_, err := a.Create(ctx, CreateOptions{Image: fakeImage, Name: "b-x"})
	is.NoErr(err)
	_, err = ab.Create(ctx, CreateOptions{Image: fakeImage, Name: "x"})
	is.NoErr(err) // no name clash across namespaces
}

func TestUnitStateMachine(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	m, _, _ := fakeSetup(t)
	sb := fakeCreate(t, m, CreateOptions{})
	is.Equal(sb.State, StateRunning)

	_, err := m.Start(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict))
	is.True(strings.Contains(err.Error(), "already running")) // start a running sandbox
	_, err = m.Resume(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // resume a running sandbox

	got, err := m.Pause(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(got.State, StatePaused)
	_, err = m.Pause(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict))
	is.True(strings.Contains(err.Error(), "already paused")) // pause a paused sandbox
	_, err = m.Start(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // start a paused sandbox
	got, err = m.Resume(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(got.State, StateRunning)

	got, err = m.Stop(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(got.State, StateStopped)
	is.True(got.ExpiresAt.IsZero()) // a stopped sandbox has no deadline
	_, err = m.Stop(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // stop a stopped sandbox
	_, err = m.Pause(ctx, sb.ID)
	is.True(errors.Is(err, ErrConflict)) // pause a stopped sandbox
	_, err = m.Renew(ctx, sb.ID, time.Minute)
	is.True(errors.Is(err, ErrConflict)) // renew a stopped sandbox
	_, err = m.Renew(ctx, sb.ID, 0)
	is.True(errors.Is(err, ErrInvalid)) // renew with no TTL

	got, err = m.Restart(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(got.State, StateRunning)
	is.True(!got.ExpiresAt.IsZero()) // restart arms the TTL

	is.NoErr(m.Delete(ctx, sb.ID))
	_, err = m.Get(ctx, sb.ID)
	is.True(errors.Is(err, ErrNotFound)) // deleted
	err = m.Delete(ctx, sb.ID)
	is.True(errors.Is(err, ErrNotFound)) // delete twice
}

// events collects a Manager's events.
type events struct {
	mu  sync.Mutex
	got []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

func (e *events) types() []EventType {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []EventType
	for _, ev := range e.got {
		out = append(out, ev.Type)
	}
	return out
}

func TestUnitEvents(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	m, _, _ := fakeSetup(t)
	var evs events
	cancel := m.Subscribe(evs.add)
	sb := fakeCreate(t, m, CreateOptions{Name: "ev"})
	_, _ = m.Start(ctx, sb.ID) // a conflict publishes nothing
	m.Pause(ctx, sb.ID)
	m.Resume(ctx, sb.ID)
	m.Renew(ctx, sb.ID, time.Hour)
	m.Stop(ctx, sb.ID)
	m.Restart(ctx, sb.ID)
	m.Delete(ctx, sb.ID)
	// The calls' events come in order; the engine's own reports of the same
	// changes (die, destroy) may come in between.
	want := []EventType{EventCreated, EventPaused, EventResumed, EventRenewed, EventStopped, EventRestarted, EventDeleted}
	got := evs.types()
	i := 0
	for _, typ := range got {
		if i < len(want) && typ == want[i] {
			i++
		}
	}
	is.Equal(i, len(want)) // every call's event, in order
	evs.mu.Lock()
	for _, ev := range evs.got {
		is.Equal(ev.SandboxID, sb.ID)
		is.Equal(ev.Name, "ev")
	}
	evs.mu.Unlock()
	cancel()
	n := len(evs.types())
	fakeCreate(t, m, CreateOptions{})
	is.Equal(len(evs.types()), n) // nothing after cancel
}

func TestUnitEngineEvents(t *testing.T) {
	is := is.New(t)
	m, fe, _ := fakeSetup(t)
	sb := fakeCreate(t, m, CreateOptions{Name: "dies"})
	got := make(chan Event, 16)
	m.Subscribe(func(ev Event) { got <- ev })
	for start := time.Now(); fe.Subscribers() == 0 && time.Since(start) < 5*time.Second; {
		time.Sleep(time.Millisecond) // the Manager's event watcher starts in the background
	}
	fe.StopByItself(sb.ID, 1) // the main process exits on its own
	select {
	case ev := <-got:
		is.Equal(ev.Type, EventStopped)
		is.Equal(ev.SandboxID, sb.ID)
		is.Equal(ev.Name, "dies")
	case <-time.After(5 * time.Second):
		t.Fatal("no event for a sandbox that stopped by itself")
	}
	// A container removed behind the Manager's back leaves the index.
	is.NoErr(fe.Remove(context.Background(), sb.ID))
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-got:
			if ev.Type != EventDeleted {
				continue
			}
			_, ok := m.index.byNameID("dies")
			is.True(!ok) // dropped from the index
			return
		case <-deadline:
			t.Fatal("no event for a sandbox removed behind the Manager's back")
		}
	}
}

// waitState waits (in real time, briefly) until the expiry loop has moved
// sandbox id to want; the loop runs in its own goroutine.
func waitState(t *testing.T, fe *enginefake.Engine, id string, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := fe.Inspect(context.Background(), id)
		if want == "gone" && errors.Is(err, ErrNotFound) {
			return
		}
		if err == nil && c.State.Status == want {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("sandbox %s never became %s", shortID(id), want)
}

// settle waits until the expiry loop sleeps on the fake clock again.
func settle(t *testing.T, clk *clock.Fake) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for clk.Waiters() == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
}

func TestUnitTTLAndRenew(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	m, fe, clk := fakeSetup(t)
	var evs events
	m.Subscribe(evs.add)
	sb := fakeCreate(t, m, CreateOptions{TTL: time.Minute})
	is.Equal(sb.ExpiresAt, clk.Now().Add(time.Minute)) // deadline from the clock
	settle(t, clk)

	clk.Advance(59 * time.Second)
	settle(t, clk)
	got, err := m.Get(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(got.State, StateRunning) // before the deadline

	got, err = m.Renew(ctx, sb.ID, 2*time.Minute)
	is.NoErr(err)
	is.Equal(got.ExpiresAt, clk.Now().Add(2*time.Minute)) // renewed from now
	settle(t, clk)
	clk.Advance(61 * time.Second) // past the old deadline
	settle(t, clk)
	got, err = m.Get(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(got.State, StateRunning) // the renewal holds

	clk.Advance(time.Minute)
	waitState(t, fe, sb.ID, "exited")
	got, err = m.Get(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(got.State, StateStopped)
	is.True(got.ExpiresAt.IsZero())
	expired := func() (Event, bool) {
		evs.mu.Lock()
		defer evs.mu.Unlock()
		for _, ev := range evs.got {
			if ev.Expired && ev.Type != EventStopping {
				return ev, true
			}
		}
		return Event{}, false
	}
	deadline := time.Now().Add(5 * time.Second)
	ev, ok := expired()
	for ; !ok && time.Now().Before(deadline); ev, ok = expired() {
		time.Sleep(time.Millisecond)
	}
	is.True(ok)                     // the expiry publishes the stop
	is.Equal(ev.Type, EventStopped) // as a stop
	is.Equal(ev.Name, sb.Name)      // with the name
	is.Equal(ev.SandboxID, sb.ID)
}

func TestUnitDeleteOnExpiry(t *testing.T) {
	m, fe, clk := fakeSetup(t, WithDeleteOnExpiry(true))
	sb := fakeCreate(t, m, CreateOptions{TTL: time.Second})
	settle(t, clk)
	clk.Advance(2 * time.Second)
	waitState(t, fe, sb.ID, "gone")
}

func TestUnitRenewRacingExpiry(t *testing.T) {
	is := is.New(t)
	m, _, clk := fakeSetup(t)
	sb := fakeCreate(t, m, CreateOptions{TTL: time.Minute})
	// The expiry picked the sandbox (its deadline passed) but has not
	// stopped it yet: a renewal now must fail instead of being undone.
	m.expiry.mu.Lock()
	m.expiry.busy[sb.ID] = true
	m.expiry.mu.Unlock()
	err := m.expiry.renew(sb.ID, time.Hour)
	is.True(errors.Is(err, ErrConflict)) // renewal refused while expiring
	m.expiry.mu.Lock()
	delete(m.expiry.busy, sb.ID)
	m.expiry.mu.Unlock()
	is.NoErr(m.expiry.renew(sb.ID, time.Hour))
	is.Equal(m.expiry.deadline(sb.ID), clk.Now().Add(time.Hour))
}

func TestUnitRestartKeepsDeadlines(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	clk := clock.NewFake(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	fe := newFakeEngine(clk)
	m1, err := New(ctx, withEngine(fe), withClock(clk), WithAgent(false), WithNamespace("unit"), WithStateDir(dir))
	is.NoErr(err)
	res, err := m1.Create(ctx, CreateOptions{Image: fakeImage, TTL: time.Minute})
	is.NoErr(err)
	_, err = m1.Renew(ctx, res.ID, 10*time.Minute)
	is.NoErr(err)
	is.NoErr(m1.Close())

	// Without a state directory the deadline comes from the start time and
	// the TTL label; with one, the renewal survives.
	m2 := newFakeManager(t, fe, clk, WithStateDir(dir))
	got, err := m2.Get(ctx, res.ID)
	is.NoErr(err)
	is.Equal(got.ExpiresAt, clk.Now().Add(10*time.Minute)) // renewal kept across restart
	is.NoErr(m2.Close())
	m3 := newFakeManager(t, fe, clk)
	got, err = m3.Get(ctx, res.ID)
	is.NoErr(err)
	is.Equal(got.ExpiresAt, clk.Now().Add(time.Minute)) // from start time + TTL label
}

func TestUnitErrors(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	clk := clock.NewFake(time.Now())
	fe := newFakeEngine(clk)

	fe.SetDown(true)
	_, err := New(ctx, withEngine(fe), withClock(clk), WithAgent(false))
	is.True(errors.Is(err, ErrUnavailable)) // no engine
	fe.SetDown(false)

	m := newFakeManager(t, fe, clk)
	_, err = m.Create(ctx, CreateOptions{Image: "missing:1"})
	is.True(errors.Is(err, ErrImageNotFound))
	is.True(strings.Contains(err.Error(), "not found locally")) // says to pull it
	is.True(strings.Contains(err.Error(), "/v1/images/pull"))

	_, err = m.Create(ctx, CreateOptions{Image: fakeImage, Resources: Resources{CPUs: 9}})
	is.True(errors.Is(err, ErrInvalid))
	is.True(strings.Contains(err.Error(), "maximum 4.0")) // CPU maximum printed as 4.0

	// A failed start removes the half-made container.
	fe.Fail("Start", sbxerr.New(sbxerr.ErrUnavailable, "boom"))
	_, err = m.Create(ctx, CreateOptions{Image: fakeImage})
	is.True(errors.Is(err, ErrUnavailable))
	fe.Fail("Start", nil)
	cs, err := fe.List(ctx, nil)
	is.NoErr(err)
	is.Equal(len(cs), 0) // nothing half-made left

	// An image without the keep-alive program is refused before start.
	fe.AddImage([]string{"fake/empty:1"}, map[string]enginefake.File{"/etc/x": {Mode: 0o644}}, engine.Image{})
	_, err = m.Create(ctx, CreateOptions{Image: "fake/empty:1"})
	is.True(errors.Is(err, ErrInvalid))
	is.True(strings.Contains(err.Error(), "keep-alive"))
	cs, _ = fe.List(ctx, nil)
	is.Equal(len(cs), 0)

	// The engine going away mid-call is ErrUnavailable, not a 500.
	sb := fakeCreate(t, m, CreateOptions{})
	fe.SetDown(true)
	_, err = m.Get(ctx, sb.ID)
	is.True(errors.Is(err, ErrUnavailable))
	_, err = m.Get(ctx, "unknown-name")
	is.True(errors.Is(err, ErrUnavailable)) // a refresh that fails is not a 404
	fe.SetDown(false)
}

func TestUnitCreateIdempotentName(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	m, _, _ := fakeSetup(t)
	first, err := m.Create(ctx, CreateOptions{Image: fakeImage, Name: "same"})
	is.NoErr(err)
	is.True(first.Created)
	again, err := m.Create(ctx, CreateOptions{Image: fakeImage, Name: "same"})
	is.NoErr(err)
	is.True(!again.Created) // same settings: the existing sandbox
	is.Equal(again.ID, first.ID)
	_, err = m.Create(ctx, CreateOptions{Image: fakeImage, Name: "same", Env: []string{"A=1"}})
	is.True(errors.Is(err, ErrConflict)) // different settings
}

func TestUnitCreateBounds(t *testing.T) {
	m, _, _ := fakeSetup(t)
	many := func(n int, s string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	labels := map[string]string{}
	for i := 0; i < maxLabels+1; i++ {
		labels["k"+strings.Repeat("x", i)] = "v"
	}
	for name, o := range map[string]CreateOptions{
		"too many ports": {Ports: func() []string {
			var p []string
			for i := 1; i <= maxPorts+1; i++ {
				p = append(p, strconv.Itoa(i))
			}
			return p
		}()},
		"too many env":    {Env: many(maxEnvEntries+1, "A=1")},
		"huge env":        {Env: []string{"A=" + strings.Repeat("x", maxArgBytes)}},
		"NUL in env":      {Env: []string{"A=\x00"}},
		"NUL in command":  {Command: []string{"sleep\x00"}},
		"too many args":   {Command: many(maxArgs+1, "x")},
		"too many labels": {Labels: labels},
		"too much":        {Env: many(maxEnvEntries, "A="+strings.Repeat("x", 2000))},
		"NaN cpus":        {Resources: Resources{CPUs: nan()}},
	} {
		o.Image = fakeImage
		if _, err := m.Create(context.Background(), o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
}

func nan() float64 {
	var zero float64
	return zero / zero
}

func TestUnitFilesThroughFake(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	m, _, _ := fakeSetup(t)
	sb := fakeCreate(t, m, CreateOptions{})
	is.NoErr(m.WriteFile(ctx, sb.ID, "/work/a.txt", []byte("hello"), 0o600))
	data, fi, err := m.ReadFile(ctx, sb.ID, "/work/a.txt")
	is.NoErr(err)
	is.Equal(string(data), "hello")
	is.Equal(fi.Mode.Perm(), fs.FileMode(0o600))
	_, _, err = m.ReadFile(ctx, sb.ID, "relative")
	is.True(errors.Is(err, ErrInvalid))
	_, _, err = m.ReadFile(ctx, sb.ID, "/nope")
	is.True(errors.Is(err, ErrNotFound))
}

func TestUnitQuotas(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	m, fe, _ := fakeSetup(t, WithMaxSandboxes(2), WithMaxCommands(1))
	a := fakeCreate(t, m, CreateOptions{})
	fakeCreate(t, m, CreateOptions{})
	_, err := m.Create(ctx, CreateOptions{Image: fakeImage})
	is.True(errors.Is(err, ErrRateLimited)) // third sandbox
	is.NoErr(m.Delete(ctx, a.ID))
	b := fakeCreate(t, m, CreateOptions{}) // room again
	// Concurrent creates never go over the maximum.
	is.NoErr(m.Delete(ctx, b.ID))
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); m.Create(ctx, CreateOptions{Image: fakeImage}) }()
	}
	wg.Wait()
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 2) // never more than the maximum

	// A command that does not end blocks a second one.
	release := make(chan struct{})
	fe.Script = func(c engine.Container, spec engine.ExecSpec) ([]byte, []byte, int) {
		<-release
		return nil, nil, 0
	}
	_, err = m.Exec(ctx, list[0].ID, ExecOptions{Command: "sleep"})
	is.NoErr(err)
	_, err = m.Exec(ctx, list[0].ID, ExecOptions{Command: "sleep"})
	is.True(errors.Is(err, ErrRateLimited)) // second running command
	_, err = m.Exec(ctx, list[1].ID, ExecOptions{Command: "true"})
	is.NoErr(err) // other sandboxes are not limited
	close(release)
}
