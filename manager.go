package opensbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
	"github.com/opensbx/opensbx/internal/state"
)

// Manager owns the sandboxes of one namespace on one Docker engine: their
// lifecycle, expiry, commands, files and the images they run. It is safe for
// concurrent use. Every goroutine it starts is stopped by Close.
type Manager struct {
	cfg    config
	engine engine.Engine
	info   engine.Info // the engine, as New found it
	store  state.Store
	log    *slog.Logger

	ctx    context.Context // cancelled by Close; parent of all background work
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup // background goroutines and in-flight calls

	index    *sandboxIndex
	expiry   *expiry
	subs     subscribers
	cmds     *commandRegistry
	pulls    *pullGroup
	stats    statsCache
	records  recordSet
	pool     *pool
	quota    quota
	net      netPolicy
	agentVol agentVolume
	agents   agentConns
	freeze   freezeGates // Pause against execs starting
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
	m.agents.m = m
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case cfg.engine != nil:
		m.engine = cfg.engine
	case cfg.kube != nil:
		e, err := kubeEngine(cfg.kube)
		if err != nil {
			return nil, fmt.Errorf("opensbx: %w", err)
		}
		m.engine = e
	case cfg.client != nil:
		m.engine = engine.NewDocker(cfg.client, false)
	default:
		c, err := engine.NewDockerClient(cfg.host)
		if err != nil {
			return nil, fmt.Errorf("opensbx: docker client: %w", err)
		}
		m.engine = engine.NewDocker(c, true)
	}
	fail := func(err error) (*Manager, error) {
		if m.cancel != nil {
			m.cancel()
		}
		if m.store != nil {
			m.store.Close()
		}
		m.engine.Close()
		return nil, fmt.Errorf("opensbx: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err := m.engine.Ping(pingCtx)
	cancel()
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			err = sbxerr.Wrap(ErrUnavailable, err)
		}
		if cfg.kube != nil {
			return fail(fmt.Errorf("cannot reach the Kubernetes API server: %w", err))
		}
		return fail(fmt.Errorf("cannot reach the Docker engine (is dockerd running? scripts/docker-up.sh starts one): %w", err))
	}
	infoCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	m.info, err = m.engine.Info(infoCtx)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("engine info: %w", err))
	}
	if m.onKubernetes() {
		if err := m.kubeSetup(); err != nil {
			return fail(err)
		}
	} else if cfg.runtime != "" && !m.hasRuntime(cfg.runtime) {
		return fail(sbxerr.New(ErrUnsupported, "runtime %q is not registered with the engine (it has %s); "+
			"scripts/docker-up.sh registers runsc", cfg.runtime, strings.Join(m.info.Runtimes, ", ")))
	}
	if cfg.diskQuota > 0 && !m.onKubernetes() && !(m.info.StorageDriver == "overlay2" && m.info.BackingFS == "xfs") &&
		m.info.StorageDriver != "devicemapper" && m.info.StorageDriver != "btrfs" && m.info.StorageDriver != "zfs" {
		return fail(sbxerr.New(ErrUnsupported, "a disk quota needs overlay2 on xfs with pquota, devicemapper, btrfs or zfs; "+
			"this engine has %s on %s", m.info.StorageDriver, m.info.BackingFS))
	}
	if err := m.setupNetwork(ctx); err != nil {
		return fail(err)
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
	m.records.m = m
	if err := m.records.load(); err != nil {
		return fail(err)
	}
	if m.pool, err = newPool(m); err != nil {
		return fail(err)
	}
	m.index = newSandboxIndex(m)
	m.index.refreshMu.Lock()
	owned, pooledOnes, err := m.index.refreshLocked(ctx)
	m.index.refreshMu.Unlock()
	if err != nil {
		return fail(fmt.Errorf("list sandboxes: %w", err))
	}
	owned = m.removeHalfMade(ctx, owned)
	alive := map[string]bool{}
	for _, c := range owned {
		alive[c.ID] = true
	}
	if err := m.records.prune(alive); err != nil {
		return fail(err)
	}
	m.expiry = newExpiry(m)
	if err := m.expiry.recover(owned); err != nil {
		return fail(fmt.Errorf("recover expiry state: %w", err))
	}
	if m.cmds, err = newCommandRegistry(m, owned); err != nil {
		return fail(fmt.Errorf("recover commands: %w", err))
	}
	m.pulls = newPullGroup(m)
	m.goBackground(m.expiry.run)
	m.goBackground(m.watchEngine)
	m.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		m.pruneAgentVolumes(ctx)
	})
	m.cmds.resumeAgentCommands(m.ctx, m.cmds.resume)
	m.cmds.resume = nil
	if m.pool != nil {
		m.pool.recover(ctx, pooledOnes)
		m.goBackground(m.pool.run)
	} else if len(pooledOnes) > 0 {
		(&pool{m: m}).recover(ctx, pooledOnes) // no templates: remove them all
	}
	return m, nil
}

// removeHalfMade removes the containers a Manager killed mid-Create left
// behind: created, never started, for longer than a Create takes. It
// returns the others.
func (m *Manager) removeHalfMade(ctx context.Context, owned []engine.Container) []engine.Container {
	kept := owned[:0]
	for _, c := range owned {
		if c.State.Status == "created" && m.now().Sub(c.Created) > m.cfg.halfMadeAge {
			if err := m.engine.Remove(ctx, c.ID); err == nil || errors.Is(err, ErrNotFound) {
				m.index.drop(c.ID)
				m.log.Info("removed a sandbox that a stopped Manager left half-made", "sandbox", shortID(c.ID))
				continue
			}
		}
		kept = append(kept, c)
	}
	return kept
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
	m.agents.closeAll()
	m.wg.Wait()
	var errs []error
	if err := m.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close state: %w", err))
	}
	if err := m.engine.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close docker client: %w", err))
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

// now is the Manager's clock.
func (m *Manager) now() time.Time { return m.cfg.clock.Now() }

// Ping checks that the Docker engine answers. It returns ErrUnavailable
// when it does not, and ErrClosed after Close.
func (m *Manager) Ping(ctx context.Context) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := m.engine.Ping(ctx); err != nil {
		return fmt.Errorf("ping docker engine: %w", err)
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
