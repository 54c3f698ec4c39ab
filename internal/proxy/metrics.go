package proxy

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the request-path metrics, shared by every Proxy built over
// the life of the process (a reload keeps counting in the same series).
type Metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamReqs   *prometheus.CounterVec
	upstreamErrors *prometheus.CounterVec
	res            *resilienceMetrics
	body           *prometheus.CounterVec // bodylimit.go
}

// NewMetrics builds the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_requests_total",
			Help: "Requests served, by route and status class.",
		}, []string{"route", "code_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aegis_request_duration_seconds",
			Help:    "Time from request arrival to the end of the response, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		upstreamReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_upstream_requests_total",
			Help: "Requests sent to upstream endpoints, by cluster.",
		}, []string{"cluster"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_upstream_errors_total",
			Help: "Upstream requests that failed without a response, by cluster and kind (connect, timeout, other).",
		}, []string{"cluster", "kind"}),
		res:  newResilienceMetrics(),
		body: newBodyCounter(),
	}
	if reg != nil {
		for _, c := range append([]prometheus.Collector{m.requests, m.duration, m.upstreamReqs, m.upstreamErrors, m.body}, m.res.collectors()...) {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// routeMetrics caches one route's series so the request path does no label
// lookups.
type routeMetrics struct {
	byClass  [6]prometheus.Counter // 1xx..5xx at [1..5], other at [0]
	duration prometheus.Observer
}

func (m *Metrics) forRoute(name string) *routeMetrics {
	if m == nil {
		return nil
	}
	rm := &routeMetrics{duration: m.duration.WithLabelValues(name)}
	for i := range rm.byClass {
		class := "other"
		if i > 0 {
			class = strconv.Itoa(i) + "xx"
		}
		rm.byClass[i] = m.requests.WithLabelValues(name, class)
	}
	return rm
}

func (rm *routeMetrics) observe(status int, d time.Duration) {
	if rm == nil {
		return
	}
	i := status / 100
	if i < 1 || i > 5 {
		i = 0
	}
	rm.byClass[i].Inc()
	rm.duration.Observe(d.Seconds())
}

// clusterMetrics caches a cluster's upstream series.
type clusterMetrics struct {
	requests                 prometheus.Counter
	connect, timeout, others prometheus.Counter
}

func (m *Metrics) forCluster(name string) *clusterMetrics {
	if m == nil {
		return nil
	}
	return &clusterMetrics{
		requests: m.upstreamReqs.WithLabelValues(name),
		connect:  m.upstreamErrors.WithLabelValues(name, "connect"),
		timeout:  m.upstreamErrors.WithLabelValues(name, "timeout"),
		others:   m.upstreamErrors.WithLabelValues(name, "other"),
	}
}

const (
	failConnect = iota
	failTimeout
	failOther
)

func (cm *clusterMetrics) fail(kind int) {
	if cm == nil {
		return
	}
	switch kind {
	case failConnect:
		cm.connect.Inc()
	case failTimeout:
		cm.timeout.Inc()
	default:
		cm.others.Inc()
	}
}
