package wire

import (
	"encoding/binary"
	"io"
)

// yamux writes the 12-byte header of a data frame and its body with two
// writes to the connection. Through the engine every write is a wakeup of
// several processes (the relay, the shim, the engine), so HeaderJoiner puts
// the two back together.

// joinMax is the largest body joined to its header; larger ones (bulk
// transfers, where one more write does not matter) go out in two writes.
const joinMax = 8 << 10

// yamux frame header layout (see yamux's spec.md).
const (
	yamuxHeaderLen = 12
	yamuxVersion   = 0
	yamuxTypeData  = 0
)

// HeaderJoiner is the write side of a yamux session's connection that
// sends each data frame's header together with its body in one write. Only
// the session's send loop may write to it (yamux has one).
type HeaderJoiner struct {
	w    io.Writer
	hdr  [yamuxHeaderLen]byte
	held bool
	buf  []byte // allocated on first use, joinMax+yamuxHeaderLen
}

// NewHeaderJoiner returns a HeaderJoiner writing to w.
func NewHeaderJoiner(w io.Writer) *HeaderJoiner { return &HeaderJoiner{w: w} }

// Write holds the header of a data frame with a body and writes it with
// the next write; everything else goes out as it comes.
func (j *HeaderJoiner) Write(p []byte) (int, error) {
	if j.held {
		j.held = false
		if len(p) <= joinMax {
			if j.buf == nil {
				j.buf = make([]byte, 0, yamuxHeaderLen+joinMax)
			}
			b := append(append(j.buf[:0], j.hdr[:]...), p...)
			if _, err := j.w.Write(b); err != nil {
				return 0, err
			}
			return len(p), nil
		}
		if _, err := j.w.Write(j.hdr[:]); err != nil {
			return 0, err
		}
		return j.w.Write(p)
	}
	if len(p) == yamuxHeaderLen && p[0] == yamuxVersion && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(j.hdr[:], p)
		j.held = true
		return len(p), nil
	}
	return j.w.Write(p)
}
