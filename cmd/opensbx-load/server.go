package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	serverPackage = "github.com/opensbx/opensbx/cmd/opensbx"
	startTimeout  = 90 * time.Second // from process start to its "listening" line
	stopTimeout   = 30 * time.Second // from SIGTERM to exit, then SIGKILL
	maxLogLine    = 16 << 10         // longer server log lines are cut
)

// procSample is one look at a process in /proc.
type procSample struct {
	RSS     int64 // resident memory, bytes
	Peak    int64 // peak resident memory (VmHWM), bytes
	Threads int
	FDs     int     // open file descriptors (0 when unreadable)
	CPU     float64 // CPU seconds used, user and system
}

// child is an opensbx server this command started, with a state
// directory, a namespace and an API key of its own.
type child struct {
	cmd  *exec.Cmd
	dir  string // temporary: the binary when built, the state directory
	bin  string
	url  string
	key  string
	ns   string
	log  *serverLog
	done chan struct{} // closed once the process has exited
	err  error         // Wait's result, after done
}

// startChild builds (unless cfg.serverBin names a binary) and starts the
// server on 127.0.0.1 with a kernel-chosen port (ADDR=127.0.0.1:0, read
// back from its "listening" log line), the preview proxy off, and waits
// until it listens. On error nothing is left running or on disk.
func startChild(ctx context.Context, cfg config, progress io.Writer) (_ *child, err error) {
	dir, err := os.MkdirTemp("", "opensbx-load-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	bin := cfg.serverBin
	if bin == "" {
		bin = filepath.Join(dir, "opensbx")
		fmt.Fprintf(progress, "building %s\n", serverPackage)
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, serverPackage)
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s (or give -server-bin): %w\n%s", serverPackage, err, out)
		}
	}
	var key [16]byte
	rand.Read(key[:])
	c := &child{dir: dir, bin: bin, key: hex.EncodeToString(key[:]), ns: ownNamespace(cfg.id),
		log: newServerLog(), done: make(chan struct{})}
	c.cmd = exec.Command(bin)
	c.cmd.Env = childEnv(os.Environ(), map[string]string{
		"ADDR":       "127.0.0.1:0",
		"PROXY_ADDR": "off",
		"STATE_DIR":  filepath.Join(dir, "state"),
		"NAMESPACE":  c.ns,
		"API_KEY":    c.key,
		"LOG_FORMAT": "json",
		"LOG_LEVEL":  "info",
		// A backstop only: the run deletes every sandbox itself.
		"DEFAULT_TIMEOUT":  (cfg.duration + 10*time.Minute).String(),
		"SHUTDOWN_TIMEOUT": "10s",
	})
	c.cmd.SysProcAttr = childAttr()
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	go func() { // owned: ends when the server closes stderr, before done
		c.log.read(stderr)
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case addr := <-c.log.listening:
		c.url = "http://" + addr
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("server exited before listening: %v\n%s", c.err, c.log.tailText())
	case <-timer.C:
		err = fmt.Errorf("server not listening after %v:\n%s", startTimeout, c.log.tailText())
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.kill()
	return nil, err
}

// childEnv is the server's environment: only what locates the Docker
// engine and the basics of a process from env (none of the server's own
// settings, which could change what is measured), plus set.
func childEnv(env []string, set map[string]string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "HOME", k == "TMPDIR", k == "TZ", strings.HasPrefix(k, "DOCKER_"):
			if _, over := set[k]; !over {
				out = append(out, kv)
			}
		}
	}
	for k, v := range set {
		out = append(out, k+"="+v)
	}
	return out
}

// pid is the server's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM and waits for the exit (SIGKILL after stopTimeout).
// It returns nil for a clean exit.
func (c *child) stop() error {
	select {
	case <-c.done:
		return fmt.Errorf("server had exited: %v", c.err)
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM the server: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-c.done:
		if c.err != nil {
			return fmt.Errorf("server exit after SIGTERM: %w", c.err)
		}
		return nil
	case <-timer.C:
		c.kill()
		return fmt.Errorf("server still running %v after SIGTERM: killed", stopTimeout)
	}
}

// kill ends the process at once and waits for it.
func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.done
}

// exited reports whether the server has exited, and how.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// remove deletes the temporary directory (state and built binary).
func (c *child) remove() error { return os.RemoveAll(c.dir) }

// serverLog keeps what matters of the server's JSON log: the address it
// listens on, counts by level, the last lines, and the warnings and
// errors (by request id where they carry one). Request lines at INFO are
// counted, not kept.
type serverLog struct {
	listening chan string // the "listening" line's addr, once

	mu       sync.Mutex
	levels   map[string]int
	tail     []string            // last tailLines lines
	problems []string            // WARN and ERROR lines, the first maxProblems
	byReq    map[string][]string // WARN and ERROR lines by request id
	dropped  int                 // problem lines over maxProblems
}

const (
	tailLines   = 40
	maxProblems = 200
)

func newServerLog() *serverLog {
	return &serverLog{listening: make(chan string, 1), levels: map[string]int{}, byReq: map[string][]string{}}
}

// read consumes r to EOF. It never stops reading early, so the server
// never blocks on a full stderr pipe.
func (l *serverLog) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		part, isPrefix, err := br.ReadLine()
		if len(line) < maxLogLine {
			line = append(line, part[:min(len(part), maxLogLine-len(line))]...)
		}
		if err != nil {
			if len(line) > 0 {
				l.add(line)
			}
			io.Copy(io.Discard, r)
			return
		}
		if !isPrefix {
			l.add(line)
			line = line[:0]
		}
	}
}

var levelKey = []byte(`"level":"`)

// add takes one log line.
func (l *serverLog) add(line []byte) {
	level := "?"
	if i := bytes.Index(line, levelKey); i >= 0 {
		rest := line[i+len(levelKey):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			level = string(rest[:j])
		}
	}
	problem := level == "WARN" || level == "ERROR"
	listening := bytes.Contains(line, []byte(`"msg":"listening"`))
	var rec struct {
		Addr      string `json:"addr"`
		RequestID string `json:"request_id"`
	}
	if problem || listening {
		json.Unmarshal(line, &rec)
	}
	s := string(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.levels[level]++
	if len(l.tail) == tailLines {
		copy(l.tail, l.tail[1:])
		l.tail = l.tail[:tailLines-1]
	}
	l.tail = append(l.tail, s)
	if listening && rec.Addr != "" {
		select {
		case l.listening <- rec.Addr:
		default:
		}
	}
	if !problem {
		return
	}
	if len(l.problems) >= maxProblems {
		l.dropped++
		return
	}
	l.problems = append(l.problems, s)
	if rec.RequestID != "" {
		l.byReq[rec.RequestID] = append(l.byReq[rec.RequestID], s)
	}
}

// forRequest returns the warnings and errors logged for request id.
func (l *serverLog) forRequest(id string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.byReq[id]...)
}

// summary returns the counts by level, the kept warnings and errors and
// how many more there were.
func (l *serverLog) summary() (map[string]int, []string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	levels := make(map[string]int, len(l.levels))
	for k, v := range l.levels {
		levels[k] = v
	}
	return levels, append([]string(nil), l.problems...), l.dropped
}

// tailText is the last lines, for a server that failed.
func (l *serverLog) tailText() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.tail, "\n")
}

// errNoProc is returned by samplers without a process to look at.
var errNoProc = errors.New("no server process on this machine (give -pid)")
