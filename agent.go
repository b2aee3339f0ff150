package opensbx

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/bin"
	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// The sandbox agent
//
// Every sandbox (unless WithAgent(false)) runs the Opensbx agent as its main
// process under the engine's init: a small static program that does the
// sandbox's commands and files over one live channel, instead of one engine
// exec or archive request per call, and keeps running commands, their
// output and exit status when the Manager goes away. The program is
// embedded in this package (internal/agent/bin). It reaches sandboxes
// without a copy per create: once per engine and agent version the Manager
// fills a labelled volume with it, and every sandbox mounts that volume
// read-only at /.opensbx. The channel is an exec of `opensbx-agent
// connect` through the Engine API (no published port, nothing that needs
// the container's IP or the host's /proc, so it works the same with a remote
// engine and under gVisor), carrying one multiplexed session.
//
// The agent runs as root so that it can run commands as any user; the
// sandbox's user (CreateOptions.User, else the image's) is the default user
// of its commands and of its main command, if it has one. Nothing the agent
// sends is trusted (internal/agent bounds and checks every frame); when it
// is gone, calls fail with ErrConflict saying so.
//
// A sandbox that is stopped or paused is not served by its agent: its files
// go through the engine's archive API as without the agent, and commands
// need a running sandbox anyway.

// Where the agent lives in a sandbox.
const (
	agentDir     = "/.opensbx"
	agentProgram = agentDir + "/opensbx-agent"
	labelAgent   = labelPrefix + "agent" // the agent version a sandbox runs
	labelVolume  = labelPrefix + "agent-volume"
)

// agentVolume is the volume of the agent program for the engine's
// architecture.
type agentVolume struct {
	mu      sync.Mutex
	name    string // "" until known
	version string
	filled  bool
}

// agentVersion returns the version and volume name of the agent for the
// engine's architecture.
func (m *Manager) agentVersion() (version, volume string, err error) {
	version, err = bin.Version(m.info.Arch)
	if err != nil {
		return "", "", sbxerr.New(ErrUnsupported, "no agent program for the engine's architecture %q: %v", m.info.Arch, err)
	}
	return version, agentVolumeName(m.info.Arch, version), nil
}

// agentVolumeName is the name of the agent's volume (Docker) or node
// directory (Kubernetes) for arch and version.
func agentVolumeName(arch, version string) string {
	return "opensbx-agent-" + arch + "-" + version[:16]
}

// ensureAgentVolume makes sure the volume holding the agent exists and
// holds the program, filling it through a container of image that is
// created, never started, and removed again. It runs once per Manager.
func (m *Manager) ensureAgentVolume(ctx context.Context, image string) (string, string, error) {
	v := &m.agentVol
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.filled {
		return v.name, v.version, nil
	}
	// A one-time setup: a caller that gives up must not cut it short (and
	// leave a fill container behind).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	version, name, err := m.agentVersion()
	if err != nil {
		return "", "", err
	}
	program, err := bin.Binary(m.info.Arch)
	if err != nil {
		return "", "", sbxerr.New(ErrUnsupported, "agent program: %v", err)
	}
	if err := m.engine.VolumeCreate(ctx, name, map[string]string{labelManaged: "true", labelVolume: version}); err != nil {
		return "", "", fmt.Errorf("agent volume: %w", err)
	}
	var b [6]byte
	rand.Read(b[:])
	const fillDir = "/.opensbx-fill"
	id, err := m.engine.Create(ctx, engine.ContainerSpec{
		Name:        m.containerName("-fill-" + hex.EncodeToString(b[:])),
		Image:       image,
		Entrypoint:  []string{fillDir + "/opensbx-agent"}, // never started
		Labels:      map[string]string{labelManaged: "true", labelNamespace: m.cfg.namespace, labelVolume: version},
		Mounts:      []engine.Mount{{Volume: name, Target: fillDir}},
		NetworkMode: "none",
	})
	if err != nil {
		return "", "", fmt.Errorf("agent volume: fill: %w", err)
	}
	defer func() {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if rmErr := m.engine.Remove(cctx, id); rmErr != nil && !errors.Is(rmErr, ErrNotFound) {
			m.log.Warn("remove the agent volume's fill container", "container", shortID(id), "err", rmErr)
		}
	}()
	st, err := m.engine.StatPath(ctx, id, fillDir+"/opensbx-agent")
	if err == nil && st.Size == int64(len(program)) && st.Mode.IsRegular() {
		v.name, v.version, v.filled = name, version, true
		return name, version, nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "opensbx-agent", Mode: 0o755, Size: int64(len(program)), ModTime: time.Now(), Typeflag: tar.TypeReg})
	tw.Write(program)
	tw.Close()
	if err := m.engine.CopyTo(ctx, id, fillDir, &buf); err != nil {
		return "", "", fmt.Errorf("agent volume: fill: %w", err)
	}
	v.name, v.version, v.filled = name, version, true
	return name, version, nil
}

