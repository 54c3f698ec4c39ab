package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"
)

// TLS connections and the smuggling guard.
//
// net/http recognises TLS only on a *tls.Conn, and a *tls.Conn hides the
// plaintext from any wrapper, so the HTTP/1.1 smuggling scanner cannot sit
// under net/http's own handshake. A TLS listener therefore runs each
// handshake itself, beside the accept loop and bounded by the read-header
// timeout: a connection that negotiated h2 is handed to net/http as the
// *tls.Conn (net/http finds the handshake done and passes it to the HTTP/2
// guard); any other is handed over as a tlsH1Conn, a scanned connection that
// reports its TLS state through ConnectionState, which net/http uses to fill
// Request.TLS.

// tlsH1Conn is an HTTP/1.1 connection over TLS, scanned for smuggling.
type tlsH1Conn struct {
	*h1Conn
	tc *tls.Conn
}

func (c *tlsH1Conn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// NetConn returns the TLS connection.
func (c *tlsH1Conn) NetConn() net.Conn { return c.tc }

// handshake completes the TLS handshake of c for g, then delivers it.
func (s *Server) handshake(g *generation, c net.Conn) {
	tc := tls.Server(c, g.srv.TLSConfig)
	ctx := context.Background()
	if d := g.handshakeTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
		c.SetDeadline(time.Now().Add(d))
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		if re, ok := errors.AsType[tls.RecordHeaderError](err); ok && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		s.log.Debug("tls handshake failed", "listener", s.name, "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		s.deliver(g, tc)
		return
	}
	s.deliver(g, &tlsH1Conn{h1Conn: &h1Conn{Conn: tc}, tc: tc})
}

// looksLikeHTTP reports whether a TLS record header is the start of a
// plaintext HTTP request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}
