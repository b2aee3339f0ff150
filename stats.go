package opensbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Stats is one resource sample of a sandbox.
type Stats struct {
	// Time is when the engine took the sample.
	Time time.Time
	// CPUPercent is the CPU use since the previous sample, where 100 is one
	// full CPU (as docker stats reports it).
	CPUPercent float64
	// MemoryUsage is the memory in use in bytes, page cache excluded.
	MemoryUsage uint64
	// MemoryLimit is the memory limit in bytes.
	MemoryLimit uint64
	// MemoryPercent is MemoryUsage as a percentage of MemoryLimit.
	MemoryPercent float64
	// PIDs is the number of processes and threads.
	PIDs uint64
}

// statsWindow is the shortest CPU measuring interval of Stats: a previous
// sample at least this old (and younger than statsFresh) is the baseline,
// otherwise Stats takes a second sample statsWindow after the first.
const (
	statsWindow      = 100 * time.Millisecond
	statsMinWindow   = 10 * time.Millisecond
	statsBaselineAge = time.Second
	statsFresh       = 10 * time.Minute
)

// statsCache keeps each sandbox's last one-shot sample, the baseline of the
// next Stats call's CPU figure.
type statsCache struct {
	mu   sync.Mutex
	last map[string]cachedSample
}

// cachedSample is a sample and where it came from: the engine, or the
// sandbox's agent (whose SystemTotal is the wall clock).
type cachedSample struct {
	s     engine.StatsSample
	agent bool
}

func (c *statsCache) get(id string, agent bool) (engine.StatsSample, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.last[id]
	return s.s, ok && s.agent == agent
}

func (c *statsCache) put(id string, s engine.StatsSample, agent bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]cachedSample{}
	}
	c.last[id] = cachedSample{s, agent}
}

func (c *statsCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.last, id)
}

// Stats returns one resource sample of a running or paused sandbox; a
// stopped one fails with ErrConflict. CPU use is measured against the
// sandbox's previous sample when one from the last 10 minutes exists (Create
// takes a first one; the baseline moves on once it is a second old), else
// between two samples 100 ms apart. A sandbox with its agent is sampled by
// the agent (its cgroup, in milliseconds), else by the engine.
func (m *Manager) Stats(ctx context.Context, id string) (Stats, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return Stats{}, err
	}
	defer done()
	sample := m.oneShot
	sid, _, live := m.liveAgent(ctx, id)
	if live {
		// The agent reads the sandbox's cgroup: milliseconds, where the
		// engine's one-shot sample takes a second on this engine.
		id, sample = sid, m.agentSample
	} else {
		c, err := m.runningForStats(ctx, id)
		if err != nil {
			return Stats{}, err
		}
		id = c.ID
		if m.onKubernetes() && m.usesAgent(c) {
			// No engine stats on a cluster: open the agent's session.
			sample, live = m.agentSample, true
		}
	}
	first, err := sample(ctx, id)
	if err != nil {
		return Stats{}, err
	}
	base, ok := m.stats.get(id, live)
	wait := time.Duration(0)
	switch age := first.Read.Sub(base.Read); {
	case !ok || age > statsFresh:
		base, wait = first, statsWindow // no baseline: measure over 100 ms
	case age < statsMinWindow:
		wait = statsMinWindow // too short a window to mean anything
	}
	if wait > 0 {
		select {
		case <-ctx.Done():
			return Stats{}, ctx.Err()
		case <-time.After(wait):
		}
		if first, err = sample(ctx, id); err != nil {
			return Stats{}, err
		}
	}
	if !ok || first.Read.Sub(base.Read) >= statsBaselineAge {
		// Frequent callers measure over at least a second, as docker stats.
		m.stats.put(id, first, live)
	}
	first.PreCPUTotal, first.PreSystemTotal = base.CPUTotal, base.SystemTotal
	return statsFrom(first), nil
}

// runningForStats resolves a sandbox that has processes to measure.
func (m *Manager) runningForStats(ctx context.Context, id string) (engine.Container, error) {
	c, err := m.inspect(ctx, id)
	if err != nil {
		return c, fmt.Errorf("stats: %w", err)
	}
	if st := stateOf(c.State); st != StateRunning && st != StatePaused {
		return c, fmt.Errorf("stats: %w", sbxerr.Conflict("sandbox %s is %s", shortID(c.ID), st))
	}
	return c, nil
}

// agentSample is a sample of the sandbox's cgroup, read by its agent, as a
// StatsSample: the wall clock stands in for the host's CPU time, with one
// "online CPU", so that statsFrom gives CPU time over wall time (which is
// what the engine's formula amounts to).
func (m *Manager) agentSample(ctx context.Context, id string) (engine.StatsSample, error) {
	client, err := m.agents.client(ctx, id)
	if err != nil {
		return engine.StatsSample{}, fmt.Errorf("stats: %w", err)
	}
	s, err := client.Stats(ctx)
	if err != nil {
		return engine.StatsSample{}, fmt.Errorf("stats: %w", m.agentErr(ctx, id, err))
	}
	return engine.StatsSample{
		Read: s.Time, CPUTotal: s.CPUUsage, SystemTotal: uint64(s.Time.UnixNano()), OnlineCPUs: 1,
		MemoryUsage: s.MemoryUsage, MemoryLimit: s.MemoryLimit, PIDs: s.PIDs,
	}, nil
}

