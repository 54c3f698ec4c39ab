package ukgrid

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
)

// Name is the provider's short name: the Source of its signals.
const Name = "ukgrid"

const (
	// DefaultBaseURL is the Carbon Intensity API root.
	DefaultBaseURL = "https://api.carbonintensity.org.uk"
	// DefaultTimeout bounds one request when Options.HTTPClient is nil.
	DefaultTimeout = 10 * time.Second
	// National is the zone for Great Britain as a whole ("GB" is an alias).
	National = "national"
	// MaxRegionID is the highest regional id (15-17: England, Scotland, Wales).
	MaxRegionID = 17
)

// timeLayout is the API's path timestamp format (minutes, UTC).
const timeLayout = "2006-01-02T15:04Z"

// Options configures a Client. Zero values are the documented defaults.
type Options struct {
	// BaseURL is the API root (default DefaultBaseURL).
	BaseURL string
	// HTTPClient sends the requests (default: a client with a DefaultTimeout
	// timeout).
	HTTPClient *http.Client
	// Logger receives debug records about provider answers (default: discard).
	Logger *slog.Logger
}

// Client is a Carbon Intensity API carbon.Provider. It is safe for
// concurrent use.
type Client struct {
	base string
	hc   *http.Client
	log  *slog.Logger

	mu           sync.Mutex
	blockedUntil time.Time // no request before this (set by a 429)
}

var _ carbon.Provider = (*Client)(nil)

// New validates opts and returns a Client.
func New(opts Options) (*Client, error) {
	base := opts.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: new client: base URL %q is not an absolute http(s) URL", Name, base)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{base: strings.TrimRight(base, "/"), hc: hc, log: log}, nil
}

// ParseZone validates zone and returns its regional id, or 0 for the
// national zone ("national" or "GB", case-insensitive). Other zones wrap
// carbon.ErrUnknownZone.
func ParseZone(zone string) (int, error) {
	if strings.EqualFold(zone, National) || strings.EqualFold(zone, "GB") {
		return 0, nil
	}
	id, err := strconv.Atoi(zone)
	if err != nil || id < 1 || id > MaxRegionID || strconv.Itoa(id) != zone {
		return 0, fmt.Errorf("%w: want %q, \"GB\" or a region id from 1 to %d", carbon.ErrUnknownZone, National, MaxRegionID)
	}
	return id, nil
}

// Name returns "ukgrid".
func (c *Client) Name() string { return Name }

// Current returns the current half hour's average intensity: nationally the
// estimated actual, or the forecast while the actual is null; regionally the
// forecast (the API publishes no regional actuals).
func (c *Client) Current(ctx context.Context, zone string) (carbon.Signal, error) {
	id, err := ParseZone(zone)
	if err != nil {
		return carbon.Signal{}, wrap(zone, err)
	}
	path := "/intensity"
	if id > 0 {
		path = "/regional/regionid/" + strconv.Itoa(id)
	}
	body, err := c.fetch(ctx, zone, path)
	if err != nil {
		return carbon.Signal{}, err
	}
	s, err := decodeCurrent(body, id)
	if err != nil {
		return carbon.Signal{}, wrap(zone, err)
	}
	return s, nil
}

// Forecast returns 48 hours of half-hourly forecast intensity, starting with
// the half hour before the current one.
func (c *Client) Forecast(ctx context.Context, zone string) (carbon.Forecast, error) {
	id, err := ParseZone(zone)
	if err != nil {
		return carbon.Forecast{}, wrap(zone, err)
	}
	from := time.Now().UTC().Truncate(interval).Add(-interval).Format(timeLayout)
	path := "/intensity/" + from + "/fw48h"
	if id > 0 {
		path = "/regional/intensity/" + from + "/fw48h/regionid/" + strconv.Itoa(id)
	}
	body, err := c.fetch(ctx, zone, path)
	if err != nil {
		return carbon.Forecast{}, err
	}
	f, err := decodeForecast(body, id)
	if err != nil {
		return carbon.Forecast{}, wrap(zone, err)
	}
	return f, nil
}

// decodeCurrent decodes a current-intensity answer; id 0 is national.
func decodeCurrent(body []byte, id int) (carbon.Signal, error) {
	var ps []period
	var err error
	if id == 0 {
		ps, err = decodeNational(body)
	} else {
		ps, err = decodeRegional(body, id)
	}
	if err != nil {
		return carbon.Signal{}, err
	}
	return signal(ps)
}

// decodeForecast decodes a fw48h answer; id 0 is national.
func decodeForecast(body []byte, id int) (carbon.Forecast, error) {
	var ps []period
	var err error
	if id == 0 {
		ps, err = decodeNational(body)
	} else {
		ps, err = decodeRegional(body, id)
	}
	if err != nil {
		return carbon.Forecast{}, err
	}
	return series(ps)
}

// wrap prefixes err with the provider and zone.
func wrap(zone string, err error) error {
	return fmt.Errorf("%s: zone %q: %w", Name, zone, err)
}

// fetch requests path and returns the body of a 2xx answer.
func (c *Client) fetch(ctx context.Context, zone, path string) ([]byte, error) {
	c.mu.Lock()
	wait := time.Until(c.blockedUntil)
	c.mu.Unlock()
	if wait > 0 {
		return nil, wrap(zone, &carbon.RateLimitError{RetryAfter: wait})
	}
	resp, err := apiclient.Get(ctx, c.hc, c.base+path, nil)
	if err != nil {
		return nil, wrap(zone, err)
	}
	if resp.Status == http.StatusTooManyRequests {
		d := apiclient.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		c.mu.Lock()
		if until := time.Now().Add(d); until.After(c.blockedUntil) {
			c.blockedUntil = until
		}
		c.mu.Unlock()
		c.log.Debug("provider rate limited", "provider", Name, "zone", zone, "retry_after", d)
		return nil, wrap(zone, &carbon.RateLimitError{RetryAfter: d})
	}
	if resp.Status < 200 || resp.Status > 299 {
		return nil, wrap(zone, statusError(resp.Status, resp.Body))
	}
	return resp.Body, nil
}
