package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// action is one step of a client's mix; it makes one or two requests.
type action int

const (
	aCreate action = iota // create
	aDelete               // delete
	aExec                 // exec (wait) + logs
	aStream               // cmd + stream
	aFile                 // file-write + file-read
	aFile64               // file-write-64k + file-read-64k
	aStats                // stats
	aList                 // list
	aGet                  // get
	numActions
)

// weights is the mix: the chance of an action is its weight over the
// sum. An action that cannot run (create at -sandboxes, delete at
// -min-sandboxes) is drawn again; while no sandbox is live, a client
// drawing an action on one waits instead.
var weights = [numActions]int{aCreate: 4, aDelete: 4, aExec: 16, aStream: 8, aFile: 12, aFile64: 8, aStats: 8, aList: 6, aGet: 14}

const (
	maxAnswer  = 4 << 20  // bound on a JSON answer read
	bigFile    = 64 << 10 // the large file
	streamCmd  = "for i in 1 2 3; do echo line $i; sleep 0.1; done"
	streamWant = "line 1\nline 2\nline 3\n"
	idleWait   = 20 * time.Millisecond // when no action can run
)

// loader is one run's load: the HTTP client, the sandboxes, the clock.
type loader struct {
	cfg      config
	base     string
	key      string
	hc       *http.Client
	live     *liveSet
	start    time.Time // the load phase's, after the warm-up
	deadline time.Time

	seq        atomic.Uint64
	begun      [numActions]atomic.Int64
	requests   atomic.Int64
	serverErrs atomic.Int64
	otherErrs  atomic.Int64
}

// newHTTPClient is a client for clients concurrent requests to one host:
// every one keeps its connection, no proxy, no redirects (the API never
// redirects: a 3xx is a wrong answer).
func newHTTPClient(clients int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: clients + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func newLoader(cfg config, base, key string) *loader {
	return &loader{cfg: cfg, base: base, key: key, hc: newHTTPClient(cfg.clients),
		live: newLiveSet(cfg.minSandboxes, cfg.sandboxes, prefix(cfg.id))}
}

// answer is one request's result.
type answer struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
	overflow     bool  // the answer was longer than the limit: body holds its start
	err          error // transport or body read; wraps the context's error when it ended the request
	took         time.Duration
	reqID        string
}

// send makes one request with the run's key and a request id of its own,
// bounded by the request timeout, and reads the answer to its end (at
// most limit bytes; more is an error).
func (l *loader) send(ctx context.Context, method, path string, body []byte, contentType, accept string, limit int64) answer {
	a := answer{method: method, path: path, reqID: l.cfg.id + "-" + strconv.FormatUint(l.seq.Add(1), 10)}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.requestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.base+path, rd)
	if err != nil {
		a.err = err
		return a
	}
	if l.key != "" {
		req.Header.Set("Authorization", "Bearer "+l.key)
	}
	req.Header.Set("X-Request-Id", a.reqID)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	start := time.Now()
	res, err := l.hc.Do(req)
	if err == nil {
		a.status, a.header = res.StatusCode, res.Header
		a.body, err = io.ReadAll(io.LimitReader(res.Body, limit+1))
		res.Body.Close()
		if int64(len(a.body)) > limit {
			a.body, a.overflow = a.body[:limit], true
		}
	}
	a.took = time.Since(start)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %v", cerr, err)
		}
		a.err = err
	}
	return a
}

// streamError is an {"error":{code,message}} record ending a stream.
type streamError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *streamError) Error() string { return "stream error record " + e.Code + ": " + e.Message }

// client is one client's own state.
type client struct {
	n      int
	rng    *rand.Rand
	rec    *recorder
	small  string // its file paths: no other client writes them
	big    string
	data   []byte // the large file, its first and last 8 bytes renewed per write
	writes uint64
}

