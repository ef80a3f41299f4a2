package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"gopkg.in/yaml.v3"

	"github.com/smsgate/smsgate/gateway/policy/redistest"
	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
)

var metricName = regexp.MustCompile(`\bsmsgate_[a-z_]+`)

// exposedFamilies drives a gateway through a send, a failover, a policy refusal, delivery reports
// and a demotion (and others through pumping, spend, pacing, Redis and a report push), and returns the metric families its /metrics shows.
func exposedFamilies(t *testing.T) map[string]bool {
	t.Helper()
	h, ib, _ := startOnFakesWith(t, healthConfig, Options{})
	for i := range 10 {
		r := h.send("acme-key", fmt.Sprintf(`{"message_options":{"recipient":"+4474001%05d","text":"Your code is 1234%02d","message_type":"sms"}}`, i, i))
		if r.Status != 200 {
			t.Fatalf("send: %s", r.Raw)
		}
		h.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", reportBody(r.Body["id"].(string), "UNDELIVERABLE", `{"pricePerMessage":0.01,"currency":"EUR"}`))
	}
	if err := h.app.refreshHealth(context.Background()); err != nil {
		t.Fatal(err)
	}
	ib.SetMode(infobiptest.Unavailable)
	if r := h.send("acme-key", `{"message_options":{"recipient":"+14155550100","text":"Your code is 555111","message_type":"sms"}}`); r.Status != 200 {
		t.Fatalf("failover send: %s", r.Raw)
	}
	if r := h.send("acme-key", `{"message_options":{"recipient":"+979123456789","text":"Your code is 555112","message_type":"sms"}}`); r.Status != 403 {
		t.Fatalf("a 001 number was not refused: %s", r.Raw)
	}
	// A second gateway sees a code used and a pumping quarantine.
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	p := start(t, strings.Replace(pumpingConfig, "$STATE", "state: {driver: memory}", 1), Options{Now: clk.Now})
	used := p.send("acme-key", `{"recipient":"+14155550104","text":"Your code is 100000","context":{}}`)
	if r := p.do("POST", "/v1/messages/"+used.Body["id"].(string)+"/verified", "acme-key", ""); r.Status != 200 {
		t.Fatalf("a code used: %s", r.Raw)
	}
	clk.Add(2 * time.Hour)
	for i := range 5 {
		p.send("acme-key", fmt.Sprintf(`{"recipient":"+232760000%02d","text":"Your code is 10000%d","context":{}}`, i, i))
	}
	// A third has a tenant under a spend limit, on a provider paced to one send an hour, with a key
	// being rotated out.
	sp := start(t, `
storage: {driver: memory}
tenants: [{name: acme, api_key: acme-key, previous_api_keys: [acme-old-key], rate_limits: {spend: 1/24h}}]
providers: [{name: m, type: mock, prices: {default: 0.04}, throughput: 1/1h}]
routes: [{name: d, providers: [m]}]
`, Options{})
	if r := sp.send("acme-key", `{"recipient":"+14155550104","text":"Your code is 100000","context":{}}`); r.Status != 200 {
		t.Fatalf("spend-limited send: %s", r.Raw)
	}
	if r := sp.send("acme-key", `{"recipient":"+14155550105","text":"Your code is 100001","context":{}}`); r.Status != 429 {
		t.Fatalf("a send past the provider's throughput: %s", r.Raw)
	}
	if r := sp.do("GET", "/v1/messages?limit=1", "acme-old-key", ""); r.Status != 200 { // a key being rotated out
		t.Fatalf("a listing with a previous key: %s", r.Raw)
	}
	// A fourth keeps its state in Redis.
	addr, _ := redistest.Server(t)
	rd := start(t, strings.NewReplacer("$REDIS", addr, "$ONERROR", "open").Replace(replicaConfig), Options{})
	// A fifth pushes a delivery report to a tenant's notify URL.
	c := startCompat(t)
	r := c.call("POST", "/sms/3/messages", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550190"}],"content":{"text":"Code 4411"},"webhooks":{"delivery":{"url":"http://`+hostOfHook(c)+`/r"}}}]}`)
	if r.Status != 200 {
		t.Fatalf("compat send: %s", r.Raw)
	}
	c.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", report(messagesOf(r)[0]["messageId"].(string), "DELIVERED"))
	waitUntil(t, "the report was pushed", func() bool { return testutil.ToFloat64(c.app.metrics.Notify.WithLabelValues("acme", "ok")) == 1 })
	// A sixth has a tenant whose sends alone fail on a provider another tenant shares: its own
	// breaker opens (that series appears only then).
	ob := start(t, `
storage: {driver: memory}
tenants: [{name: acme, api_key: acme-key}, {name: other, api_key: other-key}]
providers: [{name: flaky, type: mock, failure_rate: 1, breaker: {consecutive_failures: 1}}, {name: m, type: mock}]
routes: [{name: d, providers: [flaky, m]}]
`, Options{})
	if r := ob.send("acme-key", `{"recipient":"+14155550104","text":"Your code is 100000","context":{}}`); r.Status != 200 {
		t.Fatalf("a send failing over from its own breaker's provider: %s", r.Raw)
	}
	// A seventh evicts a tenant's idempotency record (its own series appears only then).
	ev := start(t, `
storage: {driver: memory}
state: {max_idempotency_records: 1}
tenants: [{name: acme, api_key: acme-key}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, Options{})
	for i := range 2 {
		if r := ev.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555010%d","text":"Your code is 10000%d","context":{}}`, i, i), "Idempotency-Key", fmt.Sprint("k-", i)); r.Status != 200 {
			t.Fatalf("a send with an idempotency key: %s", r.Raw)
		}
	}
	// An eighth trims a tenant past storage.max_records_per_tenant (its series appears only then).
	tr := start(t, `
storage: {driver: memory, max_records_per_tenant: 1}
tenants: [{name: acme, api_key: acme-key}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, Options{choresEvery: 10 * time.Millisecond})
	for i := range 2 {
		if r := tr.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555010%d","text":"Your code is 10000%d","context":{}}`, i, i)); r.Status != 200 {
			t.Fatalf("a send: %s", r.Raw)
		}
	}
	waitUntil(t, "a record was trimmed", func() bool { return testutil.ToFloat64(tr.app.metrics.LogTrimmed.WithLabelValues("acme")) == 1 })
	fams := map[string]bool{}
	for _, g := range []*harness{h, p, sp, rd, c.harness, ob, ev, tr} {
		res := g.do("GET", "/metrics", "", "")
		sc := bufio.NewScanner(strings.NewReader(res.Raw))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
				fams[f[2]] = true
			}
		}
	}
	for _, want := range []string{"smsgate_spend_total", "smsgate_pumping_quarantines_total", "smsgate_tenant_spend_estimated_total", "smsgate_state_memory_max_bytes", "smsgate_paced_total", "smsgate_infobip_notify_total", "smsgate_previous_api_key_calls_total", "smsgate_tenant_breaker_opens_total", "smsgate_idempotency_records_evicted_total", "smsgate_message_log_trimmed_total"} {
		if !fams[want] {
			t.Fatalf("%s not exposed", want)
		}
	}
	return fams
}

