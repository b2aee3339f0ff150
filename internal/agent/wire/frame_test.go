package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/matryer/is"
)

func encode(t *testing.T, fn func(w *Writer) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, 1024)
	if err := fn(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	is := is.New(t)
	big := bytes.Repeat([]byte("z"), MaxData*2+10)
	b := encode(t, func(w *Writer) error {
		if err := w.JSON(Response{Body: []byte(`{"a":1}`)}); err != nil {
			return err
		}
		if err := w.Frame(KindStdout, []byte("out")); err != nil {
			return err
		}
		if err := w.Dropped(StreamStderr, 42); err != nil {
			return err
		}
		if _, err := w.Write(big); err != nil { // split into data frames
			return err
		}
		return w.End(EndClose)
	})
	r := NewReader(bytes.NewReader(b))
	f, err := r.Next()
	is.NoErr(err)
	resp, err := DecodeResponse(f)
	is.NoErr(err)
	is.Equal(string(resp.Body), `{"a":1}`)
	f, err = r.Next()
	is.NoErr(err)
	is.Equal(f.Kind, KindStdout)
	is.Equal(string(f.Payload), "out")
	f, err = r.Next()
	is.NoErr(err)
	s, n := f.Dropped()
	is.Equal(s, StreamStderr)
	is.Equal(n, int64(42))
	body := NewBody(r)
	got, err := io.ReadAll(body)
	is.NoErr(err)
	is.True(bytes.Equal(got, big)) // data frames join back
	tail, ok := body.Tail()
	is.True(ok)
	is.Equal(tail.Kind, KindEnd)
	is.Equal(tail.EndFlags(), EndClose)
	is.True(!body.Aborted())
	_, err = r.Next()
	is.Equal(err, io.EOF) // clean end between frames
}

func TestReaderRejects(t *testing.T) {
	frameOf := func(k byte, n uint32, p []byte) []byte {
		b := []byte{k, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], n)
		return append(b, p...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"unknown kind", frameOf('?', 0, nil), ErrMalformed},
		{"header over the limit", frameOf('H', MaxHeader+1, nil), ErrMalformed},
		{"data over the limit", frameOf('D', MaxData+1, nil), ErrMalformed},
		{"stdout over the limit", frameOf('O', 1<<31, nil), ErrMalformed},
		{"empty data", frameOf('D', 0, nil), ErrMalformed},
		{"empty header", frameOf('H', 0, nil), ErrMalformed},
		{"dropped short", frameOf('X', 3, []byte{1, 2, 3}), ErrMalformed},
		{"dropped stream", frameOf('X', 9, []byte{3, 0, 0, 0, 0, 0, 0, 0, 1}), ErrMalformed},
		{"dropped zero", frameOf('X', 9, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}), ErrMalformed},
		{"dropped negative", frameOf('X', 9, []byte{1, 0x80, 0, 0, 0, 0, 0, 0, 0}), ErrMalformed},
		{"end flags", frameOf('Z', 1, []byte{2}), ErrMalformed},
		{"end too long", frameOf('Z', 2, []byte{1, 1}), ErrMalformed},
		{"truncated length", []byte{'H', 0}, io.ErrUnexpectedEOF},
		{"truncated payload", frameOf('D', 10, []byte("abc")), io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.in)).Next()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestWriterRejects(t *testing.T) {
	is := is.New(t)
	w := NewWriter(io.Discard, 64)
	is.True(errors.Is(w.Frame(KindData, nil), ErrMalformed))                     // empty data
	is.True(errors.Is(w.Frame(KindData, make([]byte, MaxData+1)), ErrMalformed)) // too big
	is.True(errors.Is(w.Frame('?', []byte("x")), ErrMalformed))                  // unknown kind
	is.True(errors.Is(w.Dropped(StreamStdout, 0), ErrMalformed))                 // nothing dropped
	is.True(errors.Is(w.JSON(bytes.Repeat([]byte("x"), MaxHeader)), ErrMalformed))
	n, err := w.Write(nil)
	is.NoErr(err)
	is.Equal(n, 0) // an empty write sends nothing
}

func TestDecodeResponse(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{}`, true},
		{`{"body":{"x":1}}`, true},
		{`{"items":[1,2]}`, true},
		{`{"error":{"code":"not_found","message":"m"}}`, true},
		{`{"error":{"code":"nope","message":"m"}}`, false},
		{`{"error":{"code":"internal"},"body":{}}`, false},
		{`{"body":{},"items":[]}`, false},
		{`{"items":{"a":1}}`, false},
		{`[]`, false},
		{`{`, false},
	} {
		_, err := DecodeResponse(Frame{Kind: KindHeader, Payload: []byte(tc.in)})
		if (err == nil) != tc.ok {
			t.Errorf("%s: got %v", tc.in, err)
		}
	}
	if _, err := DecodeResponse(Frame{Kind: KindData, Payload: []byte(`{}`)}); !errors.Is(err, ErrMalformed) {
		t.Errorf("data frame decoded as a response: %v", err)
	}
}

func TestBodyAborted(t *testing.T) {
	is := is.New(t)
	b := encode(t, func(w *Writer) error { return w.Frame(KindData, []byte("part")) })
	body := NewBody(NewReader(bytes.NewReader(b)))
	got, err := io.ReadAll(body)
	is.Equal(string(got), "part")
	is.True(errors.Is(err, io.ErrUnexpectedEOF)) // no terminating frame
	is.True(body.Aborted())
	_, ok := body.Tail()
	is.True(!ok)
}

// FuzzReader feeds arbitrary bytes to the frame decoder, as a hostile peer
// would: it must never panic, never hand out a payload over its kind's
// limit, and stop at the first error.
func FuzzReader(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("H\x00\x00\x00\x02{}"))
	f.Add([]byte("H\x00\x00\x00\x2b{\"error\":{\"code\":\"not_found\",\"message\":\"m\"}}O\x00\x00\x00\x01xX\x00\x00\x00\x09\x01\x00\x00\x00\x00\x00\x00\x00\x05"))
	f.Add([]byte("H\xff\xff\xff\xff"))
	f.Add([]byte("D\x00\x00\x00\x03abcZ\x00\x00\x00\x01\x01"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		for range 1000 {
			f, err := r.Next()
			if err != nil {
				return
			}
			limit, ok := maxPayload(f.Kind)
			if !ok || len(f.Payload) > limit {
				t.Fatalf("frame %c of %d bytes passed", f.Kind, len(f.Payload))
			}
			switch f.Kind {
			case KindHeader:
				if r, err := DecodeResponse(f); err == nil && r.Error != nil && !r.Error.Code.Valid() {
					t.Fatalf("invalid code %q passed", r.Error.Code)
				}
			case KindDropped:
				if _, n := f.Dropped(); n <= 0 {
					t.Fatalf("dropped count %d passed", n)
				}
			}
		}
	})
}
