package greenwait

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

// BenchmarkDeferParallel measures the accept path through the real store:
// many concurrent deferrals with 1 KiB bodies, each acknowledged only after
// its group commit is synced.
func BenchmarkDeferParallel(b *testing.B) {
	env := newTestManager(b, Options{Forecaster: &offsetForecaster{offset: time.Hour}, MaxJobs: -1, MaxBytes: -1})
	body := bytes.Repeat([]byte("x"), 1024)
	rt := RouteOptions{Enabled: true, Name: "bench", Region: "eu-west"}
	b.SetParallelism(32) // 64 concurrent clients on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "http://api.example.test/ingest", bytes.NewReader(body))
			r.Header.Set(HeaderPriority, "low")
			w := httptest.NewRecorder()
			if !env.m.Defer(w, r, rt) || w.Code != http.StatusAccepted {
				b.Errorf("got %d %s, want 202", w.Code, w.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func fillIndex(n int) (*index, []*entry) {
	x := newIndex(func(string) int { return 4 })
	rq, cq := x.region("eu-west"), x.cluster("")
	es := make([]*entry, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range es {
		e := &entry{due: r.Int64N(int64(24 * time.Hour)), region: rq, cluster: cq, hidx: -1, prio: PriorityLow, state: StatePlanned}
		e.id[0], e.id[1], e.id[2], e.id[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		x.add(e)
		es[i] = e
	}
	return x, es
}

// BenchmarkIndexReschedule measures moving one job to a new planned time,
// the per-job cost of a re-plan, at growing queue sizes: it grows with
// log n.
func BenchmarkIndexReschedule(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			x, es := fillIndex(n)
			r := rand.New(rand.NewPCG(3, 4))
			b.ReportAllocs()
			for b.Loop() {
				e := es[r.IntN(n)]
				x.reschedule(e, r.Int64N(int64(24*time.Hour)))
			}
		})
	}
}

// BenchmarkIndexMemory reports the heap bytes held per queued job by the
// in-memory index (entry, id map, heap slot) with 1,000,000 jobs.
func BenchmarkIndexMemory(b *testing.B) {
	const n = 1_000_000
	var perJob float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x, es := fillIndex(n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		perJob = float64(after.HeapAlloc-before.HeapAlloc-uint64(len(es))*8) / n // minus the benchmark's own slice
		runtime.KeepAlive(x)
		runtime.KeepAlive(es)
	}
	b.ReportMetric(perJob, "B/job")
}

// BenchmarkReplan measures Manager.Replan over a region of 1,000,000
// queued jobs whose plans all move; ns/job is the cost per changed job.
func BenchmarkReplan(b *testing.B) {
	const n = 1_000_000
	fc := &offsetForecaster{offset: time.Hour}
	env := newTestManager(b, Options{Forecaster: fc})
	m := env.m
	now := time.Now()
	r := rand.New(rand.NewPCG(5, 6))
	m.mu.Lock()
	rq, cq := m.idx.region("eu-west"), m.idx.cluster("")
	for i := range n {
		e := &entry{
			due: now.Add(time.Hour).UnixNano(), deadline: now.Add(2*time.Hour + time.Duration(r.Int64N(int64(22*time.Hour)))).UnixNano(),
			dur: time.Minute, region: rq, cluster: cq, hidx: -1, prio: PriorityBackground, state: StatePlanned,
		}
		e.id[0], e.id[1], e.id[2], e.id[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		m.idx.add(e)
	}
	m.mu.Unlock()
	ctx := context.Background()
	offsets := []time.Duration{2 * time.Hour, time.Hour}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		fc.set(offsets[i%2])
		i++
		moved, err := m.Replan(ctx, "eu-west")
		if err != nil || moved == 0 {
			b.Fatalf("Replan: got %d, %v", moved, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/job")
}
