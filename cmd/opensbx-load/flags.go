package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// config is what the flags ask for.
type config struct {
	clients        int           // concurrent clients
	duration       time.Duration // how long clients start new actions
	sandboxes      int           // most sandboxes live at once
	minSandboxes   int           // fewest live sandboxes a delete leaves
	image          string        // image of every sandbox; never pulled
	requestTimeout time.Duration // bound on one request, streams included
	sample         time.Duration // interval of the server's memory samples
	json           bool          // JSON report instead of text
	id             string        // run id: names, namespace, request ids

	// Against a server someone else runs.
	url       string // base URL ("" = start a server)
	key       string // its API key
	namespace string // its NAMESPACE, for the Docker leak check
	pid       int    // its process id on this machine, for RSS (0 = none)

	serverBin string // prebuilt opensbx binary ("" = go build)
	docker    bool   // check for leaked containers with the Docker SDK
}

// usageError is a bad flag or flag value (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

var idRE = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// parseFlags parses and checks args; usage goes to stderr. getenv supplies
// API_KEY when -key is not given.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("opensbx-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.clients, "clients", 200, "concurrent clients")
	fs.DurationVar(&cfg.duration, "duration", 60*time.Second, "how long clients start new actions (those in flight then finish)")
	fs.IntVar(&cfg.sandboxes, "sandboxes", 50, "most sandboxes live at once")
	fs.IntVar(&cfg.minSandboxes, "min-sandboxes", 10, "fewest live sandboxes a delete leaves (at most -sandboxes)")
	fs.StringVar(&cfg.image, "image", "opensbx-test/busybox:1", "image of the sandboxes, present on the engine (never pulled; it needs sh, echo and sleep)")
	fs.DurationVar(&cfg.requestTimeout, "request-timeout", 60*time.Second, "bound on one request, streams included (then a client-side timeout)")
	fs.DurationVar(&cfg.sample, "sample", 10*time.Second, "interval of the server memory samples")
	fs.BoolVar(&cfg.json, "json", false, "print the report as JSON")
	fs.StringVar(&cfg.id, "id", "", "run id in sandbox names, the namespace and request ids: 1-16 of [a-z0-9] (default random)")
	fs.StringVar(&cfg.url, "url", "", "base URL of a running server (e.g. http://127.0.0.1:8080) instead of starting one")
	fs.StringVar(&cfg.key, "key", "", "API key of the -url server (default: env API_KEY)")
	fs.StringVar(&cfg.namespace, "namespace", "default", "NAMESPACE of the -url server, for the Docker leak check")
	fs.IntVar(&cfg.pid, "pid", 0, "process id of the -url server on this machine, to sample its RSS")
	fs.StringVar(&cfg.serverBin, "server-bin", "", "opensbx binary to start (default: go build github.com/opensbx/opensbx/cmd/opensbx)")
	fs.BoolVar(&cfg.docker, "docker", true, "also check for leaked containers with the Docker SDK (DOCKER_HOST)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return cfg, err
		}
		return cfg, usageError{err}
	}
	if fs.NArg() > 0 {
		return cfg, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	for _, c := range []struct {
		name     string
		v, lo, h int
	}{
		{"clients", cfg.clients, 1, 10000},
		{"sandboxes", cfg.sandboxes, 1, 1000},
		{"min-sandboxes", cfg.minSandboxes, 0, cfg.sandboxes},
	} {
		if c.v < c.lo || c.v > c.h {
			return cfg, usageError{fmt.Errorf("-%s %d: want %d-%d", c.name, c.v, c.lo, c.h)}
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"duration", cfg.duration}, {"request-timeout", cfg.requestTimeout}, {"sample", cfg.sample}} {
		if d.v <= 0 {
			return cfg, usageError{fmt.Errorf("-%s %v: want a positive duration", d.name, d.v)}
		}
	}
	if strings.TrimSpace(cfg.image) == "" {
		return cfg, usageError{fmt.Errorf("-image: want an image reference")}
	}
	if cfg.id == "" {
		var b [4]byte
		rand.Read(b[:])
		cfg.id = hex.EncodeToString(b[:])
	}
	if !idRE.MatchString(cfg.id) {
		return cfg, usageError{fmt.Errorf("-id %q: want 1-16 of [a-z0-9]", cfg.id)}
	}
	if cfg.url == "" {
		if cfg.key != "" || cfg.pid != 0 {
			return cfg, usageError{fmt.Errorf("-key and -pid are for a -url server; the server this command starts has its own")}
		}
		return cfg, nil
	}
	if cfg.serverBin != "" {
		return cfg, usageError{fmt.Errorf("-server-bin starts a server; -url names a running one: give one of them")}
	}
	u, err := url.Parse(cfg.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return cfg, usageError{fmt.Errorf("-url %q: want http(s)://host:port", cfg.url)}
	}
	cfg.url = strings.TrimSuffix(cfg.url, "/")
	if cfg.key == "" {
		cfg.key = getenv("API_KEY")
	}
	if cfg.pid < 0 {
		return cfg, usageError{fmt.Errorf("-pid %d: want a process id", cfg.pid)}
	}
	return cfg, nil
}

// prefix is the name prefix of every sandbox of run id.
func prefix(id string) string { return "load-" + id + "-" }

// ownNamespace is the namespace of the server this command starts.
func ownNamespace(id string) string { return "load-" + id }
