package pqtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestServerPolicyMatrix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		policy    Policy
		classical bool   // client offers only X25519 and P-256
		wantGroup string // "" means the handshake must fail with an alert
		wantAudit bool
	}{
		{name: "prefer/pq client", policy: PolicyPrefer, wantGroup: "X25519MLKEM768"},
		{name: "prefer/classical client", policy: PolicyPrefer, classical: true, wantGroup: "X25519"},
		{name: "zero policy is prefer/pq client", policy: "", wantGroup: "X25519MLKEM768"},
		{name: "audit/pq client", policy: PolicyAudit, wantGroup: "X25519MLKEM768"},
		{name: "audit/classical client", policy: PolicyAudit, classical: true, wantGroup: "X25519", wantAudit: true},
		{name: "require/pq client", policy: PolicyRequire, wantGroup: "X25519MLKEM768"},
		{name: "require/classical client", policy: PolicyRequire, classical: true},
		{name: "off/pq client", policy: PolicyOff, wantGroup: "X25519"},
		{name: "off/classical client", policy: PolicyOff, classical: true, wantGroup: "X25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			m := NewMetrics(prometheus.NewRegistry())
			s, err := NewServer(ServerOptions{Name: "edge", Policy: tt.policy, Logger: logs.logger(), Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			addr, results := serveTLS(t, s.TLSConfig())
			conf := pqClient(serverRoots(s))
			if tt.classical {
				conf = classicalClient(serverRoots(s))
			}
			cs, err := dialTLS(t, addr, conf)
			sr := recv(t, results)

			if tt.wantGroup == "" {
				if err == nil {
					t.Fatalf("got handshake with group %s, want a handshake failure alert", GroupName(cs.CurveID))
				}
				if !isRemoteAlert(err, "handshake failure") {
					t.Fatalf("got client error %v, want a handshake failure alert", err)
				}
				if sr.err == nil {
					t.Fatal("got no server handshake error, want one")
				}
				if got := testutil.CollectAndCount(m.handshakes); got != 0 {
					t.Errorf("got %d handshake series, want 0", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("got client error %v, want none", err)
			}
			if sr.err != nil {
				t.Fatalf("got server error %v, want none", sr.err)
			}
			if got := GroupName(cs.CurveID); got != tt.wantGroup {
				t.Errorf("got client group %s, want %s", got, tt.wantGroup)
			}
			if got := NegotiatedGroup(&sr.state); got != tt.wantGroup {
				t.Errorf("got server group %s, want %s", got, tt.wantGroup)
			}
			if got := testutil.ToFloat64(m.handshakes.WithLabelValues("edge", tt.wantGroup)); got != 1 {
				t.Errorf("got aegis_tls_handshakes_total{listener=edge,group=%s} %v, want 1", tt.wantGroup, got)
			}
			wantClassical := 0.0
			if tt.wantAudit {
				wantClassical = 1
			}
			if got := testutil.ToFloat64(m.classical.WithLabelValues("edge")); got != wantClassical {
				t.Errorf("got aegis_pqtls_classical_handshakes_total %v, want %v", got, wantClassical)
			}
			logged := strings.Contains(logs.String(), "classical tls handshake")
			if logged != tt.wantAudit {
				t.Errorf("got audit log %v, want %v; logs:\n%s", logged, tt.wantAudit, logs.String())
			}
			if tt.wantAudit {
				for _, want := range []string{"level=WARN", "listener=edge", "remote_addr=127.0.0.1:", "group=X25519"} {
					if !strings.Contains(logs.String(), want) {
						t.Errorf("got audit log %q, want it to contain %q", logs.String(), want)
					}
				}
			}
		})
	}
}

func TestServerPreferPicksPQOverClientOrder(t *testing.T) {
	t.Parallel()
	s, err := NewServer(ServerOptions{Policy: PolicyPrefer})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serveTLS(t, s.TLSConfig())
	// A client that lists X25519 first still gets the hybrid group: the
	// order of CurvePreferences is ignored by crypto/tls, which selects a
	// post-quantum group whenever both sides support one (with a
	// HelloRetryRequest when the client sent no such key share).
	tests := []struct {
		name   string
		groups []tls.CurveID
	}{
		{name: "x25519 listed first", groups: []tls.CurveID{tls.X25519, tls.X25519MLKEM768}},
		{name: "p256 listed first", groups: []tls.CurveID{tls.CurveP256, tls.X25519MLKEM768}},
		{name: "secp256r1mlkem768 too", groups: []tls.CurveID{tls.SecP256r1MLKEM768, tls.X25519MLKEM768, tls.X25519}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := pqClient(serverRoots(s))
			conf.CurvePreferences = tt.groups
			cs, err := dialTLS(t, addr, conf)
			if err != nil {
				t.Fatal(err)
			}
			recv(t, results)
			if got, want := GroupName(cs.CurveID), "X25519MLKEM768"; got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
}

func TestServerRequireAcceptsOtherPQGroup(t *testing.T) {
	t.Parallel()
	s, err := NewServer(ServerOptions{Policy: PolicyRequire})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serveTLS(t, s.TLSConfig())
	conf := pqClient(serverRoots(s))
	conf.CurvePreferences = []tls.CurveID{tls.SecP256r1MLKEM768, tls.CurveP256}
	cs, err := dialTLS(t, addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, results)
	if got, want := GroupName(cs.CurveID), "SecP256r1MLKEM768"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestServerDevCertH2(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	s, err := NewServer(ServerOptions{Name: "dev", Hosts: []string{"aegis.test", "10.1.2.3"}, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "development certificate") {
		t.Errorf("got logs %q, want a Warn about the development certificate", logs.String())
	}
	leaf := s.Certificate().Leaf
	if diff := cmp.Diff([]string{"localhost", "aegis.test"}, leaf.DNSNames); diff != "" {
		t.Errorf("dev cert DNS names (-want +got):\n%s", diff)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if diff := cmp.Diff([]string{"127.0.0.1", "::1", "10.1.2.3"}, ips); diff != "" {
		t.Errorf("dev cert IPs (-want +got):\n%s", diff)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("got public key %T, want ECDSA P-256", leaf.PublicKey)
	}

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-Group", NegotiatedGroup(r.TLS))
	}))
	srv.EnableHTTP2 = true
	srv.TLS = s.TLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)

	tr := &http.Transport{TLSClientConfig: pqClient(serverRoots(s)), ForceAttemptHTTP2: true}
	tr.TLSClientConfig.ServerName = ""
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("X-Proto"), "HTTP/2.0"; got != want {
		t.Errorf("got proto %s, want %s", got, want)
	}
	if got, want := resp.TLS.NegotiatedProtocol, "h2"; got != want {
		t.Errorf("got ALPN %q, want %q", got, want)
	}
	if got, want := resp.Header.Get("X-Group"), "X25519MLKEM768"; got != want {
		t.Errorf("got server-side tls_group %s, want %s", got, want)
	}
}

func TestServerTLS12AEADOnly(t *testing.T) {
	t.Parallel()
	s, err := NewServer(ServerOptions{MinVersion: "1.2"})
	if err != nil {
		t.Fatal(err)
	}
	conf := s.TLSConfig()
	if got, want := conf.MinVersion, uint16(tls.VersionTLS12); got != want {
		t.Errorf("got min version %x, want %x", got, want)
	}
	suites := map[uint16]*tls.CipherSuite{}
	for _, cs := range tls.CipherSuites() {
		suites[cs.ID] = cs
	}
	for _, cs := range tls.InsecureCipherSuites() {
		suites[cs.ID] = cs
	}
	for _, id := range conf.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("got suite %s, want only ECDHE with an AEAD", name)
		}
		if suites[id] == nil || suites[id].Insecure {
			t.Errorf("got suite %s, want a secure suite", name)
		}
	}
	addr, results := serveTLS(t, conf)
	tests := []struct {
		name    string
		suite   uint16
		wantErr bool
	}{
		{name: "ecdhe gcm", suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{name: "ecdhe chacha20", suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "ecdhe cbc refused", suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := pqClient(serverRoots(s))
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tt.suite}
			cs, err := dialTLS(t, addr, c)
			recv(t, results)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got suite %s, want a handshake error", tls.CipherSuiteName(cs.CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := cs.Version, uint16(tls.VersionTLS12); got != want {
				t.Errorf("got version %x, want %x", got, want)
			}
			if got, want := GroupName(cs.CurveID), "X25519"; got != want {
				t.Errorf("got group %s, want %s", got, want)
			}
		})
	}
}

