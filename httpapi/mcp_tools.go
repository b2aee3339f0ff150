package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/opensbx/opensbx"
)

// The tools carry the names and arguments of the original API's MCP server;
// their results are the JSON bodies of the matching REST routes (built by
// the same view functions), as structured content and as text. A failure is
// a tool result with isError set, whose text is the message the REST route
// would answer and whose _meta carries its "code" and "status"; it is never
// a protocol error. Arguments are checked by the same code as the REST
// bodies, so the messages agree too; unknown arguments are rejected.

// Bounds of what one tool result carries.
const (
	// mcpOutputMax is the newest output kept per stream by command_exec
	// with wait (older bytes are counted in stdout_dropped/stderr_dropped).
	mcpOutputMax = 64 << 10
	// mcpLogsMax is the output (both streams) one command_logs result
	// carries at most; the cursor continues from there.
	mcpLogsMax = 128 << 10
	// mcpLogsWaitMax is the longest command_logs waits for new output.
	mcpLogsWaitMax = 300
	// mcpLogsIdle is how long command_logs waits for more output once it
	// has caught up with what was there (or what arrived).
	mcpLogsIdle = 100 * time.Millisecond
)

type noArgs struct{}

type idArgs struct {
	ID string `json:"id" jsonschema:"the sandbox: its id, a unique prefix of the id (at least 4 characters) or its name"`
}

type renewArgs struct {
	ID string `json:"id" jsonschema:"the sandbox: its id, a unique prefix of the id (at least 4 characters) or its name"`
	renewRequest
}

type commandExecArgs struct {
	SandboxID string            `json:"sandbox_id" jsonschema:"the sandbox to run in (id, unique id prefix or name); it must be running"`
	Command   string            `json:"command" jsonschema:"the program to run, a path or a name looked up in PATH, e.g. \"npm\"; it is not run through a shell: to use pipes or redirections run \"sh\" with args [\"-c\", \"...\"]"`
	Args      []string          `json:"args,omitempty" jsonschema:"the program's arguments, e.g. [\"run\", \"dev\"]"`
	Cwd       string            `json:"cwd,omitempty" jsonschema:"working directory (absolute); default the sandbox's"`
	Env       map[string]string `json:"env,omitempty" jsonschema:"extra environment as an object, e.g. {\"NODE_ENV\": \"development\"}"`
	User      string            `json:"user,omitempty" jsonschema:"run as this user (\"nobody\", \"1000\", \"1000:1000\"); default the sandbox's"`
	Wait      bool              `json:"wait,omitempty" jsonschema:"wait for the command to end and return its exit code with its stdout and stderr (the newest 64 KiB of each; stdout_dropped/stderr_dropped count older bytes left out). While it waits, progress notifications carry the output as it is printed when the call has a progress token. Without wait the command keeps running and the result comes at once: follow it with command_logs or command_get. Do not wait for servers that never exit."`
	Timeout   float64           `json:"wait_timeout,omitempty" jsonschema:"with wait: stop waiting after this many seconds and return the command still running with its output so far and a cursor for command_logs; 0 or absent = wait until it ends"`
}

type commandGetArgs struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox (id, unique id prefix or name)"`
	CommandID string `json:"command_id" jsonschema:"the command's id (cmd_...)"`
	Wait      bool   `json:"wait,omitempty" jsonschema:"wait until the command has ended and return its final record"`
}

type commandKillArgs struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox (id, unique id prefix or name)"`
	CommandID string `json:"command_id" jsonschema:"the command's id (cmd_...)"`
	killRequest
}

type commandLogsArgs struct {
	SandboxID string  `json:"sandbox_id" jsonschema:"the sandbox (id, unique id prefix or name)"`
	CommandID string  `json:"command_id" jsonschema:"the command's id (cmd_...)"`
	Cursor    string  `json:"cursor,omitempty" jsonschema:"the cursor of a previous command_logs (or command_exec) result: only output after it is returned; absent = from the start of what is kept"`
	Wait      float64 `json:"wait,omitempty" jsonschema:"seconds (at most 300) to wait for new output or the command's end when there is none yet; 0 or absent = answer at once"`
}

