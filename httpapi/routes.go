package httpapi

import (
	"net/http"
	"strings"
)

// route is one endpoint of the API. The table below is the single source of
// truth: registration, the 405 detection and the OpenAPI test all read it.
type route struct {
	method string
	// path is relative to the prefix, in ServeMux pattern syntax.
	path string
	// open routes need no API key.
	open bool
	// handler makes the endpoint's handler.
	handler func(s *server) http.Handler
}

// routes lists every endpoint of the API, with the middleware guarding it:
// every route gets request ids, logging and panic recovery; every route not
// marked open also needs a Bearer key when keys are configured.
func routes() []route {
	return []route{
		// System.
		{method: "GET", path: "/health", open: true, handler: (*server).handleHealth},
		{method: "GET", path: "/openapi.json", handler: (*server).handleOpenAPI},

		// Images. {ref...} takes references containing '/', raw or escaped.
		{method: "GET", path: "/images", handler: (*server).handleImageList},
		{method: "POST", path: "/images/pull", handler: (*server).handleImagePull},
		{method: "GET", path: "/images/{ref...}", handler: (*server).handleImageGet},
		{method: "DELETE", path: "/images/{ref...}", handler: (*server).handleImageDelete},

		// Sandboxes.
		{method: "POST", path: "/sandboxes", handler: (*server).handleSandboxCreate},
		{method: "GET", path: "/sandboxes", handler: (*server).handleSandboxList},
		{method: "GET", path: "/sandboxes/{id}", handler: (*server).handleSandboxGet},
		{method: "DELETE", path: "/sandboxes/{id}", handler: (*server).handleSandboxDelete},
		{method: "POST", path: "/sandboxes/{id}/start", handler: (*server).handleSandboxStart},
		{method: "POST", path: "/sandboxes/{id}/stop", handler: (*server).handleSandboxStop},
		{method: "POST", path: "/sandboxes/{id}/restart", handler: (*server).handleSandboxRestart},
		{method: "POST", path: "/sandboxes/{id}/pause", handler: (*server).handleSandboxPause},
		{method: "POST", path: "/sandboxes/{id}/resume", handler: (*server).handleSandboxResume},
		{method: "POST", path: "/sandboxes/{id}/renew-expiration", handler: (*server).handleSandboxRenew},
		{method: "GET", path: "/sandboxes/{id}/stats", handler: (*server).handleSandboxStats},
		{method: "GET", path: "/sandboxes/{id}/network", handler: (*server).handleSandboxNetwork},

		// Commands.
		{method: "POST", path: "/sandboxes/{id}/cmd", handler: (*server).handleCommandRun},
		{method: "GET", path: "/sandboxes/{id}/cmd", handler: (*server).handleCommandList},
		{method: "GET", path: "/sandboxes/{id}/cmd/{cmdId}", handler: (*server).handleCommandGet},
		{method: "POST", path: "/sandboxes/{id}/cmd/{cmdId}/kill", handler: (*server).handleCommandKill},
		{method: "GET", path: "/sandboxes/{id}/cmd/{cmdId}/logs", handler: (*server).handleCommandLogs},
		{method: "POST", path: "/sandboxes/{id}/cmd/{cmdId}/stdin", handler: (*server).handleCommandStdin},

		// Files.
		{method: "GET", path: "/sandboxes/{id}/files", handler: (*server).handleFileRead},
		{method: "PUT", path: "/sandboxes/{id}/files", handler: (*server).handleFileWrite},
		{method: "DELETE", path: "/sandboxes/{id}/files", handler: (*server).handleFileDelete},
		{method: "GET", path: "/sandboxes/{id}/files/list", handler: (*server).handleFileList},
	}
}

// register adds the routes and the JSON 404/405 catch-all to mux.
func (s *server) register(mux *http.ServeMux) {
	s.routes = http.NewServeMux()
	for _, rt := range routes() {
		pattern := rt.method + " " + s.prefix + rt.path
		mux.Handle(pattern, s.wrap(rt.handler(s), rt.open))
		s.routes.Handle(pattern, http.NotFoundHandler())
	}
	mux.Handle(s.prefix+"/", s.wrap(http.HandlerFunc(s.handleNotFound), true))
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
		if _, pattern := s.routes.Handler(probe); pattern != "" {
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
