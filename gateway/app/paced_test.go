package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

const pacedConfig = `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants:
  - {name: flood, api_key: flood-key}
  - {name: quiet, api_key: quiet-key}
providers:
  - {name: m, type: mock, throughput: 10/1h}
  - {name: n, type: mock}
routes:
  - {name: both, match: {tenants: [quiet]}, providers: [m, n]}
  - {name: paced-only, match: {tenants: [flood]}, providers: [m]}
  - {name: d, providers: [m, n]}
`

// TestAFloodCannotTakeAProvidersThroughput: a provider account's throughput is shared by every
// tenant. One tenant's burst takes at most its share of it (half, with several tenants); its
// sends beyond that skip the provider (429 when the route has no other), and another tenant
// still finds the provider's other half, up to the account's throughput and no further.
func TestAFloodCannotTakeAProvidersThroughput(t *testing.T) {
	t.Parallel()
	h := start(t, pacedConfig, Options{})
	send := func(key string, i int) response {
		t.Helper()
		return h.send(key, fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, i, i))
	}
	for i := range 5 {
		if r := send("flood-key", i); r.Status != 200 || r.Body["provider"] != "m" {
			t.Fatalf("flood send %d within its share: %d %s", i, r.Status, r.Raw)
		}
	}
	r := send("flood-key", 5)
	if r.Status != 429 || errCode(r) != "provider_throttled" || r.Header.Get("Retry-After") == "" || !strings.Contains(r.Raw, `"code":"throughput"`) {
		t.Errorf("flood send over its share of m's throughput: %d %s", r.Status, r.Raw)
	}
	for i := range 5 {
		if r := send("quiet-key", 100+i); r.Status != 200 || r.Body["provider"] != "m" {
			t.Errorf("quiet send %d after the flood: %d %s, want m", i, r.Status, r.Raw)
		}
	}
	// The account's ten are used: the quiet tenant's next send goes to its route's next provider.
	if r := send("quiet-key", 105); r.Status != 200 || r.Body["provider"] != "n" || !strings.Contains(r.Raw, `"code":"throughput"`) {
		t.Errorf("quiet send past the account's throughput: %d %s, want n after a skip", r.Status, r.Raw)
	}
	if sent := testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("m", "sent")); sent != 10 {
		t.Errorf("m sent %v messages, want its throughput, 10", sent)
	}
	paced := h.app.MetricSet().Paced
	if f, q := testutil.ToFloat64(paced.WithLabelValues("m", "flood")), testutil.ToFloat64(paced.WithLabelValues("m", "quiet")); f != 1 || q != 1 {
		t.Errorf("smsgate_paced_total: flood %v, quiet %v; want 1 and 1", f, q)
	}
}

