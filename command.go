package opensbx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/outbuf"
)

// ExecOptions describe a command to run in a sandbox. Only Command is
// required. The command runs directly, with Args as its argv: nothing goes
// through a shell unless Command is one (Command "sh", Args "-c", "...").
type ExecOptions struct {
	// Command is the program to run: a path, or a name looked up in the
	// sandbox's PATH.
	Command string
	// Args are the arguments after the program name (argv[1:]).
	Args []string
	// Cwd is the working directory; empty means the sandbox's own. A
	// directory that does not exist makes the command finish with exit code
	// 126 and the runtime's message on its output.
	Cwd string
	// Env adds to (or replaces in) the sandbox's environment. Keys must not
	// be empty or contain '='. The command also gets OPENSBX_COMMAND_ID set
	// to its id (a reserved key), which KillCommand may use to find the
	// command's processes.
	Env map[string]string
	// User runs the command as this user ("nobody", "1000", "1000:1000");
	// empty means the sandbox's user.
	User string
	// Stdin, when not nil, is copied to the command's standard input until
	// it returns EOF; the input is then closed (unless OpenStdin). The copy
	// runs in a goroutine owned by the Manager, so Close waits for a Read in
	// flight to return: give a reader that does not block forever. Nil means
	// no input (the command reads EOF at once unless OpenStdin).
	Stdin io.Reader
	// OpenStdin keeps standard input open (after Stdin, if any) so that
	// SendStdin can write to it later, for interactive programs.
	OpenStdin bool
	// KillOnCancel is used by Run only: when Run's context ends before the
	// command, Run sends SIGKILL to the command's process tree. Without it
	// the command keeps running and can be waited for or killed later.
	KillOnCancel bool
}

// CommandState is the lifecycle state of a command.
type CommandState string

// Command states.
const (
	// CommandRunning: the command has started and not yet ended.
	CommandRunning CommandState = "running"
	// CommandFinished: the command exited by itself; ExitCode is set.
	CommandFinished CommandState = "finished"
	// CommandKilled: the command ended after KillCommand signalled it, with
	// an exit code of 128 or more (128+signal when the signal killed it).
	CommandKilled CommandState = "killed"
	// CommandFailed: the Manager lost track of the command: it closed (or
	// stopped without closing) while the command ran, or the sandbox went
	// away. Error says what happened; ExitCode is set when known.
	CommandFailed CommandState = "failed"
)

// Command describes one command run in a sandbox. The Manager returns
// copies: a Command does not change after it is returned.
type Command struct {
	// ID is "cmd_" followed by 24 random hex digits.
	ID string
	// Name is the program (ExecOptions.Command).
	Name string
	// Args are the arguments after Name.
	Args []string
	// Cwd is the requested working directory ("" = the sandbox's).
	Cwd string
	// SandboxID is the full container id of the sandbox.
	SandboxID string
	// State is running, finished, killed or failed.
	State CommandState
	// ExitCode is the exit code once known; nil while running. A command
	// killed by signal N exits with 128+N. A program that cannot be started
	// exits like in a shell: 127 when it is not found, 126 when it is not
	// executable or Cwd or User is wrong; Error and the output then carry
	// the runtime's message.
	ExitCode *int
	// StartedAt is when Exec started the command.
	StartedAt time.Time
	// FinishedAt is when the command ended; zero while running.
	FinishedAt time.Time
	// Error explains a failed command, or why a finished command's program
	// could not be started (then ExitCode is 127 or 126 and the runtime's
	// message is also on the output).
	Error string
}

// Done reports whether the command has ended (any state but running).
func (c *Command) Done() bool { return c.State != CommandRunning }

func (c *Command) clone() *Command {
	out := *c
	out.Args = append([]string(nil), c.Args...)
	if c.ExitCode != nil {
		code := *c.ExitCode
		out.ExitCode = &code
	}
	return &out
}

// commandsBucket is the state-store bucket of finished commands, keyed by
// sandboxID + "/" + commandID.
const commandsBucket = "commands"

// recordMax is the largest data chunk of one OutputRecord.
const recordMax = 32 << 10

// commandRegistry keeps the commands of every sandbox: running ones with
// their live output, and up to commandHistory finished ones per sandbox.
type commandRegistry struct {
	m       *Manager
	persist bool // a state directory is configured

	mu    sync.Mutex
	boxes map[string]*sandboxCommands // by full container id
	seq   uint64                      // finish order, for history pruning

	persistMu sync.Mutex // orders store writes of finish against forget

	// killMode forces a kill strategy (killAuto in production); tests set it.
	killMode killMode
}

type sandboxCommands struct {
	order []*cmdEntry // by start
	byID  map[string]*cmdEntry
}

