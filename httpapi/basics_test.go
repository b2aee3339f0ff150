package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/httpapi"
)

// These tests need no engine: the requests they send are answered before
// the Manager is asked anything, so a nil Manager is enough.

func TestUnknownRouteIsJSON404(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	for _, path := range []string{"/v1/nope", "/v1/sandboxes/x/nope", "/v1/sandboxes/x/cmd/y/z/w", "/elsewhere", "/"} {
		r := a.call("GET", path, nil)
		want(t, r, http.StatusNotFound, "NOT_FOUND")
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
	}
}

func TestWrongMethodIsJSON405WithAllow(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := newAPI(t, nil)
	cases := []struct{ method, path, allow string }{
		{"PUT", "/v1/sandboxes", "GET, HEAD, POST"},
		{"POST", "/v1/health", "GET, HEAD"},
		{"PATCH", "/v1/sandboxes/abc", "GET, HEAD, DELETE"},
		{"GET", "/v1/sandboxes/abc/start", "POST"},
		{"POST", "/v1/sandboxes/abc/files", "GET, HEAD, PUT, DELETE"},
		{"POST", "/v1/images/127.0.0.1:5000/ns/img:1", "GET, HEAD, DELETE"},
		{"GET", "/v1/sandboxes/abc/cmd/def/stdin", "POST"},
	}
	for _, c := range cases {
		r := a.call(c.method, c.path, nil)
		want(t, r, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
		is.Equal(r.header.Get("Allow"), c.allow) // Allow header
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil, httpapi.WithAPIKeys("first-key", " ", "second-key"))
	// openapi.json needs a key but not the Manager.
	cases := []struct {
		name, header string
		status       int
	}{
		{"missing", "", http.StatusUnauthorized},
		{"wrong", "Bearer nope", http.StatusUnauthorized},
		{"prefix of a key", "Bearer first", http.StatusUnauthorized},
		{"key plus suffix", "Bearer first-key2", http.StatusUnauthorized},
		{"not bearer", "Basic Zmlyc3Qta2V5", http.StatusUnauthorized},
		{"no scheme", "first-key", http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"first key", "Bearer first-key", http.StatusOK},
		{"second key", "Bearer second-key", http.StatusOK},
		{"scheme is case-insensitive", "bearer second-key", http.StatusOK},
	}
	for _, c := range cases {
		req := a.newRequest("GET", "/v1/openapi.json", nil)
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		r := a.do(req)
		if r.status != c.status {
			t.Errorf("%s: status %d, want %d", c.name, r.status, c.status)
		}
		if c.status == http.StatusUnauthorized {
			if code := r.code(t); code != "UNAUTHORIZED" {
				t.Errorf("%s: code %q", c.name, code)
			}
		}
	}
	// Unknown routes and wrong methods answer without a key: they reveal
	// nothing that the OpenAPI document does not.
	want(t, a.call("GET", "/v1/nope", nil), http.StatusNotFound, "NOT_FOUND")
}

func TestAuthGuardsEveryRouteButHealth(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil, httpapi.WithAPIKeys("k"))
	for _, rt := range httpapi.Routes() {
		path := strings.NewReplacer("{id}", "x", "{cmdId}", "y", "{ref...}", "busybox:1").Replace(rt.Path)
		r := a.call(rt.Method, "/v1"+path, nil)
		if rt.Method == "GET" && rt.Path == "/health" {
			continue // needs the Manager; TestHealth covers it
		}
		want(t, r, http.StatusUnauthorized, "UNAUTHORIZED")
	}
}

