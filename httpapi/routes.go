package httpapi

import (
	"net/http"
	"path"
	"strings"

	"github.com/opensbx/opensbx"
)

// route is one endpoint of the API. The table below is the single source of
// truth: registration, the 405 detection and the OpenAPI tests all read it.
type route struct {
	method string
	// path is relative to the prefix, in ServeMux pattern syntax.
	path string
	// open routes need no API key.
	open bool
	// handler makes the endpoint's handler.
	handler func(s *server) http.Handler
	// answers are the statuses the handler writes itself: its successes
	// and its own checks (a malformed body or query flag is 400, a body
	// over its limit 413, ...).
	answers []int
	// fails are the library errors the handler's Manager calls may return
	// (their doc comments say which); errorTable maps them to statuses.
	// With these, the middleware's 401 (unless open) and 500, a route
	// answers nothing else: TestOpenAPIStatuses keeps openapi.json in step
	// and the tests check every status they see against it.
	fails []error
}

// routes lists every endpoint of the API, with the middleware guarding it:
// every route gets request ids, logging and panic recovery; every route not
// marked open also needs a Bearer key when keys are configured.
func routes() []route {
	// engine: any Manager call (engine unreachable, Manager closed).
	engine := []error{opensbx.ErrUnavailable, opensbx.ErrClosed}
	// sandbox: a call naming a sandbox: unknown, or an id prefix matching
	// several (ErrInvalid).
	sandbox := join(engine, opensbx.ErrNotFound, opensbx.ErrInvalid)
	// state: a call that needs the sandbox or command in another state.
	state := join(sandbox, opensbx.ErrConflict)
	const (
		ok, created, accepted, noContent  = http.StatusOK, http.StatusCreated, http.StatusAccepted, http.StatusNoContent
		bad, notFound, conflict, tooLarge = http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge
	)
	return []route{
		// System.
		{method: "GET", path: "/health", open: true, handler: (*server).handleHealth, answers: []int{ok, http.StatusServiceUnavailable}},
		{method: "GET", path: "/openapi.json", handler: (*server).handleOpenAPI, answers: []int{ok}},

		// Images. {ref...} takes references containing '/', raw or escaped.
		{method: "GET", path: "/images", handler: (*server).handleImageList, answers: []int{ok}, fails: join(engine, opensbx.ErrUnsupported)},
		{method: "POST", path: "/images/pull", handler: (*server).handleImagePull, answers: []int{ok, bad, tooLarge},
			fails: join(engine, opensbx.ErrInvalid, opensbx.ErrImageNotFound, opensbx.ErrUnauthorized, opensbx.ErrRegistry, opensbx.ErrUnsupported)},
		{method: "GET", path: "/images/{ref...}", handler: (*server).handleImageGet, answers: []int{ok, notFound},
			fails: join(engine, opensbx.ErrInvalid, opensbx.ErrImageNotFound, opensbx.ErrUnsupported)},
		{method: "DELETE", path: "/images/{ref...}", handler: (*server).handleImageDelete, answers: []int{noContent, bad, notFound},
			fails: join(engine, opensbx.ErrInvalid, opensbx.ErrImageNotFound, opensbx.ErrConflict, opensbx.ErrUnsupported)},

		// Sandboxes.
		{method: "POST", path: "/sandboxes", handler: (*server).handleSandboxCreate, answers: []int{created, ok, bad, tooLarge},
			fails: join(engine, opensbx.ErrInvalid, opensbx.ErrImageNotFound, opensbx.ErrConflict, opensbx.ErrUnauthorized, opensbx.ErrRegistry,
				opensbx.ErrUnsupported, opensbx.ErrRateLimited)},
		{method: "GET", path: "/sandboxes", handler: (*server).handleSandboxList, answers: []int{ok}, fails: engine},
		{method: "GET", path: "/sandboxes/{id}", handler: (*server).handleSandboxGet, answers: []int{ok}, fails: sandbox},
		{method: "DELETE", path: "/sandboxes/{id}", handler: (*server).handleSandboxDelete, answers: []int{noContent}, fails: state},
		{method: "POST", path: "/sandboxes/{id}/start", handler: (*server).handleSandboxStart, answers: []int{ok}, fails: join(state, opensbx.ErrUnsupported)},
		{method: "POST", path: "/sandboxes/{id}/stop", handler: (*server).handleSandboxStop, answers: []int{ok}, fails: join(state, opensbx.ErrUnsupported)},
		{method: "POST", path: "/sandboxes/{id}/restart", handler: (*server).handleSandboxRestart, answers: []int{ok}, fails: join(state, opensbx.ErrUnsupported)},
		{method: "POST", path: "/sandboxes/{id}/pause", handler: (*server).handleSandboxPause, answers: []int{ok}, fails: join(state, opensbx.ErrUnsupported)},
		{method: "POST", path: "/sandboxes/{id}/resume", handler: (*server).handleSandboxResume, answers: []int{ok}, fails: join(state, opensbx.ErrUnsupported)},
		{method: "POST", path: "/sandboxes/{id}/renew-expiration", handler: (*server).handleSandboxRenew, answers: []int{ok, bad, tooLarge}, fails: state},
		{method: "GET", path: "/sandboxes/{id}/stats", handler: (*server).handleSandboxStats, answers: []int{ok, bad, conflict}, fails: join(state, opensbx.ErrUnsupported)},
		{method: "GET", path: "/sandboxes/{id}/network", handler: (*server).handleSandboxNetwork, answers: []int{ok}, fails: sandbox},

		// Commands.
		{method: "POST", path: "/sandboxes/{id}/cmd", handler: (*server).handleCommandRun, answers: []int{ok, bad, tooLarge},
			fails: join(state, opensbx.ErrRateLimited)},
		{method: "GET", path: "/sandboxes/{id}/cmd", handler: (*server).handleCommandList, answers: []int{ok}, fails: sandbox},
		{method: "GET", path: "/sandboxes/{id}/cmd/{cmdId}", handler: (*server).handleCommandGet, answers: []int{ok, bad}, fails: sandbox},
		{method: "POST", path: "/sandboxes/{id}/cmd/{cmdId}/kill", handler: (*server).handleCommandKill, answers: []int{ok, bad, tooLarge},
			fails: join(state, opensbx.ErrUnsupported)},
		{method: "GET", path: "/sandboxes/{id}/cmd/{cmdId}/logs", handler: (*server).handleCommandLogs, answers: []int{ok, bad}, fails: sandbox},
		{method: "POST", path: "/sandboxes/{id}/cmd/{cmdId}/stdin", handler: (*server).handleCommandStdin, answers: []int{noContent, bad, tooLarge},
			fails: join(state, opensbx.ErrTooLarge)},

		// Files.
		{method: "GET", path: "/sandboxes/{id}/files", handler: (*server).handleFileRead, answers: []int{ok, bad}, fails: join(sandbox, opensbx.ErrTooLarge, opensbx.ErrUnsupported)},
		{method: "PUT", path: "/sandboxes/{id}/files", handler: (*server).handleFileWrite, answers: []int{ok, bad, tooLarge},
			fails: join(state, opensbx.ErrTooLarge, opensbx.ErrUnsupported)},
		{method: "DELETE", path: "/sandboxes/{id}/files", handler: (*server).handleFileDelete, answers: []int{noContent, bad},
			fails: join(state, opensbx.ErrUnsupported)},
		{method: "GET", path: "/sandboxes/{id}/files/list", handler: (*server).handleFileList, answers: []int{ok, bad}, fails: join(sandbox, opensbx.ErrUnsupported)},

		// MCP (Streamable HTTP, stateless: POST only). Tool failures are
		// inside its 200 answers; the statuses are the transport's own
		// (202 for a notification, 403 for the Host check, 415 for a body
		// that is not JSON).
		{method: "POST", path: "/mcp", handler: (*server).handleMCP,
			answers: []int{ok, accepted, bad, http.StatusForbidden, tooLarge, http.StatusUnsupportedMediaType}},
	}
}

