package app

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/policy"
	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/gateway/syncbuf"
	"github.com/smsgate/smsgate/providers/providertest"
)

// TestMain runs at least four of the package's parallel tests at a time (go test's default is
// one a core) unless -parallel says otherwise: they mostly wait, on clocks, failovers and
// providers that hang, so on this project's 2-core machines four at a time keep the cores busy
// (the package's race run 118 s at two, 82 s at four).
func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		if err := flag.Set("test.parallel", strconv.Itoa(max(4, goruntime.GOMAXPROCS(0)))); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

type harness struct {
	t    testing.TB
	app  *App
	url  string
	logs *syncbuf.Buffer
	path string
	// client makes do's requests; nil: http.DefaultClient.
	client *http.Client
}

// start writes cfg to a temp file and runs the real server on port 0.
//
// Every test of the package calls t.Parallel, as each gateway has its own port, files, schema,
// Redis and metrics (and a test's own clocks and key secret come in Options), except a test that
// changes what the whole process shares (the environment with t.Setenv, the driver registry) or
// counts what the process holds (goroutines, mappings). Those say why at their top and run
// first, one at a time; the parallel tests run after them, beside each other.
func start(t testing.TB, cfg string, o Options) *harness {
	t.Helper()
	return startAt(t, writeConfig(t, cfg), o)
}

// startAt runs the real server on port 0 with the config file at path.
func startAt(t testing.TB, path string, o Options) *harness {
	t.Helper()
	// The harness checks answers against docs/openapi.yaml; its validator is built once, here
	// rather than inside whatever the first test times (about 300 ms under -race).
	if _, err := apiDoc(); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	logs := &syncbuf.Buffer{}
	o.ConfigPath, o.Listen, o.LogOutput = path, "127.0.0.1:0", logs
	a, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(context.Background()) })
	return &harness{t: t, app: a, url: a.URL(), logs: logs, path: path}
}

