package outbuf

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/matryer/is"
)

// model is the obvious, unbounded implementation a Ring must agree with.
type model struct{ all []byte }

func (m *model) kept(limit int) []byte {
	if len(m.all) > limit {
		return m.all[len(m.all)-limit:]
	}
	return m.all
}

func TestRingMatchesModel(t *testing.T) {
	is := is.New(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, limit := range []int{1, 2, 7, 64, 1000} {
		r := NewRing(limit)
		var m model
		for i := 0; i < 500; i++ {
			p := make([]byte, rng.IntN(3*limit+2))
			for j := range p {
				p[j] = byte(rng.IntN(256))
			}
			n, err := r.Write(p)
			is.NoErr(err)
			is.Equal(n, len(p))
			m.all = append(m.all, p...)
			is.Equal(r.Total(), int64(len(m.all)))                      // total counts every byte
			is.True(bytes.Equal(r.Bytes(), m.kept(limit)))              // newest bytes kept, in order
			is.Equal(r.Dropped(), int64(len(m.all)-len(m.kept(limit)))) // dropped = evicted
			is.True(r.Len() <= limit)                                   // bounded
			// From an arbitrary offset, with and without max.
			off := int64(rng.IntN(len(m.all) + 2))
			mx := rng.IntN(limit + 1)
			data, dropped := r.From(off, mx)
			start := int64(len(m.all) - len(m.kept(limit)))
			wantDropped := max(0, start-off)
			is.Equal(dropped, wantDropped) // dropped between off and the oldest kept byte
			from := max(off, start)
			var want []byte
			if from < int64(len(m.all)) {
				want = m.all[from:]
				if mx > 0 && len(want) > mx {
					want = want[:mx]
				}
			}
			is.True(bytes.Equal(data, want)) // From returns exactly the bytes after off
		}
	}
}

func TestRingGrowsWithOutput(t *testing.T) {
	is := is.New(t)
	r := NewRing(1 << 20)
	r.Write([]byte("hello"))
	is.True(cap(r.data) < 4096) // not preallocated at the limit
	is.Equal(string(r.Bytes()), "hello")
}

func TestRestoreRing(t *testing.T) {
	is := is.New(t)
	r := RestoreRing(4, []byte("abcdef"), 10)
	is.Equal(string(r.Bytes()), "cdef")
	is.Equal(r.Total(), int64(10))
	is.Equal(r.Dropped(), int64(6))
	r.Write([]byte("gh"))
	is.Equal(string(r.Bytes()), "efgh")
	data, dropped := r.From(5, 0)
	is.Equal(dropped, int64(3))
	is.Equal(string(data), "efgh")
}

func TestBufferReadResume(t *testing.T) {
	is := is.New(t)
	b := New(8)
	b.Write(Stdout, []byte("0123"))
	b.Write(Stderr, []byte("e1"))
	chunks, done, _ := b.Read(Pos{}, 3)
	is.True(!done)
	var got []string
	for _, c := range chunks {
		got = append(got, c.Stream.String()+":"+string(c.Data))
	}
	is.Equal(got, []string{"stdout:012", "stdout:3", "stderr:e1"}) // chunked by max, in write order
	pos := chunks[len(chunks)-1].End
	is.Equal(pos, Pos{4, 2})
	// Resume after writes that overflow the limit: told exactly what was lost.
	b.Write(Stdout, []byte("456789abcdef")) // total 16, keeps "89abcdef"
	chunks, _, _ = b.Read(pos, 0)
	is.Equal(len(chunks), 2)
	is.Equal(chunks[0].Dropped, int64(4)) // "4567" evicted before the reader saw them
	is.Equal(string(chunks[1].Data), "89abcdef")
	is.Equal(chunks[1].End, Pos{16, 2})
	b.Close()
	chunks, done, _ = b.Read(Pos{16, 2}, 0)
	is.Equal(len(chunks), 0)
	is.True(done)
	b.Write(Stdout, []byte("late")) // discarded after Close
	is.Equal(b.End(), Pos{16, 2})
}

func TestBufferFollowers(t *testing.T) {
	is := is.New(t)
	b := New(1 << 16)
	const n = 4
	var wg sync.WaitGroup
	results := make([][]byte, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			_, err := b.Follow(context.Background(), Pos{}, 100, func(c Chunk) error {
				if c.Dropped > 0 {
					t.Errorf("unexpected drop")
				}
				if c.Stream == Stdout {
					buf = append(buf, c.Data...)
				}
				return nil
			})
			if err != nil {
				t.Errorf("follow: %v", err)
			}
			results[i] = buf
		}()
	}
	var want []byte
	for i := 0; i < 1000; i++ {
		p := []byte{byte(i), byte(i >> 8), '\n'}
		want = append(want, p...)
		b.Write(Stdout, p)
	}
	b.Close()
	wg.Wait()
	for i := range results {
		is.True(bytes.Equal(results[i], want)) // every follower sees every byte once, in order
	}
}

func TestFollowStopsOnContext(t *testing.T) {
	is := is.New(t)
	b := New(16)
	b.Write(Stdout, []byte("x"))
	ctx, cancel := context.WithCancel(context.Background())
	pos, err := b.Follow(ctx, Pos{}, 0, func(c Chunk) error { cancel(); return nil })
	is.Equal(err, context.Canceled)
	is.Equal(pos, Pos{1, 0}) // the position after what fn accepted
}

