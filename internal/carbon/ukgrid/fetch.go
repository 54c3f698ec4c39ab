package ukgrid

import (
	"context"
	"encoding/json"
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
	// maxBodyBytes caps how much of an answer is read; a larger body is a bad
	// response rather than a reason to hold megabytes in memory.
	maxBodyBytes = 4 << 20
	// defaultRetryAfter is assumed when a 429 carries no usable Retry-After.
	defaultRetryAfter = time.Minute
	// maxRetryAfter bounds how long one 429 can silence the client, so that a
	// hostile or broken header cannot switch the provider off for days.
	maxRetryAfter = time.Hour
	// maxDetail bounds how much provider text goes into an error string.
	maxDetail = 160
)

// response is a fully read HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// get performs one GET and reads at most maxBodyBytes of the answer. Network
// failures and timeouts wrap carbon.ErrUnavailable (and the context's error);
// a truncated or oversized body wraps carbon.ErrBadResponse.
func get(ctx context.Context, hc *http.Client, url string, header http.Header) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return response{}, fmt.Errorf("build request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%w: %w", carbon.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return response{}, fmt.Errorf("%w: body truncated: %w", carbon.ErrBadResponse, err)
		}
		return response{}, fmt.Errorf("%w: read body: %w", carbon.ErrUnavailable, err)
	}
	if len(body) > maxBodyBytes {
		return response{}, fmt.Errorf("%w: body exceeds %d bytes", carbon.ErrBadResponse, maxBodyBytes)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// parseRetryAfter reads a Retry-After header (delay-seconds or HTTP-date).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return defaultRetryAfter
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			secs = 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return defaultRetryAfter
	}
	return min(max(d, 0), maxRetryAfter)
}

// apiError is the API's error body: {"error":{"code":"...","message":"..."}}.
type apiError struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// detail returns a short, printable summary of an error body.
func detail(body []byte) string {
	var e apiError
	if json.Unmarshal(body, &e) != nil || e.Error == nil {
		return ""
	}
	s := e.Error.Code
	if e.Error.Message != "" {
		if s != "" {
			s += ": "
		}
		s += e.Error.Message
	}
	return clean(s)
}

// clean strips control characters and bounds the length of provider text
// before it is put into an error string.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxDetail {
		s = s[:maxDetail] + "..."
	}
	return strings.TrimSpace(s)
}

// statusError maps a non-2xx answer to an error wrapping a carbon sentinel.
// Rate limiting is handled by the caller, which needs the header.
func statusError(status int, body []byte) error {
	d := detail(body)
	suffix := ""
	if d != "" {
		suffix = fmt.Sprintf(": provider says %q", d)
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("%w: HTTP %d%s", carbon.ErrUnauthorized, status, suffix)
	case status == http.StatusNotFound:
		return fmt.Errorf("%w: HTTP %d%s", carbon.ErrUnknownZone, status, suffix)
	case status == http.StatusBadRequest && strings.Contains(strings.ToLower(d), "region"):
		return fmt.Errorf("%w: HTTP %d%s", carbon.ErrUnknownZone, status, suffix)
	case status >= 500:
		return fmt.Errorf("%w: HTTP %d%s", carbon.ErrUnavailable, status, suffix)
	default:
		return fmt.Errorf("%w: unexpected HTTP %d%s", carbon.ErrBadResponse, status, suffix)
	}
}
