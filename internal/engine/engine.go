// Package engine is the one boundary between Opensbx and a container engine.
//
// Engine lists, as domain operations, everything Opensbx asks of the engine:
// containers (create, start, stop, inspect, list by label, remove), execs
// with demultiplexed output, file copies in and out, events, images and
// volumes. Its types are Opensbx's own, so no engine SDK type crosses the
// boundary; errors are translated once, here, into the Opensbx sentinels
// (internal/sbxerr) with the engine's error kept in the chain.
//
// NewDocker implements Engine on the Docker SDK, the only non-test code that
// imports it. Every method taking a container or exec id accepts only a full
// id (64 lower-case hex digits) and answers ErrNotFound for anything else
// without sending a request, so an id from a URL can never be cleaned by the
// client into another Engine API path. Package enginefake has an in-memory
// Engine for unit tests of the Manager's own logic.
package engine

import (
	"context"
	"io"
	"io/fs"
	"time"
)

// Engine is what Opensbx needs of a container engine. Implementations are
// safe for concurrent use. Errors match the sentinels of internal/sbxerr:
// ErrNotFound, ErrConflict (also for "not modified": starting a running
// container), ErrInvalid, ErrUnauthorized, ErrUnavailable (the engine cannot
// be reached), ErrImageNotFound (Create with an image that is not local);
// context errors come back unchanged.
type Engine interface {
	// Ping checks that the engine answers.
	Ping(ctx context.Context) error
	// Info describes the engine.
	Info(ctx context.Context) (Info, error)
	// Close releases the connection (when the Engine owns it).
	Close() error

	// Create makes a container (not started) and returns its id. A taken
	// name is ErrConflict, a missing image ErrImageNotFound.
	Create(ctx context.Context, spec ContainerSpec) (string, error)
	// Start starts a created or stopped container.
	Start(ctx context.Context, id string) error
	// Stop sends SIGTERM, then SIGKILL after timeout.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Restart stops (like Stop) and starts a container.
	Restart(ctx context.Context, id string, timeout time.Duration) error
	// Pause freezes a running container; Unpause thaws it.
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	// Rename gives a container a new name; a taken name is ErrConflict.
	Rename(ctx context.Context, id, name string) error
	// Update changes the memory and CPU limits of a container.
	Update(ctx context.Context, id string, r Resources) error
	// Remove force-removes a container with its anonymous volumes.
	Remove(ctx context.Context, id string) error
	// Inspect describes one container.
	Inspect(ctx context.Context, id string) (Container, error)
	// List returns every container (running or not) carrying all the given
	// labels ("key" -> "value"; an empty value matches any value).
	List(ctx context.Context, labels map[string]string) ([]Container, error)
	// Stats reads resource samples of a running container: one when stream
	// is false, else one a second until ctx ends or fn fails. OneShot
	// samples (stream false) carry no previous CPU reading and come without
	// the engine's one-second wait.
	Stats(ctx context.Context, id string, stream bool, fn func(StatsSample) error) error
	// Events reports container events of the containers carrying all the
	// labels, until ctx ends. The error channel gets one error (or nil
	// when ctx ended) and is then closed.
	Events(ctx context.Context, labels map[string]string) (<-chan Event, <-chan error)

	// Exec starts a process in a running container and attaches to it.
	Exec(ctx context.Context, id string, spec ExecSpec) (Exec, error)
	// ExecInspect reports whether an exec still runs, and its exit code.
	ExecInspect(ctx context.Context, execID string) (ExecStatus, error)

	// StatPath describes path in a container without following a link.
	StatPath(ctx context.Context, id, path string) (PathStat, error)
	// CopyFrom returns a tar stream of path (a link is resolved by the
	// engine: PathStat describes path itself). The caller closes it.
	CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, PathStat, error)
	// CopyTo unpacks the tar stream r into directory dir.
	CopyTo(ctx context.Context, id, dir string, r io.Reader) error

	// Images lists local images.
	Images(ctx context.Context) ([]Image, error)
	// ImageInspect describes one local image by reference or id.
	ImageInspect(ctx context.Context, ref string) (Image, error)
	// ImagePull pulls ref, calling fn for each progress message. Errors the
	// registry reports are classified (ErrImageNotFound, ErrUnauthorized,
	// else ErrRegistry) with the registry's message.
	ImagePull(ctx context.Context, ref string, auth *RegistryAuth, fn func(PullProgress)) error
	// ImageRemove removes an image (or one of its tags).
	ImageRemove(ctx context.Context, ref string, force bool) error

	// NetworkEnsure makes the bridge network spec describes, or returns the
	// one of that name that exists.
	NetworkEnsure(ctx context.Context, spec NetworkSpec) (Network, error)
	// NetworkRemove removes a network; one in use is ErrConflict.
	NetworkRemove(ctx context.Context, name string) error
	// Networks lists the networks carrying all the labels.
	Networks(ctx context.Context, labels map[string]string) ([]Network, error)

	// VolumeCreate makes a named local volume with labels (an existing
	// volume of that name is kept).
	VolumeCreate(ctx context.Context, name string, labels map[string]string) error
	// VolumeRemove removes a volume; one in use is ErrConflict.
	VolumeRemove(ctx context.Context, name string) error
	// Volumes lists the volumes carrying all the labels.
	Volumes(ctx context.Context, labels map[string]string) ([]Volume, error)
}

