package opensbx

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// The warm pool
//
// A Manager with pool templates (WithPool) keeps ready sandboxes for each:
// created and started ahead of time, invisible in List and Get, counted
// against the pool's maximum. A Create whose request matches a template
// adopts one instead of creating a container: it renames the container to
// the sandbox's name, applies the limits with a live update when they
// differ from the template's, arms the TTL from now and records the name,
// labels and privacy in the Manager's records (labels cannot change after
// creation). The pool refills in the background. A pooled sandbox is
// handed out once and never comes back: every Create gets a container no
// one has used, with its own ports, id and name.
//
// What a template fixes (the image, published ports, the main command,
// the working directory and the environment) cannot change after a
// container is created, so a request matches only when all of it is equal.
//
// Pooled containers carry the namespace's labels plus org.opensbx.pool (the
// template's key) and a container name no sandbox can have. Close removes
// them; a Manager started on the same namespace takes over the ready ones
// of its templates and removes the others.

// PoolTemplate describes sandboxes to keep ready.
type PoolTemplate struct {
	// Image is the image reference, as in CreateOptions. It must be present
	// locally: the pool never pulls.
	Image string
	// Ports, Command, Entrypoint, KeepImageCommand, WorkingDir and Env are
	// as in CreateOptions; a Create must ask for exactly these to be served
	// from the pool.
	Ports            []string
	Command          []string
	Entrypoint       []string
	KeepImageCommand bool
	WorkingDir       string
	Env              []string
	// User, ReadOnlyRootfs, Network and Runtime are as in CreateOptions
	// too (Runtime defaults to the Manager's).
	User           string
	ReadOnlyRootfs bool
	Network        string
	Runtime        string
	// Size is how many ready sandboxes to keep (at least 1).
	Size int
}

// PoolStatus reports one template's pool.
type PoolStatus struct {
	// Image and Ports identify the template.
	Image string   `json:"image"`
	Ports []string `json:"ports"`
	// Size is the number of ready sandboxes the pool keeps; Ready the
	// number it has now; Filling the creates in flight.
	Size    int `json:"size"`
	Ready   int `json:"ready"`
	Filling int `json:"filling"`
	// Hits counts Creates served from the pool; Misses counts Creates that
	// matched the template but found it empty.
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
	// LastError is the last fill failure, or "".
	LastError string `json:"last_error,omitempty"`
}

// WithPool keeps ready sandboxes for each template (see PoolTemplate).
// A template with an invalid setting or a Size below 1 makes New fail with
// ErrInvalid.
func WithPool(templates ...PoolTemplate) Option {
	return func(cfg *config) error {
		for _, t := range templates {
			if t.Size < 1 {
				return sbxerr.Invalid("pool template %q: size must be at least 1, got %d", t.Image, t.Size)
			}
			if t.Size > maxPoolSize {
				return sbxerr.Invalid("pool template %q: size %d is over %d", t.Image, t.Size, maxPoolSize)
			}
		}
		cfg.pool = append(cfg.pool, templates...)
		return nil
	}
}

// WithPoolMax bounds the ready sandboxes of all templates together
// (default: the sum of the templates' sizes).
func WithPoolMax(n int) Option {
	return func(cfg *config) error {
		if n < 1 || n > maxPoolSize {
			return sbxerr.Invalid("pool maximum must be 1-%d, got %d", maxPoolSize, n)
		}
		cfg.poolMax = n
		return nil
	}
}

// maxPoolSize bounds one template's size and the pool's maximum.
const maxPoolSize = 1000

// Pool labels and names.
const (
	labelPool = labelPrefix + "pool" // the template's key
	// poolFillers is how many pooled sandboxes are created at once.
	poolFillers = 4
)

// poolTemplate is a template with its key and normalised options.
type poolTemplate struct {
	PoolTemplate
	key  string
	opts CreateOptions // normalised
}

// pool keeps the ready sandboxes.
type pool struct {
	m         *Manager
	templates []*poolTemplate
	max       int

	mu      sync.Mutex
	ready   map[string][]pooled // by template key, oldest first
	filling map[string]int
	hits    map[string]uint64
	misses  map[string]uint64
	lastErr map[string]string
	wake    chan struct{}
	abandon bool // tests: leave the ready sandboxes, as a killed Manager does
}

