package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/aegis-flow/aegis/internal/config"
	"github.com/aegis-flow/aegis/internal/proxy"
	"github.com/aegis-flow/aegis/internal/server"
)

func newClusterTransport(o proxy.TransportOptions) (proxy.Transport, error) {
	if o.Protocol == proxy.ProtoH3 {
		return proxy.NewH3Transport(o)
	}
	return proxy.NewTransport(o)
}

// releaseTransport closes what a retired cluster's transport holds: idle
// connections (h1 also closes its busy ones as they finish), and for h3 its
// UDP socket too.
func releaseTransport(t proxy.Transport) {
	if c, ok := t.(io.Closer); ok {
		c.Close()
		return
	}
	t.CloseIdleConnections()
}

// h3Options are the HTTP/3 options of listener l, bound on the address of
// its TCP socket (so that a port 0 listener gets the same port on UDP).
func (d *Daemon) h3Options(l config.Listener, g *generation, tcp *server.Server) server.H3Options {
	o := d.serverOptions(l, g)
	return server.H3Options{
		Name: l.Name, Address: tcp.Addr().String(), TLS: o.TLS, Handler: o.Handler,
		MaxIncomingStreams: l.QUIC.MaxIncomingStreams, IdleTimeout: l.QUIC.IdleTimeout.Duration,
		HandshakeTimeout: l.QUIC.HandshakeTimeout.Duration, MaxHeaderBytes: l.QUIC.MaxHeaderBytes,
		Allow0RTT: l.QUIC.Allow0RTT, RetryThreshold: l.QUIC.RetryUnderLoad,
		Metrics: d.metrics.h3, Logger: d.log,
	}
}

// altSvc wraps the TCP handler of a listener that serves h3 with the
// Alt-Svc header. serverOptions calls it; it reads d.h3 without locking
// because every caller holds d.mu or runs before Run.
func (d *Daemon) altSvc(l config.Listener, h http.Handler) http.Handler {
	h3 := d.h3[l.Name]
	if h3 == nil || !l.HasH3() || l.TLS == nil {
		return h
	}
	return server.AltSvc(h, h3.Port(), l.QUIC.AltSvcMaxAge.Duration)
}

// bindH3 binds the UDP socket of every listener of the initial
// configuration that serves h3, then re-applies the TCP handlers so that
// they advertise it.
func (d *Daemon) bindH3(cfg *config.File, g *generation) error {
	if d.h3 == nil {
		d.h3 = map[string]*server.H3Server{}
	}
	for _, l := range cfg.Listeners {
		if !l.HasH3() || l.TLS == nil {
			continue
		}
		tcp := d.listeners[l.Name]
		h, err := server.NewH3(d.h3Options(l, g, tcp))
		if err != nil {
			return err
		}
		d.h3[l.Name] = h
		if err := tcp.Update(d.serverOptions(l, g), cfg.Shutdown.GracePeriod.Duration); err != nil {
			return err
		}
	}
	return nil
}

// applyH3 brings the h3 servers in line with cfg after a reload has
// updated the TCP listeners (d.mu held): it updates kept ones, binds new
// ones on their TCP address, and drains those no longer wanted. A UDP
// socket that cannot be bound is logged and the listener serves h1/h2
// only; the reload itself has already been applied.
func (d *Daemon) applyH3(cfg *config.File, g *generation) {
	if d.h3 == nil {
		d.h3 = map[string]*server.H3Server{}
	}
	grace := cfg.Shutdown.GracePeriod.Duration
	want := map[string]bool{}
	for _, l := range cfg.Listeners {
		tcp := d.listeners[l.Name]
		if !l.HasH3() || l.TLS == nil || tcp == nil {
			continue
		}
		want[l.Name] = true
		o := d.h3Options(l, g, tcp)
		if h := d.h3[l.Name]; h != nil {
			if h.Addr().String() == o.Address {
				if err := h.Update(o, grace); err != nil {
					d.log.Error("h3 listener update failed", "listener", l.Name, "err", err)
				}
				continue
			}
			d.drainH3(h, grace)
			delete(d.h3, l.Name)
		}
		h, err := server.NewH3(o)
		if err != nil {
			d.log.Error("h3 listener not bound; serving h1 and h2 only", "listener", l.Name, "err", err)
			continue
		}
		d.h3[l.Name] = h
		if d.running {
			d.serveH3(h, make(chan error, 1))
		}
	}
	for name, h := range d.h3 {
		if !want[name] {
			delete(d.h3, name)
			d.drainH3(h, grace)
		}
	}
	// Alt-Svc follows what is now served.
	for _, l := range cfg.Listeners {
		if tcp := d.listeners[l.Name]; tcp != nil && l.TLS != nil {
			if err := tcp.Update(d.serverOptions(l, g), grace); err != nil {
				d.log.Error("listener update failed", "listener", l.Name, "err", err)
			}
		}
	}
}

func (d *Daemon) drainH3(h *server.H3Server, grace time.Duration) {
	d.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			d.log.Warn("listener did not drain in time", "listener", h.Name(), "protocol", "h3", "err", err)
		}
	})
}

// serveAllH3 starts serving every h3 server (d.mu held).
func (d *Daemon) serveAllH3(errc chan<- error) {
	for _, h := range d.h3 {
		d.serveH3(h, errc)
	}
}

func (d *Daemon) serveH3(h *server.H3Server, errc chan<- error) {
	d.wg.Go(func() {
		if err := h.Serve(); err != nil {
			select {
			case errc <- err:
			default:
			}
		}
	})
}

// shutdownH3 drains every h3 server in wg, in parallel with the TCP
// listeners, under the same ctx deadline.
func (d *Daemon) shutdownH3(ctx context.Context, wg *sync.WaitGroup) {
	d.mu.Lock()
	hs := make([]*server.H3Server, 0, len(d.h3))
	for _, h := range d.h3 {
		hs = append(hs, h)
	}
	d.mu.Unlock()
	for _, h := range hs {
		wg.Go(func() {
			if err := h.Shutdown(ctx); err != nil {
				d.log.Warn("listener did not drain in time", "listener", h.Name(), "protocol", "h3", "err", err)
			}
		})
	}
}

// closeH3 closes every h3 server at once.
func (d *Daemon) closeH3() {
	for _, h := range d.h3 {
		h.Close()
	}
}

// H3Addr returns the bound UDP address of the named listener's HTTP/3
// side, or nil when it serves no h3.
func (d *Daemon) H3Addr(name string) net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h, ok := d.h3[name]; ok {
		return h.Addr()
	}
	return nil
}
