package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/opensbx/opensbx"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{opensbx.ErrInvalid, 400, "BAD_REQUEST"},
		{opensbx.ErrNotFound, 404, "NOT_FOUND"},
		{opensbx.ErrImageNotFound, 404, "NOT_FOUND"},
		{opensbx.ErrConflict, 409, "CONFLICT"},
		{opensbx.ErrTooLarge, 413, "PAYLOAD_TOO_LARGE"},
		{opensbx.ErrUnavailable, 503, "UNAVAILABLE"},
		{opensbx.ErrClosed, 503, "UNAVAILABLE"},
		{opensbx.ErrUnauthorized, 502, "REGISTRY_UNAUTHORIZED"},
		{opensbx.ErrUnsupported, 422, "UNSUPPORTED"},
		{&http.MaxBytesError{Limit: 10}, 413, "PAYLOAD_TOO_LARGE"},
		{errors.New("boom: secret detail"), 500, "INTERNAL_ERROR"},
		{context.Canceled, 500, "INTERNAL_ERROR"},
	}
	for _, c := range cases {
		wrapped := fmt.Errorf("outer: %w", c.err)
		status, code, msg := classify(wrapped)
		if status != c.status || code != c.code {
			t.Errorf("%v: got %d %s, want %d %s", c.err, status, code, c.status, c.code)
		}
		if status == 500 && msg != "internal error" {
			t.Errorf("internal error message leaks: %q", msg)
		}
		if status != 500 && status != 413 && msg != wrapped.Error() {
			t.Errorf("%v: message %q, want the error's", c.err, msg)
		}
	}
}
