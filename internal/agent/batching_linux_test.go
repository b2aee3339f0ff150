//go:build linux

package agent_test

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/server"
	"github.com/opensbx/opensbx/internal/outbuf"
)

// recordingConn records the bytes of each Write.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recordingConn) recorded() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.writes...)
}

// TestServeAckRidesWithAnswer: the agent's acceptance of a stream (yamux's
// ACK) is not written alone while the answer is on its way, even when the
// answer waits for a command that runs for a while (an exec with a start
// hold): through an engine each write is a message of its own. The
// command runs longer than the hold a stream's opening waits elsewhere
// (wire.BatchHold), so an ACK held only that long would go alone.
func TestServeAckRidesWithAnswer(t *testing.T) {
	is := is.New(t)
	var rec *recordingConn
	e := newEnvConn(t, server.Config{}, func(c net.Conn) net.Conn {
		rec = &recordingConn{Conn: c}
		return rec
	})
	c := e.c
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := len(rec.recorded())
	end, err := c.ExecFollow(ctx, agent.ExecRequest{ID: "held", Argv: []string{"sleep", "0.05"}, StartHold: 90 * time.Millisecond}, nil, func(outbuf.Chunk) error { return nil })
	is.NoErr(err)
	is.Equal(*end.ExitCode, 0)
	writes := rec.recorded()[before:]
	is.True(len(writes) > 0)
	for i, w := range writes {
		if len(w) == 12 && w[1] == 1 && binary.BigEndian.Uint16(w[2:4])&2 != 0 { // a window update with ACK, alone
			t.Fatalf("write %d of %d is the stream's ACK alone: % x", i+1, len(writes), w)
		}
	}
}
