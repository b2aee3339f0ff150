package opensbx

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// stdinPipe is the write side of a command's standard input.
type stdinPipe struct {
	mu     sync.Mutex // serialises writers
	sink   stdinSink
	open   bool // accepts SendStdin
	closed bool
}

// stdinSink is where a command's input goes: the engine exec's stream, or
// the command's agent.
type stdinSink interface {
	// write copies r to the input until r ends; ctx bounds a write that the
	// command does not read.
	write(ctx context.Context, r io.Reader) error
	// closeInput closes the input.
	closeInput(ctx context.Context) error
}

// engineSink writes to an engine exec's attached stdin.
type engineSink struct{ x engine.Exec }

func (s engineSink) write(ctx context.Context, r io.Reader) error {
	stop := context.AfterFunc(ctx, func() { s.x.SetWriteDeadline(time.Unix(1, 0)) })
	_, err := io.Copy(s.x, r)
	if !stop() {
		s.x.SetWriteDeadline(time.Time{})
	}
	return err
}

func (s engineSink) closeInput(context.Context) error { return s.x.CloseWrite() }

// copyFrom copies src to the command's input, then closes the input when
// closeAfter. It holds the lock for the whole copy.
func (p *stdinPipe) copyFrom(ctx context.Context, src io.Reader, closeAfter bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	err := p.sink.write(ctx, src)
	if closeAfter || err != nil {
		p.closeLocked(ctx)
	}
}

func (p *stdinPipe) closeLocked(ctx context.Context) {
	if !p.closed {
		p.sink.closeInput(ctx)
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
		return fmt.Errorf("send stdin: %w", sbxerr.Conflict("command %s was started without OpenStdin", cmdID))
	}
	p := e.stdin
	p.mu.Lock()
	defer p.mu.Unlock()
	ended := func() bool {
		select {
		case <-e.done:
			return true
		default:
			return false
		}
	}
	if ended() {
		return fmt.Errorf("send stdin: %w", sbxerr.Conflict("command %s has ended", cmdID))
	}
	if !p.open || p.closed {
		return fmt.Errorf("send stdin: %w", sbxerr.Conflict("the input of command %s is closed", cmdID))
	}
	if r != nil {
		if err := p.sink.write(ctx, r); err != nil {
			if ended() {
				return fmt.Errorf("send stdin: %w", sbxerr.Conflict("command %s has ended", cmdID))
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("send stdin: %w", err)
		}
	}
	if closeAfter {
		p.closeLocked(ctx)
	}
	return nil
}
