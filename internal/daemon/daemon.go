package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-flow/aegis/internal/balance"
	"github.com/aegis-flow/aegis/internal/config"
	"github.com/aegis-flow/aegis/internal/pqtls"
	"github.com/aegis-flow/aegis/internal/proxy"
	"github.com/aegis-flow/aegis/internal/server"
	"github.com/aegis-flow/aegis/internal/telemetry"
)

// Options configures a Daemon.
type Options struct {
	// ConfigPath is the configuration file; empty means the embedded default.
	ConfigPath string
	// Stdout receives the access log when it goes to "stdout"
	// (default io.Discard).
	Stdout io.Writer
	// Stderr receives the process log (default io.Discard).
	Stderr io.Writer
}

// Daemon is a running Aegis-Flow instance.
type Daemon struct {
	opts     Options
	log      *slog.Logger
	level    *slog.LevelVar
	registry *prometheus.Registry
	metrics  metricsSet

	reloadMu sync.Mutex // serialises Reload

	mu        sync.Mutex
	cfg       *config.File
	gen       *generation
	listeners map[string]*server.Server   // by listener name
	h3        map[string]*server.H3Server // HTTP/3 side of listeners serving h3 (h3.go)
	admin     *server.Server
	demo      *demoSet
	pqOK      bool
	runCtx    context.Context // lifetime of Run; nil before
	running   bool
	carbon    carbonHub       // the current carbon tracker (carbon.go)
	energy    *energyState    // the process's energy meter (energy.go)
	gw        *greenWaitState // Green-Wait, once a route enables it (greenwait.go)

	wg sync.WaitGroup // every goroutine the daemon starts
}

type metricsSet struct {
	proxy   *proxy.Metrics
	balance *balance.Metrics
	tls     *pqtls.Metrics
	h3      *server.H3Metrics
	server  *server.Metrics
}

// generation is the part of the graph rebuilt by a reload.
type generation struct {
	cfg       *config.File
	proxy     *proxy.Proxy
	clusters  map[string]*clusterState
	tls       map[string]*tlsState // by listener name
	accessLog *slog.Logger
	closer    io.Closer
	carbon    *carbonState // carbon tracker (carbon.go)
}

type clusterState struct {
	cfg       config.Cluster
	balancer  *balance.Cluster
	transport proxy.Transport
	proxy     *proxy.Cluster
	cancel    context.CancelFunc // stops Run; nil until started
	health    proxy.Transport    // carries active health checks (resilience.go)
}

type tlsState struct {
	cfg    config.ListenerTLS
	protos []string
	srv    *pqtls.Server
	cancel context.CancelFunc // stops Run; nil until started
}

// New loads the configuration, checks post-quantum key exchange, builds the
// graph and binds every listener. Nothing serves until Run.
func New(ctx context.Context, o Options) (*Daemon, error) {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	cfg, err := loadConfig(o.ConfigPath)
	if err != nil {
		return nil, err
	}
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	log, err := newLogger(cfg.Log.Format, level, o.Stderr)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		opts: o, log: log, level: level, registry: telemetry.NewRegistry(),
		listeners: map[string]*server.Server{},
	}
	if d.metrics.proxy, err = proxy.NewMetrics(d.registry); err != nil {
		return nil, fmt.Errorf("register proxy metrics: %w", err)
	}
	if d.metrics.balance, err = balance.NewMetrics(d.registry); err != nil {
		return nil, fmt.Errorf("register balance metrics: %w", err)
	}
	d.metrics.tls = pqtls.NewMetrics(d.registry)
	if d.metrics.server, err = server.NewMetrics(d.registry); err != nil {
		return nil, fmt.Errorf("register server metrics: %w", err)
	}
	if d.metrics.h3, err = server.NewH3Metrics(d.registry); err != nil {
		return nil, fmt.Errorf("register quic metrics: %w", err)
	}
	if err := d.initEnergy(cfg); err != nil {
		return nil, err
	}

	if err := pqtls.CheckPQ(ctx); err != nil {
		if needsPQ(cfg) {
			return nil, fmt.Errorf("a listener or cluster has pq = \"require\": %w", err)
		}
		log.Warn("post-quantum key exchange unavailable: every handshake will be classical", "err", err)
	} else {
		d.pqOK = true
		log.Info("post-quantum key exchange available", "group", "X25519MLKEM768")
	}

	if err := d.openGreenWait(cfg); err != nil {
		return nil, err
	}
	gen, err := d.build(cfg, nil)
	if err != nil {
		d.stopGreenWait()
		return nil, err
	}
	if err := d.bind(cfg, gen); err != nil {
		gen.close()
		d.stopGreenWait()
		return nil, err
	}
	d.cfg, d.gen = cfg, gen
	return d, nil
}

