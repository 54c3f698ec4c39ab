package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Defaults of H3Options.
const (
	DefaultH3MaxIncomingStreams = 100
	DefaultH3IdleTimeout        = 30 * time.Second
	DefaultH3HandshakeTimeout   = 10 * time.Second
	DefaultH3MaxHeaderBytes     = 64 << 10
	DefaultH3RetryThreshold     = 128
)

// StatusTooEarly is the status of a request refused because it arrived in
// TLS early data (0-RTT) and its method is not idempotent (RFC 8470).
const StatusTooEarly = http.StatusTooEarly

// H3Options configures the HTTP/3 side of one TLS listener.
type H3Options struct {
	// Name identifies the listener in logs and metric labels.
	Name string
	// Address is the UDP host:port to bind (port 0 picks a free port). The
	// daemon passes the bound address of the listener's TCP socket.
	Address string
	// TLS is the listener's server configuration (pqtls). Required. It is
	// not modified: each handshake uses the configuration it returns from
	// GetConfigForClient (or itself) with ALPN "h3", so one post-quantum
	// policy, certificate and ticket key serve TCP and QUIC alike.
	TLS *tls.Config
	// Handler serves requests. Required.
	Handler http.Handler
	// MaxIncomingStreams is the number of concurrent requests a client may
	// have open per connection (default 100).
	MaxIncomingStreams int
	// IdleTimeout closes a connection without network activity (default
	// 30s).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the QUIC and TLS handshake (default 10s).
	HandshakeTimeout time.Duration
	// MaxHeaderBytes bounds a request's HEADERS frame (default 64 KiB).
	MaxHeaderBytes int
	// Allow0RTT accepts TLS early data from resuming clients (default
	// false). Requests with a non-idempotent method that arrive before the
	// handshake is complete get 425 Too Early: early data can be replayed.
	Allow0RTT bool
	// RetryThreshold is the number of handshakes in progress from which a
	// new client must first validate its address with a QUIC Retry packet
	// (default 128; negative: always). quic-go's anti-amplification limit
	// (three times the bytes received) applies either way.
	RetryThreshold int
	// Metrics are the QUIC metrics (nil: none).
	Metrics *H3Metrics
	// Logger receives listener events (nil discards).
	Logger *slog.Logger
}

// H3Metrics are the QUIC listener metrics shared by every H3Server of a
// process. Handshakes are counted by pqtls, on the same counters as TCP.
type H3Metrics struct {
	open     *prometheus.GaugeVec
	retries  *prometheus.CounterVec
	tooEarly *prometheus.CounterVec
}

// NewH3Metrics creates the QUIC metrics and registers them with reg (nil:
// not registered). Collectors reg already holds are reused.
func NewH3Metrics(reg prometheus.Registerer) (*H3Metrics, error) {
	m := &H3Metrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aegis_quic_connections_open",
			Help: "Open QUIC connections (handshaking or established) per listener.",
		}, []string{"listener"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_quic_retries_total",
			Help: "QUIC Retry packets sent to validate client addresses under load, per listener.",
		}, []string{"listener"}),
		tooEarly: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_quic_too_early_total",
			Help: "Requests refused with 425 because they arrived in 0-RTT early data with a non-idempotent method.",
		}, []string{"listener"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.open, err = register(reg, m.open)
	if err != nil {
		return nil, err
	}
	m.retries, err = register(reg, m.retries)
	if err != nil {
		return nil, err
	}
	m.tooEarly, err = register(reg, m.tooEarly)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if prev, ok := are.ExistingCollector.(T); ok {
				return prev, nil
			}
		}
		return c, fmt.Errorf("register %T: %w", c, err)
	}
	return c, nil
}

