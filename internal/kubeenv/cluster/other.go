//go:build !linux

package cluster

import (
	"context"
	"errors"
	"io"
)

// ErrNotUp means no cluster is up.
var ErrNotUp = errors.New("no cluster is up")

var errLinuxOnly = errors.New("kubecluster runs on Linux only")

// Up is Linux only.
func (c *Cluster) Up(ctx context.Context) (string, error) { return "", errLinuxOnly }

// Down is Linux only.
func (c *Cluster) Down(ctx context.Context) error { return errLinuxOnly }

// Status is Linux only.
func (c *Cluster) Status(ctx context.Context, w io.Writer) error { return errLinuxOnly }

// Import is Linux only.
func (c *Cluster) Import(ctx context.Context, images []string) error { return errLinuxOnly }
