package carbon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeProvider is a scripted Provider. Its fields may be changed between
// calls under mu.
type fakeProvider struct {
	name string

	mu        sync.Mutex
	value     float64
	kind      Kind
	validFor  time.Duration // 0: no ValidUntil
	fixedVU   time.Time     // if set, the ValidUntil of every signal
	errs      []error       // returned by the next calls to Current, in order
	fail      error         // returned by every call while set
	delay     time.Duration // sleep inside each call
	panicNext bool
	noFc      bool
	calls     []time.Time // times of Current calls
	fcCalls   int
}

func newFake(name string, value float64) *fakeProvider {
	return &fakeProvider{name: name, value: value, kind: Average}
}

func (f *fakeProvider) Name() string { return f.name }

func (f *fakeProvider) Current(ctx context.Context, zone string) (Signal, error) {
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	delay := f.delay
	var err error
	switch {
	case f.panicNext:
		f.panicNext = false
		f.mu.Unlock()
		panic("provider exploded")
	case len(f.errs) > 0:
		err, f.errs = f.errs[0], f.errs[1:]
	case f.fail != nil:
		err = f.fail
	}
	now := time.Now()
	sig := Signal{Intensity: f.value, Kind: f.kind, Source: f.name, ObservedAt: now}
	if f.validFor > 0 {
		sig.ValidUntil = now.Add(f.validFor)
	}
	if !f.fixedVU.IsZero() {
		sig.ValidUntil = f.fixedVU
	}
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return Signal{}, ctx.Err()
		}
	}
	if err != nil {
		return Signal{}, fmt.Errorf("%s zone %s: %w", f.name, zone, err)
	}
	return sig, nil
}

func (f *fakeProvider) Forecast(ctx context.Context, zone string) (Forecast, error) {
	f.mu.Lock()
	f.fcCalls++
	delay, fail, noFc, v, kind := f.delay, f.fail, f.noFc, f.value, f.kind
	f.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if fail != nil {
		return Forecast{}, fail
	}
	if noFc {
		return Forecast{}, ErrNoForecast
	}
	start := time.Now().Truncate(time.Hour)
	pts := make([]Point, 24)
	for i := range pts {
		pts[i] = Point{Start: start.Add(time.Duration(i) * time.Hour), Duration: time.Hour, Intensity: v + float64(i%6)}
	}
	return Forecast{Kind: kind, Source: f.name, GeneratedAt: time.Now(), Points: pts}, nil
}

func (f *fakeProvider) set(fn func(f *fakeProvider)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeProvider) callTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls...)
}

// runTracker starts t.Run in the bubble and returns a stop function that
// cancels it and waits for Run to return.
func runTracker(t *testing.T, tr *Tracker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	}
}

