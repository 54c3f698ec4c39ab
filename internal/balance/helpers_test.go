package balance

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual clock for TestOnlyNow.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// staticIntensity is an IntensitySource backed by a map; a missing region
// is unknown.
type staticIntensity struct {
	mu sync.Mutex
	m  map[string]signal
}

type signal struct {
	v    float64
	kind string
}

func intensities(kind string, kv ...any) *staticIntensity {
	s := &staticIntensity{m: map[string]signal{}}
	for i := 0; i < len(kv); i += 2 {
		s.m[kv[i].(string)] = signal{v: float64(kv[i+1].(int)), kind: kind}
	}
	return s
}

func (s *staticIntensity) Intensity(region string) (float64, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[region]
	return v.v, v.kind, ok
}

func (s *staticIntensity) set(region string, v float64, kind string) {
	s.mu.Lock()
	s.m[region] = signal{v: v, kind: kind}
	s.mu.Unlock()
}

func mustNew(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Name == "" {
		o.Name = "test"
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// endpoints builds n endpoints per region, addresses "<region>-<i>:80".
func endpoints(n int, regions ...string) []EndpointOptions {
	var out []EndpointOptions
	for _, r := range regions {
		for i := range n {
			out = append(out, EndpointOptions{Address: fmt.Sprintf("%s-%d:80", r, i), Region: r})
		}
	}
	return out
}

func seeded(seed uint64) rand.Source { return rand.NewPCG(seed, seed^0x9e3779b97f4a7c15) }

// pick does not call t.Helper: it runs in hot loops, where Helper is costly
// under the race detector.
func pick(t testing.TB, c *Cluster) (*Endpoint, Decision) {
	ep, d, err := c.Pick()
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return ep, d
}

func byAddress(c *Cluster, addr string) *Endpoint {
	for _, e := range c.endpoints {
		if e.address == addr {
			return e
		}
	}
	return nil
}

// shareSlice returns the applied shares in region order.
func (c *Cluster) shareSlice() []float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.shares)
}
