package agent

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opensbx/opensbx/internal/agent/wire"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Errors of the client. The first five are Opensbx's own sentinels
// (package sbxerr, re-exported by the root package), so an agent's
// not_found answer matches opensbx.ErrNotFound without any mapping; the
// others are the agent's own.
var (
	// ErrNotFound: the command, file or directory does not exist.
	ErrNotFound = sbxerr.ErrNotFound
	// ErrConflict: the call does not fit the current state (a finished
	// command, a parent that is not a directory, a duplicate command id).
	ErrConflict = sbxerr.ErrConflict
	// ErrInvalid: bad input (a relative path, a bad signal, a bad archive).
	ErrInvalid = sbxerr.ErrInvalid
	// ErrTooLarge: a file over the read limit, or a full disk.
	ErrTooLarge = sbxerr.ErrTooLarge
	// ErrUnsupported: the agent cannot do this (an unknown operation, no
	// cgroup file system).
	ErrUnsupported = sbxerr.ErrUnsupported

	// ErrInternal: the agent failed for a reason of its own.
	ErrInternal = errors.New("agent internal error")
	// ErrProtocol: the agent broke the protocol (a malformed or oversized
	// frame, an unknown error code, a stream that ended early, an answer
	// that does not fit the question). Code in a sandbox can replace its
	// agent, so this is to be expected from a hostile sandbox.
	ErrProtocol = errors.New("agent protocol violation")
	// ErrIncompatible: the agent speaks another protocol version.
	ErrIncompatible = errors.New("agent protocol version not supported")
	// ErrSessionClosed: the session to the agent has ended (Close, or the
	// connection failed: the agent or its relay died, the sandbox stopped).
	// Every later call fails with it.
	ErrSessionClosed = errors.New("agent session closed")
)

// maxMessage bounds the text of an error from the agent.
const maxMessage = 4 << 10

// RemoteError is an operation that the agent reported as failed. It
// matches (errors.Is) the sentinel of its Code.
type RemoteError struct {
	// Op is the operation.
	Op wire.Op
	// Code classifies the failure.
	Code wire.Code
	// Message is the agent's explanation (at most 4 KiB).
	Message string
}

// Error returns the agent's message.
func (e *RemoteError) Error() string { return e.Message }

// Is matches the sentinel of the error's code.
func (e *RemoteError) Is(target error) bool {
	return target == codeSentinel(e.Code)
}

func codeSentinel(c wire.Code) error {
	switch c {
	case wire.CodeNotFound:
		return ErrNotFound
	case wire.CodeConflict:
		return ErrConflict
	case wire.CodeInvalid:
		return ErrInvalid
	case wire.CodeTooLarge:
		return ErrTooLarge
	case wire.CodeUnsupported:
		return ErrUnsupported
	}
	return ErrInternal
}

func remoteError(op wire.Op, e *wire.Error) error {
	msg := e.Message
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage], "") + "..."
	}
	if msg == "" {
		msg = string(e.Code)
	}
	return &RemoteError{Op: op, Code: e.Code, Message: msg}
}

func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}
