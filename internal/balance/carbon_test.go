package balance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// mixedEndpoints is 16 endpoints in three regions with weights 1..3.
func mixedEndpoints() []EndpointOptions {
	var eps []EndpointOptions
	for i := range 16 {
		r := []string{"a", "b", "c"}[i%3]
		eps = append(eps, EndpointOptions{Address: fmt.Sprintf("%s-%d:80", r, i), Region: r, Weight: 1 + i%3})
	}
	return eps
}

func TestCarbonEqualsLeastRequest(t *testing.T) {
	mixedKinds := intensities("average", "a", 100, "b", 300)
	mixedKinds.set("c", 50, "marginal")
	tests := []struct {
		name string
		src  IntensitySource
	}{
		{name: "no source", src: nil},
		{name: "flat", src: intensities("average", "a", 300, "b", 300, "c", 300)},
		{name: "one region unknown", src: intensities("average", "a", 100, "b", 300)},
		{name: "kinds differ", src: mixedKinds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			mk := func(p Policy) *Cluster {
				return mustNew(t, Options{Policy: p, Endpoints: mixedEndpoints(), Intensity: tt.src,
					TestOnlyRand: seeded(7), TestOnlyNow: clock.Now})
			}
			lr, cb := mk(LeastRequest), mk(Carbon)
			ops := rand.New(seeded(99))
			var heldLR, heldCB []*Endpoint
			for i := range 20000 {
				clock.Advance(time.Millisecond)
				e1, _ := pick(t, lr)
				e2, d := pick(t, cb)
				if e1.Address() != e2.Address() {
					t.Fatalf("pick %d: got carbon %s, least_request %s; want the same", i, e2.Address(), e1.Address())
				}
				if d.CarbonAware || d.LeastRequest.Region != d.Region {
					t.Fatalf("pick %d: got decision %+v, want a least_request fallback", i, d)
				}
				o := Outcome{Latency: time.Duration(1+ops.IntN(50)) * time.Millisecond}
				switch ops.IntN(4) {
				case 0: // keep both in flight
					heldLR, heldCB = append(heldLR, e1), append(heldCB, e2)
				default:
					e1.Done(o)
					e2.Done(o)
				}
				if len(heldLR) > 0 && ops.IntN(3) == 0 {
					k := ops.IntN(len(heldLR))
					heldLR[k].Done(o)
					heldCB[k].Done(o)
					heldLR = slices.Delete(heldLR, k, k+1)
					heldCB = slices.Delete(heldCB, k, k+1)
				}
			}
		})
	}
}

// simRegion is one region of a simulated cluster.
type simRegion struct {
	name      string
	intensity int
	latency   time.Duration
}

type simResult struct {
	gramsPerRequest float64
	p99             time.Duration
	picks           map[string]int // over the second half
	shareSteps      [][]float64    // applied shares after each change
	minDirtyShare   float64
}

// simulate drives a cluster with n requests at 500 per second on a fake
// clock; each request takes its region's latency plus up to 10ms of jitter.
func simulate(t *testing.T, p Policy, regions []simRegion, n int, co CarbonOptions) simResult {
	t.Helper()
	clock := newFakeClock()
	src := intensities("average")
	var names []string
	lat := map[string]time.Duration{}
	for _, r := range regions {
		src.set(r.name, float64(r.intensity), "average")
		names = append(names, r.name)
		lat[r.name] = r.latency
	}
	co.RequestJoules = 3600 // 1e-3 kWh per request: grams = intensity / 1000
	c := mustNew(t, Options{Policy: p, Endpoints: endpoints(2, names...), Intensity: src,
		TestOnlyRand: seeded(11), TestOnlyNow: clock.Now, Carbon: co})
	jitter := rand.New(seeded(12))
	type flight struct {
		end time.Time
		ep  *Endpoint
		lat time.Duration
	}
	var inflight []flight
	var grams float64
	lats := make([]time.Duration, 0, n)
	res := simResult{picks: map[string]int{}, minDirtyShare: 1}
	var last []float64
	for i := range n {
		clock.Advance(2 * time.Millisecond)
		now := clock.Now()
		inflight = slices.DeleteFunc(inflight, func(f flight) bool {
			if f.end.After(now) {
				return false
			}
			f.ep.Done(Outcome{Result: Success, Latency: f.lat})
			return true
		})
		ep, d := pick(t, c)
		l := lat[ep.Region()] + time.Duration(jitter.Int64N(int64(10*time.Millisecond)))
		inflight = append(inflight, flight{end: now.Add(l), ep: ep, lat: l})
		lats = append(lats, l)
		grams += d.Intensity / 1000
		if i >= n/2 {
			res.picks[ep.Region()]++
		}
		if p == Carbon {
			cur := c.shareSlice() // regions are in names order
			if !slices.Equal(cur, last) {
				res.shareSteps = append(res.shareSteps, cur)
				last = cur
			}
			res.minDirtyShare = min(res.minDirtyShare, cur[0])
		}
	}
	slices.Sort(lats)
	res.p99 = lats[len(lats)*99/100]
	res.gramsPerRequest = grams / float64(n)
	return res
}

