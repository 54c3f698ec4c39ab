package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/aegis-flow/aegis/internal/balance"
)

// Cluster is a balance.Cluster with the transport that reaches its
// endpoints.
type Cluster struct {
	// Balancer picks endpoints and tracks their health. Required.
	Balancer *balance.Cluster
	// Transport sends requests to the endpoint in the request URL's host.
	// Required; see NewTransport.
	Transport http.RoundTripper
	// TLS says whether endpoints are reached over TLS (https URLs).
	TLS bool
	// Energy is the upstream energy model (zero: none; carbon.go).
	Energy UpstreamEnergy
}

// Options configures a Proxy.
type Options struct {
	// Routes in match order. At least one.
	Routes []Route
	// Clusters by name; every route's cluster must be here.
	Clusters map[string]*Cluster
	// Logger receives errors that are handled here (nil discards).
	Logger *slog.Logger
	// AccessLog receives one JSON line per request (nil: no access log).
	AccessLog *slog.Logger
	// Metrics are the request metrics (nil: none).
	Metrics *Metrics
	// Energy returns the energy meter of a route (nil func or nil meter:
	// no energy accounting; see carbon.go).
	Energy func(route string) EnergyMeter
	// Jobs serves requests whose path starts with JobsPrefix, before route
	// matching (the Green-Wait job API; nil: none). Its requests are
	// counted under the route label "jobs".
	Jobs       http.Handler
	JobsPrefix string
}

// Proxy routes requests to clusters. It is immutable and safe for concurrent
// use.
type Proxy struct {
	routes    []*route
	log       *slog.Logger
	accessLog *slog.Logger
	metrics   *Metrics
	notFound  *routeMetrics
	jobs      http.Handler
	jobsPath  string
	jobsRM    *routeMetrics
}

type route struct {
	Route
	m       matcher
	reqOps  headerEdit
	respOps headerEdit
	cluster *Cluster
	rp      *httputil.ReverseProxy
	metrics *routeMetrics
	cm      *clusterMetrics
	carbon  *routeCarbon // energy accounting and headers (carbon.go)
	// resilience (retry.go, ratelimit.go)
	retry     retryPolicy
	limiter   *rateLimiter
	res       *routeResilience
	endpoints int
	body      *bodyMetrics // bodylimit.go
	// pendingMetered: the cluster's transport applies max_pending itself
	// (H1Transport), so a try needs no httptrace hooks.
	pendingMetered bool
}

var _ http.Handler = (*listenerHandler)(nil)

// New validates o and builds a Proxy.
func New(o Options) (*Proxy, error) {
	if len(o.Routes) == 0 {
		return nil, errors.New("proxy: no routes")
	}
	p := &Proxy{log: o.Logger, accessLog: o.AccessLog, metrics: o.Metrics}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.notFound = o.Metrics.forRoute("none")
	if o.Jobs != nil && o.JobsPrefix != "" {
		p.jobs, p.jobsPath, p.jobsRM = o.Jobs, o.JobsPrefix, o.Metrics.forRoute("jobs")
	}
	for _, r := range o.Routes {
		c, ok := o.Clusters[r.Cluster]
		if !ok || c == nil || c.Balancer == nil || c.Transport == nil {
			return nil, fmt.Errorf("proxy: route %q: cluster %q is not defined", r.Name, r.Cluster)
		}
		rt := &route{
			Route: r, m: compileMatch(r), reqOps: compileOps(r.RequestHeaders),
			respOps: compileOps(r.ResponseHeaders), cluster: c, metrics: o.Metrics.forRoute(r.Name),
			cm: o.Metrics.forCluster(r.Cluster), body: o.Metrics.forBody(r.Name),
		}
		if err := rt.initResilience(o.Metrics); err != nil {
			return nil, fmt.Errorf("proxy: route %q: %w", r.Name, err)
		}
		if m, ok := c.Transport.(interface{ metersPending() bool }); ok {
			rt.pendingMetered = m.metersPending()
		}
		rt.carbon = newRouteCarbon(o.Energy, r, c)
		rt.rp = p.reverseProxy(rt)
		p.routes = append(p.routes, rt)
	}
	return p, nil
}

