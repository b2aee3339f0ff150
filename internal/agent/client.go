package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/opensbx/opensbx/internal/agent/wire"
	"github.com/opensbx/opensbx/internal/outbuf"
)

// Types of the protocol, as the client hands them out.
type (
	// Info describes the agent at the other end (see Client.Info).
	Info = wire.Info
	// ExecRequest describes a command to start.
	ExecRequest = wire.ExecRequest
	// Command describes a command the agent knows.
	Command = wire.Command
	// FileInfo describes a file system entry in the sandbox.
	FileInfo = wire.FileInfo
	// Stats is a resource sample of the sandbox's cgroup.
	Stats = wire.Stats
)

// Exit codes of `opensbx-agent connect` (the relay the Manager runs as an
// exec) when it cannot reach the agent, as the engine reports them once the
// exec has ended.
const (
	// ExitNoAgent: the sandbox's agent is not running.
	ExitNoAgent = wire.ExitNoAgent
	// ExitBusy: the agent serves as many sessions as it allows.
	ExitBusy = wire.ExitBusy
	// ExitRefused: the agent refused the relay's user (not root).
	ExitRefused = wire.ExitRefused
)

// Command states.
const (
	StateRunning  = wire.StateRunning
	StateFinished = wire.StateFinished
)

// Bounds on what the client accepts from an agent.
const (
	// maxListItems bounds the commands of one Commands call.
	maxListItems = 1 << 16
	// maxNameLen bounds a listed entry's name; maxLinkLen a link target.
	maxNameLen = 4096
	maxLinkLen = 4096
)

// Client is the Manager's side of one session with an agent: a yamux
// session (the client end) over a connection to the agent, one stream per
// call. It is safe for concurrent use; calls run in parallel.
//
// Nothing the agent sends is trusted: every frame is checked against the
// protocol's limits, malformed answers fail with ErrProtocol, and every call
// ends when its ctx does (the call's stream is then closed, so the agent
// stops too). When the session dies (Done is closed) every call fails with
// an error matching ErrSessionClosed.
type Client struct {
	conn   *trackedConn
	sess   *yamux.Session
	info   Info
	closed atomic.Bool
}

// uploadChunk is the largest data frame the client sends. Smaller than
// wire.MaxData: the session keeps a send buffer as large as the largest
// frame it wrote, for as long as it lives.
const uploadChunk = 16 << 10

// trackedConn remembers the first error of the connection, to explain a
// dead session, and batches yamux's writes (wire.Batcher).
type trackedConn struct {
	rwc   io.ReadWriteCloser
	batch *wire.Batcher
	mu    sync.Mutex
	fail  error
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.rwc.Read(p)
	if err != nil {
		c.setErr(err)
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.batch.Write(p)
	if err != nil {
		c.setErr(err)
	}
	return n, err
}

// Close closes the connection (which ends a write of it under way) and
// then stops the batcher.
func (c *trackedConn) Close() error {
	err := c.rwc.Close()
	c.batch.Close()
	return err
}

func (c *trackedConn) setErr(err error) {
	c.mu.Lock()
	if c.fail == nil {
		c.fail = err
	}
	c.mu.Unlock()
}

func (c *trackedConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fail
}

// clientConfig keeps an idle session small: no keepalive goroutine, no
// per-stream open timer. The backlog also bounds the streams this side has
// opened and the agent not yet accepted: one would make concurrent
// operations wait for each other's acceptance.
func clientConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = 256
	c.EnableKeepAlive = false
	c.ConnectionWriteTimeout = 30 * time.Second
	c.StreamCloseTimeout = time.Minute
	c.StreamOpenTimeout = 0
	c.LogOutput = io.Discard
	return c
}

// NewClient starts a session over conn (for example the relay of an exec
// of `opensbx-agent connect`, demultiplexed) and says hello: it returns
// once the agent has answered with a protocol version this client speaks
// (else ErrIncompatible). The Client owns conn from then on, also on error
// (it is closed); closing conn must unblock a pending Read.
func NewClient(ctx context.Context, conn io.ReadWriteCloser) (*Client, error) {
	tc := &trackedConn{rwc: conn, batch: wire.NewBatcher(conn, wire.BatchOptions{HoldFIN: true})}
	sess, err := yamux.Client(tc, clientConfig())
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("agent session: %w", err)
	}
	c := &Client{conn: tc, sess: sess}
	info, err := c.Hello(ctx)
	if err != nil {
		sess.Close()
		return nil, err
	}
	c.info = info
	return c, nil
}

// Info returns what the agent said when the session started. A Manager
// that reconnects compares Instance to learn whether the agent restarted.
func (c *Client) Info() Info { return c.info }

