package opensbx

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/clock"
	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/engine/enginefake"
)

// waitReady waits until the pool of the first template has n ready
// sandboxes.
func waitReady(t *testing.T, m *Manager, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st := m.Pool(); len(st) > 0 && st[0].Ready == n && st[0].Filling == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("pool never had %d ready: %+v", n, m.Pool())
}

// containerCreates counts the engine's Create calls.
func containerCreates(fe *enginefake.Engine) int {
	n := 0
	for _, c := range fe.Calls() {
		if c.Method == "Create" {
			n++
		}
	}
	return n
}

// createdAs reports whether the engine was asked to create a container
// called name.
func createdAs(fe *enginefake.Engine, name string) bool {
	for _, c := range fe.Calls() {
		if c.Method == "Create" && c.Arg == name {
			return true
		}
	}
	return false
}

func TestUnitPoolAdoption(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	m, fe, clk := fakeSetup(t, WithPool(PoolTemplate{Image: fakeImage, Ports: []string{"8080"}, Size: 3}))
	waitReady(t, m, 3)
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 0) // pooled sandboxes are invisible
	readyIDs := func() map[string]bool {
		m.pool.mu.Lock()
		defer m.pool.mu.Unlock()
		out := map[string]bool{}
		for _, rs := range m.pool.ready {
			for _, r := range rs {
				out[r.id] = true
			}
		}
		return out
	}
	ready := readyIDs()

	res, err := m.Create(ctx, CreateOptions{Image: fakeImage, Ports: []string{"8080/tcp"}, Name: "hit", TTL: time.Hour,
		Labels: map[string]string{"team": "a"}, Private: true})
	is.NoErr(err)
	is.True(res.Created)
	is.True(ready[res.ID]) // one of the ready sandboxes
	is.Equal(res.Name, "hit")
	is.Equal(res.Labels["team"], "a")                 // labels from the request
	is.True(res.Private)                              // privacy from the request
	is.Equal(res.TTL, time.Hour)                      // TTL from the request
	is.Equal(res.ExpiresAt, clk.Now().Add(time.Hour)) // armed at adoption
	is.Equal(res.PortMap["8080/tcp"] != "", true)
	c, err := fe.Inspect(ctx, res.ID)
	is.NoErr(err)
	is.Equal(c.Name, m.containerName("hit")) // renamed to the sandbox's name
	got, err := m.Get(ctx, "hit")
	is.NoErr(err)
	is.Equal(got.ID, res.ID)
	st := m.Pool()[0]
	is.Equal(st.Hits, uint64(1))
	waitReady(t, m, 3) // refilled

	// The same name again: the existing sandbox, not a second adoption.
	again, err := m.Create(ctx, CreateOptions{Image: fakeImage, Ports: []string{"8080/tcp"}, Name: "hit", TTL: time.Hour,
		Labels: map[string]string{"team": "a"}, Private: true})
	is.NoErr(err)
	is.True(!again.Created)
	is.Equal(again.ID, res.ID)

	// Other limits are applied with a live update.
	big, err := m.Create(ctx, CreateOptions{Image: fakeImage, Ports: []string{"8080"}, Resources: Resources{MemoryMB: 512, CPUs: 2}})
	is.NoErr(err)
	is.Equal(fe.Resources(big.ID), engine.Resources{MemoryBytes: 512 << 20, NanoCPUs: 2e9})
	is.Equal(big.Resources, Resources{MemoryMB: 512, CPUs: 2})

	// A request that does not fit the template is a cold create.
	cold, err := m.Create(ctx, CreateOptions{Image: fakeImage, Ports: []string{"9090"}})
	is.NoErr(err)
	is.True(createdAs(fe, m.containerName(cold.Name))) // a container was made for it
}

func TestUnitPoolNeverShares(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	m, _, _ := fakeSetup(t, WithPool(PoolTemplate{Image: fakeImage, Size: 5}))
	waitReady(t, m, 5)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := m.Create(ctx, CreateOptions{Image: fakeImage})
			if err != nil {
				t.Errorf("create: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[res.ID] {
				t.Errorf("sandbox %s handed out twice", shortID(res.ID))
			}
			seen[res.ID] = true
		}()
	}
	wg.Wait()
	is.Equal(len(seen), 30)
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 30) // every create is its own sandbox
}

