package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/aegis-flow/aegis/internal/config"
)

// demoSet is the in-process demo upstreams of the embedded configuration.
type demoSet struct {
	servers []*http.Server
	wg      sync.WaitGroup
}

// startDemo starts one HTTP/1.1 + h2c server per configured demo upstream.
// Each answers with its region and a little about the request; /stream sends
// a few server-sent events, so that streaming through the proxy can be seen.
func startDemo(cfg config.Demo, log *slog.Logger) (*demoSet, error) {
	ds := &demoSet{}
	var lns []net.Listener
	for _, u := range cfg.Upstreams {
		ln, err := net.Listen("tcp", u.Address)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("demo upstream %s: %w", u.Address, err)
		}
		lns = append(lns, ln)
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetUnencryptedHTTP2(true)
		ds.servers = append(ds.servers, &http.Server{
			Handler:           demoHandler(u.Region),
			Protocols:         &protos,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		})
	}
	for i, s := range ds.servers {
		ds.wg.Go(func() { s.Serve(lns[i]) }) //nolint:errcheck // ends with Shutdown in close
	}
	if len(ds.servers) > 0 {
		log.Info("demo upstreams started", "count", len(ds.servers))
	}
	return ds, nil
}

func (ds *demoSet) close() {
	if ds == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range ds.servers {
		if s.Shutdown(ctx) != nil {
			s.Close()
		}
	}
	ds.wg.Wait()
}

func demoHandler(region string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		rc := http.NewResponseController(w)
		for i := range 5 {
			fmt.Fprintf(w, "data: {\"region\":%q,\"event\":%d}\n\n", region, i)
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Aegis-Demo-Region", region)
		json.NewEncoder(w).Encode(map[string]any{
			"region":            region,
			"method":            r.Method,
			"host":              r.Host,
			"path":              r.URL.Path,
			"protocol":          r.Proto,
			"body_bytes":        n,
			"x_forwarded_for":   r.Header.Get("X-Forwarded-For"),
			"x_forwarded_proto": r.Header.Get("X-Forwarded-Proto"),
			"time":              time.Now().UTC().Format(time.RFC3339Nano),
		})
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(3))
		io.WriteString(w, "ok\n")
	})
	return mux
}
