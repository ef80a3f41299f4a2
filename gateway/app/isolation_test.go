package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/policy"
	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
	"github.com/smsgate/smsgate/providers/providertest"
)

// The tests in this file try, as a hostile or careless tenant would, to hurt other tenants or to
// walk around the abuse rules (issue 12).

const slowMockConfig = `
server: {request_timeout: 3s, shutdown_timeout: 5s}
storage: {driver: sqlite, path: $DIR/log.db}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key}]
providers:
  - name: slow
    type: mock
    latency: 400ms
routes:
  - name: default
    providers: [slow]
`

// sendThenHangUp starts acme's send of actionBody and returns the hang-up: it cancels the
// request and returns what the caller's client said (an error, unless the answer came first).
func sendThenHangUp(h *harness) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", h.url+"/v1/send-phone-message", strings.NewReader(actionBody))
		req.Header.Set("Authorization", "Bearer acme-key")
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	return func() error {
		cancel()
		return <-done
	}
}

// TestCoalescedWaiterSurvivesFirstCallerHangingUp: two identical requests are coalesced; the first
// caller hangs up while the provider call runs. The call is not aborted: the waiting duplicate gets
// 200, and the message log says sent.
func TestCoalescedWaiterSurvivesFirstCallerHangingUp(t *testing.T) {
	t.Parallel()
	h := start(t, slowMockConfig, Options{})
	hangUp := sendThenHangUp(h)
	time.Sleep(100 * time.Millisecond)
	second := make(chan response, 1)
	go func() { second <- h.send("acme-key", actionBody) }()
	time.Sleep(100 * time.Millisecond)
	if err := hangUp(); err == nil {
		t.Fatal("the first caller was meant to hang up")
	}
	r := <-second
	if r.Status != 200 || r.Body["status"] != "sent" {
		t.Fatalf("the waiting duplicate got %d %s, want the shared send's 200", r.Status, r.Raw)
	}
	rec, err := h.app.Store().Get(context.Background(), "acme", r.Body["id"].(string))
	if err != nil || rec.Status != gateway.StatusSent || len(rec.Attempts) != 1 || rec.Attempts[0].Outcome != "sent" {
		t.Errorf("record %+v, err %v: the provider call must complete and be recorded as sent", rec, err)
	}
	page, _ := h.app.Store().List(context.Background(), store.Query{Tenant: "acme", Limit: 10})
	if len(page) != 1 {
		t.Errorf("%d records, want one send for the two coalesced requests", len(page))
	}
	// The caller that hung up is counted as cancelled, not as a request whose budget ran out.
	waitUntil(t, "the hung-up request counted as cancelled", func() bool {
		return testutil.ToFloat64(h.app.MetricSet().Requests.WithLabelValues("acme", "", "cancelled")) == 1
	})
}

// TestAnsweredSendIsRecordedAtShutdown: a send still running when shutdown starts is finished,
// answered and recorded before the message log closes.
func TestAnsweredSendIsRecordedAtShutdown(t *testing.T) {
	t.Parallel()
	h := start(t, slowMockConfig, Options{})
	done := make(chan response, 1)
	go func() { done <- h.send("acme-key", actionBody) }()
	time.Sleep(100 * time.Millisecond)
	if err := h.app.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	r := <-done
	if r.Status != 200 {
		t.Fatalf("in-flight send: %d %s", r.Status, r.Raw)
	}
	sq, err := store.OpenSQLite(context.Background(), strings.TrimSuffix(h.path, "smsgate.yaml")+"log.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	if rec, err := sq.Get(context.Background(), "acme", r.Body["id"].(string)); err != nil || rec.Status != gateway.StatusSent {
		t.Errorf("answered send not in the message log after shutdown: %+v %v", rec, err)
	}
}

