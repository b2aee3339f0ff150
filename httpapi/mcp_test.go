package httpapi_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/matryer/is"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/opensbx/opensbx/httpapi"
	"github.com/opensbx/opensbx/internal/testenv"
)

// mcpTools are the tools an agent configured for the original API calls.
var mcpTools = []string{
	"system_health", "sandbox_list", "sandbox_create", "sandbox_get", "sandbox_delete", "sandbox_start",
	"sandbox_stop", "sandbox_restart", "sandbox_pause", "sandbox_resume", "sandbox_stats", "sandbox_network_get",
	"sandbox_renew_expiration", "command_exec", "command_list", "command_get", "command_kill", "command_logs",
	"file_read", "file_write", "file_delete", "file_list", "image_list", "image_get", "image_pull", "image_delete",
}

// bearer adds an API key to every request.
type bearer struct {
	key  string
	base http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.base.RoundTrip(r)
}

// mcpClient is a session of the SDK's own client with the API's MCP
// endpoint, over real HTTP, plus the tools' schemas.
type mcpClient struct {
	t       testing.TB
	cs      *mcp.ClientSession
	schemas map[string]*jsonschema.Resolved // output schema by tool
}

// connectMCP opens an MCP session at a.srv.URL+path with a's key. The
// session is closed when the test ends.
func (a *api) connectMCP(t testing.TB, path string, opts *mcp.ClientOptions) (*mcpClient, error) {
	t.Helper()
	hc := a.srv.Client()
	if a.key != "" {
		hc = &http.Client{Transport: bearer{a.key, a.srv.Client().Transport}}
	}
	tr := &mcp.StreamableClientTransport{Endpoint: a.srv.URL + path, HTTPClient: hc, MaxRetries: -1}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "opensbx-test", Version: "1"}, opts).Connect(context.Background(), tr, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cs.Close() })
	return &mcpClient{t: t, cs: cs, schemas: map[string]*jsonschema.Resolved{}}, nil
}

func (a *api) mcp(t testing.TB, opts *mcp.ClientOptions) *mcpClient {
	t.Helper()
	c, err := a.connectMCP(t, "/v1/mcp", opts)
	if err != nil {
		t.Fatalf("connect MCP: %v", err)
	}
	c.loadSchemas()
	return c
}

// loadSchemas lists the tools and resolves their output schemas.
func (c *mcpClient) loadSchemas() {
	c.t.Helper()
	res, err := c.cs.ListTools(context.Background(), nil)
	if err != nil {
		c.t.Fatalf("list tools: %v", err)
	}
	for _, tool := range res.Tools {
		var s jsonschema.Schema
		b, _ := json.Marshal(tool.OutputSchema)
		if err := json.Unmarshal(b, &s); err != nil {
			c.t.Fatalf("%s: output schema: %v", tool.Name, err)
		}
		r, err := s.Resolve(nil)
		if err != nil {
			c.t.Fatalf("%s: resolve output schema: %v", tool.Name, err)
		}
		c.schemas[tool.Name] = r
	}
}

// callResult is a finished tool call.
type callResult struct {
	res *mcp.CallToolResult
}

// call calls a tool; a protocol error fails the test (failures must be
// tool errors).
func (c *mcpClient) call(ctx context.Context, name string, args map[string]any) callResult {
	c.t.Helper()
	res, err := c.cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		c.t.Fatalf("%s: protocol error: %v", name, err)
	}
	return callResult{res}
}

// ok calls a tool that must succeed and returns its structured result,
// after checking that the text content is the same JSON and that the result
// matches the tool's output schema.
func (c *mcpClient) ok(name string, args map[string]any) map[string]any {
	c.t.Helper()
	r := c.call(context.Background(), name, args)
	if r.res.IsError {
		c.t.Fatalf("%s(%v): tool error: %s", name, args, r.text())
	}
	var fromText map[string]any
	if err := json.Unmarshal([]byte(r.text()), &fromText); err != nil {
		c.t.Fatalf("%s: text content is not JSON: %v: %q", name, err, r.text())
	}
	b, err := json.Marshal(r.res.StructuredContent)
	if err != nil {
		c.t.Fatalf("%s: structured content: %v", name, err)
	}
	var structured map[string]any
	if err := json.Unmarshal(b, &structured); err != nil {
		c.t.Fatalf("%s: structured content is not an object: %s", name, b)
	}
	is.New(c.t).Equal(fromText, structured) // text and structured content agree
	if s := c.schemas[name]; s != nil {
		if err := s.Validate(structured); err != nil {
			c.t.Fatalf("%s: result does not match its output schema: %v\n%s", name, err, b)
		}
	}
	return structured
}

