package proxy

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// RateLimit is a route's local token-bucket rate limit, per process. The
// zero value is no limit.
type RateLimit struct {
	// RequestsPerSecond is the refill rate (0: no limit).
	RequestsPerSecond float64
	// Burst is the bucket size (default: RequestsPerSecond rounded up, at
	// least 1).
	Burst int
}

// rateLimiter is a token bucket kept as a generic cell rate algorithm: one
// atomic "theoretical arrival time" instead of a token count and a refill
// time, so that admitting a request is one compare-and-swap and never
// allocates.
type rateLimiter struct {
	interval int64        // nanoseconds per token
	burst    int64        // bucket size in nanoseconds (Burst × interval)
	tat      atomic.Int64 // theoretical arrival time, ns since base
	base     time.Time
}

func newRateLimiter(l RateLimit) (*rateLimiter, error) {
	if l.RequestsPerSecond == 0 {
		if l.Burst != 0 {
			return nil, fmt.Errorf("rate limit burst %d needs requests per second", l.Burst)
		}
		return nil, nil
	}
	if !(l.RequestsPerSecond > 0 && l.RequestsPerSecond <= 1e9) || l.Burst < 0 {
		return nil, fmt.Errorf("rate limit %g/s burst %d is out of range", l.RequestsPerSecond, l.Burst)
	}
	burst := l.Burst
	if burst == 0 {
		burst = max(1, int(math.Ceil(l.RequestsPerSecond)))
	}
	iv := int64(float64(time.Second) / l.RequestsPerSecond)
	return &rateLimiter{interval: max(iv, 1), burst: int64(burst) * max(iv, 1), base: time.Now()}, nil
}

// allow takes a token at now (ns since base). When the bucket is empty it
// returns false and the time until the next token.
func (l *rateLimiter) allow(now int64) (bool, time.Duration) {
	for {
		tat := l.tat.Load()
		next := max(tat, now) + l.interval
		if over := next - now - l.burst; over > 0 {
			return false, time.Duration(over)
		}
		if l.tat.CompareAndSwap(tat, next) {
			return true, 0
		}
	}
}

// rateLimited answers 429 with Retry-After when the route's bucket is empty,
// and reports whether it did.
func (rt *route) rateLimited(w http.ResponseWriter) bool {
	l := rt.limiter
	if l == nil {
		return false
	}
	ok, wait := l.allow(int64(time.Since(l.base)))
	if ok {
		return false
	}
	rt.res.rateLimited()
	secs := int64(math.Ceil(wait.Seconds()))
	h := w.Header()
	h.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusTooManyRequests)
	w.Write([]byte("rate limited\n"))
	return true
}
