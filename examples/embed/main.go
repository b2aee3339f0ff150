// Command embed shows Opensbx used as a library: it creates a sandbox from a
// local image, runs a command in it, shows it in List and deletes it.
//
//	go run ./examples/embed -image opensbx-test/busybox:1
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/opensbx/opensbx"
)

func main() {
	image := flag.String("image", "opensbx-test/busybox:1", "local image to run (must have a sleep binary)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *image); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, image string) error {
	m, err := opensbx.New(ctx, opensbx.WithNamespace("embed-example"))
	if err != nil {
		return err
	}
	defer m.Close()

	res, err := m.Create(ctx, opensbx.CreateOptions{
		Image:     image,
		Ports:     []string{"8080"},
		TTL:       5 * time.Minute,
		Resources: opensbx.Resources{MemoryMB: 256, CPUs: 0.5},
	})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	// Delete even when a later step fails, with a context of its own.
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := m.Delete(ctx, res.ID); err != nil {
			log.Printf("delete: %v", err)
			return
		}
		fmt.Printf("deleted %s\n", res.Name)
	}()
	fmt.Printf("created %s (%.12s): port 8080/tcp on %s:%s, expires %s\n",
		res.Name, res.ID, res.HostIP, res.PortMap["8080/tcp"], res.ExpiresAt.Format(time.RFC3339))

	list, err := m.List(ctx)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	listed := false
	for _, s := range list {
		fmt.Printf("listed %s %s %s\n", s.Name, s.State, s.Image)
		listed = listed || s.ID == res.ID
	}
	if !listed {
		return fmt.Errorf("sandbox %s is missing from List", res.Name)
	}
	return nil
}
