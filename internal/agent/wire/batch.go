package wire

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"
)

// yamux writes every frame with writes of its own (a data frame's header
// and its body apart) and waits for each before it takes the next. Through
// an engine every write to the session's connection is a wakeup of several
// processes (the relay, the shim, the engine) and, on Kubernetes, a message
// through the API server and the kubelet, each costing a fraction of a
// millisecond that the next one waits behind. A Batcher makes one write of
// what would be several, without waiting for anything but the frames that
// are on their way anyway.

// yamux frame header layout (see yamux's spec.md).
const (
	yamuxHeaderLen        = 12
	yamuxVersion          = 0
	yamuxTypeData         = 0
	yamuxTypeWindowUpdate = 1
	yamuxFlagSYN          = 1
	yamuxFlagACK          = 2
	yamuxFlagFIN          = 4
	yamuxFlagRST          = 8
)

// Batcher defaults.
const (
	// BatchMax bounds the bytes a Batcher holds: a Write beyond it waits
	// until the connection has taken the earlier ones.
	BatchMax = 512 << 10
	// BatchHold is how long the control frame that opens or accepts a
	// stream (SYN, ACK) waits for the frame that follows it (the request
	// or its answer) before it goes out alone.
	BatchHold = 500 * time.Microsecond
	// batchKeep is the largest buffer a Batcher keeps between writes, so
	// that an idle session stays small after a bulk transfer.
	batchKeep = 16 << 10
	// batchDirect: a larger write (a bulk transfer's body) is not copied
	// but written by Write itself, after what came before it.
	batchDirect = 8 << 10
)

// ErrBatcherClosed is what Write returns once the Batcher is closed.
var ErrBatcherClosed = errors.New("wire: connection writer closed")

// Batcher is the write side of a yamux session's connection. Write takes
// the bytes into a buffer and returns; a goroutine of the Batcher's own
// writes the buffer out to the connection, so that the frames yamux writes
// while an earlier write is still on its way go out together as one. A data
// frame's header always waits for its body, and a SYN or ACK control frame
// waits up to BatchHold for the frame after it, so that a request or an
// answer, its header, its body and the stream's opening are one write
// (BatchOptions.HoldFIN: and the end of the stream before it).
//
// A write of the connection that fails ends the Batcher: that Write and
// every later one return the error. Close stops the goroutine; it does not
// wait for the bytes still held (the connection is going away).
type Batcher struct {
	w       io.Writer
	hold    time.Duration
	holdFIN bool

	mu       sync.Mutex
	cond     *sync.Cond
	buf      []byte // bytes not yet written, in order
	spare    []byte // the buffer of the last write, for reuse
	heldFrom int    // start of a data header in buf waiting for its body; -1 for none
	want     bool   // buf (up to heldFrom) should be written now
	timer    *time.Timer
	timed    bool // the timer is armed
	busy     bool // a write of the connection is under way
	err      error
	closed   bool
	done     chan struct{}
}

// BatchOptions tune a Batcher.
type BatchOptions struct {
	// Hold is how long a control frame waits for company (0: BatchHold).
	Hold time.Duration
	// HoldFIN makes the frame that ends a stream wait too. It suits the
	// side that ends its streams once it has read the answer (the
	// client): the end goes out with its next request instead of ahead
	// of it. The side whose ends someone waits for must not set it.
	HoldFIN bool
}

