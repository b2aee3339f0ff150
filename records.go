package opensbx

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
)

// Sandbox records
//
// A container's labels say everything about a sandbox a restarted Manager
// needs, except for sandboxes taken from the warm pool: labels cannot
// change after a container is created, so what Create applies when it
// adopts a pooled sandbox (its name, the caller's labels, TTL, limits,
// privacy, settings hash) is kept here, in the state store, and read over
// the labels. The name also goes into the container's name (a rename), so
// a Manager without a state directory still knows it after a restart.

// bucketSandboxes holds one record per adopted sandbox, by container id.
const bucketSandboxes = "sandboxes"

// sandboxRecord is what Create applied to an adopted pooled sandbox.
type sandboxRecord struct {
	Name      string            `json:"name"`
	Spec      string            `json:"spec"`
	Labels    map[string]string `json:"labels,omitempty"`
	TTL       time.Duration     `json:"ttl"`
	Resources Resources         `json:"resources"`
	Private   bool              `json:"private,omitempty"`
}

// recordSet caches the records of the state store.
type recordSet struct {
	m  *Manager
	mu sync.Mutex
	by map[string]sandboxRecord
}

// load reads every record of the store.
func (r *recordSet) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.by = map[string]sandboxRecord{}
	return r.m.store.ForEach(bucketSandboxes, func(id string, v []byte) error {
		var rec sandboxRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("sandbox record %s: %w", shortID(id), err)
		}
		r.by[id] = rec
		return nil
	})
}

func (r *recordSet) get(id string) (sandboxRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.by[id]
	return rec, ok
}

func (r *recordSet) put(id string, rec sandboxRecord) error {
	b, _ := json.Marshal(rec)
	if err := r.m.store.Put(bucketSandboxes, id, b); err != nil {
		return fmt.Errorf("save sandbox record: %w", err)
	}
	r.mu.Lock()
	r.by[id] = rec
	r.mu.Unlock()
	return nil
}

func (r *recordSet) forget(id string) error {
	r.mu.Lock()
	_, ok := r.by[id]
	delete(r.by, id)
	r.mu.Unlock()
	if !ok {
		return nil
	}
	if err := r.m.store.Delete(bucketSandboxes, id); err != nil {
		return fmt.Errorf("drop sandbox record: %w", err)
	}
	return nil
}

// prune drops the records of containers not in alive.
func (r *recordSet) prune(alive map[string]bool) error {
	r.mu.Lock()
	var gone []string
	for id := range r.by {
		if !alive[id] {
			gone = append(gone, id)
		}
	}
	r.mu.Unlock()
	for _, id := range gone {
		if err := r.forget(id); err != nil {
			return err
		}
	}
	return nil
}

// nameOf is sandbox c's name: its record's, its label's, or the one in
// its container name.
func (m *Manager) nameOf(c engine.Container) string {
	if rec, ok := m.records.get(c.ID); ok {
		return rec.Name
	}
	if n := c.Labels[labelName]; n != "" {
		return n
	}
	if n, ok := strings.CutPrefix(c.Name, m.containerName("")); ok && validName(n) {
		return n
	}
	return ""
}

// ttlOf is sandbox c's TTL, or 0.
func (m *Manager) ttlOf(c engine.Container) time.Duration {
	if rec, ok := m.records.get(c.ID); ok {
		return rec.TTL
	}
	return ttlOfLabels(c.Labels)
}

// specOf is the settings hash of sandbox c.
func (m *Manager) specOf(c engine.Container) string {
	if rec, ok := m.records.get(c.ID); ok {
		return rec.Spec
	}
	return c.Labels[labelSpec]
}

// ttlOfLabels is the TTL a container's labels record, or 0.
func ttlOfLabels(labels map[string]string) time.Duration {
	ms, err := strconv.ParseInt(labels[labelTTL], 10, 64)
	if err != nil || ms <= 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}