// TestASendWhoseCallerHungUpIsRecordedAtShutdown: a send goes on when its caller hangs up; a
// shutdown that starts then waits for it, so that its record reaches the message log before the
// log closes (the server's own shutdown does not wait: the request is gone).
func TestASendWhoseCallerHungUpIsRecordedAtShutdown(t *testing.T) {
	t.Parallel()
	h := start(t, slowMockConfig, Options{})
	hangUp := sendThenHangUp(h)
	time.Sleep(100 * time.Millisecond)
	if err := hangUp(); err == nil {
		t.Fatal("the caller was meant to hang up")
	}
	if err := h.app.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	sq, err := store.OpenSQLite(context.Background(), strings.TrimSuffix(h.path, "smsgate.yaml")+"log.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	page, err := sq.List(context.Background(), store.Query{Tenant: "acme", Limit: 10})
	if err != nil || len(page) != 1 || page[0].Status != gateway.StatusSent {
		t.Fatalf("the message log after shutdown holds %d records (%v), want the send, sent", len(page), err)
	}
}

// echoingInfobip is a fake Infobip that refuses every send with a 401 whose text quotes the API
// key whole, a 10-character piece of it, the webhook secret and another secret of the config
// (which the driver does not know to remove), and whose error code holds a piece of that other.
func echoingInfobip(t *testing.T, key, hook, other string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/sms/3/messages" || r.Header.Get("Authorization") != "App "+key {
			t.Errorf("unexpected request %s %s %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		text := "Invalid login details: key " + key + " (prefix " + key[3:13] + "...), webhook " + hook
		w.Write([]byte(`{"requestError":{"serviceException":{"messageId":"UNAUTHORIZED_` + other[5:15] + `","text":"` + text + ` ` + other + `"}}}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestProviderEchoingSecretsLeaksNothing: no run of 6 characters of any configured secret reaches
// the reply, the message log or a log line, even when a provider echoes them whole or cut.
func TestProviderEchoingSecretsLeaksNothing(t *testing.T) {
	t.Parallel()
	const key, hook, lonesKey = "IBKEY-7d2f9a61c4e84b0fa3", "HOOK-5e1b7c9d2a", "lone-key-4a8c2e6f1b"
	srv := echoingInfobip(t, key, hook, lonesKey)
	h := start(t, `
storage: {driver: sqlite, path: $DIR/log.db}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key}, {name: lone, api_key: `+lonesKey+`}]
providers:
  - {name: ib, type: infobip, base_url: "`+srv.URL+`", api_key: "`+key+`", webhook_secret: "`+hook+`"}
  - {name: backup, type: mock}
routes:
  - {name: lone, match: {tenants: [lone]}, providers: [ib]}
  - {name: default, providers: [ib, backup]}
`, Options{})
	r := h.send("acme-key", actionBody)
	if r.Status != 200 || r.Body["provider"] != "backup" {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	rec, err := h.app.Store().Get(context.Background(), "acme", r.Body["id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	recJSON := ""
	for _, a := range rec.Attempts {
		recJSON += a.Code + " " + a.Error + " "
	}
	if !strings.Contains(recJSON, "UNAUTHORIZED") {
		t.Fatalf("the attempt record lost the provider's code: %q", recJSON)
	}
	// A send that every provider failed keeps the last error's code in its record.
	failed := h.send(lonesKey, actionBody)
	if failed.Status != 502 {
		t.Fatalf("lone: %d %s", failed.Status, failed.Raw)
	}
	lone, err := h.app.Store().Get(context.Background(), "lone", failed.Body["id"].(string))
	if err != nil || !strings.Contains(lone.Error, "UNAUTHORIZED") {
		t.Fatalf("lone's record: %+v %v", lone, err)
	}
	recJSON += lone.Error
	for where, text := range map[string]string{"reply": r.Raw + failed.Raw, "message log": recJSON, "logs": h.logs.String()} {
		for _, secret := range []string{key, hook, lonesKey} {
			for i := 0; i+gateway.SecretRun <= len(secret); i++ {
				if piece := secret[i : i+gateway.SecretRun]; strings.Contains(text, piece) {
					t.Errorf("%s holds %q, a piece of a secret: %s", where, piece, text)
					break
				}
			}
		}
	}
}

// TestARecipientRefusalQuotesNoSecret: a refusal of the destination whose status name holds a
// piece of a secret the driver does not know (another tenant's API key) reaches neither the
// answer, which quotes the provider's code, nor the message log.
func TestARecipientRefusalQuotesNoSecret(t *testing.T) {
	t.Parallel()
	const lonesKey = "LONE-KEY-4A8C2E6F1B" // in capitals: the driver reads a status name in capitals
	srv := providertest.Answering(t, "POST", "/sms/3/messages", 200,
		[]byte(`{"messages":[{"messageId":"m-1","destination":"14155550104","status":{"groupId":5,"groupName":"REJECTED","id":87,"name":"REJECTED_BLOCKLIST_`+lonesKey[9:]+`"}}]}`))
	h := start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key}, {name: lone, api_key: `+lonesKey+`}]
providers: [{name: ib, type: infobip, base_url: "`+srv.URL+`", api_key: ib-key-0123456789}]
routes: [{name: default, providers: [ib]}]
`, Options{})
	r := h.send("acme-key", actionBody)
	if r.Status != 422 || errCode(r) != "recipient_rejected" || !strings.Contains(r.Raw, "REJECTED_BLOCKLIST") {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	rec, err := h.app.Store().Get(context.Background(), "acme", r.Body["id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != gateway.StatusRejected {
		t.Errorf("a destination the provider refused is recorded %q, want %q", rec.Status, gateway.StatusRejected)
	}
	kept := rec.Error
	for _, a := range rec.Attempts {
		kept += " " + a.Code + " " + a.Error
	}
	if leaks := providertest.Leaks(r.Raw+" "+kept, []string{lonesKey}); len(leaks) > 0 {
		t.Errorf("the answer or the record holds %q: %s | %s", leaks, r.Raw, kept)
	}
}

// TestReportFromAnotherProviderCannotTouchMessage: whoever holds the Infobip webhook secret can
// post reports naming any message id; only messages Infobip sent may change.
func TestReportFromAnotherProviderCannotTouchMessage(t *testing.T) {
	t.Parallel()
	h := start(t, `
storage: {driver: sqlite, path: $DIR/log.db}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key}]
providers:
  - {name: ib, type: infobip, base_url: "http://127.0.0.1:1", api_key: k, webhook_secret: hook-secret}
  - {name: other, type: mock}
routes:
  - {name: default, providers: [other]}
`, Options{})
	r := h.send("acme-key", actionBody)
	id, _ := r.Body["id"].(string)
	if r.Status != 200 || id == "" {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	report := `{"results":[{"messageId":"` + id + `","status":{"groupId":2,"groupName":"UNDELIVERABLE","id":9,"name":"UNDELIVERABLE_NOT_DELIVERED"}}]}`
	if rr := h.do("POST", "/v1/dlr/infobip/ib?secret=hook-secret", "", report); rr.Status != 200 {
		t.Fatalf("report: %d %s", rr.Status, rr.Raw)
	}
	rec, err := h.app.Store().Get(context.Background(), "acme", id)
	if err != nil || rec.Status != gateway.StatusSent || rec.ProviderStatus == "UNDELIVERABLE_NOT_DELIVERED" {
		t.Errorf("a report from ib changed a message sent by other: %+v %v", rec, err)
	}
}

// TestReloadAppliesDisabledAndForgetsRemovedProviders: a reload that sets disabled: true drains the
// provider (and false restores it), the gauge follows the file, and every series of a provider
// that left the config is deleted.
func TestReloadAppliesDisabledAndForgetsRemovedProviders(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	if r := h.send("acme-key", actionBody); r.Body["provider"] != "primary" {
		t.Fatalf("before: %s", r.Raw)
	}
	m := h.app.MetricSet()
	disabled := strings.Replace(baseConfig, "  - name: primary\n    type: mock\n", "  - name: primary\n    type: mock\n    disabled: true\n", 1)
	// Drop down2 from the config too (and from its route).
	disabled = strings.Replace(disabled, "  - name: down2\n    type: mock\n    failure_rate: 1\n    breaker: {consecutive_failures: 1000}\n", "", 1)
	disabled = strings.Replace(disabled, "providers: [down, down2]", "providers: [down]", 1)
	h.send("broken-key", `{"recipient":"+14155550104","text":"code 5521","context":{}}`) // series for down2
	if testutil.ToFloat64(m.Attempts.WithLabelValues("down2", "provider_error")) != 1 {
		t.Fatal("no down2 series to delete")
	}
	reload := func(cfg string) {
		t.Helper()
		h.rewrite(cfg)
		if r := h.do("POST", "/v1/admin/reload", "admin-t0ken", ""); r.Status != 200 {
			t.Fatalf("reload: %d %s", r.Status, r.Raw)
		}
	}
	reload(disabled)
	if r := h.send("acme-key", actionBody); r.Body["provider"] != "backup" || attempts(r)[0] != "primary:unavailable" {
		t.Errorf("disabled: true ignored on reload: %s", r.Raw)
	}
	if v := testutil.ToFloat64(m.ProviderDisabled.WithLabelValues("primary")); v != 1 {
		t.Errorf("smsgate_provider_disabled{primary} = %v, want 1 from the config", v)
	}
	for _, name := range []string{"smsgate_provider_attempts_total", "smsgate_breaker_state", "smsgate_provider_disabled", "smsgate_failovers_total", "smsgate_provider_latency_seconds"} {
		body := h.do("GET", "/metrics", "", "").Raw
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, name) && strings.Contains(line, `"down2"`) {
				t.Errorf("series of the removed provider kept: %s", line)
			}
		}
	}
	reload(baseConfig)
	if r := h.send("acme-key", `{"recipient":"+14155550111","text":"code 7781","context":{}}`); r.Body["provider"] != "primary" {
		t.Errorf("disabled: false not applied on reload: %s", r.Raw)
	}
	if v := testutil.ToFloat64(m.ProviderDisabled.WithLabelValues("primary")); v != 0 {
		t.Errorf("smsgate_provider_disabled{primary} = %v, want 0", v)
	}
	// down2, back in the config, has its breakers' series again before any send.
	if n := strings.Count(h.do("GET", "/metrics", "", "").Raw, `smsgate_breaker_state{channel="sms",provider="down2"} 0`); n != 1 {
		t.Errorf("down2's SMS breaker state is shown %d times after it came back, want once (closed)", n)
	}
}

// TestCodeDerivedKeysAreKeyed: two gateways with the same key_secret derive the same keys from
// the same code (replicas agree), and the key is not the plain hash an attacker would compute.
func TestCodeDerivedKeysAreKeyed(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	keys := map[string]bool{}
	for _, secret := range []string{"", "", "shared-secret-0123456789"} {
		rt := &runtime{keySecret: processKeySecret}
		if secret != "" {
			rt.keySecret = []byte(secret)
		}
		h := rt.mac("resend", "acme", "+14155550104", "123456")
		mu.Lock()
		keys[string(h[:])] = true
		mu.Unlock()
	}
	if len(keys) != 2 {
		t.Errorf("%d distinct keys, want 2 (same secret -> same key, other secret -> other key)", len(keys))
	}
	if len(processKeySecret) != 32 {
		t.Errorf("process key secret of %d bytes", len(processKeySecret))
	}
	// The parts are kept apart: ("acme", "1234") and ("acme1", "234") are two part lists that
	// joined without a separator are one byte string, and would share a key.
	rt := &runtime{keySecret: processKeySecret}
	if rt.mac("resend", "acme", "1234") == rt.mac("resend", "acme1", "234") {
		t.Error("mac joins its parts without a separator: two different part lists give one key")
	}
}

// TestEverySecretOfTheConfigIsScrubbed: the secrets scrubbed from what providers answer are found
// by walking the config, so that a driver's new secret is scrubbed without being listed: a secret
// behind an interface (a provider's settings), a pointer, in a slice, an array or a map, each is
// found; an unexported field is not walked, and an empty secret is no secret.
func TestEverySecretOfTheConfigIsScrubbed(t *testing.T) {
	t.Parallel()
	type inner struct{ Key gateway.Secret }
	type settings struct {
		Direct  gateway.Secret
		Behind  any
		Pointer *inner
		List    []gateway.Secret
		Array   [1]gateway.Secret
		ByName  map[string]gateway.Secret
		Empty   gateway.Secret
		Plain   string
		hidden  gateway.Secret
	}
	var got []string
	collectSecrets(reflect.ValueOf(settings{Direct: "direct-0001", Behind: &inner{"behind-0002"}, Pointer: &inner{"pointer-0003"},
		List: []gateway.Secret{"list-0004"}, Array: [1]gateway.Secret{"array-0005"}, ByName: map[string]gateway.Secret{"x": "map-0006"},
		Plain: "plain-0007", hidden: "hidden-0008"}), &got)
	slices.Sort(got)
	want := []string{"array-0005", "behind-0002", "direct-0001", "list-0004", "map-0006", "pointer-0003"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("secrets found (-want +got):\n%s", diff)
	}
	// In a running gateway: one provider echoing another provider's key, or a tenant's, has it
	// scrubbed from what the gateway keeps and answers.
	h := start(t, `
storage: {driver: memory}
tenants: [{name: acme, api_key: acme-key-5f3e2d1c}]
providers:
  - {name: ib, type: infobip, base_url: "https://api.infobip.com", api_key: "IBKEY-7d2f9a61c4e84b0fa3"}
  - {name: tw, type: twilio, account_sid: AC0123456789abcdef0123456789abcdef, auth_token: "TWTOKEN-9b8a7c6d5e", from: "+15005550006"}
routes: [{name: default, providers: [ib, tw]}]
`, Options{})
	rt := h.app.rt.Load()
	for _, secret := range []string{"IBKEY-7d2f9a61c4e84b0fa3", "TWTOKEN-9b8a7c6d5e", "acme-key-5f3e2d1c"} {
		if out := rt.scrub("the provider said: bad key " + secret); strings.Contains(out, secret[:gateway.SecretRun]) {
			t.Errorf("scrub left a secret in %q", out)
		}
	}
}

// TestProviderThrottlingFallsOnTheFlood: Infobip throttles the account (429, Retry-After 30)
// while one tenant floods it. The flood goes on through the backup, but only its first send still
// reaches Infobip; Infobip's breaker, which every tenant shares, stays closed, so another tenant's
// send goes to Infobip once the burst has passed. A route with nothing behind Infobip answers
// 429 provider_throttled with Infobip's Retry-After.
func TestProviderThrottlingFallsOnTheFlood(t *testing.T) {
	t.Parallel()
	ib, h := infobipThenBackup(t, []string{"flood", "quiet", "solo"}, `
  - {name: only-ib, match: {tenants: [solo]}, providers: [ib]}`)
	body := func(i int) string {
		return `{"recipient":"+1415555` + fmt.Sprintf("%04d", i) + `","text":"Your code is 5521","context":{}}`
	}
	ib.SetMode(infobiptest.Throttled)
	for i := range 12 {
		r := h.send("flood-key", body(100+i))
		want := []string{"ib:throttled", "backup:sent"}
		if r.Status != 200 || !cmp.Equal(attempts(r), want) {
			t.Fatalf("flood send %d: %d %v, want 200 %v", i, r.Status, attempts(r), want)
		}
	}
	if n := ib.Calls(); n != 1 {
		t.Errorf("the throttled tenant reached Infobip %d times, want once (held off for its Retry-After)", n)
	}
	r := h.send("solo-key", body(200))
	if r.Status != 429 || errCode(r) != "provider_throttled" || r.Header.Get("Retry-After") != "30" || r.Body["id"] == nil {
		t.Errorf("every provider throttling: %d %v %s, want 429 provider_throttled, Retry-After 30 and the record's id", r.Status, r.Header, r.Raw)
	}
	ib.SetMode(infobiptest.OK)
	if r := h.send("quiet-key", body(300)); r.Body["provider"] != "ib" {
		t.Errorf("the other tenant after the flood: %s, want ib (its breaker closed)", r.Raw)
	}
	if r := h.send("flood-key", body(301)); !cmp.Equal(attempts(r), []string{"ib:throttled", "backup:sent"}) {
		t.Errorf("the flood inside its hold-off: %v", attempts(r))
	}
	m := h.app.MetricSet()
	if v := testutil.ToFloat64(m.Attempts.WithLabelValues("ib", "throttled")); v != 14 {
		t.Errorf("smsgate_provider_attempts_total{ib,throttled} = %v, want 14 (2 refused, 12 held off)", v)
	}
}

// TestPerIPCountsAnIPv6SlashSixtyFour: an end user walking through the addresses of its own /64
// (or writing its IPv4 address as IPv4-mapped IPv6) is still one per_ip bucket; another /64 is not.
func TestPerIPCountsAnIPv6SlashSixtyFour(t *testing.T) {
	t.Parallel()
	h := start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0, per_ip: 1/1h}}
tenants: [{name: acme, api_key: acme-key}]
providers: [{name: m, type: mock}]
routes: [{name: default, providers: [m]}]
`, Options{})
	send := func(i int, ip string) response {
		return h.send("acme-key", `{"message_options":{"recipient":"+1415555`+fmt.Sprintf("%04d", i)+`","text":"Code 1234","message_type":"sms"},"request":{"ip":"`+ip+`"}}`)
	}
	for i, tc := range []struct {
		ip     string
		status int
	}{
		{"2001:db8:1:2::1", 200}, {"2001:db8:1:2:ffff::7", 429}, {"2001:db8:1:3::1", 200},
		{"203.0.113.9", 200}, {"::ffff:203.0.113.9", 429}, {"not-an-address", 400},
	} {
		if r := send(100+i, tc.ip); r.Status != tc.status {
			t.Errorf("ip %s: %d %s, want %d", tc.ip, r.Status, r.Raw, tc.status)
		}
	}
}

// TestARefusedRequestIsNotTheProvidersFailure: Infobip speaks voice texts of at most 1,400
// characters and smsgate takes 1,600. One tenant's voice messages of 1,500 characters (no code in
// them, so they are spoken as they are) draw Infobip's 400: each goes on through the backup, and
// Infobip's breaker, which every tenant shares, stays closed for the other tenant's next call.
func TestARefusedRequestIsNotTheProvidersFailure(t *testing.T) {
	t.Parallel()
	_, h := infobipThenBackup(t, []string{"long", "other"}, "")
	voice := func(i int, text string) string {
		return `{"recipient":"+1415555` + fmt.Sprintf("%04d", i) + `","text":"` + text + `","context":{"message_type":"voice"}}`
	}
	long := strings.Repeat("Please listen carefully. ", 60)[:1500]
	for i := range 6 {
		r := h.send("long-key", voice(100+i, long))
		if r.Status != 200 || !cmp.Equal(attempts(r), []string{"ib:destination_error", "backup:sent"}) {
			t.Fatalf("long voice %d: %d %s", i, r.Status, r.Raw)
		}
	}
	if r := h.send("other-key", voice(200, "Your code is 4 4 1 2")); r.Body["provider"] != "ib" {
		t.Errorf("the other tenant's call: %s, want ib (its breaker closed)", r.Raw)
	}
}

// infobipThenBackup starts a gateway whose tenants (each with the key "<name>-key") send through
// an Infobip fake (a breaker that opens after 3 failures) and then a mock; extraRoutes come before
// that default route.
func infobipThenBackup(t *testing.T, tenants []string, extraRoutes string) (*infobiptest.Fake, *harness) {
	t.Helper()
	ib := infobiptest.New("ib-key", false)
	srv := httptest.NewServer(ib)
	t.Cleanup(srv.Close)
	cfg := "server: {admin_token: admin-t0ken}\nstorage: {driver: sqlite, path: $DIR/log.db}\npolicy: {rate_limits: {per_recipient: 0}}\ntenants:\n"
	for _, tn := range tenants {
		cfg += "  - {name: " + tn + ", api_key: " + tn + "-key}\n"
	}
	cfg += `providers:
  - {name: ib, type: infobip, base_url: "` + srv.URL + `", api_key: ib-key, breaker: {consecutive_failures: 3, open_timeout: 1h}}
  - {name: backup, type: mock}
routes:` + extraRoutes + `
  - {name: default, providers: [ib, backup]}
`
	return ib, start(t, cfg, Options{})
}

// failingLimiter is a rate limiter whose store always fails.
type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string, config.Limit) (bool, time.Duration, error) {
	return false, 0, errors.New("i/o timeout")
}

func (failingLimiter) AllowKeeping(context.Context, string, config.Limit, int) (bool, time.Duration, error) {
	return false, 0, errors.New("i/o timeout")
}

// TestASendWhoseRateCheckFailedIsCharged: when the rate limits cannot be checked and the send
// goes on (state.on_error: open), the spend reservation has been given back; the send is then
// charged at its price like any other. Counted as reserved, it was charged nothing, and a tenant
// could send for free whenever the store faltered.
func TestASendWhoseRateCheckFailedIsCharged(t *testing.T) {
	t.Parallel()
	h := start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key, rate_limits: {per_tenant: 100/1m, spend: 0.05/24h}}]
providers: [{name: m, type: mock, prices: {default: 0.04}}]
routes: [{name: default, providers: [m]}]
`, Options{})
	send := func(code string) response {
		return h.send("acme-key", `{"message_options":{"recipient":"+14155550104","text":"Your code is `+code+`","message_type":"sms"}}`)
	}
	limiter := h.app.checker.Limiter
	h.app.checker.Limiter = failingLimiter{}
	if r := send("111111"); r.Status != 200 {
		t.Fatalf("a send whose rate check failed: %d %s", r.Status, r.Raw)
	}
	h.app.checker.Limiter = limiter
	// 0.04 charged: the next send starts below 0.05 and is taken, the one after is over.
	if r := send("222222"); r.Status != 200 {
		t.Fatalf("second send: %d %s", r.Status, r.Raw)
	}
	if r := send("333333"); r.Status != 429 || !strings.Contains(r.Raw, "spend limit") {
		t.Errorf("third send, 0.08 spent of 0.05: %d %s", r.Status, r.Raw)
	}
}

