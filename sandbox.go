package opensbx

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/hashicorp/go-multierror"

	"github.com/opensbx/opensbx/internal/engine"
)

// keepAlive is the default command of a sandbox: a long sleep that ends at
// once on SIGTERM (the sandbox runs under an init that forwards signals).
var keepAlive = []string{"sleep", "2147483647"}

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

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

func validName(s string) bool { return nameRE.MatchString(s) }

// formatCPUs prints a CPU count with at least one decimal ("4.0", "1.5").
func formatCPUs(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// normalizePort turns "8080" or "53/UDP" into "8080/tcp" or "53/udp".
func normalizePort(p string) (string, error) {
	num, proto, found := strings.Cut(strings.TrimSpace(p), "/")
	if !found {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != num {
		return "", invalidf("port %q: want a number 1-65535 with optional /tcp, /udp or /sctp", p)
	}
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return "", invalidf("port %q: protocol must be tcp, udp or sctp", p)
	}
	return num + "/" + proto, nil
}

// normalize validates o and fills in defaults. It returns ErrInvalid errors.
func (m *Manager) normalize(o CreateOptions) (CreateOptions, error) {
	o.Image = strings.TrimSpace(o.Image)
	if o.Image == "" {
		return o, invalidf("image is required")
	}
	if o.Name != "" && !validName(o.Name) {
		return o, invalidf("name %q: want 1-63 of [a-zA-Z0-9_.-], starting with a letter or digit", o.Name)
	}
	if o.TTL < 0 {
		return o, invalidf("TTL must not be negative, got %v", o.TTL)
	}
	if o.TTL == 0 {
		o.TTL = m.cfg.ttl
	}
	r := o.Resources
	if r.MemoryMB < 0 || r.CPUs < 0 || math.IsNaN(r.CPUs) {
		return o, invalidf("resources must not be negative")
	}
	if r.MemoryMB > m.cfg.max.MemoryMB {
		return o, invalidf("memory %d MB is over the maximum %d MB", r.MemoryMB, m.cfg.max.MemoryMB)
	}
	if r.CPUs > m.cfg.max.CPUs {
		return o, invalidf("cpus %s are over the maximum %s", formatCPUs(r.CPUs), formatCPUs(m.cfg.max.CPUs))
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = m.cfg.defaults.MemoryMB
	}
	if r.MemoryMB < 6 {
		return o, invalidf("memory %d MB is under the engine's minimum of 6 MB", r.MemoryMB)
	}
	if r.CPUs == 0 {
		r.CPUs = m.cfg.defaults.CPUs
	}
	o.Resources = r
	seen := map[string]bool{}
	ports := make([]string, 0, len(o.Ports))
	for _, p := range o.Ports {
		np, err := normalizePort(p)
		if err != nil {
			return o, err
		}
		if seen[np] {
			return o, invalidf("port %q is listed twice", p)
		}
		seen[np] = true
		ports = append(ports, np)
	}
	o.Ports = ports
	for _, e := range o.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return o, invalidf("env entry must be KEY=value") // the value may be a secret: not echoed
		}
	}
	for k := range o.Labels {
		if k == "" || strings.HasPrefix(k, labelPrefix) {
			return o, invalidf("label %q: empty or reserved (%s*)", k, labelPrefix)
		}
	}
	if o.KeepImageCommand && (len(o.Command) > 0 || len(o.Entrypoint) > 0) {
		return o, invalidf("KeepImageCommand excludes Command and Entrypoint")
	}
	return o, nil
}

