//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/wire"
)

// haltCmd is `halt` and `unhalt` (unhalt true): it asks the agent serving
// the sandbox, over its socket, to end every process but its own or to run
// the main command again. It is how the Kubernetes engine stops and starts
// a sandbox whose Pod cannot stop: one pod exec of the agent's own program.
func haltCmd(args []string, unhalt bool, stdout, stderr io.Writer) int {
	name := "halt"
	if unhalt {
		name = "unhalt"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", wire.DefaultSocket, "the agent's unix socket")
	grace := fs.Duration("grace", 10*time.Second, "how long processes have between SIGTERM and SIGKILL (halt)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	c, err := net.Dial("unix", *socket)
	if err != nil {
		fmt.Fprintf(stderr, "opensbx-agent %s: the sandbox's agent is not running (%v)\n", name, err)
		return wire.ExitNoAgent
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != wire.HandshakeOK {
		fmt.Fprintf(stderr, "opensbx-agent %s: the agent did not accept the connection (%q, %v)\n", name, b[:], err)
		return wire.ExitNoAgent
	}
	c.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), *grace+time.Minute)
	defer cancel()
	cl, err := agent.NewClient(ctx, c)
	if err != nil {
		fmt.Fprintf(stderr, "opensbx-agent %s: %v\n", name, err)
		return 1
	}
	defer cl.Close()
	if unhalt {
		err = cl.Unhalt(ctx)
	} else {
		var r agent.HaltReply
		if r, err = cl.Halt(ctx, *grace); err == nil {
			fmt.Fprintf(stdout, "signalled %d killed %d\n", r.Signalled, r.Killed)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "opensbx-agent %s: %v\n", name, err)
		if errors.Is(err, agent.ErrUnsupported) {
			return 3
		}
		return 1
	}
	return 0
}
