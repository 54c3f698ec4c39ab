package electricitymaps

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
)

// interval is the length of one Electricity Maps data point (hourly data).
const interval = time.Hour

// latestBody is the answer of carbon-intensity/latest.
type latestBody struct {
	Zone            string   `json:"zone"`
	CarbonIntensity *float64 `json:"carbonIntensity"`
	Datetime        string   `json:"datetime"`
	UpdatedAt       string   `json:"updatedAt"`
	IsEstimated     *bool    `json:"isEstimated"`
}

// pointBody is one element of a forecast or history array.
type pointBody struct {
	Zone            string   `json:"zone"`
	CarbonIntensity *float64 `json:"carbonIntensity"`
	Datetime        string   `json:"datetime"`
}

// seriesBody is the answer of carbon-intensity/forecast and /history.
type seriesBody struct {
	Zone      string      `json:"zone"`
	Forecast  []pointBody `json:"forecast"`
	History   []pointBody `json:"history"`
	UpdatedAt string      `json:"updatedAt"`
}

// checkZone refuses an answer that is not for the zone asked for: the API can
// fall back to another zone, and routing on another grid's data is worse than
// having none.
func checkZone(got, want string) error {
	if got == "" {
		return fmt.Errorf("%w: answer names no zone", carbon.ErrBadResponse)
	}
	if !strings.EqualFold(got, want) {
		return fmt.Errorf("%w: answer is for zone %q, not the zone asked for", carbon.ErrUnknownZone, apiclient.Clean(got))
	}
	return nil
}

// checkIntensity refuses missing and negative intensities.
func checkIntensity(v *float64) (float64, error) {
	if v == nil {
		return 0, fmt.Errorf("%w: carbonIntensity is missing", carbon.ErrBadResponse)
	}
	if *v < 0 {
		return 0, fmt.Errorf("%w: carbonIntensity %g is negative", carbon.ErrBadResponse, *v)
	}
	return *v, nil
}

// parseTime reads the API's ISO 8601 timestamps ("2026-11-26T10:00:00.000Z").
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: %s is missing", carbon.ErrBadResponse, field)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s %q is not an RFC 3339 time", carbon.ErrBadResponse, field, apiclient.Clean(s))
	}
	return t.UTC(), nil
}

// decodeLatest decodes a carbon-intensity/latest answer for zone.
func decodeLatest(body []byte, zone string) (carbon.Signal, error) {
	var b latestBody
	if err := json.Unmarshal(body, &b); err != nil {
		return carbon.Signal{}, fmt.Errorf("%w: decode latest: %w", carbon.ErrBadResponse, err)
	}
	if err := checkZone(b.Zone, zone); err != nil {
		return carbon.Signal{}, err
	}
	v, err := checkIntensity(b.CarbonIntensity)
	if err != nil {
		return carbon.Signal{}, err
	}
	at, err := parseTime("datetime", b.Datetime)
	if err != nil {
		return carbon.Signal{}, err
	}
	return carbon.Signal{
		Intensity:  v,
		Kind:       carbon.Average,
		Source:     Name,
		ObservedAt: at,
		ValidUntil: at.Add(interval),
	}, nil
}

// decodeSeries decodes a forecast (history == false) or history answer into
// hourly points, sorted by start and checked not to overlap.
func decodeSeries(body []byte, zone string, history bool) (carbon.Forecast, error) {
	var b seriesBody
	if err := json.Unmarshal(body, &b); err != nil {
		return carbon.Forecast{}, fmt.Errorf("%w: decode series: %w", carbon.ErrBadResponse, err)
	}
	if err := checkZone(b.Zone, zone); err != nil {
		return carbon.Forecast{}, err
	}
	items, field := b.Forecast, "forecast"
	if history {
		items, field = b.History, "history"
	}
	f := carbon.Forecast{Kind: carbon.Average, Source: Name}
	if b.UpdatedAt != "" {
		if t, err := parseTime("updatedAt", b.UpdatedAt); err == nil {
			f.GeneratedAt = t
		}
	}
	f.Points = make([]carbon.Point, 0, len(items))
	for i, it := range items {
		if it.Zone != "" {
			if err := checkZone(it.Zone, zone); err != nil {
				return carbon.Forecast{}, fmt.Errorf("%s[%d]: %w", field, i, err)
			}
		}
		v, err := checkIntensity(it.CarbonIntensity)
		if err != nil {
			return carbon.Forecast{}, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		at, err := parseTime("datetime", it.Datetime)
		if err != nil {
			return carbon.Forecast{}, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		if n := len(f.Points); n > 0 && at.Before(f.Points[n-1].End()) {
			return carbon.Forecast{}, fmt.Errorf("%w: %s[%d] at %s overlaps or precedes the previous point",
				carbon.ErrBadResponse, field, i, at.Format(time.RFC3339))
		}
		f.Points = append(f.Points, carbon.Point{Start: at, Duration: interval, Intensity: v})
	}
	if len(f.Points) == 0 {
		return carbon.Forecast{}, fmt.Errorf("%w: %s has no points", carbon.ErrNoForecast, field)
	}
	return f, nil
}
