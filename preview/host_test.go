package preview

import (
	"strings"
	"testing"
)

func TestParseHost(t *testing.T) {
	for _, c := range []struct {
		host, base string
		name       string
		port       int
		err        error
	}{
		{"web.localhost", "localhost", "web", 0, nil},
		{"web.localhost:3000", "localhost", "web", 0, nil},              // port ignored
		{"WEB.LocalHost:3000", "localhost", "web", 0, nil},              // case folded
		{"web.localhost.", "localhost", "web", 0, nil},                  // trailing dot
		{"8081-web.localhost", "localhost", "web", 8081, nil},           // port prefix
		{"65535-web.localhost", "localhost", "web", 65535, nil},         // largest port
		{"1-a.localhost", "localhost", "a", 1, nil},                     // smallest
		{"8080-8080-app.localhost", "localhost", "8080-app", 8080, nil}, // a name that looks like a prefix
		{"8080.localhost", "localhost", "8080", 0, nil},                 // digits alone are a name
		{"my.app.localhost", "localhost", "my.app", 0, nil},             // dots stay in the name
		{"my_app-1.localhost", "localhost", "my_app-1", 0, nil},         // underscores too
		{"a.sbx.example.com", "sbx.example.com", "a", 0, nil},           // public domain
		{"3000-a.sbx.example.com:443", "sbx.example.com", "a", 3000, nil},
		{strings.Repeat("a", 63) + ".localhost", "localhost", strings.Repeat("a", 63), 0, nil},

		{"localhost", "localhost", "", 0, errNotPreviewHost},       // the base itself
		{"localhost:3000", "localhost", "", 0, errNotPreviewHost},  // with a port
		{".localhost", "localhost", "", 0, errNotPreviewHost},      // empty label
		{"web.example.com", "localhost", "", 0, errNotPreviewHost}, // another domain
		{"weblocalhost", "localhost", "", 0, errNotPreviewHost},    // no dot before the base
		{"web.localhost.evil.com", "localhost", "", 0, errNotPreviewHost},
		{"127.0.0.1:3000", "localhost", "", 0, errNotPreviewHost},     // an IP
		{"[::1]:3000", "localhost", "", 0, errNotPreviewHost},         // an IPv6 literal
		{"web.localhost:http", "localhost", "", 0, errNotPreviewHost}, // a port that is no number
		{"wéb.localhost", "localhost", "", 0, errNotPreviewHost},      // not ASCII
		{"", "localhost", "", 0, errNotPreviewHost},
		{"web.localhost", "", "", 0, errNotPreviewHost}, // no base
		{strings.Repeat("a", maxHostLen) + ".localhost", "localhost", "", 0, errNotPreviewHost},

		{"0-web.localhost", "localhost", "", 0, errBadPort},      // port 0
		{"08080-web.localhost", "localhost", "", 0, errBadPort},  // leading zero
		{"65536-web.localhost", "localhost", "", 0, errBadPort},  // too large
		{"123456-web.localhost", "localhost", "", 0, errBadPort}, // too long
		{"8080-.localhost", "localhost", "", 0, errBadName},      // a port and no name
		{"-web.localhost", "localhost", "", 0, errBadName},       // starts with '-'
		{"_web.localhost", "localhost", "", 0, errBadName},
		{"a..localhost", "localhost", "a.", 0, nil}, // "a." is a valid sandbox name
		{"a b.localhost", "localhost", "", 0, errBadName},
		{"a/b.localhost", "localhost", "", 0, errBadName},
		{strings.Repeat("a", 64) + ".localhost", "localhost", "", 0, errBadName}, // name too long
	} {
		name, port, err := parseHost(c.host, c.base)
		if name != c.name || port != c.port || err != c.err {
			t.Errorf("parseHost(%q, %q) = %q, %d, %v; want %q, %d, %v", c.host, c.base, name, port, err, c.name, c.port, c.err)
		}
	}
}

func TestHostLabel(t *testing.T) {
	for _, c := range []struct {
		name     string
		port     int
		explicit bool
		want     string
	}{
		{"web", 8080, false, "web"},
		{"web", 8080, true, "8080-web"},
		{"Web.App", 8080, false, "web.app"},        // lower case, dots kept
		{"8080-app", 3000, false, "3000-8080-app"}, // needs its port to parse back
		{"8080-app", 0, false, ""},                 // and cannot do without
		{"8080", 3000, false, "8080"},              // digits alone are fine
		{"-x", 80, false, ""},                      // not a sandbox name
		{"a b", 80, false, ""},                     // idem
		{strings.Repeat("a", 64), 80, false, ""},   // too long
		{"web", 70000, true, ""},                   // no such port
		{"web", 0, true, ""},                       // explicit needs a port
	} {
		if got := hostLabel(c.name, c.port, c.explicit); got != c.want {
			t.Errorf("hostLabel(%q, %d, %v) = %q, want %q", c.name, c.port, c.explicit, got, c.want)
		}
	}
}

func TestValidBaseDomain(t *testing.T) {
	for s, want := range map[string]bool{
		"localhost": true, "sbx.example.com": true, "a-b.c": true, "x1.localhost": true,
		"": false, "-a.com": false, "a-.com": false, "a..com": false, "127.0.0.1": false,
		"a_b.com": false, "Example.com": false, strings.Repeat("a", 64) + ".com": false,
	} {
		if got := validBaseDomain(s); got != want {
			t.Errorf("validBaseDomain(%q) = %v", s, got)
		}
	}
}

// FuzzParseHost checks that parseHost never panics, that whatever it
// accepts is a valid lower-case sandbox name with a valid port, and that
// hostLabel writes every accepted name back into a host that parses to the
// same route.
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"web.localhost", "8081-web.localhost:3000", "8080-8080-app.localhost", "WEB.localhost.", "[::1]:80", "0-a.localhost", "a..localhost"} {
		f.Add(s, "localhost")
	}
	f.Add("3000-a.sbx.example.com:443", "sbx.example.com")
	f.Fuzz(func(t *testing.T, host, base string) {
		name, port, err := parseHost(host, base)
		if err != nil {
			if name != "" || port != 0 {
				t.Fatalf("parseHost(%q, %q) = %q, %d with error %v", host, base, name, port, err)
			}
			return
		}
		if !validHostName(name) || name != strings.ToLower(name) {
			t.Fatalf("parseHost(%q, %q): bad name %q", host, base, name)
		}
		if port < 0 || port > 65535 {
			t.Fatalf("parseHost(%q, %q): bad port %d", host, base, port)
		}
		// Writing the route back gives a host with the same route. A name
		// that starts like a port prefix only ever comes with a port.
		label := hostLabel(name, port, port != 0)
		if label == "" {
			t.Fatalf("hostLabel(%q, %d) is empty", name, port)
		}
		n2, p2, err := parseHost(label+"."+base, base)
		if err != nil || n2 != name || p2 != port {
			t.Fatalf("round trip of %q: %q, %d, %v; want %q, %d", host, n2, p2, err, name, port)
		}
		if port == 0 {
			// The plain form is only produced for names that need no port.
			if l := hostLabel(name, 80, false); l != name {
				t.Fatalf("name %q parsed without a port but needs one: %q", name, l)
			}
		}
	})
}
