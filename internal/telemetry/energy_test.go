package telemetry

import (
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fixedIntensity map[string]float64

func (f fixedIntensity) Intensity(region string) (float64, string, bool) {
	v, ok := f[region]
	return v, "average", ok
}

// fakeClock drives a meter: each step advances wall time and CPU time.
type fakeClock struct {
	mu   sync.Mutex
	now  time.Time
	used time.Duration
}

func (c *fakeClock) Now() time.Time     { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) CPU() time.Duration { c.mu.Lock(); defer c.mu.Unlock(); return c.used }
func (c *fakeClock) step(wall, cpu time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now, c.used = c.now.Add(wall), c.used+cpu
}

func newTestMeter(t *testing.T, c *fakeClock, o MeterOptions) (*Meter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer, o.TestOnlyNow, o.TestOnlyCPU, o.TestOnlyProcs = reg, c.Now, c.CPU, 2
	o.DisableRAPL = true
	m, err := NewMeter(o)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func TestCPUModel(t *testing.T) {
	tests := []struct {
		name      string
		wall, cpu time.Duration
		want      float64
	}{
		// 2 vCPUs; 1 s of CPU in 1 s wall = 50% utilisation:
		// 1 s × (0.74 + 0.5 × 2.76) W = 2.12 J.
		{name: "half busy", wall: time.Second, cpu: time.Second, want: 2.12},
		{name: "idle", wall: time.Second, cpu: 0, want: 0},
		// 4 s CPU over 2 s wall on 2 vCPUs: 100%, 4 s × 3.5 W.
		{name: "saturated", wall: 2 * time.Second, cpu: 4 * time.Second, want: 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{now: time.Unix(0, 0)}
			m, _ := newTestMeter(t, c, MeterOptions{})
			c.step(tt.wall, tt.cpu)
			m.Tick()
			if got := m.ProcessJoules(); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("got %v J, want %v", got, tt.want)
			}
			if got := m.Source(); got != SourceModel {
				t.Errorf("source: got %q, want %q", got, SourceModel)
			}
		})
	}
}

