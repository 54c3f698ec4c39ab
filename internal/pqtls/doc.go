// Package pqtls builds the crypto/tls configurations that Aegis-Flow uses on
// every transport: TCP listeners (HTTP/1.1, HTTP/2), the QUIC listener
// (HTTP/3) and the upstream (mesh) transport.
//
// # Post-quantum policy
//
// A [Policy] decides which key exchange groups a peer may negotiate:
//
//   - [PolicyPrefer] offers X25519MLKEM768 (the hybrid post-quantum group of
//     the Go standard library) and falls back to X25519 or P-256 for peers
//     that do not support it. crypto/tls always picks a post-quantum group
//     when both sides support one, so every capable client gets
//     X25519MLKEM768.
//   - [PolicyRequire] offers only post-quantum groups: a classical-only peer
//     fails the handshake with a handshake_failure alert.
//   - [PolicyAudit] is prefer plus a Warn log line and a counter for every
//     classical handshake.
//   - [PolicyOff] offers only the classical groups X25519 and P-256.
//
// # Server
//
// [NewServer] returns a [Server] whose [Server.TLSConfig] stays valid for the
// life of the process: the certificate comes from an atomically swapped
// pointer ([Server.Reload]) and session tickets are sealed with keys that
// [Server.Run] rotates, so configs cloned by net/http or quic-go keep seeing
// new certificates and ticket keys. Every completed handshake is counted per
// listener and group; mutual TLS can restrict peers to URI SAN identities
// such as SPIFFE IDs.
//
// # Client
//
// [ClientConfig] builds the configuration of an upstream cluster with the
// same policy meanings from the client side.
//
// [CheckPQ] proves at start-up, with an in-process handshake, that this
// binary negotiates X25519MLKEM768 (GODEBUG=tlsmlkem=0 or an old go line in
// go.mod would silently disable it).
//
// # Concurrency
//
// All exported functions and the methods of [Server] and [Metrics] are safe
// for concurrent use. The *tls.Config values returned by this package may be
// shared by any number of listeners and connections and must not be modified
// after they are in use (cloning them is fine).
package pqtls
