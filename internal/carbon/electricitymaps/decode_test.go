package electricitymaps

import (
	"errors"
	"testing"

	"github.com/aegis-flow/aegis/internal/carbon"
)

// checkDecodeErr fails unless err is nil or wraps one of the sentinels a
// decoder may return.
func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []error{carbon.ErrBadResponse, carbon.ErrUnknownZone, carbon.ErrNoForecast} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error %v wraps no decoder sentinel", err)
}

func FuzzDecodeLatest(f *testing.F) {
	f.Add(readTestdata(f, "latest.json"), "DE")
	f.Add([]byte(`{"zone":"DE","carbonIntensity":null}`), "DE")
	f.Add([]byte(`{"zone":"FR","carbonIntensity":1,"datetime":"2026-11-26T10:00:00Z"}`), "DE")
	f.Add([]byte(`[]`), "DE")
	f.Fuzz(func(t *testing.T, body []byte, zone string) {
		s, err := decodeLatest(body, zone)
		checkDecodeErr(t, err)
		if err == nil && (s.Intensity < 0 || s.Kind != carbon.Average || s.ObservedAt.IsZero()) {
			t.Fatalf("invalid signal %+v", s)
		}
	})
}

func fuzzSeries(f *testing.F, history bool) {
	f.Add(readTestdata(f, "forecast.json"), "DE")
	f.Add(readTestdata(f, "history.json"), "DE")
	f.Add([]byte(`{"zone":"DE","forecast":[{"carbonIntensity":1,"datetime":"2026-11-26T10:00:00Z"},{"carbonIntensity":1,"datetime":"2026-11-26T09:00:00Z"}]}`), "DE")
	f.Add([]byte(`{"zone":"DE","history":[{"zone":"FR","carbonIntensity":1,"datetime":"2026-11-26T10:00:00Z"}]}`), "DE")
	f.Fuzz(func(t *testing.T, body []byte, zone string) {
		fc, err := decodeSeries(body, zone, history)
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		if len(fc.Points) == 0 {
			t.Fatal("no points and no error")
		}
		for i, p := range fc.Points {
			if p.Intensity < 0 || p.Duration != interval {
				t.Fatalf("invalid point %+v", p)
			}
			if i > 0 && p.Start.Before(fc.Points[i-1].End()) {
				t.Fatalf("points overlap at %d", i)
			}
		}
	})
}

func FuzzDecodeForecast(f *testing.F) { fuzzSeries(f, false) }

func FuzzDecodeHistory(f *testing.F) { fuzzSeries(f, true) }

func BenchmarkDecodeForecast(b *testing.B) {
	body := readTestdata(b, "forecast.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeSeries(body, "DE", false); err != nil {
			b.Fatal(err)
		}
	}
}
