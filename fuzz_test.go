package opensbx

import (
	"context"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opensbx/opensbx/internal/clock"
)

// Fuzz tests of every parser that sees a caller's input. Each checks a
// property, not only the absence of a panic. `make fuzz` runs them longer.

// FuzzResolve: whatever a caller sends as a sandbox id resolves to one of
// the Manager's own sandboxes or fails, and never reaches the engine as an
// id unless it is a full one.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"", "alpha", "0", "abcd", "../distribution/busybox", "..%2Fnetworks%2Fbridge",
		"a/b", "x\x00y", strings.Repeat("a", 64), strings.Repeat("0", 65), "ALPHA", "al pha", "-x", ".x"} {
		f.Add(s)
	}
	clk := clock.NewFake(time.Now())
	fe := newFakeEngine(clk)
	m, err := New(context.Background(), withEngine(fe), withClock(clk), WithAgent(false), WithNamespace("fuzz"))
	if err != nil {
		f.Fatal(err)
	}
	defer m.Close()
	res, err := m.Create(context.Background(), CreateOptions{Image: fakeImage, Name: "alpha"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		before := len(fe.Calls())
		id, err := m.index.resolve(context.Background(), ref)
		if err == nil && id != res.ID {
			t.Fatalf("resolve(%q) = %s, not the one sandbox", ref, id)
		}
		for _, c := range fe.Calls()[before:] {
			if c.Arg != "" && c.Arg != res.ID {
				t.Fatalf("resolve(%q) sent %s(%q) to the engine", ref, c.Method, c.Arg)
			}
		}
	})
}

var portRE = regexp.MustCompile(`^[1-9][0-9]{0,4}/(tcp|udp|sctp)$`)

// FuzzNormalizePort: an accepted port spec is canonical and stable.
func FuzzNormalizePort(f *testing.F) {
	for _, s := range []string{"8080", "53/udp", "80/TCP", "0", "65536", "08080", " 1 ", "1/", "/tcp", "1/icmp", "9999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := normalizePort(s)
		if err != nil {
			return
		}
		if !portRE.MatchString(p) {
			t.Fatalf("normalizePort(%q) = %q, not canonical", s, p)
		}
		if again, err := normalizePort(p); err != nil || again != p {
			t.Fatalf("normalizePort(%q) = %q, %v; not stable", p, again, err)
		}
	})
}

// FuzzParseReference: an accepted image reference is normalised stably
// and can never name another Engine API path.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"busybox", "busybox:1", "127.0.0.1:5000/ns/img:1", "docker.io/library/x",
		"x@sha256:" + strings.Repeat("a", 64), "../x", "X", "a//b", "sha256:abc", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseReference(s)
		if err != nil {
			return
		}
		// The reference goes into Engine API paths (/images/{ref}/json):
		// no segment of it may be a dot segment, and nothing may end the
		// path or escape into it. A tag may hold ".." ("x:1..2" is a valid
		// tag): inside a segment it is no dot segment.
		for _, seg := range strings.Split(ref, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("ParseReference(%q) = %q: segment %q", s, ref, seg)
			}
		}
		if strings.ContainsAny(ref, " \x00?#%\\") {
			t.Fatalf("ParseReference(%q) = %q", s, ref)
		}
		if again, err := ParseReference(ref); err != nil || again != ref {
			t.Fatalf("ParseReference(%q) = %q, %v; not stable", ref, again, err)
		}
	})
}

// FuzzCleanFilePath: an accepted path is absolute, clean and literal.
func FuzzCleanFilePath(f *testing.F) {
	for _, s := range []string{"/", "/a/./b/../c", "relative", "/a\x00b", "//x//", "/$(rm -rf /)", "/a b/'c'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := cleanFilePath(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.IndexByte(p, 0) >= 0 || strings.Contains(p, "/../") {
			t.Fatalf("cleanFilePath(%q) = %q", s, p)
		}
	})
}

// FuzzCursor: an accepted cursor round-trips.
func FuzzCursor(f *testing.F) {
	for _, s := range []string{"", "c1.0.0", "c1.12.7", "c1.-1.0", "c2.0.0", "c1.0", "c1.00.1", "c1.9223372036854775807.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pos, err := parseCursor(s)
		if err != nil {
			return
		}
		if pos.Stdout < 0 || pos.Stderr < 0 {
			t.Fatalf("parseCursor(%q) = %+v", s, pos)
		}
		again, err := parseCursor(encodeCursor(pos))
		if err != nil || again != pos {
			t.Fatalf("cursor %+v does not round-trip: %+v, %v", pos, again, err)
		}
	})
}

// FuzzParseSignal: an accepted signal is a Linux signal number.
func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"9", "SIGTERM", "term", "0", "65", "-1", "SIG", "", "KILL ", "sigrtmin"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignal(s)
		if err == nil && (sig < 1 || sig > maxSignal) {
			t.Fatalf("ParseSignal(%q) = %d", s, sig)
		}
	})
}

// FuzzProcFiles: whatever /proc says (a hostile process names itself),
// parsing never panics and a start time comes only from a well-formed
// line.
func FuzzProcFiles(f *testing.F) {
	f.Add("1 (sh) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1234 0 0", "NSpid:\t42\t7\n")
	f.Add("1 (a) b) c) S 2 3 4", "NSpid:\n")
	f.Add(")", "NSpid: x")
	f.Fuzz(func(t *testing.T, stat, status string) {
		parseStat(stat)
		parseNSpid(status)
	})
}