// pooled is one ready sandbox.
type pooled struct {
	id, imageID string
}

// poolKey identifies what a pooled sandbox was made for.
func poolKey(o CreateOptions) string {
	b, _ := json.Marshal(struct {
		Image                           string
		Ports, Command, Entrypoint, Env []string
		KeepImageCommand                bool
		WorkingDir, User                string
		ReadOnlyRootfs                  bool
		Network, Runtime                string
	}{o.Image, o.Ports, o.Command, o.Entrypoint, o.Env, o.KeepImageCommand, o.WorkingDir, o.User, o.ReadOnlyRootfs, o.Network, o.Runtime})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// newPool validates the templates of cfg; nil when there are none.
func newPool(m *Manager) (*pool, error) {
	if len(m.cfg.pool) == 0 {
		return nil, nil
	}
	p := &pool{m: m, max: m.cfg.poolMax, ready: map[string][]pooled{}, filling: map[string]int{},
		hits: map[string]uint64{}, misses: map[string]uint64{}, lastErr: map[string]string{}, wake: make(chan struct{}, 1)}
	sum := 0
	seen := map[string]bool{}
	for _, t := range m.cfg.pool {
		o, err := m.normalize(CreateOptions{Image: t.Image, Ports: t.Ports, Command: t.Command, Entrypoint: t.Entrypoint,
			KeepImageCommand: t.KeepImageCommand, WorkingDir: t.WorkingDir, Env: t.Env,
			User: t.User, ReadOnlyRootfs: t.ReadOnlyRootfs, Network: t.Network, Runtime: t.Runtime})
		if err != nil {
			return nil, fmt.Errorf("pool template %q: %w", t.Image, err)
		}
		if _, err := imageTarget(o.Image); err != nil {
			return nil, fmt.Errorf("pool template: %w", err)
		}
		key := poolKey(o)
		if seen[key] {
			return nil, sbxerr.Invalid("pool template %q is given twice", t.Image)
		}
		seen[key] = true
		p.templates = append(p.templates, &poolTemplate{PoolTemplate: t, key: key, opts: o})
		sum += t.Size
	}
	if p.max == 0 {
		p.max = sum
	}
	return p, nil
}

// isPooledName reports whether a container name is one the pool gives its
// ready sandboxes: the namespace's prefix followed by "-", which no sandbox
// name starts with.
func (m *Manager) isPooledName(name string) bool {
	return strings.HasPrefix(name, m.containerName("-pool-"))
}

// isInternalName reports whether a container name is one of the Manager's
// own (pooled sandboxes, helpers): the namespace's prefix and a "-".
func (m *Manager) isInternalName(name string) bool {
	return strings.HasPrefix(name, m.containerName("-"))
}

// isPooled reports whether c is a ready pooled sandbox (not yet adopted).
func (m *Manager) isPooled(c engine.Container) bool {
	return c.Labels[labelPool] != "" && m.isPooledName(c.Name)
}

// recover takes over the ready pooled sandboxes in owned (an earlier
// Manager's) that fit a template and removes the others.
func (p *pool) recover(ctx context.Context, owned []engine.Container) {
	byKey := map[string]*poolTemplate{}
	if p != nil {
		for _, t := range p.templates {
			byKey[t.key] = t
		}
	}
	for _, c := range owned {
		if !p.m.isPooled(c) {
			continue
		}
		t := byKey[c.Labels[labelPool]]
		if t != nil && c.State.Status == "running" && len(p.ready[t.key]) < t.Size {
			p.ready[t.key] = append(p.ready[t.key], pooled{id: c.ID, imageID: c.ImageID})
			continue
		}
		if err := p.m.engine.Remove(ctx, c.ID); err != nil && !errors.Is(err, ErrNotFound) {
			p.m.log.Warn("remove a pooled sandbox of an earlier manager", "sandbox", shortID(c.ID), "err", err)
		}
	}
}

// match returns the template o (normalised) fits, or nil.
func (p *pool) match(o CreateOptions) *poolTemplate {
	if p == nil || o.PullMissing || len(o.Egress) > 0 {
		return nil
	}
	key := poolKey(o)
	for _, t := range p.templates {
		if t.key == key {
			return t
		}
	}
	return nil
}

// take hands out a ready sandbox of t made from imageID, or reports a
// miss. Ready sandboxes of another image (the tag moved) are dropped.
func (p *pool) take(ctx context.Context, t *poolTemplate, imageID string) (string, bool) {
	p.mu.Lock()
	var stale []string
	defer func() {
		for _, id := range stale {
			p.remove(ctx, id)
		}
	}()
	defer p.nudge()
	defer p.mu.Unlock()
	for len(p.ready[t.key]) > 0 {
		r := p.ready[t.key][0]
		p.ready[t.key] = p.ready[t.key][1:]
		if r.imageID != imageID {
			stale = append(stale, r.id)
			continue
		}
		p.hits[t.key]++
		return r.id, true
	}
	p.misses[t.key]++
	return "", false
}

// size is the number of ready and filling sandboxes (0 without a pool).
func (p *pool) size() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.totalLocked()
}

