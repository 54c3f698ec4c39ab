package carbon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Level is a step of the fallback ladder that a [Reading] came from.
type Level uint8

const (
	// Live means the last refresh succeeded and the value is current.
	Live Level = iota
	// LastKnownGood means the providers are failing (or the value has
	// outlived its validity) and the last good value is younger than
	// MaxStaleness.
	LastKnownGood
	// Static means no usable provider value: the region's configured static
	// value is used.
	Static
	// Unknown means nothing is usable: routing treats the region as
	// carbon-neutral.
	Unknown
)

// String returns "live", "last_known_good", "static" or "unknown".
func (l Level) String() string {
	switch l {
	case Live:
		return "live"
	case LastKnownGood:
		return "last_known_good"
	case Static:
		return "static"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("level(%d)", uint8(l))
}

// Reading is what [Tracker.Current] returns: a signal and where on the
// fallback ladder it came from.
type Reading struct {
	// Signal is the value. For Static it is the configured value with Source
	// "static" and zero times; for Unknown only Region is set.
	Signal Signal
	// Level is the step of the fallback ladder.
	Level Level
	// FetchedAt is when the tracker received the value from its provider;
	// zero for Static and Unknown.
	FetchedAt time.Time
}

// Age returns how long before now a provider last confirmed the value, or
// zero for Static and Unknown readings. (It is a method so that the request
// path, which rarely needs it, does not pay for reading the clock.)
func (r Reading) Age(now time.Time) time.Duration {
	if r.FetchedAt.IsZero() {
		return 0
	}
	return now.Sub(r.FetchedAt)
}

// ProviderZone is one link of a region's provider chain.
type ProviderZone struct {
	// Provider is the data source. Provider names (Provider.Name) identify
	// providers for rate limiting, request coalescing and metrics, so two
	// different providers in one tracker must not share a name.
	Provider Provider
	// Zone is the provider's zone code for the region; empty means the
	// RegionSource's Zone.
	Zone string
}

// StaticValue is a fixed intensity used when no provider has a usable value.
type StaticValue struct {
	// Intensity is in gCO2eq/kWh.
	Intensity float64
	// Kind is what the value measures (default Average).
	Kind Kind
}

// RegionSource says where a region's data comes from.
type RegionSource struct {
	// Region is the Aegis-Flow region name (required, unique).
	Region string
	// Zone is the default provider zone code for the chain's links.
	Zone string
	// Providers is the ordered chain: each refresh asks them in turn until
	// one answers. It may be empty when Static is set.
	Providers []ProviderZone
	// Static is the value used when the chain has nothing usable; nil means
	// none (the region then becomes Unknown).
	Static *StaticValue
}

// RateLimit is a token bucket: one request every Every, bursts up to Burst.
type RateLimit struct {
	// Every is the interval between tokens (zero means the tracker's
	// default; negative means unlimited).
	Every time.Duration
	// Burst is the bucket size (default 1 when Every is set).
	Burst int
}

// TrackerOptions configures a [Tracker]. Zero values are the documented
// defaults.
type TrackerOptions struct {
	// Regions are the regions to track.
	Regions []RegionSource
	// Interval is how often a region's current intensity is refreshed when
	// its signal gives no ValidUntil, and the longest gap between refreshes
	// (default 5m, minimum 1s).
	Interval time.Duration
	// ForecastInterval is how often forecasts are refreshed (default 30m,
	// minimum 1s).
	ForecastInterval time.Duration
	// RefreshAhead is how long before a signal's ValidUntil the tracker
	// refreshes it (default 30s). If the provider still returns the same
	// interval, the tracker asks again just after ValidUntil.
	RefreshAhead time.Duration
	// Jitter is the most by which a refresh is moved earlier at random, so
	// that regions and replicas do not refresh in lockstep (default 30s,
	// never more than a tenth of the wait).
	Jitter time.Duration
	// MaxStaleness is how long a last known good value is used after its
	// provider started failing, counted from when it was fetched
	// (default 1h).
	MaxStaleness time.Duration
	// Timeout bounds each provider call (default 10s).
	Timeout time.Duration
	// MaxAttempts is how many times one refresh calls a failing provider
	// before moving down the chain (default 3, minimum 1). Only failures
	// that may pass (unavailable, rate limited, unclassified) are retried.
	MaxAttempts int
	// RetryBackoff is the wait before the first retry; it doubles for each
	// further retry, with jitter (default 1s).
	RetryBackoff time.Duration
	// MaxBackoff caps a retry wait, including a provider's Retry-After; a
	// longer Retry-After ends the attempts (default 30s).
	MaxBackoff time.Duration
	// RateLimits are per-provider token buckets, keyed by Provider.Name.
	// Providers not listed get DefaultRateLimit.
	RateLimits map[string]RateLimit
	// DefaultRateLimit applies to providers not in RateLimits (default one
	// request per second, burst 5).
	DefaultRateLimit RateLimit
	// OnForecast, if set, is called with the region name after a new
	// forecast is stored, so that a scheduler can re-plan. It runs on a
	// refresh goroutine and must return quickly.
	OnForecast func(region string)
	// Logger receives refresh failures and fallback changes (nil discards).
	Logger *slog.Logger
	// Registerer receives the tracker's metrics (nil registers none).
	Registerer prometheus.Registerer
}

// Defaults of TrackerOptions.
const (
	DefaultInterval         = 5 * time.Minute
	DefaultForecastInterval = 30 * time.Minute
	DefaultRefreshAhead     = 30 * time.Second
	DefaultJitter           = 30 * time.Second
	DefaultMaxStaleness     = time.Hour
	DefaultTimeout          = 10 * time.Second
	DefaultMaxAttempts      = 3
	DefaultRetryBackoff     = time.Second
	DefaultMaxBackoff       = 30 * time.Second
)

// minWait is the shortest gap between two refreshes of one region, so that
// a provider with odd ValidUntil values cannot make a loop spin.
const minWait = time.Second

// ErrRunning is returned by [Tracker.Run] when the tracker already runs.
var ErrRunning = errors.New("tracker already running")

// Tracker keeps the current signal and forecast of each configured region.
// Create it with [NewTracker], start its refresh loops with [Tracker.Run].
type Tracker struct {
	slots   map[string]*slot // built once in NewTracker, read-only after
	order   []*slot          // configuration order
	regions []string

	interval, fcInterval, refreshAhead, jitter time.Duration
	maxStale, timeout, backoff, maxBackoff     time.Duration
	maxAttempts                                int
	limits                                     map[string]*bucket
	onForecast                                 func(string)
	log                                        *slog.Logger

	sf       singleflight.Group
	running  atomic.Bool
	changed  chan struct{} // wakes the decay loop after a publish
	requests *prometheus.CounterVec
	panics   prometheus.Counter
}

// slot is one region's state. cur and fc are replaced wholesale, never
// mutated, so readers need no lock.
type slot struct {
	region    string
	chain     []ProviderZone // zones resolved
	static    Signal
	hasStatic bool

	cur    atomic.Pointer[state]   // written by refreshes
	pub    atomic.Pointer[Reading] // what readers see; written by publish
	fc     atomic.Pointer[Forecast]
	loaded atomic.Bool

	pubMu sync.Mutex // serialises publish
	mu    sync.Mutex // guards provs
	provs []ProviderStatus
}

// state is an immutable view of a region's last refresh.
type state struct {
	sig       Signal
	fetchedAt time.Time
	liveUntil time.Time
	failing   bool
}

// NewTracker validates opts and returns a tracker that has not loaded
// anything yet: until its first refresh every region reads as Static (if
// configured) or Unknown.
func NewTracker(opts TrackerOptions) (*Tracker, error) {
	t := &Tracker{
		slots:        make(map[string]*slot, len(opts.Regions)),
		interval:     orDefault(opts.Interval, DefaultInterval),
		fcInterval:   orDefault(opts.ForecastInterval, DefaultForecastInterval),
		refreshAhead: orDefault(opts.RefreshAhead, DefaultRefreshAhead),
		jitter:       orDefault(opts.Jitter, DefaultJitter),
		maxStale:     orDefault(opts.MaxStaleness, DefaultMaxStaleness),
		timeout:      orDefault(opts.Timeout, DefaultTimeout),
		backoff:      orDefault(opts.RetryBackoff, DefaultRetryBackoff),
		maxBackoff:   orDefault(opts.MaxBackoff, DefaultMaxBackoff),
		maxAttempts:  opts.MaxAttempts,
		limits:       map[string]*bucket{},
		changed:      make(chan struct{}, 1),
		onForecast:   opts.OnForecast,
		log:          opts.Logger,
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.maxAttempts == 0 {
		t.maxAttempts = DefaultMaxAttempts
	}
	var errs []error
	for _, o := range []struct {
		name string
		d    time.Duration
	}{
		{"interval", opts.Interval}, {"forecast_interval", opts.ForecastInterval},
		{"refresh_ahead", opts.RefreshAhead}, {"jitter", opts.Jitter}, {"max_staleness", opts.MaxStaleness},
		{"timeout", opts.Timeout}, {"retry_backoff", opts.RetryBackoff}, {"max_backoff", opts.MaxBackoff},
	} {
		if o.d < 0 {
			errs = append(errs, fmt.Errorf("%s: %s is negative", o.name, o.d))
		}
	}
	if t.interval < minWait && opts.Interval > 0 {
		errs = append(errs, fmt.Errorf("interval: %s is below the minimum %s", opts.Interval, minWait))
	}
	if t.fcInterval < minWait && opts.ForecastInterval > 0 {
		errs = append(errs, fmt.Errorf("forecast_interval: %s is below the minimum %s", opts.ForecastInterval, minWait))
	}
	if t.maxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max_attempts: %d is below the minimum 1", opts.MaxAttempts))
	}
	names := map[string]bool{}
	for i, rs := range opts.Regions {
		s, rerrs := newSlot(i, rs)
		errs = append(errs, rerrs...)
		if rs.Region != "" && t.slots[rs.Region] != nil {
			errs = append(errs, fmt.Errorf("regions[%d]: duplicate region %q", i, rs.Region))
			continue
		}
		if len(rerrs) > 0 {
			continue
		}
		t.slots[s.region] = s
		t.order = append(t.order, s)
		t.regions = append(t.regions, s.region)
		for _, pz := range s.chain {
			names[pz.Provider.Name()] = true
		}
	}
	for name := range names {
		rl, ok := opts.RateLimits[name]
		if !ok {
			rl = opts.DefaultRateLimit
		}
		if rl.Every == 0 {
			rl = RateLimit{Every: time.Second, Burst: 5}
		}
		if rl.Burst < 0 {
			errs = append(errs, fmt.Errorf("rate_limits.%s: burst %d is negative", name, rl.Burst))
		}
		t.limits[name] = newBucket(rl)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("configure carbon tracker: %w", errors.Join(errs...))
	}
	t.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aegis_carbon_provider_requests_total",
		Help: "Carbon provider calls by provider and result (ok, unauthorized, rate_limited, unavailable, bad_response, unknown_zone, error).",
	}, []string{"provider", "result"})
	for name := range names {
		for _, r := range results {
			t.requests.WithLabelValues(name, r)
		}
	}
	t.panics = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "aegis_carbon_refresh_panics_total",
		Help: "Panics recovered in carbon refresh loops.",
	})
	if reg := opts.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{t.requests, t.panics, &collector{t: t}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register carbon metrics: %w", err)
			}
		}
	}
	return t, nil
}

