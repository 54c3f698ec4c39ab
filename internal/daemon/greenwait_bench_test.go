package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkDeferThroughProxy measures Green-Wait's accept path as clients
// see it: a running daemon with a Green-Wait route, parallel clients POSTing
// 1 KiB bodies with Aegis-Priority: low over real loopback connections
// (HTTP/1.1 keep-alive), each answered 202 only after its job is durable.
// The clean window is hours away, so nothing is released while it runs.
// Allocations count both sides: client and daemon share the process.
func BenchmarkDeferThroughProxy(b *testing.B) {
	dir := b.TempDir()
	var trace strings.Builder
	trace.WriteString("timestamp,region,g_kwh\n")
	for h := range 24 {
		v := 500
		if h == 3 {
			v = 10
		}
		fmt.Fprintf(&trace, "%s,r0,%d\n", time.Date(2024, 1, 1, h, 0, 0, 0, time.UTC).Format(time.RFC3339), v)
	}
	tracePath, cfgPath := filepath.Join(dir, "trace.csv"), filepath.Join(dir, "aegis.toml")
	cfg := fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"
[log]
level = "warn"
access = "off"
[[listeners]]
name = "edge-plain"
address = "127.0.0.1:0"
[[routes]]
name = "batch"
cluster = "c"
  [routes.match]
  path_prefix = "/batch/"
  [routes.greenwait]
  enabled = true
  [routes.greenwait.max_wait]
  low = "6h"
[[clusters]]
name = "c"
  [[clusters.endpoints]]
  address = "127.0.0.1:1"
  region = "r0"
[carbon]
[[carbon.providers]]
name = "trace"
type = "replay"
file = %q
[[carbon.regions]]
region = "r0"
chain = [{ provider = "trace" }]
[greenwait]
store_path = %q
max_jobs = -1
max_bytes = -1
`, tracePath, filepath.Join(dir, "gw", "jobs.db"))
	for path, text := range map[string]string{tracePath: trace.String(), cfgPath: cfg} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	stderr := &lockedBuffer{}
	d, err := New(context.Background(), Options{ConfigPath: cfgPath, Stderr: stderr})
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			b.Error("daemon did not stop")
		}
	})

	url := "http://" + d.Addr("edge-plain").String() + "/batch/ingest"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
	defer client.CloseIdleConnections()
	body := bytes.Repeat([]byte("x"), 1024)
	post := func() (int, error) {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Aegis-Priority", "low")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// Wait for the first forecast: until then requests run at once.
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, err := post()
		if err == nil && code == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("no 202 within 10 s (last %d, %v); log:\n%s", code, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	b.SetParallelism(32) // 64 concurrent clients on 2 cores, as in greenwait.BenchmarkDeferParallel
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if code, err := post(); err != nil || code != http.StatusAccepted {
				b.Errorf("got %d (%v), want 202", code, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accepted/s")
}
