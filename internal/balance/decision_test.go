package balance

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDecisionIntensityInFallback checks that a pick reports its region's
// intensity whenever the snapshot knows it, for every policy, including the
// carbon policy's least_request fallbacks.
func TestDecisionIntensityInFallback(t *testing.T) {
	mixedKinds := intensities("average", "a", 100, "b", 300)
	mixedKinds.set("c", 50, "marginal")
	tests := []struct {
		name    string
		regions []string
		src     *staticIntensity
	}{
		{name: "flat", regions: []string{"a", "b", "c"}, src: intensities("average", "a", 300, "b", 300, "c", 300)},
		{name: "kinds differ", regions: []string{"a", "b", "c"}, src: mixedKinds},
		{name: "one region", regions: []string{"a"}, src: intensities("marginal", "a", 420)},
		{name: "one region unknown", regions: []string{"a", "b", "c"}, src: intensities("average", "a", 100, "b", 300)},
		{name: "comparable", regions: []string{"a", "b", "c"}, src: intensities("average", "a", 100, "b", 300, "c", 50)},
	}
	for _, tt := range tests {
		for _, p := range []Policy{Carbon, LeastRequest, RoundRobin} {
			t.Run(tt.name+"/"+string(p), func(t *testing.T) {
				c := mustNew(t, Options{Policy: p, Endpoints: endpoints(2, tt.regions...), Intensity: tt.src,
					TestOnlyRand: seeded(3)})
				seen := map[string]bool{}
				for range 300 {
					ep, d := pick(t, c)
					ep.Done(Outcome{})
					seen[d.Region] = true
					v, kind, ok := tt.src.Intensity(ep.Region())
					want := Decision{Region: ep.Region(), Intensity: v, Kind: kind, Known: ok}
					got := Decision{Region: d.Region, Intensity: d.Intensity, Kind: d.Kind, Known: d.Known}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Fatalf("decision's intensity mismatch (-want +got):\n%s", diff)
					}
					if wantAware := p == Carbon && tt.name == "comparable"; d.CarbonAware != wantAware {
						t.Fatalf("got CarbonAware %v, want %v", d.CarbonAware, wantAware)
					}
				}
				if len(seen) != len(tt.regions) {
					t.Errorf("got picks in regions %v, want all of %v", seen, tt.regions)
				}
			})
		}
	}
}

// countingIntensity counts reads and answers from a map that tests change.
type countingIntensity struct {
	mu    sync.Mutex
	m     map[string]float64
	reads int
}

func (s *countingIntensity) Intensity(region string) (float64, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	v, ok := s.m[region]
	if !ok {
		return 0, "", false
	}
	return v, "average", true
}

func (s *countingIntensity) set(region string, v float64) {
	s.mu.Lock()
	s.m[region] = v
	s.mu.Unlock()
}

func (s *countingIntensity) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// TestFirstPickReadsLateSource checks that a source which learns its values
// after the cluster is built (a carbon tracker before its first signal) is
// read again by the first pick, so the first request carries the intensity.
func TestFirstPickReadsLateSource(t *testing.T) {
	for _, p := range []Policy{Carbon, LeastRequest, RoundRobin} {
		t.Run(string(p), func(t *testing.T) {
			clock := newFakeClock()
			src := &countingIntensity{m: map[string]float64{}}
			c := mustNew(t, Options{Policy: p, Endpoints: endpoints(1, "a", "b"), Intensity: src,
				TestOnlyNow: clock.Now})
			src.set("a", 120)
			src.set("b", 80)
			ep, d := pick(t, c)
			ep.Done(Outcome{})
			if !d.Known || d.Intensity != src.m[ep.Region()] || d.Kind != "average" {
				t.Errorf("first pick: got decision %+v, want the intensity the source learned after New", d)
			}
		})
	}
}

// TestUnknownRetryBacksOff checks the re-read cadence while a region is
// unknown: at once on the first pick, then after 10ms, 20ms, 40ms ... up to
// the interval; once every region is known, once per interval.
func TestUnknownRetryBacksOff(t *testing.T) {
	clock := newFakeClock()
	src := &countingIntensity{m: map[string]float64{"a": 100}} // "b" unknown
	c := mustNew(t, Options{Policy: Carbon, Endpoints: endpoints(1, "a", "b"), Intensity: src,
		TestOnlyNow: clock.Now, Carbon: CarbonOptions{Interval: 100 * time.Millisecond}})
	// rebuilds returns the times (ms after New) at which the source was read
	// while picking every millisecond until end.
	var at []int
	ms := 0
	rebuilds := func(end int) {
		for ; ms <= end; ms++ {
			before := src.readCount()
			ep, _ := pick(t, c)
			ep.Done(Outcome{})
			if src.readCount() != before {
				at = append(at, ms)
			}
			clock.Advance(time.Millisecond)
		}
	}
	rebuilds(400)
	want := []int{0, 10, 30, 70, 150, 250, 350}
	if diff := cmp.Diff(want, at); diff != "" {
		t.Errorf("re-reads while b is unknown (ms) mismatch (-want +got):\n%s", diff)
	}

	src.set("b", 50)
	at = nil
	rebuilds(800)
	want = []int{450, 550, 650, 750}
	if diff := cmp.Diff(want, at); diff != "" {
		t.Errorf("re-reads once all are known (ms) mismatch (-want +got):\n%s", diff)
	}

	// A region that becomes unknown again (found at the 850ms read) restarts
	// the back-off: a re-read at the next pick, then 10ms, 20ms, 40ms ...
	src.mu.Lock()
	delete(src.m, "a")
	src.mu.Unlock()
	at = nil
	rebuilds(1000)
	want = []int{850, 851, 861, 881, 921}
	if diff := cmp.Diff(want, at); diff != "" {
		t.Errorf("re-reads after a region is lost (ms) mismatch (-want +got):\n%s", diff)
	}
}
