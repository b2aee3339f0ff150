package preview

import (
	"context"
	"errors"
	"testing"

	"github.com/opensbx/opensbx"
)

func TestPick(t *testing.T) {
	lower := &route{id: "1", name: "app"}
	upper := &route{id: "2", name: "App"}
	shout := &route{id: "3", name: "APP"}
	for _, c := range []struct {
		rs   []*route
		want *route
		err  error
	}{
		{nil, nil, errNoSandbox},
		{[]*route{upper}, upper, nil},               // found in any case
		{[]*route{upper, lower, shout}, lower, nil}, // the lower-case name wins
		{[]*route{upper, shout}, nil, errAmbiguous}, // none is lower case
	} {
		got, err := pick(c.rs, "app")
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("pick(%v) = %v, %v", c.rs, got, err)
		}
	}
}

func TestTCPPort(t *testing.T) {
	r := &route{ports: []string{"53/udp", "8080/tcp", "9090/tcp"}}
	for port, want := range map[int]string{0: "8080/tcp", 8080: "8080/tcp", 9090: "9090/tcp", 53: "", 1234: ""} {
		if got := r.tcpPort(port); got != want {
			t.Errorf("tcpPort(%d) = %q, want %q", port, got, want)
		}
	}
}

func TestDialIP(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "10.1.2.3": "10.1.2.3", "": "127.0.0.1", "::1": "::1",
	} {
		if got := dialIP(in); got != want {
			t.Errorf("dialIP(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStateAnswer(t *testing.T) {
	for st, code := range map[opensbx.State]string{
		opensbx.StatePaused: "paused", opensbx.StateStopped: "stopped", opensbx.StateRestarting: "restarting",
		opensbx.StateRemoving: "removing", "dead": "not-running",
	} {
		a := stateAnswer(&route{name: "x", state: st})
		if a == nil || a.status != 503 || a.code != code {
			t.Errorf("%s: %+v", st, a)
		}
	}
	if a := stateAnswer(&route{state: opensbx.StateRunning}); a != nil {
		t.Errorf("running: %+v", a)
	}
}

func TestUpstreamHost(t *testing.T) {
	// What upstreamHost writes, dial reads back; the id keeps two
	// sandboxes apart in the connection pool even on one host port.
	a := upstreamHost(&route{id: "aaaa", hostIP: "127.0.0.1"}, "32768")
	b := upstreamHost(&route{id: "bbbb", hostIP: "127.0.0.1"}, "32768")
	if a == b || a != "32768.7f000001.aaaa.invalid" {
		t.Errorf("upstreamHost: %q, %q", a, b)
	}
	if h := upstreamHost(&route{id: "x", hostIP: "::1"}, "1"); h != "1.00000000000000000000000000000001.x.invalid" {
		t.Errorf("IPv6: %q", h)
	}
}

func TestDialRefusesOtherAddresses(t *testing.T) {
	p := testProxy(t)
	for _, addr := range []string{"example.com:80", "127.0.0.1:22", "32768.7f000001.aaaa.example:80", "0.7f000001.aaaa.invalid:80", "1.7f00.aaaa.invalid:80", "x:y:z"} {
		c, err := p.dial(context.Background(), "tcp", addr)
		if err == nil {
			c.Close()
			t.Errorf("dial(%q) connected", addr)
		} else if !errors.As(err, new(*dialError)) {
			t.Errorf("dial(%q): %v is not a dialError", addr, err)
		}
	}
}
