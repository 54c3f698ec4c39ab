package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/aegis-flow/aegis/internal/balance"
)

// StatusClientClosed is the status recorded (never sent) when the client
// went away before the answer: nginx's 499.
const StatusClientClosed = 499

// errRouteTimeout is the cancel cause when a route's timeout fires.
var errRouteTimeout = errors.New("route timeout")

// StatusFor maps an error from the upstream path to the status the client
// gets, and a short client-safe text. ctx is the request's context, used to
// tell a client that left from an upstream that failed.
func StatusFor(ctx context.Context, err error) (int, string) {
	if be, ok := errors.AsType[*BodyError](err); ok {
		return be.Status, be.text()
	}
	switch {
	case errors.Is(context.Cause(ctx), errRouteTimeout) || errors.Is(err, errRouteTimeout):
		return http.StatusGatewayTimeout, "upstream timed out"
	case ctx.Err() != nil && errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		return StatusClientClosed, "client closed request"
	case errors.Is(err, balance.ErrNoHealthyEndpoint):
		return http.StatusServiceUnavailable, "no healthy upstream"
	case errors.Is(err, balance.ErrCircuitOpen):
		return http.StatusServiceUnavailable, "upstream overloaded"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "upstream timed out"
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return http.StatusGatewayTimeout, "upstream timed out"
	}
	return http.StatusBadGateway, "upstream unavailable"
}

// isDialError reports whether err happened before a connection was made.
func isDialError(err error) bool {
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "dial" {
		return true
	}
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return true
	}
	return errors.Is(err, errTLSHandshake)
}

var errTLSHandshake = errors.New("upstream tls handshake")
