package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/opensbx/opensbx/internal/sbxerr"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		in   error
		want error // nil: returned unchanged
	}{
		{"not found", fmt.Errorf("no such container: %w", cerrdefs.ErrNotFound), sbxerr.ErrNotFound},
		{"conflict", cerrdefs.ErrConflict, sbxerr.ErrConflict},
		{"not modified", cerrdefs.ErrNotModified, sbxerr.ErrConflict},
		{"invalid", cerrdefs.ErrInvalidArgument, sbxerr.ErrInvalid},
		{"unauthorized", cerrdefs.ErrUnauthenticated, sbxerr.ErrUnauthorized},
		{"forbidden", cerrdefs.ErrPermissionDenied, sbxerr.ErrUnauthorized},
		{"unavailable", cerrdefs.ErrUnavailable, sbxerr.ErrUnavailable},
		{"context", context.Canceled, nil},
		{"unknown", errors.New("boom"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.in)
			if !errors.Is(got, tt.in) {
				t.Fatalf("Classify(%v) lost the original error", tt.in)
			}
			if got.Error() != tt.in.Error() {
				t.Fatalf("Classify changed the message: %q", got.Error())
			}
			if tt.want == nil {
				if got != tt.in {
					t.Fatalf("Classify(%v) = %v, want it unchanged", tt.in, got)
				}
				return
			}
			if !errors.Is(got, tt.want) {
				t.Fatalf("Classify(%v) = %v, want it to match %v", tt.in, got, tt.want)
			}
		})
	}
	if Classify(nil) != nil {
		t.Fatal("Classify(nil) != nil")
	}
}
