package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	units "github.com/docker/go-units"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// DockerClient is the Docker SDK's client interface; a *client.Client
// satisfies it.
type DockerClient = client.APIClient

// NewDockerClient returns an SDK client configured like the docker CLI
// (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), or for host when host
// is not empty, negotiating the API version with the engine.
func NewDockerClient(host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, sbxerr.Wrap(sbxerr.ErrUnavailable, err)
	}
	return c, nil
}

// Docker is the Engine of a Docker daemon, through the Docker SDK.
type Docker struct {
	c    DockerClient
	owns bool
}

var _ Engine = (*Docker)(nil)

// NewDocker returns the Engine of the daemon c talks to. When owns is set,
// Close closes c.
func NewDocker(c DockerClient, owns bool) *Docker { return &Docker{c: c, owns: owns} }

// fullIDRE matches the full ids the engine gives containers and execs.
var fullIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// IsFullID reports whether s is a full container or exec id: 64 lower-case
// hex digits.
func IsFullID(s string) bool { return fullIDRE.MatchString(s) }

// checkID refuses anything but a full id before a request is made.
func checkID(kind, id string) error {
	if !IsFullID(id) {
		return sbxerr.NotFound("%s %q: not a full id", kind, id)
	}
	return nil
}

// Ping checks that the engine answers.
func (d *Docker) Ping(ctx context.Context) error {
	_, err := d.c.Ping(ctx)
	if err != nil {
		err = Classify(err)
		if !errors.Is(err, sbxerr.ErrUnavailable) && ctx.Err() == nil {
			err = sbxerr.Wrap(sbxerr.ErrUnavailable, err)
		}
	}
	return err
}

// Info describes the engine.
func (d *Docker) Info(ctx context.Context) (Info, error) {
	i, err := d.c.Info(ctx)
	if err != nil {
		return Info{}, Classify(err)
	}
	out := Info{
		Backend:       BackendDocker,
		Local:         strings.HasPrefix(d.c.DaemonHost(), "unix://"),
		Arch:          goArch(i.Architecture),
		OS:            i.OSType,
		Version:       i.ServerVersion,
		StorageDriver: i.Driver,
		CgroupVersion: i.CgroupVersion,
	}
	for _, kv := range i.DriverStatus {
		if kv[0] == "Backing Filesystem" {
			out.BackingFS = kv[1]
		}
	}
	for name := range i.Runtimes {
		out.Runtimes = append(out.Runtimes, name)
	}
	sort.Strings(out.Runtimes)
	return out, nil
}

// goArch turns the engine's machine name into Go's GOARCH.
func goArch(machine string) string {
	switch machine {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	}
	return machine
}

// Close closes the client when the Docker owns it.
func (d *Docker) Close() error {
	if d.owns {
		return d.c.Close()
	}
	return nil
}

