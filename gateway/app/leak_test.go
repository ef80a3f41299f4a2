package app

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

// leakConfig builds every driver: Infobip and Twilio on their fakes send, the others are built
// on each reload and never called. Infobip's throughput builds its pacing too.
const leakConfig = `
server: {request_timeout: 3s, public_url: "https://sms.example.com", metrics_listen: "127.0.0.1:0"}
storage: {driver: sqlite, path: $DIR/log.db}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants: [{name: acme, api_key: acme-key-0123456789}, {name: other, api_key: other-key-0123456789}]
providers:
  - {name: infobip-eu, type: infobip, base_url: $IB, api_key: ib-key, webhook_secret: hook-secret-0123456789, sender: InfoSMS, throughput: 100/1s}
  - {name: twilio-us, type: twilio, account_sid: ` + twSID + `, auth_token: tw-token, from: "+15005550006", base_url: $TW}
  - {name: m, type: mock}
  - {name: vg, type: vonage, api_key: k, api_secret: s, from: "+14155550000", base_url: "http://127.0.0.1:9"}
  - {name: ts, type: telesign, customer_id: C, api_key: "c2VjcmV0LXNlY3JldA==", base_url: "http://127.0.0.1:9"}
  - {name: es, type: esendex, username: u, password: p, account_reference: EX0000000, base_url: "http://127.0.0.1:9"}
  - {name: mi, type: mitto, api_key: k, from: Acme, base_url: "http://127.0.0.1:9"}
  - {name: eum, type: aws-sms-voice, region: eu-west-1, origination_identity: "+14155550000", configuration_set: smsgate, event_topics: ["arn:aws:sns:eu-west-1:123456789012:smsgate-events"]}
  - {name: sns, type: sns, region: eu-west-1}
routes:
  - {name: default, providers: [infobip-eu, twilio-us, m, vg, ts, es, mi, eum, sns]}
`

// TestReloadsLeakNoGoroutines: a gateway reloaded many times (SIGHUP, POST /v1/admin/reload),
// sending between reloads, keeps as many goroutines as after its first reload. Each reload builds
// every provider, its breakers, pacing and clients again; anything a build starts that the
// running config's swap does not end would pile up in a replica that is reloaded for months.
func TestReloadsLeakNoGoroutines(t *testing.T) {
	// Not parallel: counts the process's goroutines (see start).
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Run("memory", func(t *testing.T) { reloadMany(t, leakConfig) })
	t.Run("redis", func(t *testing.T) {
		addr, _ := redistest.Server(t) // killed at cleanup, after the gateway stops
		reloadMany(t, leakConfig+`state: {driver: redis, redis: {addr: "`+addr+`", key_prefix: "leak:"}, key_secret: "leak-key-secret-0123456789"}
`)
	})
}

// reloadMany starts a gateway on cfg, then reloads it and sends, many times, and fails t when
// its goroutines grew with the reloads.
func reloadMany(t *testing.T, cfg string) {
	h, ib, _ := startOnFakes(t, cfg)
	cycle := func() {
		t.Helper()
		if err := h.app.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		sendOne(t, h, "a send after a reload")
	}
	for range 3 {
		cycle()
	}
	settled := func() int {
		// Goroutines that end on their own (a send's, a connection's) end within this.
		time.Sleep(300 * time.Millisecond)
		return goruntime.NumGoroutine()
	}
	before := settled()
	const reloads = 40
	for range reloads {
		cycle()
	}
	after := settled()
	for deadline := time.Now().Add(5 * time.Second); after > before+reloads/4 && time.Now().Before(deadline); {
		after = settled()
	}
	t.Logf("%d goroutines before %d reloads, %d after", before, reloads, after)
	if after > before+reloads/4 {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:goruntime.Stack(buf, true)])
		t.Errorf("%d goroutines after %d more reloads, %d before: a reload leaves goroutines behind. The most common:\n%s",
			after, reloads, before, commonStacks(stacks, 5))
	}
	if n := ib.Calls(); n < reloads {
		t.Errorf("Infobip received %d requests over %d sends", n, reloads+3)
	}
}

// commonStacks returns the n goroutine stacks (their first frames) that occur most often in a
// goruntime.Stack dump, with their counts.
func commonStacks(dump string, n int) string {
	count := map[string]int{}
	for _, g := range strings.Split(dump, "\n\n") {
		lines := strings.Split(g, "\n")
		if len(lines) > 5 {
			lines = lines[:5]
		}
		count[strings.Join(lines[1:], "\n")]++
	}
	var out strings.Builder
	for range n {
		best, most := "", 0
		for s, c := range count {
			if c > most {
				best, most = s, c
			}
		}
		if most == 0 {
			break
		}
		delete(count, best)
		fmt.Fprintf(&out, "%d of:\n%s\n", most, best)
	}
	return out.String()
}
