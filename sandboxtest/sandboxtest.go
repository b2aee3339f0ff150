package sandboxtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opensbx/opensbx"
)

// Labels every sandbox made by New carries (see the package doc, "Leaks").
const (
	// LabelRun holds the run id of the New call (or RunLabels call) that
	// made the sandbox: the process id and random hex, "p1234-9f8e7d6c".
	LabelRun = "opensbx.sandboxtest.run"
	// LabelDeadline holds the Unix time in seconds after which the sandbox
	// may be removed by Sweep.
	LabelDeadline = "opensbx.sandboxtest.deadline"
)

// EnvSkipNoEngine is the environment variable that, set to "1" or "true",
// makes New skip the test instead of failing it when no engine answers.
const EnvSkipNoEngine = "SANDBOXTEST_SKIP_NO_ENGINE"

const (
	// DeadlineGrace is added to a sandbox's TTL to give its deadline label,
	// so that Sweep never races the owning process's own cleanup.
	DeadlineGrace = 5 * time.Second
	// DefaultWaitTimeout is the timeout of a wait strategy without its own.
	DefaultWaitTimeout = time.Minute
	// DefaultCreateTimeout bounds New's engine calls before the waits.
	DefaultCreateTimeout = 2 * time.Minute
	// fallbackTTL is the TTL when the test has no deadline (-timeout 0).
	fallbackTTL = 30 * time.Minute
	// cleanupTimeout bounds the removal of one sandbox.
	cleanupTimeout = 2 * time.Minute
)

// An Option configures New.
type Option func(*settings)

type settings struct {
	create       opensbx.CreateOptions
	waits        []WaitStrategy
	manager      *opensbx.Manager
	namespace    string
	skipNoEngine bool
	errs         []string
}

func (s *settings) fail(format string, args ...any) {
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// Ports publishes container ports ("8080", "53/udp") on free host ports of
// 127.0.0.1; HostPort tells which. The first is the sandbox's main port,
// used by ForHTTP and ForListeningPort when they are given no port.
func Ports(ports ...string) Option {
	return func(s *settings) { s.create.Ports = append(s.create.Ports, ports...) }
}

// Env adds environment variables, each "KEY=value".
func Env(kv ...string) Option {
	return func(s *settings) {
		for _, e := range kv {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				s.fail("sandboxtest.Env(%q): want KEY=value", e)
				continue
			}
			s.create.Env = append(s.create.Env, e)
		}
	}
}

// Command sets the sandbox's main process (its whole argv, not arguments
// to the image's entrypoint). Without Command or KeepImageCommand the
// sandbox runs a long sleep, which needs a sleep binary in the image.
func Command(argv ...string) Option {
	return func(s *settings) {
		if len(argv) == 0 {
			s.fail("sandboxtest.Command: empty argv")
			return
		}
		s.create.Command = argv
	}
}

// KeepImageCommand runs the image's own ENTRYPOINT and CMD (for example a
// database image's server) instead of the keep-alive sleep.
func KeepImageCommand() Option {
	return func(s *settings) { s.create.KeepImageCommand = true }
}

// Resources sets the sandbox's CPU and memory limits (default: the
// Manager's, 1024 MiB and 1 CPU).
func Resources(r opensbx.Resources) Option {
	return func(s *settings) { s.create.Resources = r }
}

// TTL sets the sandbox's time to live: after it the sandbox is deleted even
// if the test still runs, and TTL plus DeadlineGrace is its deadline label.
// The default is the time left before the test binary's -timeout plus a
// minute (30 minutes with -timeout 0).
func TTL(d time.Duration) Option {
	return func(s *settings) {
		if d <= 0 {
			s.fail("sandboxtest.TTL(%v): must be positive", d)
			return
		}
		s.create.TTL = d
	}
}

// PullMissing lets New pull the image when it is not present locally.
// Without it a missing image fails the test.
func PullMissing() Option {
	return func(s *settings) { s.create.PullMissing = true }
}

// WaitFor adds wait strategies; New returns only once all of them passed,
// in order, and fails the test with the first one's error otherwise.
func WaitFor(ws ...WaitStrategy) Option {
	return func(s *settings) { s.waits = append(s.waits, ws...) }
}

// WithManager makes New create the sandbox through m instead of a Manager
// of its own, so many tests can share one. The caller keeps ownership of m
// and must not close it before the tests' cleanups ran (register its Close
// with t.Cleanup in the parent test, before the subtests). Each sandbox
// carries its own run id and deadline labels, so the sweeper removes what a
// killed process leaves behind; make m with opensbx.WithDeleteOnExpiry(true)
// for its own expiry to delete rather than stop overdue sandboxes.
func WithManager(m *opensbx.Manager) Option {
	return func(s *settings) {
		if m == nil {
			s.fail("sandboxtest.WithManager(nil)")
			return
		}
		s.manager = m
	}
}

