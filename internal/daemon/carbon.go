package daemon

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-flow/aegis/internal/balance"
	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/carbon/electricitymaps"
	"github.com/aegis-flow/aegis/internal/carbon/replay"
	"github.com/aegis-flow/aegis/internal/carbon/static"
	"github.com/aegis-flow/aegis/internal/carbon/ukgrid"
	"github.com/aegis-flow/aegis/internal/carbon/watttime"
	"github.com/aegis-flow/aegis/internal/config"
	"github.com/aegis-flow/aegis/internal/greenwait"
)

// ErrNoCarbonRegion means a region asked for has no [[carbon.regions]] entry.
var ErrNoCarbonRegion = errors.New("no [[carbon.regions]] entry")

// maxTraceSize bounds a replay trace file (64 MiB).
const maxTraceSize = 64 << 20

// CarbonOptions configures [NewCarbonTracker]. Zero values are the
// documented defaults.
type CarbonOptions struct {
	// Regions limits the tracker to these regions, in this order (default:
	// every configured region). Providers that no chosen region uses are not
	// built, so their credentials are not needed.
	Regions []string
	// Logger receives provider failures and fallback changes (nil discards).
	Logger *slog.Logger
	// Registerer receives the tracker's metrics (nil registers none).
	Registerer prometheus.Registerer
	// Getenv reads credential environment variables (default os.Getenv).
	Getenv func(string) string
}

// NewCarbonTracker builds the providers and the carbon tracker that cfg's
// [carbon] section describes. It resolves credentials from the environment
// variables and files the configuration names; errors name the provider or
// region and never hold a credential. The tracker is not running: call its
// Run, or Refresh for a one-shot answer.
func NewCarbonTracker(cfg *config.File, o CarbonOptions) (*carbon.Tracker, error) {
	regions, err := pickRegions(&cfg.Carbon, o.Regions)
	if err != nil {
		return nil, err
	}
	secrets, err := resolveSecrets(&cfg.Carbon, regions, o.Getenv)
	if err != nil {
		return nil, err
	}
	return newTracker(&cfg.Carbon, regions, secrets, o.Logger, o.Registerer)
}

// pickRegions returns the configured regions named in want, in want's
// order, or all of them when want is empty.
func pickRegions(c *config.Carbon, want []string) ([]config.CarbonRegion, error) {
	if len(want) == 0 {
		return c.Regions, nil
	}
	var out []config.CarbonRegion
	var missing []string
	for _, name := range want {
		i := slices.IndexFunc(c.Regions, func(r config.CarbonRegion) bool { return r.Region == name })
		if i < 0 {
			missing = append(missing, name)
			continue
		}
		if !slices.ContainsFunc(out, func(r config.CarbonRegion) bool { return r.Region == name }) {
			out = append(out, c.Regions[i])
		}
	}
	if len(missing) > 0 {
		have := make([]string, 0, len(c.Regions))
		for _, r := range c.Regions {
			have = append(have, r.Region)
		}
		return nil, fmt.Errorf("region %s: %w (configured: %s)", strings.Join(missing, ", "), ErrNoCarbonRegion, strings.Join(have, ", "))
	}
	return out, nil
}

// credentials are a provider's resolved secrets.
type credentials struct{ token, username, password string }

// resolveSecrets reads the credentials of every provider that regions use.
func resolveSecrets(c *config.Carbon, regions []config.CarbonRegion, getenv func(string) string) (map[string]credentials, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	out := map[string]credentials{}
	var errs []error
	for _, name := range usedProviders(regions) {
		p := c.Provider(name)
		if p == nil {
			continue // reported by newTracker
		}
		var cr credentials
		var err error
		switch p.Type {
		case config.CarbonElectricityMaps:
			cr.token, err = secret(getenv, p.TokenEnv, p.TokenFile)
			if err != nil {
				err = fmt.Errorf("carbon provider %s: API token: %w", name, err)
			}
		case config.CarbonWattTime:
			var uerr, perr error
			cr.username, uerr = secret(getenv, p.UsernameEnv, p.UsernameFile)
			cr.password, perr = secret(getenv, p.PasswordEnv, p.PasswordFile)
			if uerr != nil {
				errs = append(errs, fmt.Errorf("carbon provider %s: username: %w", name, uerr))
			}
			if perr != nil {
				err = fmt.Errorf("carbon provider %s: password: %w", name, perr)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
		out[name] = cr
	}
	return out, errors.Join(errs...)
}

// secret reads a credential from the environment variable env or the first
// line of file. Errors name the variable or file, never the value.
func secret(getenv func(string) string, env, file string) (string, error) {
	if env != "" {
		v := strings.TrimSpace(getenv(env))
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set or empty", env)
		}
		return v, nil
	}
	if file == "" {
		return "", errors.New("no *_env or *_file configured")
	}
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err) // *PathError names the file only
	}
	defer f.Close()
	line, err := bufio.NewReader(io.LimitReader(f, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read secret file %s: %w", file, err)
	}
	v := strings.TrimSpace(line)
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", file)
	}
	return v, nil
}

