package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const quicBase = `
[[routes]]
name = "r"
cluster = "c"
[[clusters]]
name = "c"
  [[clusters.endpoints]]
  address = "127.0.0.1:2"
  region = "eu"
`

func TestQUICDefaults(t *testing.T) {
	f, err := Parse("t.toml", []byte(`
[[listeners]]
name = "edge"
address = "127.0.0.1:8443"
protocols = ["h1", "h2", "h3"]
  [listeners.tls]
`+quicBase))
	if err != nil {
		t.Fatal(err)
	}
	got := f.Listeners[0].QUIC
	want := QUIC{
		AltSvcMaxAge: Dur(24 * time.Hour), MaxIncomingStreams: 100, IdleTimeout: Dur(30 * time.Second),
		HandshakeTimeout: Dur(10 * time.Second), MaxHeaderBytes: 65536, RetryUnderLoad: 128,
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Duration{})); diff != "" {
		t.Errorf("quic defaults (-want +got):\n%s", diff)
	}
	if !f.Listeners[0].HasH3() {
		t.Error("got HasH3 false, want true")
	}
}

func TestQUICProblems(t *testing.T) {
	tests := []struct {
		name     string
		listener string
		want     []string // problem paths
	}{
		{
			name:     "h3 without tls",
			listener: `protocols = ["h1", "h3"]`,
			want:     []string{"listeners[0].protocols[1]"},
		},
		{
			name: "limits out of range",
			listener: `protocols = ["h3"]
  [listeners.tls]
  [listeners.quic]
  max_incoming_streams = 20000
  max_header_bytes = 10
  retry_under_load = -1
  idle_timeout = "10ms"
  handshake_timeout = "1ms"
  alt_svc_max_age = "1500ms"`,
			want: []string{
				"listeners[0].quic.max_incoming_streams", "listeners[0].quic.max_header_bytes",
				"listeners[0].quic.retry_under_load", "listeners[0].quic.idle_timeout",
				"listeners[0].quic.handshake_timeout", "listeners[0].quic.alt_svc_max_age",
			},
		},
		{
			name: "valid with 0-RTT and no Alt-Svc",
			listener: `protocols = ["h1", "h2", "h3"]
  [listeners.tls]
  [listeners.quic]
  allow_0rtt = true
  alt_svc_max_age = "0s"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte("[[listeners]]\nname = \"l\"\naddress = \"127.0.0.1:0\"\n"+tt.listener+"\n"+quicBase))
			var got []string
			for _, p := range Problems(err) {
				got = append(got, p.Path)
				if p.Line == 0 {
					t.Errorf("problem %q has no line", p)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problem paths (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClusterH3AllowsTLS(t *testing.T) {
	f, err := Parse("t.toml", []byte(`
[[listeners]]
name = "l"
address = "127.0.0.1:0"
[[routes]]
name = "r"
cluster = "c"
[[clusters]]
name = "c"
protocol = "h3"
  [clusters.tls]
  insecure_skip_verify = true
  pq = "require"
  [[clusters.endpoints]]
  address = "127.0.0.1:2"
  region = "eu"
`))
	if err != nil {
		t.Fatalf("got %v, want a valid file", err)
	}
	if got := f.Clusters[0].Protocol; got != "h3" {
		t.Errorf("got protocol %q, want h3", got)
	}
}
