package server

import (
	"context"
	"crypto/tls"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
)

// Defaults of Limits and of the HTTP/2 abuse thresholds.
const (
	DefaultMaxConnections        = 10000
	DefaultMaxRequests           = 10000
	DefaultMaxHeaderCount        = 100
	DefaultWriteIdleTimeout      = 30 * time.Second
	DefaultRapidResetThreshold   = 100
	DefaultMaxContinuationFrames = 32
	DefaultMaxHeaderBlockBytes   = 64 << 10
	DefaultListenerMaxHeaderSize = 60 << 10
)

// Limits are a listener's admission limits and edge defences. Zero means
// the default; a negative value turns a limit off.
type Limits struct {
	// MaxConnections caps open client connections on the listener (default
	// 10000). A connection accepted beyond it is closed at once, so the
	// client learns immediately instead of waiting in the kernel's backlog.
	MaxConnections int
	// MaxConcurrentRequests caps requests in progress on the listener, all
	// protocols together (default 10000); beyond it the answer is 503.
	MaxConcurrentRequests int
	// MaxHeaderCount caps request header fields (default 100); beyond it the
	// answer is 431.
	MaxHeaderCount int
	// WriteIdleTimeout cuts a connection when a write to the client makes
	// no progress for this long: a client that stops reading (default 30s).
	// Streams that are merely slow are not cut.
	WriteIdleTimeout time.Duration
	// RejectSmuggling answers ambiguous HTTP/1.1 framing with 400 (default
	// on; set DisableSmugglingGuard to turn it off).
	DisableSmugglingGuard bool
}

func (l *Limits) normalize() {
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defInt(&l.MaxConnections, DefaultMaxConnections)
	defInt(&l.MaxConcurrentRequests, DefaultMaxRequests)
	defInt(&l.MaxHeaderCount, DefaultMaxHeaderCount)
	if l.WriteIdleTimeout == 0 {
		l.WriteIdleTimeout = DefaultWriteIdleTimeout
	}
}

// Metrics are the listener defence counters, shared by every listener (a
// label names it) and every generation.
type Metrics struct {
	rejected *prometheus.CounterVec
	h2Abuse  *prometheus.CounterVec
	timeouts *prometheus.CounterVec
}

// NewMetrics builds the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_server_rejected_total",
			Help: "Connections and requests refused by a listener defence, by listener and reason (connections, overload, header_count, smuggling).",
		}, []string{"listener", "reason"}),
		h2Abuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_server_h2_abuse_total",
			Help: "HTTP/2 connections ended with GOAWAY(ENHANCE_YOUR_CALM), by listener and reason (rapid_reset, continuation_flood, header_block_too_large).",
		}, []string{"listener", "reason"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_server_timeouts_total",
			Help: "Client connection reads and writes cut by a deadline, by listener and direction (read: header, body or idle keep-alive; write: slow reader).",
		}, []string{"listener", "direction"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rejected, m.h2Abuse, m.timeouts} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// listenerMetrics caches one listener's series.
type listenerMetrics struct {
	conns, overload, headers, smuggling prometheus.Counter
	abuse                               [4]prometheus.Counter // by h2Abuse
	readTimeout, writeTimeout           prometheus.Counter
}

func (m *Metrics) forListener(name string) *listenerMetrics {
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	lm := &listenerMetrics{
		conns:        m.rejected.WithLabelValues(name, "connections"),
		overload:     m.rejected.WithLabelValues(name, "overload"),
		headers:      m.rejected.WithLabelValues(name, "header_count"),
		smuggling:    m.rejected.WithLabelValues(name, "smuggling"),
		readTimeout:  m.timeouts.WithLabelValues(name, "read"),
		writeTimeout: m.timeouts.WithLabelValues(name, "write"),
	}
	for a := abuseRapidReset; a <= abuseHeaderBlock; a++ {
		lm.abuse[a] = m.h2Abuse.WithLabelValues(name, a.String())
	}
	return lm
}

