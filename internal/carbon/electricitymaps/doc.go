// Package electricitymaps is a carbon.Provider backed by the Electricity Maps
// API v3 (carbon-intensity/latest, /forecast and /history).
//
// # Signal
//
// Electricity Maps publishes the grid's average (attributional) carbon
// intensity per zone in gCO2eq/kWh, so no unit conversion is needed and every
// Signal and Forecast this package returns has Kind carbon.Average. The
// emission factor type selects lifecycle (the default, including the
// construction and fuel supply chain of generators) or direct (combustion
// only) factors; both are averages, but the two must not be compared with each
// other, so one Client uses one type for all zones. Data is hourly: a Signal
// is valid for one hour from its datetime and every forecast or history Point
// lasts one hour.
//
// # Zones
//
// A zone is an Electricity Maps zone key such as "DE" or "US-CAL-CISO". An
// empty zone is refused before any request, the API's fallback to the
// caller's IP location is switched off, and an answer for a zone other than
// the one asked for is refused with carbon.ErrUnknownZone, so that a typo never
// silently yields another grid's intensity.
//
// # Errors
//
// Errors name the provider and zone and wrap the carbon sentinels: 401 and
// 403 wrap carbon.ErrUnauthorized; 404, and 400 about the zone, wrap
// carbon.ErrUnknownZone; 429 returns a *carbon.RateLimitError and the Client
// makes no further request until its Retry-After has passed; 5xx, network
// errors and timeouts wrap carbon.ErrUnavailable; malformed, oversized
// (over 4 MiB) or truncated bodies and missing or negative intensities wrap
// carbon.ErrBadResponse.
//
// # Concurrency
//
// A Client is safe for concurrent use by multiple goroutines. It starts no
// goroutines of its own; every method honours its context.
package electricitymaps
