package opensbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/state"
)

// Labels every Opensbx container carries. The namespace label scopes
// ownership: a Manager sees only containers with its own namespace.
const (
	labelPrefix    = "org.opensbx."
	labelManaged   = labelPrefix + "managed"
	labelNamespace = labelPrefix + "namespace"
	labelName      = labelPrefix + "name"
	labelSpec      = labelPrefix + "spec"
	labelTTL       = labelPrefix + "ttl"
	labelExpiresAt = labelPrefix + "expires-at"
	labelMemory    = labelPrefix + "memory-mb"
	labelCPUs      = labelPrefix + "cpus"
	labelPorts     = labelPrefix + "ports"
	labelKeepAlive = labelPrefix + "keep-alive"
	labelPrivate   = labelPrefix + "private"
)

// Manager owns the sandboxes of one namespace on one Docker engine: their
// lifecycle, expiry, commands, files and the images they run. It is safe for
// concurrent use. Every goroutine it starts is stopped by Close.
type Manager struct {
	cfg        config
	docker     engine.API
	ownsClient bool
	store      state.Store
	log        *slog.Logger

	ctx    context.Context // cancelled by Close; parent of all background work
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup // background goroutines and in-flight calls

	expiry *expiry
	subs   subscribers
	cmds   *commandRegistry
	pulls  *pullGroup
}

// New connects to the Docker engine, checks that it answers, opens the state
// store and starts the expiry loop. It fails with ErrUnavailable when the
// engine cannot be reached, ErrInvalid for a bad option, and a descriptive
// error when the state directory's store is corrupt or in use.
func New(ctx context.Context, opts ...Option) (*Manager, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("opensbx: %w", err)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("opensbx: %w", err)
	}
	m := &Manager{cfg: cfg, log: cfg.logger}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.client != nil {
		m.docker = cfg.client
	} else {
		c, err := engine.NewFromEnv(cfg.host)
		if err != nil {
			return nil, fmt.Errorf("opensbx: docker client: %w", errors.Join(ErrUnavailable, err))
		}
		m.docker, m.ownsClient = c, true
	}
	fail := func(err error) (*Manager, error) {
		if m.store != nil {
			m.store.Close()
		}
		if m.ownsClient {
			m.docker.Close()
		}
		return nil, fmt.Errorf("opensbx: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_, err := m.docker.Ping(pingCtx)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("cannot reach the Docker engine (is dockerd running? scripts/docker-up.sh starts one): %w", unavailable(err)))
	}
	if cfg.stateDir != "" {
		st, err := state.OpenBolt(cfg.stateDir)
		if err != nil {
			return fail(err)
		}
		m.store = st
	} else {
		m.store = state.NewMemory()
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.expiry = newExpiry(m)
	if err := m.expiry.recover(ctx); err != nil {
		m.cancel()
		return fail(fmt.Errorf("recover expiry state: %w", err))
	}
	if m.cmds, err = newCommandRegistry(m); err != nil {
		m.cancel()
		return fail(fmt.Errorf("recover commands: %w", err))
	}
	m.pulls = newPullGroup(m)
	m.goBackground(m.expiry.run)
	return m, nil
}

// unavailable marks an error from Ping as ErrUnavailable while keeping it.
func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return errors.Join(ErrUnavailable, err)
}

// Close stops the Manager's background work (expiry, command output pumps,
// pulls), waits for it and for calls in flight, and releases the state store
// and the Docker client it created. Sandboxes are left as they are, with
// their deadlines kept in the state directory. Calls after Close return
// ErrClosed. Close is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	var errs []error
	if err := m.cmds.close(); err != nil {
		errs = append(errs, err)
	}
	if err := m.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close state: %w", err))
	}
	if m.ownsClient {
		if err := m.docker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close docker client: %w", err))
		}
	}
	return errors.Join(errs...)
}

// begin registers a call in flight. The returned context is cancelled when
// ctx is or when the Manager closes; done must be called when the call ends.
func (m *Manager) begin(ctx context.Context) (context.Context, func(), error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, nil, ErrClosed
	}
	m.wg.Add(1)
	m.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(m.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		m.wg.Done()
	}, nil
}

// goBackground runs fn in a goroutine owned by the Manager: fn's context is
// cancelled by Close, which waits for fn to return. It reports false, without
// running fn, when the Manager is closed.
func (m *Manager) goBackground(fn func(ctx context.Context)) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn(m.ctx)
	}()
	return true
}

// cleanupContext returns a context for cleanup after a failure: not
// cancelled with ctx (a cancelled request must not leak a container), but
// bounded by its own timeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// ownedFilter selects the containers of this Manager's namespace.
func (m *Manager) ownedFilter() filters.Args {
	return filters.NewArgs(
		filters.Arg("label", labelManaged+"=true"),
		filters.Arg("label", labelNamespace+"="+m.cfg.namespace),
	)
}

func (m *Manager) owns(labels map[string]string) bool {
	return labels[labelManaged] == "true" && labels[labelNamespace] == m.cfg.namespace
}

// containerName is the engine-wide container name of sandbox name.
func (m *Manager) containerName(name string) string {
	return "opensbx-" + m.cfg.namespace + "-" + name
}

// inspect returns the container of sandbox id (a container id, unique id
// prefix, or the sandbox's name). Containers this Manager does not own are
// reported as ErrNotFound, exactly like missing ones.
func (m *Manager) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	if id == "" {
		return container.InspectResponse{}, invalidf("sandbox id is empty")
	}
	c, err := m.docker.ContainerInspect(ctx, id)
	if err == nil && !m.owns(c.Config.Labels) {
		err = ErrNotFound
	}
	if errors.Is(engine.Classify(err), ErrNotFound) && validName(id) {
		c, err = m.docker.ContainerInspect(ctx, m.containerName(id))
		if err == nil && !m.owns(c.Config.Labels) {
			err = ErrNotFound
		}
	}
	if err != nil {
		err = engine.Classify(err)
		if errors.Is(err, ErrNotFound) {
			return container.InspectResponse{}, fmt.Errorf("sandbox %q: %w", id, ErrNotFound)
		}
		return container.InspectResponse{}, fmt.Errorf("inspect sandbox %q: %w", id, err)
	}
	return c, nil
}

// listOwned lists every container of this Manager's namespace.
func (m *Manager) listOwned(ctx context.Context) ([]container.Summary, error) {
	cs, err := m.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: m.ownedFilter()})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", engine.Classify(err))
	}
	return cs, nil
}

// Ping checks that the Docker engine answers. It returns ErrUnavailable
// when it does not, and ErrClosed after Close.
func (m *Manager) Ping(ctx context.Context) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := m.docker.Ping(ctx); err != nil {
		return fmt.Errorf("ping docker engine: %w", unavailable(engine.Classify(err)))
	}
	return nil
}

// Namespace returns the namespace the Manager owns sandboxes in.
func (m *Manager) Namespace() string { return m.cfg.namespace }

// FileSizeLimit returns the largest single non-streamed file read or write
// (WithFileSizeLimit).
func (m *Manager) FileSizeLimit() int64 { return m.cfg.fileSizeLimit }

// MaxResources returns the largest limits a sandbox may ask for.
func (m *Manager) MaxResources() Resources { return m.cfg.max }

// DefaultResources returns the limits of sandboxes created without their own.
func (m *Manager) DefaultResources() Resources { return m.cfg.defaults }

// DefaultTTL returns the time to live of sandboxes created without one.
func (m *Manager) DefaultTTL() time.Duration { return m.cfg.ttl }
