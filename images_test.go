package opensbx

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

func TestParseReference(t *testing.T) {
	t.Parallel()
	digest := "sha256:" + strings.Repeat("ab", 32)
	valid := []struct{ in, want string }{
		{"busybox", "busybox:latest"},
		{"busybox:1.36", "busybox:1.36"},
		{"library/busybox:1", "busybox:1"},
		{"docker.io/library/busybox:1", "busybox:1"},
		{"opensbx-test/busybox:1", "opensbx-test/busybox:1"},
		{"127.0.0.1:5000/ns/img:v1", "127.0.0.1:5000/ns/img:v1"},
		{"127.0.0.1:5000/ns/img", "127.0.0.1:5000/ns/img:latest"},
		{"localhost:5000/a/b/c:x_y.z-1", "localhost:5000/a/b/c:x_y.z-1"},
		{"registry.example.com/team/app:2", "registry.example.com/team/app:2"},
		{"busybox@" + digest, "busybox@" + digest},
		{"127.0.0.1:5000/ns/img@" + digest, "127.0.0.1:5000/ns/img@" + digest},
		{"busybox:1@" + digest, "busybox:1@" + digest},
		{"busybox:1..2", "busybox:1..2"}, // a valid tag; no dot segment of a path
	}
	for _, tc := range valid {
		got, err := ParseReference(tc.in)
		if err != nil {
			t.Errorf("ParseReference(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseReference(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, in := range malformedImageRefs() {
		if got, err := ParseReference(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseReference(%q) = %q, %v; want ErrInvalid", in, got, err)
		}
	}
	// Image ids are valid for lookups but are not pullable references.
	for _, id := range []string{strings.Repeat("a", 64), "sha256:" + strings.Repeat("a", 64)} {
		if _, err := ParseReference(id); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseReference(%q): want ErrInvalid, got %v", id, err)
		}
		if _, err := imageTarget(id); err != nil {
			t.Errorf("imageTarget(%q): %v", id, err)
		}
	}
}

// malformedImageRefs are references that every image call must refuse with
// ErrInvalid without asking the engine.
func malformedImageRefs() []string {
	return []string{
		"",
		" ",
		" busybox",
		"busybox ",
		"BusyBox",
		"ns/Upper:1",
		"busybox:",
		"busybox:bad tag",
		"busybox:" + strings.Repeat("t", 129),
		":tag",
		"/busybox",
		"busybox/",
		"a//b",
		"busybox@sha256:abc",
		"busybox@sha256:" + strings.Repeat("g", 64),
		"busybox@md5:" + strings.Repeat("a", 32),
		"host:port/x",
		"127.0.0.1:5000/ns/img:-bad",
		"img:tag:tag",
		"ns/img..x",
		"../x",
		"a/../b",
		"a/./b",
		"a/b/..",
		strings.Repeat("a/", 130) + "b",
	}
}

func TestRegistryAuthRedacted(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := RegistryAuth{Username: "alice", Password: "s3cret-pw", ServerAddress: "r.example", IdentityToken: "tok-xyz"}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("pull", "auth", a, "ptr", &a)
	for _, out := range []string{
		fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s", a, a, a, a),
		fmt.Sprintf("%v %+v %#v", &a, &a, &a), fmt.Sprintf("%+v", PullOptions{Auth: &a}),
		logged.String(),
	} {
		is.True(!strings.Contains(out, "s3cret-pw")) // password redacted
		is.True(!strings.Contains(out, "tok-xyz"))   // token redacted
	}
	is.True(strings.Contains(fmt.Sprint(a), "alice")) // username shown
}

// imageCallCounter counts the image calls a Manager makes and can hold the first
// ImagePull at a gate. It wraps the test engine's client at the Docker
// boundary.
type imageCallCounter struct {
	client.APIClient
	pulls, inspects, removes, lists atomic.Int32

	gate        chan struct{} // when not nil, the first ImagePull waits for it
	entered     chan struct{} // closed when the first ImagePull reached the gate
	gateAborted chan struct{} // closed when the first ImagePull's ctx ended at the gate
}

func newImageCallCounter(cli client.APIClient, gated bool) *imageCallCounter {
	c := &imageCallCounter{APIClient: cli}
	if gated {
		c.gate, c.entered, c.gateAborted = make(chan struct{}), make(chan struct{}), make(chan struct{})
	}
	return c
}

func (c *imageCallCounter) ImagePull(ctx context.Context, ref string, opts image.PullOptions) (io.ReadCloser, error) {
	if c.pulls.Add(1) == 1 && c.gate != nil {
		close(c.entered)
		select {
		case <-c.gate:
		case <-ctx.Done():
			close(c.gateAborted)
			return nil, ctx.Err()
		}
	}
	return c.APIClient.ImagePull(ctx, ref, opts)
}

// awaitEntered waits until the first ImagePull reached the gate, failing
// the test if the pull ended before (done) or nothing happened in 20 s.
func (c *imageCallCounter) awaitEntered(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case <-c.entered:
	case err := <-done:
		t.Fatalf("pull ended before reaching the engine: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("pull did not reach the engine in 20 s")
	}
}

func (c *imageCallCounter) ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error) {
	c.inspects.Add(1)
	return c.APIClient.ImageInspect(ctx, ref, opts...)
}

