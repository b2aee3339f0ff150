package preview

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opensbx/opensbx"
)

// LinkParam is the query parameter of a signed link (SignedURL). The proxy
// takes it off private sandboxes' requests; public sandboxes get it like
// any other parameter.
const LinkParam = "opensbx_preview"

// CookieName is the cookie a signed link is exchanged for. It is host-only
// (each "<port>-<name>" host has its own), HttpOnly and SameSite=Lax, and
// Secure when the base URL is https. The proxy never passes it on.
const CookieName = "opensbx_preview"

// Proxy is the preview reverse proxy: an http.Handler that routes each
// request by its Host header to a port a sandbox publishes. It is safe for
// concurrent use. Close it before closing its Manager.
type Proxy struct {
	m      *opensbx.Manager
	cfg    config
	sign   signer
	routes *routeTable
	tr     *http.Transport
	rp     *httputil.ReverseProxy
	now    func() time.Time
	unsub  func()

	// ctx is cancelled by Close, which ends upgraded connections
	// (WebSockets) still open.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // ServeHTTP calls in flight

	retries atomic.Int64 // routes looked up again after a failed connect
}

var _ http.Handler = (*Proxy)(nil)

// New returns a Proxy for the sandboxes of m. It subscribes to m's events
// to drop its routes whenever a sandbox is created, started, stopped,
// restarted, paused, resumed or deleted, so that a sandbox is reachable at
// its new host ports as soon as the Manager call that moved them returns.
// A bad option makes New fail with an error matching opensbx.ErrInvalid.
func New(m *opensbx.Manager, opts ...Option) (*Proxy, error) {
	if m == nil {
		return nil, invalidf("nil Manager")
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.secret == nil {
		key, err := newSecret()
		if err != nil {
			return nil, err
		}
		cfg.secret = key
	}
	p := &Proxy{m: m, cfg: cfg, sign: signer{key: cfg.secret}, now: time.Now}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.routes = &routeTable{m: m, ttl: cfg.cacheTTL, now: func() time.Time { return p.now() }}
	p.tr = &http.Transport{
		Proxy:                  nil, // never an HTTP_PROXY from the environment
		DialContext:            p.dial,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    32,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  cfg.responseTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		DisableCompression:     true, // pass encodings through untouched
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      retrier{p},
		FlushInterval:  -1, // every write of the sandbox reaches the client at once
		ErrorHandler:   p.proxyError,
		ModifyResponse: p.modifyResponse,
		ErrorLog:       slog.NewLogLogger(cfg.log.Handler(), slog.LevelDebug),
	}
	p.unsub = m.Subscribe(func(opensbx.Event) { p.routes.invalidate() })
	return p, nil
}

// Close stops the Proxy: it unsubscribes from the Manager, ends upgraded
// connections still open, waits for the ServeHTTP calls in flight to
// return and closes idle connections to sandboxes. Requests after Close
// get 503. Close is idempotent and returns nil. Shut the http.Server down
// first: Server.Shutdown waits for ordinary requests but not for
// WebSockets, which Close then cuts.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.unsub()
	p.cancel()
	p.wg.Wait()
	p.tr.CloseIdleConnections()
	return nil
}

