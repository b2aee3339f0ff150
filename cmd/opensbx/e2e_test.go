package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	cerrdefs "github.com/containerd/errdefs"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// proc is a running opensbx binary.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	key  string
	mu   sync.Mutex
	logs bytes.Buffer  // stderr so far
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, after done
}

// startServer starts bin with env and waits for its "listening" log line.
func startServer(t *testing.T, bin string, env []string, key string) *proc {
	t.Helper()
	p := &proc{t: t, key: key, done: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = env
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	addr := make(chan string, 1)
	go func() { // owned: ends when the process closes stderr, before done
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			p.mu.Lock()
			p.logs.Write(line)
			p.logs.WriteByte('\n')
			p.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" {
				select {
				case addr <- rec.Addr:
				default:
				}
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("server log:\n%s", p.log())
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.done:
		t.Fatalf("server exited before listening: %v\n%s", p.err, p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("server not listening after 60s:\n%s", p.log())
	}
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.t.Fatalf("server still running 60s after SIGTERM")
	}
	if p.err != nil {
		p.t.Fatalf("server exit after SIGTERM: %v\n%s", p.err, p.log())
	}
}

func (p *proc) request(method, path string, body any) *http.Request {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			p.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.url+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.key)
	return req
}

// call does a request and decodes a JSON object answer (nil for no body).
func (p *proc) call(method, path string, body any, wantStatus int) map[string]any {
	p.t.Helper()
	res, err := http.DefaultClient.Do(p.request(method, path, body))
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != wantStatus {
		p.t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, wantStatus, b)
	}
	if len(b) == 0 {
		return nil
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		p.t.Fatalf("%s %s: %v: %s", method, path, err, b)
	}
	return v
}

