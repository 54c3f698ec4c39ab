package config

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Allowed values, for validation and for messages that list them.
var (
	PQPolicies       = []string{"require", "prefer", "audit", "off"}
	ListenProtocols  = []string{"h1", "h2", "h2c", "h3"}
	ClusterPolicies  = []string{"round_robin", "least_request", "carbon"}
	ClusterProtocols = []string{"h1", "h2c", "https", "h2", "h3"}
	LogLevels        = []string{"debug", "info", "warn", "error"}
	LogFormats       = []string{"text", "json"}
	TLSVersions      = []string{"1.2", "1.3"}
)

// hopByHop headers may not be set or matched by routes: the proxy strips them.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

type validator struct {
	f        *File
	problems []error
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, &Problem{
		File: v.f.name, Line: lineOf(v.f.lines, path), Path: path, Msg: fmt.Sprintf(format, args...),
	})
}

// Validate checks the whole file and returns the errors.Join of every problem
// found, each a *Problem with its key path; nil when the file is valid.
// Call it after SetDefaults.
func (f *File) Validate() error {
	v := &validator{f: f}
	v.durations("", reflect.ValueOf(f).Elem())
	v.admin()
	v.log()
	v.listeners()
	v.quic()
	clusters := v.clusters()
	v.routes(clusters)
	v.demo()
	v.carbon()
	v.energy()
	v.greenwait()
	v.limits()
	return errors.Join(v.problems...)
}

// durations reports every Duration that did not parse, wherever it is.
func (v *validator) durations(path string, rv reflect.Value) {
	switch rv.Kind() {
	case reflect.Pointer:
		if !rv.IsNil() {
			v.durations(path, rv.Elem())
		}
	case reflect.Struct:
		if d, ok := rv.Interface().(Duration); ok {
			if msg := d.problem(); msg != "" {
				v.add(path, "%s", msg)
			}
			return
		}
		for i := range rv.NumField() {
			sf := rv.Type().Field(i)
			if !sf.IsExported() {
				continue
			}
			name := tomlName(sf)
			if name == "" {
				continue
			}
			sub := name
			if path != "" {
				sub = path + "." + name
			}
			v.durations(sub, rv.Field(i))
		}
	case reflect.Slice:
		for i := range rv.Len() {
			v.durations(fmt.Sprintf("%s[%d]", path, i), rv.Index(i))
		}
	}
}

func (v *validator) admin() {
	v.hostPort("admin.address", v.f.Admin.Address)
}

func (v *validator) log() {
	v.oneOf("log.level", v.f.Log.Level, LogLevels)
	v.oneOf("log.format", v.f.Log.Format, LogFormats)
	if v.f.Shutdown.GracePeriod.Duration <= 0 && !v.f.Shutdown.GracePeriod.invalid {
		v.add("shutdown.grace_period", "must be greater than zero")
	}
}

