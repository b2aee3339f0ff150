package sandboxtest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	cerrdefs "github.com/containerd/errdefs"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/internal/testenv"
	"github.com/opensbx/opensbx/sandboxtest"
)

// envChild gates the helper tests that only run as child processes of
// TestPanicCleansUp and TestKilledProcessIsSwept.
const envChild = "SANDBOXTEST_TEST_CHILD"

const busybox = testenv.BusyboxImage

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "" && os.Getenv(envSuite) == "" {
		// Build the test images once for the whole binary (child processes
		// run after the parent built them).
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if cli, err := testenv.Connect(ctx); err == nil {
			if err := testenv.EnsureImages(ctx, cli); err != nil {
				fmt.Fprintln(os.Stderr, "test images:", err)
				os.Exit(1)
			}
			cli.Close()
		}
		cancel()
	}
	os.Exit(m.Run())
}

// engine returns a Docker client for checking what the tests left behind.
func engine(t *testing.T) *client.Client {
	t.Helper()
	return testenv.Engine(t)
}

// sweeper returns a Manager to sweep with (its namespace is its own).
func sweeper(t *testing.T) *opensbx.Manager {
	t.Helper()
	m, err := opensbx.New(context.Background(), opensbx.WithNamespace("sandboxtest-sweeper-"+strings.ToLower(sandboxtest.NewRunID())))
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// containersOfRuns lists the containers labelled with one of runs.
func containersOfRuns(t *testing.T, cli *client.Client, runs ...string) []container.Summary {
	t.Helper()
	cs, err := cli.ContainerList(context.Background(), container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", sandboxtest.LabelRun)),
	})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	want := map[string]bool{}
	for _, r := range runs {
		want[r] = true
	}
	var out []container.Summary
	for _, c := range cs {
		if want[c.Labels[sandboxtest.LabelRun]] {
			out = append(out, c)
		}
	}
	return out
}

func exists(t *testing.T, cli *client.Client, id string) bool {
	t.Helper()
	_, err := cli.ContainerInspect(context.Background(), id)
	if cerrdefs.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return true
}

// TestParallelLeavesNothing: 20 parallel tests, each with its own sandbox,
// leave no container once they are done.
func TestParallelLeavesNothing(t *testing.T) {
	is := is.New(t)
	cli := engine(t)
	var mu sync.Mutex
	runs := map[string]string{} // run id -> sandbox id
	t.Run("group", func(t *testing.T) {
		for i := range 20 {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				sb := sandboxtest.New(t, busybox)
				sb.WriteFile("/tmp/n", []byte(strconv.Itoa(i)))
				if got := string(sb.ReadFile("/tmp/n")); got != strconv.Itoa(i) {
					t.Errorf("read back %q", got)
				}
				stdout, _, code := sb.Exec("cat", "/tmp/n")
				if code != 0 || stdout != strconv.Itoa(i) {
					t.Errorf("exec: code %d, stdout %q", code, stdout)
				}
				mu.Lock()
				runs[sb.RunID()] = sb.ID()
				mu.Unlock()
			})
		}
	})
	is.Equal(len(runs), 20) // one run id per sandbox
	ids := make([]string, 0, len(runs))
	for run, id := range runs {
		ids = append(ids, run)
		is.True(!exists(t, cli, id)) // sandbox removed
	}
	is.Equal(len(containersOfRuns(t, cli, ids...)), 0) // no container of these runs is left
}

// childLine waits for a line starting with prefix on r, returning its
// fields; it fails the test when r ends first.
func childLine(t *testing.T, r io.Reader, prefix string, out *strings.Builder) []string {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if f, ok := strings.CutPrefix(sc.Text(), prefix+" "); ok {
			return strings.Fields(f)
		}
	}
	t.Fatalf("child ended without a %s line; its output:\n%s", prefix, out)
	return nil
}

// TestHelperPanics is run by TestPanicCleansUp as a child process: it
// creates a sandbox, reports it and panics.
func TestHelperPanics(t *testing.T) {
	if os.Getenv(envChild) != "panic" {
		t.Skip("helper process for TestPanicCleansUp")
	}
	sb := sandboxtest.New(t, busybox)
	fmt.Printf("SANDBOX %s %s\n", sb.RunID(), sb.ID())
	panic("helper test panics on purpose")
}