// TestOneTenantUsesTheWholeThroughput: alone, a tenant's share is the whole account.
func TestOneTenantUsesTheWholeThroughput(t *testing.T) {
	t.Parallel()
	h := start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants: [{name: solo, api_key: solo-key}]
providers: [{name: m, type: mock, throughput: 4/1h}, {name: n, type: mock}]
routes: [{name: d, providers: [m, n]}]
`, Options{})
	var got []string
	for i := range 6 {
		r := h.send("solo-key", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, i, i))
		got = append(got, fmt.Sprint(r.Body["provider"]))
	}
	if strings.Join(got, ",") != "m,m,m,m,n,n" {
		t.Errorf("providers %v, want m four times (its throughput), then n", got)
	}
}

// TestThroughputIsSharedAcrossReplicas: with Redis, the replicas pace one account together.
func TestThroughputIsSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Server(t)
	cfg := strings.Replace(pacedConfig, "storage: {driver: memory}", `storage: {driver: memory}
state: {driver: redis, redis: {addr: "`+addr+`"}, key_secret: "paced-key-secret-0123456789"}`, 1)
	a, b := start(t, cfg, Options{}), start(t, cfg, Options{})
	got := ""
	for i := range 6 {
		h := a
		if i%2 == 1 {
			h = b
		}
		r := h.send("flood-key", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, i, i))
		got += fmt.Sprint(r.Status, " ")
	}
	if got != "200 200 200 200 200 429 " {
		t.Errorf("statuses across two replicas: %s; want five sends (the tenant's share of 10) then 429", got)
	}
}

// TestProvidersShowThroughput: GET /v1/providers says what each provider is paced to.
func TestProvidersShowThroughput(t *testing.T) {
	t.Parallel()
	h := start(t, strings.Replace(pacedConfig, "storage:", "server: {admin_token: admin-t0ken}\nstorage:", 1), Options{})
	r := h.do("GET", "/v1/providers", "admin-t0ken", "")
	got := map[string]string{}
	for _, p := range r.Body["providers"].([]any) {
		p := p.(map[string]any)
		got[p["name"].(string)] = fmt.Sprint(p["throughput"], " ", p["tenant_share"])
	}
	if got["m"] != "10/1h0m0s 0.5" || got["n"] != "<nil> <nil>" {
		t.Errorf("providers: %v", got)
	}
}

// TestAnIdleTenantsShareIsNotWasted: with several tenants configured but one sending, that one
// gets the whole throughput over time; only the others' part of the burst stays in reserve.
func TestAnIdleTenantsShareIsNotWasted(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	h := start(t, pacedConfig, Options{Now: clk.Now})
	sent := 0
	for hour := range 3 {
		for half := range 2 {
			for i := range 20 {
				r := h.send("flood-key", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, hour*100+half*50+i, i))
				if r.Status == 200 {
					sent++
				}
			}
			clk.Add(30 * time.Minute)
		}
	}
	// A full bucket (10) the first half hour would give 5, its share; then 5 a half hour: the
	// account's 10 an hour, less the others' part of the first burst.
	if sent != 5+5*5 {
		t.Errorf("the only sending tenant got %d sends through m in 3 hours (10/1h), want 30", sent)
	}
}

// TestCallsArePacedOnTheirOwn: with voice_throughput, a provider's calls have a rate of their own
// (calls per second are often limited apart from messages), and its messages keep theirs.
func TestCallsArePacedOnTheirOwn(t *testing.T) {
	t.Parallel()
	h := start(t, `
server: {admin_token: admin-t0ken}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants: [{name: solo, api_key: solo-key}]
providers: [{name: m, type: mock, throughput: 3/1h, voice_throughput: 1/1h}, {name: n, type: mock, voice_throughput: 100/1s}]
routes: [{name: d, providers: [m, n]}]
`, Options{})
	var got []string
	for i, typ := range []string{"voice", "voice", "sms", "sms", "sms", "sms"} {
		r := h.send("solo-key", fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is %06d","message_type":%q}}`, i, i, typ))
		got = append(got, typ+":"+fmt.Sprint(r.Body["provider"]))
	}
	if want := "voice:m voice:n sms:m sms:m sms:m sms:n"; strings.Join(got, " ") != want {
		t.Errorf("providers %s, want %s", strings.Join(got, " "), want)
	}
	r := h.do("GET", "/v1/providers", "admin-t0ken", "")
	m := r.Body["providers"].([]any)[0].(map[string]any)
	if m["throughput"] != "3/1h0m0s" || m["voice_throughput"] != "1/1h0m0s" || m["tenant_share"] != float64(1) {
		t.Errorf("GET /v1/providers: %v", m)
	}
	// Calls paced alone: the tenant's share of them is shown too.
	if n := r.Body["providers"].([]any)[1].(map[string]any); n["throughput"] != nil || n["voice_throughput"] != "100/1s" || n["tenant_share"] != float64(1) {
		t.Errorf("GET /v1/providers, a provider pacing its calls only: %v", n)
	}
	// With the same figure for both, still two buckets: calls do not use up the texts' one.
	h = start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants: [{name: solo, api_key: solo-key}]
providers: [{name: m, type: mock, throughput: 2/1h, voice_throughput: 2/1h}, {name: n, type: mock}]
routes: [{name: d, providers: [m, n]}]
`, Options{})
	got = nil
	for i, typ := range []string{"voice", "voice", "voice", "sms", "sms", "sms"} {
		r := h.send("solo-key", fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is %06d","message_type":%q}}`, i, i, typ))
		got = append(got, typ+":"+fmt.Sprint(r.Body["provider"]))
	}
	if want := "voice:m voice:m voice:n sms:m sms:m sms:n"; strings.Join(got, " ") != want {
		t.Errorf("equal figures: providers %s, want %s", strings.Join(got, " "), want)
	}
	// throughput: 0, as a template writes for none, paces no text while the calls are paced.
	h = start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants: [{name: solo, api_key: solo-key}]
providers: [{name: m, type: mock, throughput: 0, voice_throughput: 1/1h}, {name: n, type: mock}]
routes: [{name: d, providers: [m, n]}]
`, Options{})
	got = nil
	for i, typ := range []string{"sms", "sms", "sms", "voice", "voice"} {
		r := h.send("solo-key", fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is %06d","message_type":%q}}`, i, i, typ))
		got = append(got, typ+":"+fmt.Sprint(r.Body["provider"]))
	}
	if want := "sms:m sms:m sms:m voice:m voice:n"; strings.Join(got, " ") != want {
		t.Errorf("throughput 0: providers %s, want %s", strings.Join(got, " "), want)
	}
}

// A state store that fails does not stop a paced provider: the send goes through it (throughput
// is the provider's to enforce, and it will), counted as a failure of the store.
func TestAFailingStateStoreLetsAPacedSendThrough(t *testing.T) {
	t.Parallel()
	h := start(t, pacedConfig, Options{})
	h.app.checker.Limiter = failingLimiter{}
	r := h.send("flood-key", strings.Replace(actionBody, "0104", "0199", 1))
	if r.Status != 200 || r.Body["provider"] != "m" {
		t.Fatalf("a send on a paced route while the store fails: %d %s, want it sent through m", r.Status, r.Raw)
	}
	if n := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("throughput")); n != 1 {
		t.Errorf("smsgate_state_errors_total{op=throughput} = %v, want 1", n)
	}
}