func (c *imageCallCounter) ImageRemove(ctx context.Context, ref string, opts image.RemoveOptions) ([]image.DeleteResponse, error) {
	c.removes.Add(1)
	return c.APIClient.ImageRemove(ctx, ref, opts)
}

func (c *imageCallCounter) ImageList(ctx context.Context, opts image.ListOptions) ([]image.Summary, error) {
	c.lists.Add(1)
	return c.APIClient.ImageList(ctx, opts)
}

// waiters is the number of callers waiting on the pull of ref (anonymous).
func (g *pullGroup) waitersOf(ref string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.flights[ref]; f != nil {
		return f.waiters
	}
	return 0
}

// imgUnique builds an image of its own (testenv.BusyboxImage plus a unique
// label, so a new id with no other tag) tagged tag, and returns its id. The
// image and the containers using it are removed when the test ends.
func imgUnique(t testing.TB, cli *client.Client, tag string) string {
	t.Helper()
	ctx := t.Context()
	dockerfile := fmt.Sprintf("FROM %s\nLABEL opensbx-test.unique=%s\n", testenv.BusyboxImage, randomHex(8))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))})
	tw.Write([]byte(dockerfile))
	tw.Close()
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags: []string{tag}, Dockerfile: "Dockerfile", Remove: true, ForceRemove: true, Version: build.BuilderV1,
	})
	if err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	err = imgReadStream(resp.Body, nil)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	ii, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatalf("inspect %s: %v", tag, err)
	}
	id := ii.ID
	t.Cleanup(func() { imgRemoveAll(t, cli, id) })
	return id
}

// imgRemoveAll removes image id (all its tags) and the containers of
// this test run that use it. Not found counts as success.
func imgRemoveAll(t testing.TB, cli *client.Client, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("ancestor", id), filters.Arg("label", testRunLabel+"="+testRun))})
	if err != nil {
		t.Errorf("cleanup: list containers of %s: %v", id, err)
	}
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove container %s: %v", c.ID, err)
		}
	}
	if _, err := cli.ImageRemove(ctx, id, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("cleanup: remove image %s: %v", id, err)
	}
}

// imgReadStream reads a JSON message stream (build, push) to the end. An
// error message becomes the error; aux, when not nil, gets every aux value.
func imgReadStream(r io.Reader, aux func(json.RawMessage)) error {
	dec := json.NewDecoder(r)
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if msg.Error != nil {
			return msg.Error
		}
		if msg.ErrorMessage != "" {
			return errors.New(msg.ErrorMessage)
		}
		if msg.Aux != nil && aux != nil {
			aux(*msg.Aux)
		}
	}
}

