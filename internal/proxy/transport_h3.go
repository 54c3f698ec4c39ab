package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// ProtoH3 is HTTP/3 over QUIC to the upstream (TLS is always on).
const ProtoH3 = "h3"

// H3Transport is the transport of an h3 cluster: an http3.Transport that
// dials from one UDP socket of its own, under the cluster's TLS
// configuration (and so its pq policy). It is safe for concurrent use.
type H3Transport struct {
	rt      *http3.Transport
	tlsConf *tls.Config
	quic    *quic.Config
	timeout time.Duration
	acquire func() error
	release func()

	mu     sync.Mutex
	udp    net.PacketConn
	qt     *quic.Transport
	closed bool
}

var _ http.RoundTripper = (*H3Transport)(nil)

// NewH3Transport returns the transport of an h3 cluster. o.TLS is required;
// its NextProtos are replaced by "h3". ConnectTimeout bounds the QUIC and
// TLS handshake, IdleTimeout closes idle connections, AcquireConn and
// ReleaseConn admit and release each QUIC connection. The pool options do
// not apply: HTTP/3 multiplexes every request to an endpoint on one
// connection.
func NewH3Transport(o TransportOptions) (*H3Transport, error) {
	if o.TLS == nil {
		return nil, errors.New("transport: protocol h3 needs a TLS config")
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 90 * time.Second
	}
	tc := o.TLS.Clone()
	tc.NextProtos = []string{http3.NextProtoH3}
	t := &H3Transport{
		tlsConf: tc,
		quic: &quic.Config{
			HandshakeIdleTimeout: o.ConnectTimeout / 2, // quic-go aborts after twice this
			MaxIdleTimeout:       o.IdleTimeout,
			KeepAlivePeriod:      15 * time.Second,
		},
		timeout: o.ConnectTimeout,
		acquire: o.AcquireConn,
		release: o.ReleaseConn,
	}
	t.rt = &http3.Transport{
		TLSClientConfig:        tc,
		QUICConfig:             t.quic,
		Dial:                   t.dial,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true, // pass encodings through untouched
	}
	return t, nil
}

// RoundTrip sends one request over HTTP/3.
func (t *H3Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.rt.RoundTrip(req)
}

// CloseIdleConnections closes the QUIC connections that carry no request.
func (t *H3Transport) CloseIdleConnections() { t.rt.CloseIdleConnections() }

// Close closes every connection and the UDP socket. The transport cannot
// be used afterwards.
func (t *H3Transport) Close() error {
	err := t.rt.Close()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.qt != nil {
		err = errors.Join(err, t.qt.Close(), t.udp.Close())
		t.qt, t.udp = nil, nil
	}
	return err
}

func (t *H3Transport) transport() (*quic.Transport, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, http3.ErrTransportClosed
	}
	if t.qt == nil {
		udp, err := net.ListenUDP("udp", nil)
		if err != nil {
			return nil, err
		}
		t.udp, t.qt = udp, &quic.Transport{Conn: udp}
	}
	return t.qt, nil
}

// dial makes one QUIC connection. Its errors are *net.OpError with Op
// "dial", so that passive health and StatusFor treat them as connect
// failures.
func (t *H3Transport) dial(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	fail := func(err error, ra net.Addr) error {
		return &net.OpError{Op: "dial", Net: "udp", Addr: ra, Err: err}
	}
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fail(err, nil)
	}
	qt, err := t.transport()
	if err != nil {
		return nil, fail(err, ra)
	}
	if t.acquire != nil {
		if err := t.acquire(); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	c, err := qt.Dial(ctx, ra, tc, qc)
	if err != nil {
		if t.release != nil {
			t.release()
		}
		return nil, fail(fmt.Errorf("quic handshake: %w", err), ra)
	}
	if t.release != nil {
		context.AfterFunc(c.Context(), t.release)
	}
	return c, nil
}
