package main

import (
	"context"
	"errors"
	"sync"
)

// forEach calls f(ctx, i) for every i in [0, n) on at most conc
// goroutines. The first error cancels the context the other calls get,
// stops handing out new i and is returned once every call has returned.
func forEach(ctx context.Context, n, conc int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(conc, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(ctx, i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// forAll is forEach that does not stop at an error: every f runs, and the
// errors come back joined. For cleanup.
func forAll(ctx context.Context, n, conc int, f func(context.Context, int) error) error {
	var mu sync.Mutex
	var errs []error
	forEach(ctx, n, conc, func(ctx context.Context, i int) error {
		if err := f(ctx, i); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		return nil
	})
	return errors.Join(errs...)
}

// idList collects ids from concurrent calls.
type idList struct {
	mu  sync.Mutex
	ids []string
}

func (l *idList) add(id string) {
	l.mu.Lock()
	l.ids = append(l.ids, id)
	l.mu.Unlock()
}

// get returns a copy of the ids so far.
func (l *idList) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...)
}

// take returns the ids so far and empties the list.
func (l *idList) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := l.ids
	l.ids = nil
	return ids
}
