package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/httpapi"
	"github.com/opensbx/opensbx/internal/testenv"
)

// Differences from the original API found by running its tests against us,
// each fixed and kept fixed here.

func TestParityMessages(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)

	// A missing image says it is not local and how to pull it.
	r := a.call("POST", "/v1/sandboxes", map[string]any{"image": "opensbx-test/absent:" + randomHex(4)})
	want(t, r, http.StatusNotFound, "NOT_FOUND")
	msg := r.json(t)["message"].(string)
	is.True(strings.Contains(msg, "not found locally")) // says why
	is.True(strings.Contains(msg, "/v1/images/pull"))   // says how to fix it

	// The CPU maximum is printed as the original prints it.
	r = a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage, "resources": map[string]any{"cpus": 4.5}})
	want(t, r, http.StatusBadRequest, "BAD_REQUEST")
	is.True(strings.Contains(r.json(t)["message"].(string), "4.0"))

	id := a.createBusybox(nil)["id"].(string)
	r = a.call("POST", "/v1/sandboxes/"+id+"/start", nil)
	want(t, r, http.StatusConflict, "CONFLICT")
	is.True(strings.Contains(r.json(t)["message"].(string), "already running"))
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/pause", nil), http.StatusOK, "")
	r = a.call("POST", "/v1/sandboxes/"+id+"/pause", nil)
	want(t, r, http.StatusConflict, "CONFLICT")
	is.True(strings.Contains(r.json(t)["message"].(string), "already paused"))
}

func TestParityGetHasStartAndFinishTimes(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)
	sb := a.createBusybox(nil)
	id := sb["id"].(string)
	for _, got := range []map[string]any{sb, a.call("GET", "/v1/sandboxes/"+id, nil).json(t)} {
		started, ok := got["started_at"].(string)
		is.True(ok && started != "") // started_at is set
		finished, ok := got["finished_at"]
		is.True(ok)             // finished_at is present ...
		is.Equal(finished, nil) // ... and null: it never finished
	}
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/stop", nil), http.StatusOK, "")
	got := a.call("GET", "/v1/sandboxes/"+id, nil).json(t)
	_, ok := got["finished_at"].(string)
	is.True(ok) // finished_at once stopped
}

// TestParityUnreachableRegistry uses 127.0.0.1:5999, a loopback port where
// nothing listens: the engine never contacts another host.
func TestParityUnreachableRegistry(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	a := newAPI(t, m)
	ref := "127.0.0.1:5999/opensbx-test/unreachable-" + randomHex(3) + ":1"
	r := a.call("POST", "/v1/sandboxes", map[string]any{"image": ref, "pull": true})
	want(t, r, http.StatusBadGateway, "REGISTRY_ERROR")
	want(t, a.call("POST", "/v1/images/pull", map[string]any{"image": ref}), http.StatusBadGateway, "REGISTRY_ERROR")
	if n := len(a.call("GET", "/v1/sandboxes", nil).json(t)["sandboxes"].([]any)); n != 0 {
		t.Errorf("the failed create left %d sandboxes", n)
	}
}

// TestNoRedirects checks the paths a ServeMux would redirect: each answers
// JSON 404 or 405 itself.
func TestNoRedirects(t *testing.T) {
	t.Parallel()
	for _, mount := range []string{"new", "register"} {
		var h http.Handler
		if mount == "new" {
			h = httpapi.New(nil)
		} else {
			mux := http.NewServeMux()
			httpapi.Register(mux, nil)
			h = mux
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		a := &api{t: t, srv: srv}
		cases := []struct {
			method, path string
			status       int
			allow        string
		}{
			{"DELETE", "/v1/images", http.StatusMethodNotAllowed, "GET, HEAD"},
			{"POST", "/v1/images", http.StatusMethodNotAllowed, "GET, HEAD"},
			{"PUT", "/v1/images", http.StatusMethodNotAllowed, "GET, HEAD"},
			{"GET", "/v1", http.StatusNotFound, ""},
			{"POST", "/v1", http.StatusNotFound, ""},
			{"GET", "/v1/images/", http.StatusNotFound, ""},
			{"DELETE", "/v1/images/", http.StatusNotFound, ""},
			{"GET", "/v1/mcp", http.StatusMethodNotAllowed, "POST"},
		}
		if mount == "new" {
			// Path cleaning happens in the caller's mux with Register.
			cases = append(cases, []struct {
				method, path string
				status       int
				allow        string
			}{
				{"GET", "/v1//sandboxes", http.StatusNotFound, ""},
				{"GET", "/v1/sandboxes/x/../y", http.StatusNotFound, ""},
				{"DELETE", "/v1/./images/busybox", http.StatusNotFound, ""},
				{"GET", "/v1/sandboxes/x/files/../list", http.StatusNotFound, ""},
			}...)
		}
		client := srv.Client()
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		for _, c := range cases {
			req := a.newRequest(c.method, c.path, nil)
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Code string }
			json.NewDecoder(res.Body).Decode(&body)
			res.Body.Close()
			if res.StatusCode != c.status || res.Header.Get("Allow") != c.allow || body.Code == "" {
				t.Errorf("%s: %s %s: %d %q Allow %q Location %q, want %d Allow %q", mount, c.method, c.path,
					res.StatusCode, body.Code, res.Header.Get("Allow"), res.Header.Get("Location"), c.status, c.allow)
			}
		}
	}
}

