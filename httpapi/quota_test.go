package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/httpapi"
	"github.com/opensbx/opensbx/internal/testenv"
)

// TestQuotaPerKey: each API key may have WithMaxSandboxesPerKey sandboxes
// at once; beyond it a create is 429, another key is not affected, and a
// retried create of an existing name still answers.
func TestQuotaPerKey(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m, httpapi.WithAPIKeys("k1", "k2"), httpapi.WithMaxSandboxesPerKey(1))
	a.key = "k1"
	r := a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage, "name": "q1"})
	is.Equal(r.status, http.StatusCreated)
	r = a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage})
	want(t, r, http.StatusTooManyRequests, "RATE_LIMITED") // over k1's bound
	r = a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage, "name": "q1"})
	is.Equal(r.status, http.StatusOK) // a retried create is no new sandbox
	a.key = "k2"
	r = a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage})
	is.Equal(r.status, http.StatusCreated) // k2 has its own bound
	got := a.call("GET", "/v1/sandboxes/q1", nil)
	is.Equal(got.status, http.StatusOK) // every key may use every sandbox
	labels, _ := json.Marshal(got.json(t))
	is.True(!strings.Contains(string(labels), "k1")) // the key is never shown
}

// fakeEngineAPI answers the calls a Manager makes and records the paths it
// is asked for.
type fakeEngineAPI struct {
	mu    sync.Mutex
	paths []string
}

func (f *fakeEngineAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.EscapedPath())
	f.mu.Unlock()
	w.Header().Set("Api-Version", "1.41")
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, "/_ping"):
		w.Write([]byte("OK"))
	case strings.HasSuffix(p, "/info"):
		w.Write([]byte(`{"Architecture":"x86_64","OSType":"linux","Driver":"overlay2"}`))
	case strings.HasSuffix(p, "/containers/json"):
		w.Write([]byte(`[]`))
	case strings.HasSuffix(p, "/networks/opensbx"):
		w.Write([]byte(`{"Name":"opensbx","Id":"n","Labels":{"org.opensbx.managed":"true"},"Options":{"com.docker.network.bridge.enable_icc":"false"}}`))
	case strings.HasSuffix(p, "/events"):
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	default:
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"message":"not handled by the fake"}`))
	}
}

// TestHostileIDsThroughHTTP sends, through the API, ids that the SDK would
// clean into other Engine API paths (/distribution/... makes a real engine
// contact a registry), to a server on a fake engine: 404, and no request
// with them reaches the engine.
func TestHostileIDsThroughHTTP(t *testing.T) {
	is := is.New(t)
	fake := &fakeEngineAPI{}
	eng := httptest.NewServer(fake)
	defer eng.Close()
	m, err := opensbx.New(context.Background(), opensbx.WithDockerHost("tcp://"+strings.TrimPrefix(eng.URL, "http://")))
	is.NoErr(err)
	defer m.Close()
	srv := httptest.NewServer(httpapi.New(m))
	defer srv.Close()
	fake.mu.Lock()
	fake.paths = nil
	fake.mu.Unlock()
	for _, id := range []string{"..%2Fdistribution%2Fbusybox", "..%2Fnetworks%2Fbridge", "..%2F..%2Finfo", "0", "..%2F..%2Fcontainers%2Fjson"} {
		for _, route := range []string{"", "/stats", "/cmd", "/files?path=/etc/passwd"} {
			res, err := http.Get(srv.URL + "/v1/sandboxes/" + id + route)
			is.NoErr(err)
			res.Body.Close()
			is.Equal(res.StatusCode, http.StatusNotFound) // a hostile id is not found
		}
		req, _ := http.NewRequest("DELETE", srv.URL+"/v1/sandboxes/"+id, nil)
		res, err := http.DefaultClient.Do(req)
		is.NoErr(err)
		res.Body.Close()
		is.Equal(res.StatusCode, http.StatusNotFound)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	for _, p := range fake.paths {
		if strings.Contains(p, "distribution") || strings.Contains(p, "..") || strings.Contains(p, "%2F") ||
			strings.HasSuffix(p, "/info") || strings.Contains(p, "networks/bridge") {
			t.Errorf("the engine was asked for %s", p)
		}
	}
}
