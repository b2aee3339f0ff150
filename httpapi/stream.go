package httpapi

import (
	"encoding/json"
	"net/http"
)

// ndjson writes an application/x-ndjson response, one JSON value per line,
// each flushed at once so that clients see records as they happen.
type ndjson struct {
	rc  *http.ResponseController
	enc *json.Encoder
}

// startNDJSON sends the 200 header of a stream and flushes it.
func startNDJSON(w http.ResponseWriter) *ndjson {
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	s := &ndjson{rc: http.NewResponseController(w), enc: json.NewEncoder(w)}
	s.enc.SetEscapeHTML(false)
	_ = s.rc.Flush()
	return s
}

// send writes one record and flushes it. An error means the client is gone.
func (s *ndjson) send(v any) error {
	if err := s.enc.Encode(v); err != nil {
		return err
	}
	return s.rc.Flush()
}

// streamError is the last record of a stream that failed after its 200
// header went out.
type streamError struct {
	Error errorBody `json:"error"`
}

// sendError ends a stream with an {"error":{code,message}} record.
func (s *server) sendError(st *ndjson, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	status, code, msg := classify(err)
	if status == http.StatusInternalServerError {
		id := requestID(r.Context())
		s.log.ErrorContext(r.Context(), "internal error in stream", "request_id", id, "path", r.URL.Path, "err", err)
		msg = "internal error (request id " + id + ")"
	}
	_ = st.send(streamError{Error: errorBody{Code: code, Message: msg}})
}
