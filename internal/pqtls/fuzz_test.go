package pqtls

import (
	"crypto/x509"
	"net/url"
	"testing"
	"time"
)

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"require", "prefer", "audit", "off", "", "PREFER", "on", "prefer\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Errorf("got %q from %q, want a round trip", p, s)
		}
		if len(p.serverGroups()) == 0 || len(p.clientGroups()) == 0 {
			t.Errorf("policy %q has no groups", p)
		}
	})
}

// FuzzLoadKeyPair feeds arbitrary certificate and key bytes to the loader
// behind NewServer, Reload and ClientConfig: it must never panic, and a
// successful load must yield a usable leaf.
func FuzzLoadKeyPair(f *testing.F) {
	ca := newTestCA(f)
	c, k := ca.issue(f, leafSpec{serial: 1})
	f.Add(c, k)
	f.Add(c, []byte{})
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), k)
	f.Add(ca.pem, k)
	f.Add(append(append([]byte{}, k...), c...), append(append([]byte{}, c...), k...))
	f.Add([]byte{}, []byte{})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		cert, err := parseKeyPair(certPEM, keyPEM, now)
		if err != nil {
			return
		}
		if cert.Leaf == nil || cert.PrivateKey == nil || len(cert.Certificate) == 0 {
			t.Fatalf("got incomplete certificate %+v", cert)
		}
		if now.After(cert.Leaf.NotAfter) {
			t.Errorf("got expired certificate (not after %s)", cert.Leaf.NotAfter)
		}
	})
}

// FuzzIdentity checks identity patterns against arbitrary URIs: parsing
// never panics, an exact pattern matches its own URI, and a "/*" pattern
// matches only URIs strictly below its prefix.
func FuzzIdentity(f *testing.F) {
	for _, s := range [][2]string{
		{"spiffe://mesh.test/ns/shop/sa/cart", "spiffe://mesh.test/ns/shop/sa/cart"},
		{"spiffe://mesh.test/ns/shop/*", "spiffe://mesh.test/ns/shop/sa/cart"},
		{"spiffe://mesh.test/*", "spiffe://mesh.test.evil/x"},
		{"spiffe://mesh.test/ns/*/sa", "spiffe://mesh.test/ns/a/sa"},
		{"cart", "spiffe://cart"},
		{"spiffe://%zz/x", "spiffe://a/b"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, uri string) {
		p, err := parseIdentity(pattern)
		if err != nil {
			return
		}
		u, err := url.Parse(uri)
		if err != nil {
			return
		}
		matched := identityAllowed(&x509.Certificate{URIs: []*url.URL{u}}, []identityPattern{p})
		if p.prefix != "" && matched && len(u.String()) <= len(p.prefix) {
			t.Errorf("pattern %q matched %q, which is not below it", pattern, u)
		}
		if p.exact != "" {
			self, err := url.Parse(p.exact)
			if err != nil {
				t.Fatalf("exact pattern %q does not parse: %v", p.exact, err)
			}
			if !identityAllowed(&x509.Certificate{URIs: []*url.URL{self}}, []identityPattern{p}) {
				t.Errorf("pattern %q does not match itself", pattern)
			}
		}
	})
}
