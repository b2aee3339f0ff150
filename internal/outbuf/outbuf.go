// Package outbuf keeps the output of a command: two byte streams (stdout
// and stderr), each bounded to a limit that keeps the newest bytes, with
// positions that count every byte ever written, so a reader can resume
// exactly where it stopped or learn exactly how many bytes it missed.
//
// A Ring is one bounded stream; it is not safe for concurrent use. A Buffer
// pairs two Rings behind a mutex, remembers the end of the output (Close),
// and wakes followers whenever something changes.
package outbuf

import (
	"context"
	"io"
	"sync"
)

// Ring keeps the newest limit bytes written to it. Its storage grows with
// the output (it is not allocated at full size up front) and becomes
// circular once it holds limit bytes.
type Ring struct {
	limit int
	data  []byte // len(data) <= limit; circular once len(data) == limit
	head  int    // index of the oldest byte when circular
	total int64  // bytes ever written
}

// NewRing returns an empty Ring keeping at most limit bytes (limit > 0).
func NewRing(limit int) *Ring {
	if limit <= 0 {
		limit = 1
	}
	return &Ring{limit: limit}
}

// RestoreRing returns a Ring that holds the newest bytes of data (at most
// limit) as the end of a stream of total bytes. A total smaller than
// len(data) is raised to len(data).
func RestoreRing(limit int, data []byte, total int64) *Ring {
	r := NewRing(limit)
	if len(data) > r.limit {
		data = data[len(data)-r.limit:]
	}
	r.data = append([]byte(nil), data...) // oldest first: head stays 0
	r.total = max(total, int64(len(data)))
	return r
}

