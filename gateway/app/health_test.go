package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/store"
)

const healthConfig = `
server: {request_timeout: 3s, public_url: "https://sms.example.com", admin_token: admin-t0ken}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
routing:
  delivery_health: {window: 30m, min_samples: 10, min_rate: 0.7, margin: 0.1, report_timeout: 10m, probe_share: 0.1, refresh: 1h}
tenants: [{name: acme, api_key: acme-key}]
providers:
  - name: infobip-eu
    type: infobip
    base_url: $IB
    api_key: ib-key
    webhook_secret: hook-secret
  - name: twilio-us
    type: twilio
    account_sid: ` + twSID + `
    auth_token: tw-token
    from: "+15005550006"
    base_url: $TW
  - {name: quiet, type: mock}
routes:
  - name: default
    providers: [infobip-eu, twilio-us]
`

// infobipReport posts an Infobip delivery report (group DELIVERED or UNDELIVERABLE; price, when
// not empty, is its JSON price object) to the infobip-eu webhook.
func infobipReport(t *testing.T, h *harness, id, group, price string) {
	t.Helper()
	if r := h.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", reportBody(id, group, price)); r.Status != 200 {
		t.Fatalf("report: %d %s", r.Status, r.Raw)
	}
}

// TestDeliveryHealthWindow: the rate counts delivered, undelivered and failed messages in the
// window, and messages still without a final report after report_timeout, but the last only for
// providers that ask for reports; messages outside the window do not count.
func TestDeliveryHealthWindow(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	h, _, _ := startOnFakesWith(t, healthConfig, Options{Now: clk.Now})
	st := h.app.Store()
	add := func(id, provider, country, status string, age time.Duration) {
		st.Insert(context.Background(), &store.Record{ID: id, Tenant: "acme", Provider: provider, Country: country, Status: status,
			CreatedAt: clk.Now().Add(-age), UpdatedAt: clk.Now()})
	}
	for i := range 6 {
		add(fmt.Sprint("d", i), "infobip-eu", "GB", gateway.StatusDelivered, 5*time.Minute)
	}
	add("u1", "infobip-eu", "GB", gateway.StatusUndelivered, 5*time.Minute)
	add("f1", "infobip-eu", "GB", gateway.StatusFailed, 5*time.Minute)
	add("p-old", "infobip-eu", "GB", gateway.StatusSent, 15*time.Minute) // no report after report_timeout: counts
	add("p-new", "infobip-eu", "GB", gateway.StatusSent, 2*time.Minute)  // may still get one: does not
	add("outside", "infobip-eu", "GB", gateway.StatusUndelivered, 31*time.Minute)
	add("q1", "quiet", "GB", gateway.StatusDelivered, time.Minute)
	add("q2", "quiet", "GB", gateway.StatusSent, 20*time.Minute) // the mock asks for no reports: not counted
	if err := h.app.refreshHealth(context.Background()); err != nil {
		t.Fatal(err)
	}
	ib := healthOf(h.app, smsKey("infobip-eu", "GB"))
	if ib == nil || ib.samples != 9 || fmt.Sprintf("%.3f", ib.rate) != "0.667" || ib.demoted {
		t.Errorf("infobip GB: %+v, want 6 of 9 and not demoted (9 < min_samples 10)", ib)
	}
	q := healthOf(h.app, smsKey("quiet", "GB"))
	if q == nil || q.samples != 1 || q.rate != 1 {
		t.Errorf("quiet GB: %+v", q)
	}
	// GET /v1/providers lists a provider's countries in their order, whatever the table's.
	add("us1", "infobip-eu", "US", gateway.StatusDelivered, time.Minute)
	add("de1", "infobip-eu", "DE", gateway.StatusDelivered, time.Minute)
	h.app.refreshHealth(context.Background())
	var countries []string
	for _, c := range h.app.countryHealth("infobip-eu", false) {
		countries = append(countries, c.Country)
	}
	if !slices.Equal(countries, []string{"DE", "GB", "US"}) {
		t.Errorf("countries listed as %v, want DE, GB, US", countries)
	}
	// One more failure reaches min_samples: demoted (6/10 < 0.7).
	add("f2", "infobip-eu", "GB", gateway.StatusFailed, time.Minute)
	h.app.refreshHealth(context.Background())
	if ib := healthOf(h.app, smsKey("infobip-eu", "GB")); !ib.demoted {
		t.Errorf("not demoted at %+v", ib)
	}
	// The window moves on: nothing left, nothing demoted.
	clk.Add(time.Hour)
	h.app.refreshHealth(context.Background())
	if ib := healthOf(h.app, smsKey("infobip-eu", "GB")); ib != nil {
		t.Errorf("an empty window kept %+v", ib)
	}
}

