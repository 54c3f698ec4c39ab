package static

import (
	"context"
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/google/go-cmp/cmp"
)

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{"ok", Options{Values: map[string]float64{"ES": 100}}, false},
		{"no values", Options{}, true},
		{"negative", Options{Values: map[string]float64{"ES": -1}}, true},
		{"nan", Options{Values: map[string]float64{"ES": math.NaN()}}, true},
		{"bad kind", Options{Values: map[string]float64{"ES": 1}, Kind: "median"}, true},
		{"short horizon", Options{Values: map[string]float64{"ES": 1}, Horizon: time.Minute}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if got := err != nil; got != tt.wantErr {
				t.Errorf("got error %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

func TestCurrentAndForecast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(90 * time.Minute) // the fake clock starts at midnight; move to 01:30
		p, err := New(Options{Values: map[string]float64{"ES": 120, "BR": 60}, Kind: carbon.Marginal, Name: "cfg"})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		now := time.Now()
		got, err := p.Current(ctx, "ES")
		if err != nil {
			t.Fatal(err)
		}
		want := carbon.Signal{Intensity: 120, Kind: carbon.Marginal, Source: "cfg", ObservedAt: now, ValidUntil: now.Add(time.Hour)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Current (-want +got):\n%s", diff)
		}
		f, err := p.Forecast(ctx, "BR")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(f.Points), 25; got != want {
			t.Fatalf("got %d points, want %d", got, want)
		}
		if got, want := f.Points[0].Start, now.Truncate(time.Hour); !got.Equal(want) {
			t.Errorf("got first point at %s, want %s", got, want)
		}
		w, err := carbon.BestWindow(f, 2*time.Hour, now, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if !w.Start.Equal(now) || w.Intensity != 60 {
			t.Errorf("got best window %+v, want start now at 60", w)
		}
		if _, err := p.Current(ctx, "XX"); !errors.Is(err, carbon.ErrUnknownZone) {
			t.Errorf("got %v, want ErrUnknownZone", err)
		}
		if _, err := p.Forecast(ctx, "XX"); !errors.Is(err, carbon.ErrUnknownZone) {
			t.Errorf("got %v, want ErrUnknownZone", err)
		}
	})
}
