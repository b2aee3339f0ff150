package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// row is one line of the table.
type row struct {
	name string
	// what the row measures, and what its raw side does.
	what string
	// uses names the shared fixtures the row needs (fixtureBox,
	// fixtureIdle), so that each is released after the last row using it.
	uses []string
	// run sets up, measures through t.pairs or t.measure, and registers its
	// cleanup with t.cleanup.
	run func(ctx context.Context, t *trial) error
}

// Shared fixtures.
const (
	fixtureBox  = "box"  // the sandbox of the exec and file rows
	fixtureIdle = "idle" // the idle sandboxes of List and the heap figure
)

// trial is one row's run: its samples and what to clean up.
type trial struct {
	b            *bench
	row          *row
	manager, raw []time.Duration
	heap         *float64 // heap row: bytes per idle sandbox
	ops          int      // operations per sample, for ops/s (exec-concurrent)
	note         string   // what the run adds to row.what
	cleanups     []func(context.Context) error
	measured     bool
}

// cleanup registers f to run when the row ends, also when it fails; the
// last registered runs first.
func (t *trial) cleanup(f func(context.Context) error) { t.cleanups = append(t.cleanups, f) }

// measure runs f, the row's measured part, under the row's CPU profile
// (-pprof).
func (t *trial) measure(f func() error) error {
	if t.measured {
		return errors.New("a row measures once")
	}
	t.measured = true
	stop, err := t.b.profile(t.row.name)
	if err != nil {
		return fmt.Errorf("pprof: %w", err)
	}
	err = f()
	return errors.Join(err, stop())
}

// side is one side of an iteration; it returns the time of its measured
// part (it may do untimed work around it).
type side func(ctx context.Context, i int) (time.Duration, error)

// pairs measures n iterations of both sides, the Manager first in even
// iterations and the raw SDK first in odd ones.
func (t *trial) pairs(ctx context.Context, n int, manager, raw side) error {
	return t.measure(func() error {
		for i := 0; i < n; i++ {
			order := []bool{true, false}
			if i%2 == 1 {
				order = []bool{false, true}
			}
			for _, isManager := range order {
				f, to, what := raw, &t.raw, "raw"
				if isManager {
					f, to, what = manager, &t.manager, "manager"
				}
				d, err := f(ctx, i)
				if err != nil {
					return fmt.Errorf("iteration %d, %s: %w", i+1, what, err)
				}
				*to = append(*to, d)
			}
		}
		return nil
	})
}

// timed returns how long f took.
func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// runRows runs the selected rows in table order and returns the report of
// those that ran. It stops at the first failing row unless -keep-going,
// and always when ctx ends.
func (b *bench) runRows(ctx context.Context) (*report, error) {
	rows, err := selectRows(allRows, b.cfg.rows)
	if err != nil {
		return nil, err
	}
	lastUse := map[string]int{}
	for i, r := range rows {
		for _, f := range r.uses {
			lastUse[f] = i
		}
	}
	rep := &report{Meta: b.meta}
	var failed []string
	for i, r := range rows {
		fmt.Fprintf(b.log, "opensbx-bench: %-16s ", r.name)
		start := time.Now()
		res := b.runRow(ctx, r)
		if res.Error != "" {
			fmt.Fprintf(b.log, "FAILED after %v: %s\n", time.Since(start).Round(time.Millisecond), res.Error)
			failed = append(failed, r.name)
		} else {
			fmt.Fprintf(b.log, "%v\n", time.Since(start).Round(time.Millisecond))
		}
		rep.Rows = append(rep.Rows, res)
		for f, last := range lastUse {
			if last == i {
				if err := b.releaseFixture(ctx, f); err != nil {
					fmt.Fprintf(b.log, "opensbx-bench: release %s: %v\n", f, err)
				}
			}
		}
		if ctx.Err() != nil {
			fmt.Fprintln(b.log, "opensbx-bench: interrupted; cleaning up (a second interrupt abandons the cleanup)")
			rep.Meta.LoadEnd = loadAvg()
			return rep, context.Cause(ctx)
		}
		if res.Error != "" && !b.cfg.keepGoing {
			break
		}
	}
	rep.Meta.LoadEnd = loadAvg()
	if len(failed) > 0 {
		return rep, fmt.Errorf("%d rows failed: %v", len(failed), failed)
	}
	return rep, nil
}

// runRow runs one row and its cleanups.
func (b *bench) runRow(ctx context.Context, r *row) result {
	t := &trial{b: b, row: r}
	err := r.run(ctx, t)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	for _, f := range slices.Backward(t.cleanups) {
		if cerr := f(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}
	return t.result(err)
}

// releaseFixture releases a shared fixture no later row needs.
func (b *bench) releaseFixture(ctx context.Context, name string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	switch name {
	case fixtureBox:
		return b.releaseExecBox(cctx)
	case fixtureIdle:
		return b.releaseIdle(cctx)
	}
	return fmt.Errorf("unknown fixture %q", name)
}