func TestCarbonAcceptance(t *testing.T) {
	regions := []simRegion{
		{name: "dirty", intensity: 450, latency: 20 * time.Millisecond},
		{name: "middle", intensity: 250, latency: 35 * time.Millisecond},
		{name: "clean", intensity: 50, latency: 60 * time.Millisecond},
	}
	co := CarbonOptions{MaxAddedLatency: 50 * time.Millisecond}
	lr := simulate(t, LeastRequest, regions, 40000, co)
	cb := simulate(t, Carbon, regions, 40000, co)
	cut := 1 - cb.gramsPerRequest/lr.gramsPerRequest
	t.Logf("grams/request: least_request %.4f, carbon %.4f (cut %.0f%%); p99 %s vs %s",
		lr.gramsPerRequest, cb.gramsPerRequest, 100*cut, lr.p99, cb.p99)
	if cut < 0.30 {
		t.Errorf("got a %.0f%% cut in grams per request, want at least 30%%", 100*cut)
	}
	if added := cb.p99 - lr.p99; added > co.MaxAddedLatency {
		t.Errorf("got p99 %s under carbon vs %s under least_request (+%s), want at most +%s",
			cb.p99, lr.p99, added, co.MaxAddedLatency)
	}

	// Guardrails over the run: shares start at the least_request split, move
	// at most 5 points per step and never take the dirty region below 5%.
	if len(cb.shareSteps) == 0 {
		t.Fatal("got no share history")
	}
	opt := cmpopts.EquateApprox(0, 1e-9)
	if diff := cmp.Diff([]float64{1.0 / 3, 1.0 / 3, 1.0 / 3}, cb.shareSteps[0], opt); diff != "" {
		t.Errorf("initial shares mismatch (-want +got):\n%s", diff)
	}
	for i := 1; i < len(cb.shareSteps); i++ {
		for k := range regions {
			if d := math.Abs(cb.shareSteps[i][k] - cb.shareSteps[i-1][k]); d > 0.05+1e-9 {
				t.Fatalf("step %d: got a share change of %.4f in %s, want at most 0.05", i, d, regions[k].name)
			}
		}
	}
	if cb.minDirtyShare < 0.05-1e-9 {
		t.Errorf("got a minimum dirty share of %.4f, want at least 0.05", cb.minDirtyShare)
	}
	if got := float64(cb.picks["dirty"]) / 20000; got < 0.035 {
		t.Errorf("got %.3f of late picks in the dirty region, want about 0.05 (min share)", got)
	}
}