// failingCharge is a spend store whose charges fail (its reservations work).
type failingCharge struct{ policy.Spends }

func (failingCharge) Charge(context.Context, string, config.Spend, float64) error {
	return errors.New("i/o timeout")
}

// TestASpendSettlementThatFailsIsCounted: a send no provider took gives its spend reservation
// back; when the state store fails to take it back, the send is answered all the same and the
// failure is counted (smsgate_state_errors_total{op="spend_charge"}), so that an operator sees
// why a tenant's spend limit ran out sooner than its sends.
func TestASpendSettlementThatFailsIsCounted(t *testing.T) {
	t.Parallel()
	h := start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key, rate_limits: {spend: 0.05/24h}}]
providers: [{name: m, type: mock, failure_rate: 1, prices: {default: 0.04}}]
routes: [{name: default, providers: [m]}]
`, Options{})
	h.app.checker.Spends = failingCharge{h.app.checker.Spends}
	if r := h.send("acme-key", `{"message_options":{"recipient":"+14155550104","text":"Your code is 111111","message_type":"sms"}}`); r.Status != 502 {
		t.Fatalf("a send every provider failed: %d %s, want 502", r.Status, r.Raw)
	}
	if n := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("spend_charge")); n != 1 {
		t.Errorf("smsgate_state_errors_total{op=spend_charge} = %v, want 1", n)
	}
}

// TestSpendLimitStopsOneTenantDrainingTheAccount: the providers' accounts are shared, and a
// tenant sending within its rate limits to expensive destinations could drain them for every
// tenant. A tenant's spend limit stops its sends once their prices (or, where its provider has
// none, the highest configured price) use up the limit; the other tenants send on.
func TestSpendLimitStopsOneTenantDrainingTheAccount(t *testing.T) {
	t.Parallel()
	h := start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants:
  - {name: flood, api_key: flood-key, rate_limits: {spend: 0.1/24h}}
  - {name: unpriced, api_key: unpriced-key, rate_limits: {spend: 0.06/24h}}
  - {name: quiet, api_key: quiet-key}
providers:
  - {name: m, type: mock, prices: {default: 0.04, countries: {GB: 0.05}}}
  - {name: u, type: mock}
routes:
  - {name: japan, match: {countries: [JP]}, providers: [u]}
  - {name: default, providers: [m]}
`, Options{})
	n := 0
	send := func(key, to string) response {
		n++
		return h.send(key, fmt.Sprintf(`{"message_options":{"recipient":%q,"text":"Your code is %06d","message_type":"sms"}}`, to, n))
	}
	us := func() string { return fmt.Sprintf("+1415555%04d", n) }
	// 0.04 three times: the third starts at 0.08 of 0.1 and goes 0.02 into debt.
	for i := range 3 {
		if r := send("flood-key", us()); r.Status != 200 {
			t.Fatalf("flood send %d: %d %s", i+1, r.Status, r.Raw)
		}
	}
	r := send("flood-key", us())
	if r.Status != 429 || r.Body["error"].(map[string]any)["code"] != "rate_limited" || !strings.Contains(r.Raw, "spend limit") {
		t.Fatalf("over its spend limit: %d %s", r.Status, r.Raw)
	}
	// The debt of 0.02 refills in 0.2 of a day.
	if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 17180 || ra > 17290 {
		t.Errorf("Retry-After %q, want about 17280 s (less the seconds since the first send)", r.Header.Get("Retry-After"))
	}
	if r := send("quiet-key", us()); r.Status != 200 {
		t.Errorf("another tenant refused: %d %s", r.Status, r.Raw)
	}
	// Provider u has no price: its messages count at the highest configured one (0.05).
	for i := range 2 {
		if r := send("unpriced-key", fmt.Sprintf("+8190123%05d", n)); r.Status != 200 || r.Body["provider"] != "u" {
			t.Fatalf("unpriced send %d: %d %s", i+1, r.Status, r.Raw)
		}
	}
	if r := send("unpriced-key", fmt.Sprintf("+8190123%05d", n)); r.Status != 429 {
		t.Errorf("sends without a price went uncounted: %d %s", r.Status, r.Raw)
	}
	m := h.app.MetricSet()
	if got := testutil.ToFloat64(m.EstimatedSpend.WithLabelValues("flood")); math.Abs(got-0.12) > 1e-9 {
		t.Errorf("flood's estimated spend %v, want 0.12", got)
	}
	if got := testutil.ToFloat64(m.PolicyRejections.WithLabelValues("flood", "spend")); got != 1 {
		t.Errorf("spend rejections %v", got)
	}
}

// TestSpendLimitHoldsAgainstSendsStartedAtOnce: a stolen key starts many sends at once. Each
// reserves the most it may cost before it is sent, so the tenant's spend limit lets through as
// many as its room holds, not all of them (when the price was taken after the send, all twenty
// found the bucket empty and were sent: eight times the limit). A send that fails gives its
// reservation back, and what the provider really cost is what stays charged.
func TestSpendLimitHoldsAgainstSendsStartedAtOnce(t *testing.T) {
	t.Parallel()
	h := start(t, `
server: {admin_token: admin-t0ken}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants:
  - {name: thief, api_key: thief-key, rate_limits: {spend: 0.1/24h}}
providers:
  - {name: slow, type: mock, latency: 300ms, prices: {default: 0.04}}
  - {name: dear, type: mock, prices: {default: 0.09}}
  - {name: broken, type: mock, failure_rate: 1}
routes:
  - {name: failing, match: {countries: [GG]}, providers: [broken]}
  - {name: fallback, match: {countries: [JP]}, providers: [slow, dear]}
  - {name: default, providers: [slow]}
`, Options{})
	used := func() float64 { return spendUsed(t, h) }
	// A send that fails costs nothing: its reservation (0.09, the highest configured price, since
	// broken has none) is given back.
	if r := h.send("thief-key", `{"message_options":{"recipient":"+447911123456","text":"Your code is 111111","message_type":"sms"}}`); r.Status != 502 {
		t.Fatalf("failing send: %d %s", r.Status, r.Raw)
	}
	if u := used(); u > 1e-6 {
		t.Fatalf("used %v after a failed send, want 0", u)
	}
	// A route whose chain ends at a dearer provider reserves the dearer price (0.09) and is
	// charged what the provider that sent it costs (0.04).
	if r := h.send("thief-key", `{"message_options":{"recipient":"+819012345678","text":"Your code is 222222","message_type":"sms"}}`); r.Status != 200 || r.Body["provider"] != "slow" {
		t.Fatalf("send to JP: %d %s", r.Status, r.Raw)
	}
	if u := used(); u < 0.0399 || u > 0.04 {
		t.Fatalf("used %v after a send of 0.04 that reserved 0.09, want 0.04", u)
	}
	// 0.04 used of 0.1: twenty sends at once, each held 300 ms at the provider. Two reserve
	// (0.04 to 0.08, then to 0.12) and the other eighteen find no room.
	statuses := make([]int, 20)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() {
			statuses[i] = h.send("thief-key", fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is %06d","message_type":"sms"}}`, i, i)).Status
		})
	}
	wg.Wait()
	sent, refused := 0, 0
	for _, st := range statuses {
		switch st {
		case 200:
			sent++
		case 429:
			refused++
		}
	}
	if sent != 2 || refused != 18 {
		t.Errorf("of 20 sends at once %d sent and %d refused, want 2 and 18: %v", sent, refused, statuses)
	}
	if u := used(); u < 0.1199 || u > 0.12 {
		t.Errorf("used %v, want 0.12 (three sends of 0.04)", u)
	}
}

// TestAVoiceOutageLeavesEveryonesSMSAlone: SMS and voice are different products at a provider.
// While Infobip's voice platform answers 503, the tenants' voice calls open Infobip's voice
// breaker (their calls go straight to the backup), and a tenant's SMS still goes to Infobip: a
// shared breaker per provider would have moved every tenant's SMS to the backup. The first
// tenant's failures alone open only its own voice breaker; the second's, corroborating them, open
// the shared one.
func TestAVoiceOutageLeavesEveryonesSMSAlone(t *testing.T) {
	t.Parallel()
	ib, h := infobipThenBackup(t, []string{"caller", "texter"}, "")
	ib.SetVoiceDown(true)
	msg := func(i int, typ string) string {
		return `{"recipient":"+1415555` + fmt.Sprintf("%04d", i) + `","text":"Your code is 4412","context":{"message_type":"` + typ + `"}}`
	}
	for _, key := range []string{"caller-key", "texter-key"} {
		for i := range 3 {
			if r := h.send(key, msg(100+i, "voice")); r.Status != 200 || !cmp.Equal(attempts(r), []string{"ib:provider_error", "backup:sent"}) {
				t.Fatalf("%s voice %d: %d %s", key, i, r.Status, r.Raw)
			}
		}
	}
	if r := h.send("caller-key", msg(110, "voice")); !cmp.Equal(attempts(r), []string{"ib:unavailable", "backup:sent"}) {
		t.Errorf("voice with its breaker open: %s", r.Raw)
	}
	if r := h.send("texter-key", msg(200, "sms")); r.Status != 200 || r.Body["provider"] != "ib" {
		t.Errorf("the other tenant's SMS: %s, want ib (its SMS breaker closed)", r.Raw)
	}
	m := h.app.MetricSet()
	if v, s := testutil.ToFloat64(m.BreakerState.WithLabelValues("ib", "voice")), testutil.ToFloat64(m.BreakerState.WithLabelValues("ib", "sms")); v != 2 || s != 0 {
		t.Errorf("breaker gauges: voice %v, sms %v; want 2 (open) and 0 (closed)", v, s)
	}
}

