package config

import (
	"fmt"
	"time"
)

// Defaults of the listener limits and edge defences.
const (
	DefaultMaxHeaderBytes        = 60 << 10
	DefaultMaxHeaderCount        = 100
	DefaultMaxConnections        = 10000
	DefaultMaxConcurrentRequests = 10000
	DefaultWriteIdle             = 30 * time.Second
	DefaultRapidResetThreshold   = 100
	DefaultMaxContinuationFrames = 32
	DefaultTicketRotation        = 24 * time.Hour
	DefaultMaxBodyBytes          = 64 << 20
	DefaultSmuggling             = "reject"
)

// SmugglingModes are the values of listeners.limits.smuggling.
var SmugglingModes = []string{"reject", "off"}

// ListenerLimits are a listener's admission limits and edge defences
// ([listeners.limits]). Each has a counter on /metrics.
type ListenerLimits struct {
	// MaxHeaderBytes bounds the request header section of HTTP/1.1 and the
	// decoded header list of HTTP/2 (default 61440 = 60 KiB; over it: 431).
	MaxHeaderBytes int `toml:"max_header_bytes" json:"max_header_bytes"`
	// MaxHeaderCount bounds the number of request header fields (default
	// 100; over it: 431).
	MaxHeaderCount int `toml:"max_header_count" json:"max_header_count"`
	// MaxConnections caps open client connections (default 10000); one
	// beyond it is closed as soon as it is accepted. -1: no cap.
	MaxConnections int `toml:"max_connections" json:"max_connections"`
	// MaxConcurrentRequests caps requests in progress (default 10000; over
	// it: 503 with Retry-After). -1: no cap.
	MaxConcurrentRequests int `toml:"max_concurrent_requests" json:"max_concurrent_requests"`
	// Smuggling is "reject" (default: ambiguous HTTP/1.1 framing gets 400
	// and the connection closes) or "off".
	Smuggling string `toml:"smuggling" json:"smuggling"`
}

// setLimitsDefaults fills the listener limits, the TLS ticket rotation and
// the routes' body limits.
func setLimitsDefaults(f *File) {
	for i := range f.Listeners {
		l := &f.Listeners[i]
		num(&l.Limits.MaxHeaderBytes, DefaultMaxHeaderBytes)
		num(&l.Limits.MaxHeaderCount, DefaultMaxHeaderCount)
		num(&l.Limits.MaxConnections, DefaultMaxConnections)
		num(&l.Limits.MaxConcurrentRequests, DefaultMaxConcurrentRequests)
		str(&l.Limits.Smuggling, DefaultSmuggling)
		dur(&l.Timeouts.WriteIdle, DefaultWriteIdle)
		num(&l.HTTP2.RapidResetThreshold, DefaultRapidResetThreshold)
		num(&l.HTTP2.MaxContinuationFrames, DefaultMaxContinuationFrames)
		if l.TLS != nil {
			dur(&l.TLS.SessionTicketRotation, DefaultTicketRotation)
		}
	}
	for i := range f.Routes {
		if f.Routes[i].MaxBodyBytes == 0 {
			f.Routes[i].MaxBodyBytes = DefaultMaxBodyBytes
		}
	}
}

// limits validates what setLimitsDefaults fills.
func (v *validator) limits() {
	for i, l := range v.f.Listeners {
		p := listenerPath(i) + ".limits"
		v.between(p+".max_header_bytes", l.Limits.MaxHeaderBytes, 1<<10, 1<<20)
		v.between(p+".max_header_count", l.Limits.MaxHeaderCount, 1, 10000)
		if n := l.Limits.MaxConnections; n != -1 {
			v.between(p+".max_connections", n, 1, 10_000_000)
		}
		if n := l.Limits.MaxConcurrentRequests; n != -1 {
			v.between(p+".max_concurrent_requests", n, 1, 10_000_000)
		}
		v.oneOf(p+".smuggling", l.Limits.Smuggling, SmugglingModes)
		if n := l.HTTP2.RapidResetThreshold; n != -1 {
			v.between(listenerPath(i)+".http2.rapid_reset_threshold", n, 1, 1_000_000)
		}
		if n := l.HTTP2.MaxContinuationFrames; n != -1 {
			v.between(listenerPath(i)+".http2.max_continuation_frames", n, 1, 10000)
		}
		if l.TLS != nil {
			if d := l.TLS.SessionTicketRotation; !d.invalid && d.Duration < time.Minute {
				v.add(listenerPath(i)+".tls.session_ticket_rotation", "%s is below the minimum 1m", d.Duration)
			}
		}
	}
	for i, r := range v.f.Routes {
		if r.MaxBodyBytes < -1 {
			v.add(routePath(i)+".max_body_bytes", "%d: use a positive size in bytes, or -1 for no limit", r.MaxBodyBytes)
		}
	}
}

func listenerPath(i int) string { return fmt.Sprintf("listeners[%d]", i) }
func routePath(i int) string    { return fmt.Sprintf("routes[%d]", i) }