// enter counts a ServeHTTP call, or reports false after Close.
func (p *Proxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

// Matches reports whether host (a Host header value) is a preview host of
// this Proxy: "<name>.<domain>" or "<port>-<name>.<domain>" under its base
// domain, any port ignored. A program serving its own routes and the
// previews on one listener sends the requests it matches to the Proxy.
func (p *Proxy) Matches(host string) bool {
	_, _, err := parseHost(host, p.cfg.base)
	return err == nil
}

// PrivateByDefault reports WithPrivateByDefault: whether sandboxes created
// without saying should be private.
func (p *Proxy) PrivateByDefault() bool { return p.cfg.privateDefault }

// Token returns the preview token of the sandbox with the full id
// sandboxID (Sandbox.ID): "Authorization: Bearer <token>" opens its
// private preview. The token is derived from the id and the Proxy's
// secret; it is the same after a restart with the same secret, and
// different for a new sandbox of the same name.
func (p *Proxy) Token(sandboxID string) string { return p.sign.token(sandboxID) }

// URL returns the preview address of sb's main port, the first TCP port
// it publishes: "<scheme>://<name>.<domain>[:port]" with the base URL's
// scheme, domain and port, the name in lower case, and "<port>-" before
// a name that itself starts with digits and '-'. It returns "" when sb
// publishes no TCP port.
func (p *Proxy) URL(sb *opensbx.Sandbox) string {
	rt := &route{ports: sb.Ports}
	main := rt.tcpPort(0)
	if main == "" {
		return ""
	}
	return p.hostURL(hostLabel(sb.Name, portNumber(main), false))
}

// PortURL returns the preview address of one of sb's TCP ports ("8080" or
// "8080/tcp"): "<scheme>://<port>-<name>.<domain>[:port]", or "" when sb
// does not publish it over TCP.
func (p *Proxy) PortURL(sb *opensbx.Sandbox, port string) string {
	num, proto, _ := strings.Cut(port, "/")
	n, ok := parsePort(num)
	if !ok || (proto != "" && proto != "tcp") {
		return ""
	}
	rt := &route{ports: sb.Ports}
	if rt.tcpPort(n) == "" {
		return ""
	}
	return p.hostURL(hostLabel(sb.Name, n, true))
}

func (p *Proxy) hostURL(label string) string {
	if label == "" {
		return ""
	}
	return p.cfg.scheme + "://" + label + "." + p.cfg.base + p.cfg.portSuffix()
}

// SignedURL returns URL(sb) with a signed link parameter that expires
// after the link TTL, and that expiry. Opening it once sets a cookie on
// that host and redirects to the same address without the parameter; the
// same parameter also opens PortURL hosts of the sandbox. For a public
// sandbox, or one without a TCP port, it returns URL(sb) and the zero time.
func (p *Proxy) SignedURL(sb *opensbx.Sandbox) (string, time.Time) {
	u := p.URL(sb)
	if u == "" || !sb.Private {
		return u, time.Time{}
	}
	exp := p.now().Add(p.cfg.linkTTL).Truncate(time.Second)
	return u + "/?" + LinkParam + "=" + p.sign.stamp(purposeLink, sb.ID, exp), exp
}

// exchange is what one proxied request carries in its context, from
// ServeHTTP through the transport to the log line.
type exchange struct {
	route    *route
	portKey  string // "8080/tcp"
	hostPort string // its host port
	status   int    // the sandbox's status (101 for upgrades)
	retried  bool   // the transport re-resolved the route once
	gone     bool   // the client went away
	cause    error  // the error behind an error answer, for the log
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// ServeHTTP routes r by its Host header; see the package documentation for
// the routes and the answers.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	x := &exchange{}
	defer func() {
		// ReverseProxy panics with http.ErrAbortHandler when a response
		// breaks off mid-way (the client left, the sandbox went away):
		// log it, then let the server see the panic.
		if v := recover(); v != nil {
			x.gone = true
			p.logRequest(r, rec, x, start)
			panic(v)
		}
		p.logRequest(r, rec, x, start)
	}()
	if !p.enter() {
		p.write(rec, &answer{http.StatusServiceUnavailable, "shutting-down", "the preview proxy is shutting down"})
		return
	}
	defer p.wg.Done()
	p.serve(rec, r, x)
}

func (p *Proxy) serve(w *recorder, r *http.Request, x *exchange) {
	if r.Method == http.MethodConnect {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		p.write(w, &answer{http.StatusMethodNotAllowed, "method", "CONNECT is not proxied"})
		return
	}
	name, port, err := parseHost(r.Host, p.cfg.base)
	if err != nil {
		a := &answer{http.StatusNotFound, "bad-name", err.Error()}
		switch err {
		case errNotPreviewHost:
			a.code, a.msg = "not-preview-host", a.msg+": want <name>."+p.cfg.base+" or <port>-<name>."+p.cfg.base
		case errBadPort:
			a.code = "bad-port"
		}
		p.write(w, a)
		return
	}
	rt, err := p.routes.lookup(r.Context(), name)
	if err != nil {
		if a := p.lookupAnswer(r.Context(), name, err, x); a != nil {
			p.write(w, a)
		}
		return
	}
	x.route = rt
	if rt.private && !p.authorize(w, r, rt) {
		return
	}
	if a := stateAnswer(rt); a != nil {
		p.write(w, a)
		return
	}
	key := rt.tcpPort(port)
	if key == "" {
		if port == 0 {
			p.write(w, &answer{http.StatusNotFound, "no-port", fmt.Sprintf("sandbox %s publishes no TCP port", rt.name)})
		} else {
			p.write(w, &answer{http.StatusNotFound, "no-port", fmt.Sprintf("sandbox %s does not publish port %d", rt.name, port)})
		}
		return
	}
	hp := rt.portMap[key]
	if hp == "" {
		p.write(w, &answer{http.StatusServiceUnavailable, "no-host-port", fmt.Sprintf("port %s of sandbox %s has no host port yet", key, rt.name)})
		return
	}
	x.portKey, x.hostPort = key, hp

	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), exchangeKey{}, x))
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel) // Close ends the request, WebSockets too
	defer stop()
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// lookupAnswer is the answer to a failed route lookup, or nil when the
// client has gone.
func (p *Proxy) lookupAnswer(ctx context.Context, name string, err error, x *exchange) *answer {
	x.cause = err
	switch {
	case errors.Is(err, errNoSandbox):
		return &answer{http.StatusNotFound, "unknown-sandbox", fmt.Sprintf("no sandbox named %s", name)}
	case errors.Is(err, errAmbiguous):
		return &answer{http.StatusNotFound, "ambiguous", fmt.Sprintf("several sandboxes are named %s in different case; name one in lower case", name)}
	case ctx.Err() != nil:
		x.gone = true
		return nil
	case errors.Is(err, opensbx.ErrClosed):
		return &answer{http.StatusServiceUnavailable, "shutting-down", "the preview proxy is shutting down"}
	}
	return &answer{http.StatusServiceUnavailable, "unavailable", "cannot look sandboxes up: the Docker engine is unavailable"}
}