// admission holds a listener's connection and request counts; it outlives
// generations, like the socket.
type admission struct {
	conns    atomic.Int64
	requests atomic.Int64
	maxConns atomic.Int64
	maxReqs  atomic.Int64
}

func (a *admission) set(l Limits) {
	a.maxConns.Store(int64(l.MaxConnections))
	a.maxReqs.Store(int64(l.MaxConcurrentRequests))
}

// admit wraps an accepted connection, or closes it and returns nil when the
// listener is full.
func (s *Server) admit(c net.Conn) net.Conn {
	a := s.adm
	n := a.conns.Add(1)
	if max := a.maxConns.Load(); max > 0 && n > max {
		a.conns.Add(-1)
		s.metrics.conns.Inc()
		c.Close()
		return nil
	}
	s.mu.Lock()
	idle := s.opts.Limits.WriteIdleTimeout
	s.mu.Unlock()
	lc := &limitConn{Conn: c, adm: a, m: s.metrics}
	if idle > 0 {
		lc.idle = idle
	}
	return lc
}

// limitConn counts an open connection and enforces the write-idle deadline.
//
// Before each Write the deadline is moved to now+idle, but only when it has
// drifted by more than an eighth of idle: a stalled write is cut between
// 7/8 and 1 times idle after its last progress, and a busy connection moves
// its timer a few times per idle period instead of once per write. A
// deadline the server sets itself (WriteTimeout, ResponseController) still
// applies: the earlier of the two wins.
type limitConn struct {
	net.Conn
	adm    *admission
	m      *listenerMetrics
	idle   time.Duration
	closed atomic.Bool

	wmu   sync.Mutex
	user  time.Time // deadline set through SetWriteDeadline/SetDeadline
	armed time.Time // deadline in force on the socket; zero: none

	// The read deadline reaches the socket when a Read starts, or at once
	// while one is under way: net/http moves it five times per request
	// (header, body, background read, its abort, idle), mostly with no
	// Read in between, and each move on the socket is a timer update.
	rmu     sync.Mutex
	rwant   time.Time // read deadline asked for
	rarmed  time.Time // read deadline on the socket
	reading int       // Reads under way
}

func (c *limitConn) Write(p []byte) (int, error) {
	if c.idle > 0 {
		c.wmu.Lock()
		want := time.Now().Add(c.idle)
		if !c.user.IsZero() && c.user.Before(want) {
			want = c.user
		}
		if c.armed.IsZero() || c.armed.After(want) || want.Sub(c.armed) > c.idle/8 {
			c.armed = want
			c.Conn.SetWriteDeadline(want)
		}
		c.wmu.Unlock()
	}
	n, err := c.Conn.Write(p)
	if err != nil && isTimeout(err) {
		c.m.writeTimeout.Inc()
	}
	return n, err
}

func (c *limitConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	c.reading++
	var derr error
	if !c.rwant.Equal(c.rarmed) {
		c.rarmed = c.rwant
		derr = c.Conn.SetReadDeadline(c.rwant)
	}
	c.rmu.Unlock()
	var n int
	err := derr
	if err == nil {
		n, err = c.Conn.Read(p)
	}
	c.rmu.Lock()
	c.reading--
	dl := c.rarmed
	c.rmu.Unlock()
	if err != nil && isTimeout(err) && !dl.Before(processStart) {
		c.m.readTimeout.Inc()
	}
	return n, err
}

// processStart tells a deadline that expired from one set in the past to
// cut a Read short: net/http ends its background read of every request
// that way (time.Unix(1, 0)), and that is no timeout.
var processStart = time.Now()

func (c *limitConn) SetReadDeadline(t time.Time) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rwant = t
	if c.reading == 0 {
		return nil // the next Read applies it
	}
	c.rarmed = t
	return c.Conn.SetReadDeadline(t)
}

