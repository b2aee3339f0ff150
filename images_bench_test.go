package opensbx

import (
	"encoding/json"
	"io"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/opensbx/opensbx/internal/testenv"
)

// The image benchmarks compare each Manager call with the raw SDK calls
// doing the same work, so the figures show the Manager's own overhead.

func BenchmarkParseReference(b *testing.B) {
	for b.Loop() {
		if _, err := ParseReference("127.0.0.1:5000/opensbx-test/img:v1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkImages(b *testing.B) {
	m, cli := newTestManager(b)
	ctx := b.Context()
	b.Run("manager", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Images(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			if _, err := cli.ImageList(ctx, image.ListOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkImage(b *testing.B) {
	m, cli := newTestManager(b)
	ctx := b.Context()
	b.Run("manager", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Image(ctx, testenv.BusyboxImage); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) { // inspect plus the namespace's containers, as Image does
		for b.Loop() {
			if _, err := cli.ImageInspect(ctx, testenv.BusyboxImage); err != nil {
				b.Fatal(err)
			}
			if _, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelManaged+"=true"), filters.Arg("label", labelNamespace+"="+m.Namespace()))}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPullImage pulls an image that is already present from the local
// registry (a manifest round trip, no layer download).
func BenchmarkPullImage(b *testing.B) {
	m, cli := newTestManager(b)
	ctx := b.Context()
	ref := imgRegistryRepo(b) + ":v1"
	imgUnique(b, cli, ref)
	imgPush(b, cli, ref)
	b.Run("manager", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.PullImage(ctx, ref, PullOptions{Progress: func(PullProgress) {}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) { // pull, decode the stream, inspect, as PullImage does
		for b.Loop() {
			rc, err := cli.ImagePull(ctx, ref, image.PullOptions{})
			if err != nil {
				b.Fatal(err)
			}
			dec := json.NewDecoder(rc)
			for {
				var msg jsonmessage.JSONMessage
				if err := dec.Decode(&msg); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
			rc.Close()
			if _, err := cli.ImageInspect(ctx, ref); err != nil {
				b.Fatal(err)
			}
		}
	})
}