func mustTracker(t *testing.T, opts TrackerOptions) *Tracker {
	t.Helper()
	tr, err := NewTracker(opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestLevelString(t *testing.T) {
	for l, want := range map[Level]string{Live: "live", LastKnownGood: "last_known_good", Static: "static", Unknown: "unknown", 9: "level(9)"} {
		if got := l.String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestNewTrackerValidates(t *testing.T) {
	p := newFake("fake", 1)
	tests := []struct {
		name string
		opts TrackerOptions
		want []string // substrings of the error; nil means no error
	}{
		{"ok", TrackerOptions{Regions: []RegionSource{{Region: "a", Zone: "A", Providers: []ProviderZone{{Provider: p}}}}}, nil},
		{"static only", TrackerOptions{Regions: []RegionSource{{Region: "a", Static: &StaticValue{Intensity: 10}}}}, nil},
		{"no regions", TrackerOptions{}, nil},
		{"all problems at once", TrackerOptions{
			Interval:    -time.Second,
			MaxAttempts: -1,
			Regions: []RegionSource{
				{Region: "", Zone: "A", Providers: []ProviderZone{{Provider: p}}},
				{Region: "b", Providers: []ProviderZone{{Provider: p}}},
				{Region: "c", Providers: []ProviderZone{{}}},
				{Region: "d"},
				{Region: "e", Static: &StaticValue{Intensity: -1, Kind: "median"}},
				{Region: "f", Static: &StaticValue{Intensity: 1}},
				{Region: "f", Static: &StaticValue{Intensity: 1}},
			},
		}, []string{
			"interval: -1s is negative", "max_attempts: -1", "regions[0].region: empty", "regions[1].providers[0] (fake): no zone",
			"regions[2].providers[0]: no provider", "regions[3] (d): neither providers nor a static value",
			`regions[4].static.kind: "median"`, "regions[4].static.intensity: -1", `regions[6]: duplicate region "f"`,
		}},
		{"interval below minimum", TrackerOptions{Interval: time.Millisecond}, []string{"interval: 1ms is below the minimum 1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTracker(tt.opts)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestTrackerRefreshesAheadOfExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFake("fake", 100)
		p.validFor = 10 * time.Minute
		tr := mustTracker(t, TrackerOptions{
			Interval: time.Hour, ForecastInterval: time.Hour, RefreshAhead: 30 * time.Second,
			Regions: []RegionSource{{Region: "a", Zone: "A", Providers: []ProviderZone{{Provider: p}}}},
		})
		t0 := time.Now()
		stop := runTracker(t, tr)
		defer stop()
		time.Sleep(25 * time.Minute)
		synctest.Wait()
		calls := p.callTimes()
		if len(calls) < 3 {
			t.Fatalf("got %d calls in 25m, want at least 3", len(calls))
		}
		// Each refresh comes before the previous signal's ValidUntil minus
		// RefreshAhead, but not more than the jitter (a tenth of the wait) earlier.
		prev := t0
		for i, c := range calls[1:3] {
			expiry := prev.Add(10 * time.Minute)
			latest := expiry.Add(-30 * time.Second)
			earliest := latest.Add(-57 * time.Second)
			if c.After(latest) || c.Before(earliest) {
				t.Errorf("refresh %d at +%s, want between +%s and +%s", i+1, c.Sub(t0), earliest.Sub(t0), latest.Sub(t0))
			}
			prev = c
		}
		if r, ok := tr.Current("a"); !ok || r.Level != Live {
			t.Errorf("got %v %v, want a live reading", r.Level, ok)
		}
	})
}

func TestTrackerRefreshesAfterExpiryWhenProviderHasNothingNewer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		p := newFake("fake", 100)
		p.fixedVU = t0.Add(10 * time.Minute)
		tr := mustTracker(t, TrackerOptions{
			Interval: time.Hour, ForecastInterval: time.Hour,
			Regions: []RegionSource{{Region: "a", Zone: "A", Providers: []ProviderZone{{Provider: p}}}},
		})
		stop := runTracker(t, tr)
		defer stop()
		time.Sleep(9*time.Minute + 31*time.Second)
		synctest.Wait()
		if got := len(p.callTimes()); got != 2 {
			t.Fatalf("got %d calls before expiry, want 2 (initial and ahead of expiry)", got)
		}
		p.set(func(f *fakeProvider) { f.fixedVU = t0.Add(20 * time.Minute) })
		time.Sleep(60 * time.Second)
		synctest.Wait()
		calls := p.callTimes()
		if len(calls) != 3 {
			t.Fatalf("got %d calls by +10m31s, want 3", len(calls))
		}
		if c := calls[2].Sub(t0); c < 10*time.Minute || c > 10*time.Minute+time.Second {
			t.Errorf("got third call at +%s, want just after expiry at +10m", c)
		}
	})
}

func TestTrackerFallbackLadder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFake("fake", 120)
		reg := prometheus.NewPedanticRegistry()
		tr := mustTracker(t, TrackerOptions{
			Interval: 5 * time.Minute, ForecastInterval: time.Hour, MaxStaleness: time.Hour, MaxAttempts: 1,
			Registerer: reg,
			Regions: []RegionSource{
				{Region: "with-static", Zone: "A", Providers: []ProviderZone{{Provider: p}}, Static: &StaticValue{Intensity: 300}},
				{Region: "bare", Zone: "B", Providers: []ProviderZone{{Provider: p}}},
			},
		})
		type want struct {
			level Level
			value float64
			ok    bool
		}
		check := func(step string, ws, bare want) {
			t.Helper()
			for region, w := range map[string]want{"with-static": ws, "bare": bare} {
				r, ok := tr.Current(region)
				if r.Level != w.level || r.Signal.Intensity != w.value || ok != w.ok {
					t.Errorf("%s: %s: got %s %v ok=%v, want %s %v ok=%v", step, region, r.Level, r.Signal.Intensity, ok, w.level, w.value, w.ok)
				}
				if got := gaugeValue(t, reg, "aegis_carbon_fallback_level", region); got != float64(w.level) {
					t.Errorf("%s: %s: got fallback_level gauge %v, want %v", step, region, got, float64(w.level))
				}
			}
		}
		check("before the first refresh", want{Static, 300, true}, want{Unknown, 0, false})
		if tr.Ready() {
			t.Error("got Ready before the first refresh, want not ready")
		}

		stop := runTracker(t, tr)
		defer stop()
		synctest.Wait()
		if !tr.Ready() {
			t.Error("got not Ready after the first refresh, want ready")
		}
		check("first refresh", want{Live, 120, true}, want{Live, 120, true})

		p.set(func(f *fakeProvider) { f.fail = ErrUnavailable })
		time.Sleep(5*time.Minute + time.Second)
		synctest.Wait()
		check("provider failing", want{LastKnownGood, 120, true}, want{LastKnownGood, 120, true})
		if r, _ := tr.Current("bare"); r.Age(time.Now()) < 5*time.Minute {
			t.Errorf("got age %s, want at least 5m", r.Age(time.Now()))
		}

		time.Sleep(55 * time.Minute)
		synctest.Wait()
		check("past MaxStaleness", want{Static, 300, true}, want{Unknown, 0, false})

		p.set(func(f *fakeProvider) { f.fail = nil; f.value = 90 })
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		check("provider back", want{Live, 90, true}, want{Live, 90, true})

		failed := testutil.ToFloat64(tr.requests.WithLabelValues("fake", "unavailable"))
		if failed < 2 {
			t.Errorf("got %v unavailable requests counted, want at least 2", failed)
		}
	})
}

