// Package server runs Aegis-Flow's listeners: net/http for HTTP/1.1 and for
// accepting connections; HTTP/2 over TLS (ALPN) and h2c (cleartext HTTP/2
// with prior knowledge) are handed from net/http to Aegis-Flow's own HTTP/2
// server (h2serve.go, h2stream.go) or, when a listener asks for it, to
// golang.org/x/net/http2's.
//
// A [Server] owns its socket for its whole life. [Server.Update] applies a new
// configuration without closing the socket: when only the handler changes it
// is swapped atomically and open connections carry on; otherwise a new
// net/http server generation takes over accepting while the previous one
// drains in the background, so a reload neither refuses a connection nor
// drops an in-flight request.
//
// Every timeout and HTTP/2 limit is explicit; the zero values of [Options]
// are not Go's permissive defaults but the documented safe ones.
//
// The methods of Server are safe for concurrent use. Serve blocks until
// Shutdown or Close; Shutdown drains gracefully within its context's
// deadline, Close stops at once, as in net/http.
package server
