// Package telemetry sets up Aegis-Flow's process logger, access log and
// Prometheus registry.
//
// Nothing here is global: the daemon builds one Logger, one access logger and
// one Registry and injects them into every component. All functions are safe
// for concurrent use, and so are the values they return.
package telemetry