// cmdEntry is one command. cmd, killSent, forgotten and finishSeq are
// guarded by the registry's mu.
type cmdEntry struct {
	cmd       Command
	out       *outbuf.Buffer
	done      chan struct{} // closed when the command has ended
	execID    string
	live      bool // started by this Manager (not recovered)
	killSent  bool
	forgotten bool
	finishSeq uint64
	stdin     *stdinPipe // nil without AttachStdin
}

// storedCommand is the persisted form of a command.
type storedCommand struct {
	Command     Command `json:"command"`
	ExecID      string  `json:"exec_id"`
	Stdout      []byte  `json:"stdout"`
	StdoutTotal int64   `json:"stdout_total"`
	Stderr      []byte  `json:"stderr"`
	StderrTotal int64   `json:"stderr_total"`
	// Order is the write order of the kept output across the streams.
	Order []outbuf.Run `json:"order,omitempty"`
}

// newCommandRegistry recovers the commands kept in the state store. A
// command recorded as running (the Manager stopped without Close) is
// recorded as failed; commands of sandboxes that no longer exist are
// dropped.
func newCommandRegistry(m *Manager) (*commandRegistry, error) {
	r := &commandRegistry{m: m, persist: m.cfg.stateDir != "", boxes: map[string]*sandboxCommands{}}
	if !r.persist {
		return r, nil
	}
	var recs []storedCommand
	err := m.store.ForEach(commandsBucket, func(key string, value []byte) error {
		var sc storedCommand
		if err := json.Unmarshal(value, &sc); err != nil {
			m.log.Warn("dropping unreadable command record", "key", key, "err", err)
			return nil
		}
		recs = append(recs, sc)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return r, nil
	}
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	owned, err := m.listOwned(ctx)
	if err != nil {
		return nil, err
	}
	exists := map[string]bool{}
	for _, c := range owned {
		exists[c.ID] = true
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Command.StartedAt.Before(recs[j].Command.StartedAt) })
	for _, sc := range recs {
		key := sc.Command.SandboxID + "/" + sc.Command.ID
		if !exists[sc.Command.SandboxID] {
			if err := m.store.Delete(commandsBucket, key); err != nil {
				return nil, err
			}
			continue
		}
		if sc.Command.State == CommandRunning {
			sc.Command.State = CommandFailed
			sc.Command.Error = "the manager stopped while the command was running; it may have kept running in the sandbox"
			if sc.Command.FinishedAt.IsZero() {
				sc.Command.FinishedAt = time.Now()
			}
			if b, err := json.Marshal(sc); err == nil {
				if err := m.store.Put(commandsBucket, key, b); err != nil {
					return nil, err
				}
			}
		}
		e := &cmdEntry{
			cmd:    sc.Command,
			out:    outbuf.Restore(m.cfg.outputLimit, sc.Stdout, sc.StdoutTotal, sc.Stderr, sc.StderrTotal, sc.Order),
			done:   make(chan struct{}),
			execID: sc.ExecID,
		}
		close(e.done)
		r.seq++
		e.finishSeq = r.seq
		r.addLocked(e)
	}
	for id := range r.boxes {
		r.pruneLocked(id)
	}
	return r, nil
}

// addLocked adds e to its sandbox's list; r.mu is held (or r unshared).
func (r *commandRegistry) addLocked(e *cmdEntry) {
	box := r.boxes[e.cmd.SandboxID]
	if box == nil {
		box = &sandboxCommands{byID: map[string]*cmdEntry{}}
		r.boxes[e.cmd.SandboxID] = box
	}
	box.order = append(box.order, e)
	box.byID[e.cmd.ID] = e
}

// pruneLocked forgets the oldest finished commands of sandbox id beyond the
// history limit and deletes their records.
func (r *commandRegistry) pruneLocked(id string) {
	box := r.boxes[id]
	if box == nil {
		return
	}
	var finished []*cmdEntry
	for _, e := range box.order {
		if e.cmd.State != CommandRunning {
			finished = append(finished, e)
		}
	}
	excess := len(finished) - r.m.cfg.commandHistory
	if excess <= 0 {
		return
	}
	sort.Slice(finished, func(i, j int) bool { return finished[i].finishSeq < finished[j].finishSeq })
	drop := map[*cmdEntry]bool{}
	for _, e := range finished[:excess] {
		drop[e] = true
		e.forgotten = true
		delete(box.byID, e.cmd.ID)
		if r.persist {
			key := id + "/" + e.cmd.ID
			if err := r.m.store.Delete(commandsBucket, key); err != nil {
				r.m.log.Warn("delete command record", "key", key, "err", err)
			}
		}
	}
	kept := box.order[:0]
	for _, e := range box.order {
		if !drop[e] {
			kept = append(kept, e)
		}
	}
	box.order = kept
}