// pruneAgentVolumes removes the agent volumes of other versions that no
// container uses any more (New).
func (m *Manager) pruneAgentVolumes(ctx context.Context) {
	version, _, err := m.agentVersion()
	if err != nil {
		return
	}
	vols, err := m.engine.Volumes(ctx, map[string]string{labelManaged: "true", labelVolume: ""})
	if err != nil {
		return
	}
	for _, v := range vols {
		if v.Labels[labelVolume] == version {
			continue
		}
		if err := m.engine.VolumeRemove(ctx, v.Name); err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) {
			m.log.Debug("remove an old agent volume", "volume", v.Name, "err", err)
		}
	}
}

// agentServe is the main process of a sandbox with the agent: the agent
// serving, with the sandbox's own main command (if any) as its supervised
// child.
func (m *Manager) agentServe(user string, main []string) []string {
	argv := []string{agentProgram, "serve",
		"-output-limit", strconv.Itoa(m.cfg.outputLimit),
		"-max-output-limit", strconv.Itoa(max(m.cfg.outputLimit, 1<<20)),
		"-max-finished", strconv.Itoa(max(m.cfg.commandHistory+16, 64)),
		"-nofile", strconv.FormatInt(m.cfg.nofile, 10), // a Pod has no ulimits of its own
	}
	if user != "" {
		argv = append(argv, "-user", user, "-main-user", user)
	}
	if len(main) > 0 {
		argv = append(argv, "--")
		argv = append(argv, main...)
	}
	return argv
}

// usesAgent reports whether calls on container c go through its agent: it
// runs one, and it runs (a paused agent cannot answer), or it is halted
// (stopped on Kubernetes, its agent running on).
func (m *Manager) usesAgent(c engine.Container) bool {
	return m.cfg.agent && c.Labels[labelAgent] != "" && (stateOf(c.State) == StateRunning || c.State.Halted)
}

// liveAgent returns the sandbox ref resolves to and its agent's open
// session when the agent is known to serve it (an open, healthy session
// and not paused), without an engine call: the fast path of commands and
// files. ok is false otherwise, and the caller inspects the sandbox.
func (m *Manager) liveAgent(ctx context.Context, ref string) (id string, client *agent.Client, ok bool) {
	if !m.cfg.agent {
		return "", nil, false
	}
	id, err := m.index.resolve(ctx, ref)
	if err != nil || m.index.isPaused(id) {
		return "", nil, false
	}
	client = m.agents.open(id)
	return id, client, client != nil
}

// agentConns keeps one session per sandbox.
type agentConns struct {
	m       *Manager
	mu      sync.Mutex
	by      map[string]*agentConn
	dropped map[string]time.Time // when a session was closed on purpose (the sandbox stops)
}

// agentConn is one sandbox's session, made once.
type agentConn struct {
	ready  chan struct{} // closed when dialled
	client *agent.Client
	err    error
}

// errNoAgent marks a sandbox whose agent does not answer.
func errNoAgent(id, why string) error {
	return sbxerr.Conflict("the agent of sandbox %s is not running (%s); restart the sandbox", shortID(id), why)
}