type sandboxPathArgs struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox (id, unique id prefix or name)"`
	Path      string `json:"path" jsonschema:"absolute path inside the sandbox, taken literally (no shell, no globbing)"`
}

type fileWriteArgs struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox (id, unique id prefix or name)"`
	Path      string `json:"path" jsonschema:"absolute path of the file inside the sandbox; missing parent directories are created"`
	writeRequest
	Mode string `json:"mode,omitempty" jsonschema:"octal permissions such as \"0755\" for a script; default 0644"`
}

type fileListArgs struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox (id, unique id prefix or name)"`
	Path      string `json:"path,omitempty" jsonschema:"absolute path of the directory; default /"`
}

type imageIDArgs struct {
	ID string `json:"id" jsonschema:"the image: name:tag (e.g. busybox:latest), a reference with a registry, or an id"`
}

type imagePullArgs struct {
	Image string `json:"image" jsonschema:"reference to pull, e.g. \"node:24\" or \"registry.example.com/team/app:1\""`
}

type imageDeleteArgs struct {
	ID    string `json:"id" jsonschema:"the image: name:tag, a reference with a registry, or an id"`
	Force bool   `json:"force,omitempty" jsonschema:"remove it even when a stopped container uses it"`
}

// statusResponse answers the tools whose REST route answers 204.
type statusResponse struct {
	Status string `json:"status"`
}

// execResult is command_exec's result: the REST body of POST .../cmd and,
// with wait, the output as GET .../logs answers it plus the cursor after
// it.
type execResult struct {
	commandResponse
	*logsResponse
	Cursor string `json:"cursor,omitempty"`
}

// logsResult is command_logs's result: GET .../logs's body for the output
// after the given cursor, the cursor to pass next, and whether the output
// is complete.
type logsResult struct {
	logsResponse
	Cursor string `json:"cursor" jsonschema:"pass as cursor to the next command_logs to get only newer output"`
	Done   bool   `json:"done" jsonschema:"true once the command has ended and this result holds the last of its output"`
}

// required fails with the REST-style message when v is blank.
func required(name, v string) error {
	if strings.TrimSpace(v) == "" {
		return badRequest(strconv.Quote(name) + " is required")
	}
	return nil
}

// addTool registers a tool whose input and output schemas are generated
// from In and Out (descriptions from the jsonschema tags; fields without
// omitempty are required). fix, if not nil, adjusts the generated input
// and output schemas for what Go types cannot say. It panics when a schema
// cannot be generated, which the tests catch.
func addTool[In, Out any](s *server, srv *mcp.Server, t *mcp.Tool, fix func(in, out *jsonschema.Schema), fn func(ctx context.Context, req *mcp.CallToolRequest, in In) (Out, error)) {
	in, err := jsonschema.For[In](nil)
	if err != nil {
		panic(fmt.Sprintf("httpapi: tool %s: input schema: %v", t.Name, err))
	}
	out, err := jsonschema.For[Out](nil)
	if err != nil {
		panic(fmt.Sprintf("httpapi: tool %s: output schema: %v", t.Name, err))
	}
	if fix != nil {
		fix(in, out)
	}
	t.InputSchema, t.OutputSchema = in, out
	srv.AddTool(t, func(ctx context.Context, req *mcp.CallToolRequest) (res *mcp.CallToolResult, _ error) {
		start := time.Now()
		if hc, ok := ctx.Value(httpRequestKey{}).(context.Context); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(hc, cancel)
			defer stop()
		}
		defer func() {
			if p := recover(); p != nil {
				s.log.ErrorContext(ctx, "panic in MCP tool", "request_id", requestID(ctx), "tool", t.Name, "panic", p, "stack", string(debug.Stack()))
				res = &mcp.CallToolResult{Meta: toolMeta(http.StatusInternalServerError, codeInternal), IsError: true,
					Content: []mcp.Content{&mcp.TextContent{Text: "internal error (request id " + requestID(ctx) + ")"}}}
			}
			s.log.InfoContext(ctx, "mcp tool", "request_id", requestID(ctx), "tool", t.Name, "error", res != nil && res.IsError, "duration", time.Since(start))
		}()
		var args In
		if err := decodeArgs(req.Params.Arguments, in, &args); err != nil {
			return s.toolError(ctx, t.Name, err), nil
		}
		v, err := fn(ctx, req, args)
		if err != nil {
			return s.toolError(ctx, t.Name, err), nil
		}
		b, err := marshalResult(v)
		if err != nil {
			return s.toolError(ctx, t.Name, err), nil
		}
		return &mcp.CallToolResult{Content: toolText(b), StructuredContent: json.RawMessage(b)}, nil
	})
}

