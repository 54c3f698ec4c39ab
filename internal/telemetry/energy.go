package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Energy model defaults: the Cloud Carbon Footprint coefficients (AWS
// averages: 0.74 W per vCPU idle, 3.5 W at full load; networking 0.001
// kWh/GB = 3.6e-6 J/byte).
const (
	DefaultMeterInterval   = 5 * time.Second
	DefaultMinWattsPerVCPU = 0.74
	DefaultMaxWattsPerVCPU = 3.5
	DefaultJoulesPerByte   = 3.6e-6
	DefaultSCIWindow       = 5 * time.Minute
	DefaultPowercapRoot    = "/sys/class/powercap"
	DefaultProcStat        = "/proc/stat"

	// IdleRoute is the route label of process energy measured in an
	// interval without requests.
	IdleRoute = "_idle"

	// requestWeight is the attribution weight of one request, in bytes: a
	// request costs CPU for parsing, routing and logging even when empty.
	requestWeight = 4096
	joulesPerKWh  = 3.6e6
)

// Energy sources reported by [Meter.Source].
const (
	SourceRAPL  = "rapl"
	SourceModel = "model"
)

// IntensitySource reports the grid carbon intensity of a region in
// gCO2eq/kWh; ok is false when unknown. It must not block.
type IntensitySource interface {
	Intensity(region string) (gPerKWh float64, kind string, ok bool)
}

// MeterOptions configures a Meter. Zero values are the documented defaults.
type MeterOptions struct {
	// Region is where this process runs; its energy is counted there
	// (default "": energy is counted, carbon only when Intensity knows "").
	Region string
	// Intensity supplies the carbon intensity of regions (nil: carbon is
	// not counted for the proxy's own energy).
	Intensity IntensitySource
	// Interval is how often energy is measured and attributed (default 5s).
	Interval time.Duration
	// DisableRAPL always uses the CPU-time model.
	DisableRAPL bool
	// MinWattsPerVCPU and MaxWattsPerVCPU are the watts of one busy vCPU
	// at 0% and 100% utilisation (defaults 0.74 and 3.5).
	MinWattsPerVCPU, MaxWattsPerVCPU float64
	// JoulesPerByte is network energy per byte proxied (default 3.6e-6;
	// negative means 0).
	JoulesPerByte float64
	// EmbodiedGramsPerHour is embodied emissions charged per hour, added
	// to the SCI gauge only (default 0).
	EmbodiedGramsPerHour float64
	// SCIWindow is the time constant of the SCI moving average (default 5m).
	SCIWindow time.Duration
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Logger receives source changes (nil discards).
	Logger *slog.Logger

	// TestOnlyPowercapRoot and TestOnlyProcStat replace
	// /sys/class/powercap and /proc/stat.
	TestOnlyPowercapRoot, TestOnlyProcStat string
	// TestOnlyCPU replaces the process CPU time reader.
	TestOnlyCPU func() time.Duration
	// TestOnlyNow replaces the clock.
	TestOnlyNow func() time.Time
	// TestOnlyProcs replaces GOMAXPROCS as the vCPU count.
	TestOnlyProcs int
}

// Meter estimates this process's energy and attributes it, with upstream
// energy reported by the proxy, to routes and regions. It is safe for
// concurrent use; one Meter lives as long as the process's registry.
type Meter struct {
	o      MeterOptions
	log    *slog.Logger
	now    func() time.Time
	cpu    func() time.Duration
	procs  int
	rapl   *raplReader
	source atomic.Value // string

	energy, carbon, requests *prometheus.CounterVec
	avoided                  *prometheus.CounterVec
	process                  *prometheus.CounterVec
	sci                      *prometheus.GaugeVec

	mu     sync.Mutex
	routes map[string]*RouteMeter

	tickMu   sync.Mutex // serialises tick
	lastWall time.Time
	lastCPU  time.Duration
	total    float64 // process joules so far
	running  atomic.Bool
}

// NewMeter validates o and builds a Meter; it probes RAPL once.
func NewMeter(o MeterOptions) (*Meter, error) {
	if o.Interval == 0 {
		o.Interval = DefaultMeterInterval
	}
	if o.Interval < 0 {
		return nil, errors.New("meter interval is negative")
	}
	if o.MinWattsPerVCPU == 0 {
		o.MinWattsPerVCPU = DefaultMinWattsPerVCPU
	}
	if o.MaxWattsPerVCPU == 0 {
		o.MaxWattsPerVCPU = DefaultMaxWattsPerVCPU
	}
	if o.MinWattsPerVCPU < 0 || o.MaxWattsPerVCPU < o.MinWattsPerVCPU || math.IsNaN(o.MaxWattsPerVCPU) {
		return nil, errors.New("meter watts per vCPU: want 0 <= min <= max")
	}
	if o.JoulesPerByte == 0 {
		o.JoulesPerByte = DefaultJoulesPerByte
	} else if o.JoulesPerByte < 0 {
		o.JoulesPerByte = 0
	}
	if o.SCIWindow <= 0 {
		o.SCIWindow = DefaultSCIWindow
	}
	m := &Meter{o: o, log: o.Logger, now: o.TestOnlyNow, cpu: o.TestOnlyCPU, procs: o.TestOnlyProcs,
		routes: map[string]*RouteMeter{}}
	if m.log == nil {
		m.log = Discard()
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.cpu == nil {
		m.cpu = processCPU
	}
	if m.procs <= 0 {
		m.procs = runtime.GOMAXPROCS(0)
	}
	m.source.Store(SourceModel)
	if !o.DisableRAPL {
		root, stat := cmpOr(o.TestOnlyPowercapRoot, DefaultPowercapRoot), cmpOr(o.TestOnlyProcStat, DefaultProcStat)
		if r, err := newRAPL(root, stat); err == nil {
			m.rapl = r
			m.source.Store(SourceRAPL)
		}
	}
	m.energy = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aegis_estimated_energy_joules_total",
		Help: "Estimated energy in joules: this proxy's own (by route share, in its region) plus upstream energy from cluster models (in the endpoint's region).",
	}, []string{"route", "region"})
	m.carbon = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aegis_estimated_carbon_grams_total",
		Help: "Estimated emissions in gCO2eq: energy times the carbon intensity of the region where it was used.",
	}, []string{"route", "region"})
	m.avoided = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aegis_carbon_avoided_grams_total",
		Help: "Estimated gCO2eq avoided by the carbon policy against least_request's choices (net; held while negative).",
	}, []string{"route"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aegis_carbon_requests_total",
		Help: "Requests by route and the region that served them.",
	}, []string{"route", "region"})
	m.process = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aegis_energy_process_joules_total",
		Help: "Estimated energy of this proxy process in joules, by source (rapl or model).",
	}, []string{"source"})
	m.sci = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "aegis_sci_grams_per_request",
		Help: "Software Carbon Intensity (ISO/IEC 21031) per route: (energy x intensity + embodied) per request, gCO2eq, moving average.",
	}, []string{"route"})
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{m.energy, m.carbon, m.avoided, m.requests, m.process, m.sci} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	m.lastWall, m.lastCPU = m.now(), m.cpu()
	return m, nil
}