// H3Server serves HTTP/3 on one UDP socket, which it owns for its whole
// life. Like Server, Update applies a new configuration without closing the
// socket: TLS and QUIC limits apply to new connections at once, the handler
// is swapped in place, and a change of the HTTP/3 layer's own limits starts
// a new http3 generation while the previous one drains.
type H3Server struct {
	name string
	udp  net.PacketConn
	tr   *quic.Transport
	ln   *quic.EarlyListener
	log  *slog.Logger

	tlsCur      atomic.Pointer[tls.Config]
	quicCur     atomic.Pointer[quic.Config]
	retryAt     atomic.Int64 // handshakes in progress that trigger Retry; <0 always
	handshaking atomic.Int64

	open     prometheus.Gauge
	retries  prometheus.Counter
	tooEarly prometheus.Counter

	mu      sync.Mutex
	cur     *h3Generation
	old     []*h3Generation
	opts    H3Options
	started bool
	stopped bool

	wg sync.WaitGroup // generations' serve goroutines and drains
}

type h3Generation struct {
	srv     *http3.Server
	handler atomic.Pointer[http.Handler]
	conns   chan *quic.Conn
	closed  chan struct{}
	once    sync.Once
	addr    net.Addr
}

// connMark travels in a QUIC connection's context: whether the connection
// still counts as a handshake in progress.
type connMark struct{ handshaking atomic.Bool }

type connMarkKey struct{}

// NewH3 validates o and binds the UDP socket. Call Serve to start serving.
func NewH3(o H3Options) (*H3Server, error) {
	if err := normalizeH3(&o); err != nil {
		return nil, err
	}
	udp, err := net.ListenPacket("udp", o.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s (udp): %w", o.Name, err)
	}
	s := &H3Server{name: o.Name, udp: udp, log: o.Logger, opts: o}
	// Unregistered stand-ins, so that the hot path never checks for nil.
	s.open = prometheus.NewGauge(prometheus.GaugeOpts{Name: "aegis_quic_connections_open"})
	s.retries = prometheus.NewCounter(prometheus.CounterOpts{Name: "aegis_quic_retries_total"})
	s.tooEarly = prometheus.NewCounter(prometheus.CounterOpts{Name: "aegis_quic_too_early_total"})
	if m := o.Metrics; m != nil {
		s.open = m.open.WithLabelValues(o.Name)
		s.retries = m.retries.WithLabelValues(o.Name)
		s.tooEarly = m.tooEarly.WithLabelValues(o.Name)
	}
	s.apply(o)
	s.tr = &quic.Transport{Conn: udp, VerifySourceAddress: s.verifySource, ConnContext: s.connContext}
	// The listener's configurations only delegate to the current ones, so
	// that Update reaches new connections without a new listener.
	base := &tls.Config{MinVersion: tls.VersionTLS13, GetConfigForClient: s.tlsForClient}
	qc := quicConfig(o)
	qc.GetConfigForClient = func(*quic.ClientInfo) (*quic.Config, error) { return s.quicCur.Load(), nil }
	// An early listener, so that allow_0rtt can change on reload; without
	// 0-RTT it only lets the server send its SETTINGS in 0.5-RTT, and
	// requests are still read only after the handshake completes.
	s.ln, err = s.tr.ListenEarly(http3.ConfigureTLSConfig(base), qc)
	if err != nil {
		s.tr.Close()
		udp.Close()
		return nil, fmt.Errorf("listen %s (quic): %w", o.Name, err)
	}
	s.cur = s.newGeneration(o)
	return s, nil
}

func normalizeH3(o *H3Options) error {
	if o.Handler == nil {
		return errors.New("server: nil Handler")
	}
	if o.TLS == nil {
		return fmt.Errorf("server %s: h3 needs a TLS config", o.Name)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxIncomingStreams == 0 {
		o.MaxIncomingStreams = DefaultH3MaxIncomingStreams
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultH3IdleTimeout
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = DefaultH3HandshakeTimeout
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = DefaultH3MaxHeaderBytes
	}
	if o.RetryThreshold == 0 {
		o.RetryThreshold = DefaultH3RetryThreshold
	}
	if o.MaxIncomingStreams < 0 || o.IdleTimeout < 0 || o.HandshakeTimeout < 0 || o.MaxHeaderBytes < 0 {
		return fmt.Errorf("server %s: negative h3 limit", o.Name)
	}
	return nil
}

func quicConfig(o H3Options) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  o.HandshakeTimeout / 2, // quic-go aborts a handshake after twice this
		MaxIdleTimeout:        o.IdleTimeout,
		MaxIncomingStreams:    int64(o.MaxIncomingStreams),
		MaxIncomingUniStreams: 16, // control and QPACK streams; HTTP/3 push is off
		Allow0RTT:             o.Allow0RTT,
	}
}

