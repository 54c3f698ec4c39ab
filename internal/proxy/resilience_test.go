package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"

	"github.com/aegis-flow/aegis/internal/balance"
)

// resFixture is a proxy with one route "r" over cluster "c", in front of
// real loopback upstreams.
type resFixture struct {
	front *httptest.Server
	reg   *prometheus.Registry
	bc    *balance.Cluster
	tr    Transport
}

type resOptions struct {
	route     Route
	endpoints []string
	breaker   balance.BreakerOptions
	outlier   balance.OutlierOptions
	transport TransportOptions
}

func newResFixture(t *testing.T, o resOptions) *resFixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	bm, err := balance.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var eps []balance.EndpointOptions
	for i, a := range o.endpoints {
		eps = append(eps, balance.EndpointOptions{Address: a, Region: fmt.Sprintf("r%d", i)})
	}
	if o.outlier == (balance.OutlierOptions{}) {
		// Keep endpoints in rotation unless a test is about ejection.
		o.outlier = balance.OutlierOptions{ConsecutiveConnectFailures: -1, Consecutive5xx: -1, ConsecutiveGatewayErrors: -1}
	}
	bc, err := balance.New(balance.Options{Name: "c", Endpoints: eps, Breaker: o.breaker, Outlier: o.outlier, Metrics: bm})
	if err != nil {
		t.Fatal(err)
	}
	o.transport.AcquireConn, o.transport.ReleaseConn = bc.AcquireConn, bc.ReleaseConn
	o.transport.AcquirePending, o.transport.ReleasePending = bc.AcquirePending, bc.ReleasePending
	tr, err := NewTransport(o.transport)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	o.route.Name, o.route.Cluster = "r", "c"
	p, err := New(Options{Routes: []Route{o.route}, Clusters: map[string]*Cluster{"c": {Balancer: bc, Transport: tr}}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p.Handler(Listener{Name: "test"}))
	t.Cleanup(front.Close)
	return &resFixture{front: front, reg: reg, bc: bc, tr: tr}
}

// counted is an upstream that counts its requests and answers with status
// (and its name in the body) after running hook, if any.
type counted struct {
	srv    *httptest.Server
	hits   atomic.Int64
	status atomic.Int64
	bodies chan string
}

func newCounted(t *testing.T, name string, status int, hook func(w http.ResponseWriter, r *http.Request) bool) *counted {
	t.Helper()
	c := &counted{bodies: make(chan string, 100)}
	c.status.Store(int64(status))
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		select {
		case c.bodies <- string(b):
		default:
		}
		if hook != nil && hook(w, r) {
			return
		}
		w.WriteHeader(int(c.status.Load()))
		io.WriteString(w, name)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *counted) addr() string { return c.srv.Listener.Addr().String() }

