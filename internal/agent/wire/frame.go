// Package wire is the protocol spoken between the Opensbx agent (the
// program inside a sandbox) and its client in the Manager.
//
// The two sides share one multiplexed session (hashicorp/yamux, the client
// opening every stream); each operation is one stream. Everything on a
// stream is a sequence of frames:
//
//	kind   1 byte   one of the Kind constants
//	length 4 bytes  big-endian length of the payload
//	payload
//
// A KindHeader frame carries JSON (at most MaxHeader bytes): a Request
// opens every stream, a Response answers it, and a Response ends every
// stream that carries raw data after its first Response (a "trailer"), so a
// transfer that stops early is never mistaken for a complete one. Raw data
// travels in KindData frames (file bytes, tar, stdin) or, for command
// output, KindStdout, KindStderr and KindDropped frames; a data frame holds
// at most MaxData bytes and is never empty. A KindEnd frame ends the data a
// client sends (an upload or stdin), so that closing a stream without it
// aborts the operation.
//
// The per-operation shapes are documented on the Op constants. Neither side
// trusts the other: Reader enforces every limit before it allocates and
// rejects unknown kinds, and the JSON bodies are validated by their users.
package wire

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ProtocolVersion is the version of this protocol. Hello exchanges it; a
// client refuses an agent speaking another version.
const ProtocolVersion = 1

// Limits on frames.
const (
	// MaxHeader is the largest payload of a KindHeader frame.
	MaxHeader = 1 << 20
	// MaxData is the largest payload of a data or output frame.
	MaxData = 64 << 10
	// FrameOverhead is the size of a frame's kind and length.
	FrameOverhead = 5
)

// Kind is the type of a frame.
type Kind byte

// Frame kinds.
const (
	// KindHeader carries a JSON Request or Response.
	KindHeader Kind = 'H'
	// KindData carries raw bytes of a file, a tar stream or stdin.
	KindData Kind = 'D'
	// KindStdout carries bytes a command wrote to its standard output.
	KindStdout Kind = 'O'
	// KindStderr carries bytes a command wrote to its standard error.
	KindStderr Kind = 'E'
	// KindDropped says that output was evicted before it could be sent: a
	// payload of 9 bytes, the stream (StreamStdout or StreamStderr) and a
	// big-endian uint64 count (more than 0).
	KindDropped Kind = 'X'
	// KindEnd ends the data a client sends. Its payload is empty or one
	// byte of flags (EndClose).
	KindEnd Kind = 'Z'
)

// Stream bytes of a KindDropped frame.
const (
	StreamStdout byte = 1
	StreamStderr byte = 2
)

// EndClose is the KindEnd flag that closes a command's stdin after the data.
const EndClose byte = 1

// ErrMalformed reports a frame that breaks the protocol: an unknown kind,
// a payload over its limit, an empty data frame or a bad fixed payload.
var ErrMalformed = errors.New("malformed frame")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// maxPayload returns the largest payload of kind k, and false for a kind
// that does not exist.
func maxPayload(k Kind) (int, bool) {
	switch k {
	case KindHeader:
		return MaxHeader, true
	case KindData, KindStdout, KindStderr:
		return MaxData, true
	case KindDropped:
		return 9, true
	case KindEnd:
		return 1, true
	}
	return 0, false
}

// Frame is one frame read by a Reader.
type Frame struct {
	Kind Kind
	// Payload is valid until the next call of Reader.Next.
	Payload []byte
}

// Dropped decodes a KindDropped frame: which stream (StreamStdout or
// StreamStderr) and how many bytes. Reader has validated it already.
func (f Frame) Dropped() (stream byte, n int64) {
	return f.Payload[0], int64(binary.BigEndian.Uint64(f.Payload[1:]))
}

// EndFlags returns the flags of a KindEnd frame.
func (f Frame) EndFlags() byte {
	if len(f.Payload) == 0 {
		return 0
	}
	return f.Payload[0]
}

