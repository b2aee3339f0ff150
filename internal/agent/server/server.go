//go:build linux

package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/opensbx/opensbx/internal/agent/wire"
	"github.com/opensbx/opensbx/internal/outbuf"
)

// Config configures a Server. Every zero field has the default its comment
// names.
type Config struct {
	// Version identifies the agent's build (Info.Version); the program sets
	// the hex SHA-256 of its own executable.
	Version string
	// DefaultUser runs commands that name no user ("" runs them as the
	// agent's own user).
	DefaultUser string
	// Env is the base environment of every command; nil is os.Environ().
	Env []string
	// PasswdFile and GroupFile resolve users: /etc/passwd, /etc/group.
	PasswdFile, GroupFile string
	// ProcDir is the proc file system of the sandbox: /proc.
	ProcDir string
	// CgroupRoot is the sandbox's cgroup: /sys/fs/cgroup.
	CgroupRoot string
	// OutputLimit is the default bytes kept per output stream: 1 MiB.
	OutputLimit int
	// MaxOutputLimit bounds a command's OutputLimit: 64 MiB.
	MaxOutputLimit int
	// MaxRunning bounds the commands running at once: 1024.
	MaxRunning int
	// MaxFinished bounds the finished commands kept (oldest dropped
	// first): 256.
	MaxFinished int
	// MaxFinishedOutput bounds the output bytes kept by finished commands
	// together (oldest dropped first): 256 MiB.
	MaxFinishedOutput int64
	// MaxSessions bounds the sessions served at once by Serve: 16.
	MaxSessions int
	// MaxStreams bounds the operations in flight per session: 4096 (a
	// follower of a running command is one).
	MaxStreams int
	// AllowPeer decides whether a process connected to Serve's listener
	// may use the agent. nil allows only uid 0 in the agent's own PID
	// namespace (a peer in another namespace has PID 0).
	AllowPeer func(Peer) bool
	// Logger gets debug and error messages; nil discards them.
	Logger *slog.Logger
	// Sandbox, for an agent that is its sandbox's main process, is what
	// OpHalt and OpUnhalt act on; nil refuses them (ErrUnsupported).
	Sandbox Sandbox
}

// Peer is the process at the other end of a unix socket (SO_PEERCRED).
type Peer struct {
	PID, UID, GID int
}

func (c *Config) defaults() {
	if c.Env == nil {
		c.Env = os.Environ()
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.PasswdFile, "/etc/passwd")
	def(&c.GroupFile, "/etc/group")
	def(&c.ProcDir, "/proc")
	def(&c.CgroupRoot, "/sys/fs/cgroup")
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&c.OutputLimit, 1<<20)
	defInt(&c.MaxOutputLimit, 64<<20)
	defInt(&c.MaxRunning, 1024)
	defInt(&c.MaxFinished, 256)
	defInt(&c.MaxSessions, 16)
	defInt(&c.MaxStreams, 4096)
	if c.MaxFinishedOutput <= 0 {
		c.MaxFinishedOutput = 256 << 20
	}
	c.OutputLimit = min(c.OutputLimit, c.MaxOutputLimit)
	if c.AllowPeer == nil {
		c.AllowPeer = func(p Peer) bool { return p.UID == 0 && p.PID != 0 }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server is the agent: it serves yamux sessions, one stream per operation,
// and keeps the commands it started across sessions. It is safe for
// concurrent use.
type Server struct {
	cfg  Config
	info wire.Info
	cmds *registry

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // Serve loops and sessions

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	sessions  map[*yamux.Session]struct{}
	pending   int // connections accepted whose session has not started (takeOver)
}

// New returns a Server with cfg (see Config for the defaults).
func New(cfg Config) *Server {
	cfg.defaults()
	id := make([]byte, 16)
	rand.Read(id)
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg,
		info: wire.Info{
			Protocol:    wire.ProtocolVersion,
			Version:     cfg.Version,
			Instance:    hex.EncodeToString(id),
			PID:         os.Getpid(),
			StartedAt:   time.Now(),
			GOARCH:      runtime.GOARCH,
			DefaultUser: cfg.DefaultUser,
		},
		cmds:      newRegistry(&cfg),
		ctx:       ctx,
		cancel:    cancel,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*yamux.Session]struct{}{},
	}
}

