package ukgrid

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
)

// interval is the length of one settlement period.
const interval = 30 * time.Minute

// period is one half hour of intensity data.
type period struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Intensity *struct {
		Forecast *float64 `json:"forecast"`
		Actual   *float64 `json:"actual"`
		Index    string   `json:"index"`
	} `json:"intensity"`
}

// regionBody is one region with its periods.
type regionBody struct {
	RegionID  *int     `json:"regionid"`
	Shortname string   `json:"shortname"`
	Data      []period `json:"data"`
}

// envelope is the top level of every answer: data (an array, or for the
// regional forecast an object) or an error object.
type envelope struct {
	Data  json.RawMessage `json:"data"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// open decodes the envelope and refuses an error object in a 2xx answer.
func open(body []byte) (json.RawMessage, error) {
	var e envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("%w: decode answer: %w", carbon.ErrBadResponse, err)
	}
	if e.Error != nil {
		msg := apiclient.Clean(e.Error.Code + ": " + e.Error.Message)
		if strings.Contains(strings.ToLower(msg), "region") {
			return nil, fmt.Errorf("%w: provider says %q", carbon.ErrUnknownZone, msg)
		}
		return nil, fmt.Errorf("%w: provider says %q", carbon.ErrBadResponse, msg)
	}
	if len(e.Data) == 0 || bytes.Equal(e.Data, []byte("null")) {
		return nil, fmt.Errorf("%w: answer has no data", carbon.ErrBadResponse)
	}
	return e.Data, nil
}

// parseTime reads the API's timestamps, which omit seconds
// ("2026-11-26T10:30Z"); full RFC 3339 is accepted too.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: %s is missing", carbon.ErrBadResponse, field)
	}
	for _, layout := range []string{"2006-01-02T15:04Z07:00", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: %s %q is not an ISO 8601 time", carbon.ErrBadResponse, field, apiclient.Clean(s))
}

// value returns the period's intensity: the actual when preferActual and it
// is published, else the forecast.
func value(p period, preferActual bool) (float64, error) {
	if p.Intensity == nil {
		return 0, fmt.Errorf("%w: intensity is missing", carbon.ErrBadResponse)
	}
	v := p.Intensity.Forecast
	if preferActual && p.Intensity.Actual != nil {
		v = p.Intensity.Actual
	}
	if v == nil {
		return 0, fmt.Errorf("%w: intensity has neither actual nor forecast", carbon.ErrBadResponse)
	}
	if *v < 0 {
		return 0, fmt.Errorf("%w: intensity %g is negative", carbon.ErrBadResponse, *v)
	}
	return *v, nil
}

// signal turns the first period into a Signal.
func signal(ps []period) (carbon.Signal, error) {
	if len(ps) == 0 {
		return carbon.Signal{}, fmt.Errorf("%w: answer has no periods", carbon.ErrBadResponse)
	}
	v, err := value(ps[0], true)
	if err != nil {
		return carbon.Signal{}, err
	}
	at, err := parseTime("from", ps[0].From)
	if err != nil {
		return carbon.Signal{}, err
	}
	return carbon.Signal{Intensity: v, Kind: carbon.Average, Source: Name, ObservedAt: at, ValidUntil: at.Add(interval)}, nil
}

// series turns periods into forecast points.
func series(ps []period) (carbon.Forecast, error) {
	f := carbon.Forecast{Kind: carbon.Average, Source: Name, Points: make([]carbon.Point, 0, len(ps))}
	for i, p := range ps {
		v, err := value(p, false)
		if err != nil {
			return carbon.Forecast{}, fmt.Errorf("data[%d]: %w", i, err)
		}
		at, err := parseTime("from", p.From)
		if err != nil {
			return carbon.Forecast{}, fmt.Errorf("data[%d]: %w", i, err)
		}
		if n := len(f.Points); n > 0 && at.Before(f.Points[n-1].End()) {
			return carbon.Forecast{}, fmt.Errorf("%w: data[%d] at %s overlaps or precedes the previous period",
				carbon.ErrBadResponse, i, at.Format(time.RFC3339))
		}
		f.Points = append(f.Points, carbon.Point{Start: at, Duration: interval, Intensity: v})
	}
	if len(f.Points) == 0 {
		return carbon.Forecast{}, fmt.Errorf("%w: answer has no periods", carbon.ErrNoForecast)
	}
	return f, nil
}

// decodeNational decodes /intensity or /intensity/{from}/fw48h.
func decodeNational(body []byte) ([]period, error) {
	data, err := open(body)
	if err != nil {
		return nil, err
	}
	var ps []period
	if err := json.Unmarshal(data, &ps); err != nil {
		return nil, fmt.Errorf("%w: decode periods: %w", carbon.ErrBadResponse, err)
	}
	return ps, nil
}

// decodeRegional decodes /regional/regionid/{id} (data is an array of one
// region) or /regional/intensity/{from}/fw48h/regionid/{id} (data is the
// region object), and checks the region is the one asked for.
func decodeRegional(body []byte, id int) ([]period, error) {
	data, err := open(body)
	if err != nil {
		return nil, err
	}
	var r regionBody
	if d := bytes.TrimLeft(data, " \t\r\n"); len(d) > 0 && d[0] == '[' {
		var rs []regionBody
		if err := json.Unmarshal(data, &rs); err != nil {
			return nil, fmt.Errorf("%w: decode regions: %w", carbon.ErrBadResponse, err)
		}
		if len(rs) != 1 {
			return nil, fmt.Errorf("%w: answer has %d regions, want 1", carbon.ErrBadResponse, len(rs))
		}
		r = rs[0]
	} else if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: decode region: %w", carbon.ErrBadResponse, err)
	}
	if r.RegionID == nil {
		return nil, fmt.Errorf("%w: answer names no regionid", carbon.ErrBadResponse)
	}
	if *r.RegionID != id {
		return nil, fmt.Errorf("%w: answer is for region %d, not the region asked for", carbon.ErrUnknownZone, *r.RegionID)
	}
	return r.Data, nil
}
