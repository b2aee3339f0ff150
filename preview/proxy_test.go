package preview_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/matryer/is"
	"go.uber.org/goleak"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/internal/testenv"
	"github.com/opensbx/opensbx/preview"
)

// testRunLabel marks every container this test binary creates, so TestMain
// can remove whatever a failed test left behind.
const testRunLabel = "opensbx-test.run"

// testRun is this test binary's run id (set once, read-only after).
var testRun = randomHex(6)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestMain(m *testing.M) {
	code := m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if cli, err := testenv.Connect(ctx); err == nil {
		if err := removeLabelled(ctx, cli, testRunLabel+"="+testRun); err != nil {
			fmt.Fprintln(os.Stderr, "sweep test containers:", err)
			code = 1
		}
		cli.Close()
	}
	os.Exit(code)
}

func removeLabelled(ctx context.Context, cli *client.Client, label string) error {
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// newManager returns a Manager in a fresh namespace on the test engine, with
// the test images built; the namespace's containers are removed and the
// Manager closed when the test ends.
func newManager(t *testing.T) (*opensbx.Manager, *client.Client) {
	t.Helper()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	ns := "p" + testRun + "-" + randomHex(3)
	m, err := opensbx.New(context.Background(),
		opensbx.WithDockerClient(cli),
		opensbx.WithNamespace(ns),
		opensbx.WithLabels(map[string]string{testRunLabel: testRun}),
		opensbx.WithStopTimeout(2*time.Second))
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	t.Cleanup(func() {
		m.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := removeLabelled(ctx, cli, "org.opensbx.namespace="+ns); err != nil {
			t.Errorf("cleanup namespace %s: %v", ns, err)
		}
	})
	return m, cli
}

// upstreamBinary is testdata/upstream built static for the engine's
// platform, once per test binary.
var upstreamBinary = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "opensbx-upstream-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "upstream")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/upstream")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build upstream: %v\n%s", err, b)
	}
	return os.ReadFile(out)
})

// syncBuffer is a bytes.Buffer safe for concurrent writers.
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

// env is a Proxy served over real HTTP on loopback, with a client that
// does not follow redirects.
type env struct {
	m      *opensbx.Manager
	p      *preview.Proxy
	srv    *httptest.Server
	client *http.Client
	log    *syncBuffer
}

const baseURL = "http://localhost:3000"

func newEnv(t *testing.T, m *opensbx.Manager, opts ...preview.Option) *env {
	t.Helper()
	e := &env{m: m, log: &syncBuffer{}}
	all := append([]preview.Option{
		preview.WithBaseURL(baseURL),
		preview.WithLogger(slog.New(slog.NewJSONHandler(e.log, nil))),
		preview.WithResponseTimeout(20 * time.Second), // a stuck request fails the test sooner
	}, opts...)
	p, err := preview.New(m, all...)
	if err != nil {
		t.Fatalf("preview.New: %v", err)
	}
	e.p = p
	e.srv = httptest.NewServer(p)
	e.client = &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       time.Minute, // a safety net against a hang, not an assertion
	}
	t.Cleanup(func() {
		e.srv.Close()
		p.Close()
		e.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("proxy log:\n%s", e.log.String())
		}
	})
	return e
}

// response is a finished response with its body read.
type response struct {
	status int
	header http.Header
	body   string
	res    *http.Response
}

