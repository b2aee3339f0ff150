package engine

import (
	"context"
	"errors"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Classify marks an Engine error with the matching Opensbx sentinel, by the
// error's errdefs kind: not found, conflict (also "not modified", which the
// engine answers for starting a running or stopping a stopped container),
// invalid input, unauthorized, and unavailable when the engine cannot be
// reached. Context errors and unknown errors are returned unchanged. A nil
// err gives nil.
func Classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case client.IsErrConnectionFailed(err):
		return sbxerr.Wrap(sbxerr.ErrUnavailable, err)
	case cerrdefs.IsNotFound(err):
		return sbxerr.Wrap(sbxerr.ErrNotFound, err)
	case cerrdefs.IsConflict(err), cerrdefs.IsNotModified(err):
		return sbxerr.Wrap(sbxerr.ErrConflict, err)
	case cerrdefs.IsInvalidArgument(err):
		return sbxerr.Wrap(sbxerr.ErrInvalid, err)
	case cerrdefs.IsUnauthorized(err), cerrdefs.IsPermissionDenied(err):
		return sbxerr.Wrap(sbxerr.ErrUnauthorized, err)
	case cerrdefs.IsUnavailable(err):
		return sbxerr.Wrap(sbxerr.ErrUnavailable, err)
	}
	return err
}
