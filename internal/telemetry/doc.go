// Package telemetry sets up Aegis-Flow's process logger, access log and
// Prometheus registry, and estimates energy and carbon.
//
// Nothing here is global: the daemon builds one Logger, one access logger,
// one Registry and one Meter and injects them into every component.
//
// # Energy and carbon
//
// A Meter estimates this process's energy every interval: from RAPL
// (/sys/class/powercap package counters, wraparound handled, times the
// process's share of busy CPU time from /proc/stat) when readable, else from
// a CPU-time model (process CPU seconds × watts per vCPU, interpolated
// between a minimum and a maximum by utilisation). Network energy is bytes ×
// joules per byte. The interval's CPU energy is split over the routes by
// the weight of their requests (a fixed weight per request plus its bytes),
// and each route's network energy is its own bytes, so the energy attributed
// to routes adds up to the process total; an interval without requests is
// counted under the route "_idle". Upstream energy comes from the proxy
// (cluster energy models) and is counted in the serving endpoint's region.
// Carbon is energy × the intensity of the region where it was used.
//
// All functions are safe for concurrent use, and so are the values they
// return. RouteMeter.Observe is allocation-free once a region has been seen.
package telemetry
