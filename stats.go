package opensbx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/opensbx/opensbx/internal/engine"
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

// Stats returns one resource sample of a running or paused sandbox; a
// stopped one fails with ErrConflict. It takes about a second, since CPU
// use is measured between two samples.
func (m *Manager) Stats(ctx context.Context, id string) (Stats, error) {
	var out Stats
	err := m.statsStream(ctx, id, false, func(s Stats) error {
		out = s
		return nil
	})
	return out, err
}

// StatsStream calls fn with one sample a second until ctx ends (it then
// returns nil), fn returns an error (returned), or the sandbox stops
// (ErrConflict).
func (m *Manager) StatsStream(ctx context.Context, id string, fn func(Stats) error) error {
	return m.statsStream(ctx, id, true, fn)
}

func (m *Manager) statsStream(ctx context.Context, id string, stream bool, fn func(Stats) error) error {
	outer := ctx
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	c, err := m.inspect(ctx, id)
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	if st := m.stateOfInspect(c); st != StateRunning && st != StatePaused {
		return fmt.Errorf("stats: sandbox %s is %s: %w", shortID(c.ID), st, ErrConflict)
	}
	resp, err := m.docker.ContainerStats(ctx, c.ID, stream)
	if err != nil {
		return fmt.Errorf("stats: %w", engine.Classify(err))
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var raw container.StatsResponse
		if err := dec.Decode(&raw); err != nil {
			if outer.Err() != nil {
				return nil
			}
			if m.ctx.Err() != nil {
				return ErrClosed
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				if stream {
					return fmt.Errorf("stats: sandbox %s stopped: %w", shortID(c.ID), ErrConflict)
				}
				return fmt.Errorf("stats: no sample: %w", ErrConflict)
			}
			return fmt.Errorf("stats: decode: %w", err)
		}
		if raw.Read.IsZero() || raw.Read.Year() < 2000 {
			// The engine sends an empty sample once the container stopped.
			if stream {
				return fmt.Errorf("stats: sandbox %s stopped: %w", shortID(c.ID), ErrConflict)
			}
			return fmt.Errorf("stats: sandbox %s is not running: %w", shortID(c.ID), ErrConflict)
		}
		if err := fn(statsFrom(&raw)); err != nil {
			return err
		}
		if !stream {
			return nil
		}
	}
}

// statsFrom computes a sample the way the docker CLI does.
func statsFrom(s *container.StatsResponse) Stats {
	out := Stats{Time: s.Read, PIDs: s.PidsStats.Current, MemoryLimit: s.MemoryStats.Limit}
	cpuDelta := float64(s.CPUStats.CPUUsage.TotalUsage) - float64(s.PreCPUStats.CPUUsage.TotalUsage)
	sysDelta := float64(s.CPUStats.SystemUsage) - float64(s.PreCPUStats.SystemUsage)
	online := float64(s.CPUStats.OnlineCPUs)
	if online == 0 {
		online = float64(len(s.CPUStats.CPUUsage.PercpuUsage))
	}
	if cpuDelta > 0 && sysDelta > 0 {
		out.CPUPercent = cpuDelta / sysDelta * online * 100
	}
	usage := s.MemoryStats.Usage
	cache := s.MemoryStats.Stats["total_inactive_file"] // cgroup v1
	if v, ok := s.MemoryStats.Stats["inactive_file"]; ok && cache == 0 {
		cache = v // cgroup v2
	}
	if cache < usage {
		usage -= cache
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
}

// Network returns the sandbox's main port and port map.
func (m *Manager) Network(ctx context.Context, id string) (Network, error) {
	s, err := m.Get(ctx, id)
	if err != nil {
		return Network{}, fmt.Errorf("network: %w", err)
	}
	return Network{HostIP: s.HostIP, MainPort: s.MainPort(), Ports: s.PortMap}, nil
}
