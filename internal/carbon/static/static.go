package static

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
)

// Options configures a [Provider]. Zero values are the documented defaults.
type Options struct {
	// Values maps a zone code to its intensity in gCO2eq/kWh (required,
	// finite and non-negative).
	Values map[string]float64
	// Kind is what the values measure (default carbon.Average).
	Kind carbon.Kind
	// Name is the provider name used as the signals' Source and in metrics
	// (default "static").
	Name string
	// ValidFor is how long a returned signal is valid (default 1h).
	ValidFor time.Duration
	// Horizon is how far ahead the flat forecast reaches (default 24h).
	Horizon time.Duration
}

// Provider serves fixed values.
type Provider struct {
	values   map[string]float64
	kind     carbon.Kind
	name     string
	validFor time.Duration
	horizon  time.Duration
}

var _ carbon.Provider = (*Provider)(nil)

// New validates opts and returns a provider.
func New(opts Options) (*Provider, error) {
	p := &Provider{
		values:   maps.Clone(opts.Values),
		kind:     opts.Kind,
		name:     opts.Name,
		validFor: opts.ValidFor,
		horizon:  opts.Horizon,
	}
	if p.kind == "" {
		p.kind = carbon.Average
	}
	if p.name == "" {
		p.name = "static"
	}
	if p.validFor == 0 {
		p.validFor = time.Hour
	}
	if p.horizon == 0 {
		p.horizon = 24 * time.Hour
	}
	var errs []error
	if p.kind != carbon.Average && p.kind != carbon.Marginal {
		errs = append(errs, fmt.Errorf("kind: %q is neither %q nor %q", opts.Kind, carbon.Average, carbon.Marginal))
	}
	if len(p.values) == 0 {
		errs = append(errs, errors.New("values: none configured"))
	}
	for _, zone := range slices.Sorted(maps.Keys(p.values)) {
		if v := p.values[zone]; v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("values.%s: %v is not a finite, non-negative gCO2eq/kWh", zone, v))
		}
	}
	if p.validFor < 0 {
		errs = append(errs, fmt.Errorf("valid_for: %s is negative", p.validFor))
	}
	if p.horizon < time.Hour {
		errs = append(errs, fmt.Errorf("horizon: %s is below the minimum 1h", p.horizon))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("configure static carbon provider: %w", errors.Join(errs...))
	}
	return p, nil
}

// Name returns the provider name.
func (p *Provider) Name() string { return p.name }

// Current returns the zone's fixed value, observed now.
func (p *Provider) Current(ctx context.Context, zone string) (carbon.Signal, error) {
	if err := ctx.Err(); err != nil {
		return carbon.Signal{}, err
	}
	v, ok := p.values[zone]
	if !ok {
		return carbon.Signal{}, fmt.Errorf("static zone %q: %w", zone, carbon.ErrUnknownZone)
	}
	now := time.Now()
	return carbon.Signal{Intensity: v, Kind: p.kind, Source: p.name, ObservedAt: now, ValidUntil: now.Add(p.validFor)}, nil
}

// Forecast returns a flat forecast of the zone's value: hourly points from
// the start of the current hour to Horizon ahead.
func (p *Provider) Forecast(ctx context.Context, zone string) (carbon.Forecast, error) {
	if err := ctx.Err(); err != nil {
		return carbon.Forecast{}, err
	}
	v, ok := p.values[zone]
	if !ok {
		return carbon.Forecast{}, fmt.Errorf("static zone %q: %w", zone, carbon.ErrUnknownZone)
	}
	now := time.Now()
	start := now.Truncate(time.Hour)
	n := int((now.Add(p.horizon).Sub(start) + time.Hour - 1) / time.Hour)
	pts := make([]carbon.Point, n)
	for i := range pts {
		pts[i] = carbon.Point{Start: start.Add(time.Duration(i) * time.Hour), Duration: time.Hour, Intensity: v}
	}
	return carbon.Forecast{Kind: p.kind, Source: p.name, GeneratedAt: now, Points: pts}, nil
}
