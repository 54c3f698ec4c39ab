package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Health configures active HTTP health checks of a cluster's endpoints.
type Health struct {
	// Path is the path to GET, e.g. "/healthz" (default "": checks off).
	Path string `toml:"path" json:"path"`
	// Interval between checks of an endpoint (default 10s, minimum 1s).
	Interval Duration `toml:"interval" json:"interval"`
	// Timeout of one check (default 2s, at most interval).
	Timeout Duration `toml:"timeout" json:"timeout"`
	// HealthyThreshold is the number of passing checks in a row that mark a
	// down endpoint up (default 2).
	HealthyThreshold int `toml:"healthy_threshold" json:"healthy_threshold"`
	// UnhealthyThreshold is the number of failing checks in a row that mark
	// an up endpoint down (default 3).
	UnhealthyThreshold int `toml:"unhealthy_threshold" json:"unhealthy_threshold"`
	// ExpectedStatuses are the passing codes: a comma-separated list of
	// codes and inclusive ranges (default "200-399").
	ExpectedStatuses string `toml:"expected_statuses" json:"expected_statuses"`
	// Host is the Host header of a check (default "": the endpoint address).
	Host string `toml:"host" json:"host"`
}

// Outlier configures passive health: endpoints that fail in a row are
// ejected for a backoff. A count of -1 turns that detector off.
type Outlier struct {
	// ConsecutiveConnectFailures ejects after this many connect failures in
	// a row (default 3). Not capped by MaxEjectionPercent: an endpoint that
	// cannot be reached serves nothing.
	ConsecutiveConnectFailures int `toml:"consecutive_connect_failures" json:"consecutive_connect_failures"`
	// Consecutive5xx ejects after this many 5xx responses in a row (default 5).
	Consecutive5xx int `toml:"consecutive_5xx" json:"consecutive_5xx"`
	// ConsecutiveGatewayErrors ejects after this many 502, 503 or 504
	// responses or failed exchanges in a row (default 3).
	ConsecutiveGatewayErrors int `toml:"consecutive_gateway_errors" json:"consecutive_gateway_errors"`
	// BaseEjectionTime is the first ejection's length, doubled for each
	// ejection in a row (default 10s).
	BaseEjectionTime Duration `toml:"base_ejection_time" json:"base_ejection_time"`
	// MaxEjectionTime caps the ejection length (default 5m).
	MaxEjectionTime Duration `toml:"max_ejection_time" json:"max_ejection_time"`
	// MaxEjectionPercent caps the share of endpoints that 5xx and gateway
	// detection may eject at once, 1..100 (default 50); at least one
	// endpoint always stays in.
	MaxEjectionPercent int `toml:"max_ejection_percent" json:"max_ejection_percent"`
}

// CircuitBreaker caps the load a cluster takes; overflow gets a fast 503.
// -1 means unlimited.
type CircuitBreaker struct {
	// MaxConnections caps open upstream connections (default 1024).
	MaxConnections int `toml:"max_connections" json:"max_connections"`
	// MaxPending caps requests waiting for a connection (default 1024).
	MaxPending int `toml:"max_pending" json:"max_pending"`
	// MaxRequests caps requests in flight (default 1024).
	MaxRequests int `toml:"max_requests" json:"max_requests"`
}

// Retry is a route's retry policy.
type Retry struct {
	// Attempts is the number of tries, the first included (default 2: one
	// retry; 1 turns retries off).
	Attempts int `toml:"attempts" json:"attempts"`
	// PerTryTimeout bounds one try until response headers (default 0: only
	// the route timeout, which bounds all tries together). A try that times
	// out is retried.
	PerTryTimeout Duration `toml:"per_try_timeout" json:"per_try_timeout"`
	// RetryOn lists the retried conditions: connect-failure, refused-stream,
	// reset, 502, 503, 504 (default connect-failure, refused-stream, reset).
	RetryOn []string `toml:"retry_on" json:"retry_on"`
	// AllowNonIdempotent retries POST, PATCH and other non-idempotent
	// methods too (default false).
	AllowNonIdempotent bool `toml:"allow_non_idempotent" json:"allow_non_idempotent"`
	// BackoffBase is the first backoff cap, doubled per retry (default 25ms);
	// each wait is drawn uniformly from [0, cap] (full jitter).
	BackoffBase Duration `toml:"backoff_base" json:"backoff_base"`
	// BackoffMax caps the backoff (default 250ms).
	BackoffMax Duration `toml:"backoff_max" json:"backoff_max"`
	// BudgetPercent is how many retries the route may add, as a percentage
	// of its requests over the last 10 seconds, 1..100 (default 20).
	BudgetPercent int `toml:"budget_percent" json:"budget_percent"`
	// MinRetriesPerSecond is the retry rate always allowed, whatever the
	// percentage, averaged over 10 seconds (default 3).
	MinRetriesPerSecond int `toml:"min_retries_per_second" json:"min_retries_per_second"`
}

