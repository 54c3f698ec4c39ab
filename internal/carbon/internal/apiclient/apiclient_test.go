package apiclient

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
)

func TestStatusError(t *testing.T) {
	tests := []struct {
		status int
		detail string
		want   error
	}{
		{401, "", carbon.ErrUnauthorized},
		{403, "", carbon.ErrUnauthorized},
		{404, "", carbon.ErrUnknownZone},
		{400, "unknown Zone XX", carbon.ErrUnknownZone},
		{400, "bad date", carbon.ErrBadResponse},
		{503, "", carbon.ErrUnavailable},
		{302, "", carbon.ErrBadResponse},
	}
	for _, tt := range tests {
		if err := StatusError(tt.status, tt.detail, "zone"); !errors.Is(err, tt.want) {
			t.Errorf("StatusError(%d, %q): got %v, want %v", tt.status, tt.detail, err, tt.want)
		}
	}
}

// FuzzParseRetryAfter: any header value gives a wait in [0, MaxRetryAfter].
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, s := range []string{"", "30", "-5", "999999999999999999999", "soon",
		now.Add(time.Minute).Format(http.TimeFormat), "Mon, 02 Jan 2006 15:04:05 GMT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := ParseRetryAfter(v, now)
		if d < 0 || d > MaxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %v, outside [0, %v]", v, d, MaxRetryAfter)
		}
	})
}

func TestClean(t *testing.T) {
	got := Clean("bad\x00\ntext" + strings.Repeat("x", 500))
	if strings.ContainsAny(got, "\x00\n") || len(got) > MaxDetail+3 {
		t.Errorf("Clean left control characters or too much text: %q", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"seconds", "120", 2 * time.Minute},
		{"empty", "", DefaultRetryAfter},
		{"garbage", "soon", DefaultRetryAfter},
		{"negative", "-5", 0},
		{"huge", "999999999999", MaxRetryAfter},
		{"date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseRetryAfter(tt.in, now); got != tt.want {
				t.Errorf("ParseRetryAfter(%q): got %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