// TestDashboardAndAlertsNameRealMetrics: every metric the Grafana dashboard and the Prometheus
// alert rules under docs/deploy name is one a running gateway exposes (histogram series by their
// family), so neither can silently drift from the code.
func TestDashboardAndAlertsNameRealMetrics(t *testing.T) {
	t.Parallel()
	fams := exposedFamilies(t)
	dash, err := os.ReadFile("../../docs/deploy/grafana/smsgate.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../docs/deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	sources := map[string]string{"grafana/smsgate.json": string(dash), "prometheus/alerts.yml": strings.Join(exprs, "\n")}
	for file, text := range sources {
		names := metricName.FindAllString(text, -1)
		if len(names) < 8 {
			t.Errorf("%s names only %d metrics", file, len(names))
		}
		for _, n := range names {
			family := n
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(n, suf); ok && fams[base] {
					family = base
				}
			}
			if !fams[family] {
				t.Errorf("%s names %s, which a running gateway does not expose", file, n)
			}
		}
	}
	// The operations guide's metric table and the dashboard cover the same set.
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for f := range fams {
		if strings.HasPrefix(f, "smsgate_") && !strings.Contains(string(doc), "`"+f+"`") {
			t.Errorf("docs/operations.md does not describe %s", f)
		}
	}
	var onDash []string
	for _, n := range metricName.FindAllString(string(dash), -1) {
		onDash = append(onDash, strings.TrimSuffix(n, "_bucket"))
	}
	for _, must := range []string{"smsgate_requests_total", "smsgate_request_duration_seconds", "smsgate_provider_attempts_total",
		"smsgate_breaker_state", "smsgate_failovers_total", "smsgate_delivery_rate", "smsgate_message_log_backlog"} {
		if !slices.Contains(onDash, must) {
			t.Errorf("the dashboard does not show %s", must)
		}
	}
}