// rewrite writes cfg ($DIR replaced by the directory of h's config) over h's config file, for a
// reload to read.
func (h *harness) rewrite(cfg string) {
	h.t.Helper()
	if err := os.WriteFile(h.path, []byte(strings.ReplaceAll(cfg, "$DIR", filepath.Dir(h.path))), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// writeConfig writes cfg ($DIR replaced by a temp dir) to a file and returns its path.
func writeConfig(t testing.TB, cfg string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "smsgate.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(cfg, "$DIR", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (h *harness) do(method, path, key, body string, hdr ...string) response {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := h.client
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if !strings.HasPrefix(path, "/metrics") {
		checkAPI(h.t, method, h.url+path, req.Header, []byte(body), res, raw)
	}
	r := response{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
	if err := json.Unmarshal(raw, &r.Body); err != nil && !strings.HasPrefix(path, "/metrics") {
		h.t.Errorf("%s %s: body is not JSON: %q", method, path, raw)
	}
	return r
}

func (h *harness) send(key, body string, hdr ...string) response {
	return h.do("POST", "/v1/send-phone-message", key, body, hdr...)
}

func errCode(r response) string {
	e, _ := r.Body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func attempts(r response) []string {
	var out []string
	as, _ := r.Body["attempts"].([]any)
	for _, a := range as {
		m := a.(map[string]any)
		out = append(out, fmt.Sprintf("%v:%v", m["provider"], m["outcome"]))
	}
	return out
}

// sentAttempts sends test code i as key's tenant, to a recipient of its own; it must be answered
// 200, and it returns the send's attempts.
func sentAttempts(t *testing.T, h *harness, key string, i int) []string {
	t.Helper()
	r := h.send(key, fmt.Sprintf(`{"recipient":"+1415555%04d","text":"code %04d","context":{}}`, i, i))
	if r.Status != 200 {
		t.Fatalf("send %d: %d %s", i, r.Status, r.Raw)
	}
	return attempts(r)
}

const baseConfig = `
server:
  request_timeout: 2s
  admin_token: admin-t0ken
  max_body_bytes: 2048
log: {format: json, level: debug}
storage: {driver: sqlite, path: $DIR/log.db}
policy:
  denied_countries: [KP]
  rate_limits: {per_recipient: 0}
tenants:
  - name: acme
    api_key: acme-key
  - name: strict
    api_key: strict-key
    client_ids: [abc123]
    allowed_countries: [US]
    rate_limits: {per_recipient: 2/1h}
  - name: recip
    api_key: recip-key
  - name: broken
    api_key: broken-key
  - name: slow
    api_key: slow-key
  - name: lenient
    api_key: lenient-key
    accept_unrecognized_numbers: true
providers:
  - name: primary
    type: mock
  - name: backup
    type: mock
  - name: refuses
    type: mock
    failure_rate: 1
    fail_with: recipient
  - name: down
    type: mock
    failure_rate: 1
    breaker: {consecutive_failures: 1000}
  - name: down2
    type: mock
    failure_rate: 1
    breaker: {consecutive_failures: 1000}
  - name: hangs
    type: mock
    timeout: 10s
    failure_rate: 1
    fail_with: timeout
routes:
  - name: recip
    match: {tenants: [recip]}
    providers: [refuses, backup]
  - name: broken
    match: {tenants: [broken]}
    providers: [down, down2]
  - name: slow
    match: {tenants: [slow]}
    providers: [hangs]
  - name: voice
    match: {message_types: [voice]}
    providers: [backup]
  - name: default
    providers: [primary, backup]
`

const actionBody = `{"message_options":{"recipient":"+1 (415) 555-0104","text":"Your code is 834712","action":"enrollment","code":"834712","message_type":"sms"},"client":{"client_id":"abc123","name":"App"},"request":{"ip":"203.0.113.9","language":"en"}}`

func TestSendShapesEndToEnd(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	tests := []struct {
		name, body, route, provider string
	}{
		{"actions event", actionBody, "default", "primary"},
		{"custom phone provider voice", `{"notification":{"recipient":"+447911123456","as_text":"t","as_voice":"Your code is 1. 2. 3. 4","code":"1234","delivery_method":"voice","locale":"en_GB","message_type":"otp_verify"},"client":{"client_id":"c"},"request":{"ip":"198.51.100.1"}}`, "voice", "backup"},
		{"hook nested client, odd number format", `{"recipient":"1-808-555-5555","text":"Here is your one time password: 999111","context":{"message_type":"sms","action":"enrollment","language":"en","code":"999111","ip":"127.0.0.1","client":{"client_id":"1235","name":"Test Application"}}}`, "default", "primary"},
		{"hook flat client", `{"recipient":"+1 876 555 1234","text":"code 4321","context":{"message_type":"sms","client_id":"flat1","name":"Flat"}}`, "default", "primary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.send("acme-key", tc.body)
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Raw)
			}
			id, _ := r.Body["id"].(string)
			got := map[string]any{"status": r.Body["status"], "route": r.Body["route"], "provider": r.Body["provider"], "pmid": r.Body["provider_message_id"]}
			want := map[string]any{"status": "sent", "route": tc.route, "provider": tc.provider, "pmid": "mock-" + strings.TrimPrefix(id, "msg_")}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			rec := h.do("GET", "/v1/messages/"+id, "acme-key", "")
			if rec.Status != 200 || rec.Body["status"] != "sent" || rec.Body["provider"] != tc.provider {
				t.Errorf("GET message: %d %s", rec.Status, rec.Raw)
			}
		})
	}
}

func TestErrorStatuses(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	tests := []struct {
		name, key, body string
		status          int
		code            string
	}{
		{"bad json", "acme-key", `{"recipient":`, 400, "invalid_json"},
		{"unknown shape", "acme-key", `{"to":"+14155550104"}`, 400, "unknown_shape"},
		{"invalid number", "acme-key", `{"recipient":"+44 7700 900123","text":"c 1234","context":{}}`, 400, "invalid_number"},
		{"unrecognized number accepted on opt-in", "lenient-key", `{"recipient":"+44 7700 900123","text":"c 1234","context":{}}`, 200, ""},
		{"not a number", "acme-key", `{"recipient":"call me","text":"c 1234","context":{}}`, 400, "invalid_number"},
		{"missing key", "", actionBody, 401, "unauthorized"},
		{"unknown key", "nope", actionBody, 401, "unauthorized"},
		{"client id not allowed", "strict-key", strings.Replace(actionBody, "abc123", "zzz", 1), 403, "client_not_allowed"},
		{"client id allowed", "strict-key", actionBody, 200, ""},
		{"country not allowed for tenant", "strict-key", `{"recipient":"+447911123456","text":"c 1234","context":{"client_id":"abc123"}}`, 403, "country_not_allowed"},
		{"globally denied country", "acme-key", `{"recipient":"+850 2 381 2321","text":"c 1234","context":{}}`, 403, "country_not_allowed"},
		{"body too large", "acme-key", `{"recipient":"+14155550104","text":"` + strings.Repeat("x", 3000) + `","context":{}}`, 413, "body_too_large"},
		{"recipient rejected", "recip-key", actionBody, 422, "recipient_rejected"},
		{"every provider failed", "broken-key", actionBody, 502, "all_providers_failed"},
		{"request budget spent", "slow-key", actionBody, 504, "deadline_exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.send(tc.key, tc.body)
			if r.Status != tc.status || errCode(r) != tc.code {
				t.Errorf("got %d %q, want %d %q: %s", r.Status, errCode(r), tc.status, tc.code, r.Raw)
			}
		})
	}
	t.Run("422 and 502 list every attempt", func(t *testing.T) {
		if diff := cmp.Diff([]string{"refuses:recipient_error"}, attempts(h.send("recip-key", actionBody))); diff != "" {
			t.Errorf("recipient error must stop the chain (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"down:provider_error", "down2:provider_error"}, attempts(h.send("broken-key", actionBody))); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("404 and 405 are JSON", func(t *testing.T) {
		if r := h.do("GET", "/nope", "", ""); r.Status != 404 || errCode(r) != "not_found" {
			t.Errorf("%d %s", r.Status, r.Raw)
		}
		if r := h.do("GET", "/v1/send-phone-message", "acme-key", ""); r.Status != 405 || errCode(r) != "method_not_allowed" {
			t.Errorf("%d %s", r.Status, r.Raw)
		}
	})
	t.Run("rate limited with Retry-After", func(t *testing.T) {
		body := `{"recipient":"+14155550111","text":"c 1234","context":{"client_id":"abc123"}}`
		for i := 0; i < 2; i++ {
			if r := h.send("strict-key", body); r.Status != 200 {
				t.Fatalf("send %d: %d %s", i, r.Status, r.Raw)
			}
		}
		r := h.send("strict-key", strings.Replace(body, "1234", "9999", 1))
		if r.Status != 429 || errCode(r) != "rate_limited" || r.Header.Get("Retry-After") == "" {
			t.Errorf("got %d %q Retry-After %q", r.Status, errCode(r), r.Header.Get("Retry-After"))
		}
		if !strings.Contains(r.Raw, "per_recipient") {
			t.Errorf("the error does not name the limit: %s", r.Raw)
		}
	})
}

// TestATimeoutOnARouteThatDoesNotFailOver: a provider that times out, well within the request's
// budget, on a route with failover_on_timeout: false is answered 504 deadline_exceeded (it may
// have sent), and the next provider is not tried; on a route that fails over, the next sends.
func TestATimeoutOnARouteThatDoesNotFailOver(t *testing.T) {
	t.Parallel()
	h := start(t, `
server: {request_timeout: 5s}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key}, {name: bold, api_key: bold-key}]
providers:
  - {name: stalls, type: mock, timeout: 100ms, latency: 2s}
  - {name: backup, type: mock}
routes:
  - {name: bold, match: {tenants: [bold]}, providers: [stalls, backup]}
  - {name: timid, providers: [stalls, backup], failover_on_timeout: false}
`, Options{})
	r := h.send("acme-key", actionBody)
	if r.Status != 504 || errCode(r) != "deadline_exceeded" {
		t.Errorf("timid: %d %s", r.Status, r.Raw)
	}
	if diff := cmp.Diff([]string{"stalls:timeout"}, attempts(r)); diff != "" {
		t.Errorf("timid's attempts (-want +got):\n%s", diff)
	}
	if r := h.send("bold-key", actionBody); r.Status != 200 || r.Body["provider"] != "backup" {
		t.Errorf("bold: %d %s", r.Status, r.Raw)
	}
}

func TestNoProviderAvailable503(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	for _, p := range []string{"primary", "backup"} {
		if r := h.do("POST", "/v1/providers/"+p+"/disable", "admin-t0ken", ""); r.Status != 200 || r.Body["disabled"] != true {
			t.Fatalf("disable %s: %d %s", p, r.Status, r.Raw)
		}
	}
	r := h.send("acme-key", actionBody)
	if r.Status != 503 || errCode(r) != "no_provider_available" {
		t.Fatalf("got %d %s", r.Status, r.Raw)
	}
	h.do("POST", "/v1/providers/backup/enable", "admin-t0ken", "")
	if r := h.send("acme-key", actionBody); r.Status != 200 || r.Body["provider"] != "backup" {
		t.Errorf("after enable: %d %s", r.Status, r.Raw)
	}
	if r := h.do("GET", "/v1/providers", "wrong", ""); r.Status != 401 {
		t.Errorf("admin with a wrong token: %d", r.Status)
	}
	r = h.do("GET", "/v1/providers", "admin-t0ken", "")
	ps, _ := r.Body["providers"].([]any)
	if len(ps) != 6 || ps[0].(map[string]any)["disabled"] != true || ps[0].(map[string]any)["state"] != "closed" {
		t.Errorf("providers: %s", r.Raw)
	}
}

const failoverConfig = `
server: {request_timeout: 3s}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key}]
providers:
  - name: first
    type: mock
    failure_rate: 1
    breaker: {consecutive_failures: 3, open_timeout: 1h}
  - name: second
    type: mock
routes:
  - name: default
    providers: [first, second]
`

func TestFailoverAndMetrics(t *testing.T) {
	t.Parallel()
	h := start(t, failoverConfig, Options{})
	for i := 0; i < 5; i++ {
		r := h.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555010%d","text":"code %d123","context":{}}`, i, i))
		if r.Status != 200 || r.Body["provider"] != "second" {
			t.Fatalf("send %d: %d %s", i, r.Status, r.Raw)
		}
		want := []string{"first:provider_error", "second:sent"}
		if i >= 3 {
			want = []string{"first:unavailable", "second:sent"} // breaker open after 3 failures
		}
		if diff := cmp.Diff(want, attempts(r)); diff != "" {
			t.Errorf("send %d (-want +got):\n%s", i, diff)
		}
	}
	m := h.app.MetricSet()
	checks := map[string]float64{
		"attempts first provider_error": testutil.ToFloat64(m.Attempts.WithLabelValues("first", "provider_error")),
		"attempts first unavailable":    testutil.ToFloat64(m.Attempts.WithLabelValues("first", "unavailable")),
		"attempts second sent":          testutil.ToFloat64(m.Attempts.WithLabelValues("second", "sent")),
		"failovers first>second":        testutil.ToFloat64(m.Failovers.WithLabelValues("first", "second")),
		"breaker state first":           testutil.ToFloat64(m.BreakerState.WithLabelValues("first", "sms")),
		"transitions first":             testutil.ToFloat64(m.BreakerTransitions.WithLabelValues("first", "sms", "closed", "open")),
		"requests sent":                 testutil.ToFloat64(m.Requests.WithLabelValues("acme", "default", "sent")),
	}
	want := map[string]float64{"attempts first provider_error": 3, "attempts first unavailable": 2, "attempts second sent": 5,
		"failovers first>second": 5, "breaker state first": 2, "transitions first": 1, "requests sent": 5}
	if diff := cmp.Diff(want, checks); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	r := h.do("GET", "/metrics", "", "")
	for _, fam := range []string{"smsgate_requests_total", "smsgate_provider_attempts_total", "smsgate_provider_latency_seconds",
		"smsgate_breaker_state", "smsgate_breaker_transitions_total", "smsgate_failovers_total", "smsgate_request_duration_seconds"} {
		if !strings.Contains(r.Raw, fam) {
			t.Errorf("/metrics lacks %s", fam)
		}
	}
	if rd := h.do("GET", "/readyz", "", ""); rd.Status != 200 {
		t.Errorf("readyz %d: second is still available", rd.Status)
	}
}

func TestIdempotencyAndCoalescing(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(failoverConfig, "    failure_rate: 1\n", "    latency: 150ms\n", 1)
	h := start(t, cfg, Options{})
	sent := func() float64 { return testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("first", "sent")) }

	r1 := h.send("acme-key", actionBody, "Idempotency-Key", "notif-1")
	r2 := h.send("acme-key", actionBody, "Idempotency-Key", "notif-1")
	if r1.Status != 200 || r2.Status != 200 || r1.Body["id"] != r2.Body["id"] {
		t.Fatalf("replay: %d %v / %d %v", r1.Status, r1.Body["id"], r2.Status, r2.Body["id"])
	}
	if sent() != 1 {
		t.Errorf("provider called %v times for one key, want 1", sent())
	}
	r3 := h.send("acme-key", strings.Replace(actionBody, "834712", "111111", 2), "Idempotency-Key", "notif-1")
	if r3.Status != 409 || errCode(r3) != "idempotency_conflict" {
		t.Errorf("key reuse with another body: %d %s", r3.Status, r3.Raw)
	}
	// A key of 255 characters is taken; one of 256 is refused before anything is sent.
	if r := h.send("acme-key", strings.Replace(actionBody, "834712", "222222", 2), "Idempotency-Key", strings.Repeat("k", 255)); r.Status != 200 {
		t.Errorf("a key of 255 characters: %d %s", r.Status, r.Raw)
	}
	if r := h.send("acme-key", strings.Replace(actionBody, "834712", "333333", 2), "Idempotency-Key", strings.Repeat("k", 256)); r.Status != 400 || errCode(r) != "invalid_request" {
		t.Errorf("a key of 256 characters: %d %s", r.Status, r.Raw)
	}
	if sent() != 2 {
		t.Fatalf("provider called %v times, want 2", sent())
	}
	// 10 identical requests at once, no key: one send, one id.
	var wg sync.WaitGroup
	ids := make([]any, 10)
	body := strings.Replace(actionBody, "834712", "555555", 2)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.send("acme-key", body)
			if r.Status != 200 {
				t.Errorf("coalesced %d: %d %s", i, r.Status, r.Raw)
			}
			ids[i] = r.Body["id"]
		}()
	}
	wg.Wait()
	if sent() != 3 {
		t.Errorf("provider calls = %v after 10 concurrent identical requests, want 3 in all", sent())
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Errorf("coalesced requests got different ids: %v", ids)
			break
		}
	}
	// The nine that waited for the one send say so in their log lines.
	coalesced := 0
	for _, l := range logLines(t, h, "send") {
		if l["coalesced"] == true {
			coalesced++
		}
	}
	if coalesced != 9 {
		t.Errorf("%d send lines say coalesced, want the 9 requests that shared the send", coalesced)
	}
	// Without an Idempotency-Key, the same message in two bodies (here from two IP addresses) at
	// once is one send, answered to both: a body that differs is no conflict.
	var first, other response
	wg.Add(2)
	go func() {
		defer wg.Done()
		first = h.send("acme-key", strings.Replace(strings.Replace(actionBody, "834712", "666666", 2), "203.0.113.9", "203.0.113.10", 1))
	}()
	go func() {
		defer wg.Done()
		other = h.send("acme-key", strings.Replace(actionBody, "834712", "666666", 2))
	}()
	wg.Wait()
	if first.Status != 200 || other.Status != 200 || first.Body["id"] != other.Body["id"] || sent() != 4 {
		t.Errorf("one message in two bodies at once: %s / %s, %v sends in all (want 4)", first.Raw, other.Raw, sent())
	}
	// One Idempotency-Key with two bodies at the same moment: one is sent, the other is a
	// conflict, not the first's answer.
	var k1, k2 response
	wg.Add(2)
	go func() {
		defer wg.Done()
		k1 = h.send("acme-key", strings.Replace(actionBody, "834712", "888881", 2), "Idempotency-Key", "notif-2")
	}()
	go func() {
		defer wg.Done()
		k2 = h.send("acme-key", strings.Replace(actionBody, "834712", "888882", 2), "Idempotency-Key", "notif-2")
	}()
	wg.Wait()
	if got := []int{min(k1.Status, k2.Status), max(k1.Status, k2.Status)}; got[0] != 200 || got[1] != 409 || sent() != 5 {
		t.Errorf("one key, two bodies at once: %s / %s, %v sends in all (want 200 and 409, 5 sends)", k1.Raw, k2.Raw, sent())
	}
	// The same code by SMS and by a call at the same moment are two messages, not one.
	var sms, call response
	wg.Add(2)
	go func() { defer wg.Done(); sms = h.send("acme-key", strings.Replace(actionBody, "834712", "777777", 2)) }()
	go func() {
		defer wg.Done()
		call = h.send("acme-key", strings.Replace(strings.Replace(actionBody, "834712", "777777", 2), `"message_type":"sms"`, `"message_type":"voice"`, 1))
	}()
	wg.Wait()
	if sms.Status != 200 || call.Status != 200 || sms.Body["id"] == call.Body["id"] || sent() != 7 {
		t.Errorf("an SMS and a call of one code at once: %s / %s, %v sends in all (want 7)", sms.Raw, call.Raw, sent())
	}
}

