// Command opensbx-bench measures a Manager on the local Docker engine next
// to the raw Docker SDK doing the same work, and prints one table: for each
// row the p50, p95 and max over the iterations of both sides and their
// ratio (manager p50 / raw p50).
//
//	go run ./cmd/opensbx-bench                  # every row, a few minutes on 2 cores
//	go run ./cmd/opensbx-bench -rows exec,list  # two rows (names, or one regexp)
//	go run ./cmd/opensbx-bench -json            # the same as JSON
//
// Flags:
//
//	-n N               iterations of each latency row (default 10)
//	-batch N           sandboxes in the batch rows, the List row and the heap row (default 100)
//	-batch-runs N      iterations of the batch rows (default 1)
//	-conc N            concurrency of the batch rows and of setup (default 10)
//	-execs N           concurrent exec round trips of exec-concurrent (default 200)
//	-exec-sandboxes N  sandboxes exec-concurrent spreads them over (default 10)
//	-rows LIST         rows to run: a comma list of names, or a regexp (default all)
//	-json              print JSON instead of the table
//	-pprof DIR         write a CPU profile of each row's measured part to DIR/<row>.cpu.pprof
//	-keep-going        run the remaining rows after a row fails
//	-timeout D         bound on the whole run (default 1h)
//	-id ID             run id for labels and names (default random)
//
// Both sides of a latency row alternate within every iteration (the
// Manager first in even iterations, the raw SDK first in odd ones), so load
// on a shared machine falls on both alike: the ratio is the figure to trust.
// The command reports; it never judges a figure.
//
// It uses the busybox test image (go run ./internal/testenv/cmd/buildimages
// builds it) and never pulls. Every container it makes, through a Manager
// or raw, carries the labels opensbx-bench.run=<id> and
// opensbx-bench.expires=<unix time after which the run is certainly over>;
// its Managers use namespaces of their own (bench-<id>, bench-<id>-pool,
// bench-<id>-idle). It removes everything it made when a row ends, when it
// fails, and on SIGINT or SIGTERM (a second signal abandons the cleanup),
// and finishes with a sweep by the run label. At start it removes the
// containers of earlier runs whose expires label has passed (a run killed
// with SIGKILL cannot clean up after itself).
//
// This command is benchmark support: besides internal/engine and tests it
// is the one place that imports the Docker SDK, because its raw side must
// be the SDK itself. Its Manager side uses only the public opensbx API.
//
// Exit codes: 0 when every row ran, 1 when a row failed or the run was
// interrupted, 2 for bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the run cleans up; restoring the default
	// handling lets a second one abandon the cleanup.
	go func() {
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "opensbx-bench:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run is the whole command: it parses args, runs the selected rows, prints
// the report to stdout and progress to stderr, and removes everything it
// made before it returns.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	b, err := newBench(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := b.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	rep, err := b.runRows(ctx)
	if rep != nil {
		if perr := rep.write(stdout, cfg.json); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	return err
}
