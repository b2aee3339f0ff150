package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// inProcess is run() serving in this test process.
type inProcess struct {
	api   *proc  // API client (proc's request helpers; no process)
	proxy string // the proxy's address
	log   *syncBuffer
	stop  func() error
}

// startRun runs the server with env until the test ends (or stop), and
// waits for its "listening" line.
func startRun(t *testing.T, env map[string]string) *inProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &inProcess{log: &syncBuffer{}}
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, envOf(env), io.Discard, s.log) }()
	var once sync.Once
	var err error
	s.stop = func() error {
		once.Do(func() { cancel(); err = <-errc })
		return err
	}
	t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, line := range strings.Split(s.log.String(), "\n") {
			var rec struct{ Msg, Addr, Proxy_Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				s.api = &proc{t: t, url: "http://" + rec.Addr, key: env["API_KEY"]}
				s.proxy = rec.Proxy_Addr
				return s
			}
		}
		select {
		case err := <-errc:
			t.Fatalf("run ended before listening: %v\n%s", err, s.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("not listening after 60s:\n%s", s.log.String())
		}
	}
}

var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       time.Minute, // a safety net, not an assertion
}

// preview sends GET to the proxy for the host and path of rawURL, with
// headers ("Key: value").
func (s *inProcess) preview(t *testing.T, rawURL string, headers ...string) (*http.Response, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+s.proxy+u.RequestURI(), nil)
	req.Host = u.Host // by Host header: no DNS
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	res, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res, string(b)
}

// serveHTTPD writes a page into the sandbox and starts busybox httpd on
// 8080 through the API.
func serveHTTPD(s *inProcess, id, page string) {
	s.api.call("PUT", "/v1/sandboxes/"+id+"/files?path=/www/index.html", map[string]any{"content": page}, http.StatusOK)
	s.api.call("POST", "/v1/sandboxes/"+id+"/cmd", map[string]any{"command": "httpd", "args": []string{"-f", "-p", "8080", "-h", "/www"}}, http.StatusOK)
}

