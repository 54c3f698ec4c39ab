package replay

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
)

// Options configures a [Provider]. Zero values are the documented defaults.
type Options struct {
	// Data is the trace file's content (required).
	Data []byte
	// Format is the trace's layout (default FormatAuto: from the header).
	Format Format
	// Column chooses the Electricity Maps intensity column (default
	// ColumnDirect).
	Column Column
	// Start is the trace time replayed at WallStart (default: the trace's
	// earliest timestamp).
	Start time.Time
	// Speed is trace seconds per wall second (default 1; must be positive).
	Speed float64
	// WallStart is the wall time at which replay starts (default: Now() when
	// New runs).
	WallStart time.Time
	// Now is the wall clock (default time.Now).
	Now func() time.Time
	// Kind is what the trace's values measure (default carbon.Average).
	Kind carbon.Kind
	// Name is the provider name (default "replay").
	Name string
	// Horizon is how far ahead, in trace time, forecasts reach (default 24h).
	Horizon time.Duration
}

// Provider replays a trace.
type Provider struct {
	trace     *Trace
	start     time.Time
	wallStart time.Time
	speed     float64
	now       func() time.Time
	kind      carbon.Kind
	name      string
	horizon   time.Duration
}

var _ carbon.Provider = (*Provider)(nil)

// New parses the trace and returns a provider.
func New(opts Options) (*Provider, error) {
	p := &Provider{
		start: opts.Start, wallStart: opts.WallStart, speed: opts.Speed, now: opts.Now,
		kind: opts.Kind, name: opts.Name, horizon: opts.Horizon,
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.speed == 0 {
		p.speed = 1
	}
	if p.kind == "" {
		p.kind = carbon.Average
	}
	if p.name == "" {
		p.name = "replay"
	}
	if p.horizon == 0 {
		p.horizon = 24 * time.Hour
	}
	if p.wallStart.IsZero() {
		p.wallStart = p.now()
	}
	var errs []error
	if !(p.speed > 0) || math.IsInf(p.speed, 0) || p.speed > 1e6 {
		errs = append(errs, fmt.Errorf("speed: %v is not in (0, 1e6]", opts.Speed))
	}
	if p.kind != carbon.Average && p.kind != carbon.Marginal {
		errs = append(errs, fmt.Errorf("kind: %q is neither %q nor %q", opts.Kind, carbon.Average, carbon.Marginal))
	}
	if p.horizon < 0 {
		errs = append(errs, fmt.Errorf("horizon: %s is negative", p.horizon))
	}
	if len(opts.Data) == 0 {
		errs = append(errs, errors.New("data: empty trace"))
	} else if tr, err := parseBytes(opts.Data, opts.Format, opts.Column); err != nil {
		errs = append(errs, fmt.Errorf("data: %w", err))
	} else {
		p.trace = tr
		if p.start.IsZero() {
			p.start = tr.Start()
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("configure replay carbon provider: %w", errors.Join(errs...))
	}
	return p, nil
}

//go:embed sample.csv
var sample []byte

// Sample returns a copy of the embedded demo trace (Aegis-Flow CSV format,
// regions eu-south, us-west, sa-east; attribution in its header comment).
func Sample() []byte { return bytes.Clone(sample) }

// NewSample returns a provider replaying [Sample]; opts.Data and
// opts.Format are ignored.
func NewSample(opts Options) (*Provider, error) {
	opts.Data = sample
	opts.Format = FormatAegis
	return New(opts)
}

// Name returns the provider name.
func (p *Provider) Name() string { return p.name }

// Zones returns the zones the trace has, sorted.
func (p *Provider) Zones() []string { return p.trace.Zones() }

// TraceTime returns the trace time replayed at wall time w (before looping).
func (p *Provider) TraceTime(w time.Time) time.Time {
	return p.start.Add(scale(w.Sub(p.wallStart), p.speed))
}

// wall maps trace time x to wall time.
func (p *Provider) wall(x time.Time) time.Time {
	return p.wallStart.Add(scale(x.Sub(p.start), 1/p.speed))
}

func scale(d time.Duration, f float64) time.Duration {
	v := float64(d) * f
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	if v < math.MinInt64 {
		return math.MinInt64
	}
	return time.Duration(v)
}

// locate returns the index of the point playing at wall time now and the
// trace-time offset of the loop it is in (loop × span).
func (p *Provider) locate(s *series, now time.Time) (int, time.Duration) {
	x := p.TraceTime(now)
	first := s.pts[0].Start
	d := x.Sub(first)
	loops := d / s.span
	if d%s.span < 0 {
		loops--
	}
	pos := first.Add(d - loops*s.span)
	i := sort.Search(len(s.pts), func(i int) bool { return s.pts[i].End().After(pos) })
	if i == len(s.pts) { // rounding at the very end of the series
		i = len(s.pts) - 1
	}
	return i, loops * s.span
}

func (p *Provider) series(zone string) (*series, error) {
	s := p.trace.zones[zone]
	if s == nil {
		return nil, fmt.Errorf("replay zone %q: %w", zone, carbon.ErrUnknownZone)
	}
	return s, nil
}

// Current returns the point playing now, its times mapped to wall time.
func (p *Provider) Current(ctx context.Context, zone string) (carbon.Signal, error) {
	if err := ctx.Err(); err != nil {
		return carbon.Signal{}, err
	}
	s, err := p.series(zone)
	if err != nil {
		return carbon.Signal{}, err
	}
	i, off := p.locate(s, p.now())
	pt := s.pts[i]
	return carbon.Signal{
		Intensity:  pt.Intensity,
		Kind:       p.kind,
		Source:     p.name,
		ObservedAt: p.wall(pt.Start.Add(off)),
		ValidUntil: p.wall(pt.End().Add(off)),
	}, nil
}

// Forecast returns the points from the one playing now until Horizon of
// trace time ahead, looping at the trace's end, in wall time.
func (p *Provider) Forecast(ctx context.Context, zone string) (carbon.Forecast, error) {
	if err := ctx.Err(); err != nil {
		return carbon.Forecast{}, err
	}
	s, err := p.series(zone)
	if err != nil {
		return carbon.Forecast{}, err
	}
	now := p.now()
	i, off := p.locate(s, now)
	until := p.TraceTime(now).Add(p.horizon)
	var pts []carbon.Point
	for {
		pt := s.pts[i]
		start, end := pt.Start.Add(off), pt.End().Add(off)
		ws := p.wall(start)
		// Durations come from the wall time of the next start, so that the
		// compressed points stay contiguous despite rounding.
		pts = append(pts, carbon.Point{Start: ws, Duration: max(p.wall(end).Sub(ws), 1), Intensity: pt.Intensity})
		if !end.Before(until) || len(pts) >= 100_000 {
			break
		}
		if i++; i == len(s.pts) {
			i, off = 0, off+s.span
		}
	}
	return carbon.Forecast{Kind: p.kind, Source: p.name, GeneratedAt: now, Points: pts}, nil
}