// client returns the session of sandbox id, opening it when there is none
// (or the last one died).
func (a *agentConns) client(ctx context.Context, id string) (*agent.Client, error) {
	a.mu.Lock()
	if a.by == nil {
		a.by = map[string]*agentConn{}
	}
	c := a.by[id]
	if c != nil {
		select {
		case <-c.ready:
			if c.err != nil || c.client.Err() != nil {
				c = nil // failed or died: dial again
			}
		default:
		}
	}
	if c == nil {
		c = &agentConn{ready: make(chan struct{})}
		a.by[id] = c
		a.mu.Unlock()
		c.client, c.err = a.dial(ctx, id)
		close(c.ready)
		if c.err != nil {
			a.mu.Lock()
			if a.by[id] == c {
				delete(a.by, id)
			}
			a.mu.Unlock()
		}
		return c.client, c.err
	}
	a.mu.Unlock()
	select {
	case <-c.ready:
		return c.client, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// open returns the healthy open session of sandbox id, or nil; it never
// dials.
func (a *agentConns) open(id string) *agent.Client {
	a.mu.Lock()
	c := a.by[id]
	a.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c.ready:
		if c.err == nil && c.client.Err() == nil {
			return c.client
		}
	default:
	}
	return nil
}

// drop closes and forgets the session of sandbox id, because the sandbox
// stops, restarts or goes.
func (a *agentConns) drop(id string) { a.close(id, true) }

// forget closes and forgets the session of sandbox id, because it broke.
func (a *agentConns) forget(id string) { a.close(id, false) }

func (a *agentConns) close(id string, onPurpose bool) {
	a.mu.Lock()
	c := a.by[id]
	delete(a.by, id)
	if c != nil && onPurpose {
		if a.dropped == nil {
			a.dropped = map[string]time.Time{}
		}
		now := time.Now()
		for k, t := range a.dropped { // bounded: only the last minute's
			if now.Sub(t) > time.Minute {
				delete(a.dropped, k)
			}
		}
		a.dropped[id] = now
	}
	a.mu.Unlock()
	if c != nil {
		go func() {
			<-c.ready
			if c.client != nil {
				c.client.Close()
			}
		}()
	}
}

// recentlyDropped reports whether the session of sandbox id was closed on
// purpose in the last half minute (its sandbox is stopping or going).
func (a *agentConns) recentlyDropped(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.dropped[id]
	return ok && time.Since(t) < 30*time.Second
}

// closeAll closes every session (Close).
func (a *agentConns) closeAll() {
	a.mu.Lock()
	conns := a.by
	a.by = nil
	a.mu.Unlock()
	for _, c := range conns {
		<-c.ready
		if c.client != nil {
			c.client.Close()
		}
	}
}

// dial opens a session, giving a just-started agent a moment to listen:
// a relay that finds nobody on the socket is tried again for up to 3 s.
func (a *agentConns) dial(ctx context.Context, id string) (*agent.Client, error) {
	deadline := time.Now().Add(3 * time.Second)
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		c, err := a.dialOnce(ctx, id)
		if !errors.Is(err, errNotListening) || time.Now().After(deadline) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// errNotListening marks a relay that found no agent on the socket.
var errNotListening = errors.New("nothing listens on the agent's socket")

// warm opens the session of a sandbox that was just made, in the
// background, so that its first call finds it open.
func (a *agentConns) warm(id string) {
	a.m.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		a.client(ctx, id)
	})
}

// dialOnce opens a session: an exec of the relay, its output
// demultiplexed into the client.
func (a *agentConns) dialOnce(ctx context.Context, id string) (*agent.Client, error) {
	m := a.m
	release, err := m.startingExec(id)
	if err != nil {
		return nil, fmt.Errorf("open the agent's channel: %w", err)
	}
	defer release()
	x, err := m.engine.Exec(ctx, id, engine.ExecSpec{Cmd: []string{agentProgram, "connect"}, User: "0", Stdin: true})
	if err != nil {
		return nil, fmt.Errorf("open the agent's channel: %w", err)
	}
	pr, pw := io.Pipe()
	stderr := &engine.CapWriter{Limit: 1 << 10}
	if !m.goBackground(func(context.Context) {
		err := x.Output(pw, stderr)
		if err == nil {
			err = io.EOF
		}
		pw.CloseWithError(err)
	}) {
		x.Close()
		return nil, ErrClosed
	}
	conn := &execConn{r: pr, x: x}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client, err := agent.NewClient(hctx, conn)
	release() // answered (the relay runs) or not: the exec has started or failed
	if err != nil {
		conn.Close()
		why := "it did not answer"
		if code, werr := engine.WaitExec(hctx, m.engine, x.ID()); werr == nil {
			switch code {
			case agent.ExitNoAgent:
				if ctx.Err() == nil {
					return nil, fmt.Errorf("%w: %w", errNoAgent(id, "nothing listens on its socket"), errNotListening)
				}
				why = "nothing listens on its socket"
			case agent.ExitRefused:
				why = "it refused the relay"
			case agent.ExitBusy:
				why = "it has too many sessions"
			default:
				why = fmt.Sprintf("the relay exited with %d", code)
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %v", errNoAgent(id, why), err)
	}
	return client, nil
}

// execConn is the relay exec as a connection: writes go to its stdin,
// reads come from its demultiplexed stdout.
type execConn struct {
	r    *io.PipeReader
	x    engine.Exec
	once sync.Once
}

func (c *execConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *execConn) Write(p []byte) (int, error) { return c.x.Write(p) }
func (c *execConn) Close() error {
	c.once.Do(func() {
		c.x.Close()
		c.r.Close()
	})
	return nil
}
