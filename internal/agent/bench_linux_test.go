//go:build linux

package agent_test

import (
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/server"
	"github.com/opensbx/opensbx/internal/agent/wire"
	"github.com/opensbx/opensbx/internal/outbuf"
	"github.com/opensbx/opensbx/internal/testenv"
)

// roundTrip execs `echo hi` and follows it to its exit.
func roundTrip(b *testing.B, c *agent.Client, i int) {
	id := "cmd_bench" + strconv.Itoa(i)
	ctx := testCtx(b)
	if _, err := c.Exec(ctx, agent.ExecRequest{ID: id, Argv: []string{"echo", "hi"}}); err != nil {
		b.Fatal(err)
	}
	var out []byte
	end, err := c.Follow(ctx, id, outbuf.Pos{}, func(ch outbuf.Chunk) error {
		out = append(out, ch.Data...)
		return nil
	})
	if err != nil || *end.ExitCode != 0 || string(out) != "hi\n" {
		b.Fatalf("round trip: %v %q", err, out)
	}
}

// roundTripOne is roundTrip on one stream (ExecFollow).
func roundTripOne(b *testing.B, c *agent.Client, i int) {
	var out []byte
	end, err := c.ExecFollow(testCtx(b), agent.ExecRequest{ID: "cmd_bench1_" + strconv.Itoa(i), Argv: []string{"echo", "hi"}}, nil, func(ch outbuf.Chunk) error {
		out = append(out, ch.Data...)
		return nil
	})
	if err != nil || *end.ExitCode != 0 || string(out) != "hi\n" {
		b.Fatalf("round trip: %v %q", err, out)
	}
}

// BenchmarkRoundTripExecFollow: the round trip on one stream, in-process.
func BenchmarkRoundTripExecFollow(b *testing.B) {
	e := newEnv(b, server.Config{MaxFinished: 16})
	i := 0
	for b.Loop() {
		roundTripOne(b, e.c, i)
		i++
	}
}

// BenchmarkEngineRoundTripExecFollow: the round trip on one stream,
// through the real engine.
func BenchmarkEngineRoundTripExecFollow(b *testing.B) {
	cli := testenv.Engine(b)
	testenv.Images(b, cli)
	c, _ := benchSandbox(b, cli)
	i := 0
	for b.Loop() {
		roundTripOne(b, c, i)
		i++
	}
}

// BenchmarkRoundTrip: exec `echo hi` and follow to its exit, over an open
// in-process channel (a unix socket pair) to a server on this host.
func BenchmarkRoundTrip(b *testing.B) {
	e := newEnv(b, server.Config{MaxFinished: 16})
	i := 0
	for b.Loop() {
		roundTrip(b, e.c, i)
		i++
	}
}

