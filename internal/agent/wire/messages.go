package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// Op names an operation; it is the Op of the Request that opens a stream.
// The comment on each says what the client sends and, after "->", what the
// agent answers. The client sends the data of an upload (write, tar in,
// stdin) right after its Request, without waiting; the agent may answer
// with an error before it has read all of it, and the client then stops
// sending. Every Response may carry an Error instead, which ends the
// stream.
type Op string

// Operations.
const (
	// OpHello: HelloRequest -> Response{Body: Info}.
	OpHello Op = "hello"
	// OpExec: ExecRequest -> Response{Body: Command}. A program that cannot
	// be started is not an error: the Command has finished with exit code
	// 127 (not found) or 126 (not executable, bad cwd or user). With
	// ExecRequest.Follow the stream goes on as OpFollow's does from the
	// start of the output: output frames, then the finished Command.
	OpExec Op = "exec"
	// OpFollow: FollowRequest -> Response{Body: Command}, then output
	// frames (KindStdout, KindStderr, KindDropped) in the order the agent
	// read them, then Response{Body: Command} (finished) as the trailer.
	OpFollow Op = "follow"
	// OpStdin: IDRequest, KindData frames and a KindEnd frame (flag
	// EndClose closes the stdin) -> Response{Body: StdinReply}. A stream
	// closed without KindEnd aborts; the stdin stays open.
	OpStdin Op = "stdin"
	// OpSignal: SignalRequest -> Response{Body: Command}.
	OpSignal Op = "signal"
	// OpList: ListRequest -> Response{}, then Response{Items: [Command...]}
	// batches, then Response{} as the trailer.
	OpList Op = "list"
	// OpForget: IDRequest -> Response{}.
	OpForget Op = "forget"
	// OpStat: PathRequest -> Response{Body: FileInfo} (lstat).
	OpStat Op = "stat"
	// OpRead: ReadRequest -> Response{Body: ReadReply}, KindData frames,
	// Response{} as the trailer.
	OpRead Op = "read"
	// OpWrite: WriteRequest, KindData frames and KindEnd -> Response{Body:
	// WriteReply}. A stream closed without KindEnd aborts the write; the
	// file is left as it was.
	OpWrite Op = "write"
	// OpListDir: PathRequest -> Response{Body: FileInfo} (the directory),
	// Response{Items: [FileInfo...]} batches in directory order (unsorted),
	// Response{} as the trailer.
	OpListDir Op = "listdir"
	// OpRemove: PathRequest -> Response{}.
	OpRemove Op = "remove"
	// OpTarOut: PathRequest -> Response{Body: FileInfo}, KindData frames
	// holding a tar stream, Response{} as the trailer.
	OpTarOut Op = "tarout"
	// OpTarIn: PathRequest (the directory), KindData frames holding a tar
	// stream and KindEnd -> Response{Body: TarInReply}.
	OpTarIn Op = "tarin"
	// OpStats: StatsRequest -> Response{Body: Stats}.
	OpStats Op = "stats"
	// OpDial: DialRequest -> Response{}, after which the stream carries the
	// bytes of a TCP connection to the port on the sandbox's loopback, both
	// ways, until either side closes.
	OpDial Op = "dial"
	// OpHalt: HaltRequest -> Response{Body: HaltReply}. The agent ends
	// every process of the sandbox but its own (SIGTERM, SIGKILL after the
	// grace), its main command too, and refuses commands until OpUnhalt:
	// the sandbox is stopped while its agent runs (a Kubernetes sandbox,
	// whose Pod cannot stop and start again). Halting a halted agent ends
	// what runs again.
	OpHalt Op = "halt"
	// OpUnhalt: UnhaltRequest -> Response{}. The agent starts its main
	// command anew and accepts commands again.
	OpUnhalt Op = "unhalt"
)

// HaltRequest asks the agent to end the sandbox's processes.
type HaltRequest struct {
	// Grace is how long processes have between SIGTERM and SIGKILL.
	Grace time.Duration `json:"grace"`
}

