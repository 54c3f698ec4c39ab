package daemon

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// DefaultGCHeadroom is the least heap growth TuneGC lets the program make
// between two garbage collections.
const DefaultGCHeadroom = 16 << 20

// maxGCPercent bounds the percentage TuneGC sets, whatever the live heap.
const maxGCPercent = 2000

// TuneGC keeps the collector from running more often than once per
// headroom bytes of heap growth. Go's default (GOGC=100) lets the heap
// grow by its live size before the next collection; a proxy's live heap is
// small, a few MiB, while it allocates some KiB per request, so the
// collector would run dozens of times a second under load, each time
// scanning every goroutine's stack. After each collection TuneGC sets the
// GC percentage to what allows at least headroom of growth, and never below
// 100: once the live heap is larger than headroom, the collector behaves as
// by default. A GOGC or GOMEMLIMIT in the environment is respected: GOGC
// turns the tuning off, and the memory limit still bounds the heap.
//
// It returns a function that stops the tuning and puts the percentage back.
func TuneGC(headroom uint64) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set || headroom == 0 {
		return func() {}
	}
	t := &gcTuner{headroom: headroom, percent: 100, samples: []metrics.Sample{
		// The heap goal is the live heap plus GOGC percent of it and of
		// the stacks and globals the collector scans.
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}}
	t.arm()
	return t.stop
}

type gcTuner struct {
	headroom uint64

	mu      sync.Mutex
	stopped bool
	percent int
	samples []metrics.Sample
}

// gcSentinel is an object only a collection can free: its cleanup runs
// once per completed cycle and arms the next one.
type gcSentinel struct{ _ *byte }

func (t *gcTuner) arm() {
	runtime.AddCleanup(new(gcSentinel), (*gcTuner).collected, t)
}

func (t *gcTuner) collected() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.samples)
	var base uint64
	for _, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			base += s.Value.Uint64()
		}
	}
	if base > 0 {
		p := gcPercentFor(base, t.headroom)
		// Retune only on a change of a tenth or more: SetGCPercent
		// recomputes the heap goal.
		if p*10 < t.percent*9 || p*10 > t.percent*11 {
			t.percent = p
			debug.SetGCPercent(p)
		}
	}
	t.arm()
}

func (t *gcTuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	t.stopped = true
	if t.percent != 100 {
		debug.SetGCPercent(100)
	}
}

// gcHeapMinimum is the runtime's least heap goal at GOGC=100; it scales
// with the GC percentage.
const gcHeapMinimum = 4 << 20

// gcPercentFor is the GC percentage that lets the heap grow by at least
// headroom over a base (live heap, stacks and globals) of live bytes,
// within [100, maxGCPercent]. The heap goal is the larger of the live heap
// plus that percentage of the base, and gcHeapMinimum scaled by it: a base
// below gcHeapMinimum counts as gcHeapMinimum, or a small heap would get
// a goal many times the headroom.
func gcPercentFor(live, headroom uint64) int {
	live = max(live, gcHeapMinimum)
	if headroom/live >= maxGCPercent/100 {
		return maxGCPercent
	}
	p := int((headroom*100 + live - 1) / live)
	return min(max(p, 100), maxGCPercent)
}
