package greenwait

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Request headers that steer Green-Wait.
const (
	// HeaderPriority carries critical, high, normal, low or background.
	HeaderPriority = "Aegis-Priority"
	// HeaderDeadline carries the latest time the client wants the request
	// run: either delta-seconds (a non-negative integer number of seconds
	// from now, as in Retry-After) or an RFC 3339 timestamp. It may shorten
	// the priority's maximum wait, never lengthen it.
	HeaderDeadline = "Aegis-Deadline"
	// HeaderCallback carries an absolute http or https URL that receives a
	// signed POST when the job finishes.
	HeaderCallback = "Aegis-Callback"
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256 of a
	// callback's body under the configured callback key.
	HeaderSignature = "Aegis-Signature"
	// HeaderJobID names the job in callbacks and result responses.
	HeaderJobID = "Aegis-Job-Id"
	// HeaderDeadlineClamped is "true" on a 202 whose requested deadline was
	// beyond the priority's maximum wait and was shortened.
	HeaderDeadlineClamped = "Aegis-Deadline-Clamped"
	// HeaderIdempotencyKey is set to the job id on every release.
	HeaderIdempotencyKey = "Idempotency-Key"
)

var (
	errBadDeadline = errors.New("Aegis-Deadline must be delta-seconds or an RFC 3339 time")
	errBadCallback = errors.New("must be an absolute http or https URL without user info")
)

// parseDeadline parses an Aegis-Deadline value relative to now.
func parseDeadline(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, errBadDeadline
	}
	if allDigits(v) {
		if len(v) > 10 { // more than ~317 years: certainly beyond any maximum wait
			return now.Add(100 * 365 * 24 * time.Hour), nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, errBadDeadline
		}
		return now.Add(time.Duration(n) * time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, errBadDeadline
	}
	return t, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// prefersRespondAsync reports whether any Prefer header value contains the
// respond-async preference (RFC 7240 section 4.1). Preferences are separated
// by commas outside quoted strings; a preference's name ends at "=", ";" or
// white space.
func prefersRespondAsync(values []string) bool {
	for _, v := range values {
		inQuote, escaped := false, false
		start := 0
		for i := 0; i <= len(v); i++ {
			if i < len(v) {
				c := v[i]
				switch {
				case escaped:
					escaped = false
					continue
				case inQuote && c == '\\':
					escaped = true
					continue
				case c == '"':
					inQuote = !inQuote
					continue
				case inQuote || c != ',':
					continue
				}
			}
			if preferenceName(v[start:i]) == "respond-async" {
				return true
			}
			start = i + 1
		}
	}
	return false
}

func preferenceName(p string) string {
	p = strings.TrimLeft(p, " \t")
	if i := strings.IndexAny(p, "=; \t"); i >= 0 {
		p = p[:i]
	}
	return strings.ToLower(p)
}

// parseCallback validates an Aegis-Callback value.
func parseCallback(v string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(v))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return nil, errBadCallback
	}
	return u, nil
}