// Namespace sets the namespace of the Manager New makes (default
// "sandboxtest-" plus the run id, one per New call). Tests sharing a
// namespace see each other's sandboxes in List, and each New then recovers
// the deadlines of all of them, which costs an inspect per sandbox. It
// cannot be combined with WithManager.
func Namespace(ns string) Option {
	return func(s *settings) { s.namespace = ns }
}

// SkipIfNoEngine makes New skip the test (tb.Skipf) instead of failing it
// when the Docker engine cannot be reached. Setting the environment
// variable SANDBOXTEST_SKIP_NO_ENGINE=1 does the same for every New.
func SkipIfNoEngine() Option {
	return func(s *settings) { s.skipNoEngine = true }
}

// Sandbox is a running sandbox owned by one test. Its helpers fail the
// test on errors and, like tb.Fatal, must be called from the test's
// goroutine. It is removed when the test (and its subtests) end.
type Sandbox struct {
	tb       testing.TB
	m        *opensbx.Manager
	runID    string
	deadline time.Time
	info     *opensbx.Sandbox
}

// New creates and starts a sandbox from image, waits until every wait
// strategy passed and returns it. The sandbox is deleted by tb.Cleanup
// (best effort: a sandbox already gone counts as removed; any other
// failure is reported with tb.Errorf), and so is the Manager New made.
//
// New fails the test (tb.Fatalf) with a message naming the cause when an
// option is invalid, the engine is unreachable (tb.Skipf instead with
// SkipIfNoEngine or SANDBOXTEST_SKIP_NO_ENGINE=1), the image is missing,
// the sandbox cannot be created, or a wait strategy fails; in the last case
// the message says what was waited for, the last error or output seen, and
// the sandbox's state.
//
// Before creating, New removes the sandboxes of earlier runs whose deadline
// passed (see Sweep).
func New(tb testing.TB, image string, opts ...Option) *Sandbox {
	tb.Helper()
	s := settings{create: opensbx.CreateOptions{Image: image}}
	for _, o := range opts {
		o(&s)
	}
	if strings.TrimSpace(image) == "" {
		s.fail("image is empty")
	}
	if s.manager != nil && s.namespace != "" {
		s.fail("Namespace and WithManager exclude each other")
	}
	if len(s.errs) > 0 {
		tb.Fatalf("sandboxtest: %s", strings.Join(s.errs, "; "))
		return nil
	}
	if s.create.TTL == 0 {
		s.create.TTL = defaultTTL(tb)
	}
	sb := &Sandbox{tb: tb, m: s.manager, runID: NewRunID()}
	sb.deadline = time.Now().Add(s.create.TTL + DeadlineGrace)
	// Every sandbox carries its own run id and deadline, also one made
	// through a caller's Manager, so the sweeper can find it after a crash.
	s.create.Labels = map[string]string{
		LabelRun:      sb.runID,
		LabelDeadline: strconv.FormatInt(sb.deadline.Unix(), 10),
	}

	ctx, cancel := context.WithTimeout(tb.Context(), DefaultCreateTimeout)
	defer cancel()
	ownManager := sb.m == nil
	if ownManager {
		ns := s.namespace
		if ns == "" {
			ns = "sandboxtest-" + sb.runID
		}
		m, err := opensbx.New(ctx,
			opensbx.WithNamespace(ns),
			opensbx.WithDeleteOnExpiry(true),
			opensbx.WithStopTimeout(time.Second),
		)
		if err != nil {
			if errors.Is(err, opensbx.ErrUnavailable) {
				noEngine(tb, s.skipNoEngine, err)
				return nil
			}
			tb.Fatalf("sandboxtest: %v", err)
			return nil
		}
		sb.m = m
		tb.Cleanup(func() { m.Close() })
	} else if err := sb.m.Ping(ctx); err != nil {
		if errors.Is(err, opensbx.ErrUnavailable) {
			noEngine(tb, s.skipNoEngine, err)
			return nil
		}
		tb.Fatalf("sandboxtest: manager: %v", err)
		return nil
	}
	tb.Cleanup(sb.cleanup) // runs before the Manager's Close above

	// Sweep earlier runs' expired sandboxes while the engine creates ours;
	// New waits for both.
	type sweepResult struct {
		ids []string
		err error
	}
	swept := make(chan sweepResult, 1)
	go func() {
		var r sweepResult
		if ownManager {
			r.ids, r.err = Sweep(ctx, sb.m)
		} else {
			r.ids, r.err = SweepManager(ctx, sb.m)
		}
		swept <- r
	}()
	res, err := sb.m.Create(ctx, s.create)
	if r := <-swept; r.err != nil {
		tb.Logf("sandboxtest: sweep expired sandboxes: %v", r.err)
	} else if len(r.ids) > 0 {
		tb.Logf("sandboxtest: removed %d expired sandbox(es) of earlier runs", len(r.ids))
	}
	if err != nil {
		hint := ""
		if errors.Is(err, opensbx.ErrImageNotFound) && !s.create.PullMissing {
			hint = " (build or pull it first, or pass sandboxtest.PullMissing())"
		}
		tb.Fatalf("sandboxtest: create sandbox from %s: %v%s", image, err, hint)
		return nil
	}
	sb.info = res.Sandbox
	if len(s.waits) > 0 {
		if err := sb.wait(WaitAll(s.waits...)); err != nil {
			tb.Fatalf("sandboxtest: %v", err)
			return nil
		}
	}
	return sb
}