func newSlot(i int, rs RegionSource) (*slot, []error) {
	var errs []error
	if rs.Region == "" {
		errs = append(errs, fmt.Errorf("regions[%d].region: empty", i))
	}
	s := &slot{region: rs.Region}
	for j, pz := range rs.Providers {
		if pz.Provider == nil {
			errs = append(errs, fmt.Errorf("regions[%d].providers[%d]: no provider", i, j))
			continue
		}
		if pz.Zone == "" {
			pz.Zone = rs.Zone
		}
		if pz.Zone == "" {
			errs = append(errs, fmt.Errorf("regions[%d].providers[%d] (%s): no zone", i, j, pz.Provider.Name()))
			continue
		}
		s.chain = append(s.chain, pz)
		s.provs = append(s.provs, ProviderStatus{Name: pz.Provider.Name(), Zone: pz.Zone})
	}
	if st := rs.Static; st != nil {
		kind := st.Kind
		if kind == "" {
			kind = Average
		}
		if kind != Average && kind != Marginal {
			errs = append(errs, fmt.Errorf("regions[%d].static.kind: %q is neither %q nor %q", i, st.Kind, Average, Marginal))
		}
		if !validIntensity(st.Intensity) {
			errs = append(errs, fmt.Errorf("regions[%d].static.intensity: %v is not a finite, non-negative gCO2eq/kWh", i, st.Intensity))
		}
		s.static = Signal{Region: rs.Region, Intensity: st.Intensity, Kind: kind, Source: "static"}
		s.hasStatic = true
	}
	if len(s.chain) == 0 && !s.hasStatic && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("regions[%d] (%s): neither providers nor a static value", i, rs.Region))
	}
	initial := Reading{Signal: Signal{Region: rs.Region}, Level: Unknown}
	if s.hasStatic {
		initial = Reading{Signal: s.static, Level: Static}
	}
	s.pub.Store(&initial)
	return s, errs
}

