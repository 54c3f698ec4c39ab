package watttime

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

func FuzzDecodeData(f *testing.F) {
	f.Add(readTestdata(f, "forecast.json"), "CAISO_NORTH")
	f.Add(readTestdata(f, "historical.json"), "CAISO_NORTH")
	f.Add(readTestdata(f, "signal_index.json"), "CAISO_NORTH")
	f.Add([]byte(`{"data":[{"point_time":"2026-11-26T10:00:00Z","value":1}],"meta":{"units":"lbs_co2_per_mwh","data_point_period_seconds":0}}`), "X")
	f.Fuzz(func(t *testing.T, body []byte, region string) {
		fc, err := decodeData(body, region)
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		if len(fc.Points) == 0 || fc.Kind != carbon.Marginal {
			t.Fatalf("invalid forecast %+v", fc)
		}
		for i, p := range fc.Points {
			if p.Intensity < 0 || p.Duration <= 0 {
				t.Fatalf("invalid point %+v", p)
			}
			if i > 0 && p.Start.Before(fc.Points[i-1].End()) {
				t.Fatalf("points overlap at %d", i)
			}
		}
	})
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add(readTestdata(f, "signal_index.json"), "CAISO_NORTH")
	f.Add(readTestdata(f, "forecast.json"), "CAISO_NORTH")
	f.Add([]byte(`{"data":[{"point_time":"2026-11-26T10:00:00Z","value":101}],"meta":{"units":"percentile"}}`), "X")
	f.Fuzz(func(t *testing.T, body []byte, region string) {
		ix, err := decodeIndex(body, region)
		checkDecodeErr(t, err)
		if err == nil && (ix.Percentile < 0 || ix.Percentile > 100 || ix.ObservedAt.IsZero()) {
			t.Fatalf("invalid index %+v", ix)
		}
	})
}

func FuzzDecodeLogin(f *testing.F) {
	f.Add(readTestdata(f, "login.json"))
	f.Add([]byte(`{"token":""}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := decodeLogin(body)
		checkDecodeErr(t, err)
		if err == nil && tok == "" {
			t.Fatal("empty token and no error")
		}
	})
}

func FuzzDecodeRegion(f *testing.F) {
	f.Add(readTestdata(f, "region_from_loc.json"))
	f.Add(readTestdata(f, "error_region.json"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeRegion(body)
		checkDecodeErr(t, err)
		if err == nil && r.Region == "" {
			t.Fatal("empty region and no error")
		}
	})
}

func BenchmarkDecodeForecast(b *testing.B) {
	body := readTestdata(b, "forecast.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeData(body, "CAISO_NORTH"); err != nil {
			b.Fatal(err)
		}
	}
}