// RateLimit is a route's local token-bucket rate limit.
type RateLimit struct {
	// RequestsPerSecond is the refill rate (default 0: no limit).
	RequestsPerSecond float64 `toml:"requests_per_second" json:"requests_per_second"`
	// Burst is the bucket size (default: requests_per_second rounded up,
	// at least 1).
	Burst int `toml:"burst" json:"burst"`
}

// Resilience defaults.
const (
	DefaultHealthInterval      = 10 * time.Second
	MinHealthInterval          = time.Second
	DefaultHealthTimeout       = 2 * time.Second
	DefaultHealthyThreshold    = 2
	DefaultUnhealthyThreshold  = 3
	DefaultExpectedStatuses    = "200-399"
	Default5xx                 = 5
	DefaultGatewayErrors       = 3
	DefaultMaxEjectionPercent  = 50
	DefaultBreakerLimit        = 1024
	DefaultRetryAttempts       = 2
	DefaultBackoffBase         = 25 * time.Millisecond
	DefaultBackoffMax          = 250 * time.Millisecond
	DefaultRetryBudgetPercent  = 20
	DefaultMinRetriesPerSecond = 3
	MaxRetryAttempts           = 10
)

// RetryConditions are the values allowed in retry_on.
var RetryConditions = []string{"connect-failure", "refused-stream", "reset", "502", "503", "504"}

// DefaultRetryOn is the default retry_on.
var DefaultRetryOn = []string{"connect-failure", "refused-stream", "reset"}

func setClusterResilienceDefaults(c *Cluster) {
	h := &c.Health
	dur(&h.Interval, DefaultHealthInterval)
	dur(&h.Timeout, min(DefaultHealthTimeout, h.Interval.Duration))
	num(&h.HealthyThreshold, DefaultHealthyThreshold)
	num(&h.UnhealthyThreshold, DefaultUnhealthyThreshold)
	str(&h.ExpectedStatuses, DefaultExpectedStatuses)

	o := &c.Outlier
	num(&o.ConsecutiveConnectFailures, DefaultEjectFailures)
	num(&o.Consecutive5xx, Default5xx)
	num(&o.ConsecutiveGatewayErrors, DefaultGatewayErrors)
	dur(&o.BaseEjectionTime, DefaultBaseEjection)
	dur(&o.MaxEjectionTime, DefaultMaxEjection)
	num(&o.MaxEjectionPercent, DefaultMaxEjectionPercent)

	b := &c.CircuitBreaker
	num(&b.MaxConnections, DefaultBreakerLimit)
	num(&b.MaxPending, DefaultBreakerLimit)
	num(&b.MaxRequests, DefaultBreakerLimit)
}

func setRouteResilienceDefaults(r *Route) {
	rt := &r.Retry
	num(&rt.Attempts, DefaultRetryAttempts)
	if rt.RetryOn == nil {
		rt.RetryOn = slices.Clone(DefaultRetryOn)
	}
	dur(&rt.BackoffBase, DefaultBackoffBase)
	dur(&rt.BackoffMax, DefaultBackoffMax)
	num(&rt.BudgetPercent, DefaultRetryBudgetPercent)
	num(&rt.MinRetriesPerSecond, DefaultMinRetriesPerSecond)
	if rl := &r.RateLimit; rl.RequestsPerSecond > 0 && rl.Burst == 0 {
		rl.Burst = max(1, int(min(rl.RequestsPerSecond+0.999999, 1<<30)))
	}
}