// forget drops every command record of sandbox id (a full container id).
// Commands still running are no longer tracked.
func (r *commandRegistry) forget(id string) {
	r.mu.Lock()
	if box := r.boxes[id]; box != nil {
		for _, e := range box.order {
			e.forgotten = true
		}
		delete(r.boxes, id)
	}
	r.mu.Unlock()
	if !r.persist {
		return
	}
	r.persistMu.Lock()
	defer r.persistMu.Unlock()
	var keys []string
	err := r.m.store.ForEach(commandsBucket, func(key string, _ []byte) error {
		if strings.HasPrefix(key, id+"/") {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		r.m.log.Warn("list command records", "sandbox", id, "err", err)
	}
	for _, k := range keys {
		if err := r.m.store.Delete(commandsBucket, k); err != nil {
			r.m.log.Warn("delete command record", "key", k, "err", err)
		}
	}
}

// close releases the registry after the Manager's goroutines have stopped.
// The output pumps have recorded their commands as failed by then.
func (r *commandRegistry) close() error { return nil }

// save persists e (a running or finished command) unless e was forgotten.
func (r *commandRegistry) save(e *cmdEntry) {
	if !r.persist {
		return
	}
	r.persistMu.Lock()
	defer r.persistMu.Unlock()
	r.mu.Lock()
	if e.forgotten {
		r.mu.Unlock()
		return
	}
	sc := storedCommand{Command: *e.cmd.clone(), ExecID: e.execID}
	r.mu.Unlock()
	s := e.out.Snapshot()
	sc.Stdout, sc.StdoutTotal, sc.Stderr, sc.StderrTotal = s.Stdout, s.StdoutTotal, s.Stderr, s.StderrTotal
	sc.Order = s.Order
	b, err := json.Marshal(sc)
	if err == nil {
		err = r.m.store.Put(commandsBucket, sc.Command.SandboxID+"/"+sc.Command.ID, b)
	}
	if err != nil {
		r.m.log.Warn("save command record", "command", sc.Command.ID, "err", err)
	}
}

// finish records the end of e: state, exit code, error. It closes the
// output and wakes waiters, persists the record and prunes the history.
func (r *commandRegistry) finish(e *cmdEntry, state CommandState, code *int, msg string) {
	r.mu.Lock()
	if e.cmd.State != CommandRunning {
		r.mu.Unlock()
		return
	}
	if state == CommandFinished && e.killSent && (code == nil || *code >= 128) {
		state = CommandKilled
	}
	e.cmd.State, e.cmd.ExitCode, e.cmd.Error = state, code, msg
	e.cmd.FinishedAt = time.Now()
	r.seq++
	e.finishSeq = r.seq
	r.mu.Unlock()
	e.out.Close()
	close(e.done)
	r.save(e)
	r.mu.Lock()
	if !e.forgotten {
		r.pruneLocked(e.cmd.SandboxID)
	}
	r.mu.Unlock()
}

func (r *commandRegistry) snapshot(e *cmdEntry) *Command {
	r.mu.Lock()
	defer r.mu.Unlock()
	return e.cmd.clone()
}

// lookup finds command cmdID of sandbox sandboxID (id, id prefix or name).
func (r *commandRegistry) lookup(ctx context.Context, sandboxID, cmdID string) (*cmdEntry, error) {
	if cmdID == "" {
		return nil, invalidf("command id is empty")
	}
	// Fast path: a command this Manager started, addressed by the full id.
	r.mu.Lock()
	if box := r.boxes[sandboxID]; box != nil {
		if e := box.byID[cmdID]; e != nil && e.live {
			r.mu.Unlock()
			return e, nil
		}
	}
	r.mu.Unlock()
	c, err := r.m.inspect(ctx, sandboxID)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if box := r.boxes[c.ID]; box != nil {
		if e := box.byID[cmdID]; e != nil {
			return e, nil
		}
	}
	return nil, fmt.Errorf("command %q in sandbox %s: %w", cmdID, shortID(c.ID), ErrNotFound)
}

func newCommandID() string {
	var b [12]byte
	rand.Read(b[:])
	return "cmd_" + hex.EncodeToString(b[:])
}

// validate checks o and returns the environment as "K=V" entries.
func (o *ExecOptions) validate() ([]string, error) {
	if strings.TrimSpace(o.Command) == "" {
		return nil, invalidf("command is empty")
	}
	if strings.ContainsRune(o.Command, 0) {
		return nil, invalidf("command contains a NUL byte")
	}
	for _, a := range o.Args {
		if strings.ContainsRune(a, 0) {
			return nil, invalidf("argument contains a NUL byte")
		}
	}
	env := make([]string, 0, len(o.Env)+1)
	for k, v := range o.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, invalidf("env key %q: must be non-empty, without '=' or NUL", k)
		}
		if k == commandIDEnv {
			return nil, invalidf("env key %s is reserved", k)
		}
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env, nil
}

// Exec starts a command in a running sandbox and returns at once with its
// record (state running). Output is collected in the background (see
// CommandOutput and FollowOutput); WaitCommand waits for the end.
//
// It fails with ErrInvalid for an empty command or a bad Env key,
// ErrNotFound for an unknown sandbox, ErrConflict when the sandbox is
// stopped or paused, and ErrClosed after Close. A program that does not
// exist is not an error here: the command finishes with exit code 127 (126
// when it is not executable, or Cwd or User is wrong), the runtime's
// message ("exec: \"x\": executable file not found in $PATH") in Error
// and on its output.
func (m *Manager) Exec(ctx context.Context, sandboxID string, opts ExecOptions) (*Command, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	e, err := m.exec(ctx, sandboxID, opts)
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	return m.cmds.snapshot(e), nil
}

func (m *Manager) exec(ctx context.Context, sandboxID string, opts ExecOptions) (*cmdEntry, error) {
	env, err := opts.validate()
	if err != nil {
		return nil, err
	}
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return nil, err
	}
	if st := m.stateOfInspect(c); st != StateRunning {
		return nil, fmt.Errorf("sandbox %s is %s: %w", shortID(c.ID), st, ErrConflict)
	}
	attachStdin := opts.Stdin != nil || opts.OpenStdin
	id := newCommandID()
	env = append(env, commandIDEnv+"="+id)
	created, err := m.docker.ContainerExecCreate(ctx, c.ID, container.ExecOptions{
		User:         opts.User,
		AttachStdin:  attachStdin,
		AttachStdout: true,
		AttachStderr: true,
		Env:          env,
		WorkingDir:   opts.Cwd,
		Cmd:          append([]string{opts.Command}, opts.Args...),
	})
	if err != nil {
		return nil, fmt.Errorf("create exec in sandbox %s: %w", shortID(c.ID), engine.Classify(err))
	}
	started := time.Now()
	hj, err := m.docker.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, fmt.Errorf("start exec in sandbox %s: %w", shortID(c.ID), engine.Classify(err))
	}
	e := &cmdEntry{
		cmd: Command{
			ID:        id,
			Name:      opts.Command,
			Args:      append([]string(nil), opts.Args...),
			Cwd:       opts.Cwd,
			SandboxID: c.ID,
			State:     CommandRunning,
			StartedAt: started,
		},
		out:    outbuf.New(m.cfg.outputLimit),
		done:   make(chan struct{}),
		execID: created.ID,
		live:   true,
	}
	if attachStdin {
		e.stdin = &stdinPipe{hj: &hj, open: true}
	}
	m.cmds.mu.Lock()
	m.cmds.addLocked(e)
	m.cmds.mu.Unlock()
	m.cmds.save(e)
	if !m.goBackground(func(bctx context.Context) { m.cmds.pump(bctx, e, &hj, opts) }) {
		hj.Close()
		m.cmds.finish(e, CommandFailed, nil, "the manager closed while the command started")
		return nil, ErrClosed
	}
	return e, nil
}

