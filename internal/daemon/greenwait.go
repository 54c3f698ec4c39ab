package daemon

// Green-Wait wiring: one greenwait.Manager for the daemon's lifetime, its
// per-route Defer hooks, the job API on the data plane, the admin /jobs API,
// the releaser that sends jobs through the current generation's proxy, and
// re-planning when forecasts change.
//
// Lifetime and reloads. The Manager is opened in New when a route enables
// Green-Wait, or by the first reload that enables one; from then on it lives
// until shutdown, even if a reload disables every route, so that jobs
// already acknowledged still run. Route settings (enabled, default priority,
// max waits, body limit, expected duration, region) take effect on reload:
// each generation gets new Defer hooks. The [greenwait] section itself (store
// path, keys, limits, release settings) is read once when the Manager opens; a
// reload that changes it is logged and takes effect at the next start: moving
// a live store under running jobs could lose acknowledged work.
//
// Shutdown. Listeners drain first (new deferred requests are still stored
// durably while they drain); then the scheduler stops, waiting for the
// releases it started, and the store is closed. Jobs still queued run after
// the next start.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/config"
	"github.com/aegis-flow/aegis/internal/greenwait"
	"github.com/aegis-flow/aegis/internal/proxy"
)

// HeaderResultTruncated marks a stored result whose body was cut at
// greenwait.result_limit.
const HeaderResultTruncated = "Aegis-Result-Truncated"

// replanPoll is how often the daemon looks for new forecasts to re-plan
// jobs with.
const replanPoll = time.Second

// greenWaitState is the daemon's Green-Wait.
type greenWaitState struct {
	m      *greenwait.Manager
	cfg    config.GreenWait // as opened; later changes need a restart
	path   string           // resolved store path
	prefix string

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup // Run and the re-plan loop
	closed  bool
}

// GreenWait returns the daemon's Green-Wait manager, or nil when no route
// has enabled it.
func (d *Daemon) GreenWait() *greenwait.Manager {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gw == nil {
		return nil
	}
	return d.gw.m
}

// GreenWaitStorePath resolves greenwait.store_path: "auto" (or empty) is
// greenwait.db under the user's cache directory, in "aegis".
func GreenWaitStorePath(p string) (string, error) {
	if p != "" && p != config.GreenWaitAutoPath {
		return p, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("greenwait store_path \"auto\": %w (set greenwait.store_path)", err)
	}
	return filepath.Join(dir, "aegis", "greenwait.db"), nil
}

// openGreenWait opens the Manager when cfg enables Green-Wait on a route
// and it is not open yet. It is called by New and Reload.
func (d *Daemon) openGreenWait(cfg *config.File) error {
	d.mu.Lock()
	gw := d.gw
	d.mu.Unlock()
	if gw != nil {
		if !reflect.DeepEqual(gw.cfg, cfg.GreenWait) {
			d.log.Warn("greenwait settings changed; they take effect at the next start (route settings apply now)")
		}
		return nil
	}
	if !cfg.GreenWaitEnabled() {
		return nil
	}
	c := cfg.GreenWait
	path, err := GreenWaitStorePath(c.StorePath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("greenwait store directory: %w", err)
	}
	o := greenwait.Options{
		Path:               path,
		KeyFile:            c.KeyFile,
		Forecaster:         &gwForecaster{CarbonForecaster: d.CarbonForecaster(), d: d},
		Releaser:           &releaser{d: d, limit: c.ResultLimit},
		MaxBytes:           c.MaxBytes,
		MaxJobs:            c.MaxJobs,
		BodyLimit:          c.BodyLimit,
		ExpectedDuration:   c.ExpectedDuration.Duration,
		MinDeferral:        c.MinDeferral.Duration,
		ReleaseConcurrency: c.ReleaseConcurrency,
		ReleaseTimeout:     c.ReleaseTimeout.Duration,
		RetryBase:          c.RetryBase.Duration,
		RetryMax:           c.RetryMax.Duration,
		RetryGrace:         c.RetryGrace.Duration,
		Retention:          c.Retention.Duration,
		PurgeInterval:      c.PurgeInterval.Duration,
		JobPathPrefix:      c.JobPathPrefix,
		JobPowerWatts:      c.JobPowerWatts,
		CallbackHosts:      c.CallbackHosts,
		Logger:             d.log,
		Registerer:         d.registry,
	}
	if o.MinDeferral == 0 {
		o.MinDeferral = time.Nanosecond // "0s": defer whenever a later window is better
	}
	if c.KeyEnv != "" {
		v := os.Getenv(c.KeyEnv)
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("greenwait key_env: environment variable %s is not set or empty", c.KeyEnv)
		}
		if o.MasterKey, err = greenwait.ParseMasterKey(v); err != nil {
			return fmt.Errorf("greenwait key_env %s: %w", c.KeyEnv, err)
		}
	} else if o.KeyFile == "" {
		o.KeyFile = filepath.Join(filepath.Dir(path), "greenwait.key")
	}
	if c.CallbackKeyEnv != "" {
		v := strings.TrimSpace(os.Getenv(c.CallbackKeyEnv))
		if v == "" {
			return fmt.Errorf("greenwait callback_key_env: environment variable %s is not set or empty", c.CallbackKeyEnv)
		}
		o.CallbackKey = []byte(v)
	}
	m, err := greenwait.New(o)
	if err != nil {
		return fmt.Errorf("greenwait: %w", err)
	}
	d.log.Info("greenwait store open", "path", path, "job_path_prefix", c.JobPathPrefix)
	d.mu.Lock()
	d.gw = &greenWaitState{m: m, cfg: c, path: path, prefix: c.JobPathPrefix}
	d.mu.Unlock()
	return nil
}