// specHash identifies the settings of a Create, for idempotent names.
func specHash(o CreateOptions) string {
	o.Name, o.PullMissing = "", false
	b, _ := json.Marshal(o)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// CreateResult is returned by Create.
type CreateResult struct {
	*Sandbox
	// Created is false when Create found an existing sandbox with the same
	// Name and settings and returned it.
	Created bool
}

// Create makes and starts a sandbox. It fails with ErrInvalid for bad
// options, ErrImageNotFound when the image is not present locally (and
// PullMissing is off), ErrConflict when Name is taken by other settings, and
// ErrInvalid naming the fix when the image cannot run the default
// keep-alive command. On any failure after the container exists it removes
// the container again; nothing half-made is left behind.
func (m *Manager) Create(ctx context.Context, opts CreateOptions) (*CreateResult, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	o, err := m.normalize(opts)
	if err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	if err := m.ensureImage(ctx, o.Image, o.PullMissing); err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	spec := specHash(o)
	for attempt := 0; ; attempt++ {
		name := o.Name
		if name == "" {
			name = friendlyName()
		}
		res, err := m.create(ctx, o, name, spec)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, errNameTaken) {
			return nil, fmt.Errorf("create sandbox: %w", err)
		}
		if o.Name != "" {
			return m.existing(ctx, o.Name, spec)
		}
		if attempt == 5 {
			return nil, fmt.Errorf("create sandbox: no free name after %d attempts: %w", attempt+1, ErrConflict)
		}
	}
}

var errNameTaken = errors.New("container name taken")

// existing returns the sandbox named name when its settings hash is spec.
func (m *Manager) existing(ctx context.Context, name, spec string) (*CreateResult, error) {
	c, err := m.docker.ContainerInspect(ctx, m.containerName(name))
	if err != nil {
		return nil, fmt.Errorf("create sandbox: name %q: %w", name, engine.Classify(err))
	}
	if !m.owns(c.Config.Labels) {
		return nil, fmt.Errorf("create sandbox: name %q is used by a container this manager does not own: %w", name, ErrConflict)
	}
	if c.Config.Labels[labelSpec] != spec {
		return nil, fmt.Errorf("create sandbox: name %q exists with different settings: %w", name, ErrConflict)
	}
	return &CreateResult{Sandbox: m.fromInspect(c)}, nil
}

// create makes one attempt with a given container name.
func (m *Manager) create(ctx context.Context, o CreateOptions, name, spec string) (_ *CreateResult, err error) {
	cfg, host, err := m.containerConfig(o, name, spec)
	if err != nil {
		return nil, err
	}
	resp, err := m.docker.ContainerCreate(ctx, cfg, host, nil, nil, m.containerName(name))
	if err != nil && ctx.Err() != nil && o.Name == "" {
		// Cancelled mid-request: the engine may still make the container
		// after the client went away. The generated name is ours alone, so
		// remove it by name once it appears, in the background.
		m.removeLate(m.containerName(name))
		return nil, err
	}
	if err != nil {
		err = engine.Classify(err)
		if errors.Is(err, ErrConflict) {
			return nil, errNameTaken
		}
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("image %q: %w", o.Image, errors.Join(ErrImageNotFound, err))
		}
		return nil, err
	}
	id := resp.ID
	defer func() {
		if err == nil {
			return
		}
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if rmErr := m.docker.ContainerRemove(cctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); rmErr != nil && !errors.Is(engine.Classify(rmErr), ErrNotFound) {
			err = multierror.Append(err, fmt.Errorf("remove half-made container %s: %w", shortID(id), rmErr))
		}
		m.expiry.forget(id)
	}()
	// The sandbox runs under an init, so a missing executable would only show
	// as an exit after a successful start: look for it first.
	if argv0 := firstArg(cfg); argv0 != "" {
		found, err := m.hasExecutable(ctx, id, argv0)
		if err != nil {
			return nil, err
		}
		if !found && cfg.Labels[labelKeepAlive] == "true" {
			return nil, fmt.Errorf("image %q cannot run the default keep-alive command %q (it has no %s binary); "+
				"set CreateOptions.Command to a long-running program the image has, or KeepImageCommand to run its own: %w",
				o.Image, strings.Join(keepAlive, " "), argv0, ErrInvalid)
		}
		if !found {
			return nil, fmt.Errorf("image %q has no executable %q: %w", o.Image, argv0, ErrInvalid)
		}
	}
	if err := m.docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return nil, fmt.Errorf("start: %w", engine.Classify(err))
	}
	if err := m.expiry.arm(id, o.TTL); err != nil {
		return nil, err
	}
	c, err := m.docker.ContainerInspect(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", engine.Classify(err))
	}
	sb := m.fromInspect(c)
	m.publish(Event{Type: EventCreated, SandboxID: sb.ID, Name: sb.Name})
	return &CreateResult{Sandbox: sb, Created: true}, nil
}

