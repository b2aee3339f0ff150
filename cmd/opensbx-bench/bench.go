package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/internal/testenv"
)

// Labels on everything the command makes.
const (
	labelRun     = "opensbx-bench.run"     // the run id
	labelExpires = "opensbx-bench.expires" // unix seconds after which the run is over
	labelSide    = "opensbx-bench.side"    // "raw" on containers the raw side made
)

// image is the image every sandbox runs.
const image = testenv.BusyboxImage

// port is the container port every sandbox publishes.
const port = "8080"

// cleanupTimeout bounds one cleanup step after the run's context ended.
const cleanupTimeout = 3 * time.Minute

// expiryMargin is how long after -timeout the run's cleanup may still
// run: a row's cleanup, the release of two fixtures and the final sweep,
// each bounded by cleanupTimeout.
const expiryMargin = 5 * cleanupTimeout

// bench is one run: the raw client, the Managers and the fixtures rows
// share.
type bench struct {
	cfg    config
	log    io.Writer
	cli    *client.Client
	labels map[string]string // run and expiry labels
	ns     string            // namespace of the main Manager; others add a suffix
	ttl    time.Duration     // the Managers' sandbox TTL: outlives the run
	meta   meta
	seq    atomic.Int64 // raw container names

	main     *opensbx.Manager // lazily, by mainManager
	box      string           // a sandbox of main for exec and file rows, lazily
	idle     *idleFixture     // lazily, by idleSandboxes
	managers []*opensbx.Manager
}

// newBench connects to the engine, checks the image and sweeps the
// leftovers of earlier runs.
func newBench(ctx context.Context, cfg config, log io.Writer) (*bench, error) {
	cli, err := testenv.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w (start the engine with `bash scripts/docker-up.sh`)", err)
	}
	start := time.Now()
	b := &bench{
		cfg: cfg, log: log, cli: cli,
		ns:  "bench-" + cfg.id,
		ttl: cfg.timeout + expiryMargin,
		labels: map[string]string{
			labelRun:     cfg.id,
			labelExpires: strconv.FormatInt(start.Add(cfg.timeout+expiryMargin).Unix(), 10),
		},
	}
	if _, err := cli.ImageInspect(ctx, image); err != nil {
		cli.Close()
		return nil, fmt.Errorf("image %s: %w (build it with `go run ./internal/testenv/cmd/buildimages`; this command never pulls)", image, err)
	}
	v, err := cli.ServerVersion(ctx)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("engine version: %w", err)
	}
	b.meta = meta{
		Run: cfg.id, Date: start.UTC().Format(time.RFC3339), Go: runtime.Version(),
		OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), LoadStart: loadAvg(),
		Engine: v.Version, API: cli.ClientVersion(), Image: image,
		Flags: flagsMeta{N: cfg.n, Batch: cfg.batch, BatchRuns: cfg.batchRuns, Conc: cfg.conc,
			Execs: cfg.execs, ExecSandboxes: cfg.execSandboxes, Rows: cfg.rows},
	}
	if n, err := b.sweepExpired(ctx); err != nil {
		fmt.Fprintf(log, "opensbx-bench: sweep of earlier runs: %v\n", err)
	} else if n > 0 {
		fmt.Fprintf(log, "opensbx-bench: removed %d containers of earlier runs that are over\n", n)
	}
	return b, nil
}

