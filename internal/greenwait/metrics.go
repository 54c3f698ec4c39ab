package greenwait

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes counted by aegis_greenwait_jobs_total.
const (
	outcomeAccepted  = "accepted"
	outcomeRejected  = "rejected" // queue full, body too large, store error
	outcomeDone      = "done"
	outcomeFailed    = "failed"
	outcomeCancelled = "cancelled"
	outcomeRetried   = "retried" // a failed release attempt that will be retried
)

type metrics struct {
	current     [PriorityBackground + 1]prometheus.Gauge
	jobs        *prometheus.CounterVec
	wait        *prometheus.HistogramVec
	saved       prometheus.Counter
	quarantined *prometheus.CounterVec
	callbacks   *prometheus.CounterVec
	panics      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, storeBytes func() float64) (*metrics, error) {
	current := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "aegis_deferred_jobs_current",
		Help: "Deferred Green-Wait jobs not yet finished (queued, planned or running), by priority.",
	}, []string{"priority"})
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_greenwait_jobs_total",
			Help: "Green-Wait jobs by priority and outcome (accepted, rejected, done, failed, cancelled, retried).",
		}, []string{"priority", "outcome"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aegis_greenwait_wait_seconds",
			Help:    "Time from acceptance to the successful release of a Green-Wait job, by priority.",
			Buckets: []float64{1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400},
		}, []string{"priority"}),
		saved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aegis_greenwait_carbon_saved_grams_total",
			Help: "Estimated grams of CO2eq saved by deferring jobs (positive savings only).",
		}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_greenwait_quarantined_records_total",
			Help: "Stored Green-Wait records that could not be opened or decoded and were quarantined, by kind (job, result).",
		}, []string{"kind"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_greenwait_callbacks_total",
			Help: "Completion callbacks by result (ok, error).",
		}, []string{"result"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aegis_greenwait_panics_total",
			Help: "Panics recovered in Green-Wait background goroutines.",
		}),
	}
	for _, p := range deferrable {
		m.current[p] = current.WithLabelValues(p.String())
	}
	bytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "aegis_greenwait_store_bytes",
		Help: "Bytes of encrypted job and result records in the Green-Wait store (excluding bbolt overhead).",
	}, storeBytes)
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{current, m.jobs, m.wait, m.saved, m.quarantined, m.callbacks, m.panics, bytes} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