// Source returns "rapl" or "model": how process energy is measured now.
func (m *Meter) Source() string { return m.source.Load().(string) }

// Region returns the region where this process's energy is counted.
func (m *Meter) Region() string { return m.o.Region }

// ProcessJoules returns the process energy measured so far.
func (m *Meter) ProcessJoules() float64 {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	return m.total
}

// Route returns the route's accounting handle, the same for the same name
// (so that reloads keep counting).
func (m *Meter) Route(name string) *RouteMeter {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.routes[name]; ok {
		return r
	}
	r := &RouteMeter{m: m, name: name, avoided: m.avoided.WithLabelValues(name), sci: m.sci.WithLabelValues(name)}
	empty := map[string]*regionSeries{}
	r.regions.Store(&empty)
	m.routes[name] = r
	return r
}

// Run measures and attributes every Interval until ctx is done, then once
// more, and returns nil.
func (m *Meter) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("meter already running")
	}
	defer m.running.Store(false)
	t := time.NewTicker(m.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.Tick()
			return nil
		case <-t.C:
			m.Tick()
		}
	}
}

// Tick measures the process energy since the last tick and attributes it.
// Run calls it; tests and shutdown may too.
func (m *Meter) Tick() {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	now, cpu := m.now(), m.cpu()
	wall := now.Sub(m.lastWall)
	dcpu := max(cpu-m.lastCPU, 0)
	m.lastWall, m.lastCPU = now, cpu
	if wall <= 0 {
		return
	}
	joules, src := m.cpuJoules(wall, dcpu)
	m.source.Store(src)

	m.mu.Lock()
	routes := make([]*RouteMeter, 0, len(m.routes))
	for _, r := range m.routes {
		routes = append(routes, r)
	}
	m.mu.Unlock()

	type take struct {
		r                     *RouteMeter
		reqs, bytes, weight   int64
		upGrams, avoidedGrams float64
	}
	takes := make([]take, 0, len(routes))
	var totalWeight int64
	for _, r := range routes {
		t := take{r: r, reqs: r.reqs.Swap(0), bytes: r.bytes.Swap(0), weight: r.weight.Swap(0),
			upGrams: r.upGrams.swap(0), avoidedGrams: r.avoidedNet.swap(0)}
		totalWeight += t.weight
		takes = append(takes, t)
	}
	intensity, known := 0.0, false
	if m.o.Intensity != nil {
		intensity, _, known = m.o.Intensity.Intensity(m.o.Region)
	}
	alpha := math.Exp(-wall.Seconds() / m.o.SCIWindow.Seconds())
	embodied := m.o.EmbodiedGramsPerHour * wall.Hours()
	var netJoules float64
	for i := range takes {
		netJoules += float64(takes[i].bytes) * m.o.JoulesPerByte
	}
	m.total += joules + netJoules
	m.process.WithLabelValues(src).Add(joules + netJoules)
	if totalWeight == 0 {
		idle := m.Route(IdleRoute)
		idle.addProxy(joules+netJoules, intensity, known)
		joules = 0
	}
	for _, t := range takes {
		r := t.r
		var share float64
		if totalWeight > 0 {
			share = float64(t.weight) / float64(totalWeight)
		}
		e := joules*share + float64(t.bytes)*m.o.JoulesPerByte
		if t.weight > 0 {
			r.joulesPerWeight.store(joules / float64(totalWeight))
		}
		grams := 0.0
		if e > 0 {
			grams = r.addProxy(e, intensity, known)
		}
		// Net avoided grams: counters cannot go down, so a negative
		// stretch is held back until later savings cover it.
		r.pendingAvoided += t.avoidedGrams
		if r.pendingAvoided > 0 {
			r.avoided.Add(r.pendingAvoided)
			r.pendingAvoided = 0
		}
		r.sciGrams = r.sciGrams*alpha + grams + t.upGrams + embodied*share
		r.sciReqs = r.sciReqs*alpha + float64(t.reqs)
		if r.sciReqs > 0 {
			r.sci.Set(r.sciGrams / r.sciReqs)
		}
	}
}

