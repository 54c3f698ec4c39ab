package simulate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/aegis-flow/aegis/internal/balance"
)

// Region is one simulated region of the upstream cluster.
type Region struct {
	// Name is the region's name; it keys Options.Intensity.
	Name string
	// Latency is the region's base request latency. Required, positive.
	Latency time.Duration
	// Jitter is the largest extra latency, drawn uniformly per request
	// (default Latency/10; negative means none).
	Jitter time.Duration
	// Endpoints is the number of endpoints in the region (default 2).
	Endpoints int
}

// Options configures a run. Zero values are the documented defaults.
type Options struct {
	// Seed makes the run reproducible.
	Seed uint64
	// Regions are the cluster's regions. At least one is required.
	Regions []Region
	// Intensity is each region's intensity series in gCO2eq/kWh, one value
	// per Step; every region needs a series and all series have one length.
	Intensity map[string][]float64
	// Kind is the kind of every series (default "average").
	Kind string
	// Step is the length of one series point (default 1h).
	Step time.Duration
	// RequestsPerStep is the mean number of requests per point, arriving as
	// a Poisson stream (default 3600).
	RequestsPerStep int
	// RequestJoules is the energy of one request (default 1 J); grams per
	// request scale with it.
	RequestJoules float64
	// Carbon are the carbon policy's guardrails (balance defaults apply).
	Carbon balance.CarbonOptions
}

// PolicyResult is the outcome of one policy over the run.
type PolicyResult struct {
	// Requests is the number of requests served.
	Requests int
	// GramsPerRequest is the mean gCO2eq per request.
	GramsPerRequest float64
	// MeanIntensity is the mean intensity of the serving region, g/kWh.
	MeanIntensity float64
	// P50 and P99 are latency percentiles.
	P50, P99 time.Duration
	// Shares is the fraction of requests served per region.
	Shares map[string]float64
}

// Result compares the policies.
type Result struct {
	// Steps is the number of series points replayed.
	Steps                        int
	LeastRequest, Carbon, Oracle PolicyResult
	// Reduction is 1 - carbon grams / least_request grams.
	Reduction float64
	// OracleReduction is 1 - oracle grams / least_request grams.
	OracleReduction float64
	// AddedP99 is carbon's p99 latency minus least_request's.
	AddedP99 time.Duration
}

// ErrInvalid is wrapped by Run's errors about bad Options.
var ErrInvalid = errors.New("invalid simulation options")

// Run replays the series under each policy and compares them.
func Run(ctx context.Context, o Options) (Result, error) {
	o, steps, err := o.withDefaults()
	if err != nil {
		return Result{}, err
	}
	res := Result{Steps: steps}
	if res.LeastRequest, err = run(ctx, o, steps, balance.LeastRequest); err != nil {
		return Result{}, err
	}
	if res.Carbon, err = run(ctx, o, steps, balance.Carbon); err != nil {
		return Result{}, err
	}
	if res.Oracle, err = run(ctx, o, steps, "oracle"); err != nil {
		return Result{}, err
	}
	if lr := res.LeastRequest.GramsPerRequest; lr > 0 {
		res.Reduction = 1 - res.Carbon.GramsPerRequest/lr
		res.OracleReduction = 1 - res.Oracle.GramsPerRequest/lr
	}
	res.AddedP99 = res.Carbon.P99 - res.LeastRequest.P99
	return res, nil
}

