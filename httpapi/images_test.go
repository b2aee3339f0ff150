package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// pushedRef tags the busybox test image as a unique reference in the local
// registry, pushes it and removes the local tag again, so that a pull
// through the API has something to fetch. It skips when the registry is
// not running.
func pushedRef(t *testing.T, cli *client.Client) string {
	t.Helper()
	res, err := http.Get("http://" + testenv.RegistryAddr + "/v2/")
	if err != nil {
		t.Skipf("local registry %s not answering (run scripts/docker-up.sh): %v", testenv.RegistryAddr, err)
	}
	res.Body.Close()
	ctx := context.Background()
	ref := testenv.RegistryAddr + "/opensbx-httpapi/bb-" + testRun + ":" + randomHex(3)
	if err := cli.ImageTag(ctx, testenv.BusyboxImage, ref); err != nil {
		t.Fatalf("tag: %v", err)
	}
	t.Cleanup(func() { cli.ImageRemove(context.Background(), ref, image.RemoveOptions{}) })
	rc, err := cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: base64.URLEncoding.EncodeToString([]byte("{}"))})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	dec := json.NewDecoder(rc)
	for {
		var msg struct{ Error string }
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("push: %v", err)
		}
		if msg.Error != "" {
			t.Fatalf("push: %s", msg.Error)
		}
	}
	rc.Close()
	if _, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{}); err != nil {
		t.Fatalf("untag: %v", err)
	}
	return ref
}

func TestImages(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, cli := newManager(t)
	a := newAPI(t, m)

	r := a.call("GET", "/v1/images", nil)
	want(t, r, 200, "")
	found := false
	for _, x := range r.json(t)["images"].([]any) {
		img := x.(map[string]any)
		for _, tag := range img["tags"].([]any) {
			if tag == testenv.BusyboxImage {
				found = true
				is.True(img["id"] != "" && img["size"].(float64) > 0) // id and size
			}
		}
	}
	is.True(found) // busybox test image listed

	r = a.call("GET", "/v1/images/"+testenv.BusyboxImage, nil) // a reference with '/', raw
	want(t, r, 200, "")
	img := r.json(t)
	for _, f := range []string{"id", "tags", "size", "created", "architecture", "os"} {
		_, ok := img[f]
		is.True(ok) // image detail field
	}
	id := img["id"].(string)
	r = a.call("GET", "/v1/images/"+url.PathEscape(testenv.BusyboxImage), nil) // path-escaped
	want(t, r, 200, "")
	is.Equal(r.json(t)["id"], id)
	r = a.call("GET", "/v1/images/"+strings.ReplaceAll(testenv.BusyboxImage, "/", "%2F"), nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["id"], id)
	r = a.call("GET", "/v1/images/"+id, nil) // by id
	want(t, r, 200, "")
	want(t, a.call("GET", "/v1/images/opensbx-test/absent:"+randomHex(3), nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("GET", "/v1/images/127.0.0.1:5000/ns/absent:1", nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("DELETE", "/v1/images/opensbx-test/absent:"+randomHex(3), nil), http.StatusNotFound, "NOT_FOUND")

	// An image a sandbox uses is not removed without force.
	a.createBusybox(nil)
	want(t, a.call("DELETE", "/v1/images/"+id, nil), http.StatusConflict, "CONFLICT")

	// A tag of its own is removed (the image stays under its other tag).
	tag := "opensbx-test/httpapi-tmp:" + randomHex(3)
	is.NoErr(cli.ImageTag(context.Background(), testenv.BusyboxImage, tag)) // tag
	t.Cleanup(func() { cli.ImageRemove(context.Background(), tag, image.RemoveOptions{}) })
	want(t, a.call("DELETE", "/v1/images/"+url.PathEscape(tag)+"?force=false", nil), http.StatusNoContent, "")
	want(t, a.call("DELETE", "/v1/images/"+tag, nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("GET", "/v1/images/"+testenv.BusyboxImage, nil), 200, "")
}

func TestImagePull(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, cli := newManager(t)
	a := newAPI(t, m)
	ref := pushedRef(t, cli)

	want(t, a.call("GET", "/v1/images/"+ref, nil), http.StatusNotFound, "NOT_FOUND")
	r := a.call("POST", "/v1/images/pull", map[string]any{"image": ref})
	want(t, r, 200, "")
	is.Equal(r.json(t)["status"], "pulled")
	is.Equal(r.json(t)["image"], ref)
	r = a.call("GET", "/v1/images/"+ref, nil) // '/' and ':' raw
	want(t, r, 200, "")
	r = a.call("GET", "/v1/images/"+url.PathEscape(ref), nil) // escaped
	want(t, r, 200, "")

	// Remove it again and pull with a progress stream.
	want(t, a.call("DELETE", "/v1/images/"+ref, nil), http.StatusNoContent, "")
	s := a.stream(a.newRequest("POST", "/v1/images/pull?stream=true", map[string]any{"image": ref}))
	var last map[string]any
	n := 0
	for rec := s.next(t); rec != nil; rec = s.next(t) {
		last, n = rec, n+1
	}
	is.True(n >= 2)                    // progress records before the last
	is.Equal(last["status"], "pulled") // ends with pulled
	want(t, a.call("GET", "/v1/images/"+ref, nil), 200, "")

	// Unknown tag and repository: 404 with the registry's message, never 200.
	unknown := testenv.RegistryAddr + "/opensbx-httpapi/absent-" + randomHex(3) + ":1"
	r = a.call("POST", "/v1/images/pull", map[string]any{"image": unknown})
	want(t, r, http.StatusNotFound, "NOT_FOUND")
	s = a.stream(a.newRequest("POST", "/v1/images/pull?stream=true", map[string]any{"image": unknown}))
	for rec := s.next(t); rec != nil; rec = s.next(t) {
		last = rec
	}
	e, _ := last["error"].(map[string]any)
	is.True(e != nil)                // stream ends with an error record
	is.Equal(e["code"], "NOT_FOUND") // error code in the stream

	// An unreachable registry: a 502-class error with a code, never 200.
	r = a.call("POST", "/v1/images/pull", map[string]any{"image": "127.0.0.1:1/none/img:1"})
	is.True(r.status >= 500) // unreachable registry
	is.True(r.code(t) != "")
}
