package pqtls

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ErrClassicalPeer is the handshake error when a peer negotiated a classical
// key exchange under PolicyRequire. crypto/tls normally refuses such a peer
// earlier, during group selection, with a handshake_failure alert; this is a
// second line of defence.
var ErrClassicalPeer = errors.New("classical key exchange refused by pq policy require")

// Defaults of ServerOptions.
const (
	DefaultSessionTicketRotation = 24 * time.Hour
	DefaultCertCheckInterval     = 10 * time.Second
)

// ServerOptions configures a TLS server (one listener). The zero value of
// every field is its documented default.
type ServerOptions struct {
	// Name is the listener name used in metric labels and logs (default
	// "default").
	Name string
	// Policy is the post-quantum policy (default PolicyPrefer).
	Policy Policy
	// CertFile and KeyFile are PEM files of the certificate chain and its
	// private key. Both empty means: generate a self-signed ECDSA P-256
	// development certificate for localhost, 127.0.0.1, ::1 and Hosts.
	CertFile, KeyFile string
	// Hosts are extra DNS names or IP addresses of the development
	// certificate; ignored when CertFile is set.
	Hosts []string
	// MinVersion is the lowest TLS version, "1.3" (default) or "1.2". With
	// "1.2" only ECDHE cipher suites with an AEAD are enabled. PolicyRequire
	// needs "1.3": TLS 1.2 has no post-quantum key exchange.
	MinVersion string
	// NextProtos is the ALPN list in preference order (default "h2",
	// "http/1.1"). Handshakes use this list, not the NextProtos of a clone
	// of TLSConfig, except that quic-go's http3 server replaces it by "h3".
	NextProtos []string
	// ClientCAFile is a PEM bundle of CAs that sign client certificates
	// (mutual TLS). Empty means client certificates are not requested.
	ClientCAFile string
	// RequireClientCert refuses clients without a valid certificate signed
	// by ClientCAFile (which must be set). When false and ClientCAFile is
	// set, a client certificate is verified if one is sent.
	RequireClientCert bool
	// AllowedIdentities are the URI SAN identities (e.g.
	// "spiffe://mesh.example/ns/shop/sa/cart", or "spiffe://mesh.example/*"
	// for every identity below a path) a client certificate must carry one
	// of. Empty allows any verified client. Needs ClientCAFile; a client
	// without a certificate is refused when this is set.
	AllowedIdentities []string
	// SessionTicketRotation is how often Run replaces the session ticket
	// key (default 24h). The previous key still decrypts tickets, so a
	// ticket is resumable for at most two rotation periods.
	SessionTicketRotation time.Duration
	// CertCheckInterval is how often Run checks CertFile and KeyFile for
	// changes (default 10s).
	CertCheckInterval time.Duration
	// Logger receives audit and reload logs (nil = discard).
	Logger *slog.Logger
	// Metrics counts handshakes (nil = no metrics). A handshake is counted
	// once the server has accepted the peer (its group and identity), just
	// before it reads the client's Finished message.
	Metrics *Metrics
}

// Server is the TLS side of one listener: a stable *tls.Config, certificate
// reload and session ticket key rotation.
type Server struct {
	name       string
	policy     Policy
	log        *slog.Logger
	metrics    *Metrics
	identities []identityPattern
	rotation   time.Duration
	interval   time.Duration

	// files is nil for a generated development certificate.
	files   *certSource
	devCert *tls.Certificate

	// ticketKeys only holds the session ticket keys: WrapSession and
	// UnwrapSession seal tickets with it, so every clone of the config
	// (net/http, quic-go and http3 clone) sees rotated keys.
	ticketKeys *tls.Config
	ticketMu   sync.Mutex // serializes rotations; guards ticketKey
	ticketKey  [32]byte   // the key new tickets are sealed with

	template *tls.Config // per-handshake configs are clones of it
	config   *tls.Config // what TLSConfig returns
}