// flakyFlights is a shared flight store whose first look for an answer fails, and which lets a
// second claim win (only a replica that gave up waiting would claim again).
type flakyFlights struct{ claims, answers int }

func (f *flakyFlights) Claim(context.Context, string, time.Duration) (string, bool, error) {
	f.claims++
	return "token", f.claims > 1, nil
}

func (f *flakyFlights) Finish(context.Context, string, string, *policy.Replay, time.Duration) error {
	return nil
}

func (f *flakyFlights) Answer(context.Context, string) (*policy.Replay, bool, bool, error) {
	if f.answers++; f.answers == 1 {
		return nil, false, false, errors.New("i/o timeout")
	}
	return &policy.Replay{Status: 200, Body: []byte(`{"id":"msg_there"}`)}, true, false, nil
}

// TestAWaiterKeepsWaitingThroughAFailedLook: a replica waiting on another's run of the same
// request, whose look for the answer fails once, looks again; it does not take the failure for
// a claimant gone and send the request itself (a second send of the same code).
func TestAWaiterKeepsWaitingThroughAFailedLook(t *testing.T) {
	t.Parallel()
	h := start(t, failoverConfig, Options{})
	f := &flakyFlights{}
	h.app.flights = f
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ran := false
	res := h.app.sharedRun(ctx, "c|acme|x", [32]byte{}, func() flightResult { ran = true; return flightResult{} })
	if ran || !res.remote || res.reply.Status != 200 || string(res.reply.Body) != `{"id":"msg_there"}` || f.claims != 1 {
		t.Errorf("ran here %v, %+v, %d claims", ran, res, f.claims)
	}
	if n := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("flight_answer")); n != 1 {
		t.Errorf("the failed look counted %v times, want 1", n)
	}
}

// unstoredFlights wins every claim and cannot store the answer.
type unstoredFlights struct{ flakyFlights }

func (*unstoredFlights) Claim(context.Context, string, time.Duration) (string, bool, error) {
	return "token", true, nil
}

func (*unstoredFlights) Finish(context.Context, string, string, *policy.Replay, time.Duration) error {
	return errors.New("connection reset by peer")
}

