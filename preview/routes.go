package preview

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opensbx/opensbx"
)

// route is what the proxy knows about one sandbox: enough to pick its
// upstream address and to answer for it.
type route struct {
	id      string
	name    string // as the sandbox has it (maybe with upper case)
	private bool
	state   opensbx.State
	ports   []string          // "8080/tcp", main port first
	portMap map[string]string // container port -> host port, when running
	hostIP  string            // the address to dial host ports on
	agent   bool              // dial through the agent (Manager.DialPort), not hostIP
}

func routeOf(sb *opensbx.Sandbox) *route {
	return &route{
		id:      sb.ID,
		name:    sb.Name,
		private: sb.Private,
		state:   sb.State,
		ports:   sb.Ports,
		portMap: sb.PortMap,
		hostIP:  dialIP(sb.HostIP),
		agent:   sb.PortsVia == opensbx.NetworkViaAgent,
	}
}

// dialIP turns the address ports are published on into one to connect
// to: an unspecified address (all interfaces) is reached on loopback.
func dialIP(hostIP string) string {
	ip := net.ParseIP(hostIP)
	switch {
	case ip == nil:
		return "127.0.0.1"
	case ip.IsUnspecified() && ip.To4() == nil:
		return "::1"
	case ip.IsUnspecified():
		return "127.0.0.1"
	}
	return ip.String()
}

// tcpPort picks the container port a request goes to: the first TCP port
// for the main port (port 0), else "<port>/tcp" when the sandbox
// publishes it. It returns "" when there is none.
func (r *route) tcpPort(port int) string {
	for _, p := range r.ports {
		num, proto, _ := strings.Cut(p, "/")
		if proto != "tcp" {
			continue
		}
		if port == 0 || num == strconv.Itoa(port) {
			return p
		}
	}
	return ""
}

// errAmbiguous: several sandboxes have names that differ only in case and
// none of them is the lower-case one.
var errAmbiguous = errors.New("ambiguous sandbox name")

// errNoSandbox: no sandbox has the name.
var errNoSandbox = errors.New("no such sandbox")

// routeTable caches every sandbox's route, keyed by lower-case name, as
// one snapshot from Manager.List. Any event of the Manager drops the whole
// snapshot (events may carry only the sandbox id, and a created sandbox
// must become reachable at once), and a snapshot older than ttl is
// fetched again. Concurrent lookups of a dropped snapshot share one List.
type routeTable struct {
	m   *opensbx.Manager
	ttl time.Duration
	now func() time.Time

	mu       sync.Mutex
	gen      uint64 // counts invalidations
	valid    bool
	fetched  time.Time
	byName   map[string][]*route
	inflight *refresh
}

// refresh is one List in progress; done is closed when it has ended.
type refresh struct {
	gen    uint64 // the table's generation when it started
	done   chan struct{}
	byName map[string][]*route
	err    error
}

// listTimeout bounds one List of the table, detached from the request that
// started it so that a client going away does not fail the others waiting.
const listTimeout = 15 * time.Second

// invalidate drops the snapshot; a List already running is not stored.
func (t *routeTable) invalidate() {
	t.mu.Lock()
	t.gen++
	t.valid = false
	t.byName = nil
	t.mu.Unlock()
}

// lookup returns the route of the sandbox called name (lower case). A
// name differing only in case from one sandbox's name finds it; the
// sandbox whose name is exactly name wins over others. It returns
// errNoSandbox, errAmbiguous, ctx's error or the Manager's.
func (t *routeTable) lookup(ctx context.Context, name string) (*route, error) {
	t.mu.Lock()
	if t.valid && t.now().Sub(t.fetched) < t.ttl {
		rs := t.byName[name]
		t.mu.Unlock()
		return pick(rs, name)
	}
	f := t.inflight
	if f == nil || f.gen != t.gen {
		// None running, or one that started before the last event and
		// may miss its change: start one.
		f = &refresh{gen: t.gen, done: make(chan struct{})}
		t.inflight = f
		t.mu.Unlock()
		t.run(ctx, f)
	} else {
		t.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	return pick(f.byName[name], name)
}

// run does the List of f and stores its result if no event came since f
// started.
func (t *routeTable) run(ctx context.Context, f *refresh) {
	defer close(f.done)
	started := t.now()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listTimeout)
	defer cancel()
	sbs, err := t.m.List(lctx)
	if err != nil {
		f.err = err
	} else {
		f.byName = make(map[string][]*route, len(sbs))
		for _, sb := range sbs {
			k := strings.ToLower(sb.Name)
			f.byName[k] = append(f.byName[k], routeOf(sb))
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inflight == f {
		t.inflight = nil
	}
	if err == nil && t.gen == f.gen {
		t.byName, t.fetched, t.valid = f.byName, started, true
	}
}

// fresh looks one sandbox up again by id, bypassing the snapshot, which
// it drops: the caller found the snapshot wrong.
func (t *routeTable) fresh(ctx context.Context, id string) (*route, error) {
	t.invalidate()
	sb, err := t.m.Get(ctx, id)
	if errors.Is(err, opensbx.ErrNotFound) {
		return nil, errNoSandbox
	}
	if err != nil {
		return nil, err
	}
	return routeOf(sb), nil
}

func pick(rs []*route, name string) (*route, error) {
	switch len(rs) {
	case 0:
		return nil, errNoSandbox
	case 1:
		return rs[0], nil
	}
	for _, r := range rs {
		if r.name == name {
			return r, nil
		}
	}
	return nil, errAmbiguous
}
