//go:build linux

package agent_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/server"
	"github.com/opensbx/opensbx/internal/outbuf"
	"github.com/opensbx/opensbx/internal/testenv"
)

// TestEngineHalt: in a real sandbox, Halt ends every process but the
// agent's (the main command, a command, a daemon the command left behind)
// while the container and the session run on; commands are refused and
// files still served until Unhalt starts the main command anew.
func TestEngineHalt(t *testing.T) {
	is := is.New(t)
	cli := engine(t)
	id := newSandbox(t, cli, testenv.BusyboxImage, []string{agentPath},
		[]string{"serve", "--", "sh", "-c", "echo $$ >> /tmp/main.pids; exec sleep 100000"})
	c := connectAgent(t, cli, id)
	ctx := testCtx(t)

	_, err := c.Exec(ctx, agent.ExecRequest{ID: "cmd_long", Argv: sh("trap '' TERM; sleep 1000 & wait")}) // ignores SIGTERM
	is.NoErr(err)
	r := run(t, c, agent.ExecRequest{Argv: sh("(sleep 999 </dev/null >/dev/null 2>&1 &); echo left")})
	is.Equal(string(r.stdout), "left\n") // a daemon, reparented to the init
	mainPIDs := func() []string {
		t.Helper()
		rc, _, err := c.ReadFile(ctx, "/tmp/main.pids", 0)
		is.NoErr(err)
		defer rc.Close()
		b, err := io.ReadAll(rc)
		is.NoErr(err)
		return strings.Fields(string(b))
	}
	before := mainPIDs()
	is.Equal(len(before), 1)

	rep, err := c.Halt(ctx, 500*time.Millisecond)
	is.NoErr(err)
	is.True(rep.Signalled >= 4) // the main sleep, the command's shell and sleep, the daemon
	is.True(rep.Killed >= 1)    // the shell that ignored SIGTERM
	end := follow(t, c, "cmd_long", outbuf.Pos{})
	is.Equal(end.code(), 137) // SIGKILL after the grace

	_, err = c.Exec(ctx, agent.ExecRequest{ID: "cmd_refused", Argv: []string{"true"}})
	is.True(errors.Is(err, agent.ErrConflict)) // refused while halted
	is.Equal(mainPIDs(), before)               // files still served
	inspect, err := cli.ContainerInspect(ctx, id)
	is.NoErr(err)
	is.True(inspect.State.Running) // the agent ran on though its main command ended

	out := engineExec(t, cli, id, "ps", "-o", "pid,args")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		if f[0] == "1" || strings.Contains(line, "opensbx-agent") || strings.Contains(line, "ps -o") {
			continue
		}
		t.Errorf("still running after the halt: %s", line)
	}

	is.NoErr(c.Unhalt(ctx))
	deadline := time.Now().Add(10 * time.Second)
	for len(mainPIDs()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	is.Equal(len(mainPIDs()), 2) // the main command ran again
	r = run(t, c, agent.ExecRequest{Argv: []string{"echo", "again"}})
	is.Equal(string(r.stdout), "again\n")
	is.NoErr(c.Unhalt(ctx)) // not halted: nothing to do
	is.Equal(len(mainPIDs()), 2)
}

// TestHaltNeedsASandbox: an agent that is not its sandbox's main process
// (here, in-process) refuses to halt: "every other process" would be the
// host's.
func TestHaltNeedsASandbox(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	_, err := e.c.Halt(testCtx(t), time.Second)
	is.True(errors.Is(err, agent.ErrUnsupported))
	for _, grace := range []time.Duration{-time.Second, 11 * time.Minute} {
		_, err = e.c.Halt(testCtx(t), grace)
		is.True(errors.Is(err, agent.ErrInvalid)) // a grace out of bounds
	}
	is.True(errors.Is(e.c.Unhalt(testCtx(t)), agent.ErrUnsupported))
	r := run(t, e.c, agent.ExecRequest{Argv: []string{"true"}})
	is.Equal(r.code(), 0) // and goes on serving
}

// engineExec runs argv in container id with the engine's own exec and
// returns its output.
func engineExec(t *testing.T, cli *client.Client, id string, argv ...string) string {
	t.Helper()
	ctx := testCtx(t)
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{AttachStdout: true, AttachStderr: true, Cmd: argv})
	if err != nil {
		t.Fatal(err)
	}
	hj, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer hj.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, hj.Reader); err != nil {
		t.Fatal(err)
	}
	return out.String()
}
