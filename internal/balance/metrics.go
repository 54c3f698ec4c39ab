package balance

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the set of balance metrics, built once and shared by every
// cluster. Labels are bounded: cluster and region names come from
// configuration.
type Metrics struct {
	healthy      *prometheus.GaugeVec
	share        *prometheus.GaugeVec
	ejections    *prometheus.CounterVec
	circuitOpen  *prometheus.CounterVec
	requests     *prometheus.CounterVec
	healthChecks *prometheus.CounterVec
}

// NewMetrics builds the metrics and registers them with reg (nil: built but
// not registered). Registering twice with one registry fails.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aegis_balance_healthy_endpoints",
			Help: "Number of usable endpoints (up by active checks and not ejected) per cluster and region.",
		}, []string{"cluster", "region"}),
		share: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aegis_balance_region_share_ratio",
			Help: "Target share of a cluster's traffic per region (carbon policy: applied carbon share; otherwise the weight split).",
		}, []string{"cluster", "region"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_balance_ejections_total",
			Help: "Passive ejections of endpoints by reason (connect_failure, consecutive_5xx, gateway_error).",
		}, []string{"cluster", "reason"}),
		circuitOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_balance_circuit_open_total",
			Help: "Requests or connections refused by a circuit breaker limit (connections, pending, requests).",
		}, []string{"cluster", "limit"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_balance_requests_total",
			Help: "Requests routed to endpoints, by cluster and endpoint region.",
		}, []string{"cluster", "region"}),
		healthChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_balance_health_checks_total",
			Help: "Active health checks by result (success, failure).",
		}, []string{"cluster", "result"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.healthy, m.share, m.ejections, m.circuitOpen, m.requests, m.healthChecks} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register balance metrics: %w", err)
	}
	return m, nil
}
