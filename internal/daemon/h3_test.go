package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/aegis-flow/aegis/internal/pqtls"
)

// startH3Daemon runs a daemon with cfg, waits until it is healthy and stops
// it at the end of the test.
func startH3Daemon(t *testing.T, cfg string) *running {
	t.Helper()
	r := launchDaemon(t, cfg)
	d := r.d
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + d.Addr("admin").String() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not healthy: %v; log:\n%s", err, r.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// h3Config is one TLS listener serving h1, h2 and h3 and one cleartext
// listener, in front of one cluster.
func h3Config(pq, clusterExtra string, upstreams ...string) string {
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
protocols = ["h1", "h2", "h3"]
  [listeners.tls]
  pq = %q
  [listeners.quic]
  alt_svc_max_age = "1h"

[[listeners]]
name = "edge-plain"
address = "127.0.0.1:0"

[[routes]]
name = "all"
cluster = "web"

[[clusters]]
name = "web"
%s
%s`, pq, clusterExtra, eps.String())
}

func h3Client(t *testing.T, curves ...tls.CurveID) *http3.Transport {
	t.Helper()
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, CurvePreferences: curves},
		// The smallest Initial packet: an X25519MLKEM768 ClientHello
		// (about 1.5 KB) then always spans two packets.
		QUICConfig: &quic.Config{InitialPacketSize: 1200},
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func h3URL(r *running, path string) string {
	return "https://" + r.d.H3Addr("edge-tls").String() + path
}

func h3Do(t *testing.T, rt http.RoundTripper, method, url string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, b
}

func h3Backend(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func h3Scrape(t *testing.T, r *running) string {
	t.Helper()
	resp, err := http.Get("http://" + r.d.Addr("admin").String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestH3ThroughProxy sends an HTTP/3 request through the proxy: the QUIC
// handshake negotiates X25519MLKEM768, the access log records protocol and
// group, the handshake and connection metrics count it, and TCP responses
// advertise h3 with Alt-Svc.
func TestH3ThroughProxy(t *testing.T) {
	be := h3Backend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.Header.Get("X-Forwarded-Proto"))
	})
	r := startH3Daemon(t, h3Config("prefer", "", be))
	tr := h3Client(t)
	resp, body := h3Do(t, tr, http.MethodGet, h3URL(r, "/x"), nil)
	if resp.StatusCode != http.StatusOK || string(body) != "hello from https" {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "hello from https")
	}
	if got := pqtls.GroupName(resp.TLS.CurveID); got != "X25519MLKEM768" {
		t.Errorf("got group %s, want X25519MLKEM768", got)
	}
	if got := resp.Proto; got != "HTTP/3.0" {
		t.Errorf("got proto %s, want HTTP/3.0", got)
	}

	var line map[string]any
	waitUntil(t, func() bool {
		for l := range strings.SplitSeq(r.stdout.String(), "\n") {
			if strings.Contains(l, `"path":"/x"`) {
				return json.Unmarshal([]byte(l), &line) == nil
			}
		}
		return false
	})
	if line["protocol"] != "HTTP/3.0" || line["tls_group"] != "X25519MLKEM768" || line["listener"] != "edge-tls" {
		t.Errorf("got access log %v, want protocol HTTP/3.0, tls_group X25519MLKEM768, listener edge-tls", line)
	}

	m := h3Scrape(t, r)
	for _, want := range []string{
		`aegis_quic_connections_open{listener="edge-tls"} 1`,
		`aegis_tls_handshakes_total{group="X25519MLKEM768",listener="edge-tls"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// TCP (h2 and h1) responses advertise h3 on the same port.
	port := r.d.Addr("edge-tls").(*net.TCPAddr).Port
	if h3Port := r.d.H3Addr("edge-tls").(*net.UDPAddr).Port; h3Port != port {
		t.Errorf("got h3 on port %d, want the TCP port %d", h3Port, port)
	}
	for _, h2 := range []bool{true, false} {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2,
		}}
		resp, err := c.Get("https://" + r.d.Addr("edge-tls").String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := `h3=":` + strconv.Itoa(port) + `"; ma=3600`
		if got := resp.Header.Get("Alt-Svc"); got != want {
			t.Errorf("%s: got Alt-Svc %q, want %q", resp.Proto, got, want)
		}
	}
	tr.Close()
	waitUntil(t, func() bool {
		return strings.Contains(h3Scrape(t, r), `aegis_quic_connections_open{listener="edge-tls"} 0`)
	})
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestH3RequireRefusesClassical: under pq = "require" a QUIC client that
// offers only X25519 fails the handshake with a TLS alert (CRYPTO_ERROR).
func TestH3RequireRefusesClassical(t *testing.T) {
	be := h3Backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	r := startH3Daemon(t, h3Config("require", "", be))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h3URL(r, "/"), nil)
	_, err := h3Client(t, tls.X25519).RoundTrip(req)
	if err == nil {
		t.Fatal("got a response, want a handshake failure")
	}
	te, ok := errors.AsType[*quic.TransportError](err)
	if !ok || !te.ErrorCode.IsCryptoError() || !strings.Contains(err.Error(), "handshake failure") {
		t.Fatalf("got %v, want CRYPTO_ERROR handshake failure", err)
	}

	resp, _ := h3Do(t, h3Client(t), http.MethodGet, h3URL(r, "/"), nil)
	if got := pqtls.GroupName(resp.TLS.CurveID); got != "X25519MLKEM768" {
		t.Errorf("got group %s for a PQ client, want X25519MLKEM768", got)
	}
}

// TestH3LargeBodies streams 8 MiB up and 8 MiB down through the proxy.
func TestH3LargeBodies(t *testing.T) {
	const size = 8 << 20
	be := h3Backend(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Got", strconv.FormatInt(n, 10)+" "+hex.EncodeToString(h.Sum(nil)))
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for i := 0; i < size/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	r := startH3Daemon(t, h3Config("prefer", "", be))
	up := make([]byte, size)
	for i := range up {
		up[i] = byte(i * 7)
	}
	sum := sha256.Sum256(up)
	resp, body := h3Do(t, h3Client(t), http.MethodPost, h3URL(r, "/upload"), bytes.NewReader(up))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got status %d, want 200", resp.StatusCode)
	}
	if got, want := resp.Header.Get("X-Got"), fmt.Sprintf("%d %x", size, sum); got != want {
		t.Errorf("got upstream saw %q, want %q", got, want)
	}
	if len(body) != size || !bytes.Equal(body[:16], []byte("0123456789abcdef")) {
		t.Errorf("got %d response bytes, want %d", len(body), size)
	}
}

// TestH3DrainFinishesInFlight stops the daemon while an h3 request waits
// for its upstream: the request still completes, then Run returns.
func TestH3DrainFinishesInFlight(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	be := h3Backend(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "finished")
	})
	r := startH3Daemon(t, h3Config("prefer", "", be))
	tr := h3Client(t)
	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, h3URL(r, "/slow"), nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("request did not reach the upstream")
	}
	r.cancel()
	time.Sleep(200 * time.Millisecond) // the drain has begun
	select {
	case err := <-r.done:
		t.Fatalf("Run returned %v before the in-flight request finished", err)
	default:
	}
	close(release)
	got := <-res
	if got.err != nil || got.status != http.StatusOK || got.body != "finished" {
		t.Fatalf("got %d %q %v, want 200 \"finished\"", got.status, got.body, got.err)
	}
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
}

