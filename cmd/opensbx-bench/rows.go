package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/opensbx/opensbx"
)

// allRows is every row, in table order.
var allRows = []*row{
	{name: "create", run: runCreate,
		what: "Cold Create of a busybox sandbox with one published port, started. " +
			"Raw: ContainerCreate with the Manager's settings (init, 1 GiB and 1 CPU, pids limit, no-new-privileges, " +
			"bounded json-file log, port on 127.0.0.1, keep-alive sleep) + ContainerStart + ContainerInspect."},
	{name: "pool-create", run: func(ctx context.Context, t *trial) error { return runPoolLatency(ctx, t, false) },
		what: "Create served from a warm pool (WithPool, one template, Size = -n), refilled to full before each " +
			"side of each iteration; the refill a hit starts runs during the rest of that Create. " +
			"Raw: ContainerRename of a pre-created running container + ContainerInspect."},
	{name: "create-run", run: runCreateRun,
		what: "Cold Create, then Run `echo hi` to its end with its output. " +
			"Raw: as in create, then ContainerExecCreate + ContainerExecAttach + stdcopy to EOF + ContainerExecInspect."},
	{name: "pool-create-run", run: func(ctx context.Context, t *trial) error { return runPoolLatency(ctx, t, true) },
		what: "Create from the pool (as in pool-create), then Run `echo hi`. Raw: as in pool-create, then the exec of create-run."},
	{name: "exec", run: runExec, uses: []string{fixtureBox},
		what: "Run `echo hi` to its end with its output, on an existing sandbox. Raw: the exec of create-run on the same container."},
	{name: "files-1k", run: func(ctx context.Context, t *trial) error { return runFiles(ctx, t, 1<<10) }, uses: []string{fixtureBox},
		what: "WriteFile + ReadFile of 1 KiB in /tmp. Raw: CopyToContainer of a one-entry tar + CopyFromContainer, entry read to its end."},
	{name: "files-1m", run: func(ctx context.Context, t *trial) error { return runFiles(ctx, t, 1<<20) }, uses: []string{fixtureBox},
		what: "As files-1k with 1 MiB."},
	{name: "list", run: runList, uses: []string{fixtureIdle},
		what: "List with -batch sandboxes in the namespace. Raw: ContainerList (all) with the same label filter " +
			"(org.opensbx.managed=true, org.opensbx.namespace=<ns>)."},
	{name: "heap-idle", run: runHeap, uses: []string{fixtureIdle},
		what: "Manager heap per idle sandbox (runtime.MemStats.HeapInuse after GC); no raw side."},
	{name: "stop", run: runStop,
		what: "Stop of a running sandbox. Raw: ContainerStop with the Manager's 10 s timeout + ContainerInspect " +
			"(Stop returns the stopped sandbox)."},
	{name: "delete", run: runDelete,
		what: "Delete of a running sandbox. Raw: ContainerRemove with force."},
	{name: "batch-cold", run: runBatchCold,
		what: "Wall time to make -batch sandboxes usable from zero, -conc at a time: cold Create + Run `true` each. " +
			"Raw: create/start/inspect + exec `true` each."},
	{name: "batch-pool", run: runBatchPool,
		what: "As batch-cold, served from a full pool of -batch (it refills in the background meanwhile). " +
			"Raw: rename + inspect + exec `true` of -batch pre-created containers."},
	{name: "exec-concurrent", run: runExecConcurrent,
		what: "Wall time of -execs concurrent `echo hi` round trips (all started at once) spread over " +
			"-exec-sandboxes sandboxes. Raw: the same execs with the SDK on the same containers."},
}

// managerCreate creates a sandbox like createOptions through m, records
// its id in ids and checks that it runs with its port published.
func managerCreate(ctx context.Context, m *opensbx.Manager, ids *idList) (string, error) {
	res, err := m.Create(ctx, createOptions())
	if err != nil {
		return "", err
	}
	ids.add(res.ID)
	if !res.Running() || res.PortMap[res.MainPort()] == "" {
		return "", fmt.Errorf("sandbox %s is %s with ports %v", res.Name, res.State, res.PortMap)
	}
	return res.ID, nil
}

