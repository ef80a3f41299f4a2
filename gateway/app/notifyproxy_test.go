package app

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smsgate/smsgate/providers/providertest"
)

// egressProxy is a forward proxy as a network's egress has one, tunnels only (CONNECT). It
// records each request's method, target and Proxy-Authorization.
type egressProxy struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
	auth []string
	// wantAuth, when set, is the Proxy-Authorization it takes; others get 407.
	wantAuth string
}

func newEgressProxy(t *testing.T) *egressProxy {
	p := &egressProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+r.Host)
		p.auth = append(p.auth, r.Header.Get("Proxy-Authorization"))
		want := p.wantAuth
		p.mu.Unlock()
		if want != "" && r.Header.Get("Proxy-Authorization") != want {
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
		if r.Method != http.MethodConnect {
			w.WriteHeader(http.StatusMethodNotAllowed) // pushes ask for tunnels only
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		// Hijack first, then answer on the raw connection; and read the client's bytes through the
		// buffer Hijack returns: the server may already have read the start of the TLS handshake.
		down, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		if _, err := down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
			up.Close()
			down.Close()
			return
		}
		go func() { io.Copy(up, brw.Reader); up.Close() }()
		io.Copy(down, up)
		down.Close()
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *egressProxy) requests() ([]string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...), append([]string(nil), p.auth...)
}

// TestPushesThroughTheProxyGoToTheAddressChecked: through server.notify_proxy, a push asks the
// proxy for the address the gateway resolved and checked, never for the name (which the proxy
// would resolve again, perhaps to the gateway's own network): CONNECT ip:port, for http as for
// https, with the certificate still checked against the name and the name in Host.
// A name that resolves inside the network is refused before the proxy hears of it.
func TestPushesThroughTheProxyGoToTheAddressChecked(t *testing.T) {
	t.Parallel()
	var hostSeen sync.Map
	hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostSeen.Store(r.Host, true)
		hostSeen.Store(r.URL.Path, true)
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}
	})
	tlsHook := httptest.NewTLSServer(hook) // its certificate names example.com
	defer tlsHook.Close()
	plainHook := httptest.NewServer(hook)
	defer plainHook.Close()
	proxy := newEgressProxy(t)
	pu, _ := url.Parse(proxy.URL)
	pu.User = url.UserPassword("gw", "proxy-pass")
	loopback := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	client := func(private bool) *http.Client {
		c := proxiedPushClient(pu, private, pushTimeout)
		pt := c.Transport.(*pinningTransport)
		pt.resolve = func(_ context.Context, host string) ([]netip.Addr, error) {
			if host == "example.com" || host == "hooks.test" || host == "other.test" {
				return loopback, nil
			}
			return nil, errors.New("no such host")
		}
		pt.tlsConfig = tlsHook.Client().Transport.(*http.Transport).TLSClientConfig
		return c
	}
	n := newNotifier(nil)
	tlsPort := tlsHook.URL[strings.LastIndex(tlsHook.URL, ":")+1:]
	plainPort := plainHook.URL[strings.LastIndex(plainHook.URL, ":")+1:]

	if err := n.post(client(true), "https://example.com:"+tlsPort+"/reports", []byte(`{}`)); err != nil {
		t.Fatalf("https through the proxy: %v", err)
	}
	if err := n.post(client(true), "http://hooks.test:"+plainPort+"/reports", []byte(`{}`)); err != nil {
		t.Fatalf("http through the proxy: %v", err)
	}
	seen, auth := proxy.requests()
	want := []string{"CONNECT 127.0.0.1:" + tlsPort, "CONNECT 127.0.0.1:" + plainPort}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("the proxy was asked for\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("gw:proxy-pass"))
	for i, a := range auth {
		if a != basic {
			t.Errorf("request %d to the proxy: Proxy-Authorization %q, want the proxy URL's user", i, a)
		}
	}
	for _, h := range []string{"example.com:" + tlsPort, "hooks.test:" + plainPort} {
		if _, ok := hostSeen.Load(h); !ok {
			t.Errorf("the hook never saw Host %s", h)
		}
	}

	// A proxy that refuses the user: the push fails saying so (without the password).
	proxy.mu.Lock()
	proxy.wantAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte("gw:other-pass"))
	proxy.mu.Unlock()
	if err := n.post(client(true), "https://example.com:"+tlsPort+"/reports", []byte(`{}`)); err == nil ||
		!strings.Contains(err.Error(), "answered 407 to CONNECT") || strings.Contains(err.Error(), "proxy-pass") {
		t.Errorf("a proxy that refused the user: %v", err)
	}
	proxy.mu.Lock()
	proxy.wantAuth, proxy.seen = "", proxy.seen[:2]
	proxy.mu.Unlock()
	// The certificate is checked against the name, not the address asked for.
	if err := n.post(client(true), "https://other.test:"+tlsPort+"/reports", []byte(`{}`)); err == nil {
		t.Error("a certificate that does not name the host was taken")
	}
	// A tenant without notify_private_addresses: refused before the proxy hears of it.
	before, _ := proxy.requests()
	err := n.post(client(false), "https://example.com:"+tlsPort+"/reports", []byte(`{}`))
	var np *notPublicError
	if !errors.As(err, &np) || np.addr != loopback[0] {
		t.Errorf("a name resolving to loopback, public addresses only: %v", err)
	}
	if after, _ := proxy.requests(); len(after) != len(before) {
		t.Errorf("the proxy was asked for %s", after[len(before):])
	}
	// A hook that redirects is not followed: the push failed, and went nowhere else.
	if err := n.post(client(true), "http://hooks.test:"+plainPort+"/moved", []byte(`{}`)); err == nil {
		t.Error("a push answered 302 counted as delivered")
	}
	if _, ok := hostSeen.Load("/elsewhere"); ok {
		t.Error("the push followed the hook's redirect")
	}
}

