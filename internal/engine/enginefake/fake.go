// Package enginefake is an in-memory engine.Engine for fast unit tests of
// the Manager's own logic: the container state machine, labels and names,
// execs with scripted results, a small file tree per container, images,
// volumes and events. It runs nothing. Every call is recorded (Calls), and
// any method can be made to fail (Fail), so tests can assert exactly what
// reached the engine.
//
// It is not proof that a feature works against Docker: the integration
// tests are.
package enginefake

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// File is one entry of a fake file tree.
type File struct {
	Mode fs.FileMode // type bits and permissions
	Data []byte
	// Link is a symbolic link's target.
	Link string
}

// ExecFunc scripts what an exec does: it gets the container and the spec
// (and the stdin written before the exec's output is read) and returns the
// output and exit code.
type ExecFunc func(c engine.Container, spec engine.ExecSpec) (stdout, stderr []byte, code int)

// Call is one recorded method call.
type Call struct {
	Method string
	// Arg is the id, reference or name the call was about.
	Arg string
}

// Engine is the fake. The zero value is not usable; call New.
type Engine struct {
	mu         sync.Mutex
	now        func() time.Time
	containers map[string]*ctr
	images     map[string]*img // by id
	volumes    map[string]engine.Volume
	networks   map[string]engine.Network
	execs      map[string]*execState
	fail       map[string]error
	calls      []Call
	subs       map[int]chan engine.Event
	nextSub    int
	nextPort   int
	down       bool

	// Script scripts execs; nil runs every exec successfully with no output.
	Script ExecFunc
}

type ctr struct {
	c     engine.Container
	spec  engine.ContainerSpec
	files map[string]File
	res   engine.Resources
}

type img struct {
	engine.Image
	files map[string]File
}

type execState struct {
	container   string
	spec        engine.ExecSpec
	stdin       bytes.Buffer
	running     bool
	code        int
	stdout      []byte
	stderr      []byte
	stdinClosed bool
}

var _ engine.Engine = (*Engine)(nil)

// New returns an empty fake engine whose clock is now (time.Now if nil).
func New(now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	return &Engine{
		now:        now,
		containers: map[string]*ctr{},
		images:     map[string]*img{},
		volumes:    map[string]engine.Volume{},
		networks:   map[string]engine.Network{},
		execs:      map[string]*execState{},
		fail:       map[string]error{},
		subs:       map[int]chan engine.Event{},
		nextPort:   32768,
	}
}

func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// AddImage adds a local image with the given tags and files (the image's
// file tree, e.g. "/bin/sleep") and returns its id.
func (e *Engine) AddImage(tags []string, files map[string]File, cfg engine.Image) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := "sha256:" + newID()
	cfg.ID, cfg.RepoTags = id, tags
	if cfg.Created.IsZero() {
		cfg.Created = e.now()
	}
	fc := map[string]File{"/": {Mode: fs.ModeDir | 0o755}}
	for p, f := range files {
		fc[p] = f
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := fc[d]; !ok {
				fc[d] = File{Mode: fs.ModeDir | 0o755}
			}
		}
	}
	e.images[id] = &img{Image: cfg, files: fc}
	return id
}

// AddContainer adds a container as if someone else had made it (no
// Opensbx involvement), running, and returns its id.
func (e *Engine) AddContainer(name, image string, labels map[string]string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := newID()
	e.containers[id] = &ctr{
		c: engine.Container{ID: id, Name: name, Image: image, Labels: labels, Created: e.now(),
			State: engine.ContainerState{Status: "running", Running: true, StartedAt: e.now()}, Ports: map[string]string{}},
		files: map[string]File{"/": {Mode: fs.ModeDir | 0o755}},
	}
	return id
}

// Fail makes every later call of method (its name in engine.Engine, e.g.
// "Start") fail with err; a nil err clears it.
func (e *Engine) Fail(method string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err == nil {
		delete(e.fail, method)
	} else {
		e.fail[method] = err
	}
}