// apply publishes the parts of o that new connections read.
func (s *H3Server) apply(o H3Options) {
	s.tlsCur.Store(o.TLS)
	s.quicCur.Store(quicConfig(o))
	s.retryAt.Store(int64(o.RetryThreshold))
}

func (s *H3Server) tlsForClient(chi *tls.ClientHelloInfo) (*tls.Config, error) {
	cur := s.tlsCur.Load()
	if cur.GetConfigForClient != nil {
		c, err := cur.GetConfigForClient(chi)
		if err != nil || c != nil {
			return c, err
		}
	}
	return cur, nil
}

// verifySource decides whether a new client must first prove its address
// with a Retry: when too many handshakes are already in progress.
func (s *H3Server) verifySource(net.Addr) bool {
	at := s.retryAt.Load()
	if at < 0 || s.handshaking.Load() >= at {
		s.retries.Inc()
		return true
	}
	return false
}

// connContext counts every QUIC connection from its first packet to its
// close, and marks it as a handshake in progress until it is accepted.
func (s *H3Server) connContext(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	m := &connMark{}
	m.handshaking.Store(true)
	s.handshaking.Add(1)
	s.open.Inc()
	context.AfterFunc(ctx, func() {
		s.open.Dec()
		s.handshakeDone(m)
	})
	return context.WithValue(ctx, connMarkKey{}, m), nil
}

func (s *H3Server) handshakeDone(m *connMark) {
	if m != nil && m.handshaking.CompareAndSwap(true, false) {
		s.handshaking.Add(-1)
	}
}

func (s *H3Server) newGeneration(o H3Options) *h3Generation {
	g := &h3Generation{conns: make(chan *quic.Conn), closed: make(chan struct{}), addr: s.udp.LocalAddr()}
	h := o.Handler
	g.handler.Store(&h)
	g.srv = &http3.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS != nil && !r.TLS.HandshakeComplete && !idempotent(r.Method) {
				s.tooEarly.Inc()
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(StatusTooEarly)
				io.WriteString(w, "request sent in early data: retry after the handshake\n")
				return
			}
			(*g.handler.Load()).ServeHTTP(w, r)
		}),
		MaxHeaderBytes: o.MaxHeaderBytes,
		IdleTimeout:    o.IdleTimeout, // also without requests, not only without packets
		Logger:         o.Logger.With("listener", o.Name),
	}
	return g
}

