package proxy

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/aegis-flow/aegis/internal/telemetry"
)

// Response headers of routes with CarbonHeaders.
const (
	HeaderRegion          = "Aegis-Region"
	HeaderCarbonIntensity = "Aegis-Carbon-Intensity"
)

// UpstreamEnergy is a cluster's upstream energy model: JoulesPerRequest plus
// Watts over the request's time upstream. The zero value estimates nothing.
type UpstreamEnergy struct {
	// JoulesPerRequest is a fixed energy per request, in joules.
	JoulesPerRequest float64
	// Watts is the upstream power attributed to a request while it is in
	// flight, in watts.
	Watts float64
}

// Joules returns the model's energy for a request that spent d upstream.
func (u UpstreamEnergy) Joules(d time.Duration) float64 {
	return u.JoulesPerRequest + u.Watts*d.Seconds()
}

// routeCarbon is a route's energy and carbon accounting.
type routeCarbon struct {
	meter   *telemetry.RouteMeter // nil: no energy accounting
	model   UpstreamEnergy
	headers bool
}

func newRouteCarbon(m *telemetry.Meter, r Route, c *Cluster) *routeCarbon {
	rc := &routeCarbon{model: c.Energy, headers: r.CarbonHeaders}
	if m != nil {
		rc.meter = m.Route(r.Name)
	}
	if rc.meter == nil && !rc.headers {
		return nil
	}
	return rc
}

// observe accounts a finished request. The upstream time is approximated by
// the whole request's duration d (the proxy's own share is microseconds).
func (rc *routeCarbon) observe(st *reqState, r *http.Request, respBytes int64, d time.Duration) {
	if rc == nil || rc.meter == nil {
		return
	}
	o := telemetry.Observation{Bytes: respBytes + max(r.ContentLength, 0)}
	if st.region != "" || st.upstream != "" {
		dec := &st.decision
		o.Region = st.region
		o.UpstreamJoules = rc.model.Joules(d)
		o.Intensity, o.IntensityKnown = dec.Intensity, dec.Known
		o.AvoidedGrams = dec.Avoided(o.UpstreamJoules)
		st.avoided = o.AvoidedGrams
	}
	st.energy = rc.meter.Observe(o)
}

// setCarbonHeaders adds the decision's region and intensity to a response.
func (rc *routeCarbon) setCarbonHeaders(resp *http.Response) {
	if rc == nil || !rc.headers || resp.Request == nil {
		return
	}
	st := stateFrom(resp.Request.Context())
	if st == nil || st.region == "" {
		return
	}
	resp.Header[HeaderRegion] = []string{st.region}
	if st.decision.Known {
		resp.Header[HeaderCarbonIntensity] = []string{strconv.FormatFloat(st.decision.Intensity, 'f', -1, 64)}
	}
}

// carbonAttr is the access log's "carbon" group: the decision record and the
// request's estimated energy. Empty (and so omitted) when nothing was picked.
func carbonAttr(st *reqState) slog.Attr {
	if st.region == "" && st.upstream == "" {
		return slog.Attr{}
	}
	d := &st.decision
	attrs := make([]any, 0, 12)
	if d.Known {
		attrs = append(attrs, slog.Float64("intensity", d.Intensity), slog.String("kind", d.Kind))
	}
	attrs = append(attrs, slog.Bool("carbon_aware", d.CarbonAware))
	if d.Best.Region != "" {
		attrs = append(attrs,
			slog.String("best_region", d.Best.Region), slog.Float64("best_intensity", d.Best.Intensity),
			slog.String("worst_region", d.Worst.Region), slog.Float64("worst_intensity", d.Worst.Intensity))
	}
	if d.LeastRequest.Region != "" {
		attrs = append(attrs, slog.String("least_request_region", d.LeastRequest.Region))
	}
	attrs = append(attrs, slog.Float64("avoided_g", st.avoided), slog.Float64("energy_j", st.energy))
	return slog.Group("carbon", attrs...)
}
