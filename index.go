package opensbx

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// How a caller's sandbox id is resolved
//
// Every method taking a sandbox id accepts the full id, a unique prefix of
// it of at least four characters, or the sandbox's name, and resolves it
// among this Manager's own sandboxes only: the index below knows them by id
// and name, from the engine's list of containers carrying the namespace's
// labels. Only the full id it finds is ever sent to the engine, so nothing
// a caller writes (a "../distribution/x", a foreign container's prefix)
// reaches an Engine API path. A miss refreshes the index once (another
// Manager on the same namespace may have made the sandbox) before it is
// ErrNotFound; a prefix matching several sandboxes is ErrInvalid.

// sandboxIndex knows this Manager's sandboxes by id and name.
type sandboxIndex struct {
	m *Manager

	refreshMu sync.Mutex // one refresh at a time

	mu     sync.Mutex
	byID   map[string]indexEntry
	byName map[string]string // name -> id
	gen    uint64            // counts refreshes
}

// indexEntry is what the index keeps of one sandbox.
type indexEntry struct {
	id, name string
	// paused is the last pause state the Manager saw (its own Pause and
	// Resume, the engine's events, the last list): a paused sandbox's
	// agent is frozen and must not be called.
	paused bool
}

func newSandboxIndex(m *Manager) *sandboxIndex {
	return &sandboxIndex{m: m, byID: map[string]indexEntry{}, byName: map[string]string{}}
}

// refresh rebuilds the index from the engine's list of owned containers
// and returns the sandboxes (not the pool's ready ones).
func (x *sandboxIndex) refresh(ctx context.Context) ([]engine.Container, error) {
	x.refreshMu.Lock()
	defer x.refreshMu.Unlock()
	sbs, _, err := x.refreshLocked(ctx)
	return sbs, err
}

// refreshLocked lists the owned containers, makes the sandboxes among them
// the index and returns them, and the pool's ready ones apart.
func (x *sandboxIndex) refreshLocked(ctx context.Context) (sandboxes, pooled []engine.Container, err error) {
	cs, err := x.m.engine.List(ctx, x.m.ownedLabels())
	if err != nil {
		return nil, nil, err
	}
	for _, c := range cs {
		switch {
		case !x.m.owns(c.Labels) || !engine.IsFullID(c.ID):
		case x.m.isPooled(c):
			pooled = append(pooled, c)
		case x.m.isInternalName(c.Name):
			// The Manager's own helpers (an agent volume's fill container).
		default:
			sandboxes = append(sandboxes, c)
		}
	}
	x.replace(sandboxes)
	return sandboxes, pooled, nil
}

// replace makes cs the whole index.
func (x *sandboxIndex) replace(cs []engine.Container) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.byID = make(map[string]indexEntry, len(cs))
	x.byName = make(map[string]string, len(cs))
	for _, c := range cs {
		x.putLocked(c.ID, x.m.nameOf(c))
		if stateOf(c.State) == StatePaused {
			e := x.byID[c.ID]
			e.paused = true
			x.byID[c.ID] = e
		}
	}
	x.gen++
}

// setPaused records the pause state of sandbox id.
func (x *sandboxIndex) setPaused(id string, paused bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.byID[id]; ok {
		e.paused = paused
		x.byID[id] = e
	}
}

// isPaused reports the last pause state seen of sandbox id; unknown ids
// count as paused (so callers ask the engine).
func (x *sandboxIndex) isPaused(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.byID[id]
	return !ok || e.paused
}

// pausedKnown reports whether sandbox id is known and was last seen
// paused; unlike isPaused, an id the index does not hold (a pool's ready
// sandbox, invisible until adopted) counts as not paused.
func (x *sandboxIndex) pausedKnown(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.byID[id]
	return ok && e.paused
}

func (x *sandboxIndex) putLocked(id, name string) {
	x.byID[id] = indexEntry{id: id, name: name}
	if name != "" {
		x.byName[name] = id
	}
}

// size is the number of sandboxes known.
func (x *sandboxIndex) size() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.byID)
}

// add records a sandbox this Manager just made.
func (x *sandboxIndex) add(id, name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.putLocked(id, name)
}

// drop forgets a sandbox that is gone.
func (x *sandboxIndex) drop(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.byID[id]; ok {
		delete(x.byID, id)
		if x.byName[e.name] == id {
			delete(x.byName, e.name)
		}
	}
}

// byNameID returns the id of the sandbox called name, if known.
func (x *sandboxIndex) byNameID(name string) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	id, ok := x.byName[name]
	return id, ok
}

// nameOf returns the name of sandbox id, or "".
func (x *sandboxIndex) nameOf(id string) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.byID[id].name
}

// errMiss reports a reference the index does not know (yet).
var errMiss = errors.New("not in the index")

