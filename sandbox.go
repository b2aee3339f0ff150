package opensbx

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
)

// CreateOptions describe a new sandbox. Only Image is required; zero fields
// take the Manager's defaults.
type CreateOptions struct {
	// Image is the image reference to run. It must be present locally unless
	// PullMissing is set (see Manager.PullImage).
	Image string
	// Name makes Create idempotent: a Create with the Name of an existing
	// sandbox and the same settings returns that sandbox (Created false), one
	// with different settings fails with ErrConflict. Empty means a generated
	// friendly name. Letters, digits, '.', '_' and '-', at most 63.
	Name string
	// Ports are container ports to publish on the Manager's host IP, each a
	// number with an optional protocol: "8080", "53/udp". Each gets a free host
	// port. The first is the sandbox's main port.
	Ports []string
	// Env is the environment as "KEY=value" entries.
	Env []string
	// Resources are the limits; zero fields take the Manager's defaults.
	Resources Resources
	// TTL is the time to live after which the sandbox is stopped (or deleted,
	// see WithDeleteOnExpiry). Zero means the Manager's default; negative is
	// invalid.
	TTL time.Duration
	// Command replaces the image's CMD. With neither Command nor Entrypoint
	// nor KeepImageCommand, the sandbox runs a long sleep to stay alive, which
	// needs a sleep binary in the image.
	Command []string
	// Entrypoint replaces the image's ENTRYPOINT.
	Entrypoint []string
	// KeepImageCommand runs the image's own ENTRYPOINT and CMD instead of the
	// keep-alive sleep.
	KeepImageCommand bool
	// WorkingDir replaces the image's working directory.
	WorkingDir string
	// PullMissing pulls Image when it is not present locally.
	PullMissing bool
	// Labels are extra container labels for this sandbox, added to the
	// Manager's (WithLabels). Keys under "org.opensbx." are reserved.
	Labels map[string]string
	// Private marks the sandbox's preview URLs as private: a preview proxy
	// (package preview) serves them only to requests carrying the
	// sandbox's own preview token, never to anyone who knows the name.
	Private bool
	// User runs the sandbox's main process and, unless ExecOptions.User
	// says otherwise, its commands as this user ("nobody", "1000",
	// "1000:1000"); empty means the image's.
	User string
	// ReadOnlyRootfs mounts the root file system read-only; /tmp and /work
	// stay writable (volumes of their own, removed with the sandbox).
	ReadOnlyRootfs bool
	// Network is "" for the Manager's default (the engine's bridge, ports
	// published on the host IP) or "none" for no network at all (no
	// interface but loopback; Ports must be empty).
	Network string
	// Runtime is the OCI runtime ("runc", "runsc" for gVisor); empty means
	// the Manager's (WithRuntime), else the engine's default.
	Runtime string
	// Egress limits the destinations the sandbox may connect to: IPv4
	// addresses or prefixes ("10.1.2.3", "192.0.2.0/24"), at most 64. Empty
	// means anywhere outside but the host and metadata addresses. It needs
	// the host firewall rules (Manager.Isolation().HostRules) and gives the
	// sandbox a bridge network of its own.
	Egress []string
}

// State is the normalised state of a sandbox.
type State string

// Sandbox states.
const (
	StateRunning    State = "running"
	StatePaused     State = "paused"
	StateStopped    State = "stopped"
	StateRestarting State = "restarting"
	StateRemoving   State = "removing"
)

// Sandbox describes one sandbox as the engine last reported it.
type Sandbox struct {
	// ID is the container id; every call accepts it (or the Name).
	ID string
	// Name is the sandbox's unique friendly name within the namespace.
	Name string
	// Image is the image reference the sandbox was created from.
	Image string
	// State is running, paused, stopped, restarting or removing.
	State State
	// Status is the engine's own status text ("Up 3 minutes", "exited").
	Status string
	// Ports are the published container ports, normalised ("8080/tcp"),
	// main port first.
	Ports []string
	// PortMap maps each published container port to its host port; empty
	// while the sandbox is not running.
	PortMap map[string]string
	// HostIP is the host address ports are published on.
	HostIP string
	// PortsVia says how PortMap is reached (Network.Via): on HostIP
	// (NetworkViaHostPorts, NetworkViaPodIP), or through the agent's
	// session (NetworkViaAgent: DialPort; HostIP is empty and PortMap maps
	// each port to itself).
	PortsVia string
	// Resources are the sandbox's limits.
	Resources Resources
	// TTL is the sandbox's time to live.
	TTL time.Duration
	// CreatedAt, StartedAt and FinishedAt are the engine's timestamps; zero
	// when unknown (StartedAt and FinishedAt are not in List results).
	CreatedAt, StartedAt, FinishedAt time.Time
	// ExpiresAt is when the sandbox will be stopped; zero when it is not
	// running.
	ExpiresAt time.Time
	// ExitCode is the main process's exit code once it has stopped.
	ExitCode int
	// OOMKilled reports that the main process was killed for exceeding
	// the memory limit.
	OOMKilled bool
	// Labels are the caller's extra labels (WithLabels); Opensbx's own are
	// not included.
	Labels map[string]string
	// Private reports CreateOptions.Private.
	Private bool
}

