package replay

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
)

// Format is the layout of a trace file.
type Format int

const (
	// FormatAuto detects the format from the header row.
	FormatAuto Format = iota
	// FormatAegis is Aegis-Flow's own CSV: a header row
	// "timestamp,region,g_kwh", RFC 3339 timestamps, intensity in
	// gCO2eq/kWh. Lines starting with "#" are comments.
	FormatAegis
	// FormatElectricityMaps is the Electricity Maps data-portal CSV export:
	// columns "Datetime (UTC)", "Zone Id" and "Carbon Intensity gCO₂eq/kWh
	// (direct)" or "(LCA)" (see Column); other columns are ignored.
	FormatElectricityMaps
)

// String returns "auto", "aegis" or "electricitymaps".
func (f Format) String() string {
	switch f {
	case FormatAuto:
		return "auto"
	case FormatAegis:
		return "aegis"
	case FormatElectricityMaps:
		return "electricitymaps"
	}
	return fmt.Sprintf("format(%d)", int(f))
}

// Column chooses the Electricity Maps intensity column.
type Column int

const (
	// ColumnDirect is "Carbon Intensity gCO₂eq/kWh (direct)": emissions of
	// generation only (the default).
	ColumnDirect Column = iota
	// ColumnLCA is "Carbon Intensity gCO₂eq/kWh (LCA)": life-cycle emissions.
	ColumnLCA
)

// ParseError is a bad row or header in a trace.
type ParseError struct {
	// Line is the 1-based line number in the file.
	Line int
	// Column names the column (its header name) or is empty for the row.
	Column string
	Err    error
}

func (e *ParseError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d, column %q: %v", e.Line, e.Column, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Trace is a parsed trace: per zone, a contiguous series of points in trace
// time. Each point lasts until the zone's next timestamp; the last one as
// long as the one before it (one hour if the zone has a single row).
type Trace struct {
	zones map[string]*series
	start time.Time // earliest timestamp
}

type series struct {
	pts  []carbon.Point
	span time.Duration // from the first start to the last end
}

// Zones returns the trace's zones, sorted.
func (t *Trace) Zones() []string {
	out := make([]string, 0, len(t.zones))
	for z := range t.zones {
		out = append(out, z)
	}
	slices.Sort(out)
	return out
}

// Points returns a copy of the zone's points in trace time.
func (t *Trace) Points(zone string) []carbon.Point {
	if s := t.zones[zone]; s != nil {
		return slices.Clone(s.pts)
	}
	return nil
}

// Start returns the trace's earliest timestamp.
func (t *Trace) Start() time.Time { return t.start }

// Limits that keep a hostile or mistaken file from exhausting memory.
const (
	maxRows     = 1_000_000
	maxFieldLen = 256
)

// Parse reads a trace in the given format. Errors name the line and column
// (a *ParseError).
func Parse(r io.Reader, format Format, column Column) (*Trace, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.ReuseRecord = true

	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ParseError{Line: 1, Err: errors.New("empty trace: no header row")}
		}
		return nil, csvError(err)
	}
	header = slices.Clone(header)
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	headerLine, _ := cr.FieldPos(0)
	cols, err := layout(header, format, column)
	if err != nil {
		return nil, &ParseError{Line: headerLine, Err: err}
	}

	type row struct {
		at   time.Time
		v    float64
		line int
	}
	byZone := map[string][]row{}
	n := 0
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(err)
		}
		line, _ := cr.FieldPos(0)
		if n++; n > maxRows {
			return nil, &ParseError{Line: line, Err: fmt.Errorf("more than %d rows", maxRows)}
		}
		if len(rec) < cols.need {
			return nil, &ParseError{Line: line, Err: fmt.Errorf("%d fields, want at least %d", len(rec), cols.need)}
		}
		field := func(i int) (string, error) {
			f := strings.TrimSpace(rec[i])
			if len(f) > maxFieldLen {
				return "", &ParseError{Line: line, Column: header[i], Err: fmt.Errorf("longer than %d bytes", maxFieldLen)}
			}
			return f, nil
		}
		ts, err := field(cols.time)
		if err != nil {
			return nil, err
		}
		at, err := cols.parseTime(ts)
		if err != nil {
			return nil, &ParseError{Line: line, Column: header[cols.time], Err: err}
		}
		zone, err := field(cols.zone)
		if err != nil {
			return nil, err
		}
		if zone == "" {
			return nil, &ParseError{Line: line, Column: header[cols.zone], Err: errors.New("empty")}
		}
		vs, err := field(cols.value)
		if err != nil {
			return nil, err
		}
		v, err := strconv.ParseFloat(vs, 64)
		if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, &ParseError{Line: line, Column: header[cols.value], Err: fmt.Errorf("%q is not a finite, non-negative gCO2eq/kWh", vs)}
		}
		byZone[zone] = append(byZone[zone], row{at, v, line})
	}
	if len(byZone) == 0 {
		return nil, &ParseError{Line: headerLine, Err: errors.New("no data rows")}
	}

	t := &Trace{zones: make(map[string]*series, len(byZone))}
	for zone, rows := range byZone {
		slices.SortStableFunc(rows, func(a, b row) int { return a.at.Compare(b.at) })
		s := &series{pts: make([]carbon.Point, len(rows))}
		for i, r := range rows {
			if i > 0 && r.at.Equal(rows[i-1].at) {
				return nil, &ParseError{Line: max(r.line, rows[i-1].line), Column: header[cols.time],
					Err: fmt.Errorf("zone %s has two rows for %s", zone, r.at.Format(time.RFC3339))}
			}
			s.pts[i] = carbon.Point{Start: r.at, Intensity: r.v}
		}
		for i := range s.pts {
			switch {
			case i+1 < len(s.pts):
				s.pts[i].Duration = s.pts[i+1].Start.Sub(s.pts[i].Start)
			case i > 0:
				s.pts[i].Duration = s.pts[i-1].Duration
			default:
				s.pts[i].Duration = time.Hour
			}
		}
		last := s.pts[len(s.pts)-1]
		s.span = last.End().Sub(s.pts[0].Start)
		if s.span <= 0 || s.span > 100*365*24*time.Hour {
			return nil, &ParseError{Line: rows[len(rows)-1].line, Column: header[cols.time], Err: fmt.Errorf("zone %s spans an unusable %s", zone, s.span)}
		}
		t.zones[zone] = s
		if t.start.IsZero() || s.pts[0].Start.Before(t.start) {
			t.start = s.pts[0].Start
		}
	}
	return t, nil
}