// TestEveryRejectionReasonIsDocumented: each reason smsgate_policy_rejections_total is given in
// the code (a Rejection's Reason, a label given directly, a rate limit's name) is in the
// operations guide's row of that metric, where alerts and dashboards are written from.
func TestEveryRejectionReasonIsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "| `smsgate_policy_rejections_total` |") {
			row = l
		}
	}
	if row == "" {
		t.Fatal("docs/operations.md has no row for smsgate_policy_rejections_total")
	}
	files, _ := filepath.Glob("*.go")
	more, _ := filepath.Glob("../policy/*.go")
	reason := regexp.MustCompile(`Reason: +"([a-z_]+)"|PolicyRejections\.WithLabelValues\([^,]+, "([a-z_]+)"\)|"(per_[a-z]+)"`)
	seen := map[string]bool{}
	for _, f := range append(files, more...) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range reason.FindAllStringSubmatch(string(src), -1) {
			seen[m[1]+m[2]+m[3]] = true
		}
	}
	for _, must := range []string{"spend", "per_recipient", "number_type", "suspected_pumping", "reads_in_flight"} {
		if !seen[must] {
			t.Errorf("the code scan missed %s: the pattern is out of date", must)
		}
	}
	for r := range seen {
		if !strings.Contains(row, "`"+r+"`") {
			t.Errorf("docs/operations.md does not name the reason %s of smsgate_policy_rejections_total", r)
		}
	}
}

// TestBatchHistogramCountsEveryWrite: smsgate_message_log_batch_records observes each
// transaction the writer tries, so its sum is the records written and its count the commits.
func TestBatchHistogramCountsEveryWrite(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	const sends = 12
	done := make(chan response, sends)
	for i := range sends {
		go func() {
			done <- h.send("acme-key", fmt.Sprintf(`{"recipient":"+4474001%05d","text":"Your code is 2000%02d","context":{}}`, i, i))
		}()
	}
	for range sends {
		if r := <-done; r.Status != 200 {
			t.Fatalf("send: %s", r.Raw)
		}
	}
	values := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(h.do("GET", "/metrics", "", "").Raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				values[f[0]] = v
			}
		}
	}
	sum, count := values["smsgate_message_log_batch_records_sum"], values["smsgate_message_log_batch_records_count"]
	if sum != sends || sum != values[`smsgate_message_log_writes_total{result="ok"}`] {
		t.Fatalf("batch records sum %v, writes %v, want %d of each", sum, values[`smsgate_message_log_writes_total{result="ok"}`], sends)
	}
	if count < 1 || count > sum {
		t.Fatalf("%v batches for %v records", count, sum)
	}
}

// TestMetricsCanLeaveTheTenantsListener: with server.metrics_listen, GET /metrics answers there
// (every tenant's series) and 404 on the listener tenants reach, where it showed one tenant the
// others' volumes, spend and quarantines. The other endpoints stay where they were.
func TestMetricsCanLeaveTheTenantsListener(t *testing.T) {
	t.Parallel()
	h := start(t, strings.Replace(baseConfig, "  admin_token: admin-t0ken\n", "  admin_token: admin-t0ken\n  metrics_listen: 127.0.0.1:0\n", 1), Options{})
	if r := h.send("acme-key", `{"message_options":{"recipient":"+14155550104","text":"Your code is 123456","message_type":"sms"}}`); r.Status != 200 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	if r := h.do("GET", "/metrics", "", ""); r.Status != 404 || !strings.Contains(r.Raw, `"not_found"`) || strings.Contains(r.Raw, "acme") {
		t.Errorf("/metrics on the tenants' listener: %d %s", r.Status, r.Raw)
	}
	if r := h.do("GET", "/healthz", "", ""); r.Status != 200 {
		t.Errorf("/healthz on the tenants' listener: %d", r.Status)
	}
	addr := h.app.MetricsAddr()
	if addr == "" || addr == h.app.Addr() {
		t.Fatalf("metrics address %q, API address %q", addr, h.app.Addr())
	}
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(raw), `smsgate_requests_total{outcome="sent",route="default",tenant="acme"} 1`) {
		t.Errorf("/metrics on server.metrics_listen: %d\n%.600s", res.StatusCode, raw)
	}
	if res, err := http.Get("http://" + addr + "/v1/messages"); err != nil || res.StatusCode != 404 {
		t.Errorf("the metrics listener serves more than /metrics: %v %v", res.StatusCode, err)
	}
}

// smsgate_build_info names the replica's build, so that a rollout shows which replicas run which.
func TestBuildInfoNamesTheBuild(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ version, want string }{{"1.4.2", "1.4.2"}, {"", "dev"}} {
		h := start(t, baseConfig, Options{Version: tc.version})
		r := h.do("GET", "/metrics", "", "")
		if line := `smsgate_build_info{go_version="` + goruntime.Version() + `",version="` + tc.want + `"} 1`; !strings.Contains(r.Raw, line) {
			t.Errorf("version %q: /metrics lacks %s", tc.version, line)
		}
		if n := strings.Count(r.Raw, "\nsmsgate_build_info{"); n != 1 {
			t.Errorf("version %q: %d series of smsgate_build_info, want 1", tc.version, n)
		}
	}
}