// Info describes the agent, as OpHello answers it.
func (s *Server) Info() wire.Info { return s.info }

// ErrServerClosed is returned by Serve and ServeConn after Close.
var ErrServerClosed = errors.New("agent server closed")

// Serve accepts connections on l, a unix socket listener, until Close or
// a failure of l. For each it checks the peer's credentials with
// Config.AllowPeer, writes a handshake byte (wire.HandshakeOK, or
// HandshakeRefused / HandshakeBusy and closes) and serves a session. It
// returns ErrServerClosed after Close, and closes l.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		s.accept(conn)
	}
}

func (s *Server) accept(conn net.Conn) {
	peer, err := peerOf(conn)
	if err != nil || !s.cfg.AllowPeer(peer) {
		// Debug, not Warn: code in the sandbox must not be able to flood
		// the sandbox's log with refusals.
		s.cfg.Logger.Debug("refused a connection", "peer_pid", peer.PID, "peer_uid", peer.UID, "err", err)
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		conn.Write([]byte{wire.HandshakeRefused})
		conn.Close()
		return
	}
	s.mu.Lock()
	if s.closed || len(s.sessions)+s.pending >= s.cfg.MaxSessions {
		s.mu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		conn.Write([]byte{wire.HandshakeBusy})
		conn.Close()
		return
	}
	s.pending++ // until its session counts
	s.mu.Unlock()
	started := func() {
		s.mu.Lock()
		s.pending--
		s.mu.Unlock()
	}
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{wire.HandshakeOK}); err != nil {
		started()
		conn.Close()
		return
	}
	conn.SetWriteDeadline(time.Time{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sc, err := s.takeOver(conn)
		if err != nil {
			started()
			s.cfg.Logger.Debug("a connection ended before its session", "err", err)
			conn.Close()
			return
		}
		_ = s.serveConn(sc, started) // counted among the sessions before it stops being pending
	}()
}

// peerOf reads the credentials of a unix socket's peer.
func peerOf(conn net.Conn) (Peer, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return Peer{}, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}, nil
}

// ackHold is how long the agent's acceptance of a stream (yamux's ACK, the
// only control frame this side opens with) waits for the stream's answer
// before it goes out alone. The client needs no ACK before the answer (it
// writes its request at once and yamux sends no ACK-gated data), and an
// ACK sent alone is a message of its own through the engine: on
// Kubernetes through the shim, containerd, the kubelet and the API server,
// costing them CPU while the command the request started is being spawned.
// Held, it rides with the answer: an exec whose answer waits for the
// command's end (ExecRequest.StartHold) waits at most wire.MaxStartHold,
// and any frame the session writes meanwhile takes the ACK along.
const ackHold = wire.MaxStartHold + 50*time.Millisecond

// yamuxConfig is the agent side's session configuration: no keepalive (the
// connection is a local pipe through the engine; its end is seen directly),
// and generous write timeouts.
func (s *Server) yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = 256
	c.EnableKeepAlive = false
	c.ConnectionWriteTimeout = 30 * time.Second
	c.StreamCloseTimeout = time.Minute
	c.StreamOpenTimeout = 0
	c.LogOutput = nil
	c.Logger = yamuxLogger{s.cfg.Logger}
	return c
}

type yamuxLogger struct{ l *slog.Logger }

func (y yamuxLogger) Print(v ...any)                 { y.l.Debug(fmt.Sprint(v...)) }
func (y yamuxLogger) Printf(format string, v ...any) { y.l.Debug(fmt.Sprintf(format, v...)) }
func (y yamuxLogger) Println(v ...any)               { y.l.Debug(fmt.Sprint(v...)) }

