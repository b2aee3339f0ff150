package opensbx

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// managerRoundTrip runs `echo hi` through the Manager: start, wait for the
// exit code, read the output.
func managerRoundTrip(ctx context.Context, m *Manager, sandboxID string) error {
	c, err := m.Exec(ctx, sandboxID, ExecOptions{Command: "echo", Args: []string{"hi"}})
	if err != nil {
		return err
	}
	done, err := m.WaitCommand(ctx, sandboxID, c.ID)
	if err != nil || done.ExitCode == nil || *done.ExitCode != 0 {
		return fmt.Errorf("wait: %v %+v", err, done)
	}
	out, err := m.CommandOutput(ctx, sandboxID, c.ID)
	if err != nil || string(out.Stdout) != "hi\n" {
		return fmt.Errorf("output: %v %q", err, out.Stdout)
	}
	return nil
}

// rawRoundTrip does the same work with raw SDK calls, the way a careful
// caller would: demultiplex to EOF, then poll the exec until it reports
// its exit code.
func rawRoundTrip(ctx context.Context, cli *client.Client, containerID string) error {
	created, err := cli.ContainerExecCreate(ctx, containerID, container.ExecOptions{
		Cmd: []string{"echo", "hi"}, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return err
	}
	hj, err := cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return err
	}
	var stdout, stderr bytes.Buffer
	_, err = stdcopy.StdCopy(&stdout, &stderr, hj.Reader)
	hj.Close()
	if err != nil {
		return err
	}
	for {
		ins, err := cli.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return err
		}
		if !ins.Running {
			if ins.ExitCode != 0 {
				return fmt.Errorf("exit %d", ins.ExitCode)
			}
			break
		}
		time.Sleep(time.Millisecond)
	}
	if stdout.String() != "hi\n" {
		return fmt.Errorf("output %q", stdout.String())
	}
	return nil
}

// BenchmarkExecRoundTrip measures one `echo hi` round trip (start, wait for
// the exit code, read the output) through the Manager and with the same
// work done by raw Docker SDK calls, on one busybox sandbox.
//
//	go test -run '^$' -bench 'BenchmarkExecRoundTrip$' -benchtime 100x -count 5 .
func BenchmarkExecRoundTrip(b *testing.B) {
	m, cli := newTestManager(b)
	sb := newBusybox(b, m, CreateOptions{})
	ctx := context.Background()
	b.Run("manager", func(b *testing.B) {
		for b.Loop() {
			if err := managerRoundTrip(ctx, m, sb.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-sdk", func(b *testing.B) {
		for b.Loop() {
			if err := rawRoundTrip(ctx, cli, sb.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkExecRoundTripPaired runs the Manager and the raw round trip
// alternately in each iteration and reports both means and their ratio, so
// load from other work on the machine hits both alike.
//
//	go test -run '^$' -bench 'BenchmarkExecRoundTripPaired' -benchtime 200x .
func BenchmarkExecRoundTripPaired(b *testing.B) {
	m, cli := newTestManager(b)
	sb := newBusybox(b, m, CreateOptions{})
	ctx := context.Background()
	var tm, tr time.Duration
	i := 0
	for b.Loop() {
		steps := []func() error{
			func() error { return managerRoundTrip(ctx, m, sb.ID) },
			func() error { return rawRoundTrip(ctx, cli, sb.ID) },
		}
		if i%2 == 1 {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for j, step := range steps {
			start := time.Now()
			if err := step(); err != nil {
				b.Fatal(err)
			}
			if (j == 0) == (i%2 == 0) {
				tm += time.Since(start)
			} else {
				tr += time.Since(start)
			}
		}
		i++
	}
	b.ReportMetric(float64(tm.Nanoseconds())/float64(i), "manager-ns/op")
	b.ReportMetric(float64(tr.Nanoseconds())/float64(i), "raw-ns/op")
	b.ReportMetric(float64(tm)/float64(tr), "manager/raw")
}
