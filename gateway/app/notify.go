package app

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/smsgate/smsgate/gateway"
	ib "github.com/smsgate/smsgate/gateway/infobipcompat"
	"github.com/smsgate/smsgate/gateway/store"
)

// Pushed delivery reports of the Infobip-compatible API.
//
// A final report for a message sent with a notify URL is pushed there. The push is kept in the
// message log until it is done, never only in memory: when its report is recorded the message
// falls due (store.Backend.Due), and a sweep claims what is due, per tenant, before pushing it.
// A claim counts a try and sets when the message falls due again (store.NextPush: 2 min, then
// 5, 10, ... as Infobip retries, 12 tries over about 11 hours), so a push whose replica dies, or
// whose endpoint is down, is made later by whichever replica sweeps then; a claimed push is made
// by one replica only. Within a try the push is posted up to 3 times (at once, after 1 s, after
// 5 s). A push that succeeds ends it (store.PushDone); so does a notify URL whose host the
// tenant no longer allows. Delivery is at least once: a replica that dies after the endpoint
// answered but before PushDone pushes it again.
//
// Each tenant has its own queue (at most notifyQueueMax; a sweep claims no more than fit) and its
// own workers (at most notifyWorkers): a tenant whose endpoint hangs or fails delays only its own
// pushes, never another tenant's.
//
// A tenant's notify host is the operator's allow list, but its DNS is the tenant's: it could
// point the name at the gateway's own loopback, at a private service beside it or at the cloud's
// metadata address. So a push connects only to a public address (gateway.PublicAddr), checked on
// the address each connection is actually made to, after DNS, unless the tenant has
// notify_private_addresses. Pushes never go through HTTP_PROXY: the check must see the address.
// With server.notify_proxy they go through that proxy, to the address the gateway resolved and
// checked (notifyproxy.go).

const (
	// notifyQueueMax bounds a tenant's claimed pushes waiting on a replica (a sweep claims no
	// more than fit): what its workers push before the first retry falls due (2 min) even when
	// each post hangs to its timeout (3 posts of 5 s and 6 s of backoff a try: 4 × 120 s / 21 s ≈
	// 22). More would wait past their claim, be claimed again, and burn tries of a tenant whose
	// endpoint is only slow.
	notifyQueueMax = 20
	// notifyWorkers bounds one tenant's pushes in flight.
	notifyWorkers = 4
	// pushGap is the least time between two sweeps, however many reports kick them.
	pushGap = 100 * time.Millisecond
)

// pushSweep is how often due pushes are claimed when no report kicks a sweep sooner (Options
// replaces it for tests).
const pushSweep = 5 * time.Second

// pushTimeout bounds each post of a push, connecting (through the proxy too) included: "5 s
// timeout each" in docs/infobip-compatible.md.
const pushTimeout = 5 * time.Second

// notifier posts claimed pushes, per tenant.
type notifier struct {
	a *App
	// client connects to public addresses only; private, to any (notify_private_addresses).
	client, private *http.Client
	// proxied are the clients through server.notify_proxy, made again when a reload changes it.
	proxied atomic.Pointer[proxiedClients]
	// backoff is the wait before each post again within a try; its length bounds the posts.
	backoff []time.Duration
	wg      sync.WaitGroup
	// kick asks the sweep loop for a sweep now (a report fell due); it holds one.
	kick chan struct{}

	mu     sync.Mutex
	closed bool
	queues map[string]*notifyQueue // by tenant; present while it has jobs or workers
}

// notifyQueue is one tenant's pending pushes and how many workers serve them.
type notifyQueue struct {
	jobs    []*store.Record
	workers int
}

func newNotifier(a *App) *notifier {
	return &notifier{a: a, backoff: []time.Duration{time.Second, 5 * time.Second}, queues: map[string]*notifyQueue{}, kick: make(chan struct{}, 1),
		client: pushClient(publicOnly, pushTimeout), private: pushClient(nil, pushTimeout)}
}

