package main

import (
	"context"
	"testing"

	"github.com/opensbx/opensbx/internal/testenv"
)

// TestRun runs the example end to end against the engine.
func TestRun(t *testing.T) {
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	if err := run(context.Background(), testenv.BusyboxImage); err != nil {
		t.Fatal(err)
	}
}
