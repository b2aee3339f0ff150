package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The requests below never reach the Manager, so nil stands in for it.
func TestNewHandler(t *testing.T) {
	srv := httptest.NewServer(newHandler(nil, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	for _, c := range []struct {
		path   string
		auth   bool
		status int
	}{
		{"/", false, 200},                           // own route
		{"/healthz", false, 200},                    // own route
		{"/api/sandbox/v1/sandboxes", false, 401},   // API, key required
		{"/api/sandbox/v1/openapi.json", true, 200}, // API with the key
		{"/api/sandbox/v1/nope", false, 404},        // API's JSON 404
		{"/other", false, 404},                      // the mux's own 404
	} {
		req, _ := http.NewRequest("GET", srv.URL+c.path, nil)
		if c.auth {
			req.Header.Set("Authorization", "Bearer demo-key")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", c.path, res.StatusCode, c.status)
		}
		if res.Header.Get("X-Powered-By") != "my-service" {
			t.Errorf("%s: the service's middleware did not run", c.path)
		}
	}
}