// SetDown makes every call fail with ErrUnavailable, as if the engine had
// gone away, until SetDown(false).
func (e *Engine) SetDown(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = down
}

// Calls returns the calls made so far.
func (e *Engine) Calls() []Call {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Call(nil), e.calls...)
}

// StopByItself ends container id's main process with code, as if it had
// exited on its own.
func (e *Engine) StopByItself(id string, code int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.containers[id]; c != nil && c.c.State.Running {
		e.stopLocked(c, code)
	}
}

// Subscribers returns how many event streams are open.
func (e *Engine) Subscribers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs)
}

// Resources returns the limits container id has now.
func (e *Engine) Resources(id string) engine.Resources {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.containers[id]; c != nil {
		return c.res
	}
	return engine.Resources{}
}

// enter records a call and returns the injected failure, if any. e.mu is
// held.
func (e *Engine) enter(method, arg string) error {
	e.calls = append(e.calls, Call{Method: method, Arg: arg})
	if e.down {
		return sbxerr.New(sbxerr.ErrUnavailable, "fake engine is down")
	}
	return e.fail[method]
}

func (e *Engine) get(id string) (*ctr, error) {
	if !engine.IsFullID(id) {
		return nil, sbxerr.NotFound("no such container: %s (not a full id)", id)
	}
	c := e.containers[id]
	if c == nil {
		return nil, sbxerr.NotFound("no such container: %s", id)
	}
	return c, nil
}

func (e *Engine) emit(c *ctr, action string) {
	ev := engine.Event{ContainerID: c.c.ID, Action: action, Name: c.c.Name, Labels: c.c.Labels, Time: e.now()}
	for _, ch := range e.subs {
		select {
		case ch <- ev:
		default: // a slow subscriber misses events, like a slow client
		}
	}
}

// Ping answers unless the engine is down.
func (e *Engine) Ping(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.enter("Ping", "")
}

// Info describes a fake amd64 engine.
func (e *Engine) Info(ctx context.Context) (engine.Info, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Info", ""); err != nil {
		return engine.Info{}, err
	}
	return engine.Info{Backend: engine.BackendDocker, Arch: "amd64", OS: "linux", Version: "fake", Runtimes: []string{"runc"}, StorageDriver: "fake", CgroupVersion: "1"}, nil
}

// Close does nothing.
func (e *Engine) Close() error { return nil }

func (e *Engine) findImage(ref string) *img {
	for id, im := range e.images {
		if id == ref || strings.TrimPrefix(id, "sha256:") == ref || (len(ref) >= 4 && strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), strings.TrimPrefix(ref, "sha256:"))) {
			return im
		}
		for _, t := range im.RepoTags {
			if t == ref {
				return im
			}
		}
	}
	return nil
}

// Create makes a container.
func (e *Engine) Create(ctx context.Context, spec engine.ContainerSpec) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Create", spec.Name); err != nil {
		return "", err
	}
	im := e.findImage(spec.Image)
	if im == nil {
		return "", sbxerr.New(sbxerr.ErrImageNotFound, "No such image: %s", spec.Image)
	}
	for _, c := range e.containers {
		if spec.Name != "" && c.c.Name == spec.Name {
			return "", sbxerr.Conflict("the container name %q is already in use", spec.Name)
		}
	}
	id := newID()
	files := map[string]File{}
	for p, f := range im.files {
		files[p] = File{Mode: f.Mode, Data: append([]byte(nil), f.Data...), Link: f.Link}
	}
	env := append(append([]string(nil), im.Env...), spec.Env...)
	e.containers[id] = &ctr{
		c: engine.Container{ID: id, Name: spec.Name, Image: spec.Image, ImageID: im.ID, Labels: spec.Labels,
			Env: env, User: spec.User, WorkingDir: spec.WorkingDir, Created: e.now(),
			State: engine.ContainerState{Status: "created"}, Ports: map[string]string{}},
		spec:  spec,
		files: files,
		res:   spec.Resources,
	}
	e.emit(e.containers[id], "create")
	return id, nil
}

