package greenwait

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Forecaster is the carbon-intensity forecast Green-Wait plans with. The
// composition root adapts the carbon tracker to it. Implementations must be
// safe for concurrent use and fast: BestWindow is called on the request
// path and should read a cache.
type Forecaster interface {
	// BestWindow returns the start of the window of length d with the
	// lowest average intensity (gCO2eq/kWh) that starts at or after
	// earliest and ends by deadline. An error means no forecast is known;
	// the request then runs at once.
	BestWindow(ctx context.Context, region string, d time.Duration, earliest, deadline time.Time) (start time.Time, avg float64, err error)
	// Intensity returns the region's current intensity in gCO2eq/kWh.
	Intensity(region string) (float64, bool)
}

// Releaser runs a job's request when its time comes. The composition root
// wires it to the normal proxy path so that routing and carbon-aware
// balancing apply. Use Job.NewRequest to build the request: it carries the
// Idempotency-Key header and marks its context so that Defer lets it
// through. Release returns the upstream response, or an error for a
// transport failure; both an error and a 5xx status other than 501 are
// retried.
type Releaser interface {
	Release(ctx context.Context, j *Job) (*Result, error)
}

// Job is a deferred request handed to a Releaser.
type Job struct {
	ID       JobID
	Priority Priority
	// Route, Cluster and Region are the RouteOptions the job was accepted
	// under.
	Route, Cluster, Region string
	// Method and URL (absolute, as received) and Host (the request's Host
	// header) describe the request; Header holds its end-to-end headers,
	// without Green-Wait's control headers, and with Idempotency-Key set
	// to the job id.
	Method, URL, Host string
	Header            http.Header
	Body              []byte
	SubmittedAt       time.Time
	Deadline          time.Time
	// Attempt counts release attempts, from 1.
	Attempt int
}

type releaseKey struct{}

// IsRelease reports whether ctx belongs to a request built by
// Job.NewRequest. Defer lets such requests through at once.
func IsRelease(ctx context.Context) bool { return ctx.Value(releaseKey{}) != nil }

// NewRequest builds the job's request with ctx marked as a release (see
// IsRelease) and the header Idempotency-Key set to the job id.
func (j *Job) NewRequest(ctx context.Context) (*http.Request, error) {
	ctx = context.WithValue(ctx, releaseKey{}, j.ID)
	r, err := http.NewRequestWithContext(ctx, j.Method, j.URL, strings.NewReader(string(j.Body)))
	if err != nil {
		return nil, fmt.Errorf("build release request: %w", err)
	}
	if len(j.Body) == 0 {
		r.Body, r.ContentLength = http.NoBody, 0
	}
	r.Header = j.Header.Clone()
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	r.Header.Set(HeaderIdempotencyKey, j.ID.String())
	if j.Host != "" {
		r.Host = j.Host
	}
	return r, nil
}

// Result is an upstream response to a released job.
type Result struct {
	Status int
	Header http.Header
	Body   []byte
	// EnergyJoules is the measured or estimated energy of the request; zero
	// means unknown (Options.JobPowerWatts times the expected duration is
	// used).
	EnergyJoules float64
}

// ResultFromResponse reads resp into a Result, keeping at most maxBody
// bytes of body (a longer body is an error). It closes resp.Body.
func ResultFromResponse(resp *http.Response, maxBody int64) (*Result, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read upstream body: %w", err)
	}
	if int64(len(body)) > maxBody {
		return nil, fmt.Errorf("read upstream body: longer than %d bytes", maxBody)
	}
	return &Result{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: body}, nil
}

