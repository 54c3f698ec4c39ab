package config

import (
	"encoding/json"
	"fmt"
	"time"
)

// File is the whole configuration file.
type File struct {
	// Admin is the admin listener.
	Admin Admin `toml:"admin" json:"admin"`
	// Log configures process and access logging.
	Log Log `toml:"log" json:"log"`
	// Shutdown configures draining.
	Shutdown Shutdown `toml:"shutdown" json:"shutdown"`
	// Listeners accept client connections.
	Listeners []Listener `toml:"listeners" json:"listeners"`
	// Routes map requests to clusters, first match wins.
	Routes []Route `toml:"routes" json:"routes"`
	// Clusters are groups of upstream endpoints.
	Clusters []Cluster `toml:"clusters" json:"clusters"`
	// Demo starts in-process demo upstreams.
	Demo Demo `toml:"demo" json:"demo"`
	// Carbon configures carbon-intensity providers per region (carbon.go).
	Carbon Carbon `toml:"carbon" json:"carbon"`
	// Energy configures the estimate of the proxy's own energy (energy.go).
	Energy Energy `toml:"energy" json:"energy"`
	// GreenWait configures deferral to low-carbon windows (greenwait.go).
	GreenWait GreenWait `toml:"greenwait" json:"greenwait"`

	// name is the file name used in problems; lines maps key paths to lines.
	name     string
	lines    map[string]int
	badPaths []string
}

