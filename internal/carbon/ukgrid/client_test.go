package ukgrid

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
	"github.com/google/go-cmp/cmp"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeAPI speaks the documented Carbon Intensity API JSON. mode selects a
// failure; "" answers normally.
type fakeAPI struct {
	t    testing.TB
	mode string
	hits atomic.Int64

	mu    sync.Mutex
	paths []string
}

func (f *fakeAPI) lastPath() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.paths) == 0 {
		return ""
	}
	return f.paths[len(f.paths)-1]
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.Path)
	f.mu.Unlock()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var body []byte
	switch {
	case len(parts) == 1 && parts[0] == "intensity":
		body = readTestdata(f.t, "intensity.json")
		if f.mode == "noactual" {
			body = readTestdata(f.t, "intensity_no_actual.json")
		}
	case len(parts) == 3 && parts[0] == "intensity" && parts[2] == "fw48h":
		body = readTestdata(f.t, "fw48h.json")
	case len(parts) == 3 && parts[0] == "regional" && parts[1] == "regionid":
		body = regional(f.t, "regional.json", parts[2], f.mode)
	case len(parts) == 6 && parts[0] == "regional" && parts[3] == "fw48h":
		body = regional(f.t, "regional_fw48h.json", parts[5], f.mode)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"code":"404 Not Found","message":"Not found."}}`)
		return
	}
	switch f.mode {
	case "", "noactual", "otherregion":
	case "400":
		w.WriteHeader(http.StatusBadRequest)
		w.Write(readTestdata(f.t, "error_400.json"))
		return
	case "400date":
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"code":"400 Bad Request","message":"Please enter a valid date in ISO8601 format."}}`)
		return
	case "401", "403":
		code, _ := strconv.Atoi(f.mode)
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":{"code":"%d","message":"Access denied."}}`, code)
		return
	case "404":
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"code":"404 Not Found","message":"No such region."}}`)
		return
	case "429":
		w.Header().Set("Retry-After", "45")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	case "500":
		w.WriteHeader(http.StatusInternalServerError)
		w.Write(readTestdata(f.t, "error_500.json"))
		return
	case "errorin200":
		body = readTestdata(f.t, "error_500.json")
	case "malformed":
		body = body[:len(body)-3]
	case "negative":
		body = bytes.ReplaceAll(body, []byte(`"forecast":`), []byte(`"forecast":-`))
		body = bytes.ReplaceAll(body, []byte(`"actual":`), []byte(`"actual":-`))
		body = bytes.ReplaceAll(body, []byte(`-null`), []byte(`null`))
	case "nullboth":
		body = []byte(`{"data":[{"from":"2026-11-26T10:00Z","to":"2026-11-26T10:30Z","intensity":{"forecast":null,"actual":null,"index":""}}]}`)
	case "empty":
		body = []byte(`{"data":[]}`)
	case "truncated":
		w.Header().Set("Content-Length", "5000")
		w.Write(body[:25])
		return
	case "huge":
		w.Write(bytes.Repeat([]byte("["), apiclient.MaxBodyBytes+10))
		return
	case "slow":
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	default:
		f.t.Errorf("unknown mode %q", f.mode)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// regional rewrites the example's regionid to the one requested, unless the
// test wants an answer for another region.
func regional(t testing.TB, file, id, mode string) []byte {
	b := readTestdata(t, file)
	if mode == "otherregion" {
		return b
	}
	return bytes.ReplaceAll(b, []byte(`"regionid":13`), []byte(`"regionid":`+id))
}

func newTestClient(t *testing.T, mode string, hc *http.Client) (*Client, *fakeAPI) {
	t.Helper()
	api := &fakeAPI{t: t, mode: mode}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	c, err := New(Options{BaseURL: srv.URL, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return c, api
}

func TestCurrent(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		mode     string
		zone     string
		want     float64
		wantPath string
	}{
		{"national actual", "", "national", 172, "/intensity"},
		{"GB alias", "", "GB", 172, "/intensity"},
		{"national falls back to forecast", "noactual", "gb", 180, "/intensity"},
		{"regional forecast", "", "13", 201, "/regional/regionid/13"},
		{"regional wales", "", "17", 201, "/regional/regionid/17"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, api := newTestClient(t, tt.mode, nil)
			got, err := c.Current(t.Context(), tt.zone)
			if err != nil {
				t.Fatalf("Current: %v", err)
			}
			want := carbon.Signal{Intensity: tt.want, Kind: carbon.Average, Source: "ukgrid", ObservedAt: at, ValidUntil: at.Add(30 * time.Minute)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Current mismatch (-want +got):\n%s", diff)
			}
			if got := api.lastPath(); got != tt.wantPath {
				t.Errorf("path: got %q, want %q", got, tt.wantPath)
			}
		})
	}
}

func TestForecast(t *testing.T) {
	tests := []struct {
		name     string
		zone     string
		wantPath string
		want     []float64
	}{
		{"national", "national", "/intensity/1999-12-31T23:30Z/fw48h", []float64{185, 180, 166}},
		{"regional", "13", "/regional/intensity/1999-12-31T23:30Z/fw48h/regionid/13", []float64{210, 201}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The bubble's clock starts at 2000-01-01T00:00Z, which fixes the
			// forecast's from.
			synctest.Test(t, func(t *testing.T) {
				api := &fakeAPI{t: t}
				c, err := New(Options{BaseURL: "http://ukgrid.test", HTTPClient: &http.Client{Transport: handlerTransport{api}}})
				if err != nil {
					t.Fatal(err)
				}
				f, err := c.Forecast(t.Context(), tt.zone)
				if err != nil {
					t.Fatalf("Forecast: %v", err)
				}
				if got := api.lastPath(); got != tt.wantPath {
					t.Errorf("path: got %q, want %q", got, tt.wantPath)
				}
				t0 := time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)
				want := carbon.Forecast{Kind: carbon.Average, Source: "ukgrid"}
				for i, v := range tt.want {
					want.Points = append(want.Points, carbon.Point{Start: t0.Add(time.Duration(i) * 30 * time.Minute), Duration: 30 * time.Minute, Intensity: v})
				}
				if diff := cmp.Diff(want, f); diff != "" {
					t.Errorf("Forecast mismatch (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestParseZone(t *testing.T) {
	tests := []struct {
		zone    string
		want    int
		wantErr bool
	}{
		{"national", 0, false},
		{"National", 0, false},
		{"GB", 0, false},
		{"gb", 0, false},
		{"1", 1, false},
		{"14", 14, false},
		{"17", 17, false},
		{"0", 0, true},
		{"18", 0, true},
		{"-1", 0, true},
		{"01", 0, true},
		{"+1", 0, true},
		{"", 0, true},
		{"London", 0, true},
		{"UK", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.zone, func(t *testing.T) {
			got, err := ParseZone(tt.zone)
			if tt.wantErr {
				if !errors.Is(err, carbon.ErrUnknownZone) {
					t.Fatalf("ParseZone(%q): got %v, want ErrUnknownZone", tt.zone, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseZone(%q): got (%d, %v), want (%d, nil)", tt.zone, got, err, tt.want)
			}
		})
	}
}

func TestUnknownZoneSendsNothing(t *testing.T) {
	c, api := newTestClient(t, "", nil)
	_, err := c.Current(t.Context(), "18")
	if !errors.Is(err, carbon.ErrUnknownZone) {
		t.Fatalf("Current: got %v, want ErrUnknownZone", err)
	}
	if want := `ukgrid: zone "18": unknown zone`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %q, want prefix %q", err, want)
	}
	if _, err := c.Forecast(t.Context(), "Scotland"); !errors.Is(err, carbon.ErrUnknownZone) {
		t.Fatalf("Forecast: got %v, want ErrUnknownZone", err)
	}
	if got := api.hits.Load(); got != 0 {
		t.Errorf("requests: got %d, want 0", got)
	}
}

func TestErrors(t *testing.T) {
	current := func(c *Client, ctx context.Context, z string) error { _, err := c.Current(ctx, z); return err }
	forecast := func(c *Client, ctx context.Context, z string) error { _, err := c.Forecast(ctx, z); return err }
	tests := []struct {
		name     string
		mode     string
		zone     string
		call     func(*Client, context.Context, string) error
		want     error
		wantText string
	}{
		{"400 region", "400", "13", current, carbon.ErrUnknownZone, "valid region id"},
		{"400 other", "400date", "national", forecast, carbon.ErrBadResponse, "HTTP 400"},
		{"401", "401", "national", current, carbon.ErrUnauthorized, "HTTP 401"},
		{"403", "403", "3", forecast, carbon.ErrUnauthorized, "HTTP 403"},
		{"404", "404", "3", current, carbon.ErrUnknownZone, "HTTP 404"},
		{"500", "500", "national", current, carbon.ErrUnavailable, `HTTP 500: provider says "500 Internal Server Error: Something went wrong."`},
		{"error in 200", "errorin200", "national", current, carbon.ErrBadResponse, "Something went wrong"},
		{"other region current", "otherregion", "3", current, carbon.ErrUnknownZone, "answer is for region 13"},
		{"other region forecast", "otherregion", "3", forecast, carbon.ErrUnknownZone, "answer is for region 13"},
		{"malformed", "malformed", "national", current, carbon.ErrBadResponse, "decode answer"},
		{"malformed regional", "malformed", "5", forecast, carbon.ErrBadResponse, "decode answer"},
		{"negative actual", "negative", "national", current, carbon.ErrBadResponse, "negative"},
		{"negative forecast", "negative", "7", forecast, carbon.ErrBadResponse, "negative"},
		{"no values", "nullboth", "national", current, carbon.ErrBadResponse, "neither actual nor forecast"},
		{"empty current", "empty", "national", current, carbon.ErrBadResponse, "no periods"},
		{"empty forecast", "empty", "national", forecast, carbon.ErrNoForecast, "no periods"},
		{"truncated", "truncated", "national", current, carbon.ErrBadResponse, "truncated"},
		{"huge", "huge", "national", forecast, carbon.ErrBadResponse, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := newTestClient(t, tt.mode, nil)
			err := tt.call(c, t.Context(), tt.zone)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v, want one wrapping %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantText)
			}
			if want := fmt.Sprintf("ukgrid: zone %q: ", tt.zone); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got error %q, want prefix %q", err, want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	c, _ := newTestClient(t, "slow", &http.Client{Timeout: 50 * time.Millisecond})
	if _, err := c.Current(t.Context(), "national"); !errors.Is(err, carbon.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
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

func TestRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := &fakeAPI{t: t, mode: "429"}
		c, err := New(Options{BaseURL: "http://ukgrid.test", HTTPClient: &http.Client{Transport: handlerTransport{api}}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Current(t.Context(), "national")
		if rl, ok := errors.AsType[*carbon.RateLimitError](err); !ok || rl.RetryAfter != 45*time.Second {
			t.Fatalf("got %v, want a RateLimitError of 45s", err)
		}
		api.mode = ""
		time.Sleep(44 * time.Second)
		if _, err := c.Forecast(t.Context(), "1"); !errors.Is(err, carbon.ErrRateLimited) {
			t.Fatalf("within Retry-After: got %v, want ErrRateLimited", err)
		}
		if got := api.hits.Load(); got != 1 {
			t.Errorf("requests within Retry-After: got %d, want 1", got)
		}
		time.Sleep(time.Second)
		if _, err := c.Forecast(t.Context(), "1"); err != nil {
			t.Fatalf("after Retry-After: %v", err)
		}
	})
}

func TestNew(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if c.Name() != "ukgrid" || c.base != DefaultBaseURL {
		t.Errorf("got name %q base %q, want ukgrid %s", c.Name(), c.base, DefaultBaseURL)
	}
	if _, err := New(Options{BaseURL: "not a url"}); err == nil {
		t.Errorf("New with a bad base URL: got nil error, want one")
	}
}
