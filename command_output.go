package opensbx

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/opensbx/opensbx/internal/outbuf"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

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
		return outbuf.Pos{}, sbxerr.Invalid("cursor %q is malformed", s)
	}
	o, err1 := strconv.ParseInt(parts[1], 10, 64)
	e, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || o < 0 || e < 0 {
		return outbuf.Pos{}, sbxerr.Invalid("cursor %q is malformed", s)
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
