package httpapi

import (
	"errors"
	"net/http"

	"github.com/opensbx/opensbx"
)

// Error codes of the {"code","message"} body.
const (
	codeBadRequest       = "BAD_REQUEST"
	codeUnauthorized     = "UNAUTHORIZED"
	codeForbidden        = "FORBIDDEN" // the MCP endpoint's Host check
	codeNotFound         = "NOT_FOUND"
	codeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	codeConflict         = "CONFLICT"
	codeTooLarge         = "PAYLOAD_TOO_LARGE"
	// codeUnsupportedMediaType: a POST to the MCP endpoint that is not
	// application/json.
	codeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	codeUnprocessable        = "UNSUPPORTED"
	codeRegistryAuth         = "REGISTRY_UNAUTHORIZED"
	codeRegistry             = "REGISTRY_ERROR"
	codeUnavailable          = "UNAVAILABLE"
	codeInternal             = "INTERNAL_ERROR"
	codeRateLimited          = "RATE_LIMITED"
)

// errorTable is the one mapping from library errors to HTTP status and
// code, tried in order with errors.Is. An error matching none of them is a
// 500 INTERNAL_ERROR whose message is generic (the real one is logged).
//
//   - ErrUnauthorized comes only from registries refusing a pull's
//     credentials; it is 502 REGISTRY_UNAUTHORIZED so that it is never
//     confused with a missing or wrong API key (401 UNAUTHORIZED).
//   - ErrUnsupported (the sandbox's image lacks a tool the operation needs,
//     or the backend cannot do it: on Kubernetes pause, resume, the image
//     API, files of a sandbox that does not run) is 422
//     UNSUPPORTED: the request is well-formed but cannot be done on this
//     sandbox.
//   - ErrClosed (the Manager is shutting down) is 503 UNAVAILABLE, like an
//     unreachable engine: retry later.
//   - ErrRateLimited (a quota: WithMaxSandboxes, WithMaxCommands) is 429
//     RATE_LIMITED; it passes when something ends, at a time no one knows,
//     so there is no Retry-After.
func errorTable() []errorEntry {
	return []errorEntry{
		{opensbx.ErrInvalid, http.StatusBadRequest, codeBadRequest},
		{opensbx.ErrNotFound, http.StatusNotFound, codeNotFound}, // includes ErrImageNotFound
		{opensbx.ErrConflict, http.StatusConflict, codeConflict},
		{opensbx.ErrTooLarge, http.StatusRequestEntityTooLarge, codeTooLarge},
		{opensbx.ErrUnavailable, http.StatusServiceUnavailable, codeUnavailable},
		{opensbx.ErrClosed, http.StatusServiceUnavailable, codeUnavailable},
		{opensbx.ErrUnauthorized, http.StatusBadGateway, codeRegistryAuth},
		{opensbx.ErrRegistry, http.StatusBadGateway, codeRegistry},
		{opensbx.ErrUnsupported, http.StatusUnprocessableEntity, codeUnprocessable},
		{opensbx.ErrRateLimited, http.StatusTooManyRequests, codeRateLimited},
	}
}

// errorEntry is one row of errorTable.
type errorEntry struct {
	err    error
	status int
	code   string
}

// apiError is an error the handlers produce themselves, with its status.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(msg string) error {
	return &apiError{status: http.StatusBadRequest, code: codeBadRequest, message: msg}
}

// classify returns the status, code and client-facing message of err.
func classify(err error) (status int, code, message string) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.code, ae.message
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, codeTooLarge, "request body is over the limit of " + itoa(mbe.Limit) + " bytes"
	}
	for _, e := range errorTable() {
		if errors.Is(err, e.err) {
			return e.status, e.code, err.Error()
		}
	}
	return http.StatusInternalServerError, codeInternal, "internal error"
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// fail writes the response for err. Internal errors are logged with the
// request id, which the client also gets in the message.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := classify(err)
	if status == http.StatusInternalServerError {
		if r.Context().Err() != nil {
			// The client is gone; nobody reads the answer.
			return
		}
		id := requestID(r.Context())
		s.log.ErrorContext(r.Context(), "internal error", "request_id", id, "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error (request id " + id + ")"
	}
	s.writeError(w, r, status, code, msg)
}

func (s *server) writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	encode(w, status, errorBody{Code: code, Message: msg})
}