// Done is closed when the session has ended.
func (c *Client) Done() <-chan struct{} { return c.sess.CloseChan() }

// Err returns nil while the session lives, then an error matching
// ErrSessionClosed that says why it ended.
func (c *Client) Err() error {
	if !c.sess.IsClosed() {
		return nil
	}
	if c.closed.Load() {
		return fmt.Errorf("%w: closed by the client", ErrSessionClosed)
	}
	if err := c.conn.err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %v", ErrSessionClosed, err)
	}
	return fmt.Errorf("%w: the connection to the agent ended", ErrSessionClosed)
}

// Close ends the session and closes the connection; calls in flight fail
// with ErrSessionClosed. It waits for the session's goroutines and is
// idempotent. The agent's commands keep running.
func (c *Client) Close() error {
	c.closed.Store(true)
	return c.sess.Close()
}

// call is one operation: one stream.
type call struct {
	c    *Client
	op   wire.Op
	ctx  context.Context
	st   *yamux.Stream
	fr   *wire.Reader
	w    *wire.Writer
	stop func() bool
}

// open opens a stream and sends the Request.
func (c *Client) open(ctx context.Context, op wire.Op, body any) (*call, error) {
	return c.openFlush(ctx, op, body, true)
}

// openFlush opens a stream and writes the Request; unless flush, it stays
// buffered to go out with what follows (an upload's first data).
func (c *Client) openFlush(ctx context.Context, op wire.Op, body any, flush bool) (*call, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("agent %s: %w", op, err)
	}
	if err := c.Err(); err != nil {
		return nil, fmt.Errorf("agent %s: %w", op, err)
	}
	req := wire.Request{Op: op}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", op, err)
		}
		req.Body = b
	}
	st, err := c.sess.OpenStream()
	if err != nil {
		if serr := c.Err(); serr != nil {
			err = serr
		}
		return nil, fmt.Errorf("agent %s: %w", op, err)
	}
	cl := &call{c: c, op: op, ctx: ctx, st: st, fr: wire.NewReader(st), w: wire.NewWriter(st, 4<<10)}
	cl.stop = context.AfterFunc(ctx, func() {
		st.SetDeadline(time.Unix(1, 0))
		st.Close()
	})
	if err := cl.w.JSON(req); err != nil {
		cl.close()
		if errors.Is(err, wire.ErrMalformed) {
			return nil, fmt.Errorf("agent %s: %w: request too large: %v", op, ErrInvalid, err)
		}
		return nil, cl.wrap(err)
	}
	if !flush {
		return cl, nil
	}
	if err := cl.w.Flush(); err != nil {
		cl.close()
		return nil, cl.wrap(err)
	}
	return cl, nil
}

// close ends the call: the agent sees the stream closed. Idempotent.
func (cl *call) close() {
	cl.stop()
	cl.st.Close()
}

// wrap explains a failure of the call's stream.
func (cl *call) wrap(err error) error {
	var re *RemoteError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re), errors.Is(err, ErrProtocol):
		return err
	case cl.ctx.Err() != nil:
		return fmt.Errorf("agent %s: %w", cl.op, cl.ctx.Err())
	case cl.c.sess.IsClosed():
		return fmt.Errorf("agent %s: %w", cl.op, cl.c.Err())
	case errors.Is(err, wire.ErrMalformed):
		return fmt.Errorf("agent %s: %w: %v", cl.op, ErrProtocol, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("agent %s: %w: the agent ended the stream early", cl.op, ErrProtocol)
	case errors.Is(err, yamux.ErrConnectionReset):
		return fmt.Errorf("agent %s: %w: the agent reset the stream", cl.op, ErrProtocol)
	}
	return fmt.Errorf("agent %s: %w", cl.op, err)
}

// next reads the next frame.
func (cl *call) next() (wire.Frame, error) {
	f, err := cl.fr.Next()
	if err != nil {
		return wire.Frame{}, cl.wrap(err)
	}
	return f, nil
}

// responseFrom decodes f as a Response; an Error in it is returned as a
// *RemoteError.
func (cl *call) responseFrom(f wire.Frame) (wire.Response, error) {
	if f.Kind != wire.KindHeader {
		return wire.Response{}, protocolError("agent %s: got a %c frame, want a response", cl.op, f.Kind)
	}
	r, err := wire.DecodeResponse(f)
	if err != nil {
		return wire.Response{}, cl.wrap(err)
	}
	if r.Error != nil {
		return r, remoteError(cl.op, r.Error)
	}
	return r, nil
}

// response reads the next frame as a Response.
func (cl *call) response() (wire.Response, error) {
	f, err := cl.next()
	if err != nil {
		return wire.Response{}, err
	}
	return cl.responseFrom(f)
}