// cpuJoules returns the process's CPU energy over wall and its source.
func (m *Meter) cpuJoules(wall, dcpu time.Duration) (float64, string) {
	if m.rapl != nil {
		if j, ok := m.rapl.processJoules(dcpu); ok {
			return j, SourceRAPL
		}
		if m.Source() == SourceRAPL {
			m.log.Warn("rapl unreadable; using the cpu-time model")
		}
	}
	u := dcpu.Seconds() / (wall.Seconds() * float64(m.procs))
	u = min(max(u, 0), 1)
	w := m.o.MinWattsPerVCPU + u*(m.o.MaxWattsPerVCPU-m.o.MinWattsPerVCPU)
	return dcpu.Seconds() * w, SourceModel
}

// RouteMeter accounts one route's requests. Its methods are safe for
// concurrent use and do not allocate once a region has been seen.
type RouteMeter struct {
	m    *Meter
	name string

	reqs, bytes, weight atomic.Int64
	upGrams, avoidedNet atomicFloat
	joulesPerWeight     atomicFloat
	regions             atomic.Pointer[map[string]*regionSeries]
	regionsMu           sync.Mutex

	avoided prometheus.Counter
	sci     prometheus.Gauge
	// tick-only state
	pendingAvoided    float64
	sciGrams, sciReqs float64
}

