package watttime

import (
	"context"
	"errors"
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
const Name = "watttime"

const (
	// DefaultBaseURL is the WattTime API root.
	DefaultBaseURL = "https://api.watttime.org"
	// DefaultTimeout bounds one request when Options.HTTPClient is nil.
	DefaultTimeout = 10 * time.Second
	// SignalType is the WattTime signal this package reads: CO2 MOER.
	SignalType = "co2_moer"

	// TokenLifetime is how long WattTime keeps a login token valid.
	TokenLifetime = 30 * time.Minute
	// TokenRefreshAfter is the token age at which the Client logs in again,
	// leaving a margin before TokenLifetime.
	TokenRefreshAfter = 25 * time.Minute

	// LoginLimit logins at most in any LimitPeriod (WattTime's /login limit).
	LoginLimit = 100
	// RequestLimit requests at most, logins included, in any LimitPeriod.
	RequestLimit = 3000
	// LimitPeriod is the rolling window of both limits.
	LimitPeriod = 5 * time.Minute
)

// Options configures a Client. Zero values are the documented defaults.
type Options struct {
	// BaseURL is the API root (default DefaultBaseURL).
	BaseURL string
	// Username and Password are the WattTime account credentials, sent only
	// to /login as HTTP Basic auth. Both required; never logged.
	Username string
	Password string
	// HTTPClient sends the requests (default: a client with a DefaultTimeout
	// timeout).
	HTTPClient *http.Client
	// Logger receives debug records about logins and rate limits (default:
	// discard). Credentials and tokens are never logged.
	Logger *slog.Logger
}

// Index is WattTime's signal index: where the region's current MOER lies,
// as a percentile from 0 (cleanest) to 100 (dirtiest), among that same
// region's recent values. It is region-relative and must never be compared
// across regions or used as an intensity.
type Index struct {
	// Region is the WattTime region code.
	Region string
	// SignalType is the signal the index ranks (co2_moer).
	SignalType string
	// Percentile is 0..100, relative to this region only.
	Percentile float64
	// ObservedAt is the start of the interval the index describes.
	ObservedAt time.Time
	// ValidUntil is the end of that interval.
	ValidUntil time.Time
}

// Region is the answer of RegionFromLoc.
type Region struct {
	// Region is the WattTime region code, usable as a zone.
	Region string
	// FullName is the region's human-readable name.
	FullName string
	// SignalType is the signal the lookup was for.
	SignalType string
}

// Client is a WattTime carbon.Provider. It is safe for concurrent use.
type Client struct {
	base     string
	user     string
	pass     string
	hc       *http.Client
	log      *slog.Logger
	loginSem chan struct{} // one login in flight at a time

	mu               sync.Mutex
	token            string
	tokenAt          time.Time
	logins           *window
	requests         *window
	dataBlockedUntil time.Time // after a 429 from a data endpoint
	loginBlocked     time.Time // after a 429 from /login
}

var _ carbon.Provider = (*Client)(nil)

// New validates opts and returns a Client. It does not log in until the
// first request.
func New(opts Options) (*Client, error) {
	var errs []error
	base := opts.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("base URL %q is not an absolute http(s) URL", base))
	}
	if opts.Username == "" {
		errs = append(errs, errors.New("username is empty"))
	}
	if opts.Password == "" {
		errs = append(errs, errors.New("password is empty"))
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
		base:     strings.TrimRight(base, "/"),
		user:     opts.Username,
		pass:     opts.Password,
		hc:       hc,
		log:      log,
		loginSem: make(chan struct{}, 1),
		logins:   newWindow(LoginLimit, LimitPeriod),
		requests: newWindow(RequestLimit, LimitPeriod),
	}, nil
}

// Name returns "watttime".
func (c *Client) Name() string { return Name }

// Current returns the region's current MOER in gCO2eq/kWh (Kind
// carbon.Marginal): the first point of the latest forecast, valid until the
// end of its five-minute interval.
func (c *Client) Current(ctx context.Context, region string) (carbon.Signal, error) {
	q := url.Values{"region": {region}, "signal_type": {SignalType}, "horizon_hours": {"1"}}
	body, err := c.data(ctx, region, "/v3/forecast", q)
	if err != nil {
		return carbon.Signal{}, err
	}
	f, err := decodeData(body, region)
	if err != nil {
		if errors.Is(err, carbon.ErrNoForecast) {
			err = fmt.Errorf("%w: forecast has no current point", carbon.ErrBadResponse)
		}
		return carbon.Signal{}, wrap(region, err)
	}
	p := f.Points[0]
	return carbon.Signal{
		Intensity:  p.Intensity,
		Kind:       carbon.Marginal,
		Source:     Name,
		ObservedAt: p.Start,
		ValidUntil: p.End(),
	}, nil
}