// idempotent reports whether a method is idempotent (RFC 9110, 9.2.2): the
// only ones served from replayable early data.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// Addr returns the bound UDP address.
func (s *H3Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Port returns the bound UDP port, the one Alt-Svc advertises.
func (s *H3Server) Port() int {
	if a, ok := s.udp.LocalAddr().(*net.UDPAddr); ok {
		return a.Port
	}
	return 0
}

// Name returns the listener's name.
func (s *H3Server) Name() string { return s.name }

// Serve accepts QUIC connections until Shutdown or Close. It returns nil
// after a Shutdown or Close, or the error that stopped it.
func (s *H3Server) Serve() error {
	s.mu.Lock()
	if s.started || s.stopped {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.started = true
	s.startLocked(s.cur)
	s.mu.Unlock()
	var err error
	for {
		c, aerr := s.ln.Accept(context.Background())
		if aerr != nil {
			s.mu.Lock()
			stopped := s.stopped
			s.mu.Unlock()
			if !stopped {
				err = fmt.Errorf("accept on %s (quic): %w", s.name, aerr)
			}
			break
		}
		m, _ := c.Context().Value(connMarkKey{}).(*connMark)
		s.handshakeDone(m)
		s.mu.Lock()
		g := s.cur
		s.mu.Unlock()
		select {
		case g.conns <- c:
		case <-g.closed:
			s.mu.Lock()
			g = s.cur
			s.mu.Unlock()
			select {
			case g.conns <- c:
			case <-g.closed:
				c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
			}
		}
	}
	s.wg.Wait()
	return err
}

func (s *H3Server) startLocked(g *h3Generation) {
	s.wg.Go(func() {
		if err := g.srv.ServeListener(&h3ChanListener{g: g}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("listener generation stopped", "listener", s.name, "protocol", "h3", "err", err)
		}
	})
}

// Update applies o (same address) without closing the socket: TLS, QUIC
// limits, Retry threshold and 0-RTT apply to new connections; the handler
// is swapped in place; a new MaxHeaderBytes or IdleTimeout starts a new
// generation and
// the previous one drains for at most grace.
func (s *H3Server) Update(o H3Options, grace time.Duration) error {
	if err := normalizeH3(&o); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return http.ErrServerClosed
	}
	s.apply(o)
	if o.MaxHeaderBytes == s.opts.MaxHeaderBytes && o.IdleTimeout == s.opts.IdleTimeout {
		h := o.Handler
		s.cur.handler.Store(&h)
		s.opts = o
		return nil
	}
	old := s.cur
	g := s.newGeneration(o)
	s.cur, s.opts = g, o
	if s.started {
		s.startLocked(g)
	}
	old.close()
	s.old = append(s.old, old)
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := old.srv.Shutdown(ctx); err != nil {
			old.srv.Close()
		}
		s.mu.Lock()
		s.old = slices.DeleteFunc(s.old, func(x *h3Generation) bool { return x == old })
		s.mu.Unlock()
	})
	return nil
}

// Shutdown stops accepting (handshakes in flight are refused), sends
// GOAWAY on every connection, waits for in-flight requests to finish or ctx
// to end, whichever is first, then closes what is left and the socket.
func (s *H3Server) Shutdown(ctx context.Context) error {
	gens := s.stop()
	srvs := make([]drainer, len(gens))
	for i, g := range gens {
		srvs[i] = g.srv
	}
	return errors.Join(drainAll(ctx, srvs), s.closeSocket())
}

// Close stops at once, closing every connection and the socket.
func (s *H3Server) Close() error {
	var errs []error
	for _, g := range s.stop() {
		errs = append(errs, g.srv.Close())
	}
	errs = append(errs, s.closeSocket())
	return errors.Join(errs...)
}

func (s *H3Server) stop() []*h3Generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		s.ln.Close()
	}
	gens := append([]*h3Generation{s.cur}, s.old...)
	for _, g := range gens {
		g.close()
	}
	return gens
}

func (s *H3Server) closeSocket() error {
	err := s.tr.Close()
	if cerr := s.udp.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	return err
}

func (g *h3Generation) close() { g.once.Do(func() { close(g.closed) }) }

// h3ChanListener feeds a generation the connections accepted on the socket.
type h3ChanListener struct{ g *h3Generation }

func (l *h3ChanListener) Accept(ctx context.Context) (*quic.Conn, error) {
	select {
	case c := <-l.g.conns:
		return c, nil
	case <-l.g.closed:
		return nil, quic.ErrServerClosed
	case <-ctx.Done():
		return nil, quic.ErrServerClosed
	}
}

func (l *h3ChanListener) Close() error   { l.g.close(); return nil }
func (l *h3ChanListener) Addr() net.Addr { return l.g.addr }

// AltSvc returns next with an Alt-Svc header advertising HTTP/3 on port
// for maxAge (whole seconds) on every response; maxAge <= 0 returns next.
// The header is set before next runs, so a handler may still remove it.
func AltSvc(next http.Handler, port int, maxAge time.Duration) http.Handler {
	if maxAge <= 0 || port <= 0 {
		return next
	}
	v := []string{`h3=":` + strconv.Itoa(port) + `"; ma=` + strconv.FormatInt(int64(maxAge/time.Second), 10)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Alt-Svc"] = v
		next.ServeHTTP(w, r)
	})
}
