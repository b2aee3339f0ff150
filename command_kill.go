package opensbx

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/poll"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// How KillCommand reaches exactly one command's process tree.
//
// The Engine API has no "kill exec" call, and signalling from inside the
// sandbox by name or pattern (pkill sleep) would hit look-alike processes
// of other commands. Instead:
//
//  1. The engine's ExecInspect gives the host PID of the process the exec
//     started. The Manager checks that this PID is visible in its own /proc
//     and belongs to the sandbox (its cgroup names the container), reads the
//     process's start time, and inspects the exec again: if the exec still
//     runs with the same PID, the (PID, start time) pair is that process,
//     since a live process's PID cannot be reused.
//  2. It walks the tree top-down: each process is stopped with SIGSTOP
//     before its children are read (/proc/PID/task/*/children), so no
//     process can fork a child that escapes the walk. Each child is
//     identified by (PID, parent PID, start time) and re-checked right
//     before it is signalled; signals go through a pidfd where the kernel
//     has them (os.FindProcess), so a PID that is reused meanwhile is never
//     hit.
//  3. It sends the signal to every process of the tree, deepest first, then
//     SIGCONT to resume them (except for stop signals), so a shell that
//     would not forward SIGTERM to its child still sees the child end.
//
// When the Manager may read the host's /proc but not signal (it does not run
// as root), it signals from inside the sandbox instead: it runs
// `kill -N pid...` there as root with the processes' in-sandbox PIDs
// (NSpid), collected the same way but without stopping them; that needs a
// kill program in the image (busybox has one).
//
// When the Manager cannot see the engine host's processes at all (it runs
// in another PID namespace, in a container, or on another machine), it
// relies on the OPENSBX_COMMAND_ID=<command id> variable every command gets
// in its environment, which children inherit: a small sh script run as root
// in the sandbox stops every process whose /proc/PID/environ carries it
// (repeating until no new one appears), signals them and resumes them. The
// id is random, so look-alike commands are not hit; a process that cleared
// its environment escapes. Images without sh, tr, grep and kill give
// ErrUnsupported.

// errNoHostProcs reports that the exec's process is not visible in this
// process's /proc.
var errNoHostProcs = errors.New("the engine's processes are not visible here")

// killMode forces one kill strategy, for tests.
type killMode int

const (
	killAuto   killMode = iota // host /proc, then the fallbacks
	killNSpid                  // from inside the sandbox, by in-sandbox PID
	killMarker                 // from inside the sandbox, by OPENSBX_COMMAND_ID
)

// commandIDEnv is the environment variable every command gets with its id.
const commandIDEnv = "OPENSBX_COMMAND_ID"

// signalTree delivers sig to the process tree of command e.
func (r *commandRegistry) signalTree(ctx context.Context, e *cmdEntry, sig syscall.Signal) error {
	root, err := r.identifyRoot(ctx, e)
	if r.killMode == killMarker && err == nil {
		err = errNoHostProcs
	}
	if err != nil {
		if errors.Is(err, errNoHostProcs) {
			if merr := r.markerSignal(ctx, e, sig); merr != nil {
				return fmt.Errorf("the Manager does not see the Docker engine's processes (%v), and signalling inside the sandbox failed: %w", err, merr)
			}
			return nil
		}
		return err
	}
	if r.killMode == killAuto {
		err = hostSignalTree(root, sig)
		if !errors.Is(err, syscall.EPERM) {
			return err
		}
	}
	return r.sandboxSignalTree(ctx, e, root, sig)
}

// markerScript stops every process whose environment has
// OPENSBX_COMMAND_ID=$1 (repeating until no new one appears, so children
// forked meanwhile are caught), sends signal $2 to them and resumes them
// unless $3 is "stay". It exits 3 when it found no process.
const markerScript = `want="` + commandIDEnv + `=$1"; sig=$2; all=" "
while :; do
  new=""
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case "$all" in *" $p "*) continue;; esac
    [ "$p" = "$$" ] && continue
    if tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qxF "$want"; then new="$new $p"; fi
  done
  [ -z "$new" ] && break
  kill -STOP $new 2>/dev/null
  all="$all${new# } "
done
[ "$all" = " " ] && exit 3
kill -$sig $all 2>/dev/null
[ "$3" = stay ] || kill -CONT $all 2>/dev/null
exit 0`

// markerSignal signals the command's processes from inside the sandbox,
// finding them by the OPENSBX_COMMAND_ID in their environment.
func (r *commandRegistry) markerSignal(ctx context.Context, e *cmdEntry, sig syscall.Signal) error {
	stay := "resume"
	if isStopSignal(sig) || sig == sigKill {
		stay = "stay"
	}
	code, out, err := r.execQuiet(ctx, e.cmd.SandboxID, []string{"sh", "-c", markerScript, "sh", e.cmd.ID, strconv.Itoa(int(sig)), stay})
	switch {
	case err != nil:
		return err
	case code == 3:
		select {
		case <-e.done:
		case <-time.After(time.Second):
		}
		return errEnded
	case code == 126 || code == 127:
		return sbxerr.New(ErrUnsupported, "the sandbox's image lacks sh, tr, grep or kill")
	case code != 0:
		return fmt.Errorf("signal inside the sandbox: exit code %d: %s", code, strings.TrimSpace(out))
	}
	return nil
}

