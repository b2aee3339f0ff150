package preview

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opensbx/opensbx"
)

func TestWithBaseURL(t *testing.T) {
	for _, c := range []struct {
		in                 string
		scheme, base, port string
		ok                 bool
	}{
		{"http://localhost:3000", "http", "localhost", "3000", true},
		{"http://localhost", "http", "localhost", "", true},
		{"http://localhost:80", "http", "localhost", "", true}, // the scheme's own port is left out
		{"https://sbx.example.com", "https", "sbx.example.com", "", true},
		{"https://sbx.example.com:443/", "https", "sbx.example.com", "", true},
		{"https://Sbx.Example.COM.:8443", "https", "sbx.example.com", "8443", true},
		{" http://dev.localhost:3000 ", "http", "dev.localhost", "3000", true},
		{"localhost", "", "", "", false},             // no scheme
		{"ftp://localhost", "", "", "", false},       // another scheme
		{"http://127.0.0.1:3000", "", "", "", false}, // an IP has no subdomains
		{"http://[::1]:3000", "", "", "", false},
		{"http://localhost/path", "", "", "", false},
		{"http://localhost?x=1", "", "", "", false},
		{"http://user@localhost", "", "", "", false},
		{"http://localhost:0", "", "", "", false},
		{"http://localhost:99999", "", "", "", false},
		{"http://under_score.com", "", "", "", false},
		{"http://", "", "", "", false},
	} {
		cfg := defaultConfig()
		err := WithBaseURL(c.in)(&cfg)
		if c.ok != (err == nil) {
			t.Errorf("WithBaseURL(%q): %v", c.in, err)
			continue
		}
		if err != nil {
			if !errors.Is(err, opensbx.ErrInvalid) {
				t.Errorf("WithBaseURL(%q): %v is not ErrInvalid", c.in, err)
			}
			continue
		}
		if cfg.scheme != c.scheme || cfg.base != c.base || cfg.port != c.port {
			t.Errorf("WithBaseURL(%q) = %s %s %q", c.in, cfg.scheme, cfg.base, cfg.port)
		}
	}
}