func newClient(n int, id string) *client {
	c := &client{n: n, rng: rand.New(rand.NewPCG(rand.Uint64(), uint64(n))), rec: newRecorder(),
		small: fmt.Sprintf("/tmp/opensbx-load-%s-c%d.txt", id, n), big: fmt.Sprintf("/tmp/opensbx-load-%s-c%d.bin", id, n),
		data: make([]byte, bigFile)}
	for i := range c.data {
		c.data[i] = byte(c.rng.Uint32())
	}
	return c
}

// finish checks and counts one answer: want is the status of success,
// check (when the status is want) looks at the content. A transport error
// once ctx (the run's) has ended is the interrupt's doing. It returns the
// category the request was counted in.
func (l *loader) finish(ctx context.Context, c *client, k kind, sb *sandbox, a answer, want int, check func() error) category {
	var wrong error
	status := a.status
	inStream := false
	switch {
	case a.err != nil:
	case a.overflow:
		wrong = fmt.Errorf("answer longer than %d bytes", len(a.body))
	case status == want && check != nil:
		wrong = check()
		var se *streamError
		if errors.As(wrong, &se) {
			status, inStream, wrong = codeStatus(se.Code), true, nil
		}
	case status < 400 && status != want:
		wrong = fmt.Errorf("status %d, want %d", status, want)
	}
	racing := sb != nil && k != kDelete && sb.deleting.Load()
	cat := classify(status, a.err, wrong, racing, ctx.Err() != nil)
	o := outcome{cat: cat, status: status}
	var f failure
	if cat != catOK && cat != catCancelled {
		f = failure{Op: k.String(), Method: a.method, Path: a.path, Status: status, InStream: inStream, Racing: racing,
			RequestID: a.reqID, when: time.Now()}
		switch {
		case a.err != nil:
			f.Detail = a.err.Error()
		case wrong != nil:
			f.Detail = wrong.Error()
		}
		if status >= 400 {
			f.Body = string(a.body[:min(len(a.body), maxListedBody)])
		}
	}
	if cat != catCancelled {
		l.requests.Add(1)
		switch cat {
		case catOK, catExpected:
		case catServer:
			l.serverErrs.Add(1)
		default:
			l.otherErrs.Add(1)
		}
	}
	c.rec.add(k, o, a.took, f)
	return cat
}

// run is one client's loop: actions while more says so (the action in
// flight then finishes) or until ctx ends.
func (l *loader) run(ctx context.Context, c *client) {
	for ctx.Err() == nil && l.more() {
		a, sb := l.choose(c)
		if a < 0 {
			select {
			case <-ctx.Done():
			case <-time.After(idleWait):
			}
			continue
		}
		l.act(ctx, c, a, sb)
	}
}

// more reports whether clients start another action: until the deadline,
// and after it while some kind of action that can run has not begun yet
// (a short run on a slow machine), for at most twice the request timeout.
// So every operation of the mix appears in the report; a run of the
// default minute covers the mix in its first seconds.
func (l *loader) more() bool {
	now := time.Now()
	if now.Before(l.deadline) {
		return true
	}
	if now.After(l.deadline.Add(2 * l.cfg.requestTimeout)) {
		return false
	}
	for a := range numActions {
		if l.begun[a].Load() == 0 && l.possible(a) {
			return true
		}
	}
	return false
}

// possible reports whether action a can ever run: with as many sandboxes
// at least as at most, there is no create or delete after the warm-up.
func (l *loader) possible(a action) bool {
	return (a != aCreate && a != aDelete) || l.cfg.sandboxes > l.cfg.minSandboxes
}

