package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/gateway/store/pgtest"
	"github.com/smsgate/smsgate/providers/providertest"
	"github.com/smsgate/smsgate/providers/twilio/twiliotest"
)

// hook is a tenant's notify endpoint: it answers 503 while down and counts, by messageId, the
// reports it took (answered 200); a push that is not a JSON POST of one report fails the test.
type hook struct {
	*httptest.Server
	down  atomic.Bool
	posts atomic.Int64
	mu    sync.Mutex
	took  map[string]int
	last  map[string]string // the last report taken, by messageId
	at    []time.Time       // when each post came
}

func newHook(t *testing.T) *hook {
	h := &hook{took: map[string]int{}, last: map[string]string{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.posts.Add(1)
		h.mu.Lock()
		h.at = append(h.at, time.Now())
		h.mu.Unlock()
		if h.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var body struct {
			Results []struct {
				MessageID string `json:"messageId"`
			} `json:"results"`
		}
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &body) != nil || len(body.Results) != 1 {
			t.Errorf("push: %s %q %s", r.Method, r.Header.Get("Content-Type"), b)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, res := range body.Results {
			h.took[res.MessageID]++
			h.last[res.MessageID] = string(b)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hook) count(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.took[id]
}

func (h *hook) report(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last[id]
}

// startPushing runs the compat config with reports pushed to h, its message log at storage (a
// YAML storage value), on clk; each push is posted once a try (no backoff within a try).
func startPushing(t *testing.T, h *hook, storage string, o Options) *compatHarness {
	cfg := strings.ReplaceAll(compatConfig, "$HOOKHOST", strings.TrimPrefix(h.URL, "http://"))
	cfg = strings.Replace(cfg, "storage: {driver: sqlite, path: $DIR/log.db}", "storage: "+storage, 1)
	c, ib, tw := startOnFakesWith(t, cfg, o)
	c.app.notifier.backoff = nil
	return &compatHarness{harness: c, ib: ib, tw: tw}
}

// sendPushed sends one message asking for its report at h, reports it delivered, and returns
// its id.
func sendPushed(t *testing.T, c *compatHarness, h *hook, to string) string {
	t.Helper()
	r := c.call("POST", "/sms/3/messages", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"`+to+`"}],"content":{"text":"Code 4410"},"webhooks":{"delivery":{"url":"`+h.URL+`/reports"}}}]}`)
	if r.Status != 200 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	id := messagesOf(r)[0]["messageId"].(string)
	if rr := c.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", report(id, "DELIVERED")); rr.Status != 200 {
		t.Fatalf("dlr: %d %s", rr.Status, rr.Raw)
	}
	return id
}

// failedPush starts the compat config on storage with reports pushed to a hook that is down,
// sends one message to to asking for its report there, and waits until its first push failed.
func failedPush(t *testing.T, storage, to string) (*hook, *testClock, *compatHarness, string) {
	t.Helper()
	h := newHook(t)
	h.down.Store(true)
	clk := &testClock{t: time.Now()}
	c := startPushing(t, h, storage, Options{Now: clk.Now})
	id := sendPushed(t, c, h, to)
	waitUntil(t, "the first try failed", func() bool { return notified(c, "failed") == 1 })
	return h, clk, c, id
}

// waitUntil polls cond for up to 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitFor(t, 5*time.Second, what, cond)
}

// waitFor polls cond every 5 ms for up to d, failing the test with what it waited until.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
	}
}

func notified(c *compatHarness, result string) float64 {
	return testutil.ToFloat64(c.app.metrics.Notify.WithLabelValues("acme", result))
}

// TestAPushOutlivesTheEndpointsOutage: a report whose push fails is pushed again when its retry
// falls due (2 minutes later, as Infobip retries), once, and is never handed out twice. With
// pushes kept only in memory and three posts within 6 s, an endpoint down for a few seconds
// lost its reports for good.
func TestAPushOutlivesTheEndpointsOutage(t *testing.T) {
	t.Parallel()
	h, clk, c, id := failedPush(t, "{driver: sqlite, path: $DIR/log.db}", "14155550180")
	h.down.Store(false)

	clk.Add(time.Minute) // not due yet
	c.app.sweepPushes()
	time.Sleep(100 * time.Millisecond)
	if n := h.posts.Load(); n != 1 {
		t.Fatalf("%d posts before the retry fell due, want 1", n)
	}
	clk.Add(time.Minute + time.Second)
	c.app.sweepPushes()
	waitUntil(t, "the retry was pushed", func() bool { return h.count(id) == 1 })
	waitUntil(t, "the push was counted", func() bool { return notified(c, "ok") == 1 })
	waitUntil(t, "the tenant's drained queue was forgotten", func() bool {
		c.app.notifier.mu.Lock()
		defer c.app.notifier.mu.Unlock()
		return len(c.app.notifier.queues) == 0
	})

	clk.Add(24 * time.Hour) // done: never pushed again
	c.app.sweepPushes()
	time.Sleep(100 * time.Millisecond)
	if n, got := h.posts.Load(), h.count(id); n != 2 || got != 1 {
		t.Errorf("after it was pushed: %d posts, %d taken; want 2 and 1", n, got)
	}
	if r := c.call("GET", "/sms/3/reports", "App acme-ib-key", ""); !strings.Contains(r.Raw, `"results":[]`) {
		t.Errorf("a pushed report was also pulled: %s", r.Raw)
	}
}

// TestAPushPendingWhenTheGatewayStopsIsMadeAfterARestart: the push waits in the message log, not
// in the stopped process.
func TestAPushPendingWhenTheGatewayStopsIsMadeAfterARestart(t *testing.T) {
	t.Parallel()
	storage := fmt.Sprintf("{driver: sqlite, path: %q}", filepath.Join(t.TempDir(), "log.db"))
	h, clk, c, id := failedPush(t, storage, "14155550181")
	if err := c.app.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.down.Store(false)
	clk.Add(2*time.Minute + time.Second)
	startPushing(t, h, storage, Options{Now: clk.Now}) // sweeps as it starts
	waitUntil(t, "the restarted gateway pushed it", func() bool { return h.count(id) == 1 })
}

// TestEachPushIsMadeOnceAcrossReplicas: two replicas on one PostgreSQL message log sweep at the
// same time; every report is pushed, and once.
func TestEachPushIsMadeOnceAcrossReplicas(t *testing.T) {
	t.Parallel()
	storage := fmt.Sprintf("{driver: postgres, dsn: %q}", pgtest.DSN(t))
	h := newHook(t)
	h.down.Store(true)
	clk := &testClock{t: time.Now()}
	a, b := startPushing(t, h, storage, Options{Now: clk.Now}), startPushing(t, h, storage, Options{Now: clk.Now})
	var ids []string
	for i := range 20 {
		ids = append(ids, sendPushed(t, a, h, fmt.Sprint(14155550200+i)))
	}
	waitUntil(t, "every first try failed", func() bool { return notified(a, "failed")+notified(b, "failed") == 20 })
	h.down.Store(false)
	clk.Add(2*time.Minute + time.Second)
	var wg sync.WaitGroup
	for _, c := range []*compatHarness{a, b, a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); c.app.sweepPushes() }()
	}
	wg.Wait()
	waitUntil(t, "every report was pushed", func() bool { return notified(a, "ok")+notified(b, "ok") >= 20 })
	time.Sleep(100 * time.Millisecond)
	for _, id := range ids {
		if n := h.count(id); n != 1 {
			t.Errorf("%s pushed %d times", id, n)
		}
	}
	if n := h.posts.Load(); n != 40 {
		t.Errorf("%d posts, want 40 (20 failed, 20 taken)", n)
	}
}

// TestAStoppingReplicaHasNoRoomForPushes: once the notifier is closed (the replica is stopping)
// a sweep finds no room, so it claims nothing (a claim counts one of a push's tries), and a push
// queued anyway is dropped, to fall due again, rather than started.
func TestAStoppingReplicaHasNoRoomForPushes(t *testing.T) {
	t.Parallel()
	h := start(t, failoverConfig, Options{})
	n := h.app.notifier
	if got := n.room("acme"); got != notifyQueueMax {
		t.Fatalf("room before closing: %d, want %d", got, notifyQueueMax)
	}
	n.close(0)
	if got := n.room("acme"); got != 0 {
		t.Errorf("room once closed: %d, want 0", got)
	}
	n.push(&store.Record{ID: "msg_1", Tenant: "acme", NotifyURL: "https://hooks.example.com/r"})
	n.mu.Lock()
	queued := len(n.queues)
	n.mu.Unlock()
	if dropped := testutil.ToFloat64(h.app.MetricSet().Notify.WithLabelValues("acme", "dropped")); queued != 0 || dropped != 1 {
		t.Errorf("a push queued once closed: %d queues, %v dropped (want none and 1)", queued, dropped)
	}
}

// TestAPushsLastTryIsCountedGivenUp: a push that fails on its last try is counted (and logged)
// as given up; on the try before, as what it was (here blocked: acme's hook resolves inside the
// network).
func TestAPushsLastTryIsCountedGivenUp(t *testing.T) {
	t.Parallel()
	h := start(t, failoverConfig, Options{})
	h.app.notifier.backoff = nil
	for _, tc := range []struct {
		tries  int
		result string
	}{{store.PushTries - 1, "blocked"}, {store.PushTries, "given_up"}} {
		h.app.notifier.deliver(&store.Record{ID: "msg_1", Tenant: "acme", NotifyURL: "http://127.0.0.1:1/r", PushTries: tc.tries})
		if n := testutil.ToFloat64(h.app.MetricSet().Notify.WithLabelValues("acme", tc.result)); n != 1 {
			t.Errorf("try %d of %d: %v counted %s, want 1", tc.tries, store.PushTries, n, tc.result)
		}
	}
	if !strings.Contains(h.logs.String(), "given up: that was its last try") {
		t.Errorf("the last try's line: %s", h.logs.String())
	}
}

// TestATenantsFailingPushesLeaveOthersLines: a tenant whose pushes keep failing uses up its own
// lines of the log (log.error_lines_per_second), not another tenant's: a second tenant's failed
// push is still written.
func TestATenantsFailingPushesLeaveOthersLines(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Now()} // one second throughout: the lines' budget does not refill
	h := start(t, failoverConfig, Options{Now: clk.Now})
	h.app.notifier.backoff = nil
	push := func(tenant string) {
		h.app.notifier.deliver(&store.Record{ID: "msg_1", Tenant: tenant, NotifyURL: "http://127.0.0.1:1/r", PushTries: 1})
	}
	for range 50 {
		push("acme")
	}
	push("beta")
	lines := map[string]int{}
	for _, l := range logLines(t, h, "delivery report push failed; tried again when it falls due") {
		lines[l["tenant"].(string)]++
	}
	if lines["acme"] != 10 || lines["beta"] != 1 {
		t.Errorf("push failure lines by tenant: %v, want acme's 10 a second and beta's 1", lines)
	}
}

// TestAHangingEndpointHoldsFewClaims: a tenant whose endpoint hangs has at most notifyQueueMax pushes
// claimed and waiting on a replica (plus those in flight), however often sweeps run: the rest stay
// due in the message log instead of waiting in memory past their claim and being claimed again,
// which would spend their tries.
func TestAHangingEndpointHoldsFewClaims(t *testing.T) {
	t.Parallel()
	hang, release := providertest.Hanging(t)
	h := &hook{Server: hang}
	clk := &testClock{t: time.Now()}
	c := startPushing(t, h, "{driver: sqlite, path: $DIR/log.db}", Options{Now: clk.Now})
	// Released before the replica stops, which would wait for its pushes.
	defer release()
	c.app.notifier.private.Timeout = time.Minute // acme's hook is on loopback
	for i := range 60 {
		sendPushed(t, c, h, fmt.Sprint(14155550300+i))
	}
	claimed := func() int {
		recs, err := c.app.store.List(context.Background(), store.Query{Tenant: "acme", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range recs {
			if r.PushTries > 0 {
				n++
			}
		}
		return n
	}
	// 4 in flight (notifyWorkers), 20 waiting (notifyQueueMax): 24 claimed, once the workers
	// took theirs.
	waitUntil(t, "24 pushes were claimed", func() bool { c.app.sweepPushes(); return claimed() == 24 })
	for range 10 {
		c.app.sweepPushes()
	}
	if n := claimed(); n != 24 {
		t.Errorf("%d of 60 pushes claimed, want 24 (20 waiting, 4 in flight)", n)
	}
}

// TestPushesConnectToPublicAddressesOnly: the client of a tenant without notify_private_addresses
// never connects to an address inside the network, whether the URL names it or a name resolves to
// it (localhost), and says where the name led; the other client reaches it.
func TestPushesConnectToPublicAddressesOnly(t *testing.T) {
	t.Parallel()
	var posts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { posts.Add(1) }))
	defer srv.Close()
	n := newNotifier(nil)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	for _, target := range []string{srv.URL + "/reports", "http://localhost:" + port + "/reports"} {
		err := n.post(n.client, target, []byte(`{}`))
		var np *notPublicError
		if !errors.As(err, &np) || !np.addr.IsLoopback() || !strings.Contains(err.Error(), "not a public address") {
			t.Errorf("%s: %v, want a refusal naming the loopback address", target, err)
		}
	}
	if p := posts.Load(); p != 0 {
		t.Fatalf("the public-only client reached the loopback server %d times", p)
	}
	if err := n.post(n.private, srv.URL+"/reports", []byte(`{}`)); err != nil || posts.Load() != 1 {
		t.Errorf("the private client: %v, %d posts", err, posts.Load())
	}
}

// TestAPushFollowsNoRedirect: a notify endpoint that answers with a redirect is not followed,
// whichever client posts: the allow list names where reports may go, and a 307 or 308 would post
// the report (callbackData and all) again to wherever the endpoint pointed. The try fails, naming
// the status.
func TestAPushFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/collected", status)
		}))
		n := newNotifier(nil)
		if err := n.post(n.private, redirect.URL+"/reports", []byte(`{"results":[]}`)); err == nil || !strings.Contains(err.Error(), fmt.Sprint(status)) {
			t.Errorf("a %d: %v, want a failed try naming it", status, err)
		}
		redirect.Close()
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirects' target was posted to %d times", n)
	}
}

// TestAPushIsDoneOnlyWhenAnswered2xx: a notify endpoint that answers 4xx (its auth misconfigured,
// a path gone) has not taken the report: the try fails, naming the status, so that the push is
// made again, as a 5xx is.
func TestAPushIsDoneOnlyWhenAnswered2xx(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusOK, http.StatusNoContent, http.StatusUnauthorized, http.StatusNotFound, http.StatusServiceUnavailable} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
		n := newNotifier(nil)
		err := n.post(n.private, srv.URL+"/reports", []byte(`{"results":[]}`))
		if ok := status/100 == 2; ok != (err == nil) || !ok && !strings.Contains(err.Error(), fmt.Sprint(status)) {
			t.Errorf("an answer %d: %v", status, err)
		}
		srv.Close()
	}
}

// TestAPushToAnAddressInsideTheNetworkIsRefused: a tenant's notify host is on the operator's allow
// list, but its DNS is the tenant's. One that resolves to the gateway's loopback (as a name could,
// for a tenant without notify_private_addresses) is never posted to: the try is counted blocked,
// not posted again within it, and logged with the address but no number; the push stays due, and
// is made once the tenant may reach that address.
func TestAPushToAnAddressInsideTheNetworkIsRefused(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	clk := &testClock{t: time.Now()}
	c := startPushing(t, h, "{driver: sqlite, path: $DIR/log.db}", Options{Now: clk.Now})
	c.app.notifier.backoff = []time.Duration{time.Millisecond, time.Millisecond}
	acme := c.app.rt.Load().byName["acme"]
	acme.notifyPrivate = false // validate refuses a loopback host without the option; a name need not say it

	id := sendPushed(t, c, h, "14155550190")
	waitUntil(t, "the push was refused", func() bool { return notified(c, "blocked") == 1 })
	time.Sleep(50 * time.Millisecond)
	if p, r, f := h.posts.Load(), notified(c, "retry"), notified(c, "failed"); p != 0 || r != 0 || f != 0 {
		t.Errorf("%d posts reached the hook, %v retries, %v failed; want none", p, r, f)
	}
	logs := c.logs.String()
	if !strings.Contains(logs, "resolved to 127.0.0.1, not a public address") || strings.Contains(logs, "4155550190") || strings.Contains(logs, "Code 4410") {
		t.Errorf("log: %s", logs)
	}

	acme.notifyPrivate = true
	clk.Add(2*time.Minute + time.Second)
	c.app.sweepPushes()
	waitUntil(t, "the push was made on its next try", func() bool { return h.count(id) == 1 })
}

// TestPushesOfATenantNoLongerAllowedAreEnded: when a reload empties a tenant's notify_hosts, or
// removes the tenant, its pushes still due are claimed, refused and ended, never posted. Sweeps
// went only to tenants with notify hosts, so those pushes stayed due in the message log's index
// until the purge.
func TestPushesOfATenantNoLongerAllowedAreEnded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, from, to string }{
		{"notify hosts emptied", `notify_hosts: ["$HOOKHOST"]`, `notify_hosts: []`},
		{"tenant removed", `name: acme, api_key: acme-ib-key`, `name: acme-2, api_key: acme-2-key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, clk, c, id := failedPush(t, "{driver: sqlite, path: $DIR/log.db}", "14155550190")

			raw, err := os.ReadFile(c.path)
			if err != nil {
				t.Fatal(err)
			}
			from := strings.ReplaceAll(tc.from, "$HOOKHOST", strings.TrimPrefix(h.URL, "http://"))
			if !strings.Contains(string(raw), from) {
				t.Fatalf("the config has no %s", from)
			}
			if err := os.WriteFile(c.path, []byte(strings.Replace(string(raw), from, tc.to, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := c.app.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
			h.down.Store(false)
			clk.Add(2*time.Minute + time.Second)
			c.app.sweepPushes()
			waitUntil(t, "the push was refused", func() bool { return notified(c, "refused") == 1 })
			if left, err := c.app.store.DueTenants(context.Background(), clk.Now().Add(1000*time.Hour)); err != nil || len(left) != 0 {
				t.Errorf("pushes still due after the refusal: %v, %v", left, err)
			}
			time.Sleep(100 * time.Millisecond)
			if n, got := h.posts.Load(), h.count(id); n != 1 || got != 0 {
				t.Errorf("%d posts, %d taken; want the first failed try only", n, got)
			}
		})
	}
}

