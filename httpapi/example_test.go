package httpapi_test

import (
	"context"
	"log"
	"net/http"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/httpapi"
)

// An agent-only server: the MCP endpoint alone, at a path of the program's
// choosing, behind an API key.
func ExampleMCPHandler() {
	ctx := context.Background()
	m, err := opensbx.New(ctx, opensbx.WithStateDir("./opensbx-data"))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	mux := http.NewServeMux()
	mux.Handle("POST /agents/mcp", httpapi.MCPHandler(m, httpapi.WithAPIKeys("secret-key")))
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}
