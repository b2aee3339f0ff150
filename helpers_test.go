package opensbx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	cerrdefs "github.com/containerd/errdefs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/opensbx/opensbx/internal/testenv"
)

// testRunLabel marks every container this test binary creates, so TestMain
// can remove whatever a failed test left behind.
const testRunLabel = "opensbx-test.run"

// testRun is this test binary's run id (set once in TestMain, read-only after).
var testRun = randomHex(6)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := sweepRun(); err != nil {
		fmt.Fprintln(os.Stderr, "sweep test containers:", err)
		code = 1
	}
	os.Exit(code)
}

// sweepRun removes every container of this run that a test left behind.
func sweepRun() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := testenv.Connect(ctx)
	if err != nil {
		return nil // no engine: nothing was created
	}
	defer cli.Close()
	return removeLabelled(ctx, cli, testRunLabel+"="+testRun)
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

// envNoAgent runs the suite with WithAgent(false): every command an engine
// exec, every file an archive request (make test runs the command and file
// tests both ways).
const envNoAgent = "OPENSBX_TEST_NO_AGENT"

// modeOpts are the options of the mode the suite runs in.
func modeOpts() []Option {
	if os.Getenv(envNoAgent) != "" {
		return []Option{WithAgent(false)}
	}
	return nil
}

// testNamespace returns a namespace unique to this test.
func testNamespace() string { return "t" + testRun + "-" + randomHex(4) }

// newTestManager returns a Manager in a fresh namespace on the test engine,
// with the test images built. Every container of the namespace is removed and
// the Manager closed when the test ends, also when it fails.
func newTestManager(t testing.TB, opts ...Option) (*Manager, *client.Client) {
	t.Helper()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	ns := testNamespace()
	all := append([]Option{
		WithDockerClient(cli),
		WithNamespace(ns),
		WithLabels(map[string]string{testRunLabel: testRun}),
		WithStopTimeout(2 * time.Second),
	}, append(modeOpts(), opts...)...)
	m, err := New(context.Background(), all...)
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	t.Cleanup(func() {
		m.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := removeLabelled(ctx, cli, labelNamespace+"="+ns); err != nil {
			t.Errorf("cleanup namespace %s: %v", ns, err)
		}
	})
	return m, cli
}

// newBusybox creates a running busybox sandbox with opts (Image filled in).
func newBusybox(t testing.TB, m *Manager, opts CreateOptions) *Sandbox {
	t.Helper()
	opts.Image = testenv.BusyboxImage
	res, err := m.Create(context.Background(), opts)
	if err != nil {
		t.Fatalf("create busybox sandbox: %v", err)
	}
	return res.Sandbox
}

// testWriter writes a Manager's log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
