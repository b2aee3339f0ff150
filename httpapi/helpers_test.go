package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/httpapi"
	"github.com/opensbx/opensbx/internal/testenv"
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

// observed collects the status of every answer a route of a newAPI server
// gave during the run; TestMain checks them against the route table.
var observed = struct {
	sync.Mutex
	m map[string]map[int]bool
}{m: map[string]map[int]bool{}}

func observe(route string, status int) {
	observed.Lock()
	defer observed.Unlock()
	if observed.m[route] == nil {
		observed.m[route] = map[int]bool{}
	}
	observed.m[route][status] = true
}

// checkObserved reports statuses the tests got from a route that the
// route table (and so openapi.json, see TestOpenAPIStatuses) does not
// list for it.
func checkObserved() error {
	observed.Lock()
	defer observed.Unlock()
	known := httpapi.RouteStatuses()
	var bad []string
	for route, codes := range observed.m {
		for code := range codes {
			if !slices.Contains(known[route], code) {
				bad = append(bad, fmt.Sprintf("%s answered %d", route, code))
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("statuses not in the route table nor in openapi.json: %s", strings.Join(bad, "; "))
	}
	return nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := checkObserved(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
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
func newManager(t testing.TB, opts ...opensbx.Option) (*opensbx.Manager, *client.Client) {
	t.Helper()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	ns := "h" + testRun + "-" + randomHex(4)
	all := append([]opensbx.Option{
		opensbx.WithDockerClient(cli),
		opensbx.WithNamespace(ns),
		opensbx.WithLabels(map[string]string{testRunLabel: testRun}),
		opensbx.WithStopTimeout(2 * time.Second),
	}, opts...)
	m, err := opensbx.New(context.Background(), all...)
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

// api is a test server for the API with a small client.
type api struct {
	t   testing.TB
	srv *httptest.Server
	key string // sent as Bearer when not empty
}

// newAPI serves New(m, opts...) over real HTTP.
func newAPI(t testing.TB, m *opensbx.Manager, opts ...httpapi.Option) *api {
	t.Helper()
	srv := httptest.NewServer(httpapi.New(m, append([]httpapi.Option{httpapi.ObserveStatuses(observe)}, opts...)...))
	t.Cleanup(srv.Close)
	return &api{t: t, srv: srv}
}

// response is a finished response with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic map (failing the test if it is not
// a JSON object).
func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body is not a JSON object: %v: %q", err, r.body)
	}
	return v
}

// code is the "code" of an error body.
func (r response) code(t testing.TB) string {
	t.Helper()
	c, _ := r.json(t)["code"].(string)
	return c
}

// newRequest builds a request; body may be nil, a string (sent as is),
// []byte or anything else (sent as JSON).
func (a *api) newRequest(method, path string, body any) *http.Request {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			a.t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		a.t.Fatalf("new request: %v", err)
	}
	if _, ok := body.([]byte); ok {
		req.Header.Set("Content-Type", "application/octet-stream")
	} else if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.key != "" {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	return req
}

// do sends req and reads the whole response.
func (a *api) do(req *http.Request) response {
	a.t.Helper()
	res, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		a.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// call sends a request and reads the whole response.
func (a *api) call(method, path string, body any) response {
	a.t.Helper()
	return a.do(a.newRequest(method, path, body))
}

// want fails the test unless r has the status (and, for errors, the code).
func want(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if code != "" {
		if got := r.code(t); got != code {
			t.Fatalf("code %q, want %q; body %s", got, code, r.body)
		}
	}
}

// stream opens an ND-JSON stream and returns its lines one at a time.
type stream struct {
	res *http.Response
	sc  *bufio.Scanner
}

func (a *api) stream(req *http.Request) *stream {
	a.t.Helper()
	res, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	a.t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		a.t.Fatalf("%s %s: status %d: %s", req.Method, req.URL, res.StatusCode, b)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		a.t.Fatalf("%s %s: Content-Type %q, want application/x-ndjson", req.Method, req.URL, ct)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	return &stream{res: res, sc: sc}
}

// next returns the next record, or nil at the end of the stream.
func (s *stream) next(t testing.TB) map[string]any {
	t.Helper()
	if !s.sc.Scan() {
		if err := s.sc.Err(); err != nil {
			t.Fatalf("read stream: %v", err)
		}
		return nil
	}
	var v map[string]any
	if err := json.Unmarshal(s.sc.Bytes(), &v); err != nil {
		t.Fatalf("stream line is not a JSON object: %v: %q", err, s.sc.Bytes())
	}
	return v
}

// createBusybox creates a running busybox sandbox through the API.
func (a *api) createBusybox(extra map[string]any) map[string]any {
	a.t.Helper()
	body := map[string]any{"image": testenv.BusyboxImage}
	for k, v := range extra {
		body[k] = v
	}
	r := a.call("POST", "/v1/sandboxes", body)
	want(a.t, r, http.StatusCreated, "")
	return r.json(a.t)
}

// newSmallBody is WithMaxBodyBytes(4 KiB): JSON file bodies get their own
// limit from the file size limit, not this one.
func newSmallBody() httpapi.Option { return httpapi.WithMaxBodyBytes(4 << 10) }
