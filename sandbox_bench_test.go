package opensbx

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/opensbx/opensbx/internal/testenv"
)

// rawCreateDelete does with raw SDK calls what Create + Delete do for a
// busybox sandbox with one published port: create under an init with the
// keep-alive sleep and limits, start, inspect for the host port, remove.
func rawCreateDelete(ctx context.Context, cli *client.Client) error {
	init := true
	resp, err := cli.ContainerCreate(ctx, &container.Config{
		Image:        testenv.BusyboxImage,
		Entrypoint:   keepAlive()[:1],
		Cmd:          keepAlive()[1:],
		Labels:       map[string]string{testRunLabel: testRun},
		ExposedPorts: nat.PortSet{"8080/tcp": {}},
	}, &container.HostConfig{
		Init:         &init,
		PortBindings: nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1"}}},
		Resources:    container.Resources{Memory: 1 << 30, MemorySwap: 1 << 30, NanoCPUs: 1e9},
	}, nil, nil, "")
	if err != nil {
		return err
	}
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		return err
	}
	if _, err := cli.ContainerInspect(ctx, resp.ID); err != nil {
		return err
	}
	return cli.ContainerRemove(ctx, resp.ID, container.RemoveOptions{Force: true})
}

// BenchmarkCreateDelete measures one sandbox's create-to-removed cycle
// through the Manager next to the same work in raw SDK calls, alternating
// the two in every iteration so load on the machine hits both alike.
//
//	go test -run '^$' -bench BenchmarkCreateDelete -benchtime 20x -count 3 .
func BenchmarkCreateDelete(b *testing.B) {
	m, cli := newTestManager(b)
	ctx := context.Background()
	var manager, raw time.Duration
	for i := 0; i < b.N; i++ {
		run := []func() error{
			func() error {
				start := time.Now()
				res, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Ports: []string{"8080"}})
				if err != nil {
					return err
				}
				err = m.Delete(ctx, res.ID)
				manager += time.Since(start)
				return err
			},
			func() error {
				start := time.Now()
				err := rawCreateDelete(ctx, cli)
				raw += time.Since(start)
				return err
			},
		}
		if i%2 == 1 {
			run[0], run[1] = run[1], run[0]
		}
		for _, f := range run {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(manager.Milliseconds())/float64(b.N), "manager-ms/op")
	b.ReportMetric(float64(raw.Milliseconds())/float64(b.N), "raw-ms/op")
	b.ReportMetric(float64(manager)/float64(raw), "manager/raw")
}

// BenchmarkStats takes one resource sample of a running sandbox (after the
// first, which Create primed): one one-shot engine call, CPU measured
// against the previous sample.
func BenchmarkStats(b *testing.B) {
	m, _ := newTestManager(b)
	sb := newBusybox(b, m, CreateOptions{})
	ctx := context.Background()
	if _, err := m.Stats(ctx, sb.ID); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.Stats(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
	}
}