// decode decodes a Response's body into v.
func (cl *call) decode(r wire.Response, v any) error {
	if len(r.Body) == 0 {
		return protocolError("agent %s: response without a body", cl.op)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		return protocolError("agent %s: bad response body: %v", cl.op, err)
	}
	return nil
}

// trailer reads the Response that ends a stream; it must carry nothing.
func (cl *call) trailer(f wire.Frame) error {
	r, err := cl.responseFrom(f)
	if err != nil {
		return err
	}
	if len(r.Body) > 0 || len(r.Items) > 0 {
		return protocolError("agent %s: unexpected content in the final response", cl.op)
	}
	return nil
}

// simple runs an operation of one Request and one Response, decoding the
// Response's body into out (nil: the Response must be empty).
func (c *Client) simple(ctx context.Context, op wire.Op, body, out any) error {
	cl, err := c.open(ctx, op, body)
	if err != nil {
		return err
	}
	defer cl.close()
	r, err := cl.response()
	if err != nil {
		return err
	}
	if out == nil {
		if len(r.Body) > 0 || len(r.Items) > 0 {
			return protocolError("agent %s: unexpected content in the response", op)
		}
		return nil
	}
	return cl.decode(r, out)
}

// Hello asks the agent to describe itself; NewClient does it once. It
// fails with ErrIncompatible when the agent speaks another protocol.
func (c *Client) Hello(ctx context.Context) (Info, error) {
	var info Info
	if err := c.simple(ctx, wire.OpHello, wire.HelloRequest{Protocol: wire.ProtocolVersion}, &info); err != nil {
		return Info{}, err
	}
	if info.Protocol != wire.ProtocolVersion {
		return Info{}, fmt.Errorf("agent hello: %w: the agent speaks version %d, this client %d", ErrIncompatible, info.Protocol, wire.ProtocolVersion)
	}
	if info.Instance == "" || len(info.Instance) > 128 || len(info.Version) > 128 || len(info.GOARCH) > 32 || len(info.DefaultUser) > 1024 {
		return Info{}, protocolError("agent hello: bad agent description")
	}
	return info, nil
}

// checkCommand validates a command description from the agent; id, when
// not empty, is the command asked about.
func checkCommand(op wire.Op, cmd *Command, id string) error {
	bad := func(why string) error { return protocolError("agent %s: command %q: %s", op, cmd.ID, why) }
	switch {
	case id != "" && cmd.ID != id:
		return protocolError("agent %s: asked about command %q, got %q", op, id, cmd.ID)
	case cmd.ID == "" || len(cmd.ID) > 128:
		return bad("bad id")
	case cmd.PID < 0 || cmd.StdoutTotal < 0 || cmd.StderrTotal < 0 || cmd.OutputLimit < 0 || cmd.Signal < 0 || cmd.Signal > 64:
		return bad("negative or out of range numbers")
	}
	switch cmd.State {
	case StateRunning:
		if cmd.ExitCode != nil {
			return bad("running with an exit code")
		}
	case StateFinished:
		if cmd.ExitCode == nil || *cmd.ExitCode < 0 || *cmd.ExitCode > 255 {
			return bad("finished without a valid exit code")
		}
	default:
		return bad(fmt.Sprintf("unknown state %q", cmd.State))
	}
	if len(cmd.Error) > maxMessage {
		cmd.Error = strings.ToValidUTF8(cmd.Error[:maxMessage], "") + "..."
	}
	return nil
}

// Exec starts a command. It returns once the process has started (State
// running, with its PID and start time) or could not start (State
// finished, exit code 127 when the program was not found, 126 when it is
// not executable or Cwd or User is wrong; Error and the command's stderr
// then say why). Errors: ErrInvalid for a bad request, ErrConflict for an
// id the agent knows already or too many running commands.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (Command, error) {
	req.Follow = false
	var cmd Command
	if err := c.simple(ctx, wire.OpExec, req, &cmd); err != nil {
		return Command{}, err
	}
	if err := checkCommand(wire.OpExec, &cmd, req.ID); err != nil {
		return Command{}, err
	}
	return cmd, nil
}