func (e *Engine) startLocked(c *ctr) {
	c.c.State = engine.ContainerState{Status: "running", Running: true, Pid: 1000 + len(e.containers), StartedAt: e.now()}
	c.c.Ports = map[string]string{}
	for _, p := range c.spec.Ports {
		e.nextPort++
		c.c.Ports[p] = strconv.Itoa(e.nextPort)
	}
	e.emit(c, "start")
}

func (e *Engine) stopLocked(c *ctr, code int) {
	st := c.c.State
	c.c.State = engine.ContainerState{Status: "exited", ExitCode: code, StartedAt: st.StartedAt, FinishedAt: e.now()}
	c.c.Ports = map[string]string{}
	for _, x := range e.execs {
		if x.container == c.c.ID && x.running {
			x.running, x.code = false, 137
		}
	}
	e.emit(c, "die")
}

// Start starts a created or exited container.
func (e *Engine) Start(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Start", id); err != nil {
		return err
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	switch {
	case c.c.State.Paused:
		return sbxerr.Conflict("cannot start a paused container, try unpause instead")
	case c.c.State.Running:
		return sbxerr.Conflict("container %s is already running (not modified)", shortID(id))
	}
	e.startLocked(c)
	return nil
}

// Stop stops a running or paused container.
func (e *Engine) Stop(ctx context.Context, id string, timeout time.Duration) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Stop", id); err != nil {
		return err
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if !c.c.State.Running {
		return sbxerr.Conflict("container %s is not running (not modified)", shortID(id))
	}
	e.stopLocked(c, 143)
	return nil
}

// Restart stops (when running) and starts a container.
func (e *Engine) Restart(ctx context.Context, id string, timeout time.Duration) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Restart", id); err != nil {
		return err
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if c.c.State.Running {
		e.stopLocked(c, 143)
	}
	e.startLocked(c)
	return nil
}

// Pause pauses a running container.
func (e *Engine) Pause(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Pause", id); err != nil {
		return err
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if !c.c.State.Running || c.c.State.Paused {
		return sbxerr.Conflict("container %s is not running or already paused", shortID(id))
	}
	c.c.State.Paused, c.c.State.Status = true, "paused"
	e.emit(c, "pause")
	return nil
}

// Unpause resumes a paused container.
func (e *Engine) Unpause(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Unpause", id); err != nil {
		return err
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if !c.c.State.Paused {
		return sbxerr.Conflict("container %s is not paused", shortID(id))
	}
	c.c.State.Paused, c.c.State.Status = false, "running"
	e.emit(c, "unpause")
	return nil
}

// Rename renames a container.
func (e *Engine) Rename(ctx context.Context, id, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Rename", id); err != nil {
		return err
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	for _, o := range e.containers {
		if o.c.Name == name {
			return sbxerr.Conflict("the container name %q is already in use", name)
		}
	}
	c.c.Name = name
	e.emit(c, "rename")
	return nil
}

// Update changes a container's limits.
func (e *Engine) Update(ctx context.Context, id string, r engine.Resources) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Update", id); err != nil {
		return err
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	c.res = r
	return nil
}

// Remove removes a container.
func (e *Engine) Remove(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Remove", id); err != nil {
		return err
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if c.c.State.Running {
		e.stopLocked(c, 137)
	}
	delete(e.containers, id)
	e.emit(c, "destroy")
	return nil
}

func copyContainer(c engine.Container) engine.Container {
	out := c
	out.Labels = map[string]string{}
	for k, v := range c.Labels {
		out.Labels[k] = v
	}
	out.Ports = map[string]string{}
	for k, v := range c.Ports {
		out.Ports[k] = v
	}
	out.Env = append([]string(nil), c.Env...)
	return out
}

// Inspect describes a container.
func (e *Engine) Inspect(ctx context.Context, id string) (engine.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Inspect", id); err != nil {
		return engine.Container{}, err
	}
	c, err := e.get(id)
	if err != nil {
		return engine.Container{}, err
	}
	return copyContainer(c.c), nil
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		got, ok := have[k]
		if !ok || (v != "" && got != v) {
			return false
		}
	}
	return true
}