func validIntensity(v float64) bool { return v >= 0 && !math.IsInf(v, 1) }

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Regions returns the configured region names in configuration order.
func (t *Tracker) Regions() []string { return slices.Clone(t.regions) }

// Current returns the region's intensity now. ok is false when the region
// is not configured or its reading is Unknown (routing should then be
// carbon-neutral for it); the Reading still says which. It never blocks,
// does not read the clock and does not allocate: it loads the reading that
// the refresh loops last published. While [Tracker.Run] runs, readings move
// down the fallback ladder as time passes (Live to LastKnownGood when a
// value outlives its validity, LastKnownGood to Static or Unknown after
// MaxStaleness) within a few milliseconds.
func (t *Tracker) Current(region string) (r Reading, ok bool) {
	s := t.slots[region]
	if s == nil {
		return Reading{Level: Unknown}, false
	}
	p := s.pub.Load()
	return *p, p.Level != Unknown
}

// compute derives the region's reading at now from its last refresh.
func (t *Tracker) compute(s *slot, now time.Time) Reading {
	if st := s.cur.Load(); st != nil {
		if !st.failing && now.Before(st.liveUntil) {
			return Reading{Signal: st.sig, Level: Live, FetchedAt: st.fetchedAt}
		}
		if now.Sub(st.fetchedAt) <= t.maxStale {
			return Reading{Signal: st.sig, Level: LastKnownGood, FetchedAt: st.fetchedAt}
		}
	}
	if s.hasStatic {
		return Reading{Signal: s.static, Level: Static}
	}
	return Reading{Signal: Signal{Region: s.region}, Level: Unknown}
}

