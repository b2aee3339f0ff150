package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/opensbx/opensbx"
)

// The MCP endpoint ({prefix}/mcp) is a Model Context Protocol server over
// the Streamable HTTP transport, built on the official Go SDK. It is
// stateless: every POST carries one JSON-RPC message and is answered on its
// own (as JSON or as an event stream carrying progress notifications), so
// the endpoint keeps no sessions and starts no goroutine that outlives a
// request. GET and DELETE (session streams and session ends) answer 405.

// mcpImplementation names the server in the MCP handshake.
func mcpImplementation() *mcp.Implementation {
	return &mcp.Implementation{Name: "opensbx", Title: "Opensbx sandboxes", Version: "1.0.0"}
}

// MCPHandler returns the MCP endpoint alone, for a program that mounts it
// at a path of its own choosing (Register and New already serve it at
// {prefix}/mcp). It takes the same options as New (WithAPIKeys,
// WithLogger, WithMaxBodyBytes, WithAllowedHosts, WithBaseDomain; WithPrefix
// has no effect) and answers every path it is given: mount it on exactly
// one. The tools use m through its public API only; m must stay open while
// the handler serves.
func MCPHandler(m *opensbx.Manager, opts ...Option) http.Handler {
	s := newServer(m, opts)
	return s.middleware(s.handleMCP(), false, "POST /mcp")
}

// WithAllowedHosts adds host names (without port, e.g. "sbx.example.com")
// that the MCP endpoint accepts in the Host header when the server listens
// on a loopback address, next to localhost and loopback IPs; see
// handleMCP for the DNS-rebinding check. Use it behind a reverse proxy on
// the same machine that keeps the client's Host.
func WithAllowedHosts(hosts ...string) Option {
	return func(s *server) {
		for _, h := range hosts {
			if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
				s.allowedHosts = append(s.allowedHosts, strings.TrimSuffix(h, "."))
			}
		}
	}
}

// httpRequestKey keys the HTTP request's own context in the context the
// MCP SDK gives tool handlers (whose Done channel does not follow the
// request): a tool that waits stops when the client goes away.
type httpRequestKey struct{}

// handleMCP serves the MCP endpoint. Before the SDK sees a request it
//
//   - rejects a request whose Host is not a loopback name or address (nor
//     one of WithAllowedHosts) when the connection arrived on a loopback
//     address: 403 FORBIDDEN. A web page cannot then reach a local server
//     through DNS rebinding (its requests carry the attacker's Host).
//   - bounds the body to what file_write needs (the file size limit, in
//     base64, plus the JSON limit).
//
// Errors the SDK answers in plain text (400, 413, 415, ...) are turned into
// the API's {"code","message"} JSON.
func (s *server) handleMCP() http.Handler {
	srv := s.newMCPServer()
	limit := int64(opensbx.DefaultFileSizeLimit)
	if s.m != nil {
		limit = s.m.FileSizeLimit()
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{
		Stateless:                  true,
		DisableLocalhostProtection: true, // checked below, answering JSON
		Logger:                     s.sdkLogger(),
		MaxRequestBodyBytes:        limit/3*4 + s.maxBody,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r) {
			s.writeError(w, r, http.StatusForbidden, codeForbidden,
				fmt.Sprintf("Host %q is not allowed: this server listens on a loopback address and accepts only loopback host names (DNS-rebinding protection)", r.Host))
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), httpRequestKey{}, r.Context()))
		jw := &jsonErrors{ResponseWriter: w}
		h.ServeHTTP(jw, r)
		jw.finish(s, r)
	})
}

// hostAllowed is the DNS-rebinding check: a request that arrived on a
// loopback address must name a loopback host.
func (s *server) hostAllowed(r *http.Request) bool {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || la == nil || !isLoopbackHost(la.String()) {
		return true
	}
	if isLoopbackHost(r.Host) {
		return true
	}
	host := hostOnly(r.Host)
	for _, h := range s.allowedHosts {
		if host == h {
			return true
		}
	}
	return false
}

