package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/carbon/replay"
	"github.com/aegis-flow/aegis/internal/greenwait"
	"github.com/aegis-flow/aegis/internal/greenwait/sim"
)

// maxSimTrace bounds a trace file read by simulate (256 MiB).
const maxSimTrace = 256 << 20

// businessProfile weighs arrivals towards working hours (UTC).
var businessProfile = []float64{
	0.3, 0.2, 0.2, 0.2, 0.3, 0.5, 0.8, 1.2, 1.6, 1.8, 1.8, 1.7,
	1.6, 1.7, 1.8, 1.8, 1.6, 1.3, 1.0, 0.8, 0.7, 0.6, 0.5, 0.4,
}

func simulateGreenWaitCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("simulate greenwait", stderr)
	trace := fs.String("trace", "", "carbon trace CSV: Aegis-Flow (timestamp,region,g_kwh), an Electricity Maps export, or one value per line (required)")
	region := fs.String("region", "", "region or zone id in the trace (default: the trace's only one)")
	column := fs.String("column", "direct", "Electricity Maps column: direct or lca")
	arrivals := fs.Float64("arrivals", 100, "mean deferrable arrivals per hour (Poisson)")
	pattern := fs.String("pattern", "flat", "arrival pattern over the day (UTC): flat, business, or 24 comma-separated multipliers")
	mix := fs.String("mix", "high=1,normal=1,low=1,background=1", "share of arrivals per priority, e.g. \"low=3,background=1\" (critical runs at once)")
	maxWait := fs.String("max-wait", "", "maximum waits per priority, e.g. \"low=4h,background=48h\" (default 5m, 30m, 2h, 24h)")
	duration := fs.Duration("duration", time.Minute, "how long each job runs")
	fcErr := fs.Float64("forecast-error", 0, "forecast error: standard deviation in percent of each forecast hour")
	minDefer := fs.Duration("min-deferral", time.Minute, "jobs whose best window starts sooner run at once")
	seed := fs.Uint64("seed", 1, "random seed (arrivals and forecast errors)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *trace == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "aegis simulate greenwait: --trace CSV is required (and no other arguments)")
		return ExitUsage
	}
	in := sim.Input{
		ArrivalsPerHour: *arrivals, JobDuration: *duration, ForecastErrorPct: *fcErr,
		MinDeferral: *minDefer, Seed: *seed,
	}
	var err error
	usage := func(e error) int {
		fmt.Fprintf(stderr, "aegis simulate greenwait: %v\n", e)
		return ExitUsage
	}
	if in.Profile, err = parseProfile(*pattern); err != nil {
		return usage(err)
	}
	if in.Mix, err = parseMix(*mix); err != nil {
		return usage(err)
	}
	if *maxWait != "" {
		if in.MaxWait, err = parseMaxWait(*maxWait); err != nil {
			return usage(err)
		}
	}
	series, name, start, err := loadSeries(*trace, *region, *column)
	if err != nil {
		fmt.Fprintf(stderr, "aegis simulate greenwait: %v\n", err)
		return ExitError
	}
	in.Intensity = series
	rep, err := sim.Run(in)
	if err != nil {
		fmt.Fprintf(stderr, "aegis simulate greenwait: %v\n", err)
		return ExitError
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return ExitOK
	}
	from := ""
	if !start.IsZero() {
		from = " from " + start.UTC().Format("2006-01-02T15Z")
	}
	fmt.Fprintf(stdout, "Green-Wait simulation: %s, %d hours%s; %.0f arrivals/h (%s), jobs of %s, forecast error %g%%, seed %d\n",
		name, len(series), from, *arrivals, *pattern, *duration, *fcErr, *seed)
	fmt.Fprintf(stdout, "grams of CO2eq at %.0f J per job\n\n", 3.6e6)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "priority\tjobs\tdeferred\timmediate g\tgreen-wait g\toptimal g\tsaved g\tsaved %\tof optimum %\tmean wait\t")
	row := func(t sim.Tier, name string) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%s\t\n", name, t.Jobs, t.Deferred,
			t.GramsImmediate, t.GramsGreenWait, t.GramsOptimal, t.SavedGrams, t.SavedPct, t.CapturePct, t.MeanWait.Round(time.Second))
	}
	for _, t := range rep.Tiers {
		row(t, t.Priority.String())
	}
	row(rep.Total, "total")
	tw.Flush()
	return ExitOK
}