// pushImage pushes ref to the local registry and returns the manifest
// digest the registry reported.
func imgPush(t testing.TB, cli *client.Client, ref string) string {
	t.Helper()
	rc, err := cli.ImagePush(t.Context(), ref, image.PushOptions{RegistryAuth: base64.URLEncoding.EncodeToString([]byte("{}"))})
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	defer rc.Close()
	var digest string
	err = imgReadStream(rc, func(raw json.RawMessage) {
		var r struct{ Digest string }
		if json.Unmarshal(raw, &r) == nil && r.Digest != "" {
			digest = r.Digest
		}
	})
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	if digest == "" {
		t.Fatalf("push %s: no digest reported", ref)
	}
	return digest
}

// imgRegistryRepo is a repository name in the local registry unique to this call.
func imgRegistryRepo(t testing.TB) string {
	t.Helper()
	resp, err := http.Get("http://" + testenv.RegistryAddr + "/v2/")
	if err != nil {
		t.Skipf("local registry %s not answering (run scripts/docker-up.sh): %v", testenv.RegistryAddr, err)
	}
	resp.Body.Close()
	return testenv.RegistryAddr + "/opensbx-test/img-" + testRun + "-" + randomHex(4)
}

// imgPushed builds a unique image, pushes it as repo:v1, removes it
// locally and returns the tag reference, the digest reference and its id.
func imgPushed(t testing.TB, cli *client.Client) (tagRef, digestRef, id string) {
	t.Helper()
	repo := imgRegistryRepo(t)
	tagRef = repo + ":v1"
	id = imgUnique(t, cli, tagRef)
	digest := imgPush(t, cli, tagRef)
	if _, err := cli.ImageRemove(t.Context(), id, image.RemoveOptions{Force: true}); err != nil {
		t.Fatalf("remove %s locally: %v", tagRef, err)
	}
	return tagRef, repo + "@" + digest, id
}

func TestPullImageByTagAndDigest(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, cli := newTestManager(t)
	ctx := t.Context()
	tagRef, digestRef, id := imgPushed(t, cli)

	_, err := m.Image(ctx, tagRef)
	is.True(errors.Is(err, ErrImageNotFound)) // removed locally before the pull

	var progress []PullProgress
	img, err := m.PullImage(ctx, tagRef, PullOptions{Progress: func(p PullProgress) { progress = append(progress, p) }})
	is.NoErr(err)                              // pull by tag
	is.Equal(img.ID, id)                       // same image as pushed
	is.True(slices.Contains(img.Tags, tagRef)) // tagged
	is.True(slices.Contains(img.Digests, digestRef))
	is.True(img.Size > 0)
	is.True(!img.Created.IsZero())
	is.True(len(progress) > 0) // progress reported
	statuses := make([]string, 0, len(progress))
	for _, p := range progress {
		statuses = append(statuses, p.Status)
	}
	t.Logf("progress statuses: %q", statuses)
	is.True(slices.ContainsFunc(statuses, func(s string) bool { return strings.HasPrefix(s, "Digest: ") })) // engine's own messages

	is.NoErr(m.RemoveImage(ctx, tagRef, false)) // remove after pull
	_, err = m.Image(ctx, id)
	is.True(errors.Is(err, ErrImageNotFound)) // gone

	img, err = m.PullImage(ctx, digestRef, PullOptions{})
	is.NoErr(err) // pull by digest
	is.Equal(img.ID, id)
	is.True(slices.Contains(img.Digests, digestRef))
	d, err := m.Image(ctx, digestRef)
	is.NoErr(err) // inspect by digest
	is.Equal(d.ID, id)
	is.NoErr(m.RemoveImage(ctx, digestRef, false))

	// Tag and digest together: the digest decides.
	both := tagRef + "@" + strings.SplitN(digestRef, "@", 2)[1]
	img, err = m.PullImage(ctx, both, PullOptions{})
	is.NoErr(err) // pull by tag@digest
	is.Equal(img.ID, id)
	is.NoErr(m.RemoveImage(ctx, id, false))
}