func TestUnitPoolCloseAndRestart(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	clk := clock.NewFake(time.Now())
	fe := newFakeEngine(clk)
	tmpl := PoolTemplate{Image: fakeImage, Size: 2}
	m1, err := New(ctx, withEngine(fe), withClock(clk), WithAgent(false), WithNamespace("unit"), WithPool(tmpl))
	is.NoErr(err)
	waitReady(t, m1, 2)
	adopted, err := m1.Create(ctx, CreateOptions{Image: fakeImage})
	is.NoErr(err)
	waitReady(t, m1, 2)
	is.NoErr(m1.Close())
	all, err := fe.List(ctx, nil)
	is.NoErr(err)
	is.Equal(len(all), 1) // Close removed the ready ones, kept the adopted one
	is.Equal(all[0].ID, adopted.ID)

	// A Manager killed without Close leaves ready sandboxes; the next one on
	// the namespace takes them over.
	m2, err := New(ctx, withEngine(fe), withClock(clk), WithAgent(false), WithNamespace("unit"), WithPool(tmpl))
	is.NoErr(err)
	waitReady(t, m2, 2)
	m2.pool.mu.Lock()
	m2.pool.abandon = true // as if killed: the ready sandboxes stay
	m2.pool.mu.Unlock()
	is.NoErr(m2.Close())
	left, _ := fe.List(ctx, nil)
	is.Equal(len(left), 3)
	creates := containerCreates(fe)
	m3 := newFakeManager(t, fe, clk, WithPool(tmpl))
	waitReady(t, m3, 2)
	is.Equal(containerCreates(fe), creates) // took over the two, made none
	got, err := m3.Get(ctx, adopted.ID)
	is.NoErr(err)
	is.Equal(got.Name, adopted.Name) // the adopted sandbox keeps its name (from the container name)

	// Without templates, a later Manager removes the leftovers.
	m3.pool.mu.Lock()
	m3.pool.abandon = true
	m3.pool.mu.Unlock()
	is.NoErr(m3.Close())
	newFakeManager(t, fe, clk)
	left, _ = fe.List(ctx, nil)
	is.Equal(len(left), 1) // only the adopted sandbox
}

func TestUnitPoolStaleImage(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	m, fe, _ := fakeSetup(t, WithPool(PoolTemplate{Image: fakeImage, Size: 1}))
	waitReady(t, m, 1)
	// The tag now names another image: the ready sandbox runs the old one.
	is.NoErr(fe.ImageRemove(ctx, fakeImage, true))
	fe.AddImage([]string{fakeImage}, map[string]enginefake.File{"/bin/sleep": {Mode: 0o755}}, engine.Image{})
	res, err := m.Create(ctx, CreateOptions{Image: fakeImage})
	is.NoErr(err)
	c, err := fe.Inspect(ctx, res.ID)
	is.NoErr(err)
	img, err := fe.ImageInspect(ctx, fakeImage)
	is.NoErr(err)
	is.Equal(c.ImageID, img.ID) // the new image, not the stale sandbox
}

func TestUnitPoolOptions(t *testing.T) {
	for name, opt := range map[string]Option{
		"size 0":    WithPool(PoolTemplate{Image: fakeImage}),
		"huge size": WithPool(PoolTemplate{Image: fakeImage, Size: maxPoolSize + 1}),
		"max 0":     WithPoolMax(0),
	} {
		_, err := New(context.Background(), withEngine(enginefake.New(nil)), WithAgent(false), opt)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
	_, err := New(context.Background(), withEngine(enginefake.New(nil)), WithAgent(false), WithPool(PoolTemplate{Image: "Bad Ref", Size: 1}))
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("bad image: want ErrInvalid, got %v", err)
	}
	_, err = New(context.Background(), withEngine(enginefake.New(nil)), WithAgent(false), WithPool(PoolTemplate{Image: fakeImage, Size: 1}, PoolTemplate{Image: fakeImage, Size: 2}))
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate template: want ErrInvalid, got %v", err)
	}
}
