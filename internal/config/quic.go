package config

import (
	"fmt"
	"slices"
	"time"
)

// Defaults of the [listeners.quic] section (HTTP/3).
const (
	DefaultAltSvcMaxAge       = 24 * time.Hour
	DefaultQUICStreams        = 100
	DefaultQUICIdle           = 30 * time.Second
	DefaultQUICHandshake      = 10 * time.Second
	DefaultQUICHeaderBytes    = 64 << 10
	DefaultQUICRetryUnderLoad = 128
)

// QUIC configures HTTP/3 (QUIC over UDP, on the listener's address) for a
// TLS listener whose protocols include "h3".
type QUIC struct {
	// AltSvcMaxAge is the ma= of the Alt-Svc header that advertises h3 on
	// the listener's h1 and h2 responses (default 24h; "0s" advertises
	// nothing).
	AltSvcMaxAge Duration `toml:"alt_svc_max_age" json:"alt_svc_max_age"`
	// MaxIncomingStreams is the number of concurrent requests (bidirectional
	// streams) a client may have open on one connection (default 100).
	MaxIncomingStreams int `toml:"max_incoming_streams" json:"max_incoming_streams"`
	// IdleTimeout closes a connection without network activity (default 30s).
	IdleTimeout Duration `toml:"idle_timeout" json:"idle_timeout"`
	// HandshakeTimeout bounds the QUIC and TLS handshake (default 10s).
	HandshakeTimeout Duration `toml:"handshake_timeout" json:"handshake_timeout"`
	// MaxHeaderBytes bounds a request's HEADERS frame (default 65536).
	MaxHeaderBytes int `toml:"max_header_bytes" json:"max_header_bytes"`
	// Allow0RTT accepts TLS early data (0-RTT) from resuming clients
	// (default false). Early data can be replayed, so requests that arrive
	// in it are served only for idempotent methods; others get 425 Too Early.
	Allow0RTT bool `toml:"allow_0rtt" json:"allow_0rtt"`
	// RetryUnderLoad is the number of handshakes in progress above which
	// new clients must first prove their address with a QUIC Retry (one
	// extra round trip) (default 128; 1 to 1000000).
	RetryUnderLoad int `toml:"retry_under_load" json:"retry_under_load"`
}

// HasH3 reports whether the listener serves HTTP/3.
func (l *Listener) HasH3() bool { return slices.Contains(l.Protocols, "h3") }

func setQUICDefaults(f *File) {
	for i := range f.Listeners {
		q := &f.Listeners[i].QUIC
		dur(&q.AltSvcMaxAge, DefaultAltSvcMaxAge)
		num(&q.MaxIncomingStreams, DefaultQUICStreams)
		dur(&q.IdleTimeout, DefaultQUICIdle)
		dur(&q.HandshakeTimeout, DefaultQUICHandshake)
		num(&q.MaxHeaderBytes, DefaultQUICHeaderBytes)
		num(&q.RetryUnderLoad, DefaultQUICRetryUnderLoad)
	}
}

func (v *validator) quic() {
	for i, l := range v.f.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		if l.TLS == nil {
			if j := slices.Index(l.Protocols, "h3"); j >= 0 {
				v.add(fmt.Sprintf("%s.protocols[%d]", p, j), "h3 is HTTP/3 over QUIC, which always uses TLS: add a [listeners.tls] table")
			}
		}
		q := l.QUIC
		qp := p + ".quic"
		v.between(qp+".max_incoming_streams", q.MaxIncomingStreams, 1, 10000)
		v.between(qp+".max_header_bytes", q.MaxHeaderBytes, 1<<10, 1<<20)
		v.between(qp+".retry_under_load", q.RetryUnderLoad, 1, 1000000)
		if q.IdleTimeout.Duration < time.Second && !q.IdleTimeout.invalid {
			v.add(qp+".idle_timeout", "%s is below the minimum 1s", q.IdleTimeout.Duration)
		}
		if q.HandshakeTimeout.Duration < 100*time.Millisecond && !q.HandshakeTimeout.invalid {
			v.add(qp+".handshake_timeout", "%s is below the minimum 100ms", q.HandshakeTimeout.Duration)
		}
		if q.AltSvcMaxAge.Duration%time.Second != 0 {
			v.add(qp+".alt_svc_max_age", "%s is not a whole number of seconds", q.AltSvcMaxAge.Duration)
		}
	}
}