// Options configure a Manager. Zero values are the documented defaults.
type Options struct {
	// Path is the bbolt file (required). It is created with mode 0600.
	Path string
	// MasterKey is the master key (at least 32 bytes). When nil, KeyFile is
	// read, or created with a fresh key and mode 0600 on first run.
	MasterKey []byte
	// KeyFile holds the master key as hex or base64 (see ParseMasterKey).
	KeyFile string

	// Forecaster and Releaser are required.
	Forecaster Forecaster
	Releaser   Releaser

	// MaxBytes bounds the stored bytes of jobs and results (default 1 GiB;
	// negative means no limit). MaxJobs bounds the stored jobs, finished
	// ones included until purged (default 1,000,000; negative: no limit).
	MaxBytes int64
	MaxJobs  int64
	// BodyLimit is the default request body limit (default 1 MiB).
	BodyLimit int64
	// ExpectedDuration is the default expected run time of a job, the
	// length of the low-carbon window sought (default 1 min).
	ExpectedDuration time.Duration
	// MinDeferral: a request whose planned release is less than this far
	// away runs at once (default 1 min).
	MinDeferral time.Duration
	// ReleaseConcurrency bounds the concurrent releases per cluster
	// (default 4); ClusterConcurrency overrides it per cluster name.
	ReleaseConcurrency int
	ClusterConcurrency map[string]int
	// ReleaseTimeout bounds one release attempt (default 1 min).
	ReleaseTimeout time.Duration
	// RetryBase and RetryMax shape the jittered exponential backoff between
	// release attempts (defaults 1s and 5 min). RetryGrace is how long after
	// its deadline a job is still retried before it fails (default 15 min).
	RetryBase, RetryMax, RetryGrace time.Duration
	// Retention is how long finished jobs and their results are kept
	// (default 24h); PurgeInterval is how often they are purged (default 1 min).
	Retention, PurgeInterval time.Duration
	// JobPathPrefix is the data-plane path of job URLs (default
	// "/.aegis/jobs/"); it must start and end with "/".
	JobPathPrefix string
	// CallbackKey signs completion callbacks (HMAC-SHA256). Nil disables
	// callbacks: a request with Aegis-Callback gets 400.
	CallbackKey []byte
	// CallbackHosts lists the hosts callbacks may go to: a host name,
	// "*." and a domain (any name below it), or an IP address, each with
	// an optional ":port". A request naming another host gets 400. Empty:
	// any host, but only at a public address; a loopback, private,
	// link-local or shared address is refused at submission when written
	// as an IP and at connect time when a name resolves to it. Listed
	// hosts are trusted at any address.
	CallbackHosts []string
	// CallbackClient sends callbacks (default: 10 s timeout, no redirects,
	// connections held to CallbackHosts). A client given here dials where
	// it likes; only the submission check applies.
	CallbackClient *http.Client
	// CheckCallback vets a callback URL at submission, after
	// CallbackHosts; an error gets 400 with the error's text. Nil accepts
	// every URL CallbackHosts does.
	CheckCallback func(u *url.URL) error
	// JobPowerWatts estimates a job's power draw for the carbon-saved
	// estimate when the Releaser reports no energy (default 10 W).
	JobPowerWatts float64
	// BatchDelay is the longest a store write waits for others to share its
	// commit and fsync (default 2ms).
	BatchDelay time.Duration

	// Logger receives logs (nil discards them); Registerer receives the
	// metrics (nil: not registered).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 30
	}
	if o.MaxJobs == 0 {
		o.MaxJobs = 1_000_000
	}
	if o.BodyLimit == 0 {
		o.BodyLimit = 1 << 20
	}
	def(&o.ExpectedDuration, time.Minute)
	def(&o.MinDeferral, time.Minute)
	if o.ReleaseConcurrency == 0 {
		o.ReleaseConcurrency = 4
	}
	def(&o.ReleaseTimeout, time.Minute)
	def(&o.RetryBase, time.Second)
	def(&o.RetryMax, 5*time.Minute)
	def(&o.RetryGrace, 15*time.Minute)
	def(&o.Retention, 24*time.Hour)
	def(&o.PurgeInterval, time.Minute)
	if o.JobPathPrefix == "" {
		o.JobPathPrefix = "/.aegis/jobs/"
	}
	if o.JobPowerWatts == 0 {
		o.JobPowerWatts = 10
	}
	def(&o.BatchDelay, 2*time.Millisecond)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.Path == "" {
		errs = append(errs, errors.New("path: required"))
	}
	if o.MasterKey == nil && o.KeyFile == "" {
		errs = append(errs, errors.New("master key: set MasterKey or KeyFile"))
	}
	if o.MasterKey != nil && len(o.MasterKey) < MinMasterKeyLen {
		errs = append(errs, ErrBadMasterKey)
	}
	if o.Forecaster == nil {
		errs = append(errs, errors.New("forecaster: required"))
	}
	if o.Releaser == nil {
		errs = append(errs, errors.New("releaser: required"))
	}
	if !strings.HasPrefix(o.JobPathPrefix, "/") || !strings.HasSuffix(o.JobPathPrefix, "/") {
		errs = append(errs, fmt.Errorf("job path prefix %q: must start and end with /", o.JobPathPrefix))
	}
	for name, d := range map[string]time.Duration{
		"expected duration": o.ExpectedDuration, "min deferral": o.MinDeferral, "release timeout": o.ReleaseTimeout,
		"retry base": o.RetryBase, "retry max": o.RetryMax, "retry grace": o.RetryGrace,
		"retention": o.Retention, "purge interval": o.PurgeInterval, "batch delay": o.BatchDelay,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s: negative", name))
		}
	}
	if o.ReleaseConcurrency < 0 || o.BodyLimit < 0 || o.JobPowerWatts < 0 {
		errs = append(errs, errors.New("release concurrency, body limit and job power must not be negative"))
	}
	return errors.Join(errs...)
}