// TestARunWhoseAnswerCannotBeSharedStillAnswersHere: the replica that claimed a request and ran
// it answers its own caller when Redis does not take the answer for the replicas waiting on it
// (they claim the request once the claim expires), and the failure is counted.
func TestARunWhoseAnswerCannotBeSharedStillAnswersHere(t *testing.T) {
	t.Parallel()
	h := start(t, failoverConfig, Options{})
	h.app.flights = &unstoredFlights{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	runs := 0
	res := h.app.sharedRun(ctx, "c|acme|x", [32]byte{}, func() flightResult {
		runs++
		return flightResult{reply: httpapi.Reply{Status: 200, Body: []byte(`{"id":"msg_here"}`)}}
	})
	if runs != 1 || res.remote || res.reply.Status != 200 || string(res.reply.Body) != `{"id":"msg_here"}` {
		t.Errorf("%d runs, %+v; want one run here and its answer", runs, res)
	}
	if n := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("flight_finish")); n != 1 {
		t.Errorf("the answer not stored counted %v times, want 1", n)
	}
}

// TestAFailedSendIsNotReplayed: the answer to a send every provider failed (502) or throttled
// (429) is not kept under its Idempotency-Key: the caller's retry with the same key tries the
// providers again (a message of its own id) instead of getting the failure back for the key's
// whole lifetime.
func TestAFailedSendIsNotReplayed(t *testing.T) {
	t.Parallel()
	throttled := `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants:
  - {name: acme, api_key: acme-key}
providers:
  - {name: busy, type: mock, failure_rate: 1, fail_with: throttled}
routes:
  - {name: default, providers: [busy]}
`
	for _, tc := range []struct {
		name, cfg, key string
		status         int
	}{
		{"every provider failed", baseConfig, "broken-key", 502},
		{"every provider throttled", throttled, "acme-key", 429},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, tc.cfg, Options{})
			var ids []any
			for i := range 2 {
				r := h.send(tc.key, actionBody, "Idempotency-Key", "retry-me")
				if r.Status != tc.status {
					t.Fatalf("send %d: %d %s, want %d", i, r.Status, r.Raw, tc.status)
				}
				ids = append(ids, r.Body["id"])
			}
			if ids[0] == nil || ids[0] == ids[1] {
				t.Errorf("the retry's id %v, the first's %v: want a message of its own (not the failure replayed)", ids[1], ids[0])
			}
		})
	}
}

