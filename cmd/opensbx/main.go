// Command opensbx is the Opensbx server: the HTTP API v1 (docs/http.md) over
// a Manager on the local Docker engine.
//
// Every setting is a flag and an environment variable of the same name in
// upper case with underscores (a flag wins over the variable):
//
//	-addr              ADDR               listen address (default 127.0.0.1:8080)
//	-api-key           API_KEY            comma-separated Bearer keys; empty = no auth
//	-base-domain       BASE_DOMAIN        sandbox URLs http://<name>.<domain>
//	-state-dir         STATE_DIR          state kept across restarts (default ./opensbx-data)
//	-namespace         NAMESPACE          sandboxes this server owns (default "default")
//	-default-timeout   DEFAULT_TIMEOUT    sandbox TTL: seconds or a Go duration (default 15m)
//	-default-memory-mb DEFAULT_MEMORY_MB  default memory limit
//	-default-cpus      DEFAULT_CPUS       default CPU limit
//	-max-memory-mb     MAX_MEMORY_MB      largest memory a sandbox may ask for
//	-max-cpus          MAX_CPUS           largest CPUs a sandbox may ask for
//	-docker-host       DOCKER_HOST        Docker engine address (default: the Docker client's)
//	-log-format        LOG_FORMAT         json or text (default json)
//	-log-level         LOG_LEVEL          debug, info, warn or error (default info)
//	-shutdown-timeout  SHUTDOWN_TIMEOUT   grace for in-flight requests on SIGINT/SIGTERM (default 15s)
//
// Prefer API_KEY over -api-key: flags are visible to other users in ps.
//
// On SIGINT or SIGTERM the server stops accepting connections, lets
// requests in flight finish (streams are cut after the shutdown timeout)
// and closes the Manager. Sandboxes are neither stopped nor deleted: they
// keep their deadlines in the state directory, and the next server on the
// same state directory and namespace picks them up.
//
// Exit codes: 0 after a clean shutdown, 2 for bad flags or settings, 3 when
// the Docker engine cannot be reached, 1 for anything else.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "opensbx:", err)
		}
		os.Exit(exitCode(err))
	}
}
