package replay

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/google/go-cmp/cmp"
)

const smallTrace = `# a comment
timestamp,region,g_kwh
2026-01-01T00:00:00Z,a,100
2026-01-01T01:00:00Z,a,50
2026-01-01T00:00:00Z,b,300
2026-01-01T02:00:00Z,a,10
2026-01-01T01:00:00Z,b,200
`

func mustParse(t testing.TB, data string, f Format, c Column) *Trace {
	t.Helper()
	tr, err := Parse(strings.NewReader(data), f, c)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestParseAegisFormat(t *testing.T) {
	tr := mustParse(t, smallTrace, FormatAuto, ColumnDirect)
	if diff := cmp.Diff([]string{"a", "b"}, tr.Zones()); diff != "" {
		t.Errorf("zones (-want +got):\n%s", diff)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	want := []carbon.Point{
		{Start: t0, Duration: time.Hour, Intensity: 100},
		{Start: t0.Add(time.Hour), Duration: time.Hour, Intensity: 50},
		{Start: t0.Add(2 * time.Hour), Duration: time.Hour, Intensity: 10},
	}
	if diff := cmp.Diff(want, tr.Points("a")); diff != "" {
		t.Errorf("points of a (-want +got):\n%s", diff)
	}
	if !tr.Start().Equal(t0) {
		t.Errorf("got start %s, want %s", tr.Start(), t0)
	}
}

func TestParseElectricityMapsExport(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "electricitymaps-excerpt.csv"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		format Format
		column Column
		zone   string
		want   []float64
	}{
		{"auto, direct", FormatAuto, ColumnDirect, "ES", []float64{82.99, 85.96, 86.46, 86.87}},
		{"explicit, LCA", FormatElectricityMaps, ColumnLCA, "ES", []float64{114.42, 117.69, 118.07, 118.8}},
		{"second zone", FormatElectricityMaps, ColumnDirect, "BR", []float64{29.17, 31.55, 32.96}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := Parse(bytes.NewReader(data), tt.format, tt.column)
			if err != nil {
				t.Fatal(err)
			}
			var got []float64
			for i, p := range tr.Points(tt.zone) {
				got = append(got, p.Intensity)
				if want := t0.Add(time.Duration(i) * time.Hour); !p.Start.Equal(want) || p.Duration != time.Hour {
					t.Errorf("point %d: got %s for %s, want %s for 1h", i, p.Start, p.Duration, want)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// The header's subscript ₂ may also be written as a plain 2.
	plain := strings.ReplaceAll(string(data), "CO₂", "CO2")
	if _, err := Parse(strings.NewReader(plain), FormatAuto, ColumnLCA); err != nil {
		t.Errorf("got %v for a header with CO2, want success", err)
	}
}

func TestParseErrorsNameLineAndColumn(t *testing.T) {
	const header = "timestamp,region,g_kwh\n"
	const emHeader = "Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (direct)\n"
	tests := []struct {
		name       string
		data       string
		format     Format
		wantLine   int
		wantColumn string
		wantText   string
	}{
		{"empty", "", FormatAuto, 1, "", "no header row"},
		{"comments only", "# nothing\n", FormatAuto, 1, "", "no header row"},
		{"unknown header", "when,where,what\n", FormatAuto, 1, "", "unknown trace format"},
		{"aegis header lacks column", "timestamp,zone,g_kwh\n", FormatAegis, 1, "", `lacks column "region"`},
		{"em header lacks the chosen column", "Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (LCA)\n", FormatElectricityMaps, 1, "", "(direct)"},
		{"no rows", header, FormatAuto, 1, "", "no data rows"},
		{"bad timestamp", header + "2026-01-01T00:00:00Z,a,1\n2026-01-01 01:00,a,2\n", FormatAuto, 3, "timestamp", "not an RFC 3339 timestamp"},
		{"bad value", header + "2026-01-01T00:00:00Z,a,lots\n", FormatAuto, 2, "g_kwh", `"lots" is not`},
		{"negative value", header + "2026-01-01T00:00:00Z,a,-3\n", FormatAuto, 2, "g_kwh", "non-negative"},
		{"NaN value", header + "2026-01-01T00:00:00Z,a,NaN\n", FormatAuto, 2, "g_kwh", "finite"},
		{"empty region", header + "2026-01-01T00:00:00Z,,3\n", FormatAuto, 2, "region", "empty"},
		{"too few fields", header + "2026-01-01T00:00:00Z,a\n", FormatAuto, 2, "", "2 fields, want at least 3"},
		{"duplicate timestamp", header + "2026-01-01T00:00:00Z,a,1\n2026-01-01T01:00:00Z,a,1\n2026-01-01T00:00:00Z,a,2\n", FormatAuto, 4, "timestamp", "two rows"},
		{"csv syntax", header + "2026-01-01T00:00:00Z,\"a,1\n", FormatAuto, 2, "", "extraneous or missing"},
		{"em bad time", emHeader + "2023-01-01T00:00,ES,1\n", FormatAuto, 2, "Datetime (UTC)", "neither"},
		{"comment lines count", header + "# note\n\n2026-01-01T00:00:00Z,a,x\n", FormatAuto, 4, "g_kwh", "not a finite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.data), tt.format, ColumnDirect)
			pe, ok := errors.AsType[*ParseError](err)
			if !ok {
				t.Fatalf("got %v, want a *ParseError", err)
			}
			if pe.Line != tt.wantLine || pe.Column != tt.wantColumn || !strings.Contains(pe.Error(), tt.wantText) {
				t.Errorf("got line %d column %q: %q, want line %d column %q containing %q", pe.Line, pe.Column, pe.Error(), tt.wantLine, tt.wantColumn, tt.wantText)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no data", Options{}, "data: empty trace"},
		{"bad data", Options{Data: []byte("x,y\n")}, "line 1"},
		{"negative speed", Options{Data: []byte(smallTrace), Speed: -1}, "speed: -1"},
		{"bad kind", Options{Data: []byte(smallTrace), Kind: "median"}, `kind: "median"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// clock is an injectable wall clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestReplayMapsTimeAndLoops(t *testing.T) {
	w0 := time.Date(2030, 5, 5, 12, 0, 0, 0, time.UTC)
	c := &clock{now: w0}
	p, err := New(Options{Data: []byte(smallTrace), Speed: 60, Now: c.Now, Name: "trace"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name     string
		at       time.Duration // wall time after w0
		zone     string
		want     float64
		observed time.Duration // wall ObservedAt after w0
	}{
		{"first point", 0, "a", 100, 0},
		{"second point after one wall minute", 90 * time.Second, "a", 50, time.Minute},
		{"last point", 179 * time.Second, "a", 10, 2 * time.Minute},
		{"loops at the end", 3*time.Minute + time.Second, "a", 100, 3 * time.Minute},
		{"second loop", 7 * time.Minute, "a", 50, 7 * time.Minute},
		{"zone with its own span", 150 * time.Second, "b", 300, 2 * time.Minute},
		{"before the start loops backwards", -30 * time.Second, "a", 10, -time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.now = w0.Add(tt.at)
			sig, err := p.Current(ctx, tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			want := carbon.Signal{Intensity: tt.want, Kind: carbon.Average, Source: "trace",
				ObservedAt: w0.Add(tt.observed), ValidUntil: w0.Add(tt.observed + time.Minute)}
			if diff := cmp.Diff(want, sig); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := p.Current(ctx, "zz"); !errors.Is(err, carbon.ErrUnknownZone) {
		t.Errorf("got %v, want ErrUnknownZone", err)
	}
	if got, want := p.TraceTime(w0.Add(time.Minute)), time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("got trace time %s, want %s", got, want)
	}
}

func TestReplayForecastIsCompressedAndContiguous(t *testing.T) {
	w0 := time.Date(2030, 5, 5, 12, 0, 0, 0, time.UTC)
	c := &clock{now: w0.Add(30 * time.Second)}
	p, err := New(Options{Data: []byte(smallTrace), Speed: 60, Now: c.Now, WallStart: w0, Horizon: 5 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.Forecast(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	for i, pt := range f.Points {
		got = append(got, pt.Intensity)
		if want := w0.Add(time.Duration(i) * time.Minute); !pt.Start.Equal(want) || pt.Duration != time.Minute {
			t.Errorf("point %d: got %s for %s, want %s for 1m", i, pt.Start, pt.Duration, want)
		}
	}
	// Trace now is 00:30; five trace hours ahead is 05:30: six points, looping after 02:00.
	if diff := cmp.Diff([]float64{100, 50, 10, 100, 50, 10}, got); diff != "" {
		t.Errorf("forecast values (-want +got):\n%s", diff)
	}
	// A job of two wall minutes is two trace hours: best is 50 then 10.
	w, err := carbon.BestWindow(f, 2*time.Minute, c.now, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Start.Equal(w0.Add(time.Minute)) || w.Intensity != 30 {
		t.Errorf("got best window %+v, want start at w0+1m with 30", w)
	}
}

// TestSampleRankingsCross checks that in the embedded sample each region is
// the cleanest at some hour and the cleanest region changes during the days,
// so that carbon routing visibly switches.
func TestSampleRankingsCross(t *testing.T) {
	tr, err := Parse(bytes.NewReader(Sample()), FormatAegis, ColumnDirect)
	if err != nil {
		t.Fatal(err)
	}
	regions := []string{"eu-south", "sa-east", "us-west"}
	if diff := cmp.Diff(regions, tr.Zones()); diff != "" {
		t.Fatalf("zones (-want +got):\n%s", diff)
	}
	series := map[string][]carbon.Point{}
	for _, r := range regions {
		series[r] = tr.Points(r)
		if len(series[r]) != 72 {
			t.Fatalf("%s: got %d hourly points, want 72", r, len(series[r]))
		}
	}
	wins := map[string]int{}
	switches, prev := 0, ""
	for i := range 72 {
		best := regions[0]
		for _, r := range regions[1:] {
			if series[r][i].Intensity < series[best][i].Intensity {
				best = r
			}
		}
		wins[best]++
		if prev != "" && best != prev {
			switches++
		}
		prev = best
	}
	for _, r := range regions {
		if wins[r] == 0 {
			t.Errorf("%s is never the cleanest region, want it to be at some hour", r)
		}
	}
	if switches < 4 {
		t.Errorf("got %d switches of the cleanest region, want at least 4", switches)
	}
	if !bytes.HasPrefix(Sample(), []byte("# Aegis-Flow demo carbon trace")) || !bytes.Contains(Sample(), []byte("ODbL")) {
		t.Error("sample lacks its attribution header")
	}
}

// TestSampleDrivesTracker replays the sample at 60x through a Tracker and
// checks that the tracker follows each hourly point within a second of
// wall time.
func TestSampleDrivesTracker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := NewSample(Options{Speed: 60})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := carbon.NewTracker(carbon.TrackerOptions{Regions: []carbon.RegionSource{
			{Region: "us-west", Zone: "us-west", Providers: []carbon.ProviderZone{{Provider: p}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- tr.Run(ctx) }()
		pts, _ := Parse(bytes.NewReader(Sample()), FormatAegis, ColumnDirect)
		want := pts.Points("us-west")
		start := time.Now()
		for n := range 10 {
			time.Sleep(time.Until(start.Add(time.Duration(n)*time.Minute + 1500*time.Millisecond)))
			synctest.Wait()
			r, ok := tr.Current("us-west")
			if !ok || r.Level != carbon.Live || r.Signal.Intensity != want[n].Intensity {
				t.Errorf("minute %d: got %v %s ok=%v, want live %v", n, r.Signal.Intensity, r.Level, ok, want[n].Intensity)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(smallTrace))
	f.Add(Sample()[:600])
	if b, err := os.ReadFile(filepath.Join("testdata", "electricitymaps-excerpt.csv")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("timestamp,region,g_kwh\n2026-01-01T00:00:00Z,a,1e308\n"))
	f.Add([]byte("Datetime (UTC),Zone Id,Carbon Intensity gCO2eq/kWh (direct)\n2023-01-01 00:00:00,ES,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Parse(bytes.NewReader(data), FormatAuto, ColumnDirect)
		if err != nil {
			if _, ok := errors.AsType[*ParseError](err); !ok {
				t.Fatalf("got %T %v, want a *ParseError", err, err)
			}
			return
		}
		for _, z := range tr.Zones() {
			pts := tr.Points(z)
			if len(pts) == 0 {
				t.Fatalf("zone %q has no points", z)
			}
			for i, p := range pts {
				if p.Duration <= 0 || (i > 0 && !p.Start.Equal(pts[i-1].End())) {
					t.Fatalf("zone %q point %d: %+v not contiguous with positive duration", z, i, p)
				}
			}
		}
	})
}

func TestParseNames(t *testing.T) {
	for _, f := range []Format{FormatAuto, FormatAegis, FormatElectricityMaps} {
		if got, err := ParseFormat(f.String()); err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", f.String(), got, err, f)
		}
	}
	for _, c := range []Column{ColumnDirect, ColumnLCA} {
		if got, err := ParseColumn(c.String()); err != nil || got != c {
			t.Errorf("ParseColumn(%q) = %v, %v; want %v", c.String(), got, err, c)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("got no error for format xml")
	}
	if _, err := ParseColumn("median"); err == nil {
		t.Error("got no error for column median")
	}
}
