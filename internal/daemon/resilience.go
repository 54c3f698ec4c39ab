package daemon

import (
	"fmt"
	"time"

	"github.com/aegis-flow/aegis/internal/balance"
	"github.com/aegis-flow/aegis/internal/config"
	"github.com/aegis-flow/aegis/internal/pqtls"
	"github.com/aegis-flow/aegis/internal/proxy"
)

// healthOptions turns a cluster's [clusters.health] into balance options.
// Checks get their own transport speaking the cluster's protocol and TLS
// policy, without the circuit breaker's connection hooks: a check must
// neither take a slot from requests nor be refused by a full breaker. The
// transport is nil when checks are off.
func (d *Daemon) healthOptions(c config.Cluster) (balance.HealthOptions, proxy.Transport, error) {
	h := c.Health
	if h.Path == "" {
		return balance.HealthOptions{}, nil, nil
	}
	statuses, err := balance.ParseStatusRanges(h.ExpectedStatuses)
	if err != nil {
		return balance.HealthOptions{}, nil, fmt.Errorf("health: %w", err)
	}
	topts := proxy.TransportOptions{
		Protocol: c.Protocol, ConnectTimeout: min(c.ConnectTimeout.Duration, h.Timeout.Duration),
		MaxIdlePerEndpoint: 1, IdleTimeout: h.Interval.Duration + h.Timeout.Duration + time.Second,
	}
	scheme := "http"
	if c.Protocol == proxy.ProtoHTTPS || c.Protocol == proxy.ProtoH2 || c.Protocol == proxy.ProtoH3 {
		scheme = "https"
		pol, err := pqtls.ParsePolicy(c.TLS.PQ)
		if err != nil {
			return balance.HealthOptions{}, nil, err
		}
		topts.TLS, err = pqtls.ClientConfig(pqtls.ClientOptions{
			Name: c.Name, Policy: pol, CAFile: c.TLS.CAFile, ServerName: c.TLS.ServerName,
			InsecureSkipVerify: c.TLS.InsecureSkipVerify, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile,
			Logger: d.log, Metrics: d.metrics.tls,
		})
		if err != nil {
			return balance.HealthOptions{}, nil, fmt.Errorf("health: %w", err)
		}
	}
	t, err := newClusterTransport(topts)
	if err != nil {
		return balance.HealthOptions{}, nil, fmt.Errorf("health: %w", err)
	}
	return balance.HealthOptions{
		Path: h.Path, Interval: h.Interval.Duration, Timeout: h.Timeout.Duration,
		HealthyThreshold: h.HealthyThreshold, UnhealthyThreshold: h.UnhealthyThreshold,
		ExpectedStatuses: statuses, Scheme: scheme, Host: h.Host, Transport: t,
	}, t, nil
}

// outlierOptions turns [clusters.outlier] into balance options (the same
// meanings: -1 turns a detector off).
func outlierOptions(o config.Outlier) balance.OutlierOptions {
	return balance.OutlierOptions{
		ConsecutiveConnectFailures: o.ConsecutiveConnectFailures,
		Consecutive5xx:             o.Consecutive5xx,
		ConsecutiveGatewayErrors:   o.ConsecutiveGatewayErrors,
		BaseEjectionTime:           o.BaseEjectionTime.Duration,
		MaxEjectionTime:            o.MaxEjectionTime.Duration,
		MaxEjectionPercent:         o.MaxEjectionPercent,
	}
}

// breakerOptions turns [clusters.circuit_breaker] into balance options
// (-1: unlimited).
func breakerOptions(b config.CircuitBreaker) balance.BreakerOptions {
	return balance.BreakerOptions{MaxConnections: b.MaxConnections, MaxPending: b.MaxPending, MaxRequests: b.MaxRequests}
}

// retryPolicy turns [routes.retry] into the proxy's policy.
func retryPolicy(r config.Retry) proxy.RetryPolicy {
	return proxy.RetryPolicy{
		Attempts: r.Attempts, PerTryTimeout: r.PerTryTimeout.Duration, On: r.RetryOn,
		AllowNonIdempotent: r.AllowNonIdempotent,
		BackoffBase:        r.BackoffBase.Duration, BackoffMax: r.BackoffMax.Duration,
		BudgetPercent: r.BudgetPercent, MinRetriesPerSecond: r.MinRetriesPerSecond,
	}
}

// closeHealth releases a retired cluster's health-check connections.
func (cs *clusterState) closeHealth() {
	if cs.health != nil {
		releaseTransport(cs.health)
	}
}
