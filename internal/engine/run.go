package engine

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/opensbx/opensbx/internal/poll"
)

// CapWriter keeps the first Limit bytes written to it and counts the rest.
type CapWriter struct {
	Limit   int
	Buf     []byte
	Dropped int64
}

// Write keeps what fits and never fails.
func (w *CapWriter) Write(p []byte) (int, error) {
	if room := w.Limit - len(w.Buf); room > 0 {
		w.Buf = append(w.Buf, p[:min(room, len(p))]...)
		w.Dropped += int64(len(p) - min(room, len(p)))
	} else {
		w.Dropped += int64(len(p))
	}
	return len(p), nil
}

// WaitExec polls the exec until the engine reports it ended and returns its
// exit code. ctx bounds the wait.
func WaitExec(ctx context.Context, e Engine, execID string) (int, error) {
	var code int
	err := poll.Until(ctx, poll.Backoff{Min: 500 * time.Microsecond, Max: 50 * time.Millisecond}, func() (bool, error) {
		st, err := e.ExecInspect(ctx, execID)
		if err != nil {
			return false, err
		}
		code = st.ExitCode
		return !st.Running, nil
	})
	return code, err
}

// RunResult is the outcome of Run.
type RunResult struct {
	// ExitCode is the process's exit code.
	ExitCode int
	// Output is the start of stdout and stderr together, at most the
	// limit given to Run; Dropped counts the bytes beyond it.
	Output  []byte
	Dropped int64
}

// Run runs spec in container id without stdin, reads at most limit bytes of
// its combined output (the rest is counted and discarded), waits for its
// exit code and returns. ctx bounds everything: when it ends the stream is
// closed and Run returns ctx.Err() (the process itself is not killed: the
// Engine API has no such call). This is how the Manager runs its own helper
// processes in a sandbox.
func Run(ctx context.Context, e Engine, id string, spec ExecSpec, limit int) (RunResult, error) {
	spec.Stdin = false
	x, err := e.Exec(ctx, id, spec)
	if err != nil {
		return RunResult{}, err
	}
	stop := context.AfterFunc(ctx, func() { x.Close() })
	out := &CapWriter{Limit: limit}
	copyErr := x.Output(out, out)
	stop()
	x.Close()
	if err := ctx.Err(); err != nil {
		return RunResult{}, err
	}
	if copyErr != nil && copyErr != io.EOF {
		return RunResult{}, fmt.Errorf("exec output: %w", copyErr)
	}
	code, err := WaitExec(ctx, e, x.ID())
	if err != nil {
		return RunResult{}, err
	}
	return RunResult{ExitCode: code, Output: out.Buf, Dropped: out.Dropped}, nil
}
