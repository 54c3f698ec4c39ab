package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Request body limit and client body errors.
//
// A route's MaxBodyBytes bounds the request body. A declared Content-Length
// over it is answered 413 before anything goes upstream; a chunked body that
// grows past it fails the read that crosses the limit, and the upstream
// exchange then ends as 413 too. Other failures to read the client's body
// are the client's fault, not the upstream's: malformed chunked framing is
// 400, a body that arrives too slowly (the listener's read deadline) is 408.
// [StatusFor] maps a *BodyError to its status.

// BodyError is a failure to read the client's request body.
type BodyError struct {
	// Status is the answer: 400, 408 or 413.
	Status int
	// Err is the read error (nil for 413).
	Err error
}

func (e *BodyError) Error() string {
	switch e.Status {
	case http.StatusRequestEntityTooLarge:
		return "request body too large"
	case http.StatusRequestTimeout:
		return "read request body: " + e.Err.Error()
	}
	return "read request body: " + e.Err.Error()
}

func (e *BodyError) Unwrap() error { return e.Err }

func (e *BodyError) text() string {
	switch e.Status {
	case http.StatusRequestEntityTooLarge:
		return "request body too large"
	case http.StatusRequestTimeout:
		return "request body timed out"
	}
	return "malformed request body"
}

// clientBody wraps a request body: it enforces the limit and classifies
// read errors. Read and Close may be called from different goroutines (the
// transport writes the body while the handler waits).
type clientBody struct {
	rc    io.ReadCloser
	left  int64 // bytes still allowed; < 0: no limit
	mu    sync.Mutex
	err   *BodyError
	count func(*BodyError)
}

func (b *clientBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if b.left >= 0 && int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if b.left >= 0 {
		if int64(n) > b.left {
			n = int(b.left)
			b.fail(&BodyError{Status: http.StatusRequestEntityTooLarge})
			return n, b.err
		}
		b.left -= int64(n)
	}
	if err != nil && err != io.EOF { //nolint:errorlint // io.EOF is returned unwrapped by contract
		var ne net.Error
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			b.fail(&BodyError{Status: http.StatusRequestEntityTooLarge, Err: err})
		case errors.As(err, &ne) && ne.Timeout():
			b.fail(&BodyError{Status: http.StatusRequestTimeout, Err: err})
		default:
			b.fail(&BodyError{Status: http.StatusBadRequest, Err: err})
		}
		return n, b.err
	}
	return n, err
}

func (b *clientBody) fail(e *BodyError) {
	b.err = e
	if b.count != nil {
		b.count(e)
	}
}

func (b *clientBody) Close() error { return b.rc.Close() }

// refuseBody answers 413 when the declared body is over the route's limit,
// and otherwise puts the limit and error classification on r.Body. It
// reports whether it answered.
func (rt *route) refuseBody(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	max := rt.MaxBodyBytes
	if max > 0 && r.ContentLength > max {
		rt.body.inc(http.StatusRequestEntityTooLarge)
		w.Header().Set("Connection", "close")
		http.Error(w, "request body too large (limit "+strconv.FormatInt(max, 10)+" bytes)", http.StatusRequestEntityTooLarge)
		return true
	}
	left := int64(-1)
	if max > 0 {
		left = max
	}
	r.Body = &clientBody{rc: r.Body, left: left, count: func(e *BodyError) { rt.body.inc(e.Status) }}
	return false
}

// bodyMetrics counts refused bodies of one route, by reason.
type bodyMetrics struct {
	tooLarge, timeout, malformed prometheus.Counter
}

func newBodyCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aegis_request_body_rejected_total",
		Help: "Request bodies refused, by route and reason (too_large: 413, timeout: 408, malformed: 400).",
	}, []string{"route", "reason"})
}

func (m *Metrics) forBody(route string) *bodyMetrics {
	if m == nil || m.body == nil {
		return nil
	}
	return &bodyMetrics{
		tooLarge:  m.body.WithLabelValues(route, "too_large"),
		timeout:   m.body.WithLabelValues(route, "timeout"),
		malformed: m.body.WithLabelValues(route, "malformed"),
	}
}

func (bm *bodyMetrics) inc(status int) {
	if bm == nil {
		return
	}
	switch status {
	case http.StatusRequestEntityTooLarge:
		bm.tooLarge.Inc()
	case http.StatusRequestTimeout:
		bm.timeout.Inc()
	default:
		bm.malformed.Inc()
	}
}