// TestOneTenantCannotOpenTheBreakerEveryoneShares: a provider fails for one tenant's sends alone
// (here Infobip answers 500 to a text only that tenant sends; a route down for its destinations
// would do the same). Its failures open its own breaker of Infobip: its sends go straight to the
// backup. The breaker every tenant shares stays closed, so another tenant's sends still go to
// Infobip; GET /v1/providers and a metric name the tenant. When Infobip then fails for everyone,
// the other tenant's failures are corroborated and open the shared breaker as before.
func TestOneTenantCannotOpenTheBreakerEveryoneShares(t *testing.T) {
	t.Parallel()
	ib, h := infobipThenBackup(t, []string{"hostile", "quiet"}, "")
	ib.SetFailText("\u2603")
	n := 0
	send := func(key, text string) response {
		n++
		return h.send(key, fmt.Sprintf(`{"recipient":"+1415555%04d","text":"%s %06d","context":{}}`, n, text, n))
	}
	for i := range 3 {
		if r := send("hostile-key", "\u2603 Your code is"); r.Status != 200 || !cmp.Equal(attempts(r), []string{"ib:provider_error", "backup:sent"}) {
			t.Fatalf("hostile send %d: %d %s", i, r.Status, r.Raw)
		}
	}
	calls := ib.Calls()
	for i := range 10 {
		r := send("hostile-key", "\u2603 Your code is")
		as, _ := r.Body["attempts"].([]any)
		if r.Status != 200 || len(as) != 2 || as[0].(map[string]any)["code"] != "tenant_breaker_open" || r.Body["provider"] != "backup" {
			t.Fatalf("hostile send %d with its own breaker open: %d %s", i+3, r.Status, r.Raw)
		}
	}
	if got := ib.Calls(); got != calls {
		t.Errorf("Infobip called %d more times after the hostile tenant's own breaker opened", got-calls)
	}
	for i := range 5 {
		if r := send("quiet-key", "Your code is"); r.Status != 200 || r.Body["provider"] != "ib" {
			t.Fatalf("quiet send %d: %d %s, want ib", i, r.Status, r.Raw)
		}
	}
	m := h.app.MetricSet()
	if s := testutil.ToFloat64(m.BreakerState.WithLabelValues("ib", "sms")); s != 0 {
		t.Errorf("shared SMS breaker gauge %v, want 0 (closed)", s)
	}
	if o := testutil.ToFloat64(m.TenantBreakerOpens.WithLabelValues("ib", "sms", "hostile")); o != 1 {
		t.Errorf("hostile's own breaker opened %v times, want 1", o)
	}
	// A breaker that never opened adds no series: every tenant has its own, for each provider it
	// sends through, and zeros for all of them would be most of a large deployment's series.
	if n := testutil.CollectAndCount(m.TenantBreakerOpens); n != 1 {
		t.Errorf("%d series of tenants' own breakers' openings, want 1 (hostile's sms)", n)
	}
	r := h.do("GET", "/v1/providers", "admin-t0ken", "")
	var got struct {
		Providers []struct {
			Name           string              `json:"name"`
			Breakers       map[string]string   `json:"breakers"`
			TenantBreakers []map[string]string `json:"tenant_breakers"`
		} `json:"providers"`
	}
	if err := json.Unmarshal([]byte(r.Raw), &got); err != nil || r.Status != 200 || len(got.Providers) != 2 {
		t.Fatalf("providers: %d %s (%v)", r.Status, r.Raw, err)
	}
	want := []map[string]string{{"tenant": "hostile", "channel": "sms", "state": "open"}}
	if p := got.Providers[0]; p.Name != "ib" || p.Breakers["sms"] != "closed" || !cmp.Equal(p.TenantBreakers, want) {
		t.Errorf("ib in /v1/providers: %+v", p)
	}
	// Now Infobip fails for everyone: the quiet tenant's failures are corroborated by the hostile
	// tenant's (recent enough), and three of them open the shared breaker.
	ib.SetMode(infobiptest.Unavailable)
	for i := range 3 {
		if r := send("quiet-key", "Your code is"); !cmp.Equal(attempts(r), []string{"ib:provider_error", "backup:sent"}) {
			t.Fatalf("quiet send %d in the outage: %s", i, r.Raw)
		}
	}
	if s := testutil.ToFloat64(m.BreakerState.WithLabelValues("ib", "sms")); s != 2 {
		t.Errorf("shared SMS breaker gauge %v after corroborated failures, want 2 (open)", s)
	}
}

// startShedding starts a gateway with max_in_flight 4, the tenants flood and quiet, and one mock
// provider answering after latency; send sends tenant key's i-th code to its own number.
func startShedding(t *testing.T, latency string) (*harness, func(key string, i int) response) {
	h := start(t, `
server: {max_in_flight: 4, request_timeout: 8s}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: flood, api_key: flood-key}, {name: quiet, api_key: quiet-key}]
providers: [{name: slow, type: mock, latency: `+latency+`, timeout: 6s}]
routes: [{name: d, providers: [slow]}]
`, Options{})
	return h, func(key string, i int) response {
		return h.send(key, fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, i, i))
	}
}

// TestAFloodIsShedAtItsFairShare: a replica runs server.max_in_flight sends at once; past that it
// sheds the tenant holding more than its fair share (503 overloaded, Retry-After 1, through the
// Infobip-compatible API too), while another tenant's send is still admitted.
func TestAFloodIsShedAtItsFairShare(t *testing.T) {
	t.Parallel()
	h, send := startShedding(t, "3s")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); send("flood-key", i) }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.app.admission.total.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r := send("flood-key", 10); r.Status != 503 || errCode(r) != "overloaded" || r.Header.Get("Retry-After") != "1" {
		t.Errorf("the flood's fifth send: %d %s (Retry-After %q)", r.Status, r.Raw, r.Header.Get("Retry-After"))
	}
	if r := h.do("POST", "/sms/2/text/advanced", "flood-key", `{"messages":[{"destinations":[{"to":"14155550111"}],"text":"Your code is 1234"}]}`); r.Status != 503 || !strings.Contains(r.Raw, "SERVICE_UNAVAILABLE") || r.Header.Get("Retry-After") != "1" {
		t.Errorf("the flood's Infobip-compatible send: %d %s (Retry-After %q)", r.Status, r.Raw, r.Header.Get("Retry-After"))
	}
	if r := send("quiet-key", 20); r.Status != 200 {
		t.Errorf("the other tenant's send: %d %s", r.Status, r.Raw)
	}
	wg.Wait()
	if tot, busy := h.app.admission.total.Load(), h.app.admission.busy.Load(); tot != 0 || busy != 0 {
		t.Errorf("after the sends: %d in flight, %d tenants busy", tot, busy)
	}
	if got := testutil.ToFloat64(h.app.MetricSet().Requests.WithLabelValues("flood", "", "overloaded")); got != 2 {
		t.Errorf("overloaded requests counted %v, want 2", got)
	}
	// Counted, and not logged at the default level: a line each would make shedding a flood cost
	// as much as serving it.
	for _, l := range logLines(t, h, "send") {
		if l["outcome"] == "overloaded" {
			t.Errorf("a shed send was logged: %v", l)
		}
	}
}

// TestAnInfobipRequestCountsEachSendItRunsAtOnce: a request of the Infobip-compatible API runs
// several destinations at a time, and each counts against its tenant's share of max_in_flight.
// With the cap at 4 and another tenant's send in flight, a request of 6 destinations runs 3 at a
// time (all of them sent in the end); while it runs, the flood's next send is shed and the quiet
// tenant's is admitted. (Counted once, the request had run 6 at a time while holding one place,
// and the flood's next send had been admitted too.)
func TestAnInfobipRequestCountsEachSendItRunsAtOnce(t *testing.T) {
	t.Parallel()
	h, send := startShedding(t, "2500ms")
	inFlight := func(n int64) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("%d sends in flight", n), func() bool { return h.app.admission.total.Load() == n })
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); send("quiet-key", 1) }()
	inFlight(1)
	var dests []string
	for i := range 6 {
		dests = append(dests, fmt.Sprintf(`{"to":"1415555%04d"}`, 100+i))
	}
	var bulk response
	go func() {
		defer wg.Done()
		bulk = h.do("POST", "/sms/2/text/advanced", "flood-key", `{"messages":[{"destinations":[`+strings.Join(dests, ",")+`],"text":"Your code is 1234"}]}`)
	}()
	inFlight(4)
	if r := send("flood-key", 10); r.Status != 503 || errCode(r) != "overloaded" {
		t.Errorf("the flood's send beside its request of 6: %d %s, want 503 overloaded", r.Status, r.Raw)
	}
	if r := send("quiet-key", 20); r.Status != 200 {
		t.Errorf("the quiet tenant's second send: %d %s", r.Status, r.Raw)
	}
	wg.Wait()
	if bulk.Status != 200 || strings.Count(bulk.Raw, `"groupName":"PENDING"`) != 6 {
		t.Errorf("the request of 6 destinations: %d %s, want each sent", bulk.Status, bulk.Raw)
	}
	if tot, busy := h.app.admission.total.Load(), h.app.admission.busy.Load(); tot != 0 || busy != 0 {
		t.Errorf("after the sends: %d in flight, %d tenants busy", tot, busy)
	}
}

// TestEveryTenantGetsAtLeastOneSendThrough: with more tenants busy than the cap, a tenant's share
// is one send, not none.
func TestEveryTenantGetsAtLeastOneSendThrough(t *testing.T) {
	t.Parallel()
	a := &App{}
	var ts [3]tenant
	for i := range ts[:2] {
		if !a.admit(1, &ts[i]) {
			t.Fatalf("tenant %d's first send was shed", i)
		}
	}
	// Two tenants hold one send each with a cap of 1: the third tenant's first send still goes.
	if !a.admit(1, &ts[2]) {
		t.Errorf("a tenant with nothing in flight was shed (share 1/3 rounded to none)")
	}
	// Its second is over its share.
	if a.admit(1, &ts[2]) {
		t.Errorf("a tenant over its share of one was admitted")
	}
	for i := range ts {
		a.release(&ts[i])
	}
	if a.admission.total.Load() != 0 || a.admission.busy.Load() != 0 {
		t.Errorf("counters after release: %d in flight, %d busy", a.admission.total.Load(), a.admission.busy.Load())
	}
}