// publish recomputes the region's reading for readers and logs a change of
// fallback level.
func (t *Tracker) publish(s *slot, now time.Time) {
	s.pubMu.Lock()
	r := t.compute(s, now)
	prev := s.pub.Swap(&r)
	s.pubMu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
	if prev.Level == r.Level {
		return
	}
	if r.Level == Live {
		t.log.Info("carbon fallback level changed", "region", s.region, "from", prev.Level.String(), "to", r.Level.String(), "source", r.Signal.Source)
		return
	}
	t.log.Warn("carbon fallback level changed", "region", s.region, "from", prev.Level.String(), "to", r.Level.String(), "source", r.Signal.Source)
}

// Forecast returns the region's latest forecast while it still has a point
// ending after now. The Points slice is the caller's own copy.
func (t *Tracker) Forecast(region string) (Forecast, bool) {
	s := t.slots[region]
	if s == nil {
		return Forecast{}, false
	}
	f := s.fc.Load()
	if f == nil || len(f.Points) == 0 || !f.Points[len(f.Points)-1].End().After(time.Now()) {
		return Forecast{}, false
	}
	out := *f
	out.Points = slices.Clone(f.Points)
	return out, true
}

// Ready reports whether every region has had its first refresh: a signal
// loaded or its fallback chosen. /readyz uses it.
func (t *Tracker) Ready() bool {
	for _, s := range t.order {
		if !s.loaded.Load() {
			return false
		}
	}
	return true
}

// ProviderStatus is the state of one link of a region's provider chain.
type ProviderStatus struct {
	Name string
	Zone string
	// Failed is true when the provider's last Current call for this region
	// failed.
	Failed bool
	// LastError is the last failure's message (providers keep secrets out
	// of their errors).
	LastError   string
	LastSuccess time.Time
	LastFailure time.Time
	// ForecastFailed and ForecastError are the same for Forecast calls.
	ForecastFailed bool
	ForecastError  string
}

// RegionStatus is one region in a [Tracker.Snapshot].
type RegionStatus struct {
	Region    string
	Reading   Reading
	Providers []ProviderStatus
	// ForecastPoints is the number of points in the stored forecast (0 if
	// none); ForecastGeneratedAt, ForecastStart and ForecastEnd describe it.
	ForecastPoints      int
	ForecastSource      string
	ForecastGeneratedAt time.Time
	ForecastStart       time.Time
	ForecastEnd         time.Time
}

