package daemon

import (
	"github.com/aegis-flow/aegis/internal/config"
	"github.com/aegis-flow/aegis/internal/server"
)

// applyLimits copies a listener's limits and edge defences into o.
func (d *Daemon) applyLimits(o *server.Options, l config.Listener) {
	o.MaxHeaderBytes = l.Limits.MaxHeaderBytes
	o.HTTP2.RapidResetThreshold = l.HTTP2.RapidResetThreshold
	o.HTTP2.MaxContinuationFrames = l.HTTP2.MaxContinuationFrames
	o.HTTP2.MaxHeaderBlockBytes = l.HTTP2.MaxHeaderBytes
	o.Limits = server.Limits{
		MaxConnections:        l.Limits.MaxConnections,
		MaxConcurrentRequests: l.Limits.MaxConcurrentRequests,
		MaxHeaderCount:        l.Limits.MaxHeaderCount,
		WriteIdleTimeout:      l.Timeouts.WriteIdle.Duration,
		DisableSmugglingGuard: l.Limits.Smuggling == "off",
	}
	if o.Limits.WriteIdleTimeout == 0 {
		o.Limits.WriteIdleTimeout = -1 // "0s" in the file: off
	}
	o.Metrics = d.metrics.server
}
