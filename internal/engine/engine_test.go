package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"

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

func TestRegistryKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		text string
		code int
		want error
	}{
		{"manifest for x:1 not found: manifest unknown: manifest unknown", 0, sbxerr.ErrImageNotFound},
		{"pull access denied for x, repository does not exist or may require 'docker login'", 0, sbxerr.ErrImageNotFound},
		{"repository x not found: name unknown", 0, sbxerr.ErrImageNotFound},
		{"unauthorized: authentication required", 0, sbxerr.ErrUnauthorized},
		{"Head \"http://r/v2/x/manifests/1\": no basic auth credentials", 0, sbxerr.ErrUnauthorized},
		{"something", 401, sbxerr.ErrUnauthorized},
		{"something", 404, sbxerr.ErrImageNotFound},
		{"download failed after attempts=1: unknown blob", 0, nil},
		{"dial tcp 127.0.0.1:1: connect: connection refused", 0, nil},
	} {
		if got := registryKind(tc.text, tc.code); got != tc.want {
			t.Errorf("registryKind(%q, %d) = %v, want %v", tc.text, tc.code, got, tc.want)
		}
	}
	err := streamError(jsonmessage.JSONMessage{Error: &jsonmessage.JSONError{Message: "denied: no (registry)"}})
	if !errors.Is(err, sbxerr.ErrUnauthorized) || err.Error() != "denied: no (registry)" {
		t.Errorf("streamError: %v", err)
	}
}
