//go:build linux

package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opensbx/opensbx/internal/agent/wire"
	"github.com/opensbx/opensbx/internal/outbuf"
)

// CommandIDEnv is the environment variable every command gets with its id.
const CommandIDEnv = "OPENSBX_COMMAND_ID"

// maxIDLen bounds a command id.
const maxIDLen = 128

// maxArgvJSON bounds the encoded argv, so that a command's description
// always fits a header frame.
const maxArgvJSON = 512 << 10

// registry keeps the commands of the agent: the running ones and the
// newest finished ones, within the Config's bounds.
type registry struct {
	cfg    *Config
	procfs procFS
	env    []string // the agent's environment, the base of every command's

	mu        sync.Mutex
	byID      map[string]*command
	order     []*command // every command known, by start
	running   int
	finished  []*command // oldest first
	keptBytes int64      // output kept by the finished commands
	closed    bool
	halted    bool // the sandbox is stopped (OpHalt): no command starts

	sigMu sync.Mutex // one tree walk at a time
	wg    sync.WaitGroup

	homeMu  sync.Mutex
	homeKey homeKey // the passwd file the cached home was read from
	home    string  // HOME of the agent's own user, once read

	nullMu sync.Mutex
	null   *os.File // /dev/null, the stdin of commands without one; kept open
}

// homeKey identifies a version of the passwd file.
type homeKey struct {
	mod  time.Time
	size int64
	ok   bool
}

// command is one command. Fields after mu are guarded by it.
type command struct {
	id        string
	argv      []string
	cwd, user string
	openStdin bool
	limit     int
	out       *outbuf.Buffer
	done      chan struct{} // closed when finished

	// pipes are the read ends of stdout and stderr, closed by their pumps
	// (or forcibly by close).
	pipes [2]*os.File

	mu          sync.Mutex
	pid         int
	start       uint64        // clock ticks after boot, for the tree walk
	startRead   chan struct{} // closed once start is read (or could not be)
	startedAt   time.Time
	finishedAt  time.Time
	exited      bool // the process has ended (or never started)
	finished    bool // exited and the output is closed
	exitCode    int
	errMsg      string
	signal      int
	stdin       *os.File // write end; nil when closed or never opened
	stdinClosed bool

	stdinTurn chan struct{} // one stdin stream at a time: holds a token while writing
}

func newRegistry(cfg *Config) *registry {
	return &registry{cfg: cfg, procfs: procFS(cfg.ProcDir), env: cfg.Env, byID: map[string]*command{}}
}

// info returns a snapshot of c.
func (c *command) info() wire.Command {
	end := c.out.End()
	c.mu.Lock()
	defer c.mu.Unlock()
	w := wire.Command{
		ID: c.id, Argv: c.argv, Cwd: c.cwd, User: c.user,
		PID: c.pid, State: wire.StateRunning,
		Error:     c.errMsg,
		StartedAt: c.startedAt, FinishedAt: c.finishedAt,
		Signal:    c.signal,
		OpenStdin: c.openStdin, StdinClosed: c.openStdin && c.stdinClosed,
		OutputLimit: c.limit,
		StdoutTotal: end.Stdout, StderrTotal: end.Stderr,
	}
	if c.finished {
		w.State = wire.StateFinished
		code := c.exitCode
		w.ExitCode = &code
	}
	return w
}

// kept returns the number of output bytes c's buffer holds.
func (c *command) kept() int64 {
	end := c.out.End()
	return min(end.Stdout, int64(c.limit)) + min(end.Stderr, int64(c.limit))
}

func validID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return invalid("command id must have 1 to %d characters", maxIDLen)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return invalid("command id %q: only letters, digits, '_', '-' and '.' are allowed", id)
		}
	}
	return nil
}