// ServeConn serves one session on conn (the agent as the yamux server)
// until conn fails, the client ends the session or Close. It closes conn.
func (s *Server) ServeConn(conn io.ReadWriteCloser) error { return s.serveConn(conn, nil) }

// serveConn is ServeConn; registered, when set, runs once the session
// counts among the sessions (or has failed to start).
func (s *Server) serveConn(conn io.ReadWriteCloser, registered func()) error {
	if f := registered; f != nil {
		var once sync.Once
		registered = func() { once.Do(f) }
		defer registered()
	}
	bc := batchedConn{conn, wire.NewBatcher(conn, wire.BatchOptions{Hold: ackHold})}
	sess, err := yamux.Server(bc, s.yamuxConfig())
	if err != nil {
		bc.Close()
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sess.Close()
		return ErrServerClosed
	}
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	if registered != nil {
		registered()
	}
	ctx, cancel := context.WithCancel(s.ctx)
	var streams sync.WaitGroup
	defer func() {
		cancel()
		sess.Close()
		streams.Wait()
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
	}()
	sem := make(chan struct{}, s.cfg.MaxStreams)
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			return nil // the session ended
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			st.Close()
			return ErrServerClosed
		}
		streams.Add(1)
		go func() {
			defer func() {
				<-sem
				streams.Done()
			}()
			s.handle(ctx, st)
		}()
	}
}

// batchedConn writes through a wire.Batcher.
type batchedConn struct {
	io.ReadWriteCloser
	batch *wire.Batcher
}

func (c batchedConn) Write(p []byte) (int, error) { return c.batch.Write(p) }

// Close closes the connection (ending a write of it under way), then stops
// the batcher.
func (c batchedConn) Close() error {
	err := c.ReadWriteCloser.Close()
	c.batch.Close()
	return err
}

// Close ends every session and listener, kills the running commands and
// waits (a bounded time) for them. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel() // before the listeners close: Serve then knows why
	for l := range s.listeners {
		l.Close()
	}
	for sess := range s.sessions {
		sess.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.cmds.close(2 * time.Second)
	return nil
}

// headerTimeout bounds the wait for the Request that opens a stream.
const headerTimeout = 30 * time.Second