// choose picks the next action and the sandbox it works on, or -1 when
// none can run now. Below -min-sandboxes live or in creation, it
// creates; the first action of each kind runs as soon as it can (so a
// short run covers the whole mix); otherwise it draws by weight.
func (l *loader) choose(c *client) (action, *sandbox) {
	live, _ := l.live.counts()
	if live < l.cfg.minSandboxes || live == 0 {
		if sb, ok := l.ready(aCreate, c.rng); ok {
			l.begun[aCreate].Add(1)
			return aCreate, sb
		}
	}
	for a := range numActions {
		if l.begun[a].Load() == 0 {
			if sb, ok := l.ready(a, c.rng); ok {
				l.begun[a].Add(1)
				return a, sb
			}
		}
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	for range 8 {
		x := c.rng.IntN(total)
		a := action(0)
		for ; x >= weights[a]; a++ {
			x -= weights[a]
		}
		if a != aCreate && a != aList && live == 0 {
			return -1, nil // wait for a sandbox rather than draw list again and again
		}
		if sb, ok := l.ready(a, c.rng); ok {
			l.begun[a].Add(1)
			return a, sb
		}
	}
	return -1, nil
}

// ready returns the sandbox action a works on, and whether it can run:
// a reserved new one for create, one taken out of the live set for
// delete, none for list, a live one for the others.
func (l *loader) ready(a action, r *rand.Rand) (*sandbox, bool) {
	var sb *sandbox
	switch a {
	case aCreate:
		sb = l.live.reserveCreate(l.cfg.sandboxes)
	case aDelete:
		sb = l.live.takeForDelete(r)
	case aList:
		return nil, true
	default:
		sb = l.live.pick(r)
	}
	return sb, sb != nil
}

func (l *loader) act(ctx context.Context, c *client, a action, sb *sandbox) {
	switch a {
	case aCreate:
		l.create(ctx, c, sb)
	case aDelete:
		l.delete(ctx, c, sb)
	case aExec:
		l.exec(ctx, c, sb)
	case aStream:
		l.stream(ctx, c, sb)
	case aFile:
		l.file(ctx, c, sb)
	case aFile64:
		l.file64(ctx, c, sb)
	case aStats:
		l.stats(ctx, c, sb)
	case aList:
		l.list(ctx, c)
	case aGet:
		l.get(ctx, c, sb)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed shapes of strings and numbers are marshalled
	}
	return b
}

// decodeJSON decodes an answer body, naming what it was.
func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("answer is not the JSON expected: %v: %.200q", err, body)
	}
	return nil
}

func (l *loader) create(ctx context.Context, c *client, sb *sandbox) category {
	ttl := (l.cfg.duration + 10*time.Minute).Seconds()
	body := mustJSON(map[string]any{"image": l.cfg.image, "name": sb.name, "timeout": ttl})
	a := l.send(ctx, http.MethodPost, "/v1/sandboxes", body, "application/json", "", maxAnswer)
	var v struct{ ID, Name string }
	cat := l.finish(ctx, c, kCreate, nil, a, http.StatusCreated, func() error {
		if err := decodeJSON(a.body, &v); err != nil {
			return err
		}
		if v.ID == "" || v.Name != sb.name {
			return fmt.Errorf("created id %q name %q, want an id and name %q", v.ID, v.Name, sb.name)
		}
		return nil
	})
	if cat == catOK {
		l.live.created(sb, v.ID)
	} else {
		l.live.createFailed(sb)
	}
	return cat
}

func (l *loader) delete(ctx context.Context, c *client, sb *sandbox) {
	a := l.send(ctx, http.MethodDelete, "/v1/sandboxes/"+sb.id, nil, "", "", maxAnswer)
	if l.finish(ctx, c, kDelete, sb, a, http.StatusNoContent, nil) == catOK {
		l.live.deleted(sb)
	}
}

func (l *loader) get(ctx context.Context, c *client, sb *sandbox) {
	a := l.send(ctx, http.MethodGet, "/v1/sandboxes/"+sb.id, nil, "", "", maxAnswer)
	l.finish(ctx, c, kGet, sb, a, http.StatusOK, func() error {
		var v struct {
			ID, Name string
			Running  bool
		}
		if err := decodeJSON(a.body, &v); err != nil {
			return err
		}
		if v.ID != sb.id || v.Name != sb.name || !v.Running {
			return fmt.Errorf("got id %q name %q running %v, want %q %q true", v.ID, v.Name, v.Running, sb.id, sb.name)
		}
		return nil
	})
}