// TestAURLWithoutAPortHasItsSchemes: a notify URL or a proxy URL naming no port is reached on
// its scheme's (80 for http, 443 for https), one naming a port on that port.
func TestAURLWithoutAPortHasItsSchemes(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{"http://proxy.example": "80", "https://proxy.example": "443",
		"https://proxy.example:8443": "8443", "http://[2001:db8::1]": "80", "https://user:pw@10.0.0.1:3128/": "3128"} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := portOf(u); got != want {
			t.Errorf("%s: port %q, want %q", raw, got, want)
		}
	}
}

// TestPinPicksAnAddressItMayReach: of a name's addresses, a push goes to the first it may reach;
// an address literal is taken as is, checked the same way.
func TestPinPicksAnAddressItMayReach(t *testing.T) {
	t.Parallel()
	pt := proxiedPushClient(&url.URL{Scheme: "http", Host: "proxy:3128"}, false, pushTimeout).Transport.(*pinningTransport)
	pt.resolve = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("::ffff:203.0.113.9"), netip.MustParseAddr("198.51.100.1")}, nil
	}
	ctx := context.Background()
	if a, err := pt.pin(ctx, "mixed.example"); err != nil || a != netip.MustParseAddr("203.0.113.9") {
		t.Errorf("mixed addresses: %v %v, want the first public one, 203.0.113.9", a, err)
	}
	if _, err := pt.pin(ctx, "169.254.169.254"); err == nil {
		t.Error("the metadata address as a literal was taken")
	}
	// Refused, an address is named as the operator writes it, not in its IPv4-mapped form.
	if _, err := pt.pin(ctx, "::ffff:10.1.2.3"); err == nil || !strings.Contains(err.Error(), "resolved to 10.1.2.3, not a public address") {
		t.Errorf("a private address in IPv4-mapped form: %v", err)
	}
	pt.allowPrivate = true
	if a, err := pt.pin(ctx, "mixed.example"); err != nil || a != netip.MustParseAddr("10.0.0.7") {
		t.Errorf("private addresses allowed: %v %v, want the first, 10.0.0.7", a, err)
	}
}

