package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/aegis-flow/aegis/internal/balance"
)

// RetryPolicy is a route's retry policy. The zero value never retries.
type RetryPolicy struct {
	// Attempts is the number of tries, the first included (0 or 1: no
	// retries; at most 10).
	Attempts int
	// PerTryTimeout bounds one try until response headers (0: none; the
	// route timeout bounds all tries together). A try that times out is
	// retried when attempts remain; the last one answers 504.
	PerTryTimeout time.Duration
	// On lists the retried conditions: RetryConnectFailure,
	// RetryRefusedStream, RetryReset, "502", "503" and "504".
	On []string
	// AllowNonIdempotent retries methods other than GET, HEAD, OPTIONS,
	// TRACE, PUT and DELETE too.
	AllowNonIdempotent bool
	// BackoffBase is the backoff cap of the first retry, doubled for each
	// further retry up to BackoffMax; each wait is uniform in [0, cap]
	// (default 25ms).
	BackoffBase time.Duration
	// BackoffMax caps the backoff (default 250ms).
	BackoffMax time.Duration
	// BudgetPercent caps retries at this percentage of the route's requests
	// over the last RetryBudgetWindow (default 20).
	BudgetPercent int
	// MinRetriesPerSecond is the retry rate always allowed, averaged over
	// RetryBudgetWindow (default 3).
	MinRetriesPerSecond int
}

// Retry conditions for RetryPolicy.On, besides the status codes "502",
// "503" and "504".
const (
	// RetryConnectFailure: no connection could be made (dial or TLS).
	RetryConnectFailure = "connect-failure"
	// RetryRefusedStream: an HTTP/2 endpoint refused the stream
	// (REFUSED_STREAM), so it did not process the request.
	RetryRefusedStream = "refused-stream"
	// RetryReset: the connection or stream was reset or closed before the
	// response headers.
	RetryReset = "reset"
	// retryPerTryTimeout is the metric reason of a try that hit the
	// per-try timeout; such a try is always retried when attempts remain.
	retryPerTryTimeout = "per-try-timeout"
)

// RetryBudgetWindow is the window over which the retry budget counts
// requests and retries.
const RetryBudgetWindow = 10 * time.Second

// maxReplayBody is the largest request body that is buffered so that it can
// be sent again. A longer body, or one of unknown length, makes the request
// not retryable (it streams as usual).
const maxReplayBody = 64 << 10

const (
	defaultBackoffBase   = 25 * time.Millisecond
	defaultBackoffMax    = 250 * time.Millisecond
	defaultBudgetPercent = 20
	defaultMinRetries    = 3
	maxAttempts          = 10
	drainLimit           = 4 << 10
)

type retryCond uint8

const (
	condConnect retryCond = 1 << iota
	condRefused
	condReset
	cond502
	cond503
	cond504
)

var condNames = map[string]retryCond{
	RetryConnectFailure: condConnect, RetryRefusedStream: condRefused, RetryReset: condReset,
	"502": cond502, "503": cond503, "504": cond504,
}

// retryPolicy is a compiled RetryPolicy.
type retryPolicy struct {
	attempts       int
	perTry         time.Duration
	on             retryCond
	nonIdempotent  bool
	base, maxDelay time.Duration
	budget         *retryBudget
}

func compileRetry(p RetryPolicy) (retryPolicy, error) {
	rp := retryPolicy{
		attempts: max(p.Attempts, 1), perTry: p.PerTryTimeout, nonIdempotent: p.AllowNonIdempotent,
		base: p.BackoffBase, maxDelay: p.BackoffMax,
	}
	if p.Attempts > maxAttempts || p.Attempts < 0 {
		return rp, fmt.Errorf("retry attempts %d is outside 0..%d", p.Attempts, maxAttempts)
	}
	if p.PerTryTimeout < 0 || p.BackoffBase < 0 || p.BackoffMax < 0 {
		return rp, errors.New("retry durations must not be negative")
	}
	for _, name := range p.On {
		c, ok := condNames[name]
		if !ok {
			return rp, fmt.Errorf("retry condition %q is not one of connect-failure, refused-stream, reset, 502, 503, 504", name)
		}
		rp.on |= c
	}
	if rp.base == 0 {
		rp.base = defaultBackoffBase
	}
	if rp.maxDelay == 0 {
		rp.maxDelay = max(defaultBackoffMax, rp.base)
	}
	pct, minRate := p.BudgetPercent, p.MinRetriesPerSecond
	if pct == 0 {
		pct = defaultBudgetPercent
	}
	if minRate == 0 {
		minRate = defaultMinRetries
	}
	if pct < 0 || pct > 100 || minRate < 0 {
		return rp, fmt.Errorf("retry budget %d%% (min %d/s) is outside 0..100%%", pct, minRate)
	}
	if rp.attempts > 1 {
		rp.budget = newRetryBudget(pct, minRate, nil)
	}
	return rp, nil
}