// decodeArgs reads a tool's arguments into v like decode reads a request
// body (JSON null means absent), rejecting arguments the schema does not
// name.
func decodeArgs(raw json.RawMessage, schema *jsonschema.Schema, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return badRequest("the arguments must be a JSON object")
	}
	for name := range fields {
		if _, ok := schema.Properties[name]; !ok {
			known := make([]string, 0, len(schema.Properties))
			for k := range schema.Properties {
				known = append(known, k)
			}
			slices.Sort(known)
			return badRequest(fmt.Sprintf("unknown argument %q (this tool takes: %s)", name, strings.Join(known, ", ")))
		}
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return decodeError(err)
	}
	return nil
}

// toolError is the result of a failed call: the message the REST API would
// answer (a generic one for internal errors, which are logged), with the
// code and status in _meta.
func (s *server) toolError(ctx context.Context, tool string, err error) *mcp.CallToolResult {
	status, code, msg := classify(err)
	if status == http.StatusInternalServerError {
		id := requestID(ctx)
		if ctx.Err() == nil {
			s.log.ErrorContext(ctx, "internal error in MCP tool", "request_id", id, "tool", tool, "err", err)
		}
		msg = "internal error (request id " + id + ")"
	}
	return &mcp.CallToolResult{Meta: toolMeta(status, code), Content: []mcp.Content{&mcp.TextContent{Text: msg}}, IsError: true}
}

// progress sends progress notifications for one call, when the client gave
// a progress token.
type progress struct {
	req   *mcp.CallToolRequest
	token any
	n     float64
}

func newProgress(req *mcp.CallToolRequest) *progress {
	if req == nil || req.Session == nil || req.Params == nil {
		return nil
	}
	tok := req.Params.GetProgressToken()
	if tok == nil {
		return nil
	}
	return &progress{req: req, token: tok}
}

// send notifies the client; step (at least 1) is added to the progress.
// A client that is gone ends the call through its context, so errors are
// ignored.
func (p *progress) send(ctx context.Context, step int, msg string, meta mcp.Meta) {
	if p == nil {
		return
	}
	p.n += float64(max(step, 1))
	_ = p.req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: p.token, Progress: p.n, Message: msg, Meta: meta})
}

// outputMessage is a progress message for a piece of output.
func outputMessage(data []byte) string {
	if utf8.Valid(data) {
		return string(data)
	}
	return fmt.Sprintf("(%d bytes of binary output)", len(data))
}

// tail keeps the newest max bytes written to it and counts the others.
type tail struct {
	buf     []byte
	max     int
	dropped int64
}

func (t *tail) write(p []byte) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.trim()
	}
}

// trim drops all but the newest max bytes, starting the rest at a UTF-8
// character boundary so that text stays text.
func (t *tail) trim() {
	over := len(t.buf) - t.max
	if over <= 0 {
		return
	}
	for i := 0; i < utf8.UTFMax && over < len(t.buf) && !utf8.RuneStart(t.buf[over]); i++ {
		over++
	}
	t.dropped += int64(over)
	t.buf = append(t.buf[:0], t.buf[over:]...)
}

func (t *tail) bytes() []byte {
	t.trim()
	return t.buf
}

