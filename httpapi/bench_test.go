package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/httpapi"
	"github.com/opensbx/opensbx/internal/testenv"
)

// The benchmarks compare the HTTP path (a real loopback server, JSON both
// ways, auth on) with the library call doing the same work, so that the
// adapter's overhead is a known figure. Run:
//
//	go test -run '^$' -bench . -benchtime 20x ./httpapi

func benchAPI(b *testing.B) (*opensbx.Manager, *api) {
	m, _ := newManager(b)
	a := newAPI(b, m, httpapi.WithAPIKeys("bench-key"))
	a.key = "bench-key"
	return m, a
}

func BenchmarkCreate(b *testing.B) {
	ctx := context.Background()
	b.Run("library", func(b *testing.B) {
		m, _ := benchAPI(b)
		for b.Loop() {
			res, err := m.Create(ctx, opensbx.CreateOptions{Image: testenv.BusyboxImage})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := m.Delete(ctx, res.ID); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("http", func(b *testing.B) {
		m, a := benchAPI(b)
		for b.Loop() {
			r := a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage})
			if r.status != http.StatusCreated {
				b.Fatalf("create: %d %s", r.status, r.body)
			}
			b.StopTimer()
			var sb struct{ ID string }
			json.Unmarshal(r.body, &sb)
			if err := m.Delete(ctx, sb.ID); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

func BenchmarkExecWait(b *testing.B) {
	ctx := context.Background()
	b.Run("library", func(b *testing.B) {
		m, a := benchAPI(b)
		id := a.createBusybox(nil)["id"].(string)
		for b.Loop() {
			c, err := m.Exec(ctx, id, opensbx.ExecOptions{Command: "true"})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.WaitCommand(ctx, id, c.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		_, a := benchAPI(b)
		id := a.createBusybox(nil)["id"].(string)
		for b.Loop() {
			res, err := a.srv.Client().Do(a.newRequest("POST", "/v1/sandboxes/"+id+"/cmd?wait=true", map[string]any{"command": "true"}))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatalf("exec: %d", res.StatusCode)
			}
		}
	})
}

// BenchmarkGet isolates the adapter: one engine inspect per call.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	m, a := benchAPI(b)
	id := a.createBusybox(nil)["id"].(string)
	b.Run("library", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Get(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		for b.Loop() {
			if r := a.call("GET", "/v1/sandboxes/"+id, nil); r.status != 200 {
				b.Fatalf("get: %d", r.status)
			}
		}
	})
}

// BenchmarkAdapterOnly is the fixed cost of one request through the
// adapter with no engine work: loopback HTTP, auth, mux, middleware and a
// JSON error body (an unknown sandbox path answered from the route table).
func BenchmarkAdapterOnly(b *testing.B) {
	a := newAPI(b, nil, httpapi.WithAPIKeys("bench-key"))
	a.key = "bench-key"
	for b.Loop() {
		if r := a.call("GET", "/v1/nope", nil); r.status != http.StatusNotFound {
			b.Fatalf("status %d", r.status)
		}
	}
}

// BenchmarkPoolCreate is a create served from a warm pool, through the
// library and through HTTP; the pool is refilled (timer stopped) before
// each one.
func BenchmarkPoolCreate(b *testing.B) {
	ctx := context.Background()
	tmpl := opensbx.PoolTemplate{Image: testenv.BusyboxImage, Ports: []string{"8080"}, Size: 2}
	full := func(b *testing.B, m *opensbx.Manager) {
		for {
			if st := m.Pool(); st[0].Ready == st[0].Size {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	run := func(b *testing.B, create func(m *opensbx.Manager, a *api) string) {
		m, _ := newManager(b, opensbx.WithPool(tmpl))
		a := newAPI(b, m, httpapi.WithAPIKeys("bench-key"))
		a.key = "bench-key"
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			full(b, m)
			b.StartTimer()
			id := create(m, a)
			b.StopTimer()
			if err := m.Delete(ctx, id); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if st := m.Pool(); st[0].Misses > 0 {
			b.Fatalf("%d creates missed the pool", st[0].Misses)
		}
	}
	b.Run("library", func(b *testing.B) {
		run(b, func(m *opensbx.Manager, _ *api) string {
			res, err := m.Create(ctx, opensbx.CreateOptions{Image: testenv.BusyboxImage, Ports: []string{"8080"}})
			if err != nil {
				b.Fatal(err)
			}
			return res.ID
		})
	})
	b.Run("http", func(b *testing.B) {
		run(b, func(_ *opensbx.Manager, a *api) string {
			r := a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage, "ports": []string{"8080"}})
			if r.status != http.StatusCreated {
				b.Fatalf("create: %d %s", r.status, r.body)
			}
			var sb struct{ ID string }
			json.Unmarshal(r.body, &sb)
			return sb.ID
		})
	})
}