func TestPullImageUnknown(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, cli := newTestManager(t)
	ctx := t.Context()
	tagRef, _, _ := imgPushed(t, cli)
	repo := strings.TrimSuffix(tagRef, ":v1")
	for _, ref := range []string{
		repo + ":no-such-tag",                       // unknown tag of a known repository
		imgRegistryRepo(t) + ":v1",                  // unknown repository
		repo + "@sha256:" + strings.Repeat("0", 64), // unknown digest
	} {
		img, err := m.PullImage(ctx, ref, PullOptions{})
		t.Logf("pull %s: %v", ref, err)
		is.True(img == nil)                       // never success
		is.True(errors.Is(err, ErrImageNotFound)) // typed
		is.True(errors.Is(err, ErrNotFound))
		msg := strings.ToLower(err.Error())
		is.True(strings.Contains(msg, "manifest unknown") || strings.Contains(msg, "not found")) // registry's message
	}
}

func TestPullImageSharesOneRequest(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	calls := newImageCallCounter(testenv.Engine(t), true)
	m, cli := newTestManager(t, WithDockerClient(calls))
	tagRef, _, id := imgPushed(t, cli)
	norm, err := ParseReference(tagRef)
	is.NoErr(err)

	type result struct {
		img      *Image
		err      error
		progress int
	}
	pull := func(ref string) <-chan result {
		ch := make(chan result, 1)
		go func() {
			var r result
			r.img, r.err = m.PullImage(t.Context(), ref, PullOptions{Progress: func(PullProgress) { r.progress++ }})
			ch <- r
		}()
		return ch
	}
	first := pull(tagRef)
	waitFor(t, 20*time.Second, "the first pull to reach the engine", func() bool {
		select {
		case <-calls.entered:
			return true
		default:
			return false
		}
	})
	second := pull(tagRef)
	waitFor(t, 20*time.Second, "the second pull to join", func() bool { return m.pulls.waitersOf(norm) == 2 || calls.pulls.Load() > 1 })
	close(calls.gate)
	a, b := <-first, <-second
	is.NoErr(a.err)
	is.NoErr(b.err)
	is.Equal(calls.pulls.Load(), int32(1)) // one engine request for two callers
	is.Equal(a.img.ID, id)
	is.Equal(b.img.ID, id)
	is.True(a.progress > 0)          // first caller got progress
	is.Equal(b.progress, a.progress) // so did the one that joined before the stream began
	a.img.Tags[0] = "mutated"
	is.True(b.img.Tags[0] != "mutated") // callers do not share slices
	is.Equal(m.pulls.waitersOf(norm), 0)
}

func TestPullImageWaiterContext(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	calls := newImageCallCounter(testenv.Engine(t), true)
	m, cli := newTestManager(t, WithDockerClient(calls))
	tagRef, _, id := imgPushed(t, cli)
	norm, _ := ParseReference(tagRef)

	firstDone := make(chan error, 1)
	var img *Image
	go func() {
		var err error
		img, err = m.PullImage(t.Context(), tagRef, PullOptions{})
		firstDone <- err
	}()
	calls.awaitEntered(t, firstDone)
	ctx, cancel := context.WithCancel(t.Context())
	secondDone := make(chan error, 1)
	var lateProgress atomic.Bool
	var returned atomic.Bool
	go func() {
		_, err := m.PullImage(ctx, tagRef, PullOptions{Progress: func(PullProgress) {
			if returned.Load() {
				lateProgress.Store(true)
			}
		}})
		returned.Store(true)
		secondDone <- err
	}()
	waitFor(t, 20*time.Second, "the second pull to join", func() bool { return m.pulls.waitersOf(norm) == 2 })
	cancel()
	err := <-secondDone                       // returns while the shared pull is still held at the gate
	is.True(errors.Is(err, context.Canceled)) // its own ctx
	is.Equal(m.pulls.waitersOf(norm), 1)      // the first caller still waits
	close(calls.gate)
	is.NoErr(<-firstDone) // the shared pull went on for the first caller
	is.Equal(img.ID, id)
	is.True(!lateProgress.Load()) // no callback after its PullImage returned
	is.Equal(calls.pulls.Load(), int32(1))
}

