package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

const cleanupTimeout = 5 * time.Minute

// target is the server under load.
type target struct {
	url, key, namespace string
	pid                 int    // its process on this machine, 0 = unknown
	child               *child // nil for -url
}

// runLoad starts or finds the server, runs the load, cleans up and checks
// for leaks. It returns a nil report when the run never began (the server
// did not start, or failed the preflight checks), with nothing left behind.
func runLoad(ctx context.Context, cfg config, progress io.Writer) (*report, error) {
	progress = &lockedWriter{w: progress}
	loadBefore := loadAvg()
	t := target{url: cfg.url, key: cfg.key, namespace: cfg.namespace, pid: cfg.pid}
	if cfg.url == "" {
		c, err := startChild(ctx, cfg, progress)
		if err != nil {
			return nil, err
		}
		defer func() {
			if done, _ := c.exited(); !done {
				c.kill()
			}
			c.remove()
		}()
		t = target{url: c.url, key: c.key, namespace: c.ns, pid: c.pid(), child: c}
		fmt.Fprintf(progress, "server %s pid %d namespace %s\n", c.url, c.pid(), c.ns)
	}
	l := newLoader(cfg, t.url, t.key)
	if err := preflight(ctx, l); err != nil {
		return nil, err
	}

	rep := newReport(cfg, t)
	rep.LoadAvg.Before = loadBefore

	smp := &sampler{l: l, pid: t.pid, progress: progress, origin: time.Now()}
	rep.Run.Started = smp.origin.UTC().Format(time.RFC3339)
	smp.take("start")
	fmt.Fprintf(progress, "warm-up: creating %d sandboxes\n", cfg.minSandboxes)
	warm, warmed := l.warmUp(ctx)
	rep.Warmup.Created = warmed
	rep.Warmup.Seconds = time.Since(smp.origin).Seconds()
	l.start = time.Now()
	l.deadline = l.start.Add(cfg.duration)
	smp.take("load begins")
	var wg sync.WaitGroup
	stopSampling := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		smp.every(cfg.sample, stopSampling)
	}()
	fmt.Fprintf(progress, "load: %d clients for %v on up to %d sandboxes\n", cfg.clients, cfg.duration, cfg.sandboxes)
	rec := l.runClients(ctx, cfg.clients)
	loadEnd := time.Now()
	rep.Interrupted = ctx.Err() != nil
	rec.mergeErrors(warm)
	close(stopSampling)
	wg.Wait()
	smp.take("end")
	rep.addLoad(l, rec, loadEnd)

	// Cleanup, under a context of its own: a Ctrl-C that stopped the load
	// must not stop the cleanup.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var dc *dockerCheck
	var probe leaks
	if cfg.docker {
		var err error
		if dc, err = newDockerCheck(t.namespace, prefix(cfg.id), t.child != nil); err != nil {
			probe.Errors = append(probe.Errors, "docker check: "+err.Error())
		} else {
			defer dc.close()
			live, _ := l.live.counts()
			dc.probe(cctx, &probe, live)
		}
	}
	fmt.Fprintln(progress, "cleanup: deleting the run's sandboxes")
	rep.Leaks = cleanupAPI(cctx, l, t.child != nil)
	rep.Leaks.DockerBefore = probe.DockerBefore
	rep.Leaks.Errors = append(probe.Errors, rep.Leaks.Errors...)
	l.hc.CloseIdleConnections()
	smp.take("after cleanup")
	rep.Memory = smp.samples()
	for i := range rep.Memory {
		rep.Memory[i].At = rep.Memory[i].when.Sub(l.start).Seconds()
	}
	if c := t.child; c != nil {
		if done, err := c.exited(); done {
			rep.Server.Exit = fmt.Sprintf("exited during the run: %v", err)
		} else if err := c.stop(); err != nil {
			rep.Server.Exit = err.Error()
		} else {
			rep.Server.Exit = "clean (SIGTERM)"
		}
		rep.Server.LogLevels, rep.Server.LogProblems, rep.Server.LogProblemsDropped = c.log.summary()
		for i := range rep.Errors.Server {
			rep.Errors.Server[i].ServerLog = c.log.forRequest(rep.Errors.Server[i].RequestID)
		}
	}
	if dc != nil {
		dc.sweep(cctx, &rep.Leaks)
	}
	rep.Sandboxes.Created, rep.Sandboxes.Deleted = l.live.tally()
	rep.LoadAvg.After = loadAvg()
	rep.judge(cfg)
	return rep, nil
}

