package opensbx

import (
	"context"
	"errors"
	"fmt"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

// SweepOptions select what Manager.Sweep removes.
type SweepOptions struct {
	// Label is the key of a label the sandboxes must carry (required): a
	// marker the caller put on them itself, such as sandboxtest's run id.
	Label string
	// AllNamespaces looks at the Opensbx sandboxes of every namespace on the
	// engine, not only the Manager's own: for a test harness that gives
	// each test its own namespace and must clean up after a crashed run.
	// Containers Opensbx did not make are never considered.
	AllNamespaces bool
	// Expired reports, from a sandbox's labels, whether to remove it
	// (required).
	Expired func(labels map[string]string) bool
}

// Sweep removes the Opensbx sandboxes that carry opts.Label and that
// opts.Expired accepts, and returns their ids (a sandbox already gone counts
// as removed). It costs one engine list plus one removal per sandbox
// removed. Only containers labelled as made by Opensbx are considered,
// whatever the options. It fails with ErrInvalid without a Label or
// Expired; removal failures are joined in the error.
func (m *Manager) Sweep(ctx context.Context, opts SweepOptions) ([]string, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if opts.Label == "" || opts.Expired == nil {
		return nil, fmt.Errorf("sweep: %w", sbxerr.Invalid("a label and an Expired function are required"))
	}
	labels := map[string]string{labelManaged: "true", opts.Label: ""}
	if !opts.AllNamespaces {
		labels[labelNamespace] = m.cfg.namespace
	}
	cs, err := m.engine.List(ctx, labels)
	if err != nil {
		return nil, fmt.Errorf("sweep: list sandboxes: %w", err)
	}
	var removed []string
	var errs []error
	for _, c := range cs {
		if c.Labels[labelManaged] != "true" || !opts.Expired(c.Labels) {
			continue
		}
		if m.owns(c.Labels) {
			err = m.remove(ctx, c.ID, c.Labels)
		} else {
			err = m.engine.Remove(ctx, c.ID)
		}
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
			errs = append(errs, fmt.Errorf("sweep: remove %s: %w", shortID(c.ID), err))
			continue
		}
		removed = append(removed, c.ID)
	}
	return removed, errors.Join(errs...)
}
