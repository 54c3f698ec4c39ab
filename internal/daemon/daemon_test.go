package daemon

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lockedBuffer is an io.Writer safe for the daemon's concurrent logging.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// running is a daemon serving a test configuration.
type running struct {
	d      *Daemon
	cancel context.CancelFunc
	done   chan error
	path   string
	stdout *lockedBuffer
	stderr *lockedBuffer
	once   sync.Once
}

func (r *running) url(listener, path string) string {
	scheme := "http"
	if strings.Contains(listener, "tls") {
		scheme = "https"
	}
	return scheme + "://" + r.d.Addr(listener).String() + path
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
}

func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "aegis.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startDaemon runs a daemon on cfgText, waits until /readyz answers 200 and
// stops it when the test ends.
func startDaemon(t *testing.T, cfgText string) *running {
	t.Helper()
	r := launchDaemon(t, cfgText)
	waitReady(t, r)
	return r
}

// launchDaemon runs a daemon on cfgText (written to a temporary file) and
// stops it when the test ends; it does not wait for readiness.
func launchDaemon(t *testing.T, cfgText string) *running {
	t.Helper()
	path := writeConfig(t, t.TempDir(), cfgText)
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	d, err := New(context.Background(), Options{ConfigPath: path, Stdout: stdout, Stderr: stderr})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cancel: cancel, done: make(chan error, 1), path: path, stdout: stdout, stderr: stderr}
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func waitReady(t *testing.T, r *running) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + r.d.Addr("admin").String() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v; log:\n%s", err, r.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func regionServer(t *testing.T, region string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if d := r.URL.Query().Get("sleep"); d != "" {
			dur, _ := time.ParseDuration(d)
			time.Sleep(dur)
		}
		io.WriteString(w, region)
	}))
	t.Cleanup(s.Close)
	return s
}

// baseConfig is a TLS and a cleartext listener in front of the given
// upstream addresses, everything on ephemeral loopback ports.
func baseConfig(pq string, upstreams ...string) string {
	var eps strings.Builder
	for i, u := range upstreams {
		fmt.Fprintf(&eps, "  [[clusters.endpoints]]\n  address = %q\n  region = \"r%d\"\n", u, i)
	}
	return fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"
[log]
level = "debug"
access = "stdout"
[shutdown]
grace_period = "5s"

[[listeners]]
name = "edge-tls"
address = "127.0.0.1:0"
  [listeners.tls]
  pq = %q

[[listeners]]
name = "edge-plain"
address = "127.0.0.1:0"

[[routes]]
name = "all"
cluster = "web"

[[clusters]]
name = "web"
%s`, pq, eps.String())
}

func tlsClient(curves ...tls.CurveID) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, CurvePreferences: curves},
		ForceAttemptHTTP2: true,
	}}
}

func TestPQPolicies(t *testing.T) {
	up := regionServer(t, "r0")
	tests := []struct {
		pq        string
		curves    []tls.CurveID
		wantGroup tls.CurveID
		wantAlert bool
	}{
		{"prefer", nil, tls.X25519MLKEM768, false},
		{"prefer", []tls.CurveID{tls.X25519}, tls.X25519, false},
		{"audit", []tls.CurveID{tls.X25519}, tls.X25519, false},
		{"require", nil, tls.X25519MLKEM768, false},
		{"require", []tls.CurveID{tls.X25519}, 0, true},
		{"off", nil, tls.X25519, false},
	}
	for _, tt := range tests {
		name := tt.pq + "/pq-client"
		if len(tt.curves) > 0 {
			name = tt.pq + "/classical-client"
		}
		t.Run(name, func(t *testing.T) {
			r := startDaemon(t, baseConfig(tt.pq, up.Listener.Addr().String()))
			resp, err := tlsClient(tt.curves...).Get(r.url("edge-tls", "/"))
			if tt.wantAlert {
				// A TLS alert from the server, not a reset: crypto/tls
				// reports it as "remote error: tls: <alert>".
				if err == nil || !strings.Contains(err.Error(), "remote error: tls: handshake failure") {
					t.Fatalf("got %v, want a handshake_failure alert", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.TLS.CurveID != tt.wantGroup {
				t.Errorf("group: got %v, want %v", resp.TLS.CurveID, tt.wantGroup)
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("protocol: got %s, want HTTP/2 via ALPN", resp.Proto)
			}
			metrics := scrape(t, r)
			want := fmt.Sprintf(`aegis_tls_handshakes_total{group=%q,listener="edge-tls"} 1`, tt.wantGroup.String())
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %s", want)
			}
			if tt.pq == "audit" {
				if !strings.Contains(metrics, `aegis_pqtls_classical_handshakes_total{listener="edge-tls"} 1`) {
					t.Error("audit: classical handshake not counted")
				}
				if !strings.Contains(r.stderr.String(), "classical") {
					t.Errorf("audit: no log line for the classical handshake:\n%s", r.stderr.String())
				}
			}
			waitFor(t, func() bool { return strings.Contains(r.stdout.String(), `"tls_group":"`+tt.wantGroup.String()+`"`) })
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func scrape(t *testing.T, r *running) string {
	t.Helper()
	resp, err := http.Get("http://" + r.d.Addr("admin").String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestAdminEndpoints(t *testing.T) {
	up := regionServer(t, "r0")
	r := startDaemon(t, baseConfig("prefer", up.Listener.Addr().String()))
	get := func(p string) (int, string) {
		resp, err := http.Get("http://" + r.d.Addr("admin").String() + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	http.Get(r.url("edge-plain", "/x"))
	code, metrics := get("/metrics")
	for _, want := range []string{"aegis_requests_total", "aegis_request_duration_seconds", "aegis_upstream_requests_total", "go_goroutines"} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	code, cfg := get("/config")
	var parsed map[string]any
	if code != 200 || json.Unmarshal([]byte(cfg), &parsed) != nil {
		t.Fatalf("/config: %d %q", code, cfg)
	}
	if _, ok := parsed["listeners"]; !ok {
		t.Errorf("/config lacks listeners: %s", cfg)
	}
}

// TestReloadUnderLoad keeps clients busy on both listeners while the
// configuration is reloaded several times (routes, upstreams and a listener
// timeout change). No request may fail.
func TestReloadUnderLoad(t *testing.T) {
	a, b := regionServer(t, "r0"), regionServer(t, "r1")
	cfg := baseConfig("prefer", a.Listener.Addr().String())
	r := startDaemon(t, cfg)
	plain, secure := r.url("edge-plain", "/"), r.url("edge-tls", "/")

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			c := tlsClient()
			c.Transport.(*http.Transport).MaxIdleConnsPerHost = 4
			url := plain
			if i%2 == 1 {
				url = secure
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", url, strings.NewReader("payload"))
				resp, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok.Add(1)
						continue
					}
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	configs := []string{
		baseConfig("prefer", a.Listener.Addr().String(), b.Listener.Addr().String()),
		strings.Replace(baseConfig("prefer", b.Listener.Addr().String()), `name = "edge-plain"
address = "127.0.0.1:0"`, `name = "edge-plain"
address = "`+r.d.Addr("edge-plain").String()+`"
  [listeners.timeouts]
  idle = "30s"`, 1),
		baseConfig("prefer", a.Listener.Addr().String()),
	}
	for i, c := range configs {
		// Keep the bound ports: the reloaded file names them.
		c = strings.Replace(c, `name = "edge-tls"
address = "127.0.0.1:0"`, `name = "edge-tls"
address = "`+r.d.Addr("edge-tls").String()+`"`, 1)
		c = strings.Replace(c, `name = "edge-plain"
address = "127.0.0.1:0"`, `name = "edge-plain"
address = "`+r.d.Addr("edge-plain").String()+`"`, 1)
		c = strings.Replace(c, `address = "127.0.0.1:0"`, `address = "`+r.d.Addr("admin").String()+`"`, 1)
		writeConfig(t, filepath.Dir(r.path), c)
		if err := r.d.Reload(); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed across reloads; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	if ok.Load() < 50 {
		t.Errorf("only %d requests succeeded: the load did not run", ok.Load())
	}
	if !strings.Contains(r.stderr.String(), "configuration reloaded") {
		t.Error("no reload log line")
	}
}

func TestBadReloadKeepsConfig(t *testing.T) {
	up := regionServer(t, "r0")
	r := startDaemon(t, baseConfig("prefer", up.Listener.Addr().String()))
	writeConfig(t, filepath.Dir(r.path), "[[routes]]\nname = \"x\"\ncluster = \"missing\"\nbogus = 1\n")
	err := r.d.Reload()
	if err == nil {
		t.Fatal("reload of a bad file: got nil error")
	}
	log := r.stderr.String()
	for _, want := range []string{"routes[0].bogus: unknown key", `routes[0].cluster: \"missing\" is not defined`, "listeners: at least one listener"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks problem %q:\n%s", want, log)
		}
	}
	resp, err := http.Get(r.url("edge-plain", "/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "r0" {
		t.Errorf("after a refused reload: got %q, want the old configuration serving r0", b)
	}
}

