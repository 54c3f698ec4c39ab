package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-flow/aegis/internal/balance"
	"github.com/aegis-flow/aegis/internal/balance/simulate"
	"github.com/aegis-flow/aegis/internal/carbon/replay"
)

// simulateRoutingCmd is `aegis simulate routing`: replay a multi-region
// intensity trace against a synthetic request stream and compare
// least_request, carbon and an always-cleanest oracle.
func simulateRoutingCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("simulate routing", stderr)
	traces := fs.String("trace", "", "trace CSV files, comma-separated: Aegis-Flow (timestamp,region,g_kwh) or Electricity Maps exports (required)")
	column := fs.String("column", "direct", "Electricity Maps column: direct or lca")
	regionMap := fs.String("region-map", "", "rename trace zones, e.g. \"ES=eu-south,NO=eu-north\" (default: zone names)")
	latency := fs.String("latency", "", "base latency per region, e.g. \"eu-south=20ms,eu-north=35\" (ms when no unit; default 20ms)")
	rph := fs.Int("requests-per-hour", 600, "mean requests per trace hour (Poisson)")
	hours := fs.Int("hours", 0, "replay only the first N hours of the common trace range (0: all)")
	seed := fs.Uint64("seed", 1, "random seed (same seed, same result)")
	budget := fs.Duration("max-added-latency", balance.CarbonOptions{}.MaxAddedLatency, "carbon.max_added_latency (0: default 50ms)")
	scale := fs.Float64("intensity-scale", 0, "carbon.intensity_scale in g/kWh (0: default 50)")
	minShare := fs.Float64("min-share", 0, "carbon.min_share (0: default 0.05; -1: none)")
	joules := fs.Float64("request-joules", 1, "energy of one request in joules (grams scale with it)")
	endpoints := fs.Int("endpoints", 2, "endpoints per region")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *traces == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "aegis simulate routing: --trace CSV[,CSV...] is required and takes no arguments")
		return ExitUsage
	}
	names, err := parsePairs(*regionMap)
	if err != nil {
		fmt.Fprintf(stderr, "aegis simulate routing: --region-map: %v\n", err)
		return ExitUsage
	}
	lats, err := parsePairs(*latency)
	if err != nil {
		fmt.Fprintf(stderr, "aegis simulate routing: --latency: %v\n", err)
		return ExitUsage
	}
	series, step, start, err := loadRegions(strings.Split(*traces, ","), *column, names, *hours)
	if err != nil {
		fmt.Fprintf(stderr, "aegis simulate routing: %v\n", err)
		return ExitError
	}
	opts := simulate.Options{
		Seed: *seed, Intensity: series, Step: step,
		RequestsPerStep: max(1, int(float64(*rph)*step.Hours()+0.5)), RequestJoules: *joules,
		Carbon: balance.CarbonOptions{MaxAddedLatency: *budget, IntensityScale: *scale, MinShare: *minShare},
	}
	regions := slices.Sorted(mapsKeys(series))
	for _, r := range regions {
		l := 20 * time.Millisecond
		if s, ok := lats[r]; ok {
			if l, err = parseMillis(s); err != nil {
				fmt.Fprintf(stderr, "aegis simulate routing: --latency %s: %v\n", r, err)
				return ExitUsage
			}
			delete(lats, r)
		}
		opts.Regions = append(opts.Regions, simulate.Region{Name: r, Latency: l, Endpoints: *endpoints})
	}
	for r := range lats {
		fmt.Fprintf(stderr, "aegis simulate routing: --latency names %q, which no trace has (regions: %s)\n", r, strings.Join(regions, ", "))
		return ExitUsage
	}
	res, err := simulate.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "aegis simulate routing: %v\n", err)
		return ExitError
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(routingReport(res, opts, start)); err != nil {
			return ExitError
		}
		return ExitOK
	}
	printRouting(stdout, res, opts, start)
	return ExitOK
}

