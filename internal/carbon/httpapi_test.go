package carbon

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// tableProvider serves fixed forecasts per zone; its current signal is the
// forecast's first point.
type tableProvider struct {
	name string
	fs   map[string]Forecast
}

func (p *tableProvider) Name() string { return p.name }

func (p *tableProvider) Current(_ context.Context, zone string) (Signal, error) {
	f, ok := p.fs[zone]
	if !ok {
		return Signal{}, ErrUnknownZone
	}
	pt := f.Points[0]
	return Signal{Intensity: pt.Intensity, Kind: f.Kind, ObservedAt: pt.Start, ValidUntil: pt.End()}, nil
}

func (p *tableProvider) Forecast(_ context.Context, zone string) (Forecast, error) {
	f, ok := p.fs[zone]
	if !ok {
		return Forecast{}, ErrUnknownZone
	}
	if len(f.Points) == 0 {
		return Forecast{}, ErrNoForecast
	}
	return f, nil
}

// sdkTracker returns a refreshed tracker serving the SDK excerpt, plus a
// marginal region "moer" and a region "empty" without a forecast. Call it
// inside a synctest bubble: its fake clock (year 2000) is before the data.
func sdkTracker(t *testing.T) *Tracker {
	t.Helper()
	fs := loadSDKExcerpt(t)
	moer := fs["us-east-1"]
	moer.Kind = Marginal
	fs["moer"] = moer
	fs["empty"] = Forecast{Kind: Average}
	p := &tableProvider{name: "sdk-json", fs: fs}
	var regions []RegionSource
	for _, loc := range []string{"us-east-1", "us-west-1", "eu-west-1", "moer"} {
		regions = append(regions, RegionSource{Region: loc, Zone: loc, Providers: []ProviderZone{{Provider: p}}})
	}
	regions = append(regions, RegionSource{Region: "empty", Zone: "empty", Providers: []ProviderZone{{Provider: p}}, Static: &StaticValue{Intensity: 7}})
	tr := mustTracker(t, TrackerOptions{Regions: regions, DefaultRateLimit: RateLimit{Every: -1}})
	if err := tr.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	return tr
}

func get(t *testing.T, h http.Handler, target string) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	if ct := rec.Header().Get("Content-Type"); rec.Code != http.StatusNoContent && !strings.HasPrefix(ct, "application/json") {
		t.Errorf("got Content-Type %q, want JSON", ct)
	}
	return rec.Code, rec.Body.Bytes()
}

func TestHandlerForecastsCurrentMatchesSDK(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := sdkTracker(t)
		h := NewHandler(tr)
		fs := loadSDKExcerpt(t)
		start := time.Date(2021, 10, 25, 16, 50, 0, 0, time.UTC)
		end := time.Date(2021, 10, 26, 6, 50, 0, 0, time.UTC)
		q := url.Values{"location": {"us-east-1", "eu-west-1"}, "dataStartAt": {start.Format(time.RFC3339)},
			"dataEndAt": {end.Format(time.RFC3339)}, "windowSize": {"120"}}
		code, body := get(t, h, "/emissions/forecasts/current?"+q.Encode())
		if code != http.StatusOK {
			t.Fatalf("got status %d (%s), want 200", code, body)
		}
		var got []sdkForecast
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("got %d forecasts, want 2", len(got))
		}
		for i, loc := range []string{"us-east-1", "eu-west-1"} {
			ref := sdkRolling(fs[loc], 2*time.Hour, start, end)
			var want []sdkDataPoint
			best := math.Inf(1)
			for _, w := range ref {
				want = append(want, sdkDataPoint{Location: loc, Timestamp: jsonTime(w.Start), Duration: 120, Value: w.Intensity})
				best = min(best, w.Intensity)
			}
			var wantOpt []sdkDataPoint
			for _, dp := range want {
				if dp.Value == best {
					wantOpt = append(wantOpt, dp)
				}
			}
			g := got[i]
			if g.Location != loc || g.WindowSize != 120 || g.DataStartAt != jsonTime(start) || g.DataEndAt != jsonTime(end) || g.RequestedAt == "" {
				t.Errorf("%s: got header %+v", loc, g)
			}
			approx := cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })
			if diff := cmp.Diff(want, g.ForecastData, approx); diff != "" {
				t.Errorf("%s forecastData (-sdk +got):\n%s", loc, diff)
			}
			if diff := cmp.Diff(wantOpt, g.OptimalDataPoints, approx); diff != "" {
				t.Errorf("%s optimalDataPoints (-sdk +got):\n%s", loc, diff)
			}
		}

		// Defaults: the whole forecast, one point per window.
		code, body = get(t, h, "/emissions/forecasts/current?location=eu-west-1")
		if code != http.StatusOK {
			t.Fatalf("got status %d (%s), want 200", code, body)
		}
		got = nil
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if n := len(got[0].ForecastData); n != 24 {
			t.Errorf("got %d data points, want 24", n)
		}
		// eu-west-1 has two points rated 0: both are optimal, as in the SDK.
		if n := len(got[0].OptimalDataPoints); n != 2 || got[0].OptimalDataPoints[0].Value != 0 || got[0].OptimalDataPoints[0].Duration != 60 {
			t.Errorf("got optimal points %+v, want the two rated 0", got[0].OptimalDataPoints)
		}
		if got[0].WindowSize != 0 || got[0].DataStartAt != "2021-10-25T14:50:00Z" || got[0].DataEndAt != "2021-10-26T13:50:00Z" {
			t.Errorf("got windowSize %d dataStartAt %s dataEndAt %s, want 0, first and last point", got[0].WindowSize, got[0].DataStartAt, got[0].DataEndAt)
		}
	})
}