// TestSilentOutageDrill: Infobip accepts everything but GB messages are reported UNDELIVERABLE.
// GB traffic moves to Twilio (a probe share still tries Infobip first), US traffic stays, and GB
// returns to Infobip when its reports turn DELIVERED.
func TestSilentOutageDrill(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	h, ib, tw := startOnFakesWith(t, healthConfig, Options{Now: clk.Now})
	report := func(id, group string) { infobipReport(t, h, id, group, "") }
	n := 0
	send := func(to string) response {
		n++
		return h.send("acme-key", fmt.Sprintf(`{"message_options":{"recipient":%q,"text":"Your code is %06d","message_type":"sms"}}`, to, n))
	}
	gb := func(i int) string { return fmt.Sprintf("+4474001%05d", i) } // GB (+44 7911 is Guernsey)
	us := func(i int) string { return fmt.Sprintf("+1415555%04d", i) }
	// Healthy start; then GB goes silent: 20 GB sends accepted by Infobip, all reported undeliverable.
	for i := range 20 {
		r := send(gb(i))
		if r.Body["provider"] != "infobip-eu" {
			t.Fatalf("GB %d: %s", i, r.Raw)
		}
		report(r.Body["id"].(string), "UNDELIVERABLE")
		if r := send(us(i)); r.Body["provider"] != "infobip-eu" {
			t.Fatalf("US %d: %s", i, r.Raw)
		} else {
			report(r.Body["id"].(string), "DELIVERED")
		}
	}
	h.app.refreshHealth(context.Background())
	if testutil.ToFloat64(h.app.MetricSet().Demotions.WithLabelValues("infobip-eu", "GB", "sms")) != 1 {
		t.Fatal("infobip was not demoted for GB")
	}
	// Twenty minutes later GB still goes to Twilio, but every 10th (probe_share 0.1) still tries
	// Infobip first.
	clk.Add(20 * time.Minute)
	twBefore, probes := tw.Calls(), 0
	var probeIDs []string
	for i := range 30 {
		r := send(gb(100 + i))
		switch r.Body["provider"] {
		case "twilio-us":
			as := r.Body["attempts"].([]any)
			if a := as[0].(map[string]any); a["provider"] != "twilio-us" {
				t.Errorf("a demoted send did not start at twilio: %s", r.Raw)
			}
		case "infobip-eu":
			probes++
			probeIDs = append(probeIDs, r.Body["id"].(string))
			if note, _ := r.Body["attempts"].([]any)[0].(map[string]any)["note"].(string); !strings.HasPrefix(note, "probe: demoted for GB") {
				t.Errorf("probe without its note: %s", r.Raw)
			}
		}
	}
	if probes != 3 || tw.Calls()-twBefore != 27 {
		t.Errorf("probes %d (want 3 of 30), twilio %d", probes, tw.Calls()-twBefore)
	}
	if r := send(us(500)); r.Body["provider"] != "infobip-eu" {
		t.Errorf("US moved too: %s", r.Raw)
	}
	// The record says why.
	r := send(gb(999))
	rec, _ := h.app.Store().Get(context.Background(), "acme", r.Body["id"].(string))
	if rec == nil || rec.Provider != "twilio-us" {
		t.Fatalf("record %+v", rec)
	}
	prov := h.do("GET", "/v1/providers", "admin-t0ken", "")
	if !strings.Contains(prov.Raw, `"country":"GB","rate":0,"tenant_rate":0,"samples":20,"demoted":true`) {
		t.Errorf("providers endpoint: %s", prov.Raw)
	}
	// Recovery: the old failures leave the window; the probes are delivered.
	clk.Add(11 * time.Minute)
	for _, id := range probeIDs {
		report(id, "DELIVERED")
	}
	ibBefore := ib.Calls()
	for i := range 10 {
		if r := send(gb(200 + i)); r.Body["provider"] == "infobip-eu" {
			report(r.Body["id"].(string), "DELIVERED")
		}
	}
	h.app.refreshHealth(context.Background())
	if st := healthOf(h.app, smsKey("infobip-eu", "GB")); st == nil || st.demoted {
		t.Fatalf("not restored: %+v (infobip calls %d)", st, ib.Calls()-ibBefore)
	}
	if r := send(gb(300)); r.Body["provider"] != "infobip-eu" {
		t.Errorf("GB did not return to infobip: %s", r.Raw)
	}
	// Conversion feedback counts as delivered, tenant-scoped.
	v := h.do("POST", "/v1/messages/"+r.Body["id"].(string)+"/verified", "acme-key", "")
	if v.Status != 200 {
		t.Errorf("verified: %d %s", v.Status, v.Raw)
	}
	if rec, _ := h.app.Store().Get(context.Background(), "acme", r.Body["id"].(string)); rec.Status != gateway.StatusDelivered || rec.ProviderStatus != "VERIFIED" {
		t.Errorf("verified record %+v", rec)
	}
	// Reported again: answered alike, and not written again.
	writes := testutil.ToFloat64(h.app.MetricSet().LogWrites.WithLabelValues("ok"))
	if v := h.do("POST", "/v1/messages/"+r.Body["id"].(string)+"/verified", "acme-key", ""); v.Status != 200 {
		t.Errorf("verified again: %d %s", v.Status, v.Raw)
	}
	if got := testutil.ToFloat64(h.app.MetricSet().LogWrites.WithLabelValues("ok")); got != writes {
		t.Errorf("a code reported used twice was written again (%v writes, then %v)", writes, got)
	}
	if v := h.do("POST", "/v1/messages/msg_nope/verified", "acme-key", ""); v.Status != 404 {
		t.Errorf("unknown id: %d", v.Status)
	}
}

