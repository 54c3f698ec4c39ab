// Package apiclient holds what the HTTP carbon providers share: a GET that
// reads a bounded body, Retry-After parsing, cleaning of provider text before
// it goes into an error, and the mapping of HTTP statuses to the carbon
// sentinels. Each provider parses its own error body. Safe for concurrent use.
package apiclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
)

const (
	// MaxBodyBytes caps how much of an answer is read; a larger body is a bad
	// response rather than a reason to hold megabytes in memory.
	MaxBodyBytes = 4 << 20
	// DefaultRetryAfter is assumed when a 429 carries no usable Retry-After.
	DefaultRetryAfter = time.Minute
	// MaxRetryAfter bounds how long one 429 can silence the client, so that a
	// hostile or broken header cannot switch the provider off for days.
	MaxRetryAfter = time.Hour
	// MaxDetail bounds how much provider text goes into an error string.
	MaxDetail = 160
)

// Response is a fully read HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Get performs one GET and reads at most MaxBodyBytes of the answer. Network
// failures and timeouts wrap carbon.ErrUnavailable (and the context's error);
// a truncated or oversized body wraps carbon.ErrBadResponse.
func Get(ctx context.Context, hc *http.Client, url string, header http.Header) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Response{}, fmt.Errorf("build request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%w: %w", carbon.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Response{}, fmt.Errorf("%w: body truncated: %w", carbon.ErrBadResponse, err)
		}
		return Response{}, fmt.Errorf("%w: read body: %w", carbon.ErrUnavailable, err)
	}
	if len(body) > MaxBodyBytes {
		return Response{}, fmt.Errorf("%w: body exceeds %d bytes", carbon.ErrBadResponse, MaxBodyBytes)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// ParseRetryAfter reads a Retry-After header (delay-seconds or HTTP-date).
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultRetryAfter
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			secs = 0
		}
		if secs > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return DefaultRetryAfter
	}
	return min(max(d, 0), MaxRetryAfter)
}

// Clean strips control characters and bounds the length of provider text
// before it is put into an error string.
func Clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > MaxDetail {
		s = s[:MaxDetail] + "..."
	}
	return strings.TrimSpace(s)
}

// StatusError maps a non-2xx answer to an error wrapping a carbon sentinel.
// detail is the provider's own explanation (already cleaned); a 400 whose
// detail mentions zoneWord ("zone", "region") means an unknown zone. Rate
// limiting is handled by the caller, which needs the header.
func StatusError(status int, d, zoneWord string) error {
	suffix := ""
	if d != "" {
		suffix = fmt.Sprintf(": provider says %q", d)
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("%w: HTTP %d%s", carbon.ErrUnauthorized, status, suffix)
	case status == http.StatusNotFound:
		return fmt.Errorf("%w: HTTP %d%s", carbon.ErrUnknownZone, status, suffix)
	case status == http.StatusBadRequest && strings.Contains(strings.ToLower(d), zoneWord):
		return fmt.Errorf("%w: HTTP %d%s", carbon.ErrUnknownZone, status, suffix)
	case status >= 500:
		return fmt.Errorf("%w: HTTP %d%s", carbon.ErrUnavailable, status, suffix)
	default:
		return fmt.Errorf("%w: unexpected HTTP %d%s", carbon.ErrBadResponse, status, suffix)
	}
}