func TestHandlerBestByLocations(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  []sdkEmissionsData
	}{
		{"whole day: every point tied at the minimum", "location=us-east-1&location=us-west-1&location=eu-west-1&time=2021-10-25T14:50:00Z&toTime=2021-10-26T14:50:00Z",
			[]sdkEmissionsData{
				{"eu-west-1", "2021-10-25T19:50:00Z", 0, "01:00:00"},
				{"eu-west-1", "2021-10-26T08:50:00Z", 0, "01:00:00"},
			}},
		{"one instant: the points containing it", "location=us-east-1,us-west-1&time=2021-10-25T20:00:00Z",
			[]sdkEmissionsData{{"us-west-1", "2021-10-25T19:50:00Z", 54, "01:00:00"}}},
		{"offset and unpadded time as the SDK accepts", "location=us-east-1&time=2021-10-26T4:05:06%2B06:00&toTime=2021-10-25T23:55:00Z",
			[]sdkEmissionsData{{"us-east-1", "2021-10-25T21:50:00Z", 73, "01:00:00"}, {"us-east-1", "2021-10-25T23:50:00Z", 73, "01:00:00"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := NewHandler(sdkTracker(t))
				code, body := get(t, h, "/emissions/bylocations/best?"+tt.query)
				if code != http.StatusOK {
					t.Fatalf("got status %d (%s), want 200", code, body)
				}
				var got []sdkEmissionsData
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		h := NewHandler(sdkTracker(t))
		if code, _ := get(t, h, "/emissions/bylocations/best?location=us-east-1&time=2030-01-01T00:00:00Z"); code != http.StatusNoContent {
			t.Errorf("got status %d for a time without data, want 204", code)
		}
		// Now (the bubble's year 2000) has no forecast point: the static fallback answers.
		code, body := get(t, h, "/emissions/bylocations/best?location=empty")
		if code != http.StatusOK || !strings.Contains(string(body), `"rating": 7`) {
			t.Errorf("got %d %s, want the static value 7", code, body)
		}
	})
}

func TestHandlerBadParameters(t *testing.T) {
	tests := []struct {
		name       string
		target     string
		wantStatus int
		wantParams []string
	}{
		{"best without location", "/emissions/bylocations/best", 400, []string{"location"}},
		{"best with empty location", "/emissions/bylocations/best?location=", 400, []string{"location"}},
		{"best unknown location", "/emissions/bylocations/best?location=mars", 400, []string{"location"}},
		{"best bad time", "/emissions/bylocations/best?location=moer&time=yesterday", 400, []string{"time"}},
		{"best toTime without time", "/emissions/bylocations/best?location=moer&toTime=2021-10-25T14:50:00Z", 400, []string{"time"}},
		{"best time after toTime", "/emissions/bylocations/best?location=moer&time=2021-10-26T14:50:00Z&toTime=2021-10-25T14:50:00Z", 400, []string{"time"}},
		{"best mixed kinds", "/emissions/bylocations/best?location=moer&location=us-east-1&time=2021-10-25T15:00:00Z", 400, []string{"location"}},
		{"forecast without location", "/emissions/forecasts/current?windowSize=5", 400, []string{"location"}},
		{"forecast every problem at once", "/emissions/forecasts/current?location=mars&dataStartAt=x&dataEndAt=y&windowSize=-5", 400,
			[]string{"location", "dataStartAt", "dataEndAt", "windowSize"}},
		{"forecast window not a number", "/emissions/forecasts/current?location=moer&windowSize=ten", 400, []string{"windowSize"}},
		{"forecast start after end", "/emissions/forecasts/current?location=moer&dataStartAt=2021-10-26T00:00:00Z&dataEndAt=2021-10-25T20:00:00Z", 400, []string{"dataStartAt"}},
		{"forecast start outside the data", "/emissions/forecasts/current?location=moer&dataStartAt=1999-01-01T00:00:00Z", 400, []string{"dataStartAt"}},
		{"forecast end outside the data", "/emissions/forecasts/current?location=moer&dataEndAt=2030-01-01T00:00:00Z", 400, []string{"dataEndAt"}},
		{"forecast not available yet", "/emissions/forecasts/current?location=empty", 503, []string{"location"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := NewHandler(sdkTracker(t))
				code, body := get(t, h, tt.target)
				if code != tt.wantStatus {
					t.Fatalf("got status %d (%s), want %d", code, body, tt.wantStatus)
				}
				var p problem
				if err := json.Unmarshal(body, &p); err != nil {
					t.Fatal(err)
				}
				var params []string
				for k := range p.Errors {
					params = append(params, k)
				}
				slices.Sort(params)
				want := slices.Sorted(slices.Values(tt.wantParams))
				if diff := cmp.Diff(want, params); diff != "" || p.Status != tt.wantStatus {
					t.Errorf("got status field %d and parameters %v (%s), want %d and %v", p.Status, params, body, tt.wantStatus, want)
				}
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		rec := httptest.NewRecorder()
		NewHandler(sdkTracker(t)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/emissions/bylocation?location=moer", nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("got %d for an unsupported endpoint, want 404", rec.Code)
		}
	})
}

func TestHandlerAdminOverLoopback(t *testing.T) {
	// Real time and a real socket: the static fallback and a live provider.
	p := newFake("fake", 321)
	tr := mustTracker(t, TrackerOptions{Regions: []RegionSource{
		{Region: "live", Zone: "L", Providers: []ProviderZone{{Provider: p}}},
		{Region: "fallback", Static: &StaticValue{Intensity: 450, Kind: Marginal}},
	}})
	if err := tr.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(tr))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/carbon")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got status %d, want 200", resp.StatusCode)
	}
	var got adminResponse
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if !got.Ready || len(got.Regions) != 2 {
		t.Fatalf("got %s, want ready with two regions", body)
	}
	live, fb := got.Regions[0], got.Regions[1]
	if live.Region != "live" || *live.Intensity != 321 || live.Fallback != "live" || live.FallbackLevel != 0 || live.Source != "fake" ||
		live.AgeSeconds == nil || live.FetchedAt == "" || len(live.Providers) != 1 || live.Providers[0].State != "ok" || live.Forecast == nil {
		t.Errorf("got live region %s", body)
	}
	if fb.Region != "fallback" || *fb.Intensity != 450 || fb.Kind != "marginal" || fb.Fallback != "static" || fb.FallbackLevel != 2 || fb.AgeSeconds != nil {
		t.Errorf("got fallback region %s", body)
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2022-07-19T14:00:00Z", "2022-1-1T04:05:06Z", "2021-12-25T00:00:00+06:00", "2021-12-25T00:00:00 06:00",
		"2022-07-19", "2022-07-19T14:00", "2022-07-19T14:00:00.123456789-07:00", "", "x", "2022-13-40"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseTime(s)
		if err != nil {
			return
		}
		// A parsed time formats as RFC 3339 and parses back to the same instant.
		back, err := ParseTime(tm.Format(time.RFC3339Nano))
		if err != nil || !back.Equal(tm) {
			if tm.Year() >= 0 && tm.Year() <= 9999 {
				t.Errorf("round trip of %q: got %v %v, want %v", s, back, err, tm)
			}
		}
	})
}

