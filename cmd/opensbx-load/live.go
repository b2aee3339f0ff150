package main

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// sandbox is one sandbox this run created (or tried to).
type sandbox struct {
	name string
	id   string // "" until its create answered 201

	// deleting is set before its DELETE is sent: a 404 or 409 of a
	// request on it that answers afterwards is the race the mix provokes.
	deleting atomic.Bool
}

// sbState is where a sandbox is in its life, for the cleanup.
type sbState int

const (
	stUnknown sbState = iota // create sent, not answered 201: it may exist
	stLive                   // created; not deleted (yet)
	stDeleted                // its DELETE answered 204
)

// liveSet is the run's sandboxes: the live ones clients pick from, the
// creates in flight, and every name ever sent for the cleanup.
type liveSet struct {
	max, min int
	prefix   string

	mu      sync.Mutex
	live    []*sandbox
	pending int // creates in flight
	seq     int
	all     map[string]*entry
	maxLive int
}

type entry struct {
	sb    *sandbox
	state sbState
}

func newLiveSet(min, max int, prefix string) *liveSet {
	return &liveSet{min: min, max: max, prefix: prefix, all: map[string]*entry{}}
}

// reserveCreate returns a new sandbox to create when live and pending
// creates stay within limit (and max), else nil. The caller reports with
// created or createFailed.
func (s *liveSet) reserveCreate(limit int) *sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.live)+s.pending >= min(limit, s.max) {
		return nil
	}
	s.pending++
	s.seq++
	sb := &sandbox{name: s.prefix + strconv.Itoa(s.seq)}
	s.all[sb.name] = &entry{sb: sb}
	return sb
}

// created makes sb live with its id.
func (s *liveSet) created(sb *sandbox, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb.id = id
	s.pending--
	s.all[sb.name].state = stLive
	s.live = append(s.live, sb)
	s.maxLive = max(s.maxLive, len(s.live))
}

// createFailed ends a reservation without a 201; the sandbox may still
// exist (a timeout, a 5xx), so the cleanup asks for it by name.
func (s *liveSet) createFailed(*sandbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending--
}

// pick returns a random live sandbox, nil when there is none.
func (s *liveSet) pick(r *rand.Rand) *sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.live) == 0 {
		return nil
	}
	return s.live[r.IntN(len(s.live))]
}

// takeForDelete removes a random live sandbox from the set and marks it
// deleting, when more than min are live; else nil.
func (s *liveSet) takeForDelete(r *rand.Rand) *sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.live) <= s.min {
		return nil
	}
	i := r.IntN(len(s.live))
	sb := s.live[i]
	s.live[i] = s.live[len(s.live)-1]
	s.live = s.live[:len(s.live)-1]
	sb.deleting.Store(true)
	return sb
}

// deleted records a 204 for sb.
func (s *liveSet) deleted(sb *sandbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all[sb.name].state = stDeleted
}

// counts returns the live sandboxes now and at most.
func (s *liveSet) counts() (live, maxLive int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live), s.maxLive
}

// remaining returns, sorted by name, every sandbox not known deleted, and
// marks them all deleting (nothing picks them any more).
func (s *liveSet) remaining() []*sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live = nil
	var out []*sandbox
	for _, e := range s.all {
		if e.state != stDeleted {
			e.sb.deleting.Store(true)
			out = append(out, e.sb)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// tally returns how many sandboxes were created (201) and deleted (204).
func (s *liveSet) tally() (created, deleted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.all {
		if e.sb.id != "" {
			created++
		}
		if e.state == stDeleted {
			deleted++
		}
	}
	return created, deleted
}
