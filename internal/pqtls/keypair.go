package pqtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"time"
)

// ErrNoCertificate is returned when a certificate file holds no parsable
// CERTIFICATE PEM block.
var ErrNoCertificate = errors.New("no certificate PEM block")

// ErrCertificateExpired is returned when a certificate file holds a leaf
// certificate whose NotAfter has passed.
var ErrCertificateExpired = errors.New("certificate has expired")

// pemError tells loadKeyPairFiles which file a parse error belongs to.
type pemError struct {
	inKey bool
	err   error
}

func (e *pemError) Error() string { return e.err.Error() }
func (e *pemError) Unwrap() error { return e.err }

// parseKeyPair parses a PEM certificate chain and a PEM private key. Errors
// never contain key material. The returned certificate has Leaf set.
func parseKeyPair(certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	if err := checkCertPEM(certPEM); err != nil {
		return nil, &pemError{err: err}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// tls.X509KeyPair's messages name the problem (no key block, wrong
		// key type, key does not match certificate) without the key bytes.
		return nil, &pemError{inKey: true, err: err}
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, &pemError{err: err}
		}
		cert.Leaf = leaf
	}
	if now.After(cert.Leaf.NotAfter) {
		return nil, &pemError{err: fmt.Errorf("%w (not after %s)", ErrCertificateExpired, cert.Leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	return &cert, nil
}

// checkCertPEM makes sure the first CERTIFICATE block parses, so that a
// broken certificate file is reported as such rather than as a key problem.
func checkCertPEM(certPEM []byte) error {
	rest := certPEM
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return ErrNoCertificate
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("parse certificate: %w", err)
		}
		return nil
	}
}

// loadKeyPairFiles reads and parses a certificate and key file; errors name
// the file at fault (never its contents).
func loadKeyPairFiles(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read cert file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	cert, err := parseKeyPair(certPEM, keyPEM, now)
	if err != nil {
		if pe, ok := errors.AsType[*pemError](err); ok && pe.inKey {
			return nil, fmt.Errorf("load key file %s: %w", keyFile, pe.err)
		}
		return nil, fmt.Errorf("load cert file %s: %w", certFile, err)
	}
	return cert, nil
}

// loadCAPool reads a PEM bundle of CA certificates.
func loadCAPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("load ca file %s: %w", file, ErrNoCertificate)
	}
	return pool, nil
}

// devCertValidity is how long a generated development certificate is valid.
const devCertValidity = 90 * 24 * time.Hour

// newDevCert generates a self-signed ECDSA P-256 certificate for localhost,
// 127.0.0.1, ::1 and the extra hosts (DNS names or IP addresses).
func newDevCert(hosts []string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate dev key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate dev serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Aegis-Flow development"}, CommonName: "localhost"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(devCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create dev certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse dev certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