func TestOptionsReject(t *testing.T) {
	for name, opt := range map[string]Option{
		"short secret":      WithSecret([]byte("short")),
		"zero dial timeout": WithDialTimeout(0),
		"negative response": WithResponseTimeout(-time.Second),
		"tiny link TTL":     WithLinkTTL(time.Millisecond),
		"zero cookie TTL":   WithCookieTTL(0),
	} {
		cfg := defaultConfig()
		if err := opt(&cfg); !errors.Is(err, opensbx.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := New(nil); !errors.Is(err, opensbx.ErrInvalid) {
		t.Errorf("New(nil): %v", err)
	}
}

// testProxy is a Proxy good for everything that needs no Manager.
func testProxy(t *testing.T, opts ...Option) *Proxy {
	t.Helper()
	cfg := defaultConfig()
	for _, o := range append([]Option{WithSecret(testKey)}, opts...) {
		if err := o(&cfg); err != nil {
			t.Fatal(err)
		}
	}
	return &Proxy{cfg: cfg, sign: signer{cfg.secret}, now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
}

func TestURLs(t *testing.T) {
	local := testProxy(t, WithBaseURL("http://localhost:3000"))
	public := testProxy(t, WithBaseURL("https://sbx.example.com"))
	sb := func(name string, ports ...string) *opensbx.Sandbox {
		return &opensbx.Sandbox{ID: "id-" + name, Name: name, Ports: ports}
	}
	for _, c := range []struct {
		p    *Proxy
		sb   *opensbx.Sandbox
		want string
	}{
		{local, sb("web", "8080/tcp"), "http://web.localhost:3000"},
		{public, sb("web", "8080/tcp"), "https://web.sbx.example.com"},
		{local, sb("MyApp", "8080/tcp"), "http://myapp.localhost:3000"},            // lower case
		{local, sb("my.app", "8080/tcp"), "http://my.app.localhost:3000"},          // dots kept
		{local, sb("8080-app", "3000/tcp"), "http://3000-8080-app.localhost:3000"}, // needs its port
		{local, sb("dns", "53/udp", "8080/tcp"), "http://dns.localhost:3000"},      // the first TCP port
		{local, sb("dns", "53/udp"), ""},                                           // no TCP port
		{local, sb("none"), ""},                                                    // no port at all
		{local, &opensbx.Sandbox{ID: "x", Ports: []string{"8080/tcp"}}, ""},        // no name
		{local, sb("-bad", "8080/tcp"), ""},                                        // not a host name
	} {
		if got := c.p.URL(c.sb); got != c.want {
			t.Errorf("URL(%q %v) = %q, want %q", c.sb.Name, c.sb.Ports, got, c.want)
		}
	}
	web := sb("web", "8080/tcp", "9090/tcp", "53/udp")
	for port, want := range map[string]string{
		"9090": "http://9090-web.localhost:3000", "9090/tcp": "http://9090-web.localhost:3000",
		"8080": "http://8080-web.localhost:3000", "53": "", "53/udp": "", "1234": "", "x": "", "": "",
	} {
		if got := local.PortURL(web, port); got != want {
			t.Errorf("PortURL(%q) = %q, want %q", port, got, want)
		}
	}

	priv := sb("web", "8080/tcp")
	priv.Private = true
	u, exp := local.SignedURL(priv)
	wantExp := time.Unix(1_800_000_000, 0).Add(DefaultLinkTTL)
	if !exp.Equal(wantExp) || !strings.HasPrefix(u, "http://web.localhost:3000/?"+LinkParam+"=") {
		t.Errorf("SignedURL = %q, %v", u, exp)
	}
	v, _, _ := takeParam(u[strings.IndexByte(u, '?')+1:], LinkParam)
	if local.sign.verifyStamp(purposeLink, priv.ID, v, time.Unix(1_800_000_000, 0)) != stampValid {
		t.Errorf("SignedURL's link %q does not verify", v)
	}
}

func TestMatches(t *testing.T) {
	p := testProxy(t, WithBaseURL("https://sbx.example.com"))
	for host, want := range map[string]bool{
		"web.sbx.example.com": true, "8080-web.sbx.example.com:443": true, "WEB.SBX.EXAMPLE.COM": true,
		"sbx.example.com": false, "api.example.com": false, "web.localhost": false, "0-web.sbx.example.com": false,
	} {
		if got := p.Matches(host); got != want {
			t.Errorf("Matches(%q) = %v", host, got)
		}
	}
}

func TestTakeParam(t *testing.T) {
	for _, c := range []struct {
		in, value, rest string
		found           bool
	}{
		{"opensbx_preview=abc", "abc", "", true},
		{"a=1&opensbx_preview=abc&b=2", "abc", "a=1&b=2", true},
		{"b=2&a=1&opensbx_preview=x", "x", "b=2&a=1", true}, // order kept, not sorted
		{"opensbx_preview=1&opensbx_preview=2", "1", "", true},
		{"opensbx%5Fpreview=abc", "abc", "", true}, // an escaped name is the same name
		{"opensbx_preview=a%2Bb", "a+b", "", true},
		{"x=opensbx_preview", "", "x=opensbx_preview", false},
		{"a=1&b=%zz", "", "a=1&b=%zz", false},
		{"", "", "", false},
	} {
		v, rest, found := takeParam(c.in, LinkParam)
		if v != c.value || rest != c.rest || found != c.found {
			t.Errorf("takeParam(%q) = %q, %q, %v", c.in, v, rest, found)
		}
	}
}

func TestDropCookie(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want []string
	}{
		{[]string{"a=1; opensbx_preview=x; b=2"}, []string{"a=1; b=2"}},
		{[]string{"opensbx_preview=x"}, nil},
		{[]string{"a=1", "opensbx_preview=x"}, []string{"a=1"}},
		{[]string{"opensbx_previewX=1; a"}, []string{"opensbx_previewX=1; a"}},
	} {
		h := http.Header{"Cookie": c.in}
		dropCookie(h, CookieName)
		got := h.Values("Cookie")
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("dropCookie(%q) = %q, want %q", c.in, got, c.want)
		}
		for _, v := range got {
			if strings.Contains(v, CookieName+"=") {
				t.Errorf("dropCookie(%q) kept ours: %q", c.in, got)
			}
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/": "/", "/a/b": "/a/b", "//evil.example/x": "/evil.example/x", "/\\evil": "/evil", "///": "/",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBearer(t *testing.T) {
	for v, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc", "Basic abc": "", "Bearer": "", "Bearer ": "", "": "",
	} {
		got, ok := bearer(http.Header{"Authorization": {v}})
		if got != want || ok != (want != "") {
			t.Errorf("bearer(%q) = %q, %v", v, got, ok)
		}
	}
}