// managerRun runs argv in sandbox id to its end and returns its standard
// output; a non-zero exit is an error.
func managerRun(ctx context.Context, m *opensbx.Manager, id string, argv ...string) (string, error) {
	res, err := m.Run(ctx, id, opensbx.ExecOptions{Command: argv[0], Args: argv[1:]})
	if err != nil {
		return "", err
	}
	return string(res.Stdout), nil
}

// checkHi checks the result of `echo hi`.
func checkHi(out string, err error) error {
	if err != nil {
		return err
	}
	if out != "hi\n" {
		return fmt.Errorf("echo hi printed %q", out)
	}
	return nil
}

func runCreate(ctx context.Context, t *trial) error {
	return runCold(ctx, t, false)
}

func runCreateRun(ctx context.Context, t *trial) error {
	return runCold(ctx, t, true)
}

// runCold measures cold creates, each followed by `echo hi` when
// withCommand. The sandboxes are removed when the row ends.
func runCold(ctx context.Context, t *trial, withCommand bool) error {
	b := t.b
	m, err := b.mainManager(ctx)
	if err != nil {
		return err
	}
	var mids, rids idList
	t.cleanup(func(ctx context.Context) error {
		return errors.Join(b.deleteSandboxes(ctx, m, mids.take()), b.removeRaw(ctx, rids.take()))
	})
	return t.pairs(ctx, b.cfg.n, func(ctx context.Context, _ int) (time.Duration, error) {
		return timed(func() error {
			id, err := managerCreate(ctx, m, &mids)
			if err != nil || !withCommand {
				return err
			}
			return checkHi(managerRun(ctx, m, id, "echo", "hi"))
		})
	}, func(ctx context.Context, _ int) (time.Duration, error) {
		return timed(func() error {
			id, err := b.rawCreate(ctx, b.rawName("raw"), rids.add)
			if err != nil || !withCommand {
				return err
			}
			return checkHi(b.rawExec(ctx, id, "echo", "hi"))
		})
	})
}

// poolRun is a Manager with one pool template matching createOptions.
type poolRun struct {
	b        *bench
	m        *opensbx.Manager
	adopted  idList
	released bool
}

// poolStall is how long waitFull waits for the pool to make progress.
const poolStall = 2 * time.Minute

// openPool opens a Manager (namespace <ns>-pool) whose pool keeps size
// sandboxes ready.
func (b *bench) openPool(ctx context.Context, size int) (*poolRun, error) {
	o := createOptions()
	m, err := b.newManager(ctx, b.ns+"-pool", opensbx.WithPool(opensbx.PoolTemplate{Image: o.Image, Ports: o.Ports, Size: size}))
	if err != nil {
		return nil, err
	}
	return &poolRun{b: b, m: m}, nil
}

// status is the pool's one template.
func (p *poolRun) status() (opensbx.PoolStatus, error) {
	st := p.m.Pool()
	if len(st) != 1 {
		return opensbx.PoolStatus{}, fmt.Errorf("the Manager reports %d pool templates, want 1", len(st))
	}
	return st[0], nil
}