func (o Options) withDefaults() (Options, int, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(o.Regions) == 0 {
		bad("regions: none given")
	}
	if o.Kind == "" {
		o.Kind = "average"
	}
	if o.Step == 0 {
		o.Step = time.Hour
	} else if o.Step < 0 {
		bad("step: %s is negative", o.Step)
	}
	if o.RequestsPerStep == 0 {
		o.RequestsPerStep = 3600
	} else if o.RequestsPerStep < 0 {
		bad("requests_per_step: %d is negative", o.RequestsPerStep)
	}
	if o.RequestJoules == 0 {
		o.RequestJoules = 1
	} else if !(o.RequestJoules > 0) || math.IsInf(o.RequestJoules, 0) {
		bad("request_joules: %g is not a positive number", o.RequestJoules)
	}
	regions := slices.Clone(o.Regions)
	steps := -1
	seen := map[string]bool{}
	for i := range regions {
		r := &regions[i]
		if seen[r.Name] {
			bad("regions[%d]: %q is listed twice", i, r.Name)
		}
		seen[r.Name] = true
		if r.Latency <= 0 {
			bad("regions[%d].latency: %s is not positive", i, r.Latency)
		}
		switch {
		case r.Jitter == 0:
			r.Jitter = r.Latency / 10
		case r.Jitter < 0:
			r.Jitter = 0
		}
		if r.Endpoints == 0 {
			r.Endpoints = 2
		} else if r.Endpoints < 0 {
			bad("regions[%d].endpoints: %d is negative", i, r.Endpoints)
		}
		s, ok := o.Intensity[r.Name]
		switch {
		case !ok || len(s) == 0:
			bad("intensity: no series for region %q", r.Name)
			continue
		case steps >= 0 && len(s) != steps:
			bad("intensity: series for %q has %d points, want %d like the others", r.Name, len(s), steps)
		}
		steps = len(s)
		for k, v := range s {
			if !(v >= 0) || math.IsInf(v, 0) {
				bad("intensity: %q point %d is %g, not a non-negative number", r.Name, k, v)
				break
			}
		}
	}
	o.Regions = regions
	if err := errors.Join(errs...); err != nil {
		return o, 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return o, steps, nil
}

// clock is the simulated time, shared by the cluster and the series.
type clock struct {
	start, now time.Time
}

func (c *clock) Now() time.Time { return c.now }

// series is the IntensitySource of a run: the point for the current step.
type series struct {
	clk  *clock
	step time.Duration
	data map[string][]float64
	kind string
}

func (s *series) index() int { return int(s.clk.now.Sub(s.clk.start) / s.step) }

func (s *series) Intensity(region string) (float64, string, bool) {
	d, ok := s.data[region]
	if !ok {
		return 0, "", false
	}
	return d[min(s.index(), len(d)-1)], s.kind, true
}

type flight struct {
	end time.Time
	ep  *balance.Endpoint
	lat time.Duration
}

// run simulates one policy; "oracle" always picks the cleanest region.
func run(ctx context.Context, o Options, steps int, policy balance.Policy) (PolicyResult, error) {
	clk := &clock{start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	clk.now = clk.start
	src := &series{clk: clk, step: o.Step, data: o.Intensity, kind: o.Kind}
	var eps []balance.EndpointOptions
	lat := map[string]Region{}
	for _, r := range o.Regions {
		lat[r.Name] = r
		for i := range r.Endpoints {
			eps = append(eps, balance.EndpointOptions{Address: fmt.Sprintf("%s-%d.sim:80", r.Name, i), Region: r.Name})
		}
	}
	var c *balance.Cluster
	if policy != "oracle" {
		var err error
		c, err = balance.New(balance.Options{
			Name: "simulate", Endpoints: eps, Policy: policy, Intensity: src, Carbon: o.Carbon,
			Breaker:      balance.BreakerOptions{MaxRequests: -1},
			TestOnlyRand: rand.NewPCG(o.Seed, 1), TestOnlyNow: clk.Now,
		})
		if err != nil {
			return PolicyResult{}, fmt.Errorf("build cluster: %w", err)
		}
	}
	arrivals := rand.New(rand.NewPCG(o.Seed, 2))
	jitter := rand.New(rand.NewPCG(o.Seed, 3))
	end := clk.start.Add(time.Duration(steps) * o.Step)
	mean := float64(o.Step) / float64(o.RequestsPerStep)

	var inflight []flight // a min-heap by end time
	lats := make([]time.Duration, 0, steps*o.RequestsPerStep+steps)
	counts := map[string]int{}
	var intensitySum float64
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return PolicyResult{}, fmt.Errorf("simulate %s: %w", policy, ctx.Err())
		}
		clk.now = clk.now.Add(time.Duration(arrivals.ExpFloat64() * mean))
		if !clk.now.Before(end) {
			break
		}
		for len(inflight) > 0 && !inflight[0].end.After(clk.now) {
			f := popFlight(&inflight)
			f.ep.Done(balance.Outcome{Result: balance.Success, Latency: f.lat})
		}
		var region string
		var ep *balance.Endpoint
		if c == nil {
			region = cleanest(o.Regions, src)
		} else {
			var err error
			ep, _, err = c.Pick()
			if err != nil {
				return PolicyResult{}, fmt.Errorf("simulate %s: pick: %w", policy, err)
			}
			region = ep.Region()
		}
		r := lat[region]
		l := r.Latency
		if r.Jitter > 0 {
			l += time.Duration(jitter.Int64N(int64(r.Jitter)))
		}
		if ep != nil {
			pushFlight(&inflight, flight{end: clk.now.Add(l), ep: ep, lat: l})
		}
		lats = append(lats, l)
		counts[region]++
		v, _, _ := src.Intensity(region)
		intensitySum += v
	}
	out := PolicyResult{Requests: len(lats), Shares: map[string]float64{}}
	if out.Requests == 0 {
		return out, nil
	}
	slices.Sort(lats)
	out.P50 = lats[len(lats)*50/100]
	out.P99 = lats[len(lats)*99/100]
	out.MeanIntensity = intensitySum / float64(out.Requests)
	out.GramsPerRequest = o.RequestJoules / 3.6e6 * out.MeanIntensity
	for name, n := range counts {
		out.Shares[name] = float64(n) / float64(out.Requests)
	}
	return out, nil
}

// cleanest returns the region with the lowest current intensity; ties go to
// the first listed.
func cleanest(regions []Region, src *series) string {
	best, bestV := "", math.Inf(1)
	for _, r := range regions {
		if v, _, _ := src.Intensity(r.Name); v < bestV {
			best, bestV = r.Name, v
		}
	}
	return best
}

func pushFlight(h *[]flight, f flight) {
	*h = append(*h, f)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s[i].end.Before(s[p].end) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func popFlight(h *[]flight) flight {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s[l].end.Before(s[m].end) {
			m = l
		}
		if r < len(s) && s[r].end.Before(s[m].end) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