func (l *loader) list(ctx context.Context, c *client) {
	a := l.send(ctx, http.MethodGet, "/v1/sandboxes", nil, "", "", maxAnswer)
	l.finish(ctx, c, kList, nil, a, http.StatusOK, func() error {
		var v struct {
			Sandboxes []struct{ ID, Name string }
		}
		if err := decodeJSON(a.body, &v); err != nil {
			return err
		}
		if v.Sandboxes == nil {
			return errors.New(`no "sandboxes" array`)
		}
		for _, s := range v.Sandboxes {
			if s.ID == "" || s.Name == "" {
				return fmt.Errorf("a listed sandbox without id or name: %+v", s)
			}
		}
		return nil
	})
}

func (l *loader) stats(ctx context.Context, c *client, sb *sandbox) {
	a := l.send(ctx, http.MethodGet, "/v1/sandboxes/"+sb.id+"/stats", nil, "", "", maxAnswer)
	l.finish(ctx, c, kStats, sb, a, http.StatusOK, func() error {
		var v struct {
			CPU    *float64 `json:"cpu_percent"`
			Memory *struct {
				Usage *int64 `json:"usage"`
				Limit *int64 `json:"limit"`
			} `json:"memory"`
			Pids *int `json:"pids"`
		}
		if err := decodeJSON(a.body, &v); err != nil {
			return err
		}
		if v.CPU == nil || v.Memory == nil || v.Memory.Usage == nil || v.Memory.Limit == nil || v.Pids == nil {
			return fmt.Errorf("stats without cpu_percent, memory.usage, memory.limit or pids: %.200q", a.body)
		}
		if *v.CPU < 0 || *v.Memory.Usage < 0 || *v.Pids < 0 {
			return fmt.Errorf("negative stats: %.200q", a.body)
		}
		return nil
	})
}

// commandRecord is a line of a wait stream.
type commandRecord struct {
	Command *struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		ExitCode *int   `json:"exit_code"`
	} `json:"command"`
	Error *streamError `json:"error"`
}

// lastCommand reads a wait stream and returns its last command record; an
// error record is returned as a *streamError.
func lastCommand(a answer) (commandRecord, error) {
	if ct := a.header.Get("Content-Type"); ct != "application/x-ndjson" {
		return commandRecord{}, fmt.Errorf("Content-Type %q, want application/x-ndjson", ct)
	}
	var last commandRecord
	n := 0
	for line := range bytes.Lines(a.body) {
		var rec commandRecord
		if err := decodeJSON(line, &rec); err != nil {
			return last, err
		}
		if rec.Error != nil {
			return last, rec.Error
		}
		if rec.Command == nil || rec.Command.ID == "" {
			return last, fmt.Errorf("record without a command: %.200q", line)
		}
		last, n = rec, n+1
	}
	if n == 0 {
		return last, errors.New("empty wait stream")
	}
	return last, nil
}

// exec runs echo hi and waits for it, then checks its output in logs.
func (l *loader) exec(ctx context.Context, c *client, sb *sandbox) {
	path := "/v1/sandboxes/" + sb.id + "/cmd"
	a := l.send(ctx, http.MethodPost, path+"?wait=true", mustJSON(map[string]any{"command": "echo", "args": []string{"hi"}}),
		"application/json", "", maxAnswer)
	var cmdID string
	cat := l.finish(ctx, c, kExec, sb, a, http.StatusOK, func() error {
		last, err := lastCommand(a)
		if err != nil {
			return err
		}
		if last.Command.State != "finished" || last.Command.ExitCode == nil || *last.Command.ExitCode != 0 {
			return fmt.Errorf("last record %s, want state finished, exit_code 0", recordText(last))
		}
		cmdID = last.Command.ID
		return nil
	})
	if cat != catOK {
		return
	}
	a = l.send(ctx, http.MethodGet, path+"/"+cmdID+"/logs", nil, "", "", maxAnswer)
	l.finish(ctx, c, kLogs, sb, a, http.StatusOK, func() error {
		var v struct {
			Stdout, Stderr, Encoding string
			ExitCode                 *int `json:"exit_code"`
		}
		if err := decodeJSON(a.body, &v); err != nil {
			return err
		}
		if v.Stdout != "hi\n" || v.Stderr != "" || v.Encoding != "" || v.ExitCode == nil || *v.ExitCode != 0 {
			return fmt.Errorf(`logs %.200q, want stdout "hi\n", no stderr, exit_code 0`, a.body)
		}
		return nil
	})
}