// pump copies the command's output into its buffer until the stream ends,
// then waits for the exit code and records the end.
func (r *commandRegistry) pump(ctx context.Context, e *cmdEntry, hj *types.HijackedResponse, opts ExecOptions) {
	stop := context.AfterFunc(ctx, hj.Close)
	if opts.Stdin != nil {
		r.m.goBackground(func(context.Context) { e.stdin.copyFrom(opts.Stdin, !opts.OpenStdin) })
	}
	_, copyErr := stdcopy.StdCopy(e.out.Writer(outbuf.Stdout), e.out.Writer(outbuf.Stderr), hj.Reader)
	stop()
	if ctx.Err() != nil {
		hj.Close()
		r.finish(e, CommandFailed, nil, "the manager closed while the command was running; it may still run in the sandbox")
		return
	}
	if copyErr != nil {
		r.m.log.Debug("exec output stream ended with an error", "command", e.cmd.ID, "err", copyErr)
	}
	code, msg := r.waitExit(ctx, e)
	if e.stdin != nil {
		e.stdin.shutdown()
	}
	hj.Close()
	switch {
	case msg != "":
		r.finish(e, CommandFailed, code, msg)
	case code != nil && *code == 126:
		c, why := startFailure(e.out.Snapshot())
		if why != "" {
			code = &c
		}
		r.finish(e, CommandFinished, code, why)
	default:
		r.finish(e, CommandFinished, code, "")
	}
}