// addMCPTools registers the 26 tools.
func (s *server) addMCPTools(srv *mcp.Server) {
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true}
	idempotent := &mcp.ToolAnnotations{IdempotentHint: true, DestructiveHint: new(false)}
	destructive := &mcp.ToolAnnotations{DestructiveHint: new(true), IdempotentHint: true}

	addTool(s, srv, &mcp.Tool{Name: "system_health", Description: "Check that the server reaches its Docker engine.", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, _ noArgs) (healthResponse, error) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := s.m.Ping(ctx); err != nil {
				s.log.WarnContext(ctx, "health check failed", "request_id", requestID(ctx), "err", err)
				return healthResponse{}, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: "docker engine unavailable"}
			}
			return healthResponse{Status: "healthy", Time: time.Now().UTC().Format(time.RFC3339)}, nil
		})

	// Sandboxes.
	addTool(s, srv, &mcp.Tool{Name: "sandbox_list", Description: "List the sandboxes with their state, ports, deadline (expires_at) and url.", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, _ noArgs) (listResponse, error) {
			sbs, err := s.m.List(ctx)
			if err != nil {
				return listResponse{}, err
			}
			return s.listView(sbs), nil
		})
	addTool(s, srv, &mcp.Tool{Name: "sandbox_create", Description: "Create and start a sandbox (a Docker container) from a local image. It runs a keep-alive process, not your app: start the app with command_exec. It is stopped when its timeout passes (sandbox_renew_expiration extends it). Returns the sandbox with its id."}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in createRequest) (createResponse, error) {
			opts, err := in.options()
			if err != nil {
				return createResponse{}, err
			}
			opts.Private = s.private(in.Private)
			res, err := s.createWithQuota(ctx, opts)
			if err != nil {
				return createResponse{}, err
			}
			return s.createView(res.Sandbox), nil
		})
	addTool(s, srv, &mcp.Tool{Name: "sandbox_get", Description: "Describe one sandbox: state, ports and their host ports, resources, start and finish times, deadline, url.", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in idArgs) (sandboxView, error) {
			if err := required("id", in.ID); err != nil {
				return sandboxView{}, err
			}
			sb, err := s.m.Get(ctx, in.ID)
			if err != nil {
				return sandboxView{}, err
			}
			return s.view(sb, true), nil
		})
	addTool(s, srv, &mcp.Tool{Name: "sandbox_delete", Description: "Delete a sandbox in any state, with its processes, files and commands. This cannot be undone.", Annotations: destructive}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in idArgs) (statusResponse, error) {
			if err := required("id", in.ID); err != nil {
				return statusResponse{}, err
			}
			if err := s.m.Delete(ctx, in.ID); err != nil {
				return statusResponse{}, err
			}
			return statusResponse{Status: "deleted"}, nil
		})
	for _, step := range []struct {
		name, status, description string
		call                      lifecycleStep
	}{
		{"sandbox_start", statusStarted, "Start a stopped sandbox; its timeout starts anew.", (*opensbx.Manager).Start},
		{"sandbox_stop", statusStopped, "Stop a running or paused sandbox (its files stay; sandbox_start starts it again).", (*opensbx.Manager).Stop},
		{"sandbox_restart", statusRestarted, "Stop (if needed) and start a sandbox again; its timeout starts anew.", (*opensbx.Manager).Restart},
		{"sandbox_pause", statusPaused, "Freeze every process of a running sandbox.", (*opensbx.Manager).Pause},
		{"sandbox_resume", statusResumed, "Thaw a paused sandbox.", (*opensbx.Manager).Resume},
	} {
		addTool(s, srv, &mcp.Tool{Name: step.name, Description: step.description, Annotations: idempotent}, nil,
			func(ctx context.Context, _ *mcp.CallToolRequest, in idArgs) (transitionResponse, error) {
				if err := required("id", in.ID); err != nil {
					return transitionResponse{}, err
				}
				sb, err := step.call(s.m, ctx, in.ID)
				if err != nil {
					return transitionResponse{}, err
				}
				return s.transitionView(step.status, sb), nil
			})
	}
	addTool(s, srv, &mcp.Tool{Name: "sandbox_renew_expiration", Description: "Set a running or paused sandbox's deadline to timeout seconds from now.", Annotations: idempotent}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in renewArgs) (renewResponse, error) {
			if err := required("id", in.ID); err != nil {
				return renewResponse{}, err
			}
			ttl, err := in.ttl()
			if err != nil {
				return renewResponse{}, err
			}
			sb, err := s.m.Renew(ctx, in.ID, ttl)
			if err != nil {
				return renewResponse{}, err
			}
			return renewView(in.renewRequest, sb), nil
		})
	addTool(s, srv, &mcp.Tool{Name: "sandbox_stats", Description: "Sample a running sandbox's CPU (100 = one full CPU), memory (bytes) and process count; takes about a second.", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in idArgs) (statsView, error) {
			if err := required("id", in.ID); err != nil {
				return statsView{}, err
			}
			st, err := s.m.Stats(ctx, in.ID)
			if err != nil {
				return statsView{}, err
			}
			return statsOf(st), nil
		})
	addTool(s, srv, &mcp.Tool{Name: "sandbox_network_get", Description: "Get a sandbox's main port and the host port each container port is published on (on host_ip).", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in idArgs) (networkResponse, error) {
			if err := required("id", in.ID); err != nil {
				return networkResponse{}, err
			}
			n, err := s.m.Network(ctx, in.ID)
			if err != nil {
				return networkResponse{}, err
			}
			return networkView(n), nil
		})

	// Commands.
	addTool(s, srv, &mcp.Tool{Name: "command_exec", Description: "Run a program in a running sandbox. Without wait it returns at once with the command's id (state running); with wait it returns when the program has ended, with exit_code, stdout and stderr."},
		func(_, out *jsonschema.Schema) {
			// stdout and stderr come only with wait.
			out.Required = slices.DeleteFunc(out.Required, func(f string) bool { return f == "stdout" || f == "stderr" })
		},
		func(ctx context.Context, req *mcp.CallToolRequest, in commandExecArgs) (execResult, error) {
			if err := required("sandbox_id", in.SandboxID); err != nil {
				return execResult{}, err
			}
			opts, err := runRequest{Command: in.Command, Args: in.Args, Cwd: in.Cwd, Env: in.Env, User: in.User}.options()
			if err != nil {
				return execResult{}, err
			}
			if in.Timeout < 0 {
				return execResult{}, badRequest(`"wait_timeout" must not be negative`)
			}
			timeout, err := seconds("wait_timeout", in.Timeout)
			if err != nil {
				return execResult{}, err
			}
			cmd, err := s.m.Exec(ctx, in.SandboxID, opts)
			if err != nil {
				return execResult{}, err
			}
			if !in.Wait {
				return execResult{commandResponse: commandResponse{Command: commandOf(cmd)}}, nil
			}
			return s.execWait(ctx, req, in.SandboxID, cmd, timeout)
		})
	addTool(s, srv, &mcp.Tool{Name: "command_list", Description: "List a sandbox's commands, running and recently finished, oldest first.", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in idArgs) (commandListResponse, error) {
			if err := required("id", in.ID); err != nil {
				return commandListResponse{}, err
			}
			cmds, err := s.m.Commands(ctx, in.ID)
			if err != nil {
				return commandListResponse{}, err
			}
			return commandListOf(cmds), nil
		})
	addTool(s, srv, &mcp.Tool{Name: "command_get", Description: "Get a command's state (running, finished, killed, failed) and exit code; with wait, once it has ended.", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in commandGetArgs) (commandResponse, error) {
			if err := firstErr(required("sandbox_id", in.SandboxID), required("command_id", in.CommandID)); err != nil {
				return commandResponse{}, err
			}
			var cmd *opensbx.Command
			var err error
			if in.Wait {
				cmd, err = s.m.WaitCommand(ctx, in.SandboxID, in.CommandID)
			} else {
				cmd, err = s.m.Command(ctx, in.SandboxID, in.CommandID)
			}
			if err != nil {
				return commandResponse{}, err
			}
			return commandResponse{Command: commandOf(cmd)}, nil
		})
	addTool(s, srv, &mcp.Tool{Name: "command_kill", Description: "Send a signal to a running command's whole process tree (and nothing else); 15 (SIGTERM) asks it to end, 9 (SIGKILL) forces it.", Annotations: destructive},
		func(in, _ *jsonschema.Schema) {
			in.Properties["signal"] = &jsonschema.Schema{
				Types:       []string{"integer", "string"},
				Description: "the signal: a number 1-64 (15 = SIGTERM, 9 = SIGKILL, 2 = SIGINT) or a name such as \"SIGTERM\" or \"KILL\"",
			}
		},
		func(ctx context.Context, _ *mcp.CallToolRequest, in commandKillArgs) (commandResponse, error) {
			if err := firstErr(required("sandbox_id", in.SandboxID), required("command_id", in.CommandID)); err != nil {
				return commandResponse{}, err
			}
			sig, err := parseSignal(in.Signal)
			if err != nil {
				return commandResponse{}, err
			}
			cmd, err := s.m.KillCommand(ctx, in.SandboxID, in.CommandID, sig)
			if err != nil {
				return commandResponse{}, err
			}
			return commandResponse{Command: commandOf(cmd)}, nil
		})
	addTool(s, srv, &mcp.Tool{Name: "command_logs", Description: "Get a command's output: stdout and stderr after cursor (from the start without one), at most 128 KiB a call, with the cursor to pass next and done once the command has ended and all its output was returned. Output that is not UTF-8 comes base64 with encoding \"base64\".", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in commandLogsArgs) (logsResult, error) {
			return s.logsSince(ctx, in)
		})

	// Files.
	addTool(s, srv, &mcp.Tool{Name: "file_read", Description: "Read a file from a sandbox (also a stopped one). Text comes as is; a file that is not UTF-8 text comes base64-encoded with encoding \"base64\". Files over the server's size limit fail.", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in sandboxPathArgs) (fileResponse, error) {
			if err := firstErr(required("sandbox_id", in.SandboxID), checkPath(in.Path)); err != nil {
				return fileResponse{}, err
			}
			data, info, err := s.m.ReadFile(ctx, in.SandboxID, in.Path)
			if err != nil {
				return fileResponse{}, err
			}
			if info.Type == opensbx.FileTypeDir {
				return fileResponse{}, notAFile(in.Path)
			}
			return fileView(in.Path, data, info), nil
		})
	addTool(s, srv, &mcp.Tool{Name: "file_write", Description: "Write a file in a sandbox, replacing it and creating missing parent directories. Send text as content; send binary data base64-encoded with encoding \"base64\".", Annotations: idempotent}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in fileWriteArgs) (writeResponse, error) {
			if err := firstErr(required("sandbox_id", in.SandboxID), checkPath(in.Path)); err != nil {
				return writeResponse{}, err
			}
			mode, err := parseMode(in.Mode)
			if err != nil {
				return writeResponse{}, err
			}
			data, err := in.data(s.m.FileSizeLimit())
			if err != nil {
				return writeResponse{}, err
			}
			if err := s.m.WriteFile(ctx, in.SandboxID, in.Path, data, mode); err != nil {
				return writeResponse{}, err
			}
			return writeResponse{Path: in.Path, Status: "written", Size: int64(len(data))}, nil
		})
	addTool(s, srv, &mcp.Tool{Name: "file_delete", Description: "Delete a file or a whole directory tree in a running sandbox.", Annotations: destructive}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in sandboxPathArgs) (statusResponse, error) {
			if err := firstErr(required("sandbox_id", in.SandboxID), checkPath(in.Path)); err != nil {
				return statusResponse{}, err
			}
			if err := s.m.DeleteFile(ctx, in.SandboxID, in.Path); err != nil {
				return statusResponse{}, err
			}
			return statusResponse{Status: "deleted"}, nil
		})
	addTool(s, srv, &mcp.Tool{Name: "file_list", Description: "List a directory in a sandbox: ls -la style text (output) and structured entries with name, type, size, mode and mod_time.", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in fileListArgs) (listDirResponse, error) {
			if err := required("sandbox_id", in.SandboxID); err != nil {
				return listDirResponse{}, err
			}
			if in.Path == "" {
				in.Path = "/"
			}
			if err := checkPath(in.Path); err != nil {
				return listDirResponse{}, err
			}
			infos, err := s.m.ListDir(ctx, in.SandboxID, in.Path)
			if err != nil {
				return listDirResponse{}, err
			}
			return listDirOf(in.Path, infos), nil
		})

	// Images.
	addTool(s, srv, &mcp.Tool{Name: "image_list", Description: "List the images present locally (sandboxes can only be created from these, unless created with pull).", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, _ noArgs) (imageListResponse, error) {
			imgs, err := s.m.Images(ctx)
			if err != nil {
				return imageListResponse{}, err
			}
			return imageListOf(imgs), nil
		})
	addTool(s, srv, &mcp.Tool{Name: "image_get", Description: "Describe a local image: tags, size, creation time, architecture, OS and the sandboxes using it.", Annotations: readOnly}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in imageIDArgs) (imageView, error) {
			if err := required("id", in.ID); err != nil {
				return imageView{}, err
			}
			d, err := s.m.Image(ctx, in.ID)
			if err != nil {
				return imageView{}, err
			}
			return imageDetailOf(d), nil
		})
	addTool(s, srv, &mcp.Tool{Name: "image_pull", Description: "Pull an image from its registry so that sandboxes can be created from it. Progress notifications report the layers when the call has a progress token.", Annotations: &mcp.ToolAnnotations{IdempotentHint: true, DestructiveHint: new(false), OpenWorldHint: new(true)}}, nil,
		func(ctx context.Context, req *mcp.CallToolRequest, in imagePullArgs) (pullResponse, error) {
			if err := checkPullRef(in.Image); err != nil {
				return pullResponse{}, err
			}
			var opts opensbx.PullOptions
			if p := newProgress(req); p != nil {
				// Called from the pull's goroutine, one at a time, never
				// after PullImage returned.
				opts.Progress = func(pp opensbx.PullProgress) {
					msg := pp.Status
					if pp.Layer != "" {
						msg = pp.Layer + ": " + msg
					}
					p.send(ctx, 1, msg, nil)
				}
			}
			img, err := s.m.PullImage(ctx, in.Image, opts)
			if err != nil {
				return pullResponse{}, pullError(err)
			}
			return pullResponse{Status: "pulled", Image: in.Image, ID: img.ID}, nil
		})
	addTool(s, srv, &mcp.Tool{Name: "image_delete", Description: "Remove a local image (or just the given tag when the image has others). An image a container uses needs force.", Annotations: destructive}, nil,
		func(ctx context.Context, _ *mcp.CallToolRequest, in imageDeleteArgs) (statusResponse, error) {
			if err := required("id", in.ID); err != nil {
				return statusResponse{}, err
			}
			if err := s.m.RemoveImage(ctx, in.ID, in.Force); err != nil {
				return statusResponse{}, err
			}
			return statusResponse{Status: "deleted"}, nil
		})
}