func recordText(r commandRecord) string {
	b, _ := json.Marshal(r)
	return string(b)
}

// logRecord is a line of a log stream.
type logRecord struct {
	Type     string       `json:"type"`
	Data     string       `json:"data"`
	Encoding string       `json:"encoding"`
	ExitCode *int         `json:"exit_code"`
	Error    *streamError `json:"error"`
}

// followLog reads a log stream: stdout and stderr as text, the exit
// code, and an error for anything out of order (a record after the exit
// record, no exit record, an error record as *streamError).
func followLog(a answer) (stdout, stderr string, exit int, err error) {
	if ct := a.header.Get("Content-Type"); ct != "application/x-ndjson" {
		return "", "", 0, fmt.Errorf("Content-Type %q, want application/x-ndjson", ct)
	}
	var out, errOut bytes.Buffer
	exited := false
	for line := range bytes.Lines(a.body) {
		var rec logRecord
		if err := decodeJSON(line, &rec); err != nil {
			return "", "", 0, err
		}
		if rec.Error != nil {
			return "", "", 0, rec.Error
		}
		if exited {
			return "", "", 0, fmt.Errorf("a record after the exit record: %.200q", line)
		}
		data := []byte(rec.Data)
		if rec.Encoding == "base64" {
			if data, err = base64.StdEncoding.DecodeString(rec.Data); err != nil {
				return "", "", 0, err
			}
		}
		switch rec.Type {
		case "stdout":
			out.Write(data)
		case "stderr":
			errOut.Write(data)
		case "exit":
			if rec.ExitCode == nil {
				return "", "", 0, errors.New("exit record without exit_code")
			}
			exited, exit = true, *rec.ExitCode
		default:
			return "", "", 0, fmt.Errorf("unexpected record: %.200q", line)
		}
	}
	if !exited {
		return "", "", 0, errors.New("log stream ended without an exit record")
	}
	return out.String(), errOut.String(), exit, nil
}

// stream starts a command that prints three lines a tenth of a second
// apart and follows its log stream to the exit record.
func (l *loader) stream(ctx context.Context, c *client, sb *sandbox) {
	path := "/v1/sandboxes/" + sb.id + "/cmd"
	a := l.send(ctx, http.MethodPost, path, mustJSON(map[string]any{"command": "sh", "args": []string{"-c", streamCmd}}),
		"application/json", "", maxAnswer)
	var cmdID string
	cat := l.finish(ctx, c, kCmd, sb, a, http.StatusOK, func() error {
		var rec commandRecord
		if err := decodeJSON(a.body, &rec); err != nil {
			return err
		}
		if rec.Command == nil || rec.Command.ID == "" || (rec.Command.State != "running" && rec.Command.State != "finished") {
			return fmt.Errorf("command %.200q, want an id and state running", a.body)
		}
		cmdID = rec.Command.ID
		return nil
	})
	if cat != catOK {
		return
	}
	a = l.send(ctx, http.MethodGet, path+"/"+cmdID+"/logs?stream=true", nil, "", "", maxAnswer)
	l.finish(ctx, c, kStream, sb, a, http.StatusOK, func() error {
		stdout, stderr, exit, err := followLog(a)
		if err != nil {
			return err
		}
		if stdout != streamWant || stderr != "" || exit != 0 {
			return fmt.Errorf("stream stdout %q stderr %q exit %d, want %q, none, 0", stdout, stderr, exit, streamWant)
		}
		return nil
	})
}

