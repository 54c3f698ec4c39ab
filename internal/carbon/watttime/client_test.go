package watttime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const (
	testUser = "alice-wt-user"
	testPass = "s3cret-wt-pass"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeAPI speaks the documented WattTime API v3 JSON. Tokens expire after
// TokenLifetime by the handler's clock (the synctest clock inside a bubble).
// Special region codes trigger failure modes.
type fakeAPI struct {
	t           testing.TB
	logins      atomic.Int64
	dataHits    atomic.Int64
	rejectAll   atomic.Bool // answer 401 to every data request
	loginStatus atomic.Int64

	mu         sync.Mutex
	tokens     map[string]time.Time
	loginAuth  string
	dataAuth   string
	lastQuery  map[string]string
	tokenCount int
}

func newFakeAPI(t testing.TB) *fakeAPI {
	return &fakeAPI{t: t, tokens: map[string]time.Time{}}
}

func (f *fakeAPI) revoke() {
	f.mu.Lock()
	clear(f.tokens)
	f.mu.Unlock()
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/login" {
		f.logins.Add(1)
		f.mu.Lock()
		f.loginAuth = r.Header.Get("Authorization")
		f.mu.Unlock()
		if s := f.loginStatus.Load(); s != 0 {
			if s == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "120")
			}
			w.WriteHeader(int(s))
			fmt.Fprint(w, `{"error":"login refused"}`)
			return
		}
		u, p, ok := r.BasicAuth()
		if !ok || u != testUser || p != testPass {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":"invalid credentials for %s"}`, u)
			return
		}
		f.mu.Lock()
		f.tokenCount++
		tok := fmt.Sprintf("tok-%d", f.tokenCount)
		f.tokens[tok] = time.Now()
		f.mu.Unlock()
		fmt.Fprintf(w, `{"token":%q}`, tok)
		return
	}
	f.dataHits.Add(1)
	auth := r.Header.Get("Authorization")
	f.mu.Lock()
	f.dataAuth = auth
	f.lastQuery = map[string]string{}
	for k := range r.URL.Query() {
		f.lastQuery[k] = r.URL.Query().Get(k)
	}
	issued, ok := f.tokens[strings.TrimPrefix(auth, "Bearer ")]
	f.mu.Unlock()
	if !strings.HasPrefix(auth, "Bearer ") || !ok || time.Since(issued) >= TokenLifetime || f.rejectAll.Load() {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"Unauthorized","message":"token is invalid or expired"}`)
		return
	}
	var file string
	switch r.URL.Path {
	case "/v3/forecast":
		file = "forecast.json"
	case "/v3/historical":
		file = "historical.json"
	case "/v3/signal-index":
		file = "signal_index.json"
	case "/v3/region-from-loc":
		if r.URL.Query().Get("latitude") == "0" {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"No region found for this location"}`)
			return
		}
		w.Write(readTestdata(f.t, "region_from_loc.json"))
		return
	default:
		http.NotFound(w, r)
		return
	}
	region := r.URL.Query().Get("region")
	body := readTestdata(f.t, file)
	if region != "OTHER" {
		body = bytes.ReplaceAll(body, []byte(`"CAISO_NORTH"`), []byte(fmt.Sprintf("%q", region)))
	}
	switch region {
	case "CAISO_NORTH", "OTHER":
	case "XX":
		w.WriteHeader(http.StatusBadRequest)
		w.Write(readTestdata(f.t, "error_region.json"))
		return
	case "NOACCESS":
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"error":"Forbidden","message":"Your plan does not include this region."}`)
		return
	case "RATE":
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"error":"Too many requests"}`)
		return
	case "BOOM":
		w.WriteHeader(http.StatusBadGateway)
		return
	case "KG":
		body = bytes.ReplaceAll(body, []byte(unitsMOER), []byte("kg_co2_per_mwh"))
	case "MALFORMED":
		body = body[:len(body)/2]
	case "NEG":
		body = bytes.Replace(body, []byte(`"value":1000`), []byte(`"value":-1`), 1)
	case "EMPTY":
		body = []byte(`{"data":[],"meta":{"region":"EMPTY","units":"lbs_co2_per_mwh"}}`)
	case "TRUNCATED":
		w.Header().Set("Content-Length", "9999")
		w.Write(body[:30])
		return
	case "HUGE":
		w.Write(bytes.Repeat([]byte(" "), apiclient.MaxBodyBytes+1))
		return
	case "SLOW":
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	default:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"Invalid region"}`)
		return
	}
	w.Write(body)
}

// handlerTransport serves requests in memory so that timer-driven tests can
// run inside a synctest bubble.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	ht.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// newMemClient returns a Client talking to api in memory (for synctest).
func newMemClient(t *testing.T, api *fakeAPI, opts Options) *Client {
	t.Helper()
	opts.BaseURL = "http://watttime.test"
	if opts.Username == "" {
		opts.Username, opts.Password = testUser, testPass
	}
	opts.HTTPClient = &http.Client{Transport: handlerTransport{api}}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newNetClient returns a Client talking to api over a loopback socket.
func newNetClient(t *testing.T, api *fakeAPI, opts Options) *Client {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	opts.BaseURL = srv.URL
	if opts.Username == "" {
		opts.Username, opts.Password = testUser, testPass
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 2 * time.Second}
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCurrentConvertsUnits(t *testing.T) {
	api := newFakeAPI(t)
	c := newNetClient(t, api, Options{})
	got, err := c.Current(t.Context(), "CAISO_NORTH")
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	want := carbon.Signal{Intensity: 453.592, Kind: carbon.Marginal, Source: "watttime", ObservedAt: at, ValidUntil: at.Add(5 * time.Minute)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Current mismatch (-want +got):\n%s", diff)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if u, p, ok := (&http.Request{Header: http.Header{"Authorization": {api.loginAuth}}}).BasicAuth(); !ok || u != testUser || p != testPass {
		t.Errorf("login Authorization: got %q, want Basic credentials", api.loginAuth)
	}
	if got, want := api.dataAuth, "Bearer tok-1"; got != want {
		t.Errorf("data Authorization: got %q, want %q", got, want)
	}
	for k, v := range map[string]string{"region": "CAISO_NORTH", "signal_type": "co2_moer", "horizon_hours": "1"} {
		if got := api.lastQuery[k]; got != v {
			t.Errorf("query %s: got %q, want %q", k, got, v)
		}
	}
}

func TestForecast(t *testing.T) {
	api := newFakeAPI(t)
	c := newNetClient(t, api, Options{})
	got, err := c.Forecast(t.Context(), "CAISO_NORTH")
	if err != nil {
		t.Fatalf("Forecast: %v", err)
	}
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	want := carbon.Forecast{
		Kind: carbon.Marginal, Source: "watttime", GeneratedAt: t0,
		Points: []carbon.Point{
			{Start: t0, Duration: 5 * time.Minute, Intensity: 1000 * 0.453592},
			{Start: t0.Add(5 * time.Minute), Duration: 5 * time.Minute, Intensity: 950.5 * 0.453592},
			{Start: t0.Add(10 * time.Minute), Duration: 5 * time.Minute, Intensity: 0},
		},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("Forecast mismatch (-want +got):\n%s", diff)
	}
	if _, ok := api.lastQuery["horizon_hours"]; ok {
		t.Errorf("Forecast sent horizon_hours, want the API default")
	}
}

func TestHistory(t *testing.T) {
	api := newFakeAPI(t)
	c := newNetClient(t, api, Options{})
	start := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	got, err := c.History(t.Context(), "CAISO_NORTH", start, start.Add(10*time.Minute))
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(got.Points) != 2 || got.Points[1].Intensity != 860*0.453592 {
		t.Errorf("History points: got %+v, want 2 points, the second 860 lbs/MWh in g/kWh", got.Points)
	}
	if got, want := api.lastQuery["start"], "2026-11-25T00:00:00Z"; got != want {
		t.Errorf("start: got %q, want %q", got, want)
	}
	if _, err := c.History(t.Context(), "CAISO_NORTH", start, start); err == nil {
		t.Errorf("History with end == start: got nil error, want one")
	}
}

func TestIndex(t *testing.T) {
	api := newFakeAPI(t)
	c := newNetClient(t, api, Options{})
	got, err := c.Index(t.Context(), "CAISO_NORTH")
	if err != nil {
		t.Fatalf("Index: %v", err)
	}
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	want := Index{Region: "CAISO_NORTH", SignalType: "co2_moer", Percentile: 37.5, ObservedAt: at, ValidUntil: at.Add(5 * time.Minute)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Index mismatch (-want +got):\n%s", diff)
	}
}

func TestRegionFromLoc(t *testing.T) {
	api := newFakeAPI(t)
	c := newNetClient(t, api, Options{})
	got, err := c.RegionFromLoc(t.Context(), 38.5, -121.5)
	if err != nil {
		t.Fatalf("RegionFromLoc: %v", err)
	}
	want := Region{Region: "CAISO_NORTH", FullName: "California ISO Northern", SignalType: "co2_moer"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RegionFromLoc mismatch (-want +got):\n%s", diff)
	}
	if got, want := api.lastQuery["latitude"], "38.5"; got != want {
		t.Errorf("latitude: got %q, want %q", got, want)
	}
	if _, err := c.RegionFromLoc(t.Context(), 0, 0); !errors.Is(err, carbon.ErrUnknownZone) {
		t.Errorf("no region: got %v, want ErrUnknownZone", err)
	}
	before := api.dataHits.Load()
	if _, err := c.RegionFromLoc(t.Context(), 91, 0); !errors.Is(err, carbon.ErrUnknownZone) {
		t.Errorf("latitude 91: got %v, want ErrUnknownZone", err)
	}
	if api.dataHits.Load() != before {
		t.Errorf("out-of-range coordinates were sent")
	}
}

func TestErrors(t *testing.T) {
	current := func(c *Client, ctx context.Context, r string) error { _, err := c.Current(ctx, r); return err }
	forecast := func(c *Client, ctx context.Context, r string) error { _, err := c.Forecast(ctx, r); return err }
	index := func(c *Client, ctx context.Context, r string) error { _, err := c.Index(ctx, r); return err }
	tests := []struct {
		name     string
		user     string
		region   string
		call     func(*Client, context.Context, string) error
		want     error
		wantText string
	}{
		{"bad credentials", "mallory", "CAISO_NORTH", current, carbon.ErrUnauthorized, `watttime: zone "CAISO_NORTH": login: unauthorized: credentials refused (HTTP 401)`},
		{"unknown region", "", "XX", current, carbon.ErrUnknownZone, `watttime: zone "XX": unknown zone: HTTP 400`},
		{"no access", "", "NOACCESS", forecast, carbon.ErrUnauthorized, "HTTP 403"},
		{"region mismatch", "", "OTHER", current, carbon.ErrUnknownZone, `answer is for region "CAISO_NORTH"`},
		{"server error", "", "BOOM", current, carbon.ErrUnavailable, "HTTP 502"},
		{"wrong units", "", "KG", forecast, carbon.ErrBadResponse, `meta.units is "kg_co2_per_mwh"`},
		{"wrong units current", "", "KG", current, carbon.ErrBadResponse, "kg_co2_per_mwh"},
		{"index units", "", "KG", index, nil, ""},
		{"malformed", "", "MALFORMED", forecast, carbon.ErrBadResponse, "decode data"},
		{"negative", "", "NEG", current, carbon.ErrBadResponse, "negative"},
		{"empty forecast", "", "EMPTY", forecast, carbon.ErrNoForecast, "no data points"},
		{"empty current", "", "EMPTY", current, carbon.ErrBadResponse, "no current point"},
		{"truncated", "", "TRUNCATED", forecast, carbon.ErrBadResponse, "truncated"},
		{"huge", "", "HUGE", forecast, carbon.ErrBadResponse, "exceeds"},
		{"empty region", "", "", current, carbon.ErrUnknownZone, "region is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t)
			var logs bytes.Buffer
			opts := Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			if tt.user != "" {
				opts.Username, opts.Password = tt.user, testPass
			}
			c := newNetClient(t, api, opts)
			err := tt.call(c, t.Context(), tt.region)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v, want one wrapping %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantText)
			}
			for _, secret := range []string{testPass, testUser, tt.user, "tok-"} {
				if secret == "" {
					continue
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
					t.Errorf("error %q or logs %q leak %q", err, logs.String(), secret)
				}
			}
			if tt.region == "" && api.logins.Load()+api.dataHits.Load() != 0 {
				t.Errorf("requests were sent for an empty region")
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	api := newFakeAPI(t)
	c := newNetClient(t, api, Options{HTTPClient: &http.Client{Timeout: 50 * time.Millisecond}})
	if _, err := c.Current(t.Context(), "SLOW"); !errors.Is(err, carbon.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}

func TestTokenReuseAndRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI(t)
		c := newMemClient(t, api, Options{})
		for range 3 {
			if _, err := c.Current(t.Context(), "CAISO_NORTH"); err != nil {
				t.Fatal(err)
			}
		}
		if got := api.logins.Load(); got != 1 {
			t.Fatalf("logins after 3 calls: got %d, want 1", got)
		}
		time.Sleep(24 * time.Minute)
		if _, err := c.Forecast(t.Context(), "CAISO_NORTH"); err != nil {
			t.Fatal(err)
		}
		if got := api.logins.Load(); got != 1 {
			t.Fatalf("logins at 24 min: got %d, want 1", got)
		}
		// At 25 minutes the token is refreshed before the API would refuse it.
		time.Sleep(time.Minute)
		if _, err := c.Forecast(t.Context(), "CAISO_NORTH"); err != nil {
			t.Fatal(err)
		}
		if got := api.logins.Load(); got != 2 {
			t.Fatalf("logins at 25 min: got %d, want 2", got)
		}
		if got, want := api.dataAuth, "Bearer tok-2"; got != want {
			t.Errorf("data Authorization: got %q, want %q", got, want)
		}
	})
}

func TestReloginOn401(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI(t)
		c := newMemClient(t, api, Options{})
		if _, err := c.Current(t.Context(), "CAISO_NORTH"); err != nil {
			t.Fatal(err)
		}
		api.revoke() // the API forgets the cached token
		if _, err := c.Current(t.Context(), "CAISO_NORTH"); err != nil {
			t.Fatalf("after revocation: %v", err)
		}
		if got := api.logins.Load(); got != 2 {
			t.Errorf("logins: got %d, want 2", got)
		}
		// A data endpoint that keeps refusing: one new login, then give up.
		api.rejectAll.Store(true)
		_, err := c.Current(t.Context(), "CAISO_NORTH")
		if !errors.Is(err, carbon.ErrUnauthorized) {
			t.Fatalf("got %v, want ErrUnauthorized", err)
		}
		if got := api.logins.Load(); got != 3 {
			t.Errorf("logins after a refused retry: got %d, want 3", got)
		}
	})
}

func TestConcurrentCallersShareOneLogin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI(t)
		c := newMemClient(t, api, Options{})
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if _, err := c.Current(t.Context(), "CAISO_NORTH"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if got := api.logins.Load(); got != 1 {
			t.Errorf("logins: got %d, want 1", got)
		}
	})
}

func TestLoginLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI(t)
		c := newMemClient(t, api, Options{})
		for i := range LoginLimit {
			if _, err := c.login(t.Context()); err != nil {
				t.Fatalf("login %d: %v", i, err)
			}
			time.Sleep(time.Second)
		}
		_, err := c.login(t.Context())
		rl, ok := errors.AsType[*carbon.RateLimitError](err)
		if !ok {
			t.Fatalf("login %d: got %v, want *carbon.RateLimitError", LoginLimit+1, err)
		}
		// The first login leaves the window 5 minutes after it was made.
		if want := LimitPeriod - LoginLimit*time.Second; rl.RetryAfter != want {
			t.Errorf("RetryAfter: got %v, want %v", rl.RetryAfter, want)
		}
		if got := api.logins.Load(); got != LoginLimit {
			t.Errorf("logins sent: got %d, want %d", got, LoginLimit)
		}
		time.Sleep(rl.RetryAfter)
		if _, err := c.login(t.Context()); err != nil {
			t.Fatalf("login after the window moved: %v", err)
		}
	})
}

func TestLogin429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI(t)
		api.loginStatus.Store(http.StatusTooManyRequests)
		c := newMemClient(t, api, Options{})
		_, err := c.Current(t.Context(), "CAISO_NORTH")
		if rl, ok := errors.AsType[*carbon.RateLimitError](err); !ok || rl.RetryAfter != 2*time.Minute {
			t.Fatalf("got %v, want a RateLimitError of 2m", err)
		}
		api.loginStatus.Store(0)
		time.Sleep(time.Minute)
		if _, err := c.Current(t.Context(), "CAISO_NORTH"); !errors.Is(err, carbon.ErrRateLimited) {
			t.Fatalf("within Retry-After: got %v, want ErrRateLimited", err)
		}
		if got := api.logins.Load(); got != 1 {
			t.Errorf("logins within Retry-After: got %d, want 1", got)
		}
		time.Sleep(time.Minute)
		if _, err := c.Current(t.Context(), "CAISO_NORTH"); err != nil {
			t.Fatalf("after Retry-After: %v", err)
		}
	})
}

func TestRequestLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI(t)
		c := newMemClient(t, api, Options{})
		// One login plus RequestLimit-1 data requests fill the window.
		for i := range RequestLimit - 1 {
			if _, err := c.Index(t.Context(), "CAISO_NORTH"); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		time.Sleep(time.Minute)
		_, err := c.Index(t.Context(), "CAISO_NORTH")
		rl, ok := errors.AsType[*carbon.RateLimitError](err)
		if !ok {
			t.Fatalf("request %d: got %v, want *carbon.RateLimitError", RequestLimit, err)
		}
		if want := LimitPeriod - time.Minute; rl.RetryAfter != want {
			t.Errorf("RetryAfter: got %v, want %v", rl.RetryAfter, want)
		}
		if got, want := api.dataHits.Load()+api.logins.Load(), int64(RequestLimit); got != want {
			t.Errorf("requests sent: got %d, want %d", got, want)
		}
		time.Sleep(rl.RetryAfter)
		if _, err := c.Index(t.Context(), "CAISO_NORTH"); err != nil {
			t.Fatalf("after the window moved: %v", err)
		}
	})
}

func TestRetryAfter429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newFakeAPI(t)
		c := newMemClient(t, api, Options{})
		_, err := c.Forecast(t.Context(), "RATE")
		rl, ok := errors.AsType[*carbon.RateLimitError](err)
		if !ok || rl.RetryAfter != time.Minute {
			t.Fatalf("got %v, want a RateLimitError of 1m", err)
		}
		if !strings.HasPrefix(err.Error(), `watttime: zone "RATE": rate limited`) {
			t.Errorf("got %q, want the provider and zone named", err)
		}
		time.Sleep(30 * time.Second)
		hits := api.dataHits.Load()
		_, err = c.Current(t.Context(), "CAISO_NORTH")
		if rl, ok := errors.AsType[*carbon.RateLimitError](err); !ok || rl.RetryAfter != 30*time.Second {
			t.Fatalf("within Retry-After: got %v, want a RateLimitError of 30s", err)
		}
		if api.dataHits.Load() != hits {
			t.Errorf("a request was sent within Retry-After")
		}
		if _, err := c.login(t.Context()); !errors.Is(err, carbon.ErrRateLimited) {
			t.Errorf("login within Retry-After: got %v, want ErrRateLimited", err)
		}
		if got := api.logins.Load(); got != 1 {
			t.Errorf("logins within Retry-After: got %d, want 1", got)
		}
		time.Sleep(30 * time.Second)
		if _, err := c.Current(t.Context(), "CAISO_NORTH"); err != nil {
			t.Fatalf("after Retry-After: %v", err)
		}
	})
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr []string
	}{
		{"ok", Options{Username: "u", Password: "p"}, nil},
		{"no credentials", Options{}, []string{"username is empty", "password is empty"}},
		{"bad url", Options{Username: "u", Password: "p", BaseURL: "api.watttime.org"}, []string{"base URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.Name() != "watttime" {
					t.Errorf("Name: got %q, want watttime", c.Name())
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got error %v, want one containing %q", err, w)
				}
			}
		})
	}
}

func TestWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := newWindow(3, time.Minute)
	for i := range 3 {
		if _, ok := w.take(t0.Add(time.Duration(i) * 10 * time.Second)); !ok {
			t.Fatalf("take %d refused", i)
		}
	}
	if wait, ok := w.take(t0.Add(30 * time.Second)); ok || wait != 30*time.Second {
		t.Errorf("take 4: got (%v, %v), want (30s, false)", wait, ok)
	}
	if _, ok := w.take(t0.Add(time.Minute)); !ok {
		t.Errorf("take at 1m refused, want allowed")
	}
	if wait, ok := w.take(t0.Add(time.Minute + 5*time.Second)); ok || wait != 5*time.Second {
		t.Errorf("take at 1m5s: got (%v, %v), want (5s, false)", wait, ok)
	}
}
