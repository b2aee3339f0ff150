package httpapi

import (
	"context"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync"

	"github.com/opensbx/opensbx"
)

// labelKey marks a sandbox with a tag of the API key that created it (a
// hash prefix, never the key), for WithMaxSandboxesPerKey.
const labelKey = "opensbx.http.api-key"

// WithMaxSandboxesPerKey bounds the sandboxes each API key may have at once
// (in any state): a create beyond it answers 429 RATE_LIMITED. It needs API
// keys (WithAPIKeys); n <= 0 means no bound. Sandboxes a key creates carry
// the label "opensbx.http.api-key" with a tag of the key's hash (never the
// key itself); every key may still use every sandbox.
func WithMaxSandboxesPerKey(n int) Option {
	return func(s *server) {
		if n > 0 {
			s.perKey = n
		}
	}
}

// keyQuota serialises the creates of each key, so that concurrent creates
// cannot go over the bound together.
type keyQuota struct {
	mu    sync.Mutex
	locks map[int]*sync.Mutex
}

func (q *keyQuota) lock(i int) func() {
	q.mu.Lock()
	if q.locks == nil {
		q.locks = map[int]*sync.Mutex{}
	}
	l := q.locks[i]
	if l == nil {
		l = &sync.Mutex{}
		q.locks[i] = l
	}
	q.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// keyTag is the label value of key i: a prefix of its hash.
func (s *server) keyTag(i int) string {
	return hex.EncodeToString(s.keys[i][:8])
}

// createWithQuota is Manager.Create under the per-key bound: opts gets the
// key's label, and a create beyond the bound is 429 (a retried create of an
// existing name passes, being no new sandbox).
func (s *server) createWithQuota(ctx context.Context, opts opensbx.CreateOptions) (*opensbx.CreateResult, error) {
	i := keyIndex(ctx)
	if s.perKey == 0 || i < 0 {
		return s.m.Create(ctx, opts)
	}
	tag := s.keyTag(i)
	labels := map[string]string{}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	labels[labelKey] = tag
	opts.Labels = labels
	unlock := s.quota.lock(i)
	defer unlock()
	sbs, err := s.m.List(ctx)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, sb := range sbs {
		if sb.Labels[labelKey] == tag {
			n++
			if opts.Name != "" && sb.Name == opts.Name {
				return s.m.Create(ctx, opts) // a retry, or a conflict: no new sandbox
			}
		}
	}
	if n >= s.perKey {
		return nil, &apiError{status: http.StatusTooManyRequests, code: codeRateLimited,
			message: "this API key has " + strconv.Itoa(n) + " sandboxes, its maximum; delete one first"}
	}
	return s.m.Create(ctx, opts)
}
