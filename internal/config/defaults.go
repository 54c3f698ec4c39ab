package config

import "time"

// Defaults that other packages and the documentation refer to.
const (
	DefaultAdminAddress    = "127.0.0.1:9901"
	DefaultGracePeriod     = 30 * time.Second
	DefaultRouteTimeout    = 30 * time.Second
	DefaultConnectTimeout  = 5 * time.Second
	DefaultReadHeader      = 10 * time.Second
	DefaultRead            = 60 * time.Second
	DefaultIdle            = 120 * time.Second
	DefaultPoolIdle        = 90 * time.Second
	DefaultMaxIdle         = 64
	DefaultH2Streams       = 100
	DefaultH2FrameSize     = 16 << 10
	DefaultH2HeaderBytes   = 64 << 10
	DefaultH2StreamWindow  = 64 << 10
	DefaultH2ConnWindow    = 1 << 20
	DefaultEjectFailures   = 3
	DefaultBaseEjection    = 10 * time.Second
	DefaultMaxEjection     = 5 * time.Minute
	DefaultListenerPQ      = "prefer"
	DefaultMeshPQ          = "require"
	DefaultTLSMinVersion   = "1.3"
	DefaultClusterPolicy   = "round_robin"
	DefaultClusterProtocol = "h1"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultAccessLog       = "stdout"
	DefaultEndpointWeight  = 1
	DefaultRoutePathPrefix = "/"
)

// SetDefaults fills every unset field with its documented default. It is the
// one place defaults are decided. Durations left unset (zero and never
// written) get their default; an explicit "0s" is kept where zero has a
// meaning (route timeout, write timeout).
func SetDefaults(f *File) {
	str(&f.Admin.Address, DefaultAdminAddress)
	str(&f.Log.Level, DefaultLogLevel)
	str(&f.Log.Format, DefaultLogFormat)
	str(&f.Log.Access, DefaultAccessLog)
	dur(&f.Shutdown.GracePeriod, DefaultGracePeriod)
	setQUICDefaults(f)

	for i := range f.Listeners {
		l := &f.Listeners[i]
		if len(l.Protocols) == 0 {
			if l.TLS != nil {
				l.Protocols = []string{"h1", "h2"}
			} else {
				l.Protocols = []string{"h1", "h2c"}
			}
		}
		if l.TLS != nil {
			str(&l.TLS.PQ, DefaultListenerPQ)
			str(&l.TLS.MinVersion, DefaultTLSMinVersion)
		}
		dur(&l.Timeouts.ReadHeader, DefaultReadHeader)
		dur(&l.Timeouts.Read, DefaultRead)
		dur(&l.Timeouts.Idle, DefaultIdle)
		num(&l.HTTP2.MaxConcurrentStreams, DefaultH2Streams)
		num(&l.HTTP2.MaxReadFrameSize, DefaultH2FrameSize)
		num(&l.HTTP2.MaxHeaderBytes, DefaultH2HeaderBytes)
		num(&l.HTTP2.StreamWindow, DefaultH2StreamWindow)
		num(&l.HTTP2.ConnWindow, DefaultH2ConnWindow)
	}
	for i := range f.Routes {
		r := &f.Routes[i]
		str(&r.Match.PathPrefix, DefaultRoutePathPrefix)
		dur(&r.Timeout, DefaultRouteTimeout)
		setRouteResilienceDefaults(r)
	}
	for i := range f.Clusters {
		c := &f.Clusters[i]
		str(&c.Policy, DefaultClusterPolicy)
		str(&c.Protocol, DefaultClusterProtocol)
		dur(&c.ConnectTimeout, DefaultConnectTimeout)
		if c.TLS.CertFile != "" {
			str(&c.TLS.PQ, DefaultMeshPQ)
		}
		str(&c.TLS.PQ, DefaultListenerPQ)
		num(&c.Pool.MaxIdlePerEndpoint, DefaultMaxIdle)
		dur(&c.Pool.IdleTimeout, DefaultPoolIdle)
		setClusterResilienceDefaults(c)
		for j := range c.Endpoints {
			num(&c.Endpoints[j].Weight, DefaultEndpointWeight)
		}
	}
	setCarbonDefaults(f)
	setEnergyDefaults(f)
	setGreenWaitDefaults(f)
	setLimitsDefaults(f)
}

func str(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func num(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

// dur sets a duration that was never written in the file.
func dur(p *Duration, v time.Duration) {
	if p.text == "" && !p.invalid && p.Duration == 0 {
		p.Duration = v
	}
}
