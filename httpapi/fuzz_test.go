package httpapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/opensbx/opensbx/httpapi"
)

// The fuzz targets send their input through the real handlers (in process,
// no network) of a server whose Manager is closed: input the handlers
// reject is 4xx, input they accept reaches the Manager and is 503. Nothing
// may be a 500 (a bug or a recovered panic). Seeds are generated from the
// request schemas of openapi.json (plus the corpus in testdata/fuzz).
//
//	go test -run '^$' -fuzz FuzzJSONBodies -fuzztime 10s ./httpapi/
//	go test -run '^$' -fuzz FuzzMCPArguments -fuzztime 10s ./httpapi/

// bodyRoute is an operation of openapi.json that takes a JSON body.
type bodyRoute struct {
	method, path string
	schema       map[string]any // the request body's schema, $refs resolved
}

// openapiDoc is openapi.json, decoded.
func openapiDoc(t testing.TB) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(httpapi.OpenAPI("/v1"), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// resolve follows a "$ref" to components/schemas.
func resolve(doc, s map[string]any) map[string]any {
	if ref, ok := s["$ref"].(string); ok {
		name := ref[strings.LastIndex(ref, "/")+1:]
		return doc["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any)
	}
	return s
}

// bodyRoutes lists the operations with a JSON request body, sorted.
func bodyRoutes(t testing.TB) (map[string]any, []bodyRoute) {
	doc := openapiDoc(t)
	var out []bodyRoute
	for p, ops := range doc["paths"].(map[string]any) {
		if p == "/mcp" {
			continue // FuzzMCPArguments
		}
		for method, op := range ops.(map[string]any) {
			rb, ok := op.(map[string]any)["requestBody"].(map[string]any)
			if !ok {
				continue
			}
			js, ok := rb["content"].(map[string]any)["application/json"].(map[string]any)
			if !ok {
				continue
			}
			out = append(out, bodyRoute{strings.ToUpper(method), p, resolve(doc, js["schema"].(map[string]any))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].method+out[i].path < out[j].method+out[j].path })
	return doc, out
}

// example builds a value matching schema s: each property present.
func example(doc, s map[string]any, depth int) any {
	s = resolve(doc, s)
	if one, ok := s["oneOf"].([]any); ok {
		return example(doc, one[0].(map[string]any), depth)
	}
	switch s["type"] {
	case "object":
		out := map[string]any{}
		props, _ := s["properties"].(map[string]any)
		for name, ps := range props {
			if depth < 3 {
				out[name] = example(doc, ps.(map[string]any), depth+1)
			}
		}
		return out
	case "array":
		return []any{example(doc, s["items"].(map[string]any), depth+1)}
	case "string":
		if enum, ok := s["enum"].([]any); ok {
			return enum[0]
		}
		return "busybox:1"
	case "integer":
		return 15
	case "number":
		return 1.5
	case "boolean":
		return true
	}
	return nil
}

// schemaSeeds derives bodies from a request schema: a full example, the
// empty object, each property set to null, to a wrong type and left out.
func schemaSeeds(doc map[string]any, r bodyRoute) [][]byte {
	full, _ := example(doc, r.schema, 0).(map[string]any)
	seeds := [][]byte{[]byte(`{}`), []byte(``), []byte(`null`), []byte(`[]`)}
	add := func(v any) {
		b, _ := json.Marshal(v)
		seeds = append(seeds, b)
	}
	add(full)
	var names []string
	for name := range full {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, v := range []any{nil, "x", 1e308, -1, []any{}, map[string]any{}, true} {
			m := maps(full)
			m[name] = v
			add(m)
		}
		m := maps(full)
		delete(m, name)
		add(m)
	}
	return seeds
}

func maps(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// closedAPI is the API of a Manager on the engine that is closed at once.
func closedAPI(f *testing.F) http.Handler {
	m, _ := newManager(f)
	m.Close()
	return httpapi.New(m, httpapi.WithMaxBodyBytes(64<<10), httpapi.ObserveStatuses(observe))
}

func FuzzJSONBodies(f *testing.F) {
	doc, routes := bodyRoutes(f)
	if len(routes) < 6 {
		f.Fatalf("only %d routes with a JSON body in openapi.json", len(routes))
	}
	for i, r := range routes {
		for _, s := range schemaSeeds(doc, r) {
			f.Add(uint8(i), s)
		}
	}
	h := closedAPI(f)
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		r := routes[int(which)%len(routes)]
		path := "/v1" + strings.NewReplacer("{id}", "fuzz-sb", "{cmdId}", "cmd_fuzz").Replace(r.path)
		if strings.HasSuffix(path, "/files") {
			path += "?path=/fuzz/f"
		}
		req := httptest.NewRequest(r.method, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var e struct{ Code, Message string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
				t.Fatalf("%s %s %q: %d, not a JSON error: %s", r.method, r.path, body, rec.Code, rec.Body)
			}
		}
	})
}

func FuzzMCPArguments(f *testing.F) {
	a := newAPI(f, nil) // only to list the tools; calls go to the closed one
	c := a.mcp(f, nil)
	res, err := c.cs.ListTools(f.Context(), nil)
	if err != nil {
		f.Fatal(err)
	}
	tools := res.Tools
	slices.SortFunc(tools, func(a, b *mcp.Tool) int { return strings.Compare(a.Name, b.Name) })
	names := make([]string, len(tools))
	doc := openapiDoc(f)
	for i, tool := range tools {
		names[i] = tool.Name
		// Seeds from the tool's input schema.
		b, _ := json.Marshal(tool.InputSchema)
		var schema map[string]any
		if err := json.Unmarshal(b, &schema); err != nil {
			f.Fatal(err)
		}
		fixTypes(schema)
		for _, s := range schemaSeeds(doc, bodyRoute{schema: schema}) {
			f.Add(uint8(i), s)
		}
	}
	h := closedAPI(f)
	f.Fuzz(func(t *testing.T, which uint8, args []byte) {
		if !json.Valid(args) {
			return // the client could not send it; FuzzJSONBodies covers broken JSON
		}
		name := names[int(which)%len(names)]
		msg := fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, name, args)
		req := httptest.NewRequest("POST", "/v1/mcp", strings.NewReader(msg))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s %s: HTTP %d %s", name, args, rec.Code, rec.Body)
		}
		var resp struct {
			Result *struct {
				IsError bool           `json:"isError"`
				Meta    map[string]any `json:"_meta"`
			} `json:"result"`
			Error any `json:"error"`
		}
		if err := json.Unmarshal(sseData(t, rec.Body.Bytes()), &resp); err != nil {
			t.Fatalf("%s %s: %v: %s", name, args, err, rec.Body)
		}
		if resp.Result == nil {
			if string(args) == "null" || args[0] != '{' {
				return // not an arguments object: a protocol error is right
			}
			t.Fatalf("%s %s: protocol error %v, want a tool result", name, args, resp.Error)
		}
		if !resp.Result.IsError {
			t.Fatalf("%s %s: succeeded on a closed Manager", name, args)
		}
		if status, _ := resp.Result.Meta["status"].(float64); status == 500 || status == 0 {
			t.Fatalf("%s %s: tool error with status %v", name, args, resp.Result.Meta)
		}
	})
}

// fixTypes turns the generated schemas' type lists (["null","string"])
// into one type, for example.
func fixTypes(s map[string]any) {
	if ts, ok := s["type"].([]any); ok {
		for _, x := range ts {
			if x != "null" {
				s["type"] = x
			}
		}
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for _, p := range props {
			if m, ok := p.(map[string]any); ok {
				fixTypes(m)
			}
		}
	}
	if items, ok := s["items"].(map[string]any); ok {
		fixTypes(items)
	}
}

// sseData returns the JSON-RPC message of an MCP answer: the body, or the
// data of its last "message" event.
func sseData(t *testing.T, body []byte) []byte {
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return body
	}
	var last []byte
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		if d, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: ")); ok {
			last = append([]byte(nil), d...)
		}
	}
	if last == nil {
		t.Fatalf("no event in %q", body)
	}
	return last
}