// TestTheCapIsWhatRunsBeforeShedding: with max_in_flight 4, the fourth send in flight is
// admitted whoever sends it (nothing is shed below or at the cap, even a tenant over its share);
// the fifth, from a tenant over its share (4 / 2 busy tenants), is shed. With more tenants busy
// than the cap, each has a share of one send.
func TestTheCapIsWhatRunsBeforeShedding(t *testing.T) {
	t.Parallel()
	a := &App{}
	var flood, quiet tenant
	if !a.admit(4, &quiet) || !a.admit(4, &flood) || !a.admit(4, &flood) {
		t.Fatal("sends below the cap were shed")
	}
	if !a.admit(4, &flood) {
		t.Error("the fourth send in flight (the flood's third, over its share of 2) was shed at the cap")
	}
	if a.admit(4, &flood) {
		t.Error("a fifth send, over the cap and the tenant's share, was admitted")
	}
	if !a.admit(4, &quiet) {
		t.Error("a tenant within its share was shed over the cap")
	}
	// More tenants busy than the cap: each still has a share of one send, and a second is shed.
	b := &App{}
	tenants := make([]tenant, 3)
	for i := range tenants {
		if !b.admit(2, &tenants[i]) {
			t.Errorf("tenant %d's first send, 3 tenants busy under a cap of 2, was shed", i)
		}
	}
	if b.admit(2, &tenants[0]) {
		t.Error("a tenant's second send, 3 tenants busy under a cap of 2, was admitted")
	}
	// A request of several destinations (the Infobip-compatible API) is admitted up to its share,
	// and says how many it was, so that it gives back as many.
	c := &App{}
	var bulk tenant
	if n := c.admitUpTo(4, &bulk, 6); n != 4 || bulk.inflight.Load() != 4 {
		t.Errorf("6 destinations under a cap of 4: %d admitted, %d in flight, want 4 and 4", n, bulk.inflight.Load())
	}
	c.releaseN(&bulk, 4)
	if c.admission.total.Load() != 0 || c.admission.busy.Load() != 0 {
		t.Errorf("after the request gave its sends back: %d in flight, %d busy, want none", c.admission.total.Load(), c.admission.busy.Load())
	}
}

// TestNoCapShedsNothing: with server.max_in_flight 0 there is no cap: one tenant's many sends in
// flight are all admitted (and counted).
func TestNoCapShedsNothing(t *testing.T) {
	t.Parallel()
	a := &App{}
	var flood tenant
	for i := range 50 {
		if !a.admit(0, &flood) {
			t.Fatalf("send %d was shed with no cap", i+1)
		}
	}
	if n := flood.inflight.Load(); n != 50 {
		t.Errorf("sends counted in flight: %d, want 50", n)
	}
}

// TestAdminTenantsShowsSpendAndSendsInFlight: GET /v1/admin/tenants lists each tenant with its
// sends in flight and what it used of its spend limit.
func TestAdminTenantsShowsSpendAndSendsInFlight(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	h := start(t, `
server: {admin_token: admin-t0ken}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants:
  - {name: capped, api_key: capped-key, rate_limits: {spend: 1/24h}}
  - {name: free, api_key: free-key}
providers: [{name: m, type: mock, prices: {default: 0.04}}]
routes: [{name: d, providers: [m]}]
`, Options{Now: clk.Now})
	for i := range 2 {
		if r := h.send("capped-key", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, i, i)); r.Status != 200 {
			t.Fatalf("send: %s", r.Raw)
		}
	}
	// 43.2 s later, 0.0005 has refilled (the limit is 1 a day); a send of free's is in flight.
	clk.Add(43200 * time.Millisecond)
	inflight := h.app.rt.Load().byName["free"]
	h.app.admit(0, inflight)
	defer h.app.release(inflight)
	r := h.do("GET", "/v1/admin/tenants", "admin-t0ken", "")
	var got struct {
		Tenants []struct {
			Name     string `json:"name"`
			InFlight int    `json:"in_flight"`
			Spend    *struct {
				Limit    string  `json:"limit"`
				Used     float64 `json:"used"`
				Currency string  `json:"currency"`
			} `json:"spend"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(r.Raw), &got); err != nil || r.Status != 200 || len(got.Tenants) != 2 {
		t.Fatalf("%d %s (%v)", r.Status, r.Raw, err)
	}
	c, f := got.Tenants[0], got.Tenants[1]
	// Two sends at 0.04 less what refilled since: 0.0795, shown to the millionth as prices are
	// written (what refilled is a float of many digits).
	if c.Name != "capped" || c.InFlight != 0 || c.Spend == nil || c.Spend.Limit != "1/24h0m0s" || c.Spend.Currency != "EUR" ||
		c.Spend.Used != 0.0795 {
		t.Errorf("capped: %+v %+v", c, c.Spend)
	}
	if !regexp.MustCompile(`"used":[0-9]+(\.[0-9]{1,6})?[,}]`).MatchString(r.Raw) {
		t.Errorf("spend used not rounded to the millionth: %s", r.Raw)
	}
	if f.Name != "free" || f.Spend != nil || f.InFlight != 1 {
		t.Errorf("free: %+v", f)
	}
	if r := h.do("GET", "/v1/admin/tenants", "capped-key", ""); r.Status != 401 {
		t.Errorf("a tenant key listed the tenants: %d", r.Status)
	}
}

// TestATenantsCallsAreBounded: reads of the message log, codes reported used and Infobip's
// previews are bounded per tenant (rate_limits.api), through both APIs: a tenant calling in a loop gets 429 with
// Retry-After, and another tenant's calls go on.
func TestATenantsCallsAreBounded(t *testing.T) {
	t.Parallel()
	h := start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants:
  - {name: reader, api_key: reader-key, rate_limits: {api: 4/1h}}
  - {name: other, api_key: other-key}
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, Options{})
	ids := map[string]string{}
	for _, tn := range []string{"reader", "other"} {
		r := h.send(tn+"-key", `{"recipient":"+14155550100","text":"Your code is 123456","context":{}}`)
		if r.Status != 200 {
			t.Fatalf("send: %s", r.Raw)
		}
		ids[tn] = r.Body["id"].(string)
	}
	for i, path := range []string{"/v1/messages/" + ids["reader"], "/v1/messages", "/sms/1/logs", "/v1/messages/" + ids["reader"]} {
		if r := h.do("GET", path, "reader-key", ""); r.Status != 200 {
			t.Fatalf("call %d (%s): %d %s", i+1, path, r.Status, r.Raw)
		}
	}
	for _, c := range []struct{ method, path, code string }{
		{"GET", "/v1/messages/" + ids["reader"], "rate_limited"},
		{"GET", "/v1/messages", "rate_limited"},
		{"POST", "/v1/messages/" + ids["reader"] + "/verified", "rate_limited"},
		{"GET", "/sms/1/reports", "TOO_MANY_REQUESTS"},
		{"POST", "/ct/1/log/end/" + ids["reader"], "TOO_MANY_REQUESTS"},
		{"POST", "/sms/1/preview", "TOO_MANY_REQUESTS"},
	} {
		r := h.do(c.method, c.path, "reader-key", "")
		// The limit gives a call back every 15 minutes: the wait said is the limit's.
		if wait, _ := strconv.Atoi(r.Header.Get("Retry-After")); r.Status != 429 || !strings.Contains(r.Raw, c.code) || wait < 60 {
			t.Errorf("%s %s over the limit: %d %s (Retry-After %q)", c.method, c.path, r.Status, r.Raw, r.Header.Get("Retry-After"))
		}
	}
	for range 6 {
		if r := h.do("GET", "/v1/messages/"+ids["other"], "other-key", ""); r.Status != 200 {
			t.Fatalf("the other tenant's read: %d %s", r.Status, r.Raw)
		}
	}
	if got := testutil.ToFloat64(h.app.MetricSet().PolicyRejections.WithLabelValues("reader", "api")); got != 6 {
		t.Errorf("api rejections counted %v, want 6", got)
	}
}

// heldReads holds the listings of the tenants it has holds for, whatever their context says (a
// read that no index serves, over a large tenant's month, on a database that does not stop it at
// once): each waits for a word on its tenant's hold (one read ending) or its close (all). size is
// what ReadConns says: the connections tenants' reads share (0: no bound, as in memory).
type heldReads struct {
	store.Backend
	size    int
	mu      sync.Mutex
	holds   map[string]chan struct{}
	running map[string]int
	entered []string // the tenants of the listings, held or not, in the order they began
}

func newHeldReads(size int, tenants ...string) *heldReads {
	b := &heldReads{size: size, holds: map[string]chan struct{}{}, running: map[string]int{}}
	for _, tn := range tenants {
		b.holds[tn] = make(chan struct{})
	}
	return b
}

func (b *heldReads) ReadConns() int { return b.size }

func (b *heldReads) hold(tenant string) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.holds[tenant]
}

func (b *heldReads) setHold(tenant string, c chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holds[tenant] = c
}

// count is how many of tenant's listings are held.
func (b *heldReads) count(tenant string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running[tenant]
}

func (b *heldReads) List(ctx context.Context, q store.Query) ([]*store.Record, error) {
	b.mu.Lock()
	h := b.holds[q.Tenant]
	b.entered = append(b.entered, q.Tenant)
	if h != nil {
		b.running[q.Tenant]++
	}
	b.mu.Unlock()
	if h != nil {
		<-h
		b.mu.Lock()
		b.running[q.Tenant]--
		b.mu.Unlock()
	}
	return b.Backend.List(context.WithoutCancel(ctx), q)
}

// TestOneTenantsSlowReadsHoldTwoSlots: the message log's read pool is every tenant's. A tenant
// whose reads are slow has at most readsPerTenant of them running on a replica; the next wait for
// a slot without holding a connection, and are refused (429 with Retry-After, on both APIs) if
// none frees within the budget. The other tenants read on meanwhile, and the slots are given back.
func TestOneTenantsSlowReadsHoldTwoSlots(t *testing.T) {
	t.Parallel()
	hb := newHeldReads(0, "slow")
	h := start(t, `
server: {request_timeout: 1s}
storage: {driver: memory}
tenants:
  - {name: slow, api_key: slow-key-0123456789}
  - {name: other, api_key: other-key-0123456789}
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, Options{WrapBackend: func(b store.Backend) store.Backend { hb.Backend = b; return hb }})
	read := func(results chan<- response) { results <- h.do("GET", "/v1/messages", "slow-key-0123456789", "") }

	// Bursts wait for a slot, then go through.
	results := make(chan response, readsPerTenant+3)
	for range readsPerTenant {
		go read(results)
	}
	waitUntil(t, "two reads running", func() bool { return hb.count("slow") == readsPerTenant })
	for range 3 {
		go read(results)
	}
	time.Sleep(100 * time.Millisecond)
	if n, got := hb.count("slow"), len(results); n != readsPerTenant || got != 0 {
		close(hb.hold("slow"))
		t.Fatalf("%d reads in the message log and %d answered with the slots taken; want %d and 0", n, got, readsPerTenant)
	}
	if r := h.do("GET", "/v1/messages", "other-key-0123456789", ""); r.Status != 200 {
		t.Errorf("the other tenant's read: %d %s", r.Status, r.Raw)
	}
	close(hb.hold("slow"))
	for range readsPerTenant + 3 {
		if r := <-results; r.Status != 200 {
			t.Errorf("a read of the burst: %d %s", r.Status, r.Raw)
		}
	}

	// Reads that hold their slots for the whole budget: the next are refused.
	hb.setHold("slow", make(chan struct{}))
	for range readsPerTenant {
		go read(results)
	}
	waitUntil(t, "two reads running", func() bool { return hb.count("slow") == readsPerTenant })
	native, compat := make(chan response, 1), make(chan response, 1)
	go func() { native <- h.do("GET", "/v1/messages", "slow-key-0123456789", "") }()
	go func() { compat <- h.do("GET", "/sms/1/logs", "slow-key-0123456789", "") }()
	for _, c := range []struct {
		what string
		got  chan response
		ok   func(response) bool
	}{
		{"a read", native, func(r response) bool {
			return r.Status == 429 && errCode(r) == "rate_limited" && r.Header.Get("Retry-After") == "1"
		}},
		{"an Infobip-compatible read", compat, func(r response) bool {
			return r.Status == 429 && strings.Contains(r.Raw, "TOO_MANY_REQUESTS") && r.Header.Get("Retry-After") == "1"
		}},
	} {
		select {
		case r := <-c.got:
			if !c.ok(r) {
				t.Errorf("%s that found no slot within the budget: %d %s (Retry-After %q)", c.what, r.Status, r.Raw, r.Header.Get("Retry-After"))
			}
		case <-time.After(5 * time.Second):
			close(hb.hold("slow"))
			t.Fatalf("%s with every slot held was not refused within 5 s", c.what)
		}
	}
	close(hb.hold("slow"))
	for range readsPerTenant {
		<-results // held past their budget: whatever they answer, their slots come back
	}
	for range 2 * readsPerTenant {
		if r := h.do("GET", "/v1/messages", "slow-key-0123456789", ""); r.Status != 200 {
			t.Fatalf("a read after the slots were given back: %d %s", r.Status, r.Raw)
		}
	}
	if got := testutil.ToFloat64(h.app.MetricSet().PolicyRejections.WithLabelValues("slow", "reads_in_flight")); got != 2 {
		t.Errorf("reads_in_flight rejections counted %v, want 2", got)
	}
}