// file writes a small text file as JSON and reads it back as JSON.
func (l *loader) file(ctx context.Context, c *client, sb *sandbox) {
	c.writes++
	content := fmt.Sprintf("opensbx-load client %d write %d %016x\n", c.n, c.writes, c.rng.Uint64())
	q := "/v1/sandboxes/" + sb.id + "/files?path=" + url.QueryEscape(c.small)
	a := l.send(ctx, http.MethodPut, q, mustJSON(map[string]string{"content": content}), "application/json", "", maxAnswer)
	cat := l.finish(ctx, c, kWrite, sb, a, http.StatusOK, func() error { return checkWritten(a.body, c.small) })
	if cat != catOK {
		return
	}
	a = l.send(ctx, http.MethodGet, q, nil, "", "", maxAnswer)
	l.finish(ctx, c, kRead, sb, a, http.StatusOK, func() error {
		var v struct{ Path, Content, Encoding string }
		if err := decodeJSON(a.body, &v); err != nil {
			return err
		}
		if v.Path != c.small || v.Content != content || v.Encoding != "" {
			return fmt.Errorf("read %.200q, want path %q content %q", a.body, c.small, content)
		}
		return nil
	})
}

// file64 writes 64 KiB of binary data raw and reads it back raw.
func (l *loader) file64(ctx context.Context, c *client, sb *sandbox) {
	c.writes++
	for i := range 8 {
		c.data[i] = byte(c.writes >> (8 * i))
		c.data[len(c.data)-8+i] = byte(c.rng.Uint32())
	}
	q := "/v1/sandboxes/" + sb.id + "/files?path=" + url.QueryEscape(c.big)
	a := l.send(ctx, http.MethodPut, q, c.data, "application/octet-stream", "", maxAnswer)
	cat := l.finish(ctx, c, kWrite64, sb, a, http.StatusOK, func() error { return checkWritten(a.body, c.big) })
	if cat != catOK {
		return
	}
	a = l.send(ctx, http.MethodGet, q, nil, "", "application/octet-stream", bigFile)
	l.finish(ctx, c, kRead64, sb, a, http.StatusOK, func() error {
		if !bytes.Equal(a.body, c.data) {
			return fmt.Errorf("read %d bytes, not the %d written (first difference at %d)", len(a.body), len(c.data), firstDiff(a.body, c.data))
		}
		return nil
	})
}

func checkWritten(body []byte, path string) error {
	var v struct{ Path, Status string }
	if err := decodeJSON(body, &v); err != nil {
		return err
	}
	if v.Path != path || v.Status != "written" {
		return fmt.Errorf(`write answered %.200q, want path %q status "written"`, body, path)
	}
	return nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// warmUp creates -min-sandboxes sandboxes before the load begins, a few
// at a time, and returns the figures of its requests and how many it
// created. It gives up after twice as many attempts.
func (l *loader) warmUp(ctx context.Context) (*recorder, int) {
	n := l.cfg.minSandboxes
	conc := min(n, l.cfg.clients, 10)
	var attempts atomic.Int64
	var created atomic.Int64
	clients := make([]*client, conc)
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = newClient(-1-i, l.cfg.id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && attempts.Add(1) <= int64(2*n) {
				sb := l.live.reserveCreate(n)
				if sb == nil {
					return
				}
				if l.create(ctx, clients[i], sb) == catOK {
					created.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	all := newRecorder()
	for _, c := range clients {
		all.merge(c.rec)
	}
	return all, int(created.Load())
}

// runClients runs n clients until the deadline or ctx's end and returns
// their figures merged.
func (l *loader) runClients(ctx context.Context, n int) *recorder {
	clients := make([]*client, n)
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = newClient(i, l.cfg.id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx, clients[i])
		}()
	}
	wg.Wait()
	all := newRecorder()
	for _, c := range clients {
		all.merge(c.rec)
	}
	return all
}
