package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/aegis-flow/aegis/internal/greenwait"
)

// Input describes one simulation. Zero values are the documented defaults.
type Input struct {
	// Intensity is the true hourly intensity series in gCO2eq/kWh (at
	// least one value); hour i covers [i h, (i+1) h) from the start.
	Intensity []float64
	// ArrivalsPerHour is the mean number of deferrable requests per hour
	// (Poisson arrivals; default 100).
	ArrivalsPerHour float64
	// Profile optionally scales arrivals by hour of day: 24 multipliers,
	// the series starting at hour 0 of a day. Nil means flat.
	Profile []float64
	// Mix gives the share of arrivals per priority (need not sum to 1; it is
	// normalised). Nil means equal shares of high, normal, low and
	// background. Critical arrivals run at once.
	Mix map[greenwait.Priority]float64
	// MaxWait overrides greenwait.DefaultMaxWait per priority.
	MaxWait map[greenwait.Priority]time.Duration
	// JobDuration is how long a job runs (default 1 min).
	JobDuration time.Duration
	// EnergyJoules is one job's energy (default 3.6e6 J = 1 kWh, so that a
	// job's grams equal its average intensity).
	EnergyJoules float64
	// ForecastErrorPct is the standard deviation, in percent, of the
	// multiplicative error of each forecast hour (0 = a perfect forecast).
	ForecastErrorPct float64
	// MinDeferral: a job whose planned start is closer than this runs at
	// once, as Green-Wait does (default 1 min).
	MinDeferral time.Duration
	// Seed makes arrivals and forecast errors reproducible.
	Seed uint64
}

// Tier is the outcome for one priority.
type Tier struct {
	Priority greenwait.Priority `json:"priority"`
	Jobs     int                `json:"jobs"`
	Deferred int                `json:"deferred"`
	// Grams of CO2eq: every job run at arrival, as Green-Wait planned with
	// the noisy forecast, and with perfect foresight.
	GramsImmediate float64 `json:"grams_immediate"`
	GramsGreenWait float64 `json:"grams_greenwait"`
	GramsOptimal   float64 `json:"grams_optimal"`
	// SavedGrams is GramsImmediate - GramsGreenWait; SavedPct is it as a
	// percentage of GramsImmediate; CapturePct is SavedGrams as a
	// percentage of what perfect foresight saves (100 when there is
	// nothing to save).
	SavedGrams float64 `json:"saved_grams"`
	SavedPct   float64 `json:"saved_pct"`
	CapturePct float64 `json:"capture_pct"`
	// MeanWait is the mean delay of Green-Wait's start after arrival.
	MeanWait time.Duration `json:"mean_wait"`
}

// Report is the outcome of a simulation: one Tier per priority present,
// most urgent first, and their Total (Priority none).
type Report struct {
	Tiers []Tier `json:"tiers"`
	Total Tier   `json:"total"`
}

func (in *Input) defaults() error {
	if len(in.Intensity) == 0 {
		return errors.New("intensity: at least one hourly value is needed")
	}
	var errs []error
	for i, v := range in.Intensity {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("intensity[%d]: %v is not a non-negative number", i, v))
		}
	}
	if in.ArrivalsPerHour == 0 {
		in.ArrivalsPerHour = 100
	}
	if in.ArrivalsPerHour < 0 || in.ArrivalsPerHour > 1e6 {
		errs = append(errs, errors.New("arrivals per hour: must be in (0, 1e6]"))
	}
	if in.Profile != nil && len(in.Profile) != 24 {
		errs = append(errs, fmt.Errorf("profile: got %d values, want 24", len(in.Profile)))
	}
	for _, v := range in.Profile {
		if v < 0 || math.IsNaN(v) {
			errs = append(errs, errors.New("profile: multipliers must be non-negative"))
			break
		}
	}
	if in.Mix == nil {
		in.Mix = map[greenwait.Priority]float64{greenwait.PriorityHigh: 1, greenwait.PriorityNormal: 1, greenwait.PriorityLow: 1, greenwait.PriorityBackground: 1}
	}
	sum := 0.0
	for p, v := range in.Mix {
		if p < greenwait.PriorityCritical || p > greenwait.PriorityBackground || v < 0 || math.IsNaN(v) {
			errs = append(errs, fmt.Errorf("mix: bad entry %s=%v", p, v))
		}
		sum += v
	}
	if sum <= 0 {
		errs = append(errs, errors.New("mix: shares must add up to more than 0"))
	}
	if in.JobDuration == 0 {
		in.JobDuration = time.Minute
	}
	if in.JobDuration < 0 {
		errs = append(errs, errors.New("job duration: negative"))
	}
	if in.EnergyJoules == 0 {
		in.EnergyJoules = 3.6e6
	}
	if in.ForecastErrorPct < 0 || in.ForecastErrorPct > 1000 {
		errs = append(errs, errors.New("forecast error: must be in [0, 1000] percent"))
	}
	if in.MinDeferral == 0 {
		in.MinDeferral = time.Minute
	}
	return errors.Join(errs...)
}

