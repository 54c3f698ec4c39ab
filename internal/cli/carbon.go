package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/config"
	"github.com/aegis-flow/aegis/internal/daemon"
)

const carbonUsage = `Usage:
  aegis carbon now [--config FILE] [--json] [REGION...]
      every region's intensity now (or only the REGIONs), with its source and fallback level
  aegis carbon forecast [--config FILE] [--json] REGION
      the region's forecast, point by point
  aegis carbon best --region R[,R2...] --duration D [--within W] [--config FILE] [--json]
      the lowest-carbon window of length D starting in the next W (default 24h), best region first

The commands ask the configured providers directly (no running aegis is needed).
Without --config they use the embedded demo configuration (a replayed sample trace).
`

// carbonCmd runs `aegis carbon SUBCOMMAND`.
func carbonCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, carbonUsage)
		return ExitUsage
	}
	switch args[0] {
	case "now":
		return carbonNowCmd(ctx, args[1:], stdout, stderr)
	case "forecast":
		return carbonForecastCmd(ctx, args[1:], stdout, stderr)
	case "best":
		return carbonBestCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, carbonUsage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "aegis carbon: unknown subcommand %q\n\n%s", args[0], carbonUsage)
	return ExitUsage
}

// carbonFlags are the flags every carbon subcommand takes.
type carbonFlags struct {
	fs      *flag.FlagSet
	cfgPath *string
	json    *bool
}

func newCarbonFlags(name string, stderr io.Writer) carbonFlags {
	fs := newFlags("carbon "+name, stderr)
	fs.Usage = func() { fmt.Fprint(stderr, carbonUsage) }
	return carbonFlags{
		fs:      fs,
		cfgPath: fs.String("config", "", "configuration file (default: the embedded demo configuration)"),
		json:    fs.Bool("json", false, "print JSON instead of a table"),
	}
}

// parse parses flags placed before, between or after positional arguments.
func (c carbonFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			return nil, err
		}
		args = c.fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// tracker loads the configuration and refreshes the regions' providers once.
// Provider failures are reported on stderr, naming provider and region.
func (c carbonFlags) tracker(ctx context.Context, prefix string, regions []string, stderr io.Writer) (*carbon.Tracker, bool) {
	var cfg *config.File
	var err error
	if *c.cfgPath == "" {
		cfg, err = config.Default()
	} else {
		cfg, err = config.Load(*c.cfgPath)
	}
	if err != nil {
		printProblems(stderr, prefix, err)
		return nil, false
	}
	if !cfg.Carbon.Enabled() {
		fmt.Fprintf(stderr, "%s: the configuration has no [[carbon.regions]]\n", prefix)
		return nil, false
	}
	t, err := daemon.NewCarbonTracker(cfg, daemon.CarbonOptions{Regions: regions})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
		return nil, false
	}
	_ = t.Refresh(ctx) // failures are in the snapshot, reported below
	for _, rs := range t.Snapshot() {
		for _, p := range rs.Providers {
			if p.Failed {
				fmt.Fprintf(stderr, "%s: provider %s, region %s (zone %s): current: %s\n", prefix, p.Name, rs.Region, p.Zone, p.LastError)
			}
			if p.ForecastFailed {
				fmt.Fprintf(stderr, "%s: provider %s, region %s (zone %s): forecast: %s\n", prefix, p.Name, rs.Region, p.Zone, p.ForecastError)
			}
		}
	}
	return t, true
}

type nowJSON struct {
	Region        string     `json:"region"`
	Intensity     *float64   `json:"intensity_g_kwh"`
	Kind          string     `json:"kind,omitempty"`
	Source        string     `json:"source,omitempty"`
	Fallback      string     `json:"fallback"`
	FallbackLevel int        `json:"fallback_level"`
	AgeSeconds    *float64   `json:"age_seconds,omitempty"`
	ObservedAt    *time.Time `json:"observed_at,omitempty"`
	ValidUntil    *time.Time `json:"valid_until,omitempty"`
}

func carbonNowCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const prefix = "aegis carbon now"
	f := newCarbonFlags("now", stderr)
	regions, err := f.parse(args)
	if err != nil {
		return ExitUsage
	}
	t, ok := f.tracker(ctx, prefix, regions, stderr)
	if !ok {
		return ExitError
	}
	now := time.Now()
	var rows []nowJSON
	code := ExitOK
	for _, rs := range t.Snapshot() {
		r := rs.Reading
		row := nowJSON{Region: rs.Region, Fallback: r.Level.String(), FallbackLevel: int(r.Level)}
		if r.Level == carbon.Unknown {
			code = ExitError
			fmt.Fprintf(stderr, "%s: region %s: no usable value (routing is carbon-neutral for it)\n", prefix, rs.Region)
		} else {
			v := r.Signal.Intensity
			row.Intensity, row.Kind, row.Source = &v, string(r.Signal.Kind), r.Signal.Source
			row.ObservedAt, row.ValidUntil = carbonTime(r.Signal.ObservedAt), carbonTime(r.Signal.ValidUntil)
		}
		if r.Level == carbon.Live || r.Level == carbon.LastKnownGood {
			age := r.Age(now).Seconds()
			row.AgeSeconds = &age
		}
		rows = append(rows, row)
	}
	if *f.json {
		writeCarbonJSON(stdout, rows)
		return code
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tgCO2eq/kWh\tKIND\tSOURCE\tFALLBACK\tAGE\tOBSERVED AT")
	for _, r := range rows {
		val, age, obs := "-", "-", "-"
		if r.Intensity != nil {
			val = strconv.FormatFloat(*r.Intensity, 'f', 1, 64)
		}
		if r.AgeSeconds != nil {
			age = (time.Duration(*r.AgeSeconds) * time.Second).String()
		}
		if r.ObservedAt != nil {
			obs = r.ObservedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Region, val, carbonDash(r.Kind), carbonDash(r.Source), r.Fallback, age, obs)
	}
	tw.Flush()
	return code
}