func (r *registry) validate(req *wire.ExecRequest) error {
	if err := validID(req.ID); err != nil {
		return err
	}
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return invalid("argv needs a program")
	}
	if b, _ := json.Marshal(req.Argv); len(b) > maxArgvJSON {
		return invalid("argv is %d bytes encoded, over the limit of %d", len(b), maxArgvJSON)
	}
	for _, a := range req.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return invalid("argument %q contains a NUL byte", a)
		}
	}
	for _, kv := range req.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
			return invalid("environment entry %q: want KEY=VALUE without NUL bytes", kv)
		}
	}
	if req.Cwd != "" && (!strings.HasPrefix(req.Cwd, "/") || strings.IndexByte(req.Cwd, 0) >= 0) {
		return invalid("cwd %q: want an absolute path", req.Cwd)
	}
	if strings.IndexByte(req.User, 0) >= 0 {
		return invalid("user %q contains a NUL byte", req.User)
	}
	if req.StartHold < 0 || req.StartHold > wire.MaxStartHold {
		return invalid("start hold %v: want 0 to %v", req.StartHold, wire.MaxStartHold)
	}
	if req.OutputLimit < 0 || req.OutputLimit > r.cfg.MaxOutputLimit {
		return invalid("output limit %d: want 0 (default) to %d bytes", req.OutputLimit, r.cfg.MaxOutputLimit)
	}
	return nil
}

// exec starts a command. A program that cannot be started is recorded as
// finished with exit code 127 or 126, not returned as an error.
func (r *registry) exec(req wire.ExecRequest) (wire.Command, *command, error) {
	if err := r.validate(&req); err != nil {
		return wire.Command{}, nil, err
	}
	limit := req.OutputLimit
	if limit == 0 {
		limit = r.cfg.OutputLimit
	}
	user := req.User
	if user == "" {
		user = r.cfg.DefaultUser
	}
	c := &command{
		id: req.ID, argv: req.Argv, cwd: req.Cwd, user: user,
		openStdin: req.OpenStdin, limit: limit,
		out:       outbuf.New(limit),
		done:      make(chan struct{}),
		startRead: make(chan struct{}),
		stdinTurn: make(chan struct{}, 1),
	}
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return wire.Command{}, nil, conflict("the agent is shutting down")
	case r.halted:
		r.mu.Unlock()
		return wire.Command{}, nil, conflict("the sandbox is stopped: start it first")
	case r.byID[req.ID] != nil:
		r.mu.Unlock()
		return wire.Command{}, nil, conflict("command %s exists already", req.ID)
	case r.running >= r.cfg.MaxRunning:
		r.mu.Unlock()
		return wire.Command{}, nil, conflict("%d commands are running, the most this agent runs at once", r.running)
	}
	r.byID[c.id] = c
	r.order = append(r.order, c)
	r.running++
	r.wg.Add(1) // the command's own goroutines, or its failed start
	r.mu.Unlock()

	if code, msg := r.start(c, req); msg != "" {
		close(c.startRead)
		c.out.Write(outbuf.Stderr, []byte(msg+"\n"))
		c.mu.Lock()
		c.exited, c.exitCode, c.errMsg = true, code, msg
		c.mu.Unlock()
		r.finish(c)
		r.wg.Done()
	}
	return c.info(), c, nil
}

