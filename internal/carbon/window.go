package carbon

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Errors of the window functions.
var (
	// ErrNoWindow means no window of the requested duration fits in the
	// forecast between earliest and deadline.
	ErrNoWindow = errors.New("no window fits")
	// ErrMixedKinds means forecasts of different kinds (average and
	// marginal) were to be compared.
	ErrMixedKinds = errors.New("forecasts of different kinds")
)

// Window is a candidate run of a job: [Start, End) and the time-weighted
// average intensity over it.
type Window struct {
	Start time.Time
	End   time.Time
	// Intensity is the time-weighted average in gCO2eq/kWh.
	Intensity float64
}

// BestWindow returns the window of the given duration, starting at or after
// earliest and ending by deadline, with the lowest time-weighted average
// intensity in f. The candidate starts are earliest and every forecast
// point start after it; a window must be fully covered by contiguous
// points. Points partly covered by a window count in proportion to the
// time covered, as in the Carbon Aware SDK's rolling average. Ties go to
// the earliest start. A zero earliest means the forecast's start, a zero
// deadline its end. It returns ErrNoWindow when no window fits.
func BestWindow(f Forecast, duration time.Duration, earliest, deadline time.Time) (Window, error) {
	var best Window
	found := false
	err := eachWindow(f, duration, earliest, deadline, func(w Window) {
		if !found || w.Intensity < best.Intensity {
			best, found = w, true
		}
	})
	if err != nil {
		return Window{}, err
	}
	if !found {
		return Window{}, fmt.Errorf("best window of %s between %s and %s: %w", duration, fmtTime(earliest), fmtTime(deadline), ErrNoWindow)
	}
	return best, nil
}

// Windows returns every candidate window that [BestWindow] considers, in
// start order: the forecast as a rolling average over duration.
func Windows(f Forecast, duration time.Duration, earliest, deadline time.Time) ([]Window, error) {
	var out []Window
	err := eachWindow(f, duration, earliest, deadline, func(w Window) { out = append(out, w) })
	return out, err
}

// AverageIntensity returns the time-weighted average intensity of f over
// [start, end), which contiguous points must cover.
func AverageIntensity(f Forecast, start, end time.Time) (float64, error) {
	if err := checkPoints(f.Points); err != nil {
		return 0, fmt.Errorf("average intensity: %w", err)
	}
	if !end.After(start) {
		return 0, fmt.Errorf("average intensity: end %s is not after start %s", fmtTime(end), fmtTime(start))
	}
	i := sort.Search(len(f.Points), func(i int) bool { return f.Points[i].End().After(start) })
	v, ok := average(f.Points, i, start, end)
	if !ok {
		return 0, fmt.Errorf("average intensity from %s to %s: %w", fmtTime(start), fmtTime(end), ErrNoWindow)
	}
	return v, nil
}

// RegionWindow is one region's best window, for [BestRegion].
type RegionWindow struct {
	Region string
	Kind   Kind
	Window
}

// BestRegion finds each forecast's best window (as [BestWindow]) and
// returns them best first: by intensity, then earlier start, then input
// order. Forecasts without a fitting window are left out; if none fits it
// returns ErrNoWindow. Forecasts must all be of one kind (ErrMixedKinds).
func BestRegion(forecasts []Forecast, duration time.Duration, earliest, deadline time.Time) ([]RegionWindow, error) {
	var out []RegionWindow
	for i, f := range forecasts {
		if i > 0 && f.Kind != forecasts[0].Kind {
			return nil, fmt.Errorf("best region: %s is %s but %s is %s: %w",
				forecasts[0].Region, forecasts[0].Kind, f.Region, f.Kind, ErrMixedKinds)
		}
	}
	for _, f := range forecasts {
		w, err := BestWindow(f, duration, earliest, deadline)
		if errors.Is(err, ErrNoWindow) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("best region: %s: %w", f.Region, err)
		}
		out = append(out, RegionWindow{Region: f.Region, Kind: f.Kind, Window: w})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("best region: %w", ErrNoWindow)
	}
	slices.SortStableFunc(out, func(a, b RegionWindow) int {
		if c := cmp.Compare(a.Intensity, b.Intensity); c != 0 {
			return c
		}
		return a.Start.Compare(b.Start)
	})
	return out, nil
}

// span is a point in Unix nanoseconds, so that the window loops do integer
// arithmetic instead of time.Time comparisons.
type span struct {
	start, end int64
	v          float64
}