// Forecast returns the region's MOER forecast (five-minute points, in
// gCO2eq/kWh, Kind carbon.Marginal), using WattTime's default horizon.
func (c *Client) Forecast(ctx context.Context, region string) (carbon.Forecast, error) {
	q := url.Values{"region": {region}, "signal_type": {SignalType}}
	body, err := c.data(ctx, region, "/v3/forecast", q)
	if err != nil {
		return carbon.Forecast{}, err
	}
	f, err := decodeData(body, region)
	if err != nil {
		return carbon.Forecast{}, wrap(region, err)
	}
	return f, nil
}

// History returns the region's historical MOER between start and end
// (WattTime allows at most 32 days per request), in gCO2eq/kWh.
func (c *Client) History(ctx context.Context, region string, start, end time.Time) (carbon.Forecast, error) {
	if !end.After(start) {
		return carbon.Forecast{}, wrap(region, fmt.Errorf("history end %s is not after start %s",
			end.UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339)))
	}
	q := url.Values{
		"region":      {region},
		"signal_type": {SignalType},
		"start":       {start.UTC().Format(time.RFC3339)},
		"end":         {end.UTC().Format(time.RFC3339)},
	}
	body, err := c.data(ctx, region, "/v3/historical", q)
	if err != nil {
		return carbon.Forecast{}, err
	}
	f, err := decodeData(body, region)
	if err != nil {
		return carbon.Forecast{}, wrap(region, err)
	}
	return f, nil
}

// Index returns the region's signal index: a 0-100 percentile relative to
// the region's own recent MOER. Never compare it across regions.
func (c *Client) Index(ctx context.Context, region string) (Index, error) {
	q := url.Values{"region": {region}, "signal_type": {SignalType}}
	body, err := c.data(ctx, region, "/v3/signal-index", q)
	if err != nil {
		return Index{}, err
	}
	ix, err := decodeIndex(body, region)
	if err != nil {
		return Index{}, wrap(region, err)
	}
	return ix, nil
}

// RegionFromLoc returns the WattTime region serving a location.
func (c *Client) RegionFromLoc(ctx context.Context, latitude, longitude float64) (Region, error) {
	where := fmt.Sprintf("%s: location %g,%g", Name, latitude, longitude)
	if !(latitude >= -90 && latitude <= 90) || !(longitude >= -180 && longitude <= 180) {
		return Region{}, fmt.Errorf("%s: %w: coordinates out of range", where, carbon.ErrUnknownZone)
	}
	q := url.Values{
		"latitude":    {strconv.FormatFloat(latitude, 'f', -1, 64)},
		"longitude":   {strconv.FormatFloat(longitude, 'f', -1, 64)},
		"signal_type": {SignalType},
	}
	body, err := c.request(ctx, "/v3/region-from-loc", q)
	if err != nil {
		return Region{}, fmt.Errorf("%s: %w", where, err)
	}
	r, err := decodeRegion(body)
	if err != nil {
		return Region{}, fmt.Errorf("%s: %w", where, err)
	}
	return r, nil
}

// wrap prefixes err with the provider and region.
func wrap(region string, err error) error {
	return fmt.Errorf("%s: zone %q: %w", Name, region, err)
}

// data requests a region's data endpoint.
func (c *Client) data(ctx context.Context, region, path string, q url.Values) ([]byte, error) {
	if strings.TrimSpace(region) == "" {
		return nil, wrap(region, fmt.Errorf("%w: region is empty", carbon.ErrUnknownZone))
	}
	body, err := c.request(ctx, path, q)
	if err != nil {
		return nil, wrap(region, err)
	}
	return body, nil
}

