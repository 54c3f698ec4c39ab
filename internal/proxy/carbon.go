package proxy

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"
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

// EnergySample is what the proxy knows about one finished request for
// energy accounting.
type EnergySample struct {
	// Bytes is the request and response body bytes proxied.
	Bytes int64
	// Region is the serving endpoint's region ("" when none was reached).
	Region string
	// UpstreamJoules is the upstream energy from the cluster's model.
	UpstreamJoules float64
	// Intensity is Region's intensity at decision time, gCO2eq/kWh;
	// IntensityKnown says whether it is known.
	Intensity      float64
	IntensityKnown bool
	// AvoidedGrams is the gCO2eq saved against least_request (may be
	// negative).
	AvoidedGrams float64
}

// EnergyMeter accounts the requests of one route and returns a request's
// estimated energy in joules. It is called once per request and must not
// block; the daemon wires telemetry's meter into it.
type EnergyMeter interface {
	Observe(EnergySample) float64
}

// routeCarbon is a route's energy and carbon accounting.
type routeCarbon struct {
	meter   EnergyMeter // nil: no energy accounting
	model   UpstreamEnergy
	headers bool
}

func newRouteCarbon(meterFor func(route string) EnergyMeter, r Route, c *Cluster) *routeCarbon {
	rc := &routeCarbon{model: c.Energy, headers: r.CarbonHeaders}
	if meterFor != nil {
		rc.meter = meterFor(r.Name)
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
	o := EnergySample{Bytes: respBytes + max(r.ContentLength, 0)}
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
