package watttime

import "time"

// window is a sliding-window limiter: at most limit events in any period.
// It is not safe for concurrent use; the Client guards it with its mutex.
type window struct {
	limit  int
	period time.Duration
	ring   []time.Time // the last limit event times, oldest at next once full
	next   int
	n      int
}

func newWindow(limit int, period time.Duration) *window {
	return &window{limit: limit, period: period, ring: make([]time.Time, limit)}
}

// take records an event at now if the window has room. Otherwise it records
// nothing and returns how long until the oldest event leaves the window.
func (w *window) take(now time.Time) (wait time.Duration, ok bool) {
	if w.n == w.limit {
		if d := w.ring[w.next].Add(w.period).Sub(now); d > 0 {
			return d, false
		}
	}
	w.ring[w.next] = now
	w.next = (w.next + 1) % w.limit
	if w.n < w.limit {
		w.n++
	}
	return 0, true
}

// room reports how long until take would succeed at now (zero: now).
func (w *window) room(now time.Time) time.Duration {
	if w.n < w.limit {
		return 0
	}
	return max(w.ring[w.next].Add(w.period).Sub(now), 0)
}