// clusterResilience validates a cluster's health, outlier and circuit
// breaker sections; p is the cluster's key path.
func (v *validator) clusterResilience(p string, c *Cluster) {
	h := c.Health
	hp := p + ".health"
	if h.Path != "" && (!strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \t\r\n#")) {
		v.add(hp+".path", "%q must start with '/' and contain no spaces or '#'", h.Path)
	}
	if !h.Interval.invalid && h.Interval.Duration < MinHealthInterval {
		v.add(hp+".interval", "%s is below the minimum %s", h.Interval.Duration, MinHealthInterval)
	}
	if !h.Timeout.invalid && !h.Interval.invalid && (h.Timeout.Duration <= 0 || h.Timeout.Duration > h.Interval.Duration) {
		v.add(hp+".timeout", "%s must be greater than zero and at most interval %s", h.Timeout.Duration, h.Interval.Duration)
	}
	v.between(hp+".healthy_threshold", h.HealthyThreshold, 1, 100)
	v.between(hp+".unhealthy_threshold", h.UnhealthyThreshold, 1, 100)
	if msg := statusRangesProblem(h.ExpectedStatuses); msg != "" {
		v.add(hp+".expected_statuses", "%q: %s", h.ExpectedStatuses, msg)
	}
	if strings.ContainsAny(h.Host, " /\t\r\n") {
		v.add(hp+".host", "%q is not a host name", h.Host)
	}

	o := c.Outlier
	op := p + ".outlier"
	v.between(op+".consecutive_connect_failures", o.ConsecutiveConnectFailures, -1, 1000)
	v.between(op+".consecutive_5xx", o.Consecutive5xx, -1, 1000)
	v.between(op+".consecutive_gateway_errors", o.ConsecutiveGatewayErrors, -1, 1000)
	if !o.BaseEjectionTime.invalid && o.BaseEjectionTime.Duration <= 0 {
		v.add(op+".base_ejection_time", "must be greater than zero")
	}
	if !o.BaseEjectionTime.invalid && !o.MaxEjectionTime.invalid && o.MaxEjectionTime.Duration < o.BaseEjectionTime.Duration {
		v.add(op+".max_ejection_time", "%s is shorter than base_ejection_time %s",
			o.MaxEjectionTime.Duration, o.BaseEjectionTime.Duration)
	}
	v.between(op+".max_ejection_percent", o.MaxEjectionPercent, 1, 100)

	b := c.CircuitBreaker
	bp := p + ".circuit_breaker"
	v.between(bp+".max_connections", b.MaxConnections, -1, 1<<30)
	v.between(bp+".max_pending", b.MaxPending, -1, 1<<30)
	v.between(bp+".max_requests", b.MaxRequests, -1, 1<<30)
}

// routeResilience validates a route's retry and rate-limit sections; p is
// the route's key path.
func (v *validator) routeResilience(p string, r *Route) {
	rt := r.Retry
	rp := p + ".retry"
	v.between(rp+".attempts", rt.Attempts, 1, MaxRetryAttempts)
	if !rt.PerTryTimeout.invalid && r.Timeout.Duration > 0 && rt.PerTryTimeout.Duration > r.Timeout.Duration {
		v.add(rp+".per_try_timeout", "%s is longer than the route timeout %s", rt.PerTryTimeout.Duration, r.Timeout.Duration)
	}
	for j, c := range rt.RetryOn {
		if !slices.Contains(RetryConditions, c) {
			v.add(fmt.Sprintf("%s.retry_on[%d]", rp, j), "%q is not one of %s", c, strings.Join(RetryConditions, ", "))
		}
	}
	if !rt.BackoffBase.invalid && rt.BackoffBase.Duration <= 0 {
		v.add(rp+".backoff_base", "must be greater than zero")
	}
	if !rt.BackoffBase.invalid && !rt.BackoffMax.invalid && rt.BackoffMax.Duration < rt.BackoffBase.Duration {
		v.add(rp+".backoff_max", "%s is shorter than backoff_base %s", rt.BackoffMax.Duration, rt.BackoffBase.Duration)
	}
	v.between(rp+".budget_percent", rt.BudgetPercent, 1, 100)
	v.between(rp+".min_retries_per_second", rt.MinRetriesPerSecond, 1, 10000)

	rl := r.RateLimit
	lp := p + ".rate_limit"
	if !(rl.RequestsPerSecond >= 0 && rl.RequestsPerSecond <= 1e9) {
		v.add(lp+".requests_per_second", "%g is outside 0..1e9", rl.RequestsPerSecond)
	}
	if rl.RequestsPerSecond == 0 && rl.Burst != 0 {
		v.add(lp+".burst", "needs requests_per_second")
	} else if rl.RequestsPerSecond > 0 {
		v.between(lp+".burst", rl.Burst, 1, 1<<30)
	}
}

// statusRangesProblem checks a list such as "200-399,404"; "" means valid.
func statusRangesProblem(spec string) string {
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return "empty item (want codes and ranges such as \"200-399,404\")"
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, ok := statusCode(lo)
		if !ok {
			return fmt.Sprintf("%q is not a status code in 100..599", strings.TrimSpace(lo))
		}
		if isRange {
			b, ok := statusCode(hi)
			if !ok {
				return fmt.Sprintf("%q is not a status code in 100..599", strings.TrimSpace(hi))
			}
			if b < a {
				return fmt.Sprintf("range %s is reversed", part)
			}
		}
	}
	return ""
}

func statusCode(s string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	return n, err == nil && n >= 100 && n <= 599
}
