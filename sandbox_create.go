package opensbx

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/poll"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

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
	if err == nil && m.onKubernetes() {
		err = kubeCheck(o)
	}
	if err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	img, err := m.ensureImage(ctx, o.Image, o.PullMissing)
	if err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	spec := specHash(o)
	if o.Name != "" {
		if _, ok := m.index.byNameID(o.Name); ok {
			return m.existing(ctx, o.Name, spec)
		}
	}
	tmpl := m.pool.match(o)
	for attempt := 0; ; attempt++ {
		name := o.Name
		if name == "" {
			name = friendlyName()
		}
		var res *CreateResult
		err := errPoolMiss
		if tmpl != nil {
			if id, ok := m.pool.take(ctx, tmpl, img.ID); ok {
				res, err = m.adopt(ctx, tmpl, pooled{id: id, imageID: img.ID}, o, name, spec)
			}
		}
		if errors.Is(err, errPoolMiss) {
			if tmpl != nil && err != errPoolMiss {
				m.log.Warn("pooled sandbox unusable; creating one", "err", err)
			}
			release, qerr := m.reserveSandbox()
			if qerr != nil {
				return nil, fmt.Errorf("create sandbox: %w", qerr)
			}
			res, err = m.create(ctx, o, img, name, spec)
			release()
		}
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
			return nil, fmt.Errorf("create sandbox: %w", sbxerr.Conflict("no free name after %d attempts", attempt+1))
		}
	}
}

// errNameTaken reports that the engine already has a container of the name.
var errNameTaken = errors.New("container name taken")

// existing returns the sandbox named name when its settings hash is spec.
func (m *Manager) existing(ctx context.Context, name, spec string) (*CreateResult, error) {
	c, err := m.inspectName(ctx, name)
	if errors.Is(err, ErrNotFound) {
		// The engine has the name but not among this namespace's sandboxes.
		return nil, fmt.Errorf("create sandbox: %w", sbxerr.Conflict("name %q is used by a container this manager does not own", name))
	}
	if err != nil {
		return nil, fmt.Errorf("create sandbox: name %q: %w", name, err)
	}
	if m.specOf(c) != spec {
		return nil, fmt.Errorf("create sandbox: %w", sbxerr.Conflict("name %q exists with different settings", name))
	}
	return &CreateResult{Sandbox: m.sandboxOf(c)}, nil
}

// create makes one attempt with a given sandbox name.
func (m *Manager) create(ctx context.Context, o CreateOptions, img engine.Image, name, spec string) (_ *CreateResult, err error) {
	agentVol, agentVersion, err := m.agentFor(ctx, o)
	if err != nil {
		return nil, err
	}
	cs := m.containerSpec(o, img, name, spec, agentVol, agentVersion)
	if len(o.Egress) > 0 && m.onKubernetes() {
		cs.EgressAllow = o.Egress // a NetworkPolicy of the Pod's own
	} else if len(o.Egress) > 0 {
		net, err := m.egressNetwork(ctx, o.Egress)
		if err != nil {
			return nil, err
		}
		cs.NetworkMode, cs.Labels[labelEgressNet] = net, net
		defer func() {
			if err != nil {
				cctx, cancel := cleanupContext(ctx)
				defer cancel()
				if derr := m.dropEgressNetwork(cctx, net); derr != nil {
					err = fmt.Errorf("%w (and %v)", err, derr)
				}
			}
		}()
	}
	id, err := m.makeContainer(ctx, cs, o, img, o.Name == "")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = m.discard(ctx, id, err)
		}
	}()
	m.index.add(id, name)
	if err := m.expiry.arm(id, o.TTL); err != nil {
		return nil, err
	}
	c, err := m.engine.Inspect(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	sb := m.sandboxOf(c)
	m.publish(Event{Type: EventCreated, SandboxID: sb.ID, Name: sb.Name})
	m.warm(c)
	return &CreateResult{Sandbox: sb, Created: true}, nil
}

// warm prepares a new sandbox's first calls in the background: its agent's
// session opened, a first resource sample taken (the baseline of Stats).
func (m *Manager) warm(c engine.Container) {
	agent := m.usesAgent(c)
	m.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		sample := m.oneShot
		if agent {
			if _, err := m.agents.client(ctx, c.ID); err != nil {
				return
			}
			sample = m.agentSample
		}
		if s, err := sample(ctx, c.ID); err == nil {
			m.stats.put(c.ID, s, agent)
		}
	})
}

// discard removes a container that a failed create made, under a cleanup
// context, and returns err with what the removal said, if it failed.
func (m *Manager) discard(ctx context.Context, id string, err error) error {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if rmErr := m.engine.Remove(cctx, id); rmErr != nil && !errors.Is(rmErr, ErrNotFound) {
		return fmt.Errorf("%w (and removing the half-made container %s failed: %v)", err, shortID(id), rmErr)
	}
	m.index.drop(id)
	if ferr := m.expiry.forget(id); ferr != nil {
		return fmt.Errorf("%w (and %v)", err, ferr)
	}
	if ferr := m.records.forget(id); ferr != nil {
		return fmt.Errorf("%w (and %v)", err, ferr)
	}
	return err
}