// waitFull waits until the pool has all its sandboxes ready; it fails
// when the number ready does not change for poolStall.
func (p *poolRun) waitFull(ctx context.Context) error {
	last, since := -1, time.Now()
	for {
		s, err := p.status()
		if err != nil {
			return err
		}
		if s.Ready >= s.Size {
			return nil
		}
		if s.Ready != last {
			last, since = s.Ready, time.Now()
		} else if time.Since(since) > poolStall {
			return fmt.Errorf("the pool has had %d of %d ready for %v (last fill error: %q)", s.Ready, s.Size, poolStall, s.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// checkHits checks that the pool served want Creates since base, so that
// the row measured pool hits and not cold creates.
func (p *poolRun) checkHits(base opensbx.PoolStatus, want int) error {
	s, err := p.status()
	if err != nil {
		return err
	}
	if hits, misses := s.Hits-base.Hits, s.Misses-base.Misses; hits != uint64(want) || misses != 0 {
		return fmt.Errorf("the pool served %d of %d Creates (%d misses): the figures are not pool hits", hits, want, misses)
	}
	return nil
}

// release deletes the adopted sandboxes and closes the Manager, which
// removes the ready ones. It is idempotent.
func (p *poolRun) release(ctx context.Context) error {
	if p.released {
		return nil
	}
	p.released = true
	return errors.Join(p.b.deleteSandboxes(ctx, p.m, p.adopted.take()), p.b.closeManager(p.m))
}

// makeRawReady creates n running raw containers (the raw side's pool) and
// returns their ids; every container made is also in all.
func (b *bench) makeRawReady(ctx context.Context, n int, all *idList) ([]string, error) {
	var ready idList
	err := forEach(ctx, n, b.cfg.conc, func(ctx context.Context, _ int) error {
		id, err := b.rawCreate(ctx, b.rawName("rawpool"), all.add)
		if err == nil {
			ready.add(id)
		}
		return err
	})
	return ready.get(), err
}

// runPoolLatency measures pool-hit Creates, each followed by `echo hi`
// when withCommand.
func runPoolLatency(ctx context.Context, t *trial, withCommand bool) error {
	b := t.b
	n := b.cfg.n
	p, err := b.openPool(ctx, n)
	if err != nil {
		return err
	}
	t.cleanup(p.release)
	var rids idList
	t.cleanup(func(ctx context.Context) error { return b.removeRaw(ctx, rids.take()) })
	ready, err := b.makeRawReady(ctx, n, &rids)
	if err != nil {
		return err
	}
	if err := p.waitFull(ctx); err != nil {
		return err
	}
	base, err := p.status()
	if err != nil {
		return err
	}
	err = t.pairs(ctx, n, func(ctx context.Context, _ int) (time.Duration, error) {
		if err := p.waitFull(ctx); err != nil {
			return 0, err
		}
		return timed(func() error {
			id, err := managerCreate(ctx, p.m, &p.adopted)
			if err != nil || !withCommand {
				return err
			}
			return checkHi(managerRun(ctx, p.m, id, "echo", "hi"))
		})
	}, func(ctx context.Context, i int) (time.Duration, error) {
		// The refill the Manager's last hit started must not run during the
		// raw side's timed part either.
		if err := p.waitFull(ctx); err != nil {
			return 0, err
		}
		id := ready[i]
		return timed(func() error {
			if err := b.rawAdopt(ctx, id); err != nil || !withCommand {
				return err
			}
			return checkHi(b.rawExec(ctx, id, "echo", "hi"))
		})
	})
	if err != nil {
		return err
	}
	return p.checkHits(base, n)
}

func runExec(ctx context.Context, t *trial) error {
	b := t.b
	m, box, err := b.execBox(ctx)
	if err != nil {
		return err
	}
	return t.pairs(ctx, b.cfg.n, func(ctx context.Context, _ int) (time.Duration, error) {
		return timed(func() error { return checkHi(managerRun(ctx, m, box, "echo", "hi")) })
	}, func(ctx context.Context, _ int) (time.Duration, error) {
		return timed(func() error { return checkHi(b.rawExec(ctx, box, "echo", "hi")) })
	})
}

// runFiles measures write+read round trips of size random bytes, each
// side on its own file (overwritten in every iteration) in the shared
// sandbox.
func runFiles(ctx context.Context, t *trial, size int) error {
	b := t.b
	m, box, err := b.execBox(ctx)
	if err != nil {
		return err
	}
	data := make([]byte, size)
	rand.Read(data)
	suffix := fmt.Sprint(size)
	return t.pairs(ctx, b.cfg.n, func(ctx context.Context, _ int) (time.Duration, error) {
		return timed(func() error {
			p := "/tmp/bench-manager-" + suffix
			if err := m.WriteFile(ctx, box, p, data, 0o644); err != nil {
				return err
			}
			got, _, err := m.ReadFile(ctx, box, p)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, data) {
				return errors.New("ReadFile: the content differs from what was written")
			}
			return nil
		})
	}, func(ctx context.Context, _ int) (time.Duration, error) {
		return timed(func() error { return b.rawWriteRead(ctx, box, "/tmp/bench-raw-"+suffix, data) })
	})
}

func runList(ctx context.Context, t *trial) error {
	b := t.b
	f, err := b.idleSandboxes(ctx)
	if err != nil {
		return err
	}
	want := b.cfg.batch
	filter := filters.NewArgs(filters.Arg("label", "org.opensbx.managed=true"), filters.Arg("label", "org.opensbx.namespace="+f.ns))
	return t.pairs(ctx, b.cfg.n, func(ctx context.Context, _ int) (time.Duration, error) {
		return timed(func() error {
			list, err := f.m.List(ctx)
			if err == nil && len(list) != want {
				err = fmt.Errorf("List returned %d sandboxes, want %d", len(list), want)
			}
			return err
		})
	}, func(ctx context.Context, _ int) (time.Duration, error) {
		return timed(func() error {
			list, err := b.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filter})
			if err == nil && len(list) != want {
				err = fmt.Errorf("ContainerList returned %d containers, want %d", len(list), want)
			}
			return err
		})
	})
}

func runHeap(ctx context.Context, t *trial) error {
	f, err := t.b.idleSandboxes(ctx)
	if err != nil {
		return err
	}
	t.heap = &f.heap
	t.note = fmt.Sprintf("HeapInuse with %d idle sandboxes minus with %d, divided by %d, in a Manager of its own "+
		"(HeapAlloc, counted in bytes rather than pages: %s per sandbox).",
		t.b.cfg.batch, t.b.cfg.batch-f.over, f.over, formatValue(f.alloc, "bytes"))
	return nil
}

// makeBoth creates n sandboxes through m and n raw containers, -conc at a
// time, untimed, and registers their removal.
func (b *bench) makeBoth(ctx context.Context, t *trial, m *opensbx.Manager, n int) (mids, rids []string, err error) {
	var ml, rl idList
	t.cleanup(func(ctx context.Context) error {
		return errors.Join(b.deleteSandboxes(ctx, m, ml.take()), b.removeRaw(ctx, rl.take()))
	})
	err = forEach(ctx, 2*n, b.cfg.conc, func(ctx context.Context, i int) error {
		if i%2 == 0 {
			_, err := managerCreate(ctx, m, &ml)
			return err
		}
		_, err := b.rawCreate(ctx, b.rawName("raw"), rl.add)
		return err
	})
	return ml.get(), rl.get(), err
}

func runStop(ctx context.Context, t *trial) error {
	b := t.b
	m, err := b.mainManager(ctx)
	if err != nil {
		return err
	}
	mids, rids, err := b.makeBoth(ctx, t, m, b.cfg.n)
	if err != nil {
		return err
	}
	return t.pairs(ctx, b.cfg.n, func(ctx context.Context, i int) (time.Duration, error) {
		return timed(func() error {
			sb, err := m.Stop(ctx, mids[i])
			if err == nil && sb.State != opensbx.StateStopped {
				err = fmt.Errorf("sandbox %s is %s after Stop", sb.Name, sb.State)
			}
			return err
		})
	}, func(ctx context.Context, i int) (time.Duration, error) {
		return timed(func() error { return b.rawStop(ctx, rids[i]) })
	})
}

func runDelete(ctx context.Context, t *trial) error {
	b := t.b
	m, err := b.mainManager(ctx)
	if err != nil {
		return err
	}
	mids, rids, err := b.makeBoth(ctx, t, m, b.cfg.n)
	if err != nil {
		return err
	}
	return t.pairs(ctx, b.cfg.n, func(ctx context.Context, i int) (time.Duration, error) {
		return timed(func() error { return m.Delete(ctx, mids[i]) })
	}, func(ctx context.Context, i int) (time.Duration, error) {
		return timed(func() error {
			return b.cli.ContainerRemove(ctx, rids[i], container.RemoveOptions{Force: true, RemoveVolumes: true})
		})
	})
}

func runBatchCold(ctx context.Context, t *trial) error {
	b := t.b
	m, err := b.mainManager(ctx)
	if err != nil {
		return err
	}
	var mids, rids idList
	t.cleanup(func(ctx context.Context) error {
		return errors.Join(b.deleteSandboxes(ctx, m, mids.take()), b.removeRaw(ctx, rids.take()))
	})
	n, conc := b.cfg.batch, b.cfg.conc
	t.note = fmt.Sprintf("(%d sandboxes, %d at a time.)", n, conc)
	return t.pairs(ctx, b.cfg.batchRuns, func(ctx context.Context, _ int) (time.Duration, error) {
		d, err := timed(func() error {
			return forEach(ctx, n, conc, func(ctx context.Context, _ int) error {
				id, err := managerCreate(ctx, m, &mids)
				if err != nil {
					return err
				}
				_, err = managerRun(ctx, m, id, "true")
				return err
			})
		})
		if err != nil {
			return 0, err
		}
		return d, b.deleteSandboxes(ctx, m, mids.take())
	}, func(ctx context.Context, _ int) (time.Duration, error) {
		d, err := timed(func() error {
			return forEach(ctx, n, conc, func(ctx context.Context, _ int) error {
				id, err := b.rawCreate(ctx, b.rawName("raw"), rids.add)
				if err != nil {
					return err
				}
				_, err = b.rawExec(ctx, id, "true")
				return err
			})
		})
		if err != nil {
			return 0, err
		}
		return d, b.removeRaw(ctx, rids.take())
	})
}

func runBatchPool(ctx context.Context, t *trial) error {
	b := t.b
	n, conc := b.cfg.batch, b.cfg.conc
	var cur *poolRun
	var rids idList
	t.cleanup(func(ctx context.Context) error {
		err := b.removeRaw(ctx, rids.take())
		if cur != nil {
			err = errors.Join(err, cur.release(ctx))
		}
		return err
	})
	t.note = fmt.Sprintf("(%d sandboxes, %d at a time; a new pool for each iteration, full before it starts.)", n, conc)
	return t.pairs(ctx, b.cfg.batchRuns, func(ctx context.Context, _ int) (time.Duration, error) {
		p, err := b.openPool(ctx, n)
		if err != nil {
			return 0, err
		}
		cur = p
		if err := p.waitFull(ctx); err != nil {
			return 0, err
		}
		base, err := p.status()
		if err != nil {
			return 0, err
		}
		d, err := timed(func() error {
			return forEach(ctx, n, conc, func(ctx context.Context, _ int) error {
				id, err := managerCreate(ctx, p.m, &p.adopted)
				if err != nil {
					return err
				}
				_, err = managerRun(ctx, p.m, id, "true")
				return err
			})
		})
		if err == nil {
			err = p.checkHits(base, n)
		}
		if err != nil {
			return 0, err
		}
		return d, p.release(ctx)
	}, func(ctx context.Context, _ int) (time.Duration, error) {
		ready, err := b.makeRawReady(ctx, n, &rids)
		if err != nil {
			return 0, err
		}
		d, err := timed(func() error {
			return forEach(ctx, n, conc, func(ctx context.Context, i int) error {
				if err := b.rawAdopt(ctx, ready[i]); err != nil {
					return err
				}
				_, err := b.rawExec(ctx, ready[i], "true")
				return err
			})
		})
		if err != nil {
			return 0, err
		}
		return d, b.removeRaw(ctx, rids.take())
	})
}

func runExecConcurrent(ctx context.Context, t *trial) error {
	b := t.b
	m, err := b.mainManager(ctx)
	if err != nil {
		return err
	}
	var ids idList
	t.cleanup(func(ctx context.Context) error { return b.deleteSandboxes(ctx, m, ids.take()) })
	k, execs := b.cfg.execSandboxes, b.cfg.execs
	if err := forEach(ctx, k, b.cfg.conc, func(ctx context.Context, _ int) error {
		_, err := managerCreate(ctx, m, &ids)
		return err
	}); err != nil {
		return err
	}
	boxes := ids.get()
	t.ops = execs
	t.note = fmt.Sprintf("(%d execs over %d sandboxes.)", execs, k)
	return t.pairs(ctx, b.cfg.batchRuns, func(ctx context.Context, _ int) (time.Duration, error) {
		return timed(func() error {
			return forEach(ctx, execs, execs, func(ctx context.Context, i int) error {
				return checkHi(managerRun(ctx, m, boxes[i%k], "echo", "hi"))
			})
		})
	}, func(ctx context.Context, _ int) (time.Duration, error) {
		return timed(func() error {
			return forEach(ctx, execs, execs, func(ctx context.Context, i int) error {
				return checkHi(b.rawExec(ctx, boxes[i%k], "echo", "hi"))
			})
		})
	})
}