// Manager is Green-Wait: it accepts deferred requests, stores them, plans
// and releases them, and serves their status. See the package doc.
type Manager struct {
	opts      Options
	log       *slog.Logger
	st        *store
	met       *metrics
	callbacks *callbackPolicy

	opMu sync.Mutex // serializes Cancel and Retry
	mu   sync.Mutex // guards idx
	idx  *index

	wake chan struct{}

	closeMu sync.RWMutex // held for reading by store users that must not race Close
	closed  bool

	wg      sync.WaitGroup // release and callback goroutines
	started atomic.Bool
}

// New opens the store, loads every unfinished job into the scheduler's
// index (jobs that were running go back to queued and run again) and
// registers the metrics. The caller must call Close.
func New(o Options) (*Manager, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("greenwait options: %w", err)
	}
	cp, err := newCallbackPolicy(o.CallbackHosts)
	if err != nil {
		return nil, fmt.Errorf("greenwait options: %w", err)
	}
	if o.CallbackClient == nil {
		o.CallbackClient = newCallbackClient(cp)
	}
	master := o.MasterKey
	if master == nil {
		k, created, err := LoadOrCreateKeyFile(o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load master key: %w", err)
		}
		if created {
			o.Logger.Info("greenwait master key file created", "path", o.KeyFile)
		}
		master = k
	}
	st, err := openStore(storeOptions{path: o.Path, master: master, maxBytes: o.MaxBytes, maxJobs: o.MaxJobs, batchDelay: o.BatchDelay})
	if err != nil {
		return nil, err
	}
	m := &Manager{
		opts:      o,
		log:       o.Logger,
		st:        st,
		callbacks: cp,
		wake:      make(chan struct{}, 1),
	}
	m.idx = newIndex(m.clusterLimit)
	m.met, err = newMetrics(o.Registerer, func() float64 { return float64(st.bytes.Load()) })
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	st.onQuarantine = func(key []byte, kind string, reason error) {
		m.met.quarantined.WithLabelValues(kind).Inc()
		m.log.Error("greenwait record quarantined", "kind", kind, "key", fmt.Sprintf("%x", key), "err", reason)
	}
	if err := m.load(); err != nil {
		_ = st.close()
		return nil, err
	}
	return m, nil
}

func (m *Manager) clusterLimit(name string) int {
	if n, ok := m.opts.ClusterConcurrency[name]; ok && n > 0 {
		return n
	}
	return m.opts.ReleaseConcurrency
}

// load fills the index from the store.
func (m *Manager) load() error {
	now := time.Now()
	n, rerun := 0, 0
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.st.scan(func(r *record) bool {
		if r.State.Terminal() {
			return true
		}
		e := m.newEntry(r)
		switch r.State {
		case StateRunning:
			e.state, e.due = StateQueued, now.UnixNano()
			rerun++
		case StateQueued:
			if r.Attempts > 0 {
				e.retrying = true
			}
		}
		m.idx.add(e)
		m.met.current[e.prio].Inc()
		n++
		return true
	})
	if err != nil {
		return fmt.Errorf("load jobs: %w", err)
	}
	m.log.Info("greenwait jobs loaded", "active", n, "rerun", rerun, "store_jobs", m.st.jobs.Load())
	return nil
}