// makeContainer creates and starts the container cs describes and returns
// its id; on any failure it removes what it made. A taken name is
// errNameTaken. With ours set, the container name is this call's alone, so
// a create cancelled mid-request is cleaned up in the background should the
// engine make the container after all.
func (m *Manager) makeContainer(ctx context.Context, cs engine.ContainerSpec, o CreateOptions, img engine.Image, ours bool) (_ string, err error) {
	id, err := m.engine.Create(ctx, cs)
	if err != nil && ctx.Err() != nil && ours {
		m.removeLate(cs.Name)
		return "", err
	}
	switch {
	case errors.Is(err, ErrConflict):
		return "", errNameTaken
	case errors.Is(err, ErrImageNotFound):
		return "", fmt.Errorf("image %q: %w", o.Image, err)
	case err != nil:
		return "", err
	}
	defer func() {
		if err != nil {
			err = m.discard(ctx, id, err)
		}
	}()
	// The sandbox runs under an init, so a missing executable would only show
	// as an exit after a successful start: look for it first.
	argv0 := firstArg(cs)
	if cs.Labels[labelAgent] != "" {
		argv0 = "" // the agent is in its volume
		if main := mainCommand(o, img); len(main) > 0 && !o.KeepImageCommand {
			argv0 = main[0]
		}
	}
	if argv0 != "" && !m.onKubernetes() { // a Pod has no files before it runs; the agent reports a missing program
		found, err := m.hasExecutable(ctx, id, argv0, searchPath(o.Env, img.Env))
		if err != nil {
			return "", err
		}
		if !found && cs.Labels[labelKeepAlive] == "true" {
			return "", sbxerr.Invalid("image %q cannot run the default keep-alive command %q (it has no %s binary); "+
				"set CreateOptions.Command to a long-running program the image has, or KeepImageCommand to run its own",
				o.Image, strings.Join(keepAlive(), " "), argv0)
		}
		if !found {
			return "", sbxerr.Invalid("image %q has no executable %q", o.Image, argv0)
		}
	}
	if err := m.engine.Start(ctx, id); err != nil {
		return "", fmt.Errorf("start: %w", err)
	}
	return id, nil
}

// removeLate removes the container called name if the engine creates it
// within a minute (a loaded engine may finish a create long after the
// client left), for a create whose request was cancelled. A container the
// engine is still making may be listed yet survive a removal, so it is done
// only once a listing after a removal no longer shows the name. Close does
// not abandon it at once: it keeps looking for up to 5 more seconds, so
// that a create cancelled just before Close leaves nothing.
func (m *Manager) removeLate(name string) {
	m.goBackground(func(mctx context.Context) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(mctx), time.Minute)
		defer cancel()
		stop := context.AfterFunc(mctx, func() {
			t := time.AfterFunc(5*time.Second, cancel)
			context.AfterFunc(ctx, func() { t.Stop() })
		})
		defer stop()
		removed := false
		err := poll.Until(ctx, poll.Backoff{Min: 50 * time.Millisecond, Max: time.Second}, func() (bool, error) {
			cs, err := m.engine.List(ctx, m.ownedLabels())
			if err != nil {
				return false, nil // try again until the deadline
			}
			i := slices.IndexFunc(cs, func(c engine.Container) bool { return c.Name == name })
			if i < 0 {
				return removed, nil // gone, or not made (yet)
			}
			if err := m.remove(ctx, cs[i].ID, cs[i].Labels); err != nil {
				m.log.Debug("remove the container of a cancelled create", "name", name, "err", err)
			}
			removed = true
			return false, nil // look again: it may still be there
		})
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			m.log.Warn("remove the container of a cancelled create", "name", name, "err", err)
		}
	})
}

// agentFor returns the agent volume and version a sandbox made from o gets,
// or "" without the agent (WithAgent(false)).
func (m *Manager) agentFor(ctx context.Context, o CreateOptions) (string, string, error) {
	if !m.cfg.agent {
		return "", "", nil
	}
	if m.onKubernetes() {
		// The engine provides the agent itself (Mount.Agent): from its
		// image, or from the nodes' directory of that volume's name.
		version, volume, err := m.agentVersion()
		return volume, version, err
	}
	return m.ensureAgentVolume(ctx, o.Image)
}

// firstArg returns the program a new container will run, when Create
// chose it (the image's own ENTRYPOINT/CMD are the image's business).
func firstArg(cs engine.ContainerSpec) string {
	if len(cs.Entrypoint) > 0 {
		return cs.Entrypoint[0]
	}
	if cs.Entrypoint != nil && len(cs.Cmd) > 0 {
		return cs.Cmd[0]
	}
	return ""
}

// searchPath is the PATH a container's processes get: the sandbox's own
// environment, else the image's, else the runtime's default.
func searchPath(env, imageEnv []string) string {
	for _, list := range [][]string{env, imageEnv} {
		for i := len(list) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(list[i], "PATH="); ok {
				return v
			}
		}
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// hasExecutable reports whether the created (not yet started) container id
// has argv0, looking along dirs (a PATH) like the runtime does.
func (m *Manager) hasExecutable(ctx context.Context, id, argv0, dirs string) (bool, error) {
	var candidates []string
	if strings.Contains(argv0, "/") {
		if !path.IsAbs(argv0) {
			return true, nil // relative to the working directory: let the runtime decide
		}
		candidates = []string{argv0}
	} else {
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
		slices.SortStableFunc(list, func(a, b string) int { return rank(a) - rank(b) })
		for _, d := range list {
			if path.IsAbs(d) {
				candidates = append(candidates, path.Join(d, argv0))
			}
		}
	}
	for _, p := range candidates {
		st, err := m.engine.StatPath(ctx, id, p)
		if err == nil {
			return st.Mode.IsRegular() || st.Mode&fs.ModeSymlink != 0, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return false, fmt.Errorf("look for %s: %w", p, err)
		}
	}
	return false, nil
}
