package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// A WaitStrategy decides when a sandbox is ready. WaitUntilReady blocks
// until it is, or returns an error saying what it waited for and the last
// error or output it saw (a *WaitError for the strategies of this package).
// Each strategy bounds itself with its own timeout; ctx may end it earlier.
// Strategies hold only configuration, so one value may serve many sandboxes
// at once.
type WaitStrategy interface {
	WaitUntilReady(ctx context.Context, sb *Sandbox) error
}

// WaitError is the error of a wait strategy that gave up.
type WaitError struct {
	// What is what was waited for ("TCP port 8080/tcp at 127.0.0.1:32768
	// to accept connections").
	What string
	// Timeout is the strategy's timeout.
	Timeout time.Duration
	// Attempts is the number of checks made.
	Attempts int
	// Last is the last error or output seen, "" when none.
	Last string
	// Err is context.DeadlineExceeded when the timeout passed, or the cause
	// that ended the caller's context.
	Err error
}

// Error says what was waited for, how it ended, how often it was checked
// and the last thing seen.
func (e *WaitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "wait for %s: ", e.What)
	if errors.Is(e.Err, context.DeadlineExceeded) {
		fmt.Fprintf(&b, "timed out after %v", e.Timeout)
	} else {
		fmt.Fprintf(&b, "stopped: %v", e.Err)
	}
	fmt.Fprintf(&b, " (%d attempts)", e.Attempts)
	if e.Last != "" {
		fmt.Fprintf(&b, "; last seen: %s", e.Last)
	} else {
		b.WriteString("; nothing seen")
	}
	return b.String()
}

// Unwrap returns Err.
func (e *WaitError) Unwrap() error { return e.Err }

// timing is the timeout and poll interval shared by the strategies.
type timing struct {
	timeout  time.Duration
	interval time.Duration
}

func (t timing) orDefault(interval time.Duration) timing {
	if t.timeout <= 0 {
		t.timeout = DefaultWaitTimeout
	}
	if t.interval <= 0 {
		t.interval = interval
	}
	return t
}

// attempt is one check: ready, or not yet with what was seen, or a
// permanent failure (err) that ends the wait at once.
type attempt func(ctx context.Context) (ready bool, seen string, err error)

// cutShort reports whether an attempt may have been cut off by the wait's
// own deadline.
func cutShort(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ctx.Err() != nil || (ok && !time.Now().Before(dl))
}

// poll runs try every interval until it reports ready, fails permanently,
// or the timeout or ctx ends.
func poll(ctx context.Context, t timing, what string, try attempt) error {
	ctx, cancel := context.WithTimeoutCause(ctx, t.timeout, context.DeadlineExceeded)
	defer cancel()
	ticker := time.NewTicker(t.interval)
	defer ticker.Stop()
	werr := &WaitError{What: what, Timeout: t.timeout}
	for {
		werr.Attempts++
		ready, seen, err := try(ctx)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if ready {
			return nil
		}
		// What an attempt cut short by the deadline saw is kept only when
		// nothing was seen before: it is mostly the deadline's own error.
		if seen != "" && (werr.Last == "" || !cutShort(ctx)) {
			werr.Last = seen
		}
		select {
		case <-ctx.Done():
			werr.Err = context.Cause(ctx)
			return werr
		case <-ticker.C:
		}
	}
}

// allStrategy runs strategies in order.
type allStrategy []WaitStrategy

// WaitAll combines strategies: the result is ready once each of ws, in
// order, is ready; it fails with the first error. Each keeps its own
// timeout.
func WaitAll(ws ...WaitStrategy) WaitStrategy { return allStrategy(ws) }

// WaitUntilReady implements WaitStrategy.
func (a allStrategy) WaitUntilReady(ctx context.Context, sb *Sandbox) error {
	for _, w := range a {
		if w == nil {
			continue
		}
		if err := w.WaitUntilReady(ctx, sb); err != nil {
			return err
		}
	}
	return nil
}

// PortStrategy waits for a TCP port to accept connections on its published
// host port. Make one with ForListeningPort.
type PortStrategy struct {
	port string
	t    timing
}

// ForListeningPort waits until the container port ("8080"; "" means the
// main port) accepts TCP connections on its published host address.
//
// Docker's port proxy accepts connections on the host port even before
// anything listens in the container, and closes them at once; the strategy
// counts a connection as accepted only when it stays open (or the service
// speaks first) for a quarter second.
func ForListeningPort(port string) *PortStrategy { return &PortStrategy{port: port} }

// WithTimeout sets how long to wait (default DefaultWaitTimeout).
func (s *PortStrategy) WithTimeout(d time.Duration) *PortStrategy { s.t.timeout = d; return s }

// WithPollInterval sets the pause between attempts (default 100 ms).
func (s *PortStrategy) WithPollInterval(d time.Duration) *PortStrategy { s.t.interval = d; return s }

// probeTime is how long an accepted connection must stay open.
const probeTime = 250 * time.Millisecond