func do(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func TestRetryOnStatusGoesToAnotherEndpoint(t *testing.T) {
	bad := newCounted(t, "bad", 503, nil)
	good := newCounted(t, "good", 200, nil)
	f := newResFixture(t, resOptions{
		route:     Route{Retry: RetryPolicy{Attempts: 2, On: []string{"503"}, BackoffBase: time.Microsecond}},
		endpoints: []string{bad.addr(), good.addr()},
	})
	for i := range 6 {
		code, body, _ := do(t, "GET", f.front.URL+"/", "")
		if code != 200 || body != "good" {
			t.Fatalf("request %d: got %d %q, want 200 \"good\"", i, code, body)
		}
	}
	// Each failed try is retried once, on the other endpoint.
	tries := bad.hits.Load()
	if tries < 1 || tries > 6 {
		t.Errorf("tries at the failing endpoint: got %d, want 1..6", tries)
	}
	if got := counter(t, f.reg, "aegis_proxy_retries_total", map[string]string{"route": "r", "reason": "503"}); got != float64(tries) {
		t.Errorf("retries{reason=503}: got %v, want %d (one per failed try)", got, tries)
	}
	if got := good.hits.Load(); got != 6 {
		t.Errorf("tries at the healthy endpoint: got %d, want 6", got)
	}
}

func TestRetryMethodsAndBodies(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		body     string
		allow    bool
		wantCode int
		wantBad  int64 // tries at the failing endpoint
	}{
		{name: "GET retried", method: "GET", wantCode: 200, wantBad: 1},
		{name: "PUT with body retried and replayed", method: "PUT", body: "payload-1", wantCode: 200, wantBad: 1},
		{name: "POST not retried", method: "POST", body: "payload-2", wantCode: 503, wantBad: 1},
		{name: "POST retried when opted in", method: "POST", body: "payload-3", allow: true, wantCode: 200, wantBad: 1},
		{name: "large POST not retried even when opted in", method: "POST", body: strings.Repeat("x", maxReplayBody+1), allow: true, wantCode: 503, wantBad: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := newCounted(t, "bad", 503, nil)
			good := newCounted(t, "good", 200, nil)
			f := newResFixture(t, resOptions{
				route: Route{Retry: RetryPolicy{
					Attempts: 2, On: []string{"503"}, AllowNonIdempotent: tt.allow, BackoffBase: time.Microsecond,
				}},
				endpoints: []string{bad.addr(), good.addr()},
			})
			code, _, _ := do(t, tt.method, f.front.URL+"/", tt.body)
			if code != tt.wantCode {
				t.Errorf("status: got %d, want %d", code, tt.wantCode)
			}
			if got := bad.hits.Load(); got != tt.wantBad {
				t.Errorf("tries at the failing endpoint: got %d, want %d", got, tt.wantBad)
			}
			if tt.wantCode == 200 && tt.body != "" {
				if got := <-good.bodies; got != tt.body {
					t.Errorf("replayed body: got %d bytes, want %d", len(got), len(tt.body))
				}
			}
		})
	}
}

func TestRetryConnectFailureAndReset(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	reset := newCounted(t, "reset", 200, func(w http.ResponseWriter, r *http.Request) bool {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
		return true
	})
	tests := []struct {
		name, endpoint, reason string
	}{
		{"connect failure", closed, RetryConnectFailure},
		{"reset", reset.addr(), RetryReset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := newCounted(t, "good", 200, nil)
			f := newResFixture(t, resOptions{
				route:     Route{Retry: RetryPolicy{Attempts: 2, On: []string{RetryConnectFailure, RetryReset}, BackoffBase: time.Microsecond}},
				endpoints: []string{tt.endpoint, good.addr()},
			})
			for i := range 4 {
				if code, body, _ := do(t, "GET", f.front.URL+"/", ""); code != 200 || body != "good" {
					t.Fatalf("request %d: got %d %q, want 200 \"good\"", i, code, body)
				}
			}
			if got := counter(t, f.reg, "aegis_proxy_retries_total", map[string]string{"reason": tt.reason}); got < 1 || got > 4 {
				t.Errorf("retries{reason=%s}: got %v, want 1..4", tt.reason, got)
			}
			if got := good.hits.Load(); got != 4 {
				t.Errorf("tries at the healthy endpoint: got %d, want 4", got)
			}
		})
	}
}

// TestClientGoneDuringDialIsNoConnectFailure: clients that give up while
// the proxy is still connecting do not eject a healthy endpoint, however
// many there are.
func TestClientGoneDuringDialIsNoConnectFailure(t *testing.T) {
	good := newCounted(t, "good", 200, nil)
	f := newResFixture(t, resOptions{
		endpoints: []string{good.addr()},
		outlier:   balance.OutlierOptions{ConsecutiveConnectFailures: 1, Consecutive5xx: -1, ConsecutiveGatewayErrors: -1},
	})
	h1 := f.tr.(*H1Transport)
	real := h1.dial
	var hold atomic.Bool
	hold.Store(true)
	dialing := make(chan struct{}, 1)
	h1.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !hold.Load() {
			return real(ctx, network, addr)
		}
		// An endpoint slow to accept: the dial ends only with the
		// request, as net.Dialer's does.
		dialing <- struct{}{}
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", f.front.URL+"/", nil)
		errc := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		select {
		case <-dialing:
		case err := <-errc:
			t.Fatalf("request %d: answered (%v) without a dial: the endpoint was ejected", i, err)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("request %d: got %v, want context.Canceled", i, err)
		}
		// The try ends once the proxy sees the client go.
		waitUntil(t, func() bool { return f.bc.Stats().ActiveRequests == 0 })
	}
	hold.Store(false)
	if s := f.bc.Stats(); s.Ejected != 0 {
		t.Fatalf("got %d endpoints ejected after clients gave up mid-dial, want 0", s.Ejected)
	}
	if code, body, _ := do(t, "GET", f.front.URL+"/", ""); code != 200 || body != "good" {
		t.Fatalf("after clients gave up mid-dial: got %d %q, want 200 \"good\"", code, body)
	}
	if got := counter(t, f.reg, "aegis_balance_ejections_total", nil); got != 0 {
		t.Errorf("ejections: got %v, want 0", got)
	}

	// A dial the route timeout cuts short does count.
	hold.Store(true)
	ft := newResFixture(t, resOptions{
		route:     Route{Timeout: 50 * time.Millisecond},
		endpoints: []string{good.addr()},
		outlier:   balance.OutlierOptions{ConsecutiveConnectFailures: 1, Consecutive5xx: -1, ConsecutiveGatewayErrors: -1},
	})
	ft.tr.(*H1Transport).dial = h1.dial
	go func() { <-dialing }()
	if code, _, _ := do(t, "GET", ft.front.URL+"/", ""); code != http.StatusGatewayTimeout {
		t.Fatalf("dial past the route timeout: got %d, want 504", code)
	}
	waitUntil(t, func() bool { return ft.bc.Stats().Ejected == 1 })
}

func TestPerTryTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slowHook := func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return false
	}
	t.Run("retried on a healthy endpoint", func(t *testing.T) {
		slow := newCounted(t, "slow", 200, slowHook)
		good := newCounted(t, "good", 200, nil)
		f := newResFixture(t, resOptions{
			route: Route{Timeout: 20 * time.Second, Retry: RetryPolicy{
				Attempts: 2, PerTryTimeout: 200 * time.Millisecond, BackoffBase: time.Microsecond,
			}},
			endpoints: []string{slow.addr(), good.addr()},
		})
		for i := range 4 {
			if code, body, _ := do(t, "GET", f.front.URL+"/", ""); code != 200 || body != "good" {
				t.Fatalf("request %d: got %d %q, want 200 \"good\"", i, code, body)
			}
		}
		if got, want := counter(t, f.reg, "aegis_proxy_retries_total", map[string]string{"reason": retryPerTryTimeout}), slow.hits.Load(); got != float64(want) || want < 1 {
			t.Errorf("retries{reason=per-try-timeout}: got %v, want %d (one per try at the slow endpoint, at least 1)", got, want)
		}
	})
	t.Run("last try answers 504", func(t *testing.T) {
		slow := newCounted(t, "slow", 200, slowHook)
		f := newResFixture(t, resOptions{
			route: Route{Timeout: 20 * time.Second, Retry: RetryPolicy{
				Attempts: 2, PerTryTimeout: 100 * time.Millisecond, BackoffBase: time.Microsecond,
			}},
			endpoints: []string{slow.addr()},
		})
		if code, _, _ := do(t, "GET", f.front.URL+"/", ""); code != http.StatusGatewayTimeout {
			t.Errorf("status: got %d, want 504", code)
		}
		if got := slow.hits.Load(); got != 2 {
			t.Errorf("tries: got %d, want 2", got)
		}
	})
}

