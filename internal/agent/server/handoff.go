package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/opensbx/opensbx/internal/agent/wire"
)

// takeOver reads the first byte of an accepted connection. When it is
// wire.Handoff with two descriptors attached, the session is served on
// those (the client's own stdin and stdout) and conn only tells the client
// when it ends; otherwise the byte belongs to the session on conn itself.
// Close ends the wait for that byte.
func (s *Server) takeOver(conn net.Conn) (io.ReadWriteCloser, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return conn, nil
	}
	stop := context.AfterFunc(s.ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	var b [1]byte
	oob := make([]byte, syscall.CmsgSpace(2*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(b[:], oob)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, io.EOF
	}
	fds, perr := unixRights(oob[:oobn])
	if b[0] != wire.Handoff {
		closeFDs(fds)
		return &prefixed{first: b[0], pending: true, ReadWriteCloser: conn}, nil
	}
	if perr != nil || len(fds) != 2 {
		closeFDs(fds)
		return nil, fmt.Errorf("handoff: want 2 descriptors, got %d (%v)", len(fds), perr)
	}
	files := make([]*os.File, 2)
	for i, fd := range fds {
		syscall.CloseOnExec(fd) // never inherited by a command
		// Non-blocking, so that the runtime's poller serves it and Close
		// ends a read in progress; on a pipe this flag belongs to the
		// agent's open file only, not the engine's end.
		if err := syscall.SetNonblock(fd, true); err != nil {
			closeFDs(fds)
			return nil, fmt.Errorf("handoff: %w", err)
		}
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("session-%d", i))
	}
	return &handedConn{in: files[0], out: files[1], ctl: conn}, nil
}

// unixRights is the descriptors of the SCM_RIGHTS messages in oob.
func unixRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	var errs []error
	for i := range msgs {
		got, err := syscall.ParseUnixRights(&msgs[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, errors.Join(errs...)
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// prefixed is a connection whose first byte was read already.
type prefixed struct {
	first   byte
	pending bool
	io.ReadWriteCloser
}

func (p *prefixed) Read(b []byte) (int, error) {
	if p.pending && len(b) > 0 {
		p.pending = false
		b[0] = p.first
		return 1, nil
	}
	return p.ReadWriteCloser.Read(b)
}

// handedConn is a session on descriptors a client handed over: it reads
// in and writes out; closing it closes both and the client's socket,
// which ends the client.
type handedConn struct {
	in, out *os.File
	ctl     net.Conn
	once    sync.Once
}

func (h *handedConn) Read(b []byte) (int, error)  { return h.in.Read(b) }
func (h *handedConn) Write(b []byte) (int, error) { return h.out.Write(b) }

func (h *handedConn) Close() error {
	var err error
	h.once.Do(func() {
		err = errors.Join(h.in.Close(), h.out.Close(), h.ctl.Close())
	})
	return err
}
