package sandboxtest_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/sandboxtest"
)

// testWebServer is what a test using sandboxtest looks like: the sandbox
// is ready when New returns and gone when the test ends.
func testWebServer(t *testing.T) {
	t.Parallel() // safe: every New has its own Manager
	sb := sandboxtest.New(t, "busybox:1.36",
		sandboxtest.Ports("8080"),
		sandboxtest.Resources(opensbx.Resources{MemoryMB: 64, CPUs: 0.5}),
	)
	sb.WriteFile("/www/index.html", []byte("hello"))
	sb.Start(opensbx.ExecOptions{Command: "httpd", Args: []string{"-f", "-p", "8080", "-h", "/www"}})
	sb.WaitFor(
		sandboxtest.ForListeningPort("8080").WithTimeout(10*time.Second),
		sandboxtest.ForHTTP("/index.html").WithPort("8080"),
	)

	resp, err := http.Get("http://" + sb.HostPort("8080") + "/index.html")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "hello" {
		t.Errorf("got %q", body)
	}

	// Commands: stdout, stderr and exit code; only transport errors fail.
	if out, _, code := sb.Exec("cat", "/www/index.html"); code != 0 || out != "hello" {
		t.Errorf("cat: %d %q", code, out)
	}
}

// A test starting a web server in a sandbox, waiting for it and talking to
// it over its published port. (The whole file is the example; testWebServer
// would be a TestXxx function in your package.)
func Example() {}
