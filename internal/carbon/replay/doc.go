// Package replay is a carbon.Provider that replays a recorded intensity
// trace, optionally sped up, for demos, simulations and tests.
//
// # Time mapping
//
// The provider maps wall time w to trace time
//
//	trace(w) = Start + (w - WallStart) × Speed
//
// and loops: when trace(w) passes the end of a zone's series it continues
// from the series' first point. Everything the provider returns is in wall
// time, through the inverse mapping wall(x) = WallStart + (x - Start) / Speed
// (plus whole loops). So a trace point of one hour replayed at Speed 60
// becomes a signal whose ObservedAt and ValidUntil are one wall minute
// apart, and forecast points last one wall minute each: the forecast is
// compressed by the same factor as time itself. [carbon.BestWindow] on such
// a forecast therefore answers in wall time: a job that runs for 2 wall
// minutes at Speed 60 covers 2 trace hours, and its best window is where
// the trace is cleanest over those 2 hours.
//
// # Formats
//
// Aegis-Flow's own CSV (timestamp,region,g_kwh) and the Electricity Maps
// data-portal export are read; see [Format]. The zone codes a Provider
// answers for are the trace's region (or Zone Id) values.
//
// # Sample
//
// [Sample] is an embedded three-day trace for the demo regions eu-south,
// us-west and sa-east: Electricity Maps hourly data for ES, US-CAL-CISO and
// BR, 2023-06-16 to 2023-06-18 (ODbL 1.0, via umassos/decarbonization-potential;
// see sample.md).
//
// A Provider is immutable after New and safe for concurrent use.
package replay
