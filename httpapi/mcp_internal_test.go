package httpapi

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
)

func TestIsLoopbackHost(t *testing.T) {
	for _, c := range []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"localhost:8080", true},
		{"LocalHost.:80", true},
		{"app.localhost:3000", true},
		{"127.0.0.1", true},
		{"127.9.9.9:1", true},
		{"[::1]:8080", true},
		{"::1", true},
		{"[::ffff:127.0.0.1]:80", true},
		{"", false},
		{"example.com", false},
		{"localhost.example.com", false},
		{"127.0.0.1.nip.io", false},
		{"10.0.0.1:80", false},
		{"[::2]:80", false},
		{"0.0.0.0", false},
	} {
		if got := isLoopbackHost(c.host); got != c.want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", c.host, got, c.want)
		}
	}
}

// TestHostCheckOnlyOnLoopback checks that the Host check applies to
// requests that arrived on a loopback address only.
func TestHostCheckOnlyOnLoopback(t *testing.T) {
	s := newServer(nil, []Option{WithAllowedHosts("Proxy.Example.")})
	for _, c := range []struct {
		local net.Addr
		host  string
		want  bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "evil.example:8080", false},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8080}, "evil.example", false},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "localhost:8080", true},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "proxy.example:443", true},
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 8080}, "evil.example", true}, // a public listener: nothing to rebind to
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "evil.example", true},
		{nil, "evil.example", true}, // no connection (an in-process call)
	} {
		r := httptest.NewRequest("POST", "/v1/mcp", nil)
		r.Host = c.host
		if c.local != nil {
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, c.local))
		}
		if got := s.hostAllowed(r); got != c.want {
			t.Errorf("local %v, Host %q: allowed %v, want %v", c.local, c.host, got, c.want)
		}
	}
}

// TestTailKeepsTheNewestBytes is a randomised model test of tail: what it
// keeps is the end of everything written, cut at a character boundary, and
// kept plus dropped is all of it.
func TestTailKeepsTheNewestBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	text := [][]byte{[]byte("a"), []byte("héllo "), []byte("日本語"), bytes.Repeat([]byte("x"), 700)}
	binary := append(text, []byte{0xff, 0xfe})
	for round := 0; round < 400; round++ {
		pieces := text
		if round%2 == 1 {
			pieces = binary
		}
		tl := &tail{max: 1 + rng.IntN(1000)}
		var all []byte
		for i := rng.IntN(50); i > 0; i-- {
			p := pieces[rng.IntN(len(pieces))]
			tl.write(p)
			all = append(all, p...)
		}
		got := tl.bytes()
		if int64(len(got))+tl.dropped != int64(len(all)) {
			t.Fatalf("kept %d + dropped %d != written %d", len(got), tl.dropped, len(all))
		}
		if !bytes.HasSuffix(all, got) || len(got) > tl.max {
			t.Fatalf("kept %d bytes (max %d) that are not the end of the output", len(got), tl.max)
		}
		if len(all) > tl.max && len(got) < tl.max-utf8.UTFMax {
			t.Fatalf("kept %d of max %d", len(got), tl.max)
		}
		if utf8.Valid(all) && !utf8.Valid(got) {
			t.Fatalf("text cut inside a character: %q", got)
		}
	}
}

func TestDecodeArgs(t *testing.T) {
	type args struct {
		ID   string `json:"id"`
		Wait bool   `json:"wait,omitempty"`
	}
	schema, err := jsonschema.For[args](nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		raw string
		ok  bool
	}{
		{``, true},
		{`null`, true},
		{`{}`, true},
		{`{"id":"x","wait":true}`, true},
		{`{"id":null}`, true},
		{`{"id":"x","extra":1}`, false},
		{`{"id":1}`, false},
		{`[]`, false},
		{`"id"`, false},
	} {
		var a args
		err := decodeArgs([]byte(c.raw), schema, &a)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v", c.raw, err)
		}
		if err != nil {
			if status, code, _ := classify(err); status != 400 || code != codeBadRequest {
				t.Errorf("%s: %d %s", c.raw, status, code)
			}
		}
	}
}

// TestMCPSchemasGenerate builds the MCP server (addTool panics when a
// schema cannot be generated) and checks the schema fixes.
func TestMCPSchemasGenerate(t *testing.T) {
	s := newServer(nil, nil)
	s.newMCPServer()
	in, err := jsonschema.For[commandKillArgs](nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := in.Properties["signal"]; !ok {
		t.Fatal("command_kill has no signal argument")
	}
}