// NewBatcher returns a Batcher writing to w and starts its goroutine.
func NewBatcher(w io.Writer, o BatchOptions) *Batcher {
	if o.Hold <= 0 {
		o.Hold = BatchHold
	}
	b := &Batcher{w: w, hold: o.Hold, holdFIN: o.HoldFIN, heldFrom: -1, done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	b.timer = time.AfterFunc(time.Hour, b.expire)
	b.timer.Stop()
	go b.loop()
	return b
}

// frameKind tells what a write of yamux is: a data frame's header that a
// body follows, a control frame that may wait for company (one that opens
// or accepts a stream; with holdFIN also one that ends a stream), or
// anything else.
func frameKind(p []byte, holdFIN bool) (header, opening bool) {
	if len(p) != yamuxHeaderLen || p[0] != yamuxVersion {
		return false, false
	}
	flags := binary.BigEndian.Uint16(p[2:4])
	switch p[1] {
	case yamuxTypeData:
		return binary.BigEndian.Uint32(p[8:]) > 0, false
	case yamuxTypeWindowUpdate:
		if flags == yamuxFlagFIN {
			return false, holdFIN
		}
		return false, flags&(yamuxFlagSYN|yamuxFlagACK) != 0 && flags&(yamuxFlagFIN|yamuxFlagRST) == 0
	}
	return false, false
}

// Write takes p to be written. It blocks only while the Batcher holds
// BatchMax bytes or more.
func (b *Batcher) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.flushWhile(func() bool { return len(b.buf) >= BatchMax }); err != nil {
		return 0, err
	}
	header, opening := frameKind(p, b.holdFIN)
	if len(p) > batchDirect && !header {
		return b.writeLarge(p)
	}
	switch {
	case b.heldFrom >= 0 && !header:
		// The body of the held header (or whatever yamux wrote next).
		b.heldFrom = -1
		b.want = true
	case header:
		if b.heldFrom < 0 {
			b.heldFrom = len(b.buf)
		}
	case opening:
		if !b.want && !b.timed {
			b.timed = true
			b.timer.Reset(b.hold)
		}
	default:
		b.want = true
	}
	b.buf = append(b.buf, p...)
	if b.want {
		b.cond.Broadcast()
	}
	return len(p), nil
}

// writeLarge writes a large p (a bulk transfer's body) itself, without
// copying it: once everything before it is written (a held header goes
// first, as a write of its own). Called with b.mu held.
func (b *Batcher) writeLarge(p []byte) (int, error) {
	if err := b.flushWhile(func() bool { return b.busy || b.ready() > 0 }); err != nil {
		return 0, err
	}
	head := append([]byte(nil), b.buf...) // the held header, if any
	b.buf, b.heldFrom, b.busy = b.buf[:0], -1, true
	b.mu.Unlock()
	var err error
	if len(head) > 0 {
		_, err = b.w.Write(head)
	}
	if err == nil {
		_, err = b.w.Write(p)
	}
	b.mu.Lock()
	b.busy = false
	if err != nil && b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// flushWhile has the goroutine write what it may as long as wait holds,
// and returns the Batcher's end, if it came meanwhile. Called with b.mu
// held.
func (b *Batcher) flushWhile(wait func() bool) error {
	for b.err == nil && !b.closed && wait() {
		b.want = true
		b.cond.Broadcast()
		b.cond.Wait()
	}
	switch {
	case b.err != nil:
		return b.err
	case b.closed:
		return ErrBatcherClosed
	}
	return nil
}

// ready is the number of bytes of buf before a held header. Called with
// b.mu held.
func (b *Batcher) ready() int {
	if b.heldFrom >= 0 {
		return b.heldFrom
	}
	return len(b.buf)
}

// expire sends a control frame that waited BatchHold.
func (b *Batcher) expire() {
	b.mu.Lock()
	b.timed = false
	b.want = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// loop writes the buffer out whenever there is something to send.
func (b *Batcher) loop() {
	defer close(b.done)
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for !b.closed && (!b.want || b.ready() == 0 || b.busy) {
			b.cond.Wait()
		}
		n := b.ready()
		if b.closed {
			return
		}
		out := b.buf[:n]
		b.buf = append(b.spare[:0], b.buf[n:]...)
		if b.heldFrom >= 0 {
			b.heldFrom = 0
		}
		b.want = false
		if b.timed {
			b.timed = false
			b.timer.Stop()
		}
		b.busy = true
		b.mu.Unlock()
		_, err := b.w.Write(out)
		b.mu.Lock()
		b.busy = false
		if cap(out) <= batchKeep {
			b.spare = out[:0]
		} else {
			b.spare = nil
		}
		if err != nil {
			b.err = err
			b.cond.Broadcast()
			return
		}
		b.cond.Broadcast() // room for a writer that waits
	}
}

// Err returns the error of the connection's write that failed, if any.
func (b *Batcher) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Close stops the Batcher's goroutine and waits for it; a write of the
// connection it is in must be unblocked first (by closing the connection).
// Bytes not yet written are dropped. Close is idempotent.
func (b *Batcher) Close() error {
	b.mu.Lock()
	b.closed = true
	b.timer.Stop()
	b.cond.Broadcast()
	b.mu.Unlock()
	<-b.done
	return nil
}