// TestEveryIDGivenGetsOneReport: as with Infobip, every messageId an answer gives has a final
// report, pushed or pulled, and no other does. A destination that failed at send in a request
// answered 200 (another destination was sent) is answered REJECTED with its id, and its report
// is pushed to its notify URL, or pulled, without any provider report. A request answered with an
// error gives no id: the failed messages' reports are neither pushed nor pulled. Before, a failed
// message's report was never pushed, and was pulled even when its id had never been given.
func TestEveryIDGivenGetsOneReport(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	clk := &testClock{t: time.Now()}
	// Pushed as the answer is given, not at the next timed sweep.
	c := startPushing(t, h, "{driver: sqlite, path: $DIR/log.db}", Options{Now: clk.Now, pushSweep: time.Hour})
	c.tw.SetMode(twiliotest.Unavailable)
	c.ib.SetFailText("Code 5000") // fails at Infobip, then at Twilio: all providers failed
	hookURL := h.URL + "/reports"
	mixed := func(notify string) (sent, failed string) {
		t.Helper()
		hooks := ""
		if notify != "" {
			hooks = `,"webhooks":{"delivery":{"url":"` + notify + `"}}`
		}
		r := c.call("POST", "/sms/3/messages", "App acme-ib-key", `{"messages":[
			{"destinations":[{"to":"14155550401"}],"content":{"text":"Code 1111"}`+hooks+`},
			{"destinations":[{"to":"14155550402"}],"content":{"text":"Code 5000"}`+hooks+`}]}`)
		ms := messagesOf(r)
		if r.Status != 200 || len(ms) != 2 || statusName(ms[0]) != "PENDING_ACCEPTED" || !strings.HasPrefix(statusName(ms[1]), "REJECTED_") || ms[1]["messageId"] == nil {
			t.Fatalf("mixed request: %d %s", r.Status, r.Raw)
		}
		return ms[0]["messageId"].(string), ms[1]["messageId"].(string)
	}

	// Pushed: the failed destination at once, the sent one after its delivery report.
	sent, failed := mixed(hookURL)
	waitUntil(t, "the failed destination's report was pushed", func() bool { return h.count(failed) == 1 })
	if got := h.report(failed); !strings.Contains(got, `"groupName":"REJECTED"`) || !strings.Contains(got, `"groupName":"OPERATOR_ERRORS"`) ||
		!strings.Contains(got, `"permanent":false`) || !strings.Contains(got, `"doneAt":`) {
		t.Errorf("pushed report of the failed destination: %s", got)
	}
	if h.count(sent) != 0 {
		t.Errorf("the sent destination's report was pushed before any delivery report")
	}
	if rr := c.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", report(sent, "DELIVERED")); rr.Status != 200 {
		t.Fatalf("dlr: %d %s", rr.Status, rr.Raw)
	}
	waitUntil(t, "the sent destination's report was pushed", func() bool { return h.count(sent) == 1 })

	// Pulled: the failed destination's report, once, and nothing of requests answered with an error.
	_, pulled := mixed("")
	for _, notify := range []string{"", hookURL} {
		hooks := ""
		if notify != "" {
			hooks = `,"webhooks":{"delivery":{"url":"` + notify + `"}}`
		}
		r := c.call("POST", "/sms/3/messages", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550403"}],"content":{"text":"Code 5000"}`+hooks+`}]}`)
		if r.Status < 500 || strings.Contains(r.Raw, "messageId") {
			t.Fatalf("all failed: %d %s", r.Status, r.Raw)
		}
	}
	got := c.call("GET", "/sms/3/reports", "App acme-ib-key", "")
	res, _ := got.Body["results"].([]any)
	if len(res) != 1 || !strings.Contains(got.Raw, `"messageId":"`+pulled+`"`) {
		t.Errorf("pulled: %s; want only %s", got.Raw, pulled)
	}
	clk.Add(24 * time.Hour)
	c.app.sweepPushes()
	time.Sleep(100 * time.Millisecond)
	if n := h.posts.Load(); n != 2 {
		t.Errorf("%d pushes, want 2 (no report of a request answered with an error)", n)
	}
	if again := c.call("GET", "/sms/3/reports", "App acme-ib-key", ""); !strings.Contains(again.Raw, `"results":[]`) {
		t.Errorf("pulled twice, or a report of a request answered with an error: %s", again.Raw)
	}
}