// removeLate removes the container called name if the engine creates it
// within a few seconds, for a create whose request was cancelled.
func (m *Manager) removeLate(name string) {
	m.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			err := engine.Classify(m.docker.ContainerRemove(ctx, name, container.RemoveOptions{Force: true, RemoveVolumes: true}))
			if err == nil {
				return
			}
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
				m.log.Warn("remove container of a cancelled create", "container", name, "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
}

// firstArg returns the program a new container will run, when Create
// chose it (the image's own ENTRYPOINT/CMD are the image's business).
func firstArg(cfg *container.Config) string {
	if len(cfg.Entrypoint) > 0 {
		return cfg.Entrypoint[0]
	}
	if cfg.Entrypoint != nil && len(cfg.Cmd) > 0 {
		return cfg.Cmd[0]
	}
	return ""
}

// hasExecutable reports whether the created (not yet started) container id
// has argv0, looking along the container's PATH like the runtime does.
func (m *Manager) hasExecutable(ctx context.Context, id, argv0 string) (bool, error) {
	var candidates []string
	if strings.Contains(argv0, "/") {
		candidates = []string{argv0}
		if !path.IsAbs(argv0) {
			return true, nil // relative to the working directory: let the runtime decide
		}
	} else {
		c, err := m.docker.ContainerInspect(ctx, id)
		if err != nil {
			return false, fmt.Errorf("inspect: %w", engine.Classify(err))
		}
		dirs := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		for _, e := range c.Config.Env {
			if v, ok := strings.CutPrefix(e, "PATH="); ok {
				dirs = v
			}
		}
		// Order does not matter for existence; try the likeliest first.
		list := strings.Split(dirs, ":")
		rank := func(d string) int {
			switch d {
			case "/bin":
				return 0
			case "/usr/bin":
				return 1
			}
			return 2
		}
		sort.SliceStable(list, func(i, j int) bool { return rank(list[i]) < rank(list[j]) })
		for _, d := range list {
			if path.IsAbs(d) {
				candidates = append(candidates, path.Join(d, argv0))
			}
		}
	}
	for _, p := range candidates {
		st, err := m.docker.ContainerStatPath(ctx, id, p)
		if err == nil {
			return st.Mode.IsRegular() || st.Mode&fs.ModeSymlink != 0, nil
		}
		if err := engine.Classify(err); !errors.Is(err, ErrNotFound) {
			return false, fmt.Errorf("look for %s: %w", p, err)
		}
	}
	return false, nil
}

func (m *Manager) containerConfig(o CreateOptions, name, spec string) (*container.Config, *container.HostConfig, error) {
	labels := map[string]string{}
	for k, v := range m.cfg.labels {
		labels[k] = v
	}
	for k, v := range o.Labels {
		labels[k] = v
	}
	labels[labelManaged] = "true"
	labels[labelNamespace] = m.cfg.namespace
	labels[labelName] = name
	labels[labelSpec] = spec
	labels[labelTTL] = strconv.FormatInt(int64(o.TTL/time.Millisecond), 10)
	labels[labelExpiresAt] = strconv.FormatInt(time.Now().Add(o.TTL).UnixMilli(), 10)
	labels[labelMemory] = strconv.FormatInt(o.Resources.MemoryMB, 10)
	labels[labelCPUs] = strconv.FormatFloat(o.Resources.CPUs, 'f', -1, 64)
	labels[labelPorts] = strings.Join(o.Ports, ",")
	if o.Private {
		labels[labelPrivate] = "true"
	}
	cfg := &container.Config{
		Image:        o.Image,
		Env:          o.Env,
		Labels:       labels,
		WorkingDir:   o.WorkingDir,
		ExposedPorts: nat.PortSet{},
	}
	switch {
	case o.KeepImageCommand:
	case len(o.Command) == 0 && len(o.Entrypoint) == 0:
		cfg.Entrypoint = keepAlive[:1]
		cfg.Cmd = keepAlive[1:]
		labels[labelKeepAlive] = "true"
	default:
		cfg.Cmd = o.Command
		if len(o.Entrypoint) > 0 {
			cfg.Entrypoint = o.Entrypoint
		} else if len(o.Command) > 0 {
			// A given Command is the whole argv, not arguments to the image's
			// ENTRYPOINT.
			cfg.Entrypoint = []string{}
		}
	}
	memory := o.Resources.MemoryMB << 20
	init := true
	pids := int64(4096)
	host := &container.HostConfig{
		Init:         &init,
		PortBindings: nat.PortMap{},
		Resources: container.Resources{
			Memory:     memory,
			MemorySwap: memory,
			NanoCPUs:   int64(math.Round(o.Resources.CPUs * 1e9)),
			PidsLimit:  &pids,
		},
		SecurityOpt: []string{"no-new-privileges:true"},
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{
			"max-size": "10m", "max-file": "1",
		}},
	}
	for _, p := range o.Ports {
		port := nat.Port(p)
		cfg.ExposedPorts[port] = struct{}{}
		host.PortBindings[port] = []nat.PortBinding{{HostIP: m.cfg.hostIP}}
	}
	return cfg, host, nil
}

