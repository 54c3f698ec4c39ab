package pqtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// clientCertCheckInterval is how often, at most, a client re-checks its
// certificate files for changes (on a handshake).
const clientCertCheckInterval = 10 * time.Second

// ClientOptions configures the TLS client of one upstream cluster. The zero
// value of every field is its documented default.
type ClientOptions struct {
	// Name is the cluster name used in metric labels and logs (default
	// "default").
	Name string
	// Policy is the post-quantum policy (default PolicyPrefer). Under
	// PolicyRequire the client offers only X25519MLKEM768, so a
	// classical-only server fails the handshake.
	Policy Policy
	// CAFile is a PEM bundle of CAs that sign upstream certificates (empty =
	// the system roots).
	CAFile string
	// ServerName is the name verified in the upstream certificate and sent
	// in SNI (empty = the host being dialled, as net/http sets it).
	ServerName string
	// InsecureSkipVerify disables verification of the upstream certificate.
	// For development only; the policy and the handshake counters still apply.
	InsecureSkipVerify bool
	// CertFile and KeyFile are the client certificate for mesh mutual TLS
	// (both empty = no client certificate). Changed files are picked up by
	// new handshakes within 10s.
	CertFile, KeyFile string
	// MinVersion is the lowest TLS version, "1.3" (default) or "1.2" (ECDHE
	// AEAD suites only; not with PolicyRequire).
	MinVersion string
	// NextProtos is the ALPN list offered to the upstream (default none).
	NextProtos []string
	// Logger receives audit logs (nil = discard).
	Logger *slog.Logger
	// Metrics counts upstream handshakes when the client's side completes
	// (nil = no metrics). In TLS 1.3 that is before the server has checked a
	// client certificate, so a handshake the server then refuses is counted.
	Metrics *Metrics
}

// ClientConfig validates o and returns the TLS configuration of an upstream
// cluster. The config may be shared by any number of connections.
func ClientConfig(o ClientOptions) (*tls.Config, error) {
	name := o.Name
	if name == "" {
		name = "default"
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	policy := o.Policy.orDefault()
	var errs []error
	if err := o.Policy.validate(); err != nil {
		errs = append(errs, err)
	}
	minVersion, err := parseMinVersion(o.MinVersion)
	if err != nil {
		errs = append(errs, err)
	}
	if policy == PolicyRequire && minVersion == tls.VersionTLS12 {
		errs = append(errs, errors.New("pq policy require needs min version 1.3"))
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("cert file and key file must be set together"))
	}
	var roots *x509.CertPool
	if o.CAFile != "" {
		if roots, err = loadCAPool(o.CAFile); err != nil {
			errs = append(errs, err)
		}
	}
	var cc *clientCert
	if o.CertFile != "" && o.KeyFile != "" {
		cc = &clientCert{src: certSource{certFile: o.CertFile, keyFile: o.KeyFile}, name: name, log: log}
		if _, err := cc.src.load(); err != nil {
			errs = append(errs, err)
		}
		cc.checked.Store(time.Now().UnixNano())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new tls client %q: %w", name, err)
	}

	m := o.Metrics
	c := &tls.Config{
		MinVersion:         minVersion,
		CurvePreferences:   policy.clientGroups(),
		RootCAs:            roots,
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.InsecureSkipVerify, //nolint:gosec // explicit opt-in, documented as development only
		NextProtos:         append([]string(nil), o.NextProtos...),
		// Resumption saves the certificate exchange; a TLS 1.3 resumption
		// still runs a fresh key exchange under the same policy.
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
		VerifyConnection: func(cs tls.ConnectionState) error {
			pq := IsPQ(cs.CurveID)
			if policy == PolicyRequire && !pq {
				return fmt.Errorf("%w: %s", ErrClassicalPeer, GroupName(cs.CurveID))
			}
			m.upstreamHandshake(name, cs.CurveID)
			if !pq && policy == PolicyAudit {
				m.upstreamClassicalHandshake(name)
				log.Warn("classical upstream tls handshake", "cluster", name, "server_name", cs.ServerName,
					"group", GroupName(cs.CurveID), "tls_version", tls.VersionName(cs.Version))
			}
			return nil
		},
	}
	if minVersion == tls.VersionTLS12 {
		c.CipherSuites = append([]uint16(nil), tls12Suites...)
	}
	if cc != nil {
		c.GetClientCertificate = cc.get
	}
	return c, nil
}

// clientCert serves a client certificate from files, re-checking them at
// most every clientCertCheckInterval so that rotated mesh certificates are
// used without a restart.
type clientCert struct {
	src     certSource
	name    string
	log     *slog.Logger
	checked atomic.Int64 // Unix nanoseconds of the last check
}

func (c *clientCert) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	now := time.Now().UnixNano()
	last := c.checked.Load()
	if now-last >= int64(clientCertCheckInterval) && c.checked.CompareAndSwap(last, now) && c.src.changed() {
		if _, err := c.src.load(); err != nil {
			c.log.Warn("client certificate reload failed; keeping the current certificate",
				"cluster", c.name, "error", err)
		}
	}
	return c.src.cur.Load(), nil
}
