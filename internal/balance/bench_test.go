package balance

import (
	"fmt"
	"testing"
	"time"
)

// bench16 builds a 16-endpoint cluster in four regions with distinct
// intensities and some latency history.
func bench16(b *testing.B, p Policy) *Cluster {
	var eps []EndpointOptions
	regions := []string{"r0", "r1", "r2", "r3"}
	for i := range 16 {
		eps = append(eps, EndpointOptions{Address: fmt.Sprintf("10.0.0.%d:80", i), Region: regions[i%4], Weight: 1 + i%2})
	}
	c := mustNew(b, Options{Policy: p, Endpoints: eps,
		Intensity: intensities("average", "r0", 450, "r1", 300, "r2", 120, "r3", 60),
		Carbon:    CarbonOptions{RequestJoules: 10}})
	for _, e := range c.endpoints {
		e.observeLatency(time.Duration(10+e.reg*5) * time.Millisecond)
	}
	return c
}

func benchPick(b *testing.B, p Policy) {
	c := bench16(b, p)
	o := Outcome{Latency: 12 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		ep, _, err := c.Pick()
		if err != nil {
			b.Fatal(err)
		}
		ep.Done(o)
	}
}

func benchPickParallel(b *testing.B, p Policy) {
	c := bench16(b, p)
	o := Outcome{Latency: 12 * time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ep, _, err := c.Pick()
			if err != nil {
				b.Error(err)
				return
			}
			ep.Done(o)
		}
	})
}

// The Pick benchmarks include the matching Done, as on the request path.
func BenchmarkPickCarbon16(b *testing.B)       { benchPick(b, Carbon) }
func BenchmarkPickLeastRequest16(b *testing.B) { benchPick(b, LeastRequest) }
func BenchmarkPickRoundRobin16(b *testing.B)   { benchPick(b, RoundRobin) }

func BenchmarkPickCarbon16Parallel(b *testing.B)       { benchPickParallel(b, Carbon) }
func BenchmarkPickLeastRequest16Parallel(b *testing.B) { benchPickParallel(b, LeastRequest) }
func BenchmarkPickRoundRobin16Parallel(b *testing.B)   { benchPickParallel(b, RoundRobin) }

func BenchmarkRebuild16(b *testing.B) {
	c := bench16(b, Carbon)
	b.ReportAllocs()
	for b.Loop() {
		c.mu.Lock()
		c.rebuildLocked(c.now())
		c.mu.Unlock()
	}
}
