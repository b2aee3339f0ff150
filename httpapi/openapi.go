package httpapi

import (
	_ "embed"
	"encoding/json"
)

// openapiJSON is the OpenAPI 3 document of the API, with paths relative to
// the prefix. TestOpenAPIMatchesRoutes keeps it equal to the route table.
//
//go:embed openapi.json
var openapiJSON []byte

// OpenAPI returns the OpenAPI 3 document of the API mounted under prefix
// (its "servers" entry is set to prefix). The caller owns the slice.
func OpenAPI(prefix string) []byte { return openAPIDocument(prefix) }

func openAPIDocument(prefix string) []byte {
	var doc map[string]any
	if err := json.Unmarshal(openapiJSON, &doc); err != nil {
		panic("httpapi: embedded openapi.json is invalid: " + err.Error()) // caught by the tests
	}
	url := prefix
	if url == "" {
		url = "/"
	}
	doc["servers"] = []any{map[string]any{"url": url}}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic("httpapi: openapi.json: " + err.Error())
	}
	return append(out, '\n')
}