// preflight checks that the server is healthy, takes the key, and has the
// image (this command never pulls).
func preflight(ctx context.Context, l *loader) error {
	a := l.send(ctx, http.MethodGet, "/v1/health", nil, "", "", maxAnswer)
	if a.err != nil || a.status != http.StatusOK {
		return fmt.Errorf("GET /v1/health: %s", describe(a))
	}
	a = l.send(ctx, http.MethodGet, "/v1/sandboxes", nil, "", "", maxAnswer)
	if a.err != nil || a.status != http.StatusOK {
		return fmt.Errorf("GET /v1/sandboxes (is -key right?): %s", describe(a))
	}
	a = l.send(ctx, http.MethodGet, "/v1/images/"+url.PathEscape(l.cfg.image), nil, "", "", maxAnswer)
	switch {
	case a.err == nil && a.status == http.StatusOK:
		return nil
	case a.err == nil && a.status == http.StatusNotFound:
		return fmt.Errorf("image %s is not on the engine; this command never pulls: build it with go run ./internal/testenv/cmd/buildimages", l.cfg.image)
	default:
		return fmt.Errorf("GET /v1/images/%s: %s", l.cfg.image, describe(a))
	}
}

// describe is an answer in a line, for errors.
func describe(a answer) string {
	if a.err != nil {
		return a.err.Error()
	}
	return fmt.Sprintf("status %d: %.300s", a.status, strings.TrimSpace(string(a.body)))
}

// loadAvg is the machine's load average (1, 5, 15 min), zero when unknown.
func loadAvg() [3]float64 {
	var v [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err == nil {
		fmt.Sscan(string(b), &v[0], &v[1], &v[2])
	}
	return v
}

// lockedWriter serialises writes: progress comes from the sampler and
// from the run itself.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// sampler takes the server's memory samples and prints progress.
type sampler struct {
	l        *loader
	pid      int
	progress io.Writer
	origin   time.Time // the first sample's, for progress lines

	mu   sync.Mutex
	list []memSample
}

// every takes a sample each interval until stop is closed.
func (s *sampler) every(interval time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			s.take(fmt.Sprintf("%.0fs", time.Since(s.l.start).Seconds()))
		}
	}
}

// take records one sample and prints a progress line.
func (s *sampler) take(label string) {
	m := memSample{Label: label, when: time.Now(), Requests: s.l.requests.Load()}
	m.Live, _ = s.l.live.counts()
	if s.pid == 0 {
		m.Error = errNoProc.Error()
	} else if p, err := readProc(s.pid); err != nil {
		m.Error = err.Error()
	} else {
		m.RSS, m.Peak, m.Threads, m.FDs, m.CPU = p.RSS, p.Peak, p.Threads, p.FDs, p.CPU
	}
	s.mu.Lock()
	s.list = append(s.list, m)
	s.mu.Unlock()
	mem := "rss ?"
	if m.Error == "" {
		mem = "rss " + formatBytes(m.RSS)
	}
	fmt.Fprintf(s.progress, "[%6.1fs] %-13s requests %d, 5xx %d, other errors %d, live sandboxes %d, %s\n",
		m.when.Sub(s.origin).Seconds(), label, m.Requests, s.l.serverErrs.Load(), s.l.otherErrs.Load(), m.Live, mem)
}

func (s *sampler) samples() []memSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]memSample(nil), s.list...)
}