// execQuietLimit bounds the output execQuiet keeps.
const execQuietLimit = 4 << 10

// execQuiet runs a helper command as root in the sandbox and returns its
// exit code and (bounded) combined output. It is not recorded as a
// command, and it ends with ctx.
func (r *commandRegistry) execQuiet(ctx context.Context, sandboxID string, cmd []string) (int, string, error) {
	res, err := engine.Run(ctx, gatedEngine{r.m.engine, r.m}, sandboxID, engine.ExecSpec{User: "0", Cmd: cmd}, execQuietLimit)
	if err != nil {
		return 0, "", fmt.Errorf("exec in sandbox: %w", err)
	}
	return res.ExitCode, string(res.Output), nil
}

// identifyRoot returns the host process the exec of e started, with its
// identity confirmed (see step 1 above).
func (r *commandRegistry) identifyRoot(ctx context.Context, e *cmdEntry) (proc, error) {
	// Exec returns as soon as the engine accepted the start, which may be
	// before the process runs: wait until it runs or the command has ended.
	var ins engine.ExecStatus
	err := poll.Until(ctx, poll.Backoff{Min: time.Millisecond, Max: 50 * time.Millisecond}, func() (bool, error) {
		var err error
		if ins, err = r.m.engine.ExecInspect(ctx, e.execID); err != nil {
			return false, fmt.Errorf("inspect exec: %w", err)
		}
		select {
		case <-e.done:
			return false, errEnded
		default:
		}
		return ins.Running && ins.Pid > 0, nil
	})
	if err != nil {
		return proc{}, err
	}
	p, err := readProc(ins.Pid)
	if err != nil {
		return proc{}, fmt.Errorf("%w: pid %d: %v", errNoHostProcs, ins.Pid, err)
	}
	if !procInContainer(ins.Pid, e.cmd.SandboxID) {
		return proc{}, fmt.Errorf("%w: pid %d is not in the sandbox's cgroup", errNoHostProcs, ins.Pid)
	}
	again, err := r.m.engine.ExecInspect(ctx, e.execID)
	if err != nil {
		return proc{}, fmt.Errorf("inspect exec: %w", err)
	}
	if !again.Running || again.Pid != ins.Pid {
		return proc{}, errEnded
	}
	return p, nil
}

// proc identifies one process: a PID alone may be reused, a PID with its
// start time (clock ticks since boot) may not.
type proc struct {
	pid, ppid int
	start     uint64
	nspid     int // PID inside the sandbox; 0 when unknown
}

// parseStat extracts the parent PID, state and start time from the text of
// /proc/PID/stat. The command name (field 2) may contain spaces and
// parentheses, so fields are counted after its last ')'.
func parseStat(stat string) (ppid int, state byte, start uint64, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("malformed stat")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, 0, fmt.Errorf("malformed stat")
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, 0, fmt.Errorf("malformed stat: %v", err)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("malformed stat: %v", err)
	}
	return ppid, f[0][0], start, nil
}

// parseNSpid returns the innermost PID of the NSpid line of
// /proc/PID/status, or 0.
func parseNSpid(status string) int {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}

// isStopSignal reports signals after which the tree must stay stopped.
func isStopSignal(sig syscall.Signal) bool {
	return sig == sigStop || sig == sigTSTP || sig == sigTTIN || sig == sigTTOU
}

// sandboxSignalTree signals the tree from inside the sandbox with its kill
// program, using the processes' in-sandbox PIDs. The tree is stopped
// first, like the host walk does: a parent that saw its child die before
// its own signal arrived could otherwise go on (and exit 0).
func (r *commandRegistry) sandboxSignalTree(ctx context.Context, e *cmdEntry, root proc, sig syscall.Signal) error {
	tree, err := collectTree(root)
	if err != nil {
		return err
	}
	pids := make([]string, 0, len(tree))
	for i := len(tree) - 1; i >= 0; i-- { // deepest first
		if tree[i].nspid <= 0 {
			return fmt.Errorf("%w: no in-sandbox pid for pid %d", errNoHostProcs, tree[i].pid)
		}
		pids = append(pids, strconv.Itoa(tree[i].nspid))
	}
	steps := []syscall.Signal{sigStop, sig}
	if !isStopSignal(sig) && sig != sigKill {
		steps = append(steps, sigCont)
	}
	for _, s := range steps {
		if err := r.sandboxKill(ctx, e.cmd.SandboxID, s, pids); err != nil {
			return err
		}
	}
	return nil
}

// sandboxKill runs the sandbox's kill program with sig for pids.
func (r *commandRegistry) sandboxKill(ctx context.Context, sandboxID string, sig syscall.Signal, pids []string) error {
	code, out, err := r.execQuiet(ctx, sandboxID, append([]string{"kill", "-" + strconv.Itoa(int(sig))}, pids...))
	switch {
	case err != nil:
		return err
	case code == 126 || code == 127:
		return sbxerr.New(ErrUnsupported, "the sandbox's image has no kill program")
	case code != 0:
		// kill reports processes that ended meanwhile; the rest were signalled.
		r.m.log.Debug("in-sandbox kill reported an error", "code", code, "output", out)
	}
	return nil
}