func (c *limitConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if t.IsZero() && c.user.IsZero() && c.idle > 0 {
		// No deadline of the caller's before or after: the write-idle
		// one stays armed (net/http clears the deadline after every
		// response, and the next Write would only arm it again).
		return nil
	}
	c.user, c.armed = t, t
	return c.Conn.SetWriteDeadline(t)
}

func (c *limitConn) SetDeadline(t time.Time) error {
	c.wmu.Lock()
	c.user, c.armed = t, t
	c.wmu.Unlock()
	c.rmu.Lock()
	c.rwant, c.rarmed = t, t
	c.rmu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *limitConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.adm.conns.Add(-1)
	}
	return c.Conn.Close()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error) //nolint:errorlint // a net.Conn returns it unwrapped
	return ok && ne.Timeout()
}

// connKey carries the connection a request arrived on.
type connKey struct{}

// front is the handler in front of the listener's handler: smuggling
// verdict, overload, header count.
type front struct {
	g    *generation
	s    *Server
	lim  Limits
	next func() http.Handler
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && !f.lim.DisableSmugglingGuard {
		if hc, ok := r.Context().Value(connKey{}).(*h1Conn); ok {
			if v := hc.verdict(); v != 0 {
				f.s.metrics.smuggling.Inc()
				f.s.log.Debug("ambiguous request framing refused", "listener", f.s.name,
					"reason", smugglingReason(v), "remote", r.RemoteAddr)
				refuseFraming(w)
				return
			}
			hc.mayHijack(r)
		}
	}
	if r.Method == http.MethodOptions && r.RequestURI == "*" {
		// The server-wide OPTIONS request, answered here as net/http
		// would (its own handler for it is off so that every request
		// passes the checks above).
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	a := f.s.adm
	n := a.requests.Add(1)
	defer a.requests.Add(-1)
	if max := a.maxReqs.Load(); max > 0 && n > max {
		f.s.metrics.overload.Inc()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	if max := f.lim.MaxHeaderCount; max > 0 {
		count := 0
		for _, vs := range r.Header {
			count += len(vs)
		}
		if count > max {
			f.s.metrics.headers.Inc()
			w.Header().Set("Connection", "close")
			http.Error(w, "too many header fields (limit "+strconv.Itoa(max)+")", http.StatusRequestHeaderFieldsTooLarge)
			return
		}
	}
	f.next().ServeHTTP(w, r)
}

// setupHTTP2 makes g's HTTP/2 server, Aegis-Flow's own or (with
// HTTP2.XNet) golang.org/x/net/http2's, serving each connection through the
// abuse guard, for TLS (ALPN h2) and for h2c (prior knowledge, handed over
// by net/http after it read the preface).
func (s *Server) setupHTTP2(g *generation, o Options) {
	var h2, h2c bool
	for _, p := range o.Protocols {
		h2 = h2 || p == "h2"
		h2c = h2c || p == "h2c"
	}
	if !h2 && !h2c {
		return
	}
	// IdleTimeout is not taken from the http.Server by ServeConn; graceful
	// shutdown (GOAWAY to every connection, then drain) comes from
	// ConfigureServer, registered here on a stand-in server whose
	// Shutdown the real one triggers, so that ConfigureServer's other
	// changes (TLS config, TLSNextProto) stay off the real server.
	h2s := &http2.Server{IdleTimeout: o.IdleTimeout}
	stand := &http.Server{IdleTimeout: o.IdleTimeout}
	if err := http2.ConfigureServer(stand, h2s); err == nil {
		g.srv.RegisterOnShutdown(func() { stand.Shutdown(context.Background()) })
	}
	m := s.metrics
	onAbuse := func(a h2Abuse) {
		m.abuse[a].Inc()
		s.log.Info("http2 connection ended by abuse guard", "listener", s.name, "reason", a.String())
	}
	lim := h2Limits{
		resets:        o.HTTP2.RapidResetThreshold,
		continuations: o.HTTP2.MaxContinuationFrames,
		blockBytes:    o.HTTP2.MaxHeaderBlockBytes,
	}
	// A negative threshold turns that check off; both off turn the guard
	// off (the HTTP/2 server's own limits still apply).
	guardOff := lim.resets < 0 && lim.continuations < 0
	if lim.resets < 0 {
		lim.resets = math.MaxInt
	}
	if lim.continuations < 0 {
		lim.continuations = math.MaxInt
	}
	if lim.blockBytes < 0 {
		lim.blockBytes = math.MaxInt
	}
	guard := func(c net.Conn, preface bool) net.Conn {
		if guardOff {
			return c
		}
		return newGuardConn(c, lim, preface, onAbuse)
	}
	own := &h2Server{
		streamWindow:   int32(o.HTTP2.StreamWindow),
		connWindow:     int32(o.HTTP2.ConnWindow),
		maxReadFrame:   uint32(o.HTTP2.MaxReadFrameSize),
		maxStreams:     uint32(o.HTTP2.MaxConcurrentStreams),
		maxHeaderBytes: uint32(o.MaxHeaderBytes),
		idleTimeout:    o.IdleTimeout,
		readTimeout:    o.ReadTimeout,
		writeTimeout:   o.WriteTimeout,
		stallTimeout:   o.Limits.WriteIdleTimeout,
		onStall:        s.metrics.writeTimeout.Inc,
		onReadTimeout:  s.metrics.readTimeout.Inc,
		onWriteTimeout: s.metrics.writeTimeout.Inc,
		log:            s.log,
	}
	g.srv.RegisterOnShutdown(own.Shutdown)
	serve := func(hs *http.Server, c net.Conn, h http.Handler, sawPreface bool) {
		ctx := context.Background()
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		if !o.HTTP2.XNet {
			own.ServeConn(ctx, c, h, sawPreface)
			return
		}
		h2s.ServeConn(c, &http2.ServeConnOpts{Context: ctx, BaseConfig: hs, Handler: h, SawClientPreface: sawPreface})
	}
	// An "h2" entry also keeps net/http from installing its bundled HTTP/2
	// server over the h2c entry below.
	g.srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	{
		g.srv.TLSNextProto["h2"] = func(hs *http.Server, tc *tls.Conn, h http.Handler) {
			if guardOff {
				serve(hs, tc, h, false)
				return
			}
			gc := newGuardConn(tc, lim, true, onAbuse)
			serve(hs, guardTLSConn{guardConn: gc, tc: tc}, h, false)
		}
	}
	if h2c {
		g.srv.TLSNextProto["unencrypted_http2"] = func(hs *http.Server, tc *tls.Conn, h http.Handler) {
			u, ok := tc.NetConn().(interface{ UnencryptedNetConn() net.Conn })
			if !ok {
				tc.Close()
				return
			}
			nc := u.UnencryptedNetConn()
			if hc, ok := nc.(*h1Conn); ok {
				hc.stop()
			}
			serve(hs, guard(nc, false), h, true)
		}
	}
}

// connContext records the connection in each request's context (for the
// smuggling verdict), then applies the caller's ConnContext.
func connContext(next func(context.Context, net.Conn) context.Context) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		hc, _ := c.(*h1Conn)
		if tc, ok := c.(*tlsH1Conn); ok {
			hc = tc.h1Conn
		}
		if hc != nil {
			// The connection's own cancellation, for its watch (bgread.go).
			ctx = context.WithValue(ctx, connKey{}, hc)
			ctx, hc.bg.cancel = context.WithCancelCause(ctx)
		}
		if next != nil {
			ctx = next(ctx, c)
		}
		return ctx
	}
}

// badFraming is the whole answer to a request with ambiguous framing.
const badFraming = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nContent-Length: 20\r\n\r\nbad request framing\n"

// refuseFraming answers 400 and closes the connection at once: nothing
// more is read from it, in particular not the rest of a body whose length
// is in doubt.
func refuseFraming(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.Header().Set("Connection", "close")
		http.Error(w, "bad request framing", http.StatusBadRequest)
		return
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, badFraming)
	c.Close()
}