type regionSeries struct {
	energy, carbon, requests prometheus.Counter
}

// Observation is one finished request, as the proxy reports it.
type Observation struct {
	// Bytes is the request and response body bytes proxied.
	Bytes int64
	// Region is the region of the endpoint that served it ("" when no
	// endpoint was reached).
	Region string
	// UpstreamJoules is the upstream energy from the cluster's model.
	UpstreamJoules float64
	// Intensity is Region's intensity at decision time, gCO2eq/kWh;
	// IntensityKnown says whether it is known.
	Intensity      float64
	IntensityKnown bool
	// AvoidedGrams is the gCO2eq saved against least_request (may be
	// negative).
	AvoidedGrams float64
}

// Observe records one request. It returns the request's estimated energy in
// joules: its upstream energy plus its share of this process's energy at the
// last interval's rate (the metrics use the exact split at the next tick).
func (r *RouteMeter) Observe(o Observation) float64 {
	w := requestWeight + max(o.Bytes, 0)
	r.reqs.Add(1)
	r.bytes.Add(max(o.Bytes, 0))
	r.weight.Add(w)
	if o.Region != "" {
		rs := r.series(o.Region)
		rs.requests.Inc()
		if o.UpstreamJoules > 0 {
			rs.energy.Add(o.UpstreamJoules)
			if o.IntensityKnown {
				g := o.UpstreamJoules * o.Intensity / joulesPerKWh
				rs.carbon.Add(g)
				r.upGrams.add(g)
			}
		}
	}
	if o.AvoidedGrams != 0 {
		r.avoidedNet.add(o.AvoidedGrams)
	}
	return o.UpstreamJoules + float64(w)*r.joulesPerWeight.load() + float64(max(o.Bytes, 0))*r.m.o.JoulesPerByte
}

// addProxy counts process energy for the route in the meter's region and
// returns its grams.
func (r *RouteMeter) addProxy(joules, intensity float64, known bool) float64 {
	rs := r.series(r.m.o.Region)
	rs.energy.Add(joules)
	if !known {
		return 0
	}
	g := joules * intensity / joulesPerKWh
	rs.carbon.Add(g)
	return g
}

func (r *RouteMeter) series(region string) *regionSeries {
	if rs, ok := (*r.regions.Load())[region]; ok {
		return rs
	}
	r.regionsMu.Lock()
	defer r.regionsMu.Unlock()
	old := *r.regions.Load()
	if rs, ok := old[region]; ok {
		return rs
	}
	rs := &regionSeries{
		energy:   r.m.energy.WithLabelValues(r.name, region),
		carbon:   r.m.carbon.WithLabelValues(r.name, region),
		requests: r.m.requests.WithLabelValues(r.name, region),
	}
	next := make(map[string]*regionSeries, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[region] = rs
	r.regions.Store(&next)
	return rs
}

// atomicFloat is a float64 updated with compare-and-swap.
type atomicFloat struct{ bits atomic.Uint64 }

func (f *atomicFloat) add(d float64) {
	for {
		old := f.bits.Load()
		if f.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

func (f *atomicFloat) swap(v float64) float64 {
	return math.Float64frombits(f.bits.Swap(math.Float64bits(v)))
}

func (f *atomicFloat) load() float64   { return math.Float64frombits(f.bits.Load()) }
func (f *atomicFloat) store(v float64) { f.bits.Store(math.Float64bits(v)) }

// processCPU returns the user plus system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