// TestBadQueryFlags sends a value that is not a boolean to every boolean
// query parameter openapi.json documents: each is 400, before anything
// else happens.
func TestBadQueryFlags(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name, In string
				Schema   struct{ Type string }
			}
		}
	}
	if err := json.Unmarshal(httpapi.OpenAPI("/v1"), &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for p, ops := range doc.Paths {
		for method, op := range ops {
			for _, prm := range op.Parameters {
				if prm.In != "query" || prm.Schema.Type != "boolean" {
					continue
				}
				path := strings.NewReplacer("{id}", "x", "{cmdId}", "y", "{ref}", "busybox:1").Replace(p)
				for _, v := range []string{"x", "yes", "2", "truee"} {
					r := a.call(strings.ToUpper(method), "/v1"+path+"?path=/a&"+prm.Name+"="+v, `{"command":"ls","image":"busybox:1"}`)
					if r.status != http.StatusBadRequest || r.code(t) != "BAD_REQUEST" || !strings.Contains(string(r.body), prm.Name) {
						t.Errorf("%s %s?%s=%s: %d %s", method, p, prm.Name, v, r.status, r.body)
					}
				}
				n++
			}
		}
	}
	if n < 7 { // stream x3, wait x2, force, close
		t.Errorf("only %d boolean flags documented", n)
	}
}

// TestJSONNullIsAbsent checks the documented rule: JSON null for a field
// counts as leaving it out, so null for a required field is 400.
func TestJSONNullIsAbsent(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	for _, c := range []struct{ method, path, body, msg string }{
		{"POST", "/v1/sandboxes", `{"image":null}`, `"image" is required`},
		{"POST", "/v1/images/pull", `{"image":null}`, `"image" is required`},
		{"POST", "/v1/sandboxes/x/cmd", `{"command":null,"args":null}`, `"command" is required`},
		{"POST", "/v1/sandboxes/x/renew-expiration", `{"timeout":null}`, `"timeout" must be a positive number`},
		{"POST", "/v1/sandboxes/x/cmd/y/kill", `{"signal":null}`, `"signal" is required`},
	} {
		r := a.call(c.method, c.path, c.body)
		want(t, r, http.StatusBadRequest, "BAD_REQUEST")
		if !strings.Contains(r.json(t)["message"].(string), c.msg) {
			t.Errorf("%s %s: %s", c.path, c.body, r.body)
		}
	}
}

func TestJSONNullForOptionalFields(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)
	r := a.call("POST", "/v1/sandboxes", `{"image":"`+testenv.BusyboxImage+`","name":null,"ports":null,"timeout":null,"resources":null,
		"env":null,"command":null,"entrypoint":null,"keep_image_command":null,"working_dir":null,"pull":null}`)
	want(t, r, http.StatusCreated, "")
	id := r.json(t)["id"].(string)
	r = a.call("POST", "/v1/sandboxes", `{"image":"`+testenv.BusyboxImage+`","resources":{"memory":null,"cpus":null}}`)
	want(t, r, http.StatusCreated, "")
	r = a.call("POST", "/v1/sandboxes/"+id+"/cmd", `{"command":"true","args":null,"cwd":null,"env":null,"user":null,"open_stdin":null}`)
	want(t, r, http.StatusOK, "")
	r = a.call("PUT", "/v1/sandboxes/"+id+"/files?path=/tmp/n", `{"content":"x","encoding":null}`)
	want(t, r, http.StatusOK, "")
	is.Equal(r.json(t)["size"], 1.0)
	r = a.call("PUT", "/v1/sandboxes/"+id+"/files?path=/tmp/n", `{"content":null}`) // required: null is as missing
	want(t, r, http.StatusBadRequest, "BAD_REQUEST")
	is.True(strings.Contains(r.json(t)["message"].(string), `"content" is required`))
}
