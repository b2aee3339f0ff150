package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
)

func TestClassify(t *testing.T) {
	timeout := fmt.Errorf("get: %w", context.DeadlineExceeded)
	reset := errors.New("read: connection reset by peer")
	wrong := errors.New("wrong content")
	tests := []struct {
		name        string
		status      int
		err, wrong  error
		deleting    bool
		interrupted bool
		want        category
	}{
		{name: "ok", status: 200, want: catOK},
		{name: "204", status: 204, want: catOK},
		{name: "timeout", err: timeout, want: catTimeout},
		{name: "connection", err: reset, want: catConn},
		{name: "interrupted", err: reset, interrupted: true, want: catCancelled},
		{name: "404 racing", status: 404, deleting: true, want: catExpected},
		{name: "409 racing", status: 409, deleting: true, want: catExpected},
		{name: "404 alone", status: 404, want: catUnexpected4},
		{name: "400 racing", status: 400, deleting: true, want: catUnexpected4},
		{name: "429", status: 429, want: catUnexpected4},
		{name: "500", status: 500, want: catServer},
		{name: "500 racing", status: 500, deleting: true, want: catServer}, // a 5xx is a bug, race or not
		{name: "503", status: 503, want: catServer},
		{name: "wrong", status: 200, wrong: wrong, want: catWrong},
		{name: "wrong racing", status: 200, wrong: wrong, deleting: true, want: catExpected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is.New(t).Equal(classify(tt.status, tt.err, tt.wrong, tt.deleting, tt.interrupted), tt.want)
		})
	}
}

func TestCodeStatus(t *testing.T) {
	is := is.New(t)
	is.Equal(codeStatus("NOT_FOUND"), 404)
	is.Equal(codeStatus("CONFLICT"), 409)
	is.Equal(codeStatus("UNAVAILABLE"), 503)
	is.Equal(codeStatus("INTERNAL_ERROR"), 500)
	is.Equal(codeStatus("SOMETHING_NEW"), 500) // unknown codes are not excused
}

