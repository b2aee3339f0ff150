package httpapi_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/internal/testenv"
)

func filesURL(id, p string) string {
	return "/v1/sandboxes/" + id + "/files?path=" + url.QueryEscape(p)
}

func TestFiles(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t, opensbx.WithFileSizeLimit(64<<10))
	a := newAPI(t, m, newSmallBody())
	id := a.createBusybox(nil)["id"].(string)

	// Text through JSON, parents created.
	r := a.call("PUT", filesURL(id, "/tmp/a/b/hello.txt"), map[string]any{"content": "héllo\n"})
	want(t, r, 200, "")
	is.Equal(r.json(t)["status"], "written")
	is.Equal(r.json(t)["path"], "/tmp/a/b/hello.txt")
	r = a.call("GET", filesURL(id, "/tmp/a/b/hello.txt"), nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["content"], "héllo\n") // text round trip
	_, hasEnc := r.json(t)["encoding"]
	is.True(!hasEnc) // UTF-8 content comes without encoding

	// Binary through base64 JSON comes back base64.
	bin := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0x80}
	r = a.call("PUT", filesURL(id, "/tmp/bin"), map[string]any{"content": base64.StdEncoding.EncodeToString(bin), "encoding": "base64"})
	want(t, r, 200, "")
	r = a.call("GET", filesURL(id, "/tmp/bin"), nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["encoding"], "base64")
	got, err := base64.StdEncoding.DecodeString(r.json(t)["content"].(string))
	is.NoErr(err)
	is.Equal(got, bin) // binary round trip via base64

	// Raw bytes both ways.
	raw := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0}, 1000)
	r = a.call("PUT", filesURL(id, "/tmp/raw.bin")+"&mode=0600", raw)
	want(t, r, 200, "")
	is.Equal(r.json(t)["size"], float64(len(raw)))
	req := a.newRequest("GET", filesURL(id, "/tmp/raw.bin"), nil)
	req.Header.Set("Accept", "application/octet-stream")
	r = a.do(req)
	want(t, r, 200, "")
	is.Equal(r.header.Get("Content-Type"), "application/octet-stream")
	is.Equal(r.body, raw) // raw round trip
	is.Equal(r.header.Get("X-File-Mode"), "0600")

	// Paths that look like shell or traversal are literal paths.
	for _, p := range []string{`/tmp/it's "quoted" $(touch /tmp/pwned) ; x`, "/tmp/sp ace/`id`", "/tmp/../tmp/./dots"} {
		want(t, a.call("PUT", filesURL(id, p), map[string]any{"content": p}), 200, "")
		r = a.call("GET", filesURL(id, p), nil)
		want(t, r, 200, "")
		is.Equal(r.json(t)["content"], p) // literal path round trip
	}
	want(t, a.call("GET", filesURL(id, "/tmp/pwned"), nil), http.StatusNotFound, "NOT_FOUND") // nothing was run
	r = a.call("GET", filesURL(id, "/tmp/dots"), nil)
	want(t, r, 200, "") // "/tmp/../tmp/./dots" is /tmp/dots inside the sandbox

	// Listing.
	r = a.call("GET", "/v1/sandboxes/"+id+"/files/list?path=/tmp/a/b", nil)
	want(t, r, 200, "")
	ls := r.json(t)
	is.Equal(ls["path"], "/tmp/a/b")
	is.True(strings.Contains(ls["output"].(string), "hello.txt")) // ls -la style output
	entries := ls["entries"].([]any)
	is.Equal(len(entries), 1)
	e := entries[0].(map[string]any)
	is.Equal(e["name"], "hello.txt")
	is.Equal(e["type"], "file")
	is.Equal(e["size"], 7.0)
	is.Equal(e["mode"], "-rw-r--r--")
	is.True(e["mod_time"] != "")

	// Errors.
	want(t, a.call("GET", filesURL(id, "/tmp/missing"), nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("GET", filesURL(id, "/tmp/a"), nil), http.StatusBadRequest, "BAD_REQUEST") // a directory
	req = a.newRequest("GET", filesURL(id, "/tmp/a"), nil)
	req.Header.Set("Accept", "application/octet-stream")
	want(t, a.do(req), http.StatusBadRequest, "BAD_REQUEST") // a directory, raw
	want(t, a.call("GET", "/v1/sandboxes/"+id+"/files/list?path=/nope", nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("PUT", filesURL(id, "tmp/rel"), map[string]any{"content": "x"}), http.StatusBadRequest, "BAD_REQUEST")
	want(t, a.call("PUT", filesURL(id, "/tmp/x"), map[string]any{}), http.StatusBadRequest, "BAD_REQUEST")
	want(t, a.call("PUT", filesURL(id, "/tmp/x"), map[string]any{"content": "%%%", "encoding": "base64"}), http.StatusBadRequest, "BAD_REQUEST")
	want(t, a.call("PUT", filesURL(id, "/tmp/x"), map[string]any{"content": "x", "encoding": "rot13"}), http.StatusBadRequest, "BAD_REQUEST")
	want(t, a.call("PUT", filesURL(id, "/tmp/x"), `{"content":5}`), http.StatusBadRequest, "BAD_REQUEST")
	want(t, a.call("PUT", filesURL(id, "/tmp/a"), map[string]any{"content": "x"}), http.StatusBadRequest, "BAD_REQUEST") // a directory
	want(t, a.call("GET", filesURL("nope-"+randomHex(3), "/tmp/x"), nil), http.StatusNotFound, "NOT_FOUND")

	// Over the file size limit (64 KiB here): 413 for raw, JSON and base64,
	// and for reads of a bigger file.
	big := bytes.Repeat([]byte("x"), 64<<10+1)
	want(t, a.call("PUT", filesURL(id, "/tmp/big"), big), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	want(t, a.call("PUT", filesURL(id, "/tmp/big"), map[string]any{"content": string(big)}), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	want(t, a.call("PUT", filesURL(id, "/tmp/big"), map[string]any{"content": base64.StdEncoding.EncodeToString(big), "encoding": "base64"}), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	req = a.newRequest("PUT", filesURL(id, "/tmp/big"), nil)
	req.Body = noLength{bytes.NewReader(big)} // chunked: no Content-Length to reject up front
	req.Header.Set("Content-Type", "application/octet-stream")
	want(t, a.do(req), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	exact := big[:64<<10]
	want(t, a.call("PUT", filesURL(id, "/tmp/exact"), exact), 200, "") // exactly the limit is fine

	// Delete, recursive; then missing.
	want(t, a.call("DELETE", filesURL(id, "/tmp/a"), nil), http.StatusNoContent, "")
	want(t, a.call("GET", filesURL(id, "/tmp/a/b/hello.txt"), nil), http.StatusNotFound, "NOT_FOUND")
	want(t, a.call("DELETE", filesURL(id, "/tmp/a"), nil), http.StatusNotFound, "NOT_FOUND")
}

// noLength hides a body's length so the client sends it chunked.
type noLength struct{ r *bytes.Reader }

func (n noLength) Read(p []byte) (int, error) { return n.r.Read(p) }
func (n noLength) Close() error               { return nil }

func TestFilesOnImageWithoutShell(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)
	r := a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.NoShellImage, "keep_image_command": true})
	want(t, r, http.StatusCreated, "")
	id := r.json(t)["id"].(string)
	p := "/data/$(reboot) 'x'.bin"
	want(t, a.call("PUT", filesURL(id, p), []byte{1, 2, 3}), 200, "")
	req := a.newRequest("GET", filesURL(id, p), nil)
	req.Header.Set("Accept", "application/octet-stream")
	r = a.do(req)
	want(t, r, 200, "")
	is.Equal(r.body, []byte{1, 2, 3}) // works without sh or cat
}
