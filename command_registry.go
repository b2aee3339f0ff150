package opensbx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/outbuf"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// sandboxID + "/" + commandID.
const commandsBucket = "commands"

// recordMax is the largest data chunk of one OutputRecord.
const recordMax = 32 << 10

// commandRegistry keeps the commands of every sandbox: running ones with
// their live output, and up to commandHistory finished ones per sandbox.
type commandRegistry struct {
	m       *Manager
	persist bool // a state directory is configured

	mu       sync.Mutex
	boxes    map[string]*sandboxCommands // by full container id
	starting map[string]int              // commands being started, by sandbox (WithMaxCommands)
	seq      uint64                      // finish order, for history pruning

	persistMu sync.Mutex // orders store writes of finish against forget

	// killMode forces a kill strategy (killAuto in production); tests set it.
	killMode killMode

	// resume are the recovered commands New follows on through their
	// agents.
	resume []*cmdEntry
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
	agent     bool       // run by the sandbox's agent
	instance  string     // the agent's instance id, when agent
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
	// Agent reports a command the sandbox's agent runs, Instance the
	// agent's instance id: a running one is followed on after a restart.
	Agent    bool   `json:"agent,omitempty"`
	Instance string `json:"instance,omitempty"`
}

// newCommandRegistry recovers the commands kept in the state store. A
// command recorded as running (the Manager stopped without Close) is
// recorded as failed; commands of sandboxes that no longer exist are
// dropped.
func newCommandRegistry(m *Manager, owned []engine.Container) (*commandRegistry, error) {
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
		if sc.Command.State == CommandRunning && sc.Agent && m.cfg.agent {
			// The agent still runs it (or knows how it ended): follow it
			// on once the Manager is up.
			e := &cmdEntry{
				cmd:      sc.Command,
				out:      outbuf.Restore(m.cfg.outputLimit, sc.Stdout, sc.StdoutTotal, sc.Stderr, sc.StderrTotal, sc.Order),
				done:     make(chan struct{}),
				agent:    true,
				instance: sc.Instance,
			}
			e.out.Reopen()
			r.addLocked(e)
			r.resume = append(r.resume, e)
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
	sc := storedCommand{Command: *e.cmd.clone(), ExecID: e.execID, Agent: e.agent, Instance: e.instance}
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
		return nil, sbxerr.Invalid("command id is empty")
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
	id, err := r.m.index.resolve(ctx, sandboxID)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if box := r.boxes[id]; box != nil {
		if e := box.byID[cmdID]; e != nil {
			return e, nil
		}
	}
	return nil, sbxerr.NotFound("command %q not found in sandbox %s", cmdID, shortID(id))
}

func newCommandID() string {
	var b [12]byte
	rand.Read(b[:])
	return "cmd_" + hex.EncodeToString(b[:])
}

// validate checks o and returns the environment as "K=V" entries.