// TestATenantWithNoReadRunningGoesFirst: tenants reading slowly hold every connection their reads
// share, and more of their reads wait. A freed connection goes to the waiting read whose tenant
// holds the fewest: a tenant's second read waits behind another tenant's first, even one that
// came later. The pool's own queue served them as they came (pgx) or in any order (database/sql),
// so each slow tenant's two waiting reads could both go before a quick tenant's one. With none
// freed within its budget, the quick tenant's read is answered as a log that could not be read
// (503), not as its own tenant's excess (429).
func TestATenantWithNoReadRunningGoesFirst(t *testing.T) {
	t.Parallel()
	pb := newHeldReads(2*readsPerTenant, "a", "b", "d")
	h := start(t, `
server: {request_timeout: 1s}
storage: {driver: memory}
tenants:
  - {name: a, api_key: a-key-0123456789}
  - {name: b, api_key: b-key-0123456789}
  - {name: c, api_key: c-key-0123456789}
  - {name: d, api_key: d-key-0123456789}
providers: [{name: m, type: mock}]
routes: [{name: r, providers: [m]}]
`, Options{WrapBackend: func(b store.Backend) store.Backend { pb.Backend = b; return pb }})
	defer func() {
		for _, tn := range []string{"a", "b", "d"} {
			close(pb.hold(tn))
		}
	}()
	read := func(tenant string, results chan<- response) {
		results <- h.do("GET", "/v1/messages", tenant+"-key-0123456789", "")
	}
	held := make(chan response, 8*readsPerTenant)
	for range readsPerTenant {
		go read("a", held)
		go read("b", held)
	}
	waitUntil(t, "a's and b's reads running", func() bool { return pb.count("a") == readsPerTenant && pb.count("b") == readsPerTenant })
	for range readsPerTenant {
		go read("d", held)
	}
	waitUntil(t, "d's reads waiting", func() bool { return h.app.reads.waiting("d") == readsPerTenant })
	quick := make(chan response, 1)
	go read("c", quick)
	waitUntil(t, "c's read waiting", func() bool { return h.app.reads.waiting("c") == 1 })

	pb.hold("a") <- struct{}{} // one of a's reads ends: d's first read, the earliest, goes
	waitUntil(t, "d's first read running", func() bool { return pb.count("d") == 1 })
	pb.hold("b") <- struct{}{} // one of b's ends: c holds none, d one
	select {
	case r := <-quick:
		if r.Status != 200 {
			t.Errorf("c's read given the freed connection: %d %s", r.Status, r.Raw)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("c's read was not served when a connection was freed")
	}
	waitUntil(t, "d's second read running once c's ended", func() bool { return pb.count("d") == readsPerTenant })
	pb.mu.Lock()
	order := strings.Join(pb.entered[2*readsPerTenant:], " ")
	pb.mu.Unlock()
	if order != "d c d" {
		t.Errorf("the reads that began after the first four: %q, want d's first, c's, d's second", order)
	}

	// Every connection held past c's budget: 503, and no rejection counted against c.
	r := h.do("GET", "/v1/messages", "c-key-0123456789", "")
	if r.Status != 503 || errCode(r) != "store_unavailable" {
		t.Errorf("c's read with the pool held for its whole budget: %d %s", r.Status, r.Raw)
	}
	if got := testutil.ToFloat64(h.app.MetricSet().PolicyRejections.WithLabelValues("c", "reads_in_flight")); got != 0 {
		t.Errorf("reads_in_flight rejections counted against c: %v", got)
	}
}

// TestAFloodOfIdempotencyKeysEvictsOnlyItsOwn: with the state in memory, idempotency records are
// bounded (state.max_idempotency_records), or a tenant sending under ever new keys would grow the
// replica's heap by about half a kilobyte a send for 24 h, until the replica that every tenant
// shares ran out of memory. Past the bound, the flooding tenant loses its own oldest records: the
// quiet tenant's retry, after the flood, is still answered from its record and sends nothing.
func TestAFloodOfIdempotencyKeysEvictsOnlyItsOwn(t *testing.T) {
	t.Parallel()
	h := start(t, quietAndFlood("max_idempotency_records: 40", "0"), Options{})
	began := time.Now()
	sent := func() float64 { return testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("m", "sent")) }
	var quiet []response
	for i := range 5 {
		quiet = append(quiet, h.send("quiet-key", strings.Replace(actionBody, "834712", fmt.Sprintf("10000%d", i), 2), "Idempotency-Key", fmt.Sprint("notif-", i)))
	}
	for i := range 200 {
		body := fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is %06d","code":"%06d"}}`, i, i, i)
		if r := h.send("flood-key", body, "Idempotency-Key", fmt.Sprint("flood-", i)); r.Status != 200 {
			t.Fatalf("flood send %d: %d %s", i, r.Status, r.Raw)
		}
	}
	before := sent()
	for i, first := range quiet {
		r := h.send("quiet-key", strings.Replace(actionBody, "834712", fmt.Sprintf("10000%d", i), 2), "Idempotency-Key", fmt.Sprint("notif-", i))
		if r.Status != 200 || r.Body["id"] != first.Body["id"] {
			t.Errorf("quiet retry %d after the flood: %d %v, want the first answer %v", i, r.Status, r.Body["id"], first.Body["id"])
		}
	}
	if n := sent() - before; n != 0 {
		t.Errorf("the quiet tenant's retries sent %v messages again", n)
	}
	// The flood's oldest keys are gone (a retry of one sends again); its newest still replay.
	if r := h.send("flood-key", `{"message_options":{"recipient":"+14155550199","text":"Your code is 000199","code":"000199"}}`, "Idempotency-Key", "flood-199"); r.Status != 200 || sent() != before {
		t.Errorf("the flood's newest key: %d, %v sends, want a replay", r.Status, sent()-before)
	}
	if r := h.send("flood-key", `{"message_options":{"recipient":"+14155550000","text":"Your code is 000000","code":"000000"}}`, "Idempotency-Key", "flood-0"); r.Status != 200 || sent() != before+1 {
		t.Errorf("the flood's oldest key: %d, %v sends, want it evicted (sent again)", r.Status, sent()-before)
	}
	if got := h.app.replays.(interface{ Len() int }).Len(); got > 40 {
		t.Errorf("%d records held, over the bound of 40", got)
	}
	// 206 records (5 quiet, 200 flood, the flood's oldest again), 40 kept.
	onlyTheFloodEvicted(t, h, 166, time.Since(began), "idempotency record evicted before its ttl: state.max_idempotency_records reached, the tenant holding the most records lost its oldest")
	ev := h.app.MetricSet().ReplaysEvicted
	if flood, quiet := testutil.ToFloat64(ev.WithLabelValues("flood")), testutil.ToFloat64(ev.WithLabelValues("quiet")); flood != 166 || quiet != 0 {
		t.Errorf("idempotency records evicted by tenant: flood %v, quiet %v; want 166 and 0", flood, quiet)
	}
}

// quietAndFlood is the config of the eviction tests: the state in memory with bound (a state key
// and its value), a quiet tenant and a flooding one, and per_recipient as given, no other limit.
func quietAndFlood(bound, perRecipient string) string {
	return `
storage: {driver: memory}
state: {` + bound + `}
log: {error_lines_per_second: 1}
policy: {rate_limits: {per_recipient: ` + perRecipient + `, per_ip: 0, per_tenant: 0}, resend_escalation: {enabled: false}}
tenants: [{name: quiet, api_key: quiet-key}, {name: flood, api_key: flood-key}]
providers: [{name: m, type: mock, latency: 0s}]
routes: [{name: d, providers: [m]}]
`
}

// onlyTheFloodEvicted checks that the memory state evicted n keys, and logged msg naming the
// tenant flood and never the tenant quiet, at most a line a second (log.error_lines_per_second:
// 1) over the flood, which took took.
func onlyTheFloodEvicted(t *testing.T, h *harness, n float64, took time.Duration, msg string) {
	t.Helper()
	if got := testutil.ToFloat64(h.app.MetricSet().StateEvictedKeys); got != n {
		t.Errorf("smsgate_state_evicted_keys = %v, want %v", got, n)
	}
	logs := h.logs.String()
	if lines, most := strings.Count(logs, `"msg":"`+msg+`"`), int(took/time.Second)+2; lines > most {
		t.Errorf("%d lines of %d evictions in %s, want at most %d", lines, int(n), took, most)
	}
	if !strings.Contains(logs, `"msg":"`+msg+`","tenant":"flood"`) {
		t.Errorf("no warning naming the flooding tenant:\n%s", logs)
	}
	if strings.Contains(logs, `"msg":"`+msg+`","tenant":"quiet"`) {
		t.Errorf("the quiet tenant lost a key:\n%s", logs)
	}
}

// TestAFloodOfRecipientsEvictsOnlyItsOwnBuckets: with the state in memory, rate-limit buckets
// are bounded (state.max_keys), or a tenant sending to ever new recipients would grow the
// replica's heap by a bucket a send until its buckets refilled, at any rate it could reach, until
// the replica that every tenant shares ran out of memory. Past the bound, the flooding tenant
// forgets its own buckets: the quiet tenant's recipients stay limited after the flood.
func TestAFloodOfRecipientsEvictsOnlyItsOwnBuckets(t *testing.T) {
	t.Parallel()
	h := start(t, quietAndFlood("max_keys: 40", "1/1h"), Options{})
	began := time.Now()
	body := func(i int) string {
		return fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is %06d","code":"%06d"}}`, i, i, i)
	}
	for i := range 5 {
		if r := h.send("quiet-key", body(i)); r.Status != 200 {
			t.Fatalf("quiet send %d: %d %s", i, r.Status, r.Raw)
		}
	}
	for i := range 200 {
		if r := h.send("flood-key", body(i)); r.Status != 200 {
			t.Fatalf("flood send %d: %d %s", i, r.Status, r.Raw)
		}
	}
	for i := range 5 {
		if r := h.send("quiet-key", body(i)); r.Status != 429 || errCode(r) != "rate_limited" {
			t.Errorf("the quiet tenant's recipient %d again after the flood: %d %s, want 429 rate_limited", i, r.Status, r.Raw)
		}
	}
	// The flood's oldest recipients are forgotten (a send to one passes again); its newest are not.
	if r := h.send("flood-key", body(199)); r.Status != 429 {
		t.Errorf("the flood's newest recipient again: %d %s, want 429", r.Status, r.Raw)
	}
	if r := h.send("flood-key", body(0)); r.Status != 200 {
		t.Errorf("the flood's first recipient again: %d %s, want it forgotten (sent)", r.Status, r.Raw)
	}
	if got := h.app.checker.Limiter.(*policy.MemoryLimiter).Len(); got > 40 {
		t.Errorf("%d buckets held, over the bound of 40", got)
	}
	// 206 buckets (5 quiet, 200 flood, the flood's first again), 40 kept.
	onlyTheFloodEvicted(t, h, 166, time.Since(began), "rate-limit bucket evicted before it refilled: state.max_keys reached, the tenant holding the most buckets lost one")
}

