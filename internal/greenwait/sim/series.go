package sim

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ParseSeries reads an hourly intensity series, one value per line in
// gCO2eq/kWh. A line is either a number or "label,number" (for example an
// RFC 3339 hour, as in a CSV export); empty lines, lines starting with "#"
// and a first line whose value is not a number (a CSV header) are skipped.
// At most 1,000,000 values are read.
func ParseSeries(r io.Reader) ([]float64, error) {
	const maxValues = 1_000_000
	var out []float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line, header := 0, false
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		field := text
		if i := strings.LastIndexByte(text, ','); i >= 0 {
			field = strings.TrimSpace(text[i+1:])
		}
		v, err := strconv.ParseFloat(field, 64)
		if err != nil {
			if len(out) == 0 && !header {
				header = true // a CSV header line
				continue
			}
			return nil, fmt.Errorf("series line %d: %q is not a number", line, field)
		}
		if v < 0 || v != v || v > 1e5 {
			return nil, fmt.Errorf("series line %d: %v is not an intensity in [0, 100000] gCO2eq/kWh", line, v)
		}
		if len(out) == maxValues {
			return nil, fmt.Errorf("series: more than %d values", maxValues)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read series: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("series: no values")
	}
	return out, nil
}