// newEntry makes an index entry for a record; m.mu must be held.
func (m *Manager) newEntry(r *record) *entry {
	due := r.PlannedAt
	if latest := r.Deadline.Add(-r.ExpectedDuration); due.IsZero() || due.After(latest) {
		due = latest
	}
	state := r.State
	if state != StateQueued {
		state = StatePlanned
	}
	return &entry{
		id:       r.ID,
		due:      due.UnixNano(),
		deadline: r.Deadline.UnixNano(),
		dur:      r.ExpectedDuration,
		region:   m.idx.region(r.Region),
		cluster:  m.idx.cluster(r.Cluster),
		hidx:     -1,
		prio:     r.Priority,
		state:    state,
	}
}

// Run releases jobs as they fall due and purges finished ones until ctx is
// done. It waits for the releases it started; a release interrupted by ctx
// leaves its job queued, to run again after a restart. Run returns nil
// when ctx is cancelled. It must be called at most once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("greenwait: Run called twice")
	}
	defer m.wg.Wait()
	m.wg.Go(func() { m.guard("purge", func() { m.purgeLoop(ctx) }) })
	m.guard("dispatch", func() { m.dispatchLoop(ctx) })
	return nil
}

// guard runs fn, recovering, logging and counting a panic.
func (m *Manager) guard(what string, fn func()) {
	defer func() {
		if v := recover(); v != nil {
			m.met.panics.Inc()
			m.log.Error("greenwait goroutine panicked", "goroutine", what, "panic", fmt.Sprint(v))
		}
	}()
	fn()
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) dispatchLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var due []*entry
	for ctx.Err() == nil {
		m.mu.Lock()
		now := time.Now().UnixNano()
		due = m.idx.popDue(now, due[:0])
		for _, e := range due {
			m.startOrPend(ctx, e)
		}
		clear(due)
		next, ok := m.idx.next()
		m.mu.Unlock()
		var tc <-chan time.Time
		if ok {
			timer.Reset(time.Duration(next - now))
			tc = timer.C
		}
		select {
		case <-ctx.Done():
		case <-tc:
		case <-m.wake:
		}
		timer.Stop()
	}
}

// startOrPend starts e's release if its cluster has a free slot, or queues
// it for one. m.mu must be held.
func (m *Manager) startOrPend(ctx context.Context, e *entry) {
	c := e.cluster
	if c.running >= c.limit {
		e.pending = true
		c.pending = append(c.pending, e)
		return
	}
	c.running++
	e.state = StateRunning
	m.wg.Go(func() {
		defer m.releaseDone(ctx, e)
		m.guard("release", func() { m.release(ctx, e) })
	})
}

// releaseDone frees e's cluster slot and starts the next pending release.
func (m *Manager) releaseDone(ctx context.Context, e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := e.cluster
	c.running--
	if e.state == StateRunning { // the release panicked: try again later
		e.state, e.retrying = StateQueued, true
		m.idx.reschedule(e, time.Now().Add(m.opts.RetryMax).UnixNano())
	}
	for c.running < c.limit && len(c.pending) > 0 && ctx.Err() == nil {
		n := c.pending[0]
		c.pending[0] = nil
		c.pending = c.pending[1:]
		n.pending = false
		m.startOrPend(ctx, n)
	}
}

// backoff returns the wait before retry number attempt (from 1), with
// equal jitter: half fixed, half random.
func (m *Manager) backoff(attempt int) time.Duration {
	d := m.opts.RetryBase << min(max(attempt-1, 0), 30)
	if d <= 0 || d > m.opts.RetryMax {
		d = m.opts.RetryMax
	}
	return d/2 + rand.N(d/2+1)
}

// retryableStatus reports whether an upstream status is worth a retry.
func retryableStatus(code int) bool { return code >= 500 && code != http.StatusNotImplemented }

var errUpstreamStatus = errors.New("upstream status")