func TestCarbonLatencyBudget(t *testing.T) {
	regions := []simRegion{
		{name: "dirty", intensity: 450, latency: 20 * time.Millisecond},
		{name: "clean", intensity: 50, latency: 120 * time.Millisecond}, // 100ms above: outside the budget
		{name: "near", intensity: 300, latency: 30 * time.Millisecond},
	}
	cb := simulate(t, Carbon, regions, 30000, CarbonOptions{MaxAddedLatency: 50 * time.Millisecond})
	final := cb.shareSteps[len(cb.shareSteps)-1]
	t.Logf("final shares %v, late picks %v", final, cb.picks)
	if got := final[1]; math.Abs(got-0.05) > 1e-9 {
		t.Errorf("got share %.4f for the region beyond the latency budget, want the minimum 0.05", got)
	}
	if final[2] <= final[0] {
		t.Errorf("got near %.3f <= dirty %.3f, want the cleaner region within budget preferred", final[2], final[0])
	}
}

func TestCarbonUnhealthyRegionLosesShare(t *testing.T) {
	clock := newFakeClock()
	c := mustNew(t, Options{Policy: Carbon, Endpoints: endpoints(1, "dirty", "clean"),
		Intensity: intensities("average", "dirty", 400, "clean", 100), TestOnlyNow: clock.Now})
	for range 30 {
		clock.Advance(time.Second)
		ep, _ := pick(t, c)
		ep.Done(Outcome{Latency: time.Millisecond})
	}
	clean := byAddress(c, "clean-0:80")
	for range 3 {
		clean.active.Add(1)
		c.active.Add(1)
		clean.Done(Outcome{Result: ConnectFailure})
	}
	for range 50 {
		ep, d := pick(t, c)
		if ep.Region() != "dirty" || d.CarbonAware {
			t.Fatalf("got %s (carbon-aware %v), want dirty by fallback while clean is ejected", ep.Region(), d.CarbonAware)
		}
		ep.Done(Outcome{})
	}
	clock.Advance(10 * time.Second)
	ep, _ := pick(t, c)
	ep.Done(Outcome{})
	if got := c.Shares()["clean"]; got != 0.05 {
		t.Errorf("got share %.3f for the readmitted region, want its minimum 0.05, then a ramp", got)
	}
}