// Snapshot returns every region's reading and provider state, in
// configuration order, for the admin API and the CLI.
func (t *Tracker) Snapshot() []RegionStatus {
	out := make([]RegionStatus, 0, len(t.order))
	for _, s := range t.order {
		rs := RegionStatus{Region: s.region, Reading: *s.pub.Load()}
		s.mu.Lock()
		rs.Providers = slices.Clone(s.provs)
		s.mu.Unlock()
		if f := s.fc.Load(); f != nil && len(f.Points) > 0 {
			rs.ForecastPoints = len(f.Points)
			rs.ForecastSource = f.Source
			rs.ForecastGeneratedAt = f.GeneratedAt
			rs.ForecastStart = f.Points[0].Start
			rs.ForecastEnd = f.Points[len(f.Points)-1].End()
		}
		out = append(out, rs)
	}
	return out
}

// Run refreshes every region in the background until ctx is done, then
// waits for its goroutines and returns nil. A panic in a refresh loop is
// recovered, logged and counted, and the loop restarts. Run may be called
// once at a time.
func (t *Tracker) Run(ctx context.Context) error {
	if !t.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer t.running.Store(false)
	var wg sync.WaitGroup
	for _, s := range t.order {
		wg.Go(func() { t.supervise(ctx, s.region, func() { t.loop(ctx, s) }) })
	}
	wg.Go(func() { t.supervise(ctx, "", func() { t.decayLoop(ctx) }) })
	wg.Wait()
	return nil
}