// handle serves one stream: one operation.
func (s *Server) handle(sctx context.Context, st *yamux.Stream) {
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(headerTimeout))
	fr := wire.NewReader(st)
	f, err := fr.Next()
	if err != nil {
		return
	}
	w := wire.NewWriter(st, 4<<10) // larger frames bypass the buffer
	var req wire.Request
	if err := wire.DecodeHeader(f, &req); err != nil {
		respondErr(w, invalid("%v", err))
		w.Flush()
		return
	}
	st.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(sctx)
	defer cancel()
	if req.Op == wire.OpDial {
		s.dial(ctx, st, req, w)
		return
	}
	// A cancelled operation must not stay blocked writing to a client that
	// stopped reading.
	stop := context.AfterFunc(ctx, func() { st.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	var watcher sync.WaitGroup
	defer func() {
		st.SetReadDeadline(time.Unix(1, 0)) // ends the watcher, if any
		watcher.Wait()
	}()
	// watch cancels the operation when the client closes its side of the
	// stream (it gave up): a download reads nothing after its Request.
	watch := func() {
		watcher.Add(1)
		go func() {
			defer watcher.Done()
			var b [1]byte
			st.Read(b[:])
			cancel()
		}()
	}
	if err := s.dispatch(ctx, watch, req, fr, w); err != nil {
		s.cfg.Logger.Debug("operation ended early", "op", req.Op, "err", err)
		return
	}
	if err := w.Flush(); err != nil {
		s.cfg.Logger.Debug("operation ended early", "op", req.Op, "err", err)
	}
}

func decodeBody(req wire.Request, v any) error {
	if len(req.Body) == 0 {
		return nil
	}
	if err := json.Unmarshal(req.Body, v); err != nil {
		return invalid("bad %s request: %v", req.Op, err)
	}
	return nil
}

// dispatch runs one operation. A returned error means the stream failed
// (nothing more can be sent); failures of the operation itself are sent as
// a Response.
func (s *Server) dispatch(ctx context.Context, watch func(), req wire.Request, fr *wire.Reader, w *wire.Writer) error {
	simple := func(body any, err error) error {
		if err != nil {
			return respondErr(w, err)
		}
		return respond(w, body)
	}
	switch req.Op {
	case wire.OpHello:
		var r wire.HelloRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		return respond(w, s.info)
	case wire.OpExec:
		var r wire.ExecRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		info, c, err := s.cmds.exec(r)
		if err != nil || !r.Follow {
			return simple(info, err)
		}
		watch()
		if r.StartHold > 0 {
			t := time.NewTimer(r.StartHold)
			select {
			case <-c.done:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			info = c.info()
		}
		if err := respond(w, info); err != nil {
			return err
		}
		return s.cmds.follow(ctx, c, outbuf.Pos{}, w)
	case wire.OpFollow:
		var r wire.FollowRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		if r.Stdout < 0 || r.Stderr < 0 {
			return respondErr(w, invalid("negative output position"))
		}
		c, err := s.cmds.get(r.ID)
		if err != nil {
			return respondErr(w, err)
		}
		watch()
		if err := respond(w, c.info()); err != nil {
			return err
		}
		return s.cmds.follow(ctx, c, outbuf.Pos{Stdout: r.Stdout, Stderr: r.Stderr}, w)
	case wire.OpStdin:
		var r wire.IDRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		return s.stdin(ctx, r, fr, w)
	case wire.OpSignal:
		var r wire.SignalRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		return simple(s.cmds.signal(r.ID, r.Signal))
	case wire.OpList:
		watch()
		return s.list(ctx, w)
	case wire.OpForget:
		var r wire.IDRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		return simple(nil, s.cmds.forget(r.ID))
	case wire.OpStat:
		var r wire.PathRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		return simple(statFile(r))
	case wire.OpRead:
		var r wire.ReadRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		watch()
		return readFile(r, w)
	case wire.OpWrite:
		var r wire.WriteRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		return writeFile(r, fr, w)
	case wire.OpListDir:
		var r wire.PathRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		watch()
		return listDir(ctx, r, w)
	case wire.OpRemove:
		var r wire.PathRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		return simple(nil, removePath(r))
	case wire.OpTarOut:
		var r wire.PathRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		watch()
		return tarOut(r, w)
	case wire.OpTarIn:
		var r wire.PathRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		return tarIn(r, fr, w)
	case wire.OpHalt:
		var r wire.HaltRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		return simple(s.halt(r))
	case wire.OpUnhalt:
		var r wire.UnhaltRequest
		if err := decodeBody(req, &r); err != nil {
			return respondErr(w, err)
		}
		return simple(nil, s.unhalt())
	case wire.OpStats:
		return simple(readStats(s.cfg.CgroupRoot))
	}
	return respondErr(w, newError(wire.CodeUnsupported, "unknown operation %q", req.Op))
}

// maxHaltGrace bounds the grace a halt gives processes.
const maxHaltGrace = 10 * time.Minute

// halt answers OpHalt: no command starts from now on, and the sandbox's
// processes end.
func (s *Server) halt(r wire.HaltRequest) (wire.HaltReply, error) {
	if r.Grace < 0 || r.Grace > maxHaltGrace {
		return wire.HaltReply{}, invalid("grace %v: want 0 to %v", r.Grace, maxHaltGrace)
	}
	if s.cfg.Sandbox == nil {
		return wire.HaltReply{}, unsupported("this agent does not run a sandbox: it cannot halt one")
	}
	s.cmds.setHalted(true)
	sig, killed, err := s.cfg.Sandbox.Halt(r.Grace)
	if err != nil {
		return wire.HaltReply{}, internal("halt: %v", err)
	}
	return wire.HaltReply{Signalled: sig, Killed: killed}, nil
}

// unhalt answers OpUnhalt: the main command runs again and commands may
// start.
func (s *Server) unhalt() error {
	if s.cfg.Sandbox == nil {
		return unsupported("this agent does not run a sandbox: it cannot start one")
	}
	if err := s.cfg.Sandbox.Unhalt(); err != nil {
		return internal("start the main command: %v", err)
	}
	s.cmds.setHalted(false)
	return nil
}

// stdin answers OpStdin.
func (s *Server) stdin(ctx context.Context, r wire.IDRequest, fr *wire.Reader, w *wire.Writer) error {
	c, err := s.cmds.get(r.ID)
	if err != nil {
		return respondErr(w, err)
	}
	if !c.openStdin {
		return respondErr(w, conflict("command %s was started without open stdin", r.ID))
	}
	n, end, err := s.cmds.writeStdin(ctx, c, fr)
	if err != nil {
		var oe *opError
		switch {
		case errors.As(err, &oe):
			return respondErr(w, err)
		case errors.Is(err, wire.ErrMalformed):
			return respondErr(w, invalid("%v", err))
		}
		return err // the stream ended: aborted
	}
	closed := false
	if end.EndFlags()&wire.EndClose != 0 {
		s.cmds.closeStdin(c)
		closed = true
	}
	return respond(w, wire.StdinReply{Written: n, Closed: closed})
}

// list answers OpList.
func (s *Server) list(ctx context.Context, w *wire.Writer) error {
	if err := respond(w, nil); err != nil {
		return err
	}
	var batch []json.RawMessage
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		items, err := json.Marshal(batch)
		if err != nil {
			return err
		}
		batch, size = batch[:0], 0
		return w.JSON(wire.Response{Items: items})
	}
	for _, c := range s.cmds.list() {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := json.Marshal(c.info())
		if err != nil {
			return err
		}
		if size+len(b) > listBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, b)
		size += len(b) + 1
	}
	if err := flush(); err != nil {
		return err
	}
	return respond(w, nil)
}

