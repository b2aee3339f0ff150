package opensbx

import (
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/opensbx/opensbx/internal/clock"
	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Option configures a Manager in New. An option given a bad value makes New
// return an error matching ErrInvalid.
type Option func(*config) error

// Resources are the CPU and memory limits of a sandbox. A zero field means
// "use the Manager's default".
type Resources struct {
	// MemoryMB is the memory limit in MiB. Swap is not granted beyond it, so
	// a process that uses more is OOM-killed.
	MemoryMB int64 `json:"memory"`
	// CPUs is the number of CPUs the sandbox may use, as a fraction (1.5).
	CPUs float64 `json:"cpus"`
}

// Defaults used by New when no option overrides them.
const (
	DefaultNamespace   = "default"
	DefaultMemoryMB    = 1024
	DefaultCPUs        = 1.0
	DefaultMaxMemoryMB = 8192
	DefaultMaxCPUs     = 4.0
	DefaultTTL         = 15 * time.Minute
	DefaultHostIP      = "127.0.0.1"
	// DefaultOutputLimit is the bytes kept per output stream of a command.
	DefaultOutputLimit = 1 << 20
	// DefaultCommandHistory is the number of finished commands kept per sandbox.
	DefaultCommandHistory = 100
	// DefaultFileSizeLimit is the largest single non-streamed file read or write.
	DefaultFileSizeLimit = 64 << 20
	// DefaultPullInactivity is how long a pull may report no progress before
	// it is aborted.
	DefaultPullInactivity = 2 * time.Minute
	// DefaultPidsLimit bounds the processes and threads of one sandbox: far
	// more than a build or a test suite uses (make -j, a JVM, node with its
	// worker threads stay in the low hundreds), far fewer than a fork bomb
	// needs to hurt the host.
	DefaultPidsLimit = 1024
	// DefaultNofile is the open-file limit (soft and hard) of a sandbox's
	// processes: what file watchers and servers need, not the engine's
	// million. It must not be over the engine's own hard limit (raising it
	// needs CAP_SYS_RESOURCE, which root in some containers lacks).
	DefaultNofile = 16384
)

type config struct {
	client         DockerClient
	engine         engine.Engine // set by tests (withEngine); wins over client
	kube           *KubernetesConfig
	clock          clock.Clock
	pool           []PoolTemplate
	poolMax        int
	runtime        string
	pidsLimit      int64
	pidsLimitSet   bool // by WithPidsLimit: a Pod cannot take it
	nofile         int64
	diskQuota      int64
	maxSandboxes   int
	maxCommands    int
	isolation      bool
	agent          bool
	halfMadeAge    time.Duration // a container never started for this long was left by a killed Manager
	host           string
	namespace      string
	defaults       Resources
	max            Resources
	ttl            time.Duration
	logger         *slog.Logger
	stateDir       string
	hostIP         string
	deleteOnExpiry bool
	labels         map[string]string
	outputLimit    int
	commandHistory int
	fileSizeLimit  int64
	pullInactivity time.Duration
	stopTimeout    time.Duration
}

func defaultConfig() config {
	return config{
		namespace:      DefaultNamespace,
		defaults:       Resources{MemoryMB: DefaultMemoryMB, CPUs: DefaultCPUs},
		max:            Resources{MemoryMB: DefaultMaxMemoryMB, CPUs: DefaultMaxCPUs},
		ttl:            DefaultTTL,
		hostIP:         DefaultHostIP,
		outputLimit:    DefaultOutputLimit,
		commandHistory: DefaultCommandHistory,
		fileSizeLimit:  DefaultFileSizeLimit,
		pullInactivity: DefaultPullInactivity,
		stopTimeout:    10 * time.Second,
		clock:          clock.Real{},
		pidsLimit:      DefaultPidsLimit,
		isolation:      true,
		agent:          true,
		halfMadeAge:    30 * time.Second,
		nofile:         DefaultNofile,
	}
}

// DockerClient is the Docker SDK's client interface, client.APIClient of
// github.com/docker/docker/client, which a *client.Client satisfies. It is
// an alias so that this package does not import the SDK itself: every call
// to the engine goes through one internal boundary.
type DockerClient = engine.DockerClient

// WithDockerClient makes the Manager use c (a *client.Client of the Docker
// SDK, or a wrapper of one) instead of a client built from the environment.
// It takes the SDK's own type so that a program that already has a client
// (with its TLS settings, or a test's call counter) can share it. The
// caller keeps ownership: Close does not close c.
func WithDockerClient(c DockerClient) Option {
	return func(cfg *config) error {
		if c == nil {
			return sbxerr.Invalid("docker client is nil")
		}
		cfg.client = c
		return nil
	}
}

// WithDockerHost connects to the engine at host (for example
// "unix:///var/run/docker.sock") instead of the DOCKER_HOST environment.
func WithDockerHost(host string) Option {
	return func(cfg *config) error {
		if strings.TrimSpace(host) == "" {
			return sbxerr.Invalid("docker host is empty")
		}
		cfg.host = host
		return nil
	}
}

var namespaceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,39}$`)

// WithNamespace scopes the Manager: it sees and touches only containers
// labelled with this namespace, so two Managers with different namespaces
// share one engine without seeing each other's sandboxes. Lower-case
// letters, digits, '.', '_' and '-', at most 40 characters. Default "default".
func WithNamespace(ns string) Option {
	return func(cfg *config) error {
		if !namespaceRE.MatchString(ns) {
			return sbxerr.Invalid("namespace %q: want 1-40 of [a-z0-9_.-], starting with a letter or digit", ns)
		}
		cfg.namespace = ns
		return nil
	}
}

// WithDefaultResources sets the limits of sandboxes created without their
// own (default 1024 MiB and 1.0 CPU). Zero fields keep the current default.
func WithDefaultResources(r Resources) Option {
	return func(cfg *config) error {
		if r.MemoryMB < 0 || r.CPUs < 0 {
			return sbxerr.Invalid("default resources must not be negative")
		}
		if r.MemoryMB > 0 {
			cfg.defaults.MemoryMB = r.MemoryMB
		}
		if r.CPUs > 0 {
			cfg.defaults.CPUs = r.CPUs
		}
		return nil
	}
}

// WithMaxResources sets the largest limits a sandbox may ask for (default
// 8192 MiB and 4.0 CPUs). Zero fields keep the current maximum.
func WithMaxResources(r Resources) Option {
	return func(cfg *config) error {
		if r.MemoryMB < 0 || r.CPUs < 0 {
			return sbxerr.Invalid("maximum resources must not be negative")
		}
		if r.MemoryMB > 0 {
			cfg.max.MemoryMB = r.MemoryMB
		}
		if r.CPUs > 0 {
			cfg.max.CPUs = r.CPUs
		}
		return nil
	}
}

// WithDefaultTTL sets the time-to-live of sandboxes created without one
// (default 15 minutes). It must be positive.
func WithDefaultTTL(d time.Duration) Option {
	return func(cfg *config) error {
		if d <= 0 {
			return sbxerr.Invalid("default TTL must be positive, got %v", d)
		}
		cfg.ttl = d
		return nil
	}
}

// WithLogger sets the logger for the Manager's background work (expiry,
// recovery). The default discards everything. Secrets (environment values,
// registry credentials) are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(cfg *config) error {
		if l == nil {
			return sbxerr.Invalid("logger is nil")
		}
		cfg.logger = l
		return nil
	}
}

// WithStateDir keeps the Manager's state (deadlines and renewals, finished
// commands) in a database file in dir, so a Manager restarted on the same
// directory carries on. Without it state lives in memory, and a restarted
// Manager recovers each running sandbox's deadline from its start time and
// TTL label.
func WithStateDir(dir string) Option {
	return func(cfg *config) error {
		if strings.TrimSpace(dir) == "" {
			return sbxerr.Invalid("state dir is empty")
		}
		cfg.stateDir = dir
		return nil
	}
}

// WithHostIP sets the host address sandbox ports are published on (default
// 127.0.0.1). Publishing on all interfaces ("0.0.0.0") must be asked for.
func WithHostIP(ip string) Option {
	return func(cfg *config) error {
		if net.ParseIP(ip) == nil {
			return sbxerr.Invalid("host IP %q is not an IP address", ip)
		}
		cfg.hostIP = ip
		return nil
	}
}

// WithDeleteOnExpiry makes an expired sandbox be deleted instead of stopped,
// which test harnesses usually want.
func WithDeleteOnExpiry(enabled bool) Option {
	return func(cfg *config) error {
		cfg.deleteOnExpiry = enabled
		return nil
	}
}

// WithLabels adds labels to every container the Manager creates, for example
// a test run id. Keys under the "org.opensbx." prefix are reserved.
func WithLabels(labels map[string]string) Option {
	return func(cfg *config) error {
		for k := range labels {
			if k == "" || strings.HasPrefix(k, labelPrefix) {
				return sbxerr.Invalid("label %q: empty or reserved (%s*)", k, labelPrefix)
			}
		}
		if cfg.labels == nil {
			cfg.labels = map[string]string{}
		}
		for k, v := range labels {
			cfg.labels[k] = v
		}
		return nil
	}
}

// WithOutputLimit sets the bytes kept per stdout or stderr stream of a
// command (default 1 MiB). Older bytes are dropped and counted.
func WithOutputLimit(bytes int) Option {
	return func(cfg *config) error {
		if bytes <= 0 {
			return sbxerr.Invalid("output limit must be positive, got %d", bytes)
		}
		cfg.outputLimit = bytes
		return nil
	}
}

// WithCommandHistory sets how many finished commands are kept per sandbox
// (default 100); the oldest finished ones are forgotten first.
func WithCommandHistory(n int) Option {
	return func(cfg *config) error {
		if n <= 0 {
			return sbxerr.Invalid("command history must be positive, got %d", n)
		}
		cfg.commandHistory = n
		return nil
	}
}

// WithFileSizeLimit sets the largest file a single non-streamed read or
// write may move (default 64 MiB); larger ones fail with ErrTooLarge.
func WithFileSizeLimit(bytes int64) Option {
	return func(cfg *config) error {
		if bytes <= 0 {
			return sbxerr.Invalid("file size limit must be positive, got %d", bytes)
		}
		cfg.fileSizeLimit = bytes
		return nil
	}
}

// WithPullInactivityTimeout aborts an image pull that reports no progress
// for d (default 2 minutes).
func WithPullInactivityTimeout(d time.Duration) Option {
	return func(cfg *config) error {
		if d <= 0 {
			return sbxerr.Invalid("pull inactivity timeout must be positive, got %v", d)
		}
		cfg.pullInactivity = d
		return nil
	}
}

// WithStopTimeout sets how long Stop, Restart and expiry wait for a
// sandbox's processes to exit after SIGTERM before killing them (default
// 10 s). Sandboxes run under an init, so the default keep-alive exits at
// once.
func WithStopTimeout(d time.Duration) Option {
	return func(cfg *config) error {
		if d < 0 {
			return sbxerr.Invalid("stop timeout must not be negative, got %v", d)
		}
		cfg.stopTimeout = d
		return nil
	}
}

func (c *config) validate() error {
	if c.defaults.MemoryMB > c.max.MemoryMB {
		return sbxerr.Invalid("default memory %d MB is over the maximum %d MB", c.defaults.MemoryMB, c.max.MemoryMB)
	}
	if c.defaults.CPUs > c.max.CPUs {
		return sbxerr.Invalid("default CPUs %s are over the maximum %s", formatCPUs(c.defaults.CPUs), formatCPUs(c.max.CPUs))
	}
	return nil
}

// withEngine makes the Manager use e (an in-memory fake in unit tests).
func withEngine(e engine.Engine) Option {
	return func(cfg *config) error {
		cfg.engine = e
		return nil
	}
}

// withClock makes the Manager keep time by c (a fake clock in unit tests).
func withClock(c clock.Clock) Option {
	return func(cfg *config) error {
		cfg.clock = c
		return nil
	}
}

// WithRuntime runs every sandbox under the OCI runtime name ("runsc" for
// gVisor), which the engine must know (it is registered in its
// daemon.json); CreateOptions.Runtime overrides it per sandbox. New fails
// with ErrUnsupported when the engine does not have it.
func WithRuntime(name string) Option {
	return func(cfg *config) error {
		if !runtimeRE.MatchString(name) {
			return sbxerr.Invalid("runtime %q: want a runtime name such as runc or runsc", name)
		}
		cfg.runtime = name
		return nil
	}
}

var runtimeRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// WithPidsLimit bounds the processes and threads of each sandbox (default
// DefaultPidsLimit). On Kubernetes the bound is the nodes' (the kubelet's
// podPidsLimit), and WithPidsLimit is ErrUnsupported.
func WithPidsLimit(n int64) Option {
	return func(cfg *config) error {
		if n < 16 || n > 1<<22 {
			return sbxerr.Invalid("pids limit %d: want 16 to 4194304", n)
		}
		cfg.pidsLimit, cfg.pidsLimitSet = n, true
		return nil
	}
}

// WithNofile sets the open-file limit (soft and hard) of every sandbox's
// processes (default DefaultNofile).
func WithNofile(n int64) Option {
	return func(cfg *config) error {
		if n < 64 || n > 1<<20 {
			return sbxerr.Invalid("nofile limit %d: want 64 to 1048576", n)
		}
		cfg.nofile = n
		return nil
	}
}

// WithDiskQuota limits the writable layer of every sandbox to bytes. The
// engine supports it only with the overlay2 storage driver on xfs mounted
// with pquota (and devicemapper, btrfs, zfs); on other storage New fails
// with ErrUnsupported, naming what the engine has.
func WithDiskQuota(bytes int64) Option {
	return func(cfg *config) error {
		if bytes < 1<<20 {
			return sbxerr.Invalid("disk quota %d bytes: want at least 1 MiB", bytes)
		}
		cfg.diskQuota = bytes
		return nil
	}
}

// WithMaxSandboxes bounds the sandboxes of this Manager (in any state,
// the warm pool's ready ones included): a Create beyond it fails with
// ErrRateLimited. Zero (the default) means no bound.
func WithMaxSandboxes(n int) Option {
	return func(cfg *config) error {
		if n < 0 {
			return sbxerr.Invalid("max sandboxes must not be negative, got %d", n)
		}
		cfg.maxSandboxes = n
		return nil
	}
}

// WithMaxCommands bounds the commands running at once in one sandbox: an
// Exec beyond it fails with ErrRateLimited. Zero (the default) means no
// bound.
func WithMaxCommands(n int) Option {
	return func(cfg *config) error {
		if n < 0 {
			return sbxerr.Invalid("max commands must not be negative, got %d", n)
		}
		cfg.maxCommands = n
		return nil
	}
}

// WithNetworkIsolation turns network isolation on (the default) or off.
// On, sandboxes join the engine's "opensbx" bridge with inter-container
// traffic off and, where the Manager can keep them (a local engine, root),
// host firewall rules that keep them from the host's services and metadata
// addresses (see Manager.Isolation). Off, they join Docker's default
// bridge, where they reach each other and the host.
func WithNetworkIsolation(on bool) Option {
	return func(cfg *config) error {
		cfg.isolation = on
		return nil
	}
}

// withHalfMadeAge sets after how long a never-started container counts as
// left by a killed Manager (tests).
func withHalfMadeAge(d time.Duration) Option {
	return func(cfg *config) error {
		cfg.halfMadeAge = d
		return nil
	}
}

// WithAgent turns the sandbox agent on (the default) or off. On, every
// sandbox runs the Opensbx agent as its main process, and its commands and
// files (while it runs) go over one live channel to it: fast, independent of
// the host's /proc, working with a remote engine and under gVisor, and
// commands survive a restart of the Manager. Off, every command is an
// engine exec and every file transfer an archive request, as Docker's own
// tools do. Sandboxes made either way work with both.
func WithAgent(on bool) Option {
	return func(cfg *config) error {
		cfg.agent = on
		return nil
	}
}
