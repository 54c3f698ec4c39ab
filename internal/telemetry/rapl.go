package telemetry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// raplReader reads the package energy counters of Intel RAPL (or AMD's
// equivalent under powercap) and the machine's busy CPU time, so that a
// process's share of package energy can be estimated: package joules ×
// process CPU time / all busy CPU time.
type raplReader struct {
	zones    []raplZone
	procStat string
	lastBusy time.Duration
}

type raplZone struct {
	energyPath string
	maxUJ      uint64
	lastUJ     uint64
}

// Top-level package zones only ("intel-rapl:0", not its sub-zone
// "intel-rapl:0:0", which is counted inside it).
var raplZoneName = regexp.MustCompile(`^(intel|amd)-rapl:[0-9]+$`)

func newRAPL(root, procStat string) (*raplReader, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read powercap: %w", err)
	}
	r := &raplReader{procStat: procStat}
	for _, e := range entries {
		if !raplZoneName.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		uj, err := readUint(filepath.Join(dir, "energy_uj"))
		if err != nil {
			return nil, err // usually root-only: fall back to the model
		}
		maxUJ, err := readUint(filepath.Join(dir, "max_energy_range_uj"))
		if err != nil {
			return nil, err
		}
		r.zones = append(r.zones, raplZone{energyPath: filepath.Join(dir, "energy_uj"), maxUJ: maxUJ, lastUJ: uj})
	}
	if len(r.zones) == 0 {
		return nil, errors.New("no rapl package zones")
	}
	busy, err := readBusy(procStat)
	if err != nil {
		return nil, err
	}
	r.lastBusy = busy
	return r, nil
}

// processJoules returns the package energy since the last call times the
// process's share of busy CPU time (dcpu of it); ok is false when a counter
// could not be read.
func (r *raplReader) processJoules(dcpu time.Duration) (float64, bool) {
	var totalUJ uint64
	for i := range r.zones {
		z := &r.zones[i]
		uj, err := readUint(z.energyPath)
		if err != nil {
			return 0, false
		}
		totalUJ += raplDelta(z.lastUJ, uj, z.maxUJ)
		z.lastUJ = uj
	}
	busy, err := readBusy(r.procStat)
	if err != nil {
		return 0, false
	}
	dbusy := busy - r.lastBusy
	r.lastBusy = busy
	if dbusy <= 0 {
		return 0, true
	}
	share := min(dcpu.Seconds()/dbusy.Seconds(), 1)
	return float64(totalUJ) / 1e6 * share, true
}

// raplDelta is the counter increase from prev to cur, which wraps at max.
func raplDelta(prev, cur, maxUJ uint64) uint64 {
	if cur >= prev {
		return cur - prev
	}
	return maxUJ - prev + cur
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", filepath.Base(path), err)
	}
	return v, nil
}

// userHZ is the kernel's clock-tick rate for /proc/stat, 100 on every
// mainstream Linux architecture.
const userHZ = 100

// readBusy returns the machine's busy CPU time from /proc/stat's "cpu"
// line: user, nice, system, irq, softirq and steal.
func readBusy(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseBusy(line)
}

func parseBusy(line string) (time.Duration, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("parse /proc/stat: no cpu line")
	}
	var ticks uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat: %w", err)
		}
		if v > 1<<40 { // beyond any uptime; keeps the sum from overflowing
			return 0, errors.New("parse /proc/stat: value out of range")
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
