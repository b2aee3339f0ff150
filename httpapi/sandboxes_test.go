package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/httpapi"
	"github.com/opensbx/opensbx/internal/testenv"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m, httpapi.WithAPIKeys("k"))
	r := a.call("GET", "/v1/health", nil) // no key: health stays open
	is.Equal(r.status, 200)
	is.Equal(r.json(t)["status"], "healthy")

	m.Close() // a closed Manager cannot reach the engine any more
	r = a.call("GET", "/v1/health", nil)
	is.Equal(r.status, http.StatusServiceUnavailable)
	is.Equal(r.json(t)["status"], "unhealthy")
	is.True(r.json(t)["error"] != "") // says why
}

// TestPoolThroughHTTP: health reports the warm pool, a create is served
// from it (and is the same to the client as a cold one), and a quota is 429.
func TestPoolThroughHTTP(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t, opensbx.WithPool(opensbx.PoolTemplate{Image: testenv.BusyboxImage, Ports: []string{"8080"}, Size: 1}),
		opensbx.WithMaxSandboxes(2))
	a := newAPI(t, m)
	var pool []any
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		pool = a.call("GET", "/v1/health", nil).json(t)["pool"].([]any)
		if pool[0].(map[string]any)["ready"].(float64) == 1 {
			break
		}
	}
	is.Equal(pool[0].(map[string]any)["ready"], float64(1)) // health says the pool is ready
	r := a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage, "ports": []string{"8080"}})
	is.Equal(r.status, http.StatusCreated)
	body := r.json(t)
	is.Equal(body["ports"], []any{"8080/tcp"})
	is.True(body["name"] != "")
	is.Equal(a.call("GET", "/v1/health", nil).json(t)["pool"].([]any)[0].(map[string]any)["hits"], float64(1))
	// One adopted plus one ready (refilling) is the maximum of two.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m.Pool()[0].Ready+m.Pool()[0].Filling == 1 {
			break
		}
	}
	r = a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage})
	is.Equal(r.status, http.StatusTooManyRequests) // over the quota
	is.Equal(r.code(t), "RATE_LIMITED")
}

func TestSandboxCreateValidation(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, opensbx.WithDefaultResources(opensbx.Resources{MemoryMB: 64, CPUs: 0.5}),
		opensbx.WithMaxResources(opensbx.Resources{MemoryMB: 512, CPUs: 1}))
	a := newAPI(t, m)
	img := testenv.BusyboxImage
	for _, c := range []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"memory over max", map[string]any{"image": img, "resources": map[string]any{"memory": 513}}, 400, "BAD_REQUEST"},
		{"memory negative", map[string]any{"image": img, "resources": map[string]any{"memory": -1}}, 400, "BAD_REQUEST"},
		{"cpus over max", map[string]any{"image": img, "resources": map[string]any{"cpus": 1.5}}, 400, "BAD_REQUEST"},
		{"cpus negative", map[string]any{"image": img, "resources": map[string]any{"cpus": -0.5}}, 400, "BAD_REQUEST"},
		{"malformed port", map[string]any{"image": img, "ports": []string{"80a"}}, 400, "BAD_REQUEST"},
		{"port out of range", map[string]any{"image": img, "ports": []string{"70000"}}, 400, "BAD_REQUEST"},
		{"bad protocol", map[string]any{"image": img, "ports": []string{"53/icmp"}}, 400, "BAD_REQUEST"},
		{"bad env", map[string]any{"image": img, "env": []string{"NOEQUALS"}}, 400, "BAD_REQUEST"},
		{"bad name", map[string]any{"image": img, "name": "no spaces"}, 400, "BAD_REQUEST"},
		{"image not local", map[string]any{"image": "opensbx-test/absent:" + randomHex(4)}, 404, "NOT_FOUND"},
	} {
		r := a.call("POST", "/v1/sandboxes", c.body)
		if r.status != c.status || r.code(t) != c.code {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
		if c.name == "image not local" && !strings.Contains(string(r.body), "pull") {
			t.Errorf("image not local: message does not say to pull it: %s", r.body)
		}
	}
	r := a.call("GET", "/v1/sandboxes", nil)
	want(t, r, 200, "")
	if n := len(r.json(t)["sandboxes"].([]any)); n != 0 {
		t.Errorf("failed creates left %d sandboxes", n)
	}
}

