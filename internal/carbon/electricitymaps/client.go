package electricitymaps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
)

// Name is the provider's short name: the Source of its signals.
const Name = "electricitymaps"

const (
	// DefaultBaseURL is the Electricity Maps API v3 root.
	DefaultBaseURL = "https://api.electricitymap.org/v3"
	// DefaultTimeout bounds one request when Options.HTTPClient is nil.
	DefaultTimeout = 10 * time.Second
)

// EmissionFactorType selects which emission factors Electricity Maps applies.
type EmissionFactorType string

const (
	// Lifecycle factors include generator construction and fuel supply chains
	// (the API's default and the Aegis-Flow default).
	Lifecycle EmissionFactorType = "lifecycle"
	// Direct factors count combustion emissions only.
	Direct EmissionFactorType = "direct"
)

// Options configures a Client. Zero values are the documented defaults.
type Options struct {
	// BaseURL is the API root (default DefaultBaseURL). Tests point it at a
	// fake server.
	BaseURL string
	// Token is the API key, sent as the auth-token header. Required. It is
	// never logged or put into an error.
	Token string
	// HTTPClient sends the requests (default: a client with a DefaultTimeout
	// timeout).
	HTTPClient *http.Client
	// EmissionFactorType is Lifecycle (default) or Direct. Both yield
	// carbon.Average signals.
	EmissionFactorType EmissionFactorType
	// Logger receives debug records about provider answers (default: discard).
	Logger *slog.Logger
}

// Client is an Electricity Maps carbon.Provider. It is safe for concurrent use.
type Client struct {
	base   string
	token  string
	hc     *http.Client
	factor EmissionFactorType
	log    *slog.Logger

	mu           sync.Mutex
	blockedUntil time.Time // no request before this (set by a 429)
}

var _ carbon.Provider = (*Client)(nil)

// New validates opts and returns a Client.
func New(opts Options) (*Client, error) {
	var errs []error
	base := opts.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("base URL %q is not an absolute http(s) URL", base))
	}
	if opts.Token == "" {
		errs = append(errs, errors.New("token is empty"))
	}
	factor := opts.EmissionFactorType
	if factor == "" {
		factor = Lifecycle
	}
	if factor != Lifecycle && factor != Direct {
		errs = append(errs, fmt.Errorf("emission factor type %q is not %q or %q", factor, Lifecycle, Direct))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: new client: %w", Name, err)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		base:   strings.TrimRight(base, "/"),
		token:  opts.Token,
		hc:     hc,
		factor: factor,
		log:    log,
	}, nil
}

// Name returns "electricitymaps".
func (c *Client) Name() string { return Name }

// Current returns the latest hourly average intensity of zone. The Signal is
// valid for one hour from its datetime.
func (c *Client) Current(ctx context.Context, zone string) (carbon.Signal, error) {
	body, err := c.fetch(ctx, "carbon-intensity/latest", zone)
	if err != nil {
		return carbon.Signal{}, err
	}
	s, err := decodeLatest(body, zone)
	if err != nil {
		return carbon.Signal{}, wrap(zone, err)
	}
	return s, nil
}

// Forecast returns the hourly average-intensity forecast of zone (typically
// the next 24 hours). An empty forecast wraps carbon.ErrNoForecast.
func (c *Client) Forecast(ctx context.Context, zone string) (carbon.Forecast, error) {
	body, err := c.fetch(ctx, "carbon-intensity/forecast", zone)
	if err != nil {
		return carbon.Forecast{}, err
	}
	f, err := decodeSeries(body, zone, false)
	if err != nil {
		return carbon.Forecast{}, wrap(zone, err)
	}
	return f, nil
}

// History returns the past 24 hours of hourly average intensity of zone, as a
// series in the same shape as a forecast (Kind carbon.Average).
func (c *Client) History(ctx context.Context, zone string) (carbon.Forecast, error) {
	body, err := c.fetch(ctx, "carbon-intensity/history", zone)
	if err != nil {
		return carbon.Forecast{}, err
	}
	f, err := decodeSeries(body, zone, true)
	if err != nil {
		return carbon.Forecast{}, wrap(zone, err)
	}
	return f, nil
}

// wrap prefixes err with the provider and zone.
func wrap(zone string, err error) error {
	return fmt.Errorf("%s: zone %q: %w", Name, zone, err)
}

// fetch requests path for zone and returns the body of a 2xx answer.
func (c *Client) fetch(ctx context.Context, path, zone string) ([]byte, error) {
	if strings.TrimSpace(zone) == "" {
		return nil, wrap(zone, fmt.Errorf("%w: zone is empty", carbon.ErrUnknownZone))
	}
	now := time.Now()
	c.mu.Lock()
	wait := c.blockedUntil.Sub(now)
	c.mu.Unlock()
	if wait > 0 {
		return nil, wrap(zone, &carbon.RateLimitError{RetryAfter: wait})
	}
	q := url.Values{}
	q.Set("zone", zone)
	q.Set("emissionFactorType", string(c.factor))
	// Without this the API answers for the caller's IP location when it does
	// not recognise the zone.
	q.Set("shouldUseFallbackCallerLookup", "false")
	h := http.Header{}
	h.Set("auth-token", c.token)
	resp, err := apiclient.Get(ctx, c.hc, c.base+"/"+path+"?"+q.Encode(), h)
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