// Write appends p, dropping the oldest bytes beyond the limit. It never
// fails.
func (r *Ring) Write(p []byte) (int, error) {
	n := len(p)
	r.total += int64(n)
	if len(p) >= r.limit { // only the tail of p survives
		p = p[len(p)-r.limit:]
		r.data = append(r.data[:0], p...)
		r.head = 0
		return n, nil
	}
	if room := r.limit - len(r.data); room > 0 {
		k := min(room, len(p))
		r.data = append(r.data, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 { // full: overwrite the oldest bytes
		k := copy(r.data[r.head:], p)
		p = p[k:]
		r.head = (r.head + k) % r.limit
	}
	return n, nil
}

// Total returns the number of bytes ever written.
func (r *Ring) Total() int64 { return r.total }

// Skip counts n bytes (n > 0) as written without keeping any of them: they
// were lost elsewhere. The kept bytes are dropped too, since they no
// longer end at Total.
func (r *Ring) Skip(n int64) {
	if n <= 0 {
		return
	}
	r.total += n
	r.data, r.head = r.data[:0], 0
}

// Len returns the number of bytes kept.
func (r *Ring) Len() int { return len(r.data) }

// Dropped returns the number of bytes evicted by the limit.
func (r *Ring) Dropped() int64 { return r.total - int64(len(r.data)) }

// Start returns the position of the oldest byte kept.
func (r *Ring) Start() int64 { return r.Dropped() }

// Bytes returns a copy of the bytes kept, oldest first.
func (r *Ring) Bytes() []byte {
	b, _ := r.From(r.Start(), 0)
	return b
}

// From returns a copy of the bytes kept from position off (a count of
// bytes since the stream began) on, at most max bytes when max > 0.
// dropped is how many bytes between off and the oldest kept byte were
// evicted by the limit (the returned data then starts at the oldest kept
// byte). An off beyond Total gives no data.
func (r *Ring) From(off int64, max int) (data []byte, dropped int64) {
	start := r.Start()
	if off < start {
		dropped = start - off
		off = start
	}
	if off >= r.total {
		return nil, dropped
	}
	n := int(r.total - off)
	if max > 0 && n > max {
		n = max
	}
	data = make([]byte, n)
	// logical index i (0 = oldest kept) lives at (head+i) % len(data) when
	// circular; head is 0 while the ring is still growing.
	i := int(off - start)
	if len(r.data) < r.limit {
		copy(data, r.data[i:i+n])
		return data, dropped
	}
	p := (r.head + i) % r.limit
	k := copy(data, r.data[p:])
	if k < n {
		copy(data[k:], r.data[:n-k])
	}
	return data, dropped
}

// Stream names one of a Buffer's two streams.
type Stream int

// The streams of a Buffer.
const (
	Stdout Stream = 0
	Stderr Stream = 1
)

// String returns "stdout" or "stderr".
func (s Stream) String() string {
	if s == Stderr {
		return "stderr"
	}
	return "stdout"
}

// Pos is a reader's position: the number of bytes of each stream it has
// consumed, counted from the start of the stream (dropped bytes included).
type Pos struct{ Stdout, Stderr int64 }

// Get returns the position within stream s.
func (p Pos) Get(s Stream) int64 {
	if s == Stderr {
		return p.Stderr
	}
	return p.Stdout
}

func (p *Pos) set(s Stream, v int64) {
	if s == Stderr {
		p.Stderr = v
	} else {
		p.Stdout = v
	}
}

// Chunk is a piece of output handed to a reader: either Data of one stream,
// or, when Dropped > 0, a note that Dropped bytes of Stream were evicted by
// the limit before the reader got to them. End is the reader's position
// after the chunk.
type Chunk struct {
	Stream  Stream
	Data    []byte
	Dropped int64
	End     Pos
}

// Buffer is the bounded output of one command. It is safe for concurrent
// use: one writer per stream and any number of readers.
type Buffer struct {
	mu      sync.Mutex
	streams [2]*Ring
	segs    []seg         // write order of the kept bytes, oldest first
	changed chan struct{} // closed and replaced on every change
	closed  bool
}

// seg is a run of consecutive writes to one stream: its bytes [start, end).
type seg struct {
	s          Stream
	start, end int64
}

// maxSegs bounds the write-order log. Beyond it the oldest runs are
// forgotten, and their bytes are replayed per stream ahead of the rest.
const maxSegs = 4096

// New returns an empty Buffer keeping at most limit bytes per stream.
func New(limit int) *Buffer {
	return &Buffer{streams: [2]*Ring{NewRing(limit), NewRing(limit)}, changed: make(chan struct{})}
}

// Restore returns a closed Buffer holding saved output: the kept bytes and
// the total bytes ever written of each stream, and the write order
// (Snapshot.Order; nil replays stdout, then stderr).
func Restore(limit int, stdout []byte, stdoutTotal int64, stderr []byte, stderrTotal int64, order []Run) *Buffer {
	b := &Buffer{
		streams: [2]*Ring{RestoreRing(limit, stdout, stdoutTotal), RestoreRing(limit, stderr, stderrTotal)},
		changed: make(chan struct{}),
		closed:  true,
	}
	var last [2]int64 // runs of a stream must be increasing and within it
	for _, r := range order {
		if (r.Stream != Stdout && r.Stream != Stderr) || r.Start < last[r.Stream] || r.End <= r.Start || r.End > b.streams[r.Stream].Total() {
			b.segs = nil
			break
		}
		last[r.Stream] = r.End
		b.segs = append(b.segs, seg{s: r.Stream, start: r.Start, end: r.End})
	}
	close(b.changed)
	return b
}

// Run is a run of consecutive writes to one stream: its bytes
// [Start, End). A Snapshot's Order lists the runs of the kept output in
// write order.
type Run struct {
	Stream     Stream `json:"s"`
	Start, End int64
}

// Write appends p to stream s and wakes followers. Writes after Close are
// discarded.
func (b *Buffer) Write(s Stream, p []byte) {
	if len(p) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	r := b.streams[s]
	r.Write(p)
	if n := len(b.segs); n > 0 && b.segs[n-1].s == s {
		b.segs[n-1].end = r.Total()
	} else {
		b.segs = append(b.segs, seg{s: s, start: r.Total() - int64(len(p)), end: r.Total()})
	}
	for len(b.segs) > 0 && (b.segs[0].end <= b.streams[b.segs[0].s].Start() || len(b.segs) > maxSegs) {
		b.segs = b.segs[1:]
	}
	b.notifyLocked()
}

// Skip counts n bytes of stream s that were written but never reached this
// Buffer (a source evicted them first): the stream's kept bytes are
// dropped, and a reader behind its new end gets a Dropped chunk saying how
// many it missed. Skips after Close are discarded.
func (b *Buffer) Skip(s Stream, n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.streams[s].Skip(n)
	kept := b.segs[:0]
	for _, g := range b.segs {
		if g.s != s {
			kept = append(kept, g)
		}
	}
	b.segs = kept
	b.notifyLocked()
}

// Reopen makes a Buffer from Restore take writes again, for a command that
// is still running elsewhere (its output resumes where the saved one ends).
func (b *Buffer) Reopen() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		b.closed = false
		b.changed = make(chan struct{})
	}
}