// TestOneTenantCannotDemoteForAll: a tenant whose own numbers are never delivered (bad lists,
// or pumping) cannot move every tenant's traffic off a provider that delivers for the others;
// when the others' messages fail too, the provider is demoted.
func TestOneTenantCannotDemoteForAll(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	h, _, _ := startOnFakesWith(t, healthConfig, Options{Now: clk.Now})
	st := h.app.Store()
	n := 0
	add := func(tenant, status string, count int) {
		for range count {
			n++
			st.Insert(context.Background(), &store.Record{ID: fmt.Sprint("m", n), Tenant: tenant, Provider: "infobip-eu", Country: "GB", Status: status,
				CreatedAt: clk.Now().Add(-time.Minute), UpdatedAt: clk.Now()})
		}
	}
	add("evil", gateway.StatusUndelivered, 200)
	add("acme", gateway.StatusDelivered, 12)
	add("other", gateway.StatusDelivered, 9)
	add("other", gateway.StatusUndelivered, 1)
	if err := h.app.refreshHealth(context.Background()); err != nil {
		t.Fatal(err)
	}
	ib := healthOf(h.app, smsKey("infobip-eu", "GB"))
	if ib == nil || ib.samples != 222 || ib.demoted {
		t.Fatalf("one tenant's 200 undelivered demoted infobip for everyone: %+v", ib)
	}
	if r := h.do("GET", "/v1/providers", "admin-t0ken", ""); !strings.Contains(r.Raw, `"country":"GB","rate":0.095,"tenant_rate":0.9,"samples":222,"demoted":false`) {
		t.Errorf("providers: %s", r.Raw)
	}
	// The others' messages fail as well: the provider is the problem.
	add("acme", gateway.StatusFailed, 30)
	h.app.refreshHealth(context.Background())
	if ib := healthOf(h.app, smsKey("infobip-eu", "GB")); !ib.demoted {
		t.Errorf("not demoted when every tenant's messages fail: %+v", ib)
	}
	// And a single tenant alone in a country still demotes (its traffic is all there is).
	if got := aggregateHealth([]store.HealthRow{{Provider: "p", Country: "FR", Tenant: "only", Delivered: 1, Failed: 30}}, 20,
		func(string) bool { return true })[smsKey("p", "FR")]; !got.demote(20, 0.7) {
		t.Errorf("a lone tenant's failures did not demote: %+v", got)
	}
	// Two tenants of equal weight, one whose messages all arrive and one whose never do: the tie
	// resolves to the higher rate, so no provider is demoted on one tenant's word against another's.
	tie := aggregateHealth([]store.HealthRow{{Provider: "p", Country: "DE", Tenant: "a", Delivered: 20}, {Provider: "p", Country: "DE", Tenant: "b", Undelivered: 20}}, 20,
		func(string) bool { return true })[smsKey("p", "DE")]
	if tie.tenantRate != 1 || tie.demote(20, 0.7) {
		t.Errorf("two tenants of equal weight, at 1 and 0: tenant rate %v, demoted %v; want 1, not demoted", tie.tenantRate, tie.demote(20, 0.7))
	}
}

// TestMessagesWithoutAReportCountOnlyWhereReportsCanCome: a message still without a report
// after report_timeout counts against its provider only when reports can reach the gateway: the
// driver asks for them and the gateway has a URL to receive them at (server.public_url). Without
// the URL no report ever comes, and counting the silence would demote every provider.
func TestMessagesWithoutAReportCountOnlyWhereReportsCanCome(t *testing.T) {
	t.Parallel()
	h, _, _ := startOnFakesWith(t, healthConfig, Options{})
	mi := h.app.rt.Load().members["infobip-eu"]
	if mi == nil || mi.callback == "" || !reports(mi) {
		t.Fatalf("infobip-eu with server.public_url set: %+v, want it to count messages without a report", mi)
	}
	unreachable := *mi
	unreachable.callback = ""
	if reports(&unreachable) {
		t.Error("a provider with no URL to send its reports to counts messages without a report")
	}
}

// smsKey is the SMS health of provider to country.
func smsKey(provider, country string) healthKey {
	return healthKey{provider: provider, country: country}
}

// healthOf is a copy of k's delivery health, nil when there is none.
func healthOf(a *App, k healthKey) *healthView {
	v, ok := a.health.view(k)
	if !ok {
		return nil
	}
	return &v
}