// idempotent reports whether RFC 9110 defines method as idempotent.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// RoundTrip sends req to an endpoint of the route's cluster, retrying on
// another endpoint (when there is one) as the route's policy allows. The
// route timeout, set on req's context by the handler, bounds all tries and
// backoffs together.
func (t *pickTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.route
	st := stateFrom(req.Context())
	p := &rt.retry
	if p.budget != nil {
		p.budget.request() // every request of the route earns budget
	}
	if p.attempts <= 1 || !(p.nonIdempotent || idempotent(req.Method)) {
		return t.finish(st, t.try(req, nil))
	}
	if err := replayable(req); err != nil {
		if errors.Is(err, errNotReplayable) {
			return t.finish(st, t.try(req, nil))
		}
		return nil, err
	}
	var last *balance.Endpoint
	for n := 1; ; n++ {
		r := t.try(req, last)
		reason := p.reason(req.Context(), r)
		if reason == "" || n >= p.attempts {
			return t.finish(st, r)
		}
		if !p.budget.withdraw() {
			rt.res.budgetExhausted()
			return t.finish(st, r)
		}
		if r.resp != nil {
			io.CopyN(io.Discard, r.resp.Body, drainLimit)
			r.resp.Body.Close()
		}
		if err := p.wait(req.Context(), n); err != nil {
			return nil, err
		}
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("rewind request body: %w", err)
		}
		req = req.Clone(req.Context())
		req.Body = body
		rt.res.retried(reason)
		last = r.ep
	}
}

var errNotReplayable = errors.New("request body cannot be replayed")

// replayable makes req's body replayable through GetBody: no body, a body
// with GetBody, or a body of known length up to maxReplayBody, which is
// read into memory. Otherwise it returns errNotReplayable and req is
// unchanged.
func replayable(req *http.Request) error {
	if req.Body == nil || req.Body == http.NoBody {
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return nil
	}
	if req.GetBody != nil {
		return nil
	}
	if req.ContentLength <= 0 || req.ContentLength > maxReplayBody {
		return errNotReplayable
	}
	buf := make([]byte, req.ContentLength)
	if _, err := io.ReadFull(req.Body, buf); err != nil {
		return fmt.Errorf("read request body: %w", err)
	}
	req.Body = io.NopCloser(bytes.NewReader(buf))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	return nil
}

// reason says why a try should be retried, or "" when it should not.
func (p *retryPolicy) reason(ctx context.Context, r tryResult) string {
	if ctx.Err() != nil {
		return "" // client gone or route timeout: nothing left to retry for
	}
	if r.err == nil {
		switch {
		case r.resp.StatusCode == http.StatusBadGateway && p.on&cond502 != 0:
			return "502"
		case r.resp.StatusCode == http.StatusServiceUnavailable && p.on&cond503 != 0:
			return "503"
		case r.resp.StatusCode == http.StatusGatewayTimeout && p.on&cond504 != 0:
			return "504"
		}
		return ""
	}
	err := r.err
	switch {
	case r.perTryTimeout:
		return retryPerTryTimeout
	case errors.Is(err, balance.ErrCircuitOpen), errors.Is(err, balance.ErrNoHealthyEndpoint):
		return "" // overflow gets a fast 503; retrying would add load
	case isDialError(err):
		if p.on&condConnect != 0 {
			return RetryConnectFailure
		}
	case isRefusedStream(err):
		if p.on&condRefused != 0 {
			return RetryRefusedStream
		}
	case isReset(err):
		if p.on&condReset != 0 {
			return RetryReset
		}
	}
	return ""
}

func isRefusedStream(err error) bool {
	se, ok := errors.AsType[http2.StreamError](err)
	return ok && se.Code == http2.ErrCodeRefusedStream
}