// greenWaitHook returns route r's Defer hook for the proxy, or nil.
func (d *Daemon) greenWaitHook(cfg *config.File, r config.Route) func(http.ResponseWriter, *http.Request) bool {
	d.mu.Lock()
	gw := d.gw
	d.mu.Unlock()
	if gw == nil || !r.GreenWait.Enabled {
		return nil
	}
	w := r.GreenWait
	ro := greenwait.RouteOptions{
		Enabled: true, Name: r.Name, Cluster: r.Cluster, Region: w.Region,
		MaxWait: greenwait.MaxWaits{
			High: w.MaxWait.High.Duration, Normal: w.MaxWait.Normal.Duration,
			Low: w.MaxWait.Low.Duration, Background: w.MaxWait.Background.Duration,
		},
		BodyLimit: w.BodyLimit, ExpectedDuration: w.ExpectedDuration.Duration,
	}
	if w.DefaultPriority != "" {
		ro.DefaultPriority, _ = greenwait.ParsePriority(w.DefaultPriority) // validated
	}
	if ro.Region == "" {
		for _, c := range cfg.Clusters {
			if c.Name == r.Cluster && len(c.Endpoints) > 0 {
				ro.Region = c.Endpoints[0].Region
			}
		}
	}
	return gw.m.DeferFunc(ro)
}

// greenWaitJobs returns the data-plane job API and its path prefix, or nil.
func (d *Daemon) greenWaitJobs() (http.Handler, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gw == nil {
		return nil, ""
	}
	return d.gw.m.JobsHandler(), d.gw.prefix
}

// greenWaitAdmin serves /jobs on the admin listener.
func (d *Daemon) greenWaitAdmin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := d.GreenWait()
		if m == nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintln(w, `{"error":"green-wait is not enabled on any route"}`)
			return
		}
		m.AdminHandler().ServeHTTP(w, r)
	})
}

// startGreenWait starts the scheduler and the re-plan loop once. Their
// context is not Run's: shutdown stops them after the listeners drained.
func (d *Daemon) startGreenWait(ctx context.Context) {
	d.mu.Lock()
	gw := d.gw
	d.mu.Unlock()
	if gw == nil || ctx == nil {
		return
	}
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if gw.started || gw.closed {
		return
	}
	gw.started = true
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	gw.cancel = cancel
	gw.wg.Go(func() {
		d.guard("greenwait", func() {
			if err := gw.m.Run(gctx); err != nil {
				d.log.Error("greenwait scheduler stopped", "err", err)
			}
		})
	})
	gw.wg.Go(func() { d.guard("greenwait_replan", func() { d.replanLoop(gctx, gw.m) }) })
}

// stopGreenWait stops the scheduler, waits for the releases it started and
// closes the store. It is idempotent.
func (d *Daemon) stopGreenWait() {
	d.mu.Lock()
	gw := d.gw
	d.mu.Unlock()
	if gw == nil {
		return
	}
	gw.mu.Lock()
	if gw.closed {
		gw.mu.Unlock()
		return
	}
	gw.closed = true
	if gw.cancel != nil {
		gw.cancel()
	}
	gw.mu.Unlock()
	gw.wg.Wait()
	if err := gw.m.Close(); err != nil {
		d.log.Error("greenwait store close", "err", err)
	}
}