// pushClient posts pushes directly (never through a proxy), with control checking each address
// it connects to, each post bounded by timeout (pushTimeout).
func pushClient(control func(context.Context, string, string, syscall.RawConn) error, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, ControlContext: control}).DialContext
	return &http.Client{Timeout: timeout, Transport: tr,
		// Never follow a redirect: the allow list names where reports may go.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// proxiedClients are the push clients through one proxy (notifyproxy.go).
type proxiedClients struct {
	proxy           string
	client, private *http.Client
}

// viaProxy is the push client through proxy (a valid URL: config checks it), for a tenant that
// may reach private addresses or not.
func (n *notifier) viaProxy(proxy string, private bool) *http.Client {
	pc := n.proxied.Load()
	if pc == nil || pc.proxy != proxy {
		u, _ := url.Parse(proxy)
		pc = &proxiedClients{proxy: proxy, client: proxiedPushClient(u, false, pushTimeout), private: proxiedPushClient(u, true, pushTimeout)}
		n.proxied.Store(pc)
	}
	if private {
		return pc.private
	}
	return pc.client
}

// notPublicError refuses a connection to an address inside the operator's network.
type notPublicError struct{ addr netip.Addr }

func (e *notPublicError) Error() string {
	return "the notify URL's host resolved to " + e.addr.String() + ", not a public address (tenants[].notify_private_addresses)"
}

// publicOnly is a dialer's control: it runs after DNS, on the address about to be connected to.
func publicOnly(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("unexpected address %q", address)
	}
	if !gateway.PublicAddr(ap.Addr()) {
		return &notPublicError{ap.Addr()}
	}
	return nil
}

// sweepSoon asks for a sweep now: a push fell due.
func (n *notifier) sweepSoon() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// room is how many more claimed pushes tenant's queue takes now.
func (n *notifier) room(tenant string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return 0
	}
	if q := n.queues[tenant]; q != nil {
		return max(0, notifyQueueMax-len(q.jobs))
	}
	return notifyQueueMax
}

// push queues a claimed push. One that does not fit (the replica is stopping, or the queue
// filled since the sweep) is left to fall due again.
func (n *notifier) push(rec *store.Record) {
	n.mu.Lock()
	defer n.mu.Unlock()
	q := n.queues[rec.Tenant]
	if n.closed || q != nil && len(q.jobs) >= notifyQueueMax {
		n.a.metrics.Notify.WithLabelValues(rec.Tenant, "dropped").Inc()
		return
	}
	if q == nil {
		q = &notifyQueue{}
		n.queues[rec.Tenant] = q
	}
	q.jobs = append(q.jobs, rec)
	if q.workers < notifyWorkers {
		q.workers++
		n.wg.Add(1)
		go n.run(rec.Tenant, q)
	}
}

// run pushes tenant's jobs until its queue is empty.
func (n *notifier) run(tenant string, q *notifyQueue) {
	defer n.wg.Done()
	for {
		n.mu.Lock()
		if len(q.jobs) == 0 {
			if q.workers--; q.workers == 0 {
				delete(n.queues, tenant)
			}
			n.mu.Unlock()
			return
		}
		rec := q.jobs[0]
		q.jobs[0] = nil
		q.jobs = q.jobs[1:]
		n.mu.Unlock()
		n.deliver(rec)
	}
}

// deliver makes one try of rec's push: posts, again after each backoff, and ends the push when
// one succeeds. A failed try waits in the message log for the next.
func (n *notifier) deliver(rec *store.Record) {
	body := ib.Reports(rec.Source, []ib.Message{compatMessage(rec)})
	rt := n.a.rt.Load()
	tn := rt.byName[rec.Tenant]
	private := tn != nil && tn.notifyPrivate
	client := n.client
	if private {
		client = n.private
	}
	if p := rt.cfg.Server.NotifyProxy.Reveal(); p != "" {
		client = n.viaProxy(p, private)
	}
	for post := 0; ; post++ {
		err := n.post(client, rec.NotifyURL, body)
		if err == nil {
			n.a.metrics.Notify.WithLabelValues(rec.Tenant, "ok").Inc()
			n.done(rec)
			return
		}
		var np *notPublicError
		blocked := errors.As(err, &np)
		if post < len(n.backoff) && !blocked {
			n.a.metrics.Notify.WithLabelValues(rec.Tenant, "retry").Inc()
			time.Sleep(n.backoff[post])
			continue
		}
		// A host that resolves inside the network is not posted to again within the try; its
		// DNS may be mended by the next.
		result, next := "failed", "tried again when it falls due"
		if blocked {
			result = "blocked"
		}
		if rec.PushTries >= store.PushTries {
			result, next = "given_up", "given up: that was its last try"
		}
		n.a.metrics.Notify.WithLabelValues(rec.Tenant, result).Inc()
		if ok, left := n.a.errorLine("notify|" + rec.Tenant + "|" + result); ok {
			n.a.log.Warn("delivery report push failed; "+next, append([]any{"tenant", rec.Tenant, "host", hostOf(rec.NotifyURL), "try", rec.PushTries,
				"posts", post + 1, "err", err.Error()}, leftOut(left)...)...)
		}
		return
	}
}

