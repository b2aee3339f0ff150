package opensbx

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// envKilledChild makes TestKilledManagerChild run: it is the process
// TestManagerSIGKILL kills.
const envKilledChild = "OPENSBX_TEST_KILLED_CHILD"

// TestKilledManagerChild, in a child process, creates sandboxes and runs
// commands as fast as it can, printing what each call acknowledged, until
// it is killed.
func TestKilledManagerChild(t *testing.T) {
	if os.Getenv(envKilledChild) == "" {
		t.Skip("only as the child of TestManagerSIGKILL")
	}
	dir, ns := os.Getenv(envKilledChild+"_DIR"), os.Getenv(envKilledChild+"_NS")
	ctx := context.Background()
	m, err := New(ctx, WithNamespace(ns), WithStateDir(dir), WithLabels(map[string]string{testRunLabel: testRun}))
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	fmt.Println("READY")
	if ref := os.Getenv(envKilledChild + "_PULL"); ref != "" {
		if _, err := m.PullImage(ctx, ref, PullOptions{}); err != nil {
			fmt.Println("ERROR", err)
		} else {
			fmt.Println("PULLED", ref)
		}
	}
	for i := 0; ; i++ {
		res, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, TTL: 4 * time.Second})
		if err != nil {
			fmt.Println("ERROR", err)
			continue
		}
		fmt.Println("SANDBOX", res.ID)
		c, err := m.Exec(ctx, res.ID, ExecOptions{Command: "sh", Args: []string{"-c", "echo out-$0", fmt.Sprint(i)}})
		if err == nil {
			fmt.Println("COMMAND", res.ID, c.ID)
		}
	}
}

// TestManagerSIGKILL kills a process in the middle of its Manager's
// creates and commands (after a pull): a Manager started afterwards on the
// same state directory has every acknowledged sandbox and command, the
// pulled image, no half-made container, and enforces the TTLs.
func TestManagerSIGKILL(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	dir, ns := t.TempDir(), testNamespace()
	t.Cleanup(func() { removeLabelled(context.Background(), cli, labelNamespace+"="+ns) })
	pullRef, _, _ := imgPushed(t, cli) // in the local registry only
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledManagerChild$", "-test.v")
	cmd.Env = append(os.Environ(), envKilledChild+"=1", envKilledChild+"_DIR="+dir, envKilledChild+"_NS="+ns,
		envKilledChild+"_PULL="+pullRef)
	out, err := cmd.StdoutPipe()
	is.NoErr(err)
	is.NoErr(cmd.Start())
	sandboxes, commands := map[string]bool{}, map[string]string{}
	pulled := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "SANDBOX":
			sandboxes[f[1]] = true
		case len(f) == 3 && f[0] == "COMMAND":
			commands[f[2]] = f[1]
		case len(f) == 2 && f[0] == "PULLED":
			pulled = true
		}
		if len(commands) == 3 {
			break
		}
	}
	time.Sleep(150 * time.Millisecond) // into the next create
	is.NoErr(cmd.Process.Kill())       // SIGKILL
	cmd.Wait()
	is.True(len(sandboxes) >= 3)
	is.True(pulled)
	_, err = cli.ImageInspect(ctx, pullRef)
	is.NoErr(err) // the acknowledged pull is there

	m, err := New(ctx, WithDockerClient(cli), WithNamespace(ns), WithStateDir(dir), withHalfMadeAge(0),
		WithLabels(map[string]string{testRunLabel: testRun}))
	is.NoErr(err)
	defer m.Close()
	for id := range sandboxes {
		_, err := m.Get(ctx, id)
		is.NoErr(err) // every acknowledged sandbox is there
	}
	for cmdID, sbID := range commands {
		_, err := m.Command(ctx, sbID, cmdID)
		is.NoErr(err) // and every acknowledged command's record
	}
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", labelNamespace+"="+ns), filters.Arg("status", "created"))})
	is.NoErr(err)
	is.Equal(len(cs), 0) // no half-made container is left
	// The TTLs of 4 s hold across the kill: every sandbox ends stopped.
	waitFor(t, 40*time.Second, "the acknowledged sandboxes to expire", func() bool {
		for id := range sandboxes {
			if stateOfSandbox(t, m, id) != StateStopped {
				return false
			}
		}
		return true
	})
}