// dialTimeout bounds connecting to a port in the sandbox.
const dialTimeout = 5 * time.Second

// dial answers OpDial: it connects to the port on loopback (IPv4, then
// IPv6) and then copies bytes between the stream and the connection until
// both directions ended, the session closes or the server does.
func (s *Server) dial(ctx context.Context, st *yamux.Stream, req wire.Request, w *wire.Writer) {
	var r wire.DialRequest
	fail := func(err error) {
		respondErr(w, err)
		w.Flush()
	}
	if err := decodeBody(req, &r); err != nil {
		fail(err)
		return
	}
	if r.Port < 1 || r.Port > 65535 {
		fail(invalid("port %d is not 1 to 65535", r.Port))
		return
	}
	if s.cmds.isHalted() {
		fail(conflict("the sandbox is stopped: start it first"))
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	port := strconv.Itoa(r.Port)
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		c, err = d.DialContext(ctx, "tcp", net.JoinHostPort("::1", port))
	}
	if err != nil {
		fail(conflict("nothing accepts connections on port %d in the sandbox: %v", r.Port, err))
		return
	}
	defer c.Close()
	if err := respond(w, nil); err != nil {
		return
	}
	if err := w.Flush(); err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() {
		c.Close()
		st.Close()
	})
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(c, st) // the client's bytes to the port
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	io.Copy(st, c) // the port's bytes back
	st.Close()     // our half; the client sees EOF
	// The port is done sending; what the client still sends is bounded.
	t := time.AfterFunc(dialTimeout, func() { st.SetReadDeadline(time.Unix(1, 0)) })
	defer t.Stop()
	<-done
}