// startFailure recognises the output of a program that could not be
// started: the engine (Docker 20.10 with runc) reports exit code 126 for
// every such failure and writes the runtime's message to the output. It
// returns the message and the exit code a shell would give: 127 when the
// program was not found, 126 otherwise (not executable, bad working
// directory or user).
func startFailure(s outbuf.Snapshot) (int, string) {
	msg := strings.TrimSpace(string(s.Stdout) + string(s.Stderr))
	if !(strings.HasPrefix(msg, "OCI runtime exec failed: ") || strings.HasPrefix(msg, "unable to find user ")) ||
		strings.Contains(msg, "\n") || s.StdoutTotal+s.StderrTotal > 4096 {
		return 126, ""
	}
	if strings.Contains(msg, "executable file not found") ||
		(strings.Contains(msg, "exec: \"") && strings.Contains(msg, "no such file or directory")) {
		return 127, msg
	}
	return 126, msg
}

// waitExit polls the exec until the engine reports it ended and returns its
// exit code, or an explanation when the command's end cannot be observed.
func (r *commandRegistry) waitExit(ctx context.Context, e *cmdEntry) (*int, string) {
	delay := 500 * time.Microsecond
	checkSandbox := time.Now().Add(time.Second)
	for {
		ins, err := r.m.docker.ContainerExecInspect(ctx, e.execID)
		if err != nil {
			if ctx.Err() != nil {
				return nil, "the manager closed while the command was running; it may still run in the sandbox"
			}
			if errors.Is(engine.Classify(err), ErrNotFound) {
				return nil, "the sandbox was removed while the command was running"
			}
			return nil, fmt.Sprintf("inspect exec: %v", err)
		}
		if !ins.Running {
			code := ins.ExitCode
			return &code, ""
		}
		if time.Now().After(checkSandbox) {
			checkSandbox = time.Now().Add(time.Second)
			c, err := r.m.docker.ContainerInspect(ctx, e.cmd.SandboxID)
			if err != nil && errors.Is(engine.Classify(err), ErrNotFound) {
				return nil, "the sandbox was removed while the command was running"
			}
			if err == nil && (c.State == nil || !c.State.Running) {
				return nil, "the sandbox stopped while the command was running"
			}
		}
		select {
		case <-ctx.Done():
			return nil, "the manager closed while the command was running; it may still run in the sandbox"
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// stdinPipe is the write side of a command's standard input.
type stdinPipe struct {
	mu     sync.Mutex // serialises writers
	hj     *types.HijackedResponse
	open   bool // accepts SendStdin
	closed bool
}

// copyFrom copies src to the command's input, then closes the input when
// closeAfter. It holds the lock for the whole copy.
func (p *stdinPipe) copyFrom(src io.Reader, closeAfter bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	_, err := io.Copy(p.hj.Conn, src)
	if closeAfter || err != nil {
		p.closeLocked()
	}
}

func (p *stdinPipe) closeLocked() {
	if !p.closed {
		p.hj.CloseWrite()
		p.closed, p.open = true, false
	}
}

// shutdown marks the input closed once the command has ended.
func (p *stdinPipe) shutdown() {
	if p.mu.TryLock() {
		p.closed, p.open = true, false
		p.mu.Unlock()
	}
}

// Command returns the command cmdID of a sandbox. It fails with ErrNotFound
// when the sandbox or the command is unknown (or forgotten: see
// WithCommandHistory).
func (m *Manager) Command(ctx context.Context, sandboxID, cmdID string) (*Command, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	e, err := m.cmds.lookup(ctx, sandboxID, cmdID)
	if err != nil {
		return nil, fmt.Errorf("get command: %w", err)
	}
	return m.cmds.snapshot(e), nil
}

// Commands lists the commands of a sandbox, running and retained finished
// ones, oldest first. An unknown sandbox gives ErrNotFound.
func (m *Manager) Commands(ctx context.Context, sandboxID string) ([]*Command, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	c, err := m.inspect(ctx, sandboxID)
	if err != nil {
		return nil, fmt.Errorf("list commands: %w", err)
	}
	r := m.cmds
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []*Command{}
	if box := r.boxes[c.ID]; box != nil {
		for _, e := range box.order {
			out = append(out, e.cmd.clone())
		}
	}
	return out, nil
}

// WaitCommand blocks until the command has ended and returns its final
// record. When ctx ends first it returns ctx.Err() and leaves the command
// running. Unknown sandbox or command: ErrNotFound.
func (m *Manager) WaitCommand(ctx context.Context, sandboxID, cmdID string) (*Command, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	e, err := m.cmds.lookup(ctx, sandboxID, cmdID)
	if err != nil {
		return nil, fmt.Errorf("wait command: %w", err)
	}
	select {
	case <-e.done:
		return m.cmds.snapshot(e), nil
	case <-ctx.Done():
		if m.ctx.Err() != nil {
			return nil, ErrClosed
		}
		return nil, ctx.Err()
	}
}

// Output is a snapshot of a command's output: the newest bytes of each
// stream (at most the Manager's output limit, see WithOutputLimit) and how
// many older bytes were dropped.
type Output struct {
	// Stdout and Stderr are the kept bytes, exactly as written.
	Stdout, Stderr []byte
	// StdoutDropped and StderrDropped count the bytes evicted by the limit
	// before the kept ones.
	StdoutDropped, StderrDropped int64
	// ExitCode is the command's exit code once it has ended.
	ExitCode *int
}

// CommandOutput returns a snapshot of the command's output so far.
// Unknown sandbox or command: ErrNotFound.
func (m *Manager) CommandOutput(ctx context.Context, sandboxID, cmdID string) (*Output, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	e, err := m.cmds.lookup(ctx, sandboxID, cmdID)
	if err != nil {
		return nil, fmt.Errorf("command output: %w", err)
	}
	m.cmds.mu.Lock()
	code := e.cmd.clone().ExitCode
	m.cmds.mu.Unlock()
	s := e.out.Snapshot()
	return &Output{
		Stdout: s.Stdout, Stderr: s.Stderr,
		StdoutDropped: s.StdoutDropped, StderrDropped: s.StderrDropped,
		ExitCode: code,
	}, nil
}

// Output record types.
const (
	RecordStdout  = "stdout"
	RecordStderr  = "stderr"
	RecordDropped = "dropped"
	RecordExit    = "exit"
)

// OutputRecord is one record of a followed output stream.
type OutputRecord struct {
	// Type is "stdout" or "stderr" (Data is set), "dropped" (Dropped bytes
	// of Stream were evicted by the output limit before this reader got
	// them) or "exit" (the last record; ExitCode is set).
	Type string
	// Data is a piece of output, at most 32 KiB, exactly as written.
	Data []byte
	// Dropped is the number of bytes missed, for "dropped".
	Dropped int64
	// Stream is "stdout" or "stderr", for "dropped".
	Stream string
	// ExitCode is the command's exit code, for "exit"; -1 when the command
	// failed without one.
	ExitCode int
	// Cursor is the position after this record. Passing it to FollowOutput
	// continues right after the record, with no gap and no duplicate. It is
	// opaque and stays valid across Manager restarts with a state directory.
	Cursor string
}

// cursor encoding: "c1.<stdout offset>.<stderr offset>".
func encodeCursor(p outbuf.Pos) string {
	return "c1." + strconv.FormatInt(p.Stdout, 10) + "." + strconv.FormatInt(p.Stderr, 10)
}

func parseCursor(s string) (outbuf.Pos, error) {
	if s == "" {
		return outbuf.Pos{}, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != "c1" {
		return outbuf.Pos{}, invalidf("cursor %q is malformed", s)
	}
	o, err1 := strconv.ParseInt(parts[1], 10, 64)
	e, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || o < 0 || e < 0 {
		return outbuf.Pos{}, invalidf("cursor %q is malformed", s)
	}
	return outbuf.Pos{Stdout: o, Stderr: e}, nil
}

// FollowOutput calls fn with the command's output after cursor ("" = from
// the start): first what is buffered, then new output as it is produced,
// and finally an "exit" record. Records are byte-exact and, across stdout
// and stderr, in the order the engine delivered the output (also when
// replayed later, and after a restart); the engine reads the two pipes
// separately, so writes a program makes to both within a moment may be
// swapped. When the output limit evicted bytes this reader had not seen, a
// "dropped" record says exactly how many. Any number of followers may
// follow one command.
//
// It returns nil after fn accepted the "exit" record, fn's error when fn
// fails, ctx.Err() when ctx ends (ErrClosed when the Manager closes),
// ErrInvalid for a malformed cursor and ErrNotFound for an unknown
// sandbox or command.
func (m *Manager) FollowOutput(ctx context.Context, sandboxID, cmdID, cursor string, fn func(OutputRecord) error) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	pos, err := parseCursor(cursor)
	if err != nil {
		return fmt.Errorf("follow output: %w", err)
	}
	e, err := m.cmds.lookup(ctx, sandboxID, cmdID)
	if err != nil {
		return fmt.Errorf("follow output: %w", err)
	}
	end, err := e.out.Follow(ctx, pos, recordMax, func(c outbuf.Chunk) error {
		rec := OutputRecord{Type: c.Stream.String(), Data: c.Data, Cursor: encodeCursor(c.End)}
		if c.Dropped > 0 {
			rec = OutputRecord{Type: RecordDropped, Dropped: c.Dropped, Stream: c.Stream.String(), Cursor: encodeCursor(c.End)}
		}
		return fn(rec)
	})
	if err != nil {
		if ctx.Err() != nil && m.ctx.Err() != nil {
			return ErrClosed
		}
		return err
	}
	<-e.done // the buffer closes after the final state is recorded
	cmd := m.cmds.snapshot(e)
	code := -1
	if cmd.ExitCode != nil {
		code = *cmd.ExitCode
	}
	return fn(OutputRecord{Type: RecordExit, ExitCode: code, Cursor: encodeCursor(end)})
}

// SendStdin copies r to the standard input of a running command started
// with OpenStdin, then closes the input when closeAfter (r may be nil to
// just close it). Writes wait for an ExecOptions.Stdin copy in progress.
// It fails with ErrConflict when the command has ended or its input is not
// open, ErrNotFound for an unknown sandbox or command, and ctx.Err() when
// ctx ends while the command is not reading.
func (m *Manager) SendStdin(ctx context.Context, sandboxID, cmdID string, r io.Reader, closeAfter bool) error {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	e, err := m.cmds.lookup(ctx, sandboxID, cmdID)
	if err != nil {
		return fmt.Errorf("send stdin: %w", err)
	}
	if e.stdin == nil {
		return fmt.Errorf("send stdin: command %s was started without OpenStdin: %w", cmdID, ErrConflict)
	}
	p := e.stdin
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-e.done:
		return fmt.Errorf("send stdin: command %s has ended: %w", cmdID, ErrConflict)
	default:
	}
	if !p.open || p.closed {
		return fmt.Errorf("send stdin: the input of command %s is closed: %w", cmdID, ErrConflict)
	}
	if r != nil {
		stop := context.AfterFunc(ctx, func() { p.hj.Conn.SetWriteDeadline(time.Unix(1, 0)) })
		_, err = io.Copy(p.hj.Conn, r)
		if !stop() {
			p.hj.Conn.SetWriteDeadline(time.Time{})
		}
		if err != nil {
			select {
			case <-e.done:
				return fmt.Errorf("send stdin: command %s has ended: %w", cmdID, ErrConflict)
			default:
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("send stdin: %w", err)
		}
	}
	if closeAfter {
		p.closeLocked()
	}
	return nil
}

// ParseSignal parses a POSIX signal given as a number ("9", "15") or a name
// with or without the SIG prefix, in any case ("TERM", "SIGTERM", "kill").
// Numbers are Linux signal numbers 1-64 (real-time signals included). It
// fails with ErrInvalid otherwise.
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(t); err == nil {
		if n < 1 || n > maxSignal {
			return 0, invalidf("signal %q: number must be 1-%d", s, maxSignal)
		}
		return syscall.Signal(n), nil
	}
	t = strings.TrimPrefix(t, "SIG")
	if n, ok := signalNames[t]; ok {
		return syscall.Signal(n), nil
	}
	return 0, invalidf("signal %q is not a known signal name or number", s)
}

// maxSignal is the highest Linux signal number (SIGRTMAX).
const maxSignal = 64

// signalNames are the Linux signal numbers (the sandbox's kernel), which do
// not depend on the platform the Manager is built for.
var signalNames = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
	"KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16,
	"CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24,
	"XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}

// Linux signal numbers used by kill.
const (
	sigKill = syscall.Signal(9)
	sigCont = syscall.Signal(18)
	sigStop = syscall.Signal(19)
	sigTSTP = syscall.Signal(20)
	sigTTIN = syscall.Signal(21)
	sigTTOU = syscall.Signal(22)
)

// KillCommand sends sig to the command's process tree: the process Exec
// started and every process descended from it, and nothing else; other
// commands, even identical ones, are not touched. The tree is held still
// with SIGSTOP while it is collected, so no child escapes by forking, and
// resumed after the signal; a shell that does not forward SIGTERM to its
// child still sees the child end. Processes are identified by host PID and
// start time, so a reused PID is never signalled. That needs the Manager to
// run on the Docker engine's host (it reads /proc). As a non-root user it
// signals from inside the sandbox with the image's kill program instead;
// when it cannot see the host's processes at all (it runs in a container or
// on another machine), it signals from inside the sandbox every process
// whose environment carries the command's OPENSBX_COMMAND_ID, which needs
// sh, tr, grep and kill in the image and misses processes that cleared
// their environment.
//
// It waits up to a second for the command to end and returns its record,
// which is in state killed once the command has ended with an exit code
// of 128 or more.
//
// It fails with ErrInvalid for a signal outside 1-64, ErrConflict when the
// command has ended, ErrNotFound for an unknown sandbox or command, and
// ErrUnsupported when the Manager cannot see the engine host's processes
// and the image lacks the tools to signal from inside the sandbox.
func (m *Manager) KillCommand(ctx context.Context, sandboxID, cmdID string, sig syscall.Signal) (*Command, error) {
	ctx, done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if sig < 1 || sig > maxSignal {
		return nil, fmt.Errorf("kill command: %w", invalidf("signal %d: must be 1-%d", int(sig), maxSignal))
	}
	e, err := m.cmds.lookup(ctx, sandboxID, cmdID)
	if err != nil {
		return nil, fmt.Errorf("kill command: %w", err)
	}
	if err := m.cmds.kill(ctx, e, sig); err != nil {
		return nil, fmt.Errorf("kill command %s: %w", cmdID, err)
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-e.done:
	case <-t.C:
	case <-ctx.Done():
	}
	return m.cmds.snapshot(e), nil
}

// errEnded is returned by kill for a command that has ended.
var errEnded = errors.New("command has ended")

func (r *commandRegistry) kill(ctx context.Context, e *cmdEntry, sig syscall.Signal) error {
	select {
	case <-e.done:
		return fmt.Errorf("%w: %w", errEnded, ErrConflict)
	default:
	}
	r.mu.Lock()
	prev := e.killSent
	e.killSent = true
	r.mu.Unlock()
	err := r.signalTree(ctx, e, sig)
	if err != nil {
		r.mu.Lock()
		e.killSent = prev
		r.mu.Unlock()
		if errors.Is(err, errEnded) {
			return fmt.Errorf("%w: %w", err, ErrConflict)
		}
	}
	return err
}

// Result is what Run returns: the final command record and its output.
type Result struct {
	// Command is the command's record: final unless Run's context ended.
	Command *Command
	// Stdout and Stderr are the output kept (the newest bytes, up to the
	// Manager's output limit).
	Stdout, Stderr []byte
	// StdoutDropped and StderrDropped count the bytes evicted by the limit.
	StdoutDropped, StderrDropped int64
}

// ExitError reports a command that ran and ended unsuccessfully: with a
// non-zero exit code, or killed. It is kept apart from errors in reaching
// the engine, which Run returns unwrapped from their sentinel.
type ExitError struct {
	// Command is the final record; its ExitCode is set.
	Command *Command
	// Stderr is the end of the command's standard error, for messages.
	Stderr []byte
}

// ExitCode returns the command's exit code.
func (e *ExitError) ExitCode() int {
	if e.Command.ExitCode == nil {
		return -1
	}
	return *e.Command.ExitCode
}

// Error implements error.
func (e *ExitError) Error() string {
	if e.Command.State == CommandKilled {
		return fmt.Sprintf("command %s was killed (exit code %d)", e.Command.ID, e.ExitCode())
	}
	return fmt.Sprintf("command %s exited with code %d", e.Command.ID, e.ExitCode())
}

// Run starts a command like Exec, waits for it like WaitCommand and returns
// its record and output, like os/exec's Cmd.Output.
//
// The error is nil when the command exited with code 0, an *ExitError (with
// the Result) when it exited non-zero or was killed, and otherwise an error
// in reaching the sandbox or the engine, matching the Exec sentinels. When
// the command failed (the sandbox stopped or was removed while it ran) Run
// returns the Result and an error matching ErrConflict. When ctx ends
// first, Run returns the Result so far and ctx.Err(), after killing the
// command if opts.KillOnCancel. Run returns a nil Result only when the
// command could not be started.
func (m *Manager) Run(ctx context.Context, sandboxID string, opts ExecOptions) (*Result, error) {
	cmd, err := m.Exec(ctx, sandboxID, opts)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	final, werr := m.WaitCommand(ctx, cmd.SandboxID, cmd.ID)
	if werr != nil {
		if opts.KillOnCancel && ctx.Err() != nil {
			kctx, cancel := cleanupContext(ctx)
			if _, err := m.KillCommand(kctx, cmd.SandboxID, cmd.ID, sigKill); err != nil && !errors.Is(err, ErrConflict) {
				werr = errors.Join(werr, err)
			}
			final, _ = m.Command(kctx, cmd.SandboxID, cmd.ID)
			cancel()
		}
		if final == nil {
			final = cmd
		}
	}
	res := &Result{Command: final}
	octx, cancel := cleanupContext(ctx)
	defer cancel()
	if out, err := m.CommandOutput(octx, cmd.SandboxID, cmd.ID); err == nil {
		res.Stdout, res.Stderr = out.Stdout, out.Stderr
		res.StdoutDropped, res.StderrDropped = out.StdoutDropped, out.StderrDropped
	}
	switch {
	case werr != nil:
		return res, fmt.Errorf("run %s: %w", cmd.ID, werr)
	case final.State == CommandFailed:
		return res, fmt.Errorf("run %s: %s: %w", cmd.ID, final.Error, ErrConflict)
	case final.State == CommandKilled || (final.ExitCode != nil && *final.ExitCode != 0):
		return res, &ExitError{Command: final, Stderr: res.Stderr}
	}
	return res, nil
}
