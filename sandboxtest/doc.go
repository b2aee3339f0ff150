// Package sandboxtest starts Opensbx sandboxes from Go tests: one call gives
// a running sandbox that is ready (its wait strategies passed) and that is
// removed when the test ends, also when the test fails or panics.
//
//	func TestServer(t *testing.T) {
//		t.Parallel()
//		sb := sandboxtest.New(t, "busybox:1.36",
//			sandboxtest.Ports("8080"),
//			sandboxtest.Command("httpd", "-f", "-p", "8080", "-h", "/tmp"),
//			sandboxtest.WaitFor(sandboxtest.ForListeningPort("8080")),
//		)
//		sb.WriteFile("/tmp/index.html", []byte("hello"))
//		resp, err := http.Get("http://" + sb.HostPort("8080") + "/index.html")
//		...
//	}
//
// # Engine
//
// New talks to the Docker engine named by the environment (DOCKER_HOST and
// friends), or through a Manager the caller passes with WithManager. When no
// engine answers, New fails the test with a message saying so; it skips the
// test instead only when asked to, with SkipIfNoEngine or by setting the
// environment variable SANDBOXTEST_SKIP_NO_ENGINE=1.
//
// # Leaks
//
// Every sandbox New makes carries two labels: LabelRun, the id of the New
// call that made it, and LabelDeadline, the Unix time after which nobody
// needs it any more (its TTL plus a grace period). While the test process
// lives, the sandbox is deleted by t.Cleanup, or by its Manager when its TTL
// passes. When the process dies without running its cleanups (SIGKILL, a
// crash of the test binary, a power cut), the next New anywhere on the same
// engine sweeps it away once its deadline passed (see Sweep). The default
// TTL is the time the test binary has left before its -timeout, so a killed
// run's sandboxes never outlive what the run could have used.
//
// # Concurrency
//
// The package has no package-level mutable state: each New call makes its
// own Manager (in its own namespace) unless one is passed in, so New is safe
// under t.Parallel. The helpers on Sandbox fail the test through t and, like
// t.Fatal, must be called from the test's goroutine; the wait strategies
// return errors and may be used from any goroutine.
//
// # What it does not do
//
// The main process's output is not captured by Opensbx, so there is no wait
// for "a line in the container's log": ForCommandOutput runs a command (for
// example `tail -f /var/log/app.log`, or the server itself) and watches its
// output instead.
package sandboxtest