// noEngine fails (or skips) the test because no engine answers.
func noEngine(tb testing.TB, skip bool, err error) {
	tb.Helper()
	switch v := os.Getenv(EnvSkipNoEngine); {
	case skip, v == "1", strings.EqualFold(v, "true"):
		tb.Skipf("sandboxtest: Docker engine unreachable, skipping: %v", err)
	default:
		tb.Fatalf("sandboxtest: Docker engine unreachable (check DOCKER_HOST and that dockerd runs; "+
			"to skip instead, pass sandboxtest.SkipIfNoEngine() or set %s=1): %v", EnvSkipNoEngine, err)
	}
}

// defaultTTL is the time the test binary has left, plus a minute.
func defaultTTL(tb testing.TB) time.Duration {
	if d, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			return max(time.Until(dl), 0) + time.Minute
		}
	}
	return fallbackTTL
}

// NewRunID returns a fresh run id: the process id and 8 random hex digits,
// "p1234-9f8e7d6c".
func NewRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return "p" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// RunLabels returns labels for a Manager that the caller shares between
// tests (opensbx.WithLabels), so that sandboxes the caller creates through it
// directly, not through New (which labels its own), are swept too: a fresh
// run id, and a deadline of maxLife plus DeadlineGrace from now, after which
// Sweep may remove them. maxLife should cover the whole test binary (its
// -timeout).
func RunLabels(maxLife time.Duration) map[string]string {
	return map[string]string{
		LabelRun:      NewRunID(),
		LabelDeadline: strconv.FormatInt(time.Now().Add(maxLife+DeadlineGrace).Unix(), 10),
	}
}

// cleanup deletes the sandbox; a sandbox already gone counts as deleted.
func (sb *Sandbox) cleanup() {
	if sb.info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	err := sb.m.Delete(ctx, sb.info.ID)
	// Not found: expired or deleted by the test. Conflict: removal already
	// in progress.
	if err != nil && !errors.Is(err, opensbx.ErrNotFound) && !errors.Is(err, opensbx.ErrConflict) {
		sb.tb.Errorf("sandboxtest: remove sandbox %s (%s): %v; it carries %s=%s and Sweep removes it after %s",
			sb.info.Name, shortID(sb.info.ID), err, LabelRun, sb.runID, sb.deadline.Format(time.RFC3339))
	}
}

// opContext returns the context for one helper call: the test's, or, when
// that has ended because the test is in its cleanups, a bounded one.
func (sb *Sandbox) opContext() (context.Context, context.CancelFunc) {
	ctx := sb.tb.Context()
	if ctx.Err() != nil {
		return context.WithTimeout(context.Background(), cleanupTimeout)
	}
	return context.WithCancel(ctx)
}

// ID returns the sandbox's id (its container id).
func (sb *Sandbox) ID() string { return sb.info.ID }

// Name returns the sandbox's friendly name.
func (sb *Sandbox) Name() string { return sb.info.Name }

// RunID returns the run id the sandbox is labelled with (LabelRun); empty
// when it was made through a caller's Manager.
func (sb *Sandbox) RunID() string { return sb.info.Labels[LabelRun] }

// Deadline returns the time after which Sweep may remove the sandbox.
func (sb *Sandbox) Deadline() time.Time { return sb.deadline }