// fromInspect builds a Sandbox from an inspect response.
func (m *Manager) fromInspect(c container.InspectResponse) *Sandbox {
	s := m.fromLabels(c.ID, c.Config.Labels)
	s.Image = c.Config.Image
	if c.State != nil {
		s.State = stateOf(c.State.Status, c.State.Running, c.State.Paused, c.State.Restarting)
		s.Status = c.State.Status
		s.StartedAt = parseTime(c.State.StartedAt)
		s.FinishedAt = parseTime(c.State.FinishedAt)
		s.ExitCode = c.State.ExitCode
		s.OOMKilled = c.State.OOMKilled
	}
	s.CreatedAt = parseTime(c.Created)
	if s.Running() && c.NetworkSettings != nil {
		s.PortMap = hostPorts(c.NetworkSettings.Ports, s.Ports)
	}
	s.ExpiresAt = m.expiry.deadline(c.ID)
	return s
}

// fromLabels fills what the labels record.
func (m *Manager) fromLabels(id string, labels map[string]string) *Sandbox {
	s := &Sandbox{ID: id, Name: labels[labelName], HostIP: m.cfg.hostIP, PortMap: map[string]string{}}
	if p := labels[labelPorts]; p != "" {
		s.Ports = strings.Split(p, ",")
	}
	s.Resources.MemoryMB, _ = strconv.ParseInt(labels[labelMemory], 10, 64)
	s.Resources.CPUs, _ = strconv.ParseFloat(labels[labelCPUs], 64)
	s.TTL = labelTTLValue(labels)
	s.Private = labels[labelPrivate] == "true"
	for k, v := range labels {
		if !strings.HasPrefix(k, labelPrefix) {
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
			s.Labels[k] = v
		}
	}
	return s
}