func (v *validator) listeners() {
	if len(v.f.Listeners) == 0 {
		v.add("listeners", "at least one listener is required")
	}
	names := map[string]string{}
	addrs := map[string]string{}
	for i, l := range v.f.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		v.name(p+".name", l.Name, names)
		if v.hostPort(p+".address", l.Address) && !strings.HasSuffix(l.Address, ":0") {
			key := normAddr(l.Address)
			if prev, ok := addrs[key]; ok {
				v.add(p+".address", "%q is already used by %s", l.Address, prev)
			} else {
				addrs[key] = p
			}
		}
		if len(l.Protocols) == 0 {
			v.add(p+".protocols", "at least one protocol is required (one of %s)", strings.Join(ListenProtocols, ", "))
		}
		for j, proto := range l.Protocols {
			pp := fmt.Sprintf("%s.protocols[%d]", p, j)
			if !v.oneOf(pp, proto, ListenProtocols) {
				continue
			}
			switch {
			case proto == "h2c" && l.TLS != nil:
				v.add(pp, "h2c is cleartext HTTP/2; on a TLS listener use h2")
			case proto == "h2" && l.TLS == nil:
				v.add(pp, "h2 needs TLS: add a [listeners.tls] table, or use h2c for cleartext HTTP/2")
			}
		}
		if t := l.TLS; t != nil {
			tp := p + ".tls"
			v.oneOf(tp+".pq", t.PQ, PQPolicies)
			v.oneOf(tp+".min_version", t.MinVersion, TLSVersions)
			if (t.CertFile == "") != (t.KeyFile == "") {
				v.add(tp, "cert_file and key_file go together: set both, or neither for a self-signed development certificate")
			}
			if t.RequireClientCert && t.ClientCAFile == "" {
				v.add(tp+".require_client_cert", "needs client_ca_file")
			}
			if len(t.AllowedIdentities) > 0 && t.ClientCAFile == "" {
				v.add(tp+".allowed_identities", "needs client_ca_file")
			}
		}
		for j, c := range l.TrustedProxies {
			if _, err := netip.ParsePrefix(c); err != nil {
				if _, err2 := netip.ParseAddr(c); err2 != nil {
					v.add(fmt.Sprintf("%s.trusted_proxies[%d]", p, j), "%q is not a CIDR such as 10.0.0.0/8 or an IP address", c)
				}
			}
		}
		h := l.HTTP2
		if h.Server != "" && h.Server != "aegis" && h.Server != "x/net" {
			v.add(p+".http2.server", "%q is not one of aegis, x/net", h.Server)
		}
		v.between(p+".http2.max_concurrent_streams", h.MaxConcurrentStreams, 1, 1000)
		v.between(p+".http2.max_read_frame_size", h.MaxReadFrameSize, 16<<10, 1<<24-1)
		v.between(p+".http2.max_header_bytes", h.MaxHeaderBytes, 1<<10, 1<<20)
		v.between(p+".http2.stream_window", h.StreamWindow, 1<<10, 1<<30)
		v.between(p+".http2.conn_window", h.ConnWindow, 1<<10, 1<<30)
		if h.ConnWindow < h.StreamWindow {
			v.add(p+".http2.conn_window", "%d is smaller than stream_window %d", h.ConnWindow, h.StreamWindow)
		}
		if l.Timeouts.ReadHeader.Duration == 0 && !l.Timeouts.ReadHeader.invalid {
			v.add(p+".timeouts.read_header", "must be greater than zero: without it a slow client holds a connection forever")
		}
		if l.Timeouts.Idle.Duration == 0 && !l.Timeouts.Idle.invalid {
			v.add(p+".timeouts.idle", "must be greater than zero")
		}
	}
}

func (v *validator) clusters() map[string]bool {
	names := map[string]string{}
	for i, c := range v.f.Clusters {
		p := fmt.Sprintf("clusters[%d]", i)
		v.name(p+".name", c.Name, names)
		v.oneOf(p+".policy", c.Policy, ClusterPolicies)
		v.oneOf(p+".protocol", c.Protocol, ClusterProtocols)
		v.oneOf(p+".tls.pq", c.TLS.PQ, PQPolicies)
		tlsProto := c.Protocol == "https" || c.Protocol == "h2" || c.Protocol == "h3"
		if !tlsProto && (c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.ServerName != "" || c.TLS.InsecureSkipVerify) {
			v.add(p+".tls", "TLS settings need protocol \"https\", \"h2\" or \"h3\" (protocol is %q)", c.Protocol)
		}
		if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
			v.add(p+".tls", "cert_file and key_file go together")
		}
		if c.Pool.MaxIdlePerEndpoint < 0 {
			v.add(p+".pool.max_idle_per_endpoint", "must not be negative")
		}
		if c.Pool.MaxConnsPerEndpoint < 0 {
			v.add(p+".pool.max_conns_per_endpoint", "must not be negative")
		}
		v.clusterResilience(p, &c)
		if c.ConnectTimeout.Duration <= 0 && !c.ConnectTimeout.invalid {
			v.add(p+".connect_timeout", "must be greater than zero")
		}
		if len(c.Endpoints) == 0 {
			v.add(p+".endpoints", "at least one endpoint is required")
		}
		seen := map[string]string{}
		for j, e := range c.Endpoints {
			ep := fmt.Sprintf("%s.endpoints[%d]", p, j)
			if v.hostPort(ep+".address", e.Address) {
				if prev, ok := seen[e.Address]; ok {
					v.add(ep+".address", "%q is listed twice (also %s)", e.Address, prev)
				}
				seen[e.Address] = ep
			}
			if e.Region == "" {
				v.add(ep+".region", "is required (the region where the endpoint runs, for carbon data)")
			} else if !validName(e.Region) {
				v.add(ep+".region", "%q: use letters, digits, '-', '_' and '.'", e.Region)
			}
			v.between(ep+".weight", e.Weight, 1, 1000)
		}
	}
	out := make(map[string]bool, len(names))
	for n := range names {
		out[n] = true
	}
	return out
}

