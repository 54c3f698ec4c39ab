package sim

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/aegis-flow/aegis/internal/greenwait"
	"github.com/google/go-cmp/cmp"
)

// dayCurve is a synthetic day: dirty evenings, a clean midday solar dip.
func dayCurve(days int) []float64 {
	var v []float64
	for range days {
		for h := range 24 {
			v = append(v, 300+150*math.Cos(float64(h-19)/24*2*math.Pi))
		}
	}
	return v
}

func TestRunDeterministic(t *testing.T) {
	in := Input{Intensity: dayCurve(3), ForecastErrorPct: 10, Seed: 42}
	a, err := Run(in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Run(in)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("two runs with one seed differ (-a +b):\n%s", diff)
	}
	in.Seed = 43
	c, _ := Run(in)
	if cmp.Equal(a, c) {
		t.Error("runs with different seeds are equal")
	}
}

func TestRunOrdering(t *testing.T) {
	r, err := Run(Input{Intensity: dayCurve(7), ArrivalsPerHour: 200, ForecastErrorPct: 15, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tiers) != 4 {
		t.Fatalf("tiers: got %d, want 4", len(r.Tiers))
	}
	prev := -1.0
	for _, tr := range r.Tiers {
		// Perfect foresight never loses to running at once, and never to the
		// noisy plan.
		if tr.GramsOptimal > tr.GramsImmediate+1e-6 || tr.GramsOptimal > tr.GramsGreenWait+1e-6 {
			t.Errorf("%s: optimal %.1f above immediate %.1f or green-wait %.1f", tr.Priority, tr.GramsOptimal, tr.GramsImmediate, tr.GramsGreenWait)
		}
		// Longer waits save a larger share.
		if tr.SavedPct < prev-1 {
			t.Errorf("%s: saved %.1f%%, less than the more urgent tier's %.1f%%", tr.Priority, tr.SavedPct, prev)
		}
		prev = tr.SavedPct
	}
	if bg := r.Tiers[3]; bg.SavedPct < 20 || bg.MeanWait <= time.Hour {
		t.Errorf("background: got saved %.1f%% mean wait %v, want > 20%% and > 1h", bg.SavedPct, bg.MeanWait)
	}
	if r.Total.Jobs != r.Tiers[0].Jobs+r.Tiers[1].Jobs+r.Tiers[2].Jobs+r.Tiers[3].Jobs {
		t.Errorf("total jobs %d is not the sum of tiers", r.Total.Jobs)
	}
}

func TestRunPerfectForecastMatchesOptimal(t *testing.T) {
	r, err := Run(Input{Intensity: dayCurve(2), Seed: 7, MinDeferral: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range append(r.Tiers, r.Total) {
		if math.Abs(tr.GramsGreenWait-tr.GramsOptimal) > 1e-6*tr.GramsOptimal || math.Abs(tr.CapturePct-100) > 1e-6 {
			t.Errorf("%s: green-wait %.3f, optimal %.3f, capture %.2f%%, want equal and 100%%", tr.Priority, tr.GramsGreenWait, tr.GramsOptimal, tr.CapturePct)
		}
	}
}

func TestRunCriticalNeverDeferred(t *testing.T) {
	r, err := Run(Input{Intensity: dayCurve(1), Mix: map[greenwait.Priority]float64{greenwait.PriorityCritical: 1}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tiers) != 1 || r.Tiers[0].Deferred != 0 || r.Tiers[0].SavedGrams != 0 {
		t.Errorf("got %+v, want one critical tier with nothing deferred", r.Tiers)
	}
}

func TestBestWindow(t *testing.T) {
	s := series{[]float64{500, 500, 100, 100, 500}}
	tests := []struct {
		name                  string
		earliest, latest, dur time.Duration
		want                  time.Duration
	}{
		{"reaches clean hours", 0, 4 * time.Hour, time.Hour, 2 * time.Hour},
		{"window end on a boundary", 30 * time.Minute, 4 * time.Hour, 2 * time.Hour, 2 * time.Hour},
		{"deadline before clean hours", 0, 90 * time.Minute, time.Hour, 90 * time.Minute},
		{"flat: earliest", 0, 30 * time.Minute, 10 * time.Minute, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := best(s, tt.earliest, tt.latest, tt.dur); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if got := s.avg(90*time.Minute, time.Hour); got != 300 {
		t.Errorf("avg across a boundary: got %v, want 300", got)
	}
}

func TestRunValidates(t *testing.T) {
	_, err := Run(Input{Intensity: []float64{-1}, Profile: []float64{1}, ArrivalsPerHour: -2, ForecastErrorPct: -1})
	if err == nil {
		t.Fatal("got nil error")
	}
	for _, want := range []string{"intensity[0]", "profile", "arrivals", "forecast error"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := Run(Input{}); err == nil {
		t.Error("empty series: got nil error")
	}
}

func TestParseSeries(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []float64
		wantErr bool
	}{
		{"plain", "100\n200.5\n", []float64{100, 200.5}, false},
		{"csv with header", "# from a trace\ntime,intensity\n2026-01-01T00:00:00Z,120\n2026-01-01T01:00:00Z,80\n", []float64{120, 80}, false},
		{"two headers", "a\nb\n1\n", nil, true},
		{"bad value later", "1\nx\n", nil, true},
		{"negative", "-3\n", nil, true},
		{"empty", "\n# nothing\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSeries(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err: got %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseSeries(f *testing.F) {
	f.Add("100\n200\n")
	f.Add("time,v\n2026-01-01T00:00:00Z,1e2\n")
	f.Add("NaN\n")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSeries(strings.NewReader(s))
		if err != nil {
			return
		}
		if _, err := Run(Input{Intensity: v[:min(len(v), 48)], ArrivalsPerHour: 2, Seed: 1}); err != nil {
			t.Fatalf("Run on a parsed series: %v", err)
		}
	})
}

func BenchmarkRun(b *testing.B) {
	in := Input{Intensity: dayCurve(30), ArrivalsPerHour: 100, ForecastErrorPct: 10, Seed: 1}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Run(in); err != nil {
			b.Fatal(err)
		}
	}
}
