package carbon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Handler serves the tracker's state over HTTP; see the package doc for the
// endpoints. Mount it for "/carbon" and "/emissions/" on the admin mux.
type Handler struct {
	t   *Tracker
	mux *http.ServeMux
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a handler reading from t.
func NewHandler(t *Tracker) *Handler {
	h := &Handler{t: t, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /carbon", h.serveAdmin)
	h.mux.HandleFunc("GET /emissions/bylocations/best", h.serveBest)
	h.mux.HandleFunc("GET /emissions/forecasts/current", h.serveForecast)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type adminProvider struct {
	Name          string `json:"name"`
	Zone          string `json:"zone"`
	State         string `json:"state"`
	LastError     string `json:"last_error,omitempty"`
	LastSuccess   string `json:"last_success,omitempty"`
	LastFailure   string `json:"last_failure,omitempty"`
	ForecastState string `json:"forecast_state"`
	ForecastError string `json:"forecast_error,omitempty"`
}

type adminForecast struct {
	Source      string `json:"source"`
	Points      int    `json:"points"`
	GeneratedAt string `json:"generated_at,omitempty"`
	Start       string `json:"start"`
	End         string `json:"end"`
}

type adminRegion struct {
	Region        string          `json:"region"`
	Intensity     *float64        `json:"intensity_g_kwh"`
	Kind          string          `json:"kind,omitempty"`
	Source        string          `json:"source,omitempty"`
	ObservedAt    string          `json:"observed_at,omitempty"`
	ValidUntil    string          `json:"valid_until,omitempty"`
	FetchedAt     string          `json:"fetched_at,omitempty"`
	AgeSeconds    *float64        `json:"age_seconds,omitempty"`
	Fallback      string          `json:"fallback"`
	FallbackLevel int             `json:"fallback_level"`
	Providers     []adminProvider `json:"providers"`
	Forecast      *adminForecast  `json:"forecast,omitempty"`
}

type adminResponse struct {
	Ready   bool          `json:"ready"`
	Time    string        `json:"time"`
	Regions []adminRegion `json:"regions"`
}

func jsonTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (h *Handler) serveAdmin(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	resp := adminResponse{Ready: h.t.Ready(), Time: jsonTime(now), Regions: []adminRegion{}}
	for _, rs := range h.t.Snapshot() {
		r := rs.Reading
		ar := adminRegion{
			Region:        rs.Region,
			Fallback:      r.Level.String(),
			FallbackLevel: int(r.Level),
			Providers:     []adminProvider{},
		}
		if r.Level != Unknown {
			v := r.Signal.Intensity
			ar.Intensity = &v
			ar.Kind = string(r.Signal.Kind)
			ar.Source = r.Signal.Source
			ar.ObservedAt = jsonTime(r.Signal.ObservedAt)
			ar.ValidUntil = jsonTime(r.Signal.ValidUntil)
			ar.FetchedAt = jsonTime(r.FetchedAt)
		}
		if r.Level == Live || r.Level == LastKnownGood {
			age := r.Age(now).Seconds()
			ar.AgeSeconds = &age
		}
		for _, p := range rs.Providers {
			state := "ok"
			switch {
			case p.Failed:
				state = "failed"
			case p.LastSuccess.IsZero():
				state = "pending"
			}
			fstate := "ok"
			if p.ForecastFailed {
				fstate = "failed"
			}
			ar.Providers = append(ar.Providers, adminProvider{
				Name: p.Name, Zone: p.Zone, State: state, LastError: p.LastError,
				LastSuccess: jsonTime(p.LastSuccess), LastFailure: jsonTime(p.LastFailure),
				ForecastState: fstate, ForecastError: p.ForecastError,
			})
		}
		if rs.ForecastPoints > 0 {
			ar.Forecast = &adminForecast{
				Source: rs.ForecastSource, Points: rs.ForecastPoints, GeneratedAt: jsonTime(rs.ForecastGeneratedAt),
				Start: jsonTime(rs.ForecastStart), End: jsonTime(rs.ForecastEnd),
			}
		}
		resp.Regions = append(resp.Regions, ar)
	}
	writeJSON(w, http.StatusOK, resp)
}

// sdkEmissionsData is the SDK's EmissionsData as /emissions/bylocations/best
// serialises it.
type sdkEmissionsData struct {
	Location string  `json:"location"`
	Time     string  `json:"time"`
	Rating   float64 `json:"rating"`
	Duration string  `json:"duration"`
}

// sdkDataPoint is the SDK's EmissionsDataDTO.
type sdkDataPoint struct {
	Location  string  `json:"location"`
	Timestamp string  `json:"timestamp"`
	Duration  int     `json:"duration"` // minutes
	Value     float64 `json:"value"`
}

// sdkForecast is the SDK's EmissionsForecastDTO.
type sdkForecast struct {
	GeneratedAt       string         `json:"generatedAt"`
	RequestedAt       string         `json:"requestedAt"`
	Location          string         `json:"location"`
	DataStartAt       string         `json:"dataStartAt"`
	DataEndAt         string         `json:"dataEndAt"`
	WindowSize        int            `json:"windowSize"`
	OptimalDataPoints []sdkDataPoint `json:"optimalDataPoints"`
	ForecastData      []sdkDataPoint `json:"forecastData"`
}

// problem is the SDK's validation-problem body.
type problem struct {
	Title  string              `json:"title"`
	Status int                 `json:"status"`
	Detail string              `json:"detail,omitempty"`
	Errors map[string][]string `json:"errors,omitempty"`
}

// problems collects every bad parameter of a request.
type problems map[string][]string

func (p problems) add(param, format string, args ...any) {
	p[param] = append(p[param], fmt.Sprintf(format, args...))
}

// writeProblems is the one place that turns request problems into a status
// and a client-safe body: bad parameters are 400, data not yet available 503.
func writeProblems(w http.ResponseWriter, p problems, unavailable bool) {
	status, title, detail := http.StatusBadRequest, "Bad Request", "Invalid parameters"
	if unavailable {
		status, title, detail = http.StatusServiceUnavailable, "Service Unavailable", "No carbon data yet"
	}
	writeJSON(w, status, problem{Title: title, Status: status, Detail: detail, Errors: p})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client may be gone; nothing to do about it
}

// parseLocations returns the location parameters (repeated, or comma
// separated), in order and without duplicates.
func parseLocations(q url.Values, p problems) []string {
	var out []string
	for _, key := range []string{"location", "locations"} {
		for _, v := range q[key] {
			for l := range strings.SplitSeq(v, ",") {
				l = strings.TrimSpace(l)
				if l != "" && !slices.Contains(out, l) {
					out = append(out, l)
				}
			}
		}
	}
	if len(out) == 0 {
		p.add("location", "location is required")
	}
	return out
}

// parseTimeParam parses an optional time parameter; zero means absent.
func parseTimeParam(q url.Values, name string, p problems) time.Time {
	v := q.Get(name)
	if v == "" {
		return time.Time{}
	}
	t, err := ParseTime(v)
	if err != nil {
		p.add(name, "%s: %v", name, err)
	}
	return t
}

var timeLayouts = []string{
	"2006-1-2T15:4:5Z07:00",
	"2006-1-2T15:4:5",
	"2006-1-2T15:4Z07:00",
	"2006-1-2T15:4",
	"2006-1-2",
}

// ParseTime parses a time as the Carbon Aware SDK API accepts it: RFC 3339
// (fractional seconds optional, month, day and clock fields may lack their
// leading zero), or the same without a zone offset (then UTC), or a bare
// date (midnight UTC). A space where the offset's "+" belongs (a "+" that
// was not URL-encoded) is read as "+".
func ParseTime(s string) (time.Time, error) {
	if len(s) > 64 {
		return time.Time{}, fmt.Errorf("time %.20q... is too long", s)
	}
	s = strings.ReplaceAll(strings.TrimSpace(s), " ", "+")
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
}

// lookupRegions checks that every location is a configured region.
func (h *Handler) lookupRegions(locs []string, p problems) {
	for _, l := range locs {
		if _, ok := h.t.slots[l]; !ok {
			p.add("location", "unknown location %q", l)
		}
	}
}

func (h *Handler) serveBest(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := problems{}
	locs := parseLocations(q, p)
	h.lookupRegions(locs, p)
	start := parseTimeParam(q, "time", p)
	end := parseTimeParam(q, "toTime", p)
	if _, bad := p["time"]; !bad && q.Get("time") == "" && q.Get("toTime") != "" {
		p.add("time", "time must be defined if toTime is defined")
	}
	if len(p) > 0 {
		writeProblems(w, p, false)
		return
	}
	now := time.Now()
	if start.IsZero() {
		start = now
	}
	if end.IsZero() {
		end = start
	} else if !start.Before(end) {
		p.add("time", "time must be before toTime")
		writeProblems(w, p, false)
		return
	}

	type candidate struct {
		sdkEmissionsData
		start time.Time
		kind  Kind
	}
	var all []candidate
	kinds := map[Kind][]string{}
	for _, loc := range locs {
		var found []candidate
		if f, ok := h.t.Forecast(loc); ok {
			for _, pt := range f.Points {
				if pt.End().After(start) && !pt.Start.After(end) {
					found = append(found, candidate{sdkEmissionsData{loc, jsonTime(pt.Start), pt.Intensity, sdkDuration(pt.Duration)}, pt.Start, f.Kind})
				}
			}
		}
		if rd, ok := h.t.Current(loc); len(found) == 0 && ok && !now.Before(start) && !now.After(end) {
			at, d := rd.Signal.ObservedAt, time.Duration(0)
			if at.IsZero() {
				at = now
			} else if rd.Signal.ValidUntil.After(at) {
				d = rd.Signal.ValidUntil.Sub(at)
			}
			found = append(found, candidate{sdkEmissionsData{loc, jsonTime(at), rd.Signal.Intensity, sdkDuration(d)}, at, rd.Signal.Kind})
		}
		if len(found) > 0 {
			kinds[found[0].kind] = append(kinds[found[0].kind], loc)
		}
		all = append(all, found...)
	}
	if len(kinds) > 1 {
		p.add("location", "locations report different kinds of intensity (average: %s; marginal: %s) and cannot be compared",
			strings.Join(kinds[Average], ","), strings.Join(kinds[Marginal], ","))
		writeProblems(w, p, false)
		return
	}
	if len(all) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	best := slices.MinFunc(all, func(a, b candidate) int { return compareFloat(a.Rating, b.Rating) }).Rating
	out := []sdkEmissionsData{}
	for _, c := range all {
		if c.Rating == best {
			out = append(out, c.sdkEmissionsData)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sdkDuration formats d as .NET serialises a TimeSpan ("hh:mm:ss", with a
// "d." day prefix when it is a day or more).
func sdkDuration(d time.Duration) string {
	d = d.Round(time.Second)
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	s := fmt.Sprintf("%02d:%02d:%02d", d/time.Hour, d%time.Hour/time.Minute, d%time.Minute/time.Second)
	if days > 0 {
		s = fmt.Sprintf("%d.%s", days, s)
	}
	return s
}

func (h *Handler) serveForecast(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := problems{}
	locs := parseLocations(q, p)
	h.lookupRegions(locs, p)
	start := parseTimeParam(q, "dataStartAt", p)
	end := parseTimeParam(q, "dataEndAt", p)
	windowSize := 0
	if v := q.Get("windowSize"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			p.add("windowSize", "windowSize %q is not a whole number of minutes", v)
		case n < 0:
			p.add("windowSize", "windowSize %d is negative", n)
		case n > 7*24*60:
			p.add("windowSize", "windowSize %d is longer than a week", n)
		default:
			windowSize = n
		}
	}
	if !start.IsZero() && !end.IsZero() && !start.Before(end) {
		p.add("dataStartAt", "dataStartAt must be earlier than dataEndAt")
	}
	if len(p) > 0 {
		writeProblems(w, p, false)
		return
	}
	now := time.Now()
	out := []sdkForecast{}
	for _, loc := range locs {
		f, ok := h.t.Forecast(loc)
		if !ok {
			p.add("location", "no forecast for location %q yet", loc)
			continue
		}
		first, last := f.Points[0].Start, f.Points[len(f.Points)-1].End()
		if !start.IsZero() && (start.Before(first) || start.After(last)) {
			p.add("dataStartAt", "dataStartAt must be within the forecast of %s, %s through %s", loc, jsonTime(first), jsonTime(last))
		}
		if !end.IsZero() && (end.Before(first) || end.After(last)) {
			p.add("dataEndAt", "dataEndAt must be within the forecast of %s, %s through %s", loc, jsonTime(first), jsonTime(last))
		}
		size := time.Duration(windowSize) * time.Minute
		if size == 0 {
			size = f.Points[0].Duration
		}
		windows, err := Windows(f, size, start, end)
		if err != nil {
			p.add("location", "forecast of %q: %v", loc, err)
			continue
		}
		sf := sdkForecast{
			GeneratedAt: jsonTime(f.GeneratedAt), RequestedAt: jsonTime(now), Location: loc,
			DataStartAt: jsonTime(start), DataEndAt: jsonTime(end), WindowSize: windowSize,
			OptimalDataPoints: []sdkDataPoint{}, ForecastData: []sdkDataPoint{},
		}
		if len(windows) > 0 {
			if start.IsZero() {
				sf.DataStartAt = jsonTime(windows[0].Start)
			}
			if end.IsZero() {
				sf.DataEndAt = jsonTime(windows[len(windows)-1].Start)
			}
			best := slices.MinFunc(windows, func(a, b Window) int { return compareFloat(a.Intensity, b.Intensity) }).Intensity
			for _, win := range windows {
				dp := sdkDataPoint{Location: loc, Timestamp: jsonTime(win.Start), Duration: int(size / time.Minute), Value: win.Intensity}
				sf.ForecastData = append(sf.ForecastData, dp)
				if win.Intensity == best {
					sf.OptimalDataPoints = append(sf.OptimalDataPoints, dp)
				}
			}
		}
		out = append(out, sf)
	}
	if len(p) > 0 {
		_, noData := p["location"]
		writeProblems(w, p, noData && len(p) == 1)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
