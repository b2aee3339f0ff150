//go:build !opensbx_commands

package httpapi

import "net/http"

// Placeholders until the library's commands land.

func (s *server) notYet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, http.StatusNotImplemented, "NOT_IMPLEMENTED", "not implemented yet")
	})
}

func (s *server) handleCommandRun() http.Handler   { return s.notYet() }
func (s *server) handleCommandList() http.Handler  { return s.notYet() }
func (s *server) handleCommandGet() http.Handler   { return s.notYet() }
func (s *server) handleCommandKill() http.Handler  { return s.notYet() }
func (s *server) handleCommandLogs() http.Handler  { return s.notYet() }
func (s *server) handleCommandStdin() http.Handler { return s.notYet() }