func TestSandboxLifecycle(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, cli := newManager(t)
	a := newAPI(t, m, httpapi.WithBaseDomain("sbx.example.test"))

	name := "life-" + randomHex(3)
	body := map[string]any{"image": testenv.BusyboxImage, "name": name, "ports": []string{"8080", "53/udp"},
		"timeout": 600, "resources": map[string]any{"memory": 64, "cpus": 0.5}, "env": []string{"A=1"}}
	r := a.call("POST", "/v1/sandboxes", body)
	want(t, r, http.StatusCreated, "")
	sb := r.json(t)
	id := sb["id"].(string)
	is.Equal(sb["name"], name)                              // name kept
	is.Equal(sb["ports"], []any{"8080/tcp", "53/udp"})      // ports normalised
	is.Equal(sb["url"], "http://"+name+".sbx.example.test") // url from the base domain
	is.True(sb["expires_at"] != nil)                        // has a deadline

	// Retrying the same create returns the same sandbox with 200; other
	// settings under the same name are a conflict.
	r = a.call("POST", "/v1/sandboxes", body)
	want(t, r, http.StatusOK, "")
	is.Equal(r.json(t)["id"], id) // idempotent create
	body["env"] = []string{"A=2"}
	want(t, a.call("POST", "/v1/sandboxes", body), http.StatusConflict, "CONFLICT")

	// List shows it, and only it: not a foreign container on the daemon.
	foreign, err := cli.ContainerCreate(context.Background(), &container.Config{Image: testenv.BusyboxImage, Cmd: []string{"true"},
		Labels: map[string]string{"opensbx-test.run": testRun}}, nil, nil, nil, "")
	is.NoErr(err) // create foreign container
	t.Cleanup(func() { cli.ContainerRemove(context.Background(), foreign.ID, container.RemoveOptions{Force: true}) })
	r = a.call("GET", "/v1/sandboxes", nil)
	want(t, r, 200, "")
	list := r.json(t)["sandboxes"].([]any)
	is.Equal(len(list), 1) // only the manager's sandbox
	entry := list[0].(map[string]any)
	is.Equal(entry["id"], id)
	is.Equal(entry["state"], "running")
	is.Equal(entry["image"], testenv.BusyboxImage)
	for _, f := range []string{"name", "status", "ports", "expires_at", "url"} {
		_, ok := entry[f]
		is.True(ok) // list entry field
	}
	want(t, a.call("GET", "/v1/sandboxes/"+foreign.ID, nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("DELETE", "/v1/sandboxes/"+foreign.ID, nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("GET", "/v1/sandboxes/nope-"+randomHex(3), nil), http.StatusNotFound, "NOT_FOUND")

	// Get, by id and by name.
	for _, key := range []string{id, name} {
		r = a.call("GET", "/v1/sandboxes/"+key, nil)
		want(t, r, 200, "")
		got := r.json(t)
		is.Equal(got["id"], id)
		is.Equal(got["running"], true)
		is.Equal(got["resources"], map[string]any{"memory": 64.0, "cpus": 0.5}) // resources
		is.True(got["started_at"] != nil)                                       // started_at set
		_, ok := got["finished_at"]
		is.True(ok) // finished_at present (null while it never stopped)
	}

	r = a.call("GET", "/v1/sandboxes/"+id+"/network", nil)
	want(t, r, 200, "")
	nw := r.json(t)
	is.Equal(nw["main_port"], "8080/tcp")
	pm := nw["ports_map"].(map[string]any)
	is.True(pm["8080/tcp"] != "" && pm["53/udp"] != "") // host ports

	r = a.call("GET", "/v1/sandboxes/"+id+"/stats", nil)
	want(t, r, 200, "")
	st := r.json(t)
	mem := st["memory"].(map[string]any)
	is.True(mem["limit"].(float64) > 0) // memory limit
	is.True(st["pids"].(float64) >= 1)  // pids
	_, ok := st["cpu_percent"]
	is.True(ok) // cpu_percent

	// Pause and resume, each once; the second time is a conflict.
	r = a.call("POST", "/v1/sandboxes/"+id+"/pause", nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["status"], "paused")
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/pause", nil), http.StatusConflict, "CONFLICT")
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/start", nil), http.StatusConflict, "CONFLICT")
	r = a.call("POST", "/v1/sandboxes/"+id+"/resume", nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["status"], "resumed")
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/resume", nil), http.StatusConflict, "CONFLICT")
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/start", nil), http.StatusConflict, "CONFLICT") // already running

	// Renew.
	r = a.call("POST", "/v1/sandboxes/"+id+"/renew-expiration", map[string]any{"timeout": 3600})
	want(t, r, 200, "")
	rn := r.json(t)
	is.Equal(rn["status"], "renewed")
	is.Equal(rn["timeout"], 3600.0)
	exp, err := time.Parse(time.RFC3339, rn["expires_at"].(string))
	is.NoErr(err)                             // expires_at is RFC 3339
	is.True(time.Until(exp) > 30*time.Minute) // deadline moved
	want(t, a.call("POST", "/v1/sandboxes/nope-x/renew-expiration", map[string]any{"timeout": 5}), 404, "NOT_FOUND")

	// Stop; stats, pause, resume, renew and a second stop are conflicts.
	r = a.call("POST", "/v1/sandboxes/"+id+"/stop", nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["status"], "stopped")
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/stop", nil), http.StatusConflict, "CONFLICT")
	want(t, a.call("GET", "/v1/sandboxes/"+id+"/stats", nil), http.StatusConflict, "CONFLICT")
	want(t, a.call("GET", "/v1/sandboxes/"+id+"/stats?stream=true", nil), http.StatusConflict, "CONFLICT")
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/pause", nil), http.StatusConflict, "CONFLICT")
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/resume", nil), http.StatusConflict, "CONFLICT")
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/renew-expiration", map[string]any{"timeout": 5}), http.StatusConflict, "CONFLICT")
	r = a.call("GET", "/v1/sandboxes/"+id, nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["running"], false)
	is.True(r.json(t)["finished_at"] != nil) // finished_at once stopped
	_, hasExp := r.json(t)["expires_at"]
	is.True(!hasExp) // no deadline while stopped

	// Start and restart.
	r = a.call("POST", "/v1/sandboxes/"+id+"/start", nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["status"], "started") // the original's word
	is.Equal(r.json(t)["state"], "running")
	is.Equal(r.json(t)["ports"], []any{"8080/tcp", "53/udp"})
	is.True(r.json(t)["expires_at"] != nil) // re-armed
	r = a.call("POST", "/v1/sandboxes/"+id+"/restart", nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["status"], "restarted") // the original's word
	is.Equal(r.json(t)["state"], "running")
	is.True(r.json(t)["expires_at"] != nil)

	// Delete from running, then it is gone.
	want(t, a.call("DELETE", "/v1/sandboxes/"+id, nil), http.StatusNoContent, "")
	want(t, a.call("DELETE", "/v1/sandboxes/"+id, nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("GET", "/v1/sandboxes/"+id, nil), http.StatusNotFound, "NOT_FOUND")
	for _, p := range []string{"start", "stop", "restart", "pause", "resume"} {
		want(t, a.call("POST", "/v1/sandboxes/"+id+"/"+p, nil), http.StatusNotFound, "NOT_FOUND")
	}
	want(t, a.call("GET", "/v1/sandboxes/"+id+"/stats", nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("GET", "/v1/sandboxes/"+id+"/network", nil), http.StatusNotFound, "NOT_FOUND")
}

func TestSandboxDeleteStoppedAndPaused(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	a := newAPI(t, m)
	for _, verb := range []string{"stop", "pause"} {
		id := a.createBusybox(nil)["id"].(string)
		want(t, a.call("POST", "/v1/sandboxes/"+id+"/"+verb, nil), 200, "")
		want(t, a.call("DELETE", "/v1/sandboxes/"+id, nil), http.StatusNoContent, "")
	}
}

func TestSandboxStatsStream(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)
	id := a.createBusybox(nil)["id"].(string)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := a.stream(a.newRequest("GET", "/v1/sandboxes/"+id+"/stats?stream=true", nil).WithContext(ctx))
	for i := 0; i < 2; i++ {
		rec := s.next(t)
		is.True(rec != nil) // a sample
		_, ok := rec["memory"]
		is.True(ok) // sample has memory
	}
	cancel() // the client leaves; the server's handler ends (Manager.Close would hang otherwise)
}

func TestSandboxWithoutBaseDomainHasNoURL(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	a := newAPI(t, m)
	sb := a.createBusybox(map[string]any{"ports": []string{"8080"}, "timeout": 30})
	if _, ok := sb["url"]; ok {
		t.Errorf("url without a base domain: %v", sb["url"])
	}
}
