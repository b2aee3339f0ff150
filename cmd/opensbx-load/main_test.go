package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// smallRun are the flags of a short run with a handful of clients.
var smallRun = []string{"-clients", "4", "-duration", "4s", "-sandboxes", "4", "-min-sandboxes", "2", "-sample", "1s", "-request-timeout", "2m"}

// ownRun returns a fresh run id and registers a check that the run left
// no container in its namespace (which also removes any it finds, so that
// a failing test cleans up too).
func ownRun(t *testing.T) string {
	t.Helper()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	var b [4]byte
	rand.Read(b[:])
	id := "t" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cs, err := cli.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", labelNamespace+"="+ownNamespace(id)))})
		if err != nil {
			t.Errorf("list the run's containers: %v", err)
		}
		for _, c := range cs {
			t.Errorf("left behind: %s %v", c.ID[:12], c.Names)
			if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
				t.Errorf("remove %s: %v", c.ID[:12], err)
			}
		}
	})
	return id
}

func noEnv(string) string { return "" }

// TestSmoke runs the command for a few seconds with a handful of clients
// against a server it builds and starts, and checks the report: every
// operation succeeded at least once, no 5xx, no wrong answer, no
// unexpected 4xx, both leak checks ran and found nothing, the memory was
// sampled, the server stopped cleanly. Figures are not judged.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server and runs sandboxes")
	}
	is := is.New(t)
	id := ownRun(t)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append([]string{"-id", id, "-json"}, smallRun...), noEnv, &stdout, &stderr)
	t.Logf("stderr:\n%s", stderr.String())
	var rep report
	is.NoErr(json.Unmarshal(stdout.Bytes(), &rep)) // stdout is only the JSON report
	if err != nil {
		t.Logf("report:\n%s", stdout.String())
	}
	is.NoErr(err) // a clean run
	is.Equal(rep.Run.ID, id)
	is.Equal(rep.Server.Mode, "child")
	is.Equal(rep.Server.Namespace, ownNamespace(id))
	is.Equal(len(rep.Ops), int(numKinds))
	for i, o := range rep.Ops {
		is.Equal(o.Name, kindNames[i])
		if o.OK == 0 {
			t.Errorf("no successful %s", o.Name)
		}
		is.True(o.P50 > 0 && o.P50 <= o.P99 && o.P99 <= o.Max) // ordered latencies
	}
	is.Equal(rep.Errors.Server5xx, 0)          // no 5xx
	is.Equal(len(rep.Errors.Server), 0)        // none listed
	is.Equal(rep.Errors.Wrong, 0)              // no wrong answer
	is.Equal(sum(rep.Errors.Unexpected4xx), 0) // no unexpected 4xx
	is.True(rep.Leaks.APIChecked && rep.Leaks.DockerChecked)
	is.Equal(len(rep.Leaks.API), 0)      // nothing listed after the cleanup
	is.Equal(len(rep.Leaks.Docker), 0)   // nothing on the engine
	is.True(rep.Leaks.DockerBefore >= 2) // and the check could have seen the live sandboxes
	is.Equal(rep.Sandboxes.Created, rep.Sandboxes.Deleted)
	is.True(rep.Sandboxes.Created >= 2)
	is.Equal(rep.Warmup.Created, 2)
	is.Equal(rep.Server.Exit, "clean (SIGTERM)")
	is.Equal(len(rep.Problems), 0)
	labels := map[string]bool{}
	for _, m := range rep.Memory {
		is.Equal(m.Error, "")
		is.True(m.RSS > 0 && m.Peak >= m.RSS && m.Threads > 0) // a real /proc sample
		labels[m.Label] = true
	}
	is.True(labels["start"] && labels["load begins"] && labels["end"] && labels["after cleanup"])
	is.True(len(rep.Memory) >= 5) // and at least one periodic sample
}

// TestInterrupted cancels the run (as SIGINT does) once the load has
// begun and checks that the run says so, exits with the problems error,
// and (in ownRun's cleanup) that nothing is left on the engine.
func TestInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server and runs sandboxes")
	}
	is := is.New(t)
	id := ownRun(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr := &lineWatch{want: "load begins", hit: cancel}
	var stdout bytes.Buffer
	err := run(ctx, []string{"-id", id, "-json", "-clients", "4", "-duration", "5m", "-sandboxes", "3", "-min-sandboxes", "2"}, noEnv, &stdout, pr)
	t.Logf("stderr:\n%s", pr.buf.String())
	is.True(errors.Is(err, errProblems)) // an interrupted run is not clean
	var rep report
	is.NoErr(json.Unmarshal(stdout.Bytes(), &rep)) // the report is printed
	is.True(rep.Interrupted)
	is.Equal(rep.Warmup.Created, 2)
	is.True(rep.Leaks.DockerChecked)
	is.Equal(rep.Server.Exit, "clean (SIGTERM)")
}

// lineWatch is a progress writer that calls hit when a line with want
// appears.
type lineWatch struct {
	buf  bytes.Buffer
	want string
	hit  func()
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if strings.Contains(string(p), w.want) {
		// Let a few requests start before the interrupt.
		time.AfterFunc(500*time.Millisecond, w.hit)
	}
	return len(p), nil
}
