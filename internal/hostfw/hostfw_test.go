package hostfw

import (
	"net/netip"
	"testing"
)

func TestParseCIDRs(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
		bad  bool
	}{
		{in: []string{"10.0.0.0/8", "192.0.2.7", "192.0.2.9/24"}, want: []string{"10.0.0.0/8", "192.0.2.7/32", "192.0.2.0/24"}},
		{in: []string{"::1"}, bad: true},
		{in: []string{"2001:db8::/32"}, bad: true},
		{in: []string{"10.0.0.0/33"}, bad: true},
		{in: []string{"example.com"}, bad: true},
		{in: []string{"10.0.0.0/8 -j ACCEPT"}, bad: true},
		{in: make([]string, 65), bad: true},
	} {
		got, err := ParseCIDRs(tc.in)
		if tc.bad != (err != nil) {
			t.Errorf("ParseCIDRs(%q): err %v", tc.in, err)
			continue
		}
		if !tc.bad && len(got) != len(tc.want) {
			t.Errorf("ParseCIDRs(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for i := range tc.want {
			if !tc.bad && got[i] != tc.want[i] {
				t.Errorf("ParseCIDRs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		}
	}
	for _, b := range []string{"osbx0", "osbx0123abcd", "osbx", "osbx0123456789ab", "docker0", "osbx-x", "osbx+"} {
		want := b == "osbx0" || b == "osbx0123abcd"
		if ValidBridge(b) != want {
			t.Errorf("ValidBridge(%q) = %v", b, !want)
		}
	}
}

// FuzzParseCIDRs: an accepted destination is a canonical IPv4 prefix, so
// nothing else can reach an iptables argument.
func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "1.2.3.4", "::1", "x", "1.2.3.4/32 -j ACCEPT", "01.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := ParseCIDRs([]string{s})
		if err != nil {
			return
		}
		p, err := netip.ParsePrefix(out[0])
		if err != nil || !p.Addr().Is4() || p.Masked().String() != out[0] {
			t.Fatalf("ParseCIDRs(%q) = %q", s, out[0])
		}
	})
}