// TestAFailedPostIsPostedAgainWithinItsTry: a post that fails is made again after each backoff
// (three posts a try), each counted as a retry; the try's failure is logged once with the notify
// URL's host and how many posts it made, never its path.
func TestAFailedPostIsPostedAgainWithinItsTry(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	h.down.Store(true)
	c := startPushing(t, h, "{driver: sqlite, path: $DIR/log.db}", Options{Now: (&testClock{t: time.Now()}).Now})
	backoff := []time.Duration{20 * time.Millisecond, 50 * time.Millisecond}
	c.app.notifier.backoff = backoff
	sendPushed(t, c, h, "14155550190")
	waitUntil(t, "the try failed", func() bool { return notified(c, "failed") == 1 })
	if n, retries := h.posts.Load(), notified(c, "retry"); n != 3 || retries != 2 {
		t.Errorf("%d posts and %v retries counted in the try, want 3 and 2", n, retries)
	}
	h.mu.Lock()
	for i := 1; i < len(h.at) && i <= len(backoff); i++ {
		if gap := h.at[i].Sub(h.at[i-1]); gap < backoff[i-1] {
			t.Errorf("post %d came %v after the one before, want at least its backoff %v", i+1, gap, backoff[i-1])
		}
	}
	h.mu.Unlock()
	line := ""
	for _, l := range strings.Split(c.logs.String(), "\n") {
		if strings.Contains(l, "delivery report push failed") {
			line = l
		}
	}
	host := strings.TrimPrefix(h.URL, "http://")
	if !strings.Contains(line, `"host":"`+host+`"`) || !strings.Contains(line, `"posts":3`) || !strings.Contains(line, `"try":1`) || strings.Contains(line, "/reports") {
		t.Errorf("the failed try's line: %s", line)
	}
}