// done ends rec's push in the message log. If that fails, the push is made again when it falls
// due: at least once.
func (n *notifier) done(rec *store.Record) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.a.store.PushDone(ctx, rec.ID); err != nil {
		if ok, left := n.a.errorLine("notify|" + rec.Tenant + "|done"); ok {
			n.a.log.Error("a delivery report push could not be marked done; it will be pushed again", append([]any{"tenant", rec.Tenant, "err", err.Error()}, leftOut(left)...)...)
		}
	}
}

func (n *notifier) post(client *http.Client, target string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if np := (*notPublicError)(nil); errors.As(err, &np) {
		return np
	}
	if pr := (*proxyRefusedError)(nil); errors.As(err, &pr) {
		return pr
	}
	if err != nil {
		return errors.New("could not reach the notify URL")
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("the notify URL answered %d", res.StatusCode)
	}
	return nil
}

// close stops taking jobs and waits up to d for the queues to drain. What is left falls due
// again in the message log.
func (n *notifier) close(d time.Duration) {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	waitAtMost(&n.wg, d)
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}

// pushLoop sweeps at once (pushes due from before a restart), then every pushSweep, and when a
// report kicks it (at most one sweep each pushGap), until stop.
func (a *App) pushLoop(stop <-chan struct{}) {
	t := time.NewTicker(cmp.Or(a.opts.pushSweep, pushSweep))
	defer t.Stop()
	for {
		a.sweepPushes()
		select { // a kick meanwhile waits in its channel
		case <-stop:
			return
		case <-time.After(pushGap):
		}
		select {
		case <-stop:
			return
		case <-t.C:
		case <-a.notifier.kick:
		}
	}
}

// sweepPushes claims, for each tenant with pushes due, those that fit its queue, and queues
// them. The tenants come from the message log, not the config: a tenant whose notify_hosts was
// emptied, or that was removed, has its due pushes claimed too, and refused (ended), rather than
// left in the message log's index until the purge.
func (a *App) sweepPushes() {
	a.sweepMu.Lock()
	defer a.sweepMu.Unlock()
	ctx, cancel := context.WithTimeout(a.background(), 10*time.Second)
	tenants, err := a.store.DueTenants(ctx, a.now())
	cancel()
	if err != nil {
		if ok, left := a.errorLine("notify|due"); ok && !a.quietRead(err) {
			a.log.Error("due delivery report pushes could not be read from the message log", append([]any{"err", err.Error()}, leftOut(left)...)...)
		}
		return
	}
	rt := a.rt.Load()
	for _, name := range tenants {
		tn := rt.byName[name] // nil: removed from the config
		room := notifyQueueMax
		if tn != nil && len(tn.notifyHosts) > 0 {
			if room = a.notifier.room(name); room == 0 {
				continue
			}
		}
		ctx, cancel := context.WithTimeout(a.background(), 10*time.Second)
		recs, err := a.store.Due(ctx, name, a.now(), room)
		cancel()
		if err != nil {
			if ok, left := a.errorLine("notify|" + name + "|due"); ok && !a.quietRead(err) {
				a.log.Error("due delivery report pushes could not be claimed in the message log", append([]any{"tenant", name, "err", err.Error()}, leftOut(left)...)...)
			}
			continue
		}
		for _, rec := range recs {
			if tn == nil || !notifyAllowed(tn, rec.NotifyURL) {
				// The tenant's allow list changed since the send (or the tenant is gone): never
				// pushed there.
				a.metrics.Notify.WithLabelValues(name, "refused").Inc()
				a.notifier.done(rec)
				continue
			}
			a.notifier.push(rec)
		}
	}
}

// notifyReports asks for a sweep when a final report was recorded and some tenant may have
// reports pushed, so that a push it made due is made at once rather than at the next sweep. The
// sweep finds what is due itself (one read of the push index, at most one sweep each pushGap):
// no report's message is looked up.
func (a *App) notifyReports(reps []gateway.DeliveryReport) {
	if !a.rt.Load().pushes {
		return
	}
	for _, rep := range reps {
		if rep.Status != gateway.StatusSent {
			a.notifier.sweepSoon()
			return
		}
	}
}