func loadConfig(path string) (*config.File, error) {
	if path == "" {
		return config.Default()
	}
	return config.Load(path)
}

func newLogger(format string, level *slog.LevelVar, w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func needsPQ(cfg *config.File) bool {
	for _, l := range cfg.Listeners {
		if l.TLS != nil && l.TLS.PQ == "require" {
			return true
		}
	}
	for _, c := range cfg.Clusters {
		if (c.Protocol == "https" || c.Protocol == "h2" || c.Protocol == "h3") && c.TLS.PQ == "require" {
			return true
		}
	}
	return false
}

// build makes a generation from cfg, reusing unchanged clusters and TLS
// servers of prev.
func (d *Daemon) build(cfg *config.File, prev *generation) (*generation, error) {
	g := &generation{cfg: cfg, clusters: map[string]*clusterState{}, tls: map[string]*tlsState{}}
	ok := false
	defer func() {
		if !ok {
			g.closeNew(prev)
		}
	}()
	var err error
	g.accessLog, g.closer, err = telemetry.OpenAccessLog(cfg.Log.Access, d.opts.Stdout, d.opts.Stderr)
	if err != nil {
		return nil, err
	}
	if g.carbon, err = d.buildCarbon(cfg, prev); err != nil {
		return nil, err
	}
	for _, c := range cfg.Clusters {
		if prev != nil {
			if old, ok := prev.clusters[c.Name]; ok && reflect.DeepEqual(old.cfg, c) {
				g.clusters[c.Name] = old
				continue
			}
		}
		cs, err := d.buildCluster(c)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
		}
		g.clusters[c.Name] = cs
	}
	for _, l := range cfg.Listeners {
		if l.TLS == nil {
			continue
		}
		protos := alpn(l.Protocols)
		if prev != nil {
			if old, ok := prev.tls[l.Name]; ok && reflect.DeepEqual(old.cfg, *l.TLS) && reflect.DeepEqual(old.protos, protos) {
				g.tls[l.Name] = old
				continue
			}
		}
		pol, err := pqtls.ParsePolicy(l.TLS.PQ)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		srv, err := pqtls.NewServer(pqtls.ServerOptions{
			Name: l.Name, Policy: pol, CertFile: l.TLS.CertFile, KeyFile: l.TLS.KeyFile,
			MinVersion: l.TLS.MinVersion, NextProtos: protos, ClientCAFile: l.TLS.ClientCAFile,
			RequireClientCert: l.TLS.RequireClientCert, AllowedIdentities: l.TLS.AllowedIdentities,
			SessionTicketRotation: l.TLS.SessionTicketRotation.Duration,
			Logger:                d.log, Metrics: d.metrics.tls,
		})
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		g.tls[l.Name] = &tlsState{cfg: *l.TLS, protos: protos, srv: srv}
	}
	routes := make([]proxy.Route, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		routes = append(routes, proxy.Route{
			Name: r.Name, Host: r.Match.Host, PathPrefix: r.Match.PathPrefix, Methods: r.Match.Methods,
			Headers: r.Match.Headers, Cluster: r.Cluster, Timeout: r.Timeout.Duration,
			RequestHeaders:  proxy.HeaderOps(r.RequestHeaders),
			ResponseHeaders: proxy.HeaderOps(r.ResponseHeaders),
			Retry:           retryPolicy(r.Retry),
			RateLimit:       proxy.RateLimit(r.RateLimit),
			Defer:           d.greenWaitHook(cfg, r),
			CarbonHeaders:   r.CarbonHeaders,
			MaxBodyBytes:    r.MaxBodyBytes,
		})
	}
	clusters := make(map[string]*proxy.Cluster, len(g.clusters))
	for name, cs := range g.clusters {
		clusters[name] = cs.proxy
	}
	jobs, jobsPrefix := d.greenWaitJobs()
	g.proxy, err = proxy.New(proxy.Options{
		Routes: routes, Clusters: clusters, Logger: d.log, AccessLog: g.accessLog, Metrics: d.metrics.proxy,
		Jobs: jobs, JobsPrefix: jobsPrefix, Energy: d.energy.routeMeter,
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return g, nil
}

func alpn(protocols []string) []string {
	var out []string
	for _, p := range protocols {
		switch p {
		case "h2":
			out = append(out, "h2")
		case "h1":
			out = append(out, "http/1.1")
		}
	}
	// h2 first: clients that speak both get HTTP/2.
	if len(out) == 2 && out[0] == "http/1.1" {
		out[0], out[1] = out[1], out[0]
	}
	return out
}

func (d *Daemon) buildCluster(c config.Cluster) (*clusterState, error) {
	eps := make([]balance.EndpointOptions, 0, len(c.Endpoints))
	for _, e := range c.Endpoints {
		eps = append(eps, balance.EndpointOptions{Address: e.Address, Region: e.Region, Zone: e.Zone, Weight: e.Weight})
	}
	health, healthT, err := d.healthOptions(c)
	if err != nil {
		return nil, err
	}
	carbonOpts, intensity := d.carbonRouting(c)
	bc, err := balance.New(balance.Options{
		Name: c.Name, Endpoints: eps, Policy: balance.Policy(c.Policy),
		LocalZone: c.LocalZone, Carbon: carbonOpts, Intensity: intensity,
		Health: health, Outlier: outlierOptions(c.Outlier), Breaker: breakerOptions(c.CircuitBreaker),
		Logger: d.log, Metrics: d.metrics.balance,
	})
	if err != nil {
		return nil, err
	}
	topts := proxy.TransportOptions{
		Protocol: c.Protocol, ConnectTimeout: c.ConnectTimeout.Duration,
		MaxIdlePerEndpoint: c.Pool.MaxIdlePerEndpoint, MaxConnsPerEndpoint: c.Pool.MaxConnsPerEndpoint,
		IdleTimeout: c.Pool.IdleTimeout.Duration,
		AcquireConn: bc.AcquireConn, ReleaseConn: bc.ReleaseConn,
		AcquirePending: bc.AcquirePending, ReleasePending: bc.ReleasePending,
	}
	tlsOn := c.Protocol == proxy.ProtoHTTPS || c.Protocol == proxy.ProtoH2 || c.Protocol == proxy.ProtoH3
	if tlsOn {
		pol, err := pqtls.ParsePolicy(c.TLS.PQ)
		if err != nil {
			return nil, err
		}
		topts.TLS, err = pqtls.ClientConfig(pqtls.ClientOptions{
			Name: c.Name, Policy: pol, CAFile: c.TLS.CAFile, ServerName: c.TLS.ServerName,
			InsecureSkipVerify: c.TLS.InsecureSkipVerify, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile,
			Logger: d.log, Metrics: d.metrics.tls,
		})
		if err != nil {
			return nil, err
		}
	}
	t, err := newClusterTransport(topts)
	if err != nil {
		return nil, err
	}
	return &clusterState{
		cfg: c, balancer: bc, transport: t, health: healthT,
		proxy: &proxy.Cluster{Balancer: bc, Transport: t, TLS: tlsOn, Energy: upstreamEnergy(c)},
	}, nil
}

// closeNew releases what g built that prev does not share.
func (g *generation) closeNew(prev *generation) {
	for name, cs := range g.clusters {
		if prev == nil || prev.clusters[name] != cs {
			releaseTransport(cs.transport)
			cs.closeHealth()
		}
	}
	if g.closer != nil && (prev == nil || prev.closer != g.closer) {
		g.closer.Close()
	}
}

func (g *generation) close() { g.closeNew(nil) }

func (d *Daemon) serverOptions(l config.Listener, g *generation) server.Options {
	o := server.Options{
		Name: l.Name, Address: l.Address, Protocols: l.Protocols,
		ReadHeaderTimeout: l.Timeouts.ReadHeader.Duration, ReadTimeout: l.Timeouts.Read.Duration,
		WriteTimeout: l.Timeouts.Write.Duration, IdleTimeout: l.Timeouts.Idle.Duration,
		MaxHeaderBytes: l.HTTP2.MaxHeaderBytes,
		HTTP2: server.HTTP2Limits{
			MaxConcurrentStreams: l.HTTP2.MaxConcurrentStreams, MaxReadFrameSize: l.HTTP2.MaxReadFrameSize,
			StreamWindow: l.HTTP2.StreamWindow, ConnWindow: l.HTTP2.ConnWindow,
			XNet: l.HTTP2.Server == "x/net",
		},
		Logger: d.log,
	}
	d.applyLimits(&o, l)
	pl := proxy.Listener{Name: l.Name, TLS: l.TLS != nil}
	for _, c := range l.TrustedProxies {
		if p, err := netip.ParsePrefix(c); err == nil {
			pl.TrustedProxies = append(pl.TrustedProxies, p)
		} else if a, err := netip.ParseAddr(c); err == nil {
			pl.TrustedProxies = append(pl.TrustedProxies, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if ts := g.tls[l.Name]; ts != nil {
		o.TLS = ts.srv.TLSConfig()
	}
	o.Handler = d.altSvc(l, g.proxy.Handler(pl))
	return o
}

// bind creates the listeners of the initial configuration and the admin
// listener.
func (d *Daemon) bind(cfg *config.File, g *generation) error {
	var made []*server.Server
	fail := func(err error) error {
		for _, s := range made {
			s.Close()
		}
		d.closeH3()
		return err
	}
	for _, l := range cfg.Listeners {
		s, err := server.New(d.serverOptions(l, g))
		if err != nil {
			return fail(err)
		}
		made = append(made, s)
		d.listeners[l.Name] = s
	}
	if err := d.bindH3(cfg, g); err != nil {
		return fail(err)
	}
	admin, err := server.New(server.Options{
		Name: "admin", Address: cfg.Admin.Address, Protocols: []string{"h1"},
		Handler: d.adminHandler(cfg), Logger: d.log,
	})
	if err != nil {
		return fail(err)
	}
	d.admin = admin
	if !isLoopback(cfg.Admin.Address) {
		d.log.Warn("admin listener is not on loopback: it has no authentication", "address", cfg.Admin.Address)
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Addr returns the bound address of the named listener ("admin" for the
// admin listener), or nil.
func (d *Daemon) Addr(name string) net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if name == "admin" {
		return d.admin.Addr()
	}
	if s, ok := d.listeners[name]; ok {
		return s.Addr()
	}
	return nil
}

// Config returns the running configuration.
func (d *Daemon) Config() *config.File {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Run serves until ctx is done, then shuts down gracefully within the
// configured grace period. It returns nil after a clean shutdown.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("daemon: Run called twice")
	}
	d.running = true
	d.runCtx = ctx
	cfg := d.cfg
	demo, err := startDemo(cfg.Demo, d.log)
	if err != nil {
		d.mu.Unlock()
		d.closeAll()
		return err
	}
	d.demo = demo
	d.startGeneration(ctx, d.gen)
	d.startEnergy(ctx)
	serveErr := make(chan error, len(d.listeners)+1)
	for _, s := range append(d.serversLocked(), d.admin) {
		d.serve(s, serveErr)
	}
	d.serveAllH3(serveErr)
	d.mu.Unlock()
	d.startGreenWait(ctx)
	d.log.Info("aegis running", "listeners", len(cfg.Listeners), "admin", d.admin.Addr().String())

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		d.log.Error("listener failed; shutting down", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.Config().Shutdown.GracePeriod.Duration)
	defer cancel()
	d.shutdown(sctx)
	return err
}

func (d *Daemon) serve(s *server.Server, errc chan<- error) {
	d.wg.Go(func() {
		if err := s.Serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case errc <- err:
			default:
			}
		}
	})
}

func (d *Daemon) serversLocked() []*server.Server {
	out := make([]*server.Server, 0, len(d.listeners))
	for _, s := range d.listeners {
		out = append(out, s)
	}
	return out
}

// startGeneration starts the background loops of g's new parts. Each part
// gets its own context, so that a reload stops exactly the parts it replaced
// and keeps the loops of the parts it kept.
func (d *Daemon) startGeneration(ctx context.Context, g *generation) {
	d.startCarbon(ctx, g.carbon)
	for _, cs := range g.clusters {
		if cs.cancel != nil {
			continue
		}
		cctx, cancel := context.WithCancel(ctx)
		cs.cancel = cancel
		d.wg.Go(func() { d.guard("cluster", func() { cs.balancer.Run(cctx) }) })
	}
	for _, ts := range g.tls {
		if ts.cancel != nil {
			continue
		}
		tctx, cancel := context.WithCancel(ctx)
		ts.cancel = cancel
		d.wg.Go(func() { d.guard("tls", func() { ts.srv.Run(tctx) }) })
	}
}

// stopParts stops the loops of g's parts that next does not share (all of
// them when next is nil).
func (g *generation) stopParts(next *generation) {
	for name, cs := range g.clusters {
		if cs.cancel != nil && (next == nil || next.clusters[name] != cs) {
			cs.cancel()
		}
	}
	for name, ts := range g.tls {
		if ts.cancel != nil && (next == nil || next.tls[name] != ts) {
			ts.cancel()
		}
	}
	if next == nil || next.carbon != g.carbon {
		g.carbon.stop()
	}
}

// guard runs a background loop, logging a panic instead of crashing.
func (d *Daemon) guard(what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("background loop panicked", "loop", what, "panic", fmt.Sprint(r))
		}
	}()
	f()
}

// shutdown stops every listener in parallel: stop accepting, let in-flight
// requests finish until ctx ends, then close what is left.
func (d *Daemon) shutdown(ctx context.Context) {
	d.mu.Lock()
	servers := append(d.serversLocked(), d.admin)
	gen := d.gen
	demo := d.demo
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.Shutdown(ctx); err != nil {
				d.log.Warn("listener did not drain in time", "listener", s.Name(), "err", err)
			}
		})
	}
	d.shutdownH3(ctx, &wg)
	wg.Wait()
	d.stopGreenWait() // listeners drained: stop releases, close the store
	gen.stopParts(nil)
	d.stopEnergy()
	demo.close()
	d.wg.Wait()
	gen.close()
	d.log.Info("aegis stopped")
}