func TestPullImageLastWaiterCancels(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	calls := newImageCallCounter(testenv.Engine(t), true)
	m, _ := newTestManager(t, WithDockerClient(calls))
	ref := imgRegistryRepo(t) + ":v1" // never reaches the registry
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := m.PullImage(ctx, ref, PullOptions{})
		done <- err
	}()
	calls.awaitEntered(t, done)
	cancel()
	is.True(errors.Is(<-done, context.Canceled))
	select {
	case <-calls.gateAborted: // the engine request was cancelled too
	case <-time.After(20 * time.Second):
		t.Fatal("the shared pull was not cancelled when its only caller left")
	}
	close(calls.gate)
}

func TestPullImageClose(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	calls := newImageCallCounter(testenv.Engine(t), true)
	m, _ := newTestManager(t, WithDockerClient(calls))
	done := make(chan error, 1)
	go func() {
		_, err := m.PullImage(t.Context(), imgRegistryRepo(t)+":v1", PullOptions{})
		done <- err
	}()
	calls.awaitEntered(t, done)
	is.NoErr(m.Close())                          // waits for the pull goroutine
	is.True(errors.Is(<-done, context.Canceled)) // the caller was released
	select {
	case <-calls.gateAborted: // the engine request was cancelled by Close
	default:
		t.Fatal("Close returned while the engine request was still held")
	}
	_, err := m.PullImage(t.Context(), testenv.BusyboxImage, PullOptions{})
	is.True(errors.Is(err, ErrClosed))
}

// imgFakeRegistry is an HTTP registry on 127.0.0.1 (an insecure registry by
// the engine's default) that speaks just enough of the API for error paths.
type imgFakeRegistry struct {
	srv  *httptest.Server
	user string // basic-auth user:password wanted; empty means no auth
	hang bool   // manifest requests hang until the client leaves
	// blobStatus, when not 0, makes manifest requests answer a (made-up)
	// manifest and blob requests fail with this status and blobMsg, so
	// the pull fails after its progress stream began.
	blobStatus int
	blobMsg    string

	mu    sync.Mutex
	auths []string // Authorization headers received on manifest requests
}

func newImgFakeRegistry(t *testing.T, user string, hang bool) *imgFakeRegistry {
	f := &imgFakeRegistry{user: user, hang: hang}
	stop := make(chan struct{})
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve(stop)))
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() { close(stop) })
	return f
}

func (f *imgFakeRegistry) host() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *imgFakeRegistry) serve(stop <-chan struct{}) func(http.ResponseWriter, *http.Request) {
	regErr := func(w http.ResponseWriter, status int, code, msg string) {
		w.Header().Set("Content-Type", "application/json")
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="opensbx-test"`)
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q,"detail":null}]}`, code, msg)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		if f.user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u+":"+p != f.user {
				regErr(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
				return
			}
		}
		if r.URL.Path == "/v2/" {
			w.Write([]byte("{}"))
			return
		}
		if strings.Contains(r.URL.Path, "/manifests/") {
			f.mu.Lock()
			f.auths = append(f.auths, r.Header.Get("Authorization"))
			f.mu.Unlock()
			if f.hang {
				select {
				case <-r.Context().Done():
				case <-stop:
				}
				return
			}
			if f.blobStatus != 0 {
				manifest := fakeManifest()
				sum := sha256.Sum256(manifest)
				w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
				w.Header().Set("Docker-Content-Digest", "sha256:"+hex.EncodeToString(sum[:]))
				w.Header().Set("Content-Length", fmt.Sprint(len(manifest)))
				if r.Method != http.MethodHead {
					w.Write(manifest)
				}
				return
			}
		}
		if strings.Contains(r.URL.Path, "/blobs/") && f.blobStatus != 0 {
			code := "BLOB_UNKNOWN"
			if f.blobStatus == http.StatusForbidden {
				code = "DENIED"
			}
			regErr(w, f.blobStatus, code, f.blobMsg)
			return
		}
		regErr(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown (fake registry)")
	}
}