// firstErr returns the first error that is not nil.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// execWait follows cmd's output until it ends (or timeout passes, when
// positive), keeping the newest mcpOutputMax bytes of each stream and
// sending each piece as a progress notification when the client asked for
// progress.
func (s *server) execWait(ctx context.Context, req *mcp.CallToolRequest, sandboxID string, cmd *opensbx.Command, timeout time.Duration) (execResult, error) {
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	stdout, stderr := &tail{max: mcpOutputMax}, &tail{max: mcpOutputMax}
	prog := newProgress(req)
	var cursor string
	err := s.m.FollowOutput(wctx, sandboxID, cmd.ID, "", func(rec opensbx.OutputRecord) error {
		switch rec.Type {
		case opensbx.RecordStdout:
			stdout.write(rec.Data)
			prog.send(ctx, len(rec.Data), outputMessage(rec.Data), mcp.Meta{"stream": rec.Type})
		case opensbx.RecordStderr:
			stderr.write(rec.Data)
			prog.send(ctx, len(rec.Data), outputMessage(rec.Data), mcp.Meta{"stream": rec.Type})
		case opensbx.RecordDropped:
			if rec.Stream == opensbx.RecordStderr {
				stderr.dropped += rec.Dropped
			} else {
				stdout.dropped += rec.Dropped
			}
		}
		cursor = rec.Cursor
		return nil
	})
	if err != nil && (ctx.Err() != nil || wctx.Err() == nil) {
		return execResult{}, err // not the wait timeout
	}
	final, err := s.m.Command(ctx, sandboxID, cmd.ID)
	if err != nil {
		return execResult{}, err
	}
	out, errb := stdout.bytes(), stderr.bytes()
	logs := logsOf(out, errb, stdout.dropped, stderr.dropped, final.ExitCode)
	return execResult{commandResponse: commandResponse{Command: commandOf(final)}, logsResponse: &logs, Cursor: cursor}, nil
}

