// Package watttime is a carbon.Provider backed by the WattTime API v3.
//
// # Signal
//
// WattTime publishes the marginal operating emissions rate (MOER, signal type
// co2_moer): the emissions of the generators that would answer a change in
// load, so every Signal and Forecast from this package has Kind
// carbon.Marginal and must never be compared with average intensities from
// other providers. WattTime reports MOER in pounds of CO2 per MWh; this
// package converts every value at the edge to gCO2eq/kWh by multiplying by
// 0.453592 (453.592 g per lb, 1000 kWh per MWh), after checking that the
// answer's meta.units is "lbs_co2_per_mwh" (any other unit is refused with
// carbon.ErrBadResponse naming the unit). Data points last five minutes (or
// meta.data_point_period_seconds when given).
//
// Current is the first point of the latest forecast (requested with a
// one-hour horizon to keep the answer small), which is WattTime's estimate
// for the current five-minute interval; it is valid until that interval ends.
// The latest historical point is not used because it lags real time.
//
// The signal index (Client.Index) is a percentile from 0 to 100 of the
// region's MOER relative to that same region's recent history. It is exposed
// on its own type and never as a Signal intensity, and it must never be
// compared across regions: 30 in one region and 70 in another says nothing
// about which grid is cleaner.
//
// # Authentication and limits
//
// The Client logs in with HTTP Basic auth at /login and caches the bearer
// token, which WattTime keeps valid for 30 minutes; it logs in again once the
// token is 25 minutes old, and once more (only once per request) when a data
// request with a cached token answers 401. It keeps the documented limits
// locally: at most 100 logins and at most 3,000 requests (logins included)
// in any five minutes; a request over either limit fails with a
// *carbon.RateLimitError without being sent. After a 429 from a data
// endpoint the Client sends nothing at all, and after a 429 from /login no
// login, until Retry-After has passed. The username and password never
// appear in logs or errors.
//
// # Errors
//
// Errors name the provider and region and wrap the carbon sentinels: 401 and
// 403 wrap carbon.ErrUnauthorized; 404, and 400 about the region, wrap
// carbon.ErrUnknownZone; 429 and the local limits return a
// *carbon.RateLimitError; 5xx, network errors and timeouts wrap
// carbon.ErrUnavailable; malformed, oversized (over 4 MiB) or truncated
// bodies, wrong units and missing or negative values wrap
// carbon.ErrBadResponse.
//
// # Concurrency
//
// A Client is safe for concurrent use by multiple goroutines; concurrent
// callers share one token and at most one login is in flight at a time. It
// starts no goroutines of its own; every method honours its context.
package watttime
