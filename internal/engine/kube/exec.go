package kube

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Exec runs a process in the sandbox's container over the pod exec stream.
// The stream lives until the process ends or Close, not until ctx ends
// (like the Docker engine's hijacked connection). A pod exec runs as the
// container's user, in its working directory, with its environment: an
// ExecSpec that asks for other ones is ErrUnsupported (the agent runs
// commands as any user).
func (k *Kube) Exec(ctx context.Context, id string, spec engine.ExecSpec) (engine.Exec, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if len(spec.Cmd) == 0 {
		return nil, sbxerr.Invalid("exec: no command")
	}
	if (spec.User != "" && spec.User != "0" && spec.User != "root") || len(spec.Env) > 0 || spec.WorkingDir != "" {
		return nil, unsupported("an engine exec with its own user, environment or working directory (commands go through the agent)")
	}
	req := k.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(k.cfg.Namespace).Name(podName(id)).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: containerName, Command: spec.Cmd, Stdin: spec.Stdin, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(k.rest, "GET", req.URL().String())
	if err != nil {
		return nil, classify(err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(k.rest, "POST", req.URL())
	if err != nil {
		return nil, classify(err)
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return nil, classify(err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	x := &kubeExec{id: newID(), cancel: cancel, done: make(chan struct{})}
	x.outR, x.outW = io.Pipe()
	x.errR, x.errW = io.Pipe()
	opts := remotecommand.StreamOptions{Stdout: x.outW, Stderr: x.errW}
	if spec.Stdin {
		// net.Pipe: synchronous like io.Pipe, with write deadlines of its
		// own, so a Write needs no goroutine to give up on time.
		x.in, x.stdin = net.Pipe()
		opts.Stdin = x.stdin
	}
	k.track(x)
	go func() {
		err := ex.StreamWithContext(sctx, opts)
		x.finish(err)
		k.ended(x)
	}()
	return x, nil
}

// ExecInspect reports whether an exec runs and, once it ended, its exit
// status (-1 when its stream broke before the process ended).
func (k *Kube) ExecInspect(ctx context.Context, execID string) (engine.ExecStatus, error) {
	k.mu.Lock()
	x := k.execs[execID]
	k.mu.Unlock()
	if x == nil {
		return engine.ExecStatus{}, sbxerr.NotFound("exec %q", execID)
	}
	select {
	case <-x.done:
		return engine.ExecStatus{ExitCode: x.code}, nil
	default:
		return engine.ExecStatus{Running: true}, nil
	}
}

// kubeExec is one pod exec stream.
type kubeExec struct {
	id     string
	cancel context.CancelFunc

	outR, errR *io.PipeReader
	outW, errW *io.PipeWriter
	in         net.Conn // the write end of stdin; nil without stdin
	stdin      net.Conn // the end the stream reads

	done chan struct{} // closed when the stream ended
	code int           // the exit status, once done
	err  error         // the stream's error, when it broke

	wmu sync.Mutex // one Write at a time
}

// exitStatus is what the exec stream's error says about the process.
type exitStatus interface{ ExitStatus() int }

// finish records how the stream ended and unblocks its readers and writers.
func (x *kubeExec) finish(err error) {
	var es exitStatus
	switch {
	case err == nil:
		x.code = 0
	case errors.As(err, &es):
		x.code = es.ExitStatus()
	default:
		x.code, x.err = -1, classify(err)
	}
	x.outW.CloseWithError(x.err)
	x.errW.CloseWithError(x.err)
	if x.stdin != nil {
		x.stdin.Close() // a Write under way fails
	}
	close(x.done)
}

func (x *kubeExec) ID() string { return x.id }

// Output copies the process's stdout and stderr until both end. It returns
// the stream's error when the stream broke (not the exit status).
func (x *kubeExec) Output(stdout, stderr io.Writer) error {
	var wg sync.WaitGroup
	var errOut error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, errOut = io.Copy(stderr, x.errR)
		if errOut != nil {
			x.errR.CloseWithError(errOut)
		}
	}()
	_, err := io.Copy(stdout, x.outR)
	if err != nil {
		x.outR.CloseWithError(err)
	}
	wg.Wait()
	<-x.done
	if err == nil {
		err = errOut
	}
	if err == nil {
		err = x.err
	}
	return err
}

// Write writes to the process's stdin, giving up at the write deadline.
// A write cut short by the deadline leaves the stream's framing unknown, so
// it ends the stream.
func (x *kubeExec) Write(p []byte) (int, error) {
	if x.in == nil {
		return 0, sbxerr.Invalid("exec has no stdin")
	}
	x.wmu.Lock()
	defer x.wmu.Unlock()
	n, err := x.in.Write(p)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		if n > 0 {
			x.Close()
		}
		return n, os.ErrDeadlineExceeded
	case errors.Is(err, io.ErrClosedPipe):
		return n, io.ErrClosedPipe
	}
	return n, err
}

// CloseWrite ends the process's stdin.
func (x *kubeExec) CloseWrite() error {
	if x.in == nil {
		return nil
	}
	return x.in.Close()
}

// SetWriteDeadline sets when a blocked Write gives up (zero: never).
func (x *kubeExec) SetWriteDeadline(t time.Time) error {
	if x.in == nil {
		return nil
	}
	if err := x.in.SetWriteDeadline(t); err != nil && !errors.Is(err, io.ErrClosedPipe) {
		return err
	}
	return nil
}

// closeGrace is how long Close lets a process whose stdin it closed end
// the stream by itself (the agent's relay exits on EOF) before cutting it.
const closeGrace = 2 * time.Second

// Close ends the stream (the process may go on in the pod, as with
// Docker). With stdin it first closes stdin, so that a process ending on
// EOF, such as the agent's relay, ends the stream cleanly; client-go logs
// an error for every stream cut under it.
func (x *kubeExec) Close() error {
	if x.in == nil {
		x.cancel()
		return nil
	}
	x.in.Close()
	go func() {
		select {
		case <-x.done:
		case <-time.After(closeGrace):
		}
		x.cancel()
	}()
	return nil
}