// loadSeries reads an hourly series for region from a trace file in any of
// the replay formats, or as a bare series (one value per line).
func loadSeries(path, region, column string) ([]float64, string, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", time.Time{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSimTrace+1))
	if err != nil {
		return nil, "", time.Time{}, fmt.Errorf("read trace: %w", err)
	}
	if len(data) > maxSimTrace {
		return nil, "", time.Time{}, fmt.Errorf("trace %s is larger than %d bytes", path, maxSimTrace)
	}
	col, err := replay.ParseColumn(column)
	if err != nil {
		return nil, "", time.Time{}, err
	}
	tr, perr := replay.Parse(bytes.NewReader(data), replay.FormatAuto, col)
	if perr != nil {
		// Not a timestamped trace: perhaps a bare series.
		s, err := sim.ParseSeries(bytes.NewReader(data))
		if err != nil || len(s) == 0 {
			return nil, "", time.Time{}, fmt.Errorf("parse trace %s: %w", path, perr)
		}
		return s, path, time.Time{}, nil
	}
	zones := tr.Zones()
	if region == "" {
		if len(zones) != 1 {
			return nil, "", time.Time{}, fmt.Errorf("the trace has regions %s: choose one with --region", strings.Join(zones, ", "))
		}
		region = zones[0]
	}
	pts := tr.Points(region)
	if len(pts) == 0 {
		return nil, "", time.Time{}, fmt.Errorf("region %q is not in the trace (regions: %s)", region, strings.Join(zones, ", "))
	}
	s, err := hourly(region, pts)
	if err != nil {
		return nil, "", time.Time{}, err
	}
	return s, region, pts[0].Start, nil
}

// hourly resamples contiguous points to one time-weighted average per hour.
func hourly(region string, pts []carbon.Point) ([]float64, error) {
	start, end := pts[0].Start, pts[len(pts)-1].End()
	f := carbon.Forecast{Region: region, Points: pts}
	var out []float64
	for t := start; !t.Add(time.Hour).After(end); t = t.Add(time.Hour) {
		v, err := carbon.AverageIntensity(f, t, t.Add(time.Hour))
		if err != nil {
			return nil, fmt.Errorf("resample %s at %s: %w", region, t.UTC().Format(time.RFC3339), err)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("the trace is shorter than one hour")
	}
	return out, nil
}

func parseProfile(s string) ([]float64, error) {
	switch s {
	case "", "flat":
		return nil, nil
	case "business":
		return businessProfile, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) != 24 {
		return nil, fmt.Errorf("--pattern %q: want flat, business, or 24 comma-separated multipliers", s)
	}
	out := make([]float64, 24)
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("--pattern: item %d %q is not a non-negative number", i+1, p)
		}
		out[i] = v
	}
	return out, nil
}

// parseMix reads "low=3,background=1".
func parseMix(s string) (map[greenwait.Priority]float64, error) {
	out := map[greenwait.Priority]float64{}
	err := eachPair(s, "--mix", func(p greenwait.Priority, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("%q is not a non-negative share", v)
		}
		out[p] = f
		return nil
	})
	return out, err
}

// parseMaxWait reads "low=4h,background=48h".
func parseMaxWait(s string) (map[greenwait.Priority]time.Duration, error) {
	out := map[greenwait.Priority]time.Duration{}
	err := eachPair(s, "--max-wait", func(p greenwait.Priority, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive duration", v)
		}
		out[p] = d
		return nil
	})
	return out, err
}

func eachPair(s, flagName string, f func(greenwait.Priority, string) error) error {
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("%s: %q is not priority=value", flagName, part)
		}
		p, err := greenwait.ParsePriority(k)
		if err != nil {
			return fmt.Errorf("%s: %w", flagName, err)
		}
		if err := f(p, strings.TrimSpace(v)); err != nil {
			return fmt.Errorf("%s: %s: %w", flagName, k, err)
		}
	}
	return nil
}