// oneShot takes one sample without the engine's wait.
func (m *Manager) oneShot(ctx context.Context, id string) (engine.StatsSample, error) {
	var out engine.StatsSample
	err := m.engine.Stats(ctx, id, false, func(s engine.StatsSample) error {
		out = s
		return nil
	})
	switch {
	case errors.Is(err, io.EOF), err == nil && out.Read.IsZero():
		return out, fmt.Errorf("stats: %w", sbxerr.Conflict("sandbox %s is not running", shortID(id)))
	case err != nil:
		return out, fmt.Errorf("stats: %w", m.raced(ctx, id, err))
	}
	return out, nil
}

// StatsStream calls fn with one sample a second until ctx ends (it then
// returns nil), fn returns an error (returned), or the sandbox stops
// (ErrConflict).
func (m *Manager) StatsStream(ctx context.Context, id string, fn func(Stats) error) error {
	outer := ctx
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	c, err := m.runningForStats(ctx, id)
	if err != nil {
		return err
	}
	if m.onKubernetes() && m.usesAgent(c) {
		return m.agentStatsStream(ctx, outer, c.ID, fn)
	}
	var fnErr error
	err = m.engine.Stats(ctx, c.ID, true, func(s engine.StatsSample) error {
		if s.Read.IsZero() {
			// The engine sends an empty sample once the container stopped.
			return io.EOF
		}
		fnErr = fn(statsFrom(s))
		return fnErr
	})
	switch {
	case fnErr != nil:
		return fnErr
	case outer.Err() != nil:
		return nil
	case m.ctx.Err() != nil:
		return ErrClosed
	case err == nil, errors.Is(err, io.EOF):
		return fmt.Errorf("stats: %w", sbxerr.Conflict("sandbox %s stopped", shortID(c.ID)))
	}
	return fmt.Errorf("stats: %w", m.raced(ctx, c.ID, err))
}

// agentStatsStream is StatsStream where the engine has no stats stream (a
// cluster): the agent samples the sandbox's cgroup once a second, and each
// sample's CPU share is over the second before it. The sandbox's state is
// read at every tick, since a stopped Pod's agent still answers.
func (m *Manager) agentStatsStream(ctx, outer context.Context, id string, fn func(Stats) error) error {
	end := func(err error) error {
		switch {
		case outer.Err() != nil:
			return nil
		case m.ctx.Err() != nil:
			return ErrClosed
		}
		return err
	}
	base, err := m.agentSample(ctx, id)
	if err != nil {
		return end(err)
	}
	tick := time.NewTicker(statsStreamEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return end(ctx.Err())
		case <-tick.C:
		}
		c, err := m.engine.Inspect(ctx, id)
		switch {
		case err != nil:
			return end(fmt.Errorf("stats: %w", m.raced(ctx, id, err)))
		case stateOf(c.State) != StateRunning:
			return end(fmt.Errorf("stats: %w", sbxerr.Conflict("sandbox %s stopped", shortID(id))))
		}
		s, err := m.agentSample(ctx, id)
		if err != nil {
			return end(err)
		}
		s.PreCPUTotal, s.PreSystemTotal = base.CPUTotal, base.SystemTotal
		if err := fn(statsFrom(s)); err != nil {
			return err
		}
		base = s
	}
}

// statsStreamEvery is the period of a stream's samples, as the engine's.
const statsStreamEvery = time.Second

// statsFrom computes a sample the way the docker CLI does.
func statsFrom(s engine.StatsSample) Stats {
	out := Stats{Time: s.Read, PIDs: s.PIDs, MemoryLimit: s.MemoryLimit}
	cpuDelta := float64(s.CPUTotal) - float64(s.PreCPUTotal)
	sysDelta := float64(s.SystemTotal) - float64(s.PreSystemTotal)
	if cpuDelta > 0 && sysDelta > 0 && s.PreSystemTotal > 0 {
		out.CPUPercent = cpuDelta / sysDelta * float64(s.OnlineCPUs) * 100
	}
	usage := s.MemoryUsage
	if s.MemoryCache < usage {
		usage -= s.MemoryCache
	}
	out.MemoryUsage = usage
	if out.MemoryLimit > 0 {
		out.MemoryPercent = float64(usage) / float64(out.MemoryLimit) * 100
	}
	return out
}

// Network describes how a sandbox's ports are reachable from the host.
type Network struct {
	// HostIP is the host address the ports are published on.
	HostIP string
	// MainPort is the sandbox's first port ("8080/tcp"), or "".
	MainPort string
	// Ports maps each container port ("8080/tcp") to its host port
	// ("32768"); empty while the sandbox is not running.
	Ports map[string]string
	// Via says how the ports are reached: NetworkViaHostPorts (published
	// on HostIP, Docker), NetworkViaPodIP (HostIP is the Pod's address and
	// the ports are the container's own, Kubernetes with a Manager that
	// reaches Pod IPs), or NetworkViaAgent (through the agent's session
	// with DialPort; HostIP is empty).
	Via string
}

// How a sandbox's ports are reached (Network.Via, Sandbox.PortsVia).
const (
	NetworkViaHostPorts = "host-ports"
	NetworkViaPodIP     = "pod-ip"
	NetworkViaAgent     = "agent"
)

// Network returns the sandbox's main port and port map.
func (m *Manager) Network(ctx context.Context, id string) (Network, error) {
	s, err := m.Get(ctx, id)
	if err != nil {
		return Network{}, fmt.Errorf("network: %w", err)
	}
	return Network{HostIP: s.HostIP, MainPort: s.MainPort(), Ports: s.PortMap, Via: s.PortsVia}, nil
}