// fails calls a tool that must fail with a tool error and returns its text
// and code.
func (c *mcpClient) fails(name string, args map[string]any) (msg, code string) {
	c.t.Helper()
	r := c.call(context.Background(), name, args)
	if !r.res.IsError {
		c.t.Fatalf("%s(%v): succeeded, want a tool error: %s", name, args, r.text())
	}
	if r.res.StructuredContent != nil {
		c.t.Fatalf("%s: failed call has structured content %v", name, r.res.StructuredContent)
	}
	code, _ = r.res.Meta["code"].(string)
	return r.text(), code
}

func (r callResult) text() string {
	if len(r.res.Content) == 0 {
		return ""
	}
	tc, _ := r.res.Content[0].(*mcp.TextContent)
	if tc == nil {
		return ""
	}
	return tc.Text
}

// These need no engine: listing asks the Manager nothing.

func TestMCPListsToolsResourcesAndPrompt(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := newAPI(t, nil, httpapi.WithAPIKeys("k"))
	a.key = "k"
	c := a.mcp(t, nil)
	res, err := c.cs.ListTools(context.Background(), nil)
	is.NoErr(err) // list tools
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		is.True(tool.Description != "") // every tool is described
		b, _ := json.Marshal(tool.InputSchema)
		var in struct {
			Type       string                     `json:"type"`
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
		}
		is.NoErr(json.Unmarshal(b, &in))
		is.Equal(in.Type, "object") // input schema is an object
		for name, p := range in.Properties {
			var prop struct{ Description string }
			is.NoErr(json.Unmarshal(p, &prop))
			if prop.Description == "" {
				t.Errorf("%s: argument %s has no description", tool.Name, name)
			}
		}
		for _, r := range in.Required {
			_, ok := in.Properties[r]
			is.True(ok) // required arguments exist
		}
		is.True(tool.OutputSchema != nil) // every tool says what it returns
	}
	slices.Sort(names)
	want := slices.Clone(mcpTools)
	slices.Sort(want)
	is.Equal(names, want) // the original's 26 tools, no more

	// The arguments of the original, by tool.
	args := map[string][]string{}
	for _, tool := range res.Tools {
		b, _ := json.Marshal(tool.InputSchema)
		var in struct {
			Properties map[string]any `json:"properties"`
			Required   []string       `json:"required"`
		}
		is.NoErr(json.Unmarshal(b, &in))
		for p := range in.Properties {
			args[tool.Name] = append(args[tool.Name], p)
		}
		if tool.Name == "command_kill" {
			is.True(slices.Contains(in.Required, "signal")) // signal is required, as in the original
		}
	}
	for tool, names := range map[string][]string{
		"sandbox_create":           {"image", "ports", "timeout", "resources", "env"},
		"sandbox_get":              {"id"},
		"sandbox_renew_expiration": {"id", "timeout"},
		"command_exec":             {"sandbox_id", "command", "args", "cwd", "env", "wait"},
		"command_list":             {"id"},
		"command_get":              {"sandbox_id", "command_id", "wait"},
		"command_kill":             {"sandbox_id", "command_id", "signal"},
		"command_logs":             {"sandbox_id", "command_id", "cursor"},
		"file_read":                {"sandbox_id", "path"},
		"file_write":               {"sandbox_id", "path", "content", "encoding"},
		"file_delete":              {"sandbox_id", "path"},
		"file_list":                {"sandbox_id", "path"},
		"image_get":                {"id"},
		"image_pull":               {"image"},
		"image_delete":             {"id", "force"},
	} {
		for _, n := range names {
			if !slices.Contains(args[tool], n) {
				t.Errorf("%s has no argument %q (has %v)", tool, n, args[tool])
			}
		}
	}

	// The two documentation resources and the workflow prompt.
	rs, err := c.cs.ListResources(context.Background(), nil)
	is.NoErr(err)
	is.Equal(len(rs.Resources), 2)
	for _, uri := range []string{"opensbx://docs/how-it-works", "opensbx://docs/quickstart"} {
		got, err := c.cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: uri})
		is.NoErr(err) // read resource
		is.Equal(len(got.Contents), 1)
		is.True(strings.Contains(got.Contents[0].Text, "command_exec")) // it explains the tools
	}
	_, err = c.cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "opensbx://docs/missing"})
	is.True(err != nil) // unknown resource
	p, err := c.cs.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "sandbox_workflow", Arguments: map[string]string{"goal": "run the tests"}})
	is.NoErr(err) // get prompt
	text := p.Messages[0].Content.(*mcp.TextContent).Text
	is.True(strings.Contains(text, "Goal: run the tests"))
	is.True(strings.Contains(text, "Sandbox ID: <create_one_first>"))
	p, err = c.cs.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "sandbox_workflow", Arguments: map[string]string{"goal": "g", "sandbox_id": "sb-7"}})
	is.NoErr(err)
	is.True(strings.Contains(p.Messages[0].Content.(*mcp.TextContent).Text, "Sandbox ID: sb-7"))
}