// fakeManifest is a schema 2 manifest whose blobs do not exist.
func fakeManifest() []byte {
	d := func(s string) string { sum := sha256.Sum256([]byte(s)); return "sha256:" + hex.EncodeToString(sum[:]) }
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",`+
		`"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":100,"digest":%q},`+
		`"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":100,"digest":%q}]}`,
		d("config"), d("layer")))
}

func TestPullImageStreamError(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t)
	for _, tc := range []struct {
		status int
		msg    string
		kind   error  // sentinel wanted (nil: none, a broken registry is no caller error)
		text   string // wanted in the error: the registry's or the engine's words
	}{
		{http.StatusForbidden, "access to blob denied (fake registry)", ErrUnauthorized, "access to blob denied (fake registry)"},
		{http.StatusNotFound, "blob unknown to registry (fake registry)", nil, "unknown blob"},
	} {
		reg := newImgFakeRegistry(t, "", false)
		reg.blobStatus, reg.blobMsg = tc.status, tc.msg
		var progress int
		img, err := m.PullImage(t.Context(), reg.host()+"/ns/broken:1", PullOptions{Progress: func(PullProgress) { progress++ }})
		t.Logf("blob %d: %v (%d progress messages)", tc.status, err, progress)
		if img != nil || err == nil {
			t.Fatalf("blob %d: pull succeeded", tc.status)
		}
		if progress == 0 {
			t.Errorf("blob %d: no progress before the error: the stream path was not taken", tc.status)
		}
		if tc.kind != nil && !errors.Is(err, tc.kind) {
			t.Errorf("blob %d: want %v, got %v", tc.status, tc.kind, err)
		}
		if tc.kind == nil && (errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnauthorized)) {
			t.Errorf("blob %d: want no sentinel, got %v", tc.status, err)
		}
		if !strings.Contains(err.Error(), tc.text) {
			t.Errorf("blob %d: error %q lacks %q", tc.status, err, tc.text)
		}
	}
}

func TestPullImageStalled(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t, WithPullInactivityTimeout(time.Second))
	reg := newImgFakeRegistry(t, "", true)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	img, err := m.PullImage(ctx, reg.host()+"/ns/stalled:1", PullOptions{})
	t.Logf("stalled pull: %v", err)
	is.True(img == nil)
	is.True(errors.Is(err, ErrUnavailable))           // stalled pull aborted
	is.True(errors.Is(err, context.DeadlineExceeded)) // as a timeout
	is.NoErr(ctx.Err())                               // by the inactivity timeout, not the caller's deadline
	reg.mu.Lock()
	is.True(len(reg.auths) > 0) // the engine did reach the registry
	reg.mu.Unlock()
}

