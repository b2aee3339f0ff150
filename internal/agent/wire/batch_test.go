package wire

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
)

// writes records every write; gate, when set, blocks each write until it
// can receive.
type writes struct {
	mu   sync.Mutex
	list [][]byte
	gate chan struct{}
	fail error
}

func (w *writes) Write(p []byte) (int, error) {
	if w.gate != nil {
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return 0, w.fail
	}
	w.list = append(w.list, append([]byte(nil), p...))
	return len(p), nil
}

func (w *writes) snapshot() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.list...)
}

// waitWrites waits until w has n writes.
func waitWrites(t *testing.T, w *writes, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := w.snapshot()
		if len(l) >= n || time.Now().After(deadline) {
			return l
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// yamux frames as its send loop writes them.
var (
	synFrame  = []byte{0, 1, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0} // window update, SYN: opens stream 3
	ackFrame  = []byte{0, 1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0} // window update, ACK
	finFrame  = []byte{0, 1, 0, 4, 0, 0, 0, 3, 0, 0, 0, 0} // window update, FIN
	dataFrame = []byte{0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 5} // data frame, 5 bytes follow
)

func TestBatcherJoinsAFrame(t *testing.T) {
	is := is.New(t)
	var w writes
	b := NewBatcher(&w, BatchOptions{Hold: time.Hour}) // a SYN waits for its request however long it takes
	defer b.Close()
	for _, p := range [][]byte{synFrame, dataFrame, []byte("hello")} {
		n, err := b.Write(p)
		is.NoErr(err)
		is.Equal(n, len(p))
	}
	got := waitWrites(t, &w, 1)
	is.Equal(len(got), 1)                                                             // one write
	is.Equal(got[0], bytes.Join([][]byte{synFrame, dataFrame, []byte("hello")}, nil)) // the stream's opening, header and body
}

func TestBatcherWritesALargeBodyUncopied(t *testing.T) {
	is := is.New(t)
	var w writes
	b := NewBatcher(&w, BatchOptions{Hold: time.Hour})
	defer b.Close()
	big := bytes.Repeat([]byte("b"), 64<<10)
	header := []byte{0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 0, 0} // data frame, 64 KiB follow
	for _, p := range [][]byte{[]byte("before"), header, big, []byte("after")} {
		n, err := b.Write(p)
		is.NoErr(err)
		is.Equal(n, len(p))
	}
	got := waitWrites(t, &w, 4)
	is.Equal(bytes.Join(got, nil), bytes.Join([][]byte{[]byte("before"), header, big, []byte("after")}, nil)) // in order
	is.Equal(got[2], big)                                                                                     // the body in a write of its own
}

func TestBatcherHoldsAnOpeningOnlySoLong(t *testing.T) {
	is := is.New(t)
	var w writes
	b := NewBatcher(&w, BatchOptions{Hold: 2 * time.Millisecond})
	defer b.Close()
	_, err := b.Write(ackFrame)
	is.NoErr(err)
	got := waitWrites(t, &w, 1)
	is.Equal(len(got), 1)
	is.Equal(got[0], ackFrame) // alone, after the hold
}

func TestBatcherSendsAFINAtOnce(t *testing.T) {
	is := is.New(t)
	var w writes
	b := NewBatcher(&w, BatchOptions{Hold: time.Hour})
	defer b.Close()
	_, err := b.Write(finFrame)
	is.NoErr(err)
	got := waitWrites(t, &w, 1)
	is.Equal(got, [][]byte{finFrame}) // a stream's end waits for nothing
}

func TestBatcherHoldFIN(t *testing.T) {
	is := is.New(t)
	var w writes
	b := NewBatcher(&w, BatchOptions{Hold: time.Hour, HoldFIN: true})
	defer b.Close()
	for _, p := range [][]byte{finFrame, synFrame, dataFrame, []byte("hello")} {
		_, err := b.Write(p)
		is.NoErr(err)
	}
	got := waitWrites(t, &w, 1)
	is.Equal(got, [][]byte{bytes.Join([][]byte{finFrame, synFrame, dataFrame, []byte("hello")}, nil)}) // the last stream's end goes with the next request
}

func TestBatcherGathersWhileAWriteIsOnItsWay(t *testing.T) {
	is := is.New(t)
	w := writes{gate: make(chan struct{})}
	b := NewBatcher(&w, BatchOptions{Hold: time.Hour})
	defer b.Close()
	_, err := b.Write([]byte("first"))
	is.NoErr(err)
	time.Sleep(5 * time.Millisecond) // the goroutine is in the first write, blocked
	for _, p := range [][]byte{finFrame, dataFrame, []byte("12345")} {
		_, err := b.Write(p)
		is.NoErr(err)
	}
	w.gate <- struct{}{}
	w.gate <- struct{}{}
	got := waitWrites(t, &w, 2)
	is.Equal(got, [][]byte{[]byte("first"), bytes.Join([][]byte{finFrame, dataFrame, []byte("12345")}, nil)})
}

func TestBatcherBoundsWhatItHolds(t *testing.T) {
	is := is.New(t)
	w := writes{gate: make(chan struct{})}
	b := NewBatcher(&w, BatchOptions{Hold: time.Hour})
	defer b.Close()
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	wrote := make(chan int)
	go func() {
		total := 0
		for total < 2*BatchMax {
			n, err := b.Write(chunk)
			if err != nil {
				break
			}
			total += n
		}
		wrote <- total
	}()
	select {
	case <-wrote:
		t.Fatal("the writes did not wait for a connection that takes nothing")
	case <-time.After(50 * time.Millisecond):
	}
	close(w.gate) // the connection takes everything now
	is.Equal(<-wrote, 2*BatchMax)
}

func TestBatcherReportsAFailedWrite(t *testing.T) {
	is := is.New(t)
	boom := errors.New("boom")
	w := writes{fail: boom}
	b := NewBatcher(&w, BatchOptions{Hold: time.Hour})
	defer b.Close()
	_, err := b.Write([]byte("x"))
	is.NoErr(err) // taken; the write of the connection comes after
	deadline := time.Now().Add(5 * time.Second)
	for b.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
	is.True(errors.Is(b.Err(), boom))
	_, err = b.Write([]byte("y"))
	is.True(errors.Is(err, boom)) // every later write fails alike
}

func TestBatcherClose(t *testing.T) {
	is := is.New(t)
	pr, pw := io.Pipe()
	b := NewBatcher(pw, BatchOptions{Hold: time.Hour})
	_, err := b.Write([]byte("nobody reads this"))
	is.NoErr(err)
	time.Sleep(5 * time.Millisecond)
	pr.Close() // the connection goes: the write under way ends
	is.NoErr(b.Close())
	is.NoErr(b.Close()) // idempotent
	_, err = b.Write([]byte("late"))
	is.True(err != nil)
}

// FuzzBatcher: whatever the writes, the connection gets the same bytes in
// the same order.
func FuzzBatcher(f *testing.F) {
	f.Add(bytes.Join([][]byte{synFrame, dataFrame, []byte("hello"), finFrame}, nil), []byte{12, 12, 5, 12})
	f.Add([]byte("plain bytes"), []byte{3, 0, 200})
	f.Add(append([]byte{0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0x50, 0}, bytes.Repeat([]byte("z"), 20<<10)...), []byte{12, 0})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var w writes
		b := NewBatcher(&w, BatchOptions{Hold: 100 * time.Microsecond, HoldFIN: len(cuts)%2 == 0})
		rest := data
		for _, c := range cuts {
			if len(rest) == 0 {
				break
			}
			n := min(int(c), len(rest))
			if c == 0 {
				n = len(rest) // the rest in one write: large ones too
			}
			if _, err := b.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if len(rest) > 0 {
			if _, err := b.Write(rest); err != nil {
				t.Fatal(err)
			}
		}
		// Everything goes out: a held header only until what follows it,
		// here a last plain write.
		if _, err := b.Write([]byte("end")); err != nil {
			t.Fatal(err)
		}
		want := append(append([]byte(nil), data...), "end"...)
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := bytes.Join(w.snapshot(), nil)
			if bytes.Equal(got, want) {
				break
			}
			if len(got) > len(want) || !bytes.Equal(got, want[:len(got)]) {
				t.Fatalf("the connection got %q, want a prefix of %q", got, want)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the connection got %q of %q", got, want)
			}
			time.Sleep(50 * time.Microsecond)
		}
		b.Close()
	})
}
