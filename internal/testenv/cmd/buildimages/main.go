// Command buildimages builds the test images (see package testenv) unless
// they are current. It prints nothing on success and exits 1 with the error
// otherwise. `make images` runs it after scripts/docker-up.sh.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opensbx/opensbx/internal/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildimages:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cli, err := testenv.Connect(ctx)
	if err != nil {
		return fmt.Errorf("%w (start the engine with `bash scripts/docker-up.sh`)", err)
	}
	defer cli.Close()
	return testenv.EnsureImages(ctx, cli)
}