// TestAttributionSumsToProcessTotal checks the accounting invariant: the
// energy attributed to routes adds up to the process total (within 1%), and
// per-request estimates add up to it in steady traffic.
func TestAttributionSumsToProcessTotal(t *testing.T) {
	c := &fakeClock{now: time.Unix(0, 0)}
	m, reg := newTestMeter(t, c, MeterOptions{Region: "eu", Intensity: fixedIntensity{"eu": 200}})
	a, b := m.Route("a"), m.Route("b")
	var perRequest float64
	for tick := range 20 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range 100 {
			wg.Go(func() {
				r := a
				bytes := int64(1000)
				if i%4 == 0 {
					r, bytes = b, 20000
				}
				e := r.Observe(Observation{Bytes: bytes})
				if tick > 0 { // the first interval has no rate yet
					mu.Lock()
					perRequest += e
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		c.step(time.Second, 300*time.Millisecond)
		m.Tick()
	}
	total := m.ProcessJoules()
	attributed := testutil.ToFloat64(m.energy.WithLabelValues("a", "eu")) + testutil.ToFloat64(m.energy.WithLabelValues("b", "eu"))
	if rel := math.Abs(attributed-total) / total; rel > 0.01 {
		t.Errorf("attributed %v J, process total %v J: off by %.3f%%, want within 1%%", attributed, total, rel*100)
	}
	// The first interval's requests had no rate yet: compare the rest.
	perTick := total / 20
	if rel := math.Abs(perRequest-(total-perTick)) / total; rel > 0.01 {
		t.Errorf("per-request estimates sum to %v J, want %v within 1%%", perRequest, total-perTick)
	}
	carbon := testutil.ToFloat64(m.carbon.WithLabelValues("a", "eu")) + testutil.ToFloat64(m.carbon.WithLabelValues("b", "eu"))
	if want := total * 200 / 3.6e6; math.Abs(carbon-want) > want*1e-9 {
		t.Errorf("carbon: got %v g, want %v", carbon, want)
	}
	if n, err := testutil.GatherAndCount(reg, "aegis_sci_grams_per_request"); err != nil || n != 2 {
		t.Errorf("sci series: got %d (%v), want 2", n, err)
	}
}

func TestUpstreamAndAvoided(t *testing.T) {
	c := &fakeClock{now: time.Unix(0, 0)}
	m, _ := newTestMeter(t, c, MeterOptions{Region: "eu"})
	r := m.Route("api")
	r.Observe(Observation{Region: "us", UpstreamJoules: 3.6e3, Intensity: 100, IntensityKnown: true, AvoidedGrams: 0.5})
	r.Observe(Observation{Region: "us", UpstreamJoules: 3.6e3, Intensity: 100, IntensityKnown: true, AvoidedGrams: -0.2})
	c.step(time.Second, 0)
	m.Tick()
	if got := testutil.ToFloat64(m.energy.WithLabelValues("api", "us")); got != 7200 {
		t.Errorf("upstream energy: got %v, want 7200", got)
	}
	if got := testutil.ToFloat64(m.carbon.WithLabelValues("api", "us")); math.Abs(got-0.2) > 1e-12 {
		t.Errorf("upstream carbon: got %v, want 0.2", got)
	}
	if got := testutil.ToFloat64(m.avoided.WithLabelValues("api")); math.Abs(got-0.3) > 1e-12 {
		t.Errorf("avoided: got %v, want 0.3", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("api", "us")); got != 2 {
		t.Errorf("requests: got %v, want 2", got)
	}
	// A negative stretch is held back, not subtracted.
	r.Observe(Observation{Region: "us", AvoidedGrams: -1})
	c.step(time.Second, 0)
	m.Tick()
	r.Observe(Observation{Region: "us", AvoidedGrams: 1.5})
	c.step(time.Second, 0)
	m.Tick()
	if got := testutil.ToFloat64(m.avoided.WithLabelValues("api")); math.Abs(got-0.8) > 1e-12 {
		t.Errorf("avoided after a negative stretch: got %v, want 0.8", got)
	}
}

func TestIdleEnergy(t *testing.T) {
	c := &fakeClock{now: time.Unix(0, 0)}
	m, _ := newTestMeter(t, c, MeterOptions{Region: "eu"})
	m.Route("api")
	c.step(time.Second, 100*time.Millisecond)
	m.Tick()
	if got, want := testutil.ToFloat64(m.energy.WithLabelValues(IdleRoute, "eu")), m.ProcessJoules(); got != want || want == 0 {
		t.Errorf("idle energy: got %v, want %v (> 0)", got, want)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRAPL(t *testing.T) {
	dir := t.TempDir()
	root, stat := filepath.Join(dir, "powercap"), filepath.Join(dir, "stat")
	pkg := filepath.Join(root, "intel-rapl:0")
	writeFile(t, filepath.Join(pkg, "max_energy_range_uj"), "1000000000\n")
	writeFile(t, filepath.Join(pkg, "energy_uj"), "999000000\n")
	writeFile(t, filepath.Join(root, "intel-rapl:0:0", "energy_uj"), "5\n") // a sub-zone: ignored
	writeFile(t, stat, "cpu  100 0 100 5000 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
	c := &fakeClock{now: time.Unix(0, 0)}
	m, err := NewMeter(MeterOptions{TestOnlyPowercapRoot: root, TestOnlyProcStat: stat,
		TestOnlyNow: c.Now, TestOnlyCPU: c.CPU, TestOnlyProcs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Source(); got != SourceRAPL {
		t.Fatalf("source: got %q, want rapl", got)
	}
	// The counter wraps: 999 J -> 1000 J (max) -> 9 J: 10 J in all. The
	// machine was busy 4 s (400 ticks), the process 1 s of it: a quarter.
	writeFile(t, filepath.Join(pkg, "energy_uj"), "9000000\n")
	writeFile(t, stat, "cpu  300 0 300 5000 0 0 0 0 0 0\n")
	c.step(2*time.Second, time.Second)
	m.Tick()
	if got := m.ProcessJoules(); math.Abs(got-2.5) > 1e-9 {
		t.Errorf("rapl process energy: got %v J, want 2.5", got)
	}
	// Unreadable counters fall back to the model for the interval.
	os.Remove(filepath.Join(pkg, "energy_uj"))
	c.step(time.Second, time.Second)
	m.Tick()
	if got := m.Source(); got != SourceModel {
		t.Errorf("source after failure: got %q, want model", got)
	}
}

func TestRAPLUnavailable(t *testing.T) {
	m, err := NewMeter(MeterOptions{TestOnlyPowercapRoot: filepath.Join(t.TempDir(), "none")})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Source(); got != SourceModel {
		t.Errorf("source: got %q, want model", got)
	}
}

func TestRAPLDelta(t *testing.T) {
	tests := []struct {
		name                 string
		prev, cur, max, want uint64
	}{
		{"forward", 10, 30, 100, 20},
		{"wrap", 90, 5, 100, 15},
		{"same", 7, 7, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := raplDelta(tt.prev, tt.cur, tt.max); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func FuzzParseBusy(f *testing.F) {
	f.Add("cpu  100 0 100 5000 0 0 0 0 0 0")
	f.Add("cpu 1 2")
	f.Add("intr 1 2 3 4 5 6 7 8 9")
	f.Fuzz(func(t *testing.T, line string) {
		d, err := parseBusy(line)
		if err == nil && d < 0 {
			t.Errorf("negative busy time %v from %q", d, line)
		}
	})
}

func BenchmarkRouteMeterObserve(b *testing.B) {
	m, err := NewMeter(MeterOptions{DisableRAPL: true})
	if err != nil {
		b.Fatal(err)
	}
	r := m.Route("api")
	o := Observation{Bytes: 512, Region: "eu", UpstreamJoules: 2, Intensity: 120, IntensityKnown: true, AvoidedGrams: 1e-5}
	r.Observe(o)
	b.ReportAllocs()
	for b.Loop() {
		r.Observe(o)
	}
}