// gaugeValue gathers reg and returns the named gauge's value for region.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, region string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == region {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s sample for region %s", name, region)
	return 0
}

func TestTrackerChainFallsThrough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		first, second := newFake("first", 100), newFake("second", 200)
		first.fail = ErrUnauthorized
		second.kind = Marginal
		tr := mustTracker(t, TrackerOptions{Regions: []RegionSource{{
			Region: "a", Zone: "A",
			Providers: []ProviderZone{{Provider: first}, {Provider: second, Zone: "A2"}},
		}}})
		if err := tr.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		r, ok := tr.Current("a")
		if !ok || r.Level != Live || r.Signal.Source != "second" || r.Signal.Intensity != 200 || r.Signal.Region != "a" {
			t.Errorf("got %+v ok=%v, want a live reading of 200 from second", r, ok)
		}
		if got := len(first.callTimes()); got != 1 {
			t.Errorf("got %d calls to an unauthorized provider, want 1 (no retries)", got)
		}
		snap := tr.Snapshot()
		if got := snap[0].Providers; !got[0].Failed || !strings.Contains(got[0].LastError, "unauthorized") || got[1].Failed || got[1].Zone != "A2" {
			t.Errorf("got provider states %+v, want first failed (unauthorized), second ok in zone A2", got)
		}
		if f, ok := tr.Forecast("a"); !ok || f.Source != "second" || f.Region != "a" || f.Kind != Marginal {
			t.Errorf("got forecast from %q ok=%v, want from second", f.Source, ok)
		}
	})
}