func labelTTLValue(labels map[string]string) time.Duration {
	ms, err := strconv.ParseInt(labels[labelTTL], 10, 64)
	if err != nil || ms <= 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

func hostPorts(bindings nat.PortMap, ports []string) map[string]string {
	out := map[string]string{}
	for _, p := range ports {
		for _, b := range bindings[nat.Port(p)] {
			if b.HostPort != "" {
				out[p] = b.HostPort
				break
			}
		}
	}
	return out
}

func stateOf(status string, running, paused, restarting bool) State {
	switch {
	case paused || status == "paused":
		return StatePaused
	case restarting || status == "restarting":
		return StateRestarting
	case status == "removing":
		return StateRemoving
	case running || status == "running":
		return StateRunning
	}
	return StateStopped
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 2000 {
		return time.Time{}
	}
	return t
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Get returns the sandbox with the given id or name, or ErrNotFound.
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
	return m.fromInspect(c), nil
}

// List returns every sandbox of the Manager's namespace, newest first.
// Containers of other namespaces and non-Opensbx containers never appear.
// PortMap is filled for running sandboxes; StartedAt and FinishedAt are not.
func (m *Manager) List(ctx context.Context) ([]*Sandbox, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	cs, err := m.listOwned(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Sandbox, 0, len(cs))
	for _, c := range cs {
		s := m.fromLabels(c.ID, c.Labels)
		s.Image = c.Image
		s.State = stateOf(string(c.State), false, false, false)
		s.Status = c.Status
		s.CreatedAt = time.Unix(c.Created, 0)
		if s.Running() {
			for _, p := range c.Ports {
				if p.PublicPort != 0 {
					s.PortMap[fmt.Sprintf("%d/%s", p.PrivatePort, p.Type)] = strconv.Itoa(int(p.PublicPort))
				}
			}
		}
		s.ExpiresAt = m.expiry.deadline(c.ID)
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// Start starts a stopped sandbox and arms its TTL anew. Starting a running
// or paused sandbox fails with ErrConflict.
func (m *Manager) Start(ctx context.Context, id string) (*Sandbox, error) {
	return m.transition(ctx, id, "start", func(ctx context.Context, c container.InspectResponse) error {
		switch st := m.stateOfInspect(c); st {
		case StateStopped:
		case StateRunning:
			return fmt.Errorf("sandbox is already running: %w", ErrConflict)
		default:
			return fmt.Errorf("sandbox is %s, not stopped: %w", st, ErrConflict)
		}
		if err := m.docker.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			return engine.Classify(err)
		}
		return m.expiry.arm(c.ID, labelTTLValue(c.Config.Labels))
	})
}

// Stop stops a running or paused sandbox (SIGTERM, then SIGKILL after the
// stop timeout) and disarms its TTL. Stopping a stopped sandbox fails with
// ErrConflict.
func (m *Manager) Stop(ctx context.Context, id string) (*Sandbox, error) {
	return m.transition(ctx, id, "stop", func(ctx context.Context, c container.InspectResponse) error {
		if st := m.stateOfInspect(c); st == StateStopped {
			return fmt.Errorf("sandbox is already stopped: %w", ErrConflict)
		}
		if err := m.stop(ctx, c.ID); err != nil {
			return err
		}
		m.expiry.forget(c.ID)
		return nil
	})
}

func (m *Manager) stop(ctx context.Context, id string) error {
	secs := int(m.cfg.stopTimeout / time.Second)
	return engine.Classify(m.docker.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}))
}

// Restart stops (if needed) and starts a sandbox, arming its TTL anew. It
// works from running, paused and stopped.
func (m *Manager) Restart(ctx context.Context, id string) (*Sandbox, error) {
	return m.transition(ctx, id, "restart", func(ctx context.Context, c container.InspectResponse) error {
		secs := int(m.cfg.stopTimeout / time.Second)
		if err := m.docker.ContainerRestart(ctx, c.ID, container.StopOptions{Timeout: &secs}); err != nil {
			return engine.Classify(err)
		}
		return m.expiry.arm(c.ID, labelTTLValue(c.Config.Labels))
	})
}

// Pause freezes every process of a running sandbox. Pausing a paused or
// stopped sandbox fails with ErrConflict. A paused sandbox still expires.
func (m *Manager) Pause(ctx context.Context, id string) (*Sandbox, error) {
	return m.transition(ctx, id, "pause", func(ctx context.Context, c container.InspectResponse) error {
		switch st := m.stateOfInspect(c); st {
		case StateRunning:
		case StatePaused:
			return fmt.Errorf("sandbox is already paused: %w", ErrConflict)
		default:
			return fmt.Errorf("sandbox is %s, not running: %w", st, ErrConflict)
		}
		return engine.Classify(m.docker.ContainerPause(ctx, c.ID))
	})
}

