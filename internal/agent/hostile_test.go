package agent_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/agent"
	"github.com/opensbx/opensbx/internal/agent/wire"
	"github.com/opensbx/opensbx/internal/outbuf"
)

// A fake agent for testing the client against a hostile peer: it answers
// hello properly, and every other stream with whatever answer returns.

// frame encodes one frame with its true length.
func frame(k wire.Kind, payload []byte) []byte {
	return rawFrame(byte(k), uint32(len(payload)), payload)
}

// rawFrame encodes a frame with any kind and any claimed length.
func rawFrame(k byte, length uint32, payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = k
	binary.BigEndian.PutUint32(b[1:], length)
	return append(b, payload...)
}

func header(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return frame(wire.KindHeader, b)
}

func body(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return header(wire.Response{Body: b})
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var goodInfo = wire.Info{Protocol: wire.ProtocolVersion, Version: "fake", Instance: "0123", GOARCH: "amd64"}

func runningCmd(id string) wire.Command {
	return wire.Command{ID: id, Argv: []string{"x"}, State: wire.StateRunning}
}

func finishedCmd(id string, code int) wire.Command {
	c := runningCmd(id)
	c.State = wire.StateFinished
	c.ExitCode = &code
	return c
}

// fakeAgent serves yamux streams; answer gets each request (after hello)
// and returns the raw bytes to send before closing the stream; a nil answer
// stalls (the stream stays open until the session ends).
type fakeAgent struct {
	sess *yamux.Session
	wg   sync.WaitGroup
}

func newFake(t testing.TB, answer func(wire.Request) []byte) (*agent.Client, *fakeAgent) {
	t.Helper()
	a, b := net.Pipe()
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	sess, err := yamux.Server(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAgent{sess: sess}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer st.Close()
				fr, err := wire.NewReader(st).Next()
				if err != nil {
					return
				}
				var req wire.Request
				if err := wire.DecodeHeader(fr, &req); err != nil {
					return
				}
				var out []byte
				if req.Op == wire.OpHello {
					out = body(goodInfo)
				} else if out = answer(req); out == nil {
					<-sess.CloseChan()
					return
				}
				st.Write(out)
			}()
		}
	}()
	t.Cleanup(func() {
		sess.Close()
		f.wg.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := agent.NewClient(ctx, a)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, f
}

// ops runs one client call each; their results matter only as errors.
var ops = map[string]func(ctx context.Context, c *agent.Client) error{
	"exec": func(ctx context.Context, c *agent.Client) error {
		_, err := c.Exec(ctx, agent.ExecRequest{ID: "cmd_1", Argv: []string{"x"}})
		return err
	},
	"execfollow": func(ctx context.Context, c *agent.Client) error {
		_, err := c.ExecFollow(ctx, agent.ExecRequest{ID: "cmd_1", Argv: []string{"x"}}, nil, func(outbuf.Chunk) error { return nil })
		return err
	},
	"follow": func(ctx context.Context, c *agent.Client) error {
		_, err := c.Follow(ctx, "cmd_1", outbuf.Pos{}, func(outbuf.Chunk) error { return nil })
		return err
	},
	"signal": func(ctx context.Context, c *agent.Client) error {
		_, err := c.Signal(ctx, "cmd_1", 15)
		return err
	},
	"list": func(ctx context.Context, c *agent.Client) error {
		_, err := c.Commands(ctx)
		return err
	},
	"stat": func(ctx context.Context, c *agent.Client) error {
		_, err := c.Stat(ctx, "/x")
		return err
	},
	"read": func(ctx context.Context, c *agent.Client) error {
		rc, _, err := c.ReadFile(ctx, "/x", 0)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(io.Discard, rc)
		return err
	},
	"write": func(ctx context.Context, c *agent.Client) error {
		_, err := c.WriteFile(ctx, "/x", strings.NewReader("data"), 4, 0)
		return err
	},
	"listdir": func(ctx context.Context, c *agent.Client) error {
		_, err := c.ListDir(ctx, "/x", func(agent.FileInfo) error { return nil })
		return err
	},
	"tarout": func(ctx context.Context, c *agent.Client) error {
		rc, _, err := c.TarOut(ctx, "/x")
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(io.Discard, rc)
		return err
	},
	"stdin": func(ctx context.Context, c *agent.Client) error {
		_, err := c.Stdin(ctx, "cmd_1", strings.NewReader("in"), true)
		return err
	},
	"stats": func(ctx context.Context, c *agent.Client) error {
		_, err := c.Stats(ctx)
		return err
	},
}

// garbage answers that break the protocol for every operation.
var garbage = map[string][]byte{
	"nothing":            {},
	"header over 1 MiB":  rawFrame('H', 0xFFFFFFFF, nil),
	"header just over":   rawFrame('H', wire.MaxHeader+1, nil),
	"unknown kind":       frame('Q', []byte("x")),
	"truncated frame":    rawFrame('H', 100, []byte(`{"body":`)),
	"truncated length":   {'H', 0, 0},
	"not json":           frame(wire.KindHeader, []byte("not json")),
	"unknown error code": header(map[string]any{"error": map[string]string{"code": "teapot", "message": "x"}}),
	"error and body":     header(map[string]any{"error": map[string]string{"code": "internal", "message": "x"}, "body": map[string]int{"a": 1}}),
	"data first":         frame(wire.KindData, []byte("x")),
	"empty header":       rawFrame('H', 0, nil),
}

func TestHostileGarbage(t *testing.T) {
	for name, answer := range garbage {
		t.Run(name, func(t *testing.T) {
			c, _ := newFake(t, func(wire.Request) []byte { return answer })
			for op, call := range ops {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := call(ctx, c)
				cancel()
				if !errors.Is(err, agent.ErrProtocol) {
					t.Errorf("%s: got %v, want ErrProtocol", op, err)
				}
			}
		})
	}
}

// TestHostileAnswers: answers that fit the framing but not the question.
func TestHostileAnswers(t *testing.T) {
	bigData := frame(wire.KindData, make([]byte, 100))
	bigData[1], bigData[2], bigData[3], bigData[4] = 0, 1, 0, 1 // 65537 bytes claimed
	fileInfo := wire.FileInfo{Name: "x", Type: wire.TypeFile, Size: 4, Mode: 0o644}
	readReply := func(fi wire.FileInfo, n int64) []byte { return body(wire.ReadReply{Info: fi, Length: n}) }
	dirInfo := wire.FileInfo{Name: "x", Type: wire.TypeDir, Mode: 1<<31 | 0o755}
	for _, tc := range []struct {
		name, op string
		answer   []byte
		want     error
	}{
		{"remote not found", "stat", header(wire.Response{Error: &wire.Error{Code: wire.CodeNotFound, Message: "gone"}}), agent.ErrNotFound},
		{"remote conflict", "signal", header(wire.Response{Error: &wire.Error{Code: wire.CodeConflict, Message: "done"}}), agent.ErrConflict},
		{"remote too large", "read", header(wire.Response{Error: &wire.Error{Code: wire.CodeTooLarge, Message: "big"}}), agent.ErrTooLarge},
		{"remote internal", "stats", header(wire.Response{Error: &wire.Error{Code: wire.CodeInternal, Message: "oops"}}), agent.ErrInternal},
		{"exec of another id", "exec", body(runningCmd("cmd_2")), agent.ErrProtocol},
		{"exec bad state", "exec", body(wire.Command{ID: "cmd_1", State: "dancing"}), agent.ErrProtocol},
		{"exec finished without code", "exec", body(wire.Command{ID: "cmd_1", State: wire.StateFinished}), agent.ErrProtocol},
		{"exec exit code 300", "exec", body(finishedCmd("cmd_1", 300)), agent.ErrProtocol},
		{"exec negative pid", "exec", body(wire.Command{ID: "cmd_1", State: wire.StateRunning, PID: -1}), agent.ErrProtocol},
		{"execfollow without trailer", "execfollow", cat(body(runningCmd("cmd_1")), frame(wire.KindStdout, []byte("x"))), agent.ErrProtocol},
		{"execfollow of another id", "execfollow", cat(body(runningCmd("cmd_2")), body(finishedCmd("cmd_2", 0))), agent.ErrProtocol},
		{"execfollow trailer of another id", "execfollow", cat(body(runningCmd("cmd_1")), body(finishedCmd("cmd_2", 0))), agent.ErrProtocol},
		{"follow without trailer", "follow", cat(body(runningCmd("cmd_1")), frame(wire.KindStdout, []byte("x"))), agent.ErrProtocol},
		{"follow trailer running", "follow", cat(body(runningCmd("cmd_1")), body(runningCmd("cmd_1"))), agent.ErrProtocol},
		{"follow data frame over 64 KiB", "follow", cat(body(runningCmd("cmd_1")), bigData), agent.ErrProtocol},
		{"follow empty output frame", "follow", cat(body(runningCmd("cmd_1")), rawFrame('O', 0, nil)), agent.ErrProtocol},
		{"follow dropped zero", "follow", cat(body(runningCmd("cmd_1")), frame(wire.KindDropped, make([]byte, 9))), agent.ErrProtocol},
		{"follow dropped bad stream", "follow", cat(body(runningCmd("cmd_1")), frame(wire.KindDropped, []byte{7, 0, 0, 0, 0, 0, 0, 0, 1})), agent.ErrProtocol},
		{"follow dropped short", "follow", cat(body(runningCmd("cmd_1")), frame(wire.KindDropped, []byte{1, 1})), agent.ErrProtocol},
		{"follow dropped overflow", "follow", cat(body(runningCmd("cmd_1")), frame(wire.KindDropped, []byte{1, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), frame(wire.KindDropped, []byte{1, 0, 0, 0, 0, 0, 0, 0, 9})), agent.ErrProtocol},
		{"follow data kind", "follow", cat(body(runningCmd("cmd_1")), frame(wire.KindData, []byte("x"))), agent.ErrProtocol},
		{"follow end kind", "follow", cat(body(runningCmd("cmd_1")), frame(wire.KindEnd, nil)), agent.ErrProtocol},
		{"read more than announced", "read", cat(readReply(fileInfo, 4), frame(wire.KindData, []byte("12345")), body(nil)), agent.ErrProtocol},
		{"read less than announced", "read", cat(readReply(fileInfo, 4), frame(wire.KindData, []byte("12")), header(wire.Response{})), agent.ErrProtocol},
		{"read no trailer", "read", cat(readReply(fileInfo, 4), frame(wire.KindData, []byte("1234"))), agent.ErrProtocol},
		{"read trailer with body", "read", cat(readReply(fileInfo, 4), frame(wire.KindData, []byte("1234")), body(fileInfo)), agent.ErrProtocol},
		{"read of a directory", "read", cat(readReply(dirInfo, 0), header(wire.Response{})), agent.ErrProtocol},
		{"read length not the size", "read", cat(readReply(fileInfo, 3), frame(wire.KindData, []byte("123")), header(wire.Response{})), agent.ErrProtocol},
		{"read unknown length of a sized file", "read", cat(readReply(fileInfo, -1), frame(wire.KindData, []byte("1234")), header(wire.Response{})), agent.ErrProtocol},
		{"read bad length", "read", cat(readReply(wire.FileInfo{Name: "x", Type: wire.TypeFile, Mode: 0o644}, -5)), agent.ErrProtocol},
		{"read of the largest size", "read", cat(readReply(wire.FileInfo{Name: "x", Type: wire.TypeFile, Size: 1<<63 - 1, Mode: 0o644}, 1<<63-1), frame(wire.KindData, []byte("1234")), header(wire.Response{})), agent.ErrProtocol},
		{"read negative size", "read", cat(readReply(wire.FileInfo{Name: "x", Type: wire.TypeFile, Size: -1}, -1)), agent.ErrProtocol},
		{"read trailer error", "read", cat(readReply(fileInfo, 4), frame(wire.KindData, []byte("1234")), header(wire.Response{Error: &wire.Error{Code: wire.CodeConflict, Message: "changed"}})), agent.ErrConflict},
		{"stat unknown type", "stat", body(wire.FileInfo{Name: "x", Type: "weird"}), agent.ErrProtocol},
		{"stat type and mode disagree", "stat", body(wire.FileInfo{Name: "x", Type: wire.TypeDir, Mode: 0o644}), agent.ErrProtocol},
		{"stat without body", "stat", header(wire.Response{}), agent.ErrProtocol},
		{"list items not an array", "list", cat(header(wire.Response{}), header(map[string]any{"items": map[string]int{"a": 1}})), agent.ErrProtocol},
		{"list bad command", "list", cat(header(wire.Response{}), header(map[string]any{"items": []wire.Command{{ID: ""}}})), agent.ErrProtocol},
		{"list without trailer", "list", cat(header(wire.Response{})), agent.ErrProtocol},
		{"listdir name with slash", "listdir", cat(body(dirInfo), header(map[string]any{"items": []wire.FileInfo{{Name: "a/b", Type: wire.TypeFile}}}), header(wire.Response{})), agent.ErrProtocol},
		{"listdir dot dot", "listdir", cat(body(dirInfo), header(map[string]any{"items": []wire.FileInfo{{Name: "..", Type: wire.TypeDir, Mode: 1 << 31}}}), header(wire.Response{})), agent.ErrProtocol},
		{"listdir of a file", "listdir", cat(body(fileInfo), header(map[string]any{"items": []wire.FileInfo{{Name: "a", Type: wire.TypeFile}}}), header(wire.Response{})), agent.ErrProtocol},
		{"tarout no trailer", "tarout", cat(body(fileInfo), frame(wire.KindData, []byte("tar"))), agent.ErrProtocol},
		{"write success too early", "write", body(wire.WriteReply{Size: 4}), nil}, // may be seen as early or late; see below
		{"write wrong size", "write", body(wire.WriteReply{Size: 3}), agent.ErrProtocol},
		{"stdin bad reply", "stdin", body(wire.StdinReply{Written: -1, Closed: true}), agent.ErrProtocol},
		{"stats bad version", "stats", body(wire.Stats{CgroupVersion: 3}), agent.ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newFake(t, func(wire.Request) []byte { return tc.answer })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := ops[tc.op](ctx, c)
			if tc.want == nil {
				return // any outcome but a hang or a panic
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestHostileStall: an agent that never answers cannot hold a call beyond
// its ctx, in any operation.
func TestHostileStall(t *testing.T) {
	c, _ := newFake(t, func(wire.Request) []byte { return nil })
	for op, call := range ops {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := call(ctx, c)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: got %v, want context.DeadlineExceeded", op, err)
		}
	}
}

// TestHostileSessionDeath: a connection that dies fails the calls in
// flight and every later call with ErrSessionClosed, and closes Done.
func TestHostileSessionDeath(t *testing.T) {
	is := is.New(t)
	started := make(chan struct{})
	c, fake := newFake(t, func(req wire.Request) []byte {
		close(started)
		return nil // stall
	})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Follow(context.Background(), "cmd_1", outbuf.Pos{}, func(outbuf.Chunk) error { return nil })
		errc <- err
	}()
	<-started
	fake.sess.Close()
	is.True(errors.Is(<-errc, agent.ErrSessionClosed)) // the call in flight
	<-c.Done()
	is.True(errors.Is(c.Err(), agent.ErrSessionClosed)) // Err says why
	_, err := c.Stat(context.Background(), "/")
	is.True(errors.Is(err, agent.ErrSessionClosed)) // later calls
}

// TestHostileHandshake: an agent of another protocol version, or one that
// speaks garbage, makes NewClient fail without hanging.
func TestHostileHandshake(t *testing.T) {
	is := is.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	a, b := net.Pipe()
	go func() {
		b.Write(bytes.Repeat([]byte("garbage!"), 100))
		io.Copy(io.Discard, b)
	}()
	_, err := agent.NewClient(ctx, a)
	is.True(errors.Is(err, agent.ErrSessionClosed)) // yamux gives up
	b.Close()

	a2, b2 := net.Pipe()
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	sess, _ := yamux.Server(b2, cfg)
	defer sess.Close()
	go func() {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		defer st.Close()
		wire.NewReader(st).Next()
		info := goodInfo
		info.Protocol = 2
		st.Write(body(info))
	}()
	_, err = agent.NewClient(ctx, a2)
	is.True(errors.Is(err, agent.ErrIncompatible)) // another version

	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	a3, b3 := net.Pipe()
	defer b3.Close()
	go io.Copy(io.Discard, b3) // reads, never answers
	_, err = agent.NewClient(short, a3)
	is.True(errors.Is(err, context.DeadlineExceeded)) // a silent peer
}

// FuzzClientResponse answers one client call with arbitrary bytes, as a
// hostile agent would: the call must return (never hang or panic), and the
// session must stay usable for the next call.
func FuzzClientResponse(f *testing.F) {
	var names []string
	for name := range ops {
		names = append(names, name)
	}
	sort.Strings(names)
	for i := range names {
		for _, g := range garbage {
			f.Add(byte(i), g)
		}
	}
	var answer atomic.Pointer[[]byte]
	c, _ := newFake(f, func(wire.Request) []byte {
		if p := answer.Load(); p != nil && *p != nil {
			return *p
		}
		return []byte{}
	})
	f.Fuzz(func(t *testing.T, op byte, resp []byte) {
		answer.Store(&resp)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := ops[names[int(op)%len(names)]](ctx, c)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s hung on %q", names[int(op)%len(names)], resp)
		}
		if _, err := c.Hello(ctx); err != nil {
			t.Fatalf("session broken after %s: %v", names[int(op)%len(names)], err)
		}
	})
}
