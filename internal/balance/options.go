package balance

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy names how a cluster picks an endpoint.
type Policy string

// The pick policies.
const (
	// RoundRobin is smooth weighted round robin (the default).
	RoundRobin Policy = "round_robin"
	// LeastRequest is weighted power of two choices on active requests.
	LeastRequest Policy = "least_request"
	// Carbon is power of two choices with carbon-weighted sampling.
	Carbon Policy = "carbon"
)

// IntensitySource reports the grid carbon intensity of a region. It is read
// on the request path's slow branch (once per region per
// CarbonOptions.Interval; while some region is unknown, sooner, backing off
// from 10ms to the interval) and must not block: implementations read a
// cache.
type IntensitySource interface {
	// Intensity returns the region's intensity in gCO2eq/kWh and its kind
	// ("average" or "marginal"); ok is false when the value is unknown.
	Intensity(region string) (gPerKWh float64, kind string, ok bool)
}

// Options configures a [Cluster]. Zero values are the documented defaults.
type Options struct {
	// Name identifies the cluster in logs and metric labels. Required.
	Name string
	// Endpoints are the cluster's upstreams. At least one is required.
	Endpoints []EndpointOptions
	// Policy is the pick policy (default round_robin).
	Policy Policy
	// LocalZone is the zone this proxy runs in; when set, endpoints in the
	// same zone are preferred while within the latency budget (see the
	// package doc). Empty disables locality.
	LocalZone string
	// Health configures active health checks (off unless Health.Path is set).
	Health HealthOptions
	// Outlier configures passive health: ejection on consecutive failures.
	Outlier OutlierOptions
	// Breaker configures the cluster's circuit breaker limits.
	Breaker BreakerOptions
	// Carbon configures the carbon policy's guardrails and the interval at
	// which intensities, latencies and shares are recomputed (all policies).
	Carbon CarbonOptions
	// Intensity supplies carbon intensity per region. Nil means unknown
	// everywhere: the carbon policy then behaves exactly like least_request.
	Intensity IntensitySource
	// Logger receives health transitions (nil discards).
	Logger *slog.Logger
	// Metrics is the shared metrics set from [NewMetrics] (nil: not exported).
	Metrics *Metrics

	// TestOnlyRand makes choices reproducible. Calls to it are serialised by
	// the cluster. Nil uses the runtime's per-thread generator.
	TestOnlyRand rand.Source
	// TestOnlyNow replaces the clock used for intervals and ejection backoff.
	TestOnlyNow func() time.Time
}

// EndpointOptions describes one upstream endpoint.
type EndpointOptions struct {
	// Address is host:port. Required.
	Address string
	// Region is the Aegis-Flow region the endpoint runs in (for carbon
	// intensity and metrics). Empty is allowed and means an unnamed region.
	Region string
	// Zone is the endpoint's locality inside its region (optional).
	Zone string
	// Weight is the endpoint's relative capacity, 1..10000 (default 1).
	Weight int
}

// HealthOptions configures active HTTP health checks.
type HealthOptions struct {
	// Path is the HTTP path to GET, e.g. "/healthz". Empty disables checks.
	Path string
	// Interval between checks of an endpoint (default 10s, minimum 1s).
	Interval time.Duration
	// Timeout of one check (default 2s, at most Interval).
	Timeout time.Duration
	// HealthyThreshold is the number of consecutive passing checks that mark
	// a down endpoint up (default 2).
	HealthyThreshold int
	// UnhealthyThreshold is the number of consecutive failing checks that
	// mark an up endpoint down (default 3).
	UnhealthyThreshold int
	// ExpectedStatuses are the response codes that pass (default 200-399);
	// see [ParseStatusRanges].
	ExpectedStatuses []StatusRange
	// Scheme is the URL scheme of the check request (default "http").
	Scheme string
	// Host overrides the request's Host header (default: the endpoint address).
	Host string
	// Transport carries the checks; the caller passes one that speaks the
	// cluster's protocol. Nil uses a plain HTTP/1.1 transport owned by the
	// cluster.
	Transport http.RoundTripper
}

// OutlierOptions configures passive health. A negative count disables that
// detector.
type OutlierOptions struct {
	// ConsecutiveConnectFailures ejects an endpoint after this many connect
	// failures in a row (default 3).
	ConsecutiveConnectFailures int
	// Consecutive5xx ejects after this many 5xx responses in a row, gateway
	// errors included (default 5).
	Consecutive5xx int
	// ConsecutiveGatewayErrors ejects after this many 502/503/504 in a row
	// (default 3).
	ConsecutiveGatewayErrors int
	// BaseEjectionTime is the first ejection's length; it doubles with each
	// consecutive ejection (default 10s).
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps the ejection length (default 5m).
	MaxEjectionTime time.Duration
	// MaxEjectionPercent caps the share of endpoints that 5xx and gateway
	// detection may eject at once, 1..100 (default 50). At least one endpoint
	// always stays in.
	MaxEjectionPercent int
}