// eachWindow calls fn for every candidate window in start order.
func eachWindow(f Forecast, duration time.Duration, earliest, deadline time.Time, fn func(Window)) error {
	if duration <= 0 {
		return fmt.Errorf("window duration %s is not positive", duration)
	}
	pts := f.Points
	if err := checkPoints(pts); err != nil {
		return err
	}
	if len(pts) == 0 {
		return nil
	}
	if earliest.IsZero() {
		earliest = pts[0].Start
	}
	if deadline.IsZero() {
		deadline = pts[len(pts)-1].End()
	}
	var buf [1024]span
	spans := buf[:0]
	if len(pts) > len(buf) {
		spans = make([]span, 0, len(pts))
	}
	for _, p := range pts {
		s := p.Start.UnixNano()
		spans = append(spans, span{s, s + int64(p.Duration), p.Intensity})
	}
	// Clamp the bounds to the data (checkPoints keeps the data within the
	// years that Unix nanoseconds can hold); a window beyond it cannot fit.
	first, last := spans[0].start, spans[len(spans)-1].end
	if duration > time.Duration(last-first) {
		return nil
	}
	d := int64(duration)
	from, fromFits := first-1, false
	if !earliest.Before(pts[0].Start) && !earliest.After(pts[len(pts)-1].End()) {
		from, fromFits = earliest.UnixNano(), true
	} else if earliest.After(pts[len(pts)-1].End()) {
		return nil
	}
	until := last
	if deadline.Before(pts[len(pts)-1].End()) {
		if deadline.Before(pts[0].Start) {
			return nil
		}
		until = deadline.UnixNano()
	}

	// The window starting at earliest itself.
	i := sort.Search(len(spans), func(i int) bool { return spans[i].end > from })
	if fromFits && from+d <= until {
		if v, ok := averageSpans(spans, i, from, from+d); ok {
			fn(Window{Start: earliest, End: earliest.Add(duration), Intensity: v})
		}
	}
	// Every point boundary after earliest.
	for ; i < len(spans); i++ {
		start := spans[i].start
		if start <= from {
			continue
		}
		if start+d > until {
			break
		}
		if v, ok := averageSpans(spans, i, start, start+d); ok {
			fn(Window{Start: pts[i].Start, End: pts[i].Start.Add(duration), Intensity: v})
		}
	}
	return nil
}

// average returns the time-weighted average over [start, end) of the points
// from index i on, and false if they do not cover it without a gap.
func average(pts []Point, i int, start, end time.Time) (float64, bool) {
	spans := make([]span, 0, len(pts)-i)
	for _, p := range pts[i:] {
		s := p.Start.UnixNano()
		spans = append(spans, span{s, s + int64(p.Duration), p.Intensity})
	}
	return averageSpans(spans, 0, start.UnixNano(), end.UnixNano())
}

// averageSpans is average over spans.
func averageSpans(spans []span, i int, start, end int64) (float64, bool) {
	total := float64(end - start)
	var sum float64
	covered := start
	for ; i < len(spans) && spans[i].start < end; i++ {
		p := spans[i]
		if p.start > covered {
			return 0, false
		}
		lo, hi := max(p.start, start), min(p.end, end)
		// rating × covered time ÷ window time, in the SDK's order.
		sum += p.v * float64(hi-lo) / total
		covered = p.end
	}
	return sum, covered >= end
}

// checkPoints verifies that points are sorted, non-overlapping, of positive
// duration and finite, non-negative intensity.
func checkPoints(pts []Point) error {
	for i, p := range pts {
		if y := p.Start.Year(); y < 1900 || y > 2200 {
			return fmt.Errorf("forecast point %d: start %s is outside the years 1900 to 2200", i, fmtTime(p.Start))
		}
		if p.Duration <= 0 || p.Duration > 366*24*time.Hour {
			return fmt.Errorf("forecast point %d: duration %s is not positive or is over a year", i, p.Duration)
		}
		if p.Intensity < 0 || math.IsNaN(p.Intensity) || math.IsInf(p.Intensity, 0) {
			return fmt.Errorf("forecast point %d: intensity %v is not a finite, non-negative value", i, p.Intensity)
		}
		if i > 0 && p.Start.Before(pts[i-1].End()) {
			return fmt.Errorf("forecast point %d starts at %s, before point %d ends", i, fmtTime(p.Start), i-1)
		}
	}
	return nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "(unset)"
	}
	return t.UTC().Format(time.RFC3339)
}