// errLogsFull stops a command_logs follow whose result is full.
var errLogsFull = errors.New("command_logs result is full")

// logsSince answers command_logs: the output after in.Cursor that is there
// now (or, with in.Wait, that arrives within it), bounded by mcpLogsMax.
// FollowOutput replays what is kept at once and then waits for more: for a
// running command the follow ends mcpLogsIdle after the last record (or
// after in.Wait when there was none), for an ended one after its exit
// record. Whatever was returned, the cursor continues right after it, so a
// slow replay only makes a result smaller, never loses output.
func (s *server) logsSince(ctx context.Context, in commandLogsArgs) (logsResult, error) {
	if err := firstErr(required("sandbox_id", in.SandboxID), required("command_id", in.CommandID)); err != nil {
		return logsResult{}, err
	}
	if !(in.Wait >= 0 && in.Wait <= mcpLogsWaitMax) {
		return logsResult{}, badRequest(fmt.Sprintf(`"wait" must be 0 to %d seconds`, mcpLogsWaitMax))
	}
	cmd, err := s.m.Command(ctx, in.SandboxID, in.CommandID)
	if err != nil {
		return logsResult{}, err
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// An ended command's follow returns by itself after the exit record;
	// a running one's is ended by the timer.
	reset := func() {}
	if !cmd.Done() {
		timer := time.AfterFunc(max(time.Duration(in.Wait*float64(time.Second)), mcpLogsIdle), cancel)
		defer timer.Stop()
		reset = func() { timer.Reset(mcpLogsIdle) }
	}

	var stdout, stderr []byte
	var stdoutDropped, stderrDropped int64
	cursor, done := in.Cursor, false
	err = s.m.FollowOutput(fctx, in.SandboxID, in.CommandID, in.Cursor, func(rec opensbx.OutputRecord) error {
		n := len(stdout) + len(stderr)
		if n > 0 && n+len(rec.Data) > mcpLogsMax {
			return errLogsFull
		}
		switch rec.Type {
		case opensbx.RecordStdout:
			stdout = append(stdout, rec.Data...)
		case opensbx.RecordStderr:
			stderr = append(stderr, rec.Data...)
		case opensbx.RecordDropped:
			if rec.Stream == opensbx.RecordStderr {
				stderrDropped += rec.Dropped
			} else {
				stdoutDropped += rec.Dropped
			}
		case opensbx.RecordExit:
			done = true
		}
		cursor = rec.Cursor
		reset()
		return nil
	})
	switch {
	case err == nil, errors.Is(err, errLogsFull):
	case ctx.Err() == nil && fctx.Err() != nil && errors.Is(err, context.Canceled):
		// Caught up: the idle or wait timer ended the follow.
	default:
		return logsResult{}, err
	}
	if done {
		if cmd, err = s.m.Command(ctx, in.SandboxID, in.CommandID); err != nil {
			return logsResult{}, err
		}
	}
	return logsResult{logsResponse: logsOf(stdout, stderr, stdoutDropped, stderrDropped, cmd.ExitCode), Cursor: cursor, Done: done}, nil
}
