package sandboxtest

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/opensbx/opensbx"
)

// Sweep removes, in every namespace of m's engine, the Opensbx sandboxes
// labelled LabelRun whose LabelDeadline passed: sandboxes of earlier test
// runs that ended without their cleanups (a SIGKILL, a crash). Containers
// without a readable deadline are left alone, and so is every container
// that Opensbx did not make or sandboxtest did not label. It costs one
// filtered container list plus one removal per expired sandbox, and
// returns the ids it removed (a container already gone counts as removed)
// and the errors it met, joined.
func Sweep(ctx context.Context, m *opensbx.Manager) ([]string, error) {
	ids, err := m.Sweep(ctx, opensbx.SweepOptions{Label: LabelRun, AllNamespaces: true, Expired: expiredNow()})
	if err != nil {
		return ids, fmt.Errorf("sandboxtest: %w", err)
	}
	return ids, nil
}

// SweepManager is Sweep limited to m's own namespace.
func SweepManager(ctx context.Context, m *opensbx.Manager) ([]string, error) {
	ids, err := m.Sweep(ctx, opensbx.SweepOptions{Label: LabelRun, Expired: expiredNow()})
	if err != nil {
		return ids, fmt.Errorf("sandboxtest: %w", err)
	}
	return ids, nil
}

// expiredNow reports whether labels carry a deadline before now.
func expiredNow() func(labels map[string]string) bool {
	now := time.Now()
	return func(labels map[string]string) bool {
		secs, err := strconv.ParseInt(labels[LabelDeadline], 10, 64)
		return err == nil && secs > 0 && now.Unix() > secs
	}
}