// TestOneTenantCannotKeepAProviderForAll: the other side of TestOneTenantCannotDemoteForAll. A
// tenant whose messages are delivered (or which reports its own codes used) cannot, by volume,
// keep a provider in every tenant's chain while the other tenants' messages are not delivered.
func TestOneTenantCannotKeepAProviderForAll(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	cfg := strings.Replace(healthConfig, "tenants: [{name: acme, api_key: acme-key}]",
		"tenants: [{name: acme, api_key: acme-key}, {name: other, api_key: other-key}, {name: big, api_key: big-key}]", 1)
	h, _, _ := startOnFakesWith(t, cfg, Options{Now: clk.Now})
	n := 0
	send := func(key string) string {
		n++
		r := h.send(key, fmt.Sprintf(`{"message_options":{"recipient":"+4474001%05d","text":"Your code is %06d","message_type":"sms"}}`, n, n))
		if r.Status != 200 || r.Body["provider"] != "infobip-eu" {
			t.Fatalf("send %d: %d %s", n, r.Status, r.Raw)
		}
		return r.Body["id"].(string)
	}
	// big sends 80 GB messages through Infobip and reports every code used; acme's and other's
	// 12 each are reported undeliverable.
	for range 80 {
		if v := h.do("POST", "/v1/messages/"+send("big-key")+"/verified", "big-key", ""); v.Status != 200 {
			t.Fatalf("verified: %d %s", v.Status, v.Raw)
		}
	}
	for _, key := range []string{"acme-key", "other-key"} {
		for range 12 {
			infobipReport(t, h, send(key), "UNDELIVERABLE", "")
		}
	}
	if err := h.app.refreshHealth(context.Background()); err != nil {
		t.Fatal(err)
	}
	ib := healthOf(h.app, smsKey("infobip-eu", "GB"))
	if ib == nil || ib.samples != 104 || ib.rate < 0.7 || !ib.demoted {
		t.Fatalf("one tenant's delivered volume kept infobip for everyone (rate %.3f over all messages): %+v", ib.rate, ib)
	}
	if r := h.do("GET", "/v1/providers", "admin-t0ken", ""); !strings.Contains(r.Raw, `"country":"GB","rate":0.769,"tenant_rate":0,"samples":104,"demoted":true`) {
		t.Errorf("providers: %s", r.Raw)
	}
	r := h.send("acme-key", `{"message_options":{"recipient":"+447400199999","text":"Your code is 123456","message_type":"sms"}}`)
	if r.Body["provider"] != "twilio-us" {
		t.Fatalf("acme's next GB send still went to infobip: %s", r.Raw)
	}
	// More of big's volume does not restore it.
	for i := range 200 {
		h.app.Store().Insert(context.Background(), &store.Record{ID: fmt.Sprint("big", i), Tenant: "big", Provider: "infobip-eu", Country: "GB",
			Status: gateway.StatusDelivered, CreatedAt: clk.Now(), UpdatedAt: clk.Now()})
	}
	h.app.refreshHealth(context.Background())
	if ib := healthOf(h.app, smsKey("infobip-eu", "GB")); ib.samples != 304 || !ib.demoted {
		t.Errorf("big's volume restored infobip: %+v", ib)
	}
}

// TestTenantRate: the weighted median of the tenants' rates, each weighing at most min_samples
// messages.
func TestTenantRate(t *testing.T) {
	t.Parallel()
	all := func(string) bool { return true }
	for _, c := range []struct {
		name    string
		rows    []store.HealthRow
		want    float64
		demoted bool
	}{
		{"a lone tenant decides", []store.HealthRow{{Tenant: "a", Delivered: 2, Failed: 18}}, 0.1, true},
		{"one tenant's word against another's is not a demotion",
			[]store.HealthRow{{Tenant: "a", Delivered: 500}, {Tenant: "b", Failed: 20}}, 1, false},
		{"nor the other way round", []store.HealthRow{{Tenant: "a", Failed: 500}, {Tenant: "b", Delivered: 20}}, 1, false},
		{"two tenants outweigh a large one", []store.HealthRow{{Tenant: "a", Delivered: 500}, {Tenant: "b", Failed: 10, Pending: 10}, {Tenant: "c", Delivered: 5, Failed: 15}}, 0.25, true},
		{"a small tenant weighs its messages", []store.HealthRow{{Tenant: "a", Failed: 30}, {Tenant: "b", Delivered: 9, Failed: 1}, {Tenant: "c", Delivered: 5}}, 0, true},
		{"enough of them outweigh one", []store.HealthRow{{Tenant: "a", Failed: 30}, {Tenant: "b", Delivered: 9, Failed: 1}, {Tenant: "c", Delivered: 11}}, 0.9, false},
		{"too few messages", []store.HealthRow{{Tenant: "a", Failed: 19}}, 0, false},
	} {
		for i := range c.rows {
			c.rows[i].Provider, c.rows[i].Country = "p", "FR"
		}
		ev := aggregateHealth(c.rows, 20, all)[smsKey("p", "FR")]
		if ev.tenantRate != c.want || ev.demote(20, 0.7) != c.demoted {
			t.Errorf("%s: tenant rate %v demoted %v, want %v %v", c.name, ev.tenantRate, ev.demote(20, 0.7), c.want, c.demoted)
		}
	}
	// Pending messages count only for providers that ask for reports.
	ev := aggregateHealth([]store.HealthRow{{Provider: "p", Country: "FR", Tenant: "a", Delivered: 10, Pending: 30}}, 20, func(string) bool { return false })[smsKey("p", "FR")]
	if ev.samples != 10 || ev.tenantRate != 1 {
		t.Errorf("pending counted for a provider without reports: %+v", ev)
	}
}