// newManager opens a Manager on namespace ns with the run's labels; close
// closes it.
func (b *bench) newManager(ctx context.Context, ns string, opts ...opensbx.Option) (*opensbx.Manager, error) {
	opts = append([]opensbx.Option{
		opensbx.WithNamespace(ns),
		opensbx.WithLabels(b.labels),
		opensbx.WithDefaultTTL(b.ttl),
		opensbx.WithDeleteOnExpiry(true),
		opensbx.WithLogger(slog.New(slog.NewTextHandler(b.log, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	}, opts...)
	m, err := opensbx.New(ctx, opts...)
	if err != nil {
		return nil, err
	}
	b.managers = append(b.managers, m)
	return m, nil
}

// closeManager closes m and forgets it.
func (b *bench) closeManager(m *opensbx.Manager) error {
	for i, x := range b.managers {
		if x == m {
			b.managers = append(b.managers[:i:i], b.managers[i+1:]...)
			break
		}
	}
	return m.Close()
}

// mainManager is the Manager of cold creates, execs and files.
func (b *bench) mainManager(ctx context.Context) (*opensbx.Manager, error) {
	if b.main != nil {
		return b.main, nil
	}
	m, err := b.newManager(ctx, b.ns)
	if err != nil {
		return nil, err
	}
	b.main = m
	return m, nil
}

// createOptions is what every Manager-side sandbox asks for; it matches
// the pool template of poolManager.
func createOptions() opensbx.CreateOptions {
	return opensbx.CreateOptions{Image: image, Ports: []string{port}}
}

// execBox returns a running sandbox of the main Manager that the exec and
// file rows share.
func (b *bench) execBox(ctx context.Context) (*opensbx.Manager, string, error) {
	m, err := b.mainManager(ctx)
	if err != nil {
		return nil, "", err
	}
	if b.box == "" {
		res, err := m.Create(ctx, createOptions())
		if err != nil {
			return nil, "", err
		}
		b.box = res.ID
	}
	return m, b.box, nil
}

// releaseExecBox deletes the shared sandbox.
func (b *bench) releaseExecBox(ctx context.Context) error {
	if b.box == "" {
		return nil
	}
	err := b.main.Delete(ctx, b.box)
	b.box = ""
	if errors.Is(err, opensbx.ErrNotFound) {
		err = nil
	}
	return err
}

// idleFixture is a Manager of its own with cfg.batch idle sandboxes, for
// List and the heap figure.
type idleFixture struct {
	m     *opensbx.Manager
	ns    string
	ids   idList
	heap  float64 // HeapInuse bytes per idle sandbox
	alloc float64 // HeapAlloc bytes per idle sandbox (finer than HeapInuse's pages)
	over  int     // the number of sandboxes heap was measured over
}

// idleSandboxes returns the idle fixture, making it on first use. The heap
// figure is measured while it is made: HeapInuse after GC with the first
// half of the sandboxes and with all of them, the difference divided by
// the second half (so that connection pools and caches warmed by the first
// half are not counted per sandbox).
func (b *bench) idleSandboxes(ctx context.Context) (*idleFixture, error) {
	if b.idle != nil {
		return b.idle, nil
	}
	ns := b.ns + "-idle"
	m, err := b.newManager(ctx, ns)
	if err != nil {
		return nil, err
	}
	f := &idleFixture{m: m, ns: ns}
	b.idle = f
	half := b.cfg.batch / 2
	mk := func(from, to int) error {
		return forEach(ctx, to-from, b.cfg.conc, func(ctx context.Context, _ int) error {
			res, err := m.Create(ctx, createOptions())
			if err != nil {
				return err
			}
			f.ids.add(res.ID)
			return nil
		})
	}
	if err := mk(0, half); err != nil {
		return nil, err
	}
	before := heapStats()
	if err := mk(half, b.cfg.batch); err != nil {
		return nil, err
	}
	after := heapStats()
	f.over = b.cfg.batch - half
	f.heap = (float64(after.HeapInuse) - float64(before.HeapInuse)) / float64(f.over)
	f.alloc = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(f.over)
	return f, nil
}

// releaseIdle deletes the idle sandboxes and closes their Manager.
func (b *bench) releaseIdle(ctx context.Context) error {
	f := b.idle
	if f == nil {
		return nil
	}
	b.idle = nil
	return errors.Join(b.deleteSandboxes(ctx, f.m, f.ids.get()), b.closeManager(f.m))
}

// heapStats reads the process's memory statistics after two collections.
func heapStats() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// deleteSandboxes deletes ids through m, all of them even when some fail.
func (b *bench) deleteSandboxes(ctx context.Context, m *opensbx.Manager, ids []string) error {
	return forAll(ctx, len(ids), b.cfg.conc, func(ctx context.Context, i int) error {
		if err := m.Delete(ctx, ids[i]); err != nil && !errors.Is(err, opensbx.ErrNotFound) {
			return err
		}
		return nil
	})
}

// removeRaw force-removes raw containers, all of them even when some fail.
func (b *bench) removeRaw(ctx context.Context, ids []string) error {
	return forAll(ctx, len(ids), b.cfg.conc, func(ctx context.Context, i int) error {
		return b.rawRemove(ctx, ids[i])
	})
}

// runFilter selects everything this run made.
func (b *bench) runFilter() filters.Args {
	return filters.NewArgs(filters.Arg("label", labelRun+"="+b.cfg.id))
}

// sweep removes every container carrying the run's label until the engine
// lists none (a create cancelled in flight may still appear for a moment)
// and returns how many it removed.
func (b *bench) sweep(ctx context.Context) (int, error) {
	removed := 0
	for quiet := 0; quiet < 2; {
		cs, err := b.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: b.runFilter()})
		if err != nil {
			return removed, err
		}
		if len(cs) == 0 {
			quiet++
		} else {
			quiet = 0
		}
		ids := make([]string, len(cs))
		for i, c := range cs {
			ids[i] = c.ID
		}
		if err := b.removeRaw(ctx, ids); err != nil {
			return removed, err
		}
		removed += len(ids)
		select {
		case <-ctx.Done():
			return removed, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return removed, nil
}

// sweepExpired removes the containers of earlier runs whose expiry label
// has passed: those runs are over, whatever ended them.
func (b *bench) sweepExpired(ctx context.Context) (int, error) {
	cs, err := b.cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", labelRun), filters.Arg("label", labelExpires))})
	if err != nil {
		return 0, err
	}
	var ids []string
	now := time.Now().Unix()
	for _, c := range cs {
		exp, err := strconv.ParseInt(c.Labels[labelExpires], 10, 64)
		if err == nil && exp < now {
			ids = append(ids, c.ID)
		}
	}
	return len(ids), b.removeRaw(ctx, ids)
}

// close deletes the fixtures, closes every Manager, sweeps by the run
// label and closes the client. It runs under its own context: the run's
// may have ended.
func (b *bench) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	errs := []error{b.releaseExecBox(ctx), b.releaseIdle(ctx)}
	for len(b.managers) > 0 {
		errs = append(errs, b.closeManager(b.managers[0]))
	}
	n, err := b.sweep(ctx)
	errs = append(errs, err)
	if n > 0 {
		fmt.Fprintf(b.log, "opensbx-bench: the final sweep removed %d containers\n", n)
	}
	errs = append(errs, b.cli.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return nil
}

// profile starts a CPU profile of row name when -pprof asks for one and
// returns the function that stops it.
func (b *bench) profile(name string) (stop func() error, err error) {
	if b.cfg.pprofDir == "" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(b.cfg.pprofDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(b.cfg.pprofDir, name+".cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// loadAvg is the machine's load average ("1.2 0.9 0.7"), or "" where
// /proc/loadavg does not exist.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	var a, b, c string
	if _, err := fmt.Sscan(string(data), &a, &b, &c); err != nil {
		return ""
	}
	return a + " " + b + " " + c
}
