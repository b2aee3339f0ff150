package httpapi

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
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

// documentedStatuses returns the statuses openapi.json lists for each
// operation, by "METHOD /path" as in the route table ({ref} for {ref...}).
func documentedStatuses(t *testing.T) map[string][]int {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapiJSON, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string][]int{}
	for p, ops := range doc.Paths {
		for method, op := range ops {
			for code := range op.Responses {
				n, err := strconv.Atoi(code)
				if err != nil {
					t.Fatalf("%s %s: response %q is not a status", method, p, code)
				}
				key := strings.ToUpper(method) + " " + p
				out[key] = append(out[key], n)
			}
		}
	}
	for k := range out {
		sort.Ints(out[k])
	}
	return out
}

// TestOpenAPIStatuses checks, per route, that openapi.json lists exactly the
// statuses the handler can answer: its own, those errorTable gives the
// library errors its Manager calls return, 401 (every route but health)
// and 500. The tests of this package also check every status they get from
// a route against the same set (see TestMain).
func TestOpenAPIStatuses(t *testing.T) {
	doc := documentedStatuses(t)
	for _, rt := range routes() {
		key := rt.method + " " + strings.ReplaceAll(rt.path, "...}", "}")
		want, got := rt.statuses(), doc[key]
		if !slices.Equal(want, got) {
			t.Errorf("%s: openapi.json lists %v; the handler answers %v (missing %v, never answered %v)",
				key, got, want, diffInts(want, got), diffInts(got, want))
		}
		if !rt.open && !slices.Contains(got, 401) {
			t.Errorf("%s: 401 not documented", key)
		}
	}
}

func diffInts(a, b []int) []int {
	var out []int
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// TestRouteStatusesFollowTheErrorTable guards the derivation: a status the
// error table gives a route's errors is among its statuses.
func TestRouteStatusesFollowTheErrorTable(t *testing.T) {
	for _, rt := range routes() {
		for _, err := range rt.fails {
			status, code, _ := classify(fmt.Errorf("x: %w", err))
			if status == 500 {
				t.Errorf("%s %s: %v is not in the error table", rt.method, rt.path, err)
			}
			if !slices.Contains(rt.statuses(), status) {
				t.Errorf("%s %s: %v (%d %s) missing", rt.method, rt.path, err, status, code)
			}
		}
	}
}

func TestOpenAPIDocumentServesPrefix(t *testing.T) {
	is := is.New(t)
	var doc map[string]any
	is.NoErr(json.Unmarshal(OpenAPI("/api"), &doc))
	is.Equal(doc["servers"], []any{map[string]any{"url": "/api"}}) // servers
	is.NoErr(json.Unmarshal(OpenAPI(""), &doc))
	is.Equal(doc["servers"], []any{map[string]any{"url": "/"}}) // root mount
}
