package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Upstream protocols.
const (
	ProtoH1    = "h1"    // cleartext HTTP/1.1
	ProtoH2C   = "h2c"   // cleartext HTTP/2, prior knowledge
	ProtoHTTPS = "https" // TLS, ALPN h2 or HTTP/1.1
	ProtoH2    = "h2"    // TLS, HTTP/2 only
)

// TransportOptions configures the transport of one cluster.
type TransportOptions struct {
	// Protocol is h1 (default), h2c, https or h2.
	Protocol string
	// TLS is the client TLS configuration for https and h2 (pqtls builds
	// it with the cluster's pq policy). Required for those protocols.
	TLS *tls.Config
	// ConnectTimeout bounds dialing, TLS handshake included (default 5s).
	ConnectTimeout time.Duration
	// MaxIdlePerEndpoint is the number of idle connections kept per endpoint
	// (default 64).
	MaxIdlePerEndpoint int
	// MaxConnsPerEndpoint caps connections per endpoint (0: no cap).
	MaxConnsPerEndpoint int
	// IdleTimeout closes idle connections (default 90s).
	IdleTimeout time.Duration
	// AcquireConn and ReleaseConn, when set, admit each new connection
	// (a circuit breaker) and record its close.
	AcquireConn func() error
	ReleaseConn func()
	// AcquirePending and ReleasePending, when set, admit each request that
	// has to wait for a connection (the circuit breaker's max_pending). Only
	// the h1 transport calls them; for the others the proxy meters the wait
	// through httptrace.
	AcquirePending func() error
	ReleasePending func()
}

func (o TransportOptions) withDefaults() TransportOptions {
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.MaxIdlePerEndpoint == 0 {
		o.MaxIdlePerEndpoint = 64
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 90 * time.Second
	}
	return o
}

// Transport is a cluster's transport: it sends requests and can close its
// idle connections.
type Transport interface {
	http.RoundTripper
	CloseIdleConnections()
}

// NewTransport returns the transport of an h1, h2c, https or h2 cluster:
// an [H1Transport] for h1, an http.Transport for the others. Both pool
// connections per endpoint address.
func NewTransport(o TransportOptions) (Transport, error) {
	if o.Protocol == "" || o.Protocol == ProtoH1 {
		return NewH1Transport(o)
	}
	return newHTTPTransport(o)
}

// newHTTPTransport returns the net/http transport of an h2c, https or h2
// cluster (h1 too, for comparison benchmarks).
func newHTTPTransport(o TransportOptions) (*http.Transport, error) {
	o = o.withDefaults()
	dialer := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	dial := dialer.DialContext
	if o.AcquireConn != nil {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if err := o.AcquireConn(); err != nil {
				return nil, err
			}
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				if o.ReleaseConn != nil {
					o.ReleaseConn()
				}
				return nil, err
			}
			return &countedConn{Conn: c, release: o.ReleaseConn}, nil
		}
	}
	t := &http.Transport{
		Proxy:                  nil, // never use HTTP_PROXY from the environment
		DialContext:            dial,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    o.MaxIdlePerEndpoint,
		MaxConnsPerHost:        o.MaxConnsPerEndpoint,
		IdleConnTimeout:        o.IdleTimeout,
		TLSHandshakeTimeout:    o.ConnectTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true, // pass encodings through untouched
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
	var protos http.Protocols
	switch o.Protocol {
	case "", ProtoH1:
		protos.SetHTTP1(true)
	case ProtoH2C:
		protos.SetUnencryptedHTTP2(true)
	case ProtoHTTPS, ProtoH2:
		if o.TLS == nil {
			return nil, fmt.Errorf("transport: protocol %s needs a TLS config", o.Protocol)
		}
		t.TLSClientConfig = o.TLS.Clone()
		protos.SetHTTP2(true)
		if o.Protocol == ProtoHTTPS {
			protos.SetHTTP1(true)
		}
		if o.Protocol == ProtoH2 {
			t.TLSClientConfig.NextProtos = []string{"h2"}
		} else {
			t.TLSClientConfig.NextProtos = []string{"h2", "http/1.1"}
		}
	default:
		return nil, fmt.Errorf("transport: unknown protocol %q (want h1, h2c, https or h2)", o.Protocol)
	}
	t.Protocols = &protos
	t.HTTP2 = &http.HTTP2Config{
		MaxReadFrameSize:              16 << 10,
		MaxReceiveBufferPerConnection: 4 << 20,
		MaxReceiveBufferPerStream:     1 << 20,
		SendPingTimeout:               15 * time.Second,
		PingTimeout:                   15 * time.Second,
		WriteByteTimeout:              30 * time.Second,
	}
	return t, nil
}

// countedConn releases its breaker slot once when closed.
type countedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.once.Do(c.release)
	}
	return err
}