func (v *validator) routes(clusters map[string]bool) {
	if len(v.f.Routes) == 0 {
		v.add("routes", "at least one route is required")
	}
	names := map[string]string{}
	for i, r := range v.f.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		v.name(p+".name", r.Name, names)
		switch {
		case r.Cluster == "":
			v.add(p+".cluster", "is required")
		case !clusters[r.Cluster]:
			v.add(p+".cluster", "%q is not defined in [[clusters]]", r.Cluster)
		}
		if !strings.HasPrefix(r.Match.PathPrefix, "/") {
			v.add(p+".match.path_prefix", "%q must start with '/'", r.Match.PathPrefix)
		}
		if h := r.Match.Host; h != "" {
			if strings.ContainsAny(h, " /:") || strings.Count(h, "*") > 1 || (strings.Contains(h, "*") && !strings.HasPrefix(h, "*.")) {
				v.add(p+".match.host", "%q: use a host name or a \"*.example.com\" pattern, without port", h)
			}
		}
		for j, m := range r.Match.Methods {
			if !validToken(m) || strings.ToUpper(m) != m {
				v.add(fmt.Sprintf("%s.match.methods[%d]", p, j), "%q is not an upper-case HTTP method", m)
			}
		}
		for _, k := range sortedKeys(r.Match.Headers) {
			if !validToken(k) {
				v.add(p+".match.headers."+k, "%q is not a valid header name", k)
			}
		}
		v.headerOps(p+".request_headers", r.RequestHeaders)
		v.headerOps(p+".response_headers", r.ResponseHeaders)
		v.routeResilience(p, &r)
	}
}

func (v *validator) headerOps(p string, h HeaderOps) {
	check := func(path, name string) {
		switch {
		case !validToken(name):
			v.add(path, "%q is not a valid header name", name)
		case slices.Contains(hopByHop, http.CanonicalHeaderKey(name)):
			v.add(path, "%q is a hop-by-hop header, which the proxy manages itself", name)
		}
	}
	for _, k := range sortedKeys(h.Set) {
		check(p+".set."+k, k)
	}
	for _, k := range sortedKeys(h.Add) {
		check(p+".add."+k, k)
	}
	for j, k := range h.Remove {
		check(fmt.Sprintf("%s.remove[%d]", p, j), k)
	}
}

func (v *validator) demo() {
	for i, u := range v.f.Demo.Upstreams {
		p := fmt.Sprintf("demo.upstreams[%d]", i)
		v.hostPort(p+".address", u.Address)
		if u.Region == "" {
			v.add(p+".region", "is required")
		}
	}
}

func (v *validator) name(path, name string, seen map[string]string) {
	switch {
	case name == "":
		v.add(path, "is required")
	case !validName(name):
		v.add(path, "%q: use letters, digits, '-', '_' and '.'", name)
	default:
		if prev, ok := seen[name]; ok {
			v.add(path, "%q is already used by %s", name, prev)
			return
		}
		seen[name] = strings.TrimSuffix(path, ".name")
	}
}

func (v *validator) oneOf(path, val string, allowed []string) bool {
	if slices.Contains(allowed, val) {
		return true
	}
	v.add(path, "%q is not one of %s", val, strings.Join(allowed, ", "))
	return false
}

func (v *validator) between(path string, n, lo, hi int) {
	if n < lo || n > hi {
		v.add(path, "%d is outside %d..%d", n, lo, hi)
	}
}

func (v *validator) hostPort(path, addr string) bool {
	if addr == "" {
		v.add(path, "is required (host:port)")
		return false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(path, "%q is not host:port", addr)
		return false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		v.add(path, "%q: port %q is not a number from 0 to 65535", addr, port)
		return false
	}
	if host != "" && strings.ContainsAny(host, " /") {
		v.add(path, "%q: bad host %q", addr, host)
		return false
	}
	return true
}

func normAddr(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	return net.JoinHostPort(host, port)
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// validToken reports whether s is an RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
