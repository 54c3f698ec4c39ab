package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aegis-flow/aegis/internal/config"
)

// adminHandler serves the admin API. It reads the daemon's current state on
// every request, so reloads show at once.
func (d *Daemon) adminHandler(cfg *config.File) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ok, why := d.ready(); !ok {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{
		ErrorLog: nil, ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.Handle("GET /carbon", d.carbonHTTP())     // carbon.go
	mux.Handle("GET /emissions/", d.carbonHTTP()) // Carbon-Aware-SDK subset
	mux.Handle("/jobs", d.greenWaitAdmin())       // greenwait.go
	mux.Handle("/jobs/", d.greenWaitAdmin())      // list, show, cancel, retry, purge
	if cfg.Admin.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d.Config()); err != nil {
			d.log.Warn("write /config", "err", err)
		}
	})
	return mux
}

// ready reports whether every listener is serving.
func (d *Daemon) ready() (bool, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.running {
		return false, "starting"
	}
	for _, l := range d.cfg.Listeners {
		if _, ok := d.listeners[l.Name]; !ok {
			return false, "listener " + l.Name + " is not up"
		}
	}
	if ok, why := d.carbonReadyLocked(); !ok {
		return false, why
	}
	return true, ""
}