// request sends an authenticated GET and returns the body of a 2xx answer.
// A 401 with a cached token leads to one new login and one retry.
func (c *Client) request(ctx context.Context, path string, q url.Values) ([]byte, error) {
	u := c.base + path + "?" + q.Encode()
	token, err := c.bearer(ctx, "")
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, u, token)
	if err != nil {
		return nil, err
	}
	if resp.Status == http.StatusUnauthorized {
		c.log.Debug("provider token refused, logging in again", "provider", Name)
		if token, err = c.bearer(ctx, token); err != nil {
			return nil, err
		}
		if resp, err = c.send(ctx, u, token); err != nil {
			return nil, err
		}
	}
	if resp.Status == http.StatusTooManyRequests {
		d := apiclient.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		c.mu.Lock()
		// The 3,000-request limit counts logins too, so logins wait as well.
		until := time.Now().Add(d)
		if until.After(c.dataBlockedUntil) {
			c.dataBlockedUntil = until
		}
		if until.After(c.loginBlocked) {
			c.loginBlocked = until
		}
		c.mu.Unlock()
		c.log.Debug("provider rate limited", "provider", Name, "retry_after", d)
		return nil, &carbon.RateLimitError{RetryAfter: d}
	}
	if resp.Status < 200 || resp.Status > 299 {
		return nil, statusError(resp.Status, resp.Body)
	}
	return resp.Body, nil
}

// send sends one data request if the local limits allow it.
func (c *Client) send(ctx context.Context, u, token string) (apiclient.Response, error) {
	now := time.Now()
	c.mu.Lock()
	if wait := c.dataBlockedUntil.Sub(now); wait > 0 {
		c.mu.Unlock()
		return apiclient.Response{}, &carbon.RateLimitError{RetryAfter: wait}
	}
	wait, ok := c.requests.take(now)
	c.mu.Unlock()
	if !ok {
		return apiclient.Response{}, fmt.Errorf("local limit of %d requests per %s: %w", RequestLimit, LimitPeriod,
			&carbon.RateLimitError{RetryAfter: wait})
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	return apiclient.Get(ctx, c.hc, u, h)
}

// bearer returns a token younger than TokenRefreshAfter, logging in when
// there is none. stale is a token the API has just refused; it is not
// returned again.
func (c *Client) bearer(ctx context.Context, stale string) (string, error) {
	if t, ok := c.cached(stale); ok {
		return t, nil
	}
	select {
	case c.loginSem <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("%w: wait for login: %w", carbon.ErrUnavailable, ctx.Err())
	}
	defer func() { <-c.loginSem }()
	// Another caller may have logged in while this one waited.
	if t, ok := c.cached(stale); ok {
		return t, nil
	}
	t, err := c.login(ctx)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	return t, nil
}

// cached returns the cached token if it is fresh and not stale.
func (c *Client) cached(stale string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && c.token != stale && time.Since(c.tokenAt) < TokenRefreshAfter {
		return c.token, true
	}
	return "", false
}

// login obtains a new token with HTTP Basic auth, within the login limits.
func (c *Client) login(ctx context.Context) (string, error) {
	now := time.Now()
	c.mu.Lock()
	if wait := c.loginBlocked.Sub(now); wait > 0 {
		c.mu.Unlock()
		return "", &carbon.RateLimitError{RetryAfter: wait}
	}
	if wait := max(c.logins.room(now), c.requests.room(now)); wait > 0 {
		c.mu.Unlock()
		return "", fmt.Errorf("local limit of %d logins and %d requests per %s: %w",
			LoginLimit, RequestLimit, LimitPeriod, &carbon.RateLimitError{RetryAfter: wait})
	}
	c.logins.take(now)
	c.requests.take(now)
	c.mu.Unlock()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/login", nil)
	if err != nil {
		return "", fmt.Errorf("build request: %w", err)
	}
	req.SetBasicAuth(c.user, c.pass)
	resp, err := apiclient.Get(ctx, c.hc, req.URL.String(), req.Header)
	if err != nil {
		return "", err
	}
	switch {
	case resp.Status == http.StatusTooManyRequests:
		d := apiclient.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		c.mu.Lock()
		if until := time.Now().Add(d); until.After(c.loginBlocked) {
			c.loginBlocked = until
		}
		c.mu.Unlock()
		c.log.Debug("provider login rate limited", "provider", Name, "retry_after", d)
		return "", &carbon.RateLimitError{RetryAfter: d}
	case resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden:
		// The body is not quoted: it could echo what was sent.
		return "", fmt.Errorf("%w: credentials refused (HTTP %d)", carbon.ErrUnauthorized, resp.Status)
	case resp.Status < 200 || resp.Status > 299:
		return "", statusError(resp.Status, resp.Body)
	}
	token, err := decodeLogin(resp.Body)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.token, c.tokenAt = token, now
	c.mu.Unlock()
	c.log.Debug("provider login succeeded", "provider", Name)
	return token, nil
}
