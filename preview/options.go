package preview

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opensbx/opensbx"
)

// Defaults of the options.
const (
	// DefaultBaseURL is where previews live unless WithBaseURL says
	// otherwise: browsers and curl resolve every *.localhost name to
	// loopback, so it needs no DNS.
	DefaultBaseURL = "http://localhost"
	// DefaultDialTimeout bounds connecting to a sandbox's port.
	DefaultDialTimeout = 5 * time.Second
	// DefaultResponseTimeout bounds the wait for a sandbox's response
	// headers (not the body: streams may run for hours).
	DefaultResponseTimeout = 2 * time.Minute
	// DefaultLinkTTL is how long a signed link stays valid.
	DefaultLinkTTL = time.Hour
	// DefaultCookieTTL is how long the cookie a signed link is exchanged
	// for stays valid.
	DefaultCookieTTL = 12 * time.Hour
)

// defaultCacheTTL bounds how long a route learned from the Manager is used
// before it is looked up again, for changes the Manager did not make
// itself (a sandbox's process exiting, someone else's docker command).
// Changes the Manager makes drop the routes at once.
const defaultCacheTTL = 2 * time.Second

// Option configures New. An option with a bad value makes New fail with
// an error matching opensbx.ErrInvalid.
type Option func(*config) error

// config is the Proxy's settings after the options.
type config struct {
	scheme          string // "http" or "https"
	base            string // the base domain, lower case
	port            string // the port of preview URLs; "" for the scheme's default
	secret          []byte
	privateDefault  bool
	dialTimeout     time.Duration
	responseTimeout time.Duration
	linkTTL         time.Duration
	cookieTTL       time.Duration
	cacheTTL        time.Duration
	log             *slog.Logger
}

func defaultConfig() config {
	return config{
		scheme:          "http",
		base:            "localhost",
		dialTimeout:     DefaultDialTimeout,
		responseTimeout: DefaultResponseTimeout,
		linkTTL:         DefaultLinkTTL,
		cookieTTL:       DefaultCookieTTL,
		cacheTTL:        defaultCacheTTL,
		log:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("preview: %s: %w", fmt.Sprintf(format, args...), opensbx.ErrInvalid)
}

// WithBaseURL sets where previews live: "<scheme>://<domain>[:<port>]",
// for example "http://localhost:3000" or "https://sbx.example.com". The
// proxy serves "<name>.<domain>" and "<port>-<name>.<domain>" (any port in
// the Host header is ignored when routing); URL and SignedURL write
// addresses with this scheme and port. The scheme is "http" or "https";
// the domain is a DNS name, not an IP address. Default DefaultBaseURL.
//
// With "https" the proxy itself still speaks plain HTTP unless it is
// served over TLS: the scheme says that a TLS terminator in front of it
// answers clients, so cookies are Secure and X-Forwarded-Proto is https.
func WithBaseURL(u string) Option {
	return func(c *config) error {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil {
			return invalidf("base URL %q: %v", u, err)
		}
		scheme := strings.ToLower(p.Scheme)
		if scheme != "http" && scheme != "https" {
			return invalidf("base URL %q: scheme must be http or https", u)
		}
		if p.User != nil || (p.Path != "" && p.Path != "/") || p.RawQuery != "" || p.Fragment != "" || p.Opaque != "" {
			return invalidf("base URL %q: want only scheme, domain and port", u)
		}
		host := strings.TrimSuffix(strings.ToLower(p.Hostname()), ".")
		if !validBaseDomain(host) {
			return invalidf("base URL %q: %q is not a domain name", u, p.Hostname())
		}
		port := p.Port()
		if port != "" {
			n, ok := parsePort(port)
			if !ok {
				return invalidf("base URL %q: bad port", u)
			}
			if (scheme == "http" && n == 80) || (scheme == "https" && n == 443) {
				port = ""
			}
		}
		c.scheme, c.base, c.port = scheme, host, port
		return nil
	}
}

// WithSecret sets the key that preview tokens, links and cookies are
// signed with (at least MinSecretBytes bytes; LoadOrCreateSecret keeps
// one in a file). Everything signed stays valid for as long as the key is
// the same, also across restarts; a new key revokes it all. Without this
// option the Proxy makes a random key of its own, and tokens die with it.
// Never use the API key here.
func WithSecret(key []byte) Option {
	return func(c *config) error {
		if len(key) < MinSecretBytes {
			return invalidf("secret is %d bytes, want at least %d", len(key), MinSecretBytes)
		}
		c.secret = append([]byte(nil), key...)
		return nil
	}
}

// WithPrivateByDefault says whether sandboxes created without saying
// (the HTTP API's create request without "private") are private. It
// changes nothing in the routing: the proxy always follows each sandbox's
// own Private flag, fixed at create. Default false (public).
func WithPrivateByDefault(private bool) Option {
	return func(c *config) error {
		c.privateDefault = private
		return nil
	}
}

// WithDialTimeout bounds connecting to a sandbox's port (default
// DefaultDialTimeout); past it the answer is 502.
func WithDialTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalidf("dial timeout must be positive, got %v", d)
		}
		c.dialTimeout = d
		return nil
	}
}

// WithResponseTimeout bounds the wait for a sandbox's response headers
// after the request has been sent (default DefaultResponseTimeout); past
// it the answer is 504. Bodies are not bounded: a stream or a WebSocket
// runs until one side ends it.
func WithResponseTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalidf("response timeout must be positive, got %v", d)
		}
		c.responseTimeout = d
		return nil
	}
}

// WithLinkTTL sets how long the links of SignedURL stay valid (default
// DefaultLinkTTL).
func WithLinkTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Second {
			return invalidf("link TTL must be at least 1s, got %v", d)
		}
		c.linkTTL = d
		return nil
	}
}

// WithCookieTTL sets how long the cookie a signed link is exchanged for
// stays valid (default DefaultCookieTTL).
func WithCookieTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Second {
			return invalidf("cookie TTL must be at least 1s, got %v", d)
		}
		c.cookieTTL = d
		return nil
	}
}

// WithLogger logs one line per request (method, host, path without the
// query, status, bytes, duration, sandbox) and the cause of every error
// answer to l. Tokens, cookies, query strings and other headers are never
// logged. Nil discards logs (the default).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l != nil {
			c.log = l
		}
		return nil
	}
}

// withCacheTTL changes how long a route snapshot is used (tests use a
// long one to see that events, not age, drop routes).
func withCacheTTL(d time.Duration) Option {
	return func(c *config) error {
		c.cacheTTL = d
		return nil
	}
}

// newSecret is the random key of a Proxy made without WithSecret.
func newSecret() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("preview: secret: %w", err)
	}
	return b, nil
}

// portSuffix is ":<port>" of preview URLs, or "".
func (c *config) portSuffix() string {
	if c.port == "" {
		return ""
	}
	return ":" + c.port
}

// atoi is strconv.Atoi for values already checked to be numbers.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