func TestMCPNeedsTheKey(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil, httpapi.WithAPIKeys("k"))
	if _, err := a.connectMCP(t, "/v1/mcp", nil); err == nil {
		t.Fatal("a session without the key connected")
	}
	r := a.call("POST", "/v1/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	want(t, r, http.StatusUnauthorized, "UNAUTHORIZED")
	a.key = "wrong"
	if _, err := a.connectMCP(t, "/v1/mcp", nil); err == nil {
		t.Fatal("a session with a wrong key connected")
	}
	a.key = "k"
	if _, err := a.connectMCP(t, "/v1/mcp", nil); err != nil {
		t.Fatalf("with the key: %v", err)
	}
}

// initialize is a raw MCP initialize request.
const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

func (a *api) mcpPost(host, body string) response {
	a.t.Helper()
	req := a.newRequest("POST", "/v1/mcp", body)
	req.Header.Set("Accept", "application/json, text/event-stream")
	if host != "" {
		req.Host = host
	}
	return a.do(req)
}

func TestMCPRejectsForeignHostOnLoopback(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := newAPI(t, nil, httpapi.WithAllowedHosts("proxy.example.test"))
	port := a.srv.Listener.Addr().String()[strings.LastIndex(a.srv.Listener.Addr().String(), ":"):]
	// httptest listens on 127.0.0.1: a page on a rebound name is refused.
	for _, host := range []string{"evil.example.com", "evil.example.com" + port, "127.0.0.1.nip.io" + port, "localhost.evil.com"} {
		r := a.mcpPost(host, initialize)
		want(t, r, http.StatusForbidden, "FORBIDDEN")
		is.True(strings.Contains(r.json(t)["message"].(string), "DNS-rebinding")) // says why
	}
	for _, host := range []string{"127.0.0.1" + port, "localhost" + port, "LOCALHOST", "app.localhost" + port, "[::1]" + port, "proxy.example.test" + port} {
		r := a.mcpPost(host, initialize)
		if r.status != http.StatusOK {
			t.Errorf("Host %s: status %d: %s", host, r.status, r.body)
		}
	}
	// Other routes are not affected.
	want(t, a.call("GET", "/v1/openapi.json", nil), http.StatusOK, "")
}