// Resume thaws a paused sandbox. Resuming one that is not paused fails with
// ErrConflict.
func (m *Manager) Resume(ctx context.Context, id string) (*Sandbox, error) {
	return m.transition(ctx, id, "resume", func(ctx context.Context, c container.InspectResponse) error {
		if st := m.stateOfInspect(c); st != StatePaused {
			return fmt.Errorf("sandbox is %s, not paused: %w", st, ErrConflict)
		}
		return engine.Classify(m.docker.ContainerUnpause(ctx, c.ID))
	})
}

func (m *Manager) stateOfInspect(c container.InspectResponse) State {
	if c.State == nil {
		return StateStopped
	}
	return stateOf(c.State.Status, c.State.Running, c.State.Paused, c.State.Restarting)
}

// transition runs one lifecycle step on an owned sandbox and returns its
// new description.
func (m *Manager) transition(ctx context.Context, id, verb string, step func(context.Context, container.InspectResponse) error) (*Sandbox, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	c, err := m.inspect(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("%s sandbox: %w", verb, err)
	}
	if err := step(ctx, c); err != nil {
		return nil, fmt.Errorf("%s sandbox %s: %w", verb, shortID(c.ID), err)
	}
	m.publish(Event{Type: verbEvents[verb], SandboxID: c.ID, Name: c.Config.Labels[labelName]})
	c, err = m.docker.ContainerInspect(ctx, c.ID)
	if err != nil {
		return nil, fmt.Errorf("%s sandbox %s: inspect: %w", verb, shortID(c.ID), engine.Classify(err))
	}
	return m.fromInspect(c), nil
}

// Delete removes a sandbox in any state, with its processes, filesystem and
// command records. An unknown id fails with ErrNotFound.
func (m *Manager) Delete(ctx context.Context, id string) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	c, err := m.inspect(ctx, id)
	if err != nil {
		return fmt.Errorf("delete sandbox: %w", err)
	}
	if err := m.remove(ctx, c.ID); err != nil {
		return err
	}
	m.publish(Event{Type: EventDeleted, SandboxID: c.ID, Name: c.Config.Labels[labelName]})
	return nil
}

// verbEvents maps a transition's verb to the Event it publishes.
var verbEvents = map[string]EventType{
	"start": EventStarted, "stop": EventStopped, "restart": EventRestarted,
	"pause": EventPaused, "resume": EventResumed, "renew": EventRenewed,
}

// remove force-removes an owned container and forgets its state.
func (m *Manager) remove(ctx context.Context, id string) error {
	err := engine.Classify(m.docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete sandbox %s: %w", shortID(id), err)
	}
	m.expiry.forget(id)
	m.cmds.forget(id)
	return err
}

// Renew sets a running or paused sandbox's deadline to ttl from now (and
// its TTL to ttl for later starts). ttl must be positive (ErrInvalid); a
// stopped sandbox has no deadline to renew (ErrConflict).
func (m *Manager) Renew(ctx context.Context, id string, ttl time.Duration) (*Sandbox, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("renew sandbox: %w", invalidf("TTL must be positive, got %v", ttl))
	}
	return m.transition(ctx, id, "renew", func(ctx context.Context, c container.InspectResponse) error {
		if st := m.stateOfInspect(c); st != StateRunning && st != StatePaused {
			return fmt.Errorf("sandbox is %s; start it instead: %w", st, ErrConflict)
		}
		return m.expiry.arm(c.ID, ttl)
	})
}

// friendlyName returns a random "adjective-noun-xxxx" name.
func friendlyName() string {
	var b [6]byte
	rand.Read(b[:])
	adj := adjectives[int(b[0])%len(adjectives)]
	noun := nouns[int(b[1])%len(nouns)]
	return adj + "-" + noun + "-" + hex.EncodeToString(b[2:4])
}

var adjectives = []string{"amber", "brave", "calm", "eager", "fuzzy", "gentle", "happy", "jolly", "keen", "lucid",
	"merry", "nimble", "proud", "quiet", "rapid", "sunny", "tidy", "vivid", "witty", "zesty"}

var nouns = []string{"badger", "comet", "dolphin", "falcon", "gecko", "heron", "ibis", "jaguar", "koala", "lemur",
	"marten", "narwhal", "otter", "panda", "quokka", "raven", "salmon", "tapir", "walrus", "yak"}