func usedProviders(regions []config.CarbonRegion) []string {
	var out []string
	for _, r := range regions {
		for _, l := range r.Chain {
			if !slices.Contains(out, l.Provider) {
				out = append(out, l.Provider)
			}
		}
	}
	return out
}

// newTracker builds the providers regions use and a tracker over them.
func newTracker(c *config.Carbon, regions []config.CarbonRegion, secrets map[string]credentials, log *slog.Logger, reg prometheus.Registerer) (*carbon.Tracker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	provs := map[string]carbon.Provider{}
	zones := map[string][]string{} // replay providers' zones
	limits := map[string]carbon.RateLimit{}
	var errs []error
	for _, name := range usedProviders(regions) {
		pc := c.Provider(name)
		if pc == nil {
			errs = append(errs, fmt.Errorf("carbon provider %q is not defined", name))
			continue
		}
		p, z, err := buildProvider(pc, secrets[name], log)
		if err != nil {
			errs = append(errs, fmt.Errorf("carbon provider %s (%s): %w", name, pc.Type, err))
			continue
		}
		if p.Name() != name {
			p = named{Provider: p, name: name}
		}
		provs[name] = p
		if z != nil {
			zones[name] = z
		}
		if pc.Type == config.CarbonReplay || pc.Type == config.CarbonStatic {
			limits[name] = carbon.RateLimit{Every: -1} // local data: no rate limit
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sources := make([]carbon.RegionSource, 0, len(regions))
	for _, r := range regions {
		rs := carbon.RegionSource{Region: r.Region, Zone: r.Zone}
		for j, l := range r.Chain {
			if z, ok := zones[l.Provider]; ok && !slices.Contains(z, l.Zone) {
				errs = append(errs, fmt.Errorf("carbon region %s: chain[%d]: replay provider %s has no zone %q (zones: %s)",
					r.Region, j, l.Provider, l.Zone, strings.Join(z, ", ")))
				continue
			}
			rs.Providers = append(rs.Providers, carbon.ProviderZone{Provider: provs[l.Provider], Zone: l.Zone})
		}
		if s := r.Static; s != nil {
			rs.Static = &carbon.StaticValue{Intensity: s.Value, Kind: carbon.Kind(s.Kind)}
		}
		sources = append(sources, rs)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return carbon.NewTracker(carbon.TrackerOptions{
		Regions:          sources,
		Interval:         c.Interval.Duration,
		ForecastInterval: c.ForecastInterval.Duration,
		MaxStaleness:     c.MaxStaleness.Duration,
		Timeout:          c.Timeout.Duration,
		MaxAttempts:      c.MaxAttempts,
		RetryBackoff:     c.RetryBackoff.Duration,
		RateLimits:       limits,
		Logger:           log,
		Registerer:       reg,
	})
}

// buildProvider makes one provider; for replay it also returns the trace's
// zones, so that region zones can be checked before anything runs.
func buildProvider(p *config.CarbonProvider, cr credentials, log *slog.Logger) (carbon.Provider, []string, error) {
	client := func() *http.Client { return &http.Client{Timeout: p.Timeout.Duration} }
	switch p.Type {
	case config.CarbonElectricityMaps:
		c, err := electricitymaps.New(electricitymaps.Options{
			BaseURL: p.BaseURL, Token: cr.token, HTTPClient: client(),
			EmissionFactorType: electricitymaps.EmissionFactorType(p.EmissionFactor), Logger: log,
		})
		return c, nil, err
	case config.CarbonWattTime:
		c, err := watttime.New(watttime.Options{
			BaseURL: p.BaseURL, Username: cr.username, Password: cr.password, HTTPClient: client(), Logger: log,
		})
		return c, nil, err
	case config.CarbonUKGrid:
		c, err := ukgrid.New(ukgrid.Options{BaseURL: p.BaseURL, HTTPClient: client(), Logger: log})
		return c, nil, err
	case config.CarbonStatic:
		c, err := static.New(static.Options{Values: p.Values, Kind: carbon.Kind(p.Kind), Name: p.Name})
		return c, nil, err
	case config.CarbonReplay:
		return buildReplay(p)
	}
	return nil, nil, fmt.Errorf("unknown provider type %q", p.Type)
}

func buildReplay(p *config.CarbonProvider) (carbon.Provider, []string, error) {
	format, err := replay.ParseFormat(p.Format)
	if err != nil {
		return nil, nil, err
	}
	column, err := replay.ParseColumn(p.Column)
	if err != nil {
		return nil, nil, err
	}
	var start time.Time
	if p.Start != "" {
		if start, err = time.Parse(time.RFC3339, p.Start); err != nil {
			return nil, nil, fmt.Errorf("start: %w", err)
		}
	}
	opts := replay.Options{
		Format: format, Column: column, Start: start, Speed: p.Speed,
		Kind: carbon.Kind(p.Kind), Name: p.Name, Horizon: p.Horizon.Duration,
	}
	var rp *replay.Provider
	if p.File == config.EmbeddedSample {
		rp, err = replay.NewSample(opts)
	} else {
		opts.Data, err = readTrace(p.File)
		if err != nil {
			return nil, nil, err
		}
		rp, err = replay.New(opts)
	}
	if err != nil {
		return nil, nil, err
	}
	return rp, rp.Zones(), nil
}

func readTrace(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read trace: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTraceSize+1))
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", path, err)
	}
	if len(data) > maxTraceSize {
		return nil, fmt.Errorf("trace %s is larger than %d bytes", path, maxTraceSize)
	}
	return data, nil
}

