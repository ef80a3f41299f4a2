package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/gateway/policy"
	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

// Three tenants with the three actions; warmup 1h and min_volume 5 so that a test hour is enough.
const pumpingConfig = `
server: {admin_token: admin-t0ken}
storage: {driver: memory}
$STATE
policy:
  rate_limits: {per_recipient: 0}
  resend_escalation: {enabled: false}
  pumping: {action: block, warmup: 1h, min_volume: 5, throttle: 2/1h, cooldown: 30m}
tenants:
  - {name: acme, api_key: acme-key}
  - {name: beta, api_key: beta-key, pumping: {action: throttle}}
  - {name: gamma, api_key: gamma-key, pumping: {action: alert}}
  - {name: delta, api_key: delta-key, pumping: {action: throttle}}
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`

// TestPumpingQuarantineActions: after an hour of usual US traffic, a burst to Sierra Leone (a
// range never used) is quarantined at the 5th message: acme (block) gets 403 suspected_pumping,
// beta (throttle) 2 more sends then 429, gamma (alert) goes on; US traffic is untouched, one
// tenant's quarantine is not another's, nor its throttle (delta, throttled on the same range after
// beta, gets its own 2), the admin API lists and releases, and no log line holds a full number. With Redis, two replicas share the picture: the burst is split between them.
func TestPumpingQuarantineActions(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
			state := "state: {driver: memory}"
			var rc *redis.Client
			prefix := redistest.Prefix(t)
			if backend == "redis" {
				rc = redistest.Start(t)
				state = fmt.Sprintf(`state: {driver: redis, redis: {addr: %q, key_prefix: %q}, key_secret: "pump-key-secret-0123456789"}`,
					rc.Options().Addr, prefix)
			}
			cfg := strings.Replace(pumpingConfig, "$STATE", state, 1)
			a := start(t, cfg, Options{Now: clk.Now})
			b := a
			if backend == "redis" {
				b = start(t, cfg, Options{Now: clk.Now})
			}
			n := 0
			send := func(h *harness, key, to string) response {
				t.Helper()
				n++
				return h.send(key, fmt.Sprintf(`{"recipient":%q,"text":"Your code is %06d","context":{}}`, to, n))
			}
			for _, key := range []string{"acme-key", "beta-key", "gamma-key", "delta-key"} {
				if r := send(a, key, "+14155550104"); r.Status != 200 {
					t.Fatalf("%s US: %d %s", key, r.Status, r.Raw)
				}
			}
			clk.Add(2 * time.Hour)
			burst := func(key string) {
				t.Helper()
				for i := 1; i <= 5; i++ {
					h := a
					if i%2 == 0 {
						h = b
					}
					if r := send(h, key, fmt.Sprintf("+232760000%02d", i)); r.Status != 200 {
						t.Fatalf("%s burst %d: %d %s", key, i, r.Status, r.Raw)
					}
					clk.Add(10 * time.Second)
				}
			}
			burst("acme-key")
			r := send(a, "acme-key", "+23276000006")
			if r.Status != 403 || errCode(r) != "suspected_pumping" || !strings.Contains(r.Raw, "232-76") {
				t.Errorf("acme after the burst: %d %s", r.Status, r.Raw)
			}
			if r := send(b, "acme-key", "+14155550104"); r.Status != 200 {
				t.Errorf("acme's usual range: %d %s", r.Status, r.Raw)
			}
			burst("beta-key") // acme's quarantine is not beta's: its first five go out
			throttled := func(h *harness, tenant string) {
				t.Helper()
				for i, want := range []int{200, 200, 429} {
					if r := send(h, tenant+"-key", fmt.Sprintf("+2327600010%d", i)); r.Status != want || want == 429 && r.Header.Get("Retry-After") == "" {
						t.Errorf("%s throttled send %d: %d %v %s", tenant, i, r.Status, r.Header, r.Raw)
					}
				}
			}
			throttled(b, "beta")
			burst("delta-key") // beta's throttle on the range is not delta's: delta gets its own
			throttled(a, "delta")
			burst("gamma-key")
			if r := send(a, "gamma-key", "+23276000200"); r.Status != 200 {
				t.Errorf("gamma (alert) after the burst: %d %s", r.Status, r.Raw)
			}
			q := b.do("GET", "/v1/admin/quarantines", "admin-t0ken", "")
			var got []string
			for _, x := range q.Body["quarantines"].([]any) {
				x := x.(map[string]any)
				got = append(got, fmt.Sprint(x["tenant"], " ", x["range"], " ", x["country"], " ", x["action"]))
			}
			if want := "acme 232-76 SL block,beta 232-76 SL throttle,delta 232-76 SL throttle,gamma 232-76 SL alert"; strings.Join(got, ",") != want {
				t.Errorf("quarantines = %v, want %s", got, want)
			}
			if rc != nil { // quarantines, their index, counters: nothing stays in the shared Redis for good
				if keys := sharedKeysExpire(t, rc, prefix+"*"); !slices.Contains(keys, prefix+"pump|qi") {
					t.Errorf("no quarantine index among %v", keys)
				}
			}
			for tenant, action := range map[string]string{"acme": "block", "beta": "throttle", "gamma": "alert", "delta": "throttle"} {
				total := testutil.ToFloat64(a.app.MetricSet().Quarantines.WithLabelValues(tenant, "SL", action))
				if b != a {
					total += testutil.ToFloat64(b.app.MetricSet().Quarantines.WithLabelValues(tenant, "SL", action))
				}
				if total != 1 {
					t.Errorf("smsgate_pumping_quarantines_total{%s,SL,%s} = %v across replicas", tenant, action, total)
				}
			}
			for _, c := range []struct{ tenant, reason string }{{"acme", "suspected_pumping"}, {"beta", "pumping_throttle"}, {"delta", "pumping_throttle"}} {
				total := testutil.ToFloat64(a.app.MetricSet().PolicyRejections.WithLabelValues(c.tenant, c.reason))
				if b != a {
					total += testutil.ToFloat64(b.app.MetricSet().PolicyRejections.WithLabelValues(c.tenant, c.reason))
				}
				if total != 1 {
					t.Errorf("smsgate_policy_rejections_total{%s,%s} = %v across replicas, want 1", c.tenant, c.reason, total)
				}
			}
			// A reload that makes gamma block applies to its quarantine at once.
			raw, err := os.ReadFile(a.path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(a.path, []byte(strings.Replace(string(raw), "pumping: {action: alert}", "pumping: {action: block}", 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			if r := a.do("POST", "/v1/admin/reload", "admin-t0ken", ""); r.Status != 200 {
				t.Fatalf("reload: %d %s", r.Status, r.Raw)
			}
			if r := send(a, "gamma-key", "+23276000201"); r.Status != 403 || errCode(r) != "suspected_pumping" {
				t.Errorf("gamma after switching to block: %d %s", r.Status, r.Raw)
			}
			if r := a.do("DELETE", "/v1/admin/quarantines/acme/232-76", "admin-t0ken", ""); r.Status != 200 {
				t.Fatalf("release: %d %s", r.Status, r.Raw)
			}
			if r := send(b, "acme-key", "+23276000300"); r.Status != 200 {
				t.Errorf("acme after the release: %d %s", r.Status, r.Raw)
			}
			if r := a.do("DELETE", "/v1/admin/quarantines/acme/232-76", "admin-t0ken", ""); r.Status != 404 || errCode(r) != "not_found" {
				t.Errorf("second release: %d %s", r.Status, r.Raw)
			}
			logs := a.logs.String()
			if b != a {
				logs += b.logs.String()
			}
			if !strings.Contains(logs, "number range quarantined") || strings.Contains(logs, "23276000001") {
				t.Errorf("logs: quarantine line missing, or a full number in them")
			}
		})
	}
}

// TestPumpingConversionThroughVerified: codes reported used through POST /v1/messages/{id}/verified
// and through the Infobip-compatible POST /ct/1/log/end/{messageId} (every other one) feed the
// conversion signal, each code once however many reports of it arrive at once. A new tenant (no rate signal before warmup) whose US codes are used and whose
// GB codes never are: once those sends are older than conversion_delay, the next GB send
// quarantines GB, and US goes on.
func TestPumpingConversionThroughVerified(t *testing.T) {
	t.Parallel()
	h, clk, sendAny := startPumping(t)
	send := func(to string) response {
		t.Helper()
		r := sendAny(to)
		if r.Status != 200 {
			t.Fatalf("send %s: %d %s", to, r.Status, r.Raw)
		}
		return r
	}
	for i := range 6 {
		r := send(fmt.Sprintf("+141555501%02d", i))
		path := "/v1/messages/" + r.Body["id"].(string) + "/verified"
		if i%2 == 1 {
			path = "/ct/1/log/end/" + r.Body["id"].(string)
		}
		// Reported four times, three of them at once, counted once.
		done := make(chan response, 3)
		for range 3 {
			go func() { done <- h.do("POST", path, "acme-key", "") }()
		}
		for range 3 {
			if v := <-done; v.Status != 200 {
				t.Fatalf("verified: %d %s", v.Status, v.Raw)
			}
		}
		if v := h.do("POST", path, "acme-key", ""); v.Status != 200 {
			t.Fatalf("verified again: %d %s", v.Status, v.Raw)
		}
		send(fmt.Sprintf("+4474001000%02d", i))
		clk.Add(10 * time.Second)
	}
	clk.Add(6 * time.Minute)
	send("+447400100099") // its range converts at 0 while US converts at 1: quarantined after it
	if r := h.send("acme-key", `{"recipient":"+447400100098","text":"Your code is 999999","context":{}}`); r.Status != 403 || errCode(r) != "suspected_pumping" ||
		!strings.Contains(r.Raw, "conversion: 0 of 6") || !strings.Contains(r.Raw, "other ranges used 6 of 6") {
		t.Errorf("GB after the conversion signal: %d %s", r.Status, r.Raw)
	}
	send("+14155550199")
	rec, err := h.app.Store().Get(t.Context(), "acme", h.send("acme-key", `{"recipient":"+14155550198","text":"Your code is 888888","context":{}}`).Body["id"].(string))
	if err != nil || rec.Range != "1-41" {
		t.Errorf("record range: %+v %v", rec, err)
	}
}

// TestAQuarantinedIslandHoldsNoUSAreaCode: Jamaica shares +1 with the US, and its range was "1-87"
// with the US area codes 870-879, so a quarantine of pumping to Jamaica refused a tenant's users
// in Arkansas and Chicago too. The range is now "1-876": the burst to Jamaica is blocked, US
// numbers under 87x are sent.
func TestAQuarantinedIslandHoldsNoUSAreaCode(t *testing.T) {
	t.Parallel()
	_, clk, send := startPumping(t)
	burstAfterUS(t, clk, send, "+1876555%04d", "1-876")
	for _, to := range []string{"+18705551234", "+18725551234"} { // Arkansas, Chicago
		if r := send(to); r.Status != 200 {
			t.Errorf("%s while Jamaica is quarantined: %d %s", to, r.Status, r.Raw)
		}
	}
}

// TestCanadasRangesAreNotTheUSs: only number patterns tell Toronto's 416 from the US's 415 under
// +1, and both were "1-41": a burst to Toronto hid in, and its quarantine held, a tenant's US
// area codes 410 to 419. Toronto's range is "1-41-CA" now: its burst is blocked, US numbers of
// 41x are sent, the admin API lists and releases the named range.
func TestCanadasRangesAreNotTheUSs(t *testing.T) {
	t.Parallel()
	h, clk, send := startPumping(t)
	burstAfterUS(t, clk, send, "+1416555%04d", "1-41-CA")
	for _, to := range []string{"+14155550105", "+14105551234"} { // San Francisco, Baltimore
		if r := send(to); r.Status != 200 {
			t.Errorf("%s while Toronto is quarantined: %d %s", to, r.Status, r.Raw)
		}
	}
	q := h.do("GET", "/v1/admin/quarantines", "admin-t0ken", "")
	if list, _ := q.Body["quarantines"].([]any); q.Status != 200 || len(list) != 1 || list[0].(map[string]any)["range"] != "1-41-CA" {
		t.Fatalf("quarantines: %d %s", q.Status, q.Raw)
	}
	if r := h.do("DELETE", "/v1/admin/quarantines/acme/1-41-CA", "admin-t0ken", ""); r.Status != 200 {
		t.Fatalf("release: %d %s", r.Status, r.Raw)
	}
	if r := send("+14165552001"); r.Status != 200 {
		t.Errorf("Toronto after the release: %d %s", r.Status, r.Raw)
	}
}

// burstAfterUS sends one US code, and two hours later a burst of five to numbers of format (one
// %04d): the next send to such a number must be refused as pumping, naming rng.
func burstAfterUS(t *testing.T, clk *testClock, send func(string) response, format, rng string) {
	t.Helper()
	if r := send("+14155550104"); r.Status != 200 {
		t.Fatalf("US: %d %s", r.Status, r.Raw)
	}
	clk.Add(2 * time.Hour)
	for i := 1; i <= 5; i++ {
		if r := send(fmt.Sprintf(format, 1000+i)); r.Status != 200 {
			t.Fatalf("burst %d to %s: %d %s", i, rng, r.Status, r.Raw)
		}
		clk.Add(10 * time.Second)
	}
	if r := send(fmt.Sprintf(format, 2000)); r.Status != 403 || errCode(r) != "suspected_pumping" || !strings.Contains(r.Raw, rng) {
		t.Fatalf("after the burst: %d %s, want 403 suspected_pumping naming %s", r.Status, r.Raw, rng)
	}
}

// startPumping starts a gateway on pumpingConfig with the state in memory and a test clock, and
// returns a send of a fresh code from acme to a number.
func startPumping(t *testing.T) (*harness, *testClock, func(to string) response) {
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	h := start(t, strings.Replace(pumpingConfig, "$STATE", "state: {driver: memory}", 1), Options{Now: clk.Now})
	n := 0
	return h, clk, func(to string) response {
		t.Helper()
		n++
		return h.send("acme-key", fmt.Sprintf(`{"recipient":%q,"text":"Your code is %06d","context":{}}`, to, n))
	}
}

// TestAQuarantinedSendGivesItsSpendBack: a send its range's quarantine refuses was never made, so
// what its tenant's spend limit reserved for it goes back: refused sends to a pumped range, however
// many, leave the tenant its spend for its usual traffic.
func TestAQuarantinedSendGivesItsSpendBack(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	cfg := strings.Replace(pumpingConfig, "$STATE", "state: {driver: memory}", 1)
	cfg = strings.Replace(cfg, "  - {name: acme, api_key: acme-key}", "  - {name: acme, api_key: acme-key, rate_limits: {spend: 1/24h}}", 1)
	cfg = strings.Replace(cfg, "providers: [{name: m, type: mock}]", "providers: [{name: m, type: mock, prices: {default: 0.1}}]", 1)
	h := start(t, cfg, Options{Now: clk.Now})
	n := 0
	send := func(to string) response {
		t.Helper()
		n++
		return h.send("acme-key", fmt.Sprintf(`{"recipient":%q,"text":"Your code is %06d","context":{}}`, to, n))
	}
	if r := send("+14155550104"); r.Status != 200 {
		t.Fatalf("usual send: %d %s", r.Status, r.Raw)
	}
	clk.Add(2 * time.Hour)
	for i := 1; i <= 5; i++ { // 0.6 of the limit of 1 spent in all
		if r := send(fmt.Sprintf("+232760000%02d", i)); r.Status != 200 {
			t.Fatalf("burst %d: %d %s", i, r.Status, r.Raw)
		}
		clk.Add(10 * time.Second)
	}
	for i := range 10 {
		if r := send(fmt.Sprintf("+2327600010%d", i)); r.Status != 403 || errCode(r) != "suspected_pumping" {
			t.Fatalf("quarantined send %d: %d %s", i, r.Status, r.Raw)
		}
	}
	if r := send("+14155550105"); r.Status != 200 {
		t.Errorf("a usual send after 10 quarantined ones: %d %s, want 200 (their reservations given back)", r.Status, r.Raw)
	}
}

// TestAQuarantineThatCannotBeReadFollowsOnError: a quarantine the state store cannot give back
// (here one it holds unreadable) is a state-store failure like any other: with on_error closed
// the send is refused 503 policy_unavailable, as a limit that cannot be read refuses it; with
// open it goes out. Either way the failure is counted and logged. A tenant whose action is alert
// never reads quarantines on the send path. A throttle whose limit cannot be checked follows
// on_error too, and a sent message whose range cannot be counted is counted as a failure.
func TestAQuarantineThatCannotBeReadFollowsOnError(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"open", "closed"} {
		t.Run(mode, func(t *testing.T) {
			h := start(t, strings.Replace(pumpingConfig, "$STATE", "state: {driver: memory, on_error: "+mode+"}", 1), Options{})
			for _, tenant := range []string{"acme", "gamma"} {
				if _, err := h.app.pumping.State.PumpPut(context.Background(), "pump|q|"+tenant+"|232-76", "{not json", time.Hour, false); err != nil {
					t.Fatal(err)
				}
			}
			r := h.send("acme-key", `{"recipient":"+23276000001","text":"Your code is 246810","context":{}}`)
			want, code := 200, ""
			if mode == "closed" {
				want, code = 503, "policy_unavailable"
			}
			if r.Status != want || errCode(r) != code {
				t.Errorf("acme (block): %d %s, want %d %q", r.Status, r.Raw, want, code)
			}
			if n := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("pumping")); n != 1 {
				t.Errorf("state errors counted for pumping: %v, want 1", n)
			}
			if !strings.Contains(h.logs.String(), "policy state store failed") {
				t.Error("the failure was not logged")
			}
			if r := h.send("gamma-key", `{"recipient":"+23276000002","text":"Your code is 246811","context":{}}`); r.Status != 200 {
				t.Errorf("gamma (alert): %d %s", r.Status, r.Raw)
			}
			if n := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("pumping")); n != 1 {
				t.Errorf("state errors counted for pumping after gamma's send: %v, want still 1", n)
			}
			// So does a throttle whose limit cannot be checked: beta's range is quarantined with
			// action throttle, and the limiter fails (no other limit of this config reads it: gamma's
			// send is the control).
			q, _ := json.Marshal(policy.Quarantine{Tenant: "beta", Range: "232-76", Country: "SL", Action: "throttle", Until: time.Now().Add(time.Hour)})
			if _, err := h.app.pumping.State.PumpPut(context.Background(), "pump|q|beta|232-76", string(q), time.Hour, false); err != nil {
				t.Fatal(err)
			}
			limiter := h.app.checker.Limiter
			h.app.checker.Limiter = failingLimiter{}
			defer func() { h.app.checker.Limiter = limiter }()
			if r := h.send("gamma-key", `{"recipient":"+23276000003","text":"Your code is 246812","context":{}}`); r.Status != 200 {
				t.Errorf("gamma (alert) with the limiter failing: %d %s", r.Status, r.Raw)
			}
			if r := h.send("beta-key", `{"recipient":"+23276000004","text":"Your code is 246813","context":{}}`); r.Status != want || errCode(r) != code {
				t.Errorf("beta (throttle) with the limiter failing: %d %s, want %d %q", r.Status, r.Raw, want, code)
			}
			if n := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("pumping")); n != 2 {
				t.Errorf("state errors counted for pumping after beta's send: %v, want 2", n)
			}
			// A sent message whose range cannot be counted is sent all the same, and counted as a
			// failure of the state store, whatever on_error says: the text has gone.
			state := h.app.pumping.State
			h.app.pumping.State = failingPumpAdd{state}
			defer func() { h.app.pumping.State = state }()
			if r := h.send("gamma-key", `{"recipient":"+23276000005","text":"Your code is 246814","context":{}}`); r.Status != 200 {
				t.Errorf("gamma (alert) whose range cannot be counted: %d %s", r.Status, r.Raw)
			}
			waitUntil(t, "the failed count is counted", func() bool {
				return testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("pumping")) == 3
			})
		})
	}
}

// failingPumpAdd is a pumping state store whose counters cannot be added to.
type failingPumpAdd struct{ policy.PumpState }

func (failingPumpAdd) PumpAdd(context.Context, [][2]string, time.Duration) ([]int64, error) {
	return nil, errors.New("i/o timeout")
}
