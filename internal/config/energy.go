package config

import (
	"fmt"
	"math"
	"time"
)

// ClusterCarbon holds the carbon policy's guardrails for one cluster
// ([clusters.carbon]). The keys apply to clusters with policy = "carbon";
// interval also paces latency and share recomputation for every policy.
type ClusterCarbon struct {
	// Interval is how often intensities, latencies and traffic shares are
	// recomputed (default 1s, minimum 10ms).
	Interval Duration `toml:"interval" json:"interval"`
	// MaxAddedLatency is the largest observed latency above the fastest
	// healthy region that a region may have and still be preferred for its
	// carbon: the latency budget (default 50ms).
	MaxAddedLatency Duration `toml:"max_added_latency" json:"max_added_latency"`
	// MaxShareChange is the most a region's share of traffic may change per
	// interval, in (0, 1] (default 0.05).
	MaxShareChange float64 `toml:"max_share_change" json:"max_share_change"`
	// MinShare is the share every healthy region keeps to stay warm, in
	// [0, 1) (default 0.05; -1 means none).
	MinShare float64 `toml:"min_share" json:"min_share"`
	// IntensityScale is the cost difference in gCO2eq/kWh that shrinks a
	// region's preference by a factor e (default 50; smaller is greedier).
	IntensityScale float64 `toml:"intensity_scale" json:"intensity_scale"`
	// LatencyCost converts added latency into cost, in g/kWh per ms above
	// the fastest region (default 1; -1 means 0).
	LatencyCost float64 `toml:"latency_cost" json:"latency_cost"`
	// RequestJoules is the upstream energy of one request used for the
	// decision record's grams avoided (default 0: the cluster's
	// energy.joules_per_request).
	RequestJoules float64 `toml:"request_joules" json:"request_joules"`
}

// ClusterEnergy is the optional energy model of a cluster's upstreams
// ([clusters.energy]): joules per request plus watts over upstream time. Both
// zero (the default) means upstream energy is not estimated.
type ClusterEnergy struct {
	// JoulesPerRequest is a fixed energy per request, in joules (default 0).
	JoulesPerRequest float64 `toml:"joules_per_request" json:"joules_per_request"`
	// Watts is the upstream power attributed to a request while it is in
	// flight upstream, in watts (default 0).
	Watts float64 `toml:"watts" json:"watts"`
}

// Energy configures the estimate of the proxy's own energy ([energy]).
type Energy struct {
	// Region is where this proxy runs; its energy is counted in that
	// region's carbon intensity (default "": energy is counted, carbon is
	// not).
	Region string `toml:"region" json:"region"`
	// Interval is how often the meter measures and attributes energy
	// (default 5s, minimum 100ms).
	Interval Duration `toml:"interval" json:"interval"`
	// RAPL is "auto" (default: read /sys/class/powercap when readable, else
	// the CPU-time model) or "off" (always the model).
	RAPL string `toml:"rapl" json:"rapl"`
	// MinWattsPerVCPU and MaxWattsPerVCPU bound the CPU-time model: the
	// watts of one busy vCPU at 0% and 100% utilisation (defaults 0.74 and
	// 3.5, the Cloud Carbon Footprint averages for AWS).
	MinWattsPerVCPU float64 `toml:"min_watts_per_vcpu" json:"min_watts_per_vcpu"`
	MaxWattsPerVCPU float64 `toml:"max_watts_per_vcpu" json:"max_watts_per_vcpu"`
	// JoulesPerByte is network energy per byte proxied (default 3.6e-6,
	// from Cloud Carbon Footprint's 0.001 kWh/GB; -1 means 0).
	JoulesPerByte float64 `toml:"joules_per_byte" json:"joules_per_byte"`
	// EmbodiedGramsPerHour is the share of the host's embodied emissions
	// charged to this proxy per hour, for the SCI gauge only (default 0).
	EmbodiedGramsPerHour float64 `toml:"embodied_grams_per_hour" json:"embodied_grams_per_hour"`
	// SCIWindow is the time constant of the SCI gauge's moving average
	// (default 5m).
	SCIWindow Duration `toml:"sci_window" json:"sci_window"`
}

// Energy and carbon-routing defaults.
const (
	DefaultCarbonRouteInterval   = time.Second
	MinCarbonRouteInterval       = 10 * time.Millisecond
	DefaultMaxAddedLatency       = 50 * time.Millisecond
	DefaultMaxShareChange        = 0.05
	DefaultMinShare              = 0.05
	DefaultIntensityScale        = 50.0
	DefaultLatencyCost           = 1.0
	DefaultEnergyInterval        = 5 * time.Second
	MinEnergyInterval            = 100 * time.Millisecond
	DefaultRAPL                  = "auto"
	DefaultMinWattsPerVCPU       = 0.74
	DefaultMaxWattsPerVCPU       = 3.5
	DefaultJoulesPerByte         = 3.6e-6
	DefaultSCIWindow             = 5 * time.Minute
	maxJoulesPerRequest          = 1e6
	maxWatts                     = 1e6
	maxWattsPerVCPU              = 1000
	maxEmbodiedGramsPerHour      = 1e6
	maxJoulesPerByte             = 1
	maxIntensityScale            = 1e6
	maxLatencyCostGPerKWhPerMs   = 1e6
	maxRequestJoulesForDecisions = 1e6
)