// TestAnUnrecognizedRangeIsNoWayAroundCountryLists: a tenant that accepts numbers
// libphonenumber does not recognize had their country from the calling code, so an unrecognized
// +1 876 number (Jamaica's area code) was counted in the US and passed a deny list of JM, the
// global one included, and an allow list of US; the provider then sent it to Jamaica, a classic
// pumping destination. Now the leading digits place it, and a +1 number they do not place may be
// in the US or Canada: an allow list must name both.
func TestAnUnrecognizedRangeIsNoWayAroundCountryLists(t *testing.T) {
	t.Parallel()
	h := startOnMock(t, `{denied_countries: [JM], rate_limits: {per_recipient: 0}}`, `
  - {name: open, api_key: open-key, accept_unrecognized_numbers: true}
  - {name: us-only, api_key: us-key, accept_unrecognized_numbers: true, allowed_countries: [US]}
  - {name: north-america, api_key: na-key, accept_unrecognized_numbers: true, allowed_countries: [US, CA]}
`)
	send := func(key, to string) response {
		t.Helper()
		return h.send(key, `{"message_options":{"recipient":"`+to+`","text":"Your code is 123456","message_type":"sms"}}`)
	}
	tests := []struct {
		key, to string
		status  int
		code    string
	}{
		{"open-key", "+1 876 000 0000", 403, "country_not_allowed"}, // unrecognized, Jamaica's area code
		{"us-key", "+1 876 000 0000", 403, "country_not_allowed"},   // and not in the allow list
		{"us-key", "+1 770 000 0000", 403, "country_not_allowed"},   // US or Canada: the list names only US
		{"na-key", "+1 770 000 0000", 200, ""},                      // the list names both
		{"us-key", "+1 415 555 0104", 200, ""},                      // a recognized US number
		{"open-key", "+44 7700 900123", 200, ""},                    // no list names GB, GG or JE
	}
	for _, tc := range tests {
		r := send(tc.key, tc.to)
		if r.Status != tc.status || errCode(r) != tc.code {
			t.Errorf("%s to %s: %d %q, want %d %q: %s", tc.key, tc.to, r.Status, errCode(r), tc.status, tc.code, r.Raw)
		}
	}
}

// TestPremiumRateNumbersAreRefused: a voice code to a premium-rate number costs the account the
// number's rate, shared with its owner: the toll-fraud way to pump voice. Such numbers (and the
// other types policy.denied_number_types names by default) are refused before any provider is
// called; a tenant may deny more types for itself only.
func TestPremiumRateNumbersAreRefused(t *testing.T) {
	t.Parallel()
	h := startOnMock(t, `{rate_limits: {per_recipient: 0}}`, `
  - {name: plain, api_key: plain-key}
  - {name: careful, api_key: careful-key, denied_number_types: [toll_free]}
`)
	tests := []struct {
		key, to, typ string
		status       int
		code         string
	}{
		{"plain-key", "+1 900 212 3456", "voice", 403, "number_type_not_allowed"}, // US premium rate
		{"plain-key", "+1 900 212 3456", "sms", 403, "number_type_not_allowed"},
		{"plain-key", "+44 909 876 5432", "voice", 403, "number_type_not_allowed"}, // UK premium rate
		{"plain-key", "+49 180 12345", "voice", 403, "number_type_not_allowed"},    // German shared cost
		{"plain-key", "+1 800 234 5678", "sms", 200, ""},                           // toll free: not by default
		{"careful-key", "+1 800 234 5678", "sms", 403, "number_type_not_allowed"},  // but this tenant denies it
		{"careful-key", "+1 415 555 0104", "voice", 200, ""},
	}
	for _, tc := range tests {
		r := h.send(tc.key, `{"message_options":{"recipient":"`+tc.to+`","text":"Your code is 123456","message_type":"`+tc.typ+`"}}`)
		if r.Status != tc.status || errCode(r) != tc.code {
			t.Errorf("%s %s to %s: %d %q, want %d %q: %s", tc.key, tc.typ, tc.to, r.Status, errCode(r), tc.status, tc.code, r.Raw)
		}
	}
	if got := testutil.ToFloat64(h.app.MetricSet().PolicyRejections.WithLabelValues("plain", "number_type")); got != 4 {
		t.Errorf("number_type rejections of plain = %v, want 4", got)
	}
	if n := testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("primary", "sent")); n != 2 {
		t.Errorf("provider sends = %v, want only the 2 allowed", n)
	}
}

// TestLinksInTextsAreRefused: the providers' accounts and sender IDs are every tenant's, and a
// text with a link is how users are phished from them (a stolen key, a tenant gone bad): carriers
// and providers then filter or suspend the sender every tenant's codes leave from. A text may
// link only to a host the operator allows for every tenant or for this one (and the names under
// it); the refusal names neither the link nor its host, which may carry the code.
func TestLinksInTextsAreRefused(t *testing.T) {
	t.Parallel()
	h := startOnMock(t, `{rate_limits: {per_recipient: 0}, allowed_link_hosts: [help.example.com]}`, `
  - {name: plain, api_key: plain-key}
  - {name: acme, api_key: acme-key, allowed_link_hosts: [acme.com]}
  - {name: open, api_key: open-key, allowed_link_hosts: ["*"]}
`)
	sendLinks(t, h, []linkSend{
		{"plain-key", "sms", "Your account is locked: https://acme-secure.example/l?c=734019", 403},
		{"plain-key", "voice", "Your code is 734019. Visit www.acme-secure.example now", 403},
		{"plain-key", "sms", "Your code is 734019. Details: bit.ly/3xYz", 403},
		{"plain-key", "sms", "Your code is 734019. Help: https://help.example.com/faq", 200}, // the global list
		{"plain-key", "sms", "Your code is 734019\n\n@plain.example #734019", 200},           // WebOTP's origin line
		{"plain-key", "sms", "734019 is your verification code for Acme.com.", 200},          // no path: a name
		{"acme-key", "sms", "Your code is 734019. https://login.acme.com/help", 200},
		{"acme-key", "sms", "Your code is 734019. https://acme.com@acme-secure.example/", 403},
		{"acme-key", "sms", "Your code is 734019. https://acme.com.acme-secure.example/", 403},
		{"plain-key", "sms", "Your code is 734019. https://login.acme.com/help", 403}, // acme's host, not plain's
		{"open-key", "sms", "Your code is 734019. https://anything.example/x", 200},
	})
	if got := testutil.ToFloat64(h.app.MetricSet().PolicyRejections.WithLabelValues("plain", "link")); got != 4 {
		t.Errorf("link rejections of plain = %v, want 4", got)
	}
	if n := testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("primary", "sent")); n != 5 {
		t.Errorf("provider sends = %v, want only the 5 allowed", n)
	}
}

// TestBareDomainLinksAreRefusedWhenAsked: a phone makes "acme-secure.com" clickable without a scheme
// or a path, so a tenant refused "https://acme-secure.com/l" could still phish with the
// bare name. policy.bare_domain_links counts every domain name as a link: a tenant names only the
// hosts it may link to, its own WebOTP origin included; a text without a name is not affected.
func TestBareDomainLinksAreRefusedWhenAsked(t *testing.T) {
	t.Parallel()
	h := startOnMock(t, `{rate_limits: {per_recipient: 0}, bare_domain_links: true, allowed_link_hosts: [help.example.com]}`, `
  - {name: plain, api_key: plain-key}
  - {name: acme, api_key: acme-key, allowed_link_hosts: [acme.com]}
`)
	sendLinks(t, h, []linkSend{
		{"plain-key", "sms", "734019 is your verification code for Acme.com.", 403},
		{"acme-key", "sms", "734019 is your verification code for Acme.com.", 200},
		{"acme-key", "sms", "Your code is 734019\n\n@acme.com #734019", 200},
		{"plain-key", "sms", "Your code is 734019\n\n@acme.com #734019", 403},
		{"plain-key", "sms", "Your code is 734019. Help: help.example.com", 200},
		{"acme-key", "sms", "Your code is 734019. Secure your account at acme-secure.com now", 403},
		{"acme-key", "sms", "Your code is 734019. Questions? support@acme-secure.com", 403},
		{"acme-key", "sms", "Your code is 734019. https://login.acme.com/go/acme-secure.com", 403},
		{"plain-key", "sms", "Your code is 734019.", 200},
		{"plain-key", "sms", "您的验证码是734019。请勿泄露", 200},
	})
	if n := testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("primary", "sent")); n != 5 {
		t.Errorf("provider sends = %v, want only the 5 allowed", n)
	}
}

// TestATenantSetsItsOwnBareDomainLinks: tenants[].bare_domain_links overrides the global choice
// for that tenant alone, either way: a tenant whose product name is a domain (Acme.io) opts out
// where the operator counts bare names, and an operator counts them for one tenant it distrusts.
func TestATenantSetsItsOwnBareDomainLinks(t *testing.T) {
	t.Parallel()
	h := startOnMock(t, `{rate_limits: {per_recipient: 0}, bare_domain_links: true}`, `
  - {name: strict, api_key: strict-key}
  - {name: acmeio, api_key: acmeio-key, bare_domain_links: false}
`)
	sendLinks(t, h, []linkSend{
		{"strict-key", "sms", "734019 is your Acme.io code", 403},
		{"acmeio-key", "sms", "734019 is your Acme.io code", 200},
		{"acmeio-key", "sms", "734019 is your code: acme-secure.com/login", 403},
	})
	h = startOnMock(t, `{rate_limits: {per_recipient: 0}}`, `
  - {name: lax, api_key: lax-key}
  - {name: watched, api_key: watched-key, bare_domain_links: true}
`)
	sendLinks(t, h, []linkSend{
		{"lax-key", "sms", "Your code is 734019. Secure your account at acme-secure.com now", 200},
		{"watched-key", "sms", "Your code is 734019. Secure your account at acme-secure.com now", 403},
		{"watched-key", "sms", "Your code is 734019.", 200},
	})
}

// linkSend is a send of text with tenant key, and the status it must get: 403 link_not_allowed
// or 200.
type linkSend struct {
	key, typ, text string
	status         int
}

// sendLinks sends each of sends to a number of its own and checks its answer, which must repeat
// neither the code (734019) nor the refused host (acme-secure); then that the log holds neither.
func sendLinks(t *testing.T, h *harness, sends []linkSend) {
	t.Helper()
	for i, tc := range sends {
		to := fmt.Sprintf("+1 415 555 %04d", 100+i)
		r := h.send(tc.key, `{"message_options":{"recipient":"`+to+`","text":`+strconv.Quote(tc.text)+`,"message_type":"`+tc.typ+`"}}`)
		want := map[int]string{403: "link_not_allowed", 200: ""}[tc.status]
		if r.Status != tc.status || errCode(r) != want {
			t.Errorf("%s %q: %d %s, want %d %s", tc.key, tc.text, r.Status, r.Raw, tc.status, want)
		}
		if strings.Contains(r.Raw, "734019") || strings.Contains(r.Raw, "acme-secure") {
			t.Errorf("the answer repeats the text's code or link: %s", r.Raw)
		}
	}
	if logs := h.logs.String(); strings.Contains(logs, "734019") || strings.Contains(logs, "acme-secure") {
		t.Errorf("the log holds a code or a refused link:\n%s", logs)
	}
}