// Info returns the sandbox as the engine described it right after it
// started. The caller may modify the copy.
func (sb *Sandbox) Info() opensbx.Sandbox {
	c := *sb.info
	c.Ports = append([]string(nil), c.Ports...)
	c.PortMap = cloneMap(c.PortMap)
	c.Labels = cloneMap(c.Labels)
	return c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Manager returns the Manager that owns the sandbox, for calls the helpers
// do not cover. Do not close it.
func (sb *Sandbox) Manager() *opensbx.Manager { return sb.m }

// HostPort returns the host address of a published container port
// ("8080" or "8080/tcp"), as "127.0.0.1:32768", as the engine published it
// when the sandbox started (a restart through Manager() may change it). It
// fails the test when the port is not published (see Ports).
func (sb *Sandbox) HostPort(containerPort string) string {
	sb.tb.Helper()
	hp, err := sb.hostPort(containerPort)
	if err != nil {
		sb.tb.Fatalf("sandboxtest: %v", err)
	}
	return hp
}

func (sb *Sandbox) hostPort(containerPort string) (string, error) {
	p := containerPort
	if p == "" {
		p = sb.info.MainPort()
		if p == "" {
			return "", fmt.Errorf("sandbox %s publishes no port (see sandboxtest.Ports)", sb.info.Name)
		}
	}
	if !strings.Contains(p, "/") {
		p += "/tcp"
	}
	host, ok := sb.info.PortMap[p]
	if !ok && slices.Contains(sb.info.Ports, p) {
		return "", fmt.Errorf("port %s of sandbox %s has no host port: the sandbox is %s", p, sb.info.Name, sb.info.State)
	}
	if !ok {
		published := make([]string, 0, len(sb.info.PortMap))
		for k := range sb.info.PortMap {
			published = append(published, k)
		}
		sort.Strings(published)
		return "", fmt.Errorf("port %s of sandbox %s is not published (published: %v); add it with sandboxtest.Ports(%q)",
			p, sb.info.Name, published, strings.TrimSuffix(p, "/tcp"))
	}
	ip := sb.info.HostIP
	switch ip {
	case "", "0.0.0.0":
		ip = "127.0.0.1"
	case "::":
		ip = "::1"
	}
	return net.JoinHostPort(ip, host), nil
}

// WaitFor waits until every strategy passed, in order, and fails the test
// with the first one's error otherwise.
func (sb *Sandbox) WaitFor(ws ...WaitStrategy) {
	sb.tb.Helper()
	if err := sb.wait(WaitAll(ws...)); err != nil {
		sb.tb.Fatalf("sandboxtest: %v", err)
	}
}

// wait runs w and, when it fails, adds the sandbox's state to the error.
func (sb *Sandbox) wait(w WaitStrategy) error {
	ctx, cancel := sb.opContext()
	defer cancel()
	err := w.WaitUntilReady(ctx, sb)
	if err == nil {
		return nil
	}
	state := "unknown"
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	if cur, gerr := sb.m.Get(sctx, sb.info.ID); gerr != nil {
		state = gerr.Error()
	} else {
		state = string(cur.State)
		if !cur.Running() {
			state += fmt.Sprintf(" (main process exit code %d", cur.ExitCode)
			if cur.OOMKilled {
				state += ", OOM-killed"
			}
			state += ")"
		}
	}
	return fmt.Errorf("sandbox %s (%s) not ready: %w [sandbox state: %s]", sb.info.Name, shortID(sb.info.ID), err, state)
}

// WriteFile writes data to path (absolute) in the sandbox with mode 0644,
// creating parent directories. It fails the test on any error.
func (sb *Sandbox) WriteFile(path string, data []byte) {
	sb.tb.Helper()
	sb.WriteFileMode(path, data, 0o644)
}

// WriteFileMode is WriteFile with a file mode (0755 for a script).
func (sb *Sandbox) WriteFileMode(path string, data []byte, mode fs.FileMode) {
	sb.tb.Helper()
	ctx, cancel := sb.opContext()
	defer cancel()
	if err := sb.m.WriteFile(ctx, sb.info.ID, path, data, mode); err != nil {
		sb.tb.Fatalf("sandboxtest: write %s in sandbox %s: %v", path, sb.info.Name, err)
	}
}

// ReadFile returns the content of the file at path (absolute) in the
// sandbox. It fails the test on any error, including a missing file.
func (sb *Sandbox) ReadFile(path string) []byte {
	sb.tb.Helper()
	ctx, cancel := sb.opContext()
	defer cancel()
	data, _, err := sb.m.ReadFile(ctx, sb.info.ID, path)
	if err != nil {
		sb.tb.Fatalf("sandboxtest: read %s in sandbox %s: %v", path, sb.info.Name, err)
		return nil
	}
	return data
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
