package balance

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Result classifies how a request to an endpoint ended.
type Result uint8

// Request results, for [Endpoint.Done].
const (
	// Success is any response below 500 (4xx is the client's problem).
	Success Result = iota
	// ConnectFailure means no connection could be made (dial, TLS handshake).
	ConnectFailure
	// GatewayError is a 502, 503 or 504 from the endpoint.
	GatewayError
	// ServerError is any other 5xx from the endpoint.
	ServerError
	// Canceled means the request ended without a verdict on the endpoint
	// (client gone, local timeout before a response); it resets nothing and
	// counts for nothing.
	Canceled
)

// String returns the result's name, e.g. "gateway_error".
func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case ConnectFailure:
		return "connect_failure"
	case GatewayError:
		return "gateway_error"
	case ServerError:
		return "server_error"
	case Canceled:
		return "canceled"
	}
	return "unknown"
}

// ResultForStatus classifies a response status code.
func ResultForStatus(code int) Result {
	switch {
	case code == 502 || code == 503 || code == 504:
		return GatewayError
	case code >= 500:
		return ServerError
	}
	return Success
}

// Outcome is what the caller reports when a request to an endpoint ends.
type Outcome struct {
	// Result classifies the end of the request.
	Result Result
	// Latency is the time from sending the request to the response headers
	// (or the error). Zero means not measured; it feeds the latency EWMA.
	Latency time.Duration
}

// ewmaAlpha is the weight of a new latency sample.
const ewmaAlpha = 0.1

// Endpoint is one upstream of a cluster. Its methods are safe for concurrent
// use.
type Endpoint struct {
	address string
	region  string
	zone    string
	weight  int
	idx     int // position in Cluster.endpoints
	reg     int // index of region in Cluster.regions
	c       *Cluster

	active    atomic.Int64
	connFails atomic.Int32
	fails5xx  atomic.Int32
	gwFails   atomic.Int32
	// latency is the EWMA of observed latency in nanoseconds, as float64
	// bits; 0 means no sample yet.
	latency atomic.Uint64
	// ejections counts consecutive ejections; reset by a success.
	ejections atomic.Int32

	requests prometheus.Counter

	// Guarded by Cluster.mu.
	ejected      bool
	ejectedUntil int64 // cluster clock, nanoseconds
	down         bool  // failed active checks
	checkOK      int
	checkFail    int
}

// Address is the endpoint's host:port.
func (e *Endpoint) Address() string { return e.address }

// Region is the endpoint's region.
func (e *Endpoint) Region() string { return e.region }

// Zone is the endpoint's zone (may be empty).
func (e *Endpoint) Zone() string { return e.zone }

// Weight is the endpoint's configured weight.
func (e *Endpoint) Weight() int { return e.weight }

// Active is the number of requests picked for the endpoint and not yet Done.
func (e *Endpoint) Active() int64 { return e.active.Load() }

// Latency is the endpoint's latency EWMA; 0 before the first sample.
func (e *Endpoint) Latency() time.Duration {
	return time.Duration(math.Float64frombits(e.latency.Load()))
}

// Done reports the end of a request that [Cluster.Pick] gave to this
// endpoint. Call it exactly once per successful Pick.
func (e *Endpoint) Done(o Outcome) {
	e.active.Add(-1)
	c := e.c
	c.active.Add(-1)
	if o.Latency > 0 && (o.Result == Success || o.Result == ServerError || o.Result == GatewayError) {
		e.observeLatency(o.Latency)
	}
	switch o.Result {
	case Success:
		resetIfSet(&e.connFails)
		resetIfSet(&e.fails5xx)
		resetIfSet(&e.gwFails)
		resetIfSet(&e.ejections)
	case ConnectFailure:
		if n := c.opts.Outlier.ConsecutiveConnectFailures; n > 0 && int(e.connFails.Add(1)) >= n {
			c.eject(e, reasonConnect)
		}
	case GatewayError:
		resetIfSet(&e.connFails)
		g := e.gwFails.Add(1)
		f := e.fails5xx.Add(1)
		if n := c.opts.Outlier.ConsecutiveGatewayErrors; n > 0 && int(g) >= n {
			c.eject(e, reasonGateway)
		} else if n := c.opts.Outlier.Consecutive5xx; n > 0 && int(f) >= n {
			c.eject(e, reason5xx)
		}
	case ServerError:
		resetIfSet(&e.connFails)
		resetIfSet(&e.gwFails)
		if n := c.opts.Outlier.Consecutive5xx; n > 0 && int(e.fails5xx.Add(1)) >= n {
			c.eject(e, reason5xx)
		}
	}
}

// resetIfSet stores 0 only when needed, to keep the cache line shared on the
// common path.
func resetIfSet(v *atomic.Int32) {
	if v.Load() != 0 {
		v.Store(0)
	}
}

func (e *Endpoint) observeLatency(d time.Duration) {
	x := float64(d)
	for {
		old := e.latency.Load()
		prev := math.Float64frombits(old)
		next := x
		if prev > 0 {
			next = prev + ewmaAlpha*(x-prev)
		}
		if e.latency.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

func (e *Endpoint) latencyNanos() float64 { return math.Float64frombits(e.latency.Load()) }

func (e *Endpoint) resetFailures() {
	e.connFails.Store(0)
	e.fails5xx.Store(0)
	e.gwFails.Store(0)
}