// TestVoiceHasItsOwnDeliveryHealth: a call nobody answered is reported undelivered, which
// measures the callee, not the provider: unanswered calls do not count at all. Calls that fail
// (or get no report) demote a provider for voice to that country, and only for voice; an SMS
// outage demotes it for SMS only. Voice used to be left out of delivery health, so a provider
// whose calls stopped connecting stayed first in every voice chain.
func TestVoiceHasItsOwnDeliveryHealth(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	h, _, _ := startOnFakesWith(t, healthConfig, Options{Now: clk.Now})
	n := 0
	send := func(typ string) response {
		n++
		return h.send("acme-key", fmt.Sprintf(`{"message_options":{"recipient":"+4474001%05d","code":"%06d","message_type":%q}}`, n, n, typ))
	}
	voice := healthKey{provider: "infobip-eu", country: "GB", voice: true}
	for range 20 {
		r := send("voice")
		if r.Body["provider"] != "infobip-eu" {
			t.Fatalf("voice: %s", r.Raw)
		}
		infobipReport(t, h, r.Body["id"].(string), "UNDELIVERABLE", "")
	}
	h.app.refreshHealth(context.Background())
	if st := healthOf(h.app, voice); st != nil {
		t.Fatalf("unanswered calls counted in delivery health: %+v", st)
	}
	// SMS stops being delivered: infobip is demoted for GB SMS, and voice keeps its order.
	for range 20 {
		r := send("sms")
		infobipReport(t, h, r.Body["id"].(string), "UNDELIVERABLE", "")
	}
	h.app.refreshHealth(context.Background())
	if st := healthOf(h.app, smsKey("infobip-eu", "GB")); st == nil || !st.demoted || st.samples != 20 {
		t.Fatalf("SMS outage: %+v", st)
	}
	if r := send("voice"); r.Body["provider"] != "infobip-eu" {
		t.Errorf("a voice message followed the SMS demotion: %s", r.Raw)
	}
	if r := send("sms"); r.Body["provider"] != "twilio-us" {
		t.Errorf("SMS after the demotion: %s", r.Raw)
	}
	// Calls stop connecting: infobip's calls to GB fail (3 answered, 12 failed; the 21 unanswered
	// ones above still do not count). It is demoted for voice, at 3 of 15.
	for i := range 15 {
		r := send("voice")
		group := "REJECTED"
		if i < 3 {
			group = "DELIVERED"
		}
		infobipReport(t, h, r.Body["id"].(string), group, "")
	}
	h.app.refreshHealth(context.Background())
	st := healthOf(h.app, voice)
	if st == nil || !st.demoted || st.samples != 15 || st.rate != 0.2 {
		t.Fatalf("voice outage: %+v", st)
	}
	if r := send("voice"); r.Body["provider"] != "twilio-us" {
		t.Errorf("voice after its demotion: %s", r.Raw)
	}
	if got := testutil.ToFloat64(h.app.MetricSet().Demotions.WithLabelValues("infobip-eu", "GB", "voice")); got != 1 {
		t.Errorf("voice demotions counted: %v", got)
	}
	if got := testutil.ToFloat64(h.app.MetricSet().DeliveryRate.WithLabelValues("infobip-eu", "GB", "voice")); got != 0.2 {
		t.Errorf("voice delivery rate: %v", got)
	}
	r := h.do("GET", "/v1/providers", "admin-t0ken", "")
	if !strings.Contains(r.Raw, `"voice_delivery":[{"country":"GB","rate":0.2,"tenant_rate":0.2,"samples":15,"demoted":true}]`) ||
		!strings.Contains(r.Raw, `"delivery":[{"country":"GB","rate":0,"tenant_rate":0,"samples":20,"demoted":true}]`) {
		t.Errorf("GET /v1/providers: %s", r.Raw)
	}
}

// TestUnreportedMessagesCountOnlyWhereReportsWereAsked: a provider that was never asked for
// reports (Infobip without a webhook_secret sends no notifyUrl: its reports would be refused)
// cannot be judged by messages that got none. They counted as failures once older than
// report_timeout, so a healthy provider configured without a secret was demoted after ten
// minutes of traffic.
func TestUnreportedMessagesCountOnlyWhereReportsWereAsked(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	cfg := strings.Replace(healthConfig, "    webhook_secret: hook-secret\n", "", 1)
	h, ib, _ := startOnFakesWith(t, cfg, Options{Now: clk.Now})
	for i := range 20 {
		r := h.send("acme-key", fmt.Sprintf(`{"message_options":{"recipient":"+4474001%05d","code":"%06d","message_type":"sms"}}`, i, i))
		if r.Body["provider"] != "infobip-eu" {
			t.Fatalf("send: %s", r.Raw)
		}
	}
	if got := ib.Requests()[0].Body["messages"].([]any)[0].(map[string]any)["notifyUrl"]; got != nil {
		t.Fatalf("a notify URL without a secret: %v", got)
	}
	clk.Add(11 * time.Minute)
	h.app.refreshHealth(context.Background())
	if st := healthOf(h.app, smsKey("infobip-eu", "GB")); st != nil && st.demoted {
		t.Errorf("demoted on messages it was never asked to report: %+v", st)
	}
}

// windowLog is a message log whose window reads (Health, Prices) take took each, fail while fail
// is set, and note when Health began.
type windowLog struct {
	store.Backend
	took time.Duration
	fail atomic.Bool
	// during, when set, runs at the start of each read of the window.
	during func()
	mu     sync.Mutex
	calls  []time.Time
}

