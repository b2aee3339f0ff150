package httpapi

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestOpenAPIMatchesRoutes checks that every registered route is in the
// OpenAPI document and every operation of the document is registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	is := is.New(t)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	is.NoErr(json.Unmarshal(openapiJSON, &doc))   // openapi.json is JSON
	is.True(strings.HasPrefix(doc.OpenAPI, "3.")) // OpenAPI 3

	var inDoc, registered []string
	for p, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "parameters", "summary", "description", "servers":
				continue
			}
			inDoc = append(inDoc, strings.ToUpper(method)+" "+p)
		}
	}
	seen := map[string]bool{}
	for _, r := range routes() {
		key := r.method + " " + strings.ReplaceAll(r.path, "...}", "}")
		is.True(!seen[key]) // route listed twice
		seen[key] = true
		registered = append(registered, key)
	}
	sort.Strings(inDoc)
	sort.Strings(registered)
	missing, extra := diff(registered, inDoc), diff(inDoc, registered)
	if len(missing) > 0 {
		t.Errorf("routes missing from openapi.json: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("openapi.json operations with no route: %v", extra)
	}
}

// diff returns the elements of a not in b.
func diff(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	return out
}

func TestOpenAPIDocumentServesPrefix(t *testing.T) {
	is := is.New(t)
	var doc map[string]any
	is.NoErr(json.Unmarshal(OpenAPI("/api"), &doc))
	is.Equal(doc["servers"], []any{map[string]any{"url": "/api"}}) // servers
	is.NoErr(json.Unmarshal(OpenAPI(""), &doc))
	is.Equal(doc["servers"], []any{map[string]any{"url": "/"}}) // root mount
}