// Create makes a container from spec.
func (d *Docker) Create(ctx context.Context, spec ContainerSpec) (string, error) {
	if len(spec.EgressAllow) > 0 {
		return "", sbxerr.New(sbxerr.ErrUnsupported, "an egress allow-list on the Docker engine is a network of its own with firewall rules, not a container setting")
	}
	cfg := &container.Config{
		Image:        spec.Image,
		Cmd:          spec.Cmd,
		Env:          spec.Env,
		Labels:       spec.Labels,
		WorkingDir:   spec.WorkingDir,
		User:         spec.User,
		ExposedPorts: nat.PortSet{},
	}
	if spec.Entrypoint != nil {
		cfg.Entrypoint = spec.Entrypoint
	}
	init := spec.Init
	host := &container.HostConfig{
		PortBindings: nat.PortMap{},
		Resources: container.Resources{
			Memory:     spec.Resources.MemoryBytes,
			MemorySwap: spec.Resources.MemoryBytes,
			NanoCPUs:   spec.Resources.NanoCPUs,
		},
		SecurityOpt:    spec.SecurityOpt,
		CapDrop:        spec.CapDrop,
		CapAdd:         spec.CapAdd,
		ReadonlyRootfs: spec.ReadonlyRootfs,
		Tmpfs:          spec.Tmpfs,
		Runtime:        spec.Runtime,
		NetworkMode:    container.NetworkMode(spec.NetworkMode),
	}
	if init {
		host.Init = &init
	}
	if spec.PidsLimit > 0 {
		pids := spec.PidsLimit
		host.Resources.PidsLimit = &pids
	}
	for _, u := range spec.Ulimits {
		host.Resources.Ulimits = append(host.Resources.Ulimits, &units.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	if spec.LogMaxSize != "" {
		host.LogConfig = container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": spec.LogMaxSize, "max-file": "1"}}
	}
	if spec.StorageSize != "" {
		host.StorageOpt = map[string]string{"size": spec.StorageSize}
	}
	for _, m := range spec.Mounts {
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeVolume, Source: m.Volume, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	for _, p := range spec.Ports {
		port := nat.Port(p)
		cfg.ExposedPorts[port] = struct{}{}
		host.PortBindings[port] = []nat.PortBinding{{HostIP: spec.HostIP}}
	}
	resp, err := d.c.ContainerCreate(ctx, cfg, host, nil, nil, spec.Name)
	if err != nil {
		err = Classify(err)
		if errors.Is(err, sbxerr.ErrNotFound) {
			return "", sbxerr.Wrap(sbxerr.ErrImageNotFound, err)
		}
		return "", err
	}
	return resp.ID, nil
}

// Start starts a container.
func (d *Docker) Start(ctx context.Context, id string) error {
	if err := checkID("container", id); err != nil {
		return err
	}
	return Classify(d.c.ContainerStart(ctx, id, container.StartOptions{}))
}

func stopSeconds(timeout time.Duration) *int {
	secs := int(timeout / time.Second)
	return &secs
}

// Stop stops a container.
func (d *Docker) Stop(ctx context.Context, id string, timeout time.Duration) error {
	if err := checkID("container", id); err != nil {
		return err
	}
	return Classify(d.c.ContainerStop(ctx, id, container.StopOptions{Timeout: stopSeconds(timeout)}))
}

// Restart restarts a container.
func (d *Docker) Restart(ctx context.Context, id string, timeout time.Duration) error {
	if err := checkID("container", id); err != nil {
		return err
	}
	return Classify(d.c.ContainerRestart(ctx, id, container.StopOptions{Timeout: stopSeconds(timeout)}))
}

// Pause pauses a container.
func (d *Docker) Pause(ctx context.Context, id string) error {
	if err := checkID("container", id); err != nil {
		return err
	}
	return Classify(d.c.ContainerPause(ctx, id))
}

// Unpause resumes a paused container.
func (d *Docker) Unpause(ctx context.Context, id string) error {
	if err := checkID("container", id); err != nil {
		return err
	}
	return Classify(d.c.ContainerUnpause(ctx, id))
}

// Rename renames a container.
func (d *Docker) Rename(ctx context.Context, id, name string) error {
	if err := checkID("container", id); err != nil {
		return err
	}
	return Classify(d.c.ContainerRename(ctx, id, name))
}

// Update changes a container's limits.
func (d *Docker) Update(ctx context.Context, id string, r Resources) error {
	if err := checkID("container", id); err != nil {
		return err
	}
	_, err := d.c.ContainerUpdate(ctx, id, container.UpdateConfig{Resources: container.Resources{
		Memory: r.MemoryBytes, MemorySwap: r.MemoryBytes, NanoCPUs: r.NanoCPUs,
	}})
	return Classify(err)
}

// Remove force-removes a container.
func (d *Docker) Remove(ctx context.Context, id string) error {
	if err := checkID("container", id); err != nil {
		return err
	}
	return Classify(d.c.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}))
}

// Inspect describes a container.
func (d *Docker) Inspect(ctx context.Context, id string) (Container, error) {
	if err := checkID("container", id); err != nil {
		return Container{}, err
	}
	c, err := d.c.ContainerInspect(ctx, id)
	if err != nil {
		return Container{}, Classify(err)
	}
	if c.ID != id {
		// The engine resolves names and prefixes; a full id must come back
		// as itself.
		return Container{}, sbxerr.NotFound("container %s: the engine answered for %q", id, c.ID)
	}
	out := Container{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/"), ImageID: c.Image, Created: parseTime(c.Created)}
	if c.Config != nil {
		out.Image = c.Config.Image
		out.Labels = c.Config.Labels
		out.Env = c.Config.Env
		out.User = c.Config.User
		out.WorkingDir = c.Config.WorkingDir
	}
	if c.State != nil {
		out.State = ContainerState{
			Status:     string(c.State.Status),
			Running:    c.State.Running,
			Paused:     c.State.Paused,
			Restarting: c.State.Restarting,
			OOMKilled:  c.State.OOMKilled,
			ExitCode:   c.State.ExitCode,
			Pid:        c.State.Pid,
			StartedAt:  parseTime(c.State.StartedAt),
			FinishedAt: parseTime(c.State.FinishedAt),
		}
	}
	out.Ports = map[string]string{}
	out.IPs = map[string]string{}
	if c.NetworkSettings != nil {
		for name, ep := range c.NetworkSettings.Networks {
			if ep != nil && ep.IPAddress != "" {
				out.IPs[name] = ep.IPAddress
			}
		}
		for port, bindings := range c.NetworkSettings.Ports {
			for _, b := range bindings {
				if b.HostPort != "" {
					out.Ports[string(port)] = b.HostPort
					break
				}
			}
		}
	}
	return out, nil
}

// labelFilter selects containers, volumes or events carrying all labels.
func labelFilter(labels map[string]string) filters.Args {
	f := filters.NewArgs()
	for k, v := range labels {
		if v == "" {
			f.Add("label", k)
		} else {
			f.Add("label", k+"="+v)
		}
	}
	return f
}

// List lists the containers carrying all labels.
func (d *Docker) List(ctx context.Context, labels map[string]string) ([]Container, error) {
	cs, err := d.c.ContainerList(ctx, container.ListOptions{All: true, Filters: labelFilter(labels)})
	if err != nil {
		return nil, Classify(err)
	}
	out := make([]Container, 0, len(cs))
	for _, c := range cs {
		sc := Container{
			ID:         c.ID,
			Image:      c.Image,
			ImageID:    c.ImageID,
			Labels:     c.Labels,
			Created:    time.Unix(c.Created, 0),
			State:      ContainerState{Status: string(c.State)},
			StatusText: c.Status,
			Ports:      map[string]string{},
		}
		if len(c.Names) > 0 {
			sc.Name = strings.TrimPrefix(c.Names[0], "/")
		}
		sc.State.Running = c.State == container.StateRunning
		sc.State.Paused = c.State == container.StatePaused
		sc.State.Restarting = c.State == container.StateRestarting
		for _, p := range c.Ports {
			if p.PublicPort != 0 {
				sc.Ports[strconv.Itoa(int(p.PrivatePort))+"/"+p.Type] = strconv.Itoa(int(p.PublicPort))
			}
		}
		out = append(out, sc)
	}
	return out, nil
}

// Stats reads resource samples.
func (d *Docker) Stats(ctx context.Context, id string, stream bool, fn func(StatsSample) error) error {
	if err := checkID("container", id); err != nil {
		return err
	}
	var resp container.StatsResponseReader
	var err error
	if stream {
		resp, err = d.c.ContainerStats(ctx, id, true)
	} else {
		resp, err = d.c.ContainerStatsOneShot(ctx, id)
	}
	if err != nil {
		return Classify(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<40))
	for {
		var raw container.StatsResponse
		if err := dec.Decode(&raw); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return io.EOF
			}
			return fmt.Errorf("decode stats: %w", err)
		}
		s := StatsSample{
			CPUTotal:       raw.CPUStats.CPUUsage.TotalUsage,
			PreCPUTotal:    raw.PreCPUStats.CPUUsage.TotalUsage,
			SystemTotal:    raw.CPUStats.SystemUsage,
			PreSystemTotal: raw.PreCPUStats.SystemUsage,
			OnlineCPUs:     raw.CPUStats.OnlineCPUs,
			MemoryUsage:    raw.MemoryStats.Usage,
			MemoryLimit:    raw.MemoryStats.Limit,
			PIDs:           raw.PidsStats.Current,
		}
		if !raw.Read.IsZero() && raw.Read.Year() >= 2000 {
			s.Read = raw.Read
		}
		if s.OnlineCPUs == 0 {
			s.OnlineCPUs = uint32(len(raw.CPUStats.CPUUsage.PercpuUsage))
		}
		s.MemoryCache = raw.MemoryStats.Stats["total_inactive_file"] // cgroup v1
		if v, ok := raw.MemoryStats.Stats["inactive_file"]; ok && s.MemoryCache == 0 {
			s.MemoryCache = v // cgroup v2
		}
		if err := fn(s); err != nil {
			return err
		}
		if !stream {
			return nil
		}
	}
}