// start starts c's process and the goroutines that collect its output and
// wait for it. It returns an exit code and a message when the program could
// not be started.
func (r *registry) start(c *command, req wire.ExecRequest) (int, string) {
	now := time.Now()
	c.mu.Lock()
	c.startedAt = now
	c.mu.Unlock()

	var acct account
	if c.user != "" {
		var err error
		if acct, err = resolveUser(c.user, r.cfg.PasswdFile, r.cfg.GroupFile); err != nil {
			return 126, err.Error()
		}
	} else {
		acct = account{uid: os.Getuid(), gid: os.Getgid(), home: r.selfHome()}
	}
	env := buildEnv(r.env, req.Env, acct.home, c.id)

	dir := c.cwd
	if dir != "" {
		st, err := os.Stat(dir)
		switch {
		case err != nil:
			return 126, fmt.Sprintf("chdir to cwd (%q) failed: %v", dir, pathErrText(err))
		case !st.IsDir():
			return 126, fmt.Sprintf("chdir to cwd (%q) failed: not a directory", dir)
		}
	}
	prog, code, msg := lookPath(c.argv[0], envValue(env, "PATH"), dir)
	if msg != "" {
		return code, msg
	}

	var files [3]*os.File
	var parentEnds []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			if f != nil {
				f.Close()
			}
		}
	}
	if c.openStdin {
		pr, pw, err := os.Pipe()
		if err != nil {
			return 126, fmt.Sprintf("exec: %q: stdin pipe: %v", c.argv[0], err)
		}
		files[0], c.stdin = pr, pw
	} else {
		null, err := r.devNull()
		if err != nil {
			return 126, fmt.Sprintf("exec: %q: open %s: %v", c.argv[0], os.DevNull, err)
		}
		files[0] = null
	}
	shared := files[0] // not the child's own: kept open
	if c.openStdin {
		shared = nil
	}
	closeChildEnds := func() {
		for _, f := range files {
			if f != nil && f != shared {
				f.Close()
			}
		}
	}
	for i := range 2 {
		pr, pw, err := os.Pipe()
		if err != nil {
			closeChildEnds()
			closeAll(parentEnds)
			r.closeStdin(c)
			return 126, fmt.Sprintf("exec: %q: output pipe: %v", c.argv[0], err)
		}
		files[1+i] = pw
		c.pipes[i] = pr
		parentEnds = append(parentEnds, pr)
	}
	sys := &syscall.SysProcAttr{Setsid: true}
	if acct.uid != os.Getuid() || acct.gid != os.Getgid() || os.Getuid() == 0 {
		sys.Credential = &syscall.Credential{Uid: uint32(acct.uid), Gid: uint32(acct.gid), Groups: acct.groups}
		if sys.Credential.Groups == nil {
			sys.Credential.Groups = []uint32{}
		}
	}
	proc, err := os.StartProcess(prog, c.argv, &os.ProcAttr{Dir: dir, Env: env, Files: files[:], Sys: sys})
	closeChildEnds()
	if err != nil {
		closeAll(parentEnds)
		r.closeStdin(c)
		code := 126
		if errors.Is(err, syscall.ENOENT) {
			code = 127
		}
		return code, fmt.Sprintf("exec: %q: %v", c.argv[0], pathErrText(err))
	}
	c.mu.Lock()
	c.pid = proc.Pid
	c.mu.Unlock()

	var pumps sync.WaitGroup
	pumps.Add(2)
	for i, s := range []outbuf.Stream{outbuf.Stdout, outbuf.Stderr} {
		go func() {
			defer pumps.Done()
			pump(c.out, s, c.pipes[i])
		}()
	}
	go func() {
		defer r.wg.Done()
		// The start time, for the tree walk, is read while the process
		// cannot have been reaped yet, and after the answer that it started
		// is on its way.
		if st, err := r.procfs.stat(proc.Pid); err == nil {
			c.mu.Lock()
			c.start = st.start
			c.mu.Unlock()
		}
		close(c.startRead)
		code := 255
		if ps, err := proc.Wait(); err == nil {
			code = exitCode(ps)
		}
		r.closeStdin(c)
		c.mu.Lock()
		c.exited, c.exitCode = true, code
		c.mu.Unlock()
		pumps.Wait() // the output ends when no process holds it any more
		r.finish(c)
	}()
	return 0, ""
}

// pumpBuffer is the read buffer of an output pipe: small, since every
// running command has two, and a pipe read returns what is there.
const pumpBuffer = 8 << 10