// ExecFollow starts a command like Exec and follows its output from the
// start on the same stream, like Follow: one round trip less than Exec
// then Follow. started, when not nil, gets the command's record as soon as
// it has started (before any output); ExecFollow then returns the finished
// command, fn's error, or an error when ctx ends (the command keeps
// running; Follow can pick it up). Errors before the start are Exec's.
func (c *Client) ExecFollow(ctx context.Context, req ExecRequest, started func(Command), fn func(outbuf.Chunk) error) (Command, error) {
	req.Follow = true
	cl, err := c.open(ctx, wire.OpExec, req)
	if err != nil {
		return Command{}, err
	}
	defer cl.close()
	r, err := cl.response()
	if err != nil {
		return Command{}, err
	}
	var cmd Command
	if err := cl.decode(r, &cmd); err != nil {
		return Command{}, err
	}
	if err := checkCommand(wire.OpExec, &cmd, req.ID); err != nil {
		return Command{}, err
	}
	if started != nil {
		started(cmd)
	}
	return cl.output(req.ID, outbuf.Pos{}, fn)
}

// Follow streams the output of command id from position from (the bytes of
// each stream already seen; the zero Pos is the start) to fn, in the order
// the agent read it, byte-exact: a Chunk of Data, or of Dropped bytes the
// agent's bounded buffer evicted before they could be sent. Chunk.End is
// the position after the chunk (the cursor to resume from). Follow returns
// the finished command (its exit code) once the command has ended and all
// its output was delivered, or fn's error, or an error when ctx ends (the
// command keeps running). Errors: ErrNotFound for an unknown command.
func (c *Client) Follow(ctx context.Context, id string, from outbuf.Pos, fn func(outbuf.Chunk) error) (Command, error) {
	cl, err := c.open(ctx, wire.OpFollow, wire.FollowRequest{ID: id, Stdout: from.Stdout, Stderr: from.Stderr})
	if err != nil {
		return Command{}, err
	}
	defer cl.close()
	r, err := cl.response()
	if err != nil {
		return Command{}, err
	}
	var cmd Command
	if err := cl.decode(r, &cmd); err != nil {
		return Command{}, err
	}
	if err := checkCommand(wire.OpFollow, &cmd, id); err != nil {
		return Command{}, err
	}
	return cl.output(id, from, fn)
}

// output reads output frames from position from to fn, then the trailer:
// the finished command id.
func (cl *call) output(id string, from outbuf.Pos, fn func(outbuf.Chunk) error) (Command, error) {
	pos := from
	for {
		f, err := cl.next()
		if err != nil {
			return Command{}, err
		}
		var ch outbuf.Chunk
		switch f.Kind {
		case wire.KindStdout:
			pos.Stdout += int64(len(f.Payload))
			ch = outbuf.Chunk{Stream: outbuf.Stdout, Data: bytes.Clone(f.Payload)}
		case wire.KindStderr:
			pos.Stderr += int64(len(f.Payload))
			ch = outbuf.Chunk{Stream: outbuf.Stderr, Data: bytes.Clone(f.Payload)}
		case wire.KindDropped:
			s, n := f.Dropped()
			ch = outbuf.Chunk{Stream: outbuf.Stdout, Dropped: n}
			if s == wire.StreamStderr {
				ch.Stream = outbuf.Stderr
				pos.Stderr += n
			} else {
				pos.Stdout += n
			}
		case wire.KindHeader:
			r, err := cl.responseFrom(f)
			if err != nil {
				return Command{}, err
			}
			var end Command
			if err := cl.decode(r, &end); err != nil {
				return Command{}, err
			}
			if err := checkCommand(cl.op, &end, id); err != nil {
				return Command{}, err
			}
			if end.State != StateFinished {
				return Command{}, protocolError("agent %s: output of %q ended while it runs", cl.op, id)
			}
			return end, nil
		default:
			return Command{}, protocolError("agent %s: unexpected %c frame", cl.op, f.Kind)
		}
		if pos.Stdout < 0 || pos.Stderr < 0 {
			return Command{}, protocolError("agent %s: output position overflows", cl.op)
		}
		ch.End = pos
		if err := fn(ch); err != nil {
			return Command{}, err
		}
	}
}

// Stdin copies r (nil for nothing) to the stdin of command id, then closes
// that stdin if closeStdin. It returns the number of bytes written. The
// command must have been started with OpenStdin (else ErrConflict, also
// for a finished command or a closed stdin). Stdin returns only after its
// last Read of r returned; when ctx ends, the bytes written so far stay
// written and the stdin stays open. Calls for one command take turns.
func (c *Client) Stdin(ctx context.Context, id string, r io.Reader, closeStdin bool) (int64, error) {
	cl, err := c.openFlush(ctx, wire.OpStdin, wire.IDRequest{ID: id}, false)
	if err != nil {
		return 0, err
	}
	defer cl.close()
	var flags byte
	if closeStdin {
		flags = wire.EndClose
	}
	resp, err := cl.upload(r, -1, flags)
	if err != nil {
		return 0, err
	}
	var reply wire.StdinReply
	if err := cl.decode(resp, &reply); err != nil {
		return 0, err
	}
	if reply.Written < 0 || reply.Closed != closeStdin {
		return 0, protocolError("agent stdin: bad reply")
	}
	return reply.Written, nil
}