func TestTrackerRetriesWithBackoff(t *testing.T) {
	tests := []struct {
		name      string
		errs      []error
		wantCalls int
		wantOK    bool
		minGaps   []time.Duration
		maxGaps   []time.Duration
	}{
		{"unavailable twice then ok", []error{ErrUnavailable, ErrUnavailable}, 3, true,
			[]time.Duration{500 * time.Millisecond, time.Second}, []time.Duration{time.Second, 2 * time.Second}},
		{"three failures exhaust the attempts", []error{ErrUnavailable, ErrUnavailable, ErrUnavailable}, 3, false, nil, nil},
		{"retry-after is honoured", []error{&RateLimitError{RetryAfter: 7 * time.Second}}, 2, true,
			[]time.Duration{7 * time.Second}, []time.Duration{7 * time.Second}},
		{"retry-after beyond max backoff stops", []error{&RateLimitError{RetryAfter: time.Hour}}, 1, false, nil, nil},
		{"bad response is not retried", []error{ErrBadResponse}, 1, false, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newFake("fake", 50)
				p.errs = tt.errs
				tr := mustTracker(t, TrackerOptions{
					RetryBackoff: time.Second, MaxAttempts: 3,
					Regions: []RegionSource{{Region: "a", Zone: "A", Providers: []ProviderZone{{Provider: p}}}},
				})
				err := tr.Refresh(t.Context())
				if gotOK := err == nil; gotOK != tt.wantOK {
					t.Errorf("got Refresh error %v, want success %v", err, tt.wantOK)
				}
				calls := p.callTimes()
				if len(calls) != tt.wantCalls {
					t.Fatalf("got %d calls, want %d", len(calls), tt.wantCalls)
				}
				for i := range tt.minGaps {
					gap := calls[i+1].Sub(calls[i])
					if gap < tt.minGaps[i] || gap > tt.maxGaps[i] {
						t.Errorf("got gap %d of %s, want between %s and %s", i, gap, tt.minGaps[i], tt.maxGaps[i])
					}
				}
			})
		})
	}
}

func TestTrackerRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFake("fake", 50)
		p.noFc = true
		var regions []RegionSource
		for _, z := range []string{"A", "B", "C"} {
			regions = append(regions, RegionSource{Region: strings.ToLower(z), Zone: z, Providers: []ProviderZone{{Provider: p}}})
		}
		tr := mustTracker(t, TrackerOptions{
			Regions:    regions,
			RateLimits: map[string]RateLimit{"fake": {Every: 10 * time.Second, Burst: 1}},
		})
		t0 := time.Now()
		if err := tr.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		calls := p.callTimes()
		// Three zones, current and forecast each: six calls at 0s, 10s, ... 50s.
		if got := len(calls); got != 3 {
			t.Fatalf("got %d current calls, want 3", got)
		}
		if got, want := time.Since(t0), 50*time.Second; got != want {
			t.Errorf("got refresh taking %s, want %s (six calls, one per 10s)", got, want)
		}
	})
}

func TestTrackerRateLimitTooLongFailsLocally(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFake("fake", 50)
		tr := mustTracker(t, TrackerOptions{
			Interval: time.Minute, MaxAttempts: 1,
			Regions: []RegionSource{{Region: "a", Zone: "A", Providers: []ProviderZone{{Provider: p}}}},
			// One token per hour: the forecast call after the current one would wait too long.
			DefaultRateLimit: RateLimit{Every: time.Hour, Burst: 1},
		})
		if err := tr.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(tr.requests.WithLabelValues("fake", "rate_limited")); got != 1 {
			t.Errorf("got %v rate_limited results, want 1", got)
		}
		if _, ok := tr.Forecast("a"); ok {
			t.Error("got a forecast, want none (rate limited)")
		}
	})
}

func TestTrackerSingleflight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFake("fake", 50)
		p.delay = time.Second
		// Two regions on the same provider zone, refreshed by two concurrent callers.
		tr := mustTracker(t, TrackerOptions{Regions: []RegionSource{
			{Region: "a", Zone: "SAME", Providers: []ProviderZone{{Provider: p}}},
			{Region: "b", Zone: "SAME", Providers: []ProviderZone{{Provider: p}}},
		}})
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if err := tr.Refresh(t.Context()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if got := len(p.callTimes()); got != 1 {
			t.Errorf("got %d Current calls, want 1", got)
		}
		p.mu.Lock()
		fc := p.fcCalls
		p.mu.Unlock()
		if fc != 1 {
			t.Errorf("got %d Forecast calls, want 1", fc)
		}
		for _, region := range []string{"a", "b"} {
			if r, ok := tr.Current(region); !ok || r.Signal.Region != region {
				t.Errorf("got %+v, want a reading for %s", r, region)
			}
		}
	})
}

func TestTrackerRecoversFromPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFake("fake", 50)
		p.panicNext = true
		tr := mustTracker(t, TrackerOptions{Regions: []RegionSource{{Region: "a", Zone: "A", Providers: []ProviderZone{{Provider: p}}}}})
		stop := runTracker(t, tr)
		defer stop()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := testutil.ToFloat64(tr.panics); got != 1 {
			t.Errorf("got %v panics counted, want 1", got)
		}
		if r, ok := tr.Current("a"); !ok || r.Level != Live {
			t.Errorf("got %s ok=%v, want live after the loop restarted", r.Level, ok)
		}
	})
}

func TestTrackerRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := mustTracker(t, TrackerOptions{Regions: []RegionSource{{Region: "a", Static: &StaticValue{Intensity: 1}}}})
		stop := runTracker(t, tr)
		synctest.Wait()
		if err := tr.Run(t.Context()); !errors.Is(err, ErrRunning) {
			t.Errorf("got %v, want ErrRunning", err)
		}
		stop()
		if !tr.Ready() {
			t.Error("got not ready, want ready (static only region)")
		}
	})
}

func TestTrackerOnForecast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFake("fake", 50)
		var mu sync.Mutex
		var got []string
		tr := mustTracker(t, TrackerOptions{
			ForecastInterval: 10 * time.Minute,
			OnForecast: func(region string) {
				mu.Lock()
				got = append(got, region)
				mu.Unlock()
			},
			Regions: []RegionSource{{Region: "a", Zone: "A", Providers: []ProviderZone{{Provider: p}}}},
		})
		stop := runTracker(t, tr)
		time.Sleep(15 * time.Minute)
		synctest.Wait()
		stop()
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 2 || got[0] != "a" {
			t.Errorf("got OnForecast calls %v, want [a a]", got)
		}
	})
}

func TestTrackerCurrentUnknownRegion(t *testing.T) {
	tr := mustTracker(t, TrackerOptions{Regions: []RegionSource{{Region: "a", Static: &StaticValue{Intensity: 1}}}})
	if r, ok := tr.Current("nope"); ok || r.Level != Unknown {
		t.Errorf("got %+v ok=%v, want Unknown, false", r, ok)
	}
	if _, ok := tr.Forecast("nope"); ok {
		t.Error("got a forecast for an unknown region")
	}
	if got := tr.Regions(); len(got) != 1 || got[0] != "a" {
		t.Errorf("got regions %v, want [a]", got)
	}
}

func TestTrackerMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFake("fake", 123.5)
		reg := prometheus.NewPedanticRegistry()
		tr := mustTracker(t, TrackerOptions{
			Registerer: reg,
			Regions: []RegionSource{
				{Region: "a", Zone: "A", Providers: []ProviderZone{{Provider: p}}},
				{Region: "s", Static: &StaticValue{Intensity: 400}},
			},
		})
		if err := tr.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(42 * time.Second)
		want := `
# HELP aegis_carbon_fallback_level Fallback level of the region's intensity: 0 live, 1 last known good, 2 static, 3 unknown.
# TYPE aegis_carbon_fallback_level gauge
aegis_carbon_fallback_level{region="a"} 0
aegis_carbon_fallback_level{region="s"} 2
# HELP aegis_carbon_intensity_g_kwh Grid carbon intensity of the region now, in gCO2eq/kWh (absent when unknown).
# TYPE aegis_carbon_intensity_g_kwh gauge
aegis_carbon_intensity_g_kwh{region="a"} 123.5
aegis_carbon_intensity_g_kwh{region="s"} 400
# HELP aegis_carbon_signal_age_seconds Seconds since a provider last confirmed the region's intensity (absent for static and unknown).
# TYPE aegis_carbon_signal_age_seconds gauge
aegis_carbon_signal_age_seconds{region="a"} 42
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
			"aegis_carbon_fallback_level", "aegis_carbon_intensity_g_kwh", "aegis_carbon_signal_age_seconds"); err != nil {
			t.Error(err)
		}
		if got := testutil.ToFloat64(tr.requests.WithLabelValues("fake", "ok")); got != 2 {
			t.Errorf("got %v ok requests, want 2 (current and forecast)", got)
		}
		if n, err := testutil.GatherAndCount(reg, "aegis_carbon_provider_requests_total"); err != nil || n != len(results) {
			t.Errorf("got %d request series (err %v), want %d pre-initialised", n, err, len(results))
		}
	})
}

func BenchmarkTrackerCurrent(b *testing.B) {
	p := newFake("fake", 100)
	var regions []RegionSource
	for _, r := range []string{"eu-south", "us-west", "sa-east"} {
		regions = append(regions, RegionSource{Region: r, Zone: r, Providers: []ProviderZone{{Provider: p}}})
	}
	tr, err := NewTracker(TrackerOptions{Regions: regions})
	if err != nil {
		b.Fatal(err)
	}
	if err := tr.Refresh(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var sink float64
	for b.Loop() {
		r, _ := tr.Current("us-west")
		sink += r.Signal.Intensity
	}
	if sink == 0 {
		b.Fatal("no reading")
	}
}

func TestTrackerLadderMovesWhileProviderHangs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFake("fake", 80)
		tr := mustTracker(t, TrackerOptions{
			Interval: 5 * time.Minute, Timeout: 4 * time.Hour, MaxStaleness: time.Hour, MaxAttempts: 1,
			Regions: []RegionSource{{Region: "a", Zone: "A", Providers: []ProviderZone{{Provider: p}}, Static: &StaticValue{Intensity: 500}}},
		})
		t0 := time.Now()
		stop := runTracker(t, tr)
		defer stop()
		synctest.Wait()
		p.set(func(f *fakeProvider) { f.delay = 3 * time.Hour })
		for _, step := range []struct {
			at   time.Duration
			want Level
		}{
			{9 * time.Minute, Live},           // the refresh at ~5m hangs; the value is still within its validity
			{11 * time.Minute, LastKnownGood}, // validity (interval past the fetch, plus one interval) is over
			{61 * time.Minute, Static},        // MaxStaleness is over
		} {
			time.Sleep(time.Until(t0.Add(step.at)))
			synctest.Wait()
			if r, _ := tr.Current("a"); r.Level != step.want {
				t.Errorf("at +%s: got %s, want %s while the provider hangs", step.at, r.Level, step.want)
			}
		}
	})
}

func TestTrackerLogsOneLinePerFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf strings.Builder
		var mu sync.Mutex
		log := slog.New(slog.NewJSONHandler(writerFunc(func(b []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return buf.Write(b)
		}), nil))
		p := newFake("fake", 80)
		p.fail = ErrUnavailable
		tr := mustTracker(t, TrackerOptions{
			Logger: log, MaxAttempts: 1,
			Regions: []RegionSource{{Region: "eu-south", Zone: "ES", Providers: []ProviderZone{{Provider: p}}}},
		})
		for range 3 {
			_ = tr.Refresh(t.Context())
		}
		p.set(func(f *fakeProvider) { f.fail = nil })
		if err := tr.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		var failed, recovered int
		for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
			switch rec["msg"] {
			case "carbon provider failed":
				failed++
				if rec["provider"] != "fake" || rec["region"] != "eu-south" || rec["zone"] != "ES" || !strings.Contains(rec["error"].(string), "provider unavailable") {
					t.Errorf("got log line %s, want provider, region, zone and error", line)
				}
			case "carbon provider recovered":
				recovered++
			}
		}
		if failed != 2 || recovered != 2 {
			t.Errorf("got %d failure and %d recovery lines, want 2 and 2 (current and forecast):\n%s", failed, recovered, buf.String())
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
