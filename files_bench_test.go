package opensbx

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

// BenchmarkFilesRoundTrip writes a file and reads it back, through the
// Manager and with the raw SDK archive calls doing the same work (build a
// tar, CopyToContainer into an existing directory, CopyFromContainer, read
// the entry). The Manager adds an owner check (inspect) per call and stat
// calls on write (does the path exist, is the parent a directory).
func BenchmarkFilesRoundTrip(b *testing.B) {
	ctx := context.Background()
	m, cli := newTestManager(b)
	sb := newBusybox(b, m, CreateOptions{})
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}} {
		data := bytes.Repeat([]byte{0, 1, 2, 0xfe, 0xff, 'x', '\n', 7}, size.n/8)
		b.Run(size.name+"/manager", func(b *testing.B) {
			b.SetBytes(int64(2 * size.n))
			for b.Loop() {
				if err := m.WriteFile(ctx, sb.ID, "/tmp/bench.bin", data, 0); err != nil {
					b.Fatal(err)
				}
				got, _, err := m.ReadFile(ctx, sb.ID, "/tmp/bench.bin")
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != len(data) {
					b.Fatalf("read %d bytes, want %d", len(got), len(data))
				}
			}
		})
		b.Run(size.name+"/raw-sdk", func(b *testing.B) {
			b.SetBytes(int64(2 * size.n))
			for b.Loop() {
				var buf bytes.Buffer
				tw := tar.NewWriter(&buf)
				hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "bench-raw.bin", Size: int64(len(data)), Mode: 0o644, ModTime: time.Now()}
				if err := tw.WriteHeader(hdr); err != nil {
					b.Fatal(err)
				}
				tw.Write(data)
				tw.Close()
				if err := cli.CopyToContainer(ctx, sb.ID, "/tmp", &buf, container.CopyToContainerOptions{}); err != nil {
					b.Fatal(err)
				}
				rc, _, err := cli.CopyFromContainer(ctx, sb.ID, "/tmp/bench-raw.bin")
				if err != nil {
					b.Fatal(err)
				}
				tr := tar.NewReader(rc)
				if _, err := tr.Next(); err != nil {
					b.Fatal(err)
				}
				got, err := io.ReadAll(tr)
				rc.Close()
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != len(data) {
					b.Fatalf("read %d bytes, want %d", len(got), len(data))
				}
			}
		})
	}
}

// BenchmarkFilesEngineCalls times the single Engine calls a round trip is
// made of, to explain the Manager's overhead over the raw SDK: a write adds
// an inspect and one or two stats, a read adds an inspect.
func BenchmarkFilesEngineCalls(b *testing.B) {
	ctx := context.Background()
	m, cli := newTestManager(b)
	sb := newBusybox(b, m, CreateOptions{})
	if err := m.WriteFile(ctx, sb.ID, "/tmp/one", []byte("1"), 0); err != nil {
		b.Fatal(err)
	}
	b.Run("ContainerInspect", func(b *testing.B) {
		for b.Loop() {
			if _, err := cli.ContainerInspect(ctx, sb.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ContainerStatPath", func(b *testing.B) {
		for b.Loop() {
			if _, err := cli.ContainerStatPath(ctx, sb.ID, "/tmp/one"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CopyFromContainer", func(b *testing.B) {
		for b.Loop() {
			rc, _, err := cli.CopyFromContainer(ctx, sb.ID, "/tmp/one")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, rc)
			rc.Close()
		}
	})
}
