package electricitymaps

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
	"github.com/google/go-cmp/cmp"
)

const goodToken = "em-test-token-secret"

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeAPI speaks the documented Electricity Maps API v3 JSON. Special zone
// keys trigger failure modes.
type fakeAPI struct {
	t     testing.TB
	hits  atomic.Int64
	query atomic.Value // last url.Values
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	f.query.Store(r.URL.Query())
	switch r.Header.Get("auth-token") {
	case goodToken:
	case "forbidden":
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"error":"Forbidden","message":"This token has no access to this endpoint."}`)
		return
	default:
		w.WriteHeader(http.StatusUnauthorized)
		w.Write(readTestdata(f.t, "error_auth.json"))
		return
	}
	zone := r.URL.Query().Get("zone")
	var file string
	switch r.URL.Path {
	case "/v3/carbon-intensity/latest":
		file = "latest.json"
	case "/v3/carbon-intensity/forecast":
		file = "forecast.json"
	case "/v3/carbon-intensity/history":
		file = "history.json"
	default:
		http.NotFound(w, r)
		return
	}
	body := readTestdata(f.t, file)
	switch zone {
	case "DE":
	case "XX":
		w.WriteHeader(http.StatusNotFound)
		w.Write(readTestdata(f.t, "error_zone.json"))
		return
	case "BADZONE":
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"Bad request","message":"zone BADZONE is not a valid zone key"}`)
		return
	case "BADPARAM":
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"Bad request","message":"datetime is malformed"}`)
		return
	case "FALLBACK":
		// Answers for another zone, as the API's caller-location fallback does.
		body = []byte(strings.ReplaceAll(string(body), `"DE"`, `"FR"`))
	case "RATE":
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"error":"Too many requests"}`)
		return
	case "BOOM":
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"error":"Internal server error"}`)
		return
	case "MALFORMED":
		body = []byte(`{"zone":"MALFORMED","carbonIntensity":`)
	case "NEGATIVE":
		body = []byte(`{"zone":"NEGATIVE","carbonIntensity":-5,"datetime":"2026-11-26T10:00:00.000Z","forecast":[{"carbonIntensity":-1,"datetime":"2026-11-26T10:00:00.000Z"}],"history":[{"carbonIntensity":-1,"datetime":"2026-11-26T10:00:00.000Z"}]}`)
	case "MISSING":
		body = []byte(`{"zone":"MISSING","carbonIntensity":null,"datetime":"2026-11-26T10:00:00.000Z","forecast":[{"datetime":"2026-11-26T10:00:00.000Z"}],"history":[{"datetime":"2026-11-26T10:00:00.000Z"}]}`)
	case "EMPTY":
		body = []byte(`{"zone":"EMPTY","forecast":[],"history":[]}`)
	case "TRUNCATED":
		w.Header().Set("Content-Length", "4096")
		w.Write(body[:20])
		return
	case "HUGE":
		w.Write([]byte(`{"zone":"HUGE","pad":"`))
		w.Write([]byte(strings.Repeat("a", apiclient.MaxBodyBytes)))
		w.Write([]byte(`"}`))
		return
	case "SLOW":
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"status":"error","message":"Zone '%s' does not exist."}`, zone)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func newTestClient(t *testing.T, token string, hc *http.Client) (*Client, *fakeAPI) {
	t.Helper()
	api := &fakeAPI{t: t}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	if hc == nil {
		hc = srv.Client()
		hc.Timeout = 2 * time.Second
	}
	c, err := New(Options{BaseURL: srv.URL + "/v3", Token: token, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return c, api
}

func TestCurrent(t *testing.T) {
	c, api := newTestClient(t, goodToken, nil)
	got, err := c.Current(t.Context(), "DE")
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	want := carbon.Signal{Intensity: 302, Kind: carbon.Average, Source: "electricitymaps", ObservedAt: at, ValidUntil: at.Add(time.Hour)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Current mismatch (-want +got):\n%s", diff)
	}
	q := api.query.Load().(interface{ Get(string) string })
	for k, v := range map[string]string{"zone": "DE", "emissionFactorType": "lifecycle", "shouldUseFallbackCallerLookup": "false"} {
		if g := q.Get(k); g != v {
			t.Errorf("query %s: got %q, want %q", k, g, v)
		}
	}
}

func TestForecastAndHistory(t *testing.T) {
	c, _ := newTestClient(t, goodToken, nil)
	f, err := c.Forecast(t.Context(), "DE")
	if err != nil {
		t.Fatalf("Forecast: %v", err)
	}
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	want := carbon.Forecast{
		Kind: carbon.Average, Source: "electricitymaps",
		GeneratedAt: time.Date(2026, 11, 26, 9, 53, 21, 0, time.UTC),
		Points: []carbon.Point{
			{Start: t0, Duration: time.Hour, Intensity: 310},
			{Start: t0.Add(time.Hour), Duration: time.Hour, Intensity: 295},
			{Start: t0.Add(2 * time.Hour), Duration: time.Hour, Intensity: 280.5},
		},
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("Forecast mismatch (-want +got):\n%s", diff)
	}
	h, err := c.History(t.Context(), "DE")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if got, want := len(h.Points), 2; got != want {
		t.Fatalf("History points: got %d, want %d", got, want)
	}
	if got, want := h.Points[1].Intensity, 318.0; got != want {
		t.Errorf("History[1]: got %v, want %v", got, want)
	}
}

func TestErrors(t *testing.T) {
	type call func(*Client, context.Context, string) error
	current := func(c *Client, ctx context.Context, z string) error { _, err := c.Current(ctx, z); return err }
	forecast := func(c *Client, ctx context.Context, z string) error { _, err := c.Forecast(ctx, z); return err }
	history := func(c *Client, ctx context.Context, z string) error { _, err := c.History(ctx, z); return err }
	tests := []struct {
		name     string
		token    string
		zone     string
		call     call
		want     error
		wantText string
	}{
		{"unauthorized", "wrong", "DE", current, carbon.ErrUnauthorized, `electricitymaps: zone "DE": unauthorized: HTTP 401`},
		{"forbidden", "forbidden", "DE", forecast, carbon.ErrUnauthorized, "HTTP 403"},
		{"unknown zone 404", goodToken, "XX", current, carbon.ErrUnknownZone, `electricitymaps: zone "XX": unknown zone`},
		{"unknown zone 400", goodToken, "BADZONE", current, carbon.ErrUnknownZone, "not a valid zone"},
		{"other 400", goodToken, "BADPARAM", current, carbon.ErrBadResponse, "HTTP 400"},
		{"zone mismatch latest", goodToken, "FALLBACK", current, carbon.ErrUnknownZone, `answer is for zone "FR"`},
		{"zone mismatch forecast", goodToken, "FALLBACK", forecast, carbon.ErrUnknownZone, `answer is for zone "FR"`},
		{"zone mismatch history", goodToken, "FALLBACK", history, carbon.ErrUnknownZone, `zone "FR"`},
		{"server error", goodToken, "BOOM", current, carbon.ErrUnavailable, "HTTP 500"},
		{"malformed", goodToken, "MALFORMED", current, carbon.ErrBadResponse, "decode latest"},
		{"negative latest", goodToken, "NEGATIVE", current, carbon.ErrBadResponse, "negative"},
		{"negative forecast", goodToken, "NEGATIVE", forecast, carbon.ErrBadResponse, "negative"},
		{"missing latest", goodToken, "MISSING", current, carbon.ErrBadResponse, "missing"},
		{"missing history", goodToken, "MISSING", history, carbon.ErrBadResponse, "missing"},
		{"empty forecast", goodToken, "EMPTY", forecast, carbon.ErrNoForecast, "no points"},
		{"truncated", goodToken, "TRUNCATED", current, carbon.ErrBadResponse, "truncated"},
		{"huge", goodToken, "HUGE", current, carbon.ErrBadResponse, "exceeds"},
		{"empty zone", goodToken, "", current, carbon.ErrUnknownZone, "zone is empty"},
		{"blank zone", goodToken, "  ", forecast, carbon.ErrUnknownZone, "zone is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, api := newTestClient(t, tt.token, nil)
			err := tt.call(c, t.Context(), tt.zone)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v, want one wrapping %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantText)
			}
			if strings.Contains(err.Error(), goodToken) {
				t.Errorf("error %q leaks the token", err)
			}
			if strings.TrimSpace(tt.zone) == "" && api.hits.Load() != 0 {
				t.Errorf("got %d requests for an empty zone, want 0", api.hits.Load())
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	c, _ := newTestClient(t, goodToken, &http.Client{Timeout: 50 * time.Millisecond})
	_, err := c.Current(t.Context(), "SLOW")
	if !errors.Is(err, carbon.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}

func TestContextCanceled(t *testing.T) {
	c, _ := newTestClient(t, goodToken, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Current(ctx, "DE")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, carbon.ErrUnavailable) {
		t.Fatalf("got %v, want context.Canceled and ErrUnavailable", err)
	}
}

// handlerTransport serves requests in memory so that timer-driven tests can
// run inside a synctest bubble.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	ht.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func TestRateLimitRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := &fakeAPI{t: t}
		c, err := New(Options{BaseURL: "http://em.test/v3", Token: goodToken, HTTPClient: &http.Client{Transport: handlerTransport{api}}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Current(t.Context(), "RATE")
		rl, ok := errors.AsType[*carbon.RateLimitError](err)
		if !ok {
			t.Fatalf("got %v, want *carbon.RateLimitError", err)
		}
		if rl.RetryAfter != 30*time.Second {
			t.Errorf("RetryAfter: got %v, want 30s", rl.RetryAfter)
		}
		if !errors.Is(err, carbon.ErrRateLimited) {
			t.Errorf("got %v, want it to wrap ErrRateLimited", err)
		}
		// Any zone is refused locally until Retry-After has passed.
		time.Sleep(10 * time.Second)
		_, err = c.Current(t.Context(), "DE")
		rl, ok = errors.AsType[*carbon.RateLimitError](err)
		if !ok || rl.RetryAfter != 20*time.Second {
			t.Fatalf("got %v, want a local RateLimitError with 20s left", err)
		}
		if got := api.hits.Load(); got != 1 {
			t.Errorf("requests while blocked: got %d, want 1", got)
		}
		time.Sleep(20 * time.Second)
		if _, err := c.Current(t.Context(), "DE"); err != nil {
			t.Fatalf("after Retry-After: %v", err)
		}
		if got := api.hits.Load(); got != 2 {
			t.Errorf("requests: got %d, want 2", got)
		}
	})
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"defaults", Options{Token: "t"}, ""},
		{"direct", Options{Token: "t", EmissionFactorType: Direct}, ""},
		{"no token", Options{}, "token is empty"},
		{"bad factor", Options{Token: "t", EmissionFactorType: "marginal"}, "emission factor type"},
		{"bad url", Options{Token: "t", BaseURL: "ftp://x"}, "base URL"},
		{"all problems", Options{BaseURL: "::", EmissionFactorType: "x"}, "token is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.Name() != "electricitymaps" {
					t.Errorf("Name: got %q, want electricitymaps", c.Name())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDirectFactorSent(t *testing.T) {
	api := &fakeAPI{t: t}
	srv := httptest.NewServer(api)
	defer srv.Close()
	c, err := New(Options{BaseURL: srv.URL + "/v3", Token: goodToken, EmissionFactorType: Direct})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Current(t.Context(), "DE"); err != nil {
		t.Fatal(err)
	}
	q := api.query.Load().(interface{ Get(string) string })
	if got := q.Get("emissionFactorType"); got != "direct" {
		t.Errorf("emissionFactorType: got %q, want direct", got)
	}
}
