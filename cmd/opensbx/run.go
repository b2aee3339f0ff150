package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/httpapi"
)

// errUsage marks bad flags or settings (exit code 2); the message has been
// printed already by the flag package, or is in the error.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, opensbx.ErrUnavailable):
		return 3
	default:
		return 1
	}
}

// config is the server's settings after flags and environment.
type config struct {
	addr            string
	apiKeys         []string
	baseDomain      string
	stateDir        string
	namespace       string
	defaultTTL      time.Duration
	defaults, max   opensbx.Resources
	dockerHost      string
	logFormat       string
	logLevel        slog.Level
	shutdownTimeout time.Duration
}

// parseConfig reads flags, falling back to the environment, then defaults.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("opensbx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(name, def, usage string) *string {
		env := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if v := getenv(env); v != "" {
			def = v
		}
		return fs.String(name, def, usage+" (env "+env+")")
	}
	addr := str("addr", "127.0.0.1:8080", "listen address")
	// Not str: the usage text would print the key from the environment.
	apiKey := fs.String("api-key", "", "comma-separated Bearer API keys; empty disables auth (env API_KEY, preferred)")
	baseDomain := str("base-domain", "", "domain of sandbox URLs, http://<name>.<domain>")
	stateDir := str("state-dir", "./opensbx-data", "directory of the state kept across restarts")
	namespace := str("namespace", opensbx.DefaultNamespace, "namespace of the sandboxes this server owns")
	defTimeout := str("default-timeout", "", "default sandbox TTL: seconds or a Go duration (default 15m)")
	defMem := str("default-memory-mb", "", "default memory limit in MiB")
	defCPUs := str("default-cpus", "", "default CPU limit")
	maxMem := str("max-memory-mb", "", "largest memory limit a sandbox may ask for, MiB")
	maxCPUs := str("max-cpus", "", "largest CPU limit a sandbox may ask for")
	dockerHost := str("docker-host", "", "Docker engine address (default: the Docker client's default)")
	logFormat := str("log-format", "json", "log format: json or text")
	logLevel := str("log-level", "info", "log level: debug, info, warn or error")
	shutdown := str("shutdown-timeout", "15s", "grace for requests in flight at shutdown: seconds or a Go duration")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *apiKey == "" {
		*apiKey = getenv("API_KEY")
	}
	c := config{addr: *addr, baseDomain: *baseDomain, stateDir: *stateDir, namespace: *namespace, dockerHost: *dockerHost}
	for _, k := range strings.Split(*apiKey, ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.apiKeys = append(c.apiKeys, k)
		}
	}
	var errs []error
	bad := func(name string, err error) { errs = append(errs, fmt.Errorf("%s: %v", name, err)) }
	var err error
	if *defTimeout != "" {
		if c.defaultTTL, err = parseDuration(*defTimeout); err != nil || c.defaultTTL <= 0 {
			bad("default-timeout", fmt.Errorf("want positive seconds or a Go duration, got %q", *defTimeout))
		}
	}
	if c.shutdownTimeout, err = parseDuration(*shutdown); err != nil || c.shutdownTimeout < 0 {
		bad("shutdown-timeout", fmt.Errorf("want seconds or a Go duration, got %q", *shutdown))
	}
	intOpt := func(name, v string, dst *int64) {
		if v == "" {
			return
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			bad(name, fmt.Errorf("want a positive integer, got %q", v))
		}
		*dst = n
	}
	floatOpt := func(name, v string, dst *float64) {
		if v == "" {
			return
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) {
			bad(name, fmt.Errorf("want a positive number, got %q", v))
		}
		*dst = f
	}
	intOpt("default-memory-mb", *defMem, &c.defaults.MemoryMB)
	floatOpt("default-cpus", *defCPUs, &c.defaults.CPUs)
	intOpt("max-memory-mb", *maxMem, &c.max.MemoryMB)
	floatOpt("max-cpus", *maxCPUs, &c.max.CPUs)
	switch c.logFormat = strings.ToLower(*logFormat); c.logFormat {
	case "json", "text":
	default:
		bad("log-format", fmt.Errorf("want json or text, got %q", *logFormat))
	}
	if err := c.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		bad("log-level", err)
	}
	if len(errs) > 0 {
		return config{}, fmt.Errorf("%w: %w", errUsage, errors.Join(errs...))
	}
	return c, nil
}

// parseDuration takes seconds ("90", "1.5") or a Go duration ("2m").
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// isLoopback reports whether a listen address only accepts local clients.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// run is the whole server: it returns after ctx is cancelled and the
// shutdown has finished, or on a startup error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	hopts := &slog.HandlerOptions{Level: c.logLevel}
	var h slog.Handler = slog.NewJSONHandler(stderr, hopts)
	if c.logFormat == "text" {
		h = slog.NewTextHandler(stderr, hopts)
	}
	log := slog.New(h)

	if len(c.apiKeys) == 0 && !isLoopback(c.addr) {
		log.Warn("NO API KEY: the API is open to anyone who can reach "+c.addr+"; set API_KEY", "addr", c.addr)
	}

	mopts := []opensbx.Option{opensbx.WithNamespace(c.namespace), opensbx.WithStateDir(c.stateDir), opensbx.WithLogger(log)}
	if c.dockerHost != "" {
		mopts = append(mopts, opensbx.WithDockerHost(c.dockerHost))
	}
	if c.defaultTTL > 0 {
		mopts = append(mopts, opensbx.WithDefaultTTL(c.defaultTTL))
	}
	if c.max != (opensbx.Resources{}) {
		mopts = append(mopts, opensbx.WithMaxResources(c.max))
	}
	if c.defaults != (opensbx.Resources{}) {
		mopts = append(mopts, opensbx.WithDefaultResources(c.defaults))
	}
	m, err := opensbx.New(ctx, mopts...)
	if err != nil {
		if errors.Is(err, opensbx.ErrInvalid) {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		if errors.Is(err, opensbx.ErrUnavailable) {
			host := c.dockerHost
			if host == "" {
				host = "the default (DOCKER_HOST unset)"
			}
			return fmt.Errorf("the Docker engine at %s is unreachable; start it or set DOCKER_HOST: %w", host, err)
		}
		return err
	}
	defer m.Close()

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Requests get a context that outlives the shutdown grace only as
	// long as needed: it is cancelled when the grace is over, which ends
	// streams (logs, stats, waits) that would otherwise hold the shutdown.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler: httpapi.New(m,
			httpapi.WithAPIKeys(c.apiKeys...),
			httpapi.WithBaseDomain(c.baseDomain),
			httpapi.WithLogger(log)),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(h, slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "namespace", c.namespace, "state_dir", c.stateDir,
		"auth", len(c.apiKeys) > 0, "base_domain", c.baseDomain)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight", "grace", c.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	err = srv.Shutdown(sctx)
	cancel()
	if err != nil {
		log.Warn("grace period over: cutting remaining requests", "err", err)
		cancelBase()
		srv.Close()
	}
	<-serveErr
	if err := m.Close(); err != nil {
		return fmt.Errorf("close manager: %w", err)
	}
	log.Info("stopped; sandboxes keep running with their deadlines")
	return nil
}