// TestUpstreamH3 proxies to an HTTP/3 upstream under the cluster's pq
// policy "require": the upstream sees X25519MLKEM768.
func TestUpstreamH3(t *testing.T) {
	srvTLS, err := pqtls.NewServer(pqtls.ServerOptions{Name: "upstream", NextProtos: []string{"h3"}})
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http3.Server{TLSConfig: srvTLS.TLSConfig(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Proto, pqtls.NegotiatedGroup(r.TLS), n)
	})}
	var wg sync.WaitGroup
	wg.Go(func() { up.Serve(udp) })
	t.Cleanup(func() {
		up.Close()
		udp.Close()
		wg.Wait()
	})
	cfg := h3Config("prefer", "protocol = \"h3\"\n  [clusters.tls]\n  insecure_skip_verify = true\n  pq = \"require\"\n", udp.LocalAddr().String())
	r := startH3Daemon(t, cfg)
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
		url  string
	}{
		{"h1 client", http.DefaultTransport, "http://" + r.d.Addr("edge-plain").String() + "/"},
		{"h3 client", h3Client(t), h3URL(r, "/")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h3Do(t, tc.rt, http.MethodPost, tc.url, strings.NewReader(strings.Repeat("x", 100000)))
			if want := "HTTP/3.0 X25519MLKEM768 100000"; resp.StatusCode != http.StatusOK || string(body) != want {
				t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, want)
			}
		})
	}
	if m := h3Scrape(t, r); !strings.Contains(m, `group="X25519MLKEM768"`) {
		t.Errorf("metrics lack the upstream handshake group")
	}
}

// TestH3Reload turns h3 off and on again with SIGHUP-style reloads: the
// UDP side and Alt-Svc follow the configuration.
func TestH3Reload(t *testing.T) {
	be := h3Backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := h3Config("prefer", "", be)
	r := startH3Daemon(t, cfg)
	first := h3Client(t)
	resp, _ := h3Do(t, first, http.MethodGet, h3URL(r, "/"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d, want 200", resp.StatusCode)
	}
	udp := r.d.H3Addr("edge-tls").String()
	first.Close() // nothing left for the drain to wait for
	path := r.d.opts.ConfigPath
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := r.d.Reload(); err != nil {
			t.Fatalf("Reload: %v", err)
		}
	}
	altSvc := func() string {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := c.Get("https://" + r.d.Addr("edge-tls").String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Alt-Svc")
	}
	write(strings.Replace(cfg, `protocols = ["h1", "h2", "h3"]`, `protocols = ["h1", "h2"]`, 1))
	if a := r.d.H3Addr("edge-tls"); a != nil {
		t.Errorf("got h3 on %v after turning it off, want none", a)
	}
	if got := altSvc(); got != "" {
		t.Errorf("got Alt-Svc %q without h3, want none", got)
	}
	// The drained h3 side gives its UDP port back before h3 is turned on
	// again (a port still held would leave the listener on h1 and h2).
	waitFor(t, func() bool {
		pc, err := net.ListenPacket("udp", udp)
		if err != nil {
			return false
		}
		pc.Close()
		return true
	})
	write(strings.Replace(cfg, `alt_svc_max_age = "1h"`, `alt_svc_max_age = "2h"`, 1))
	if got := altSvc(); !strings.HasSuffix(got, "ma=7200") {
		t.Errorf("got Alt-Svc %q, want ma=7200", got)
	}
	resp, _ = h3Do(t, h3Client(t), http.MethodGet, h3URL(r, "/"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("got %d after turning h3 on again, want 200", resp.StatusCode)
	}
}