type pointJSON struct {
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Intensity float64   `json:"intensity_g_kwh"`
}

type forecastJSON struct {
	Region      string      `json:"region"`
	Kind        string      `json:"kind"`
	Source      string      `json:"source"`
	GeneratedAt *time.Time  `json:"generated_at,omitempty"`
	Points      []pointJSON `json:"points"`
}

func carbonForecastCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const prefix = "aegis carbon forecast"
	f := newCarbonFlags("forecast", stderr)
	pos, err := f.parse(args)
	if err != nil {
		return ExitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "%s: want exactly one REGION\n\n%s", prefix, carbonUsage)
		return ExitUsage
	}
	region := pos[0]
	t, ok := f.tracker(ctx, prefix, pos, stderr)
	if !ok {
		return ExitError
	}
	fc, ok := t.Forecast(region)
	if !ok {
		fmt.Fprintf(stderr, "%s: region %s: no forecast from any provider\n", prefix, region)
		return ExitError
	}
	out := forecastJSON{Region: region, Kind: string(fc.Kind), Source: fc.Source, GeneratedAt: carbonTime(fc.GeneratedAt), Points: []pointJSON{}}
	for _, p := range fc.Points {
		out.Points = append(out.Points, pointJSON{Start: p.Start.UTC(), End: p.End().UTC(), Intensity: p.Intensity})
	}
	if *f.json {
		writeCarbonJSON(stdout, out)
		return ExitOK
	}
	fmt.Fprintf(stdout, "region %s: %d points, %s intensity from %s\n", region, len(out.Points), out.Kind, out.Source)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tEND\tgCO2eq/kWh")
	for _, p := range out.Points {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\n", p.Start.Format(time.RFC3339), p.End.Format(time.RFC3339), p.Intensity)
	}
	tw.Flush()
	return ExitOK
}

type bestJSON struct {
	Rank      int       `json:"rank"`
	Region    string    `json:"region"`
	Kind      string    `json:"kind"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Intensity float64   `json:"intensity_g_kwh"`
}

func carbonBestCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const prefix = "aegis carbon best"
	f := newCarbonFlags("best", stderr)
	regionList := f.fs.String("region", "", "regions to compare, comma separated (required)")
	duration := f.fs.Duration("duration", 0, "how long the job runs (required)")
	within := f.fs.Duration("within", 24*time.Hour, "the window must start and end within this long from now")
	pos, err := f.parse(args)
	if err != nil {
		return ExitUsage
	}
	var regions []string
	for r := range strings.SplitSeq(*regionList, ",") {
		if r = strings.TrimSpace(r); r != "" {
			regions = append(regions, r)
		}
	}
	switch {
	case len(pos) > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %q (regions go in --region)\n", prefix, pos[0])
		return ExitUsage
	case len(regions) == 0:
		fmt.Fprintf(stderr, "%s: --region R[,R2...] is required\n", prefix)
		return ExitUsage
	case *duration <= 0:
		fmt.Fprintf(stderr, "%s: --duration must be a positive duration such as 30m\n", prefix)
		return ExitUsage
	case *within < *duration:
		fmt.Fprintf(stderr, "%s: --within %s is shorter than --duration %s\n", prefix, *within, *duration)
		return ExitUsage
	}
	t, ok := f.tracker(ctx, prefix, regions, stderr)
	if !ok {
		return ExitError
	}
	var fcs []carbon.Forecast
	for _, r := range regions {
		fc, ok := t.Forecast(r)
		if !ok {
			fmt.Fprintf(stderr, "%s: region %s: no forecast from any provider; left out\n", prefix, r)
			continue
		}
		fcs = append(fcs, fc)
	}
	if len(fcs) == 0 {
		fmt.Fprintf(stderr, "%s: no region has a forecast\n", prefix)
		return ExitError
	}
	now := time.Now()
	wins, err := carbon.BestRegion(fcs, *duration, now, now.Add(*within))
	if err != nil {
		switch {
		case errors.Is(err, carbon.ErrNoWindow):
			fmt.Fprintf(stderr, "%s: no window of %s fits in the forecasts within %s (they end at %s)\n",
				prefix, *duration, *within, forecastEnds(fcs))
		default:
			fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
		}
		return ExitError
	}
	rows := make([]bestJSON, 0, len(wins))
	for i, w := range wins {
		rows = append(rows, bestJSON{Rank: i + 1, Region: w.Region, Kind: string(w.Kind), Start: w.Start.UTC(), End: w.End.UTC(), Intensity: w.Intensity})
	}
	if *f.json {
		writeCarbonJSON(stdout, rows)
		return ExitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tREGION\tSTART\tEND\tSTARTS IN\tAVG gCO2eq/kWh\tKIND")
	for _, r := range rows {
		in := max(r.Start.Sub(now), 0).Round(time.Second)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%.1f\t%s\n", r.Rank, r.Region, r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339), in, r.Intensity, r.Kind)
	}
	tw.Flush()
	return ExitOK
}

func forecastEnds(fcs []carbon.Forecast) string {
	var parts []string
	for _, f := range fcs {
		if n := len(f.Points); n > 0 {
			parts = append(parts, f.Region+" "+f.Points[n-1].End().UTC().Format(time.RFC3339))
		}
	}
	return strings.Join(parts, ", ")
}

func writeCarbonJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // stdout gone: nothing to do
}

func carbonTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func carbonDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
