package opensbx_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/opensbx/opensbx"
)

// A Manager with a state directory keeps enforcing sandbox deadlines across
// restarts.
func ExampleNew() {
	ctx := context.Background()
	m, err := opensbx.New(ctx,
		opensbx.WithNamespace("grader"),
		opensbx.WithStateDir("/var/lib/grader/opensbx"),
		opensbx.WithDefaultTTL(10*time.Minute),
		opensbx.WithDefaultResources(opensbx.Resources{MemoryMB: 512, CPUs: 0.5}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
}

// Create a sandbox with a published port and find its host port.
func ExampleManager_Create() {
	ctx := context.Background()
	m, err := opensbx.New(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	sb, err := m.Create(ctx, opensbx.CreateOptions{
		Image: "opensbx-test/busybox:1",
		Name:  "job-42", // a retried Create with the same settings returns this sandbox
		Ports: []string{"8080"},
		TTL:   5 * time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Delete(ctx, sb.ID)
	fmt.Println(sb.HostIP + ":" + sb.PortMap["8080/tcp"])
}
