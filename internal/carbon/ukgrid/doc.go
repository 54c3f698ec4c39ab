// Package ukgrid is a carbon.Provider backed by the Carbon Intensity API for
// Great Britain (api.carbonintensity.org.uk), which needs no key.
//
// # Signal
//
// The API publishes the average carbon intensity of electricity generation
// in gCO2eq/kWh (no conversion is needed) per half-hour settlement period,
// so Signals and Forecasts have Kind carbon.Average and every Point lasts 30
// minutes; a Signal is valid until the end of its half hour. Note that its
// method (operational emissions of GB generation and imports) differs from
// Electricity Maps' lifecycle factors: the two are both averages but are not
// exactly comparable.
//
// National Current reads /intensity and uses the estimated actual intensity
// of the current half hour, falling back to the forecast when the actual is
// not yet published (null). Regional figures are forecast-only, so regional
// Current is the forecast for the current half hour. Forecast reads the 48
// hours forward from the half hour before the current one (so the series
// covers now however the API rounds its start), and uses forecast values
// throughout.
//
// # Zones
//
// A zone is "national" or "GB" (case-insensitive) for Great Britain as a
// whole, or a regional id from "1" to "17" (1-14 are the DNO regions, 15-17
// are England, Scotland and Wales). Anything else is refused with
// carbon.ErrUnknownZone before any request is sent; ParseZone validates a
// zone for configuration checks.
//
// # Errors
//
// The API's error body is {"error":{"code":...,"message":...}}. Errors name
// the provider and zone and wrap the carbon sentinels: 401 and 403 wrap
// carbon.ErrUnauthorized; 404, and 400 about the region, wrap
// carbon.ErrUnknownZone; 429 returns a *carbon.RateLimitError and the
// Client sends nothing until Retry-After has passed; 5xx, network errors and
// timeouts wrap carbon.ErrUnavailable; malformed, oversized (over 4 MiB) or
// truncated bodies, an error object in a 200 answer, and missing or negative
// intensities wrap carbon.ErrBadResponse.
//
// # Concurrency
//
// A Client is safe for concurrent use by multiple goroutines. It starts no
// goroutines of its own; every method honours its context.
package ukgrid
