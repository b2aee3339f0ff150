package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/opensbx/opensbx"
)

// commandView is the JSON form of a command ("CommandDetail"). Times are
// Unix milliseconds; exit_code and finished_at are absent while it runs.
type commandView struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Args       []string `json:"args"`
	Cwd        string   `json:"cwd"`
	SandboxID  string   `json:"sandbox_id"`
	State      string   `json:"state"`
	ExitCode   *int     `json:"exit_code,omitempty"`
	StartedAt  int64    `json:"started_at"`
	FinishedAt *int64   `json:"finished_at,omitempty"`
	Error      string   `json:"error,omitempty"`
}

func unixMilli(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

func commandOf(c *opensbx.Command) commandView {
	v := commandView{
		ID:         c.ID,
		Name:       c.Name,
		Args:       c.Args,
		Cwd:        c.Cwd,
		SandboxID:  c.SandboxID,
		State:      string(c.State),
		ExitCode:   c.ExitCode,
		FinishedAt: unixMilli(c.FinishedAt),
		Error:      c.Error,
	}
	if ms := unixMilli(c.StartedAt); ms != nil {
		v.StartedAt = *ms
	}
	if v.Args == nil {
		v.Args = []string{}
	}
	return v
}

type commandResponse struct {
	Command commandView `json:"command"`
}

type runRequest struct {
	Command string            `json:"command"`
	Args    []string          `json:"args"`
	Cwd     string            `json:"cwd"`
	Env     map[string]string `json:"env"`
	User    string            `json:"user"`
	// OpenStdin keeps the command's stdin open for POST .../stdin.
	OpenStdin bool `json:"open_stdin"`
}

// options validates the request and turns it into the Manager's options.
func (req runRequest) options() (opensbx.ExecOptions, error) {
	if req.Command == "" {
		return opensbx.ExecOptions{}, badRequest(`"command" is required`)
	}
	return opensbx.ExecOptions{Command: req.Command, Args: req.Args, Cwd: req.Cwd, Env: req.Env, User: req.User, OpenStdin: req.OpenStdin}, nil
}

// handleCommandRun starts a command and answers at once with it; with
// ?wait=true the answer is ND-JSON: {"command":...} while it runs, then
// {"command":...} once it finished.
func (s *server) handleCommandRun() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait, err := boolQuery(r, "wait")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		var req runRequest
		if err := decode(w, r, s.maxBody, &req); err != nil {
			s.fail(w, r, err)
			return
		}
		opts, err := req.options()
		if err != nil {
			s.fail(w, r, err)
			return
		}
		id := r.PathValue("id")
		cmd, err := s.m.Exec(r.Context(), id, opts)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !wait {
			encode(w, http.StatusOK, commandResponse{Command: commandOf(cmd)})
			return
		}
		s.waitStream(w, r, id, cmd)
	})
}

// waitStream sends cmd, waits for it to end and sends it again.
func (s *server) waitStream(w http.ResponseWriter, r *http.Request, sandboxID string, cmd *opensbx.Command) {
	st := startNDJSON(w)
	if err := st.send(commandResponse{Command: commandOf(cmd)}); err != nil {
		return
	}
	if cmd.State != opensbx.CommandRunning {
		return
	}
	done, err := s.m.WaitCommand(r.Context(), sandboxID, cmd.ID)
	if err != nil {
		s.sendError(st, r, err)
		return
	}
	st.send(commandResponse{Command: commandOf(done)})
}

type commandListResponse struct {
	Commands []commandView `json:"commands"`
}

func commandListOf(cmds []*opensbx.Command) commandListResponse {
	out := commandListResponse{Commands: make([]commandView, 0, len(cmds))}
	for _, c := range cmds {
		out.Commands = append(out.Commands, commandOf(c))
	}
	return out
}

func (s *server) handleCommandList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cmds, err := s.m.Commands(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, commandListOf(cmds))
	})
}

func (s *server) handleCommandGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait, err := boolQuery(r, "wait")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		id := r.PathValue("id")
		cmd, err := s.m.Command(r.Context(), id, r.PathValue("cmdId"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !wait {
			encode(w, http.StatusOK, commandResponse{Command: commandOf(cmd)})
			return
		}
		s.waitStream(w, r, id, cmd)
	})
}

type killRequest struct {
	// Signal is a number (15) or a name ("SIGKILL", "KILL"); required.
	Signal json.RawMessage `json:"signal"`
}

const msgSignal = `"signal" is required: a signal number 1-64 or a name such as "SIGTERM" or "KILL"`

