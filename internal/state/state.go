// Package state keeps the Manager's durable records (sandbox deadlines,
// finished commands) as values in named buckets.
//
// Two stores implement Store: Memory, for a Manager without a state
// directory, and Bolt, an embedded bbolt database file for one with a state
// directory. bbolt is the store containerd uses for its metadata: a single
// file, ACID transactions with fsync on commit, no server and no cgo, and a
// file lock so two processes cannot open one state directory at once.
package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Store is a set of buckets of key/value records. Implementations are safe
// for concurrent use. Values passed to ForEach's callback are only valid
// during the call.
type Store interface {
	// Put stores value under key in bucket, replacing any earlier value.
	Put(bucket, key string, value []byte) error
	// Get returns the value under key; ok is false when there is none.
	Get(bucket, key string) (value []byte, ok bool, err error)
	// Delete removes key from bucket; a missing key is not an error.
	Delete(bucket, key string) error
	// ForEach calls fn for every record of bucket in key order, stopping at
	// the first error fn returns.
	ForEach(bucket string, fn func(key string, value []byte) error) error
	// Close releases the store.
	Close() error
}

// FileName is the name of the database file inside a state directory.
const FileName = "opensbx.db"

// ErrCorrupt reports a state file that cannot be read as a database.
var ErrCorrupt = errors.New("state store is corrupt or unreadable")

// OpenBolt opens (creating if needed) the bbolt database in dir. It fails,
// never panics, when the file is corrupt or locked by another process.
func OpenBolt(dir string) (_ Store, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("state file %s is locked by another process", path)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	// Walk every page once so damage shows up here rather than later.
	if err := db.View(func(tx *bolt.Tx) error {
		var first error
		for e := range tx.Check() { // drain: Check's goroutine sends every error
			if first == nil {
				first = e
			}
		}
		return first
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return &boltStore{db: db}, nil
}

type boltStore struct{ db *bolt.DB }

func (s *boltStore) Put(bucket, key string, value []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), value)
	})
}

func (s *boltStore) Get(bucket, key string) (value []byte, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			value, ok = append([]byte(nil), v...), true
		}
		return nil
	})
	return value, ok, err
}

func (s *boltStore) Delete(bucket, key string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
}

func (s *boltStore) ForEach(bucket string, fn func(key string, value []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
	})
}

func (s *boltStore) Close() error { return s.db.Close() }

// Memory is a Store kept in memory only.
type Memory struct {
	mu      sync.Mutex
	buckets map[string]map[string][]byte
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{buckets: map[string]map[string][]byte{}} }

// Put implements Store.
func (m *Memory) Put(bucket, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.buckets[bucket]
	if b == nil {
		b = map[string][]byte{}
		m.buckets[bucket] = b
	}
	b[key] = append([]byte(nil), value...)
	return nil
}

// Get implements Store.
func (m *Memory) Get(bucket, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.buckets[bucket][key]
	return append([]byte(nil), v...), ok, nil
}

// Delete implements Store.
func (m *Memory) Delete(bucket, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.buckets[bucket], key)
	return nil
}

// ForEach implements Store.
func (m *Memory) ForEach(bucket string, fn func(key string, value []byte) error) error {
	m.mu.Lock()
	b := m.buckets[bucket]
	keys := make([]string, 0, len(b))
	vals := make(map[string][]byte, len(b))
	for k, v := range b {
		keys = append(keys, k)
		vals[k] = v
	}
	m.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(k, vals[k]); err != nil {
			return err
		}
	}
	return nil
}

// Close implements Store.
func (m *Memory) Close() error { return nil }
