package app

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

const replicaConfig = `
storage: {driver: memory}
state: {driver: redis, redis: {addr: "$REDIS", key_prefix: "e2e:"}, on_error: $ONERROR, key_secret: "e2e-key-secret-0123456789"}
policy: {rate_limits: {per_recipient: 2/1h}}
tenants: [{name: acme, api_key: acme-key}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`

// TestReplicasShareStateThroughRedis runs two gateways on one Redis: a recipient's limit and an
// idempotency key hold across both.
func TestReplicasShareStateThroughRedis(t *testing.T) {
	client := redistest.Start(t)
	cfg := strings.NewReplacer("$REDIS", client.Options().Addr, "$ONERROR", "open").Replace(replicaConfig)
	a, b := start(t, cfg, Options{}), start(t, cfg, Options{})
	body := `{"recipient":"+14155550104","text":"Your code is 246810","context":{}}`
	if r := a.send("acme-key", body, "Idempotency-Key", "n-1"); r.Status != 200 {
		t.Fatalf("a: %d %s", r.Status, r.Raw)
	}
	first := a.send("acme-key", body, "Idempotency-Key", "n-1")
	replay := b.send("acme-key", body, "Idempotency-Key", "n-1")
	if replay.Status != 200 || replay.Body["id"] != first.Body["id"] {
		t.Errorf("replica b did not replay a's answer: %s vs %s", replay.Raw, first.Raw)
	}
	if n := testutil.ToFloat64(b.app.MetricSet().Attempts.WithLabelValues("m", "sent")); n != 0 {
		t.Errorf("replica b called the provider %v times for a replayed key", n)
	}
	// per_recipient 2/1h: one send on a (the replays above used no token), one on b, the third is refused.
	if r := b.send("acme-key", strings.Replace(body, "246810", "135791", 2)); r.Status != 200 {
		t.Fatalf("b: %d %s", r.Status, r.Raw)
	}
	if r := a.send("acme-key", strings.Replace(body, "246810", "112233", 2)); r.Status != 429 || errCode(r) != "rate_limited" {
		t.Errorf("third send across replicas: %d %s", r.Status, r.Raw)
	}
}

func TestRedisDownFailsOpenOrClosed(t *testing.T) {
	for _, mode := range []string{"open", "closed"} {
		t.Run(mode, func(t *testing.T) {
			addr, stop := redistest.Server(t)
			h := start(t, strings.NewReplacer("$REDIS", addr, "$ONERROR", mode).Replace(replicaConfig), Options{})
			stop()
			r := h.send("acme-key", `{"recipient":"+14155550104","text":"Your code is 246810","context":{}}`, "Idempotency-Key", "k")
			want, code := 200, ""
			if mode == "closed" {
				want, code = 503, "policy_unavailable"
			}
			if r.Status != want || errCode(r) != code {
				t.Errorf("got %d %s, want %d %q", r.Status, r.Raw, want, code)
			}
			if n := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("idempotency_get")); n != 1 {
				t.Errorf("state errors counted %v", n)
			}
			if !strings.Contains(h.logs.String(), "policy state store failed") {
				t.Error("the failure was not logged")
			}
		})
	}
}

func TestUnreachableRedisStopsStart(t *testing.T) {
	addr, stop := redistest.Server(t)
	stop()
	_, err := New(context.Background(), Options{ConfigPath: writeConfig(t, strings.NewReplacer("$REDIS", addr, "$ONERROR", "open").Replace(replicaConfig))})
	if err == nil || !strings.Contains(err.Error(), "state.redis") {
		t.Errorf("err = %v", err)
	}
}
