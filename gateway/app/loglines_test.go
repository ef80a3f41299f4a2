package app

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// logLines decodes the JSON log and returns the lines with message msg.
func logLines(t *testing.T, h *harness, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestARefusedFloodDoesNotFloodTheLog: the log is shared (one file, one pipeline, one disk for
// every tenant). A tenant whose sends are refused (or fail) writes at most
// log.error_lines_per_second lines a second for each outcome, the next line saying how many were
// left out; its sent messages, and every other tenant's lines, are all written.
func TestARefusedFloodDoesNotFloodTheLog(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	h := start(t, `
log: {error_lines_per_second: 5}
storage: {driver: memory}
tenants:
  - {name: flood, api_key: flood-key, rate_limits: {per_tenant: 2/1h}}
  - {name: quiet, api_key: quiet-key}
  - {name: broken, api_key: broken-key}
  - {name: calm, api_key: calm-key, rate_limits: {per_tenant: 1/1h}}
providers: [{name: m, type: mock}, {name: down, type: mock, failure_rate: 1}]
routes: [{name: b, match: {tenants: [broken]}, providers: [down]}, {name: d, providers: [m]}]
`, Options{Now: clk.Now})
	send := func(key string, i int) response {
		return h.send(key, fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, i, i))
	}
	for i := range 200 {
		want := 429
		if i < 2 {
			want = 200
		}
		if r := send("flood-key", i); r.Status != want {
			t.Fatalf("flood send %d: %d %s", i, r.Status, r.Raw)
		}
		if i%40 == 0 {
			if r := send("quiet-key", i); r.Status != 200 {
				t.Fatalf("quiet send: %d %s", r.Status, r.Raw)
			}
		}
		if r := h.send("no-such-key", `{}`); r.Status != 401 {
			t.Fatalf("unknown key: %d", r.Status)
		}
		if i < 20 {
			if r := send("broken-key", i); r.Status < 500 {
				t.Fatalf("a send through a failing provider: %d %s", r.Status, r.Raw)
			}
		}
	}
	count := func(tenant, outcome string) (lines, suppressed int) {
		for _, l := range logLines(t, h, "send") {
			if l["tenant"] == tenant && l["outcome"] == outcome {
				lines++
				if n, ok := l["suppressed"].(float64); ok {
					suppressed += int(n)
				}
			}
		}
		return lines, suppressed
	}
	if n, _ := count("flood", "sent"); n != 2 {
		t.Errorf("%d lines of the flood's sent messages, want 2", n)
	}
	if n, _ := count("quiet", "sent"); n != 5 {
		t.Errorf("%d lines of the quiet tenant's sends, want 5", n)
	}
	// The test's clock stands still: one second's worth, 5 lines, for 198 refusals.
	if n, s := count("flood", "rate_limited"); n != 5 || s != 0 {
		t.Errorf("%d lines (%d suppressed) for 198 refusals in one second, want 5", n, s)
	}
	// Another tenant's refusal of the same kind is written: the flood used up its own lines.
	send("calm-key", 300)
	if r := send("calm-key", 301); r.Status != 429 {
		t.Fatalf("the calm tenant's second send: %d %s, want 429", r.Status, r.Raw)
	}
	if n, _ := count("calm", "rate_limited"); n != 1 {
		t.Errorf("%d lines for another tenant's refusal after the flood's, want 1", n)
	}
	for i := 302; i <= 306; i++ { // five more: four lines, then one left out
		send("calm-key", i)
	}
	if n, _ := count("", "unauthorized"); n != 5 {
		t.Errorf("%d lines for 200 unknown keys in one second, want 5", n)
	}
	failed := map[string]int{}
	for _, l := range logLines(t, h, "send") {
		if l["tenant"] == "broken" {
			failed[l["outcome"].(string)]++
		}
	}
	// Five failures open the provider's breaker; then the sends find it open.
	if want := map[string]int{"all_providers_failed": 5, "no_provider_available": 5}; fmt.Sprint(failed) != fmt.Sprint(want) {
		t.Errorf("lines for 20 failed sends in one second by outcome: %v, want %v", failed, want)
	}
	// A second later the next refusal is written, with how many were left out.
	clk.Add(time.Second)
	send("flood-key", 500)
	if n, s := count("flood", "rate_limited"); n != 6 || s != 193 {
		t.Errorf("after a second: %d lines, %d suppressed; want 6 and 193", n, s)
	}
	// One left out is said too.
	send("calm-key", 307)
	if n, s := count("calm", "rate_limited"); n != 6 || s != 1 {
		t.Errorf("the calm tenant after a second: %d lines, %d suppressed; want 6 and 1", n, s)
	}
}

// TestRejectedReportsDoNotFloodTheLog: anyone can post to the delivery-report endpoints; reports
// without the webhook secret are refused, and their lines bounded like a tenant's refusals.
func TestRejectedReportsDoNotFloodTheLog(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	h, _, _ := startOnFakesWith(t, compatConfig, Options{Now: clk.Now})
	for range 50 {
		if r := h.do("POST", "/v1/dlr/infobip/infobip-eu?secret=wrong", "", reportBody("msg_x", "DELIVERED", "null")); r.Status != 403 {
			t.Fatalf("report with a wrong secret: %d %s", r.Status, r.Raw)
		}
	}
	if n := len(logLines(t, h, "delivery report rejected")); n != 10 {
		t.Errorf("%d lines for 50 rejected reports in one second, want 10 (the default)", n)
	}
	clk.Add(time.Second)
	h.do("POST", "/v1/dlr/infobip/infobip-eu?secret=wrong", "", reportBody("msg_x", "DELIVERED", "null"))
	lines := logLines(t, h, "delivery report rejected")
	if last := lines[len(lines)-1]; len(lines) != 11 || last["suppressed"] != float64(40) {
		t.Errorf("a second later: %d lines, the last %v; want 11, suppressed 40", len(lines), last)
	}
}

func TestLineGate(t *testing.T) {
	t.Parallel()
	var g lineGate
	now := time.Unix(1_800_000_000, 0)
	got := ""
	for i := range 5 {
		ok, left := g.allow("a", 2, now.Add(time.Duration(i)*100*time.Millisecond))
		got += fmt.Sprintf("%v/%d ", ok, left)
	}
	ok, left := g.allow("b", 2, now) // another key has its own count
	got += fmt.Sprintf("b:%v/%d ", ok, left)
	for range 2 { // the 3 left out are told once
		ok, left = g.allow("a", 2, now.Add(time.Second))
		got += fmt.Sprintf("%v/%d ", ok, left)
	}
	ok, left = g.allow("a", 0, now.Add(time.Second)) // 0: no bound
	got += fmt.Sprintf("%v/%d", ok, left)
	if want := "true/0 true/0 false/0 false/0 false/0 b:true/0 true/3 true/0 true/0"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestLeftOutSaysEveryLineLeftOut: the line after those left out says how many, even one; a line
// after none says nothing of it.
func TestLeftOutSaysEveryLineLeftOut(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{0: "[]", 1: "[suppressed=1]", 7: "[suppressed=7]"} {
		if got := fmt.Sprint(leftOut(n)); got != want {
			t.Errorf("leftOut(%d) = %s, want %s", n, got, want)
		}
	}
}

// The gate forgets keys idle for a minute (they name tenants, which a team may rename at each
// change), but not one whose left-out lines are still to be told.
func TestLineGateForgetsIdleKeys(t *testing.T) {
	t.Parallel()
	var g lineGate
	now := time.Unix(1_800_000_000, 0)
	for i := range 100 {
		g.allow(fmt.Sprint("send|tenant-", i, "|rate_limited"), 1, now)
	}
	g.allow("send|noisy|rate_limited", 1, now)
	g.allow("send|noisy|rate_limited", 1, now) // left out: to be told on its next line
	g.allow("send|quiet|rate_limited", 1, now.Add(30*time.Second))
	g.allow("send|new|rate_limited", 1, now.Add(70*time.Second))
	var kept []string
	for k := range g.keys {
		kept = append(kept, k)
	}
	slices.Sort(kept)
	if diff := cmp.Diff([]string{"send|new|rate_limited", "send|noisy|rate_limited", "send|quiet|rate_limited"}, kept); diff != "" {
		t.Errorf("keys kept after a minute (-want +got):\n%s", diff)
	}
	if ok, left := g.allow("send|noisy|rate_limited", 1, now.Add(71*time.Second)); !ok || left != 1 {
		t.Errorf("noisy's next line: %v, %d left out; want it written, saying 1", ok, left)
	}
}

// TestRefusalsOfTheRequestSayWhy: a send refused for its shape, a field, its client id or its
// number is counted under its tenant, and its line says why with the refusal's fixed text (what
// SmsgateTenantSendsMalformed's runbook reads), never a value of the request; so is an
// Infobip-compatible request refused whole.
func TestRefusalsOfTheRequestSayWhy(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	cases := []struct{ body, outcome, why string }{
		{`{"message_options":{"recipient":"+1 415 555 0104","text":"Your code is 834712"},"client":{"client_id":"other-app"}}`,
			"client_not_allowed", "this API key may not send for this client_id"},
		{`{"message_options":{"recipient":{"n":"+14155550104"},"text":"Your code is 834712"}}`,
			"invalid_json", "field message_options.recipient has the wrong type (object)"},
		{`{"message_options":{"recipient":"","text":"Your code is 834712"}}`, "invalid_request", "the recipient is missing"},
		{`{"message_options":{"recipient":"+1 415 555 01","text":"Your code is 834712"},"client":{"client_id":"abc123"}}`, "invalid_number",
			"the recipient is not a number in a recognized range; a tenant may allow such numbers with accept_unrecognized_numbers"},
		{`{"to":"+14155550104","body":"Your code is 834712"}`, "unknown_shape",
			"the body is none of the supported shapes: an Auth0 send-phone-message event (message_options), a custom-phone-provider event (notification) or a hook call (recipient, text, context)"},
	}
	for i, c := range cases {
		rid := fmt.Sprintf("refused-%d", i)
		if r := h.send("strict-key", c.body, "X-Request-Id", rid); errCode(r) != c.outcome {
			t.Fatalf("%s: %d %s", c.outcome, r.Status, r.Raw)
		}
		var line map[string]any
		for _, l := range logLines(t, h, "send") {
			if l["request_id"] == rid {
				line = l
			}
		}
		if line["error"] != c.why || line["tenant"] != "strict" || line["outcome"] != c.outcome {
			t.Errorf("%s: the line says %v", c.outcome, line)
		}
		if n := testutil.ToFloat64(h.app.metrics.Requests.WithLabelValues("strict", "", c.outcome)); n != 1 {
			t.Errorf("%s: counted %v times", c.outcome, n)
		}
	}
	if l := h.logs.String(); strings.Contains(l, "834712") || strings.Contains(l, "41555501") {
		t.Errorf("a code or a number reached the log:\n%s", l)
	}

	c := startCompat(t)
	if r := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550104"}],"text":"Your code is 834712","callbackData":"`+strings.Repeat("x", 5000)+`"}]}`); r.Status != 400 {
		t.Fatalf("callbackData too long: %d %s", r.Status, r.Raw)
	}
	lines := 0
	for _, l := range logLines(t, c.harness, "send") {
		if l["tenant"] == "acme" && l["outcome"] == "invalid_request" && strings.HasPrefix(l["error"].(string), "callbackData is longer than ") {
			lines++
		}
	}
	if n := testutil.ToFloat64(c.app.metrics.Requests.WithLabelValues("acme", "", "invalid_request")); lines != 1 || n != 1 {
		t.Errorf("an Infobip-compatible request refused whole: %d lines, counted %v times, want 1 and 1", lines, n)
	}
	if l := c.logs.String(); strings.Contains(l, "834712") || strings.Contains(l, "4155550104") || strings.Contains(l, "xxxxxxxx") {
		t.Errorf("a code, a number or a field's value reached the log:\n%s", l)
	}
}