// named gives a provider its configured name, which the tracker uses for
// rate limits, request coalescing and the provider metric label.
type named struct {
	carbon.Provider
	name string
}

func (n named) Name() string { return n.name }

// ---------------------------------------------------------------- daemon wiring

// carbonHub is the daemon's handle on the running tracker. The request path
// reads it without locks.
type carbonHub struct {
	cur      atomic.Pointer[carbonState]
	register sync.Once
}

// carbonState is one built tracker. A reload keeps it when the [carbon]
// section and the credentials are unchanged.
type carbonState struct {
	cfg         config.Carbon
	fingerprint [sha256.Size]byte
	tracker     *carbon.Tracker
	handler     *carbon.Handler
	collectors  []prometheus.Collector

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
}

// recorder is a prometheus.Registerer that only remembers collectors, so
// that a rebuilt tracker's metrics replace the old ones: the daemon's
// registry holds one collector that delegates to the current tracker's.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error { r.cs = append(r.cs, c); return nil }

func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

// hubCollector is an unchecked collector: it describes nothing up front and
// collects whatever the current tracker has.
type hubCollector struct{ h *carbonHub }

func (hubCollector) Describe(chan<- *prometheus.Desc) {}

func (c hubCollector) Collect(ch chan<- prometheus.Metric) {
	if cs := c.h.cur.Load(); cs != nil {
		for _, col := range cs.collectors {
			col.Collect(ch)
		}
	}
}

// buildCarbon builds the tracker of cfg, or keeps prev's when nothing it
// depends on changed.
func (d *Daemon) buildCarbon(cfg *config.File, prev *generation) (*carbonState, error) {
	d.carbon.register.Do(func() { d.registry.MustRegister(hubCollector{&d.carbon}) })
	if !cfg.Carbon.Enabled() && len(cfg.Carbon.Providers) > 0 {
		d.log.Info("carbon providers are configured but no [[carbon.regions]] uses them")
	}
	for _, r := range cfg.CarbonUncoveredRegions() {
		d.log.Warn("endpoint region has no [[carbon.regions]] entry; its carbon intensity is unknown", "region", r)
	}
	secrets, err := resolveSecrets(&cfg.Carbon, cfg.Carbon.Regions, nil)
	if err != nil {
		return nil, fmt.Errorf("carbon: %w", err)
	}
	fp := fingerprint(secrets)
	if prev != nil && prev.carbon != nil && prev.carbon.fingerprint == fp && reflect.DeepEqual(prev.carbon.cfg, cfg.Carbon) {
		return prev.carbon, nil
	}
	rec := &recorder{}
	t, err := newTracker(&cfg.Carbon, cfg.Carbon.Regions, secrets, d.log, rec)
	if err != nil {
		return nil, fmt.Errorf("carbon: %w", err)
	}
	cs := &carbonState{cfg: cfg.Carbon, fingerprint: fp, tracker: t, handler: carbon.NewHandler(t), collectors: rec.cs}
	d.carbon.cur.CompareAndSwap(nil, cs) // the first build is current at once
	return cs, nil
}