// stateAnswer is the answer for a sandbox that cannot take requests, or
// nil for a running one.
func stateAnswer(rt *route) *answer {
	switch rt.state {
	case opensbx.StateRunning:
		return nil
	case opensbx.StatePaused:
		return &answer{http.StatusServiceUnavailable, "paused", fmt.Sprintf("sandbox %s is paused; resume it to reach it", rt.name)}
	case opensbx.StateStopped:
		return &answer{http.StatusServiceUnavailable, "stopped", fmt.Sprintf("sandbox %s is stopped; start it to reach it", rt.name)}
	case opensbx.StateRestarting:
		return &answer{http.StatusServiceUnavailable, "restarting", fmt.Sprintf("sandbox %s is restarting; try again in a moment", rt.name)}
	case opensbx.StateRemoving:
		return &answer{http.StatusServiceUnavailable, "removing", fmt.Sprintf("sandbox %s is being deleted", rt.name)}
	}
	return &answer{http.StatusServiceUnavailable, "not-running", fmt.Sprintf("sandbox %s is not running", rt.name)}
}

// authorize checks a private sandbox's request: a signed link is checked
// and exchanged for a cookie with a redirect; else a Bearer token or the
// cookie must be valid. It answers and returns false unless the request
// may go on.
func (p *Proxy) authorize(w *recorder, r *http.Request, rt *route) bool {
	if v, rest, ok := takeParam(r.URL.RawQuery, LinkParam); ok {
		switch p.sign.verifyStamp(purposeLink, rt.id, v, p.now()) {
		case stampValid:
			http.SetCookie(w, &http.Cookie{
				Name:     CookieName,
				Value:    p.sign.stamp(purposeCookie, rt.id, p.now().Add(p.cfg.cookieTTL)),
				Path:     "/",
				MaxAge:   int(p.cfg.cookieTTL / time.Second),
				HttpOnly: true,
				Secure:   p.secure(r),
				SameSite: http.SameSiteLaxMode,
			})
			loc := cleanPath(r.URL.EscapedPath())
			if rest != "" {
				loc += "?" + rest
			}
			w.Header().Set("Location", loc)
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Referrer-Policy", "no-referrer")
			status := http.StatusFound
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				status = http.StatusTemporaryRedirect
			}
			w.WriteHeader(status)
		case stampExpired:
			p.write(w, &answer{http.StatusUnauthorized, "link-expired", "this preview link has expired; ask for a new one"})
		default:
			p.write(w, &answer{http.StatusUnauthorized, "link-invalid", "this preview link is not valid"})
		}
		return false
	}
	if tok, ok := bearer(r.Header); ok && p.sign.checkToken(rt.id, tok) {
		return true
	}
	for _, c := range r.CookiesNamed(CookieName) {
		if p.sign.verifyStamp(purposeCookie, rt.id, c.Value, p.now()) == stampValid {
			return true
		}
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="opensbx preview"`)
	p.write(w, &answer{http.StatusUnauthorized, "unauthorized",
		fmt.Sprintf("sandbox %s is private: send Authorization: Bearer <its preview token>, or open a signed link", rt.name)})
	return false
}

// secure reports whether cookies must be Secure: the client speaks TLS to
// the proxy or to the terminator in front of it.
func (p *Proxy) secure(r *http.Request) bool { return r.TLS != nil || p.cfg.scheme == "https" }

// rewrite builds the request to the sandbox: its URL names the upstream
// (see upstreamHost), the Host header stays the client's, X-Forwarded-*
// are set, and the proxy's own credentials are taken off.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeFrom(pr.In.Context())
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = upstreamHost(x.route, x.hostPort)
	pr.Out.URL.User = nil
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	// The client's own claims about its address are not passed on: the
	// X-Forwarded-* headers above are the proxy's.
	pr.Out.Header.Del("Forwarded")
	pr.Out.Header.Del("X-Real-Ip")
	if p.cfg.scheme == "https" && pr.In.TLS == nil {
		pr.Out.Header.Set("X-Forwarded-Proto", "https")
	}
	dropCookie(pr.Out.Header, CookieName)
	if tok, ok := bearer(pr.Out.Header); ok && p.sign.checkToken(x.route.id, tok) {
		pr.Out.Header.Del("Authorization")
	}
	if pr.Out.Body != nil && pr.Out.Body != http.NoBody {
		pr.Out.Body = &replayBody{rc: pr.Out.Body}
	}
}

func (p *Proxy) modifyResponse(res *http.Response) error {
	if x := exchangeFrom(res.Request.Context()); x != nil {
		x.status = res.StatusCode
	}
	return nil
}

// proxyError answers a request the transport failed.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeFrom(r.Context())
	if x == nil {
		x = &exchange{route: &route{}}
	}
	x.cause = err
	var a *answer
	var ne net.Error
	switch {
	case errors.As(err, &a):
	case r.Context().Err() != nil:
		x.gone = true
		return
	case errors.As(err, new(*dialError)):
		a = &answer{http.StatusBadGateway, "not-listening", fmt.Sprintf("nothing is listening on port %s of sandbox %s", x.portKey, x.route.name)}
	case errors.As(err, &ne) && ne.Timeout():
		a = &answer{http.StatusGatewayTimeout, "timeout", fmt.Sprintf("sandbox %s did not answer on port %s within %v", x.route.name, x.portKey, p.cfg.responseTimeout)}
	default:
		// With Docker's userland proxy a port nobody listens on accepts
		// the connection and closes it at once: that lands here.
		a = &answer{http.StatusBadGateway, "not-listening", fmt.Sprintf("nothing answered on port %s of sandbox %s; is a server listening there?", x.portKey, x.route.name)}
	}
	p.write(w, a)
}

// answer is one of the proxy's own short answers.
type answer struct {
	status int
	code   string // the X-Opensbx-Preview header: which answer it is
	msg    string
}

func (a *answer) Error() string { return a.msg }

// write sends a as a short text body. The X-Opensbx-Preview header tells
// the proxy's answers apart from the sandbox's own.
func (p *Proxy) write(w http.ResponseWriter, a *answer) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Opensbx-Preview", a.code)
	if a.code == "restarting" {
		h.Set("Retry-After", "1")
	}
	h.Del("Content-Length")
	w.WriteHeader(a.status)
	io.WriteString(w, a.msg+"\n")
}

// logRequest writes the one log line of a request. It never logs the
// query, headers or cookies.
func (p *Proxy) logRequest(r *http.Request, rec *recorder, x *exchange, start time.Time) {
	status := rec.status
	if status == 0 {
		status = x.status
	}
	if x.gone {
		status = 499 // the client went away
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("host", truncate(r.Host, 256)),
		slog.String("path", truncate(r.URL.Path, 256)),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	}
	if x.route != nil && x.route.name != "" {
		attrs = append(attrs, slog.String("sandbox", x.route.name))
	}
	if x.portKey != "" {
		attrs = append(attrs, slog.String("port", x.portKey))
	}
	if x.cause != nil && !errors.Is(x.cause, errNoSandbox) {
		attrs = append(attrs, slog.String("error", x.cause.Error()))
	}
	p.cfg.log.LogAttrs(r.Context(), slog.LevelInfo, "preview", attrs...)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// recorder notes the status and size of a response. Unwrap lets
// http.ResponseController (which ReverseProxy uses to flush and hijack)
// reach the server's writer.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// upstreamHost is the host of the URL of a request to a sandbox:
// "<hostport>.<hex ip>.<id>.invalid". The transport pools connections by
// it, so a connection made for one sandbox is never reused for another
// that later got the same host port; dial turns it back into the address.
func upstreamHost(rt *route, hostPort string) string {
	id := rt.id
	if len(id) > 32 {
		id = id[:32] // a DNS label; a unique prefix among the Manager's sandboxes
	}
	if rt.agent {
		// "<port>.agent.<id>.invalid": dial goes through the agent.
		return hostPort + "." + viaAgent + "." + id + ".invalid"
	}
	ip := net.ParseIP(rt.hostIP)
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return hostPort + "." + hex.EncodeToString(ip) + "." + id + ".invalid"
}

// viaAgent marks an upstream host reached through the sandbox's agent.
const viaAgent = "agent"

// dialError marks a failure to connect, which the transport may retry on a
// route looked up again.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dial connects to the address upstreamHost encoded in addr, and nowhere
// else.
func (p *Proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &dialError{err}
	}
	parts := strings.Split(host, ".")
	if len(parts) != 4 || parts[3] != "invalid" {
		return nil, &dialError{fmt.Errorf("bad upstream %q", host)}
	}
	if parts[1] == viaAgent {
		port, ok := parsePort(parts[0])
		if !ok {
			return nil, &dialError{fmt.Errorf("bad upstream %q", host)}
		}
		dctx, cancel := context.WithTimeout(ctx, p.cfg.dialTimeout)
		defer cancel()
		c, err := p.m.DialPort(dctx, parts[2], port)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
	ip, err := hex.DecodeString(parts[1])
	if _, ok := parsePort(parts[0]); !ok || err != nil || (len(ip) != net.IPv4len && len(ip) != net.IPv6len) {
		return nil, &dialError{fmt.Errorf("bad upstream %q", host)}
	}
	d := net.Dialer{Timeout: p.cfg.dialTimeout}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(net.IP(ip).String(), parts[0]))
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// retrier is the ReverseProxy's transport. When connecting to a route
// fails it never tries another address from the same (maybe stale) route:
// it looks the sandbox up again by id and retries once on the new address
// only, if the sandbox runs, its host port changed and the request body
// has not been touched.
type retrier struct{ p *Proxy }

func (t retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.p.tr.RoundTrip(req)
	x := exchangeFrom(req.Context())
	if err == nil || x == nil || x.retried || !errors.As(err, new(*dialError)) {
		return res, err
	}
	x.retried = true
	t.p.retries.Add(1)
	fr, ferr := t.p.routes.fresh(req.Context(), x.route.id)
	switch {
	case errors.Is(ferr, errNoSandbox):
		return nil, &answer{http.StatusNotFound, "unknown-sandbox", fmt.Sprintf("sandbox %s is gone", x.route.name)}
	case ferr != nil:
		return nil, err
	}
	if a := stateAnswer(fr); a != nil {
		return nil, a
	}
	hp := fr.portMap[x.portKey]
	if hp == "" || (hp == x.hostPort && fr.hostIP == x.route.hostIP) {
		return nil, err
	}
	if rb, ok := req.Body.(*replayBody); ok && !rb.rearm() {
		return nil, err
	}
	x.route, x.hostPort = fr, hp
	r2 := req.Clone(req.Context())
	r2.URL.Host = upstreamHost(fr, hp)
	return t.p.tr.RoundTrip(r2)
}

// replayBody lets a request body be sent on a second attempt when the
// first never read from it (a failed connect). Until the first Read, Close
// is held back: the transport closes bodies on errors.
type replayBody struct {
	rc     io.ReadCloser
	mu     sync.Mutex
	read   bool
	closed bool
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	b.read = true
	b.mu.Unlock()
	return b.rc.Read(p)
}

func (b *replayBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.read {
		return b.rc.Close()
	}
	b.closed = true
	return nil
}

// rearm reports whether the body is untouched, and readies it for another
// attempt.
func (b *replayBody) rearm() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = false
	return !b.read
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(h http.Header) (string, bool) {
	v := h.Get("Authorization")
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// dropCookie removes the cookie called name from every Cookie header,
// keeping the others byte for byte.
func dropCookie(h http.Header, name string) {
	vs := h.Values("Cookie")
	if len(vs) == 0 {
		return
	}
	var out []string
	for _, v := range vs {
		var kept []string
		for _, part := range strings.Split(v, ";") {
			k, _, _ := strings.Cut(part, "=")
			if strings.TrimSpace(k) != name {
				kept = append(kept, strings.TrimSpace(part))
			}
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, "; "))
		}
	}
	h.Del("Cookie")
	for _, v := range out {
		h.Add("Cookie", v)
	}
}

// takeParam finds the first query parameter called name in a raw query and
// returns its value and the query without every parameter of that name,
// the others unchanged and in order.
func takeParam(rawQuery, name string) (value, rest string, found bool) {
	if rawQuery == "" {
		return "", "", false
	}
	var kept []string
	for _, part := range strings.Split(rawQuery, "&") {
		k, v, _ := strings.Cut(part, "=")
		if uk, err := url.QueryUnescape(k); err == nil && uk == name {
			if !found {
				value, _ = url.QueryUnescape(v)
				found = true
			}
			continue
		}
		kept = append(kept, part)
	}
	return value, strings.Join(kept, "&"), found
}

// cleanPath makes an escaped request path safe as a relative Location:
// it starts with exactly one slash, so "//evil.example" cannot turn it
// into another host.
func cleanPath(p string) string {
	return "/" + strings.TrimLeft(p, "/\\")
}

// portNumber is the number of a normalised port ("8080/tcp").
func portNumber(p string) int {
	num, _, _ := strings.Cut(p, "/")
	return atoi(num)
}