func (m *Manager) release(ctx context.Context, e *entry) {
	rec, err := m.st.get(e.id)
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
			m.dropEntry(e)
			return
		}
		m.log.Warn("greenwait job load failed", "job", e.id.String(), "err", err)
		m.requeue(e, time.Now().Add(m.backoff(1)), true)
		return
	}
	rec.Attempts++
	job := rec.job()
	start := time.Now()
	intensity, intensityOK := m.opts.Forecaster.Intensity(rec.Region)
	rctx, cancel := context.WithTimeout(ctx, m.opts.ReleaseTimeout)
	res, err := m.opts.Releaser.Release(rctx, job)
	cancel()
	if ctx.Err() != nil {
		// Shutting down: the attempt does not count; the job stays
		// queued in the store and runs again after restart.
		m.requeue(e, time.Now(), false)
		return
	}
	if err == nil && res == nil {
		err = errors.New("releaser returned no result")
	}
	if err == nil && retryableStatus(res.Status) {
		err = fmt.Errorf("%w %d", errUpstreamStatus, res.Status)
	}
	if err != nil {
		m.retryOrFail(ctx, e, rec, err)
		return
	}
	rec.State, rec.StartedAt, rec.FinishedAt = StateDone, start, time.Now()
	rec.LastError, rec.Body = "", nil
	if intensityOK {
		rec.IntensityRun = &intensity
		if rec.IntensitySubmit != nil {
			energy := res.EnergyJoules
			if energy <= 0 {
				energy = m.opts.JobPowerWatts * rec.ExpectedDuration.Seconds()
			}
			rec.SavedGrams = (*rec.IntensitySubmit - intensity) * energy / 3.6e6
		}
	}
	resRec := &resultRecord{Status: res.Status, Header: res.Header, Body: res.Body}
	if resRec.Body == nil {
		resRec.Body = []byte{}
	}
	if err := m.st.update(rec, resRec, time.Time{}); err != nil {
		if errors.Is(err, ErrNotFound) {
			m.dropEntry(e)
			return
		}
		// The result is lost; run it again later (at least once).
		m.log.Error("greenwait result not stored", "job", rec.ID.String(), "err", err)
		m.requeue(e, time.Now().Add(m.backoff(rec.Attempts)), true)
		return
	}
	m.dropEntry(e)
	p := rec.Priority.String()
	m.met.jobs.WithLabelValues(p, outcomeDone).Inc()
	m.met.wait.WithLabelValues(p).Observe(start.Sub(rec.SubmittedAt).Seconds())
	if rec.SavedGrams > 0 {
		m.met.saved.Add(rec.SavedGrams)
	}
	m.log.Debug("greenwait job done", "job", rec.ID.String(), "priority", p, "status", res.Status, "attempts", rec.Attempts)
	m.callback(ctx, rec)
}

func (m *Manager) retryOrFail(ctx context.Context, e *entry, rec *record, cause error) {
	now := time.Now()
	next := now.Add(m.backoff(rec.Attempts))
	rec.LastError = cause.Error()
	p := rec.Priority.String()
	if next.After(rec.Deadline.Add(m.opts.RetryGrace)) {
		rec.State, rec.StartedAt, rec.FinishedAt = StateFailed, now, now
		if err := m.st.update(rec, nil, time.Time{}); err != nil {
			if errors.Is(err, ErrNotFound) {
				m.dropEntry(e)
				return
			}
			m.log.Error("greenwait job failure not stored", "job", rec.ID.String(), "err", err)
			m.requeue(e, next, true)
			return
		}
		m.dropEntry(e)
		m.met.jobs.WithLabelValues(p, outcomeFailed).Inc()
		m.log.Warn("greenwait job failed", "job", rec.ID.String(), "priority", p, "attempts", rec.Attempts, "err", cause)
		m.callback(ctx, rec)
		return
	}
	rec.State = StateQueued
	if err := m.st.update(rec, nil, time.Time{}); errors.Is(err, ErrNotFound) {
		m.dropEntry(e)
		return
	} else if err != nil {
		m.log.Warn("greenwait attempt count not stored", "job", rec.ID.String(), "err", err)
	}
	m.met.jobs.WithLabelValues(p, outcomeRetried).Inc()
	m.log.Info("greenwait release retry", "job", rec.ID.String(), "priority", p, "attempts", rec.Attempts, "retry_in", next.Sub(now), "err", cause)
	m.requeue(e, next, true)
}

// requeue puts e back into its region's heap to run at due.
func (m *Manager) requeue(e *entry, due time.Time, retrying bool) {
	m.mu.Lock()
	if m.idx.byID[e.id] == e {
		e.state, e.retrying = StateQueued, retrying
		m.idx.reschedule(e, due.UnixNano())
	}
	m.mu.Unlock()
	m.poke()
}

// dropEntry removes e from the index.
func (m *Manager) dropEntry(e *entry) {
	m.mu.Lock()
	if m.idx.byID[e.id] == e {
		m.idx.remove(e)
		m.met.current[e.prio].Dec()
	}
	e.state = StateDone // not StateRunning: releaseDone must not requeue it
	m.mu.Unlock()
}