func TestServerTLS13OnlyByDefault(t *testing.T) {
	t.Parallel()
	s, err := NewServer(ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serveTLS(t, s.TLSConfig())
	c := pqClient(serverRoots(s))
	c.MaxVersion = tls.VersionTLS12
	_, err = dialTLS(t, addr, c)
	recv(t, results)
	if !isRemoteAlert(err, "protocol version not supported") {
		t.Errorf("got %v, want a protocol version alert", err)
	}
}

func TestServerMutualTLSIdentities(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	other := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := ca.issueFiles(t, dir, leafSpec{serial: 10})
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	var logs logBuffer
	m := NewMetrics(prometheus.NewRegistry())
	s, err := NewServer(ServerOptions{
		Name:              "mesh",
		Policy:            PolicyRequire,
		CertFile:          certFile,
		KeyFile:           keyFile,
		ClientCAFile:      caFile,
		RequireClientCert: true,
		AllowedIdentities: []string{"spiffe://mesh.test/ns/shop/sa/cart", "spiffe://mesh.test/ns/ops/*"},
		Logger:            logs.logger(),
		Metrics:           m,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serveTLS(t, s.TLSConfig())
	tests := []struct {
		name    string
		cert    *tls.Certificate
		wantErr string // alert description, "" = accepted
	}{
		{name: "exact identity", cert: new(ca.clientKeyPair(t, "spiffe://mesh.test/ns/shop/sa/cart"))},
		{name: "prefix identity", cert: new(ca.clientKeyPair(t, "spiffe://mesh.test/ns/ops/sa/backup"))},
		{name: "second of two uris", cert: new(ca.clientKeyPair(t, "spiffe://other.test/x", "spiffe://mesh.test/ns/shop/sa/cart"))},
		{name: "other identity", cert: new(ca.clientKeyPair(t, "spiffe://mesh.test/ns/shop/sa/evil")), wantErr: "bad certificate"},
		{name: "prefix itself", cert: new(ca.clientKeyPair(t, "spiffe://mesh.test/ns/ops/")), wantErr: "bad certificate"},
		{name: "no uri", cert: new(ca.clientKeyPair(t)), wantErr: "bad certificate"},
		{name: "untrusted ca", cert: new(other.clientKeyPair(t, "spiffe://mesh.test/ns/shop/sa/cart")), wantErr: "unknown certificate authority"},
		{name: "no client cert", wantErr: "certificate required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := pqClient(ca.pool())
			if tt.cert != nil {
				c.Certificates = []tls.Certificate{*tt.cert}
			}
			_, err := dialTLS(t, addr, c)
			sr := recv(t, results)
			if tt.wantErr == "" {
				if err != nil || sr.err != nil {
					t.Fatalf("got client error %v, server error %v, want none", err, sr.err)
				}
				return
			}
			if !isRemoteAlert(err, tt.wantErr) {
				t.Errorf("got client error %v, want alert %q", err, tt.wantErr)
			}
			if sr.err == nil {
				t.Error("got no server error, want one")
			}
			if tt.wantErr == "bad certificate" && !errors.Is(sr.err, ErrIdentityNotAllowed) {
				t.Errorf("got server error %v, want ErrIdentityNotAllowed", sr.err)
			}
		})
	}
	if got := testutil.ToFloat64(m.handshakes.WithLabelValues("mesh", "X25519MLKEM768")); got != 3 {
		t.Errorf("got %v counted handshakes, want 3 (refused peers are not counted)", got)
	}
	if !strings.Contains(logs.String(), "peer_uris=[spiffe://mesh.test/ns/shop/sa/evil]") {
		t.Errorf("got logs %q, want the refused identity", logs.String())
	}
}

func TestNewServerValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t)
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	tests := []struct {
		name string
		opts ServerOptions
		want []string // substrings of the error
	}{
		{name: "bad policy", opts: ServerOptions{Policy: "maybe"}, want: []string{`"maybe"`, "unknown pq policy"}},
		{name: "bad min version", opts: ServerOptions{MinVersion: "1.1"}, want: []string{`"1.1"`}},
		{name: "require with 1.2", opts: ServerOptions{Policy: PolicyRequire, MinVersion: "1.2"}, want: []string{"require needs min version 1.3"}},
		{name: "cert without key", opts: ServerOptions{CertFile: "c.pem"}, want: []string{"must be set together"}},
		{name: "missing cert file", opts: ServerOptions{CertFile: dir + "/none.pem", KeyFile: dir + "/none-key.pem"}, want: []string{"none.pem"}},
		{name: "require client cert without ca", opts: ServerOptions{RequireClientCert: true}, want: []string{"client ca file"}},
		{name: "identities without ca", opts: ServerOptions{AllowedIdentities: []string{"spiffe://a/b"}}, want: []string{"client ca file"}},
		{name: "bad identity", opts: ServerOptions{ClientCAFile: caFile, AllowedIdentities: []string{"cart"}}, want: []string{`"cart"`}},
		{name: "bad ca file", opts: ServerOptions{ClientCAFile: writeFile(t, dir, "junk.pem", []byte("junk"))}, want: []string{"junk.pem", "no certificate"}},
		{name: "all problems", opts: ServerOptions{Policy: "x", MinVersion: "9", SessionTicketRotation: -1}, want: []string{`"x"`, `"9"`, "negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewServer(tt.opts)
			if err == nil {
				t.Fatal("got no error, want one")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
