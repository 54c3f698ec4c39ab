// Package static is a carbon.Provider with fixed intensities per zone, from
// configuration. It suits regions without a data source, tests and demos.
//
// Its forecast is flat: hourly points at the configured value from the
// start of the current hour to Horizon ahead, so that deferral decisions
// based on it run work at once.
//
// A Provider is immutable after New and safe for concurrent use.
package static