func (r *record) job() *Job {
	h := r.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	h.Set(HeaderIdempotencyKey, r.ID.String())
	return &Job{
		ID: r.ID, Priority: r.Priority,
		Route: r.Route, Cluster: r.Cluster, Region: r.Region,
		Method: r.Method, URL: r.URL, Host: r.Host, Header: h, Body: r.Body,
		SubmittedAt: r.SubmittedAt, Deadline: r.Deadline, Attempt: r.Attempts,
	}
}

func (m *Manager) purgeLoop(ctx context.Context) {
	t := time.NewTicker(m.opts.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := m.purge(time.Now().Add(-m.opts.Retention), nil)
		if err != nil {
			m.log.Warn("greenwait purge failed", "err", err)
		} else if n > 0 {
			m.log.Debug("greenwait jobs purged", "count", n)
		}
	}
}

func (m *Manager) purge(cutoff time.Time, states []State) (int, error) {
	m.closeMu.RLock()
	defer m.closeMu.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	return m.st.purge(cutoff, states)
}

// Replan recomputes the planned release of every waiting job of region
// from the current forecast; the daemon calls it whenever the region's
// forecast changes, including its first load. Jobs that are running, due,
// or waiting for a retry keep their time. Each changed job costs one
// O(log n) index update; forecast look-ups are shared between jobs whose
// deadlines fall in the same minute. It returns how many jobs moved.
func (m *Manager) Replan(ctx context.Context, region string) (int, error) {
	type cand struct {
		e        *entry
		deadline int64
		dur      time.Duration
	}
	m.mu.Lock()
	q := m.idx.regions[region]
	var cands []cand
	if q != nil {
		cands = make([]cand, 0, len(q.h))
		for _, sl := range q.h {
			e := sl.e
			if !e.retrying {
				cands = append(cands, cand{e, e.deadline, e.dur})
			}
		}
	}
	m.mu.Unlock()
	if len(cands) == 0 {
		return 0, nil
	}
	type memoKey struct {
		minute int64
		dur    time.Duration
	}
	memo := make(map[memoKey]time.Time)
	now := time.Now()
	plans := make([]int64, len(cands))
	var firstErr error
	for i, c := range cands {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		deadline := time.Unix(0, c.deadline)
		k := memoKey{c.deadline / int64(time.Minute), c.dur}
		start, ok := memo[k]
		if !ok {
			var err error
			start, err = m.plan(ctx, region, c.dur, now, deadline)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				plans[i] = -1
				continue
			}
			memo[k] = start
		}
		if latest := deadline.Add(-c.dur); start.After(latest) {
			start = latest
		}
		plans[i] = start.UnixNano()
	}
	moved := 0
	const chunk = 4096
	for lo := 0; lo < len(cands); lo += chunk {
		m.mu.Lock()
		for i := lo; i < min(lo+chunk, len(cands)); i++ {
			e := cands[i].e
			if plans[i] < 0 || e.hidx < 0 || e.retrying || e.due == plans[i] {
				continue
			}
			e.state = StatePlanned
			m.idx.reschedule(e, plans[i])
			moved++
		}
		m.mu.Unlock()
	}
	m.poke()
	if firstErr != nil && moved == 0 {
		return 0, fmt.Errorf("replan %s: %w", region, firstErr)
	}
	return moved, nil
}

// plan returns the planned release of a job: the start of the best window
// of length dur between now and deadline, no later than deadline - dur.
func (m *Manager) plan(ctx context.Context, region string, dur time.Duration, now, deadline time.Time) (time.Time, error) {
	latest := deadline.Add(-dur)
	if !latest.After(now) {
		return now, nil
	}
	start, _, err := m.opts.Forecaster.BestWindow(ctx, region, dur, now, deadline)
	if err != nil {
		return time.Time{}, fmt.Errorf("best window: %w", err)
	}
	if start.Before(now) {
		start = now
	}
	if start.After(latest) {
		start = latest
	}
	return start, nil
}

// Close closes the store. Call it after Run has returned (and after the
// listeners have drained): acknowledged jobs are already durable, and jobs
// still queued run after the next start.
func (m *Manager) Close() error {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if err := m.st.close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}