func isReset(err error) bool {
	if _, ok := errors.AsType[http2.StreamError](err); ok {
		return true
	}
	if _, ok := errors.AsType[http2.GoAwayError](err); ok {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// wait sleeps the jittered backoff before retry n (1-based) or until ctx
// ends.
func (p *retryPolicy) wait(ctx context.Context, n int) error {
	ceiling := p.base << min(n-1, 20)
	if ceiling <= 0 || ceiling > p.maxDelay {
		ceiling = p.maxDelay
	}
	d := time.Duration(rand.Int64N(int64(ceiling) + 1))
	if d == 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// tryResult is the outcome of one try.
type tryResult struct {
	resp          *http.Response
	err           error
	ep            *balance.Endpoint
	perTryTimeout bool
}

// finish ends the route timer once response headers are in (the body may
// then take as long as it needs) and hands the result to ReverseProxy.
func (t *pickTransport) finish(st *reqState, r tryResult) (*http.Response, error) {
	st.stopTimer()
	return r.resp, r.err
}

// errPerTryTimeout is the cancel cause of a try that hit its per-try
// timeout; it maps to 504 through StatusFor (it is a net.Error timeout).
var errPerTryTimeout error = perTryTimeoutError{}

type perTryTimeoutError struct{}

func (perTryTimeoutError) Error() string   { return "per-try timeout" }
func (perTryTimeoutError) Timeout() bool   { return true }
func (perTryTimeoutError) Temporary() bool { return true }

// try sends one try to an endpoint, preferring one other than avoid, and
// reports the outcome to the balancer.
func (t *pickTransport) try(req *http.Request, avoid *balance.Endpoint) tryResult {
	rt := t.route
	c := rt.cluster
	st := stateFrom(req.Context())
	ep, dec, err := t.pick(avoid)
	if err != nil {
		return tryResult{err: err}
	}
	st.upstream, st.region, st.decision = ep.Address(), ep.Region(), dec
	// A try gets a context of its own only when it needs one: for a
	// per-try timeout, or to meter max_pending through httptrace for a
	// transport that does not meter it itself.
	ctx := req.Context()
	var a *attempt
	var timer *time.Timer
	if !rt.pendingMetered || rt.retry.perTry > 0 {
		a = getAttempt(c.Balancer)
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		a.cancel = cancel
		if !rt.pendingMetered {
			ctx = httptrace.WithClientTrace(ctx, &a.trace)
		}
		if rt.retry.perTry > 0 {
			timer = time.AfterFunc(rt.retry.perTry, func() { cancel(errPerTryTimeout) })
		}
	}
	out := req
	if ctx != req.Context() {
		out = req.WithContext(ctx)
	}
	// req is ReverseProxy's own copy (or the retry loop's clone): its URL is
	// not shared with the inbound request.
	out.URL.Host = ep.Address()
	cm := rt.cm
	if cm != nil {
		cm.requests.Inc()
	}
	start := time.Now()
	resp, err := c.Transport.RoundTrip(out)
	lat := time.Since(start)
	if timer != nil {
		timer.Stop()
	}
	a.release()
	if err != nil {
		r := tryResult{err: err, ep: ep}
		cause := context.Cause(ctx)
		res := balance.Canceled
		switch {
		case errors.Is(cause, balance.ErrCircuitOpen) || errors.Is(err, balance.ErrCircuitOpen):
			r.err = balance.ErrCircuitOpen // max_pending or max_connections: no verdict on the endpoint
		case errors.Is(cause, errPerTryTimeout) && req.Context().Err() == nil:
			r.err, r.perTryTimeout = fmt.Errorf("try %s: %w", ep.Address(), errPerTryTimeout), true
			res = balance.GatewayError
			cm.fail(failTimeout)
		case isDialError(err) && !errors.Is(context.Cause(req.Context()), context.Canceled):
			// A dial cut short because the client went away says nothing
			// about the endpoint; one cut by the route timeout does.
			res = balance.ConnectFailure
			cm.fail(failConnect)
		case req.Context().Err() == nil:
			res = balance.GatewayError
			cm.fail(failOther)
		default:
			if s, _ := StatusFor(req.Context(), err); s == http.StatusGatewayTimeout {
				cm.fail(failTimeout)
			}
		}
		ep.Done(balance.Outcome{Result: res, Latency: lat})
		a.finish()
		return r
	}
	o := balance.Outcome{Result: balance.ResultForStatus(resp.StatusCode), Latency: lat}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The upgraded connection outlives this call: keep its context.
		ep.Done(o)
		return tryResult{resp: resp, ep: ep}
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		ep.Done(o)
		a.finish()
		return tryResult{resp: resp, ep: ep}
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, ep: ep, o: o, a: a}
	return tryResult{resp: resp, ep: ep}
}

// pick chooses an endpoint, trying up to twice more for one other than
// avoid when the cluster has several.
func (t *pickTransport) pick(avoid *balance.Endpoint) (*balance.Endpoint, balance.Decision, error) {
	b := t.route.cluster.Balancer
	ep, dec, err := b.Pick()
	if err != nil || avoid == nil || ep != avoid || t.route.endpoints < 2 {
		return ep, dec, err
	}
	for range 2 {
		ep2, dec2, err2 := b.Pick()
		if err2 != nil {
			break
		}
		ep.Done(balance.Outcome{Result: balance.Canceled})
		ep, dec = ep2, dec2
		if ep != avoid {
			break
		}
	}
	return ep, dec, nil
}

// doneBody reports the end of a request when its body is closed, so that
// least_request counts requests until their bodies are done, and then
// releases the try's context.
type doneBody struct {
	io.ReadCloser
	ep   *balance.Endpoint
	o    balance.Outcome
	a    *attempt
	once sync.Once
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() {
		b.ep.Done(b.o)
		b.a.finish()
	})
	return err
}

// attempt is the per-try state: its context's cancel function and the
// connection-wait hooks that enforce the cluster's max_pending. Attempts are
// not pooled: net/http keeps dialing after a request ends (for the next
// one), with the request's context values, so a trace may be read after
// its try.
type attempt struct {
	cl     *balance.Cluster
	cancel context.CancelCauseFunc
	held   atomic.Bool // a pending slot is held
	trace  httptrace.ClientTrace
}

func getAttempt(cl *balance.Cluster) *attempt {
	a := &attempt{cl: cl}
	a.trace.GetConn, a.trace.GotConn = a.getConn, a.gotConn
	return a
}

// getConn starts a wait for a connection: it takes a pending slot, or
// cancels the try with ErrCircuitOpen when max_pending is reached.
func (a *attempt) getConn(string) {
	if a.held.Load() {
		return
	}
	if err := a.cl.AcquirePending(); err != nil {
		a.cancel(balance.ErrCircuitOpen)
		return
	}
	a.held.Store(true)
}

func (a *attempt) gotConn(httptrace.GotConnInfo) { a.release() }

func (a *attempt) release() {
	if a != nil && a.held.CompareAndSwap(true, false) {
		a.cl.ReleasePending()
	}
}

// finish cancels the try's context (a nil attempt has none).
func (a *attempt) finish() {
	if a != nil {
		a.cancel(nil)
	}
}

// retryBudget caps retries at a ratio of requests over a sliding window of
// one-second slots, plus a minimum rate. Counting is approximate under
// contention (a slot being recycled may lose a few counts), which is fine
// for a budget.
type retryBudget struct {
	ratio   float64
	reserve float64 // retries always allowed per window
	now     func() int64
	slots   [budgetSlots]budgetSlot
	mu      sync.Mutex // serialises withdraw's check-and-count
}

const budgetSlots = int(RetryBudgetWindow / time.Second)

type budgetSlot struct {
	sec      atomic.Int64
	requests atomic.Int64
	retries  atomic.Int64
}

func newRetryBudget(percent, minPerSecond int, now func() int64) *retryBudget {
	if now == nil {
		base := time.Now()
		now = func() int64 { return int64(time.Since(base)/time.Second) + 1 }
	}
	return &retryBudget{
		ratio: float64(percent) / 100, reserve: float64(minPerSecond) * float64(budgetSlots), now: now,
	}
}

func (b *retryBudget) slot(sec int64) *budgetSlot {
	s := &b.slots[sec%int64(budgetSlots)]
	if old := s.sec.Load(); old != sec && s.sec.CompareAndSwap(old, sec) {
		s.requests.Store(0)
		s.retries.Store(0)
	}
	return s
}

// request counts a request that may be retried.
func (b *retryBudget) request() { b.slot(b.now()).requests.Add(1) }

// withdraw takes one retry from the budget; false means it is exhausted.
func (b *retryBudget) withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	cur := b.slot(now)
	var reqs, retries int64
	for i := range b.slots {
		s := &b.slots[i]
		if sec := s.sec.Load(); sec > now-int64(budgetSlots) && sec <= now {
			reqs += s.requests.Load()
			retries += s.retries.Load()
		}
	}
	if float64(retries+1) > b.ratio*float64(reqs)+b.reserve {
		return false
	}
	cur.retries.Add(1)
	return true
}
