package agent_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/server"
)

func TestDial(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, server.Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, "echo: "+line)
			}()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	for range 3 { // streams, not a single connection
		c, err := e.c.Dial(testCtx(t), port)
		is.NoErr(err)
		_, err = io.WriteString(c, "hello\n")
		is.NoErr(err)
		got, err := io.ReadAll(c) // the port closes after its answer
		is.NoErr(err)
		is.Equal(string(got), "echo: hello\n")
		is.NoErr(c.Close())
	}

	free, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	closed := free.Addr().(*net.TCPAddr).Port
	free.Close()
	_, err = e.c.Dial(testCtx(t), closed)
	is.True(errors.Is(err, agent.ErrConflict)) // nothing listens
	for _, bad := range []int{0, -1, 65536} {
		_, err = e.c.Dial(testCtx(t), bad)
		is.True(errors.Is(err, agent.ErrInvalid)) // not a port
	}
}