// WaitUntilReady implements WaitStrategy.
func (s *PortStrategy) WaitUntilReady(ctx context.Context, sb *Sandbox) error {
	t := s.t.orDefault(100 * time.Millisecond)
	port := portName(s.port, sb)
	hp, err := sb.hostPort(s.port)
	if err != nil {
		return fmt.Errorf("wait for TCP port %s: %w", port, err)
	}
	if strings.HasSuffix(port, "/udp") || strings.HasSuffix(port, "/sctp") {
		return fmt.Errorf("wait for port %s: only TCP ports can be checked", port)
	}
	what := fmt.Sprintf("TCP port %s at %s to accept connections", port, hp)
	return poll(ctx, t, what, func(ctx context.Context) (bool, string, error) {
		return probeTCP(ctx, hp)
	})
}

func probeTCP(ctx context.Context, hp string) (bool, string, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", hp)
	if err != nil {
		return false, err.Error(), nil
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(probeTime))
	var b [1]byte
	n, err := conn.Read(b[:])
	var ne net.Error
	switch {
	case n > 0, errors.As(err, &ne) && ne.Timeout():
		return true, "", nil
	case errors.Is(err, io.EOF):
		return false, "connection accepted and closed at once (nothing listens in the container yet)", nil
	default:
		return false, fmt.Sprintf("connection accepted, then: %v", err), nil
	}
}

// portName is the normalised port a strategy checks, for messages.
func portName(port string, sb *Sandbox) string {
	if port == "" {
		port = sb.info.MainPort()
	}
	if port != "" && !strings.Contains(port, "/") {
		port += "/tcp"
	}
	return port
}

// HTTPStrategy waits for an HTTP endpoint to answer with a status. Make one
// with ForHTTP.
type HTTPStrategy struct {
	path   string
	port   string
	status int
	method string
	t      timing
}

// ForHTTP waits until a GET of path (for example "/healthz") on the
// published host address of the main port answers 200. WithPort and
// WithStatus change the port and status.
func ForHTTP(path string) *HTTPStrategy {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return &HTTPStrategy{path: path, status: http.StatusOK, method: http.MethodGet}
}

// WithPort sets the container port to ask ("8080").
func (s *HTTPStrategy) WithPort(port string) *HTTPStrategy { s.port = port; return s }

// WithStatus sets the status code to wait for (default 200).
func (s *HTTPStrategy) WithStatus(code int) *HTTPStrategy { s.status = code; return s }

// WithMethod sets the request method (default GET).
func (s *HTTPStrategy) WithMethod(method string) *HTTPStrategy { s.method = method; return s }

// WithTimeout sets how long to wait (default DefaultWaitTimeout).
func (s *HTTPStrategy) WithTimeout(d time.Duration) *HTTPStrategy { s.t.timeout = d; return s }

// WithPollInterval sets the pause between attempts (default 100 ms).
func (s *HTTPStrategy) WithPollInterval(d time.Duration) *HTTPStrategy { s.t.interval = d; return s }

// WaitUntilReady implements WaitStrategy.
func (s *HTTPStrategy) WaitUntilReady(ctx context.Context, sb *Sandbox) error {
	t := s.t.orDefault(100 * time.Millisecond)
	port := portName(s.port, sb)
	hp, err := sb.hostPort(s.port)
	if err != nil {
		return fmt.Errorf("wait for HTTP on port %s: %w", port, err)
	}
	url := "http://" + hp + s.path
	what := fmt.Sprintf("HTTP %s %s (container port %s) to answer %d", s.method, url, port, s.status)
	// A transport of its own, without proxies or kept connections, closed
	// when the wait ends.
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	return poll(ctx, t, what, func(ctx context.Context) (bool, string, error) {
		req, err := http.NewRequestWithContext(ctx, s.method, url, nil)
		if err != nil {
			return false, "", err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false, err.Error(), nil
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		if resp.StatusCode == s.status {
			return true, "", nil
		}
		return false, fmt.Sprintf("status %d, body %q", resp.StatusCode, body), nil
	})
}

// FuncStrategy waits until a function succeeds. Make one with ForFunc.
type FuncStrategy struct {
	what string
	fn   func(ctx context.Context, sb *Sandbox) error
	t    timing
}

// ForFunc waits until fn returns nil, calling it again after each error;
// what describes the condition for the failure message, and fn's last
// error is the "last seen" of it.
func ForFunc(what string, fn func(ctx context.Context, sb *Sandbox) error) *FuncStrategy {
	return &FuncStrategy{what: what, fn: fn}
}

// WithTimeout sets how long to wait (default DefaultWaitTimeout).
func (s *FuncStrategy) WithTimeout(d time.Duration) *FuncStrategy { s.t.timeout = d; return s }

// WithPollInterval sets the pause between attempts (default 100 ms).
func (s *FuncStrategy) WithPollInterval(d time.Duration) *FuncStrategy { s.t.interval = d; return s }

// WaitUntilReady implements WaitStrategy.
func (s *FuncStrategy) WaitUntilReady(ctx context.Context, sb *Sandbox) error {
	return poll(ctx, s.t.orDefault(100*time.Millisecond), s.what, func(ctx context.Context) (bool, string, error) {
		if err := s.fn(ctx, sb); err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
}

var (
	_ WaitStrategy = (*PortStrategy)(nil)
	_ WaitStrategy = (*HTTPStrategy)(nil)
	_ WaitStrategy = (*FuncStrategy)(nil)
	_ WaitStrategy = allStrategy(nil)
)
