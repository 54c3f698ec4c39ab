// Package daemon is Aegis-Flow's composition root: it turns a config.File
// into the running object graph (listeners, proxy, clusters, TLS, admin,
// demo upstreams) and owns every goroutine and the shutdown order.
//
// [New] loads the configuration and binds every socket, so that a bad file
// or a taken port fails before anything serves. [Daemon.Run] serves until its
// context ends, then drains: listeners stop accepting and in-flight requests
// get the configured grace period, with TCP listeners stopped in parallel.
// [Daemon.Reload] re-reads the configuration; a file with problems is
// refused with every problem logged and the running configuration kept.
// Listeners, clusters and TLS settings that did not change are kept as they
// are, so a reload drops neither connections nor health state.
//
// Reload may be called from any goroutine while Run runs; reloads are
// serialised.
package daemon