// waitServed polls rawURL through the proxy until a server answers there.
func (s *inProcess) waitServed(t *testing.T, rawURL string, headers ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, body := s.preview(t, rawURL, headers...)
		if res.Header.Get("X-Opensbx-Preview") != "not-listening" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: nothing listening after 30s: %s", rawURL, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPreviewServer runs the server's run function with the preview proxy
// and drives it over real HTTP: URLs in create, list and inspect, public
// and private previews, the secret kept across a restart, the proxy off.
func TestPreviewServer(t *testing.T) {
	is := is.New(t)
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	ns := "e2e-" + randomHex(4)
	t.Cleanup(func() { removeNamespace(t, cli, ns) })
	stateDir := t.TempDir()
	env := map[string]string{
		"ADDR": "127.0.0.1:0", "PROXY_ADDR": "127.0.0.1:0", "STATE_DIR": stateDir, "NAMESPACE": ns,
		"API_KEY": "key-" + randomHex(8), "DOCKER_HOST": os.Getenv("DOCKER_HOST"), "SHUTDOWN_TIMEOUT": "5s",
	}
	s := startRun(t, env)
	is.True(s.proxy != "") // the proxy is on
	_, proxyPort, _ := net.SplitHostPort(s.proxy)

	// A public sandbox: its url is http://<name>.localhost:<proxy port>.
	pubName := "pub-" + randomHex(3)
	pub := s.api.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage, "name": pubName, "ports": []string{"8080"}, "timeout": 600}, http.StatusCreated)
	is.Equal(pub["url"], "http://"+pubName+".localhost:"+proxyPort)
	is.Equal(pub["preview_token"], nil) // public: no token
	is.Equal(pub["private"], nil)
	serveHTTPD(s, pub["id"].(string), "public page\n")
	s.waitServed(t, pub["url"].(string))
	res, body := s.preview(t, pub["url"].(string))
	is.Equal(res.StatusCode, 200)
	is.Equal(body, "public page\n")
	res, _ = s.preview(t, "http://nope-"+randomHex(3)+".localhost:"+proxyPort)
	is.Equal(res.StatusCode, 404) // unknown sandbox

	// A private one: the create response carries the token and a signed link.
	privName := "priv-" + randomHex(3)
	create := map[string]any{"image": testenv.BusyboxImage, "name": privName, "ports": []string{"8080"}, "timeout": 600, "private": true}
	priv := s.api.call("POST", "/v1/sandboxes", create, http.StatusCreated)
	privURL := priv["url"].(string)
	token, _ := priv["preview_token"].(string)
	signed, _ := priv["signed_url"].(string)
	is.Equal(priv["private"], true)
	is.True(strings.HasPrefix(token, "sbxp_"))
	is.True(strings.HasPrefix(signed, privURL+"/?opensbx_preview="))
	expires, err := time.Parse(time.RFC3339, priv["signed_url_expires_at"].(string))
	is.NoErr(err)
	is.True(expires.After(time.Now().Add(50 * time.Minute))) // the default link TTL is an hour
	serveHTTPD(s, priv["id"].(string), "private page\n")
	auth := "Authorization: Bearer " + token
	s.waitServed(t, privURL, auth)

	res, _ = s.preview(t, privURL)
	is.Equal(res.StatusCode, 401) // no token
	res, body = s.preview(t, privURL, auth)
	is.Equal(res.StatusCode, 200)
	is.Equal(body, "private page\n") // with the token
	res, _ = s.preview(t, signed)
	is.Equal(res.StatusCode, http.StatusFound) // the link, exchanged for a cookie
	cookies := res.Cookies()
	is.Equal(len(cookies), 1)
	res, body = s.preview(t, privURL+res.Header.Get("Location"), "Cookie: "+cookies[0].Name+"="+cookies[0].Value)
	is.Equal(res.StatusCode, 200)
	is.Equal(body, "private page\n") // with the cookie

	// List and inspect carry url and private, never the token.
	list := s.api.call("GET", "/v1/sandboxes", nil, http.StatusOK)["sandboxes"].([]any)
	is.Equal(len(list), 2)
	for _, v := range list {
		sb := v.(map[string]any)
		is.True(strings.HasPrefix(sb["url"].(string), "http://"+sb["name"].(string)+".localhost:"))
		is.Equal(sb["preview_token"], nil)
	}
	got := s.api.call("GET", "/v1/sandboxes/"+privName, nil, http.StatusOK)
	is.Equal(got["url"], privURL)
	is.Equal(got["private"], true)
	is.Equal(got["preview_token"], nil)

	// The secret lives in the state directory, readable by the owner only.
	st, err := os.Stat(filepath.Join(stateDir, "preview-secret"))
	is.NoErr(err)
	is.Equal(st.Mode().Perm(), os.FileMode(0o600))
	is.True(!strings.Contains(s.log.String(), token)) // the token never reaches the logs
	is.True(strings.Contains(s.log.String(), `"msg":"preview"`))
	is.NoErr(s.stop()) // a clean shutdown of both servers

	// Restarted on the same state directory: the same token opens the
	// same sandbox (a retried create answers it again).
	s = startRun(t, env)
	again := s.api.call("POST", "/v1/sandboxes", create, http.StatusOK)
	is.Equal(again["id"], priv["id"])
	is.Equal(again["preview_token"], token)
	_, proxyPort2, _ := net.SplitHostPort(s.proxy)
	privURL2 := "http://" + privName + ".localhost:" + proxyPort2
	is.Equal(again["url"], privURL2)
	res, body = s.preview(t, privURL2, auth)
	is.Equal(res.StatusCode, 200)
	is.Equal(body, "private page\n")
	is.NoErr(s.stop())

	// PROXY_ADDR empty: no proxy, no url.
	off := map[string]string{}
	for k, v := range env {
		off[k] = v
	}
	off["PROXY_ADDR"] = ""
	s = startRun(t, off)
	is.Equal(s.proxy, "")
	got = s.api.call("GET", "/v1/sandboxes/"+pubName, nil, http.StatusOK)
	is.Equal(got["url"], nil)
	is.NoErr(s.stop())

	// A base domain that is no domain is a usage error.
	bad := map[string]string{}
	for k, v := range env {
		bad[k] = v
	}
	bad["BASE_DOMAIN"] = "not a domain"
	err = run(context.Background(), nil, envOf(bad), io.Discard, io.Discard)
	is.Equal(exitCode(err), 2)
}