// TestCoalescingKeepsSendersAndTextsApart: identical requests in flight at once share one send,
// but not when they name different senders (a tenant with allowed_senders sending for two brands)
// or carry different texts of one code: each is a message of its own, sent as it was asked.
func TestCoalescingKeepsSendersAndTextsApart(t *testing.T) {
	t.Parallel()
	// body is the i-th request of a case: the same recipient and code, two senders or two texts.
	for _, c := range []struct {
		name string
		body func(i int) string
	}{
		{"senders", func(i int) string {
			return `{"notification":{"recipient":"+14155550104","as_text":"Your code is 834712","code":"834712","from":"` + []string{"ACME", "GLOBEX"}[i%2] + `"}}`
		}},
		// The same code in two languages: two messages, each reader gets its own.
		{"texts", func(i int) string {
			return `{"notification":{"recipient":"+14155550104","as_text":"` + []string{"Your code is 834712", "Votre code est 834712"}[i%2] + `","code":"834712"}}`
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants:
  - {name: brands, api_key: brands-key, allowed_senders: [ACME, GLOBEX]}
providers:
  - {name: slow, type: mock, latency: 400ms}
routes:
  - {name: default, providers: [slow]}
`, Options{})
			var wg sync.WaitGroup
			ids := make([]any, 4)
			for i := range ids {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := h.send("brands-key", c.body(i))
					if r.Status != 200 {
						t.Errorf("request %d: %d %s", i, r.Status, r.Raw)
					}
					ids[i] = r.Body["id"]
				}()
			}
			wg.Wait()
			// Requests of one sender and text share a send when they overlap
			// (TestIdempotencyAndCoalescing); on a loaded machine they may not, so only what must
			// never happen is asserted: a request answered with the other message.
			for _, a := range []int{0, 2} {
				for _, g := range []int{1, 3} {
					if ids[a] == ids[g] {
						t.Errorf("ids %v: request %d got the other message's", ids, a)
					}
				}
			}
			if n := testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("slow", "sent")); n < 2 {
				t.Errorf("provider sends = %v, want one a message at least", n)
			}
		})
	}
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestResendEscalation(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Now()}
	cfg := strings.Replace(failoverConfig, "    failure_rate: 1\n", "", 1)
	cfg = strings.Replace(cfg, "tenants: [{name: acme, api_key: acme-key}]", "tenants: [{name: acme, api_key: acme-key}, {name: globex, api_key: globex-key}]", 1)
	h := start(t, cfg, Options{Now: clk.Now})
	body := `{"recipient":"+14155550104","text":"Your code is 424242","context":{"code":"424242"}}`
	if r := h.send("acme-key", body); r.Body["provider"] != "first" {
		t.Fatalf("first send via %v", r.Body["provider"])
	}
	clk.Add(5 * time.Second) // too soon: a double click, not a lost message
	if r := h.send("acme-key", body); r.Body["provider"] != "first" {
		t.Errorf("resend after 5s via %v, want first", r.Body["provider"])
	}
	clk.Add(10 * time.Minute) // resend_escalation.within since the last: a new attempt, not a resend
	if r := h.send("acme-key", body); r.Body["provider"] != "first" {
		t.Errorf("a send 10m after the last via %v, want first (the window is over)", r.Body["provider"])
	}
	clk.Add(20 * time.Second) // resend_escalation.after since the last: a resend
	r := h.send("acme-key", body)
	if r.Body["provider"] != "second" {
		t.Errorf("resend after 20s via %v, want second (escalated)", r.Body["provider"])
	}
	clk.Add(30 * time.Second)
	if r := h.send("acme-key", body); r.Body["provider"] != "first" {
		t.Errorf("third resend via %v, want first (wraps round the chain)", r.Body["provider"])
	}
	other := `{"recipient":"+14155550104","text":"Your code is 777777","context":{"code":"777777"}}`
	clk.Add(30 * time.Second)
	if r := h.send("acme-key", other); r.Body["provider"] != "first" {
		t.Errorf("a new code via %v, want first", r.Body["provider"])
	}
	// Another tenant's send of the same code to the same number is no resend of acme's: its
	// chain starts where its own history says (here none), not after acme's provider.
	clk.Add(20 * time.Second)
	if r := h.send("globex-key", other); r.Body["provider"] != "first" {
		t.Errorf("another tenant's send of acme's code via %v, want first (acme's resends are acme's)", r.Body["provider"])
	}
}

func TestResendEscalationCanBeSwitchedOff(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Now()}
	cfg := strings.Replace(failoverConfig, "    failure_rate: 1\n", "", 1)
	cfg = strings.Replace(cfg, "policy: {rate_limits: {per_recipient: 0}}", "policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}", 1)
	h := start(t, cfg, Options{Now: clk.Now})
	body := `{"recipient":"+14155550104","text":"Your code is 424242","context":{}}`
	h.send("acme-key", body)
	clk.Add(30 * time.Second)
	if r := h.send("acme-key", body); r.Body["provider"] != "first" {
		t.Errorf("escalated although switched off: %v", r.Body["provider"])
	}
}

func TestLogsHoldNoCodeNumberOrSecret(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	bodies := []string{actionBody,
		`{"recipient":"+14155550104","text":"Your code is 834712","context":{"code":"834712"}}`,
		`{"notification":{"recipient":"+14155550104","as_text":"Your code is 834712","code":"834712"}}`}
	for _, key := range []string{"acme-key", "recip-key", "broken-key", "strict-key", "bogus-key"} {
		for _, b := range bodies {
			h.send(key, b)
		}
	}
	h.do("GET", "/v1/providers", "admin-t0ken", "")
	h.app.Reload(context.Background())
	h.app.Shutdown(context.Background())
	logs := h.logs.String()
	if !strings.Contains(logs, `"msg":"send"`) || !strings.Contains(logs, `+14*****0104`) {
		t.Fatalf("expected request lines with masked numbers, got:\n%s", logs)
	}
	for _, secret := range []string{"834712", "4155550104", "acme-key", "admin-t0ken", "recip-key", "bogus-key"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(filepath.Dir(h.path), "log.db"))
	wal, _ := os.ReadFile(filepath.Join(filepath.Dir(h.path), "log.db-wal"))
	for _, secret := range []string{"834712", "4155550104"} {
		if bytes.Contains(raw, []byte(secret)) || bytes.Contains(wal, []byte(secret)) {
			t.Errorf("message log file contains %q", secret)
		}
	}
}

// TestATenantsRecordsAreBoundedByTheConfig: storage.max_records_per_tenant and a tenant's own
// max_records reach the message log: a tenant past its bound keeps its newest records, the other
// tenant all of its own, and the log says whose were trimmed. The tenant's own bound is the
// smaller, and the smallest there is (1): it is the tenant's, not storage's, down to one record.
func TestATenantsRecordsAreBoundedByTheConfig(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(baseConfig, "storage: {driver: sqlite, path: $DIR/log.db}", "storage: {driver: sqlite, path: $DIR/log.db, max_records_per_tenant: 2}", 1)
	cfg = strings.Replace(cfg, "  - name: acme\n    api_key: acme-key\n", "  - name: acme\n    api_key: acme-key\n    max_records: 1\n", 1)
	h := start(t, cfg, Options{choresEvery: 20 * time.Millisecond})
	var ids []string
	for i := range 4 {
		r := h.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555010%d","text":"c %d000","context":{}}`, i, i))
		if r.Status != 200 {
			t.Fatalf("send %d: %d %s", i, r.Status, r.Raw)
		}
		ids = append(ids, r.Body["id"].(string))
	}
	if r := h.send("strict-key", actionBody); r.Status != 200 {
		t.Fatalf("strict: %d %s", r.Status, r.Raw)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := h.do("GET", "/v1/messages?limit=10", "acme-key", "")
		msgs, _ := r.Body["messages"].([]any)
		if len(msgs) == 1 {
			if msgs[0].(map[string]any)["id"] != ids[3] {
				t.Errorf("kept %s, want the newest", r.Raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acme's records were never trimmed to 1: %s", r.Raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := h.do("GET", "/v1/messages?limit=10", "strict-key", "")
	if msgs, _ := r.Body["messages"].([]any); len(msgs) != 1 {
		t.Errorf("the other tenant's records: %s", r.Raw)
	}
	// The trim may run between the sends: its lines and the metric count three records in all (the
	// metric is counted after the line is written).
	waitUntil(t, "three records trimmed", func() bool { return testutil.ToFloat64(h.app.MetricSet().LogTrimmed.WithLabelValues("acme")) == 3 })
	trims := 0
	for _, l := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(l, `"msg":"message log trimmed`) {
			trims++
			if !strings.Contains(l, `"tenant":"acme"`) {
				t.Errorf("a trim's line names another tenant: %s", l)
			}
		}
	}
	if trims == 0 {
		t.Errorf("no log line names the trimmed tenant:\n%s", h.logs.String())
	}
}

// TestThePurgeSaysHowOldTheLogIs: the purge's work and the oldest record it leaves reach the
// metrics SmsgateMessageLogPastRetention reads, beside the retention; and SQLite's WAL size the
// one SmsgateMessageLogWALLarge reads.
func TestThePurgeSaysHowOldTheLogIs(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(baseConfig, "storage: {driver: sqlite, path: $DIR/log.db}", "storage: {driver: sqlite, path: $DIR/log.db, retention: 48h}", 1)
	var clock atomic.Int64 // Unix ms of the sends' clock
	clock.Store(time.Now().Add(-72 * time.Hour).UnixMilli())
	h := start(t, cfg, Options{choresEvery: 10 * time.Millisecond, Now: func() time.Time { return time.UnixMilli(clock.Load()) }})
	m := h.app.MetricSet()
	if got := testutil.ToFloat64(m.LogRetention); got != 48*3600 {
		t.Errorf("retention %v s, want 172800", got)
	}
	for i := range 2 { // three days old: past the retention
		if r := h.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555010%d","text":"c %d000","context":{}}`, i, i)); r.Status != 200 {
			t.Fatalf("send %d: %d %s", i, r.Status, r.Raw)
		}
	}
	now := time.Now().Truncate(time.Millisecond)
	clock.Store(now.UnixMilli())
	if r := h.send("acme-key", `{"recipient":"+14155550109","text":"c 9000","context":{}}`); r.Status != 200 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	waitUntil(t, "the two old records purged and the new one seen as the oldest", func() bool {
		return testutil.ToFloat64(m.LogPurged) == 2 && testutil.ToFloat64(m.LogOldest) == float64(now.UnixMilli())/1000
	})
	// And the background checkpoint says how much SQLite's WAL holds (the sends' pages).
	waitUntil(t, "the WAL's size seen", func() bool { return testutil.ToFloat64(m.LogWAL) > 0 })
}

// TestATenantThatLeftTheConfigLeavesNoSeries: a reload without a tenant takes its series out of
// the metrics. A team may rename its tenants at each change of its file: each name's series
// stayed on every replica until it restarted, in every scrape and in Prometheus.
func TestATenantThatLeftTheConfigLeavesNoSeries(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	for _, key := range []string{"acme-key", "lenient-key"} {
		if r := h.send(key, actionBody); r.Status != 200 {
			t.Fatalf("%s: %d %s", key, r.Status, r.Raw)
		}
	}
	if r := h.send("lenient-key", `{"recipient":"+850 2 381 2321","text":"c 1000","context":{}}`); r.Status != 403 {
		t.Fatalf("lenient to KP: %d %s", r.Status, r.Raw)
	}
	if m := h.do("GET", "/metrics", "", "").Raw; !strings.Contains(m, `tenant="lenient"`) || !strings.Contains(m, `smsgate_policy_rejections_total{reason="denied_countries",tenant="lenient"}`) {
		t.Fatalf("lenient's series are not there to begin with:\n%s", m)
	}
	raw, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	without := strings.Replace(string(raw), "  - name: lenient\n    api_key: lenient-key\n    accept_unrecognized_numbers: true\n", "", 1)
	if without == string(raw) {
		t.Fatal("the config has no lenient tenant to take out")
	}
	h.rewrite(without)
	if err := h.app.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := h.do("GET", "/metrics", "", "").Raw
	if strings.Contains(m, `tenant="lenient"`) {
		t.Errorf("a series of the tenant that left is still there:\n%s", m)
	}
	if !strings.Contains(m, `smsgate_requests_total{outcome="sent",route="default",tenant="acme"}`) {
		t.Errorf("acme's series went too:\n%s", m)
	}
	// What writes a series of it after the reload (a send in flight across it, a report or a push
	// of one of its messages) is dropped at the next scrape; a call no key authenticated keeps its
	// series (tenant "").
	h.app.MetricSet().Requests.WithLabelValues("lenient", "default", "sent").Inc()
	h.app.MetricSet().Notify.WithLabelValues("lenient", "ok").Inc()
	if r := h.send("no-such-key", actionBody); r.Status != 401 {
		t.Fatalf("an unknown key: %d %s", r.Status, r.Raw)
	}
	m = h.do("GET", "/metrics", "", "").Raw
	if strings.Contains(m, `tenant="lenient"`) {
		t.Errorf("a series written after the tenant left is still there at the next scrape:\n%s", m)
	}
	if !strings.Contains(m, `tenant=""`) || !strings.Contains(m, `tenant="acme"`) {
		t.Errorf("the scrape dropped the series of unauthenticated calls or of acme:\n%s", m)
	}
}

func TestMessagesAPI(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	var ids []string
	for i := 0; i < 3; i++ {
		r := h.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555010%d","text":"c %d000","context":{}}`, i, i))
		ids = append(ids, r.Body["id"].(string))
	}
	h.send("broken-key", actionBody)
	if r := h.do("GET", "/v1/messages/"+ids[0], "broken-key", ""); r.Status != 404 {
		t.Errorf("another tenant's message: %d", r.Status)
	}
	r := h.do("GET", "/v1/messages?limit=2", "acme-key", "")
	msgs, _ := r.Body["messages"].([]any)
	if r.Status != 200 || len(msgs) != 2 || msgs[0].(map[string]any)["id"] != ids[2] || r.Body["next_cursor"] == nil {
		t.Fatalf("page 1: %s", r.Raw)
	}
	r = h.do("GET", "/v1/messages?limit=2&cursor="+r.Body["next_cursor"].(string), "acme-key", "")
	msgs, _ = r.Body["messages"].([]any)
	if len(msgs) != 1 || msgs[0].(map[string]any)["id"] != ids[0] {
		t.Errorf("page 2: %s", r.Raw)
	}
	r = h.do("GET", "/v1/messages?status=failed", "broken-key", "")
	msgs, _ = r.Body["messages"].([]any)
	if len(msgs) != 1 || msgs[0].(map[string]any)["recipient"] != "+14*****0104" {
		t.Errorf("failed list: %s", r.Raw)
	}
	// A misspelt status and a pair net/url cannot decode (a cursor dropped that way answered the
	// first page again) are refused, not read as "none" or as no filter.
	for _, q := range []string{"limit=0", "limit=x", "since=yesterday", "cursor=zzz", "status=deliverd", "status=accepted", "cursor=%zz", "limit=2&cursor=1%"} {
		if r := h.do("GET", "/v1/messages?"+q, "acme-key", ""); r.Status != 400 || errCode(r) != "invalid_query" {
			t.Errorf("%s: %d %s", q, r.Status, r.Raw)
		}
	}
	if r := h.do("GET", "/v1/messages", "", ""); r.Status != 401 {
		t.Errorf("no key: %d", r.Status)
	}
}

func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	h := start(t, failoverConfig, Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures, total := 0, 0
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := h.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"c %d","context":{}}`, w*1000+i%1000, 1000+i))
				mu.Lock()
				total++
				if r.Status != 200 {
					failures++
				}
				mu.Unlock()
			}
		}()
	}
	valid := strings.Replace(failoverConfig, "    providers: [first, second]", "    providers: [second, first]", 1)
	for i := 0; i < 10; i++ {
		cfg := valid
		if i%2 == 1 {
			cfg = "tenants: [ {name: broken\n" // invalid YAML
		}
		h.rewrite(cfg)
		err := h.app.Reload(context.Background())
		if (err != nil) != (i%2 == 1) {
			t.Errorf("reload %d: err = %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failures != 0 || total < 20 {
		t.Errorf("%d of %d requests failed during reloads", failures, total)
	}
	// The last good config routes to second first, and the breaker of "first" survived.
	if r := h.send("acme-key", `{"recipient":"+14155550199","text":"c 9","context":{}}`); r.Body["provider"] != "second" {
		t.Errorf("reloaded route not in force: %s", r.Raw)
	}
	m := h.app.MetricSet()
	if ok, bad := testutil.ToFloat64(m.Reloads.WithLabelValues("ok")), testutil.ToFloat64(m.Reloads.WithLabelValues("error")); ok != 5 || bad != 5 {
		t.Errorf("reload metrics ok=%v error=%v", ok, bad)
	}
}

func TestReloadEndpointAndBreakerKept(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	// Open nothing, but drain primary: an unchanged provider keeps its state across a reload.
	h.do("POST", "/v1/providers/primary/disable", "admin-t0ken", "")
	if r := h.do("POST", "/v1/admin/reload", "admin-t0ken", ""); r.Status != 200 {
		t.Fatalf("reload: %d %s", r.Status, r.Raw)
	}
	if r := h.send("acme-key", actionBody); r.Body["provider"] != "backup" {
		t.Errorf("drain lost on reload: %s", r.Raw)
	}
	h.rewrite(strings.Replace(baseConfig, "type: mock\n  - name: backup", "type: nope\n  - name: backup", 1))
	r := h.do("POST", "/v1/admin/reload", "admin-t0ken", "")
	if r.Status != 422 || errCode(r) != "invalid_config" || !strings.Contains(r.Raw, `unknown provider type \"nope\"`) {
		t.Errorf("invalid reload: %d %s", r.Status, r.Raw)
	}
	if !strings.Contains(h.logs.String(), "config reload rejected") {
		t.Errorf("the rejected reload was not logged")
	}
}