func FuzzHandlerQuery(f *testing.F) {
	for _, s := range []string{
		"location=us-east-1&dataStartAt=2021-10-25T14:50:00Z&dataEndAt=2021-10-26T02:50:00Z&windowSize=120",
		"location=us-east-1,eu-west-1&time=2021-10-25T20:00:00Z", "location=&windowSize=", "windowSize=99999999999999999999",
		"location=moer&location=us-east-1", "location=%ZZ", "location=empty&time=2000-01-01T00:00:00Z&toTime=2000-01-01T00:00:01Z",
	} {
		f.Add("/emissions/forecasts/current", s)
		f.Add("/emissions/bylocations/best", s)
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		if path != "/emissions/forecasts/current" && path != "/emissions/bylocations/best" {
			path = "/emissions/forecasts/current"
		}
		synctest.Test(t, func(t *testing.T) {
			h := NewHandler(sdkTracker(t))
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.URL = &url.URL{Path: path, RawQuery: query}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			switch rec.Code {
			case http.StatusOK, http.StatusNoContent, http.StatusBadRequest, http.StatusServiceUnavailable:
			default:
				t.Fatalf("got status %d for %s?%s", rec.Code, path, query)
			}
			if rec.Code != http.StatusNoContent && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("got invalid JSON for %s?%s: %s", path, query, rec.Body)
			}
		})
	})
}
