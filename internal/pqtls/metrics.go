package pqtls

import (
	"crypto/tls"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the TLS counters shared by every Server and client config of
// a process. A nil *Metrics counts nothing. Create it once with NewMetrics.
type Metrics struct {
	handshakes         *prometheus.CounterVec
	classical          *prometheus.CounterVec
	upstreamHandshakes *prometheus.CounterVec
	upstreamClassical  *prometheus.CounterVec
	certReloads        *prometheus.CounterVec
	certNotAfter       *prometheus.GaugeVec
}

// NewMetrics creates the pqtls metrics and registers them with reg (nil reg
// = not registered, still usable in tests). Collectors that reg already
// holds (a second NewMetrics on the same registry) are reused; any other
// registration error is a programming error and panics, as with
// prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_tls_handshakes_total",
			Help: "Completed server TLS handshakes by listener and key exchange group.",
		}, []string{"listener", "group"}),
		classical: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_pqtls_classical_handshakes_total",
			Help: "Server handshakes with a classical (not post-quantum) key exchange on listeners with pq = audit.",
		}, []string{"listener"}),
		upstreamHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_tls_upstream_handshakes_total",
			Help: "Completed upstream (client) TLS handshakes by cluster and key exchange group.",
		}, []string{"cluster", "group"}),
		upstreamClassical: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_pqtls_upstream_classical_handshakes_total",
			Help: "Upstream handshakes with a classical (not post-quantum) key exchange on clusters with pq = audit.",
		}, []string{"cluster"}),
		certReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_pqtls_cert_reloads_total",
			Help: "Certificate reload attempts by listener and result (ok, error).",
		}, []string{"listener", "result"}),
		certNotAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aegis_pqtls_cert_not_after_timestamp_seconds",
			Help: "Expiry (NotAfter, Unix seconds) of the certificate a listener serves.",
		}, []string{"listener"}),
	}
	if reg == nil {
		return m
	}
	m.handshakes = register(reg, m.handshakes)
	m.classical = register(reg, m.classical)
	m.upstreamHandshakes = register(reg, m.upstreamHandshakes)
	m.upstreamClassical = register(reg, m.upstreamClassical)
	m.certReloads = register(reg, m.certReloads)
	m.certNotAfter = register(reg, m.certNotAfter)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
}

func (m *Metrics) serverHandshake(listener string, group tls.CurveID) {
	if m == nil {
		return
	}
	m.handshakes.WithLabelValues(listener, GroupName(group)).Inc()
}

func (m *Metrics) serverClassical(listener string) {
	if m == nil {
		return
	}
	m.classical.WithLabelValues(listener).Inc()
}

func (m *Metrics) upstreamHandshake(cluster string, group tls.CurveID) {
	if m == nil {
		return
	}
	m.upstreamHandshakes.WithLabelValues(cluster, GroupName(group)).Inc()
}

func (m *Metrics) upstreamClassicalHandshake(cluster string) {
	if m == nil {
		return
	}
	m.upstreamClassical.WithLabelValues(cluster).Inc()
}

func (m *Metrics) certReload(listener string, ok bool) {
	if m == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "error"
	}
	m.certReloads.WithLabelValues(listener, result).Inc()
}

func (m *Metrics) certExpiry(listener string, notAfterUnix float64) {
	if m == nil {
		return
	}
	m.certNotAfter.WithLabelValues(listener).Set(notAfterUnix)
}