// Info describes an engine.
type Info struct {
	// Backend is the kind of engine: BackendDocker or BackendKubernetes.
	Backend string
	// Arch is the engine host's CPU architecture in Go's terms ("amd64").
	Arch string
	// OS is the engine host's operating system ("linux").
	OS string
	// Version is the engine's version ("20.10.24").
	Version string
	// Local reports that the engine is on this machine (a unix socket), so
	// that its host's firewall is this machine's.
	Local bool
	// Runtimes are the OCI runtimes the engine knows ("runc", "runsc").
	Runtimes []string
	// StorageDriver is the storage driver ("overlay2"), BackingFS the file
	// system under it ("extfs", "xfs").
	StorageDriver, BackingFS string
	// CgroupVersion is "1" or "2".
	CgroupVersion string
}

// The kinds of engine (Info.Backend).
const (
	BackendDocker     = "docker"
	BackendKubernetes = "kubernetes"
)

// Resources are a container's limits.
type Resources struct {
	// MemoryBytes is the memory limit, also the memory+swap limit (no swap).
	MemoryBytes int64
	// NanoCPUs is the CPU limit in billionths of a CPU.
	NanoCPUs int64
}

// Mount is a volume mounted into a container.
type Mount struct {
	// Volume is the volume's name.
	Volume string
	// Target is the absolute path inside the container.
	Target string
	// ReadOnly mounts it read-only.
	ReadOnly bool
	// Agent marks the mount of the agent program. The Docker engine mounts
	// Volume, which the Manager filled; an engine without such volumes
	// (Kubernetes) puts the program at Target itself.
	Agent bool
}

// Ulimit is one resource limit of a container's processes.
type Ulimit struct {
	Name       string // "nofile"
	Soft, Hard int64
}

// ContainerSpec describes a container to create.
type ContainerSpec struct {
	// Name is the engine-wide container name.
	Name string
	// Image is the image reference or id.
	Image string
	// Entrypoint replaces the image's: nil keeps it, an empty non-nil
	// slice clears it.
	Entrypoint []string
	// Cmd replaces the image's command; nil keeps it.
	Cmd []string
	// Env are "KEY=value" entries added to the image's.
	Env []string
	// Labels are the container's labels.
	Labels map[string]string
	// WorkingDir replaces the image's working directory when not empty.
	WorkingDir string
	// User replaces the image's user when not empty.
	User string
	// Ports are container ports ("8080/tcp") published on HostIP, each on
	// a free host port.
	Ports  []string
	HostIP string
	// Resources are the limits; PidsLimit bounds processes and threads.
	Resources Resources
	PidsLimit int64
	// Init runs the engine's init as PID 1, reaping and forwarding signals.
	Init bool
	// SecurityOpt, CapDrop and CapAdd are passed as they are.
	SecurityOpt     []string
	CapDrop, CapAdd []string
	// ReadonlyRootfs mounts the root filesystem read-only; Tmpfs mounts
	// tmpfs file systems (path -> options such as "size=64m").
	ReadonlyRootfs bool
	Tmpfs          map[string]string
	// Mounts are volumes to mount; a Mount without Volume is an anonymous
	// volume, removed with the container.
	Mounts []Mount
	// Ulimits limit the processes' resources.
	Ulimits []Ulimit
	// Runtime is the OCI runtime ("" for the engine's default).
	Runtime string
	// NetworkMode is "bridge" (""), "none" or a network's name.
	NetworkMode string
	// EgressAllow, on an engine that keeps allow-lists itself (Kubernetes:
	// a NetworkPolicy of the container's own), are the only IPv4
	// destinations the container may connect to. The Docker engine refuses
	// it: there an allow-list is a network with firewall rules.
	EgressAllow []string
	// LogMaxSize bounds the container's json-file log ("10m").
	LogMaxSize string
	// StorageSize is a disk quota for the writable layer ("1G"), where the
	// storage driver supports one; "" for none.
	StorageSize string
}

// ContainerState is a container's run state.
type ContainerState struct {
	// Status is the engine's word: created, running, paused, restarting,
	// removing, exited or dead.
	Status                                 string
	Running, Paused, Restarting, OOMKilled bool
	// Halted is a stopped container whose agent runs on (a Kubernetes
	// sandbox, whose Pod cannot stop: Stop had the agent end every other
	// process): the agent still serves its files, and Start runs it again.
	Halted   bool
	ExitCode int
	// Pid is the main process's host PID while running.
	Pid int
	// StartedAt and FinishedAt are zero when unknown (and in List results).
	StartedAt, FinishedAt time.Time
}