// forget drops a ready sandbox that died or was removed.
func (p *pool) forget(id string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, rs := range p.ready {
		for i, r := range rs {
			if r.id == id {
				p.ready[k] = append(rs[:i:i], rs[i+1:]...)
				p.nudge()
				return
			}
		}
	}
}

// giveBack returns a ready sandbox that was taken but not used (its
// adoption failed before it changed).
func (p *pool) giveBack(t *poolTemplate, r pooled) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready[t.key] = append([]pooled{r}, p.ready[t.key]...)
	p.hits[t.key]--
}

func (p *pool) nudge() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pool) remove(ctx context.Context, id string) {
	p.m.stats.drop(id)
	p.m.agents.drop(id)
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := p.m.engine.Remove(cctx, id); err != nil && !errors.Is(err, ErrNotFound) {
		p.m.log.Warn("remove a pooled sandbox", "sandbox", shortID(id), "err", err)
	}
}

// total is the number of ready and filling sandboxes; p.mu is held.
func (p *pool) totalLocked() int {
	n := 0
	for _, t := range p.templates {
		n += len(p.ready[t.key]) + p.filling[t.key]
	}
	return n
}

// run keeps the pool filled until ctx ends, then removes the ready
// sandboxes.
func (p *pool) run(ctx context.Context) {
	var fills sync.WaitGroup
	defer func() {
		fills.Wait()
		p.drain(ctx)
	}()
	slots := make(chan struct{}, poolFillers)
	failures := map[string]int{}
	var failMu sync.Mutex
	retryAt := map[string]time.Time{}
	for {
		next := time.Minute
		p.mu.Lock()
		for _, t := range p.templates {
			failMu.Lock()
			at := retryAt[t.key]
			failMu.Unlock()
			if wait := time.Until(at); wait > 0 {
				next = min(next, wait)
				continue
			}
			for len(p.ready[t.key])+p.filling[t.key] < t.Size && p.totalLocked() < p.max && p.m.roomForPool(p.totalLocked()) {
				select {
				case slots <- struct{}{}:
				default:
					goto full
				}
				p.filling[t.key]++
				fills.Add(1)
				go func(t *poolTemplate) {
					defer fills.Done()
					defer func() { <-slots }()
					r, err := p.fill(ctx, t)
					p.mu.Lock()
					p.filling[t.key]--
					if err == nil {
						p.ready[t.key] = append(p.ready[t.key], r)
						delete(p.lastErr, t.key)
					} else if ctx.Err() == nil {
						p.lastErr[t.key] = err.Error()
					}
					p.mu.Unlock()
					failMu.Lock()
					if err != nil && ctx.Err() == nil {
						failures[t.key]++
						retryAt[t.key] = time.Now().Add(min(time.Duration(failures[t.key])*time.Second, time.Minute))
						p.m.log.Warn("fill the pool", "image", t.Image, "err", err)
					} else if err == nil {
						failures[t.key] = 0
					}
					failMu.Unlock()
					p.nudge()
				}(t)
			}
		}
	full:
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-time.After(next):
		}
	}
}

