// Package carbon tracks the grid carbon intensity of the regions where
// Aegis-Flow's upstreams run, now and ahead, and answers the questions that
// routing and deferral ask of it.
//
// # Model
//
// A [Provider] turns a provider zone into a [Signal] (the intensity now) and a
// [Forecast] (the intensity ahead). Providers live in sub-packages (one per
// data source); this package only depends on the interface in signal.go.
//
// A [Tracker] keeps, per configured region, the latest signal and forecast
// from an ordered chain of providers. It refreshes them in the background
// (see [Tracker.Run]) and never makes a reader wait on a provider: readers
// load an immutable snapshot from an atomic pointer. When providers fail,
// the value a reader sees walks down a fallback ladder:
//
//	Live          the last refresh succeeded and the value is current
//	LastKnownGood the last refresh failed; the last good value is younger than MaxStaleness
//	Static        no usable live value; the region's configured static value
//	Unknown       nothing usable; routing treats the region as carbon-neutral
//
// [BestWindow] finds the lowest-carbon start for a job of a given duration
// in a forecast, the way the Green Software Foundation Carbon Aware SDK
// computes its optimal forecast window (a rolling, time-weighted average);
// [BestRegion] compares several regions' forecasts for the same window.
//
// # HTTP read API
//
// [NewHandler] serves the tracker's state over HTTP, for the admin listener:
//
//	GET /carbon
//	    Every region: intensity, kind, source, observed-at, fetched-at, age,
//	    fallback level and per-provider state, as JSON (snake_case keys).
//
// It also serves a subset of the Carbon Aware SDK Web API, so that tools
// written for the SDK can query Aegis-Flow. Locations are Aegis-Flow region
// names. Times are RFC 3339 ("2022-07-19T14:00:00Z"); a time without a zone
// offset is UTC; a bare date ("2022-07-19") means its midnight UTC.
//
//	GET /emissions/bylocations/best?location=R1&location=R2[&time=T][&toTime=T2]
//	    The data points with the lowest intensity among the locations whose
//	    interval overlaps [time, toTime] (a point counts when it ends after
//	    time and starts at or before toTime). time defaults to now and toTime
//	    to time. The answer is a JSON array of
//	    {"location","time","rating","duration"} (duration as "hh:mm:ss"),
//	    every point that ties for the lowest rating; 204 when no point
//	    matches. Locations whose signals are of different kinds (average and
//	    marginal) are never compared: that is a 400.
//
//	GET /emissions/forecasts/current?location=R1[&location=R2][&dataStartAt=T][&dataEndAt=T2][&windowSize=M]
//	    For each location, the current forecast scoped to [dataStartAt,
//	    dataEndAt] (default: the whole forecast), its rolling averages over
//	    windows of windowSize minutes (default: one forecast point), and the
//	    optimal windows. The answer is a JSON array of
//	    {"generatedAt","requestedAt","location","dataStartAt","dataEndAt",
//	    "windowSize","optimalDataPoints","forecastData"} whose data points are
//	    {"location","timestamp","duration","value"} (duration in minutes).
//
// Where Aegis-Flow differs from the SDK: candidate window starts are
// dataStartAt and every forecast point boundary after it (the SDK steps from
// dataStartAt by one point's duration; the two agree whenever dataStartAt is
// on a point boundary); a window must end by dataEndAt; optimalDataPoints
// holds every window tied for the lowest value, earliest first. Unsupported:
// /emissions/bylocation, /emissions/bylocations, /emissions/forecasts/batch,
// /emissions/average-carbon-intensity and /locations.
//
// Bad parameters get a 400 whose JSON body names the parameter, in the
// SDK's validation-problem shape: {"title","status","detail","errors":{param:[msg]}}.
// An unknown location is a bad parameter (400); a location without a
// forecast yet gets 503 in the same shape.
//
// # Concurrency
//
// [Tracker] is safe for concurrent use; its read methods ([Tracker.Current],
// [Tracker.Forecast], [Tracker.Regions], [Tracker.Ready],
// [Tracker.Snapshot]) never block on a provider. [BestWindow] and
// [BestRegion] are pure functions. The [Handler] is safe for concurrent use.
package carbon