// TestDrainFinishesInFlight stops the daemon while a slow request is in
// flight: the request completes and Run returns nil.
func TestDrainFinishesInFlight(t *testing.T) {
	up := regionServer(t, "r0")
	r := startDaemon(t, baseConfig("prefer", up.Listener.Addr().String()))
	res := make(chan string, 1)
	go func() {
		resp, err := http.Get(r.url("edge-plain", "/?sleep=700ms"))
		if err != nil {
			res <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	r.stop(t)
	if got := <-res; got != "200 r0" {
		t.Errorf("in-flight request during drain: got %q, want 200 r0", got)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Error("Run returned before the in-flight request finished")
	}
	if _, err := http.Get(r.url("edge-plain", "/")); err == nil {
		t.Error("listener still accepting after shutdown")
	}
}

// TestCertificateRotation replaces the certificate files on disk: new
// handshakes get the new certificate with no restart, on a SIGHUP-style
// reload and by the file watcher.
func TestCertificateRotation(t *testing.T) {
	up := regionServer(t, "r0")
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certPath, keyPath, 1)
	cfg := strings.Replace(baseConfig("prefer", up.Listener.Addr().String()), "  pq = \"prefer\"",
		fmt.Sprintf("  pq = \"prefer\"\n  cert_file = %q\n  key_file = %q", certPath, keyPath), 1)
	r := startDaemon(t, cfg)
	serial := func() int64 {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
		resp, err := c.Get(r.url("edge-tls", "/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("initial serial: got %d, want 1", got)
	}
	writeCert(t, certPath, keyPath, 2)
	if err := r.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != 2 {
		t.Errorf("after reload: got serial %d, want 2", got)
	}
}

func writeCert(t *testing.T, certPath, keyPath string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(keyPath+".tmp", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	os.WriteFile(certPath+".tmp", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.Rename(keyPath+".tmp", keyPath)
	os.Rename(certPath+".tmp", certPath)
}

func TestEmbeddedDefaultBuilds(t *testing.T) {
	// The embedded default binds fixed ports, so only build and validate it
	// here; the demo itself is exercised by the CLI test.
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Demo.Upstreams) != 3 {
		t.Errorf("demo upstreams: got %d, want 3", len(cfg.Demo.Upstreams))
	}
}