// BreakerOptions configures the circuit breaker. Zero means the default; a
// negative value means unlimited.
type BreakerOptions struct {
	// MaxConnections caps open upstream connections (default 1024), enforced
	// through [Cluster.AcquireConn].
	MaxConnections int
	// MaxPending caps requests waiting for a connection (default 1024),
	// enforced through [Cluster.AcquirePending].
	MaxPending int
	// MaxRequests caps active requests (default 1024), enforced by
	// [Cluster.Pick].
	MaxRequests int
}

// CarbonOptions configures the carbon policy's guardrails.
type CarbonOptions struct {
	// Interval is how often intensities, latencies and traffic shares are
	// recomputed, for every policy (default 1s, minimum 10ms).
	Interval time.Duration
	// MaxAddedLatency is the largest observed latency above the fastest
	// healthy region that a region may have and still be preferred for its
	// carbon (default 50ms).
	MaxAddedLatency time.Duration
	// MaxShareChange is the most any region's share of traffic may change in
	// one interval, in (0, 1] (default 0.05, i.e. 5 percentage points).
	MaxShareChange float64
	// MinShare is the share every healthy region keeps to stay warm, in
	// [0, 1) (default 0.05). Negative means none.
	MinShare float64
	// IntensityScale is the cost difference, in g/kWh, that shrinks a
	// region's preference by a factor e (default 50). Smaller is greedier.
	IntensityScale float64
	// LatencyCost converts added latency into cost: g/kWh per millisecond
	// above the fastest region (default 1). Negative means 0.
	LatencyCost float64
	// RequestJoules is the estimated energy of one request, used for
	// Decision.AvoidedGrams (default 0: not estimated).
	RequestJoules float64
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct {
	Min, Max int
}

// Contains reports whether code is in the range.
func (r StatusRange) Contains(code int) bool { return code >= r.Min && code <= r.Max }

// ParseStatusRanges parses a comma-separated list of codes and inclusive
// ranges such as "200-399,404". Every code must be in 100..599.
func ParseStatusRanges(spec string) ([]StatusRange, error) {
	var out []StatusRange
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("parse status ranges %q: empty item", spec)
		}
		lo, hi, isRange := strings.Cut(part, "-")
		minCode, err := parseStatus(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("parse status ranges %q: %w", spec, err)
		}
		maxCode := minCode
		if isRange {
			if maxCode, err = parseStatus(strings.TrimSpace(hi)); err != nil {
				return nil, fmt.Errorf("parse status ranges %q: %w", spec, err)
			}
			if maxCode < minCode {
				return nil, fmt.Errorf("parse status ranges %q: range %s is reversed", spec, part)
			}
		}
		out = append(out, StatusRange{Min: minCode, Max: maxCode})
	}
	return out, nil
}

func parseStatus(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("status %q is not a code in 100..599", s)
	}
	return n, nil
}

// Defaults.
const (
	defaultHealthInterval     = 10 * time.Second
	minHealthInterval         = time.Second
	defaultHealthTimeout      = 2 * time.Second
	defaultHealthyThreshold   = 2
	defaultUnhealthyThreshold = 3
	defaultConnectFailures    = 3
	default5xx                = 5
	defaultGatewayErrors      = 3
	defaultBaseEjection       = 10 * time.Second
	defaultMaxEjection        = 5 * time.Minute
	defaultMaxEjectionPercent = 50
	defaultBreakerLimit       = 1024
	defaultCarbonInterval     = time.Second
	minCarbonInterval         = 10 * time.Millisecond
	defaultMaxAddedLatency    = 50 * time.Millisecond
	defaultMaxShareChange     = 0.05
	defaultMinShare           = 0.05
	defaultIntensityScale     = 50
	defaultLatencyCost        = 1
	maxWeight                 = 10000
	defaultHealthScheme       = "http"
	unlimited                 = math.MaxInt
)

