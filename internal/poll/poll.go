// Package poll repeats a check with a growing delay until it is satisfied,
// fails, or its context ends: the one backoff loop of Opensbx.
package poll

import (
	"context"
	"time"
)

// Backoff is a delay that starts at Min and doubles up to Max.
type Backoff struct {
	Min, Max time.Duration
}

// Until calls check, then again after each delay of b, until check reports
// done (Until returns nil) or an error (returned), or ctx ends (ctx.Err()).
// The first call is immediate.
func Until(ctx context.Context, b Backoff, check func() (done bool, err error)) error {
	delay := max(b.Min, time.Microsecond)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		delay = min(2*delay, max(b.Max, b.Min))
	}
}
