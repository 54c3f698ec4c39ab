package carbon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	intensityDesc = prometheus.NewDesc("aegis_carbon_intensity_g_kwh",
		"Grid carbon intensity of the region now, in gCO2eq/kWh (absent when unknown).", []string{"region"}, nil)
	ageDesc = prometheus.NewDesc("aegis_carbon_signal_age_seconds",
		"Seconds since a provider last confirmed the region's intensity (absent for static and unknown).", []string{"region"}, nil)
	levelDesc = prometheus.NewDesc("aegis_carbon_fallback_level",
		"Fallback level of the region's intensity: 0 live, 1 last known good, 2 static, 3 unknown.", []string{"region"}, nil)
)

// collector computes the per-region gauges at scrape time, so that they
// follow the fallback ladder as time passes without a writer.
type collector struct{ t *Tracker }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- intensityDesc
	ch <- ageDesc
	ch <- levelDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, s := range c.t.order {
		r := *s.pub.Load()
		ch <- prometheus.MustNewConstMetric(levelDesc, prometheus.GaugeValue, float64(r.Level), s.region)
		if r.Level != Unknown {
			ch <- prometheus.MustNewConstMetric(intensityDesc, prometheus.GaugeValue, r.Signal.Intensity, s.region)
		}
		if r.Level == Live || r.Level == LastKnownGood {
			ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, r.Age(now).Seconds(), s.region)
		}
	}
}