// get sends GET path to the proxy with the given Host and headers
// ("Key: value").
func (e *env) get(t *testing.T, host, path string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest("GET", e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s%s: read body: %v", host, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b), res: res}
}

// waitReady polls host until the sandbox answers there (not the proxy's
// 502 of a port nobody listens on yet).
func (e *env) waitReady(t *testing.T, host, path string, headers ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := e.get(t, host, path, headers...)
		if r.header.Get("X-Opensbx-Preview") != "not-listening" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%s: nothing listening after 30s: %d %s", host, path, r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const (
	mainPage   = "main port\n"
	secondPage = "second port\n"
	// streamCGI prints a line, then waits for /tmp/go-<query> (which the
	// test writes only after it has read that line), then prints another.
	streamCGI = "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho first\nwhile [ ! -e \"/tmp/go-$QUERY_STRING\" ]; do sleep 0.05; done\necho second\n"
)

// Ports of the web sandbox: busybox httpd on the first two, the upstream
// program on the third, nothing on the fourth.
var webPorts = []string{"8080", "9090", "7070", "7071"}

// startWeb creates a sandbox with the servers of webPorts running.
func startWeb(t *testing.T, m *opensbx.Manager, private bool) *opensbx.Sandbox {
	t.Helper()
	ctx := context.Background()
	bin, err := upstreamBinary()
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Create(ctx, opensbx.CreateOptions{
		Image: testenv.BusyboxImage, Name: "web-" + randomHex(3), Ports: webPorts, TTL: 10 * time.Minute, Private: private,
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	sb := res.Sandbox
	t.Cleanup(func() {
		if err := m.Delete(context.Background(), sb.ID); err != nil && !errors.Is(err, opensbx.ErrNotFound) && !errors.Is(err, opensbx.ErrClosed) {
			t.Errorf("delete sandbox: %v", err)
		}
	})
	for path, f := range map[string]struct {
		data []byte
		mode os.FileMode
	}{
		"/www/index.html":     {[]byte(mainPage), 0o644},
		"/www/cgi-bin/stream": {[]byte(streamCGI), 0o755},
		"/www2/index.html":    {[]byte(secondPage), 0o644},
		"/upstream":           {bin, 0o755},
	} {
		if err := m.WriteFile(ctx, sb.ID, path, f.data, f.mode); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
	startServers(t, m, sb.ID)
	return sb
}

// startServers runs the servers of webPorts (again, after a restart).
func startServers(t *testing.T, m *opensbx.Manager, id string) {
	t.Helper()
	for _, c := range []opensbx.ExecOptions{
		{Command: "httpd", Args: []string{"-f", "-p", "8080", "-h", "/www"}},
		{Command: "httpd", Args: []string{"-f", "-p", "9090", "-h", "/www2"}},
		{Command: "/upstream", Args: []string{":7070"}},
	} {
		if _, err := m.Exec(context.Background(), id, c); err != nil {
			t.Fatalf("exec %s: %v", c.Command, err)
		}
	}
}

// upstreamView is what the upstream program saw of a request.
type upstreamView struct {
	Host    string
	Headers http.Header
	Query   string
}

func decodeView(t *testing.T, r response) upstreamView {
	t.Helper()
	var v upstreamView
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &v) != nil {
		t.Fatalf("upstream answer: %d %s", r.status, r.body)
	}
	return v
}

// websocket opens a WebSocket to path on host through the proxy at addr
// and checks the handshake; the connection echoes.
func websocket(t *testing.T, addr, host, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(time.Minute)) // a safety net against a hang
	k := make([]byte, 16)
	rand.Read(k)
	key := base64.StdEncoding.EncodeToString(k)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n", path, host, key)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("upgrade response: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("upgrade: status %d: %s", res.StatusCode, b)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if got, want := res.Header.Get("Sec-WebSocket-Accept"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if !strings.EqualFold(res.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("Upgrade header %q", res.Header.Get("Upgrade"))
	}
	return conn, br
}

func echo(t *testing.T, conn net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatalf("write to tunnel: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("read from tunnel: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

// TestProxy drives one public sandbox through every route and answer of
// the proxy and through its lifecycle. The route cache lives for an hour
// here, so whatever the proxy learns after a change it learned from the
// Manager's events.
func TestProxy(t *testing.T) {
	m, _ := newManager(t)
	e := newEnv(t, m, preview.WithCacheTTL(time.Hour))
	sb := startWeb(t, m, false)
	host := sb.Name + ".localhost:3000"
	e.waitReady(t, host, "/")
	e.waitReady(t, "9090-"+host, "/")
	e.waitReady(t, "7070-"+host, "/headers")

	t.Run("main port", func(t *testing.T) {
		is := is.New(t)
		r := e.get(t, host, "/")
		is.Equal(r.status, 200)
		is.Equal(r.body, mainPage)
		r = e.get(t, strings.ToUpper(sb.Name)+".LocalHost", "/") // any case, no port
		is.Equal(r.body, mainPage)
	})

	t.Run("second port by prefix", func(t *testing.T) {
		is := is.New(t)
		r := e.get(t, "9090-"+host, "/")
		is.Equal(r.status, 200)
		is.Equal(r.body, secondPage)
		r = e.get(t, "8080-"+host, "/") // the main port by number
		is.Equal(r.body, mainPage)
	})

	t.Run("URLs", func(t *testing.T) {
		is := is.New(t)
		is.Equal(e.p.URL(sb), "http://"+sb.Name+".localhost:3000")
		is.Equal(e.p.PortURL(sb, "9090"), "http://9090-"+sb.Name+".localhost:3000")
		is.Equal(e.p.PortURL(sb, "1234"), "") // not published
		u, exp := e.p.SignedURL(sb)
		is.Equal(u, e.p.URL(sb)) // public: no link
		is.True(exp.IsZero())
	})

	t.Run("headers", func(t *testing.T) {
		is := is.New(t)
		v := decodeView(t, e.get(t, "7070-"+host, "/headers?a=1&b=2",
			"X-Forwarded-For: 203.0.113.9", // a client's claim, not kept
			"Forwarded: for=203.0.113.9",
			"X-Real-Ip: 203.0.113.9",
			"Cookie: a=1; "+preview.CookieName+"=x; b=2",
			"Connection: X-Hop",
			"X-Hop: dropped",
			"Authorization: Basic dXNlcjpwdw==", // the app's own auth passes
		))
		is.Equal(v.Host, "7070-"+host) // the client's Host
		is.Equal(v.Headers.Get("X-Forwarded-For"), "127.0.0.1")
		is.Equal(v.Headers.Get("X-Forwarded-Host"), "7070-"+host)
		is.Equal(v.Headers.Get("X-Forwarded-Proto"), "http")
		is.Equal(v.Headers.Get("Forwarded"), "")
		is.Equal(v.Headers.Get("X-Real-Ip"), "")
		is.Equal(v.Headers.Values("Cookie"), []string{"a=1; b=2"}) // the proxy's cookie taken off
		is.Equal(v.Headers.Get("X-Hop"), "")                       // hop-by-hop dropped
		is.Equal(v.Headers.Get("Authorization"), "Basic dXNlcjpwdw==")
		is.Equal(v.Query, "a=1&b=2")
	})

	t.Run("streamed response", func(t *testing.T) {
		is := is.New(t)
		req, _ := http.NewRequest("GET", e.srv.URL+"/cgi-bin/stream?a", nil)
		req.Host = host
		res, err := e.client.Do(req)
		is.NoErr(err)
		defer res.Body.Close()
		is.Equal(res.StatusCode, 200)
		br := bufio.NewReader(res.Body)
		first, err := br.ReadString('\n')
		is.NoErr(err)
		is.Equal(first, "first\n") // arrived while the script still waits for /tmp/go
		is.NoErr(m.WriteFile(context.Background(), sb.ID, "/tmp/go-a", nil, 0))
		rest, err := io.ReadAll(br)
		is.NoErr(err)
		is.Equal(string(rest), "second\n")
	})

	t.Run("client leaves mid-stream", func(t *testing.T) {
		is := is.New(t)
		e2 := newEnv(t, m)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", e2.srv.URL+"/cgi-bin/stream?b", nil)
		req.Host = host
		res, err := e2.client.Do(req)
		is.NoErr(err)
		first, err := bufio.NewReader(res.Body).ReadString('\n')
		is.NoErr(err)
		is.Equal(first, "first\n")
		cancel() // leave while the sandbox still streams
		res.Body.Close()
		closed := make(chan struct{})
		go func() {
			e2.srv.Close()
			e2.p.Close() // waits for the aborted request
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(time.Minute): // a hang guard, not a timing assertion
			t.Fatal("Close still waiting a minute after the client left")
		}
		is.True(strings.Contains(e2.log.String(), `"status":499`))              // logged as cut off
		is.NoErr(m.WriteFile(context.Background(), sb.ID, "/tmp/go-b", nil, 0)) // let the script end
	})

	t.Run("websocket", func(t *testing.T) {
		conn, br := websocket(t, e.srv.Listener.Addr().String(), "7070-"+host, "/echo")
		echo(t, conn, br, "hello through the tunnel")
		echo(t, conn, br, strings.Repeat("x", 100000))
	})

	t.Run("close ends websockets", func(t *testing.T) {
		is := is.New(t)
		running := goleak.IgnoreCurrent()
		e2 := newEnv(t, m)
		conn, br := websocket(t, e2.srv.Listener.Addr().String(), "7070-"+host, "/echo")
		echo(t, conn, br, "before close")
		e2.srv.Close() // as http.Server.Shutdown: leaves hijacked connections open
		is.NoErr(e2.p.Close())
		_, err := br.ReadByte()
		is.True(err != nil) // the tunnel ended
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Host = host
		e2.p.ServeHTTP(rec, req)
		is.Equal(rec.Code, 503) // closed
		is.Equal(rec.Header().Get("X-Opensbx-Preview"), "shutting-down")
		e2.client.CloseIdleConnections()
		goleak.VerifyNone(t, running) // nothing of e2's proxy or tunnel is left
	})

	t.Run("nothing listening", func(t *testing.T) {
		is := is.New(t)
		r := e.get(t, "7071-"+host, "/")
		is.Equal(r.status, 502)
		is.Equal(r.header.Get("X-Opensbx-Preview"), "not-listening")
		is.True(strings.Contains(r.body, "7071/tcp")) // says which port
		is.Equal(r.header.Get("Content-Type"), "text/plain; charset=utf-8")
	})

	t.Run("not found", func(t *testing.T) {
		for _, c := range []struct{ host, code string }{
			{"1234-" + host, "no-port"},
			{"no-such-" + randomHex(4) + ".localhost", "unknown-sandbox"},
			{"localhost:3000", "not-preview-host"},
			{sb.Name + ".example.com", "not-preview-host"},
			{"127.0.0.1", "not-preview-host"},
			{"0-" + host, "bad-port"},
			{"-x.localhost", "bad-name"},
		} {
			r := e.get(t, c.host, "/")
			if r.status != 404 || r.header.Get("X-Opensbx-Preview") != c.code || r.body == "" {
				t.Errorf("%s: %d %s %q, want 404 %s", c.host, r.status, r.header.Get("X-Opensbx-Preview"), r.body, c.code)
			}
		}
	})

	t.Run("paused", func(t *testing.T) {
		is := is.New(t)
		_, err := m.Pause(context.Background(), sb.ID)
		is.NoErr(err)
		r := e.get(t, host, "/")
		is.Equal(r.status, 503)
		is.Equal(r.header.Get("X-Opensbx-Preview"), "paused")
		is.True(strings.Contains(r.body, "paused"))
		_, err = m.Resume(context.Background(), sb.ID)
		is.NoErr(err)
		is.Equal(e.get(t, host, "/").body, mainPage) // back at once
	})

	t.Run("restarted", func(t *testing.T) {
		is := is.New(t)
		retries := preview.Retries(e.p)
		sb2, err := m.Restart(context.Background(), sb.ID)
		is.NoErr(err)
		t.Logf("host port of 8080/tcp: %s before the restart, %s after", sb.PortMap["8080/tcp"], sb2.PortMap["8080/tcp"])
		startServers(t, m, sb.ID)
		e.waitReady(t, host, "/")
		e.waitReady(t, "9090-"+host, "/")
		is.Equal(e.get(t, host, "/").body, mainPage)
		is.Equal(e.get(t, "9090-"+host, "/").body, secondPage)
		is.Equal(preview.Retries(e.p), retries) // the event dropped the old route: it was never dialled
	})

	t.Run("stopped", func(t *testing.T) {
		is := is.New(t)
		_, err := m.Stop(context.Background(), sb.ID)
		is.NoErr(err)
		r := e.get(t, host, "/")
		is.Equal(r.status, 503)
		is.Equal(r.header.Get("X-Opensbx-Preview"), "stopped")
		is.True(strings.Contains(r.body, "stopped"))
	})

	t.Run("deleted", func(t *testing.T) {
		is := is.New(t)
		is.NoErr(m.Delete(context.Background(), sb.ID))
		r := e.get(t, host, "/")
		is.Equal(r.status, 404)
		is.Equal(r.header.Get("X-Opensbx-Preview"), "unknown-sandbox")
	})

	t.Run("one log line per request", func(t *testing.T) {
		is := is.New(t)
		n := strings.Count(e.log.String(), `"msg":"preview"`)
		e.get(t, host, "/")
		is.Equal(strings.Count(e.log.String(), `"msg":"preview"`), n+1)
		is.True(!strings.Contains(e.log.String(), "a=1&b=2")) // queries are not logged
		is.True(!strings.Contains(e.log.String(), "dXNlcjpwdw"))
	})
}

// TestStaleRoute restarts a sandbox while the proxy hears no events (the
// Manager reports the engine's own, but one may come late), so the proxy's
// cached route still names the old host port: the failed connect must look
// the sandbox up again and reach it on its new port.
func TestStaleRoute(t *testing.T) {
	is := is.New(t)
	m, cli := newManager(t)
	e := newEnv(t, m, preview.WithCacheTTL(time.Hour))
	sb := startWeb(t, m, false)
	host := sb.Name + ".localhost"
	e.waitReady(t, host, "/")
	is.Equal(e.get(t, host, "/").body, mainPage) // the route is cached now
	preview.Deaf(e.p)

	timeout := 0
	is.NoErr(cli.ContainerRestart(context.Background(), sb.ID, container.StopOptions{Timeout: &timeout}))
	startServers(t, m, sb.ID)
	fresh, err := m.Get(context.Background(), sb.ID)
	is.NoErr(err)
	oldPort, newPort := sb.PortMap["8080/tcp"], fresh.PortMap["8080/tcp"]
	direct := "http://" + net.JoinHostPort(fresh.HostIP, newPort) + "/"
	deadline := time.Now().Add(30 * time.Second)
	for { // wait on the host port itself, not through the proxy
		res, err := http.Get(direct)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("httpd not up on %s after 30s: %v", direct, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	retries := preview.Retries(e.p)
	is.Equal(e.get(t, host, "/").body, mainPage) // reached on the new port
	if oldPort != newPort {
		is.Equal(preview.Retries(e.p), retries+1) // through one lookup by id after the failed connect
	} else {
		t.Logf("the engine gave the same host port %s again; nothing was stale", newPort)
	}
}

// TestPrivate checks that a private sandbox is refused without its token
// and served with it: as a Bearer header, and through a signed link that
// becomes a cookie.
func TestPrivate(t *testing.T) {
	m, _ := newManager(t)
	secret := []byte(randomHex(32))
	e := newEnv(t, m, preview.WithSecret(secret))
	sb := startWeb(t, m, true)
	is.New(t).True(sb.Private)
	host := sb.Name + ".localhost:3000"
	token := e.p.Token(sb.ID)
	auth := "Authorization: Bearer " + token
	e.waitReady(t, host, "/", auth)
	e.waitReady(t, "7070-"+host, "/headers", auth)

	t.Run("refused without a token", func(t *testing.T) {
		is := is.New(t)
		for _, h := range []string{"", "Authorization: Bearer sbxp_wrong", "Authorization: Basic " + token, "Cookie: " + preview.CookieName + "=" + token} {
			var r response
			if h == "" {
				r = e.get(t, host, "/")
			} else {
				r = e.get(t, host, "/", h)
			}
			is.Equal(r.status, 401)                                     // refused
			is.Equal(r.header.Get("X-Opensbx-Preview"), "unauthorized") // by the proxy
			is.True(strings.Contains(r.body, "private"))
			is.True(r.header.Get("WWW-Authenticate") != "")
			is.True(!strings.Contains(r.body, mainPage))
		}
	})

	t.Run("bearer token", func(t *testing.T) {
		is := is.New(t)
		r := e.get(t, host, "/", auth)
		is.Equal(r.status, 200)
		is.Equal(r.body, mainPage)
		r = e.get(t, host, "/", "Authorization: bearer "+token) // the scheme in any case
		is.Equal(r.body, mainPage)
		v := decodeView(t, e.get(t, "7070-"+host, "/headers", auth, "Cookie: theme=dark"))
		is.Equal(v.Headers.Get("Authorization"), "")                 // the token never reaches the app
		is.Equal(v.Headers.Values("Cookie"), []string{"theme=dark"}) // other cookies do
	})

	t.Run("signed link", func(t *testing.T) {
		is := is.New(t)
		link, exp := e.p.SignedURL(sb)
		is.True(exp.After(time.Now()))
		u, err := url.Parse(link)
		is.NoErr(err)
		is.Equal(u.Scheme+"://"+u.Host, e.p.URL(sb)) // a link to the sandbox's URL
		is.Equal(u.Host, host)

		r := e.get(t, u.Host, u.RequestURI()+"&page=2")
		is.Equal(r.status, http.StatusFound)
		is.Equal(r.header.Get("Location"), "/?page=2") // the same address without the link
		cookies := r.res.Cookies()
		is.Equal(len(cookies), 1)
		c := cookies[0]
		is.Equal(c.Name, preview.CookieName)
		is.True(c.HttpOnly)
		is.Equal(c.SameSite, http.SameSiteLaxMode)
		is.Equal(c.Domain, "") // host-only
		is.Equal(c.Path, "/")
		is.True(!c.Secure) // plain http here
		is.True(c.MaxAge > 0)
		is.True(c.Value != token && !strings.Contains(link, c.Value)) // neither the token nor the link

		r = e.get(t, host, "/", "Cookie: "+c.Name+"="+c.Value)
		is.Equal(r.status, 200)
		is.Equal(r.body, mainPage) // served with the cookie

		// The same link opens the sandbox's other port hosts; there too
		// the cookie is the proxy's alone.
		r = e.get(t, "7070-"+host, "/headers?"+u.RawQuery)
		is.Equal(r.status, http.StatusFound)
		is.Equal(r.header.Get("Location"), "/headers")
		c2 := r.res.Cookies()[0]
		v := decodeView(t, e.get(t, "7070-"+host, "/headers", "Cookie: a=1; "+c2.Name+"="+c2.Value))
		is.Equal(v.Headers.Values("Cookie"), []string{"a=1"})

		// The link parameter of a path starting with "//" cannot redirect
		// to another host.
		r = e.get(t, host, "//evil.example/x?"+u.RawQuery)
		is.Equal(r.status, http.StatusFound)
		is.Equal(r.header.Get("Location"), "/evil.example/x")
	})

	t.Run("expired or tampered link", func(t *testing.T) {
		is := is.New(t)
		past := preview.LinkAt(e.p, sb.ID, time.Now().Add(-time.Minute))
		r := e.get(t, host, "/?"+preview.LinkParam+"="+past)
		is.Equal(r.status, 401)
		is.Equal(r.header.Get("X-Opensbx-Preview"), "link-expired")
		is.Equal(len(r.res.Cookies()), 0) // no cookie

		good := preview.LinkAt(e.p, sb.ID, time.Now().Add(time.Hour))
		for _, bad := range []string{
			flipLast(good),                      // the signature changed
			strings.Replace(good, ".", "0.", 1), // the expiry moved
			preview.LinkAt(e.p, "another-sandbox-id", time.Now().Add(time.Hour)), // another sandbox's
			token,
			"",
		} {
			r := e.get(t, host, "/?"+preview.LinkParam+"="+url.QueryEscape(bad))
			is.Equal(r.status, 401)
			is.Equal(r.header.Get("X-Opensbx-Preview"), "link-invalid")
			is.Equal(len(r.res.Cookies()), 0)
		}
		// A link is not a cookie.
		r = e.get(t, host, "/", "Cookie: "+preview.CookieName+"="+good)
		is.Equal(r.status, 401)
	})

	t.Run("token survives a restart", func(t *testing.T) {
		is := is.New(t)
		e2 := newEnv(t, m, preview.WithSecret(secret)) // a new proxy, as after a restart
		is.Equal(e2.p.Token(sb.ID), token)
		is.Equal(e2.get(t, host, "/", auth).body, mainPage)
		e3 := newEnv(t, m) // another secret: the token is worthless there
		is.True(e3.p.Token(sb.ID) != token)
		is.Equal(e3.get(t, host, "/", auth).status, 401)
	})

	t.Run("no secrets in the log", func(t *testing.T) {
		is := is.New(t)
		log := e.log.String()
		is.True(strings.Contains(log, `"msg":"preview"`))
		is.True(!strings.Contains(log, token))
		is.True(!strings.Contains(log, preview.LinkParam))
		is.True(!strings.Contains(log, "theme=dark"))
	})
}

// flipLast changes the last character of s.
func flipLast(s string) string {
	last := byte('A')
	if s[len(s)-1] == 'A' {
		last = 'B'
	}
	return s[:len(s)-1] + string(last)
}
