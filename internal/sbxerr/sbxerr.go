// Package sbxerr holds the sentinel errors shared by every Opensbx package.
//
// The root package re-exports them (opensbx.ErrNotFound is sbxerr.ErrNotFound),
// so internal packages can return them without importing the root package.
package sbxerr

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound reports that a sandbox, command, file or image does not exist
	// (or is not visible to this manager).
	ErrNotFound = errors.New("not found")
	// ErrConflict reports a call that does not fit the current state, such as
	// starting a running sandbox or killing a finished command.
	ErrConflict = errors.New("conflict")
	// ErrInvalid reports bad input from the caller.
	ErrInvalid = errors.New("invalid input")
	// ErrImageNotFound reports that an image is not present locally or in its
	// registry. It matches ErrNotFound as well.
	ErrImageNotFound = fmt.Errorf("image %w", ErrNotFound)
	// ErrUnavailable reports that the Docker engine cannot be reached.
	ErrUnavailable = errors.New("docker engine unavailable")
	// ErrClosed reports a call on a Manager after Close.
	ErrClosed = errors.New("manager closed")
	// ErrTooLarge reports input or output over a configured size limit.
	ErrTooLarge = errors.New("too large")
	// ErrUnsupported reports an operation the sandbox's image cannot perform,
	// for example because it lacks a tool the operation needs.
	ErrUnsupported = errors.New("unsupported by image")
	// ErrUnauthorized reports credentials a registry refused.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrRegistry reports a registry that failed a pull (unreachable, or
	// a broken answer) for a reason other than a missing image or refused
	// credentials.
	ErrRegistry = errors.New("registry error")
	// ErrRateLimited reports a quota or limit that the call would exceed.
	ErrRateLimited = errors.New("limit reached")
)

// Invalid returns an error matching ErrInvalid with the given message.
func Invalid(format string, args ...any) error {
	return &kindError{kind: ErrInvalid, msg: fmt.Sprintf(format, args...)}
}

// Conflict returns an error matching ErrConflict with the given message.
func Conflict(format string, args ...any) error {
	return &kindError{kind: ErrConflict, msg: fmt.Sprintf(format, args...)}
}

// NotFound returns an error matching ErrNotFound with the given message.
func NotFound(format string, args ...any) error {
	return &kindError{kind: ErrNotFound, msg: fmt.Sprintf(format, args...)}
}

// New returns an error matching kind whose text is the message alone.
func New(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// kindError is a message that matches a sentinel without repeating the
// sentinel's text.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Is(target error) bool {
	return target == e.kind || errors.Is(e.kind, target)
}

// Wrap returns err marked as kind: errors.Is(result, kind) holds and the
// original error stays in the chain. A nil err gives nil.
func Wrap(kind, err error) error {
	if err == nil {
		return nil
	}
	return &wrapError{kind: kind, err: err}
}

type wrapError struct {
	kind error
	err  error
}

func (e *wrapError) Error() string { return e.err.Error() }
func (e *wrapError) Unwrap() error { return e.err }
func (e *wrapError) Is(target error) bool {
	return target == e.kind || errors.Is(e.kind, target)
}