// parseSignal reads a signal number or name; absent or null is 400, as is
// anything ParseSignal rejects (numbers outside 1-64, unknown names).
func parseSignal(raw json.RawMessage) (syscall.Signal, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, badRequest(msgSignal)
	}
	var name string
	if err := json.Unmarshal(raw, &name); err == nil {
		return opensbx.ParseSignal(name)
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, badRequest(`"signal" must be a signal number 1-64 or a name such as "SIGTERM"`)
	}
	return opensbx.ParseSignal(strconv.Itoa(n))
}

// handleCommandKill signals a running command ({"signal":15} or a name;
// "signal" is required). A finished command is 409.
func (s *server) handleCommandKill() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req killRequest
		if err := decodeOptional(w, r, s.maxBody, &req); err != nil {
			s.fail(w, r, err)
			return
		}
		sig, err := parseSignal(req.Signal)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		cmd, err := s.m.KillCommand(r.Context(), r.PathValue("id"), r.PathValue("cmdId"), sig)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, commandResponse{Command: commandOf(cmd)})
	})
}

// logsResponse is a command's kept output. When either stream is not valid
// UTF-8, both are base64 and "encoding" says so.
type logsResponse struct {
	Stdout        string `json:"stdout"`
	Stderr        string `json:"stderr"`
	Encoding      string `json:"encoding,omitempty"`
	ExitCode      *int   `json:"exit_code,omitempty"`
	StdoutDropped int64  `json:"stdout_dropped,omitempty"`
	StderrDropped int64  `json:"stderr_dropped,omitempty"`
}

// logsOf builds the answer for kept output: both streams as text, or both
// base64 when either is not valid UTF-8.
func logsOf(stdout, stderr []byte, stdoutDropped, stderrDropped int64, exitCode *int) logsResponse {
	resp := logsResponse{ExitCode: exitCode, StdoutDropped: stdoutDropped, StderrDropped: stderrDropped}
	if utf8.Valid(stdout) && utf8.Valid(stderr) {
		resp.Stdout, resp.Stderr = string(stdout), string(stderr)
	} else {
		resp.Encoding = "base64"
		resp.Stdout = base64.StdEncoding.EncodeToString(stdout)
		resp.Stderr = base64.StdEncoding.EncodeToString(stderr)
	}
	return resp
}

// logRecord is one line of a log stream. Data that is not valid UTF-8 is
// base64 with "encoding":"base64", so output stays byte-exact.
type logRecord struct {
	Type     string `json:"type"`
	Data     string `json:"data,omitempty"`
	Encoding string `json:"encoding,omitempty"`
	Stream   string `json:"stream,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Cursor   string `json:"cursor,omitempty"`
}

func logRecordOf(rec opensbx.OutputRecord) logRecord {
	out := logRecord{Type: rec.Type, Stream: rec.Stream, Cursor: rec.Cursor}
	switch rec.Type {
	case "dropped":
		out.Bytes = rec.Dropped
	case "exit":
		code := rec.ExitCode
		out.ExitCode = &code
	default:
		if utf8.Valid(rec.Data) {
			out.Data = string(rec.Data)
		} else {
			out.Data, out.Encoding = base64.StdEncoding.EncodeToString(rec.Data), "base64"
		}
	}
	return out
}

// handleCommandLogs answers a command's output so far, or with
// ?stream=true an ND-JSON stream of it (replayed, then live) ending with an
// "exit" record; &cursor=C resumes right after the record with cursor C.
func (s *server) handleCommandLogs() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stream, err := boolQuery(r, "stream")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		id, cmdID := r.PathValue("id"), r.PathValue("cmdId")
		if !stream {
			out, err := s.m.CommandOutput(r.Context(), id, cmdID)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			encode(w, http.StatusOK, logsOf(out.Stdout, out.Stderr, out.StdoutDropped, out.StderrDropped, out.ExitCode))
			return
		}
		// Unknown sandbox or command: a plain 404, not a stream.
		if _, err := s.m.Command(r.Context(), id, cmdID); err != nil {
			s.fail(w, r, err)
			return
		}
		st := startNDJSON(w)
		err = s.m.FollowOutput(r.Context(), id, cmdID, r.URL.Query().Get("cursor"), func(rec opensbx.OutputRecord) error {
			return st.send(logRecordOf(rec))
		})
		if err != nil {
			s.sendError(st, r, err)
		}
	})
}

// handleCommandStdin appends the raw body to a command's stdin (204);
// ?close=true closes stdin after it. A finished command is 409.
func (s *server) handleCommandStdin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		closeAfter, err := boolQuery(r, "close")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		limit := s.m.FileSizeLimit()
		if r.ContentLength > limit {
			s.fail(w, r, &http.MaxBytesError{Limit: limit})
			return
		}
		body := http.MaxBytesReader(w, r.Body, limit)
		if err := s.m.SendStdin(r.Context(), r.PathValue("id"), r.PathValue("cmdId"), body, closeAfter); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