func TestPullImageCredentials(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	ctx := t.Context()
	reg := newImgFakeRegistry(t, "alice:s3cret", false)
	ref := reg.host() + "/ns/private:1"

	_, err := m.PullImage(ctx, ref, PullOptions{})
	t.Logf("anonymous: %v", err)
	is.True(errors.Is(err, ErrUnauthorized))       // no credentials
	is.True(strings.Contains(err.Error(), "auth")) // the engine's words ("no basic auth credentials")

	_, err = m.PullImage(ctx, ref, PullOptions{Auth: &RegistryAuth{Username: "alice", Password: "wrong", ServerAddress: reg.host()}})
	t.Logf("wrong password: %v", err)
	is.True(errors.Is(err, ErrUnauthorized)) // wrong credentials
	is.True(!strings.Contains(err.Error(), "wrong"))

	_, err = m.PullImage(ctx, ref, PullOptions{Auth: &RegistryAuth{Username: "alice", Password: "s3cret", ServerAddress: reg.host()}})
	t.Logf("right password: %v", err)
	is.True(errors.Is(err, ErrImageNotFound)) // credentials accepted, then the fake has no manifest
	is.True(strings.Contains(err.Error(), "manifest unknown (fake registry)"))
	is.True(!strings.Contains(err.Error(), "s3cret"))
	reg.mu.Lock()
	is.True(slices.Contains(reg.auths, "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:s3cret")))) // sent by the engine
	reg.mu.Unlock()
}

func TestImagesListAndInspect(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, cli := newTestManager(t)
	ctx := t.Context()
	tag := "opensbx-test/list-" + testRun + "-" + randomHex(4) + ":1"
	id := imgUnique(t, cli, tag)
	sb, err := m.Create(ctx, CreateOptions{Image: tag})
	is.NoErr(err) // sandbox from our image
	other := newBusybox(t, m, CreateOptions{})

	list, err := m.Images(ctx)
	is.NoErr(err)
	i := slices.IndexFunc(list, func(img Image) bool { return img.ID == id })
	is.True(i >= 0) // our image is listed
	is.Equal(list[i].Tags, []string{tag})
	is.True(list[i].Size > 0)
	is.True(!list[i].Created.IsZero())
	is.True(time.Since(list[i].Created) < time.Hour) // built just now (sanity of the unit)
	is.True(slices.IsSortedFunc(list, func(a, b Image) int { return b.Created.Compare(a.Created) }))

	for _, ref := range []string{tag, id, strings.TrimPrefix(id, "sha256:")[:12], id[:19], "docker.io/" + tag} {
		d, err := m.Image(ctx, ref)
		is.NoErr(err) // inspect by tag, id, id prefix, full name
		is.Equal(d.ID, id)
		is.Equal(d.Tags, []string{tag})
		is.True(d.Size > 0)
		is.True(!d.Created.IsZero())
		is.True(d.Architecture != "")
		is.Equal(d.OS, "linux")
		is.Equal(d.Sandboxes, []string{sb.ID}) // only the sandbox using it
	}
	bb, err := m.Image(ctx, testenv.BusyboxImage)
	is.NoErr(err)
	is.True(slices.Contains(bb.Sandboxes, other.ID))
	is.True(!slices.Contains(bb.Sandboxes, sb.ID))

	// Another namespace does not see our sandbox as a user of the image.
	m2, _ := newTestManager(t)
	d, err := m2.Image(ctx, tag)
	is.NoErr(err)
	is.Equal(len(d.Sandboxes), 0)

	_, err = m.Image(ctx, "opensbx-test/no-such-image-"+randomHex(4)+":1")
	is.True(errors.Is(err, ErrImageNotFound)) // unknown
	_, err = m.Image(ctx, "sha256:"+strings.Repeat("0", 64))
	is.True(errors.Is(err, ErrImageNotFound)) // unknown id
}

