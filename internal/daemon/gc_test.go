package daemon

import (
	"os"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// waitGCPercent collects until the GC percentage satisfies ok.
func waitGCPercent(t *testing.T, what string, ok func(int) bool) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(time.Millisecond) // let the cleanup goroutine run
		if p := gcPercent(); ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percentage %d: never %s", gcPercent(), what)
		}
	}
}

func TestTuneGC(t *testing.T) {
	t.Setenv("GOGC", "") // restored after the test
	os.Unsetenv("GOGC")
	if p := gcPercent(); p != 100 {
		t.Skipf("the test binary runs with GOGC=%d", p)
	}
	const headroom = 32 << 20
	stop := TuneGC(headroom)
	defer stop()

	// A small live heap: the percentage rises to allow the headroom.
	p := waitGCPercent(t, "raised for a small heap", func(p int) bool { return p > 100 })
	if p > maxGCPercent {
		t.Errorf("GC percentage %d above the bound %d", p, maxGCPercent)
	}

	// A live heap past the headroom: back to the default.
	ballast := make([]byte, 2*headroom) // never written: address space, not memory
	waitGCPercent(t, "back to 100 with a large heap", func(p int) bool { return p == 100 })
	runtime.KeepAlive(ballast)
	ballast = nil

	// Small again, then stopped: the default is put back and stays.
	waitGCPercent(t, "raised again", func(p int) bool { return p > 100 })
	stop()
	if p := gcPercent(); p != 100 {
		t.Errorf("after stop: GC percentage %d, want 100", p)
	}
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if p := gcPercent(); p != 100 {
		t.Errorf("collections after stop: GC percentage %d, want 100", p)
	}
}

func TestTuneGCRespectsGOGC(t *testing.T) {
	t.Setenv("GOGC", "100")
	stop := TuneGC(64 << 20)
	defer stop()
	for range 3 {
		runtime.GC()
	}
	time.Sleep(10 * time.Millisecond)
	if p := gcPercent(); p != 100 {
		t.Errorf("with GOGC set: GC percentage %d, want 100 (untouched)", p)
	}
}

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live, headroom uint64
		want           int
	}{
		{0, 16 << 20, 400}, // the heap minimum, scaled, is the headroom
		{1 << 20, 16 << 20, 400},
		{4 << 20, 16 << 20, 400},
		{6 << 20, 16 << 20, 267}, // rounded up: at least the headroom
		{16 << 20, 16 << 20, 100},
		{64 << 20, 16 << 20, 100},
		{1, 1 << 40, maxGCPercent},
	} {
		if got := gcPercentFor(tc.live, tc.headroom); got != tc.want {
			t.Errorf("gcPercentFor(%d, %d) = %d, want %d", tc.live, tc.headroom, got, tc.want)
		}
	}
}