// fill creates one ready sandbox of t.
func (p *pool) fill(ctx context.Context, t *poolTemplate) (pooled, error) {
	m := p.m
	img, err := m.ensureImage(ctx, t.opts.Image, false)
	if err != nil {
		return pooled{}, err
	}
	var b [6]byte
	rand.Read(b[:])
	agentVol, agentVersion, err := m.agentFor(ctx, t.opts)
	if err != nil {
		return pooled{}, err
	}
	cs := m.containerSpec(t.opts, img, "", "", agentVol, agentVersion)
	cs.Name = m.containerName("-pool-" + hex.EncodeToString(b[:]))
	delete(cs.Labels, labelName)
	delete(cs.Labels, labelSpec)
	delete(cs.Labels, labelExpiresAt)
	cs.Labels[labelPool] = t.key
	id, err := m.makeContainer(ctx, cs, t.opts, img, true)
	if err != nil {
		return pooled{}, err
	}
	if agentVol != "" {
		// Handed out with its channel open and a stats baseline.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if _, err := m.agents.client(cctx, id); err == nil {
			if s, err := m.agentSample(cctx, id); err == nil {
				m.stats.put(id, s, true)
			}
		}
		cancel()
	}
	return pooled{id: id, imageID: img.ID}, nil
}

// drain removes every ready sandbox (Close).
func (p *pool) drain(ctx context.Context) {
	p.mu.Lock()
	if p.abandon {
		p.mu.Unlock()
		return
	}
	var ids []string
	for k, rs := range p.ready {
		for _, r := range rs {
			ids = append(ids, r.id)
		}
		delete(p.ready, k)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p.remove(ctx, id)
		}()
	}
	wg.Wait()
}

// status reports every template's pool.
func (p *pool) status() []PoolStatus {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PoolStatus, 0, len(p.templates))
	for _, t := range p.templates {
		out = append(out, PoolStatus{
			Image: t.opts.Image, Ports: append([]string{}, t.opts.Ports...), Size: t.Size,
			Ready: len(p.ready[t.key]), Filling: p.filling[t.key],
			Hits: p.hits[t.key], Misses: p.misses[t.key], LastError: p.lastErr[t.key],
		})
	}
	return out
}

// Pool reports the warm pool of each template (WithPool); nil without one.
func (m *Manager) Pool() []PoolStatus { return m.pool.status() }

// adopt makes the ready sandbox r of template t the sandbox o asks for,
// named name. It returns errNameTaken (r is given back unchanged) when the
// name is taken; any other failure removes r and is reported as errPoolMiss
// wrapped, so that Create falls back to a cold create.
func (m *Manager) adopt(ctx context.Context, t *poolTemplate, r pooled, o CreateOptions, name, spec string) (_ *CreateResult, err error) {
	if err := m.engine.Rename(ctx, r.id, m.containerName(name)); err != nil {
		if errors.Is(err, ErrConflict) {
			m.pool.giveBack(t, r)
			return nil, errNameTaken
		}
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: %v", errPoolMiss, err)
		}
		m.pool.remove(ctx, r.id)
		return nil, fmt.Errorf("%w: %v", errPoolMiss, err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w: %v", errPoolMiss, m.discard(ctx, r.id, err))
		}
	}()
	if o.Resources != t.opts.Resources {
		if err := m.engine.Update(ctx, r.id, engine.Resources{
			MemoryBytes: o.Resources.MemoryMB << 20,
			NanoCPUs:    int64(o.Resources.CPUs*1e9 + 0.5),
		}); err != nil {
			return nil, fmt.Errorf("update limits: %w", err)
		}
	}
	rec := sandboxRecord{Name: name, Spec: spec, Labels: o.Labels, TTL: o.TTL, Resources: o.Resources, Private: o.Private}
	if err := m.records.put(r.id, rec); err != nil {
		return nil, err
	}
	m.index.add(r.id, name)
	if err := m.expiry.arm(r.id, o.TTL); err != nil {
		return nil, err
	}
	c, err := m.engine.Inspect(ctx, r.id)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	if !c.State.Running || c.State.Paused {
		return nil, fmt.Errorf("the pooled sandbox is %s", c.State.Status)
	}
	sb := m.sandboxOf(c)
	m.publish(Event{Type: EventCreated, SandboxID: sb.ID, Name: sb.Name})
	if c.Labels[labelAgent] != "" && m.cfg.agent {
		m.agents.warm(c.ID) // opened at fill time already, unless it broke
	}
	return &CreateResult{Sandbox: sb, Created: true}, nil
}

// errPoolMiss marks a failed adoption after which Create makes a container
// instead.
var errPoolMiss = errors.New("pooled sandbox unusable")
