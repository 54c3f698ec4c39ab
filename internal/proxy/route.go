package proxy

import (
	"net/http"
	"strings"
	"time"
)

// Route is one routing rule. The zero value of each match field matches
// everything.
type Route struct {
	// Name identifies the route in logs and metrics. Required.
	Name string
	// Host is an exact host or a "*.example.com" suffix pattern (default any).
	Host string
	// PathPrefix must start the path (default "/").
	PathPrefix string
	// Methods lists the allowed methods (default any).
	Methods []string
	// Headers must all be present with exactly these values.
	Headers map[string]string
	// Cluster names the cluster serving the route. Required.
	Cluster string
	// Timeout bounds the wait for response headers (0: none).
	Timeout time.Duration
	// RequestHeaders edits the request sent upstream.
	RequestHeaders HeaderOps
	// ResponseHeaders edits the response sent to the client.
	ResponseHeaders HeaderOps
	// CarbonHeaders adds Aegis-Region and Aegis-Carbon-Intensity to
	// responses from an upstream (carbon.go).
	CarbonHeaders bool
	// Retry is the route's retry policy (zero: no retries); see retry.go.
	Retry RetryPolicy
	// RateLimit is the route's local rate limit (zero: none).
	RateLimit RateLimit
	// MaxBodyBytes bounds the request body: over it the answer is 413
	// (0 or negative: no limit; bodylimit.go).
	MaxBodyBytes int64
	// Defer, if set, is called after the route matched and before the
	// request is proxied (the Green-Wait hook). When it returns true it has
	// written the whole response and the request is not proxied; when
	// false it has written nothing and not read the body.
	Defer func(http.ResponseWriter, *http.Request) bool
}

// HeaderOps edits a header: Remove, then Set, then Add.
type HeaderOps struct {
	Set    map[string]string
	Add    map[string]string
	Remove []string
}

type headerEdit struct {
	remove   []string
	set, add [][2]string
}

func compileOps(o HeaderOps) headerEdit {
	var e headerEdit
	for _, k := range o.Remove {
		e.remove = append(e.remove, http.CanonicalHeaderKey(k))
	}
	for k, v := range o.Set {
		e.set = append(e.set, [2]string{http.CanonicalHeaderKey(k), v})
	}
	for k, v := range o.Add {
		e.add = append(e.add, [2]string{http.CanonicalHeaderKey(k), v})
	}
	return e
}

func (e *headerEdit) apply(h http.Header) {
	for _, k := range e.remove {
		delete(h, k)
	}
	for _, kv := range e.set {
		h[kv[0]] = []string{kv[1]}
	}
	for _, kv := range e.add {
		h[kv[0]] = append(h[kv[0]], kv[1])
	}
}

func (e *headerEdit) empty() bool { return len(e.remove)+len(e.set)+len(e.add) == 0 }

// matcher is a compiled Route match.
type matcher struct {
	host       string // lower case; "" any
	hostSuffix string // ".example.com" for "*.example.com"
	prefix     string
	methods    []string
	headers    [][2]string
}

func compileMatch(r Route) matcher {
	m := matcher{prefix: r.PathPrefix, methods: r.Methods}
	if m.prefix == "" {
		m.prefix = "/"
	}
	h := strings.ToLower(r.Host)
	if rest, ok := strings.CutPrefix(h, "*"); ok {
		m.hostSuffix = rest
	} else {
		m.host = h
	}
	for k, v := range r.Headers {
		m.headers = append(m.headers, [2]string{http.CanonicalHeaderKey(k), v})
	}
	return m
}

func (m *matcher) match(r *http.Request, host string) bool {
	if m.host != "" && !strings.EqualFold(host, m.host) {
		return false
	}
	if m.hostSuffix != "" && (len(host) <= len(m.hostSuffix) || !strings.EqualFold(host[len(host)-len(m.hostSuffix):], m.hostSuffix)) {
		return false
	}
	if !strings.HasPrefix(r.URL.Path, m.prefix) {
		return false
	}
	if len(m.methods) > 0 {
		ok := false
		for _, meth := range m.methods {
			if meth == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, kv := range m.headers {
		vs := r.Header[kv[0]]
		ok := false
		for _, v := range vs {
			if v == kv[1] {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// hostOnly strips a port and a trailing dot from a Host header value.
func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimPrefix(strings.TrimSuffix(h, "]"), "[")
	return strings.TrimSuffix(h, ".")
}
