// Command mount shows the Opensbx API mounted into a service that already
// has its own routes and middleware: one *http.ServeMux carries the
// service's handlers and, under /api/sandbox/v1, every route of the API.
//
//	go run ./examples/mount -addr 127.0.0.1:8081
//	curl -s 127.0.0.1:8081/                         # the service's own page
//	curl -s 127.0.0.1:8081/api/sandbox/v1/health    # the API, mounted
//	curl -s -H 'Authorization: Bearer demo-key' 127.0.0.1:8081/api/sandbox/v1/sandboxes
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/httpapi"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "mount:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	m, err := opensbx.New(ctx, opensbx.WithNamespace("mount-example"), opensbx.WithLogger(log))
	if err != nil {
		return err
	}
	defer m.Close() // after the server below has shut down

	srv := &http.Server{
		Addr:              addr,
		Handler:           newHandler(m, log),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// newHandler is the whole service: its own routes, the sandbox API under
// /api/sandbox/v1, and the service's own middleware around all of it.
func newHandler(m *opensbx.Manager, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()

	// The service's own routes.
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "my service; sandboxes under /api/sandbox/v1")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})

	// The sandbox API, next to them on the same mux.
	httpapi.Register(mux, m,
		httpapi.WithPrefix("/api/sandbox/v1"),
		httpapi.WithAPIKeys("demo-key"),
		httpapi.WithLogger(log),
	)

	return poweredBy(mux)
}

// poweredBy is the service's own middleware: it runs for its routes and
// the API's alike. (Streams still flush: httpapi flushes through
// http.ResponseController, which sees through wrappers with Unwrap; this
// one does not even wrap the writer.)
func poweredBy(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Powered-By", "my-service")
		next.ServeHTTP(w, r)
	})
}