// TestAPushGoesThroughTheConfiguredProxy: a gateway with server.notify_proxy pushes its reports
// through it, a reload that removes the proxy makes them go directly again, and one that names
// another proxy sends them through that one; a tenant without notify_private_addresses reaches
// no address inside the network through it.
func TestAPushGoesThroughTheConfiguredProxy(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	proxy := newEgressProxy(t)
	clk := &testClock{t: time.Now()}
	cfg := strings.ReplaceAll(compatConfig, "$HOOKHOST", strings.TrimPrefix(h.URL, "http://"))
	cfg = strings.Replace(cfg, `server: {request_timeout: 3s, public_url: "https://sms.example.com"}`,
		`server: {request_timeout: 3s, public_url: "https://sms.example.com", notify_proxy: "`+proxy.URL+`"}`, 1)
	c, ib, tw := startOnFakesWith(t, cfg, Options{Now: clk.Now})
	c.app.notifier.backoff = nil
	ch := &compatHarness{harness: c, ib: ib, tw: tw}
	id := sendPushed(t, ch, h, "14155550170")
	waitUntil(t, "the push was made", func() bool { return h.count(id) == 1 })
	seen, _ := proxy.requests()
	if len(seen) != 1 || !strings.HasPrefix(seen[0], "CONNECT 127.0.0.1:") {
		t.Errorf("the proxy was asked for %v, want the one push, to the address", seen)
	}
	raw, reload := reloader(t, c.app, c.path)
	reload(strings.Replace(string(raw), `, notify_proxy: "`+proxy.URL+`"`, "", 1))
	id = sendPushed(t, ch, h, "14155550171")
	waitUntil(t, "the push after the reload was made", func() bool { return h.count(id) == 1 })
	if seen, _ := proxy.requests(); len(seen) != 1 {
		t.Errorf("after the reload removed the proxy, it was asked for %v", seen[1:])
	}
	// A reload that names another proxy: the pushes go through it, not through the first.
	proxy2 := newEgressProxy(t)
	reload(strings.Replace(string(raw), proxy.URL, proxy2.URL, 1))
	id = sendPushed(t, ch, h, "14155550172")
	waitUntil(t, "the push through the other proxy was made", func() bool { return h.count(id) == 1 })
	if seen, _ := proxy.requests(); len(seen) != 1 {
		t.Errorf("the first proxy was asked for %v after the reload named another", seen[1:])
	}
	if seen, _ := proxy2.requests(); len(seen) != 1 {
		t.Errorf("the proxy the reload named was asked for %v, want the push", seen)
	}
	// Through the proxy too, a tenant without notify_private_addresses reaches no address inside
	// the network: the push is refused before any CONNECT.
	c.app.rt.Load().byName["acme"].notifyPrivate = false // a name need not say it resolves inside
	sendPushed(t, ch, h, "14155550173")
	waitUntil(t, "the push was refused", func() bool { return notified(ch, "blocked") == 1 })
	if seen, _ := proxy2.requests(); len(seen) != 1 {
		t.Errorf("a push to an address inside the network went through the proxy: %v", seen[1:])
	}
}