// TestABreakerChangedByAReloadTakesEffect: a provider whose breaker settings a reload changes is
// built again with them (a fresh breaker, closed, and smsgate_breaker_state says so), though
// nothing else of it changed.
func TestABreakerChangedByAReloadTakesEffect(t *testing.T) {
	t.Parallel()
	h := start(t, failoverConfig, Options{})
	_, reload := reloader(t, h.app, h.path)
	send := func(i int) []string { t.Helper(); return sentAttempts(t, h, "acme-key", i) }
	state := func() float64 {
		return testutil.ToFloat64(h.app.MetricSet().BreakerState.WithLabelValues("first", "sms"))
	}
	for i := range 3 { // the three failures that open it
		send(i)
	}
	if s := state(); s != 2 {
		t.Fatalf("breaker state %v after three failures, want 2 (open)", s)
	}
	reload(strings.Replace(failoverConfig, "consecutive_failures: 3", "consecutive_failures: 1", 1))
	if s := state(); s != 0 {
		t.Errorf("breaker state %v after the reload, want 0 (the new breaker, closed)", s)
	}
	got := [][]string{send(3), send(4)}
	want := [][]string{{"first:provider_error", "second:sent"}, {"first:unavailable", "second:sent"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after the reload to consecutive_failures 1 (-want +got):\n%s", diff)
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(failoverConfig, "    failure_rate: 1\n", "    latency: 300ms\n", 1)
	h := start(t, cfg, Options{})
	done := make(chan response)
	go func() { done <- h.send("acme-key", actionBody) }()
	time.Sleep(100 * time.Millisecond)
	if err := h.app.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if r := <-done; r.Status != 200 {
		t.Errorf("in-flight request during shutdown: %d %s", r.Status, r.Raw)
	}
}

func TestRequestIDInResponseAndLog(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	r := h.send("acme-key", actionBody, "X-Request-Id", "trace-abc-123")
	if r.Header.Get("X-Request-Id") != "trace-abc-123" {
		t.Errorf("X-Request-Id not echoed: %q", r.Header.Get("X-Request-Id"))
	}
	r = h.send("acme-key", actionBody)
	gen := r.Header.Get("X-Request-Id")
	if !strings.HasPrefix(gen, "req_") {
		t.Errorf("no request id generated: %q", gen)
	}
	logs := h.logs.String()
	for _, id := range []string{"trace-abc-123", gen} {
		if !strings.Contains(logs, `"request_id":"`+id+`"`) {
			t.Errorf("log lacks request id %s", id)
		}
	}
}

// TestReadinessFollowsBreakersNotDrains: a replica whose every enabled provider has an open
// breaker is not ready (another replica's path to the providers may work), but one whose every
// provider is disabled stays ready: drains are the same on every replica, and with all replicas
// out of the load balancer the admin API could not be reached to end the drain.
func TestReadinessFollowsBreakersNotDrains(t *testing.T) {
	t.Parallel()
	h := start(t, `
server: {admin_token: ready-admin-token-0123}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: a, api_key: a-key-0123456789abcd}, {name: b, api_key: b-key-0123456789abcd}]
providers: [{name: p1, type: mock, failure_rate: 1, breaker: {consecutive_failures: 2}}]
routes: [{name: d, providers: [p1]}]
`, Options{})
	ready := func() int { return h.do("GET", "/readyz", "", "").Status }
	if s := ready(); s != 200 {
		t.Fatalf("readyz at start: %d", s)
	}
	lastError := func() any {
		return h.do("GET", "/v1/providers", "ready-admin-token-0123", "").Body["providers"].([]any)[0].(map[string]any)["last_error_at"]
	}
	if at := lastError(); at != nil {
		t.Errorf("last_error_at before any error: %v", at)
	}
	// Each channel's shared breaker opens on two tenants' failures; one open channel leaves the
	// provider available for the other.
	for i := 0; i < 16 && ready() == 200; i++ {
		h.send([]string{"a-key-0123456789abcd", "b-key-0123456789abcd"}[i%2],
			fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is %06d","message_type":"%s"}}`, i, i, []string{"sms", "voice"}[i/8]))
		if i == 7 && ready() != 200 {
			t.Fatal("not ready with the voice breaker closed")
		}
	}
	if s := ready(); s != 503 {
		t.Fatalf("readyz with both of the only provider's breakers open: %d", s)
	}
	if at, ok := lastError().(string); !ok || !strings.HasSuffix(at, "Z") {
		t.Errorf("last_error_at after the failures: %v", lastError())
	}
	const admin = "ready-admin-token-0123"
	if r := h.do("POST", "/v1/providers/p1/disable", admin, ""); r.Status != 200 {
		t.Fatalf("disable: %d %s", r.Status, r.Raw)
	}
	if s := ready(); s != 200 {
		t.Errorf("readyz with every provider drained: %d, want 200", s)
	}
	if r := h.do("POST", "/v1/providers/p1/enable", admin, ""); r.Status != 200 {
		t.Fatalf("enable: %d %s", r.Status, r.Raw)
	}
	if s := ready(); s != 503 {
		t.Errorf("readyz after the drain ended, the breaker still open: %d", s)
	}
}

// TestARollbackStartsOnANewerLog: a build started on a message log that a newer build migrated
// (a rollback after an upgrade) serves on it when the log says it may, and says so.
func TestARollbackStartsOnANewerLog(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "log.db")
	s, err := store.OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := s.SchemaVersion(context.Background())
	s.Close()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf(`UPDATE schema_version SET version = %d; UPDATE schema_compat SET requires = 1`, v+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	h := startOnLog(t, fmt.Sprintf("{driver: sqlite, path: %q}", path))
	if want := fmt.Sprintf(`"schema_version":%d,"this_build_knows":%d`, v+1, v); !strings.Contains(h.logs.String(), want) {
		t.Errorf("the start did not say it runs on a newer schema (%s): %s", want, h.logs.String())
	}
	id := sendOne(t, h, "a send after the rollback")
	if g := h.do("GET", "/v1/messages/"+id, "acme-key-0123456789", ""); g.Status != 200 {
		t.Errorf("its record: %d %s", g.Status, g.Raw)
	}
}

// TestASQLiteStartDoesNotWaitForLongMigrations: an SQLite log whose migrations take longer than
// the start waits (here the index builds of an upgrade over 20,000 records against a wait of
// 1 ms) is migrated in the background while the gateway serves, as PostgreSQL's is. A start that
// waited would not listen meanwhile, and a liveness probe would kill it, migration and all, again
// and again.
func TestASQLiteStartDoesNotWaitForLongMigrations(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "log.db")
	s, err := store.OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP INDEX messages_bulk; DROP INDEX messages_reference; DROP INDEX messages_unpulled; ALTER TABLE messages DROP COLUMN parts;
		CREATE INDEX messages_untaken ON messages(tenant, created_at) WHERE source != '' AND report_taken = 0;
		UPDATE schema_version SET version = 5;
		WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000)
		INSERT INTO messages (id, tenant, status, created_at, updated_at, source, bulk_id)
		SELECT 'old' || n, 'acme', 'delivered', n, n, 'infobip-sms-v3', 'b' || (n % 100) FROM g`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	h := start(t, logConfig(fmt.Sprintf("{driver: sqlite, path: %q}", path)), Options{startWait: time.Millisecond})
	if !strings.Contains(h.logs.String(), "message log not reached within 1ms") {
		t.Errorf("the start did not say it serves while the log migrates: %s", h.logs.String())
	}
	waitWritten(t, h, sendOne(t, h, "a send while the log migrates"))
	if logs := h.logs.String(); !strings.Contains(logs, "message log reached") || strings.Contains(logs, "still not reached") {
		t.Errorf("want the log reached at the first attempt: %s", logs)
	}
}

// TestSQLiteMmapSwitch: storage.sqlite_mmap decides whether the log's reads map its file. The
// process's mappings are read after reads of a message that outlast a checkpoint (the message's
// pages are then in the file, not only in the WAL): the log's file is mapped by default, and is
// not with sqlite_mmap: false (its WAL index, log.db-shm, is mapped either way).
func TestSQLiteMmapSwitch(t *testing.T) {
	// Not parallel: reads the process's own mappings (see start).
	if _, err := os.Stat("/proc/self/maps"); err != nil {
		t.Skip("no /proc/self/maps to read the process's mappings from")
	}
	for _, mapped := range []bool{true, false} {
		t.Run(fmt.Sprintf("sqlite_mmap_%v", mapped), func(t *testing.T) {
			h := startOnLog(t, fmt.Sprintf("{driver: sqlite, path: $DIR/log.db, sqlite_mmap: %v}", mapped))
			db := filepath.Join(filepath.Dir(h.path), "log.db")
			id := sendOne(t, h, "a send")
			waitWritten(t, h, id)
			seen := false
			for end := time.Now().Add(3 * time.Second); !seen && time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				if r := h.do("GET", "/v1/messages/"+id, "acme-key-0123456789", ""); r.Status != 200 {
					t.Fatalf("read: %d %s", r.Status, r.Raw)
				}
				maps, err := os.ReadFile("/proc/self/maps")
				if err != nil {
					t.Fatal(err)
				}
				for line := range strings.Lines(string(maps)) {
					// The WAL's index (log.db-shm) is mapped either way.
					seen = seen || strings.HasSuffix(line, " "+db+"\n")
				}
			}
			if seen != mapped {
				t.Errorf("the log's file mapped: %v, want %v", seen, mapped)
			}
		})
	}
}

// startOnLog starts a gateway with one tenant (acme-key-0123456789) whose message log is
// storage (the YAML of the storage key).
func startOnLog(t *testing.T, storage string) *harness {
	t.Helper()
	return start(t, logConfig(storage), Options{})
}

// logConfig is startOnLog's config: one tenant, one mock provider, storage the YAML of the
// storage key.
func logConfig(storage string) string {
	return `
storage: ` + storage + `
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`
}

// sendOne sends a code as startOnLog's tenant and returns its message id; what names the send
// in a failure.
func sendOne(t *testing.T, h *harness, what string) string {
	t.Helper()
	r := h.send("acme-key-0123456789", `{"recipient":"+14155550104","text":"Your code is 246810","context":{}}`)
	if r.Status != 200 {
		t.Fatalf("%s: %d %s", what, r.Status, r.Raw)
	}
	return r.Body["id"].(string)
}

// readsAtClose is a message log whose reads of prices take a while, and which notes whether it
// was closed while one ran.
type readsAtClose struct {
	store.Backend
	reading     atomic.Int32
	closedUnder atomic.Bool
	takes       time.Duration
	began       chan struct{}
	once        sync.Once
}

func (b *readsAtClose) Prices(ctx context.Context, since, until time.Time) ([]store.PriceRow, error) {
	b.reading.Add(1)
	defer b.reading.Add(-1)
	b.once.Do(func() { close(b.began) })
	select {
	case <-time.After(b.takes):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return b.Backend.Prices(ctx, since, until)
}

func (b *readsAtClose) Close() error {
	if b.reading.Load() > 0 {
		b.closedUnder.Store(true)
	}
	return b.Backend.Close()
}

// TestShutdownWaitsForTheBackgroundReads: a read of the message log in the background (here the
// prices read at start, 144 slow reads of its buckets) is cancelled and ends before the log
// closes, and the shutdown does not wait for it to finish. The log was closed under it, and a read
// that opened a connection as the SQLite file went away could leave files behind (a test's
// temporary directory could not be removed, once in CI).
func TestShutdownWaitsForTheBackgroundReads(t *testing.T) {
	t.Parallel()
	b := &readsAtClose{takes: 200 * time.Millisecond, began: make(chan struct{})}
	a, err := New(context.Background(), Options{ConfigPath: writeConfig(t, `
storage: {driver: sqlite, path: $DIR/log.db}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m], strategy: least_cost}]
`), Listen: "127.0.0.1:0", LogOutput: io.Discard, WrapBackend: func(sb store.Backend) store.Backend { b.Backend = sb; return b }})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.began:
	case <-time.After(5 * time.Second):
		t.Fatal("the prices were not read at start")
	}
	began := time.Now()
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b.closedUnder.Load() {
		t.Error("the message log was closed while a background read ran")
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("the shutdown took %s: it waited for the reads instead of cancelling them", took)
	}
}

// TestASpoolInUseStopsTheStart: storage.spool_dir is one process's: a second replica started on
// the directory of a running one (two containers given one volume) stops at start, naming the
// key, instead of writing its records over the other's.
func TestASpoolInUseStopsTheStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := logConfig(fmt.Sprintf("{driver: sqlite, path: $DIR/log.db, spool_dir: %q}", dir))
	h := start(t, cfg, Options{})
	sendOne(t, h, "a send beside the spool")
	_, err := New(context.Background(), Options{ConfigPath: writeConfig(t, cfg), Listen: "127.0.0.1:0", LogOutput: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "storage.spool_dir: the spool directory is in use by another process") {
		t.Fatalf("a second start on a spool in use: %v", err)
	}
	h.app.Shutdown(context.Background())
	a, err := New(context.Background(), Options{ConfigPath: writeConfig(t, cfg), Listen: "127.0.0.1:0", LogOutput: io.Discard})
	if err != nil {
		t.Fatalf("a start on the spool once free: %v", err)
	}
	a.Shutdown(context.Background())
}

// Message ids sort by creation, also for ids made within one millisecond (the listing's
// tie-breaker), though each ends in random bytes; the per-process sequence wraps only after
// 65536 ids.
func TestIDsMadeInOneMillisecondSortByCreation(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(1_700_000_000_000)
	prev := newID(at)
	for range 200 {
		id := newID(at)
		if !strings.HasPrefix(id, "msg_"+fmt.Sprintf("%012x", at.UnixMilli())) || len(id) != len(prev) {
			t.Fatalf("id %q does not start with the time or changed length", id)
		}
		if id <= prev && (id[16:20] != "0000" || prev[16:20] != "ffff") { // the sequence wrapped: the one place ids may not sort
			t.Fatalf("id %s made after %s sorts before it", id, prev)
		}
		prev = id
	}
}

// storage.store_full_numbers keeps the whole number in the message log, and only there: the
// request's log line still masks it.
func TestStoreFullNumbersKeepsTheNumberInTheLogOnly(t *testing.T) {
	t.Parallel()
	h := start(t, strings.Replace(baseConfig, "path: $DIR/log.db}", "path: $DIR/log.db, store_full_numbers: true}", 1), Options{})
	r := h.send("acme-key", actionBody)
	if r.Status != 200 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	got := h.do("GET", "/v1/messages/"+r.Body["id"].(string), "acme-key", "")
	if got.Status != 200 || got.Body["recipient"] != "+14155550104" {
		t.Errorf("record: %d %s, want the full recipient", got.Status, got.Raw)
	}
	if strings.Contains(h.logs.String(), "4155550104") {
		t.Errorf("the request's log line holds the full number:\n%s", h.logs)
	}
}

// A provider that throttles without saying for how long (429, no Retry-After): the caller is
// still told to wait, one second, not invited to retry at once.
func TestAThrottleWithoutRetryAfterAnswersOneSecond(t *testing.T) {
	t.Parallel()
	srv := providertest.Answering(t, "POST", "/sms/3/messages", http.StatusTooManyRequests, []byte(`{"errorCode":"E429","description":"Too many requests"}`))
	h := start(t, `
