package app

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

// pushes through the operator's proxy (server.notify_proxy)
//
// Where egress passes a proxy, the address check of publicOnly cannot run on the connection: it
// goes to the proxy, which would resolve the tenant's name itself, and a name that resolves to a
// public address when the gateway looks could resolve to 127.0.0.1 when the proxy does. So the
// gateway resolves the notify URL's host, refuses a name whose addresses are all inside the network
// (as publicOnly does, unless the tenant has notify_private_addresses), and asks the proxy for a
// tunnel to the address it checked (CONNECT ip:port), for http as for https: inside it the TLS
// certificate is still verified against the host's name, and Host names it. (An absolute URL,
// as proxies take plain http, carries one host only: with the address, the endpoint would be
// sent the address as its Host; with the name, the proxy would resolve it again.)

// pinningTransport is the RoundTripper of pushes through a proxy.
type pinningTransport struct {
	proxy        *url.URL
	allowPrivate bool
	// resolve looks a host's addresses up; tlsConfig is the base of every TLS config (tests set
	// their roots there).
	resolve   func(ctx context.Context, host string) ([]netip.Addr, error)
	tlsConfig *tls.Config
	// timeout bounds the dial of the proxy and, without a deadline of the dial's own, the CONNECT
	// (the client's timeout, pushTimeout).
	timeout time.Duration

	mu sync.Mutex
	// byHost holds a transport per notify host (its TLS name), pooling its connections; at most
	// pinnedHostsMax, then they are all dropped and made again.
	byHost map[string]*http.Transport
}

const pinnedHostsMax = 64

// proxiedPushClient is pushClient's counterpart through proxy.
func proxiedPushClient(proxy *url.URL, allowPrivate bool, timeout time.Duration) *http.Client {
	t := &pinningTransport{proxy: proxy, allowPrivate: allowPrivate, byHost: map[string]*http.Transport{},
		timeout: timeout,
		resolve: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}}
	return &http.Client{Timeout: timeout, Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (t *pinningTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Hostname()
	p, err := strconv.ParseUint(portOf(req.URL), 10, 16)
	if err != nil {
		return nil, errors.New("the notify URL has no valid port")
	}
	addr, err := t.pin(req.Context(), host)
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context())
	out.URL.Host = netip.AddrPortFrom(addr, uint16(p)).String()
	out.Host = req.URL.Host
	return t.transport(host).RoundTrip(out)
}

// pin is the address a push to host goes to: the first of its addresses that it may reach.
func (t *pinningTransport) pin(ctx context.Context, host string) (netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = t.resolve(ctx, host); err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if a = a.Unmap(); t.allowPrivate || gateway.PublicAddr(a) {
			return a, nil
		}
	}
	if len(addrs) == 0 {
		return netip.Addr{}, errors.New("the notify URL's host has no address")
	}
	return netip.Addr{}, &notPublicError{addrs[0].Unmap()}
}

// transport is the transport of pushes to host: through the proxy, TLS checked against host.
func (t *pinningTransport) transport(host string) *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr := t.byHost[host]; tr != nil {
		return tr
	}
	if len(t.byHost) >= pinnedHostsMax {
		for h, tr := range t.byHost {
			tr.CloseIdleConnections()
			delete(t.byHost, h)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = t.tunnel
	cfg := &tls.Config{}
	if t.tlsConfig != nil {
		cfg = t.tlsConfig.Clone()
	}
	cfg.ServerName = host
	tr.TLSClientConfig = cfg
	t.byHost[host] = tr
	return tr
}

// tunnel connects to addr (the address pinned) through the proxy: CONNECT, with the proxy URL's
// user as Proxy-Authorization.
func (t *pinningTransport) tunnel(ctx context.Context, _, addr string) (net.Conn, error) {
	proxyAddr := net.JoinHostPort(t.proxy.Hostname(), portOf(t.proxy))
	conn, err := (&net.Dialer{Timeout: t.timeout, KeepAlive: 30 * time.Second}).DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	if t.proxy.Scheme == "https" {
		cfg := &tls.Config{}
		if t.tlsConfig != nil {
			cfg = t.tlsConfig.Clone()
		}
		cfg.ServerName = t.proxy.Hostname()
		conn = tls.Client(conn, cfg)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(t.timeout)
	}
	_ = conn.SetDeadline(deadline)
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if u := t.proxy.User; u != nil {
		pass, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	br := bufio.NewReader(conn)
	var res *http.Response
	if err = req.Write(conn); err == nil {
		res, err = http.ReadResponse(br, req)
	}
	if err == nil && res.StatusCode != http.StatusOK {
		err = &proxyRefusedError{res.StatusCode}
	}
	if err == nil && br.Buffered() > 0 {
		err = errors.New("the proxy spoke before the tunnel was used")
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// portOf is u's port, or its scheme's when it names none (gateway.DefaultPort; "" for a scheme
// other than http and https, which config.Load does not let through).
func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return gateway.DefaultPort(u.Scheme)
}

// proxyRefusedError is the proxy's answer to a CONNECT that was not a tunnel (407: its user or
// password; 403: its rules).
type proxyRefusedError struct{ status int }

func (e *proxyRefusedError) Error() string {
	return fmt.Sprintf("the proxy (server.notify_proxy) answered %d to CONNECT", e.status)
}
