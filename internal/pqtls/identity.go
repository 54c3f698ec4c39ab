package pqtls

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrIdentityNotAllowed is returned (as the handshake error) when a peer's
// certificate carries none of the allowed URI SAN identities.
var ErrIdentityNotAllowed = errors.New("peer identity not allowed")

// identityPattern is one allowed workload identity: an exact URI such as
// "spiffe://mesh.example/ns/shop/sa/cart", or a prefix written with a
// trailing "/*" ("spiffe://mesh.example/ns/shop/*") that allows every
// identity below that path.
type identityPattern struct {
	exact  string
	prefix string // with its trailing "/", set for "/*" patterns
}

// parseIdentity validates an allowed identity: an absolute URI with a scheme
// and a host, optionally ending in "/*".
func parseIdentity(s string) (identityPattern, error) {
	raw, wildcard := strings.CutSuffix(s, "/*")
	u, err := url.Parse(raw)
	if err != nil {
		return identityPattern{}, fmt.Errorf("parse identity %q: %w", s, err)
	}
	if u.Scheme == "" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return identityPattern{}, fmt.Errorf("parse identity %q: want scheme://host/path, e.g. spiffe://trust.domain/workload", s)
	}
	if strings.Contains(raw, "*") {
		return identityPattern{}, fmt.Errorf("parse identity %q: '*' is only allowed as a final /* segment", s)
	}
	if wildcard {
		return identityPattern{prefix: u.String() + "/"}, nil
	}
	return identityPattern{exact: u.String()}, nil
}

func (p identityPattern) match(id string) bool {
	if p.prefix != "" {
		return strings.HasPrefix(id, p.prefix) && len(id) > len(p.prefix)
	}
	return id == p.exact
}

// identityAllowed reports whether the leaf certificate has a URI SAN matched
// by one of the patterns.
func identityAllowed(leaf *x509.Certificate, patterns []identityPattern) bool {
	for _, u := range leaf.URIs {
		id := u.String()
		for _, p := range patterns {
			if p.match(id) {
				return true
			}
		}
	}
	return false
}