func (b *windowLog) Health(ctx context.Context, since, pendingBefore time.Time) ([]store.HealthRow, error) {
	b.mu.Lock()
	b.calls = append(b.calls, time.Now())
	b.mu.Unlock()
	if b.during != nil {
		b.during()
	}
	select {
	case <-time.After(b.took):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.fail.Load() {
		return nil, errors.New("the message log did not answer")
	}
	return b.Backend.Health(ctx, since, pendingBefore)
}

func (b *windowLog) Prices(ctx context.Context, since, until time.Time) ([]store.PriceRow, error) {
	if b.fail.Load() {
		return nil, errors.New("the message log did not answer")
	}
	return b.Backend.Prices(ctx, since, until)
}

func (b *windowLog) starts() []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// TestAReadOfTheWindowIsCutOnlyByItsBound: a read of the window that its budget ended is a cut
// (the next one gets a larger bound); one the message log failed, or whose caller went away (a
// shutdown), is not.
func TestAReadOfTheWindowIsCutOnlyByItsBound(t *testing.T) {
	t.Parallel()
	wl := &windowLog{took: 200 * time.Millisecond}
	h := start(t, `
storage: {driver: memory}
routing: {delivery_health: {enabled: false}} # read by the test alone
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, Options{WrapBackend: func(b store.Backend) store.Backend { wl.Backend = b; return wl }})
	now := time.Now()
	if _, err := h.app.readHealth(context.Background(), now.Add(-time.Hour), now, 20*time.Millisecond); !wasCut(err) {
		t.Errorf("a read its budget ended: %v, want it cut", err)
	}
	if _, err := h.app.readHealth(context.Background(), now.Add(-time.Hour), now, 5*time.Second); err != nil {
		t.Errorf("a read within its budget: %v", err)
	}
	wl.fail.Store(true)
	if _, err := h.app.readHealth(context.Background(), now.Add(-time.Hour), now, 5*time.Second); err == nil || wasCut(err) {
		t.Errorf("a read the log failed: %v, want an error that is no cut", err)
	}
	wl.fail.Store(false)
	ctx, cancel := context.WithCancel(context.Background())
	wl.during = cancel
	if _, err := h.app.readHealth(ctx, now.Add(-time.Hour), now, 5*time.Second); err == nil || wasCut(err) {
		t.Errorf("a read whose caller went away: %v, want an error that is no cut", err)
	}
}

// TestHealthRefreshIsPaced: a refresh waits at least healthPace times its last read before reading
// the window again, whatever refresh says: a read that grows with traffic cannot take the
// replica's cores.
func TestHealthRefreshIsPaced(t *testing.T) {
	t.Parallel()
	hb := &windowLog{took: 40 * time.Millisecond}
	start(t, `
storage: {driver: memory}
routing: {delivery_health: {refresh: 10ms}}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, Options{WrapBackend: func(b store.Backend) store.Backend { hb.Backend = b; return hb }})
	waitUntil(t, "three reads of the window", func() bool { return len(hb.starts()) >= 3 })
	calls := hb.starts()
	for i := 1; i < len(calls); i++ {
		// The read before took at least 40 ms: the next starts at least 400 ms later, not 10 ms.
		if gap := calls[i].Sub(calls[i-1]); gap < healthPace*hb.took {
			t.Errorf("read %d started %s after the one before, want at least %s", i+1, gap, healthPace*hb.took)
		}
	}
	if got := healthWait(10*time.Second, 2700*time.Millisecond); got != 27*time.Second {
		t.Errorf("a 2.7 s read at a 10 s refresh waits %s, want 27s", got)
	}
	if got := healthWait(10*time.Second, 100*time.Millisecond); got != 10*time.Second {
		t.Errorf("a 0.1 s read at a 10 s refresh waits %s, want the refresh", got)
	}
}

// TestAHealthReadThatOutgrewItsBudgetStillEnds: a window whose read takes longer than the read's
// bound (here 120 ms against 50) is read all the same, a few refreshes later: each read cut by its
// bound doubles the next one's. With a fixed bound every read was cut, and routing kept rates that
// never changed again.
func TestAHealthReadThatOutgrewItsBudgetStillEnds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		budget, took time.Duration
		cut          bool
		want         time.Duration
	}{
		{10 * time.Second, 10 * time.Second, true, 20 * time.Second},
		{8 * time.Minute, 8 * time.Minute, true, healthBudgetMax},
		{40 * time.Second, 15 * time.Second, false, 45 * time.Second},
		{45 * time.Second, time.Second, false, healthBudget},
		{5 * time.Minute, 4 * time.Minute, false, healthBudgetMax},
	} {
		if got := nextHealthBudget(healthBudget, c.budget, c.took, c.cut); got != c.want {
			t.Errorf("after a read of %s bounded by %s (cut %v): %s, want %s", c.took, c.budget, c.cut, got, c.want)
		}
	}
	hb := &windowLog{took: 120 * time.Millisecond}
	h := start(t, `
storage: {driver: memory}
routing: {delivery_health: {refresh: 10ms}}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, Options{WrapBackend: func(b store.Backend) store.Backend { hb.Backend = b; return hb }, healthBudget: 50 * time.Millisecond})
	reads := func(result string) float64 {
		return testutil.ToFloat64(h.app.metrics.WindowReads.WithLabelValues("delivery_health", result))
	}
	waitUntil(t, "a read of the window that ends", func() bool { return reads("ok") >= 1 })
	if n := reads("error"); n != 2 {
		t.Errorf("%v reads cut before one ended, want 2 (at 50 and 100 ms)", n)
	}
}

// TestRoutingReadsAreCounted: each read of delivery health and of least-cost prices is counted
// by result, so that an alert sees a replica routing on rates and prices it can no longer read.
func TestRoutingReadsAreCounted(t *testing.T) {
	t.Parallel()
	fb := &windowLog{}
	h := start(t, `
storage: {driver: memory}
routing: {delivery_health: {refresh: 1h}, least_cost: {refresh: 1h}}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m], strategy: least_cost}]
`, Options{WrapBackend: func(b store.Backend) store.Backend { fb.Backend = b; return fb }})
	reads := func(read, result string) float64 {
		return testutil.ToFloat64(h.app.metrics.WindowReads.WithLabelValues(read, result))
	}
	// The start reads the prices once (the refreshes are an hour away).
	waitUntil(t, "the prices read at start", func() bool { return reads("prices", "ok") == 1 })
	fb.fail.Store(true)
	if h.app.refreshHealth(context.Background()) == nil || h.app.refreshPrices(context.Background()) == nil {
		t.Fatal("a read that failed was not reported")
	}
	fb.fail.Store(false)
	if err := h.app.refreshHealth(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		read, result string
		want         float64
	}{{"delivery_health", "ok", 1}, {"delivery_health", "error", 1}, {"prices", "ok", 1}, {"prices", "error", 1}} {
		if got := reads(c.read, c.result); got != c.want {
			t.Errorf("%s %s: %v, want %v", c.read, c.result, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(h.app.metrics.WindowReadTime); n != 2 {
		t.Errorf("%d series of smsgate_window_read_seconds, want one per read", n)
	}
}

// TestDemotionRules: the edges of the demotion rules. A rate of exactly min_rate is not
// demoted; a demoted provider comes back only at min_rate + margin (hysteresis), not on the
// first refresh above min_rate; the delivery-rate gauge shows only rates of min_samples
// messages or more; and a voice demotion alone moves calls (not only when SMS is demoted too).
func TestDemotionRules(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	h, _, _ := startOnFakesWith(t, healthConfig, Options{Now: clk.Now})
	st := h.app.Store()
	n := 0
	// put records delivered of total messages (the rest undelivered, or failed for calls) to
	// infobip-eu for GB, all five minutes old, replacing those of the earlier step.
	put := func(typ gateway.MessageType, delivered, total int) {
		t.Helper()
		clk.Add(time.Hour) // the earlier step's records leave the 30-minute window
		for i := range total {
			n++
			status := gateway.StatusDelivered
			if i >= delivered {
				status = gateway.StatusUndelivered
				if typ == gateway.Voice {
					status = gateway.StatusFailed
				}
			}
			if err := st.Insert(context.Background(), &store.Record{ID: fmt.Sprint("m", n), Tenant: "acme", Provider: "infobip-eu", Country: "GB",
				MessageType: string(typ), Status: status, CreatedAt: clk.Now().Add(-5 * time.Minute), UpdatedAt: clk.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.app.refreshHealth(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// gauge is the delivery-rate gauge as /metrics shows it, and whether it shows it at all.
	gauge := func() (float64, bool) {
		const series = `smsgate_delivery_rate{channel="sms",country="GB",provider="infobip-eu"} `
		for _, line := range strings.Split(h.do("GET", "/metrics", "", "").Raw, "\n") {
			if v, ok := strings.CutPrefix(line, series); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatal(err)
				}
				return f, true
			}
		}
		return 0, false
	}
	demoted := func() bool { v := healthOf(h.app, smsKey("infobip-eu", "GB")); return v != nil && v.demoted }

	put(gateway.SMS, 5, 9) // under min_samples (10)
	if _, shown := gauge(); shown || demoted() {
		t.Errorf("9 messages: gauge shown %v, demoted %v; want neither", shown, demoted())
	}
	put(gateway.SMS, 7, 10) // exactly min_rate 0.7
	if v, shown := gauge(); !shown || v != 0.7 || demoted() {
		t.Errorf("7 of 10: gauge %v shown %v, demoted %v; want 0.7 shown and not demoted", v, shown, demoted())
	}
	put(gateway.SMS, 6, 10)
	if !demoted() {
		t.Fatal("6 of 10 is not demoted")
	}
	put(gateway.SMS, 1, 1) // a rate of 1, of fewer messages than a restore needs (min_samples / 4)
	if !demoted() {
		t.Error("restored by one message delivered")
	}
	if v, shown := gauge(); shown {
		t.Errorf("1 message: gauge %v shown, want it gone (an earlier rate must not stay on show)", v)
	}
	put(gateway.SMS, 15, 20) // 0.75: above min_rate, under min_rate + margin (0.8)
	if !demoted() {
		t.Error("restored at 0.75, under min_rate + margin")
	}
	put(gateway.SMS, 16, 20) // 0.8
	if demoted() {
		t.Error("not restored at min_rate + margin")
	}

	// Calls fail while SMS delivers: a call tries twilio-us first, an SMS still infobip-eu.
	put(gateway.Voice, 2, 12)
	if v := healthOf(h.app, healthKey{"infobip-eu", "GB", true}); v == nil || !v.demoted || demoted() {
		t.Fatalf("voice %+v; SMS demoted %v", v, demoted())
	}
	if v, shown := gauge(); shown {
		t.Errorf("no SMS left in the window: gauge %v shown, want it gone", v)
	}
	if r := h.send("acme-key", `{"message_options":{"recipient":"+447400100001","code":"123456","message_type":"voice"}}`); r.Body["provider"] != "twilio-us" {
		t.Errorf("a call after a voice demotion: %s", r.Raw)
	}
	if r := h.send("acme-key", `{"message_options":{"recipient":"+447400100002","code":"123456","message_type":"sms"}}`); r.Body["provider"] != "infobip-eu" {
		t.Errorf("an SMS after a voice demotion: %s", r.Raw)
	}
}

// TestARouteCanTurnDeliveryHealthOff: a route's own delivery_health: false keeps its order for
// a country where its first provider is demoted.
func TestARouteCanTurnDeliveryHealthOff(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	cfg := strings.Replace(healthConfig, "    providers: [infobip-eu, twilio-us]\n", "    providers: [infobip-eu, twilio-us]\n    delivery_health: false\n", 1)
	h, _, _ := startOnFakesWith(t, cfg, Options{Now: clk.Now})
	insertRecords(t, h, clk, "infobip-eu", gateway.StatusUndelivered, 10, time.Minute)
	h.app.refreshHealth(context.Background())
	if v := healthOf(h.app, smsKey("infobip-eu", "GB")); v == nil || !v.demoted {
		t.Fatalf("not demoted: %+v", v)
	}
	if r := h.send("acme-key", `{"message_options":{"recipient":"+447400100001","code":"123456","message_type":"sms"}}`); r.Body["provider"] != "infobip-eu" {
		t.Errorf("a route without delivery health was reordered: %s", r.Raw)
	}
}

// TestAskingForReportsNeedsAPublicURL: without server.public_url no report can reach the
// gateway, so unreported messages are no evidence against a provider, also one whose reports do
// not depend on a callback URL it sends (End User Messaging publishes its events to SNS topics
// whatever smsgate asks; SNS would have nowhere to deliver them).
func TestAskingForReportsNeedsAPublicURL(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	cfg := strings.Replace(healthConfig, `public_url: "https://sms.example.com", `, "", 1)
	cfg = strings.Replace(cfg, "  - {name: quiet, type: mock}\nroutes:", "  - {name: quiet, type: mock}\n  - name: eum\n    type: aws-sms-voice\n    region: eu-west-1\n"+
		"    origination_identity: \"+14155550000\"\n    configuration_set: smsgate\n    event_topics: [\"arn:aws:sns:eu-west-1:123456789012:smsgate-events\"]\nroutes:", 1)
	h, _, _ := startOnFakesWith(t, cfg, Options{Now: clk.Now})
	for _, provider := range []string{"infobip-eu", "eum"} {
		insertRecords(t, h, clk, provider, gateway.StatusSent, 10, 15*time.Minute)
	}
	h.app.refreshHealth(context.Background())
	for _, provider := range []string{"infobip-eu", "eum"} {
		if v := healthOf(h.app, smsKey(provider, "GB")); v != nil {
			t.Errorf("%s: messages no report could reach counted: %+v", provider, v)
		}
	}
}

// insertRecords puts n SMS records of acme to GB, sent by provider age ago and now in status.
func insertRecords(t *testing.T, h *harness, clk *testClock, provider, status string, n int, age time.Duration) {
	t.Helper()
	for i := range n {
		if err := h.app.Store().Insert(context.Background(), &store.Record{ID: fmt.Sprint(provider, "-", status, "-", i), Tenant: "acme", Provider: provider,
			Country: "GB", MessageType: "sms", Status: status, CreatedAt: clk.Now().Add(-age), UpdatedAt: clk.Now()}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAllDemotedKeepTheirOrderAndProbeNothing: when every provider of a route is demoted for a
// country, its messages try them in the configured order, and none is a probe: each attempt's
// note says its provider is demoted, none that it is tried "in its place" or "first". The same
// for both strategies.
func TestAllDemotedKeepTheirOrderAndProbeNothing(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{"ordered", "least_cost"} {
		t.Run(strategy, func(t *testing.T) {
			clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
			cfg := strings.Replace(healthConfig, "  - name: default\n", "  - name: default\n    strategy: "+strategy+"\n", 1)
			h, _, _ := startOnFakesWith(t, cfg, Options{Now: clk.Now})
			for _, provider := range []string{"infobip-eu", "twilio-us"} {
				insertRecords(t, h, clk, provider, gateway.StatusUndelivered, 10, 5*time.Minute)
			}
			h.app.refreshHealth(context.Background())
			for _, provider := range []string{"infobip-eu", "twilio-us"} {
				if st := healthOf(h.app, smsKey(provider, "GB")); st == nil || !st.demoted {
					t.Fatalf("%s not demoted for GB: %+v", provider, st)
				}
			}
			for i := range 20 { // probe_share 0.1: two of these would probe were a provider healthy
				r := h.send("acme-key", fmt.Sprintf(`{"message_options":{"recipient":"+4474001%05d","code":"%06d","message_type":"sms"}}`, i, i))
				a, _ := r.Body["attempts"].([]any)
				if len(a) == 0 {
					t.Fatalf("send %d: %s", i, r.Raw)
				}
				first := a[0].(map[string]any)
				if note, _ := first["note"].(string); first["provider"] != "infobip-eu" || !strings.HasPrefix(note, "demoted for GB") {
					t.Errorf("send %d: first attempt %v, want infobip-eu noted as demoted and not probed", i, first)
				}
			}
		})
	}
}

// TestProbeShare: every round(1/probe_share)-th message probes; a share of 0 never does.
func TestProbeShare(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		share float64
		want  int
	}{{0.1, 7}, {0.15, 10}, {0.5, 35}, {0, 0}} {
		var c atomic.Uint64
		got := 0
		for range 70 {
			if probe(config.DeliveryHealth{ProbeShare: &tc.share}, &c) {
				got++
			}
		}
		if got != tc.want {
			t.Errorf("share %v: %d probes of 70, want %d", tc.share, got, tc.want)
		}
	}
}