// Container describes one container. List fills ID, Name, Image, ImageID,
// Labels, Created, State.Status and Ports; Inspect fills everything.
type Container struct {
	ID   string
	Name string // without the leading "/"
	// Image is the reference the container was created with; ImageID the
	// image's id.
	Image, ImageID string
	Labels         map[string]string
	Env            []string
	User           string
	WorkingDir     string
	Created        time.Time
	State          ContainerState
	// StatusText is the engine's human status ("Up 3 minutes"), List only.
	StatusText string
	// Ports maps published container ports ("8080/tcp") to host ports;
	// empty while the container is not running.
	Ports map[string]string
	// IPs maps the networks the container is on to its IPv4 address there
	// (Inspect only, while it runs).
	IPs map[string]string
}

// NetworkSpec describes a bridge network.
type NetworkSpec struct {
	Name   string
	Labels map[string]string
	// BridgeName is the host interface's name (at most 15 characters).
	BridgeName string
	// ICC lets the network's containers reach each other.
	ICC bool
	// Subnet is the IPv4 subnet ("10.213.0.16/28"); "" lets the engine
	// pick one.
	Subnet string
}

// Network describes a network.
type Network struct {
	ID, Name string
	Labels   map[string]string
	// Options are the driver's ("com.docker.network.bridge.enable_icc").
	Options map[string]string
	Subnets []string
}

// StatsSample is one resource sample of a container, as raw counters.
type StatsSample struct {
	// Read is when the engine took the sample; zero once it stopped.
	Read time.Time
	// CPUTotal and SystemTotal are the container's and the host's CPU
	// time in ns; the Pre values are those of the previous sample (zero
	// for a one-shot sample).
	CPUTotal, PreCPUTotal       uint64
	SystemTotal, PreSystemTotal uint64
	// OnlineCPUs is the number of CPUs the host has online.
	OnlineCPUs uint32
	// MemoryUsage includes the page cache; MemoryCache is its inactive
	// file part, which Opensbx subtracts as docker stats does.
	MemoryUsage, MemoryCache, MemoryLimit uint64
	// PIDs is the number of processes and threads.
	PIDs uint64
}

// Event is one container event.
type Event struct {
	// ContainerID is the container's full id.
	ContainerID string
	// Action is the engine's: "start", "die", "stop", "pause", "unpause",
	// "destroy", "oom", "rename", ...
	Action string
	// Name is the container's name (after a rename, the new one).
	Name string
	// Labels are the container's labels.
	Labels map[string]string
	Time   time.Time
}

// ExecSpec describes a process to run in a container.
type ExecSpec struct {
	// Cmd is the argv; Cmd[0] is looked up in the container's PATH.
	Cmd []string
	// Env are "KEY=value" entries added to the container's.
	Env []string
	// User and WorkingDir override the container's when not empty.
	User, WorkingDir string
	// Stdin attaches the process's standard input.
	Stdin bool
}

// Exec is a running exec's attached streams. Output and the stdin methods
// may be used concurrently; Close ends both.
type Exec interface {
	// ID is the exec's id, for ExecInspect.
	ID() string
	// Output copies the process's stdout and stderr, demultiplexed, to the
	// writers until the output ends (nil) or the stream breaks.
	Output(stdout, stderr io.Writer) error
	// Write writes to the process's stdin (ExecSpec.Stdin).
	Write(p []byte) (int, error)
	// CloseWrite closes the process's stdin.
	CloseWrite() error
	// SetWriteDeadline bounds writes to stdin.
	SetWriteDeadline(t time.Time) error
	// Close closes the streams.
	Close() error
}

// ExecStatus is an exec's state.
type ExecStatus struct {
	Running  bool
	ExitCode int
	// Pid is the process's host PID: 0 before it started (the Docker
	// engine keeps it after the end).
	Pid int
}

// PathStat describes one path in a container.
type PathStat struct {
	Name  string
	Size  int64
	Mode  fs.FileMode
	Mtime time.Time
	// LinkTarget is a link's fully resolved target.
	LinkTarget string
}

// Image describes a local image.
type Image struct {
	ID          string
	RepoTags    []string
	RepoDigests []string
	Size        int64
	Created     time.Time
	// Inspect only.
	Architecture, OS string
	// Inspect only: the image's configuration.
	Entrypoint, Cmd, Env []string
	User, WorkingDir     string
}

// RegistryAuth holds credentials for one pull.
type RegistryAuth struct {
	Username, Password, ServerAddress, IdentityToken string
}

// PullProgress is one progress message of a pull.
type PullProgress struct {
	ID, Status     string
	Current, Total int64
}

// Volume describes a volume.
type Volume struct {
	Name   string
	Labels map[string]string
}