// BenchmarkFileWriteRead1KiB: write and read back 1 KiB, in-process.
func BenchmarkFileWriteRead1KiB(b *testing.B) {
	e := newEnv(b, server.Config{})
	data := bytes.Repeat([]byte("x"), 1024)
	p := e.dir + "/f"
	for b.Loop() {
		if _, err := e.c.WriteFile(testCtx(b), p, bytes.NewReader(data), 1024, 0); err != nil {
			b.Fatal(err)
		}
		rc, _, err := e.c.ReadFile(testCtx(b), p, 0)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != 1024 {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkEngineRoundTrip: the same round trip through the real engine:
// a busybox sandbox, the agent under Init, the channel an exec of connect.
func BenchmarkEngineRoundTrip(b *testing.B) {
	cli := testenv.Engine(b)
	testenv.Images(b, cli)
	c, id := benchSandbox(b, cli)
	i := 0
	for b.Loop() {
		roundTrip(b, c, i)
		i++
	}
	b.StopTimer()
	reportAgentRSS(b, c, id)
}

// BenchmarkEngineAgentIdleRSS reports the agent's resident memory in a
// fresh busybox sandbox with one open session and no command run yet.
func BenchmarkEngineAgentIdleRSS(b *testing.B) {
	cli := testenv.Engine(b)
	testenv.Images(b, cli)
	c, id := benchSandbox(b, cli)
	for b.Loop() {
		reportAgentRSS(b, c, id)
	}
}

// BenchmarkEngineFileWriteRead1KiB: 1 KiB written and read back through
// the real engine's channel.
func BenchmarkEngineFileWriteRead1KiB(b *testing.B) {
	cli := testenv.Engine(b)
	testenv.Images(b, cli)
	c, _ := benchSandbox(b, cli)
	data := bytes.Repeat([]byte("x"), 1024)
	for b.Loop() {
		if _, err := c.WriteFile(testCtx(b), "/tmp/f", bytes.NewReader(data), 1024, 0); err != nil {
			b.Fatal(err)
		}
		rc, _, err := c.ReadFile(testCtx(b), "/tmp/f", 0)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != 1024 {
			b.Fatal(n, err)
		}
	}
}

// reportAgentRSS reports the agent's resident memory in the sandbox, read
// through the agent itself, after the benchmark's traffic and idle.
func reportAgentRSS(b *testing.B, c *agent.Client, id string) {
	rc, _, err := c.ReadFile(testCtx(b), "/proc/"+strconv.Itoa(c.Info().PID)+"/status", 0)
	if err != nil {
		b.Fatal(err)
	}
	status, _ := io.ReadAll(rc)
	rc.Close()
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			b.ReportMetric(float64(kb), "agent-RSS-KiB")
		}
	}
}

// BenchmarkIdleSessionHeap measures the Manager side of idle sessions:
// the heap and goroutines of N open clients to an agent in another process
// (the program's daemon on this host, reached on its socket directly),
// fresh and after some traffic.
func BenchmarkIdleSessionHeap(b *testing.B) {
	const n = 100
	serve, sock, _ := startServe(b, "-max-finished", "4", "-max-sessions", "128")
	waitListening(b, sock)
	for b.Loop() {
		clients := make([]*agent.Client, 0, n)
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		for range n {
			conn, err := net.Dial("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			var hs [1]byte
			if _, err := io.ReadFull(conn, hs[:]); err != nil || hs[0] != wire.HandshakeOK {
				b.Fatal("handshake", err)
			}
			c, err := agent.NewClient(testCtx(b), conn)
			if err != nil {
				b.Fatal(err)
			}
			clients = append(clients, c)
		}
		runtime.GC()
		var fresh runtime.MemStats
		runtime.ReadMemStats(&fresh)
		g1 := runtime.NumGoroutine()
		for i, c := range clients { // some traffic, then idle again
			roundTrip(b, c, i)
			if _, err := c.WriteFile(testCtx(b), "/tmp/opensbx-bench-"+strconv.Itoa(os.Getpid()), bytes.NewReader(make([]byte, 256<<10)), 256<<10, 0); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var used runtime.MemStats
		runtime.ReadMemStats(&used)
		b.ReportMetric(float64(fresh.HeapAlloc-before.HeapAlloc)/n/1024, "KiB-heap/session")
		b.ReportMetric(float64(used.HeapAlloc-before.HeapAlloc)/n/1024, "KiB-heap/session-after-use")
		b.ReportMetric(float64(fresh.StackInuse-before.StackInuse)/n/1024, "KiB-stack/session")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/session")
		for _, c := range clients {
			c.Close()
		}
	}
	os.Remove("/tmp/opensbx-bench-" + strconv.Itoa(os.Getpid()))
	_ = serve
}

// benchSandbox starts a busybox sandbox with the agent and connects to it.
func benchSandbox(b *testing.B, cli *client.Client) (*agent.Client, string) {
	id := newSandbox(b, cli, testenv.BusyboxImage, []string{agentPath}, []string{"serve", "-max-finished", "16"})
	return connectAgent(b, cli, id), id
}

// BenchmarkEngineChannelFloor is the floor under the agent's numbers: a
// 16-byte write through an open exec of `cat` and back, with the same
// stdcopy demultiplexing, no agent involved.
func BenchmarkEngineChannelFloor(b *testing.B) {
	cli := testenv.Engine(b)
	testenv.Images(b, cli)
	id := newSandbox(b, cli, testenv.BusyboxImage, []string{"sleep"}, []string{"1000"})
	ctx := testCtx(b)
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{AttachStdin: true, AttachStdout: true, Cmd: []string{"cat"}})
	if err != nil {
		b.Fatal(err)
	}
	hj, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer hj.Close()
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, io.Discard, hj.Reader)
		pw.CloseWithError(err)
	}()
	msg := []byte("0123456789abcdef")
	buf := make([]byte, len(msg))
	for b.Loop() {
		if _, err := hj.Conn.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(pr, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSpawnFloor is the floor under the in-process round trips: this
// host starting `echo hi` the way the agent does (its own session, pipes)
// and waiting for its output and exit, without any protocol.
func BenchmarkSpawnFloor(b *testing.B) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	buf := make([]byte, 64)
	for b.Loop() {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		p, err := os.StartProcess("/bin/echo", []string{"echo", "hi"}, &os.ProcAttr{Files: []*os.File{null, w, w}, Sys: &syscall.SysProcAttr{Setsid: true}})
		w.Close()
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Read(buf); err != nil {
				break
			}
		}
		r.Close()
		p.Wait()
	}
}
