// Command h3load measures the proxy's CPU cost per request over HTTP/3 and
// HTTP/2. It starts an upstream in its own process, runs the aegis binary
// given by -aegis as a child with one TLS listener serving h1, h2 and h3,
// drives -n requests over each protocol with -c concurrent workers, and
// reads the child's CPU time (utime+stime from /proc/PID/stat) before and
// after each run. Linux only. Not part of the product; run it by hand:
//
//	go build -o /tmp/aegis ./cmd/aegis
//	go run ./bench/h3load -aegis /tmp/aegis -n 20000 -c 16
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"
)

func main() {
	bin := flag.String("aegis", "", "path to the aegis binary (required)")
	n := flag.Int("n", 20000, "requests per protocol")
	c := flag.Int("c", 16, "concurrent workers")
	size := flag.Int("size", 1024, "response body bytes")
	procs := flag.Int("procs", 1, "GOMAXPROCS of the proxy")
	flag.Parse()
	if *bin == "" {
		log.Fatal("-aegis is required")
	}
	body := strings.Repeat("x", *size)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	defer up.Close()

	port := freePort()
	dir, err := os.MkdirTemp("", "h3load")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"
[log]
level = "warn"
access = "off"
[[listeners]]
name = "edge-tls"
address = "127.0.0.1:%d"
protocols = ["h1", "h2", "h3"]
  [listeners.tls]
  pq = "prefer"
  [listeners.quic]
  max_incoming_streams = 1000
[[routes]]
name = "all"
cluster = "web"
[[clusters]]
name = "web"
  [[clusters.endpoints]]
  address = %q
  region = "r"
`, port, up.Listener.Addr().String())
	path := filepath.Join(dir, "aegis.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(*bin, "run", "--config", path)
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(*procs))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	tlsConf := &tls.Config{InsecureSkipVerify: true}
	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: *c}
	h3 := &http3.Transport{TLSClientConfig: tlsConf}
	defer h3.Close()
	waitUp(h2, "https://"+addr+"/")

	fmt.Printf("proxy GOMAXPROCS=%d, %d requests per protocol, %d workers, %d-byte responses\n", *procs, *n, *c, *size)
	for _, p := range []struct {
		name string
		rt   http.RoundTripper
	}{{"h2", h2}, {"h3", h3}} {
		run(p.rt, "https://"+addr+"/", *n/10, *c) // warm up: connections, handshakes, pools
		cpu0 := cpuSeconds(cmd.Process.Pid)
		start := time.Now()
		errs := run(p.rt, "https://"+addr+"/", *n, *c)
		wall := time.Since(start)
		cpu := cpuSeconds(cmd.Process.Pid) - cpu0
		rps := float64(*n) / wall.Seconds()
		fmt.Printf("%s: %.0f rps, proxy CPU %.2fs, %.3f vCPU-s per 1k requests (= vCPU per 1k rps), %d errors\n",
			p.name, rps, cpu, cpu/float64(*n)*1000, errs)
	}
}

func run(rt http.RoundTripper, url string, n, c int) int64 {
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := rt.RoundTrip(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					errs.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	return errs.Load()
}

func waitUp(rt http.RoundTripper, url string) {
	for range 200 {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if resp, err := rt.RoundTrip(req); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Fatal("proxy did not come up")
}

// cpuSeconds is utime+stime of pid in seconds.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		log.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func freePort() int {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			u.Close()
			return port
		}
	}
}
