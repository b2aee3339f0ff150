package sandboxtest_test

import (
	"context"
	"errors"
	cerrdefs "github.com/containerd/errdefs"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/internal/testenv"
	"github.com/opensbx/opensbx/sandboxtest"
)

// envSuite selects the suite TestBenchSuite runs as a child process of
// BenchmarkSuite: "sandboxtest", "opensbx", "sdk" or "empty".
const envSuite = "SANDBOXTEST_BENCH_SUITE"

// suiteSize is the number of parallel tests in one suite.
const suiteSize = 50

// httpdArgv is the server every test of the suites starts.
var httpdArgv = []string{"httpd", "-f", "-p", "8080", "-h", "/tmp"}

// BenchmarkSuite runs a suite of 50 parallel tests (-test.parallel=50),
// each starting busybox httpd in a sandbox with a published port, waiting
// for the port and removing the sandbox, as a child test process: once
// written with sandboxtest, once with plain Docker SDK calls (create,
// start, inspect, wait for the port, remove), once with one shared
// opensbx.Manager and no sandboxtest (Create, wait, Delete: the library's
// own cost, so the difference to sandboxtest is what sandboxtest adds), and
// once empty to show what starting the child process costs. One op is one
// whole suite.
//
//	go test -run '^$' -bench BenchmarkSuite -benchtime 1x ./sandboxtest
func BenchmarkSuite(b *testing.B) {
	cli := testenv.Engine(b)
	testenv.Images(b, cli)
	for _, suite := range []string{"empty", "sdk", "opensbx", "sandboxtest"} {
		b.Run(suite, func(b *testing.B) {
			for b.Loop() {
				cmd := exec.Command(os.Args[0], "-test.run=^TestBenchSuite$", "-test.parallel="+strconv.Itoa(suiteSize), "-test.count=1")
				cmd.Env = append(os.Environ(), envSuite+"="+suite)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("suite %s: %v\n%s", suite, err, out)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/suiteSize, "ms/test")
		})
	}
}

// TestBenchSuite is the suite BenchmarkSuite runs in a child process.
func TestBenchSuite(t *testing.T) {
	suite := os.Getenv(envSuite)
	var body func(t *testing.T)
	switch suite {
	case "":
		t.Skip("run by BenchmarkSuite")
	case "empty":
		return
	case "sandboxtest":
		body = func(t *testing.T) {
			sb := sandboxtest.New(t, busybox,
				sandboxtest.Ports("8080"),
				sandboxtest.Command(httpdArgv...),
				sandboxtest.WaitFor(sandboxtest.ForListeningPort("8080").WithTimeout(2*time.Minute)),
			)
			_ = sb.HostPort("8080")
		}
	case "opensbx":
		m, err := opensbx.New(context.Background(), opensbx.WithNamespace("sandboxtest-bench-"+sandboxtest.NewRunID()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		body = func(t *testing.T) { managerTest(t, m) }
	case "sdk":
		cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		body = func(t *testing.T) { sdkTest(t, cli) }
	default:
		t.Fatalf("unknown suite %q", suite)
	}
	for i := range suiteSize {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			body(t)
		})
	}
}

// sdkTest is one test of the suite written with the Docker SDK alone, the
// way a careful test would: removal in t.Cleanup, a label to find leaks.
func sdkTest(t *testing.T, cli *client.Client) {
	ctx := t.Context()
	port := nat.Port("8080/tcp")
	resp, err := cli.ContainerCreate(ctx,
		&container.Config{
			Image:        busybox,
			Cmd:          httpdArgv,
			ExposedPorts: nat.PortSet{port: {}},
			Labels:       map[string]string{"opensbx.sandboxtest.bench": "sdk"},
		},
		&container.HostConfig{PortBindings: nat.PortMap{port: {{HostIP: "127.0.0.1"}}}},
		nil, nil, "")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := cli.ContainerRemove(ctx, resp.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove: %v", err)
		}
	})
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	c, err := cli.ContainerInspect(ctx, resp.ID)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	bindings := c.NetworkSettings.Ports[port]
	if len(bindings) == 0 {
		t.Fatalf("port not published")
	}
	waitPort(t, net.JoinHostPort("127.0.0.1", bindings[0].HostPort))
}

// managerTest is one test of the suite written with a shared Manager and
// no sandboxtest.
func managerTest(t *testing.T, m *opensbx.Manager) {
	ctx := t.Context()
	res, err := m.Create(ctx, opensbx.CreateOptions{Image: busybox, Ports: []string{"8080"}, Command: httpdArgv})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := m.Delete(ctx, res.ID); err != nil && !errors.Is(err, opensbx.ErrNotFound) {
			t.Errorf("delete: %v", err)
		}
	})
	waitPort(t, net.JoinHostPort("127.0.0.1", res.PortMap["8080/tcp"]))
}

func waitPort(t *testing.T, addr string) {
	deadline := time.Now().Add(2 * time.Minute)
	for !portOpen(addr) {
		if time.Now().After(deadline) {
			t.Fatalf("port %s not ready", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// portOpen is the same probe as ForListeningPort: connected, and not
// closed at once by the engine's port proxy.
func portOpen(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
	var buf [1]byte
	n, err := conn.Read(buf[:])
	var ne net.Error
	return n > 0 || errors.As(err, &ne) && ne.Timeout()
}