// decayLoop republishes readings when time alone moves them down the
// ladder, independently of refreshes that may be waiting on a provider.
func (t *Tracker) decayLoop(ctx context.Context) {
	for {
		now := time.Now()
		var next time.Time
		for _, s := range t.order {
			at := t.nextDecay(s)
			if at.IsZero() {
				continue
			}
			if !at.After(now) {
				t.publish(s, now)
				at = t.nextDecay(s)
			}
			if !at.IsZero() && at.After(now) && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
		var timer <-chan time.Time
		var tm *time.Timer
		if !next.IsZero() {
			tm = time.NewTimer(next.Sub(now))
			timer = tm.C
		}
		select {
		case <-ctx.Done():
		case <-t.changed:
		case <-timer:
		}
		if tm != nil {
			tm.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// nextDecay returns when the region's published reading next changes level
// by the passing of time alone (zero if never).
func (t *Tracker) nextDecay(s *slot) time.Time {
	st := s.cur.Load()
	if st == nil {
		return time.Time{}
	}
	switch s.pub.Load().Level {
	case Live:
		return st.liveUntil
	case LastKnownGood:
		return st.fetchedAt.Add(t.maxStale + time.Nanosecond)
	}
	return time.Time{}
}

// Refresh refreshes every region once, now, and waits for the result. It
// is for one-shot use (the CLI) and tests; concurrent refreshes of the same
// provider zone share one provider call. It returns the regions whose
// chains all failed, joined.
func (t *Tracker) Refresh(ctx context.Context) error {
	errs := make([]error, len(t.order))
	var wg sync.WaitGroup
	for i, s := range t.order {
		wg.Go(func() {
			t.safely(s.region, func() {
				errs[i] = t.refreshCurrent(ctx, s)
				_ = t.refreshForecast(ctx, s) // failures are logged and in the snapshot
				s.loaded.Store(true)
			})
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// supervise runs a loop until it returns, restarting it after a panic.
func (t *Tracker) supervise(ctx context.Context, region string, loop func()) {
	for {
		if t.safely(region, loop) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(t.backoff):
		}
	}
}

// safely runs fn and reports whether it returned without panicking.
func (t *Tracker) safely(region string, fn func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			t.panics.Inc()
			t.log.Error("carbon refresh panicked", "region", region, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			ok = false
		}
	}()
	fn()
	return true
}

// loop is one region's refresh loop.
func (t *Tracker) loop(ctx context.Context, s *slot) {
	now := time.Now()
	nextCur, nextFc := now, now
	var aheadOf time.Time // the ValidUntil we already refreshed ahead of
	for ctx.Err() == nil {
		now = time.Now()
		if !now.Before(nextCur) {
			err := t.refreshCurrent(ctx, s)
			now = time.Now()
			nextCur = now.Add(t.nextCurrentWait(s, err, now, &aheadOf))
		}
		if !now.Before(nextFc) {
			wait := t.fcInterval
			if err := t.refreshForecast(ctx, s); err != nil {
				wait = min(wait, time.Minute)
			}
			now = time.Now()
			nextFc = now.Add(max(t.jittered(wait), minWait))
		}
		s.loaded.Store(true)
		wake := nextCur
		if nextFc.Before(wake) {
			wake = nextFc
		}
		timer := time.NewTimer(wake.Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// nextCurrentWait decides when to refresh a region's current signal next.
func (t *Tracker) nextCurrentWait(s *slot, err error, now time.Time, aheadOf *time.Time) time.Duration {
	wait := t.interval
	if err != nil {
		wait = min(t.interval, time.Minute)
	} else if st := s.cur.Load(); st != nil {
		vu := st.sig.ValidUntil
		switch {
		case vu.IsZero() || !vu.After(now):
			// No validity or already expired (a lagging provider): normal cadence.
		case !vu.Equal(*aheadOf) && vu.Sub(now) > t.refreshAhead:
			// Refresh ahead of expiry, so readers never see an expired value.
			*aheadOf = vu
			wait = min(wait, vu.Sub(now)-t.refreshAhead)
		default:
			// Already refreshed ahead and the provider had nothing newer: ask
			// again just after the value expires (no jitter: not earlier).
			if d := vu.Sub(now) + minWait; d < wait {
				return d
			}
		}
	}
	return max(t.jittered(wait), minWait)
}

// jittered moves d earlier by a random amount up to min(Jitter, d/10).
func (t *Tracker) jittered(d time.Duration) time.Duration {
	j := min(t.jitter, d/10)
	if j <= 0 {
		return d
	}
	return d - rand.N(j)
}

// refreshCurrent asks the region's chain in order and publishes the first
// good signal; if none answers, it marks the state failing so that readers
// move down the ladder.
func (t *Tracker) refreshCurrent(ctx context.Context, s *slot) error {
	var errs []error
	for i, pz := range s.chain {
		name := pz.Provider.Name()
		v, err := t.do(ctx, name, pz.Zone, "current", func(ctx context.Context) (any, error) {
			sig, err := pz.Provider.Current(ctx, pz.Zone)
			if err == nil {
				err = checkSignal(sig)
			}
			return sig, err
		})
		now := time.Now()
		if err != nil {
			t.markFailed(s, i, "current", err, now)
			errs = append(errs, fmt.Errorf("%s zone %s: %w", name, pz.Zone, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		sig := v.(Signal)
		sig.Region = s.region
		if sig.Source == "" {
			sig.Source = name
		}
		live := now.Add(t.interval)
		if sig.ValidUntil.After(live) {
			live = sig.ValidUntil
		}
		s.cur.Store(&state{sig: sig, fetchedAt: now, liveUntil: live.Add(t.interval)})
		t.publish(s, now)
		t.markOK(s, i, "current", now)
		return nil
	}
	if old := s.cur.Load(); old != nil && !old.failing {
		ns := *old
		ns.failing = true
		s.cur.Store(&ns)
	}
	t.publish(s, time.Now())
	if len(errs) == 0 {
		return nil // static only
	}
	return fmt.Errorf("refresh region %s: %w", s.region, errors.Join(errs...))
}

// refreshForecast stores the first forecast the chain gives. It returns an
// error when a provider failed and none gave a forecast (not when they all
// simply have none).
func (t *Tracker) refreshForecast(ctx context.Context, s *slot) error {
	var errs []error
	for i, pz := range s.chain {
		name := pz.Provider.Name()
		v, err := t.do(ctx, name, pz.Zone, "forecast", func(ctx context.Context) (any, error) {
			f, err := pz.Provider.Forecast(ctx, pz.Zone)
			if err == nil {
				err = checkForecast(f)
			}
			return f, err
		})
		if errors.Is(err, ErrNoForecast) {
			continue
		}
		if err != nil {
			t.markFailed(s, i, "forecast", err, time.Now())
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		f := v.(Forecast)
		f.Region = s.region
		f.Points = slices.Clone(f.Points) // shared by singleflight callers
		if f.Source == "" {
			f.Source = name
		}
		s.fc.Store(&f)
		t.markOK(s, i, "forecast", time.Now())
		if t.onForecast != nil {
			t.onForecast(s.region)
		}
		return nil
	}
	return errors.Join(errs...)
}

func checkSignal(sig Signal) error {
	if !validIntensity(sig.Intensity) {
		return fmt.Errorf("intensity %v: %w", sig.Intensity, ErrBadResponse)
	}
	if sig.Kind != Average && sig.Kind != Marginal {
		return fmt.Errorf("kind %q: %w", sig.Kind, ErrBadResponse)
	}
	return nil
}

func checkForecast(f Forecast) error {
	if len(f.Points) == 0 {
		return ErrNoForecast
	}
	if f.Kind != Average && f.Kind != Marginal {
		return fmt.Errorf("kind %q: %w", f.Kind, ErrBadResponse)
	}
	if err := checkPoints(f.Points); err != nil {
		return fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	return nil
}

func (t *Tracker) markOK(s *slot, i int, call string, now time.Time) {
	s.mu.Lock()
	p := &s.provs[i]
	var was bool
	if call == "current" {
		was, p.Failed, p.LastSuccess = p.Failed, false, now
	} else {
		was, p.ForecastFailed = p.ForecastFailed, false
	}
	name, zone := p.Name, p.Zone
	s.mu.Unlock()
	if was {
		t.log.Info("carbon provider recovered", "provider", name, "region", s.region, "zone", zone, "call", call)
	}
}

// markFailed records a failure and logs it once per episode of a call
// (current or forecast) failing, or when the error changes.
func (t *Tracker) markFailed(s *slot, i int, call string, err error, now time.Time) {
	msg := err.Error()
	s.mu.Lock()
	p := &s.provs[i]
	var repeat bool
	if call == "current" {
		repeat = p.Failed && p.LastError == msg
		p.Failed, p.LastError, p.LastFailure = true, msg, now
	} else {
		repeat = p.ForecastFailed && p.ForecastError == msg
		p.ForecastFailed, p.ForecastError = true, msg
	}
	name, zone := p.Name, p.Zone
	s.mu.Unlock()
	if !repeat {
		t.log.Warn("carbon provider failed", "provider", name, "region", s.region, "zone", zone, "call", call, "error", msg)
	}
}

// do calls fn for (provider, zone, op) with request coalescing, rate
// limiting, a timeout and bounded retries.
func (t *Tracker) do(ctx context.Context, provider, zone, op string, fn func(context.Context) (any, error)) (any, error) {
	v, err, _ := t.sf.Do(provider+"\x00"+zone+"\x00"+op, func() (any, error) {
		return t.withRetries(ctx, provider, fn)
	})
	return v, err
}

func (t *Tracker) withRetries(ctx context.Context, provider string, fn func(context.Context) (any, error)) (any, error) {
	for attempt := 1; ; attempt++ {
		if err := t.limits[provider].wait(ctx, t.interval); err != nil {
			t.requests.WithLabelValues(provider, resultOf(err)).Inc()
			return nil, err
		}
		cctx, cancel := context.WithTimeout(ctx, t.timeout)
		v, err := fn(cctx)
		cancel()
		t.requests.WithLabelValues(provider, resultOf(err)).Inc()
		if err == nil {
			return v, nil
		}
		if attempt >= t.maxAttempts || !retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		d := t.backoff << (attempt - 1)
		d = d/2 + rand.N(d/2+1)
		if rle, ok := errors.AsType[*RateLimitError](err); ok && rle.RetryAfter > d {
			d = rle.RetryAfter
		}
		if d > t.maxBackoff {
			if _, ok := errors.AsType[*RateLimitError](err); ok {
				return nil, err
			}
			d = t.maxBackoff
		}
		t.log.Debug("carbon provider retry", "provider", provider, "attempt", attempt, "wait", d, "error", err.Error())
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, err
		case <-timer.C:
		}
	}
}

// results are the bounded values of the requests counter's result label.
var results = []string{"ok", "unauthorized", "rate_limited", "unavailable", "bad_response", "unknown_zone", "error"}

func resultOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return "unavailable"
	case errors.Is(err, ErrBadResponse):
		return "bad_response"
	case errors.Is(err, ErrUnknownZone):
		return "unknown_zone"
	}
	return "error"
}

func retryable(err error) bool {
	switch {
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrBadResponse),
		errors.Is(err, ErrUnknownZone), errors.Is(err, ErrNoForecast),
		errors.Is(err, context.Canceled):
		return false
	}
	return true
}
