// Package httpapi serves the Opensbx HTTP API v1 (docs/http.md) on top of an
// opensbx.Manager, using only net/http.
//
// Register adds every route under a prefix (default "/v1") to a caller's
// *http.ServeMux, next to the caller's own routes; New returns a standalone
// handler. Errors are JSON {"code","message"}; unknown routes under the prefix
// answer 404 NOT_FOUND and a wrong method on a known path 405
// METHOD_NOT_ALLOWED with an Allow header. Streams (?wait=true,
// ?stream=true) are application/x-ndjson, flushed per line, and end when the
// client goes away.
//
// The package never stops, deletes or closes anything on its own: the
// Manager belongs to the caller, who closes it after the HTTP server has
// shut down.
package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/opensbx/opensbx"
)

// DefaultPrefix is the path prefix of every route unless WithPrefix says
// otherwise.
const DefaultPrefix = "/v1"

// DefaultMaxBodyBytes is the largest JSON request body accepted unless
// WithMaxBodyBytes says otherwise. File uploads are limited by the
// Manager's FileSizeLimit instead.
const DefaultMaxBodyBytes = 1 << 20

// Option configures Register and New.
type Option func(*server)

// WithPrefix mounts the API under prefix instead of "/v1" ("" or "/" mounts
// it at the root). A trailing slash is ignored.
func WithPrefix(prefix string) Option {
	return func(s *server) { s.prefix = strings.TrimRight(prefix, "/") }
}

// WithAPIKeys requires "Authorization: Bearer <key>" with one of keys on
// every route except GET {prefix}/health. Empty keys are ignored; with no
// key left, the API is open. Keys are compared in constant time and never
// logged.
func WithAPIKeys(keys ...string) Option {
	return func(s *server) {
		for _, k := range keys {
			if k = strings.TrimSpace(k); k != "" {
				s.keys = append(s.keys, hashKey(k))
			}
		}
	}
}

// WithMaxBodyBytes limits JSON request bodies to n bytes (default 1 MiB);
// larger bodies get 413 PAYLOAD_TOO_LARGE. It does not limit file uploads
// or stdin, which are bounded by the Manager's FileSizeLimit. n <= 0 keeps
// the default.
func WithMaxBodyBytes(n int64) Option {
	return func(s *server) {
		if n > 0 {
			s.maxBody = n
		}
	}
}

// WithLogger logs one line per request (method, path, status, duration,
// request id) and every internal error to l. Nil discards logs. Request
// headers, bodies and API keys are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(s *server) {
		if l != nil {
			s.log = l
		}
	}
}

// WithBaseDomain makes sandboxes with a published port carry a "url":
// "http://<name>.<domain>" for a domain like "sbx.example.com", or
// "<scheme>://<name>.<host>" when domain starts with "http://" or
// "https://". Empty (the default) omits "url".
func WithBaseDomain(domain string) Option {
	return func(s *server) { s.baseDomain = strings.TrimRight(strings.TrimSpace(domain), "./") }
}

// server holds the dependencies every handler shares.
type server struct {
	m          *opensbx.Manager
	prefix     string
	keys       [][32]byte
	maxBody    int64
	log        *slog.Logger
	baseDomain string
	// allowedHosts are extra Host names the MCP endpoint accepts on a
	// loopback listener (WithAllowedHosts).
	allowedHosts []string
	openapi      []byte // the OpenAPI document with servers set to prefix
	// routes holds the API's patterns (and redirect guards) for probing
	// which methods a path allows; patterns are the route patterns.
	routes   *http.ServeMux
	patterns map[string]bool
	// observe, when set (tests), is told the status of every answer of a
	// route, by "METHOD /path" as in the route table.
	observe func(route string, status int)
	// preview, when set, gives "url" and private previews (WithPreview).
	preview Preview
	// perKey bounds the sandboxes of each API key (WithMaxSandboxesPerKey).
	perKey int
	quota  keyQuota
}

func newServer(m *opensbx.Manager, opts []Option) *server {
	s := &server{
		m:       m,
		prefix:  DefaultPrefix,
		maxBody: DefaultMaxBodyBytes,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, opt := range opts {
		opt(s)
	}
	s.openapi = openAPIDocument(s.prefix)
	return s
}

// Register adds every route of the API under the prefix to mux, plus a
// catch-all "{prefix}/" answering 404 NOT_FOUND or 405 METHOD_NOT_ALLOWED
// in JSON. The caller's own routes on mux keep working, also under the
// prefix as long as their patterns do not collide with the API's (the mux
// panics on a collision, at registration). m must stay open while mux
// serves; the caller closes it.
func Register(mux *http.ServeMux, m *opensbx.Manager, opts ...Option) {
	s := newServer(m, opts)
	s.register(mux)
}

// New returns a standalone handler serving the API under the prefix; every
// other path answers 404 NOT_FOUND in JSON. It never redirects: a path that
// is not in canonical form ("/v1//sandboxes", "/v1/x/../y"), which a
// ServeMux would redirect, is 404 too.
func New(m *opensbx.Manager, opts ...Option) http.Handler {
	s := newServer(m, opts)
	mux := http.NewServeMux()
	s.register(mux)
	if s.prefix != "" {
		mux.Handle("/", s.wrap(http.HandlerFunc(s.handleNotFound), true))
	}
	unclean := s.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, http.StatusNotFound, codeNotFound, "no route for "+r.Method+" "+r.URL.EscapedPath()+": not a canonical path")
	}), true)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); r.Method != http.MethodConnect && p != cleanPath(p) {
			unclean.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
