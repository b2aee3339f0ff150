package kube

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/kubeenv"
	"github.com/opensbx/opensbx/internal/sbxerr"
	"github.com/opensbx/opensbx/internal/testenv"
)

// testCluster returns the engine on the test cluster (skipped without one)
// with the test busybox image in it.
func testCluster(t *testing.T) *Kube {
	t.Helper()
	path := kubeenv.Kubeconfig(t)
	testenv.Images(t, testenv.Engine(t))
	kubeenv.Import(t, testenv.BusyboxImage)
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := New(Config{Rest: rc, PullPolicy: "Never", AgentImage: "unused:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// runPod makes and starts a busybox pod running sleep; it is removed when
// the test ends.
func runPod(t *testing.T, k *Kube, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	id, err := k.Create(ctx, engine.ContainerSpec{Name: "kube-test-" + newID()[:8], Image: testenv.BusyboxImage, Entrypoint: []string{"sleep", "3600"}, Labels: labels, Init: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Remove(context.Background(), id); err != nil && !errors.Is(err, sbxerr.ErrNotFound) {
			t.Errorf("remove: %v", err)
		}
	})
	if err := k.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestKubeEngineExec(t *testing.T) {
	is := is.New(t)
	k := testCluster(t)
	ctx := context.Background()
	id := runPod(t, k, map[string]string{"org.opensbx.test": "exec"})

	x, err := k.Exec(ctx, id, engine.ExecSpec{Cmd: []string{"sh", "-c", "cat; echo err >&2; exit 7"}, Stdin: true})
	is.NoErr(err)
	go func() {
		x.Write([]byte("to stdin"))
		x.CloseWrite()
	}()
	var out, errOut bytes.Buffer
	is.NoErr(x.Output(&out, &errOut))
	is.Equal(out.String(), "to stdin")
	is.Equal(errOut.String(), "err\n")
	st, err := k.ExecInspect(ctx, x.ID())
	is.NoErr(err)
	is.True(!st.Running)
	is.Equal(st.ExitCode, 7) // the process's exit status

	// A write that blocks gives up at the deadline.
	x, err = k.Exec(ctx, id, engine.ExecSpec{Cmd: []string{"sleep", "30"}, Stdin: true})
	is.NoErr(err)
	is.NoErr(x.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)))
	big := bytes.Repeat([]byte("x"), 64<<20)
	_, err = x.Write(big)
	is.True(err != nil) // nobody reads: the deadline passed
	x.Close()

	_, err = k.Exec(ctx, id, engine.ExecSpec{Cmd: []string{"id"}, User: "1000"})
	is.True(errors.Is(err, sbxerr.ErrUnsupported)) // only the agent runs as others
	_, err = k.Exec(ctx, strings.Repeat("0", 64), engine.ExecSpec{Cmd: []string{"true"}})
	is.NoErr(err) // no request before the stream: its end says
}

func TestKubeEngineListRenameEvents(t *testing.T) {
	is := is.New(t)
	k := testCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := newID()[:12]
	labels := map[string]string{"org.opensbx.test-run": run, "note": "not a label value!"}
	evs, errc := k.Events(ctx, map[string]string{"org.opensbx.test-run": run})
	id := runPod(t, k, labels)

	list, err := k.List(ctx, map[string]string{"org.opensbx.test-run": run, "note": "not a label value!"})
	is.NoErr(err)
	is.Equal(len(list), 1)
	is.Equal(list[0].ID, id)
	is.Equal(list[0].Labels, labels) // whole, from the annotation
	list, err = k.List(ctx, map[string]string{"org.opensbx.test-run": run, "note": "other"})
	is.NoErr(err)
	is.Equal(len(list), 0) // filtered on the client where the server cannot

	other := runPod(t, k, map[string]string{"org.opensbx.test-run": run})
	// A watch opened now reports what happens from now on: no create for
	// the pods already there, as Docker's events would not.
	later, laterErrc := k.Events(ctx, map[string]string{"org.opensbx.test-run": run})
	c, err := k.Inspect(ctx, other)
	is.NoErr(err)
	is.True(errors.Is(k.Rename(ctx, id, c.Name), sbxerr.ErrConflict)) // the name is taken
	is.NoErr(k.Rename(ctx, id, "renamed-"+run))
	c, err = k.Inspect(ctx, id)
	is.NoErr(err)
	is.Equal(c.Name, "renamed-"+run)
	_, err = k.Create(ctx, engine.ContainerSpec{Name: "renamed-" + run, Image: testenv.BusyboxImage})
	is.True(errors.Is(err, sbxerr.ErrConflict)) // names are unique

	is.NoErr(k.Remove(ctx, id))
	_, err = k.Inspect(ctx, id)
	is.True(errors.Is(err, sbxerr.ErrNotFound)) // gone when Remove returns
	seen, seenLater := map[string]bool{}, map[string]bool{}
	for !(seen["create"] && seen["start"] && seen["rename"] && seen["destroy"] && seenLater["destroy"]) {
		select {
		case ev := <-evs:
			if ev.ContainerID == id {
				seen[ev.Action] = true
			}
		case ev := <-later:
			if ev.Action == "create" || ev.Action == "start" {
				t.Fatalf("a watch opened later replayed %s for %s", ev.Action, ev.ContainerID)
			}
			if ev.ContainerID == id {
				seenLater[ev.Action] = true
			}
		case err := <-laterErrc:
			t.Fatalf("later events: %v", err)
		case err := <-errc:
			t.Fatalf("events: %v", err)
		case <-ctx.Done():
			t.Fatalf("events seen: %v", seen)
		}
	}
}

func TestKubeEngineUnsupported(t *testing.T) {
	is := is.New(t)
	k := testCluster(t)
	ctx := context.Background()
	id := runPod(t, k, nil)
	for name, err := range map[string]error{
		"pause":   k.Pause(ctx, id),
		"stop":    k.Stop(ctx, id, time.Second),
		"restart": k.Restart(ctx, id, time.Second),
		"copy to": k.CopyTo(ctx, id, "/tmp", strings.NewReader("")),
		"volume":  k.VolumeCreate(ctx, "v", nil),
	} {
		if !errors.Is(err, sbxerr.ErrUnsupported) {
			t.Errorf("%s: %v", name, err)
		}
	}
	c, err := k.Inspect(ctx, id)
	is.NoErr(err)
	is.True(c.State.Running) // untouched
}

// TestKubeEngineProbe: Start's probe says a container runs when an exec in
// it succeeds, and not when the program is missing or the pod is unknown.
func TestKubeEngineProbe(t *testing.T) {
	is := is.New(t)
	k := testCluster(t)
	ctx := context.Background()
	id := runPod(t, k, map[string]string{"org.opensbx.test": "probe"})
	is.True(k.probe(ctx, id, "/bin/true"))       // `true version` exits 0
	is.True(!k.probe(ctx, id, "/no/such/agent")) // no such program
	is.True(!k.probe(ctx, strings.Repeat("0", 64), "/bin/true"))
}

// TestOverlay: a probe's word that a container runs stands in for the API's
// while the API still says created, and only then.
func TestOverlay(t *testing.T) {
	is := is.New(t)
	k := &Kube{seen: map[string]time.Time{}}
	c := engine.Container{ID: "a", State: engine.ContainerState{Status: "created"}}
	k.overlay(&c)
	is.Equal(c.State.Status, "created") // nothing seen
	k.markRunning("a")
	k.overlay(&c)
	is.Equal(c.State.Status, "running") // seen by the probe
	is.True(c.State.Running)
	is.True(!c.State.StartedAt.IsZero())
	exited := engine.Container{ID: "a", State: engine.ContainerState{Status: "exited"}}
	k.overlay(&exited)
	is.Equal(exited.State.Status, "exited") // the API's word once it has one
	again := engine.Container{ID: "a", State: engine.ContainerState{Status: "created"}}
	k.overlay(&again)
	is.Equal(again.State.Status, "created") // and the probe's is forgotten
	k.seen["b"] = time.Now().Add(-2 * seenFor)
	old := engine.Container{ID: "b", State: engine.ContainerState{Status: "created"}}
	k.overlay(&old)
	is.Equal(old.State.Status, "created") // too old to stand in
}

// TestKubeEngineInfo: Info reads the cluster's version within ctx.
func TestKubeEngineInfo(t *testing.T) {
	is := is.New(t)
	k := testCluster(t)
	info, err := k.Info(context.Background())
	is.NoErr(err)
	is.Equal(info.Backend, engine.BackendKubernetes)
	is.True(strings.HasPrefix(info.Version, "v1.")) // the API server's git version
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = k.Info(ctx)
	is.True(err != nil) // an ended ctx ends the version request
}