// Reader reads frames, checking each against the protocol's limits before
// it reads the payload. It is not safe for concurrent use.
type Reader struct {
	r   io.Reader
	hdr [FrameOverhead]byte
	buf []byte // reused for data payloads (at most MaxData)
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next reads the next frame. It returns io.EOF when r ends cleanly between
// frames, io.ErrUnexpectedEOF when it ends inside one, an error matching
// ErrMalformed for a frame that breaks the protocol, and r's own errors.
// A header frame's payload is freshly allocated; data payloads share a
// buffer that the next call overwrites.
func (r *Reader) Next() (Frame, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return Frame{}, err
	}
	k := Kind(r.hdr[0])
	n := binary.BigEndian.Uint32(r.hdr[1:])
	limit, ok := maxPayload(k)
	if !ok {
		return Frame{}, malformed("unknown frame kind 0x%02x", r.hdr[0])
	}
	if uint64(n) > uint64(limit) {
		return Frame{}, malformed("%c frame of %d bytes, over the limit of %d", k, n, limit)
	}
	var p []byte
	if k == KindHeader {
		p = make([]byte, n)
	} else {
		if cap(r.buf) < int(n) {
			r.buf = make([]byte, max(int(n), 4<<10))
		}
		p = r.buf[:n]
	}
	if _, err := io.ReadFull(r.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	f := Frame{Kind: k, Payload: p}
	if err := f.check(); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// check validates the payload of kinds with a fixed shape.
func (f Frame) check() error {
	switch f.Kind {
	case KindData, KindStdout, KindStderr:
		if len(f.Payload) == 0 {
			return malformed("empty %c frame", f.Kind)
		}
	case KindDropped:
		if len(f.Payload) != 9 {
			return malformed("dropped frame of %d bytes, want 9", len(f.Payload))
		}
		s, n := f.Dropped()
		if s != StreamStdout && s != StreamStderr {
			return malformed("dropped frame for unknown stream %d", s)
		}
		if n <= 0 {
			return malformed("dropped frame with count %d", n)
		}
	case KindEnd:
		if f.EndFlags()&^EndClose != 0 {
			return malformed("end frame with unknown flags 0x%02x", f.EndFlags())
		}
	case KindHeader:
		if len(f.Payload) == 0 {
			return malformed("empty header frame")
		}
	}
	return nil
}

// Writer writes frames through a buffer; Flush sends what is buffered.
// It is not safe for concurrent use.
type Writer struct {
	w   *bufio.Writer
	hdr [FrameOverhead]byte
}

// NewWriter returns a Writer of w with a buffer of size bytes.
func NewWriter(w io.Writer, size int) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, size)}
}

// Frame writes one frame. It fails (writing nothing) when the payload does
// not fit the kind: an error matching ErrMalformed.
func (w *Writer) Frame(k Kind, payload []byte) error {
	if err := (Frame{Kind: k, Payload: payload}).checkWrite(); err != nil {
		return err
	}
	w.hdr[0] = byte(k)
	binary.BigEndian.PutUint32(w.hdr[1:], uint32(len(payload)))
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		return err
	}
	_, err := w.w.Write(payload)
	return err
}

func (f Frame) checkWrite() error {
	limit, ok := maxPayload(f.Kind)
	if !ok {
		return malformed("unknown frame kind 0x%02x", byte(f.Kind))
	}
	if len(f.Payload) > limit {
		return malformed("%c frame of %d bytes, over the limit of %d", f.Kind, len(f.Payload), limit)
	}
	return f.check()
}

// JSON writes v as a header frame.
func (w *Writer) JSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode header: %w", err)
	}
	if len(b) > MaxHeader {
		return fmt.Errorf("%w: header of %d bytes, over the limit of %d", ErrMalformed, len(b), MaxHeader)
	}
	return w.Frame(KindHeader, b)
}

// Dropped writes a KindDropped frame.
func (w *Writer) Dropped(stream byte, n int64) error {
	var p [9]byte
	p[0] = stream
	binary.BigEndian.PutUint64(p[1:], uint64(n))
	return w.Frame(KindDropped, p[:])
}

// End writes a KindEnd frame with flags.
func (w *Writer) End(flags byte) error {
	if flags == 0 {
		return w.Frame(KindEnd, nil)
	}
	return w.Frame(KindEnd, []byte{flags})
}

// Data writes p as KindData frames of at most MaxData bytes each; an empty
// p writes nothing. It implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), MaxData)
		if err := w.Frame(KindData, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// Flush sends the buffered frames.
func (w *Writer) Flush() error { return w.w.Flush() }

// Buffered returns the number of bytes waiting for Flush.
func (w *Writer) Buffered() int { return w.w.Buffered() }

// Handshake bytes. On a connection to the agent's socket (not on a yamux
// session handed to a Server directly) the agent first writes one of them:
// HandshakeOK, then the session follows; HandshakeRefused (the peer is not
// allowed) or HandshakeBusy (too many sessions), then it closes.
const (
	HandshakeOK      byte = '+'
	HandshakeRefused byte = '-'
	HandshakeBusy    byte = '!'
)

// Handoff is the byte a client of the agent's socket may send first, after
// HandshakeOK, with two file descriptors attached (SCM_RIGHTS): the read
// and the write end of its own session (`opensbx-agent connect` passes its
// stdin and stdout, the engine's exec stream). The agent then serves the
// session on those descriptors itself, so that no relay copies it, and
// closes the socket when the session ends; the client keeps the socket
// open until then. A yamux session never starts with this byte (a frame
// starts with the protocol version, 0), so a client that speaks on the
// socket itself simply does.
const Handoff byte = 'H'

// DefaultSocket is the agent's abstract unix socket (the leading '@'), so
// that the agent needs no writable file system. Abstract sockets belong to
// the network namespace: a sandbox sharing the host's network must be
// given a socket name of its own.
const DefaultSocket = "@opensbx-agent"

// Exit codes of `opensbx-agent connect` when it cannot relay.
const (
	// ExitNoAgent: no agent listens on the socket (it is not running, or
	// it closed the connection at once).
	ExitNoAgent = 69
	// ExitBusy: the agent serves as many sessions as it allows.
	ExitBusy = 75
	// ExitRefused: the agent refused the connecting process (only root in
	// the sandbox may connect).
	ExitRefused = 77
)