// hostOnly lower-cases hostport and strips its port, brackets and trailing
// dot.
func hostOnly(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// isLoopbackHost reports whether hostport names this machine only:
// localhost, a name under .localhost (RFC 6761) or a loopback IP.
func isLoopbackHost(hostport string) bool {
	host := hostOnly(hostport)
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if i := strings.IndexByte(host, '%'); i >= 0 { // zone of fe80::1%lo
		host = host[:i]
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// jsonErrors passes an MCP response through, except a plain-text error
// (status >= 400 with Content-Type text/plain, as the SDK writes them),
// which it holds back (at most 4 KiB) and answers as {"code","message"}
// in finish. Unwrap keeps http.ResponseController (flushes) working.
type jsonErrors struct {
	http.ResponseWriter
	status int
	held   bool
	msg    bytes.Buffer
}

func (w *jsonErrors) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	if code >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		w.held = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *jsonErrors) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		if room := 4096 - w.msg.Len(); room > 0 {
			w.msg.Write(b[:min(len(b), room)])
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *jsonErrors) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish writes the held error, if any.
func (w *jsonErrors) finish(s *server, r *http.Request) {
	if !w.held {
		return
	}
	w.Header().Del("Content-Type")
	w.Header().Del("X-Content-Type-Options")
	s.writeError(w.ResponseWriter, r, w.status, codeForStatus(w.status), strings.TrimSpace(w.msg.String()))
}

// codeForStatus is the error code of a status the SDK answers by itself.
func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return codeBadRequest
	case http.StatusUnauthorized:
		return codeUnauthorized
	case http.StatusForbidden:
		return codeForbidden
	case http.StatusNotFound:
		return codeNotFound
	case http.StatusMethodNotAllowed:
		return codeMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		return codeTooLarge
	case http.StatusUnsupportedMediaType:
		return codeUnsupportedMediaType
	case http.StatusConflict:
		return codeConflict
	default:
		if status >= 500 {
			return codeInternal
		}
		return codeBadRequest
	}
}

// sdkLogger is the server's logger for the SDK, at warning level and above
// (the SDK logs every stateless request's session at info).
func (s *server) sdkLogger() *slog.Logger {
	return slog.New(minLevel{s.log.Handler(), slog.LevelWarn})
}

// minLevel drops records below its level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}

// newMCPServer builds the MCP server: the tools, the two documentation
// resources and the sandbox_workflow prompt.
func (s *server) newMCPServer() *mcp.Server {
	srv := mcp.NewServer(mcpImplementation(), &mcp.ServerOptions{
		Instructions: mcpInstructions,
		Logger:       s.sdkLogger(),
	})
	s.addMCPTools(srv)
	for _, d := range mcpDocs() {
		doc := d
		srv.AddResource(&mcp.Resource{
			Name: doc.name, Title: doc.title, Description: doc.description, URI: doc.uri, MIMEType: "text/markdown",
		}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			if req.Params.URI != doc.uri {
				return nil, mcp.ResourceNotFoundError(req.Params.URI)
			}
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: doc.uri, MIMEType: "text/markdown", Text: doc.text}}}, nil
		})
	}
	srv.AddPrompt(&mcp.Prompt{
		Name:        "sandbox_workflow",
		Title:       "Sandbox workflow",
		Description: "Step-by-step guidance for doing a task inside an Opensbx sandbox with these tools",
		Arguments: []*mcp.PromptArgument{
			{Name: "goal", Description: "What the user wants done", Required: true},
			{Name: "sandbox_id", Description: "A sandbox to use, if one exists already"},
		},
	}, func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		goal := strings.TrimSpace(req.Params.Arguments["goal"])
		if goal == "" {
			goal = "(not given: ask the user)"
		}
		id := strings.TrimSpace(req.Params.Arguments["sandbox_id"])
		if id == "" {
			id = "<create_one_first>"
		}
		return &mcp.GetPromptResult{
			Description: "How to work in an Opensbx sandbox",
			Messages: []*mcp.PromptMessage{{
				Role:    "user",
				Content: &mcp.TextContent{Text: fmt.Sprintf(workflowPrompt, goal, id)},
			}},
		}, nil
	})
	return srv
}

// toolMeta is the _meta of a failed tool call: the REST error code and
// status, for programs (the text is the REST message, for the model).
func toolMeta(status int, code string) mcp.Meta {
	return mcp.Meta{"code": code, "status": status}
}

// toolText is a tool result's JSON as text content.
func toolText(b []byte) []mcp.Content { return []mcp.Content{&mcp.TextContent{Text: string(b)}} }

// marshalResult encodes a tool's result like encode does a response body.
func marshalResult(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
