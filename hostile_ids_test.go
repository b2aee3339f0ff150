package opensbx

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"
)

// fakeDockerAPI answers the few Engine API calls a Manager makes on New and
// on a lookup, and records every path it is asked for. Its one container is
// labelled as the Manager's but inspects without a Config, as a broken or
// hostile engine might answer.
type fakeDockerAPI struct {
	mu    sync.Mutex
	paths []string
}

const fakeDockerID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func (f *fakeDockerAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.EscapedPath())
	f.mu.Unlock()
	w.Header().Set("Api-Version", "1.41")
	w.Header().Set("Content-Type", "application/json")
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/_ping"):
		w.Write([]byte("OK"))
	case strings.HasSuffix(p, "/info"):
		w.Write([]byte(`{"Architecture":"x86_64","OSType":"linux","ServerVersion":"fake","Driver":"overlay2"}`))
	case strings.HasSuffix(p, "/networks/opensbx"):
		w.Write([]byte(`{"Name":"opensbx","Id":"n","Labels":{"org.opensbx.managed":"true"},"Options":{"com.docker.network.bridge.enable_icc":"false"}}`))
	case strings.HasSuffix(p, "/events"):
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // an event stream with nothing in it
	case strings.HasSuffix(p, "/containers/json"):
		json.NewEncoder(w).Encode([]map[string]any{{
			"Id": fakeDockerID, "Names": []string{"/opensbx7-default-x"}, "State": "running",
			"Labels": map[string]string{labelManaged: "true", labelNamespace: DefaultNamespace, labelName: "x"},
		}})
	case strings.HasSuffix(p, "/containers/"+fakeDockerID+"/json"):
		json.NewEncoder(w).Encode(map[string]any{"Id": fakeDockerID, "State": nil, "Config": nil})
	default:
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"message":"not handled by the fake"}`))
	}
}

func (f *fakeDockerAPI) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.paths...)
}

// TestHostileIDsNeverReachTheEngine sends ids that the SDK would clean into
// other Engine API paths (/distribution/... makes a real engine contact a
// registry) to a Manager on a fake engine: every one is ErrNotFound and no
// request carries it. An engine answer without Config is not found, not a
// panic.
func TestHostileIDsNeverReachTheEngine(t *testing.T) {
	is := is.New(t)
	fake := &fakeDockerAPI{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	m, err := New(context.Background(), WithDockerHost("tcp://"+strings.TrimPrefix(srv.URL, "http://")))
	is.NoErr(err)
	defer m.Close()
	fake.mu.Lock()
	fake.paths = nil // what New asked for (/info among it) is not in question
	fake.mu.Unlock()
	ctx := context.Background()
	hostile := []string{"../distribution/busybox", "..%2Fdistribution%2Fbusybox", "../networks/bridge",
		"../../info", "/../../distribution/x", "x/../../distribution/y", "0123/../../info", "..", "%2e%2e"}
	for _, id := range hostile {
		_, err := m.Get(ctx, id)
		is.True(errors.Is(err, ErrNotFound)) // hostile id
		_, err = m.Stop(ctx, id)
		is.True(errors.Is(err, ErrNotFound))
		err = m.Delete(ctx, id)
		is.True(errors.Is(err, ErrNotFound))
		_, err = m.Exec(ctx, id, ExecOptions{Command: "true"})
		is.True(errors.Is(err, ErrNotFound))
		_, _, err = m.ReadFile(ctx, id, "/etc/passwd")
		is.True(errors.Is(err, ErrNotFound))
	}
	// The listed container inspects without Config: not found, no panic.
	_, err = m.Get(ctx, "x")
	is.True(errors.Is(err, ErrNotFound)) // a container without labels is not ours
	for _, p := range fake.seen() {
		if strings.Contains(p, "distribution") || strings.Contains(p, "networks") || strings.Contains(p, "..") ||
			strings.Contains(p, "%2F") || strings.HasSuffix(p, "/info") {
			t.Errorf("the engine was asked for %s", p)
		}
	}
}

// TestHostileIDsRealEngine sends ids that resolve to other paths of a real
// engine (none that would reach /distribution, which leaves the machine).
func TestHostileIDsRealEngine(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	newBusybox(t, m, CreateOptions{})
	ctx := context.Background()
	for _, id := range []string{"../networks/bridge", "../../info", "../containers/json", "..", "bridge"} {
		_, err := m.Get(ctx, id)
		is.True(errors.Is(err, ErrNotFound)) // resolves elsewhere: not found
		err = m.Delete(ctx, id)
		is.True(errors.Is(err, ErrNotFound))
	}
}
