//go:build linux

package main

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opensbx/opensbx/internal/agent/wire"
)

// The relay of connect: one thread that polls its stdin and the agent's
// socket and copies what either has to the other side with blocking
// reads and writes, as cat would. A message crosses it with one wakeup; the
// Go runtime's poller and goroutines, two per direction, would cost several
// thread wakeups, each of which is slow on a virtual machine with idle CPUs.
// A blocking write cannot deadlock it: both ends of the session always read
// (their multiplexers' receive loops), so its writes always drain.

// dialAgent connects to the agent's unix socket (a leading @ makes the name
// abstract) and returns the blocking socket.
func dialAgent(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// readByte reads one byte from fd, giving up after timeout.
func readByte(fd int, timeout time.Duration) (byte, error) {
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, err
	}
	defer unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{})
	var b [1]byte
	for {
		n, err := unix.Read(fd, b[:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, errors.New("closed")
		}
		return b[0], nil
	}
}

// handOff passes in and out to the agent on sock (wire.Handoff).
func handOff(sock, in, out int) error {
	for {
		err := unix.Sendmsg(sock, []byte{wire.Handoff}, unix.UnixRights(in, out), nil, 0)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// waitEnd blocks until the agent closes sock: the end of the session it
// took over. Nothing but that end comes on sock.
func waitEnd(sock int) {
	var b [64]byte
	for {
		n, err := unix.Read(sock, b[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n <= 0 || err != nil {
			return
		}
	}
}

// relayBuffer is the size of each direction's buffer.
const relayBuffer = 64 << 10

// relay copies in to sock and sock to out until sock ends or a write fails;
// the end of in half-closes sock.
func relay(in, out, sock int) error {
	fds := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}, {Fd: int32(sock), Events: unix.POLLIN}}
	up := make([]byte, relayBuffer)
	down := make([]byte, relayBuffer)
	for {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		if fds[0].Fd >= 0 && fds[0].Revents != 0 {
			n, err := readSome(in, up)
			switch {
			case n < 0 && err == nil: // not ready after all
			case err != nil || n == 0: // the Manager closed its side
				unix.Shutdown(sock, unix.SHUT_WR)
				fds[0].Fd = -1 // poll ignores it from now on
			default:
				if err := writeAll(sock, up[:n]); err != nil {
					return err
				}
			}
		}
		if fds[1].Revents != 0 {
			n, err := readSome(sock, down)
			switch {
			case n < 0 && err == nil:
			case err != nil || n == 0:
				return err // the agent closed the session
			default:
				if err := writeAll(out, down[:n]); err != nil {
					return err
				}
			}
		}
	}
}

// readSome reads what fd has: (0, nil) at its end, (-1, nil) when a
// descriptor the engine made non-blocking has nothing after all.
func readSome(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return -1, nil
		}
		return n, err
	}
}

// writeAll writes all of b to fd, waiting on poll where fd is non-blocking
// and full.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			pf := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(pf, -1); err != nil && !errors.Is(err, unix.EINTR) {
				return err
			}
			continue
		case err != nil:
			return err
		}
		b = b[n:]
	}
	return nil
}
