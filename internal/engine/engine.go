// Package engine is the boundary between Opensbx and the Docker Engine API.
//
// API lists the Engine calls Opensbx makes, so tests can wrap a real client
// (for example to count calls) and a move to another client version stays a
// local change. Classify translates Engine errors into the Opensbx sentinels
// once, by errdefs behaviour, keeping the original error in the chain.
package engine

import (
	"context"
	"errors"
	"io"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// API is the subset of the Docker client that Opensbx uses. The SDK's
// *client.Client satisfies it.
type API interface {
	Ping(ctx context.Context) (types.Ping, error)
	Close() error

	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerInspect(ctx context.Context, container string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerStart(ctx context.Context, container string, options container.StartOptions) error
	ContainerStop(ctx context.Context, container string, options container.StopOptions) error
	ContainerRestart(ctx context.Context, container string, options container.StopOptions) error
	ContainerPause(ctx context.Context, container string) error
	ContainerUnpause(ctx context.Context, container string) error
	ContainerRemove(ctx context.Context, container string, options container.RemoveOptions) error
	ContainerKill(ctx context.Context, container, signal string) error
	ContainerStats(ctx context.Context, container string, stream bool) (container.StatsResponseReader, error)
	ContainerWait(ctx context.Context, container string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)

	ContainerExecCreate(ctx context.Context, container string, options container.ExecOptions) (container.ExecCreateResponse, error)
	ContainerExecAttach(ctx context.Context, execID string, options container.ExecAttachOptions) (types.HijackedResponse, error)
	ContainerExecInspect(ctx context.Context, execID string) (container.ExecInspect, error)
	ContainerExecStart(ctx context.Context, execID string, options container.ExecStartOptions) error

	ContainerStatPath(ctx context.Context, container, path string) (container.PathStat, error)
	CopyFromContainer(ctx context.Context, container, srcPath string) (io.ReadCloser, container.PathStat, error)
	CopyToContainer(ctx context.Context, container, path string, content io.Reader, options container.CopyToContainerOptions) error

	ImageList(ctx context.Context, options image.ListOptions) ([]image.Summary, error)
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error)
	ImageRemove(ctx context.Context, image string, options image.RemoveOptions) ([]image.DeleteResponse, error)
}

var _ API = (*client.Client)(nil)

// NewFromEnv returns a client configured like the docker CLI (DOCKER_HOST,
// DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), or for host when host is not empty,
// negotiating the API version with the engine.
func NewFromEnv(host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	return client.NewClientWithOpts(opts...)
}

// Classify marks an Engine error with the matching Opensbx sentinel:
// not found, conflict (also "not modified", which the engine answers for
// starting a running or stopping a stopped container), invalid input,
// unauthorized, and unavailable when the engine cannot be reached. Context
// errors and unknown errors are returned unchanged. A nil err gives nil.
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