// TestPanicCleansUp: a test that panics still removes its sandbox.
func TestPanicCleansUp(t *testing.T) {
	is := is.New(t)
	cli := engine(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperPanics$", "-test.v")
	cmd.Env = append(os.Environ(), envChild+"=panic")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	is.True(errors.As(err, &ee))                                                   // the child test binary failed
	is.True(strings.Contains(string(out), "panic: helper test panics on purpose")) // because the test panicked
	m := regexp.MustCompile(`(?m)^SANDBOX (\S+) ([0-9a-f]{64})$`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("child printed no SANDBOX line:\n%s", out)
	}
	is.True(!exists(t, cli, m[2]))                   // the panicking test's sandbox was removed
	is.Equal(len(containersOfRuns(t, cli, m[1])), 0) // nothing of its run is left
}

// TestHelperHangs is run by TestKilledProcessIsSwept as a child process: it
// creates a sandbox with an 8 s TTL (long enough for the parent to kill it
// before its own Manager expires the sandbox), reports it and waits to be
// killed.
func TestHelperHangs(t *testing.T) {
	if os.Getenv(envChild) != "hang" {
		t.Skip("helper process for TestKilledProcessIsSwept")
	}
	sb := sandboxtest.New(t, busybox, sandboxtest.TTL(8*time.Second))
	fmt.Printf("READY %s %s %d\n", sb.RunID(), sb.ID(), sb.Deadline().Unix())
	time.Sleep(time.Minute)
	t.Fatal("not killed")
}

// TestKilledProcessIsSwept: a test binary killed with SIGKILL runs no
// cleanup and leaves its sandbox; Sweep leaves it alone before its
// deadline, and the next New removes it after.
func TestKilledProcessIsSwept(t *testing.T) {
	is := is.New(t)
	cli := engine(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHangs$")
	cmd.Env = append(os.Environ(), envChild+"=hang")
	stdout, err := cmd.StdoutPipe()
	is.NoErr(err)
	cmd.Stderr = os.Stderr
	is.NoErr(cmd.Start())
	var out strings.Builder
	f := childLine(t, stdout, "READY", &out)
	is.NoErr(cmd.Process.Kill()) // SIGKILL
	go io.Copy(io.Discard, stdout)
	cmd.Wait()
	is.Equal(len(f), 3) // READY run id deadline
	run, id := f[0], f[1]
	secs, err := strconv.ParseInt(f[2], 10, 64)
	is.NoErr(err)
	deadline := time.Unix(secs, 0)

	is.True(exists(t, cli, id)) // the killed process left its sandbox behind
	swept, err := sandboxtest.Sweep(context.Background(), sweeper(t))
	is.NoErr(err)
	for _, s := range swept {
		is.True(s != id) // Sweep keeps a sandbox before its deadline
	}
	is.True(exists(t, cli, id)) // still there before the deadline

	time.Sleep(time.Until(deadline) + 1100*time.Millisecond)
	sandboxtest.New(t, busybox)                     // the next run's New sweeps
	is.True(!exists(t, cli, id))                    // removed by the next New's sweep
	is.Equal(len(containersOfRuns(t, cli, run)), 0) // nothing of the killed run is left
}

// TestSweep: Sweep removes exactly the containers labelled with a run id
// whose deadline passed.
func TestSweep(t *testing.T) {
	is := is.New(t)
	cli := engine(t)
	ctx := context.Background()
	past := strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 10)
	future := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	run := sandboxtest.NewRunID()
	mk := func(labels map[string]string) string {
		t.Helper()
		labels["sandboxtest-test"] = run
		r, err := cli.ContainerCreate(ctx, &container.Config{Image: busybox, Cmd: []string{"true"}, Labels: labels}, nil, nil, nil, "")
		is.NoErr(err) // create container
		t.Cleanup(func() { cli.ContainerRemove(ctx, r.ID, container.RemoveOptions{Force: true}) })
		return r.ID
	}
	const managed = "org.opensbx.managed"
	expired := mk(map[string]string{managed: "true", sandboxtest.LabelRun: run, sandboxtest.LabelDeadline: past})
	live := mk(map[string]string{managed: "true", sandboxtest.LabelRun: run, sandboxtest.LabelDeadline: future})
	undated := mk(map[string]string{managed: "true", sandboxtest.LabelRun: run})
	garbled := mk(map[string]string{managed: "true", sandboxtest.LabelRun: run, sandboxtest.LabelDeadline: "soon"})
	foreign := mk(map[string]string{managed: "true", sandboxtest.LabelDeadline: past})
	notOpensbx := mk(map[string]string{sandboxtest.LabelRun: run, sandboxtest.LabelDeadline: past}) // labelled, but not made by Opensbx

	removed, err := sandboxtest.Sweep(ctx, sweeper(t))
	is.NoErr(err)
	has := func(id string) bool {
		for _, r := range removed {
			if r == id {
				return true
			}
		}
		return false
	}
	is.True(has(expired))             // expired sandbox reported removed
	is.True(!exists(t, cli, expired)) // and gone
	for _, id := range []string{live, undated, garbled, foreign, notOpensbx} {
		is.True(!has(id))           // not reported
		is.True(exists(t, cli, id)) // and still there
	}
}

// TestSweepManager: SweepManager removes the expired sandboxes of a shared
// Manager made with RunLabels.
func TestSweepManager(t *testing.T) {
	is := is.New(t)
	cli := engine(t)
	ctx := context.Background()
	m, err := opensbx.New(ctx, opensbx.WithDockerClient(cli),
		opensbx.WithNamespace("sandboxtest-sweep-"+strings.ToLower(sandboxtest.NewRunID())),
		opensbx.WithLabels(sandboxtest.RunLabels(-time.Minute))) // deadline already passed
	is.NoErr(err)
	t.Cleanup(func() { m.Close() })
	res, err := m.Create(ctx, opensbx.CreateOptions{Image: busybox})
	is.NoErr(err)
	t.Cleanup(func() { m.Delete(context.Background(), res.ID) })
	removed, err := sandboxtest.SweepManager(ctx, m)
	is.NoErr(err)
	is.Equal(removed, []string{res.ID}) // the expired sandbox
	_, err = m.Get(ctx, res.ID)
	is.True(errors.Is(err, opensbx.ErrNotFound)) // is gone
}

// recorder is a testing.TB that records Fatalf, Skipf and Errorf instead
// of stopping the test; everything else goes to the real test.
type recorder struct {
	testing.TB
	mu                  sync.Mutex
	fatals, skips, errs []string
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}

func (r *recorder) Skipf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skips = append(r.skips, fmt.Sprintf(format, args...))
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestNoEngine: an unreachable engine fails the test with a clear message,
// unless the caller opted into skipping.
func TestNoEngine(t *testing.T) {
	is := is.New(t)
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	t.Setenv(sandboxtest.EnvSkipNoEngine, "")

	r := &recorder{TB: t}
	is.True(sandboxtest.New(r, busybox) == nil)
	is.Equal(len(r.skips), 0) // not skipped
	is.Equal(len(r.fatals), 1)
	is.True(strings.Contains(r.fatals[0], "Docker engine unreachable"))    // says what is wrong
	is.True(strings.Contains(r.fatals[0], "sandboxtest.SkipIfNoEngine()")) // and how to skip instead
	is.True(strings.Contains(r.fatals[0], "/nonexistent/docker.sock"))     // with the engine's error

	r = &recorder{TB: t}
	is.True(sandboxtest.New(r, busybox, sandboxtest.SkipIfNoEngine()) == nil)
	is.Equal(len(r.fatals), 0)
	is.Equal(len(r.skips), 1) // skipped with the option

	t.Setenv(sandboxtest.EnvSkipNoEngine, "1")
	r = &recorder{TB: t}
	is.True(sandboxtest.New(r, busybox) == nil)
	is.Equal(len(r.fatals), 0)
	is.Equal(len(r.skips), 1) // skipped with the environment variable
}

// TestBadOptions: invalid options fail the test before anything is made.
func TestBadOptions(t *testing.T) {
	is := is.New(t)
	r := &recorder{TB: t}
	is.True(sandboxtest.New(r, busybox, sandboxtest.Env("NOEQUALS"), sandboxtest.TTL(-time.Second)) == nil)
	is.Equal(len(r.fatals), 1)
	is.True(strings.Contains(r.fatals[0], `Env("NOEQUALS")`)) // names the bad env entry
	is.True(strings.Contains(r.fatals[0], "TTL(-1s)"))        // and the bad TTL
}

// TestMissingImage: a missing image fails the test and says how to fix it.
func TestMissingImage(t *testing.T) {
	is := is.New(t)
	engine(t)
	r := &recorder{TB: t}
	is.True(sandboxtest.New(r, "opensbx-test/does-not-exist:1") == nil)
	is.Equal(len(r.fatals), 1)
	is.True(strings.Contains(r.fatals[0], "opensbx-test/does-not-exist:1")) // names the image
	is.True(strings.Contains(r.fatals[0], "sandboxtest.PullMissing()"))     // and the fix
}

// httpd starts a sandbox running busybox httpd on port 8080 serving /tmp.
func httpd(t *testing.T, opts ...sandboxtest.Option) *sandboxtest.Sandbox {
	t.Helper()
	return sandboxtest.New(t, busybox, append([]sandboxtest.Option{
		sandboxtest.Ports("8080"),
		sandboxtest.Command("httpd", "-f", "-p", "8080", "-h", "/tmp"),
	}, opts...)...)
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	sb := httpd(t, sandboxtest.WaitFor(sandboxtest.ForListeningPort("8080").WithTimeout(30*time.Second)))
	is.True(sb.ID() != "" && sb.Name() != "")
	is.True(strings.HasPrefix(sb.RunID(), "p"+strconv.Itoa(os.Getpid())+"-")) // run id names the process
	is.True(sb.Deadline().After(time.Now()))
	is.Equal(sb.Info().Labels[sandboxtest.LabelDeadline], strconv.FormatInt(sb.Deadline().Unix(), 10)) // deadline label
	is.True(sb.Manager() != nil)

	hp := sb.HostPort("8080")
	is.True(strings.HasPrefix(hp, "127.0.0.1:")) // published on loopback
	is.Equal(sb.HostPort("8080/tcp"), hp)

	sb.WriteFile("/tmp/dir/page.html", []byte("<p>hi</p>"))
	is.Equal(string(sb.ReadFile("/tmp/dir/page.html")), "<p>hi</p>") // read back
	resp, err := http.Get("http://" + hp + "/dir/page.html")
	is.NoErr(err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	is.Equal(resp.StatusCode, 200)
	is.Equal(string(body), "<p>hi</p>") // served over the published port

	// HostPort of a port that is not published fails the test.
	r := &recorder{TB: t}
	other := sandboxtest.New(r, busybox, sandboxtest.Ports("8080"))
	is.Equal(len(r.fatals), 0)
	other.HostPort("9999")
	is.Equal(len(r.fatals), 1)
	is.True(strings.Contains(r.fatals[0], `port 9999/tcp of sandbox `+other.Name()+` is not published (published: [8080/tcp]); add it with sandboxtest.Ports("9999")`))
}

// waitErr asserts err is a *WaitError that timed out, and returns its text.
func waitErr(t *testing.T, err error) string {
	t.Helper()
	var we *sandboxtest.WaitError
	if !errors.As(err, &we) {
		t.Fatalf("want a *WaitError, got %v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a timeout, got %v", err)
	}
	return err.Error()
}

func TestWaitPort(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()

	t.Run("ready", func(t *testing.T) {
		t.Parallel()
		sb := httpd(t)
		is := is.New(t)
		is.NoErr(sandboxtest.ForListeningPort("8080").WithTimeout(30*time.Second).WaitUntilReady(ctx, sb))
		is.NoErr(sandboxtest.ForListeningPort("").WithTimeout(30*time.Second).WaitUntilReady(ctx, sb)) // main port
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		sb := sandboxtest.New(t, busybox, sandboxtest.Ports("8080")) // nothing listens
		msg := waitErr(t, sandboxtest.ForListeningPort("8080").WithTimeout(time.Second).WaitUntilReady(ctx, sb))
		is.True(strings.Contains(msg, "wait for TCP port 8080/tcp at "+sb.HostPort("8080")+" to accept connections")) // what
		is.True(strings.Contains(msg, "timed out after 1s"))                                                          // how long
		is.True(strings.Contains(msg, "last seen: "))                                                                 // last error
		t.Log(msg)
	})
	t.Run("unpublished", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		sb := sandboxtest.New(t, busybox, sandboxtest.Ports("8080"))
		err := sandboxtest.ForListeningPort("9090").WithTimeout(time.Minute).WaitUntilReady(ctx, sb)
		is.True(err != nil)
		is.True(strings.Contains(err.Error(), "port 9090/tcp of sandbox "+sb.Name()+" is not published")) // fails at once
	})
	_ = is
}

func TestWaitHTTP(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	sb := httpd(t)
	sb.WriteFile("/tmp/health", []byte("ok"))
	is.NoErr(sandboxtest.ForHTTP("/health").WithPort("8080").WithTimeout(30*time.Second).WaitUntilReady(ctx, sb))
	is.NoErr(sandboxtest.ForHTTP("missing").WithStatus(404).WithTimeout(30*time.Second).WaitUntilReady(ctx, sb)) // main port, 404

	msg := waitErr(t, sandboxtest.ForHTTP("/missing").WithPort("8080").WithTimeout(time.Second).WaitUntilReady(ctx, sb))
	is.True(strings.Contains(msg, "wait for HTTP GET http://"+sb.HostPort("8080")+"/missing (container port 8080/tcp) to answer 200")) // what
	is.True(strings.Contains(msg, "timed out after 1s"))                                                                               // how long
	is.True(strings.Contains(msg, "last seen: status 404"))                                                                            // what it got
	t.Log(msg)

	idle := sandboxtest.New(t, busybox, sandboxtest.Ports("8080")) // nothing listens
	msg = waitErr(t, sandboxtest.ForHTTP("/").WithTimeout(time.Second).WaitUntilReady(ctx, idle))
	is.True(strings.Contains(msg, "last seen: ")) // the transport error
	is.True(!strings.Contains(msg, "nothing seen"))
	t.Log(msg)
}

func TestWaitFuncAndAll(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	sb := httpd(t)
	n := 0
	ok := sandboxtest.ForFunc("the third call", func(context.Context, *sandboxtest.Sandbox) error {
		if n++; n < 3 {
			return fmt.Errorf("call %d", n)
		}
		return nil
	}).WithPollInterval(10 * time.Millisecond)
	is.NoErr(sandboxtest.WaitAll(sandboxtest.ForListeningPort("8080").WithTimeout(30*time.Second), ok).WaitUntilReady(ctx, sb))
	is.Equal(n, 3)

	never := sandboxtest.ForFunc("the moon to turn blue", func(context.Context, *sandboxtest.Sandbox) error {
		return errors.New("still grey")
	}).WithTimeout(300 * time.Millisecond)
	msg := waitErr(t, sandboxtest.WaitAll(ok, never).WaitUntilReady(ctx, sb))
	is.True(strings.Contains(msg, "wait for the moon to turn blue: timed out after 300ms")) // the failing one
	is.True(strings.Contains(msg, "last seen: still grey"))                                 // its last error
}

// TestNewWaitFails: a failing wait fails New with the strategy's message
// and the sandbox's state, and the sandbox is removed all the same.
func TestNewWaitFails(t *testing.T) {
	is := is.New(t)
	cli := engine(t)
	var r *recorder
	t.Run("inner", func(t *testing.T) {
		r = &recorder{TB: t}
		sb := sandboxtest.New(r, busybox, sandboxtest.Ports("8080"), sandboxtest.Command("false"),
			sandboxtest.WaitFor(sandboxtest.ForListeningPort("8080").WithTimeout(time.Second)))
		if sb != nil {
			t.Error("New returned a sandbox")
		}
	})
	is.Equal(len(r.fatals), 1)
	msg := r.fatals[0]
	t.Log(msg)
	is.True(strings.Contains(msg, "not ready: wait for TCP port 8080/tcp"))               // what was waited for
	is.True(strings.Contains(msg, "[sandbox state: stopped (main process exit code 1)]")) // why it failed
	m := regexp.MustCompile(`\(([0-9a-f]{12})\) not ready`).FindStringSubmatch(msg)
	is.True(m != nil)              // the message names the sandbox
	is.True(!exists(t, cli, m[1])) // removed by the inner test's cleanup
}

// TestWithManager: tests sharing a caller's Manager get their sandboxes
// removed, leave the Manager open, and carry run and deadline labels of
// their own.
func TestWithManager(t *testing.T) {
	is := is.New(t)
	cli := engine(t)
	labels := sandboxtest.RunLabels(time.Hour)
	m, err := opensbx.New(context.Background(), opensbx.WithDockerClient(cli),
		opensbx.WithNamespace("sandboxtest-shared-"+sandboxtest.NewRunID()),
		opensbx.WithLabels(labels), opensbx.WithDeleteOnExpiry(true))
	is.NoErr(err)
	t.Cleanup(func() { m.Close() })
	t.Run("group", func(t *testing.T) {
		for i := range 3 {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				sb := sandboxtest.New(t, busybox, sandboxtest.WithManager(m))
				if sb.Manager() != m {
					t.Errorf("sandbox not made through the shared Manager")
				}
				// Its own run id and deadline, so the sweeper finds it after a crash.
				info := sb.Info()
				if sb.RunID() == "" || sb.RunID() == labels[sandboxtest.LabelRun] || info.Labels[sandboxtest.LabelDeadline] == "" {
					t.Errorf("sandbox labels %v: want its own run id and deadline", info.Labels)
				}
			})
		}
	})
	left, err := m.List(context.Background())
	is.NoErr(err)          // the Manager is still open
	is.Equal(len(left), 0) // and every sandbox is gone

	r := &recorder{TB: t}
	is.True(sandboxtest.New(r, busybox, sandboxtest.WithManager(m), sandboxtest.Namespace("x")) == nil)
	is.Equal(len(r.fatals), 1)
	is.True(strings.Contains(r.fatals[0], "Namespace and WithManager exclude each other"))
}