func TestMCPTransportErrorsAreJSON(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	req := a.newRequest("POST", "/v1/mcp", initialize)
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Accept", "application/json, text/event-stream")
	want(t, a.do(req), http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
	req = a.newRequest("POST", "/v1/mcp", initialize)
	want(t, a.do(req), http.StatusBadRequest, "BAD_REQUEST") // no Accept
	want(t, a.mcpPost("", `{"jsonrpc":`), http.StatusBadRequest, "BAD_REQUEST")
	r := a.call("GET", "/v1/mcp", nil) // no session streams: stateless
	want(t, r, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
	is.New(t).Equal(r.header.Get("Allow"), "POST")
}

func TestMCPHandlerMountsAlone(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("POST /agents/mcp", httpapi.MCPHandler(nil, httpapi.WithAPIKeys("k")))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	a := &api{t: t, srv: srv}
	want(t, a.call("POST", "/agents/mcp", initialize), http.StatusUnauthorized, "UNAUTHORIZED")
	a.key = "k"
	c, err := a.connectMCP(t, "/agents/mcp", nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	res, err := c.cs.ListTools(context.Background(), nil)
	if err != nil || len(res.Tools) != len(mcpTools) {
		t.Fatalf("list tools: %d tools, %v", len(res.Tools), err)
	}
}

// With the engine.

func TestMCPSandboxFlow(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m, httpapi.WithAPIKeys("k"))
	a.key = "k"
	c := a.mcp(t, nil)

	is.Equal(c.ok("system_health", nil)["status"], "healthy")
	sb := c.ok("sandbox_create", map[string]any{"image": testenv.BusyboxImage, "ports": []string{"8080"}, "timeout": 600, "env": []string{"GREETING=hi"}})
	id := sb["id"].(string)
	t.Cleanup(func() { m.Delete(context.Background(), id) })
	is.Equal(sb["ports"], []any{"8080/tcp"})
	is.Equal(c.ok("sandbox_get", map[string]any{"id": id})["id"], id)
	list := c.ok("sandbox_list", nil)["sandboxes"].([]any)
	is.Equal(len(list), 1)
	is.Equal(c.ok("sandbox_network_get", map[string]any{"id": sb["name"]})["main_port"], "8080/tcp")

	// Exec with wait: exit code and both streams in one result.
	r := c.ok("command_exec", map[string]any{"sandbox_id": id, "command": "sh", "args": []string{"-c", "echo $GREETING $X from $(pwd); echo oops >&2; exit 3"},
		"cwd": "/tmp", "env": map[string]string{"X": "there"}, "wait": true})
	cmd := r["command"].(map[string]any)
	is.Equal(cmd["state"], "finished")
	is.Equal(cmd["exit_code"], 3.0)
	is.Equal(r["exit_code"], 3.0)
	is.Equal(r["stdout"], "hi there from /tmp\n")
	is.Equal(r["stderr"], "oops\n")
	is.True(r["cursor"] != "") // a cursor to continue with command_logs

	// The same output through command_logs, and nothing after its cursor.
	logs := c.ok("command_logs", map[string]any{"sandbox_id": id, "command_id": cmd["id"]})
	is.Equal(logs["stdout"], "hi there from /tmp\n")
	is.Equal(logs["done"], true)
	is.Equal(logs["exit_code"], 3.0)
	more := c.ok("command_logs", map[string]any{"sandbox_id": id, "command_id": cmd["id"], "cursor": logs["cursor"]})
	is.Equal(more["stdout"], "")
	is.Equal(more["done"], true)

	// Text and binary files.
	w := c.ok("file_write", map[string]any{"sandbox_id": id, "path": "/work/dir/hello.txt", "content": "héllo\n"})
	is.Equal(w["status"], "written")
	f := c.ok("file_read", map[string]any{"sandbox_id": id, "path": "/work/dir/hello.txt"})
	is.Equal(f["content"], "héllo\n")
	_, hasEncoding := f["encoding"]
	is.True(!hasEncoding) // text comes as text
	bin := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0x80}
	c.ok("file_write", map[string]any{"sandbox_id": id, "path": "/work/bin", "content": base64.StdEncoding.EncodeToString(bin), "encoding": "base64", "mode": "0755"})
	f = c.ok("file_read", map[string]any{"sandbox_id": id, "path": "/work/bin"})
	is.Equal(f["encoding"], "base64")
	got, err := base64.StdEncoding.DecodeString(f["content"].(string))
	is.NoErr(err)
	is.Equal(got, bin)          // binary round trip
	is.Equal(f["mode"], "0755") // mode applied
	entries := c.ok("file_list", map[string]any{"sandbox_id": id, "path": "/work"})["entries"].([]any)
	is.Equal(len(entries), 2)
	c.ok("file_delete", map[string]any{"sandbox_id": id, "path": "/work/dir"})
	_, code := c.fails("file_read", map[string]any{"sandbox_id": id, "path": "/work/dir/hello.txt"})
	is.Equal(code, "NOT_FOUND")

	// A running command: kill it.
	r = c.ok("command_exec", map[string]any{"sandbox_id": id, "command": "sleep", "args": []string{"300"}})
	cid := r["command"].(map[string]any)["id"].(string)
	is.Equal(r["command"].(map[string]any)["state"], "running")
	_, hasStdout := r["stdout"]
	is.True(!hasStdout) // no output without wait
	is.Equal(len(c.ok("command_list", map[string]any{"id": id})["commands"].([]any)), 2)
	c.ok("command_kill", map[string]any{"sandbox_id": id, "command_id": cid, "signal": 9})
	done := c.ok("command_get", map[string]any{"sandbox_id": id, "command_id": cid, "wait": true})["command"].(map[string]any)
	is.Equal(done["state"], "killed")
	_, code = c.fails("command_kill", map[string]any{"sandbox_id": id, "command_id": cid, "signal": "SIGTERM"})
	is.Equal(code, "CONFLICT") // already ended

	// Lifecycle.
	is.Equal(c.ok("sandbox_pause", map[string]any{"id": id})["status"], "paused")
	msg, code := c.fails("sandbox_pause", map[string]any{"id": id})
	is.Equal(code, "CONFLICT")
	is.True(strings.Contains(msg, "already paused"))
	is.Equal(c.ok("sandbox_resume", map[string]any{"id": id})["status"], "resumed")
	rn := c.ok("sandbox_renew_expiration", map[string]any{"id": id, "timeout": 1200})
	is.Equal(rn["status"], "renewed")
	is.Equal(c.ok("sandbox_stop", map[string]any{"id": id})["status"], "stopped")
	st := c.ok("sandbox_start", map[string]any{"id": id})
	is.Equal(st["status"], "started")
	is.Equal(st["state"], "running")
	st = c.ok("sandbox_restart", map[string]any{"id": id})
	is.Equal(st["status"], "restarted")
	is.Equal(st["state"], "running")
	stats := c.ok("sandbox_stats", map[string]any{"id": id})
	is.True(stats["pids"].(float64) >= 1)

	// Images.
	var found bool
	for _, img := range c.ok("image_list", nil)["images"].([]any) {
		found = found || slices.Contains(img.(map[string]any)["tags"].([]any), any(testenv.BusyboxImage))
	}
	is.True(found) // the test image is listed
	img := c.ok("image_get", map[string]any{"id": testenv.BusyboxImage})
	is.True(slices.Contains(img["sandboxes"].([]any), any(id))) // used by the sandbox
	_, code = c.fails("image_delete", map[string]any{"id": img["id"]})
	is.Equal(code, "CONFLICT") // in use

	is.Equal(c.ok("sandbox_delete", map[string]any{"id": id})["status"], "deleted")
	_, code = c.fails("sandbox_get", map[string]any{"id": id})
	is.Equal(code, "NOT_FOUND")
}

// TestMCPErrorsMatchREST checks that a tool failure is a tool error
// carrying the message the REST API answers for the same input.
func TestMCPErrorsMatchREST(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	a := newAPI(t, m)
	c := a.mcp(t, nil)
	id := a.createBusybox(nil)["id"].(string)
	running := a.run(id, map[string]any{"command": "sleep", "args": []string{"300"}})["id"].(string)
	absent := "opensbx-test/absent:" + randomHex(4)
	cases := []struct {
		tool         string
		args         map[string]any
		method, path string
		body         any
		code         string
	}{
		{"sandbox_create", map[string]any{"image": ""}, "POST", "/v1/sandboxes", map[string]any{"image": ""}, "BAD_REQUEST"},
		{"sandbox_create", map[string]any{"image": "x", "timeout": -1}, "POST", "/v1/sandboxes", map[string]any{"image": "x", "timeout": -1}, "BAD_REQUEST"},
		{"sandbox_create", map[string]any{"image": testenv.BusyboxImage, "resources": map[string]any{"cpus": 99}}, "POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage, "resources": map[string]any{"cpus": 99}}, "BAD_REQUEST"},
		{"sandbox_create", map[string]any{"image": absent}, "POST", "/v1/sandboxes", map[string]any{"image": absent}, "NOT_FOUND"},
		{"sandbox_create", map[string]any{"image": "x", "ports": "8080"}, "POST", "/v1/sandboxes", `{"image":"x","ports":"8080"}`, "BAD_REQUEST"},
		{"sandbox_get", map[string]any{"id": "nope-" + randomHex(3)}, "GET", "/v1/sandboxes/nope-x", nil, "NOT_FOUND"},
		{"sandbox_start", map[string]any{"id": id}, "POST", "/v1/sandboxes/" + id + "/start", nil, "CONFLICT"},
		{"sandbox_renew_expiration", map[string]any{"id": id, "timeout": 0}, "POST", "/v1/sandboxes/" + id + "/renew-expiration", map[string]any{"timeout": 0}, "BAD_REQUEST"},
		{"command_exec", map[string]any{"sandbox_id": id, "command": ""}, "POST", "/v1/sandboxes/" + id + "/cmd", map[string]any{"command": ""}, "BAD_REQUEST"},
		{"command_exec", map[string]any{"sandbox_id": id, "command": "ls", "env": map[string]string{"A=B": "1"}}, "POST", "/v1/sandboxes/" + id + "/cmd", map[string]any{"command": "ls", "env": map[string]string{"A=B": "1"}}, "BAD_REQUEST"},
		{"command_kill", map[string]any{"sandbox_id": id, "command_id": running}, "POST", "/v1/sandboxes/" + id + "/cmd/" + running + "/kill", map[string]any{}, "BAD_REQUEST"},
		{"command_kill", map[string]any{"sandbox_id": id, "command_id": running, "signal": 65}, "POST", "/v1/sandboxes/" + id + "/cmd/" + running + "/kill", map[string]any{"signal": 65}, "BAD_REQUEST"},
		{"command_get", map[string]any{"sandbox_id": id, "command_id": "cmd_nope"}, "GET", "/v1/sandboxes/" + id + "/cmd/cmd_nope", nil, "NOT_FOUND"},
		{"command_logs", map[string]any{"sandbox_id": id, "command_id": running, "cursor": "garbage"}, "", "", nil, "BAD_REQUEST"},
		{"file_read", map[string]any{"sandbox_id": id, "path": "relative"}, "GET", "/v1/sandboxes/" + id + "/files?path=relative", nil, "BAD_REQUEST"},
		{"file_read", map[string]any{"sandbox_id": id, "path": "/etc"}, "GET", "/v1/sandboxes/" + id + "/files?path=/etc", nil, "BAD_REQUEST"},
		{"file_read", map[string]any{"sandbox_id": id, "path": "/no/such"}, "GET", "/v1/sandboxes/" + id + "/files?path=/no/such", nil, "NOT_FOUND"},
		{"file_write", map[string]any{"sandbox_id": id, "path": "/x", "content": "!!", "encoding": "base64"}, "PUT", "/v1/sandboxes/" + id + "/files?path=/x", map[string]any{"content": "!!", "encoding": "base64"}, "BAD_REQUEST"},
		{"file_write", map[string]any{"sandbox_id": id, "path": "/x"}, "PUT", "/v1/sandboxes/" + id + "/files?path=/x", map[string]any{}, "BAD_REQUEST"},
		{"file_write", map[string]any{"sandbox_id": id, "path": "/x", "content": "", "mode": "999"}, "PUT", "/v1/sandboxes/" + id + "/files?path=/x&mode=999", map[string]any{"content": ""}, "BAD_REQUEST"},
		{"image_get", map[string]any{"id": absent}, "GET", "/v1/images/" + absent, nil, "NOT_FOUND"},
		{"image_pull", map[string]any{"image": "UPPER/Case"}, "POST", "/v1/images/pull", map[string]any{"image": "UPPER/Case"}, "BAD_REQUEST"},
		{"image_delete", map[string]any{"id": absent}, "DELETE", "/v1/images/" + absent, nil, "NOT_FOUND"},
	}
	for _, tc := range cases {
		msg, code := c.fails(tc.tool, tc.args)
		if code != tc.code {
			t.Errorf("%s(%v): code %s, want %s: %s", tc.tool, tc.args, code, tc.code, msg)
		}
		if tc.method == "" {
			continue
		}
		r := a.call(tc.method, tc.path, tc.body)
		if r.status == 200 || r.status == 201 {
			t.Fatalf("REST %s %s succeeded", tc.method, tc.path)
		}
		restMsg, _ := r.json(t)["message"].(string)
		if tc.tool == "sandbox_get" {
			restMsg = strings.ReplaceAll(restMsg, "nope-x", tc.args["id"].(string))
		}
		if msg != restMsg {
			t.Errorf("%s: MCP says %q, REST says %q", tc.tool, msg, restMsg)
		}
	}

	// Arguments the tool does not take, and arguments of the wrong type.
	msg, code := c.fails("sandbox_get", map[string]any{"id": id, "sandbox_id": id})
	is.New(t).Equal(code, "BAD_REQUEST")
	is.New(t).True(strings.Contains(msg, `unknown argument "sandbox_id"`))
	_, code = c.fails("command_exec", map[string]any{"sandbox_id": id, "command": "ls", "args": "-la"})
	is.New(t).Equal(code, "BAD_REQUEST")
	_, code = c.fails("sandbox_get", nil)
	is.New(t).Equal(code, "BAD_REQUEST")
}

func TestMCPExecWaitSendsProgress(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)
	var mu sync.Mutex
	var notes []*mcp.ProgressNotificationParams
	c := a.mcp(t, &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
		mu.Lock()
		defer mu.Unlock()
		notes = append(notes, req.Params)
	}})
	id := a.createBusybox(nil)["id"].(string)

	// The second line is printed only after the first was seen as a
	// progress notification: the output is live, not replayed at the end.
	params := &mcp.CallToolParams{Name: "command_exec", Arguments: map[string]any{"sandbox_id": id, "command": "sh", "wait": true,
		"args": []string{"-c", "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second >&2"}}}
	params.SetProgressToken("tok-1")
	type result struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.cs.CallTool(context.Background(), params)
		done <- result{res, err}
	}()
	deadline := time.After(60 * time.Second)
	for seen := false; !seen; {
		mu.Lock()
		for _, n := range notes {
			seen = seen || n.Message == "first\n"
		}
		mu.Unlock()
		select {
		case <-deadline:
			t.Fatal("no progress notification with the first line")
		case <-time.After(20 * time.Millisecond):
		}
	}
	r := a.run(id, map[string]any{"command": "touch", "args": []string{"/tmp/go"}})
	is.True(r["state"] == "running" || r["state"] == "finished") // the release command started (through the agent it may be done already)
	res := <-done
	is.NoErr(res.err)
	is.True(!res.res.IsError)
	var out map[string]any
	b, _ := json.Marshal(res.res.StructuredContent)
	is.NoErr(json.Unmarshal(b, &out))
	is.Equal(out["stdout"], "first\n")
	is.Equal(out["stderr"], "second\n")
	// The client handles notifications apart from the result: the last one
	// may arrive after it, and in any order.
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		got := slices.ContainsFunc(notes, func(n *mcp.ProgressNotificationParams) bool { return n.Message == "second\n" })
		mu.Unlock()
		if got {
			break
		}
		if time.Now().After(end) {
			t.Fatal("no progress notification with the second line")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	sorted := slices.Clone(notes)
	slices.SortFunc(sorted, func(a, b *mcp.ProgressNotificationParams) int { return cmp.Compare(a.Progress, b.Progress) })
	var last float64
	for _, n := range sorted {
		is.Equal(n.ProgressToken, "tok-1")
		is.True(n.Progress > last) // progress increases
		last = n.Progress
	}
	is.Equal(sorted[len(sorted)-1].Message, "second\n")
	is.Equal(sorted[len(sorted)-1].Meta["stream"], "stderr")
}

