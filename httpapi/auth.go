package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// hashKey hashes an API key so that every comparison is between equal
// lengths: subtle.ConstantTimeCompare returns early on a length mismatch.
func hashKey(k string) [32]byte { return sha256.Sum256([]byte(k)) }

// authorized reports whether r carries one of the configured keys, and
// which (its index; -1 when no keys are configured). Every key is compared
// (no early exit), each in constant time.
func (s *server) authorized(r *http.Request) (int, bool) {
	if len(s.keys) == 0 {
		return -1, true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return -1, false
	}
	got := hashKey(strings.TrimSpace(token))
	match, which := 0, 0
	for i := range s.keys {
		eq := subtle.ConstantTimeCompare(got[:], s.keys[i][:])
		match |= eq
		which = subtle.ConstantTimeSelect(eq, i, which)
	}
	return which, match == 1
}

// keyIndexKey keys the index of the request's API key in its context.
type keyIndexKey struct{}

// keyIndex returns the index of the API key r was authorised with, or -1.
func keyIndex(ctx context.Context) int {
	if i, ok := ctx.Value(keyIndexKey{}).(int); ok {
		return i
	}
	return -1
}

type ctxKey struct{}

// requestID returns the id the middleware gave the request.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// wrapRoute is wrap for one route of the table; the statuses it answers
// are reported to the observer, if any (tests).
func (s *server) wrapRoute(rt route) http.Handler {
	return s.middleware(rt.handler(s), rt.open, rt.method+" "+rt.path)
}

// wrap is the middleware of every route: a request id (the client's
// X-Request-Id when it is sane, else a new one, echoed in the response),
// Bearer auth unless open, panic recovery and one log line per request.
func (s *server) wrap(h http.Handler, open bool) http.Handler {
	return s.middleware(h, open, "")
}

func (s *server) middleware(h http.Handler, open bool, route string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !requestIDRE.MatchString(id) {
			id = newRequestID()
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, id))
		w.Header().Set("X-Request-Id", id)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(r.Context(), "panic in handler", "request_id", id, "panic", p)
				if rec.status == 0 {
					s.writeError(rec, r, http.StatusInternalServerError, codeInternal, "internal error (request id "+id+")")
				}
			}
			s.log.InfoContext(r.Context(), "request", "request_id", id, "method", r.Method, "path", r.URL.Path,
				"status", rec.statusOr200(), "bytes", rec.bytes, "duration", time.Since(start))
			if s.observe != nil && route != "" {
				s.observe(route, rec.statusOr200())
			}
		}()
		if !open && !s.hostAllowed(r) {
			s.writeError(rec, r, http.StatusForbidden, codeForbidden,
				fmt.Sprintf("Host %q is not allowed: this server listens on a loopback address and accepts only loopback host names (DNS-rebinding protection)", r.Host))
			return
		}
		if !open {
			which, ok := s.authorized(r)
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="opensbx"`)
				s.writeError(rec, r, http.StatusUnauthorized, codeUnauthorized, "missing or wrong API key: send Authorization: Bearer <key>")
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), keyIndexKey{}, which))
		}
		h.ServeHTTP(rec, r)
	})
}

// statusRecorder remembers the status and size of a response. Unwrap lets
// http.ResponseController reach the real writer (flushes, deadlines).
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusRecorder) statusOr200() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
