package proxy

import "github.com/prometheus/client_golang/prometheus"

// resilienceMetrics count retries, exhausted retry budgets and rate-limited
// requests.
type resilienceMetrics struct {
	retries         *prometheus.CounterVec
	budgetExhausted *prometheus.CounterVec
	rateLimited     *prometheus.CounterVec
}

func newResilienceMetrics() *resilienceMetrics {
	return &resilienceMetrics{
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_proxy_retries_total",
			Help: "Retries sent, by route and reason (connect-failure, refused-stream, reset, 502, 503, 504, per-try-timeout).",
		}, []string{"route", "reason"}),
		budgetExhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_proxy_retry_budget_exhausted_total",
			Help: "Retries not sent because the route's retry budget was exhausted.",
		}, []string{"route"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_proxy_rate_limited_total",
			Help: "Requests answered 429 by the route's local rate limit.",
		}, []string{"route"}),
	}
}

func (r *resilienceMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.retries, r.budgetExhausted, r.rateLimited}
}

// routeResilience caches one route's resilience series. A nil
// *routeResilience counts nothing.
type routeResilience struct {
	name            string
	retries         *prometheus.CounterVec
	budget, limited prometheus.Counter
}

func (m *Metrics) forResilience(route string) *routeResilience {
	if m == nil || m.res == nil {
		return nil
	}
	return &routeResilience{
		name: route, retries: m.res.retries,
		budget:  m.res.budgetExhausted.WithLabelValues(route),
		limited: m.res.rateLimited.WithLabelValues(route),
	}
}

func (r *routeResilience) retried(reason string) {
	if r != nil {
		r.retries.WithLabelValues(r.name, reason).Inc()
	}
}

func (r *routeResilience) budgetExhausted() {
	if r != nil {
		r.budget.Inc()
	}
}

func (r *routeResilience) rateLimited() {
	if r != nil {
		r.limited.Inc()
	}
}

// initResilience compiles the route's retry policy and rate limit.
func (rt *route) initResilience(m *Metrics) error {
	var err error
	if rt.retry, err = compileRetry(rt.Retry); err != nil {
		return err
	}
	if rt.limiter, err = newRateLimiter(rt.RateLimit); err != nil {
		return err
	}
	rt.res = m.forResilience(rt.Name)
	rt.endpoints = len(rt.cluster.Balancer.Endpoints())
	return nil
}