storage: {driver: memory}
tenants: [{name: acme, api_key: acme-key}]
providers: [{name: ib, type: infobip, base_url: "`+srv.URL+`", api_key: ib-key-0123456789, sender: InfoSMS}]
routes: [{name: default, providers: [ib]}]
`, Options{})
	r := h.send("acme-key", actionBody)
	if r.Status != 429 || errCode(r) != "provider_throttled" || r.Header.Get("Retry-After") != "1" {
		t.Errorf("%d %v %s, want 429 provider_throttled with Retry-After 1", r.Status, r.Header, r.Raw)
	}
}

// panicOnce is a transport whose first request panics (a driver's bug, as a nil map or an index
// out of range would be) and whose others fail to connect.
type panicOnce struct{ done atomic.Bool }

func (p *panicOnce) RoundTrip(*http.Request) (*http.Response, error) {
	if p.done.CompareAndSwap(false, true) {
		panic("a driver's bug")
	}
	return nil, errors.New("connection refused")
}

// TestAPanicInASendIsAJSON500AndTheReplicaGoesOn: a provider call that panics ends its request
// in a JSON 500 with the stable code internal, logged at ERROR and its send line at WARN; the
// process goes on, and the tenant's next send (its place among the sends in flight given back)
// fails over as any other would.
func TestAPanicInASendIsAJSON500AndTheReplicaGoesOn(t *testing.T) {
	t.Parallel()
	h := start(t, `