// pump copies one output pipe into the buffer until it ends.
func pump(out *outbuf.Buffer, s outbuf.Stream, f *os.File) {
	defer f.Close()
	buf := make([]byte, pumpBuffer)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			out.Write(s, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// exitCode is the exit status of a process, 128+N when signal N killed it.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// selfHome is HOME for a command run as the agent's own user: read from
// the passwd file again only when that file changed.
func (r *registry) selfHome() string {
	var key homeKey
	if st, err := os.Stat(r.cfg.PasswdFile); err == nil {
		key = homeKey{mod: st.ModTime(), size: st.Size(), ok: true}
	}
	r.homeMu.Lock()
	defer r.homeMu.Unlock()
	if key.ok && key == r.homeKey && r.home != "" {
		return r.home
	}
	home := "/"
	if a, err := resolveUser(fmt.Sprint(os.Getuid()), r.cfg.PasswdFile, r.cfg.GroupFile); err == nil {
		home = a.home
	}
	r.home, r.homeKey = home, key
	return home
}

// closeNull closes the registry's /dev/null.
func (r *registry) closeNull() {
	r.nullMu.Lock()
	defer r.nullMu.Unlock()
	if r.null != nil {
		r.null.Close()
		r.null = nil
	}
}

// devNull returns the registry's /dev/null, opened once.
func (r *registry) devNull() (*os.File, error) {
	r.nullMu.Lock()
	defer r.nullMu.Unlock()
	if r.null == nil {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		r.null = f
	}
	return r.null, nil
}

// pathErrText returns the reason of an *fs.PathError, or err's text.
func pathErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// buildEnv returns base with the additions applied (a key given again
// replaces the earlier value), HOME set to home unless an addition sets it,
// and CommandIDEnv set to id.
func buildEnv(base, add []string, home, id string) []string {
	out := make([]string, 0, len(base)+len(add)+2)
	index := map[string]int{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
			return
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	for _, kv := range base {
		set(kv)
	}
	homeGiven := false
	for _, kv := range add {
		if strings.HasPrefix(kv, "HOME=") {
			homeGiven = true
		}
		set(kv)
	}
	if !homeGiven {
		set("HOME=" + home)
	}
	set(CommandIDEnv + "=" + id)
	return out
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

// lookPath finds the program the way the container runtime does: a name
// with a slash is taken as it is (relative to dir), any other is looked up
// in pathEnv. On failure it returns an exit code (127 not found, 126 not
// executable) and a message.
func lookPath(file, pathEnv, dir string) (string, int, string) {
	if strings.Contains(file, "/") {
		p := file
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
			return "", 127, fmt.Sprintf("exec: %q: stat %s: no such file or directory", file, file)
		case err != nil:
			return "", 126, fmt.Sprintf("exec: %q: stat %s: %v", file, file, pathErrText(err))
		case st.IsDir():
			return "", 126, fmt.Sprintf("exec: %q: is a directory", file)
		case st.Mode()&0o111 == 0:
			return "", 126, fmt.Sprintf("exec: %q: permission denied", file)
		}
		return p, 0, ""
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, file)
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, 0, ""
		}
	}
	return "", 127, fmt.Sprintf("exec: %q: executable file not found in $PATH", file)
}

// closeStdin closes c's stdin pipe, once.
// setHalted makes exec refuse commands (a halted sandbox) or accept them
// again.
func (r *registry) setHalted(h bool) {
	r.mu.Lock()
	r.halted = h
	r.mu.Unlock()
}

// isHalted reports whether the sandbox is halted.
func (r *registry) isHalted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.halted
}

func (r *registry) closeStdin(c *command) {
	c.mu.Lock()
	f := c.stdin
	c.stdin, c.stdinClosed = nil, true
	c.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

// finish records the end of c and prunes the finished commands.
func (r *registry) finish(c *command) {
	c.mu.Lock()
	c.finished = true
	c.finishedAt = time.Now()
	c.mu.Unlock()
	c.out.Close()
	close(c.done)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	if r.byID[c.id] != c {
		return
	}
	r.finished = append(r.finished, c)
	r.keptBytes += c.kept()
	for len(r.finished) > 0 && (len(r.finished) > r.cfg.MaxFinished || r.keptBytes > r.cfg.MaxFinishedOutput) {
		r.dropLocked(r.finished[0])
	}
}

// dropLocked forgets finished command c.
func (r *registry) dropLocked(c *command) {
	delete(r.byID, c.id)
	r.order = removeCmd(r.order, c)
	if i := indexCmd(r.finished, c); i >= 0 {
		r.finished = append(r.finished[:i], r.finished[i+1:]...)
		r.keptBytes -= c.kept()
	}
}

func indexCmd(list []*command, c *command) int {
	for i, x := range list {
		if x == c {
			return i
		}
	}
	return -1
}

func removeCmd(list []*command, c *command) []*command {
	if i := indexCmd(list, c); i >= 0 {
		return append(list[:i], list[i+1:]...)
	}
	return list
}

func (r *registry) get(id string) (*command, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.byID[id]
	if c == nil {
		return nil, notFound("command %s not found", id)
	}
	return c, nil
}

// list returns every command known, by start.
func (r *registry) list() []*command {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*command(nil), r.order...)
}

// forget drops a finished command.
func (r *registry) forget(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.byID[id]
	if c == nil {
		return notFound("command %s not found", id)
	}
	if indexCmd(r.finished, c) < 0 {
		return conflict("command %s is running; only finished commands can be forgotten", id)
	}
	r.dropLocked(c)
	return nil
}

