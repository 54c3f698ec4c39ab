package pqtls

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// Policy is a post-quantum key exchange policy of a listener or a cluster.
// The zero value means [PolicyPrefer].
type Policy string

// The policies a listener or a cluster can use.
const (
	// PolicyRequire negotiates only post-quantum hybrid groups; classical-only
	// peers fail the handshake with a TLS alert.
	PolicyRequire Policy = "require"
	// PolicyPrefer negotiates X25519MLKEM768 with every peer that supports it
	// and falls back to X25519 (or P-256) for the rest.
	PolicyPrefer Policy = "prefer"
	// PolicyAudit is PolicyPrefer plus a log line and a counter for every
	// classical handshake.
	PolicyAudit Policy = "audit"
	// PolicyOff negotiates only classical groups (X25519, P-256).
	PolicyOff Policy = "off"
)

// ErrUnknownPolicy is returned by ParsePolicy for a string that names no policy.
var ErrUnknownPolicy = errors.New("unknown pq policy (want require, prefer, audit or off)")

// ParsePolicy parses one of "require", "prefer", "audit" or "off" (exact,
// lower case).
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyRequire, PolicyPrefer, PolicyAudit, PolicyOff:
		return p, nil
	}
	return "", fmt.Errorf("parse pq policy %q: %w", s, ErrUnknownPolicy)
}

// String returns the policy's configuration name; the zero value prints as
// "prefer".
func (p Policy) String() string { return string(p.orDefault()) }

func (p Policy) orDefault() Policy {
	if p == "" {
		return PolicyPrefer
	}
	return p
}

func (p Policy) validate() error {
	if p == "" {
		return nil
	}
	_, err := ParsePolicy(string(p))
	return err
}

// serverGroups returns the key exchange groups a server accepts under p.
// crypto/tls ignores the order of CurvePreferences and always selects a
// post-quantum group first when the client supports one, so the list is a
// set; SecP256r1MLKEM768 is accepted for post-quantum clients that do not
// implement X25519MLKEM768 (crypto/tls picks X25519MLKEM768 when a client
// offers both).
func (p Policy) serverGroups() []tls.CurveID {
	switch p.orDefault() {
	case PolicyRequire:
		return []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768}
	case PolicyOff:
		return []tls.CurveID{tls.X25519, tls.CurveP256}
	default:
		return []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.X25519, tls.CurveP256}
	}
}

// clientGroups returns the key exchange groups a client offers under p.
// crypto/tls sends key shares for X25519MLKEM768 and X25519 in its first
// flight, so a prefer client needs no HelloRetryRequest with either kind of
// server.
func (p Policy) clientGroups() []tls.CurveID {
	switch p.orDefault() {
	case PolicyRequire:
		return []tls.CurveID{tls.X25519MLKEM768}
	case PolicyOff:
		return []tls.CurveID{tls.X25519, tls.CurveP256}
	default:
		return []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}
	}
}

// IsPQ reports whether id is a post-quantum hybrid key exchange group.
func IsPQ(id tls.CurveID) bool {
	switch id {
	case tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024:
		return true
	}
	return false
}

// GroupName returns a short, bounded name of a key exchange group for logs
// (tls_group) and metric labels: "X25519MLKEM768", "SecP256r1MLKEM768",
// "SecP384r1MLKEM1024", "X25519", "P256", "P384", "P521", "none" (no key
// exchange group, e.g. a resumed TLS 1.2 session) or "other".
func GroupName(id tls.CurveID) string {
	switch id {
	case tls.X25519MLKEM768:
		return "X25519MLKEM768"
	case tls.SecP256r1MLKEM768:
		return "SecP256r1MLKEM768"
	case tls.SecP384r1MLKEM1024:
		return "SecP384r1MLKEM1024"
	case tls.X25519:
		return "X25519"
	case tls.CurveP256:
		return "P256"
	case tls.CurveP384:
		return "P384"
	case tls.CurveP521:
		return "P521"
	case 0:
		return "none"
	}
	return "other"
}

// NegotiatedGroup returns the GroupName of the key exchange group of a
// connection, e.g. from http.Request.TLS (set for HTTP/1.1, HTTP/2 and
// HTTP/3), or "" when cs is nil (a cleartext connection).
func NegotiatedGroup(cs *tls.ConnectionState) string {
	if cs == nil {
		return ""
	}
	return GroupName(cs.CurveID)
}

// parseMinVersion maps the configuration value to a TLS version; "" means 1.3.
func parseMinVersion(s string) (uint16, error) {
	switch s {
	case "", "1.3":
		return tls.VersionTLS13, nil
	case "1.2":
		return tls.VersionTLS12, nil
	}
	return 0, fmt.Errorf("parse min version %q: want \"1.2\" or \"1.3\"", s)
}

// tls12Suites are the TLS 1.2 cipher suites allowed when a listener or a
// cluster asks for TLS 1.2: ECDHE key exchange with an AEAD only. The
// AES-128-GCM suites are required by HTTP/2 (RFC 9113, section 9.2.2).
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}