// List lists the containers carrying all labels, as List results (no
// start and finish times).
func (e *Engine) List(ctx context.Context, labels map[string]string) ([]engine.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("List", ""); err != nil {
		return nil, err
	}
	var out []engine.Container
	for _, c := range e.containers {
		if matches(c.c.Labels, labels) {
			lc := copyContainer(c.c)
			lc.Env, lc.User, lc.WorkingDir = nil, "", ""
			lc.State = engine.ContainerState{Status: c.c.State.Status, Running: c.c.State.Running, Paused: c.c.State.Paused}
			out = append(out, lc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Stats returns one sample of fake counters.
func (e *Engine) Stats(ctx context.Context, id string, stream bool, fn func(engine.StatsSample) error) error {
	e.mu.Lock()
	if err := e.enter("Stats", id); err != nil {
		e.mu.Unlock()
		return err
	}
	c, err := e.get(id)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	running := c.c.State.Running
	limit := uint64(c.res.MemoryBytes)
	now := e.now()
	e.mu.Unlock()
	if !running {
		return fn(engine.StatsSample{})
	}
	return fn(engine.StatsSample{Read: now, CPUTotal: uint64(now.UnixNano()) / 4, SystemTotal: uint64(now.UnixNano()),
		OnlineCPUs: 2, MemoryUsage: 1 << 20, MemoryLimit: limit, PIDs: 2})
}

// Events reports events until ctx ends.
func (e *Engine) Events(ctx context.Context, labels map[string]string) (<-chan engine.Event, <-chan error) {
	e.mu.Lock()
	in := make(chan engine.Event, 64)
	id := e.nextSub
	e.nextSub++
	e.subs[id] = in
	e.mu.Unlock()
	out := make(chan engine.Event)
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		defer close(out)
		defer func() {
			e.mu.Lock()
			delete(e.subs, id)
			e.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				errc <- nil
				return
			case ev := <-in:
				if !matches(ev.Labels, labels) {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					errc <- nil
					return
				}
			}
		}
	}()
	return out, errc
}

// Exec runs an exec as scripted by Script.
func (e *Engine) Exec(ctx context.Context, id string, spec engine.ExecSpec) (engine.Exec, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Exec", id); err != nil {
		return nil, err
	}
	c, err := e.get(id)
	if err != nil {
		return nil, err
	}
	if !c.c.State.Running || c.c.State.Paused {
		return nil, sbxerr.Conflict("container %s is not running", shortID(id))
	}
	xid := newID()
	x := &execState{container: id, spec: spec, running: true}
	e.execs[xid] = x
	return &fakeExec{e: e, id: xid, c: copyContainer(c.c)}, nil
}

type fakeExec struct {
	e  *Engine
	id string
	c  engine.Container
}

func (x *fakeExec) ID() string { return x.id }

func (x *fakeExec) Output(stdout, stderr io.Writer) error {
	x.e.mu.Lock()
	st := x.e.execs[x.id]
	fn := x.e.Script
	x.e.mu.Unlock()
	var out, errOut []byte
	code := 0
	if fn != nil {
		out, errOut, code = fn(x.c, st.spec)
	}
	stdout.Write(out)
	stderr.Write(errOut)
	x.e.mu.Lock()
	if st.running {
		st.running, st.code = false, code
	}
	x.e.mu.Unlock()
	return nil
}

func (x *fakeExec) Write(p []byte) (int, error) {
	x.e.mu.Lock()
	defer x.e.mu.Unlock()
	return x.e.execs[x.id].stdin.Write(p)
}

func (x *fakeExec) CloseWrite() error {
	x.e.mu.Lock()
	defer x.e.mu.Unlock()
	x.e.execs[x.id].stdinClosed = true
	return nil
}

func (x *fakeExec) SetWriteDeadline(time.Time) error { return nil }
func (x *fakeExec) Close() error                     { return nil }

// ExecInspect reports an exec's state.
func (e *Engine) ExecInspect(ctx context.Context, execID string) (engine.ExecStatus, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("ExecInspect", execID); err != nil {
		return engine.ExecStatus{}, err
	}
	x := e.execs[execID]
	if x == nil {
		return engine.ExecStatus{}, sbxerr.NotFound("no such exec: %s", execID)
	}
	st := engine.ExecStatus{Running: x.running, ExitCode: x.code}
	if x.running {
		st.Pid = 4242
	}
	return st, nil
}

// StatPath describes a path of the fake file tree.
func (e *Engine) StatPath(ctx context.Context, id, p string) (engine.PathStat, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("StatPath", id); err != nil {
		return engine.PathStat{}, err
	}
	c, err := e.get(id)
	if err != nil {
		return engine.PathStat{}, err
	}
	p = path.Clean(p)
	f, ok := c.files[p]
	if !ok {
		return engine.PathStat{}, sbxerr.NotFound("Could not find the file %s in container %s", p, shortID(id))
	}
	return engine.PathStat{Name: path.Base(p), Size: int64(len(f.Data)), Mode: f.Mode, Mtime: e.now(), LinkTarget: f.Link}, nil
}

// CopyFrom returns a tar stream of a file or directory of the fake tree.
func (e *Engine) CopyFrom(ctx context.Context, id, p string) (io.ReadCloser, engine.PathStat, error) {
	st, err := e.StatPath(ctx, id, p)
	if err != nil {
		return nil, st, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return nil, st, err
	}
	p = path.Clean(p)
	var keys []string
	for k := range c.files {
		if k == p || strings.HasPrefix(k, strings.TrimSuffix(p, "/")+"/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	base := path.Base(p)
	for _, k := range keys {
		f := c.files[k]
		name := base
		if k != p {
			name = path.Join(base, strings.TrimPrefix(k, p+"/"))
		}
		hdr := &tar.Header{Name: name, Mode: int64(f.Mode.Perm()), ModTime: e.now()}
		switch {
		case f.Mode.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case f.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, f.Link
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Data))
		}
		tw.WriteHeader(hdr)
		tw.Write(f.Data)
	}
	tw.Close()
	return io.NopCloser(&buf), st, nil
}

// CopyTo unpacks a tar stream into a directory of the fake tree.
func (e *Engine) CopyTo(ctx context.Context, id, dir string, r io.Reader) error {
	e.mu.Lock()
	if err := e.enter("CopyTo", id); err != nil {
		e.mu.Unlock()
		return err
	}
	c, err := e.get(id)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	tr := tar.NewReader(r)
	got := map[string]File{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sbxerr.Invalid("bad archive: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return sbxerr.Invalid("bad archive: %v", err)
		}
		p := path.Join(dir, hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			got[p] = File{Mode: fs.ModeDir | fs.FileMode(hdr.Mode).Perm()}
		case tar.TypeSymlink:
			got[p] = File{Mode: fs.ModeSymlink | 0o777, Link: hdr.Linkname}
		default:
			got[p] = File{Mode: fs.FileMode(hdr.Mode).Perm(), Data: data}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := c.files[path.Clean(dir)]; !ok {
		return sbxerr.NotFound("Could not find the file %s in container %s", dir, shortID(id))
	}
	for p, f := range got {
		c.files[p] = f
	}
	return nil
}

// Images lists the fake images.
func (e *Engine) Images(ctx context.Context) ([]engine.Image, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Images", ""); err != nil {
		return nil, err
	}
	var out []engine.Image
	for _, im := range e.images {
		out = append(out, im.Image)
	}
	return out, nil
}

// ImageInspect describes a fake image.
func (e *Engine) ImageInspect(ctx context.Context, ref string) (engine.Image, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("ImageInspect", ref); err != nil {
		return engine.Image{}, err
	}
	im := e.findImage(ref)
	if im == nil {
		return engine.Image{}, sbxerr.New(sbxerr.ErrImageNotFound, "No such image: %s", ref)
	}
	return im.Image, nil
}

// ImagePull fails: the fake has no registry (tests add images instead).
func (e *Engine) ImagePull(ctx context.Context, ref string, auth *engine.RegistryAuth, fn func(engine.PullProgress)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("ImagePull", ref); err != nil {
		return err
	}
	return sbxerr.New(sbxerr.ErrImageNotFound, "manifest for %s not found: manifest unknown", ref)
}

// ImageRemove removes a fake image.
func (e *Engine) ImageRemove(ctx context.Context, ref string, force bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("ImageRemove", ref); err != nil {
		return err
	}
	im := e.findImage(ref)
	if im == nil {
		return sbxerr.New(sbxerr.ErrImageNotFound, "No such image: %s", ref)
	}
	for _, c := range e.containers {
		if c.c.ImageID == im.ID && !force {
			return sbxerr.Conflict("image is being used by container %s", shortID(c.c.ID))
		}
	}
	delete(e.images, im.ID)
	return nil
}

// NetworkEnsure adds a network (keeping an existing one).
func (e *Engine) NetworkEnsure(ctx context.Context, spec engine.NetworkSpec) (engine.Network, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("NetworkEnsure", spec.Name); err != nil {
		return engine.Network{}, err
	}
	if n, ok := e.networks[spec.Name]; ok {
		return n, nil
	}
	n := engine.Network{ID: newID(), Name: spec.Name, Labels: spec.Labels, Options: map[string]string{
		"com.docker.network.bridge.name":       spec.BridgeName,
		"com.docker.network.bridge.enable_icc": strconv.FormatBool(spec.ICC),
	}}
	if spec.Subnet != "" {
		n.Subnets = []string{spec.Subnet}
	}
	e.networks[spec.Name] = n
	return n, nil
}

// NetworkRemove removes a network no container uses.
func (e *Engine) NetworkRemove(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("NetworkRemove", name); err != nil {
		return err
	}
	if _, ok := e.networks[name]; !ok {
		return sbxerr.NotFound("network %s not found", name)
	}
	for _, c := range e.containers {
		if c.spec.NetworkMode == name {
			return sbxerr.Conflict("network %s has active endpoints", name)
		}
	}
	delete(e.networks, name)
	return nil
}

// Networks lists the networks carrying all labels.
func (e *Engine) Networks(ctx context.Context, labels map[string]string) ([]engine.Network, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Networks", ""); err != nil {
		return nil, err
	}
	var out []engine.Network
	for _, n := range e.networks {
		if matches(n.Labels, labels) {
			out = append(out, n)
		}
	}
	return out, nil
}

// VolumeCreate adds a volume (keeping an existing one).
func (e *Engine) VolumeCreate(ctx context.Context, name string, labels map[string]string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("VolumeCreate", name); err != nil {
		return err
	}
	if _, ok := e.volumes[name]; !ok {
		e.volumes[name] = engine.Volume{Name: name, Labels: labels}
	}
	return nil
}

// VolumeRemove removes a volume no container mounts.
func (e *Engine) VolumeRemove(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("VolumeRemove", name); err != nil {
		return err
	}
	if _, ok := e.volumes[name]; !ok {
		return sbxerr.NotFound("no such volume: %s", name)
	}
	for _, c := range e.containers {
		for _, m := range c.spec.Mounts {
			if m.Volume == name {
				return sbxerr.Conflict("volume %s is in use", name)
			}
		}
	}
	delete(e.volumes, name)
	return nil
}

// Volumes lists the volumes carrying all labels.
func (e *Engine) Volumes(ctx context.Context, labels map[string]string) ([]engine.Volume, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enter("Volumes", ""); err != nil {
		return nil, err
	}
	var out []engine.Volume
	for _, v := range e.volumes {
		if matches(v.Labels, labels) {
			out = append(out, v)
		}
	}
	return out, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// String describes the fake, for test failures.
func (e *Engine) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fmt.Sprintf("enginefake{%d containers, %d images}", len(e.containers), len(e.images))
}