func TestRequestIDs(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	r := a.call("GET", "/v1/nope", nil)
	if id := r.header.Get("X-Request-Id"); len(id) != 16 {
		t.Errorf("generated request id %q", id)
	}
	req := a.newRequest("GET", "/v1/nope", nil)
	req.Header.Set("X-Request-Id", "client-id-1")
	if id := a.do(req).header.Get("X-Request-Id"); id != "client-id-1" {
		t.Errorf("client's request id not kept: %q", id)
	}
	req.Header.Set("X-Request-Id", "bad id\twith spaces")
	if id := a.do(req).header.Get("X-Request-Id"); id == "bad id\twith spaces" || id == "" {
		t.Errorf("insane request id kept: %q", id)
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil, httpapi.WithMaxBodyBytes(1024))
	cases := []struct {
		name, path, body string
		status           int
	}{
		{"malformed", "/v1/sandboxes", `{"image":`, 400},
		{"not JSON", "/v1/sandboxes", `image=busybox`, 400},
		{"empty", "/v1/sandboxes", ``, 400},
		{"trailing garbage", "/v1/sandboxes", `{"image":"busybox"} x`, 400},
		{"two objects", "/v1/sandboxes", `{"image":"busybox"}{"image":"busybox"}`, 400},
		{"wrong type image", "/v1/sandboxes", `{"image":1}`, 400},
		{"wrong type ports", "/v1/sandboxes", `{"image":"b","ports":"8080"}`, 400},
		{"wrong type timeout", "/v1/sandboxes", `{"image":"b","timeout":"60"}`, 400},
		{"wrong type memory", "/v1/sandboxes", `{"image":"b","resources":{"memory":"1g"}}`, 400},
		{"wrong type env", "/v1/sandboxes", `{"image":"b","env":{"A":"1"}}`, 400},
		{"array body", "/v1/sandboxes", `[]`, 400},
		{"missing image", "/v1/sandboxes", `{"ports":["8080"]}`, 400},
		{"blank image", "/v1/sandboxes", `{"image":"  "}`, 400},
		{"negative timeout", "/v1/sandboxes", `{"image":"b","timeout":-1}`, 400},
		{"huge timeout", "/v1/sandboxes", `{"image":"b","timeout":1e300}`, 400},
		{"too large", "/v1/sandboxes", `{"image":"` + strings.Repeat("a", 2000) + `"}`, 413},
		{"renew zero", "/v1/sandboxes/x/renew-expiration", `{"timeout":0}`, 400},
		{"renew negative", "/v1/sandboxes/x/renew-expiration", `{"timeout":-5}`, 400},
		{"renew missing", "/v1/sandboxes/x/renew-expiration", `{}`, 400},
		{"renew wrong type", "/v1/sandboxes/x/renew-expiration", `{"timeout":"10"}`, 400},
		{"pull missing image", "/v1/images/pull", `{}`, 400},
		{"pull malformed ref", "/v1/images/pull", `{"image":"UPPER/Case"}`, 400},
		{"pull wrong type", "/v1/images/pull", `{"image":["busybox"]}`, 400},
		{"cmd missing command", "/v1/sandboxes/x/cmd", `{"args":["a"]}`, 400},
		{"cmd wrong type args", "/v1/sandboxes/x/cmd", `{"command":"ls","args":"-la"}`, 400},
		{"cmd wrong type env", "/v1/sandboxes/x/cmd", `{"command":"ls","env":["A=1"]}`, 400},
	}
	for _, c := range cases {
		r := a.call("POST", c.path, c.body)
		if r.status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, r.status, c.status, r.body)
			continue
		}
		wantCode := map[int]string{400: "BAD_REQUEST", 413: "PAYLOAD_TOO_LARGE"}[c.status]
		if code := r.code(t); code != wantCode {
			t.Errorf("%s: code %q, want %q", c.name, code, wantCode)
		}
	}
}

func TestBadQueryParameters(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/sandboxes/x/stats?stream=maybe"},
		{"DELETE", "/v1/images/busybox:1?force=yes-please"},
		{"POST", "/v1/sandboxes/x/cmd?wait=2"},
		{"GET", "/v1/sandboxes/x/files"},
		{"GET", "/v1/sandboxes/x/files?path="},
		{"GET", "/v1/sandboxes/x/files?path=relative/p"},
		{"PUT", "/v1/sandboxes/x/files?path=rel"},
		{"PUT", "/v1/sandboxes/x/files?path=/a&mode=999"},
		{"DELETE", "/v1/sandboxes/x/files"},
		{"GET", "/v1/sandboxes/x/files/list"},
	} {
		r := a.call(c.method, c.path, `{"command":"ls","content":"x"}`)
		if r.status != http.StatusBadRequest || r.code(t) != "BAD_REQUEST" {
			t.Errorf("%s %s: status %d: %s", c.method, c.path, r.status, r.body)
		}
	}
}

func TestRegisterMountsNextToOwnRoutes(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) })
	mux.HandleFunc("GET /api/v2/custom", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("custom")) })
	httpapi.Register(mux, nil, httpapi.WithPrefix("/api/v2/"), httpapi.WithAPIKeys("k"))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	a := &api{t: t, srv: srv}

	r := a.call("GET", "/hello", nil)
	is.Equal(r.status, 200)        // own route
	is.Equal(string(r.body), "hi") // own route body
	r = a.call("GET", "/api/v2/custom", nil)
	is.Equal(string(r.body), "custom") // own route under the prefix
	want(t, a.call("GET", "/api/v2/sandboxes", nil), http.StatusUnauthorized, "UNAUTHORIZED")
	want(t, a.call("GET", "/api/v2/nothing", nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("DELETE", "/api/v2/sandboxes", nil), http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
	a.key = "k"
	r = a.call("GET", "/api/v2/openapi.json", nil)
	is.Equal(r.status, 200)                                                // openapi under the prefix
	is.True(strings.Contains(string(r.body), `"url": "/api/v2"`))          // servers entry names the prefix
	is.Equal(a.call("GET", "/elsewhere", nil).status, http.StatusNotFound) // the mux's own 404 outside the prefix
}