// Events reports container events.
func (d *Docker) Events(ctx context.Context, labels map[string]string) (<-chan Event, <-chan error) {
	f := labelFilter(labels)
	f.Add("type", string(events.ContainerEventType))
	msgs, errs := d.c.Events(ctx, events.ListOptions{Filters: f})
	out := make(chan Event)
	outErr := make(chan error, 1)
	go func() {
		defer close(outErr)
		defer close(out)
		for {
			select {
			case m := <-msgs:
				ev := Event{ContainerID: m.Actor.ID, Action: string(m.Action), Name: m.Actor.Attributes["name"],
					Labels: m.Actor.Attributes, Time: time.Unix(0, m.TimeNano)}
				select {
				case out <- ev:
				case <-ctx.Done():
					outErr <- nil
					return
				}
			case err := <-errs:
				if ctx.Err() != nil {
					err = nil
				}
				outErr <- Classify(err)
				return
			case <-ctx.Done():
				outErr <- nil
				return
			}
		}
	}()
	return out, outErr
}

// Exec starts and attaches to a process in a container.
func (d *Docker) Exec(ctx context.Context, id string, spec ExecSpec) (Exec, error) {
	if err := checkID("container", id); err != nil {
		return nil, err
	}
	created, err := d.c.ContainerExecCreate(ctx, id, container.ExecOptions{
		User:         spec.User,
		AttachStdin:  spec.Stdin,
		AttachStdout: true,
		AttachStderr: true,
		Env:          spec.Env,
		WorkingDir:   spec.WorkingDir,
		Cmd:          spec.Cmd,
	})
	if err != nil {
		return nil, d.execErr(ctx, id, err)
	}
	hj, err := d.c.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, d.execErr(ctx, id, err)
	}
	return &dockerExec{id: created.ID, conn: hj.Conn, r: hj.Reader, closeWrite: hj.CloseWrite}, nil
}