func TestMCPExecWaitBoundsOutput(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	m, _ := newManager(t)
	a := newAPI(t, m)
	c := a.mcp(t, nil)
	id := a.createBusybox(nil)["id"].(string)
	// 200000 bytes of 'x' then a marker: the result keeps the newest 64 KiB.
	r := c.ok("command_exec", map[string]any{"sandbox_id": id, "command": "sh", "wait": true,
		"args": []string{"-c", "head -c 200000 /dev/zero | tr '\\0' x; echo END"}})
	out := r["stdout"].(string)
	is.Equal(len(out), 64<<10)
	is.True(strings.HasSuffix(out, "xEND\n"))
	is.Equal(r["stdout_dropped"], float64(200000+4-64<<10))

	// command_logs hands the same output out in bounded pieces that add up.
	cid := r["command"].(map[string]any)["id"]
	var all bytes.Buffer
	cursor := ""
	for i := 0; ; i++ {
		is.True(i < 10) // a bounded number of calls
		args := map[string]any{"sandbox_id": id, "command_id": cid}
		if cursor != "" {
			args["cursor"] = cursor
		}
		l := c.ok("command_logs", args)
		is.True(len(l["stdout"].(string)) <= 128<<10) // bounded result
		all.WriteString(l["stdout"].(string))
		cursor = l["cursor"].(string)
		if l["done"] == true {
			break
		}
	}
	is.Equal(all.Len(), 200004)
	is.True(strings.HasSuffix(all.String(), "xEND\n"))

	// wait_timeout returns a command still running, with a cursor.
	r = c.ok("command_exec", map[string]any{"sandbox_id": id, "command": "sh", "wait": true, "wait_timeout": 1,
		"args": []string{"-c", "echo started; sleep 300"}})
	cmd := r["command"].(map[string]any)
	is.Equal(cmd["state"], "running")
	t.Cleanup(func() { a.call("POST", cmdURL(id, "/", cmd["id"].(string), "/kill"), map[string]any{"signal": 9}) })
	// The output so far comes with it or, on a slow machine, through logs.
	got := r["stdout"].(string)
	if got == "" {
		got = c.ok("command_logs", map[string]any{"sandbox_id": id, "command_id": cmd["id"], "cursor": r["cursor"], "wait": 30})["stdout"].(string)
	}
	is.Equal(got, "started\n")
}