func TestPercentile(t *testing.T) {
	msl := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // unsorted: latency sorts
	}
	tests := []struct {
		samples       []time.Duration
		p50, p99, max time.Duration
	}{
		{nil, 0, 0, 0},
		{msl(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{msl(2, 1), 1 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond},
		{msl(3, 1, 2), 2 * time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond},
		{msl(hundred...), 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		is := is.New(t)
		p50, p99, mx := latency(tt.samples)
		is.Equal(p50, tt.p50)
		is.Equal(p99, tt.p99)
		is.Equal(mx, tt.max)
	}
}

func TestParseStatus(t *testing.T) {
	is := is.New(t)
	s, err := parseStatus([]byte("Name:\topensbx\nVmHWM:\t   41000 kB\nVmRSS:\t   39936 kB\nThreads:\t12\n"))
	is.NoErr(err)
	is.Equal(s.RSS, int64(39936<<10))
	is.Equal(s.Peak, int64(41000<<10))
	is.Equal(s.Threads, 12)
	_, err = parseStatus([]byte("Name:\tzombie\nThreads:\t1\n")) // a zombie has no VmRSS
	is.True(err != nil)
}

func TestParseStat(t *testing.T) {
	is := is.New(t)
	// The command name may hold spaces and parentheses.
	cpu, err := parseStat([]byte("4242 (open sbx) (x)) S 1 4242 4242 0 -1 4194560 1390 0 0 0 250 130 0 0 20 0 9 0 1234 0 0\n"))
	is.NoErr(err)
	is.Equal(cpu, 3.8) // (250 + 130) ticks at 100 a second
	_, err = parseStat([]byte("4242 (x) S 1 2"))
	is.True(err != nil)
}

func ndjson(lines ...string) answer {
	return answer{header: http.Header{"Content-Type": {"application/x-ndjson"}}, body: []byte(strings.Join(lines, "\n") + "\n")}
}

func TestFollowLog(t *testing.T) {
	tests := []struct {
		name             string
		a                answer
		stdout, stderr   string
		exit             int
		wantErr, wantRec bool
	}{
		{name: "lines then exit", a: ndjson(`{"type":"stdout","data":"line 1\n","cursor":"1"}`, `{"type":"stderr","data":"e"}`,
			`{"type":"stdout","data":"bGluZSAyCg==","encoding":"base64"}`, `{"type":"exit","exit_code":3}`),
			stdout: "line 1\nline 2\n", stderr: "e", exit: 3},
		{name: "no exit record", a: ndjson(`{"type":"stdout","data":"x"}`), wantErr: true},
		{name: "record after exit", a: ndjson(`{"type":"exit","exit_code":0}`, `{"type":"stdout","data":"x"}`), wantErr: true},
		{name: "error record", a: ndjson(`{"type":"stdout","data":"x"}`, `{"error":{"code":"INTERNAL_ERROR","message":"boom"}}`), wantErr: true, wantRec: true},
		{name: "not json", a: ndjson(`{"type":`), wantErr: true},
		{name: "unknown type", a: ndjson(`{"type":"weird"}`, `{"type":"exit","exit_code":0}`), wantErr: true},
		{name: "content type", a: answer{header: http.Header{"Content-Type": {"application/json"}}, body: []byte(`{"type":"exit","exit_code":0}`)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			stdout, stderr, exit, err := followLog(tt.a)
			if tt.wantErr {
				is.True(err != nil)
				var se *streamError
				is.Equal(errors.As(err, &se), tt.wantRec) // an error record comes back as *streamError
				return
			}
			is.NoErr(err)
			is.Equal(stdout, tt.stdout)
			is.Equal(stderr, tt.stderr)
			is.Equal(exit, tt.exit)
		})
	}
}

func TestLastCommand(t *testing.T) {
	is := is.New(t)
	last, err := lastCommand(ndjson(`{"command":{"id":"cmd_1","state":"running"}}`, `{"command":{"id":"cmd_1","state":"finished","exit_code":0}}`))
	is.NoErr(err)
	is.Equal(last.Command.State, "finished")
	is.Equal(*last.Command.ExitCode, 0)
	_, err = lastCommand(ndjson(`{"command":{"id":"cmd_1","state":"running"}}`, `{"error":{"code":"NOT_FOUND","message":"gone"}}`))
	var se *streamError
	is.True(errors.As(err, &se)) // the error record
	is.Equal(se.Code, "NOT_FOUND")
	_, err = lastCommand(answer{header: http.Header{"Content-Type": {"application/x-ndjson"}}})
	is.True(err != nil) // empty stream
	_, err = lastCommand(ndjson(`{"other":1}`))
	is.True(err != nil) // no command
}

func TestParseFlags(t *testing.T) {
	env := func(k string) string {
		if k == "API_KEY" {
			return "from-env"
		}
		return ""
	}
	tests := []struct {
		args    []string
		wantErr bool
		check   func(*is.I, config)
	}{
		{args: nil, check: func(is *is.I, c config) {
			is.Equal(c.clients, 200)
			is.Equal(c.duration, 60*time.Second)
			is.Equal(c.sandboxes, 50)
			is.Equal(c.minSandboxes, 10)
			is.Equal(c.image, "opensbx-test/busybox:1")
			is.True(idRE.MatchString(c.id))
			is.Equal(c.key, "") // API_KEY is for -url only
		}},
		{args: []string{"-url", "http://127.0.0.1:8080/"}, check: func(is *is.I, c config) {
			is.Equal(c.url, "http://127.0.0.1:8080")
			is.Equal(c.key, "from-env")
		}},
		{args: []string{"-url", "http://127.0.0.1:8080", "-key", "k", "-pid", "42"}, check: func(is *is.I, c config) {
			is.Equal(c.key, "k")
			is.Equal(c.pid, 42)
		}},
		{args: []string{"-clients", "0"}, wantErr: true},
		{args: []string{"-sandboxes", "5", "-min-sandboxes", "6"}, wantErr: true},
		{args: []string{"-duration", "0s"}, wantErr: true},
		{args: []string{"-id", "Bad_ID"}, wantErr: true},
		{args: []string{"-key", "k"}, wantErr: true},                                         // no -url
		{args: []string{"-url", "ftp://x"}, wantErr: true},                                   // scheme
		{args: []string{"-url", "http://x/v1"}, wantErr: true},                               // a path
		{args: []string{"-url", "http://x:1", "-server-bin", "/bin/opensbx"}, wantErr: true}, // both
		{args: []string{"extra"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			is := is.New(t)
			cfg, err := parseFlags(tt.args, env, io.Discard)
			if tt.wantErr {
				var ue usageError
				is.True(errors.As(err, &ue)) // a usage error (exit code 2)
				return
			}
			is.NoErr(err)
			tt.check(is, cfg)
		})
	}
}

func TestServerLog(t *testing.T) {
	is := is.New(t)
	l := newServerLog()
	long := `{"level":"INFO","msg":"request","path":"/` + strings.Repeat("x", 3*maxLogLine) + `"}`
	in := strings.Join([]string{
		`{"time":"t","level":"INFO","msg":"listening","addr":"127.0.0.1:4321","namespace":"n"}`,
		long,
		`{"time":"t","level":"ERROR","msg":"internal error","request_id":"r-7","err":"boom"}`,
		`{"time":"t","level":"WARN","msg":"slow"}`,
		`not json at all`,
		`{"time":"t","level":"INFO","msg":"request","request_id":"r-8","status":200}`,
	}, "\n") // no newline at the end: the last line counts too
	l.read(strings.NewReader(in))
	is.Equal(<-l.listening, "127.0.0.1:4321")
	levels, problems, dropped := l.summary()
	is.Equal(levels["INFO"], 3)
	is.Equal(levels["ERROR"], 1)
	is.Equal(levels["WARN"], 1)
	is.Equal(levels["?"], 1)
	is.Equal(len(problems), 2)
	is.Equal(dropped, 0)
	is.Equal(len(l.forRequest("r-7")), 1)
	is.True(strings.Contains(l.forRequest("r-7")[0], "boom"))
	is.Equal(len(l.forRequest("r-8")), 0) // INFO lines are not kept by request
	for _, s := range strings.Split(l.tailText(), "\n") {
		is.True(len(s) <= maxLogLine) // long lines are cut
	}
}

func TestChildEnv(t *testing.T) {
	is := is.New(t)
	env := childEnv([]string{"PATH=/bin", "DOCKER_HOST=unix:///x", "API_KEY=secret", "POOL=img=3", "HOME=/root", "ADDR=0.0.0.0:80"},
		map[string]string{"ADDR": "127.0.0.1:0", "NAMESPACE": "load-x"})
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		_, dup := got[k]
		is.True(!dup) // each variable once
		got[k] = v
	}
	is.Equal(got["PATH"], "/bin")
	is.Equal(got["DOCKER_HOST"], "unix:///x")
	is.Equal(got["ADDR"], "127.0.0.1:0")
	is.Equal(got["NAMESPACE"], "load-x")
	_, key := got["API_KEY"]
	_, pool := got["POOL"]
	is.True(!key && !pool) // the caller's server settings do not reach the child
}

// fakeAPI is a stand-in for the server, for the command's own judgement:
// sandboxes come and go, but stats answers 500, get says "running":
// false, the first sandbox never goes away, and every other route is 404.
type fakeAPI struct {
	key string

	mu    sync.Mutex
	seq   int
	byID  map[string]string // id -> name
	first string            // the sticky sandbox's name
}

func (f *fakeAPI) handler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	resolve := func(ref string) (string, string, bool) {
		for id, name := range f.byID {
			if id == ref || name == ref {
				return id, name, true
			}
		}
		return "", "", false
	}
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, map[string]string{"status": "healthy"}) })
	mux.HandleFunc("GET /v1/images/{ref...}", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, map[string]string{"id": "sha256:1"}) })
	mux.HandleFunc("POST /v1/sandboxes", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Name string }
		json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.seq++
		id := fmt.Sprintf("%064x", f.seq)
		f.byID[id] = req.Name
		if f.first == "" {
			f.first = req.Name
		}
		reply(w, 201, map[string]string{"id": id, "name": req.Name})
	})
	mux.HandleFunc("GET /v1/sandboxes", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		list := []map[string]string{}
		for id, name := range f.byID {
			list = append(list, map[string]string{"id": id, "name": name})
		}
		reply(w, 200, map[string]any{"sandboxes": list})
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		id, name, ok := resolve(r.PathValue("id"))
		if !ok {
			reply(w, 404, map[string]string{"code": "NOT_FOUND", "message": "no sandbox"})
			return
		}
		reply(w, 200, map[string]any{"id": id, "name": name, "running": false})
	})
	mux.HandleFunc("DELETE /v1/sandboxes/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		id, name, ok := resolve(r.PathValue("id"))
		if !ok {
			reply(w, 404, map[string]string{"code": "NOT_FOUND", "message": "no sandbox"})
			return
		}
		if name != f.first {
			delete(f.byID, id)
		}
		w.WriteHeader(204)
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/stats", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 500, map[string]string{"code": "INTERNAL_ERROR", "message": "fake stats failure"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 404, map[string]string{"code": "NOT_FOUND", "message": "no route"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/health" && r.Header.Get("Authorization") != "Bearer "+f.key {
			reply(w, 401, map[string]string{"code": "UNAUTHORIZED", "message": "key"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// TestJudgesAFaultyServer runs the command against fakeAPI and checks that
// it reports each fault where it belongs, lists the 5xx with its body,
// finds the sandbox that outlived its delete, and exits with problems.
func TestJudgesAFaultyServer(t *testing.T) {
	is := is.New(t)
	f := &fakeAPI{key: "fake-key", byID: map[string]string{}}
	srv := httptest.NewServer(f.handler())
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-url", srv.URL, "-key", f.key, "-id", "fake", "-json", "-docker=false",
		"-clients", "3", "-duration", "1s", "-sandboxes", "3", "-min-sandboxes", "1", "-sample", "500ms"}, noEnv, &stdout, &stderr)
	is.True(errors.Is(err, errProblems)) // the faults make the exit code 1
	var rep report
	is.NoErr(json.Unmarshal(stdout.Bytes(), &rep))
	is.Equal(rep.Server.Mode, "url")

	is.True(rep.Errors.Server5xx > 0)                                                                     // stats answered 500
	is.True(len(rep.Errors.Server) > 0 && len(rep.Errors.Server) <= min(rep.Errors.Server5xx, maxServer)) // listed
	for _, s := range rep.Errors.Server {
		is.Equal(s.Op, "stats")
		is.Equal(s.Status, 500)
		is.True(strings.Contains(s.Body, "fake stats failure")) // listed with its body
		is.True(strings.HasPrefix(s.RequestID, "fake-"))
	}
	is.True(rep.Errors.Wrong > 0) // get said running: false
	for _, s := range rep.Errors.WrongSamples {
		is.Equal(s.Op, "get")
	}
	is.True(rep.Errors.Unexpected4xx["404"] > 0) // exec, files, ... are 404 here
	for _, o := range rep.Ops {
		switch o.Name {
		case "create", "list", "delete":
			is.True(o.OK > 0) // these work on the fake
		case "stats", "get", "exec", "cmd", "file-write", "file-write-64k":
			is.Equal(o.OK, 0)
			is.True(o.Errors > 0) // tried, and failed
		}
	}
	is.True(rep.Leaks.APIChecked)
	is.True(!rep.Leaks.DockerChecked)                                          // -docker=false
	is.Equal(rep.Leaks.API, []string{f.first + " " + fmt.Sprintf("%064x", 1)}) // the sandbox that stayed
	is.True(strings.HasPrefix(f.first, prefix("fake")))
	for _, m := range rep.Memory {
		is.Equal(m.Error, errNoProc.Error()) // no -pid: no samples, said so
	}
	joined := strings.Join(rep.Problems, "\n")
	is.True(strings.Contains(joined, "5xx"))
	is.True(strings.Contains(joined, "wrong answers"))
	is.True(strings.Contains(joined, "unexpected 4xx"))
	is.True(strings.Contains(joined, "still listed"))

	// The same report as text.
	var text bytes.Buffer
	is.NoErr(rep.write(&text, false))
	out := text.String()
	for _, want := range []string{"fake stats failure", "result: PROBLEMS", "leaks: API 1", "unexpected 4xx: 404 x", "5xx: " + fmt.Sprint(rep.Errors.Server5xx)} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	for _, name := range kindNames {
		is.True(strings.Contains(out, "\n"+strings.Repeat(" ", 16-len(name))+name+" ")) // a row per operation
	}
}

// TestPreflight checks the refusals before any load: a wrong key, a
// missing image (never pulled).
func TestPreflight(t *testing.T) {
	f := &fakeAPI{key: "right", byID: map[string]string{}}
	srv := httptest.NewServer(f.handler())
	defer srv.Close()
	is := is.New(t)
	var stdout bytes.Buffer
	err := run(t.Context(), []string{"-url", srv.URL, "-key", "wrong", "-docker=false", "-duration", "1s"}, noEnv, &stdout, io.Discard)
	is.True(err != nil && strings.Contains(err.Error(), "-key")) // the key is named
	is.Equal(stdout.Len(), 0)                                    // no report: the run never began
	is.Equal(len(f.byID), 0)                                     // nothing created

	noImage := http.NewServeMux()
	noImage.Handle("GET /v1/images/{ref...}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		io.WriteString(w, `{"code":"NOT_FOUND","message":"no such image"}`)
	}))
	noImage.Handle("/", f.handler())
	srv2 := httptest.NewServer(noImage)
	defer srv2.Close()
	err = run(t.Context(), []string{"-url", srv2.URL, "-key", "right", "-docker=false", "-duration", "1s"}, noEnv, &stdout, io.Discard)
	is.True(err != nil && strings.Contains(err.Error(), "buildimages")) // says how to get the image
	is.Equal(len(f.byID), 0)
}
