package preview

import "time"

// WithCacheTTL is withCacheTTL for the tests of package preview_test.
var WithCacheTTL = withCacheTTL

// Retries counts the routes p looked up again after a failed connect.
func Retries(p *Proxy) int64 { return p.retries.Load() }

// LinkAt is a signed link parameter for the sandbox id that expires at exp.
func LinkAt(p *Proxy, id string, exp time.Time) string { return p.sign.stamp(purposeLink, id, exp) }

// Deaf stops p hearing the Manager's events, as if a change had come
// without one (or the event were late).
func Deaf(p *Proxy) { p.unsub() }
