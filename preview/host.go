package preview

import (
	"errors"
	"strconv"
	"strings"
)

// Why a Host header names no sandbox port; each is a 404 whose body is the
// error's text.
var (
	errNotPreviewHost = errors.New("not a sandbox preview host")
	errBadName        = errors.New("not a valid sandbox name")
	errBadPort        = errors.New("not a valid port number (1-65535)")
)

// maxHostLen bounds the Host values parseHost looks at (a label of at most
// 63 characters, a port prefix, the base domain and a port fit easily).
const maxHostLen = 512

// parseHost reads a Host header value under the base domain base (lower
// case, without port or trailing dot): "<name>.<base>" names a sandbox's
// main port (port 0), "<port>-<name>.<base>" one of its ports. Letters are
// folded to lower case and a port after the host ("…:3000") or one
// trailing dot is ignored. A label that starts with digits and a '-' is
// always a port prefix, so a sandbox whose name looks like "8080-app" is
// reached only as "<port>-8080-app.<base>" (hostLabel writes it that way).
// The name that comes back is lower case and matches the sandbox name
// syntax; it may contain dots.
func parseHost(host, base string) (name string, port int, err error) {
	if len(host) > maxHostLen || base == "" {
		return "", 0, errNotPreviewHost
	}
	if strings.HasPrefix(host, "[") { // an IPv6 literal
		return "", 0, errNotPreviewHost
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		if !allDigits(host[i+1:]) {
			return "", 0, errNotPreviewHost
		}
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 0x80 {
			return "", 0, errNotPreviewHost // no IDNA: punycode labels are ASCII
		}
	}
	host = strings.ToLower(host)
	label, ok := strings.CutSuffix(host, "."+base)
	if !ok || label == "" {
		return "", 0, errNotPreviewHost
	}
	if n := leadingDigits(label); n > 0 && n < len(label) && label[n] == '-' {
		p, ok := parsePort(label[:n])
		if !ok {
			return "", 0, errBadPort
		}
		port, label = p, label[n+1:]
	}
	if !validHostName(label) {
		return "", 0, errBadName
	}
	return label, port, nil
}

// hostLabel is the part of a preview host before the base domain: the
// sandbox name in lower case, prefixed with "<port>-" when explicit is set
// or when the name itself starts like a port prefix (then port must be
// the sandbox's main port). It returns "" when name cannot appear in a
// host or port is out of range.
func hostLabel(name string, port int, explicit bool) string {
	name = strings.ToLower(name)
	if !validHostName(name) || port < 0 || port > 65535 {
		return ""
	}
	if n := leadingDigits(name); n > 0 && n < len(name) && name[n] == '-' {
		explicit = true
	}
	if !explicit {
		return name
	}
	if port == 0 {
		return ""
	}
	return strconv.Itoa(port) + "-" + name
}

// validHostName reports whether s is a sandbox name in lower case:
// [a-z0-9][a-z0-9_.-]{0,62}.
func validHostName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// validBaseDomain reports whether s is a lower-case DNS name of at least
// one label: letters, digits and inner hyphens, dot-separated.
func validBaseDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return !allDigits(strings.ReplaceAll(s, ".", "")) // not an IPv4 address
}

// parsePort reads a port number 1-65535 written without leading zeros.
func parsePort(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 || s[0] == '0' || !allDigits(s) {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, false
	}
	return n, true
}

func leadingDigits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

func allDigits(s string) bool { return leadingDigits(s) == len(s) }
