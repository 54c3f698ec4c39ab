package ukgrid

import (
	"errors"
	"testing"

	"github.com/aegis-flow/aegis/internal/carbon"
)

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

func checkSeries(t *testing.T, f carbon.Forecast) {
	t.Helper()
	if len(f.Points) == 0 {
		t.Fatal("no points and no error")
	}
	for i, p := range f.Points {
		if p.Intensity < 0 || p.Duration != interval {
			t.Fatalf("invalid point %+v", p)
		}
		if i > 0 && p.Start.Before(f.Points[i-1].End()) {
			t.Fatalf("points overlap at %d", i)
		}
	}
}

func addSeeds(f *testing.F) {
	for _, name := range []string{"intensity.json", "intensity_no_actual.json", "fw48h.json", "regional.json", "regional_fw48h.json", "error_400.json"} {
		f.Add(readTestdata(f, name), 13)
	}
	f.Add([]byte(`{"data":null}`), 0)
	f.Add([]byte(`{"data":{"regionid":2,"data":[{"from":"2026-11-26T10:00Z","intensity":{"forecast":1}}]}}`), 2)
}

func FuzzDecodeCurrent(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte, id int) {
		s, err := decodeCurrent(body, id)
		checkDecodeErr(t, err)
		if err == nil && (s.Intensity < 0 || s.ObservedAt.IsZero() || s.Kind != carbon.Average) {
			t.Fatalf("invalid signal %+v", s)
		}
	})
}

func FuzzDecodeForecast(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte, id int) {
		fc, err := decodeForecast(body, id)
		checkDecodeErr(t, err)
		if err == nil {
			checkSeries(t, fc)
		}
	})
}

func FuzzDecodeError(f *testing.F) {
	f.Add(readTestdata(f, "error_400.json"), 400)
	f.Add(readTestdata(f, "error_500.json"), 500)
	f.Add([]byte(`{"error":"flat"}`), 404)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		err := statusError(status, body)
		for _, s := range []error{carbon.ErrUnauthorized, carbon.ErrUnknownZone, carbon.ErrUnavailable, carbon.ErrBadResponse} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("statusError(%d) = %v wraps no sentinel", status, err)
	})
}

func BenchmarkDecodeForecast(b *testing.B) {
	body := readTestdata(b, "fw48h.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeForecast(body, 0); err != nil {
			b.Fatal(err)
		}
	}
}
