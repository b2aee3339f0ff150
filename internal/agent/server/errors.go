//go:build linux

package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"github.com/opensbx/opensbx/internal/agent/wire"
)

// opError is an error with the wire code it crosses the wire with.
type opError struct {
	code wire.Code
	msg  string
}

func (e *opError) Error() string { return e.msg }

func newError(code wire.Code, format string, args ...any) error {
	return &opError{code: code, msg: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error  { return newError(wire.CodeInvalid, format, args...) }
func conflict(format string, args ...any) error { return newError(wire.CodeConflict, format, args...) }
func notFound(format string, args ...any) error { return newError(wire.CodeNotFound, format, args...) }
func unsupported(format string, args ...any) error {
	return newError(wire.CodeUnsupported, format, args...)
}
func internal(format string, args ...any) error { return newError(wire.CodeInternal, format, args...) }

// toWire classifies err for the wire: an *opError keeps its code, file
// system errors are classified by their errno, anything else is internal.
func toWire(err error) *wire.Error {
	var oe *opError
	if errors.As(err, &oe) {
		return &wire.Error{Code: oe.code, Message: oe.msg}
	}
	code := wire.CodeInternal
	switch {
	case errors.Is(err, fs.ErrNotExist):
		code = wire.CodeNotFound
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EBUSY), errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.EEXIST):
		code = wire.CodeConflict
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.ELOOP):
		code = wire.CodeInvalid
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EFBIG), errors.Is(err, syscall.EDQUOT):
		code = wire.CodeTooLarge
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = wire.CodeInternal
	}
	return &wire.Error{Code: code, Message: err.Error()}
}

// respond writes a Response with body (nil for none).
func respond(w *wire.Writer, body any) error {
	var r wire.Response
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode response: %w", err)
		}
		r.Body = b
	}
	return w.JSON(r)
}

// respondErr writes a Response carrying err.
func respondErr(w *wire.Writer, err error) error {
	return w.JSON(wire.Response{Error: toWire(err)})
}