// readError marks a failure of the caller's reader during an upload.
type readError struct{ err error }

func (e *readError) Error() string { return "read content: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// upload sends r (size bytes, -1 when unknown) as data frames and a
// KindEnd frame with flags, while watching for the agent's answer: an
// answer that comes early (an error) stops the sending. It returns the
// final Response.
func (cl *call) upload(r io.Reader, size int64, flags byte) (wire.Response, error) {
	type result struct {
		r   wire.Response
		err error
	}
	answer := make(chan result, 1)
	go func() {
		r, err := cl.response()
		cl.st.SetWriteDeadline(time.Unix(1, 0)) // unblock a sender the agent stopped reading
		answer <- result{r, err}
	}()
	var early *result
	send := func() error {
		if r != nil {
			chunk := int64(uploadChunk)
			if size >= 0 && size < chunk {
				chunk = size + 1 // room to see the end
			}
			buf := make([]byte, chunk)
			var sent int64
			for {
				select {
				case res := <-answer:
					early = &res
					return errors.New("answered early")
				default:
				}
				n, rerr := r.Read(buf)
				if n > 0 {
					if err := cl.w.Frame(wire.KindData, buf[:n]); err != nil {
						return err
					}
					// Data of unknown length goes out at once (stdin may
					// be interactive); the last of a known size waits for
					// the end frame, to go out with it.
					if sent += int64(n); size < 0 || sent < size {
						if err := cl.w.Flush(); err != nil {
							return err
						}
					}
				}
				if errors.Is(rerr, io.EOF) {
					break
				}
				if rerr != nil {
					return &readError{rerr}
				}
			}
		}
		if err := cl.w.End(flags); err != nil {
			return err
		}
		return cl.w.Flush()
	}
	sendErr := send()
	if early != nil {
		if early.err == nil {
			return wire.Response{}, protocolError("agent %s: answered before the data ended", cl.op)
		}
		return wire.Response{}, early.err
	}
	var re *readError
	if errors.As(sendErr, &re) {
		cl.st.SetReadDeadline(time.Unix(1, 0)) // stop waiting for an answer
		<-answer
		return wire.Response{}, fmt.Errorf("agent %s: %w", cl.op, re)
	}
	res := <-answer
	if res.err != nil {
		return wire.Response{}, res.err // an answer (RemoteError) or why none came
	}
	if sendErr != nil {
		return wire.Response{}, protocolError("agent %s: answered before the data ended", cl.op)
	}
	return res.r, nil
}

// Signal delivers signal sig (1 to 64) to the process tree of command id
// and nothing else. Errors: ErrNotFound for an unknown command, ErrConflict
// for a finished one, ErrInvalid for a bad signal.
func (c *Client) Signal(ctx context.Context, id string, sig int) (Command, error) {
	var cmd Command
	if err := c.simple(ctx, wire.OpSignal, wire.SignalRequest{ID: id, Signal: sig}, &cmd); err != nil {
		return Command{}, err
	}
	if err := checkCommand(wire.OpSignal, &cmd, id); err != nil {
		return Command{}, err
	}
	return cmd, nil
}

// Commands lists every command the agent knows, running and finished, by
// start (for a Manager that reconnects after a restart).
func (c *Client) Commands(ctx context.Context) ([]Command, error) {
	var out []Command
	err := c.items(ctx, wire.OpList, wire.ListRequest{}, nil, func(raw json.RawMessage) error {
		var batch []Command
		if err := json.Unmarshal(raw, &batch); err != nil {
			return protocolError("agent list: bad items: %v", err)
		}
		if len(out)+len(batch) > maxListItems {
			return protocolError("agent list: more than %d commands", maxListItems)
		}
		for i := range batch {
			if err := checkCommand(wire.OpList, &batch[i], ""); err != nil {
				return err
			}
		}
		out = append(out, batch...)
		return nil
	})
	return out, err
}

// items runs an operation answered by a Response (decoded into first when
// not nil), batches of items (each passed to fn) and a trailer.
func (c *Client) items(ctx context.Context, op wire.Op, body, first any, fn func(json.RawMessage) error) error {
	cl, err := c.open(ctx, op, body)
	if err != nil {
		return err
	}
	defer cl.close()
	r, err := cl.response()
	if err != nil {
		return err
	}
	if first != nil {
		if err := cl.decode(r, first); err != nil {
			return err
		}
	} else if len(r.Body) > 0 || len(r.Items) > 0 {
		return protocolError("agent %s: unexpected content in the response", op)
	}
	for {
		f, err := cl.next()
		if err != nil {
			return err
		}
		r, err := cl.responseFrom(f)
		if err != nil {
			return err
		}
		switch {
		case len(r.Items) > 0:
			if err := fn(r.Items); err != nil {
				return err
			}
		case len(r.Body) > 0:
			return protocolError("agent %s: unexpected body in a listing", op)
		default:
			return nil // the trailer
		}
	}
}

// Forget drops a finished command from the agent's memory. Errors:
// ErrNotFound for an unknown command, ErrConflict for a running one.
func (c *Client) Forget(ctx context.Context, id string) error {
	return c.simple(ctx, wire.OpForget, wire.IDRequest{ID: id}, nil)
}

// checkInfo validates a file description from the agent; listed entries
// must also have a plain name.
func checkInfo(op wire.Op, fi *FileInfo, listed bool) error {
	switch fi.Type {
	case wire.TypeFile, wire.TypeDir, wire.TypeSymlink, wire.TypeOther:
	default:
		return protocolError("agent %s: unknown file type %q", op, fi.Type)
	}
	if fi.Size < 0 || fi.Name == "" || len(fi.Name) > maxNameLen || len(fi.LinkTarget) > maxLinkLen {
		return protocolError("agent %s: bad file description", op)
	}
	if listed && (fi.Name == "." || fi.Name == ".." || strings.ContainsAny(fi.Name, "/\x00")) {
		return protocolError("agent %s: bad entry name %q", op, fi.Name)
	}
	if wire.TypeOf(fi.Mode) != fi.Type {
		return protocolError("agent %s: mode %v does not match type %s", op, fi.Mode, fi.Type)
	}
	return nil
}

// Stat describes the entry at path (an absolute path; a symbolic link is
// described, not followed). Errors: ErrInvalid for a bad path, ErrNotFound.
func (c *Client) Stat(ctx context.Context, path string) (FileInfo, error) {
	var fi FileInfo
	if err := c.simple(ctx, wire.OpStat, wire.PathRequest{Path: path}, &fi); err != nil {
		return FileInfo{}, err
	}
	return fi, checkInfo(wire.OpStat, &fi, false)
}

// ReadFile opens the regular file at path (following symbolic links) for
// reading. The FileInfo describes the file read. The reader yields the
// file's Size bytes before io.EOF (a reader that gets fewer or more fails
// with ErrProtocol), except for a file that reports a size of 0 (the proc
// and sys file systems do): that one is read to its end. A limit > 0 fails
// with ErrTooLarge for a larger file, before any data when its size is
// known. ctx governs the whole read; the caller closes the reader. Errors:
// ErrInvalid for a bad path or a directory, ErrNotFound.
func (c *Client) ReadFile(ctx context.Context, path string, limit int64) (io.ReadCloser, FileInfo, error) {
	cl, err := c.open(ctx, wire.OpRead, wire.ReadRequest{Path: path, Limit: limit})
	if err != nil {
		return nil, FileInfo{}, err
	}
	r, err := cl.response()
	if err == nil {
		var reply wire.ReadReply
		if err = cl.decode(r, &reply); err == nil {
			err = checkInfo(wire.OpRead, &reply.Info, false)
		}
		fi := reply.Info
		switch {
		case err != nil:
		case fi.Type != wire.TypeFile:
			err = protocolError("agent read: a %s is not a file", fi.Type)
		case reply.Length < -1 || (reply.Length >= 0 && reply.Length != fi.Size) || (reply.Length < 0 && fi.Size != 0):
			err = protocolError("agent read: length %d for a file of %d bytes", reply.Length, fi.Size)
		case limit > 0 && fi.Size > limit:
			err = protocolError("agent read: %d bytes, over the limit of %d", fi.Size, limit)
		default:
			d := &dataReader{cl: cl, body: wire.NewBody(cl.fr), left: reply.Length, sized: true}
			if reply.Length < 0 {
				d.left, d.sized = limit, limit > 0 // unknown: at most the limit
				d.unknown = true
			}
			return d, fi, nil
		}
	}
	cl.close()
	return nil, FileInfo{}, err
}

// dataReader reads the data frames of a download, then checks its trailer.
type dataReader struct {
	cl      *call
	body    *wire.Body
	left    int64 // bytes still announced (or allowed, when unknown), when sized
	sized   bool
	unknown bool // the length is not known: left is a limit, not a promise
	err     error
}

func (d *dataReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.sized && d.left < int64(len(p)) {
		p = p[:d.left+1] // read at most one byte too many
	}
	n, err := d.body.Read(p)
	if d.sized {
		if int64(n) > d.left {
			d.fail(protocolError("agent %s: more data than announced", d.cl.op))
			return 0, d.err
		}
		d.left -= int64(n)
	}
	switch {
	case errors.Is(err, io.EOF):
		tail, _ := d.body.Tail()
		switch terr := d.cl.trailer(tail); {
		case terr != nil:
			d.fail(terr)
		case d.sized && !d.unknown && d.left != 0:
			d.fail(protocolError("agent %s: data ended %d bytes early", d.cl.op, d.left))
		default:
			d.fail(io.EOF)
		}
	case err != nil:
		d.fail(d.cl.wrap(err))
	}
	return n, d.err
}

func (d *dataReader) fail(err error) {
	d.err = err
	d.cl.close()
}

// Close ends the download (the agent stops sending). Idempotent.
func (d *dataReader) Close() error {
	if d.err == nil {
		d.err = fmt.Errorf("agent %s: read after Close", d.cl.op)
	}
	d.cl.close()
	return nil
}

// WriteFile writes the file at path from r: size bytes (or, with size -1,
// until r's EOF), replacing the file only once all of it arrived (a write
// that fails or is cancelled leaves the old file as it was). It writes
// through a symbolic link at path, creates missing parent directories
// (0755), and sets mode (permission bits with fs.ModeSetuid, fs.ModeSetgid,
// fs.ModeSticky; 0 means 0644); the file is owned by root. It returns the
// bytes written, and only after its last Read of r returned. Errors:
// ErrInvalid for a bad path or mode, a directory at path, or content that
// does not match size; ErrConflict when a parent is not a directory;
// ErrTooLarge for a full disk.
func (c *Client) WriteFile(ctx context.Context, path string, r io.Reader, size int64, mode fs.FileMode) (int64, error) {
	if size < -1 {
		return 0, fmt.Errorf("agent write: %w: size %d", ErrInvalid, size)
	}
	if size >= 0 && r != nil {
		r = &exactReader{r: r, left: size}
	}
	cl, err := c.openFlush(ctx, wire.OpWrite, wire.WriteRequest{Path: path, Mode: mode, Size: size}, false)
	if err != nil {
		return 0, err
	}
	defer cl.close()
	resp, err := cl.upload(r, size, 0)
	if err != nil {
		return 0, err
	}
	var reply wire.WriteReply
	if err := cl.decode(resp, &reply); err != nil {
		return 0, err
	}
	if reply.Size < 0 || (size >= 0 && reply.Size != size) {
		return 0, protocolError("agent write: wrote %d bytes of %d", reply.Size, size)
	}
	return reply.Size, nil
}

// exactReader yields at most left bytes of r and fails when r has more or
// fewer, so that a size mismatch is the caller's ErrInvalid.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		var one [1]byte
		if n, _ := io.ReadFull(e.r, one[:]); n > 0 {
			return 0, fmt.Errorf("%w: content is longer than the size announced", ErrInvalid)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) && e.left > 0 {
		return n, fmt.Errorf("%w: content ended %d bytes before the size announced", ErrInvalid, e.left)
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// ListDir lists the directory at path (following a symbolic link at path),
// calling fn with each entry in the agent's directory order (unsorted;
// sorting is the caller's job, as is a bound on the count: fn may stop the
// listing with an error, which ListDir returns). It returns the directory's
// own description. Errors: ErrInvalid for a bad path or a path that is not
// a directory, ErrNotFound.
func (c *Client) ListDir(ctx context.Context, path string, fn func(FileInfo) error) (FileInfo, error) {
	var dir FileInfo
	err := c.items(ctx, wire.OpListDir, wire.PathRequest{Path: path}, &dir, func(raw json.RawMessage) error {
		if err := checkInfo(wire.OpListDir, &dir, false); err != nil || dir.Type != wire.TypeDir {
			return protocolError("agent listdir: bad directory description")
		}
		var batch []FileInfo
		if err := json.Unmarshal(raw, &batch); err != nil {
			return protocolError("agent listdir: bad items: %v", err)
		}
		for i := range batch {
			if err := checkInfo(wire.OpListDir, &batch[i], true); err != nil {
				return err
			}
			if err := fn(batch[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return FileInfo{}, err
	}
	if err := checkInfo(wire.OpListDir, &dir, false); err != nil || dir.Type != wire.TypeDir {
		return FileInfo{}, protocolError("agent listdir: bad directory description")
	}
	return dir, nil
}

// Dial connects to TCP port on the sandbox's loopback through the session
// and returns the connection (a stream of the session; Close ends it). ctx
// bounds the connecting only. Errors: ErrInvalid for a bad port,
// ErrConflict when nothing accepts connections on it, ErrUnsupported from
// an agent without OpDial.
func (c *Client) Dial(ctx context.Context, port int) (net.Conn, error) {
	cl, err := c.open(ctx, wire.OpDial, wire.DialRequest{Port: port})
	if err != nil {
		return nil, err
	}
	r, err := cl.response()
	if err != nil {
		cl.close()
		return nil, err
	}
	if len(r.Body) > 0 || len(r.Items) > 0 {
		cl.close()
		return nil, protocolError("agent %s: unexpected content in the response", wire.OpDial)
	}
	if !cl.stop() { // ctx ended meanwhile: its AfterFunc closed the stream
		cl.st.Close()
		return nil, fmt.Errorf("agent %s: %w", wire.OpDial, ctx.Err())
	}
	return cl.st, nil
}

// Remove removes the file, symbolic link (not its target) or directory
// tree at path. Errors: ErrInvalid for a bad path or "/", ErrNotFound.
func (c *Client) Remove(ctx context.Context, path string) error {
	return c.simple(ctx, wire.OpRemove, wire.PathRequest{Path: path}, nil)
}

// TarOut returns the file or directory at path as a tar stream shaped like
// the Engine's archive API: the first entry is named after path's base name
// ("d/" for a directory), a directory's tree follows; symbolic links are
// archived, not followed. The FileInfo describes path. ctx governs the
// whole download; the caller closes the reader, which fails with the
// agent's error if the archive could not be completed. Errors: ErrInvalid
// for a bad path, ErrNotFound.
func (c *Client) TarOut(ctx context.Context, path string) (io.ReadCloser, FileInfo, error) {
	cl, err := c.open(ctx, wire.OpTarOut, wire.PathRequest{Path: path})
	if err != nil {
		return nil, FileInfo{}, err
	}
	r, err := cl.response()
	if err == nil {
		var fi FileInfo
		if err = cl.decode(r, &fi); err == nil {
			err = checkInfo(wire.OpTarOut, &fi, false)
		}
		if err == nil {
			return &dataReader{cl: cl, body: wire.NewBody(cl.fr)}, fi, nil
		}
	}
	cl.close()
	return nil, FileInfo{}, err
}

// TarIn unpacks the tar stream r into directory dir, creating dir and its
// parents (0755) first; it returns the number of entries unpacked. Names
// must be relative and stay inside dir (no absolute names, no climbing out
// with "..", no writing through a symbolic link that leads out); regular
// files, directories, symbolic links and hard links are unpacked, device
// nodes and FIFOs refused. Everything is owned by root. Errors: ErrInvalid
// for a bad path or archive, ErrConflict when dir or a parent is not a
// directory. An archive refused part-way may leave the entries before the
// bad one unpacked. TarIn returns only after its last Read of r returned.
func (c *Client) TarIn(ctx context.Context, dir string, r io.Reader) (int, error) {
	cl, err := c.openFlush(ctx, wire.OpTarIn, wire.PathRequest{Path: dir}, false)
	if err != nil {
		return 0, err
	}
	defer cl.close()
	resp, err := cl.upload(r, -1, 0)
	if err != nil {
		return 0, err
	}
	var reply wire.TarInReply
	if err := cl.decode(resp, &reply); err != nil {
		return 0, err
	}
	if reply.Entries < 0 {
		return 0, protocolError("agent tarin: bad reply")
	}
	return reply.Entries, nil
}

// Stats samples the sandbox's cgroup (memory, CPU time, tasks). Errors:
// ErrUnsupported when the agent finds no cgroup file system.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	if err := c.simple(ctx, wire.OpStats, wire.StatsRequest{}, &s); err != nil {
		return Stats{}, err
	}
	if s.CgroupVersion != 1 && s.CgroupVersion != 2 {
		return Stats{}, protocolError("agent stats: cgroup version %d", s.CgroupVersion)
	}
	return s, nil
}

// HaltReply says what a Halt ended.
type HaltReply = wire.HaltReply

// Halt stops the sandbox while its agent runs on: every process but the
// agent's ends (SIGTERM, SIGKILL after grace), its main command too, and
// commands are refused (ErrConflict) until Unhalt. An agent that is not
// its sandbox's main process refuses (ErrUnsupported).
func (c *Client) Halt(ctx context.Context, grace time.Duration) (HaltReply, error) {
	var r HaltReply
	err := c.simple(ctx, wire.OpHalt, wire.HaltRequest{Grace: grace}, &r)
	return r, err
}

// Unhalt runs a halted sandbox again: its main command starts anew and
// commands are accepted.
func (c *Client) Unhalt(ctx context.Context) error {
	return c.simple(ctx, wire.OpUnhalt, wire.UnhaltRequest{}, nil)
}