// TestEndToEnd builds the server, drives the whole flow over real HTTP,
// restarts it on the same state directory and finds everything again.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	is := is.New(t)
	cli := testenv.Engine(t)
	testenv.Images(t, cli)

	dir := t.TempDir()
	bin := filepath.Join(dir, "opensbx")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns := "e2e-" + randomHex(4)
	t.Cleanup(func() { removeNamespace(t, cli, ns) })
	key := "key-" + randomHex(8)
	env := append(os.Environ(),
		"ADDR=127.0.0.1:0", "PROXY_ADDR=127.0.0.1:0", "STATE_DIR="+filepath.Join(dir, "state"), "NAMESPACE="+ns,
		"API_KEY="+key, "LOG_FORMAT=json", "DEFAULT_TIMEOUT=10m", "SHUTDOWN_TIMEOUT=5s")
	srv := startServer(t, bin, env, key)

	// Auth is on; health stays open.
	res, err := http.Get(srv.url + "/v1/sandboxes")
	is.NoErr(err)
	res.Body.Close()
	is.Equal(res.StatusCode, http.StatusUnauthorized) // no key
	res, err = http.Get(srv.url + "/v1/health")
	is.NoErr(err)
	res.Body.Close()
	is.Equal(res.StatusCode, http.StatusOK)    // health without a key
	is.True(!strings.Contains(srv.log(), key)) // the key never reaches the logs

	// Create.
	sb := srv.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage, "timeout": 900, "ports": []string{"8080"}}, http.StatusCreated)
	id := sb["id"].(string)
	got := srv.call("GET", "/v1/sandboxes/"+id, nil, http.StatusOK)
	expiresAt := got["expires_at"].(string)

	// Exec, and follow its output live: the first line arrives while the
	// command still runs (it waits for a file we write only afterwards).
	cmd := srv.call("POST", "/v1/sandboxes/"+id+"/cmd", map[string]any{
		"command": "sh", "args": []string{"-c", "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second; echo oops >&2; exit 3"},
	}, http.StatusOK)["command"].(map[string]any)
	cmdID := cmd["id"].(string)
	is.Equal(cmd["state"], "running")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err = http.DefaultClient.Do(srv.request("GET", "/v1/sandboxes/"+id+"/cmd/"+cmdID+"/logs?stream=true", nil).WithContext(ctx))
	is.NoErr(err) // open log stream
	defer res.Body.Close()
	is.Equal(res.StatusCode, http.StatusOK)
	is.Equal(res.Header.Get("Content-Type"), "application/x-ndjson")
	lines := bufio.NewScanner(res.Body)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("log stream ended early: %v", lines.Err())
		}
		var rec map[string]any
		if err := json.Unmarshal(lines.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", lines.Bytes(), err)
		}
		return rec
	}
	first := next()
	is.Equal(first["type"], "stdout")
	is.Equal(first["data"], "first\n")
	is.True(first["cursor"] != "") // records carry a cursor
	running := srv.call("GET", "/v1/sandboxes/"+id+"/cmd/"+cmdID, nil, http.StatusOK)["command"].(map[string]any)
	is.Equal(running["state"], "running") // the first line came while the command ran

	// Write a file (which also lets the command go on) and read it back.
	w := srv.call("PUT", "/v1/sandboxes/"+id+"/files?path="+url.QueryEscape("/tmp/go"), map[string]any{"content": "go!"}, http.StatusOK)
	is.Equal(w["status"], "written")
	f := srv.call("GET", "/v1/sandboxes/"+id+"/files?path=/tmp/go", nil, http.StatusOK)
	is.Equal(f["content"], "go!")

	var stdout, stderr strings.Builder
	var exit map[string]any
	for exit == nil {
		rec := next()
		switch rec["type"] {
		case "stdout":
			stdout.WriteString(rec["data"].(string))
		case "stderr":
			stderr.WriteString(rec["data"].(string))
		case "exit":
			exit = rec
		}
	}
	is.Equal(stdout.String(), "second\n")
	is.Equal(stderr.String(), "oops\n")
	is.Equal(exit["exit_code"], 3.0)
	is.True(!lines.Scan()) // the stream ends after the exit record

	// SIGTERM: a clean exit that leaves the sandbox running.
	srv.stop()
	c, err := cli.ContainerInspect(context.Background(), id)
	is.NoErr(err)                                          // sandbox still exists
	is.True(c.State.Running)                               // and still runs
	is.True(strings.Contains(srv.log(), `"msg":"stopped`)) // logged its shutdown

	// Restart on the same state directory: same sandbox, same deadline,
	// the finished command with its output.
	srv = startServer(t, bin, env, key)
	list := srv.call("GET", "/v1/sandboxes", nil, http.StatusOK)["sandboxes"].([]any)
	is.Equal(len(list), 1)
	is.Equal(list[0].(map[string]any)["id"], id)
	got = srv.call("GET", "/v1/sandboxes/"+id, nil, http.StatusOK)
	is.Equal(got["expires_at"], expiresAt) // deadline kept across the restart
	cmds := srv.call("GET", "/v1/sandboxes/"+id+"/cmd", nil, http.StatusOK)["commands"].([]any)
	is.Equal(len(cmds), 1)
	done := cmds[0].(map[string]any)
	is.Equal(done["id"], cmdID)
	is.Equal(done["state"], "finished")
	is.Equal(done["exit_code"], 3.0)
	is.True(done["finished_at"].(float64) >= done["started_at"].(float64)) // unix ms times
	logs := srv.call("GET", "/v1/sandboxes/"+id+"/cmd/"+cmdID+"/logs", nil, http.StatusOK)
	is.Equal(logs["stdout"], "first\nsecond\n") // output kept across the restart

	srv.call("DELETE", "/v1/sandboxes/"+id, nil, http.StatusNoContent)
	srv.call("GET", "/v1/sandboxes/"+id, nil, http.StatusNotFound)
	srv.stop()
}

// TestOpenWarning checks the loud warning of a server without API keys
// listening beyond loopback.
func TestOpenWarning(t *testing.T) {
	cli := testenv.Engine(t)
	ns := "e2e-" + randomHex(4)
	t.Cleanup(func() { removeNamespace(t, cli, ns) })
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, nil, envOf(map[string]string{"ADDR": "0.0.0.0:0", "PROXY_ADDR": "", "STATE_DIR": t.TempDir(), "NAMESPACE": ns,
			"DOCKER_HOST": os.Getenv("DOCKER_HOST")}), io.Discard, &stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"listening"`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(stderr.String(), "NO API KEY") {
		t.Errorf("no warning for an open API on 0.0.0.0:\n%s", stderr.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func removeNamespace(t *testing.T, cli *client.Client, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "org.opensbx.namespace="+ns))})
	if err != nil {
		t.Errorf("cleanup %s: %v", ns, err)
		return
	}
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup %s: %v", ns, err)
		}
	}
}
