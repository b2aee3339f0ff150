package opensbx

import "github.com/opensbx/opensbx/internal/sbxerr"

// Sentinel errors. Every error a Manager returns matches at most one of these
// with errors.Is (ErrImageNotFound also matches ErrNotFound); errors that came
// from the Docker engine keep the engine's error in their chain.
var (
	// ErrNotFound: the sandbox, command, file or image does not exist, or
	// belongs to another namespace or to no Opensbx manager at all.
	ErrNotFound = sbxerr.ErrNotFound
	// ErrConflict: the call does not fit the current state (starting a
	// running sandbox, pausing a stopped one, killing a finished command, a
	// Create whose Name is taken by different settings).
	ErrConflict = sbxerr.ErrConflict
	// ErrInvalid: the caller's input is malformed or out of range.
	ErrInvalid = sbxerr.ErrInvalid
	// ErrImageNotFound: the image is not present locally (pull it first) or
	// not in its registry. It also matches ErrNotFound.
	ErrImageNotFound = sbxerr.ErrImageNotFound
	// ErrUnavailable: the Docker engine cannot be reached.
	ErrUnavailable = sbxerr.ErrUnavailable
	// ErrClosed: the Manager has been closed.
	ErrClosed = sbxerr.ErrClosed
	// ErrTooLarge: a file or request is over its configured size limit.
	ErrTooLarge = sbxerr.ErrTooLarge
	// ErrUnsupported: the sandbox's image lacks a tool the operation needs
	// (for example rm for deleting files in an image without coreutils).
	ErrUnsupported = sbxerr.ErrUnsupported
	// ErrUnauthorized: a registry refused the credentials of a pull.
	ErrUnauthorized = sbxerr.ErrUnauthorized
	// ErrRegistry: a registry failed a pull for another reason (it could
	// not be reached, or sent something broken); the message is the
	// engine's.
	ErrRegistry = sbxerr.ErrRegistry
	// ErrRateLimited: a quota would be exceeded (WithMaxSandboxes,
	// WithMaxCommands); retry once something has ended.
	ErrRateLimited = sbxerr.ErrRateLimited
)