// TestRetryBudgetCapsAmplification sends requests to a cluster whose every
// endpoint fails: with three attempts per request the upstreams would see
// three times the load, but the budget allows only 20% more plus the
// minimum.
func TestRetryBudgetCapsAmplification(t *testing.T) {
	a := newCounted(t, "a", 503, nil)
	b := newCounted(t, "b", 503, nil)
	f := newResFixture(t, resOptions{
		route: Route{Retry: RetryPolicy{
			Attempts: 3, On: []string{"503"}, BackoffBase: time.Microsecond, BudgetPercent: 20, MinRetriesPerSecond: 3,
		}},
		endpoints: []string{a.addr(), b.addr()},
	})
	const requests, workers = 300, 4
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= requests {
				resp, err := http.Get(f.front.URL + "/")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 503 {
					t.Errorf("status: got %d, want 503", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	tries := a.hits.Load() + b.hits.Load()
	// 20% of the requests plus the minimum reserve (3/s over the 10s
	// window), plus one in-flight overshoot per worker at most.
	limit := int64(requests + requests*20/100 + 3*budgetSlots + workers)
	if tries > limit {
		t.Errorf("upstream tries: got %d for %d requests, want at most %d", tries, requests, limit)
	}
	if tries <= requests {
		t.Errorf("upstream tries: got %d, want some retries above %d", tries, requests)
	}
	if got := counter(t, f.reg, "aegis_proxy_retry_budget_exhausted_total", map[string]string{"route": "r"}); got == 0 {
		t.Error("retry_budget_exhausted_total did not move")
	}
	retries := counter(t, f.reg, "aegis_proxy_retries_total", map[string]string{"route": "r"})
	if int64(retries) != tries-requests {
		t.Errorf("retries_total: got %v, want %d (tries - requests)", retries, tries-requests)
	}
}

// TestCircuitBreakerRequests: with max_requests = 1 and a slow upstream, a
// second request gets a 503 at once, without reaching the upstream.
func TestCircuitBreakerRequests(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	up := newCounted(t, "up", 200, func(w http.ResponseWriter, r *http.Request) bool {
		started <- struct{}{}
		<-release
		return false
	})
	f := newResFixture(t, resOptions{
		route:     Route{Retry: RetryPolicy{Attempts: 3, On: []string{"503"}}},
		endpoints: []string{up.addr()},
		breaker:   balance.BreakerOptions{MaxRequests: 1},
	})
	first := make(chan int, 1)
	go func() {
		resp, err := http.Get(f.front.URL + "/")
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-started
	code, body, _ := do(t, "GET", f.front.URL+"/", "")
	if code != 503 || body != "upstream overloaded\n" {
		t.Errorf("overflow: got %d %q, want 503 \"upstream overloaded\\n\"", code, body)
	}
	if got := up.hits.Load(); got != 1 {
		t.Errorf("upstream hits: got %d, want 1 (overflow must not reach it)", got)
	}
	close(release)
	if got := <-first; got != 200 {
		t.Errorf("first request: got %d, want 200", got)
	}
	if got := counter(t, f.reg, "aegis_balance_circuit_open_total", map[string]string{"cluster": "c", "limit": "requests"}); got != 1 {
		t.Errorf("circuit_open_total{limit=requests}: got %v, want 1", got)
	}
	if got := counter(t, f.reg, "aegis_proxy_retries_total", nil); got != 0 {
		t.Errorf("retries_total: got %v, want 0 (an open circuit is never retried)", got)
	}
}

// TestCircuitBreakerPending: one connection per endpoint and max_pending =
// 1: the first request holds the connection, the second waits for it, the
// third is refused with a fast 503.
func TestCircuitBreakerPending(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	up := newCounted(t, "up", 200, func(w http.ResponseWriter, r *http.Request) bool {
		started <- struct{}{}
		<-release
		return false
	})
	f := newResFixture(t, resOptions{
		endpoints: []string{up.addr()},
		breaker:   balance.BreakerOptions{MaxPending: 1},
		transport: TransportOptions{MaxConnsPerEndpoint: 1},
	})
	codes := make(chan int, 2)
	get := func() {
		resp, err := http.Get(f.front.URL + "/")
		if err != nil {
			codes <- 0
			return
		}
		resp.Body.Close()
		codes <- resp.StatusCode
	}
	go get()
	<-started
	go get()
	waitUntil(t, func() bool { return f.bc.Stats().PendingRequests == 1 })
	code, body, _ := do(t, "GET", f.front.URL+"/", "")
	if code != 503 || body != "upstream overloaded\n" {
		t.Errorf("overflow: got %d %q, want 503 \"upstream overloaded\\n\"", code, body)
	}
	close(release)
	for range 2 {
		if got := <-codes; got != 200 {
			t.Errorf("queued request: got %d, want 200", got)
		}
	}
	if got := counter(t, f.reg, "aegis_balance_circuit_open_total", map[string]string{"limit": "pending"}); got != 1 {
		t.Errorf("circuit_open_total{limit=pending}: got %v, want 1", got)
	}
	if got := f.bc.Stats().PendingRequests; got != 0 {
		t.Errorf("pending after the burst: got %d, want 0", got)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRateLimit429(t *testing.T) {
	up := newCounted(t, "up", 200, nil)
	f := newResFixture(t, resOptions{
		route:     Route{RateLimit: RateLimit{RequestsPerSecond: 0.5, Burst: 2}},
		endpoints: []string{up.addr()},
	})
	var codes []int
	var retryAfter string
	for range 3 {
		code, _, h := do(t, "GET", f.front.URL+"/", "")
		codes = append(codes, code)
		if code == 429 {
			retryAfter = h.Get("Retry-After")
		}
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Errorf("statuses: got %v, want [200 200 429]", codes)
	}
	// One token every 2s: the next is at most 2s away.
	if retryAfter != "1" && retryAfter != "2" {
		t.Errorf("Retry-After: got %q, want 1 or 2", retryAfter)
	}
	if got := up.hits.Load(); got != 2 {
		t.Errorf("upstream hits: got %d, want 2", got)
	}
	if got := counter(t, f.reg, "aegis_proxy_rate_limited_total", map[string]string{"route": "r"}); got != 1 {
		t.Errorf("rate_limited_total: got %v, want 1", got)
	}
}

func TestRateLimiterBucket(t *testing.T) {
	l, err := newRateLimiter(RateLimit{RequestsPerSecond: 10, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	ms := int64(time.Millisecond)
	steps := []struct {
		at       int64
		ok       bool
		wantWait time.Duration
	}{
		{0, true, 0}, {0, true, 0}, {0, true, 0},
		{0, false, 100 * time.Millisecond},
		{50 * ms, false, 50 * time.Millisecond},
		{100 * ms, true, 0},
		{100 * ms, false, 100 * time.Millisecond},
		{1000 * ms, true, 0}, {1000 * ms, true, 0}, {1000 * ms, true, 0},
		{1000 * ms, false, 100 * time.Millisecond},
	}
	for i, s := range steps {
		ok, wait := l.allow(s.at)
		if ok != s.ok || wait != s.wantWait {
			t.Errorf("step %d at %dms: got (%v, %v), want (%v, %v)", i, s.at/ms, ok, wait, s.ok, s.wantWait)
		}
	}
}

func TestRetryBudgetWindow(t *testing.T) {
	var now int64 = 100
	b := newRetryBudget(20, 1, func() int64 { return now })
	// Reserve: 1/s over 10 slots = 10 retries with no requests at all.
	n := 0
	for b.withdraw() {
		n++
	}
	if n != 10 {
		t.Fatalf("reserve: got %d retries, want 10", n)
	}
	for range 50 {
		b.request()
	}
	if !b.withdraw() || !b.withdraw() || !b.withdraw() {
		t.Fatal("20% of 50 requests should allow more retries")
	}
	extra := 3
	for b.withdraw() {
		extra++
	}
	if extra != 10 {
		t.Errorf("retries from 50 requests: got %d, want 10", extra)
	}
	now += int64(budgetSlots) // the window slides past everything
	n = 0
	for b.withdraw() {
		n++
	}
	if n != 10 {
		t.Errorf("after the window: got %d retries, want the reserve 10", n)
	}
}

func TestCompileRetryRejects(t *testing.T) {
	tests := []struct {
		name string
		p    RetryPolicy
	}{
		{"unknown condition", RetryPolicy{Attempts: 2, On: []string{"5xx"}}},
		{"too many attempts", RetryPolicy{Attempts: 11}},
		{"negative budget", RetryPolicy{Attempts: 2, BudgetPercent: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := compileRetry(tt.p); err == nil {
				t.Errorf("compileRetry(%+v): got nil, want an error", tt.p)
			}
		})
	}
}

func BenchmarkRateLimiterAllow(b *testing.B) {
	l, err := newRateLimiter(RateLimit{RequestsPerSecond: 1e9, Burst: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		l.allow(int64(time.Since(l.base)))
	}
}

func BenchmarkRateLimiterParallel(b *testing.B) {
	l, err := newRateLimiter(RateLimit{RequestsPerSecond: 1e9, Burst: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.allow(int64(time.Since(l.base)))
		}
	})
}

func BenchmarkRetryBudget(b *testing.B) {
	bud := newRetryBudget(20, 3, nil)
	b.ReportAllocs()
	for b.Loop() {
		bud.request()
		bud.withdraw()
	}
}

func TestRetryReason(t *testing.T) {
	all := retryPolicy{on: condConnect | condRefused | condReset | cond502 | cond503 | cond504}
	none := retryPolicy{}
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	resp := func(code int) *http.Response { return &http.Response{StatusCode: code} }
	tests := []struct {
		name string
		p    retryPolicy
		r    tryResult
		want string
	}{
		{"connect failure", all, tryResult{err: dial}, RetryConnectFailure},
		{"connect failure not listed", none, tryResult{err: dial}, ""},
		{"refused stream", all, tryResult{err: fmt.Errorf("wrapped: %w", http2.StreamError{Code: http2.ErrCodeRefusedStream})}, RetryRefusedStream},
		{"stream reset", all, tryResult{err: http2.StreamError{Code: http2.ErrCodeCancel}}, RetryReset},
		{"connection reset", all, tryResult{err: &net.OpError{Op: "read", Err: syscall.ECONNRESET}}, RetryReset},
		{"closed before response", all, tryResult{err: fmt.Errorf("transport: %w", io.EOF)}, RetryReset},
		{"per-try timeout retried without listing", none, tryResult{err: errPerTryTimeout, perTryTimeout: true}, retryPerTryTimeout},
		{"circuit open never", all, tryResult{err: balance.ErrCircuitOpen}, ""},
		{"no healthy endpoint never", all, tryResult{err: balance.ErrNoHealthyEndpoint}, ""},
		{"502", all, tryResult{resp: resp(502)}, "502"},
		{"503", all, tryResult{resp: resp(503)}, "503"},
		{"504", all, tryResult{resp: resp(504)}, "504"},
		{"503 not listed", none, tryResult{resp: resp(503)}, ""},
		{"500 never", all, tryResult{resp: resp(500)}, ""},
		{"200", all, tryResult{resp: resp(200)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.reason(context.Background(), tt.r); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := all.reason(ctx, tryResult{err: dial}); got != "" {
		t.Errorf("after the request ended: got %q, want no retry", got)
	}
}

// TestBackoffJitter checks, on a fake clock, that each wait stays within
// min(base × 2^(n-1), max) and that a done context ends the wait.
func TestBackoffJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := retryPolicy{base: 10 * time.Millisecond, maxDelay: 50 * time.Millisecond}
		for n := 1; n <= 6; n++ {
			ceiling := min(p.base<<(n-1), p.maxDelay)
			for range 20 {
				start := time.Now()
				if err := p.wait(context.Background(), n); err != nil {
					t.Fatal(err)
				}
				if d := time.Since(start); d > ceiling {
					t.Fatalf("retry %d waited %v, want at most %v", n, d, ceiling)
				}
			}
		}
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(errRouteTimeout)
		long := retryPolicy{base: time.Hour, maxDelay: time.Hour}
		var err error
		for err == nil { // a zero draw returns at once; any other waits on ctx
			err = long.wait(ctx, 1)
		}
		if !errors.Is(err, errRouteTimeout) {
			t.Errorf("wait on a done context: got %v, want the route timeout", err)
		}
	})
}

// TestRouteTimeoutBoundsAllTries: the route timeout ends the retries even
// when attempts remain.
func TestRouteTimeoutBoundsAllTries(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := newCounted(t, "slow", 200, func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return false
	})
	f := newResFixture(t, resOptions{
		route: Route{Timeout: 500 * time.Millisecond, Retry: RetryPolicy{
			Attempts: 10, PerTryTimeout: 200 * time.Millisecond, BackoffBase: time.Microsecond,
		}},
		endpoints: []string{slow.addr()},
	})
	if code, _, _ := do(t, "GET", f.front.URL+"/", ""); code != http.StatusGatewayTimeout {
		t.Errorf("status: got %d, want 504", code)
	}
	if got := slow.hits.Load(); got < 2 || got > 3 {
		t.Errorf("tries within the route timeout: got %d, want 2 or 3 of the 10 allowed", got)
	}
}

// TestRateLimiterConcurrent: at one instant, concurrent callers get exactly
// the burst.
func TestRateLimiterConcurrent(t *testing.T) {
	l, err := newRateLimiter(RateLimit{RequestsPerSecond: 1, Burst: 50})
	if err != nil {
		t.Fatal(err)
	}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if ok, _ := l.allow(0); ok {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := admitted.Load(); got != 50 {
		t.Errorf("admitted: got %d, want the burst 50", got)
	}
}
