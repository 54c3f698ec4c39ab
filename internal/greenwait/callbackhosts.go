package greenwait

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hostPattern is one entry of Options.CallbackHosts: a host name, "*." and
// a domain (any name below it, not the domain itself), or an IP address;
// with ":port" it admits only that port.
type hostPattern struct {
	host     string // lower case; for a wildcard, the domain after "*."
	wildcard bool
	port     string // "" admits any port
}

func parseHostPattern(s string) (hostPattern, error) {
	var p hostPattern
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
			return p, fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
		}
		host, p.port = h, port
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return p, fmt.Errorf("%q: an address with a zone is not allowed", s)
		}
		p.host = a.Unmap().String()
		return p, nil
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		p.wildcard, host = true, rest
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !validHostName(host) {
		return p, fmt.Errorf("%q: want a host name, \"*.\" and a domain, or an IP address, each with an optional \":port\"", s)
	}
	p.host = host
	return p, nil
}

// validHostName reports whether h is a DNS name: dot-separated labels of
// letters, digits and inner hyphens (underscores tolerated), 1 to 63
// bytes each, 253 in all.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (p hostPattern) match(host, port string) bool {
	if p.port != "" && p.port != port {
		return false
	}
	if p.wildcard {
		return strings.HasSuffix(host, "."+p.host)
	}
	return host == p.host
}

// callbackPolicy decides where completion callbacks may go. With no
// patterns, any host whose addresses are all public; with patterns, only
// the hosts they match, at whatever address (the operator named them).
type callbackPolicy struct {
	allow []hostPattern
}

func newCallbackPolicy(hosts []string) (*callbackPolicy, error) {
	cp := &callbackPolicy{}
	var errs []error
	for i, h := range hosts {
		p, err := parseHostPattern(h)
		if err != nil {
			errs = append(errs, fmt.Errorf("callback host %d: %w", i, err))
			continue
		}
		cp.allow = append(cp.allow, p)
	}
	return cp, errors.Join(errs...)
}

// canonHost returns the host and port a callback URL or dial address
// names, in the form patterns are kept.
func canonHost(host string) string {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func urlPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// listed reports whether a pattern admits host:port.
func (cp *callbackPolicy) listed(host, port string) bool {
	for _, p := range cp.allow {
		if p.match(host, port) {
			return true
		}
	}
	return false
}

// check vets a callback URL at submission. An address that is not public
// is refused at once when it is written as an IP; a name that resolves to
// one is refused when the callback is sent.
func (cp *callbackPolicy) check(u *url.URL) error {
	host, port := canonHost(u.Hostname()), urlPort(u)
	if len(cp.allow) > 0 {
		if !cp.listed(host, port) {
			return fmt.Errorf("host %s (port %s) is not in the allowed callback hosts", host, port)
		}
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && !publicAddr(a) {
		return fmt.Errorf("address %s is not public; name it in the allowed callback hosts to use it", host)
	}
	return nil
}

// dialContext dials a callback connection. A host no pattern admits is
// connected only at a public address, checked after name resolution, so a
// name that resolves (or is rebound) to an internal address is refused.
func (cp *callbackPolicy) dialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	guarded := *d
	guarded.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("callback address %q: %w", address, err)
		}
		if !publicAddr(ap.Addr()) {
			return &refusedAddrError{addr: ap.Addr()}
		}
		return nil
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		host = canonHost(host)
		if len(cp.allow) > 0 {
			if !cp.listed(host, port) {
				// Stored before the list changed: the list in force wins.
				return nil, fmt.Errorf("callback host %s (port %s) is not in the allowed callback hosts", host, port)
			}
			return d.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
}

// newCallbackClient is the default callback client: 10 s per callback, no
// redirects (a redirect could lead anywhere), connections held to cp.
func newCallbackClient(cp *callbackPolicy) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // an environment proxy would connect on the callback's behalf
	tr.DialContext = cp.dialContext(&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second})
	tr.MaxIdleConnsPerHost = 4
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// refusedAddrError is the dial error for a callback aimed at an internal
// address.
type refusedAddrError struct{ addr netip.Addr }

func (e *refusedAddrError) Error() string {
	return "address " + e.addr.String() + " is not public; name the host in the allowed callback hosts to use it"
}

// Ranges that are global unicast to netip but not places on the internet:
// "this network" (connecting to 0.x reaches the local host on Linux) and
// the carrier-grade NAT range (RFC 6598).
var (
	thisNet = netip.MustParsePrefix("0.0.0.0/8")
	shared  = netip.MustParsePrefix("100.64.0.0/10")
)

// publicAddr reports whether a is a global unicast address outside the
// private, shared and loopback ranges: somewhere a client may point a
// callback without naming it in the configuration.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	switch {
	case !a.IsValid(), a.IsUnspecified(), a.IsLoopback(), a.IsPrivate(),
		a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast(), a.IsMulticast(),
		!a.IsGlobalUnicast(), thisNet.Contains(a), shared.Contains(a):
		return false
	}
	return true
}