func TestCarbonDecision(t *testing.T) {
	clock := newFakeClock()
	c := mustNew(t, Options{Policy: Carbon, Endpoints: endpoints(2, "a", "b", "c"),
		Intensity: intensities("marginal", "a", 450, "b", 250, "c", 50), TestOnlyNow: clock.Now,
		TestOnlyRand: seeded(5), Carbon: CarbonOptions{RequestJoules: 36}})
	var avoided float64
	for range 2000 {
		clock.Advance(10 * time.Millisecond)
		ep, d := pick(t, c)
		ep.Done(Outcome{Latency: 5 * time.Millisecond})
		want := map[string]float64{"a": 450, "b": 250, "c": 50}
		if !d.CarbonAware || !d.Known || d.Kind != "marginal" || d.Intensity != want[d.Region] || d.Region != ep.Region() {
			t.Fatalf("got decision %+v for %s, want carbon-aware, known, marginal %v", d, ep.Region(), want[d.Region])
		}
		if diff := cmp.Diff(RegionIntensity{"c", 50}, d.Best); diff != "" {
			t.Fatalf("best mismatch (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(RegionIntensity{"a", 450}, d.Worst); diff != "" {
			t.Fatalf("worst mismatch (-want +got):\n%s", diff)
		}
		if w := 1e-5 * (want[d.LeastRequest.Region] - d.Intensity); math.Abs(d.AvoidedGrams-w) > 1e-12 || d.Avoided(36) != d.AvoidedGrams {
			t.Fatalf("got avoided %g (Avoided(36) %g), want %g", d.AvoidedGrams, d.Avoided(36), w)
		}
		avoided += d.AvoidedGrams
	}
	if avoided <= 0 {
		t.Errorf("got %g grams avoided in total, want a positive saving", avoided)
	}
}

func TestLocality(t *testing.T) {
	clock := newFakeClock()
	c := mustNew(t, Options{Policy: LeastRequest, LocalZone: "z1", TestOnlyNow: clock.Now, Endpoints: []EndpointOptions{
		{Address: "a-0:80", Region: "a", Zone: "z1"},
		{Address: "a-1:80", Region: "a", Zone: "z2"},
		{Address: "b-0:80", Region: "b", Zone: "z3"},
	}})
	for range 100 {
		ep, _ := pick(t, c)
		if ep.Address() != "a-0:80" {
			t.Fatalf("got %s, want only the local-zone endpoint", ep.Address())
		}
		ep.Done(Outcome{Latency: 200 * time.Millisecond})
	}
	// The other endpoints are 190ms faster: locality gives way.
	for _, addr := range []string{"a-1:80", "b-0:80"} {
		e := byAddress(c, addr)
		e.active.Add(1)
		c.active.Add(1)
		e.Done(Outcome{Latency: 10 * time.Millisecond})
	}
	clock.Advance(time.Second)
	seen := map[string]bool{}
	for range 100 {
		ep, _ := pick(t, c)
		seen[ep.Address()] = true
		ep.Done(Outcome{})
	}
	if diff := cmp.Diff(map[string]bool{"a-0:80": true, "a-1:80": true, "b-0:80": true}, seen); diff != "" {
		t.Errorf("endpoints used without locality mismatch (-want +got):\n%s", diff)
	}
}

func TestCarbonLocality(t *testing.T) {
	clock := newFakeClock()
	c := mustNew(t, Options{Policy: Carbon, LocalZone: "z1", TestOnlyNow: clock.Now, TestOnlyRand: seeded(4),
		Intensity: intensities("average", "a", 300, "b", 100),
		Endpoints: []EndpointOptions{
			{Address: "a-0:80", Region: "a", Zone: "z1"},
			{Address: "a-1:80", Region: "a", Zone: "z2"},
			{Address: "b-0:80", Region: "b", Zone: "z3"},
		}})
	counts := map[string]int{}
	for range 3000 {
		clock.Advance(10 * time.Millisecond)
		ep, d := pick(t, c)
		if !d.CarbonAware {
			t.Fatalf("got a fallback decision %+v, want carbon-aware", d)
		}
		counts[ep.Address()]++
		ep.Done(Outcome{Latency: 5 * time.Millisecond})
	}
	if counts["a-1:80"] != 0 || counts["a-0:80"] == 0 || counts["b-0:80"] <= counts["a-0:80"] {
		t.Errorf("got counts %v, want region a served by its local-zone endpoint only and b preferred", counts)
	}
}

func TestConcurrentUse(t *testing.T) {
	src := intensities("average", "a", 300, "b", 100, "c", 50)
	c := mustNew(t, Options{Policy: Carbon, Endpoints: endpoints(3, "a", "b", "c"), Intensity: src,
		Carbon:  CarbonOptions{Interval: 10 * time.Millisecond},
		Outlier: OutlierOptions{BaseEjectionTime: 5 * time.Millisecond, MaxEjectionTime: 20 * time.Millisecond}})
	ctx, cancel := context.WithCancel(t.Context())
	var run sync.WaitGroup
	run.Go(func() {
		if err := c.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var wg sync.WaitGroup
	results := []Result{Success, Success, Success, ConnectFailure, GatewayError, ServerError, Canceled}
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(seeded(uint64(g)))
			for i := range 3000 {
				ep, _, err := c.Pick()
				if err != nil {
					if !errors.Is(err, ErrNoHealthyEndpoint) {
						t.Errorf("Pick: %v", err)
						return
					}
					continue
				}
				if i%500 == 0 {
					src.set("a", float64(r.IntN(500)), "average")
				}
				ep.Done(Outcome{Result: results[r.IntN(len(results))], Latency: time.Duration(r.IntN(5000)) * time.Microsecond})
			}
		})
	}
	wg.Wait()
	cancel()
	run.Wait()
	if got := c.Stats().ActiveRequests; got != 0 {
		t.Errorf("got %d active requests after all Done, want 0", got)
	}
	var sum float64
	for _, v := range c.Shares() {
		sum += v
	}
	want := 1.0
	if c.Stats().Healthy == 0 {
		want = 0 // everything ejected at the end: no traffic to share
	}
	if math.Abs(sum-want) > 1e-9 {
		t.Errorf("got shares summing to %v, want %v", sum, want)
	}
}
