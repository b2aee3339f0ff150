//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package testenv

import "context"

// lock is a no-op where flock is missing: concurrent builds of one tag
// still succeed with the legacy builder, they only duplicate work.
func lock(context.Context) (unlock func(), err error) {
	return func() {}, nil
}