// NewServer validates o, loads (or generates) the certificate and builds the
// server's TLS configuration.
func NewServer(o ServerOptions) (*Server, error) {
	s := &Server{
		name:     o.Name,
		policy:   o.Policy.orDefault(),
		log:      o.Logger,
		metrics:  o.Metrics,
		rotation: o.SessionTicketRotation,
		interval: o.CertCheckInterval,
	}
	if s.name == "" {
		s.name = "default"
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.rotation == 0 {
		s.rotation = DefaultSessionTicketRotation
	}
	if s.interval == 0 {
		s.interval = DefaultCertCheckInterval
	}
	var errs []error
	if err := o.Policy.validate(); err != nil {
		errs = append(errs, err)
	}
	minVersion, err := parseMinVersion(o.MinVersion)
	if err != nil {
		errs = append(errs, err)
	}
	if s.policy == PolicyRequire && minVersion == tls.VersionTLS12 {
		errs = append(errs, errors.New("pq policy require needs min version 1.3"))
	}
	if s.rotation < 0 {
		errs = append(errs, fmt.Errorf("session ticket rotation %s is negative", s.rotation))
	}
	if s.interval < 0 {
		errs = append(errs, fmt.Errorf("cert check interval %s is negative", s.interval))
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("cert file and key file must be set together"))
	}
	if o.RequireClientCert && o.ClientCAFile == "" {
		errs = append(errs, errors.New("require client cert needs a client ca file"))
	}
	if len(o.AllowedIdentities) > 0 && o.ClientCAFile == "" {
		errs = append(errs, errors.New("allowed identities need a client ca file"))
	}
	for _, id := range o.AllowedIdentities {
		p, err := parseIdentity(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.identities = append(s.identities, p)
	}
	var clientCAs *x509.CertPool
	if o.ClientCAFile != "" {
		if clientCAs, err = loadCAPool(o.ClientCAFile); err != nil {
			errs = append(errs, err)
		}
	}
	if o.CertFile != "" && o.KeyFile != "" {
		s.files = &certSource{certFile: o.CertFile, keyFile: o.KeyFile}
		if cert, err := s.files.load(); err != nil {
			errs = append(errs, err)
		} else {
			s.metrics.certExpiry(s.name, float64(cert.Leaf.NotAfter.Unix()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new tls server %q: %w", s.name, err)
	}
	if s.files == nil {
		cert, err := newDevCert(o.Hosts, time.Now())
		if err != nil {
			return nil, fmt.Errorf("new tls server %q: %w", s.name, err)
		}
		s.devCert = cert
		s.metrics.certExpiry(s.name, float64(cert.Leaf.NotAfter.Unix()))
		s.log.Warn("serving a self-signed development certificate; set cert_file and key_file for production",
			"listener", s.name, "hosts", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter)
	}

	s.ticketKeys = &tls.Config{}
	if err := s.rotateTicketKey(); err != nil {
		return nil, fmt.Errorf("new tls server %q: %w", s.name, err)
	}

	nextProtos := o.NextProtos
	if len(nextProtos) == 0 {
		nextProtos = []string{"h2", "http/1.1"}
	}
	s.template = &tls.Config{
		MinVersion:       minVersion,
		CurvePreferences: s.policy.serverGroups(),
		NextProtos:       append([]string(nil), nextProtos...),
		GetCertificate:   s.getCertificate,
		WrapSession:      s.wrapSession,
		UnwrapSession:    s.unwrapSession,
	}
	if minVersion == tls.VersionTLS12 {
		s.template.CipherSuites = append([]uint16(nil), tls12Suites...)
	}
	if clientCAs != nil {
		s.template.ClientCAs = clientCAs
		s.template.ClientAuth = tls.VerifyClientCertIfGiven
		if o.RequireClientCert || len(s.identities) > 0 {
			s.template.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	s.config = s.template.Clone()
	s.config.VerifyConnection = func(cs tls.ConnectionState) error { return s.verifyConnection(cs, "") }
	s.config.GetConfigForClient = s.configForClient
	return s, nil
}

// TLSConfig returns the server configuration. It stays valid for the life of
// the Server: reloaded certificates and rotated ticket keys apply to new
// handshakes, also through clones made by net/http, quic-go and http3.
// Do not modify it; clone it to adapt fields such as NextProtos for other
// libraries (handshakes use the per-connection config from
// GetConfigForClient, built from ServerOptions).
func (s *Server) TLSConfig() *tls.Config { return s.config }

// Name returns the listener name.
func (s *Server) Name() string { return s.name }

// Policy returns the effective post-quantum policy.
func (s *Server) Policy() Policy { return s.policy }

// configForClient returns the per-connection config: a clone of the
// template whose VerifyConnection knows the remote address for audit logs.
func (s *Server) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	remote := ""
	if hello.Conn != nil {
		if a := hello.Conn.RemoteAddr(); a != nil {
			remote = a.String()
		}
	}
	c := s.template.Clone()
	c.VerifyConnection = func(cs tls.ConnectionState) error { return s.verifyConnection(cs, remote) }
	return c, nil
}

// verifyConnection runs at the end of every server handshake, including
// resumptions, on TCP and QUIC alike; ConnectionState.CurveID is set by
// then. It enforces allowed identities and the policy, then counts the
// handshake.
func (s *Server) verifyConnection(cs tls.ConnectionState, remote string) error {
	if len(s.identities) > 0 {
		if len(cs.PeerCertificates) == 0 || !identityAllowed(cs.PeerCertificates[0], s.identities) {
			var uris []string
			if len(cs.PeerCertificates) > 0 {
				for _, u := range cs.PeerCertificates[0].URIs {
					uris = append(uris, u.String())
				}
			}
			s.log.Warn("tls peer identity refused", "listener", s.name, "remote_addr", remote, "peer_uris", uris)
			return ErrIdentityNotAllowed
		}
	}
	pq := IsPQ(cs.CurveID)
	if s.policy == PolicyRequire && !pq {
		return fmt.Errorf("%w: %s", ErrClassicalPeer, GroupName(cs.CurveID))
	}
	s.metrics.serverHandshake(s.name, cs.CurveID)
	if !pq && s.policy == PolicyAudit {
		s.metrics.serverClassical(s.name)
		s.log.Warn("classical tls handshake", "listener", s.name, "remote_addr", remote,
			"group", GroupName(cs.CurveID), "tls_version", tls.VersionName(cs.Version))
	}
	return nil
}

func (s *Server) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.files != nil {
		return s.files.cur.Load(), nil
	}
	return s.devCert, nil
}

// Certificate returns the certificate new handshakes are served with.
func (s *Server) Certificate() *tls.Certificate {
	c, _ := s.getCertificate(nil)
	return c
}

func (s *Server) wrapSession(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	return s.ticketKeys.EncryptTicket(cs, ss)
}

func (s *Server) unwrapSession(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	return s.ticketKeys.DecryptTicket(identity, cs)
}

// rotateTicketKey makes a fresh key the one that seals new tickets and keeps
// the previous one for decryption only.
func (s *Server) rotateTicketKey() error {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("generate session ticket key: %w", err)
	}
	s.ticketMu.Lock()
	defer s.ticketMu.Unlock()
	keys := [][32]byte{k}
	if s.ticketKey != ([32]byte{}) {
		keys = append(keys, s.ticketKey)
	}
	s.ticketKeys.SetSessionTicketKeys(keys)
	s.ticketKey = k
	return nil
}

// Reload re-reads CertFile and KeyFile and serves the new pair to new
// handshakes. On error the current pair stays in use and the error names the
// file at fault. With a development certificate Reload does nothing.
func (s *Server) Reload() error {
	if s.files == nil {
		return nil
	}
	cert, err := s.files.load()
	if err != nil {
		s.metrics.certReload(s.name, false)
		return fmt.Errorf("reload certificate of listener %q: %w", s.name, err)
	}
	s.metrics.certReload(s.name, true)
	s.metrics.certExpiry(s.name, float64(cert.Leaf.NotAfter.Unix()))
	return nil
}

// Run checks the certificate files every CertCheckInterval and reloads them
// when they change, and rotates the session ticket key every
// SessionTicketRotation. It returns nil when ctx is done. Without Run the
// certificate and ticket key never change.
func (s *Server) Run(ctx context.Context) error {
	tickets := time.NewTicker(s.rotation)
	defer tickets.Stop()
	var certCheck <-chan time.Time
	if s.files != nil {
		t := time.NewTicker(s.interval)
		defer t.Stop()
		certCheck = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tickets.C:
			if err := s.rotateTicketKey(); err != nil {
				s.log.Error("session ticket key rotation failed", "listener", s.name, "error", err)
			}
		case <-certCheck:
			if !s.files.changed() {
				continue
			}
			if err := s.Reload(); err != nil {
				s.log.Warn("certificate reload failed; keeping the current certificate",
					"listener", s.name, "error", err)
				continue
			}
			leaf := s.files.cur.Load().Leaf
			s.log.Info("certificate reloaded", "listener", s.name,
				"serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter)
		}
	}
}
