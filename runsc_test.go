package opensbx

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// TestGVisor runs a sandbox under gVisor (runsc, registered with dockerd by
// scripts/docker-up.sh) through its whole life: commands with output, a
// kill, files, a published port, stop and start.
func TestGVisor(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	cli := testenv.Engine(t)
	info, err := cli.Info(ctx)
	is.NoErr(err)
	if _, ok := info.Runtimes["runsc"]; !ok {
		t.Skip("runsc is not registered with the engine (scripts/docker-up.sh registers it)")
	}
	m, _ := newTestManager(t, WithRuntime("runsc"))
	sb := newBusybox(t, m, CreateOptions{Ports: []string{"8080"}})

	res, err := m.Run(ctx, sb.ID, ExecOptions{Command: "uname", Args: []string{"-r"}})
	is.NoErr(err)
	kernel := strings.TrimSpace(string(res.Stdout))
	is.True(kernel != "") // gVisor reports its own kernel version

	// A command tree killed by signal.
	c, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "sh", Args: []string{"-c", "sleep 1000; echo never"}})
	is.NoErr(err)
	waitUntil(t, func() bool { return countProcs(psArgs(t, m, sb.ID), "sleep 1000") == 1 })
	_, err = m.KillCommand(ctx, sb.ID, c.ID, 9)
	is.NoErr(err)
	done, err := m.WaitCommand(ctx, sb.ID, c.ID)
	is.NoErr(err)
	is.Equal(done.State, CommandKilled)
	is.Equal(countProcs(psArgs(t, m, sb.ID), "sleep 1000"), 0) // the tree is gone

	// Files.
	is.NoErr(m.WriteFile(ctx, sb.ID, "/www/index.html", []byte("hello from gvisor\n"), 0o644))
	data, _, err := m.ReadFile(ctx, sb.ID, "/www/index.html")
	is.NoErr(err)
	is.Equal(string(data), "hello from gvisor\n")
	entries, err := m.ListDir(ctx, sb.ID, "/www")
	is.NoErr(err)
	is.Equal(len(entries), 1)

	// A published port.
	_, err = m.Exec(ctx, sb.ID, ExecOptions{Command: "httpd", Args: []string{"-f", "-p", "8080", "-h", "/www"}})
	is.NoErr(err)
	url := fmt.Sprintf("http://%s/", net.JoinHostPort(sb.HostIP, sb.PortMap["8080/tcp"]))
	var body string
	waitUntil(t, func() bool {
		r, err := http.Get(url)
		if err != nil {
			return false
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		return r.StatusCode == 200
	})
	is.Equal(body, "hello from gvisor\n") // served from inside gVisor

	// Stop and start.
	_, err = m.Stop(ctx, sb.ID)
	is.NoErr(err)
	got, err := m.Start(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(got.State, StateRunning)
	res, err = m.Run(ctx, sb.ID, ExecOptions{Command: "cat", Args: []string{"/www/index.html"}})
	is.NoErr(err)
	is.Equal(string(res.Stdout), "hello from gvisor\n") // the file survived the restart
}
