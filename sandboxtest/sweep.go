package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/opensbx/opensbx"
)

// Engine is the part of the Docker client that Sweep uses. The SDK's
// *client.Client satisfies it.
type Engine interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerRemove(ctx context.Context, container string, options container.RemoveOptions) error
}

// Sweep removes, in every namespace of the engine, the containers labelled
// LabelRun whose LabelDeadline passed: sandboxes of earlier test runs that
// ended without their cleanups (a SIGKILL, a crash). Containers without a
// readable deadline are left alone, and so is everything else on the
// engine. It costs one filtered container list plus one removal per expired
// sandbox. It returns the ids it removed (a container already gone counts
// as removed) and the errors it met, joined.
func Sweep(ctx context.Context, cli Engine) ([]string, error) {
	cs, err := cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelRun)),
	})
	if err != nil {
		return nil, fmt.Errorf("sweep: list containers: %w", err)
	}
	now := time.Now()
	var removed []string
	var errs []error
	for _, c := range cs {
		if !expired(c.Labels, now) {
			continue
		}
		err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			errs = append(errs, fmt.Errorf("sweep: remove %s: %w", shortID(c.ID), err))
			continue
		}
		removed = append(removed, c.ID)
	}
	return removed, errors.Join(errs...)
}

// SweepManager is Sweep through a Manager: it removes the expired
// sandboxes of m's namespace only, with one List and one Delete per expired
// sandbox.
func SweepManager(ctx context.Context, m *opensbx.Manager) ([]string, error) {
	sbs, err := m.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	now := time.Now()
	var removed []string
	var errs []error
	for _, s := range sbs {
		if s.Labels[LabelRun] == "" || !expired(s.Labels, now) {
			continue
		}
		err := m.Delete(ctx, s.ID)
		if err != nil && !errors.Is(err, opensbx.ErrNotFound) && !errors.Is(err, opensbx.ErrConflict) {
			errs = append(errs, fmt.Errorf("sweep: %w", err))
			continue
		}
		removed = append(removed, s.ID)
	}
	return removed, errors.Join(errs...)
}

// expired reports whether labels carry a deadline before now.
func expired(labels map[string]string, now time.Time) bool {
	secs, err := strconv.ParseInt(labels[LabelDeadline], 10, 64)
	return err == nil && secs > 0 && now.Unix() > secs
}
