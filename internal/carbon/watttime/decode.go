package watttime

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
)

const (
	// LbsPerMWhToGPerKWh converts WattTime's lbs CO2/MWh to gCO2eq/kWh.
	LbsPerMWhToGPerKWh = 0.453592
	// unitsMOER is the only meta.units accepted for MOER data.
	unitsMOER = "lbs_co2_per_mwh"
	// unitsIndex is the meta.units of the signal index.
	unitsIndex = "percentile"
	// defaultPeriod is the length of one data point when meta does not say.
	defaultPeriod = 5 * time.Minute
	// maxPeriod bounds a believable data_point_period_seconds.
	maxPeriod = 24 * time.Hour
)

// dataBody is the answer of /v3/forecast, /v3/historical and
// /v3/signal-index.
type dataBody struct {
	Data []struct {
		PointTime string   `json:"point_time"`
		Value     *float64 `json:"value"`
	} `json:"data"`
	Meta struct {
		Region                 string `json:"region"`
		SignalType             string `json:"signal_type"`
		Units                  string `json:"units"`
		DataPointPeriodSeconds *int64 `json:"data_point_period_seconds"`
		GeneratedAt            string `json:"generated_at"`
	} `json:"meta"`
}

// loginBody is the answer of /login.
type loginBody struct {
	Token string `json:"token"`
}

// regionBody is the answer of /v3/region-from-loc.
type regionBody struct {
	Region         string `json:"region"`
	RegionFullName string `json:"region_full_name"`
	SignalType     string `json:"signal_type"`
}

// parseTime reads WattTime's ISO 8601 timestamps
// ("2026-11-26T10:05:00+00:00").
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

// decodeMeta checks the common metadata and returns the point period.
func decodeMeta(b *dataBody, region, units string) (time.Duration, error) {
	if b.Meta.Units != units {
		return 0, fmt.Errorf("%w: meta.units is %q, want %q", carbon.ErrBadResponse, apiclient.Clean(b.Meta.Units), units)
	}
	if b.Meta.Region != "" && b.Meta.Region != region {
		return 0, fmt.Errorf("%w: answer is for region %q, not the region asked for", carbon.ErrUnknownZone, apiclient.Clean(b.Meta.Region))
	}
	period := defaultPeriod
	if p := b.Meta.DataPointPeriodSeconds; p != nil {
		if *p <= 0 || *p > int64(maxPeriod/time.Second) {
			return 0, fmt.Errorf("%w: data_point_period_seconds %d is out of range", carbon.ErrBadResponse, *p)
		}
		period = time.Duration(*p) * time.Second
	}
	return period, nil
}

// decodeData decodes MOER data (forecast or historical) for region into a
// series in gCO2eq/kWh.
func decodeData(body []byte, region string) (carbon.Forecast, error) {
	var b dataBody
	if err := json.Unmarshal(body, &b); err != nil {
		return carbon.Forecast{}, fmt.Errorf("%w: decode data: %w", carbon.ErrBadResponse, err)
	}
	period, err := decodeMeta(&b, region, unitsMOER)
	if err != nil {
		return carbon.Forecast{}, err
	}
	f := carbon.Forecast{Kind: carbon.Marginal, Source: Name}
	if b.Meta.GeneratedAt != "" {
		t, err := parseTime("meta.generated_at", b.Meta.GeneratedAt)
		if err != nil {
			return carbon.Forecast{}, err
		}
		f.GeneratedAt = t
	}
	f.Points = make([]carbon.Point, 0, len(b.Data))
	for i, d := range b.Data {
		if d.Value == nil {
			return carbon.Forecast{}, fmt.Errorf("%w: data[%d].value is missing", carbon.ErrBadResponse, i)
		}
		if *d.Value < 0 {
			return carbon.Forecast{}, fmt.Errorf("%w: data[%d].value %g is negative", carbon.ErrBadResponse, i, *d.Value)
		}
		at, err := parseTime(fmt.Sprintf("data[%d].point_time", i), d.PointTime)
		if err != nil {
			return carbon.Forecast{}, err
		}
		if n := len(f.Points); n > 0 && at.Before(f.Points[n-1].End()) {
			return carbon.Forecast{}, fmt.Errorf("%w: data[%d] at %s overlaps or precedes the previous point",
				carbon.ErrBadResponse, i, at.Format(time.RFC3339))
		}
		f.Points = append(f.Points, carbon.Point{Start: at, Duration: period, Intensity: *d.Value * LbsPerMWhToGPerKWh})
	}
	if len(f.Points) == 0 {
		return carbon.Forecast{}, fmt.Errorf("%w: answer has no data points", carbon.ErrNoForecast)
	}
	return f, nil
}

// decodeIndex decodes a /v3/signal-index answer for region.
func decodeIndex(body []byte, region string) (Index, error) {
	var b dataBody
	if err := json.Unmarshal(body, &b); err != nil {
		return Index{}, fmt.Errorf("%w: decode index: %w", carbon.ErrBadResponse, err)
	}
	period, err := decodeMeta(&b, region, unitsIndex)
	if err != nil {
		return Index{}, err
	}
	if len(b.Data) == 0 {
		return Index{}, fmt.Errorf("%w: index has no data points", carbon.ErrBadResponse)
	}
	d := b.Data[0]
	if d.Value == nil {
		return Index{}, fmt.Errorf("%w: data[0].value is missing", carbon.ErrBadResponse)
	}
	if *d.Value < 0 || *d.Value > 100 {
		return Index{}, fmt.Errorf("%w: percentile %g is outside 0..100", carbon.ErrBadResponse, *d.Value)
	}
	at, err := parseTime("data[0].point_time", d.PointTime)
	if err != nil {
		return Index{}, err
	}
	st := b.Meta.SignalType
	if st == "" {
		st = SignalType
	}
	return Index{Region: region, SignalType: st, Percentile: *d.Value, ObservedAt: at, ValidUntil: at.Add(period)}, nil
}

// decodeLogin decodes a /login answer.
func decodeLogin(body []byte) (string, error) {
	var b loginBody
	if err := json.Unmarshal(body, &b); err != nil {
		return "", fmt.Errorf("%w: decode login: %w", carbon.ErrBadResponse, err)
	}
	if b.Token == "" {
		return "", fmt.Errorf("%w: login answer has no token", carbon.ErrBadResponse)
	}
	return b.Token, nil
}

// decodeRegion decodes a /v3/region-from-loc answer.
func decodeRegion(body []byte) (Region, error) {
	var b regionBody
	if err := json.Unmarshal(body, &b); err != nil {
		return Region{}, fmt.Errorf("%w: decode region: %w", carbon.ErrBadResponse, err)
	}
	if b.Region == "" {
		return Region{}, fmt.Errorf("%w: answer names no region", carbon.ErrBadResponse)
	}
	return Region{Region: b.Region, FullName: b.RegionFullName, SignalType: b.SignalType}, nil
}