// RAPLModes are the values of energy.rapl.
var RAPLModes = []string{"auto", "off"}

func fdef(p *float64, v float64) {
	if *p == 0 {
		*p = v
	}
}

func setEnergyDefaults(f *File) {
	e := &f.Energy
	dur(&e.Interval, DefaultEnergyInterval)
	str(&e.RAPL, DefaultRAPL)
	fdef(&e.MinWattsPerVCPU, DefaultMinWattsPerVCPU)
	fdef(&e.MaxWattsPerVCPU, DefaultMaxWattsPerVCPU)
	fdef(&e.JoulesPerByte, DefaultJoulesPerByte)
	dur(&e.SCIWindow, DefaultSCIWindow)
	for i := range f.Clusters {
		c := &f.Clusters[i].Carbon
		dur(&c.Interval, DefaultCarbonRouteInterval)
		dur(&c.MaxAddedLatency, DefaultMaxAddedLatency)
		fdef(&c.MaxShareChange, DefaultMaxShareChange)
		fdef(&c.MinShare, DefaultMinShare)
		fdef(&c.IntensityScale, DefaultIntensityScale)
		fdef(&c.LatencyCost, DefaultLatencyCost)
	}
}

// energy validates [energy], every cluster's carbon, energy and local_zone
// keys, and routes' carbon_headers.
func (v *validator) energy() {
	e := v.f.Energy
	if e.Region != "" && !validName(e.Region) {
		v.add("energy.region", "%q: use letters, digits, '-', '_' and '.'", e.Region)
	}
	if !e.Interval.invalid && e.Interval.Duration < MinEnergyInterval {
		v.add("energy.interval", "%s is below the minimum %s", e.Interval.Duration, MinEnergyInterval)
	}
	v.oneOf("energy.rapl", e.RAPL, RAPLModes)
	v.floatIn("energy.min_watts_per_vcpu", e.MinWattsPerVCPU, 0, maxWattsPerVCPU)
	v.floatIn("energy.max_watts_per_vcpu", e.MaxWattsPerVCPU, 0, maxWattsPerVCPU)
	if e.MaxWattsPerVCPU < e.MinWattsPerVCPU {
		v.add("energy.max_watts_per_vcpu", "%g is below min_watts_per_vcpu (%g)", e.MaxWattsPerVCPU, e.MinWattsPerVCPU)
	}
	if e.JoulesPerByte != -1 {
		v.floatIn("energy.joules_per_byte", e.JoulesPerByte, 0, maxJoulesPerByte)
	}
	v.floatIn("energy.embodied_grams_per_hour", e.EmbodiedGramsPerHour, 0, maxEmbodiedGramsPerHour)
	if !e.SCIWindow.invalid && e.SCIWindow.Duration < e.Interval.Duration {
		v.add("energy.sci_window", "%s is below energy.interval (%s)", e.SCIWindow.Duration, e.Interval.Duration)
	}
	for i, c := range v.f.Clusters {
		p := fmt.Sprintf("clusters[%d]", i)
		if c.LocalZone != "" && !validName(c.LocalZone) {
			v.add(p+".local_zone", "%q: use letters, digits, '-', '_' and '.'", c.LocalZone)
		}
		cc := c.Carbon
		if !cc.Interval.invalid && cc.Interval.Duration < MinCarbonRouteInterval {
			v.add(p+".carbon.interval", "%s is below the minimum %s", cc.Interval.Duration, MinCarbonRouteInterval)
		}
		if !cc.MaxAddedLatency.invalid && cc.MaxAddedLatency.Duration <= 0 {
			v.add(p+".carbon.max_added_latency", "must be greater than zero")
		}
		if math.IsNaN(cc.MaxShareChange) || cc.MaxShareChange <= 0 || cc.MaxShareChange > 1 {
			v.add(p+".carbon.max_share_change", "%g is not in (0, 1]", cc.MaxShareChange)
		}
		if cc.MinShare != -1 && (math.IsNaN(cc.MinShare) || cc.MinShare < 0 || cc.MinShare >= 1) {
			v.add(p+".carbon.min_share", "%g is not in [0, 1) (or -1 for none)", cc.MinShare)
		}
		if math.IsNaN(cc.IntensityScale) || cc.IntensityScale <= 0 || cc.IntensityScale > maxIntensityScale {
			v.add(p+".carbon.intensity_scale", "%g is not in (0, %g]", cc.IntensityScale, float64(maxIntensityScale))
		}
		if cc.LatencyCost != -1 {
			v.floatIn(p+".carbon.latency_cost", cc.LatencyCost, 0, maxLatencyCostGPerKWhPerMs)
		}
		v.floatIn(p+".carbon.request_joules", cc.RequestJoules, 0, maxRequestJoulesForDecisions)
		v.floatIn(p+".energy.joules_per_request", c.Energy.JoulesPerRequest, 0, maxJoulesPerRequest)
		v.floatIn(p+".energy.watts", c.Energy.Watts, 0, maxWatts)
	}
}

// floatIn reports a value that is not finite or outside [lo, hi].
func (v *validator) floatIn(path string, x, lo, hi float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < lo || x > hi {
		v.add(path, "%g is not in [%g, %g]", x, lo, hi)
	}
}