func fingerprint(secrets map[string]credentials) [sha256.Size]byte {
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		c := secrets[n]
		fmt.Fprintf(h, "%q %q %q %q\n", n, c.token, c.username, c.password)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// startCarbon runs cs's tracker under ctx (the daemon's lifetime, not a
// generation's, so that a kept tracker survives reloads) and makes it the
// current one; a tracker it replaces stops at once.
func (d *Daemon) startCarbon(ctx context.Context, cs *carbonState) {
	if cs == nil {
		return
	}
	cs.mu.Lock()
	if !cs.started {
		cs.started = true
		cctx, cancel := context.WithCancel(ctx)
		cs.cancel = cancel
		d.wg.Go(func() {
			d.guard("carbon", func() {
				if err := cs.tracker.Run(cctx); err != nil {
					d.log.Error("carbon tracker stopped", "err", err)
				}
			})
		})
	}
	cs.mu.Unlock()
	if old := d.carbon.cur.Swap(cs); old != nil && old != cs {
		old.stop()
	}
}

// stop ends the tracker's refresh loops (idempotent).
func (cs *carbonState) stop() {
	if cs == nil {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.started = true // never start after a stop
	if cs.cancel != nil {
		cs.cancel()
	}
}

// carbonReadyLocked reports whether g's tracker has its first signals.
// d.mu is held.
func (d *Daemon) carbonReadyLocked() (bool, string) {
	if d.gen == nil || d.gen.carbon == nil || d.gen.carbon.tracker.Ready() {
		return true, ""
	}
	return false, "carbon signals are not loaded yet"
}

// carbonHTTP serves /carbon and /emissions/... from the current tracker.
func (d *Daemon) carbonHTTP() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		g := d.gen
		d.mu.Unlock()
		if g == nil || g.carbon == nil {
			http.NotFound(w, r)
			return
		}
		g.carbon.handler.ServeHTTP(w, r)
	})
}

// CarbonTracker returns the current carbon tracker (after a reload that
// changed [carbon], a new one), or nil before the first build.
func (d *Daemon) CarbonTracker() *carbon.Tracker {
	if cs := d.carbon.cur.Load(); cs != nil {
		return cs.tracker
	}
	return nil
}

// CarbonIntensity returns the adapter that carbon-aware routing reads.
func (d *Daemon) CarbonIntensity() *CarbonIntensity { return &CarbonIntensity{hub: &d.carbon} }

// CarbonForecaster returns the adapter that Green-Wait plans with.
func (d *Daemon) CarbonForecaster() *CarbonForecaster { return &CarbonForecaster{hub: &d.carbon} }

// CarbonIntensity adapts the daemon's current carbon tracker to
// balance.IntensitySource. It follows reloads and is safe for concurrent
// use; Intensity does not allocate or block.
type CarbonIntensity struct{ hub *carbonHub }

var _ balance.IntensitySource = (*CarbonIntensity)(nil)

// Intensity returns the region's intensity in gCO2eq/kWh and its kind; ok is
// false when the region is unknown (not configured, or nothing usable).
func (c *CarbonIntensity) Intensity(region string) (gPerKWh float64, kind string, ok bool) {
	cs := c.hub.cur.Load()
	if cs == nil {
		return 0, "", false
	}
	r, ok := cs.tracker.Current(region)
	if !ok {
		return 0, "", false
	}
	return r.Signal.Intensity, string(r.Signal.Kind), true
}

// CarbonForecaster adapts the daemon's current carbon tracker to
// greenwait.Forecaster. It follows reloads and is safe for concurrent use.
type CarbonForecaster struct{ hub *carbonHub }

var _ greenwait.Forecaster = (*CarbonForecaster)(nil)

// errNoTracker means carbon data is not built yet.
var errNoTracker = errors.New("carbon tracker not built")

// BestWindow returns the start and average intensity of the lowest-carbon
// window of length d in the region's current forecast between earliest and
// deadline.
func (c *CarbonForecaster) BestWindow(_ context.Context, region string, d time.Duration, earliest, deadline time.Time) (time.Time, float64, error) {
	cs := c.hub.cur.Load()
	if cs == nil {
		return time.Time{}, 0, errNoTracker
	}
	f, ok := cs.tracker.Forecast(region)
	if !ok {
		return time.Time{}, 0, fmt.Errorf("region %s: %w", region, carbon.ErrNoForecast)
	}
	w, err := carbon.BestWindow(f, d, earliest, deadline)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("region %s: %w", region, err)
	}
	return w.Start, w.Intensity, nil
}

// Intensity returns the region's current intensity in gCO2eq/kWh.
func (c *CarbonForecaster) Intensity(region string) (float64, bool) {
	v, _, ok := (&CarbonIntensity{hub: c.hub}).Intensity(region)
	return v, ok
}
