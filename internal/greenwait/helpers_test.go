package greenwait

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// curveForecaster is a fake Forecaster: intensity is a function of time,
// and BestWindow scans candidate starts every step.
type curveForecaster struct {
	mu    sync.Mutex
	curve func(t time.Time) float64
	err   error
}

func (f *curveForecaster) set(curve func(time.Time) float64) {
	f.mu.Lock()
	f.curve = curve
	f.mu.Unlock()
}

func (f *curveForecaster) BestWindow(ctx context.Context, region string, d time.Duration, earliest, deadline time.Time) (time.Time, float64, error) {
	f.mu.Lock()
	curve, err := f.curve, f.err
	f.mu.Unlock()
	if err != nil {
		return time.Time{}, 0, err
	}
	const step = time.Minute
	best, bestAvg := earliest, -1.0
	for s := earliest; !s.Add(d).After(deadline); s = s.Truncate(step).Add(step) {
		avg := (curve(s) + curve(s.Add(d/2))) / 2
		if bestAvg < 0 || avg < bestAvg {
			best, bestAvg = s, avg
		}
	}
	if bestAvg < 0 {
		return time.Time{}, 0, errors.New("window longer than the span")
	}
	return best, bestAvg, nil
}

func (f *curveForecaster) Intensity(region string) (float64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.curve(time.Now()), true
}

// cleanBetween returns a curve that is 400 g/kWh except 100 g/kWh in
// [from, to).
func cleanBetween(from, to time.Time) func(time.Time) float64 {
	return func(t time.Time) float64 {
		if !t.Before(from) && t.Before(to) {
			return 100
		}
		return 400
	}
}

// release is one call seen by a fake Releaser.
type release struct {
	id             JobID
	at             time.Time
	method, url    string
	idempotencyKey string
	body           string
	attempt        int
}

// fakeReleaser records releases. fail, when set, decides per attempt
// whether to fail with a status (>0) or an error (-1).
type fakeReleaser struct {
	mu       sync.Mutex
	releases []release
	fail     func(j *Job) int
	hold     time.Duration
	running  int
	maxRun   int
}

func (f *fakeReleaser) Release(ctx context.Context, j *Job) (*Result, error) {
	r, err := j.NewRequest(ctx)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.releases = append(f.releases, release{j.ID, time.Now(), r.Method, r.URL.String(), r.Header.Get(HeaderIdempotencyKey), string(body), j.Attempt})
	f.running++
	f.maxRun = max(f.maxRun, f.running)
	fail := f.fail
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	if f.hold > 0 {
		time.Sleep(f.hold)
	}
	if fail != nil {
		switch code := fail(j); {
		case code < 0:
			return nil, errors.New("dial upstream: connection refused")
		case code > 0:
			return &Result{Status: code, Body: []byte("unavailable")}, nil
		}
	}
	return &Result{Status: http.StatusCreated, Header: http.Header{"X-Upstream": {"yes"}}, Body: []byte("ran " + string(body))}, nil
}

func (f *fakeReleaser) seen() []release {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]release(nil), f.releases...)
}

type testEnv struct {
	m    *Manager
	fc   *curveForecaster
	rel  *fakeReleaser
	path string
}

func newTestManager(t testing.TB, o Options) *testEnv {
	t.Helper()
	env := &testEnv{fc: &curveForecaster{}, rel: &fakeReleaser{}}
	now := time.Now()
	env.fc.set(cleanBetween(now.Add(time.Hour), now.Add(3*time.Hour)))
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "gw.db")
	}
	env.path = o.Path
	if o.MasterKey == nil && o.KeyFile == "" {
		o.MasterKey = testKey
	}
	if o.Forecaster == nil {
		o.Forecaster = env.fc
	}
	if o.Releaser == nil {
		o.Releaser = env.rel
	}
	m, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	env.m = m
	t.Cleanup(func() { m.Close() })
	return env
}

// run starts m.Run and returns a function that stops it and waits.
func (env *testEnv) run(t testing.TB) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.m.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

var lowRoute = RouteOptions{Enabled: true, Name: "reports", Cluster: "backend", Region: "eu-west"}

// submit sends one request through Defer and returns the recorded response.
func (env *testEnv) submit(t testing.TB, rt RouteOptions, method, body string, hdr map[string]string) (*httptest.ResponseRecorder, bool) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	r := httptest.NewRequest(method, "http://api.example.test/v1/report?q=1", rd)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	handled := env.m.Defer(w, r, rt)
	return w, handled
}

func (env *testEnv) submitLow(t testing.TB, body string) JobID {
	t.Helper()
	w, handled := env.submit(t, lowRoute, http.MethodPost, body, map[string]string{HeaderPriority: "low"})
	if !handled || w.Code != http.StatusAccepted {
		t.Fatalf("submit: got handled=%v code %d (%s), want 202", handled, w.Code, w.Body)
	}
	id, err := ParseJobID(w.Header().Get("Location")[len("/.aegis/jobs/"):])
	if err != nil {
		t.Fatalf("Location %q: %v", w.Header().Get("Location"), err)
	}
	return id
}

func mustLookup(t testing.TB, m *Manager, id JobID) *Status {
	t.Helper()
	s, err := m.Lookup(id)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", id, err)
	}
	return s
}

func (r release) String() string { return fmt.Sprintf("%s@%s", r.id, r.at.Format(time.TimeOnly)) }