// HaltReply says what a halt ended.
type HaltReply struct {
	// Signalled counts the processes that got SIGTERM; Killed, those that
	// were still there after the grace and got SIGKILL.
	Signalled int `json:"signalled"`
	Killed    int `json:"killed"`
}

// UnhaltRequest asks the agent to run the sandbox again.
type UnhaltRequest struct{}

// DialRequest asks for a connection to TCP Port inside the sandbox.
type DialRequest struct {
	Port int `json:"port"`
}

// Request opens a stream.
type Request struct {
	Op   Op              `json:"op"`
	Body json.RawMessage `json:"body,omitempty"`
}

// Response answers a Request, and ends every stream that carries data or
// items (the trailer). A Response has at most one of Error, Body and Items.
type Response struct {
	Error *Error          `json:"error,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
	// Items is a JSON array: one batch of a listing.
	Items json.RawMessage `json:"items,omitempty"`
}

// Code classifies an Error.
type Code string

// Error codes. A peer that sends another code breaks the protocol.
const (
	CodeNotFound    Code = "not_found"
	CodeConflict    Code = "conflict"
	CodeInvalid     Code = "invalid"
	CodeTooLarge    Code = "too_large"
	CodeUnsupported Code = "unsupported"
	CodeInternal    Code = "internal"
)

// Valid reports whether c is one of the codes above.
func (c Code) Valid() bool {
	switch c {
	case CodeNotFound, CodeConflict, CodeInvalid, CodeTooLarge, CodeUnsupported, CodeInternal:
		return true
	}
	return false
}

// Error is a failed operation as it crosses the wire.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// HelloRequest opens a session.
type HelloRequest struct {
	// Protocol is the client's ProtocolVersion.
	Protocol int `json:"protocol"`
}

// Info describes a running agent.
type Info struct {
	// Protocol is the agent's ProtocolVersion.
	Protocol int `json:"protocol"`
	// Version identifies the agent's build: the hex SHA-256 of its program.
	Version string `json:"version"`
	// Instance is random for every start of the agent: a different value
	// after a reconnect means the agent (so the sandbox) restarted and its
	// commands are gone.
	Instance string `json:"instance"`
	// PID is the agent's process id in the sandbox.
	PID int `json:"pid"`
	// StartedAt is when the agent started.
	StartedAt time.Time `json:"started_at"`
	// GOARCH is the agent's architecture.
	GOARCH string `json:"goarch"`
	// DefaultUser is the user commands run as when they name none ("" for
	// the agent's own, root).
	DefaultUser string `json:"default_user,omitempty"`
}

// ExecRequest starts a command.
type ExecRequest struct {
	// ID names the command (the Manager's "cmd_..." id); it must be new.
	ID string `json:"id"`
	// Argv is the program and its arguments; the program is looked up in
	// PATH unless it contains a slash. Nothing goes through a shell.
	Argv []string `json:"argv"`
	// Env holds "KEY=VALUE" additions to the agent's environment.
	Env []string `json:"env,omitempty"`
	// Cwd is an absolute working directory; "" is the agent's own.
	Cwd string `json:"cwd,omitempty"`
	// User is "name", "uid", "uid:gid" or "name:group"; "" is the
	// agent's default user.
	User string `json:"user,omitempty"`
	// OpenStdin gives the command a stdin pipe that OpStdin writes to;
	// without it stdin is /dev/null.
	OpenStdin bool `json:"open_stdin,omitempty"`
	// OutputLimit is the number of bytes kept per output stream; 0 is the
	// agent's default.
	OutputLimit int `json:"output_limit,omitempty"`
	// Follow streams the output on the exec's own stream (see OpExec).
	Follow bool `json:"follow,omitempty"`
	// StartHold (nanoseconds, at most MaxStartHold), with Follow, lets
	// the first Response wait until the command has finished or that long,
	// so that a short command's record, output and trailer travel as one
	// write: for a caller that waits for the end anyway.
	StartHold time.Duration `json:"start_hold,omitempty"`
}

// MaxStartHold bounds ExecRequest.StartHold.
const MaxStartHold = 100 * time.Millisecond

// CommandState is the state of a command as the agent sees it.
type CommandState string

// Command states.
const (
	// StateRunning: the process runs, or its output is still open (a
	// background child holds it).
	StateRunning CommandState = "running"
	// StateFinished: the process has ended and its output is closed.
	StateFinished CommandState = "finished"
)

// Command describes a command the agent knows.
type Command struct {
	ID   string   `json:"id"`
	Argv []string `json:"argv"`
	Cwd  string   `json:"cwd,omitempty"`
	User string   `json:"user,omitempty"`
	// PID is the process id in the sandbox; 0 when it could not start.
	PID   int          `json:"pid,omitempty"`
	State CommandState `json:"state"`
	// ExitCode is set once finished: 128+N when signal N killed it.
	ExitCode *int `json:"exit_code,omitempty"`
	// Error explains a program that could not be started.
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Signal is the last signal delivered through OpSignal; 0 for none.
	Signal      int  `json:"signal,omitempty"`
	OpenStdin   bool `json:"open_stdin,omitempty"`
	StdinClosed bool `json:"stdin_closed,omitempty"`
	// OutputLimit is the number of bytes kept per stream.
	OutputLimit int `json:"output_limit"`
	// StdoutTotal and StderrTotal count every byte written, kept or not.
	StdoutTotal int64 `json:"stdout_total"`
	StderrTotal int64 `json:"stderr_total"`
}

// IDRequest names a command.
type IDRequest struct {
	ID string `json:"id"`
}

// FollowRequest follows a command's output from a position: the bytes of
// each stream the client has seen already.
type FollowRequest struct {
	ID     string `json:"id"`
	Stdout int64  `json:"stdout,omitempty"`
	Stderr int64  `json:"stderr,omitempty"`
}

// StdinReply ends an OpStdin stream.
type StdinReply struct {
	// Written is the number of bytes written to the command's stdin.
	Written int64 `json:"written"`
	// Closed reports that the stdin is closed now.
	Closed bool `json:"closed,omitempty"`
}

// SignalRequest signals a command's process tree.
type SignalRequest struct {
	ID     string `json:"id"`
	Signal int    `json:"signal"`
}

// ListRequest lists the commands the agent knows.
type ListRequest struct{}

// PathRequest names an absolute path.
type PathRequest struct {
	Path string `json:"path"`
}

// ReadRequest reads a file.
type ReadRequest struct {
	Path string `json:"path"`
	// Limit fails the read with CodeTooLarge, before any data, for a file
	// over Limit bytes; 0 means no limit.
	Limit int64 `json:"limit,omitempty"`
}

// ReadReply describes the file an OpRead reads.
type ReadReply struct {
	Info FileInfo `json:"info"`
	// Length is the number of bytes that follow, or -1 when the file's size
	// is unknown (files of proc and sys file systems report 0): then the
	// data ends with the file, within the request's Limit.
	Length int64 `json:"length"`
}

// WriteRequest writes a file.
type WriteRequest struct {
	Path string `json:"path"`
	// Mode holds permission bits and fs.ModeSetuid, fs.ModeSetgid,
	// fs.ModeSticky; 0 means 0644.
	Mode fs.FileMode `json:"mode,omitempty"`
	// Size is the number of bytes that follow, or -1 when unknown.
	Size int64 `json:"size"`
}

// WriteReply ends an OpWrite stream.
type WriteReply struct {
	Size int64 `json:"size"`
}

// TarInReply ends an OpTarIn stream.
type TarInReply struct {
	// Entries is the number of archive entries unpacked.
	Entries int `json:"entries"`
}

// StatsRequest asks for a resource sample.
type StatsRequest struct{}

// FileType is the kind of a file system entry.
type FileType string

// File types.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
	// TypeOther covers devices, FIFOs and sockets.
	TypeOther FileType = "other"
)

// TypeOf returns the FileType of a mode.
func TypeOf(m fs.FileMode) FileType {
	switch {
	case m.IsRegular():
		return TypeFile
	case m.IsDir():
		return TypeDir
	case m&fs.ModeSymlink != 0:
		return TypeSymlink
	}
	return TypeOther
}

// FileInfo describes a file system entry.
type FileInfo struct {
	// Name is the base name ("/" for the root).
	Name string   `json:"name"`
	Type FileType `json:"type"`
	// Size is a file's length, a symbolic link's target length, 0 for a
	// directory.
	Size int64 `json:"size"`
	// Mode holds the type and permission bits (with setuid, setgid, sticky).
	Mode    fs.FileMode `json:"mode"`
	ModTime time.Time   `json:"mod_time"`
	// LinkTarget is a symbolic link's target as stored.
	LinkTarget string `json:"link_target,omitempty"`
}

// Stats is a resource sample of the sandbox's cgroup.
type Stats struct {
	Time time.Time `json:"time"`
	// CgroupVersion is 1 or 2.
	CgroupVersion int `json:"cgroup_version"`
	// MemoryUsage is the memory in use in bytes, inactive page cache
	// excluded (as docker stats reports it).
	MemoryUsage uint64 `json:"memory_usage"`
	// MemoryLimit is the memory limit in bytes; 0 when unlimited.
	MemoryLimit uint64 `json:"memory_limit"`
	// CPUUsage is the CPU time used by the sandbox since it started, in
	// nanoseconds.
	CPUUsage uint64 `json:"cpu_usage_ns"`
	// PIDs is the number of tasks (processes and threads).
	PIDs uint64 `json:"pids"`
	// PIDsLimit is the task limit; 0 when unlimited.
	PIDsLimit uint64 `json:"pids_limit"`
}

// DecodeHeader decodes a KindHeader frame into v. Unknown fields are
// ignored, so that either side may add fields.
func DecodeHeader(f Frame, v any) error {
	if f.Kind != KindHeader {
		return malformed("got a %c frame, want a header", f.Kind)
	}
	if err := json.Unmarshal(f.Payload, v); err != nil {
		return fmt.Errorf("%w: bad header: %v", ErrMalformed, err)
	}
	return nil
}

// DecodeResponse decodes a Response frame and checks its shape: at most
// one of Error, Body and Items, and a valid error code.
func DecodeResponse(f Frame) (Response, error) {
	var r Response
	if err := DecodeHeader(f, &r); err != nil {
		return Response{}, err
	}
	n := 0
	for _, set := range []bool{r.Error != nil, len(r.Body) > 0, len(r.Items) > 0} {
		if set {
			n++
		}
	}
	if n > 1 {
		return Response{}, malformed("response with more than one of error, body and items")
	}
	if r.Error != nil && !r.Error.Code.Valid() {
		return Response{}, malformed("unknown error code %q", r.Error.Code)
	}
	if len(r.Items) > 0 && r.Items[0] != '[' {
		return Response{}, malformed("items is not an array")
	}
	return r, nil
}

// Body reads the KindData frames of a stream as a byte stream. It stops
// (io.EOF) at the first frame of another kind, which Tail then returns; a
// stream that ends before such a frame fails with io.ErrUnexpectedEOF.
type Body struct {
	r    *Reader
	cur  []byte
	tail Frame
	err  error
}

// NewBody returns a Body reading frames from r.
func NewBody(r *Reader) *Body { return &Body{r: r} }

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		f, err := b.r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			b.err = err
			return 0, err
		}
		if f.Kind != KindData {
			f.Payload = append([]byte(nil), f.Payload...) // outlives the reader's buffer
			b.tail = f
			b.err = io.EOF
			return 0, io.EOF
		}
		b.cur = f.Payload
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

// Aborted reports that the stream failed or ended before a frame of
// another kind than KindData.
func (b *Body) Aborted() bool {
	return b.err != nil && !errors.Is(b.err, io.EOF)
}

// Tail returns the frame that ended the data, once Read returned io.EOF.
func (b *Body) Tail() (Frame, bool) {
	return b.tail, b.tail.Kind != 0
}