// Admin configures the admin listener (/healthz, /readyz, /metrics, /config).
type Admin struct {
	// Address is host:port (default 127.0.0.1:9901). A non-loopback address
	// is allowed but logged as a warning: the admin API is unauthenticated.
	Address string `toml:"address" json:"address"`
	// Profiling serves Go's /debug/pprof/ on the admin listener (default
	// false). Profiles show request data in memory; keep the admin listener
	// private when this is on.
	Profiling bool `toml:"profiling" json:"profiling"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error (default info).
	Level string `toml:"level" json:"level"`
	// Format is text or json (default text).
	Format string `toml:"format" json:"format"`
	// Access is where access-log JSON lines go: stdout, stderr, off, or a
	// file path (default stdout).
	Access string `toml:"access" json:"access"`
}

// Shutdown configures graceful stop.
type Shutdown struct {
	// GracePeriod bounds how long in-flight requests may run after a stop
	// signal (default 30s).
	GracePeriod Duration `toml:"grace_period" json:"grace_period"`
}

// Listener is one address that accepts client connections.
type Listener struct {
	// Name identifies the listener in logs and metrics. Required, unique.
	Name string `toml:"name" json:"name"`
	// Address is host:port. Required, unique across listeners.
	Address string `toml:"address" json:"address"`
	// Protocols lists what the listener serves: h1 and h2 (over TLS, chosen
	// by ALPN) and h3 (HTTP/3 over QUIC on the same address, UDP), or h1 and
	// h2c (cleartext, HTTP/2 with prior knowledge).
	// Default: ["h1", "h2"] with TLS, ["h1", "h2c"] without.
	Protocols []string `toml:"protocols" json:"protocols"`
	// TLS makes this a TLS listener when present.
	TLS *ListenerTLS `toml:"tls" json:"tls,omitempty"`
	// TrustedProxies lists CIDRs whose X-Forwarded-For, -Proto and -Host
	// headers are kept and extended; from anyone else they are replaced.
	TrustedProxies []string `toml:"trusted_proxies" json:"trusted_proxies"`
	// Timeouts bound each phase of a connection.
	Timeouts Timeouts `toml:"timeouts" json:"timeouts"`
	// HTTP2 sets the HTTP/2 limits.
	HTTP2 HTTP2 `toml:"http2" json:"http2"`
	// Limits holds admission limits and edge defences (limits.go).
	Limits ListenerLimits `toml:"limits" json:"limits"`
	// QUIC sets the HTTP/3 limits (used when Protocols include "h3").
	QUIC QUIC `toml:"quic" json:"quic"`
}

// ListenerTLS configures TLS on a listener.
type ListenerTLS struct {
	// CertFile and KeyFile are PEM files, reloaded when they change. Both
	// empty means a self-signed development certificate made at start.
	CertFile string `toml:"cert_file" json:"cert_file"`
	KeyFile  string `toml:"key_file" json:"key_file"`
	// PQ is the post-quantum key-exchange policy: require, prefer, audit or
	// off (default prefer).
	PQ string `toml:"pq" json:"pq"`
	// MinVersion is "1.3" (default) or "1.2".
	MinVersion string `toml:"min_version" json:"min_version"`
	// ClientCAFile turns on client certificates (mesh mutual TLS).
	ClientCAFile string `toml:"client_ca_file" json:"client_ca_file"`
	// RequireClientCert refuses clients without a valid certificate.
	RequireClientCert bool `toml:"require_client_cert" json:"require_client_cert"`
	// AllowedIdentities are the workload identities (URI SANs) accepted
	// from client certificates; empty accepts any certificate from the CA.
	AllowedIdentities []string `toml:"allowed_identities" json:"allowed_identities"`
	// SessionTicketRotation is how often session ticket keys rotate
	// (default 24h; limits.go).
	SessionTicketRotation Duration `toml:"session_ticket_rotation" json:"session_ticket_rotation"`
}

// Timeouts bound the phases of a client connection.
type Timeouts struct {
	// ReadHeader bounds reading request headers (default 10s).
	ReadHeader Duration `toml:"read_header" json:"read_header"`
	// Read bounds reading a whole request, body included (default 60s).
	Read Duration `toml:"read" json:"read"`
	// Write bounds writing a response (default 0: none, so that streams and
	// long polls work; per-route timeouts bound upstream waits instead).
	Write Duration `toml:"write" json:"write"`
	// Idle bounds a keep-alive connection between requests (default 120s).
	Idle Duration `toml:"idle" json:"idle"`
	// WriteIdle cuts a client that stops reading: a response write that
	// makes no progress for this long ends the connection (default 30s;
	// limits.go).
	WriteIdle Duration `toml:"write_idle" json:"write_idle"`
}

// HTTP2 holds the HTTP/2 server limits.
type HTTP2 struct {
	// Server selects the HTTP/2 server: "aegis" (default), Aegis-Flow's
	// own, or "x/net", golang.org/x/net/http2's.
	Server string `toml:"server" json:"server"`
	// MaxConcurrentStreams per connection (default 100).
	MaxConcurrentStreams int `toml:"max_concurrent_streams" json:"max_concurrent_streams"`
	// MaxReadFrameSize in bytes (default 16384, the protocol minimum).
	MaxReadFrameSize int `toml:"max_read_frame_size" json:"max_read_frame_size"`
	// MaxHeaderBytes bounds one encoded header block, HEADERS plus
	// CONTINUATION payloads (default 65536); the decoded list is bounded by
	// limits.max_header_bytes.
	MaxHeaderBytes int `toml:"max_header_bytes" json:"max_header_bytes"`
	// StreamWindow is the per-stream receive window in bytes (default 65536).
	StreamWindow int `toml:"stream_window" json:"stream_window"`
	// ConnWindow is the per-connection receive window in bytes (default 1 MiB).
	ConnWindow int `toml:"conn_window" json:"conn_window"`
	// RapidResetThreshold and MaxContinuationFrames are the abuse guard's
	// thresholds (limits.go).
	RapidResetThreshold   int `toml:"rapid_reset_threshold" json:"rapid_reset_threshold"`
	MaxContinuationFrames int `toml:"max_continuation_frames" json:"max_continuation_frames"`
}

// Route maps matching requests to a cluster.
type Route struct {
	// Name identifies the route in logs and metrics. Required, unique.
	Name string `toml:"name" json:"name"`
	// Match selects requests; an empty match takes every request.
	Match Match `toml:"match" json:"match"`
	// Cluster names the cluster that serves the route. Required.
	Cluster string `toml:"cluster" json:"cluster"`
	// Timeout bounds the whole upstream exchange, up to the end of the
	// response headers (default 30s; 0 means none).
	Timeout Duration `toml:"timeout" json:"timeout"`
	// RequestHeaders edits the request before it goes upstream.
	RequestHeaders HeaderOps `toml:"request_headers" json:"request_headers"`
	// ResponseHeaders edits the response before it goes to the client.
	ResponseHeaders HeaderOps `toml:"response_headers" json:"response_headers"`
	// Retry is the route's retry policy (resilience.go).
	Retry Retry `toml:"retry" json:"retry"`
	// RateLimit is the route's local rate limit (resilience.go).
	RateLimit RateLimit `toml:"rate_limit" json:"rate_limit"`
	// CarbonHeaders adds Aegis-Region and Aegis-Carbon-Intensity to
	// responses (default false; energy.go).
	CarbonHeaders bool `toml:"carbon_headers" json:"carbon_headers"`
	// GreenWait is the route's Green-Wait deferral (greenwait.go).
	GreenWait RouteGreenWait `toml:"greenwait" json:"greenwait"`
	// MaxBodyBytes bounds the request body; over it the answer is 413
	// (default 64 MiB, -1 unlimited; limits.go).
	MaxBodyBytes int64 `toml:"max_body_bytes" json:"max_body_bytes"`
}

// Match selects requests. All given conditions must hold.
type Match struct {
	// Host is an exact host name or a "*.example.com" suffix pattern;
	// empty matches any host. Ports are ignored.
	Host string `toml:"host" json:"host"`
	// PathPrefix matches the start of the path (default "/").
	PathPrefix string `toml:"path_prefix" json:"path_prefix"`
	// Methods lists allowed methods; empty allows all.
	Methods []string `toml:"methods" json:"methods"`
	// Headers must all be present with exactly these values.
	Headers map[string]string `toml:"headers" json:"headers"`
}

// HeaderOps edits headers: Remove first, then Set (replace), then Add.
type HeaderOps struct {
	Set    map[string]string `toml:"set" json:"set"`
	Add    map[string]string `toml:"add" json:"add"`
	Remove []string          `toml:"remove" json:"remove"`
}

// Cluster is a group of endpoints that serve the same thing.
type Cluster struct {
	// Name identifies the cluster. Required, unique.
	Name string `toml:"name" json:"name"`
	// Policy picks an endpoint: round_robin (default), least_request or
	// carbon.
	Policy string `toml:"policy" json:"policy"`
	// Protocol spoken upstream: h1 (default), h2c, https (TLS, ALPN h2 or
	// HTTP/1.1), h2 (TLS, HTTP/2 only) or h3 (HTTP/3 over QUIC).
	Protocol string `toml:"protocol" json:"protocol"`
	// ConnectTimeout bounds dialing an endpoint (default 5s).
	ConnectTimeout Duration `toml:"connect_timeout" json:"connect_timeout"`
	// TLS configures upstream TLS for https, h2 and h3.
	TLS ClusterTLS `toml:"tls" json:"tls"`
	// Pool sizes the connection pool.
	Pool Pool `toml:"pool" json:"pool"`
	// Health configures active health checks (resilience.go).
	Health Health `toml:"health" json:"health"`
	// Outlier ejects endpoints that fail in a row (resilience.go).
	Outlier Outlier `toml:"outlier" json:"outlier"`
	// CircuitBreaker caps connections, pending and active requests.
	CircuitBreaker CircuitBreaker `toml:"circuit_breaker" json:"circuit_breaker"`
	// LocalZone is the zone this proxy runs in; endpoints in it are preferred
	// while within the latency budget (default "": no locality; energy.go).
	LocalZone string `toml:"local_zone" json:"local_zone"`
	// Carbon holds the carbon policy's guardrails (energy.go).
	Carbon ClusterCarbon `toml:"carbon" json:"carbon"`
	// Energy is the upstream energy model (energy.go).
	Energy ClusterEnergy `toml:"energy" json:"energy"`
	// Endpoints are the upstream addresses. At least one.
	Endpoints []Endpoint `toml:"endpoints" json:"endpoints"`
}

// ClusterTLS configures TLS to upstream endpoints.
type ClusterTLS struct {
	// CAFile is a PEM bundle to verify endpoints; empty uses system roots.
	CAFile string `toml:"ca_file" json:"ca_file"`
	// ServerName overrides the name verified and sent in SNI.
	ServerName string `toml:"server_name" json:"server_name"`
	// InsecureSkipVerify turns verification off (testing only).
	InsecureSkipVerify bool `toml:"insecure_skip_verify" json:"insecure_skip_verify"`
	// PQ is the post-quantum policy for upstream handshakes (default prefer;
	// require when a client certificate is set, as between aegis proxies).
	PQ string `toml:"pq" json:"pq"`
	// CertFile and KeyFile are the client certificate for mutual TLS.
	CertFile string `toml:"cert_file" json:"cert_file"`
	KeyFile  string `toml:"key_file" json:"key_file"`
}

// Pool sizes an upstream connection pool.
type Pool struct {
	// MaxIdlePerEndpoint is how many idle keep-alive connections are kept per
	// endpoint (default 64).
	MaxIdlePerEndpoint int `toml:"max_idle_per_endpoint" json:"max_idle_per_endpoint"`
	// MaxConnsPerEndpoint caps all connections per endpoint (default 0: no cap).
	MaxConnsPerEndpoint int `toml:"max_conns_per_endpoint" json:"max_conns_per_endpoint"`
	// IdleTimeout closes idle connections (default 90s).
	IdleTimeout Duration `toml:"idle_timeout" json:"idle_timeout"`
}

// Endpoint is one upstream address.
type Endpoint struct {
	// Address is host:port. Required.
	Address string `toml:"address" json:"address"`
	// Region is where the endpoint runs, for carbon data (for example
	// "eu-south"). Required.
	Region string `toml:"region" json:"region"`
	// Zone is the locality within the region (optional).
	Zone string `toml:"zone" json:"zone"`
	// Weight is the relative share of traffic, 1 to 1000 (default 1; 0 means 1).
	Weight int `toml:"weight" json:"weight"`
}

// Demo starts in-process demo upstreams, for the embedded default.
type Demo struct {
	Upstreams []DemoUpstream `toml:"upstreams" json:"upstreams"`
}

// DemoUpstream is one in-process HTTP/1.1 and h2c demo server.
type DemoUpstream struct {
	// Address is host:port to listen on.
	Address string `toml:"address" json:"address"`
	// Region is the region name the upstream answers with.
	Region string `toml:"region" json:"region"`
}

// Duration is a time.Duration written as a string ("250ms", "1h"). A value
// that does not parse is kept as text and reported by Validate, so that one
// bad duration does not hide other problems.
type Duration struct {
	time.Duration
	text    string
	invalid bool
}

// Dur returns a valid Duration of d.
func Dur(d time.Duration) Duration { return Duration{Duration: d} }

// UnmarshalText records the text; Validate reports it if it does not parse.
func (d *Duration) UnmarshalText(b []byte) error {
	d.text = string(b)
	v, err := time.ParseDuration(d.text)
	if err != nil || v < 0 {
		d.Duration, d.invalid = 0, true
		return nil
	}
	d.Duration, d.invalid = v, false
	return nil
}

// MarshalText writes the duration in Go's notation.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// MarshalJSON writes the duration as a JSON string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.Duration.String()) }

func (d Duration) problem() string {
	if !d.invalid {
		return ""
	}
	return fmt.Sprintf("%q is not a duration (want a non-negative value such as \"250ms\", \"30s\" or \"1h\")", d.text)
}