// withDefaults returns o with defaults filled in, and every problem found.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if o.Name == "" {
		bad("name is empty")
	}
	switch o.Policy {
	case "":
		o.Policy = RoundRobin
	case RoundRobin, LeastRequest, Carbon:
	default:
		bad("policy %q is not round_robin, least_request or carbon", o.Policy)
	}
	if len(o.Endpoints) == 0 {
		bad("endpoints: none given")
	}
	eps := make([]EndpointOptions, len(o.Endpoints))
	seen := make(map[string]bool, len(o.Endpoints))
	for i, e := range o.Endpoints {
		if _, _, err := net.SplitHostPort(e.Address); err != nil || e.Address == "" {
			bad("endpoints[%d].address: %q is not host:port", i, e.Address)
		} else if seen[e.Address] {
			bad("endpoints[%d].address: %q is listed twice", i, e.Address)
		}
		seen[e.Address] = true
		switch {
		case e.Weight == 0:
			e.Weight = 1
		case e.Weight < 0 || e.Weight > maxWeight:
			bad("endpoints[%d].weight: %d is not in 1..%d", i, e.Weight, maxWeight)
		}
		eps[i] = e
	}
	o.Endpoints = eps

	h := &o.Health
	switch {
	case h.Interval == 0:
		h.Interval = defaultHealthInterval
	case h.Interval < minHealthInterval:
		bad("health.interval: %s is below the minimum %s", h.Interval, minHealthInterval)
	}
	switch {
	case h.Timeout == 0:
		h.Timeout = min(defaultHealthTimeout, h.Interval)
	case h.Timeout < 0 || h.Timeout > h.Interval:
		bad("health.timeout: %s is not in (0, interval]", h.Timeout)
	}
	h.HealthyThreshold = positiveOr(h.HealthyThreshold, defaultHealthyThreshold, "health.healthy_threshold", bad)
	h.UnhealthyThreshold = positiveOr(h.UnhealthyThreshold, defaultUnhealthyThreshold, "health.unhealthy_threshold", bad)
	if len(h.ExpectedStatuses) == 0 {
		h.ExpectedStatuses = []StatusRange{{Min: 200, Max: 399}}
	}
	for i, r := range h.ExpectedStatuses {
		if r.Min < 100 || r.Max > 599 || r.Min > r.Max {
			bad("health.expected_statuses[%d]: %d-%d is not a range within 100..599", i, r.Min, r.Max)
		}
	}
	if h.Scheme == "" {
		h.Scheme = defaultHealthScheme
	}
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
		bad("health.path: %q does not start with /", h.Path)
	}

	od := &o.Outlier
	od.ConsecutiveConnectFailures = countOr(od.ConsecutiveConnectFailures, defaultConnectFailures)
	od.Consecutive5xx = countOr(od.Consecutive5xx, default5xx)
	od.ConsecutiveGatewayErrors = countOr(od.ConsecutiveGatewayErrors, defaultGatewayErrors)
	od.BaseEjectionTime = durationOr(od.BaseEjectionTime, defaultBaseEjection, "outlier.base_ejection_time", bad)
	od.MaxEjectionTime = durationOr(od.MaxEjectionTime, defaultMaxEjection, "outlier.max_ejection_time", bad)
	if od.MaxEjectionTime < od.BaseEjectionTime {
		bad("outlier.max_ejection_time: %s is below base_ejection_time %s", od.MaxEjectionTime, od.BaseEjectionTime)
	}
	switch {
	case od.MaxEjectionPercent == 0:
		od.MaxEjectionPercent = defaultMaxEjectionPercent
	case od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100:
		bad("outlier.max_ejection_percent: %d is not in 1..100", od.MaxEjectionPercent)
	}

	b := &o.Breaker
	b.MaxConnections = limitOr(b.MaxConnections)
	b.MaxPending = limitOr(b.MaxPending)
	b.MaxRequests = limitOr(b.MaxRequests)

	c := &o.Carbon
	switch {
	case c.Interval == 0:
		c.Interval = defaultCarbonInterval
	case c.Interval < minCarbonInterval:
		bad("carbon.interval: %s is below the minimum %s", c.Interval, minCarbonInterval)
	}
	switch {
	case c.MaxAddedLatency == 0:
		c.MaxAddedLatency = defaultMaxAddedLatency
	case c.MaxAddedLatency < 0:
		bad("carbon.max_added_latency: %s is negative", c.MaxAddedLatency)
	}
	switch {
	case c.MaxShareChange == 0:
		c.MaxShareChange = defaultMaxShareChange
	case !(c.MaxShareChange > 0 && c.MaxShareChange <= 1):
		bad("carbon.max_share_change: %g is not in (0, 1]", c.MaxShareChange)
	}
	switch {
	case c.MinShare == 0:
		c.MinShare = defaultMinShare
	case c.MinShare < 0:
		c.MinShare = 0
	case !(c.MinShare < 1):
		bad("carbon.min_share: %g is not in [0, 1)", c.MinShare)
	}
	switch {
	case c.IntensityScale == 0:
		c.IntensityScale = defaultIntensityScale
	case !(c.IntensityScale > 0) || math.IsInf(c.IntensityScale, 0):
		bad("carbon.intensity_scale: %g is not a positive number", c.IntensityScale)
	}
	switch {
	case c.LatencyCost == 0:
		c.LatencyCost = defaultLatencyCost
	case c.LatencyCost < 0:
		c.LatencyCost = 0
	case math.IsNaN(c.LatencyCost) || math.IsInf(c.LatencyCost, 0):
		bad("carbon.latency_cost: %g is not a number", c.LatencyCost)
	}
	if !(c.RequestJoules >= 0) || math.IsInf(c.RequestJoules, 0) {
		bad("carbon.request_joules: %g is not a non-negative number", c.RequestJoules)
	}
	return o, errors.Join(errs...)
}

func positiveOr(v, def int, key string, bad func(string, ...any)) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		bad("%s: %d is negative", key, v)
	}
	return v
}

// countOr maps 0 to def and a negative count to 0 (disabled).
func countOr(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func durationOr(v, def time.Duration, key string, bad func(string, ...any)) time.Duration {
	switch {
	case v == 0:
		return def
	case v < 0:
		bad("%s: %s is negative", key, v)
	}
	return v
}

// limitOr maps 0 to the default breaker limit and a negative limit to
// unlimited.
func limitOr(v int) int {
	switch {
	case v == 0:
		return defaultBreakerLimit
	case v < 0:
		return unlimited
	}
	return v
}