// join returns a new slice holding a then b.
func join(a []error, b ...error) []error {
	return append(append([]error(nil), a...), b...)
}

// register adds the routes and the JSON 404/405 catch-all to mux.
func (s *server) register(mux *http.ServeMux) {
	s.routes = http.NewServeMux()
	s.patterns = map[string]bool{}
	notFound := s.wrap(http.HandlerFunc(s.handleNotFound), true)
	for _, rt := range routes() {
		pattern := rt.method + " " + s.prefix + rt.path
		mux.Handle(pattern, s.wrapRoute(rt))
		s.routes.Handle(pattern, http.NotFoundHandler())
		s.patterns[pattern] = true
	}
	// The mux redirects a path to path+"/" when only a pattern with the
	// slash matches (DELETE /v1/images -> /v1/images/ for images/{ref...},
	// /v1 -> /v1/ for the catch-all). These exact paths answer 404 or 405
	// instead, in the probe mux too (so that they add nothing to Allow).
	for _, p := range redirectGuards(s.prefix) {
		mux.Handle(p, notFound)
		s.routes.Handle(p, http.NotFoundHandler())
	}
	mux.Handle(s.prefix+"/", notFound)
}

// redirectGuards returns the exact paths the mux would otherwise redirect:
// the parent of every {name...} route and the prefix itself.
func redirectGuards(prefix string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if p != "" && p != "/" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, rt := range routes() {
		if i := strings.LastIndex(rt.path, "/{"); i >= 0 && strings.HasSuffix(rt.path, "...}") {
			add(prefix + rt.path[:i])
		}
	}
	add(prefix)
	return out
}

// probeMethods are the methods tried to build a 405's Allow header.
func probeMethods() []string {
	return []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
}

// handleNotFound answers requests no route matched: 405 with Allow when the
// path is known for other methods, else 404. Only the API's own routes are
// probed: a caller's route under the prefix hit with a wrong method gets 404.
func (s *server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, method := range probeMethods() {
		probe := r.Clone(r.Context())
		probe.Method = method
		if _, pattern := s.routes.Handler(probe); s.patterns[pattern] {
			allow = append(allow, method)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, r, http.StatusMethodNotAllowed, codeMethodNotAllowed, "method "+r.Method+" is not allowed on "+r.URL.Path)
		return
	}
	s.writeError(w, r, http.StatusNotFound, codeNotFound, "no route for "+r.Method+" "+r.URL.Path)
}

// cleanPath is the path the mux would redirect p to ("/a//b/../c" ->
// "/a/c"), keeping a trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}
