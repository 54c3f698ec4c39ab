package pqtls

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Policy
		wantErr bool
	}{
		{in: "require", want: PolicyRequire},
		{in: "prefer", want: PolicyPrefer},
		{in: "audit", want: PolicyAudit},
		{in: "off", want: PolicyOff},
		{in: "", wantErr: true},
		{in: "Prefer", wantErr: true},
		{in: " prefer", wantErr: true},
		{in: "on", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePolicy(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrUnknownPolicy) {
					t.Errorf("got %v, want ErrUnknownPolicy", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v, want %q, nil", got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("got String %q, want %q", got.String(), tt.in)
			}
		})
	}
	if got, want := Policy("").String(), "prefer"; got != want {
		t.Errorf("got zero Policy %q, want %q", got, want)
	}
}

func TestGroupName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   tls.CurveID
		want string
		pq   bool
	}{
		{id: tls.X25519MLKEM768, want: "X25519MLKEM768", pq: true},
		{id: tls.SecP256r1MLKEM768, want: "SecP256r1MLKEM768", pq: true},
		{id: tls.SecP384r1MLKEM1024, want: "SecP384r1MLKEM1024", pq: true},
		{id: tls.X25519, want: "X25519"},
		{id: tls.CurveP256, want: "P256"},
		{id: tls.CurveP384, want: "P384"},
		{id: tls.CurveP521, want: "P521"},
		{id: 0, want: "none"},
		{id: 0x6399, want: "other"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := GroupName(tt.id); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if got := IsPQ(tt.id); got != tt.pq {
				t.Errorf("got IsPQ %v, want %v", got, tt.pq)
			}
		})
	}
	if got := NegotiatedGroup(nil); got != "" {
		t.Errorf("got %q for a cleartext connection, want \"\"", got)
	}
}

func TestPolicyGroupsNeverMixUp(t *testing.T) {
	t.Parallel()
	for _, p := range []Policy{PolicyRequire, PolicyPrefer, PolicyAudit, PolicyOff} {
		for side, groups := range map[string][]tls.CurveID{"server": p.serverGroups(), "client": p.clientGroups()} {
			var pq, classical int
			for _, g := range groups {
				if IsPQ(g) {
					pq++
				} else {
					classical++
				}
			}
			switch {
			case p == PolicyRequire && classical > 0:
				t.Errorf("%s %s: got classical groups, want none", p, side)
			case p == PolicyOff && pq > 0:
				t.Errorf("%s %s: got post-quantum groups, want none", p, side)
			case (p == PolicyPrefer || p == PolicyAudit) && (pq == 0 || classical == 0):
				t.Errorf("%s %s: got %d pq and %d classical groups, want both", p, side, pq, classical)
			}
		}
	}
}

func TestNewMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m1 := NewMetrics(reg)
	m2 := NewMetrics(reg) // a second call on the same registry reuses the collectors
	m1.serverHandshake("edge", tls.X25519MLKEM768)
	m2.serverHandshake("edge", tls.X25519MLKEM768)
	m2.serverHandshake("edge", tls.X25519)
	m1.serverClassical("edge")
	m1.upstreamHandshake("payments", tls.CurveP256)
	m1.upstreamClassicalHandshake("payments")
	want := `
# HELP aegis_pqtls_classical_handshakes_total Server handshakes with a classical (not post-quantum) key exchange on listeners with pq = audit.
# TYPE aegis_pqtls_classical_handshakes_total counter
aegis_pqtls_classical_handshakes_total{listener="edge"} 1
# HELP aegis_pqtls_upstream_classical_handshakes_total Upstream handshakes with a classical (not post-quantum) key exchange on clusters with pq = audit.
# TYPE aegis_pqtls_upstream_classical_handshakes_total counter
aegis_pqtls_upstream_classical_handshakes_total{cluster="payments"} 1
# HELP aegis_tls_handshakes_total Completed server TLS handshakes by listener and key exchange group.
# TYPE aegis_tls_handshakes_total counter
aegis_tls_handshakes_total{group="X25519",listener="edge"} 1
aegis_tls_handshakes_total{group="X25519MLKEM768",listener="edge"} 2
# HELP aegis_tls_upstream_handshakes_total Completed upstream (client) TLS handshakes by cluster and key exchange group.
# TYPE aegis_tls_upstream_handshakes_total counter
aegis_tls_upstream_handshakes_total{cluster="payments",group="P256"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"aegis_tls_handshakes_total", "aegis_pqtls_classical_handshakes_total",
		"aegis_tls_upstream_handshakes_total", "aegis_pqtls_upstream_classical_handshakes_total"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("got lint problems %v, %v, want none", problems, err)
	}

	// nil registerer and nil *Metrics are both usable.
	NewMetrics(nil).serverHandshake("x", tls.X25519)
	var nilMetrics *Metrics
	nilMetrics.serverHandshake("x", tls.X25519)
	nilMetrics.certReload("x", false)
}