// execErr classifies a failed exec of container id. The engine answers a
// plain 500 ("unable to upgrade to tcp") when the container stops or goes
// while the exec starts: what the container's state says then is the
// error's kind.
func (d *Docker) execErr(ctx context.Context, id string, err error) error {
	if cerr := Classify(err); cerr != err || ctx.Err() != nil {
		return cerr
	}
	c, ierr := d.c.ContainerInspect(ctx, id)
	switch {
	case cerrdefs.IsNotFound(ierr):
		return sbxerr.Wrap(sbxerr.ErrNotFound, err)
	case ierr == nil && c.State != nil && (!c.State.Running || c.State.Paused || c.State.Restarting || c.State.Dead || c.State.Status == "removing"):
		return sbxerr.Wrap(sbxerr.ErrConflict, fmt.Errorf("container %s is %s: %w", id[:12], c.State.Status, err))
	}
	return err
}

// dockerExec is an attached exec: a hijacked connection carrying stdin one
// way and the multiplexed stdout/stderr the other.
type dockerExec struct {
	id         string
	conn       net.Conn
	r          io.Reader
	closeWrite func() error
}

func (e *dockerExec) ID() string                         { return e.id }
func (e *dockerExec) Write(p []byte) (int, error)        { return e.conn.Write(p) }
func (e *dockerExec) CloseWrite() error                  { return e.closeWrite() }
func (e *dockerExec) SetWriteDeadline(t time.Time) error { return e.conn.SetWriteDeadline(t) }
func (e *dockerExec) Close() error                       { return e.conn.Close() }
func (e *dockerExec) Output(stdout, stderr io.Writer) error {
	_, err := stdcopy.StdCopy(stdout, stderr, e.r)
	return err
}