func (b *Buffer) notifyLocked() {
	close(b.changed)
	if !b.closed {
		b.changed = make(chan struct{})
	}
}

// Writer returns an io.Writer appending to stream s.
func (b *Buffer) Writer(s Stream) io.Writer {
	return streamWriter{b, s}
}

type streamWriter struct {
	b *Buffer
	s Stream
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.b.Write(w.s, p)
	return len(p), nil
}

// Close marks the end of the output and wakes followers. It is idempotent.
func (b *Buffer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	close(b.changed)
}

// Snapshot is a copy of a Buffer's kept output.
type Snapshot struct {
	Stdout, Stderr               []byte
	StdoutDropped, StderrDropped int64
	StdoutTotal, StderrTotal     int64
	Closed                       bool
	// Order is the write order of the kept bytes across the streams.
	Order []Run
}

// Snapshot returns a copy of the kept output.
func (b *Buffer) Snapshot() Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, e := b.streams[Stdout], b.streams[Stderr]
	order := make([]Run, len(b.segs))
	for i, g := range b.segs {
		order[i] = Run{Stream: g.s, Start: g.start, End: g.end}
	}
	return Snapshot{
		Stdout: o.Bytes(), Stderr: e.Bytes(),
		StdoutDropped: o.Dropped(), StderrDropped: e.Dropped(),
		StdoutTotal: o.Total(), StderrTotal: e.Total(),
		Closed: b.closed,
		Order:  order,
	}
}

// End returns the position just after the last byte written.
func (b *Buffer) End() Pos {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Pos{b.streams[Stdout].Total(), b.streams[Stderr].Total()}
}

// Read returns the chunks available after pos, each at most max bytes
// (max > 0), in the order they were written across both streams (for
// output restored by Restore, and for runs older than the last 4096
// alternations between the streams: stdout first, then stderr). Where the
// limit evicted bytes of a stream the reader had not consumed, a Dropped
// chunk says how many. done reports that the Buffer is closed and the
// chunks reach its end. When there is nothing new and the Buffer is open,
// wait is closed at the next change.
func (b *Buffer) Read(pos Pos, max int) (chunks []Chunk, done bool, wait <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	emit := func(s Stream, upto int64) {
		r := b.streams[s]
		off := pos.Get(s)
		for off < upto {
			if st := r.Start(); off < st {
				pos.set(s, st)
				chunks = append(chunks, Chunk{Stream: s, Dropped: st - off, End: pos})
				off = st
				continue
			}
			n := upto - off
			if max > 0 && n > int64(max) {
				n = int64(max)
			}
			data, _ := r.From(off, int(n))
			off += int64(len(data))
			pos.set(s, off)
			chunks = append(chunks, Chunk{Stream: s, Data: data, End: pos})
		}
	}
	for _, s := range []Stream{Stdout, Stderr} {
		if t := b.streams[s].Total(); pos.Get(s) > t { // a position from the future: clamp
			pos.set(s, t)
		}
	}
	for _, s := range []Stream{Stdout, Stderr} { // bytes older than the write-order log
		first := b.streams[s].Total()
		for _, g := range b.segs {
			if g.s == s {
				first = g.start
				break
			}
		}
		emit(s, first)
	}
	for _, g := range b.segs {
		emit(g.s, g.end)
	}
	return chunks, b.closed, b.changed
}

// Follow calls fn with every chunk after pos, as it is written, until the
// Buffer is closed and fn has seen all of it (nil), ctx ends (ctx.Err()) or
// fn fails (its error). It returns the position after the last chunk fn
// accepted.
func (b *Buffer) Follow(ctx context.Context, pos Pos, max int, fn func(Chunk) error) (Pos, error) {
	for {
		chunks, done, wait := b.Read(pos, max)
		for _, c := range chunks {
			if err := fn(c); err != nil {
				return pos, err
			}
			pos = c.End
		}
		if done {
			return pos, nil
		}
		if len(chunks) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return pos, ctx.Err()
		case <-wait:
		}
	}
}
