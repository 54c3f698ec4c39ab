package carbon

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// bucket is a token bucket limiting calls to one provider. A nil bucket
// never limits.
type bucket struct {
	mu     sync.Mutex
	every  time.Duration
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rl RateLimit) *bucket {
	if rl.Every < 0 {
		return nil
	}
	burst := float64(max(rl.Burst, 1))
	return &bucket{every: rl.Every, burst: burst, tokens: burst}
}

// reserve takes a token and returns how long the caller must wait before
// using it. If that is longer than maxWait it takes nothing and returns
// ok false.
func (b *bucket) reserve(now time.Time, maxWait time.Duration) (wait time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+float64(now.Sub(b.last))/float64(b.every))
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	wait = time.Duration((1 - b.tokens) * float64(b.every))
	if wait > maxWait {
		return 0, false
	}
	b.tokens--
	return wait, true
}

// wait blocks until the caller may call the provider, or fails with
// ErrRateLimited when that would take longer than maxWait.
func (b *bucket) wait(ctx context.Context, maxWait time.Duration) error {
	if b == nil {
		return nil
	}
	d, ok := b.reserve(time.Now(), maxWait)
	if !ok {
		return fmt.Errorf("local limit of one call per %s: %w", b.every, ErrRateLimited)
	}
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