// TestTheProxyTunnelAtItsEdges: the default ports (a push URL's, the proxy URL's), a port that
// is none, a name with no address or none resolved, a proxy reached over TLS, a proxy that sends
// bytes before the tunnel is used (they would be read as the hook's answer), and the bound on the
// transports kept per host.
func TestTheProxyTunnelAtItsEdges(t *testing.T) {
	t.Parallel()
	proxy := newEgressProxy(t)
	pu, _ := url.Parse(proxy.URL)
	client := func(proxyURL *url.URL) (*http.Client, *pinningTransport) {
		c := proxiedPushClient(proxyURL, true, pushTimeout)
		pt := c.Transport.(*pinningTransport)
		pt.resolve = func(_ context.Context, host string) ([]netip.Addr, error) {
			switch host {
			case "hooks.test":
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			case "empty.test":
				return nil, nil
			}
			return nil, errors.New("no such host")
		}
		return c, pt
	}
	n := newNotifier(nil)
	c, pt := client(pu)
	// No port in the push URL: the scheme's (the proxy cannot reach it here, but is asked for it).
	for _, u := range []string{"http://hooks.test/reports", "https://hooks.test/reports"} {
		if err := n.post(c, u, []byte(`{}`)); err == nil {
			t.Errorf("%s: no error though nothing listens there", u)
		}
	}
	if seen, _ := proxy.requests(); strings.Join(seen, ",") != "CONNECT 127.0.0.1:80,CONNECT 127.0.0.1:443" {
		t.Errorf("the proxy was asked for %v, want the scheme's ports", seen)
	}
	for u, want := range map[string]string{"http://hooks.test:99999/reports": "no valid port", "http://empty.test:8080/": "has no address", "http://nowhere.test:8080/": "no such host"} {
		// The client's own error: the notifier words every failure to reach a URL alike.
		if res, err := c.Post(u, "application/json", strings.NewReader(`{}`)); err == nil || !strings.Contains(err.Error(), want) {
			if err == nil {
				res.Body.Close()
			}
			t.Errorf("%s: %v, want %q", u, err, want)
		}
	}
	if seen, _ := proxy.requests(); len(seen) != 2 {
		t.Errorf("the proxy was asked for %v, though no address was pinned", seen[2:])
	}
	// A proxy URL without a port is reached on its scheme's.
	if _, err := pt.tunnel(context.Background(), "tcp", "127.0.0.1:9"); err == nil {
		t.Fatal("a tunnel through a proxy that is not there")
	}
	noPort, _ := url.Parse("http://127.0.0.1")
	_, npt := client(noPort)
	if _, err := npt.tunnel(context.Background(), "tcp", "127.0.0.1:9"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:80") {
		t.Errorf("a proxy URL without a port: %v, want a dial of port 80", err)
	}

	// A proxy reached over TLS, checked against its own name.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hook.Close()
	tlsProxy := newEgressProxy(t)
	tlsProxy.Close()
	tlsProxy.Server = httptest.NewUnstartedServer(tlsProxy.Config.Handler)
	tlsProxy.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	tlsProxy.StartTLS()
	defer tlsProxy.Server.Close()
	tpu, _ := url.Parse(tlsProxy.URL)
	tc, tpt := client(tpu)
	tpt.tlsConfig = tlsProxy.Client().Transport.(*http.Transport).TLSClientConfig
	port := hook.URL[strings.LastIndex(hook.URL, ":")+1:]
	if err := n.post(tc, "http://hooks.test:"+port+"/reports", []byte(`{}`)); err != nil {
		t.Errorf("through a proxy over TLS: %v", err)
	}
	if seen, _ := tlsProxy.requests(); len(seen) != 1 || seen[0] != "CONNECT 127.0.0.1:"+port {
		t.Errorf("the TLS proxy was asked for %v", seen)
	}
	tpt.tlsConfig = nil // the system's roots: the test's certificate is not among them
	tpt.byHost = map[string]*http.Transport{}
	if err := n.post(tc, "http://hooks.test:"+port+"/reports", []byte(`{}`)); err == nil {
		t.Error("a proxy whose certificate is not trusted was used")
	}

	// rawProxy is a proxy that reads the CONNECT and hands the connection to serve.
	rawProxy := func(serve func(net.Conn)) *pinningTransport {
		u, _ := url.Parse("http://" + providertest.RawServer(t, func(conn net.Conn) {
			conn.Read(make([]byte, 4096))
			serve(conn)
		}))
		_, pt := client(u)
		return pt
	}
	// A proxy that answers the CONNECT and more bytes at once.
	eager := rawProxy(func(conn net.Conn) {
		conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"))
		time.Sleep(100 * time.Millisecond)
	})
	if _, err := eager.tunnel(context.Background(), "tcp", "127.0.0.1:9"); err == nil || !strings.Contains(err.Error(), "spoke before the tunnel was used") {
		t.Errorf("a proxy that spoke first: %v", err)
	}
	// A CONNECT answered with a redirect is no tunnel.
	redirecting := rawProxy(func(conn net.Conn) {
		conn.Write([]byte("HTTP/1.1 302 Found\r\nLocation: http://elsewhere.test/\r\nContent-Length: 0\r\n\r\n"))
	})
	var refused *proxyRefusedError
	if _, err := redirecting.tunnel(context.Background(), "tcp", "127.0.0.1:9"); !errors.As(err, &refused) || refused.status != http.StatusFound {
		t.Errorf("a CONNECT answered 302: %v", err)
	}
	// A proxy that never answers the CONNECT holds the dial no longer than its context allows.
	silent := rawProxy(func(conn net.Conn) { io.Copy(io.Discard, conn) })
	silentCtx, silentCancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer silentCancel()
	dialled := make(chan error, 1)
	go func() {
		conn, err := silent.tunnel(silentCtx, "tcp", "127.0.0.1:9")
		if conn != nil {
			conn.Close()
		}
		dialled <- err
	}()
	select {
	case err := <-dialled:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("a proxy that never answers: %v, want the deadline's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("a proxy that never answers held the dial 5 s past its context's deadline of 200 ms")
	}
	// A tunnel outlives the deadline of the context that dialled it (its connection is pooled).
	echo := rawProxy(func(conn net.Conn) {
		conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		io.Copy(conn, conn)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	conn, err := echo.tunnel(ctx, "tcp", "127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	<-ctx.Done()
	time.Sleep(50 * time.Millisecond)
	got := make([]byte, 4)
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Errorf("a tunnel after its dial's deadline: %v", err)
	} else if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping" {
		t.Errorf("a tunnel after its dial's deadline: read %q, %v", got, err)
	}

	// At most pinnedHostsMax transports are kept; past it they are all made again.
	pt.byHost = map[string]*http.Transport{}
	first := pt.transport("h0.test")
	for i := 1; i < pinnedHostsMax; i++ {
		pt.transport(fmt.Sprintf("h%d.test", i))
	}
	if pt.transport("h0.test") != first || len(pt.byHost) != pinnedHostsMax {
		t.Errorf("%d transports kept below the bound, or one made again", len(pt.byHost))
	}
	pt.transport("one-more.test")
	if len(pt.byHost) != 1 || pt.transport("h0.test") == first {
		t.Errorf("past the bound: %d transports kept, want only the new one", len(pt.byHost))
	}
	if tr := pt.transport("hooks.test"); tr.TLSClientConfig.ServerName != "hooks.test" || tr.Proxy != nil {
		t.Errorf("a host's transport: TLS name %q, proxy set %v", tr.TLSClientConfig.ServerName, tr.Proxy != nil)
	}
}

// TestAPostToAHangingEndpointEndsAtItsTimeout: each post of a push is bounded (pushTimeout, 5 s
// in production), whether it connects directly or through the proxy: an endpoint that takes the
// request and never answers holds a push worker no longer.
func TestAPostToAHangingEndpointEndsAtItsTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	hang, release := providertest.Hanging(t)
	defer release()
	proxy := newEgressProxy(t)
	pu, _ := url.Parse(proxy.URL)
	n := newNotifier(nil)
	for name, c := range map[string]*http.Client{"directly": pushClient(nil, timeout), "through the proxy": proxiedPushClient(pu, true, timeout)} {
		posted := make(chan error, 1)
		go func() { posted <- n.post(c, hang.URL+"/reports", []byte(`{}`)) }()
		select {
		case err := <-posted:
			if err == nil {
				t.Errorf("%s: a post the endpoint never answered succeeded", name)
			}
		case <-time.After(10 * timeout):
			t.Errorf("%s: a post to an endpoint that never answers outlived its timeout (%v) tenfold", name, timeout)
		}
	}
	if seen, _ := proxy.requests(); len(seen) != 1 {
		t.Errorf("the proxy was asked for %v, want one tunnel", seen)
	}
}
