package pqtls

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestClientPolicyMatrix(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	certPEM, keyPEM := ca.issue(t, leafSpec{serial: 7})
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	// Servers of other stacks: Go's defaults (PQ-capable) and a
	// classical-only server.
	pqAddr, pqResults := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{kp}})
	classicalAddr, classicalResults := serveTLS(t, &tls.Config{
		Certificates:     []tls.Certificate{kp},
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
	})

	tests := []struct {
		name      string
		policy    Policy
		classical bool
		wantGroup string // "" = handshake must fail
		wantAudit bool
	}{
		{name: "prefer/pq server", policy: PolicyPrefer, wantGroup: "X25519MLKEM768"},
		{name: "prefer/classical server", policy: PolicyPrefer, classical: true, wantGroup: "X25519"},
		{name: "audit/pq server", policy: PolicyAudit, wantGroup: "X25519MLKEM768"},
		{name: "audit/classical server", policy: PolicyAudit, classical: true, wantGroup: "X25519", wantAudit: true},
		{name: "require/pq server", policy: PolicyRequire, wantGroup: "X25519MLKEM768"},
		{name: "require/classical server", policy: PolicyRequire, classical: true},
		{name: "off/pq server", policy: PolicyOff, wantGroup: "X25519"},
		{name: "off/classical server", policy: PolicyOff, classical: true, wantGroup: "X25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			m := NewMetrics(prometheus.NewRegistry())
			conf, err := ClientConfig(ClientOptions{
				Name: "payments", Policy: tt.policy, CAFile: caFile, ServerName: "localhost",
				Logger: logs.logger(), Metrics: m,
			})
			if err != nil {
				t.Fatal(err)
			}
			addr, results := pqAddr, pqResults
			if tt.classical {
				addr, results = classicalAddr, classicalResults
			}
			cs, err := dialTLS(t, addr, conf)
			recv(t, results)
			if tt.wantGroup == "" {
				if !isRemoteAlert(err, "handshake failure") {
					t.Fatalf("got %v, want a handshake failure alert", err)
				}
				if got := testutil.CollectAndCount(m.upstreamHandshakes); got != 0 {
					t.Errorf("got %d upstream handshake series, want 0", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := GroupName(cs.CurveID); got != tt.wantGroup {
				t.Errorf("got group %s, want %s", got, tt.wantGroup)
			}
			if got := testutil.ToFloat64(m.upstreamHandshakes.WithLabelValues("payments", tt.wantGroup)); got != 1 {
				t.Errorf("got aegis_tls_upstream_handshakes_total{cluster=payments,group=%s} %v, want 1", tt.wantGroup, got)
			}
			want := 0.0
			if tt.wantAudit {
				want = 1
			}
			if got := testutil.ToFloat64(m.upstreamClassical.WithLabelValues("payments")); got != want {
				t.Errorf("got aegis_pqtls_upstream_classical_handshakes_total %v, want %v", got, want)
			}
			logged := strings.Contains(logs.String(), "classical upstream tls handshake")
			if logged != tt.wantAudit {
				t.Errorf("got audit log %v, want %v; logs:\n%s", logged, tt.wantAudit, logs.String())
			}
			if tt.wantAudit && !strings.Contains(logs.String(), "cluster=payments") {
				t.Errorf("got audit log %q, want cluster=payments", logs.String())
			}
		})
	}
}

func TestClientVerifiesServer(t *testing.T) {
	t.Parallel()
	ca, other := newTestCA(t), newTestCA(t)
	dir := t.TempDir()
	certPEM, keyPEM := ca.issue(t, leafSpec{serial: 7})
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{kp}})
	tests := []struct {
		name    string
		opts    ClientOptions
		wantErr bool
	}{
		{name: "trusted ca", opts: ClientOptions{CAFile: writeFile(t, dir, "ca.pem", ca.pem), ServerName: "localhost"}},
		{name: "other ca", opts: ClientOptions{CAFile: writeFile(t, dir, "other.pem", other.pem), ServerName: "localhost"}, wantErr: true},
		{name: "wrong name", opts: ClientOptions{CAFile: writeFile(t, dir, "ca2.pem", ca.pem), ServerName: "payments.internal"}, wantErr: true},
		{name: "system roots", opts: ClientOptions{ServerName: "localhost"}, wantErr: true},
		{name: "insecure skip verify", opts: ClientOptions{InsecureSkipVerify: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := ClientConfig(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = dialTLS(t, addr, conf)
			recv(t, results)
			if got := err != nil; got != tt.wantErr {
				t.Errorf("got error %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestClientMeshMutualTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	serverDir, clientDir := t.TempDir(), t.TempDir()
	certFile, keyFile := ca.issueFiles(t, serverDir, leafSpec{serial: 1})
	caFile := writeFile(t, serverDir, "ca.pem", ca.pem)
	m := NewMetrics(prometheus.NewRegistry())
	s, err := NewServer(ServerOptions{
		Name: "mesh", Policy: PolicyRequire, CertFile: certFile, KeyFile: keyFile,
		ClientCAFile: caFile, RequireClientCert: true,
		AllowedIdentities: []string{"spiffe://mesh.test/ns/shop/*"},
		NextProtos:        []string{"h2"},
		Metrics:           m,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serveTLS(t, s.TLSConfig())

	tests := []struct {
		name    string
		uri     string
		wantErr error
	}{
		{name: "allowed workload", uri: "spiffe://mesh.test/ns/shop/sa/cart"},
		{name: "other workload", uri: "spiffe://mesh.test/ns/ads/sa/tracker", wantErr: ErrIdentityNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, key := ca.issue(t, leafSpec{serial: 20, client: true, uris: []string{tt.uri}})
			conf, err := ClientConfig(ClientOptions{
				Name: "shop", Policy: PolicyRequire, CAFile: caFile, ServerName: "localhost",
				CertFile: writeFile(t, clientDir, "c.pem", cert), KeyFile: writeFile(t, clientDir, "k.pem", key),
				NextProtos: []string{"h2"}, Metrics: m,
			})
			if err != nil {
				t.Fatal(err)
			}
			cs, err := dialTLS(t, addr, conf)
			sr := recv(t, results)
			if tt.wantErr != nil {
				if !errors.Is(sr.err, tt.wantErr) {
					t.Errorf("got server error %v, want %v", sr.err, tt.wantErr)
				}
				if err == nil {
					t.Error("got no client error, want one")
				}
				return
			}
			if err != nil || sr.err != nil {
				t.Fatalf("got client error %v, server error %v, want none", err, sr.err)
			}
			if got, want := cs.NegotiatedProtocol, "h2"; got != want {
				t.Errorf("got ALPN %q, want %q", got, want)
			}
			if got, want := sr.state.PeerCertificates[0].URIs[0].String(), tt.uri; got != want {
				t.Errorf("got peer identity %s, want %s", got, want)
			}
		})
	}
	// In TLS 1.3 the client's handshake completes before the server checks
	// the client certificate, so the refused one is counted on the client
	// side too (and surfaces as an alert on the first read).
	if got := testutil.ToFloat64(m.upstreamHandshakes.WithLabelValues("shop", "X25519MLKEM768")); got != 2 {
		t.Errorf("got %v upstream handshakes, want 2", got)
	}
	if got := testutil.ToFloat64(m.handshakes.WithLabelValues("mesh", "X25519MLKEM768")); got != 1 {
		t.Errorf("got %v server handshakes, want 1", got)
	}
}

func TestClientCertRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca := newTestCA(t)
		dir := t.TempDir()
		serverCert, serverKey := ca.issue(t, leafSpec{serial: 1})
		kp, err := tls.X509KeyPair(serverCert, serverKey)
		if err != nil {
			t.Fatal(err)
		}
		server := &tls.Config{Certificates: []tls.Certificate{kp}, ClientCAs: ca.pool(), ClientAuth: tls.RequireAndVerifyClientCert}
		c1, k1 := ca.issue(t, leafSpec{serial: 31, client: true})
		certFile, keyFile := writeFile(t, dir, "c.pem", c1), writeFile(t, dir, "k.pem", k1)
		conf, err := ClientConfig(ClientOptions{CAFile: writeFile(t, dir, "ca.pem", ca.pem), ServerName: "localhost", CertFile: certFile, KeyFile: keyFile})
		if err != nil {
			t.Fatal(err)
		}
		conf.ClientSessionCache = nil // full handshakes: the certificate is sent each time
		var seen int64
		server.VerifyConnection = func(cs tls.ConnectionState) error {
			seen = cs.PeerCertificates[0].SerialNumber.Int64()
			return nil
		}
		handshake := func() int64 {
			t.Helper()
			if _, err := pipeHandshake(t, server, conf); err != nil {
				t.Fatal(err)
			}
			return seen
		}
		if got := handshake(); got != 31 {
			t.Fatalf("got client serial %d, want 31", got)
		}
		c2, k2 := ca.issue(t, leafSpec{serial: 32, client: true})
		writeFile(t, dir, "c.pem", c2)
		writeFile(t, dir, "k.pem", k2)
		if got := handshake(); got != 31 {
			t.Errorf("got client serial %d within the check interval, want 31", got)
		}
		time.Sleep(clientCertCheckInterval)
		if got := handshake(); got != 32 {
			t.Errorf("got client serial %d after the check interval, want 32", got)
		}
		writeFile(t, dir, "k.pem", []byte("broken"))
		time.Sleep(clientCertCheckInterval)
		if got := handshake(); got != 32 {
			t.Errorf("got client serial %d after a broken write, want 32", got)
		}
	})
}

func TestClientConfigValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		opts ClientOptions
		want []string
	}{
		{name: "bad policy", opts: ClientOptions{Policy: "always"}, want: []string{`"always"`}},
		{name: "require with 1.2", opts: ClientOptions{Policy: PolicyRequire, MinVersion: "1.2"}, want: []string{"require needs min version 1.3"}},
		{name: "key without cert", opts: ClientOptions{KeyFile: "k.pem"}, want: []string{"must be set together"}},
		{name: "missing ca", opts: ClientOptions{CAFile: dir + "/ca.pem"}, want: []string{"ca.pem"}},
		{name: "bad client cert", opts: ClientOptions{CertFile: writeFile(t, dir, "c.pem", []byte("x")), KeyFile: writeFile(t, dir, "k.pem", []byte("y"))}, want: []string{"c.pem", "no certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ClientConfig(tt.opts)
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
	conf, err := ClientConfig(ClientOptions{MinVersion: "1.2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range conf.CipherSuites {
		if name := tls.CipherSuiteName(id); !strings.HasPrefix(name, "TLS_ECDHE_") {
			t.Errorf("got suite %s, want ECDHE only", name)
		}
	}
}