// signal delivers sig to the process tree of command id.
func (r *registry) signal(id string, sig int) (wire.Command, error) {
	if sig < 1 || sig > 64 {
		return wire.Command{}, invalid("signal %d: want 1 to 64", sig)
	}
	c, err := r.get(id)
	if err != nil {
		return wire.Command{}, err
	}
	r.sigMu.Lock()
	defer r.sigMu.Unlock()
	c.mu.Lock()
	if c.finished || c.pid == 0 {
		c.mu.Unlock()
		return wire.Command{}, conflict("command %s has finished", id)
	}
	c.mu.Unlock()
	<-c.startRead
	c.mu.Lock()
	pid, start := c.pid, c.start
	c.mu.Unlock()
	if _, err := r.procfs.signalTree(pid, start, syscall.Signal(sig)); err != nil {
		return wire.Command{}, fmt.Errorf("signal command %s: %w", id, err)
	}
	c.mu.Lock()
	c.signal = sig
	c.mu.Unlock()
	return c.info(), nil
}

// writeStdin copies the data frames of body into c's stdin until the
// KindEnd frame, which it returns. Cancelling ctx aborts a blocked write.
func (r *registry) writeStdin(ctx context.Context, c *command, fr *wire.Reader) (written int64, end wire.Frame, err error) {
	select {
	case c.stdinTurn <- struct{}{}:
		defer func() { <-c.stdinTurn }()
	case <-ctx.Done():
		return 0, wire.Frame{}, ctx.Err()
	}
	c.mu.Lock()
	f := c.stdin
	c.mu.Unlock()
	if f == nil {
		return 0, wire.Frame{}, conflict("the stdin of command %s is closed", c.id)
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			f.SetWriteDeadline(time.Time{})
		}
	}()
	for {
		fr, rerr := fr.Next()
		if rerr != nil {
			return written, wire.Frame{}, rerr
		}
		switch fr.Kind {
		case wire.KindEnd:
			return written, fr, nil
		case wire.KindData:
			n, werr := f.Write(fr.Payload)
			written += int64(n)
			if werr != nil {
				if ctx.Err() != nil {
					return written, wire.Frame{}, ctx.Err()
				}
				return written, wire.Frame{}, conflict("write to the stdin of command %s: %v", c.id, werr)
			}
		default:
			return written, wire.Frame{}, invalid("unexpected %c frame in stdin data", fr.Kind)
		}
	}
}

// follow writes c's output from pos as frames, then the trailer.
func (r *registry) follow(ctx context.Context, c *command, pos outbuf.Pos, w *wire.Writer) error {
	for {
		chunks, done, wait := c.out.Read(pos, wire.MaxData)
		for _, ch := range chunks {
			var err error
			switch {
			case ch.Dropped > 0:
				s := wire.StreamStdout
				if ch.Stream == outbuf.Stderr {
					s = wire.StreamStderr
				}
				err = w.Dropped(s, ch.Dropped)
			case ch.Stream == outbuf.Stderr:
				err = w.Frame(wire.KindStderr, ch.Data)
			default:
				err = w.Frame(wire.KindStdout, ch.Data)
			}
			if err != nil {
				return err
			}
			pos = ch.End
		}
		if done {
			return respond(w, c.info())
		}
		if len(chunks) > 0 {
			continue // more may have arrived meanwhile; flush when caught up
		}
		if err := w.Flush(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wait:
		}
	}
}

// close refuses new commands, kills the running ones and waits (a bounded
// time) for their goroutines.
func (r *registry) close(timeout time.Duration) {
	r.mu.Lock()
	r.closed = true
	var running []*command
	for _, c := range r.order {
		if indexCmd(r.finished, c) < 0 {
			running = append(running, c)
		}
	}
	r.mu.Unlock()
	defer r.closeNull()
	for _, c := range running {
		c.mu.Lock()
		pid, start, finished := c.pid, c.start, c.finished
		c.mu.Unlock()
		if !finished && pid > 0 {
			r.sigMu.Lock()
			_, _ = r.procfs.signalTree(pid, start, syscall.SIGKILL)
			r.sigMu.Unlock()
		}
	}
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(timeout):
	}
	// A process outside the tree still holds an output pipe: stop reading.
	for _, c := range running {
		for _, f := range c.pipes {
			if f != nil {
				f.Close()
			}
		}
	}
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

var _ io.Writer = (*wire.Writer)(nil)