// TestPushesNeverGoThroughAnEnvironmentProxy: both push clients dial the address they checked
// themselves; HTTP_PROXY would connect to the proxy's address instead and skip the check.
func TestPushesNeverGoThroughAnEnvironmentProxy(t *testing.T) {
	t.Parallel()
	n := newNotifier(nil)
	for name, c := range map[string]*http.Client{"public": n.client, "private": n.private} {
		if tr, ok := c.Transport.(*http.Transport); !ok || tr.Proxy != nil {
			t.Errorf("the %s push client may take a proxy from the environment", name)
		}
	}
}

// TestAStoppingReplicaFinishesThePushInFlight: a replica that stops while a push is being posted
// waits for it (up to 2 s) and marks it done before it closes the message log, so the report is not
// pushed again after the restart.
func TestAStoppingReplicaFinishesThePushInFlight(t *testing.T) {
	t.Parallel()
	var posts atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		posts.Add(1)
		time.Sleep(300 * time.Millisecond)
	}))
	defer slow.Close()
	h := &hook{Server: slow}
	storage := fmt.Sprintf("{driver: sqlite, path: %q}", filepath.Join(t.TempDir(), "log.db"))
	clk := &testClock{t: time.Now()}
	c := startPushing(t, h, storage, Options{Now: clk.Now})
	id := sendPushed(t, c, h, "14155550191")
	waitUntil(t, "the push was being posted", func() bool { return posts.Load() == 1 })
	if err := c.app.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Add(3 * time.Minute) // past its next try, were it not done
	again := startPushing(t, h, storage, Options{Now: clk.Now})
	rec, err := again.app.Store().Get(context.Background(), "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.PushAt.IsZero() || rec.PushTries != 1 {
		t.Errorf("after the restart the push is due at %v after %d tries; want it done after 1", rec.PushAt, rec.PushTries)
	}
}