func mapsKeys(m map[string][]float64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// loadRegions parses the traces and returns one series per region over the
// time range every region covers, sampled at the first trace's step.
func loadRegions(paths []string, column string, rename map[string]string, hours int) (map[string][]float64, time.Duration, time.Time, error) {
	col, err := replay.ParseColumn(column)
	if err != nil {
		return nil, 0, time.Time{}, err
	}
	byTime := map[string]map[time.Time]float64{}
	var step time.Duration
	for _, p := range paths {
		data, err := os.ReadFile(strings.TrimSpace(p))
		if err != nil {
			return nil, 0, time.Time{}, fmt.Errorf("read trace: %w", err)
		}
		tr, err := replay.Parse(bytes.NewReader(data), replay.FormatAuto, col)
		if err != nil {
			return nil, 0, time.Time{}, fmt.Errorf("trace %s: %w", p, err)
		}
		for _, z := range tr.Zones() {
			name := z
			if n, ok := rename[z]; ok {
				name = n
			}
			if _, dup := byTime[name]; dup {
				return nil, 0, time.Time{}, fmt.Errorf("region %s appears twice in the traces", name)
			}
			m := map[time.Time]float64{}
			for _, pt := range tr.Points(z) {
				m[pt.Start.UTC()] = pt.Intensity
				if step == 0 || pt.Duration < step {
					step = pt.Duration
				}
			}
			byTime[name] = m
		}
	}
	if len(byTime) == 0 {
		return nil, 0, time.Time{}, errors.New("the traces have no regions")
	}
	var common []time.Time
	for _, m := range byTime {
		if common == nil {
			for t := range m {
				common = append(common, t)
			}
			continue
		}
		common = slices.DeleteFunc(common, func(t time.Time) bool { _, ok := m[t]; return !ok })
	}
	slices.SortFunc(common, func(a, b time.Time) int { return a.Compare(b) })
	if hours > 0 {
		if n := int(time.Duration(hours) * time.Hour / step); n < len(common) {
			common = common[:n]
		}
	}
	if len(common) == 0 {
		return nil, 0, time.Time{}, errors.New("the traces share no timestamps")
	}
	out := map[string][]float64{}
	for r, m := range byTime {
		s := make([]float64, len(common))
		for i, t := range common {
			s[i] = m[t]
		}
		out[r] = s
	}
	return out, step, common[0], nil
}

func parsePairs(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q is not name=value", part)
		}
		out[k] = v
	}
	return out, nil
}

func parseMillis(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		s = strconv.FormatFloat(f, 'f', -1, 64) + "ms"
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive latency", s)
	}
	return d, nil
}

type routingPolicy struct {
	GramsPerRequest float64            `json:"grams_per_request"`
	MeanIntensity   float64            `json:"mean_intensity_g_kwh"`
	P50Ms           float64            `json:"p50_ms"`
	P99Ms           float64            `json:"p99_ms"`
	Requests        int                `json:"requests"`
	Shares          map[string]float64 `json:"shares"`
}

type routingJSON struct {
	Start           time.Time                `json:"start"`
	Steps           int                      `json:"steps"`
	Step            string                   `json:"step"`
	RequestJoules   float64                  `json:"request_joules"`
	Policies        map[string]routingPolicy `json:"policies"`
	Reduction       float64                  `json:"carbon_reduction"`
	OracleReduction float64                  `json:"oracle_reduction"`
	AddedP99Ms      float64                  `json:"added_p99_ms"`
}

func toPolicy(p simulate.PolicyResult) routingPolicy {
	return routingPolicy{GramsPerRequest: p.GramsPerRequest, MeanIntensity: p.MeanIntensity,
		P50Ms: ms(p.P50), P99Ms: ms(p.P99), Requests: p.Requests, Shares: p.Shares}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func routingReport(r simulate.Result, o simulate.Options, start time.Time) routingJSON {
	return routingJSON{
		Start: start, Steps: r.Steps, Step: o.Step.String(), RequestJoules: o.RequestJoules,
		Policies: map[string]routingPolicy{
			"least_request": toPolicy(r.LeastRequest), "carbon": toPolicy(r.Carbon), "oracle": toPolicy(r.Oracle),
		},
		Reduction: r.Reduction, OracleReduction: r.OracleReduction, AddedP99Ms: ms(r.AddedP99),
	}
}

func printRouting(w io.Writer, r simulate.Result, o simulate.Options, start time.Time) {
	fmt.Fprintf(w, "routing simulation: %d steps of %s from %s, %d requests per step, %g J per request\n",
		r.Steps, o.Step, start.Format(time.RFC3339), o.RequestsPerStep, o.RequestJoules)
	fmt.Fprint(w, "regions:")
	for _, reg := range o.Regions {
		fmt.Fprintf(w, " %s (%s)", reg.Name, reg.Latency)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\n%-14s %16s %14s %9s %9s  %s\n", "policy", "gCO2eq/request", "mean g/kWh", "p50", "p99", "traffic share")
	for _, row := range []struct {
		name string
		p    simulate.PolicyResult
	}{{"least_request", r.LeastRequest}, {"carbon", r.Carbon}, {"oracle", r.Oracle}} {
		var shares []string
		for _, reg := range o.Regions {
			shares = append(shares, fmt.Sprintf("%s %.1f%%", reg.Name, 100*row.p.Shares[reg.Name]))
		}
		fmt.Fprintf(w, "%-14s %16.3e %14.1f %8.1fms %8.1fms  %s\n", row.name, row.p.GramsPerRequest, row.p.MeanIntensity,
			ms(row.p.P50), ms(row.p.P99), strings.Join(shares, ", "))
	}
	fmt.Fprintf(w, "\ncarbon vs least_request: %.1f%% less CO2eq per request, p99 %+.1fms\n", 100*r.Reduction, ms(r.AddedP99))
	fmt.Fprintf(w, "oracle vs least_request: %.1f%% less CO2eq per request\n", 100*r.OracleReduction)
}