// Run simulates in and returns the report.
func Run(in Input) (Report, error) {
	if err := in.defaults(); err != nil {
		return Report{}, fmt.Errorf("simulation input: %w", err)
	}
	arrivals := rand.New(rand.NewPCG(in.Seed, 0x9e3779b97f4a7c15))
	noise := rand.New(rand.NewPCG(in.Seed, 0xbf58476d1ce4e5b9))
	truth := series{in.Intensity}
	forecast := series{make([]float64, len(in.Intensity))}
	for i, v := range in.Intensity {
		forecast.v[i] = max(0, v*(1+in.ForecastErrorPct/100*noise.NormFloat64()))
	}
	prios, cum := mixTable(in.Mix)
	span := time.Duration(len(in.Intensity)) * time.Hour
	tiers := map[greenwait.Priority]*Tier{}
	waits := map[greenwait.Priority]float64{} // seconds: a year of waits overflows a Duration
	kwh := in.EnergyJoules / 3.6e6
	for h := range in.Intensity {
		rate := in.ArrivalsPerHour
		if in.Profile != nil {
			rate *= in.Profile[h%24]
		}
		for range poisson(arrivals, rate) {
			at := time.Duration(h)*time.Hour + time.Duration(arrivals.Int64N(int64(time.Hour)))
			p := pick(arrivals, prios, cum)
			t := tiers[p]
			if t == nil {
				t = &Tier{Priority: p}
				tiers[p] = t
			}
			t.Jobs++
			d := in.JobDuration
			now := kwh * truth.avg(at, d)
			t.GramsImmediate += now
			wait := in.MaxWait[p]
			if wait <= 0 {
				wait = greenwait.DefaultMaxWait(p)
			}
			latest := min(at+wait, span) - d
			if !p.Deferrable() || latest <= at {
				t.GramsGreenWait += now
				t.GramsOptimal += now
				continue
			}
			plan := best(forecast, at, latest, d)
			if plan-at < in.MinDeferral {
				plan = at
			} else {
				t.Deferred++
			}
			waits[p] += (plan - at).Seconds()
			t.GramsGreenWait += kwh * truth.avg(plan, d)
			t.GramsOptimal += kwh * truth.avg(best(truth, at, latest, d), d)
		}
	}
	var r Report
	r.Total.Priority = greenwait.PriorityNone
	var totalWait float64
	for p := greenwait.PriorityCritical; p <= greenwait.PriorityBackground; p++ {
		t := tiers[p]
		if t == nil {
			continue
		}
		t.finish(waits[p])
		r.Tiers = append(r.Tiers, *t)
		r.Total.Jobs += t.Jobs
		r.Total.Deferred += t.Deferred
		r.Total.GramsImmediate += t.GramsImmediate
		r.Total.GramsGreenWait += t.GramsGreenWait
		r.Total.GramsOptimal += t.GramsOptimal
		totalWait += waits[p]
	}
	r.Total.finish(totalWait)
	return r, nil
}

func (t *Tier) finish(waitSeconds float64) {
	t.SavedGrams = t.GramsImmediate - t.GramsGreenWait
	if t.GramsImmediate > 0 {
		t.SavedPct = 100 * t.SavedGrams / t.GramsImmediate
	}
	t.CapturePct = 100
	if opt := t.GramsImmediate - t.GramsOptimal; opt > 1e-9 {
		t.CapturePct = 100 * t.SavedGrams / opt
	}
	if t.Jobs > 0 {
		t.MeanWait = time.Duration(waitSeconds / float64(t.Jobs) * float64(time.Second))
	}
}

// series is a piecewise-constant hourly series; beyond its end the last
// value holds.
type series struct{ v []float64 }

func (s series) at(h int) float64 { return s.v[min(max(h, 0), len(s.v)-1)] }

// avg returns the mean of s over [from, from+d).
func (s series) avg(from, d time.Duration) float64 {
	if d <= 0 {
		return s.at(int(from / time.Hour))
	}
	var sum float64
	for t, end := from, from+d; t < end; {
		h := t / time.Hour
		next := min((h+1)*time.Hour, end)
		sum += s.at(int(h)) * (next - t).Seconds()
		t = next
	}
	return sum / d.Seconds()
}

// best returns the start in [earliest, latest] of the window of length d
// with the lowest average of s, the earliest on ties. For a piecewise-
// constant series the optimum is at an end of the range or has its start
// or end on an hour boundary, so only those starts are tried.
func best(s series, earliest, latest, d time.Duration) time.Duration {
	bestAt, bestAvg := earliest, s.avg(earliest, d)
	try := func(t time.Duration) {
		if t < earliest || t > latest {
			return
		}
		if a := s.avg(t, d); a < bestAvg-1e-12 || (math.Abs(a-bestAvg) <= 1e-12 && t < bestAt) {
			bestAt, bestAvg = t, a
		}
	}
	for h := earliest.Truncate(time.Hour); h <= latest+d; h += time.Hour {
		try(h)
		try(h - d)
	}
	try(latest)
	return bestAt
}

func mixTable(mix map[greenwait.Priority]float64) ([]greenwait.Priority, []float64) {
	var ps []greenwait.Priority
	var cum []float64
	sum := 0.0
	for p := greenwait.PriorityCritical; p <= greenwait.PriorityBackground; p++ {
		if v := mix[p]; v > 0 {
			sum += v
			ps = append(ps, p)
			cum = append(cum, sum)
		}
	}
	for i := range cum {
		cum[i] /= sum
	}
	return ps, cum
}

func pick(r *rand.Rand, ps []greenwait.Priority, cum []float64) greenwait.Priority {
	x := r.Float64()
	for i, c := range cum {
		if x < c {
			return ps[i]
		}
	}
	return ps[len(ps)-1]
}

// poisson draws a Poisson variate with the given mean (Knuth's method for
// small means, a rounded normal approximation for large ones).
func poisson(r *rand.Rand, mean float64) int {
	if mean <= 0 {
		return 0
	}
	if mean > 50 {
		return max(0, int(math.Round(mean+math.Sqrt(mean)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