// Listener describes the listener a handler serves, for X-Forwarded-*.
type Listener struct {
	// Name is the listener's name (the access log's "listener").
	Name string
	// TLS says whether the listener terminates TLS.
	TLS bool
	// TrustedProxies are the peers whose X-Forwarded-* headers are kept.
	TrustedProxies []netip.Prefix
}

// Handler returns the http.Handler for one listener.
func (p *Proxy) Handler(l Listener) http.Handler {
	return &listenerHandler{p: p, l: l}
}

type listenerHandler struct {
	p *Proxy
	l Listener
}

// reqState travels with a request through the proxy.
type reqState struct {
	listener *Listener
	route    *route
	upstream string
	region   string
	decision balance.Decision
	energy   float64     // estimated joules (carbon.go)
	avoided  float64     // estimated grams avoided (carbon.go)
	timer    *routeTimer // kept when st goes back to the pool
	status   int         // set by the error handler when nothing is written (499)
}

// stopTimer stops the route timer, if armed, and gives it up when it may
// still fire.
func (st *reqState) stopTimer() {
	if st.timer != nil && !st.timer.disarm() {
		st.timer = nil
	}
}

type stateKey struct{}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

func (h *listenerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p := h.p
	rec := getRecorder(w)
	defer putRecorder(rec)
	st := statePool.Get().(*reqState)
	*st = reqState{listener: &h.l, timer: st.timer}
	defer statePool.Put(st)

	jobs := p.jobs != nil && strings.HasPrefix(r.URL.Path, p.jobsPath)
	if !jobs {
		host := hostOnly(r.Host)
		for _, rt := range p.routes {
			if rt.m.match(r, host) {
				st.route = rt
				break
			}
		}
	}
	switch {
	case jobs:
		p.jobs.ServeHTTP(rec, r)
	case st.route == nil:
		http.Error(rec, "no route", http.StatusNotFound)
	case st.route.rateLimited(rec):
		// Over the route's rate limit: answered 429 with Retry-After.
	case st.route.refuseBody(rec, r):
		// Declared body over the route's limit: answered 413.
	case st.route.Defer != nil && st.route.Defer(rec, r):
		// Deferred (202) or refused (400, 413, 503) by the route's hook.
	default:
		rt := st.route
		rc := newReqContext(r.Context(), st)
		if rt.Timeout > 0 {
			if st.timer == nil {
				st.timer = new(routeTimer)
			}
			st.timer.arm(rc, rt.Timeout)
		}
		defer func() {
			st.stopTimer()
			rc.finish()
		}()
		rt.rp.ServeHTTP(rec, r.WithContext(rc))
	}
	status := rec.status
	if st.status != 0 {
		status = st.status
	}
	if status == 0 {
		status = http.StatusOK
	}
	d := time.Since(start)
	rm := p.notFound
	if st.route != nil {
		rm = st.route.metrics
	} else if jobs {
		rm = p.jobsRM
	}
	rm.observe(status, d)
	if st.route != nil {
		st.route.carbon.observe(st, r, rec.bytes, d)
	}
	if p.accessLog != nil {
		p.logAccess(r, st, status, rec.bytes, d)
	}
}

func (p *Proxy) logAccess(r *http.Request, st *reqState, status int, bytes int64, d time.Duration) {
	var routeName, cluster string
	if st.route != nil {
		routeName, cluster = st.route.Name, st.route.Cluster
	}
	group := ""
	if r.TLS != nil {
		group = groupName(r.TLS)
	}
	p.accessLog.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("listener", st.listener.Name),
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("route", routeName),
		slog.String("cluster", cluster),
		slog.String("upstream", st.upstream),
		slog.String("region", st.region),
		slog.String("protocol", r.Proto),
		slog.String("tls_group", group),
		slog.String("remote", r.RemoteAddr),
		carbonAttr(st),
	)
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers. A buffered channel
// rather than a sync.Pool: putting a slice into a sync.Pool boxes it, which
// costs an allocation per request.
type bufferPool struct{ free chan []byte }

