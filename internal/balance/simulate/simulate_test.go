package simulate

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aegis-flow/aegis/internal/balance"
)

func flat(n int, v float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func threeRegions() []Region {
	return []Region{
		{Name: "dirty", Latency: 20 * time.Millisecond},
		{Name: "middle", Latency: 35 * time.Millisecond},
		{Name: "clean", Latency: 60 * time.Millisecond},
	}
}

func TestRunValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{name: "no regions", opts: Options{}, want: []string{"regions: none given"}},
		{
			name: "bad regions and series",
			opts: Options{
				Regions: []Region{{Name: "a"}, {Name: "b", Latency: time.Millisecond}, {Name: "c", Latency: time.Millisecond}},
				Intensity: map[string][]float64{
					"a": {1, 2}, "b": {1}, "c": {1, -2},
				},
				RequestsPerStep: -1,
			},
			want: []string{"regions[0].latency", `series for "b" has 1 points, want 2`, `"c" point 1 is -2`, "requests_per_step"},
		},
		{
			name: "missing series",
			opts: Options{Regions: []Region{{Name: "a", Latency: time.Millisecond}}},
			want: []string{`no series for region "a"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(t.Context(), tt.opts)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got error %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestRunCutsCarbon(t *testing.T) {
	opts := Options{
		Seed:    42,
		Regions: threeRegions(),
		Intensity: map[string][]float64{
			"dirty": flat(60, 450), "middle": flat(60, 250), "clean": flat(60, 50),
		},
		Step:            time.Minute,
		RequestsPerStep: 600,
		Carbon:          balanceCarbon(),
	}
	res, err := Run(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("least_request %.3g g/req p99 %s; carbon %.3g g/req p99 %s; oracle %.3g g/req; cut %.0f%%, oracle cut %.0f%%",
		res.LeastRequest.GramsPerRequest, res.LeastRequest.P99, res.Carbon.GramsPerRequest, res.Carbon.P99,
		res.Oracle.GramsPerRequest, 100*res.Reduction, 100*res.OracleReduction)
	if res.Reduction < 0.30 {
		t.Errorf("got a %.0f%% cut, want at least 30%%", 100*res.Reduction)
	}
	if res.AddedP99 > 50*time.Millisecond {
		t.Errorf("got added p99 %s, want at most 50ms", res.AddedP99)
	}
	if !(res.Oracle.GramsPerRequest <= res.Carbon.GramsPerRequest) {
		t.Errorf("got oracle %g above carbon %g grams per request, want oracle lowest",
			res.Oracle.GramsPerRequest, res.Carbon.GramsPerRequest)
	}
	if got, want := res.Oracle.Shares["clean"], 1.0; got != want {
		t.Errorf("got oracle clean share %v, want %v", got, want)
	}
	if n := res.LeastRequest.Requests; n < 34000 || n > 38000 {
		t.Errorf("got %d requests, want about 36000", n)
	}

	again, err := Run(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(res, again); diff != "" {
		t.Errorf("second run with the same seed differs (-first +second):\n%s", diff)
	}
}

func TestRunFollowsChangingIntensity(t *testing.T) {
	// The cleanest region rotates every step.
	var a, b, c []float64
	for i := range 24 {
		v := []float64{400, 200, 80}
		k := i % 3
		a = append(a, v[k])
		b = append(b, v[(k+1)%3])
		c = append(c, v[(k+2)%3])
	}
	regions := []Region{
		{Name: "a", Latency: 20 * time.Millisecond},
		{Name: "b", Latency: 25 * time.Millisecond},
		{Name: "c", Latency: 30 * time.Millisecond},
	}
	res, err := Run(t.Context(), Options{Seed: 7, Regions: regions, Intensity: map[string][]float64{"a": a, "b": b, "c": c},
		Step: time.Minute, RequestsPerStep: 600, Carbon: balanceCarbon()})
	if err != nil {
		t.Fatal(err)
	}
	lr, cb, or := res.LeastRequest.GramsPerRequest, res.Carbon.GramsPerRequest, res.Oracle.GramsPerRequest
	t.Logf("grams/request: least_request %.4g carbon %.4g oracle %.4g", lr, cb, or)
	if !(or < cb && cb < lr) {
		t.Errorf("got oracle %g, carbon %g, least_request %g; want oracle < carbon < least_request", or, cb, lr)
	}
}

func TestRunFlatIsLeastRequest(t *testing.T) {
	res, err := Run(t.Context(), Options{Seed: 3, Regions: threeRegions(),
		Intensity: map[string][]float64{"dirty": flat(10, 300), "middle": flat(10, 300), "clean": flat(10, 300)},
		Step:      time.Minute, RequestsPerStep: 300})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(res.LeastRequest, res.Carbon); diff != "" {
		t.Errorf("carbon differs from least_request with flat intensities (-lr +carbon):\n%s", diff)
	}
	if res.Reduction != 0 || res.AddedP99 != 0 {
		t.Errorf("got reduction %v, added p99 %s; want 0 and 0", res.Reduction, res.AddedP99)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Run(ctx, Options{Regions: threeRegions()[:1], Intensity: map[string][]float64{"dirty": {1}}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestFlightHeap(t *testing.T) {
	base := time.Unix(0, 0)
	var h []flight
	in := []int{5, 1, 9, 3, 3, 7, 0, 8}
	for _, s := range in {
		pushFlight(&h, flight{end: base.Add(time.Duration(s) * time.Second)})
	}
	var got []int
	for len(h) > 0 {
		got = append(got, int(popFlight(&h).end.Sub(base)/time.Second))
	}
	want := slices.Clone(in)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("heap order mismatch (-want +got):\n%s", diff)
	}
}

func balanceCarbon() balance.CarbonOptions {
	return balance.CarbonOptions{MaxAddedLatency: 50 * time.Millisecond}
}
