package poll

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	b := Backoff{Min: time.Microsecond, Max: time.Millisecond}
	calls := 0
	err := Until(context.Background(), b, func() (bool, error) { calls++; return calls == 5, nil })
	if err != nil || calls != 5 {
		t.Fatalf("done after %d calls, err %v; want 5, nil", calls, err)
	}
	boom := errors.New("boom")
	calls = 0
	err = Until(context.Background(), b, func() (bool, error) { calls++; return false, boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("error after %d calls: %v; want 1, boom", calls, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	err = Until(ctx, b, func() (bool, error) {
		calls++
		if calls == 3 {
			cancel()
		}
		return false, nil
	})
	if !errors.Is(err, context.Canceled) || calls != 3 {
		t.Fatalf("cancelled after %d calls: %v; want 3, context.Canceled", calls, err)
	}
}