storage: {driver: memory}
server: {max_in_flight: 2}
policy: {resend_escalation: {enabled: false}}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers:
  - {name: ib, type: infobip, base_url: "https://ib.example.com", api_key: ib-key-0123456789}
  - {name: m, type: mock}
routes: [{name: d, providers: [ib, m]}]
`, Options{HTTPClient: &http.Client{Transport: &panicOnce{}}})
	r := h.send("acme-key-0123456789", `{"message_options":{"recipient":"+14155550104","code":"123456","message_type":"sms"}}`)
	if r.Status != 500 || errCode(r) != "internal" {
		t.Fatalf("a send whose provider call panicked: %d %s, want 500 internal", r.Status, r.Raw)
	}
	if l := logLines(t, h, "panic in send"); len(l) != 1 || l[0]["level"] != "ERROR" {
		t.Errorf("the panic's log lines: %v, want one at ERROR", l)
	}
	if l := logLines(t, h, "send"); len(l) != 1 || l[0]["level"] != "WARN" || l[0]["outcome"] != "internal" {
		t.Errorf("the send's log lines: %v, want one at WARN with outcome internal", l)
	}
	for i := range 3 { // more than max_in_flight: a place the panic kept would shed one
		r := h.send("acme-key-0123456789", fmt.Sprintf(`{"message_options":{"recipient":"+1415555020%d","code":"123456","message_type":"sms"}}`, i))
		if r.Status != 200 || r.Body["provider"] != "m" {
			t.Errorf("send %d after the panic: %d %s, want sent through m", i, r.Status, r.Raw)
		}
	}
}

// TestALogLevelFollowsTheFileOnReload: log.level takes effect at a reload, with no warning; a
// change of log.format (which needs a restart) is warned about instead.
func TestALogLevelFollowsTheFileOnReload(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	write := func(cfg string) {
		t.Helper()
		h.rewrite(cfg)
		if err := h.app.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	const restart = "config reload: changes to server.listen, server.metrics_listen, turning server.tls on or off, log.format, storage and state take effect only after a restart"
	write(strings.Replace(baseConfig, "log: {format: json, level: debug}", "log: {format: json, level: warn}", 1))
	if l := h.app.Logger(); l.Enabled(context.Background(), slog.LevelInfo) || !l.Enabled(context.Background(), slog.LevelWarn) {
		t.Error("after a reload to log.level warn, the logger still writes info lines or no longer writes warnings")
	}
	if n := len(logLines(t, h, restart)); n != 0 {
		t.Errorf("a change of log.level warned %d times that it needs a restart", n)
	}
	write(strings.Replace(baseConfig, "log: {format: json, level: debug}", "log: {format: text, level: warn}", 1))
	if n := len(logLines(t, h, restart)); n != 1 {
		t.Errorf("a change of log.format warned %d times that it needs a restart, want once", n)
	}
}