func (b *bufferPool) Get() []byte {
	select {
	case buf := <-b.free:
		return buf
	default:
		return make([]byte, 32<<10)
	}
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != 32<<10 {
		return
	}
	select {
	case b.free <- buf[:cap(buf)]:
	default:
	}
}

var buffers = &bufferPool{free: make(chan []byte, 1024)}

func (p *Proxy) reverseProxy(rt *route) *httputil.ReverseProxy {
	scheme := "http"
	if rt.cluster.TLS {
		scheme = "https"
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := stateFrom(pr.In.Context())
			pr.Out.URL.Scheme = scheme
			pr.Out.URL.Host = rt.Cluster // replaced by the endpoint in RoundTrip
			pr.Out.Host = pr.In.Host
			// Request trailers get their values only when the body has been
			// read; share the inbound map so the transport sends them.
			if pr.In.Trailer != nil {
				pr.Out.Trailer = pr.In.Trailer
			}
			setForwarded(pr, st.listener)
			stripH2CUpgrade(pr.Out.Header)
			if !rt.reqOps.empty() {
				rt.reqOps.apply(pr.Out.Header)
			}
		},
		Transport:  &pickTransport{route: rt},
		BufferPool: buffers,
		ErrorLog:   slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ModifyResponse: func(resp *http.Response) error {
			if !rt.respOps.empty() {
				rt.respOps.apply(resp.Header)
			}
			rt.carbon.setCarbonHeaders(resp)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			st := stateFrom(r.Context())
			status, text := StatusFor(r.Context(), err)
			if status == StatusClientClosed {
				st.status = status
				p.log.Debug("client closed request", "route", rt.Name, "upstream", st.upstream, "err", err)
				return
			}
			p.log.Warn("upstream request failed", "route", rt.Name, "cluster", rt.Cluster,
				"upstream", st.upstream, "status", status, "err", err)
			h := w.Header()
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(status)
			io.WriteString(w, text+"\n")
		},
	}
}

// pickTransport picks an endpoint for each request, sends it there and
// reports the outcome to the balancer.
type pickTransport struct{ route *route }

// RoundTrip, the per-try logic and doneBody are in retry.go.

// stripH2CUpgrade removes an "Upgrade: h2c" request: a proxy must never
// forward it (it would let a client talk HTTP/2 past the proxy's limits).
func stripH2CUpgrade(h http.Header) {
	for _, v := range h["Upgrade"] {
		if strings.Contains(strings.ToLower(v), "h2c") {
			delete(h, "Upgrade")
			delete(h, "Http2-Settings")
			removeConnectionToken(h, "upgrade")
			removeConnectionToken(h, "http2-settings")
			return
		}
	}
	delete(h, "Http2-Settings")
}

func removeConnectionToken(h http.Header, token string) {
	vs := h["Connection"]
	var keep []string
	for _, v := range vs {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			if part != "" && !strings.EqualFold(part, token) {
				keep = append(keep, part)
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = []string{strings.Join(keep, ", ")}
}

// setForwarded sets X-Forwarded-For, -Proto and -Host. ReverseProxy's
// Rewrite mode has already removed the client's own copies from pr.Out; they
// come back, extended, only when the client is a trusted proxy.
func setForwarded(pr *httputil.ProxyRequest, l *Listener) {
	clientIP, _, err := net.SplitHostPort(pr.In.RemoteAddr)
	if err != nil {
		clientIP = pr.In.RemoteAddr
	}
	proto := "http"
	if l.TLS {
		proto = "https"
	}
	host := pr.In.Host
	h := pr.Out.Header
	if trusted(clientIP, l.TrustedProxies) {
		if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		if v := pr.In.Header.Get("X-Forwarded-Proto"); v == "http" || v == "https" {
			proto = v
		}
		if v := pr.In.Header.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
	}
	// One allocation for the three values; each slice is capped so that an
	// append to one cannot write into the next.
	vals := [...]string{clientIP, proto, host}
	v := vals[:]
	h["X-Forwarded-For"] = v[0:1:1]
	h["X-Forwarded-Proto"] = v[1:2:2]
	h["X-Forwarded-Host"] = v[2:3:3]
}

func trusted(ip string, nets []netip.Prefix) bool {
	if len(nets) == 0 {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}