// ExecInspect reports an exec's state.
func (d *Docker) ExecInspect(ctx context.Context, execID string) (ExecStatus, error) {
	if err := checkID("exec", execID); err != nil {
		return ExecStatus{}, err
	}
	ins, err := d.c.ContainerExecInspect(ctx, execID)
	if err != nil {
		return ExecStatus{}, Classify(err)
	}
	return ExecStatus{Running: ins.Running, ExitCode: ins.ExitCode, Pid: ins.Pid}, nil
}

// StatPath describes a path in a container.
func (d *Docker) StatPath(ctx context.Context, id, path string) (PathStat, error) {
	if err := checkID("container", id); err != nil {
		return PathStat{}, err
	}
	st, err := d.c.ContainerStatPath(ctx, id, path)
	if err != nil {
		return PathStat{}, Classify(err)
	}
	return PathStat{Name: st.Name, Size: st.Size, Mode: st.Mode, Mtime: st.Mtime, LinkTarget: st.LinkTarget}, nil
}

// CopyFrom returns a tar stream of path.
func (d *Docker) CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, PathStat, error) {
	if err := checkID("container", id); err != nil {
		return nil, PathStat{}, err
	}
	rc, st, err := d.c.CopyFromContainer(ctx, id, path)
	if err != nil {
		return nil, PathStat{}, Classify(err)
	}
	return rc, PathStat{Name: st.Name, Size: st.Size, Mode: st.Mode, Mtime: st.Mtime, LinkTarget: st.LinkTarget}, nil
}

// CopyTo unpacks a tar stream into dir.
func (d *Docker) CopyTo(ctx context.Context, id, dir string, r io.Reader) error {
	if err := checkID("container", id); err != nil {
		return err
	}
	return Classify(d.c.CopyToContainer(ctx, id, dir, r, container.CopyToContainerOptions{}))
}

// Images lists local images.
func (d *Docker) Images(ctx context.Context) ([]Image, error) {
	list, err := d.c.ImageList(ctx, image.ListOptions{})
	if err != nil {
		return nil, Classify(err)
	}
	out := make([]Image, 0, len(list))
	for _, s := range list {
		out = append(out, Image{ID: s.ID, RepoTags: s.RepoTags, RepoDigests: s.RepoDigests, Size: s.Size, Created: time.Unix(s.Created, 0).UTC()})
	}
	return out, nil
}