// lookup resolves ref from the index: a full id, then a name, then a
// unique prefix. It returns errMiss when nothing matches.
func (x *sandboxIndex) lookup(ref string) (string, uint64, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.byID[ref]; ok {
		return ref, x.gen, nil
	}
	if id, ok := x.byName[ref]; ok {
		return id, x.gen, nil
	}
	if !isHexID(ref) || len(ref) == 64 {
		return "", x.gen, errMiss
	}
	var matches []string
	for id := range x.byID {
		if strings.HasPrefix(id, ref) {
			matches = append(matches, id)
		}
	}
	switch len(matches) {
	case 0:
		return "", x.gen, errMiss
	case 1:
		return matches[0], x.gen, nil
	}
	sort.Strings(matches)
	return "", x.gen, sbxerr.Invalid("sandbox id prefix %q is ambiguous: it matches %d sandboxes; give more characters", ref, len(matches))
}

// resolve turns a caller's sandbox reference into the full id of one of
// this Manager's sandboxes, or fails with ErrNotFound (ErrInvalid for an
// empty or ambiguous one) without asking the engine about anything else.
func (x *sandboxIndex) resolve(ctx context.Context, ref string) (string, error) {
	switch {
	case ref == "":
		return "", sbxerr.Invalid("sandbox id is empty")
	case !isHexID(ref) && !validName(ref):
		return "", sbxerr.NotFound("sandbox %q not found", ref)
	}
	id, gen, err := x.lookup(ref)
	if !errors.Is(err, errMiss) {
		return id, err
	}
	// Not known: another Manager of the namespace may have made it. Refresh
	// once, unless a refresh finished since the lookup.
	x.refreshMu.Lock()
	x.mu.Lock()
	stale := x.gen == gen
	x.mu.Unlock()
	if stale {
		if _, _, err := x.refreshLocked(ctx); err != nil {
			x.refreshMu.Unlock()
			return "", err
		}
	}
	x.refreshMu.Unlock()
	id, _, err = x.lookup(ref)
	if errors.Is(err, errMiss) {
		return "", sbxerr.NotFound("sandbox %q not found", ref)
	}
	return id, err
}

// raced explains an engine error that carries no kind, from a call on
// sandbox id made after the sandbox was looked up: when the sandbox is gone
// meanwhile (a racing Delete) it is ErrNotFound, when it stopped or is
// being removed ErrConflict, and otherwise the error as it is. The engine
// answers such races with plain server errors ("unable to upgrade to tcp",
// "error processing tar file"), which would otherwise be a 500.
func (m *Manager) raced(ctx context.Context, id string, err error) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	for _, kind := range []error{ErrNotFound, ErrConflict, ErrInvalid, ErrTooLarge, ErrUnavailable, ErrUnsupported, ErrClosed, ErrRateLimited} {
		if errors.Is(err, kind) {
			return err
		}
	}
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	c, ierr := m.engine.Inspect(cctx, id)
	switch {
	case errors.Is(ierr, ErrNotFound):
		m.index.drop(id)
		return sbxerr.Wrap(ErrNotFound, fmt.Errorf("sandbox %s was deleted meanwhile: %w", shortID(id), err))
	case ierr == nil && (stateOf(c.State) != StateRunning):
		return sbxerr.Wrap(ErrConflict, fmt.Errorf("sandbox %s is %s: %w", shortID(id), stateOf(c.State), err))
	}
	return err
}

// resolveName is resolve for a sandbox name only (no id or prefix).
func (x *sandboxIndex) resolveName(ctx context.Context, name string) (string, error) {
	if id, ok := x.byNameID(name); ok {
		return id, nil
	}
	if _, err := x.refresh(ctx); err != nil {
		return "", err
	}
	if id, ok := x.byNameID(name); ok {
		return id, nil
	}
	return "", sbxerr.NotFound("sandbox %q not found", name)
}

// inspectName is inspect for a sandbox name only.
func (m *Manager) inspectName(ctx context.Context, name string) (engine.Container, error) {
	id, err := m.index.resolveName(ctx, name)
	if err != nil {
		return engine.Container{}, err
	}
	return m.inspectID(ctx, id, name)
}

// inspect returns the container of sandbox ref (see resolve). A container
// that is gone, or whose labels no longer say it is this Manager's, is
// ErrNotFound.
func (m *Manager) inspect(ctx context.Context, ref string) (engine.Container, error) {
	id, err := m.index.resolve(ctx, ref)
	if err != nil {
		return engine.Container{}, err
	}
	return m.inspectID(ctx, id, ref)
}

// inspectID inspects the container of a resolved sandbox id; ref is what
// the caller gave, for messages.
func (m *Manager) inspectID(ctx context.Context, id, ref string) (engine.Container, error) {
	c, err := m.engine.Inspect(ctx, id)
	if err == nil && !m.owns(c.Labels) {
		err = sbxerr.NotFound("container %s is not this manager's", shortID(id))
	}
	if errors.Is(err, ErrNotFound) {
		m.index.drop(id)
		return engine.Container{}, sbxerr.NotFound("sandbox %q not found", ref)
	}
	if err != nil {
		return engine.Container{}, fmt.Errorf("inspect sandbox %s: %w", shortID(id), err)
	}
	return c, nil
}