func TestRemoveImageInUse(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, cli := newTestManager(t)
	ctx := t.Context()
	tag := "opensbx-test/rm-" + testRun + "-" + randomHex(4) + ":1"
	id := imgUnique(t, cli, tag)
	sb, err := m.Create(ctx, CreateOptions{Image: tag})
	is.NoErr(err)

	err = m.RemoveImage(ctx, tag, false)
	t.Logf("in use: %v", err)
	is.True(errors.Is(err, ErrConflict)) // in use, no force
	_, err = m.Image(ctx, tag)
	is.NoErr(err) // still there

	err = m.RemoveImage(ctx, id, true)
	t.Logf("by id, forced, running: %v", err)
	is.True(errors.Is(err, ErrConflict)) // a running container's image cannot be removed by id

	is.NoErr(m.RemoveImage(ctx, tag, true)) // force removes the tag
	_, err = m.Image(ctx, tag)
	is.True(errors.Is(err, ErrImageNotFound)) // the tag is gone
	d, err := m.Image(ctx, id)
	is.NoErr(err) // the image stays while the sandbox uses it
	is.Equal(len(d.Tags), 0)
	is.Equal(d.Sandboxes, []string{sb.ID})

	is.NoErr(m.Delete(ctx, sb.ID))
	is.NoErr(m.RemoveImage(ctx, id, false)) // unused now
	_, err = m.Image(ctx, id)
	is.True(errors.Is(err, ErrImageNotFound))

	err = m.RemoveImage(ctx, id, false)
	is.True(errors.Is(err, ErrImageNotFound)) // unknown
	err = m.RemoveImage(ctx, "opensbx-test/no-such-image-"+randomHex(4)+":1", true)
	is.True(errors.Is(err, ErrImageNotFound)) // unknown, forced
}

func TestImageMalformedReferences(t *testing.T) {
	t.Parallel()
	calls := newImageCallCounter(testenv.Engine(t), false)
	m, _ := newTestManager(t, WithDockerClient(calls))
	ctx := t.Context()
	for _, ref := range malformedImageRefs() {
		if _, err := m.Image(ctx, ref); !errors.Is(err, ErrInvalid) {
			t.Errorf("Image(%q): want ErrInvalid, got %v", ref, err)
		}
		if err := m.RemoveImage(ctx, ref, true); !errors.Is(err, ErrInvalid) {
			t.Errorf("RemoveImage(%q): want ErrInvalid, got %v", ref, err)
		}
		if _, err := m.PullImage(ctx, ref, PullOptions{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("PullImage(%q): want ErrInvalid, got %v", ref, err)
		}
	}
	if _, err := m.PullImage(ctx, "sha256:"+strings.Repeat("a", 64), PullOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PullImage(id): want ErrInvalid, got %v", err)
	}
	if n := calls.pulls.Load() + calls.inspects.Load() + calls.removes.Load(); n != 0 {
		t.Errorf("%d engine image calls for malformed references, want 0", n)
	}
}

func TestCreatePullMissing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	calls := newImageCallCounter(testenv.Engine(t), false)
	m, cli := newTestManager(t, WithDockerClient(calls))
	ctx := t.Context()
	tagRef, _, id := imgPushed(t, cli)

	_, err := m.Create(ctx, CreateOptions{Image: tagRef})
	is.True(errors.Is(err, ErrImageNotFound))               // not pulled by default
	is.True(strings.Contains(err.Error(), "pull it first")) // says what to do
	is.Equal(calls.pulls.Load(), int32(0))

	res, err := m.Create(ctx, CreateOptions{Image: tagRef, PullMissing: true})
	is.NoErr(err) // pulled, then created
	is.Equal(calls.pulls.Load(), int32(1))
	d, err := m.Image(ctx, tagRef)
	is.NoErr(err)
	is.Equal(d.ID, id)
	is.Equal(d.Sandboxes, []string{res.ID})

	_, err = m.Create(ctx, CreateOptions{Image: imgRegistryRepo(t) + ":v1", PullMissing: true})
	is.True(errors.Is(err, ErrImageNotFound)) // not in the registry either
}

func TestImagesClosed(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newTestManager(t)
	is.NoErr(m.Close())
	ctx := t.Context()
	_, err := m.Images(ctx)
	is.True(errors.Is(err, ErrClosed))
	_, err = m.Image(ctx, testenv.BusyboxImage)
	is.True(errors.Is(err, ErrClosed))
	_, err = m.PullImage(ctx, testenv.BusyboxImage, PullOptions{})
	is.True(errors.Is(err, ErrClosed))
	is.True(errors.Is(m.RemoveImage(ctx, testenv.BusyboxImage, false), ErrClosed))
}
