package pqtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// servedSerial dials the server over a real socket and returns the serial
// number of the certificate it presents.
func servedSerial(t *testing.T, addr string, results <-chan serverResult, roots *x509.CertPool) int64 {
	t.Helper()
	cs, err := dialTLS(t, addr, pqClient(roots))
	recv(t, results)
	if err != nil {
		t.Fatal(err)
	}
	return cs.PeerCertificates[0].SerialNumber.Int64()
}

func TestServerReload(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := ca.issueFiles(t, dir, leafSpec{serial: 1})
	m := NewMetrics(prometheus.NewRegistry())
	s, err := NewServer(ServerOptions{Name: "edge", CertFile: certFile, KeyFile: keyFile, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serveTLS(t, s.TLSConfig())
	if got := servedSerial(t, addr, results, ca.pool()); got != 1 {
		t.Fatalf("got serial %d, want 1", got)
	}

	// A rotated pair on disk is served to new handshakes after Reload.
	ca.issueFiles(t, dir, leafSpec{serial: 2})
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, addr, results, ca.pool()); got != 2 {
		t.Fatalf("got serial %d after reload, want 2", got)
	}

	// Broken files keep the current pair, and the error names the file.
	other := newTestCA(t)
	_, otherKey := other.issue(t, leafSpec{serial: 3})
	expiredCert, expiredKey := ca.issue(t, leafSpec{serial: 4, notAfter: time.Now().Add(-time.Hour)})
	goodCert, _ := ca.issue(t, leafSpec{serial: 5})
	tests := []struct {
		name      string
		cert, key []byte
		wantFile  string
		wantText  string
	}{
		{name: "garbage cert", cert: []byte("not pem"), key: otherKey, wantFile: certFile, wantText: "no certificate PEM block"},
		{name: "truncated cert", cert: goodCert[:len(goodCert)/2], key: otherKey, wantFile: certFile, wantText: "no certificate PEM block"},
		{name: "key does not match", cert: goodCert, key: otherKey, wantFile: keyFile, wantText: "does not match"},
		{name: "empty key", cert: goodCert, key: nil, wantFile: keyFile, wantText: "key input"},
		{name: "expired cert", cert: expiredCert, key: expiredKey, wantFile: certFile, wantText: "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, dir, "cert.pem", tt.cert)
			writeFile(t, dir, "key.pem", tt.key)
			err := s.Reload()
			if err == nil {
				t.Fatal("got no error, want one")
			}
			for _, w := range []string{tt.wantFile, tt.wantText} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "PRIVATE KEY-----") {
				t.Errorf("got error %q, want no key material", err)
			}
			if got := servedSerial(t, addr, results, ca.pool()); got != 2 {
				t.Errorf("got serial %d after a broken reload, want 2", got)
			}
		})
	}
	if got := testutil.ToFloat64(m.certReloads.WithLabelValues("edge", "error")); got != float64(len(tests)) {
		t.Errorf("got %v failed reloads counted, want %d", got, len(tests))
	}
	if got := testutil.ToFloat64(m.certReloads.WithLabelValues("edge", "ok")); got != 1 {
		t.Errorf("got %v successful reloads counted, want 1", got)
	}

	// Missing files keep the current pair too.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Errorf("got %v, want an error naming %s", err, certFile)
	}
	if got := servedSerial(t, addr, results, ca.pool()); got != 2 {
		t.Errorf("got serial %d, want 2", got)
	}
}

// pipeHandshake runs one handshake over net.Pipe (usable inside a synctest
// bubble) and returns the client's view.
func pipeHandshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		tc := tls.Server(sc, server)
		if err := tc.Handshake(); err != nil {
			sc.Close()
			return
		}
		// Send one byte so the client reads the session ticket first.
		_, _ = tc.Write([]byte("k"))
	})
	tc := tls.Client(cc, client)
	err := tc.Handshake()
	if err == nil {
		_, err = tc.Read(make([]byte, 1))
	}
	cc.Close()
	wg.Wait()
	return tc.ConnectionState(), err
}

func TestServerRunPicksUpRotatedFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca := newTestCA(t)
		dir := t.TempDir()
		certFile, keyFile := ca.issueFiles(t, dir, leafSpec{serial: 1})
		var logs logBuffer
		s, err := NewServer(ServerOptions{Name: "edge", CertFile: certFile, KeyFile: keyFile, Logger: logs.logger()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := s.Run(ctx); err != nil {
				t.Errorf("got Run error %v, want nil", err)
			}
		})
		serial := func() int64 {
			t.Helper()
			cs, err := pipeHandshake(t, s.TLSConfig(), pqClient(ca.pool()))
			if err != nil {
				t.Fatal(err)
			}
			return cs.PeerCertificates[0].SerialNumber.Int64()
		}

		ca.issueFiles(t, dir, leafSpec{serial: 2})
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := serial(); got != 1 {
			t.Errorf("got serial %d before the check interval, want 1", got)
		}
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if got := serial(); got != 2 {
			t.Errorf("got serial %d after the check interval, want 2", got)
		}

		writeFile(t, dir, "cert.pem", []byte("-----BEGIN CERTIFICATE-----\nbroken\n"))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := serial(); got != 2 {
			t.Errorf("got serial %d after a broken write, want 2", got)
		}
		if !strings.Contains(logs.String(), "certificate reload failed") || !strings.Contains(logs.String(), certFile) {
			t.Errorf("got logs %q, want a reload failure naming %s", logs.String(), certFile)
		}
		// An unchanged broken file is not retried (and not logged) again.
		n := strings.Count(logs.String(), "certificate reload failed")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := strings.Count(logs.String(), "certificate reload failed"); got != n {
			t.Errorf("got %d reload failure logs, want %d", got, n)
		}

		ca.issueFiles(t, dir, leafSpec{serial: 3})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := serial(); got != 3 {
			t.Errorf("got serial %d after a fixed write, want 3", got)
		}
		cancel()
		wg.Wait()
	})
}

func TestServerSessionTicketRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewServer(ServerOptions{SessionTicketRotation: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { _ = s.Run(ctx) })

		client := pqClient(serverRoots(s))
		client.ClientSessionCache = tls.NewLRUClientSessionCache(1)
		// HTTP/3 (quic-go) and net/http clone the config; resumption must
		// follow the rotated keys through the clone.
		cloned := s.TLSConfig().Clone()
		handshake := func() (resumed bool) {
			t.Helper()
			cs, err := pipeHandshake(t, cloned, client)
			if err != nil {
				t.Fatal(err)
			}
			if got := GroupName(cs.CurveID); got != "X25519MLKEM768" {
				t.Errorf("got group %s, want X25519MLKEM768 (also on resumption)", got)
			}
			return cs.DidResume
		}
		if handshake() {
			t.Fatal("got a resumed first handshake, want a full one")
		}
		if !handshake() {
			t.Fatal("got a full second handshake, want a resumption")
		}
		// One rotation: the ticket (sealed with the previous key) resumes.
		time.Sleep(time.Hour + time.Second)
		synctest.Wait()
		if !handshake() {
			t.Error("got a full handshake after one rotation, want a resumption with the previous key")
		}
		// Two more rotations: the ticket's key is gone.
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if handshake() {
			t.Error("got a resumption after two rotations, want a full handshake")
		}
		cancel()
		wg.Wait()
	})
}
