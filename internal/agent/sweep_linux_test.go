//go:build linux

package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/opensbx/opensbx/internal/testenv"
)

// Labels on every container the engine tests create.
const (
	testRunLabel   = "opensbx-test.run"
	testAgentLabel = "opensbx-test.agent"
)

// testRun is this test binary's run id.
var testRun = func() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}()

// sweepContainers removes every container of this run that a test left
// behind (tests remove their own; this is the safety net).
func sweepContainers() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := testenv.Connect(ctx)
	if err != nil {
		return nil // no engine: nothing was created
	}
	defer cli.Close()
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", testRunLabel+"="+testRun))})
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return err
		}
	}
	return nil
}
