package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const resilienceMinimal = `
[[listeners]]
name = "l"
address = "127.0.0.1:0"

[[routes]]
name = "r"
cluster = "c"

[[clusters]]
name = "c"
[[clusters.endpoints]]
address = "127.0.0.1:1"
region = "r"
`

func TestResilienceDefaults(t *testing.T) {
	f, err := Parse("t.toml", []byte(resilienceMinimal))
	if err != nil {
		t.Fatal(err)
	}
	c, r := f.Clusters[0], f.Routes[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"health.path", c.Health.Path, ""},
		{"health.interval", c.Health.Interval.Duration, 10 * time.Second},
		{"health.timeout", c.Health.Timeout.Duration, 2 * time.Second},
		{"health.healthy_threshold", c.Health.HealthyThreshold, 2},
		{"health.unhealthy_threshold", c.Health.UnhealthyThreshold, 3},
		{"health.expected_statuses", c.Health.ExpectedStatuses, "200-399"},
		{"outlier.consecutive_connect_failures", c.Outlier.ConsecutiveConnectFailures, 3},
		{"outlier.consecutive_5xx", c.Outlier.Consecutive5xx, 5},
		{"outlier.consecutive_gateway_errors", c.Outlier.ConsecutiveGatewayErrors, 3},
		{"outlier.base_ejection_time", c.Outlier.BaseEjectionTime.Duration, 10 * time.Second},
		{"outlier.max_ejection_time", c.Outlier.MaxEjectionTime.Duration, 5 * time.Minute},
		{"outlier.max_ejection_percent", c.Outlier.MaxEjectionPercent, 50},
		{"circuit_breaker.max_connections", c.CircuitBreaker.MaxConnections, 1024},
		{"circuit_breaker.max_pending", c.CircuitBreaker.MaxPending, 1024},
		{"circuit_breaker.max_requests", c.CircuitBreaker.MaxRequests, 1024},
		{"retry.attempts", r.Retry.Attempts, 2},
		{"retry.per_try_timeout", r.Retry.PerTryTimeout.Duration, time.Duration(0)},
		{"retry.allow_non_idempotent", r.Retry.AllowNonIdempotent, false},
		{"retry.backoff_base", r.Retry.BackoffBase.Duration, 25 * time.Millisecond},
		{"retry.backoff_max", r.Retry.BackoffMax.Duration, 250 * time.Millisecond},
		{"retry.budget_percent", r.Retry.BudgetPercent, 20},
		{"retry.min_retries_per_second", r.Retry.MinRetriesPerSecond, 3},
		{"rate_limit.requests_per_second", r.RateLimit.RequestsPerSecond, 0.0},
		{"rate_limit.burst", r.RateLimit.Burst, 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if diff := cmp.Diff([]string{"connect-failure", "refused-stream", "reset"}, r.Retry.RetryOn); diff != "" {
		t.Errorf("retry.retry_on (-want +got):\n%s", diff)
	}
}

func TestResilienceSettings(t *testing.T) {
	tests := []struct {
		name, route, cluster string
		check                func(t *testing.T, f *File)
	}{
		{
			name:  "burst defaults to the rate rounded up",
			route: "[routes.rate_limit]\nrequests_per_second = 2.5\n",
			check: func(t *testing.T, f *File) {
				if got := f.Routes[0].RateLimit.Burst; got != 3 {
					t.Errorf("burst: got %d, want 3", got)
				}
			},
		},
		{
			name:    "short interval shortens the default timeout",
			cluster: "[clusters.health]\npath = \"/healthz\"\ninterval = \"1s\"\n",
			check: func(t *testing.T, f *File) {
				if got := f.Clusters[0].Health.Timeout.Duration; got != time.Second {
					t.Errorf("timeout: got %v, want 1s", got)
				}
			},
		},
		{
			name:    "-1 disables detectors and limits",
			cluster: "[clusters.outlier]\nconsecutive_5xx = -1\n[clusters.circuit_breaker]\nmax_requests = -1\n",
			check: func(t *testing.T, f *File) {
				if got := f.Clusters[0].Outlier.Consecutive5xx; got != -1 {
					t.Errorf("consecutive_5xx: got %d, want -1", got)
				}
				if got := f.Clusters[0].CircuitBreaker.MaxRequests; got != -1 {
					t.Errorf("max_requests: got %d, want -1", got)
				}
			},
		},
		{
			name:  "empty retry_on is kept (no conditions)",
			route: "[routes.retry]\nretry_on = []\n",
			check: func(t *testing.T, f *File) {
				if got := f.Routes[0].Retry.RetryOn; len(got) != 0 {
					t.Errorf("retry_on: got %v, want empty", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.Replace(resilienceMinimal, "cluster = \"c\"\n", "cluster = \"c\"\n"+tt.route, 1)
			text = strings.Replace(text, "[[clusters.endpoints]]", tt.cluster+"[[clusters.endpoints]]", 1)
			f, err := Parse("t.toml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, f)
		})
	}
}

func TestStatusRanges(t *testing.T) {
	tests := []struct {
		spec string
		ok   bool
	}{
		{"200-399", true}, {"200", true}, {"200-299, 404", true}, {"100-599", true},
		{"", false}, {"200-", false}, {"99", false}, {"600", false}, {"399-200", false},
		{"200,,300", false}, {"2xx", false},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			if got := statusRangesProblem(tt.spec) == ""; got != tt.ok {
				t.Errorf("statusRangesProblem(%q) valid: got %v, want %v", tt.spec, got, tt.ok)
			}
		})
	}
}

// FuzzStatusRanges: the expected_statuses parser never panics, and what it
// accepts is made of codes in 100..599.
func FuzzStatusRanges(f *testing.F) {
	for _, s := range []string{"200-399", "200,404", " 500 - 599 ", "", "-", "1-2-3", "200-99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		if statusRangesProblem(spec) != "" {
			return
		}
		for part := range strings.SplitSeq(spec, ",") {
			lo, hi, isRange := strings.Cut(part, "-")
			if _, ok := statusCode(lo); !ok {
				t.Fatalf("accepted %q with bad code %q", spec, lo)
			}
			if isRange {
				if _, ok := statusCode(hi); !ok {
					t.Fatalf("accepted %q with bad code %q", spec, hi)
				}
			}
		}
	})
}
