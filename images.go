package opensbx

import (
	"context"
	"errors"
	"fmt"

	"github.com/opensbx/opensbx/internal/engine"
)

// pullGroup shares concurrent pulls of one reference. (Placeholder until the
// images feature lands.)
type pullGroup struct{ m *Manager }

func newPullGroup(m *Manager) *pullGroup { return &pullGroup{m: m} }

// ensureImage checks that ref is present locally, pulling it when pull is set.
func (m *Manager) ensureImage(ctx context.Context, ref string, pull bool) error {
	_, err := m.docker.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	err = engine.Classify(err)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("image %q is not present locally; pull it first: %w", ref, errors.Join(ErrImageNotFound, err))
	}
	return fmt.Errorf("image %q: %w", ref, err)
}
