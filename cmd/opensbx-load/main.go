// Command opensbx-load puts an Opensbx HTTP server under load on loopback
// and reports what it saw: throughput and p50/p99/max latency per kind of
// request, every error sorted by who caused it, the server's memory over
// the run, and whether any container was left behind.
//
//	go run ./cmd/opensbx-load                             # 200 clients, 60 s, 10-50 sandboxes
//	go run ./cmd/opensbx-load -clients 20 -duration 10s   # smaller
//	go run ./cmd/opensbx-load -url http://127.0.0.1:8080 -key KEY -pid 1234
//	go run ./cmd/opensbx-load -json                       # the report as JSON
//
// By default it builds cmd/opensbx (go build, or -server-bin) and runs it
// as a child process on 127.0.0.1 with a port the kernel picks, the
// preview proxy off, a temporary STATE_DIR, the namespace load-<id> and an
// API key of its own, and samples the child's resident memory (VmRSS in
// /proc/<pid>/status, with its threads, descriptors and CPU seconds) at
// the start, every -sample (10 s), at the end and after the cleanup.
// With -url it loads a server someone else runs instead (-key or API_KEY;
// -pid to sample its memory; -namespace, its NAMESPACE, for the leak check).
//
// Each client repeats actions drawn at random by weight until -duration
// has passed, then finishes the one in flight:
//
//	create   (4)  POST /v1/sandboxes of -image with a name of the run (never pulled)
//	delete   (4)  DELETE /v1/sandboxes/{id}, only while more than -min-sandboxes are live
//	exec     (16) POST .../cmd?wait=true of echo hi to its last record, then GET .../logs: "hi\n"
//	stream   (8)  POST .../cmd of three lines 0.1 s apart, then GET .../logs?stream=true to the exit record
//	file     (12) PUT and GET .../files of a small text file as JSON, compared
//	file-64k (8)  PUT and GET .../files of 64 KiB of binary data raw, compared
//	stats    (8)  GET .../stats
//	list     (6)  GET /v1/sandboxes
//	get      (14) GET /v1/sandboxes/{id}
//
// on at most -sandboxes (50) live sandboxes, -min-sandboxes (10) of them
// created by a warm-up before the clock starts. Deletes race with the
// other requests on the same sandbox on purpose: a 404 or 409 (or a wrong
// answer) on a sandbox whose delete had begun is counted as expected, apart
// from unexpected 4xx. The first action of each kind runs as soon as it
// can, and the load goes on past -duration (by at most twice the request
// timeout) until each kind has begun, so that even a short run on a slow
// machine covers the mix.
//
// Latency is per request (from sending it to the end of its answer, read
// in full; streams to their end), over successful requests only; ops/s is
// successful requests per second of the load phase. Errors are split into
// client-side (the -request-timeout passed, connection errors), expected
// 4xx by code, unexpected 4xx by code, wrong answers (a 2xx with the wrong
// content) and 5xx, where an INTERNAL_ERROR record at the end of a stream
// counts as a 500. Every 5xx is listed with its body and, for a child
// server, what the server logged for that request id.
//
// After the load it deletes every sandbox it created that is not known
// deleted (by name, so also those of creates that timed out), lists the
// server's sandboxes and, after stopping the child server, the containers
// labelled org.opensbx.namespace=<namespace> with the Docker SDK
// (DOCKER_HOST; -docker=false skips it): anything of this run still there
// is a leak, which it reports and removes. Before the cleanup the same
// Docker filter must see at least the live sandboxes, or the check is
// reported as blind. It talks to the server only over
// HTTP; the Docker SDK serves this final check alone and touches only
// containers of that namespace (with -url, only those named load-<id>-*).
// Ctrl-C or SIGTERM stops the load and runs the same cleanup; a second
// signal abandons it (the child server then gets SIGTERM from the kernel
// and the sandboxes left stop when their TTL, -duration + 10 min, passes).
//
// The command reports; it never judges a latency. Exit codes: 0 for a clean
// run; 1 when the run saw a 5xx, a leak, a wrong answer or an unexpected
// 4xx, could not clean up or check, the server failed or exited uncleanly,
// or the run was interrupted (the report is printed in every case it got
// that far); 2 for bad flags.
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
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "opensbx-load:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// errProblems is returned after a report that lists problems.
var errProblems = errors.New("the run found problems (see the report)")

// run is the whole command: the report goes to stdout, progress to
// stderr. It returns errProblems (wrapped) when the report lists
// problems.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	rep, err := runLoad(ctx, cfg, stderr)
	if rep == nil {
		return err
	}
	if werr := rep.write(stdout, cfg.json); werr != nil {
		return errors.Join(err, werr)
	}
	if len(rep.Problems) > 0 {
		return errors.Join(err, errProblems)
	}
	return err
}
