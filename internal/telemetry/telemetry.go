package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// LogOptions configures the process logger.
type LogOptions struct {
	// Level is debug, info (default), warn or error.
	Level string
	// Format is text (default) or json.
	Format string
	// Writer receives log lines (default os.Stderr).
	Writer io.Writer
}

// NewLogger returns the process logger.
func NewLogger(o LogOptions) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmpOr(o.Level, "info"))); err != nil {
		return nil, fmt.Errorf("log level %q: %w", o.Level, err)
	}
	w := o.Writer
	if w == nil {
		w = os.Stderr
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(cmpOr(o.Format, "text")) {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", o.Format)
	}
}

// Discard returns a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// OpenAccessLog returns the access logger for dest: "stdout", "stderr",
// "off" (nil logger, nil closer) or a file path (appended to). Close the
// returned closer when done; it is nil when nothing needs closing.
func OpenAccessLog(dest string, stdout, stderr io.Writer) (*slog.Logger, io.Closer, error) {
	var w io.Writer
	var c io.Closer
	switch dest {
	case "off":
		return nil, nil, nil
	case "", "stdout":
		w = stdout
	case "stderr":
		w = stderr
	default:
		f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("open access log: %w", err)
		}
		w, c = f, f
	}
	return slog.New(slog.NewJSONHandler(w, nil)), c, nil
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
