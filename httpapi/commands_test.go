package httpapi_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/httpapi"
)

func cmdURL(id string, rest ...string) string {
	return "/v1/sandboxes/" + id + "/cmd" + strings.Join(rest, "")
}

// run starts a command and returns its CommandDetail.
func (a *api) run(id string, body map[string]any) map[string]any {
	a.t.Helper()
	r := a.call("POST", cmdURL(id), body)
	want(a.t, r, 200, "")
	return r.json(a.t)["command"].(map[string]any)
}

func TestCommands(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)
	id := a.createBusybox(nil)["id"].(string)

	// Immediate answer while it runs.
	before := time.Now().UnixMilli()
	c := a.run(id, map[string]any{"command": "sh", "args": []string{"-c", "echo $GREETING from $(pwd); echo err >&2; exit 4"},
		"cwd": "/tmp", "env": map[string]string{"GREETING": "hi"}})
	cid := c["id"].(string)
	is.True(strings.HasPrefix(cid, "cmd_")) // command id
	is.Equal(c["name"], "sh")
	is.Equal(c["args"], []any{"-c", "echo $GREETING from $(pwd); echo err >&2; exit 4"})
	is.Equal(c["cwd"], "/tmp")
	is.Equal(c["sandbox_id"], id)
	// The answer comes at once: usually while the command runs (through the
	// agent a command this short may be done already).
	if c["state"] == "running" {
		_, hasExit := c["exit_code"]
		is.True(!hasExit) // no exit code while running
	} else {
		is.Equal(c["state"], "finished")
	}
	started := c["started_at"].(float64)
	is.True(started >= float64(before-1000) && started <= float64(time.Now().UnixMilli()+1000)) // unix ms

	// Wait through GET ?wait=true: first record running or done, last done.
	s := a.stream(a.newRequest("GET", cmdURL(id, "/", cid, "?wait=true"), nil))
	var last map[string]any
	for rec := s.next(t); rec != nil; rec = s.next(t) {
		last = rec["command"].(map[string]any)
	}
	is.Equal(last["state"], "finished")
	is.Equal(last["exit_code"], 4.0)
	is.True(last["finished_at"].(float64) >= started) // finished_at in unix ms

	r := a.call("GET", cmdURL(id, "/", cid, "/logs"), nil)
	want(t, r, 200, "")
	logs := r.json(t)
	is.Equal(logs["stdout"], "hi from /tmp\n")
	is.Equal(logs["stderr"], "err\n")
	is.Equal(logs["exit_code"], 4.0)

	// POST ?wait=true: first line running, last line finished.
	s = a.stream(a.newRequest("POST", cmdURL(id, "?wait=true"), map[string]any{"command": "sleep", "args": []string{"1"}}))
	first := s.next(t)["command"].(map[string]any)
	is.Equal(first["state"], "running")
	second := s.next(t)["command"].(map[string]any)
	is.Equal(second["state"], "finished")
	is.Equal(second["exit_code"], 0.0)
	is.True(s.next(t) == nil) // two lines only

	// List.
	r = a.call("GET", cmdURL(id), nil)
	want(t, r, 200, "")
	is.Equal(len(r.json(t)["commands"].([]any)), 2)

	// A missing program is a finished command with 127, not an error.
	c = a.run(id, map[string]any{"command": "/no/such/program"})
	s = a.stream(a.newRequest("GET", cmdURL(id, "/", c["id"].(string), "?wait=true"), nil))
	for rec := s.next(t); rec != nil; rec = s.next(t) {
		last = rec["command"].(map[string]any)
	}
	is.Equal(last["exit_code"], 127.0)

	// Unknown ids.
	want(t, a.call("GET", cmdURL(id, "/cmd_nope"), nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("GET", cmdURL(id, "/cmd_nope?wait=true"), nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("GET", cmdURL(id, "/cmd_nope/logs"), nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("GET", cmdURL(id, "/cmd_nope/logs?stream=true"), nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("POST", cmdURL(id, "/cmd_nope/kill"), map[string]any{"signal": 15}), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("POST", cmdURL(id, "/cmd_nope/stdin"), "x"), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("POST", cmdURL("nope-x"), map[string]any{"command": "ls"}), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("GET", cmdURL("nope-x"), nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("POST", cmdURL(id), map[string]any{"command": "ls", "env": map[string]string{"A=B": "x"}}), http.StatusBadRequest, "BAD_REQUEST")

	// Wrong state: paused and stopped sandboxes take no commands.
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/pause", nil), 200, "")
	want(t, a.call("POST", cmdURL(id), map[string]any{"command": "ls"}), http.StatusConflict, "CONFLICT")
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/stop", nil), 200, "")
	want(t, a.call("POST", cmdURL(id), map[string]any{"command": "ls"}), http.StatusConflict, "CONFLICT")
}

func TestCommandKill(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)
	id := a.createBusybox(nil)["id"].(string)

	for _, sig := range []any{9, "SIGKILL", "term", 15} {
		c := a.run(id, map[string]any{"command": "sleep", "args": []string{"300"}})
		cid := c["id"].(string)
		r := a.call("POST", cmdURL(id, "/", cid, "/kill"), map[string]any{"signal": sig})
		want(t, r, 200, "")
		s := a.stream(a.newRequest("GET", cmdURL(id, "/", cid, "?wait=true"), nil))
		var last map[string]any
		for rec := s.next(t); rec != nil; rec = s.next(t) {
			last = rec["command"].(map[string]any)
		}
		is.Equal(last["state"], "killed") // killed state
		want(t, a.call("POST", cmdURL(id, "/", cid, "/kill"), map[string]any{"signal": 15}), http.StatusConflict, "CONFLICT")
	}

	c := a.run(id, map[string]any{"command": "sleep", "args": []string{"300"}})
	cid := c["id"].(string)
	for _, bad := range []string{`{"signal":0}`, `{"signal":65}`, `{"signal":"SIGNOPE"}`, `{"signal":1.5}`, `{"signal":true}`, `{"signal":`} {
		want(t, a.call("POST", cmdURL(id, "/", cid, "/kill"), bad), http.StatusBadRequest, "BAD_REQUEST")
	}
	// "signal" is required, as in the original: no body, an empty object and
	// null are 400, and the command keeps running.
	for _, missing := range []any{nil, `{}`, `{"signal":null}`} {
		r := a.call("POST", cmdURL(id, "/", cid, "/kill"), missing)
		want(t, r, http.StatusBadRequest, "BAD_REQUEST")
		is.True(strings.Contains(r.json(t)["message"].(string), `"signal" is required`))
	}
	is.Equal(a.call("GET", cmdURL(id, "/", cid), nil).json(t)["command"].(map[string]any)["state"], "running")
	want(t, a.call("POST", cmdURL(id, "/", cid, "/kill"), map[string]any{"signal": "TERM"}), 200, "")
}

func TestCommandLogStream(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)
	id := a.createBusybox(nil)["id"].(string)

	// A line printed while the command runs arrives before it exits: the
	// command waits for a file that is only written after the first line
	// was read. The last line has no newline and still arrives.
	c := a.run(id, map[string]any{"command": "sh", "args": []string{"-c",
		`echo one; while [ ! -e /tmp/go ]; do sleep 0.1; done; printf '\377\376'; printf 'tail-no-newline'`}})
	cid := c["id"].(string)
	s := a.stream(a.newRequest("GET", cmdURL(id, "/", cid, "/logs?stream=true"), nil))
	rec := s.next(t)
	is.Equal(rec["type"], "stdout")
	is.Equal(rec["data"], "one\n")
	cursor := rec["cursor"].(string)
	is.True(cursor != "") // records carry a cursor
	r := a.call("GET", cmdURL(id, "/", cid), nil)
	is.Equal(r.json(t)["command"].(map[string]any)["state"], "running") // still running at the first line
	want(t, a.call("PUT", filesURL(id, "/tmp/go"), map[string]any{"content": ""}), 200, "")

	var out []byte
	var exit map[string]any
	for rec = s.next(t); rec != nil; rec = s.next(t) {
		switch rec["type"] {
		case "stdout":
			data := rec["data"].(string)
			if rec["encoding"] == "base64" {
				b, err := base64.StdEncoding.DecodeString(data)
				is.NoErr(err)
				out = append(out, b...)
			} else {
				out = append(out, data...)
			}
		case "exit":
			exit = rec
		}
	}
	is.Equal(out, []byte("\xff\xfetail-no-newline")) // byte-exact, partial last line kept
	is.Equal(exit["exit_code"], 0.0)

	// Resume after the first record's cursor: no gap, no duplicate.
	s = a.stream(a.newRequest("GET", cmdURL(id, "/", cid, "/logs?stream=true&cursor="+cursor), nil))
	var again []byte
	for rec = s.next(t); rec != nil; rec = s.next(t) {
		if rec["type"] == "stdout" {
			data := rec["data"].(string)
			if rec["encoding"] == "base64" {
				b, _ := base64.StdEncoding.DecodeString(data)
				data = string(b)
			}
			again = append(again, data...)
		}
	}
	is.Equal(again, out) // resumed right after "one\n"

	// The whole output at once: not UTF-8, so base64.
	r = a.call("GET", cmdURL(id, "/", cid, "/logs"), nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["encoding"], "base64")
	all, err := base64.StdEncoding.DecodeString(r.json(t)["stdout"].(string))
	is.NoErr(err)
	is.Equal(all, append([]byte("one\n"), out...))

	// A malformed cursor ends the stream with an error record.
	s = a.stream(a.newRequest("GET", cmdURL(id, "/", cid, "/logs?stream=true&cursor=garbage"), nil))
	rec = s.next(t)
	is.Equal(rec["error"].(map[string]any)["code"], "BAD_REQUEST")
}

func TestStreamsEndWhenClientLeaves(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	returned := make(chan string, 8)
	inner := httpapi.New(m)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r)
		returned <- r.Method + " " + r.URL.Path
	}))
	t.Cleanup(srv.Close)
	a := &api{t: t, srv: srv}
	id := a.createBusybox(nil)["id"].(string)
	<-returned
	c := a.run(id, map[string]any{"command": "sh", "args": []string{"-c", "echo x; sleep 300"}})
	<-returned
	for _, path := range []string{
		cmdURL(id, "/", c["id"].(string), "/logs?stream=true"),
		cmdURL(id, "/", c["id"].(string), "?wait=true"),
		"/v1/sandboxes/" + id + "/stats?stream=true",
	} {
		ctx, cancel := context.WithCancel(context.Background())
		s := a.stream(a.newRequest("GET", path, nil).WithContext(ctx))
		s.next(t) // the stream is live
		cancel()
		select {
		case <-returned:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: handler still running 20s after the client left", path)
		}
	}
}

func TestCommandStdin(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)
	id := a.createBusybox(nil)["id"].(string)
	r := a.call("POST", "/v1/sandboxes/"+id+"/cmd", map[string]any{"command": "cat", "open_stdin": true})
	want(t, r, 200, "")
	cid := r.json(t)["command"].(map[string]any)["id"].(string)
	want(t, a.call("POST", cmdURL(id, "/", cid, "/stdin"), "hello "), http.StatusNoContent, "")
	want(t, a.call("POST", cmdURL(id, "/", cid, "/stdin?close=true"), "world"), http.StatusNoContent, "")
	s := a.stream(a.newRequest("GET", cmdURL(id, "/", cid, "?wait=true"), nil))
	for rec := s.next(t); rec != nil; rec = s.next(t) {
	}
	r = a.call("GET", cmdURL(id, "/", cid, "/logs"), nil)
	is.Equal(r.json(t)["stdout"], "hello world")
	want(t, a.call("POST", cmdURL(id, "/", cid, "/stdin"), "late"), http.StatusConflict, "CONFLICT")
	want(t, a.call("POST", cmdURL(id, "/", cid, "/stdin?close=maybe"), "x"), http.StatusBadRequest, "BAD_REQUEST")
}
