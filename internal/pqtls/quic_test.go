package pqtls

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// TestServerQUIC checks that the same configuration negotiates, counts and
// audits key exchange groups over QUIC (quic-go clones the config and runs
// the handshake through crypto/tls's QUIC API, without a net.Conn).
func TestServerQUIC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		policy    Policy
		classical bool
		wantGroup string // "" = handshake must fail
	}{
		{name: "prefer/pq client", policy: PolicyPrefer, wantGroup: "X25519MLKEM768"},
		{name: "audit/classical client", policy: PolicyAudit, classical: true, wantGroup: "X25519"},
		{name: "require/classical client", policy: PolicyRequire, classical: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			m := NewMetrics(prometheus.NewRegistry())
			s, err := NewServer(ServerOptions{Name: "h3", Policy: tt.policy, NextProtos: []string{"h3"}, Logger: logs.logger(), Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := quic.ListenAddr("127.0.0.1:0", s.TLSConfig(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ln.Close() })
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			conf := pqClient(serverRoots(s))
			if tt.classical {
				conf = classicalClient(serverRoots(s))
			}
			conf.NextProtos = []string{"h3"}
			conn, err := quic.DialAddr(ctx, ln.Addr().String(), conf, nil)
			if tt.wantGroup == "" {
				if err == nil {
					_ = conn.CloseWithError(0, "")
					t.Fatal("got a connection, want a handshake failure")
				}
				// QUIC carries the TLS alert as CRYPTO_ERROR 0x100+alert (40).
				if !strings.Contains(err.Error(), "handshake failure") {
					t.Errorf("got %v, want a handshake failure alert", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseWithError(0, "")
			sconn, err := ln.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer sconn.CloseWithError(0, "")
			state := sconn.ConnectionState().TLS
			if got := NegotiatedGroup(&state); got != tt.wantGroup {
				t.Errorf("got server group %s, want %s", got, tt.wantGroup)
			}
			if got := GroupName(conn.ConnectionState().TLS.CurveID); got != tt.wantGroup {
				t.Errorf("got client group %s, want %s", got, tt.wantGroup)
			}
			if got := testutil.ToFloat64(m.handshakes.WithLabelValues("h3", tt.wantGroup)); got != 1 {
				t.Errorf("got aegis_tls_handshakes_total{listener=h3,group=%s} %v, want 1", tt.wantGroup, got)
			}
			if tt.policy == PolicyAudit {
				if got := testutil.ToFloat64(m.classical.WithLabelValues("h3")); got != 1 {
					t.Errorf("got classical counter %v, want 1", got)
				}
				if !strings.Contains(logs.String(), "remote_addr=127.0.0.1:") {
					t.Errorf("got logs %q, want the remote address of the QUIC peer", logs.String())
				}
			}
		})
	}
}

// TestServerHTTP3 serves HTTP/3 with the default NextProtos (h2, http/1.1):
// http3 replaces them by h3 on the per-connection config, and the handler
// sees the negotiated group in r.TLS.
func TestServerHTTP3(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	s, err := NewServer(ServerOptions{Name: "edge", Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		TLSConfig: s.TLSConfig(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, NegotiatedGroup(r.TLS))
		}),
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(udp) })
	t.Cleanup(func() {
		_ = srv.Close()
		_ = udp.Close()
		wg.Wait()
	})
	tr := &http3.Transport{TLSClientConfig: pqClient(serverRoots(s))}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+udp.LocalAddr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(body), "X25519MLKEM768"; got != want {
		t.Errorf("got tls_group %q, want %q", got, want)
	}
	if got, want := resp.Proto, "HTTP/3.0"; got != want {
		t.Errorf("got proto %s, want %s", got, want)
	}
	if got := testutil.ToFloat64(m.handshakes.WithLabelValues("edge", "X25519MLKEM768")); got != 1 {
		t.Errorf("got %v handshakes counted, want 1", got)
	}
}
