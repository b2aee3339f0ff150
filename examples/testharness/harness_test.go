package testharness_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/examples/testharness"
	"github.com/opensbx/opensbx/internal/testenv"
	"github.com/opensbx/opensbx/sandboxtest"
)

// image is the image the tests run. In your project this would be a pinned
// public image such as "busybox:1.36"; here it is the repository's locally
// built busybox test image, so the example runs without a registry.
const image = testenv.BusyboxImage

// TestMain builds the local test image once. Your project would not need it.
func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	if cli, err := testenv.Connect(ctx); err == nil {
		if err := testenv.EnsureImages(ctx, cli); err != nil {
			fmt.Fprintln(os.Stderr, "test images:", err)
			os.Exit(1)
		}
		cli.Close()
	}
	cancel()
	os.Exit(m.Run())
}

// TestServesPage writes a page into a sandbox, starts httpd on it, waits
// until it answers and fetches the page over the published port.
func TestServesPage(t *testing.T) {
	t.Parallel()
	page := testharness.Page("Hello <sandbox>", "served by busybox httpd")

	sb := sandboxtest.New(t, image,
		sandboxtest.Ports("8080"),
		sandboxtest.Resources(opensbx.Resources{MemoryMB: 64, CPUs: 0.5}),
	)
	sb.WriteFile("/www/index.html", page)
	sb.Start(opensbx.ExecOptions{Command: "httpd", Args: []string{"-f", "-p", "8080", "-h", "/www"}})
	sb.WaitFor(sandboxtest.ForHTTP("/index.html").WithPort("8080").WithTimeout(30 * time.Second))

	resp, err := http.Get("http://" + sb.HostPort("8080") + "/index.html")
	if err != nil {
		t.Fatalf("get page: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read page: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200; body %q", resp.StatusCode, body)
	}
	if string(body) != string(page) {
		t.Errorf("served page differs:\n got %q\nwant %q", body, page)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html" {
		t.Errorf("Content-Type %q, want text/html", ct)
	}
}

// TestStatusCodes runs httpd as the sandbox's main process and lets New
// wait for its port; the table then checks what it serves.
func TestStatusCodes(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.New(t, image,
		sandboxtest.Ports("8080"),
		sandboxtest.Command("httpd", "-f", "-p", "8080", "-h", "/tmp"),
		sandboxtest.WaitFor(sandboxtest.ForListeningPort("8080").WithTimeout(30*time.Second)),
	)
	sb.WriteFile("/tmp/about.html", testharness.Page("About", "us"))
	base := "http://" + sb.HostPort("8080")

	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/about.html", http.StatusOK},
		{"/missing.html", http.StatusNotFound},
		{"/../etc/passwd", http.StatusBadRequest},
	} {
		t.Run(tc.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = tc.path // send the path as written, even "/../"
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("get %s: %v", tc.path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("GET %s: status %d, want %d", tc.path, resp.StatusCode, tc.status)
			}
		})
	}
	// Inside the sandbox the server answers on its own port too.
	if out, _, code := sb.Exec("wget", "-q", "-O", "-", "http://127.0.0.1:8080/about.html"); code != 0 || out == "" {
		t.Errorf("wget inside the sandbox: code %d, output %q", code, out)
	}
}