func TestSnapshotAndRestore(t *testing.T) {
	is := is.New(t)
	b := New(4)
	b.Write(Stdout, []byte("abcdefg"))
	b.Write(Stderr, []byte("E"))
	b.Close()
	s := b.Snapshot()
	is.Equal(string(s.Stdout), "defg")
	is.Equal(s.StdoutDropped, int64(3))
	is.Equal(s.StdoutTotal, int64(7))
	is.True(s.Closed)
	r := Restore(4, s.Stdout, s.StdoutTotal, s.Stderr, s.StderrTotal, nil)
	chunks, done, _ := r.Read(Pos{5, 0}, 0)
	is.True(done)
	is.Equal(string(chunks[0].Data), "fg")
	is.Equal(string(chunks[1].Data), "E")

	// With the saved order, a restored buffer replays in write order.
	b = New(16)
	b.Write(Stderr, []byte("e1"))
	b.Write(Stdout, []byte("o1"))
	b.Write(Stderr, []byte("e2"))
	b.Close()
	s = b.Snapshot()
	r = Restore(16, s.Stdout, s.StdoutTotal, s.Stderr, s.StderrTotal, s.Order)
	chunks, _, _ = r.Read(Pos{}, 0)
	var got []string
	for _, c := range chunks {
		got = append(got, string(c.Data))
	}
	is.Equal(got, []string{"e1", "o1", "e2"})
	r = Restore(16, s.Stdout, s.StdoutTotal, s.Stderr, s.StderrTotal, []Run{{Stream: Stdout, Start: 0, End: 99}})
	chunks, _, _ = r.Read(Pos{}, 0)
	is.Equal(len(chunks), 2) // a bad order is ignored: per-stream replay
}

type write struct {
	s    Stream
	data []byte
}

// merge joins adjacent data pieces of the same stream.
func merge(ws []write) []write {
	var out []write
	for _, w := range ws {
		if len(w.data) == 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].s == w.s {
			out[n-1].data = append(out[n-1].data, w.data...)
			continue
		}
		out = append(out, write{w.s, append([]byte(nil), w.data...)})
	}
	return out
}

// TestBufferKeepsWriteOrder checks that a replay from any position gives
// exactly the kept bytes after it, interleaved in write order, with exact
// drop counts.
func TestBufferKeepsWriteOrder(t *testing.T) {
	is := is.New(t)
	rng := rand.New(rand.NewPCG(5, 6))
	const limit = 100
	b := New(limit)
	var ws []write
	for i := 0; i < 300; i++ {
		w := write{Stream(rng.IntN(2)), make([]byte, 1+rng.IntN(30))}
		for j := range w.data {
			w.data[j] = byte(rng.IntN(256))
		}
		ws = append(ws, w)
		b.Write(w.s, w.data)

		// Expected: every write trimmed to the bytes its stream still keeps,
		// after the reader's position.
		end := b.End()
		pos := Pos{rng.Int64N(end.Stdout + 1), rng.Int64N(end.Stderr + 1)}
		var want []write
		var off Pos
		for _, w := range ws {
			lo, hi := off.Get(w.s), off.Get(w.s)+int64(len(w.data))
			off.set(w.s, hi)
			from := max(lo, pos.Get(w.s), b.streams[w.s].Start())
			if from < hi {
				want = append(want, write{w.s, w.data[from-lo:]})
			}
		}
		chunks, _, _ := b.Read(pos, 7)
		var got []write
		var dropped Pos
		for _, c := range chunks {
			if c.Dropped > 0 {
				dropped.set(c.Stream, dropped.Get(c.Stream)+c.Dropped)
			}
			got = append(got, write{c.Stream, c.Data})
			is.True(len(c.Data) <= 7) // chunks bounded
		}
		is.Equal(merge(got), merge(want)) // exact bytes, in write order
		for _, s := range []Stream{Stdout, Stderr} {
			is.Equal(dropped.Get(s), max(0, b.streams[s].Start()-pos.Get(s))) // exact drop count
		}
		if len(chunks) > 0 {
			is.Equal(chunks[len(chunks)-1].End, end) // ends at the end
		}
	}
}

func TestSkipAndReopen(t *testing.T) {
	b := Restore(8, []byte("abc"), 3, nil, 0, nil)
	b.Reopen()
	b.Write(Stdout, []byte("d"))
	b.Skip(Stdout, 5) // bytes 4..8 never arrived
	b.Write(Stdout, []byte("xy"))
	b.Close()
	var got []Chunk
	if _, err := b.Follow(context.Background(), Pos{}, 100, func(c Chunk) error { got = append(got, c); return nil }); err != nil {
		t.Fatal(err)
	}
	// A reader from the start misses abcd and the skipped five: 9 dropped,
	// then xy.
	if len(got) != 2 || got[0].Dropped != 9 || string(got[1].Data) != "xy" || got[1].End.Stdout != 11 {
		t.Fatalf("chunks: %+v", got)
	}
	// A reader that had seen abcd misses the five only.
	got = nil
	b.Follow(context.Background(), Pos{Stdout: 4}, 100, func(c Chunk) error { got = append(got, c); return nil })
	if len(got) != 2 || got[0].Dropped != 5 || string(got[1].Data) != "xy" {
		t.Fatalf("chunks from 4: %+v", got)
	}
}