// imageRefRE is what ImageInspect and ImageRemove pass on: an id or id
// prefix, or a reference the caller has parsed. It excludes "..", so a ref
// can never walk out of the /images/ path.
var imageRefRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@-]*$`)

func checkImageRef(ref string) error {
	if !imageRefRE.MatchString(ref) || strings.Contains(ref, "..") || strings.Contains(ref, "//") {
		return sbxerr.Invalid("image reference %q is malformed", ref)
	}
	return nil
}

// ImageInspect describes a local image.
func (d *Docker) ImageInspect(ctx context.Context, ref string) (Image, error) {
	if err := checkImageRef(ref); err != nil {
		return Image{}, err
	}
	ii, err := d.c.ImageInspect(ctx, ref)
	if err != nil {
		return Image{}, imageErr(err)
	}
	img := Image{ID: ii.ID, RepoTags: ii.RepoTags, RepoDigests: ii.RepoDigests, Size: ii.Size, Architecture: ii.Architecture, OS: ii.Os}
	if t, err := time.Parse(time.RFC3339Nano, ii.Created); err == nil {
		img.Created = t.UTC()
	}
	if ii.Config != nil {
		img.Entrypoint, img.Cmd, img.Env = ii.Config.Entrypoint, ii.Config.Cmd, ii.Config.Env
		img.User, img.WorkingDir = ii.Config.User, ii.Config.WorkingDir
	}
	return img, nil
}

// imageErr classifies an error about a local image: not found is
// ErrImageNotFound.
func imageErr(err error) error {
	err = Classify(err)
	if errors.Is(err, sbxerr.ErrNotFound) && !errors.Is(err, sbxerr.ErrImageNotFound) {
		return sbxerr.Wrap(sbxerr.ErrImageNotFound, err)
	}
	return err
}

// ImageRemove removes an image or tag.
func (d *Docker) ImageRemove(ctx context.Context, ref string, force bool) error {
	if err := checkImageRef(ref); err != nil {
		return err
	}
	_, err := d.c.ImageRemove(ctx, ref, image.RemoveOptions{Force: force, PruneChildren: true})
	if err != nil {
		return imageErr(err)
	}
	return nil
}

// maxPullMessage bounds one progress message of a pull stream.
const maxPullMessage = 1 << 20

// ImagePull pulls ref.
func (d *Docker) ImagePull(ctx context.Context, ref string, auth *RegistryAuth, fn func(PullProgress)) error {
	if err := checkImageRef(ref); err != nil {
		return err
	}
	opts := image.PullOptions{}
	if auth != nil {
		enc, err := registry.EncodeAuthConfig(registry.AuthConfig{
			Username: auth.Username, Password: auth.Password,
			ServerAddress: auth.ServerAddress, IdentityToken: auth.IdentityToken,
		})
		if err != nil {
			return sbxerr.Invalid("encode registry credentials: %v", err)
		}
		opts.RegistryAuth = enc
	}
	rc, err := d.c.ImagePull(ctx, ref, opts)
	if err != nil {
		return pullErr(ctx, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return sbxerr.Wrap(sbxerr.ErrRegistry, fmt.Errorf("read pull progress: %w", err))
		}
		if dec.InputOffset() > 1<<40 {
			return sbxerr.New(sbxerr.ErrRegistry, "pull progress stream too long")
		}
		if msg.Error != nil || msg.ErrorMessage != "" {
			return streamError(msg)
		}
		p := PullProgress{ID: msg.ID, Status: msg.Status}
		if len(p.Status) > maxPullMessage {
			p.Status = p.Status[:maxPullMessage]
		}
		if msg.Progress != nil {
			p.Current, p.Total = msg.Progress.Current, msg.Progress.Total
		}
		if fn != nil {
			fn(p)
		}
	}
}

// pullErr classifies an error of the engine's pull call. The engine marks
// some registry errors by kind (an unknown manifest is a 404) but reports
// others, such as a registry's refusal of missing credentials, as plain
// server errors; those are classified by their text like stream errors.
func pullErr(ctx context.Context, err error) error {
	err = imageErr(err)
	for _, kind := range []error{sbxerr.ErrNotFound, sbxerr.ErrUnauthorized, sbxerr.ErrUnavailable, sbxerr.ErrInvalid, sbxerr.ErrConflict} {
		if errors.Is(err, kind) {
			return err
		}
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if kind := registryKind(err.Error(), 0); kind != nil {
		return sbxerr.Wrap(kind, err)
	}
	return sbxerr.Wrap(sbxerr.ErrRegistry, err)
}

// streamError turns an error message of the engine's pull stream into a
// typed error keeping the registry's message.
func streamError(msg jsonmessage.JSONMessage) error {
	text, code := msg.ErrorMessage, 0
	if msg.Error != nil {
		code = msg.Error.Code
		if msg.Error.Message != "" {
			text = msg.Error.Message
		}
	}
	if kind := registryKind(text, code); kind != nil {
		return sbxerr.New(kind, "%s", text)
	}
	return sbxerr.New(sbxerr.ErrRegistry, "%s", text)
}

// registryKind tells ErrUnauthorized or ErrImageNotFound from a registry
// error's text (and HTTP-like code, when the engine gives one), or nil.
// The engine passes these errors on as text only, so this is the one place
// where errors are classified by their message.
func registryKind(text string, code int) error {
	lower := strings.ToLower(text)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(lower, s) {
				return true
			}
		}
		return false
	}
	switch {
	case code == 404 || has("manifest unknown", "name unknown", "does not exist"):
		// Before the unauthorized check: Docker Hub answers "pull access
		// denied ..., repository does not exist" for an unknown repository.
		return sbxerr.ErrImageNotFound
	case code == 401 || code == 403 || has("unauthorized", "denied", "authentication required", "no basic auth credentials"):
		return sbxerr.ErrUnauthorized
	case has("not found"):
		return sbxerr.ErrImageNotFound
	}
	return nil
}

// Bridge driver options.
const (
	optBridgeName = "com.docker.network.bridge.name"
	optICC        = "com.docker.network.bridge.enable_icc"
	optMasquerade = "com.docker.network.bridge.enable_ip_masquerade"
)

// NetworkEnsure makes a bridge network or returns the existing one.
func (d *Docker) NetworkEnsure(ctx context.Context, spec NetworkSpec) (Network, error) {
	if n, err := d.networkInspect(ctx, spec.Name); err == nil {
		return n, nil
	} else if !errors.Is(err, sbxerr.ErrNotFound) {
		return Network{}, err
	}
	opts := network.CreateOptions{
		Driver: "bridge",
		Labels: spec.Labels,
		Options: map[string]string{
			optBridgeName: spec.BridgeName,
			optICC:        strconv.FormatBool(spec.ICC),
			optMasquerade: "true",
		},
	}
	if spec.Subnet != "" {
		opts.IPAM = &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: spec.Subnet}}}
	}
	_, err := d.c.NetworkCreate(ctx, spec.Name, opts)
	if err != nil {
		// Made meanwhile by someone else (the engine answers a duplicate
		// name or bridge in several ways): use theirs when it is there.
		if n, ierr := d.networkInspect(ctx, spec.Name); ierr == nil {
			return n, nil
		}
		return Network{}, Classify(err)
	}
	return d.networkInspect(ctx, spec.Name)
}

func (d *Docker) networkInspect(ctx context.Context, name string) (Network, error) {
	n, err := d.c.NetworkInspect(ctx, name, network.InspectOptions{})
	if err != nil {
		return Network{}, Classify(err)
	}
	if n.Name != name {
		return Network{}, sbxerr.NotFound("network %q: the engine answered for %q", name, n.Name)
	}
	return networkOf(n.ID, n.Name, n.Labels, n.Options, n.IPAM), nil
}

func networkOf(id, name string, labels, options map[string]string, ipam network.IPAM) Network {
	out := Network{ID: id, Name: name, Labels: labels, Options: options}
	for _, c := range ipam.Config {
		out.Subnets = append(out.Subnets, c.Subnet)
	}
	return out
}

// NetworkRemove removes a network.
func (d *Docker) NetworkRemove(ctx context.Context, name string) error {
	return Classify(d.c.NetworkRemove(ctx, name))
}

// Networks lists labelled networks.
func (d *Docker) Networks(ctx context.Context, labels map[string]string) ([]Network, error) {
	list, err := d.c.NetworkList(ctx, network.ListOptions{Filters: labelFilter(labels)})
	if err != nil {
		return nil, Classify(err)
	}
	out := make([]Network, 0, len(list))
	for _, n := range list {
		out = append(out, networkOf(n.ID, n.Name, n.Labels, n.Options, n.IPAM))
	}
	return out, nil
}

// VolumeCreate makes a labelled volume.
func (d *Docker) VolumeCreate(ctx context.Context, name string, labels map[string]string) error {
	_, err := d.c.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: "local", Labels: labels})
	return Classify(err)
}

// VolumeRemove removes a volume.
func (d *Docker) VolumeRemove(ctx context.Context, name string) error {
	return Classify(d.c.VolumeRemove(ctx, name, false))
}

// Volumes lists labelled volumes.
func (d *Docker) Volumes(ctx context.Context, labels map[string]string) ([]Volume, error) {
	resp, err := d.c.VolumeList(ctx, volume.ListOptions{Filters: labelFilter(labels)})
	if err != nil {
		return nil, Classify(err)
	}
	out := make([]Volume, 0, len(resp.Volumes))
	for _, v := range resp.Volumes {
		if v != nil {
			out = append(out, Volume{Name: v.Name, Labels: v.Labels})
		}
	}
	return out, nil
}

// parseTime parses an engine timestamp; zero for none ("0001-01-01...").
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 2000 {
		return time.Time{}
	}
	return t
}