// replanLoop re-plans a region's waiting jobs whenever the carbon tracker
// holds a newer forecast for it (or the tracker itself was replaced by a
// reload). It polls the tracker's snapshot: cheap, and it needs no hook in
// the tracker's refresh goroutines.
func (d *Daemon) replanLoop(ctx context.Context, m *greenwait.Manager) {
	seen := map[string]time.Time{}
	var last *carbon.Tracker
	t := time.NewTicker(replanPoll)
	defer t.Stop()
	for {
		if tr := d.CarbonTracker(); tr != nil {
			if tr != last {
				clear(seen)
				last = tr
			}
			for _, rs := range tr.Snapshot() {
				if rs.ForecastPoints == 0 || rs.ForecastGeneratedAt.Equal(seen[rs.Region]) && !seen[rs.Region].IsZero() {
					continue
				}
				seen[rs.Region] = rs.ForecastGeneratedAt
				n, err := m.Replan(ctx, rs.Region)
				if err != nil && ctx.Err() == nil {
					d.log.Warn("greenwait replan", "region", rs.Region, "err", err)
				} else if n > 0 {
					d.log.Debug("greenwait replanned", "region", rs.Region, "moved", n)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// gwForecaster is the carbon tracker as Green-Wait's forecaster. Its
// Intensity prefers the current signal, but once that signal has outlived
// its validity (a release that starts right at a forecast boundary, before
// the tracker refreshed) it reads the forecast point covering now, so that
// "intensity at run" is that of the window the job was planned into.
type gwForecaster struct {
	*CarbonForecaster
	d *Daemon
}

func (f *gwForecaster) Intensity(region string) (float64, bool) {
	tr := f.d.CarbonTracker()
	if tr == nil {
		return 0, false
	}
	r, ok := tr.Current(region)
	now := time.Now()
	if ok && (r.Signal.ValidUntil.IsZero() || now.Before(r.Signal.ValidUntil)) {
		return r.Signal.Intensity, true
	}
	if fc, fok := tr.Forecast(region); fok {
		for _, p := range fc.Points {
			if !now.Before(p.Start) && now.Before(p.End()) {
				return p.Intensity, true
			}
		}
	}
	return r.Signal.Intensity, ok
}

// releaser sends a job through the current generation's proxy, as if it had
// just arrived, so that routing, balancing and carbon-aware picks apply.
// The request is marked as a release, so the route's Defer hook lets it
// through.
type releaser struct {
	d     *Daemon
	limit int64
}

var _ greenwait.Releaser = (*releaser)(nil)

func (rl *releaser) Release(ctx context.Context, j *greenwait.Job) (*greenwait.Result, error) {
	req, err := j.NewRequest(ctx)
	if err != nil {
		return nil, err
	}
	// Aegis itself is the client of a release.
	req.RemoteAddr = "127.0.0.1:0"
	req.RequestURI = req.URL.RequestURI()
	rl.d.mu.Lock()
	g := rl.d.gen
	rl.d.mu.Unlock()
	if g == nil || g.proxy == nil {
		return nil, errors.New("release: no proxy")
	}
	h := g.proxy.Handler(proxy.Listener{Name: "greenwait", TLS: req.URL.Scheme == "https"})
	rec := &resultRecorder{header: http.Header{}, limit: rl.limit}
	h.ServeHTTP(rec, req)
	if rec.status == 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		rec.status = http.StatusOK
	}
	res := &greenwait.Result{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}
	if rec.truncated {
		res.Header.Set(HeaderResultTruncated, "true")
	}
	return res, nil
}

// resultRecorder is an http.ResponseWriter that keeps a response in memory,
// at most limit bytes of body.
type resultRecorder struct {
	header    http.Header
	status    int
	body      bytes.Buffer
	limit     int64
	truncated bool
}

func (r *resultRecorder) Header() http.Header { return r.header }

func (r *resultRecorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
		r.header = r.header.Clone() // later header edits do not count
	}
}

func (r *resultRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	room := r.limit - int64(r.body.Len())
	if int64(len(p)) > room {
		r.truncated = true
		r.body.Write(p[:max(room, 0)])
		return len(p), nil
	}
	r.body.Write(p)
	return len(p), nil
}

// Flush lets the reverse proxy flush streamed responses; there is nothing to
// flush.
func (r *resultRecorder) Flush() {}

// greenWaitTry is the demo's "Try:" text for Green-Wait, or "".
func greenWaitTry(cfg *config.File, plain, admin string) string {
	for _, r := range cfg.Routes {
		if !r.GreenWait.Enabled {
			continue
		}
		p := r.Match.PathPrefix
		return "Green-Wait (deferral to a low-carbon window; route " + r.Name + ", waits up to " +
			r.GreenWait.MaxWait.Low.Duration.String() + " for priority low):\n" +
			"  curl -si -X POST -H 'Aegis-Priority: low' --data 'hello' http://" + plain + p + "report\n" +
			"      # 202 Accepted + Location (200 at once if now is already the cleanest window)\n" +
			"  curl -s http://" + plain + "<Location>          # status: planned -> done, grams saved\n" +
			"  curl -s http://" + plain + "<Location>/result   # the upstream's answer, once done\n" +
			"  go run ./cmd/aegis jobs list --admin " + admin + "\n"
	}
	return ""
}

// GreenWaitTry returns the lines the demo prints about Green-Wait, or ""
// when no route enables it.
func (d *Daemon) GreenWaitTry() string {
	plain, admin := d.Addr("edge-plain"), d.Addr("admin")
	if plain == nil || admin == nil {
		return ""
	}
	return greenWaitTry(d.Config(), plain.String(), admin.String())
}
