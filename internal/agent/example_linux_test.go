//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/server"
	"github.com/opensbx/opensbx/internal/outbuf"
)

// A Client runs a command and follows its output to the end. Here the
// agent is served in-process over a socket pair; a Manager's connection is
// the stream of an exec of `opensbx-agent connect` in the sandbox instead.
func ExampleClient() {
	fds, _ := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	ends := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "agent")
		ends[i], _ = net.FileConn(f)
		f.Close()
	}
	srv := server.New(server.Config{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.ServeConn(ends[1])
	}()
	defer func() {
		srv.Close()
		<-served
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := agent.NewClient(ctx, ends[0])
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	cmd, err := c.Exec(ctx, agent.ExecRequest{ID: "cmd_example", Argv: []string{"echo", "hello"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	var stdout []byte
	end, err := c.Follow(ctx, cmd.ID, outbuf.Pos{}, func(ch outbuf.Chunk) error {
		if ch.Stream == outbuf.Stdout {
			stdout = append(stdout, ch.Data...)
		}
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(stdout))
	fmt.Println("exit code", *end.ExitCode)
	// Output:
	// hello
	// exit code 0
}