func TestMCPCancelEndsTheWait(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	// arrived and answered report the HTTP requests of tools/call.
	arrived, answered := make(chan struct{}, 4), make(chan struct{}, 4)
	inner := httpapi.New(m)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		call := bytes.Contains(body, []byte(`"tools/call"`))
		if call {
			arrived <- struct{}{}
		}
		inner.ServeHTTP(w, r)
		if call {
			answered <- struct{}{}
		}
	}))
	t.Cleanup(srv.Close)
	a := &api{t: t, srv: srv}
	id := a.createBusybox(nil)["id"].(string)
	c := a.mcp(t, nil)
	running := a.run(id, map[string]any{"command": "sleep", "args": []string{"300"}})["id"].(string)
	for _, call := range []struct {
		tool string
		args map[string]any
	}{
		{"command_exec", map[string]any{"sandbox_id": id, "command": "sleep", "args": []string{"301"}, "wait": true}},
		{"command_get", map[string]any{"sandbox_id": id, "command_id": running, "wait": true}},
		{"command_logs", map[string]any{"sandbox_id": id, "command_id": running, "wait": 300}},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		go c.cs.CallTool(ctx, &mcp.CallToolParams{Name: call.tool, Arguments: call.args})
		<-arrived
		if call.tool == "command_exec" {
			// Leave once the command runs: the call is waiting for it.
			for deadline := time.Now().Add(60 * time.Second); len(a.call("GET", cmdURL(id), nil).json(t)["commands"].([]any)) < 2; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the command did not start")
				}
			}
		}
		cancel()
		select {
		case <-answered:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the MCP request still runs 20s after the client left", call.tool)
		}
	}
}
