// Package proxy is Aegis-Flow's HTTP request path: it matches a request to a
// route, sends it to an endpoint of the route's cluster through
// httputil.ReverseProxy (Rewrite mode), and streams the answer back.
//
// # Handler contract
//
// For every request the handler returned by [Proxy.Handler]:
//
//   - matches routes in configuration order; no match is a 404;
//   - answers 429 with Retry-After when the route's token bucket is empty
//     (RateLimit), right after the match;
//   - strips hop-by-hop headers (ReverseProxy does) and never forwards an
//     "Upgrade: h2c" (or its HTTP2-Settings); WebSocket upgrades pass;
//   - sets X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host: a client's
//     own values are kept and extended only when the client's address is in
//     the listener's trusted proxies, and replaced otherwise;
//   - applies the route's request header edits (remove, set, add), and its
//     response header edits on the way back;
//   - retries a failed try on another endpoint when the route's RetryPolicy
//     allows it: a listed condition, an idempotent method (unless opted in), a
//     replayable body (none, or a known length up to 64 KiB, then buffered),
//     attempts left and retry budget left; an optional per-try timeout cuts
//     slow tries; jittered backoff separates tries;
//   - bounds the time until response headers by the route timeout (all tries
//     and backoffs together); the body
//     then streams without buffering, flushed as it comes for event streams
//     and unknown-length bodies; trailers pass both ways;
//   - maps every failure to one status in [StatusFor]: dial failure 502, no
//     healthy endpoint or open circuit 503, timeout 504, client gone 499
//     (logged only: nothing is written). Error bodies are one short line and
//     never name an upstream address;
//   - writes one access-log JSON line and updates the metrics.
//
// # Upstream transports
//
// [NewTransport] returns an [H1Transport] for h1 clusters: Aegis-Flow's own
// HTTP/1.1 client, which works on the request's goroutine instead of
// handing each request to per-connection goroutines, and applies the
// cluster's max_connections and max_pending itself. h2c, https and h2 use
// net/http's Transport, h3 quic-go's ([H3Transport]).
//
// A Proxy is immutable after New and safe for concurrent use; a configuration
// reload builds a new Proxy.
package proxy
