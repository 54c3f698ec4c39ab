package carbon

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Kind says what a carbon-intensity figure measures. Figures of different
// kinds must never be compared with one another.
type Kind string

const (
	// Average is the grid's average (attributional) intensity.
	Average Kind = "average"
	// Marginal is the intensity of the generator that would serve extra load
	// (for example WattTime's MOER).
	Marginal Kind = "marginal"
)

// Signal is one observation of a region's grid carbon intensity.
type Signal struct {
	// Region is the Aegis-Flow region name (not the provider's zone code).
	Region string
	// Intensity is in gCO2eq/kWh, always; providers convert at the edge.
	Intensity float64
	// Kind is average or marginal.
	Kind Kind
	// Source names the provider that produced the value ("electricitymaps",
	// "watttime", "ukgrid", "static", "replay").
	Source string
	// ObservedAt is when the value applies (the start of its interval).
	ObservedAt time.Time
	// ValidUntil is when the value should be refreshed; zero means unknown.
	ValidUntil time.Time
}

// Point is one interval of a forecast or history series.
type Point struct {
	// Start is the beginning of the interval.
	Start time.Time
	// Duration is the interval's length (5 min for WattTime, 30 min for the
	// UK grid, 1 h for Electricity Maps).
	Duration time.Duration
	// Intensity is in gCO2eq/kWh.
	Intensity float64
}

// End returns the end of the interval.
func (p Point) End() time.Time { return p.Start.Add(p.Duration) }

// Forecast is a series of points for one region, sorted by Start and
// non-overlapping.
type Forecast struct {
	Region      string
	Kind        Kind
	Source      string
	GeneratedAt time.Time
	Points      []Point
}

// Provider is a source of carbon-intensity data. Zone is the provider's own
// zone or region code (for example "DE", "CAISO_NORTH", "13"), mapped from an
// Aegis-Flow region by configuration. Implementations must be safe for
// concurrent use and must honour ctx for cancellation. They return errors
// that wrap one of the sentinels below where one applies.
type Provider interface {
	// Name is the provider's short name, used as the Source of its signals
	// and as a metric label.
	Name() string
	// Current returns the latest signal for zone. The returned Signal's
	// Region is left empty; the caller fills it in.
	Current(ctx context.Context, zone string) (Signal, error)
	// Forecast returns the forecast for zone, starting at or before now.
	Forecast(ctx context.Context, zone string) (Forecast, error)
}

// Errors that providers wrap so that callers can branch on them.
var (
	// ErrUnknownZone means the provider does not know the zone.
	ErrUnknownZone = errors.New("unknown zone")
	// ErrUnauthorized means the credentials were missing or refused (401, 403).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrRateLimited means the provider answered 429 or a local limit was hit.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnavailable means the provider failed (5xx, timeout, network error).
	ErrUnavailable = errors.New("provider unavailable")
	// ErrBadResponse means the answer could not be decoded or made no sense
	// (malformed JSON, wrong units, missing fields, negative intensity).
	ErrBadResponse = errors.New("bad provider response")
	// ErrNoForecast means the provider has no forecast for the zone.
	ErrNoForecast = errors.New("no forecast available")
)

// RateLimitError is returned (wrapping ErrRateLimited) when the provider
// said when to come back.
type RateLimitError struct {
	// RetryAfter is how long the provider asked the caller to wait.
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limited: retry after %s", e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }
