package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxStreams        = 100
	DefaultMaxFrameSize      = 16 << 10
	DefaultStreamWindow      = 64 << 10
	DefaultConnWindow        = 1 << 20
)

// Options configures one listener.
type Options struct {
	// Name identifies the listener in logs.
	Name string
	// Address is host:port to bind (port 0 picks a free port).
	Address string
	// Protocols are the protocols served: "h1" and "h2" with TLS, "h1" and
	// "h2c" without. Default: h1 and h2 with TLS, h1 and h2c without.
	Protocols []string
	// TLS makes this a TLS listener. It must offer ALPN "h2" when h2 is
	// served; the caller (pqtls) owns its NextProtos.
	TLS *tls.Config
	// Handler serves requests. Required.
	Handler http.Handler
	// ReadHeaderTimeout bounds reading request headers (default 10s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request (default 60s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response (default 0: none, for streams).
	WriteTimeout time.Duration
	// IdleTimeout bounds keep-alive idleness (default 120s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers, HTTP/1.1 and HTTP/2 (default
	// 64 KiB).
	MaxHeaderBytes int
	// HTTP2 holds the HTTP/2 limits.
	HTTP2 HTTP2Limits
	// Limits holds admission limits and edge defences (limits.go).
	Limits Limits
	// Metrics counts what the defences refuse (nil: counted nowhere).
	Metrics *Metrics
	// Logger receives listener events (nil discards).
	Logger *slog.Logger
	// ConnContext, when set, adds values to each connection's context.
	ConnContext func(ctx context.Context, c net.Conn) context.Context
}

// HTTP2Limits are the HTTP/2 server limits. Zero means the default.
type HTTP2Limits struct {
	// XNet serves HTTP/2 with golang.org/x/net/http2's server instead of
	// Aegis-Flow's own (h2serve.go).
	XNet bool
	// MaxConcurrentStreams per connection (default 100).
	MaxConcurrentStreams int
	// MaxReadFrameSize in bytes (default 16384).
	MaxReadFrameSize int
	// StreamWindow is the per-stream receive window (default 64 KiB).
	StreamWindow int
	// ConnWindow is the per-connection receive window (default 1 MiB).
	ConnWindow int
	// RapidResetThreshold is how many client stream resets a connection
	// may send before it is ended, when they are more than half of its
	// streams (default 100; negative: no check; see h2guard.go).
	RapidResetThreshold int
	// MaxContinuationFrames bounds CONTINUATION frames per header block
	// (default 32; negative: no check). With both negative the guard is
	// off.
	MaxContinuationFrames int
	// MaxHeaderBlockBytes bounds one encoded header block, HEADERS plus
	// CONTINUATION payloads (default 64 KiB).
	MaxHeaderBlockBytes int
}

// Server is one listening socket and the net/http server serving it.
type Server struct {
	name string
	ln   net.Listener
	log  *slog.Logger

	mu      sync.Mutex
	cur     *generation
	old     []*generation // draining generations
	opts    Options
	started bool
	stopped bool
	// stopping is closed by Shutdown and Close, ending drain waits early.
	stopping chan struct{}

	wg sync.WaitGroup // generations' Serve goroutines and drains

	adm     *admission
	metrics *listenerMetrics
}

// generation is one net/http server reading connections from the socket.
type generation struct {
	srv     *http.Server
	handler atomic.Pointer[http.Handler]
	conns   chan net.Conn
	closed  chan struct{}
	once    sync.Once
	addr    net.Addr
	wrap    func(net.Conn) net.Conn // per-connection wrapper (smuggling guard)
	// handshake: the server runs TLS handshakes itself (tlsconn.go).
	handshake        bool
	handshakeTimeout time.Duration
}

// New validates o and binds the socket. Call Serve to start serving.
func New(o Options) (*Server, error) {
	if err := normalize(&o); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", o.Name, err)
	}
	s := &Server{name: o.Name, ln: ln, stopping: make(chan struct{}), log: o.Logger, opts: o, adm: &admission{}, metrics: o.Metrics.forListener(o.Name)}
	s.adm.set(o.Limits)
	s.cur = s.newGeneration(o)
	return s, nil
}

func normalize(o *Options) error {
	if o.Handler == nil {
		return errors.New("server: nil Handler")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.Protocols) == 0 {
		if o.TLS != nil {
			o.Protocols = []string{"h1", "h2"}
		} else {
			o.Protocols = []string{"h1", "h2c"}
		}
	}
	for _, p := range o.Protocols {
		switch {
		case p == "h1":
		case p == "h2" && o.TLS != nil:
		case p == "h3" && o.TLS != nil: // served by an H3Server on the same address
		case p == "h2c" && o.TLS == nil:
		default:
			return fmt.Errorf("server %s: protocol %q not possible here (TLS: %v)", o.Name, p, o.TLS != nil)
		}
	}
	def := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&o.ReadTimeout, DefaultReadTimeout)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defInt(&o.MaxHeaderBytes, DefaultMaxHeaderBytes)
	defInt(&o.HTTP2.MaxConcurrentStreams, DefaultMaxStreams)
	defInt(&o.HTTP2.MaxReadFrameSize, DefaultMaxFrameSize)
	defInt(&o.HTTP2.StreamWindow, DefaultStreamWindow)
	defInt(&o.HTTP2.ConnWindow, DefaultConnWindow)
	defInt(&o.HTTP2.RapidResetThreshold, DefaultRapidResetThreshold)
	defInt(&o.HTTP2.MaxContinuationFrames, DefaultMaxContinuationFrames)
	defInt(&o.HTTP2.MaxHeaderBlockBytes, DefaultMaxHeaderBlockBytes)
	o.Limits.normalize()
	return nil
}

func (s *Server) newGeneration(o Options) *generation {
	g := &generation{conns: make(chan net.Conn), closed: make(chan struct{}), addr: s.ln.Addr()}
	h := o.Handler
	g.handler.Store(&h)
	var protos http.Protocols
	for _, p := range o.Protocols {
		switch p {
		case "h1":
			protos.SetHTTP1(true)
		case "h2":
			protos.SetHTTP2(true)
		case "h2c":
			protos.SetUnencryptedHTTP2(true)
		}
	}
	g.srv = &http.Server{
		Handler:                      &front{s: s, lim: o.Limits, next: func() http.Handler { return *g.handler.Load() }},
		DisableGeneralOptionsHandler: true,
		Protocols:                    &protos,
		ReadHeaderTimeout:            o.ReadHeaderTimeout,
		ReadTimeout:                  o.ReadTimeout,
		WriteTimeout:                 o.WriteTimeout,
		IdleTimeout:                  o.IdleTimeout,
		MaxHeaderBytes:               o.MaxHeaderBytes,
		ConnContext:                  connContext(o.ConnContext),
		ErrorLog:                     slog.NewLogLogger(o.Logger.With("listener", o.Name).Handler(), slog.LevelDebug),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          o.HTTP2.MaxConcurrentStreams,
			MaxReadFrameSize:              o.HTTP2.MaxReadFrameSize,
			MaxReceiveBufferPerStream:     o.HTTP2.StreamWindow,
			MaxReceiveBufferPerConnection: o.HTTP2.ConnWindow,
			MaxDecoderHeaderTableSize:     4096,
			MaxEncoderHeaderTableSize:     4096,
			PermitProhibitedCipherSuites:  false,
			PingTimeout:                   15 * time.Second,
			// No WriteByteTimeout: the connection's write-idle deadline
			// (limitConn) covers HTTP/2 as it covers HTTP/1.x, and costs a
			// timer update every idle/8 rather than two per write.
		},
	}
	if o.TLS != nil {
		// A clone per generation: net/http writes its ALPN defaults into
		// the config it serves with, and generations overlap on reload.
		g.srv.TLSConfig = o.TLS.Clone()
		g.handshake = !o.Limits.DisableSmugglingGuard
		g.handshakeTimeout = o.ReadHeaderTimeout
	} else if !o.Limits.DisableSmugglingGuard {
		g.wrap = func(c net.Conn) net.Conn { return &h1Conn{Conn: c} }
	}
	s.setupHTTP2(g, o)
	return g
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Name returns the listener's name.
func (s *Server) Name() string { return s.name }

// Serve accepts connections until Shutdown or Close. It returns nil after a
// Shutdown or Close, or the accept error that stopped it.
func (s *Server) Serve() error {
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
		c, aerr := s.ln.Accept()
		if aerr != nil {
			if ne, ok := errors.AsType[net.Error](aerr); ok && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			s.mu.Lock()
			stopped := s.stopped
			s.mu.Unlock()
			if !stopped {
				err = fmt.Errorf("accept on %s: %w", s.name, aerr)
			}
			break
		}
		if c = s.admit(c); c == nil {
			continue
		}
		s.mu.Lock()
		g := s.cur
		s.mu.Unlock()
		if g.handshake {
			// TLS handshakes run beside the accept loop (tlsconn.go).
			s.wg.Go(func() { s.handshake(g, c) })
			continue
		}
		s.deliver(g, c)
	}
	s.wg.Wait()
	return err
}

// deliver hands c to generation g, or to the current one when g was
// replaced meanwhile.
func (s *Server) deliver(g *generation, c net.Conn) {
	select {
	case g.conns <- c:
	case <-g.closed:
		s.mu.Lock()
		g = s.cur
		s.mu.Unlock()
		select {
		case g.conns <- c:
		case <-g.closed:
			c.Close()
		}
	}
}

func (s *Server) startLocked(g *generation) {
	var ln net.Listener = &chanListener{g: g}
	if g.srv.TLSConfig != nil && !g.handshake {
		ln = tls.NewListener(ln, g.srv.TLSConfig)
	}
	s.wg.Go(func() {
		// A replaced generation's Serve ends with net.ErrClosed while its
		// connections carry on; that is not an error.
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("listener generation stopped", "listener", s.name, "err", err)
		}
	})
}

// Update applies o without closing the socket (o.Address is ignored: the
// socket stays where it is). When only the
// handler differs it is swapped in place; otherwise a new generation starts
// accepting at once and the previous one drains for at most grace.
func (s *Server) Update(o Options, grace time.Duration) error {
	if err := normalize(&o); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return http.ErrServerClosed
	}
	s.adm.set(o.Limits)
	if sameExceptHandler(s.opts, o) {
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
	// The old generation stops accepting but keeps its connections, now
	// with the new handler. HTTP/1.x responses on them say "Connection:
	// close", so each client moves to the new generation after a complete
	// answer: closing idle keep-alive connections here would race with
	// clients reusing them, and a reused POST is not retried. After the
	// grace period whatever is left is shut down (HTTP/2 with GOAWAY).
	next := o.Handler
	closing := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	}))
	old.handler.Store(&closing)
	old.close()
	s.old = append(s.old, old)
	stopping := s.stopping
	s.wg.Go(func() {
		t := time.NewTimer(grace)
		select {
		case <-t.C:
		case <-stopping:
		}
		t.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := old.srv.Shutdown(ctx); err != nil {
			old.srv.Close()
		}
		s.mu.Lock()
		s.old = slices.DeleteFunc(s.old, func(x *generation) bool { return x == old })
		s.mu.Unlock()
	})
	return nil
}

func sameExceptHandler(a, b Options) bool {
	return a.Name == b.Name && slices.Equal(a.Protocols, b.Protocols) &&
		a.TLS == b.TLS && a.ReadHeaderTimeout == b.ReadHeaderTimeout && a.ReadTimeout == b.ReadTimeout &&
		a.WriteTimeout == b.WriteTimeout && a.IdleTimeout == b.IdleTimeout &&
		a.MaxHeaderBytes == b.MaxHeaderBytes && a.HTTP2 == b.HTTP2 && a.Limits == b.Limits
}

// Shutdown stops accepting, then waits for in-flight requests to finish or
// ctx to end, whichever is first; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	gens := s.stop()
	srvs := make([]drainer, len(gens))
	for i, g := range gens {
		srvs[i] = g.srv
	}
	return drainAll(ctx, srvs)
}

// drainer is a server generation that can drain gracefully or stop at once:
// *http.Server and *http3.Server.
type drainer interface {
	Shutdown(ctx context.Context) error
	Close() error
}

// drainAll shuts every server down in parallel within ctx and closes those
// that miss the deadline.
func drainAll(ctx context.Context, srvs []drainer) error {
	errs := make([]error, len(srvs))
	var wg sync.WaitGroup
	for i, srv := range srvs {
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
				errs[i] = err
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops at once, closing every connection.
func (s *Server) Close() error {
	var errs []error
	for _, g := range s.stop() {
		errs = append(errs, g.srv.Close())
	}
	return errors.Join(errs...)
}

func (s *Server) stop() []*generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		close(s.stopping)
		s.ln.Close()
	}
	gens := append([]*generation{s.cur}, s.old...)
	for _, g := range gens {
		g.close()
	}
	return gens
}

func (g *generation) close() { g.once.Do(func() { close(g.closed) }) }

// chanListener feeds a generation the connections accepted on the socket.
type chanListener struct{ g *generation }

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.g.conns:
		if l.g.wrap != nil {
			c = l.g.wrap(c)
		}
		return c, nil
	case <-l.g.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.g.close(); return nil }
func (l *chanListener) Addr() net.Addr { return l.g.addr }