// columns locates the fields a format needs.
type columns struct {
	time, zone, value int
	need              int
	parseTime         func(string) (time.Time, error)
}

func layout(header []string, format Format, column Column) (columns, error) {
	idx := func(match func(string) bool) int {
		return slices.IndexFunc(header, func(h string) bool { return match(strings.TrimSpace(h)) })
	}
	is := func(name string) func(string) bool {
		return func(h string) bool { return strings.EqualFold(h, name) }
	}
	if format == FormatAuto {
		switch {
		case idx(is("timestamp")) >= 0:
			format = FormatAegis
		case idx(is("Datetime (UTC)")) >= 0:
			format = FormatElectricityMaps
		default:
			return columns{}, errors.New(`unknown trace format: no "timestamp" or "Datetime (UTC)" column in the header`)
		}
	}
	var c columns
	var missing []string
	find := func(name string, match func(string) bool) int {
		i := idx(match)
		if i < 0 {
			missing = append(missing, strconv.Quote(name))
		}
		return i
	}
	switch format {
	case FormatAegis:
		c.time = find("timestamp", is("timestamp"))
		c.zone = find("region", is("region"))
		c.value = find("g_kwh", is("g_kwh"))
		c.parseTime = parseRFC3339
	case FormatElectricityMaps:
		suffix := "(direct)"
		if column == ColumnLCA {
			suffix = "(LCA)"
		}
		c.time = find("Datetime (UTC)", is("Datetime (UTC)"))
		c.zone = find("Zone Id", is("Zone Id"))
		name := "Carbon Intensity gCO₂eq/kWh " + suffix
		c.value = find(name, func(h string) bool {
			h = strings.ReplaceAll(h, "₂", "2")
			return strings.EqualFold(h, "Carbon Intensity gCO2eq/kWh "+suffix)
		})
		c.parseTime = parseEMTime
	default:
		return columns{}, fmt.Errorf("unknown trace format %d", int(format))
	}
	if len(missing) > 0 {
		return columns{}, fmt.Errorf("%s header lacks column %s", format, strings.Join(missing, ", "))
	}
	c.need = max(c.time, c.zone, c.value) + 1
	return c, nil
}

func parseRFC3339(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 timestamp", s)
	}
	return t, nil
}

// parseEMTime reads the export's "2023-01-01 00:00:00" (UTC), or RFC 3339.
func parseEMTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateTime, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither \"2006-01-02 15:04:05\" (UTC) nor RFC 3339", s)
}

func csvError(err error) error {
	if pe, ok := errors.AsType[*csv.ParseError](err); ok {
		return &ParseError{Line: pe.Line, Err: fmt.Errorf("byte %d: %w", pe.Column, pe.Err)}
	}
	return fmt.Errorf("read trace: %w", err)
}

// parseBytes is Parse over a byte slice.
func parseBytes(b []byte, format Format, column Column) (*Trace, error) {
	return Parse(bytes.NewReader(b), format, column)
}

// String returns "direct" or "lca".
func (c Column) String() string {
	switch c {
	case ColumnDirect:
		return "direct"
	case ColumnLCA:
		return "lca"
	}
	return fmt.Sprintf("column(%d)", int(c))
}

// ParseFormat reads a format name as configuration spells it: "auto" (or
// empty), "aegis" or "electricitymaps".
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return FormatAuto, nil
	case "aegis":
		return FormatAegis, nil
	case "electricitymaps":
		return FormatElectricityMaps, nil
	}
	return 0, fmt.Errorf("trace format %q is not one of auto, aegis, electricitymaps", s)
}

// ParseColumn reads an Electricity Maps column name: "direct" (or empty)
// or "lca".
func ParseColumn(s string) (Column, error) {
	switch strings.ToLower(s) {
	case "", "direct":
		return ColumnDirect, nil
	case "lca":
		return ColumnLCA, nil
	}
	return 0, fmt.Errorf("intensity column %q is not one of direct, lca", s)
}