// startSpending starts a gateway on the memory store with tenant (a YAML flow map) alone, the
// admin token spendUsed reads, no per-recipient limit, and one mock provider, primary, with
// prices (its price keys, YAML).
func startSpending(t *testing.T, tenant, prices string) *harness {
	t.Helper()
	return start(t, `
server: {admin_token: admin-t0ken}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants: [`+tenant+`]
providers: [{name: primary, type: mock, `+prices+`}]
routes: [{name: default, providers: [primary]}]
`, Options{})
}

// spendUsed is how much of its spend limit the only tenant of h has used, as the admin API says.
func spendUsed(t *testing.T, h *harness) float64 {
	t.Helper()
	r := h.do("GET", "/v1/admin/tenants", "admin-t0ken", "")
	var got struct {
		Tenants []struct {
			Spend struct{ Used float64 } `json:"spend"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(r.Raw), &got); err != nil || len(got.Tenants) != 1 {
		t.Fatalf("%d %s (%v)", r.Status, r.Raw, err)
	}
	return got.Tenants[0].Spend.Used
}

// TestASpendLimitCountsEveryPartOfAText: providers bill an SMS per part, and a text of 1,600
// Cyrillic characters is 24 of them. A spend limit counted a message as one part, so a stolen key
// sending the longest texts spent 24 times its limit before it was stopped (on a provider that
// reports no prices, for good). Now the reservation and the charge are the price times the parts.
func TestASpendLimitCountsEveryPartOfAText(t *testing.T) {
	t.Parallel()
	h := startSpending(t, "{name: thief, api_key: thief-key, rate_limits: {spend: 1/24h}}", "prices: {default: 0.04}")
	long := strings.Repeat("ж", 1600) // 24 parts of 67 UCS-2 characters
	send := func(to string) response {
		return h.send("thief-key", `{"message_options":{"recipient":"`+to+`","text":"`+long+`","message_type":"sms"}}`)
	}
	if r := send("+14155550104"); r.Status != 200 {
		t.Fatalf("first long text: %d %s", r.Status, r.Raw)
	}
	if u := spendUsed(t, h); math.Abs(u-0.96) > 1e-6 {
		t.Errorf("used %v after one text of 24 parts at 0.04, want 0.96", u)
	}
	// A send is let through while the bucket holds anything (0.04 here), and reserves its whole
	// price: the limit is overspent by one message at most. Counted as one part each, 25 such
	// texts went through.
	sent := 1
	for i := range 30 {
		r := send(fmt.Sprintf("+141555502%02d", i))
		if r.Status == 429 && errCode(r) == "rate_limited" {
			break
		}
		if r.Status != 200 {
			t.Fatalf("long text %d: %d %s", i, r.Status, r.Raw)
		}
		sent++
	}
	if sent != 2 {
		t.Errorf("%d texts of 24 parts sent against a limit of 1 at 0.04 a part, want 2", sent)
	}
}

// TestASpendLimitCountsTheMinutesOfALongCall: a call speaks the code twice in seconds, but a text
// without a code is read aloud whole, and voice prices are per minute: 1,600 characters take two.
func TestASpendLimitCountsTheMinutesOfALongCall(t *testing.T) {
	t.Parallel()
	h := startSpending(t, "{name: caller, api_key: caller-key, rate_limits: {spend: 10/24h}}", "prices: {default: 0.04}, voice_prices: {default: 0.25}")
	call := func(text string) {
		t.Helper()
		if r := h.send("caller-key", `{"message_options":{"recipient":"+14155550104","text":"`+text+`","message_type":"voice"}}`); r.Status != 200 {
			t.Fatalf("call: %d %s", r.Status, r.Raw)
		}
	}
	call("Your code is 123456")
	if u := spendUsed(t, h); math.Abs(u-0.25) > 1e-4 {
		t.Errorf("used %v after a call speaking a code, want one minute (0.25)", u)
	}
	call(strings.Repeat("hello ", 266))                // 1,596 characters, no code: two minutes
	if u := spendUsed(t, h); math.Abs(u-0.75) > 1e-4 { // the bucket counts in microseconds of its period
		t.Errorf("used %v after a call reading 1,596 characters, want 0.25 + two minutes (0.75)", u)
	}
	// Each comma is half a second of silence on Infobip's calls: 399 of them in 1,596 characters
	// make a call of about 5.3 minutes (each counted as 7 characters: 4,389 in all, six minutes),
	// where the characters alone counted two.
	call(strings.Repeat("ha, ", 399))
	if u := spendUsed(t, h); math.Abs(u-2.25) > 1e-4 {
		t.Errorf("used %v after a call of 399 commas, want 0.75 + six minutes (2.25)", u)
	}
	// Markup and runs of commas, which lengthen a call at will, are refused before any provider.
	for _, text := range []string{`Hello <break time=\"10s\"/> world`, "Hello" + strings.Repeat(",", 1000)} {
		r := h.send("caller-key", `{"message_options":{"recipient":"+14155550104","text":"`+text+`","message_type":"voice"}}`)
		if r.Status != 400 || errCode(r) != "invalid_request" {
			t.Errorf("voice text %.30q: %d %s", text, r.Status, r.Raw)
		}
	}
	if r := h.send("caller-key", `{"message_options":{"recipient":"+14155550104","text":"1 < 2,, ok","message_type":"sms"}}`); r.Status != 200 {
		t.Errorf("the same in a text message: %d %s", r.Status, r.Raw)
	}
	// Where no voice price is configured at all, a call counts at the highest text price, not at
	// nothing: the limit must not let a tenant call unseen.
	h = startSpending(t, "{name: caller, api_key: caller-key, rate_limits: {spend: 10/24h}}", "prices: {default: 0.04, countries: {US: 0.07}}")
	call("Your code is 123456")
	if u := spendUsed(t, h); math.Abs(u-0.07) > 1e-4 {
		t.Errorf("used %v after a call with no voice price configured, want the highest text price (0.07)", u)
	}
}

// TestAnotherTenantsClientIDTakesNotItsRoute: acme's Auth0 application has a route of its own, to a
// provider account carrying acme's sender. A request's client id is whatever its caller writes, so
// beta naming acme's client id once took that route: acme's account, acme's brand. A client id
// acme declares (client_ids) now routes only acme's requests; beta's go down the table, and a
// client id nobody declares still routes anyone's.
func TestAnotherTenantsClientIDTakesNotItsRoute(t *testing.T) {
	t.Parallel()
	h := start(t, `
storage: {driver: memory}
tenants:
  - {name: acme, api_key: acme-key, client_ids: [acme-app, acme-spa]}
  - {name: beta, api_key: beta-key}
providers: [{name: shared, type: mock}, {name: acme-account, type: mock}]
routes:
  - {name: acme-apps, match: {client_ids: [acme-app, loose-app]}, providers: [acme-account]}
  - {name: default, providers: [shared]}
`, Options{})
	body := func(n int, client string) string {
		return fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is 834712","code":"834712","message_type":"sms"},"client":{"client_id":%q},"request":{"ip":"203.0.113.9"}}`, n, client)
	}
	for i, tc := range []struct{ key, client, route, provider string }{
		{"acme-key", "acme-app", "acme-apps", "acme-account"},
		{"beta-key", "acme-app", "default", "shared"},
		{"acme-key", "acme-spa", "default", "shared"},
		{"beta-key", "loose-app", "acme-apps", "acme-account"},
	} {
		r := h.send(tc.key, body(100+i, tc.client))
		if r.Status != 200 || r.Body["route"] != tc.route || r.Body["provider"] != tc.provider {
			t.Errorf("%s naming %s: %d route %v provider %v, want 200 %s %s (%s)", tc.key, tc.client, r.Status, r.Body["route"], r.Body["provider"], tc.route, tc.provider, r.Raw)
		}
	}
}

// startOnMock starts a gateway with the message log in memory, the policy block and the tenants
// (YAML list items) given, and one mock provider, primary, on the one route.
func startOnMock(t *testing.T, policy, tenants string) *harness {
	t.Helper()
	return start(t, "storage: {driver: memory}\npolicy: "+policy+"\ntenants:"+tenants+
		"providers: [{name: primary, type: mock}]\nroutes: [{name: default, providers: [primary]}]\n", Options{})
}

// TestATenantThatComesBackStartsWithFreshBreakers: a tenant taken out of the config takes its own
// breakers with it (a replica does not keep them for every tenant that ever was), so a tenant of
// that name added back later starts with the provider's breaker closed.
func TestATenantThatComesBackStartsWithFreshBreakers(t *testing.T) {
	t.Parallel()
	const cfg = `storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants:
  - {name: acme, api_key: acme-key}
%sproviders:
  - {name: flaky, type: mock, failure_rate: 1, breaker: {consecutive_failures: 3}}
  - {name: ok, type: mock}
routes: [{name: d, providers: [flaky, ok]}]
`
	withGone := fmt.Sprintf(cfg, "  - {name: gone, api_key: gone-key}\n")
	h := start(t, withGone, Options{})
	_, reload := reloader(t, h.app, h.path)
	send := func(i int) []string { t.Helper(); return sentAttempts(t, h, "gone-key", i) }
	for i := range 3 {
		send(i)
	}
	if got := send(3); got[0] == "flaky:provider_error" {
		t.Fatalf("gone's own breaker did not open after 3 failures: %v", got)
	}
	reload(fmt.Sprintf(cfg, ""))
	reload(withGone)
	if got := send(4); got[0] != "flaky:provider_error" {
		t.Errorf("back in the config, gone's first send: %v, want flaky tried (its breaker closed)", got)
	}
}

// TestTwoTenantsNeverShareASend: two tenants that send the same text to the same number at the
// same moment, or under the same Idempotency-Key, each get a send of their own, recorded as
// theirs: coalescing and idempotency keep to one tenant. (Shared, the second tenant's request was
// answered with the first's message, which is not its own to read, and its own was never sent.)
func TestTwoTenantsNeverShareASend(t *testing.T) {
	t.Parallel()
	h := start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants:
  - {name: acme, api_key: acme-key}
  - {name: beta, api_key: beta-key}
providers:
  - {name: slow, type: mock, latency: 400ms}
routes:
  - {name: default, providers: [slow]}
`, Options{})
	body := `{"notification":{"recipient":"+14155550104","as_text":"Your code is 834712","code":"834712"}}`
	for _, hdr := range [][]string{nil, {"Idempotency-Key", "notif-1"}} {
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ids = map[string]string{}
		)
		for _, tn := range []string{"acme", "beta"} {
			wg.Go(func() {
				r := h.send(tn+"-key", body, hdr...)
				if r.Status != 200 {
					t.Errorf("%v: %s's send: %d %s", hdr, tn, r.Status, r.Raw)
					return
				}
				mu.Lock()
				ids[tn], _ = r.Body["id"].(string)
				mu.Unlock()
			})
		}
		wg.Wait()
		if ids["acme"] == ids["beta"] {
			t.Errorf("%v: both tenants were answered with message %q", hdr, ids["acme"])
		}
		for tn, id := range ids {
			if r := h.do("GET", "/v1/messages/"+id, tn+"-key", ""); r.Status != 200 {
				t.Errorf("%v: %s cannot read the message it was answered with: %d %s", hdr, tn, r.Status, r.Raw)
			}
		}
	}
	if n := testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("slow", "sent")); n != 4 {
		t.Errorf("provider sends = %v, want 4, one for each tenant's request", n)
	}
}