func (d *Daemon) closeAll() {
	for _, s := range d.listeners {
		s.Close()
	}
	if d.admin != nil {
		d.admin.Close()
	}
	d.closeH3()
	d.gen.close()
	d.stopGreenWait()
}

// Reload re-reads the configuration file and applies it. On any problem it
// logs every problem, keeps the running configuration and returns the error.
func (d *Daemon) Reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg, err := loadConfig(d.opts.ConfigPath)
	if err != nil {
		for _, p := range config.Problems(err) {
			d.log.Error("reload refused: configuration problem", "problem", p.Error())
		}
		return fmt.Errorf("reload: %w", err)
	}
	d.mu.Lock()
	prev := d.gen
	ctx := d.runCtx
	d.mu.Unlock()
	if needsPQ(cfg) && !d.pqOK {
		err := errors.New("reload: pq = \"require\" but post-quantum key exchange is unavailable")
		d.log.Error("reload refused", "err", err)
		return err
	}
	if err := d.openGreenWait(cfg); err != nil {
		d.log.Error("reload refused", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	g, err := d.build(cfg, prev)
	if err != nil {
		d.log.Error("reload refused", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	if err := d.applyListeners(cfg, g); err != nil {
		g.closeNew(prev)
		d.log.Error("reload refused", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	// Certificates are re-read on every reload, changed or not.
	for name, ts := range g.tls {
		if err := ts.srv.Reload(); err != nil {
			d.log.Error("certificate reload failed; keeping the old one", "listener", name, "err", err)
		}
	}
	d.mu.Lock()
	d.cfg, d.gen = cfg, g
	if lvl := new(slog.LevelVar); lvl.UnmarshalText([]byte(cfg.Log.Level)) == nil {
		d.level.Set(lvl.Level())
	}
	if ctx != nil {
		d.startGeneration(ctx, g)
	}
	d.mu.Unlock()
	d.startGreenWait(ctx) // a reload may have enabled Green-Wait
	d.retire(prev, g, cfg.Shutdown.GracePeriod.Duration)
	d.energyReloaded(cfg)
	d.log.Info("configuration reloaded", "listeners", len(cfg.Listeners), "routes", len(cfg.Routes), "clusters", len(cfg.Clusters))
	return nil
}

// applyListeners binds new listeners first (so a taken port refuses the
// reload before anything changes), then updates kept ones and drains the
// ones that are gone.
func (d *Daemon) applyListeners(cfg *config.File, g *generation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	grace := cfg.Shutdown.GracePeriod.Duration
	fresh := map[string]*server.Server{}
	keep := map[string]bool{}
	for _, l := range cfg.Listeners {
		if s, ok := d.listeners[l.Name]; ok && sameAddr(s, l.Address) {
			keep[l.Name] = true
			continue
		}
		s, err := server.New(d.serverOptions(l, g))
		if err != nil {
			for _, f := range fresh {
				f.Close()
			}
			return err
		}
		fresh[l.Name] = s
	}
	for _, l := range cfg.Listeners {
		if keep[l.Name] {
			if err := d.listeners[l.Name].Update(d.serverOptions(l, g), grace); err != nil {
				return err
			}
		}
	}
	for name, s := range d.listeners {
		if !keep[name] {
			delete(d.listeners, name)
			d.wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), grace)
				defer cancel()
				s.Shutdown(ctx)
			})
		}
	}
	for name, s := range fresh {
		d.listeners[name] = s
		if d.running {
			d.serve(s, make(chan error, 1))
		}
	}
	d.applyH3(cfg, g)
	return nil
}

func sameAddr(s *server.Server, addr string) bool {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return false
	}
	b, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		return false
	}
	if a.Port == 0 {
		return a.IP.Equal(b.IP) || a.IP == nil
	}
	return a.Port == b.Port && (a.IP.Equal(b.IP) || a.IP == nil && b.IP.IsUnspecified())
}

// retire stops the parts of prev that g no longer uses, after in-flight
// requests had the grace period to finish with them.
func (d *Daemon) retire(prev, g *generation, grace time.Duration) {
	d.wg.Go(func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-d.doneCtx().Done():
		}
		prev.closeNew(g)
		prev.stopParts(g)
	})
}

func (d *Daemon) doneCtx() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runCtx == nil {
		return context.Background()
	}
	return d.runCtx
}
