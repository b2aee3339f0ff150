package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/opensbx/opensbx"
)

type healthResponse struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	Time   string `json:"time"`
	// Pool reports the warm pool of each template, when there is one.
	Pool []opensbx.PoolStatus `json:"pool,omitempty"`
}

// handleHealth answers 200 {"status":"healthy"} when the engine answers a
// ping within 5 seconds, else 503 {"status":"unhealthy","error":...}. It
// never needs an API key.
func (s *server) handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		now := time.Now().UTC().Format(time.RFC3339)
		if err := s.m.Ping(ctx); err != nil {
			s.log.WarnContext(r.Context(), "health check failed", "request_id", requestID(r.Context()), "err", err)
			encode(w, http.StatusServiceUnavailable, healthResponse{Status: "unhealthy", Error: "docker engine unavailable", Time: now})
			return
		}
		encode(w, http.StatusOK, healthResponse{Status: "healthy", Time: now, Pool: s.m.Pool()})
	})
}

// handleOpenAPI serves the OpenAPI 3 document of the API.
func (s *server) handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.openapi)
	})
}