// Running reports whether the sandbox's processes run (paused counts).
func (s *Sandbox) Running() bool { return s.State == StateRunning || s.State == StatePaused }

// MainPort returns the first published port ("8080/tcp"), or "".
func (s *Sandbox) MainPort() string {
	if len(s.Ports) == 0 {
		return ""
	}
	return s.Ports[0]
}

// CreateResult is returned by Create.
type CreateResult struct {
	*Sandbox
	// Created is false when Create found an existing sandbox with the same
	// Name and settings and returned it.
	Created bool
}

// Get returns the sandbox with the given id, id prefix or name, or
// ErrNotFound.
func (m *Manager) Get(ctx context.Context, id string) (*Sandbox, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	c, err := m.inspect(ctx, id)
	if err != nil {
		return nil, err
	}
	return m.sandboxOf(c), nil
}

// List returns every sandbox of the Manager's namespace, newest first.
// Containers of other namespaces and non-Opensbx containers never appear.
// PortMap is filled for running sandboxes; StartedAt and FinishedAt are not.
// It costs one engine call.
func (m *Manager) List(ctx context.Context) ([]*Sandbox, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	cs, err := m.index.refresh(ctx)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	out := make([]*Sandbox, 0, len(cs))
	for _, c := range cs {
		out = append(out, m.sandboxOf(c))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// sandboxOf describes container c (from Inspect or List).
func (m *Manager) sandboxOf(c engine.Container) *Sandbox {
	s := &Sandbox{
		ID:         c.ID,
		Name:       m.nameOf(c),
		Image:      c.Image,
		State:      stateOf(c.State),
		Status:     c.State.Status,
		HostIP:     m.cfg.hostIP,
		PortMap:    map[string]string{},
		TTL:        m.ttlOf(c),
		CreatedAt:  c.Created,
		StartedAt:  c.State.StartedAt,
		FinishedAt: c.State.FinishedAt,
		ExitCode:   c.State.ExitCode,
		OOMKilled:  c.State.OOMKilled,
		Private:    c.Labels[labelPrivate] == "true",
	}
	if c.StatusText != "" {
		s.Status = c.StatusText
	}
	if p := c.Labels[labelPorts]; p != "" {
		s.Ports = strings.Split(p, ",")
	}
	s.Resources.MemoryMB, _ = strconv.ParseInt(c.Labels[labelMemory], 10, 64)
	s.Resources.CPUs, _ = strconv.ParseFloat(c.Labels[labelCPUs], 64)
	for k, v := range c.Labels {
		if !strings.HasPrefix(k, labelPrefix) {
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
			s.Labels[k] = v
		}
	}
	if rec, ok := m.records.get(c.ID); ok {
		s.Resources, s.Private = rec.Resources, rec.Private
		for k, v := range rec.Labels {
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
			s.Labels[k] = v
		}
	}
	s.PortsVia = m.portsVia()
	switch {
	case m.onKubernetes():
		// A Pod publishes nothing on a host: its ports are reached on its
		// own address or through the agent (the preview proxy dials
		// HostIP:PortMap[port], or DialPort).
		s.HostIP = ""
		ip := c.IPs["pod"]
		if s.PortsVia == NetworkViaPodIP {
			s.HostIP = ip
		}
		if s.Running() && (ip != "" || s.PortsVia == NetworkViaAgent) {
			for _, p := range s.Ports {
				num, _, _ := strings.Cut(p, "/")
				s.PortMap[p] = num
			}
		}
	case s.Running():
		for _, p := range s.Ports {
			if hp := c.Ports[p]; hp != "" {
				s.PortMap[p] = hp
			}
		}
	}
	s.ExpiresAt = m.expiry.deadline(c.ID)
	return s
}

// stateOf normalises a container's state.
func stateOf(st engine.ContainerState) State {
	switch {
	case st.Paused || st.Status == "paused":
		return StatePaused
	case st.Restarting || st.Status == "restarting":
		return StateRestarting
	case st.Status == "removing":
		return StateRemoving
	case st.Running || st.Status == "running":
		return StateRunning
	}
	return StateStopped
}
