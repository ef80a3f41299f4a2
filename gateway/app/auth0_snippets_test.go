package app

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway/config"
)

// exchange is one request a snippet made, as it reached the gateway, with the answer.
type exchange struct {
	Auth, Idempotency string
	Body              map[string]any
	RawBody           string
	Status            int
	Answer            map[string]any
}

// recorder forwards to the gateway and keeps every exchange.
type recorder struct {
	target string
	mu     sync.Mutex
	seen   []exchange
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	fwd, _ := http.NewRequest(req.Method, r.target+req.URL.RequestURI(), bytes.NewReader(body))
	fwd.Header = req.Header.Clone()
	res, err := http.DefaultClient.Do(fwd)
	if err != nil {
		http.Error(w, err.Error(), 599)
		return
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(res.Body)
	ex := exchange{Auth: req.Header.Get("Authorization"), Idempotency: req.Header.Get("Idempotency-Key"), RawBody: string(body), Status: res.StatusCode}
	_ = json.Unmarshal(body, &ex.Body)
	_ = json.Unmarshal(answer, &ex.Answer)
	r.mu.Lock()
	r.seen = append(r.seen, ex)
	r.mu.Unlock()
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	w.Write(answer)
}

func (r *recorder) last(t *testing.T) exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		t.Fatal("the snippet never reached the gateway")
	}
	return r.seen[len(r.seen)-1]
}

type snippetResult struct {
	Threw *string        `json:"threw"`
	Retry *string        `json:"retry"`
	Drop  *string        `json:"drop"`
	CB    map[string]any `json:"cb"`
}

func runSnippet(t *testing.T, kind, file, url, key string, sc map[string]string) snippetResult {
	t.Helper()
	scJSON, _ := json.Marshal(sc)
	cmd := exec.Command("node", "testdata/auth0_harness.js", kind, file, url, key, string(scJSON))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", file, err, stderr.String())
	}
	var r snippetResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("harness output %q: %v", out, err)
	}
	return r
}

const snippetConfig = `
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants:
  - {name: acme, api_key: acme-snippet-key}
  - {name: broken, api_key: broken-snippet-key}
  - {name: throttled, api_key: throttled-snippet-key}
providers:
  - {name: good, type: mock}
  - {name: bad, type: mock, failure_rate: 1}
  - {name: busy, type: mock, failure_rate: 1, fail_with: throttled}
routes:
  - name: throttled
    match: {tenants: [throttled]}
    providers: [busy]
  - name: broken
    match: {tenants: [broken]}
    providers: [bad]
  - name: default
    providers: [good]
`

// startSnippetGateway starts a gateway behind a recording proxy for the snippets; it skips
// without Node, except in CI.
func startSnippetGateway(t *testing.T) (*recorder, *httptest.Server) {
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is required in CI for the Auth0 snippet tests")
		}
		t.Skip("node not installed")
	}
	h := start(t, snippetConfig, Options{})
	rec := &recorder{target: h.url}
	proxy := httptest.NewServer(rec)
	t.Cleanup(proxy.Close)
	return rec, proxy
}

// TestAuth0Snippets runs each snippet of docs/auth0 in Node against a real gateway: success, a
// 4xx and a 5xx path, and checks what reached the gateway.
func TestAuth0Snippets(t *testing.T) {
	t.Parallel()
	rec, proxy := startSnippetGateway(t)

	good := map[string]string{"recipient": "+14155550104", "text": "Your code is 482913", "code": "482913"}
	badNumber := map[string]string{"recipient": "+44 7700 900123", "text": "Your code is 482913", "code": "482913"}
	snippets := []struct{ kind, file string }{
		{"action", "../../docs/auth0/send-phone-message-action.js"},
		{"custom-phone-provider", "../../docs/auth0/custom-phone-provider-action.js"},
		{"hook", "../../docs/auth0/send-phone-message-hook.js"},
	}
	for _, sn := range snippets {
		t.Run(sn.kind, func(t *testing.T) {
			// Success.
			r := runSnippet(t, sn.kind, sn.file, proxy.URL+"/", "acme-snippet-key", good)
			ex := rec.last(t)
			if ex.Status != 200 || ex.Auth != "Bearer acme-snippet-key" {
				t.Errorf("success: gateway answered %d with auth %q: %v", ex.Status, ex.Auth, ex.Answer)
			}
			for _, leak := range []string{"secrets", "webtask", "SMSGATE_API_KEY", "acme-snippet-key"} {
				if strings.Contains(ex.RawBody, leak) {
					t.Errorf("the snippet posted %q in the body: %s", leak, ex.RawBody)
				}
			}
			switch sn.kind {
			case "action":
				if r.Threw != nil || ex.Body["message_options"].(map[string]any)["recipient"] != "+14155550104" {
					t.Errorf("action success: %+v %s", r, ex.RawBody)
				}
			case "custom-phone-provider":
				if r.Retry != nil || r.Drop != nil || ex.Idempotency == "" || ex.Body["notification"].(map[string]any)["code"] != "482913" {
					t.Errorf("cpp success: %+v key %q", r, ex.Idempotency)
				}
			case "hook":
				if diff := cmp.Diff(map[string]any{"ok": map[string]any{}}, r.CB); diff != "" || ex.Body["context"].(map[string]any)["client_id"] != "abc123" {
					t.Errorf("hook success (-want +got):\n%s", diff)
				}
			}

			// 4xx: an unrecognized number is refused; the snippet must not report success.
			r = runSnippet(t, sn.kind, sn.file, proxy.URL, "acme-snippet-key", badNumber)
			if ex := rec.last(t); ex.Status != 400 {
				t.Errorf("4xx path: gateway answered %d", ex.Status)
			}
			checkFailure(t, sn.kind, r, "invalid_number", false)

			// 5xx: every provider of the tenant's route fails.
			r = runSnippet(t, sn.kind, sn.file, proxy.URL, "broken-snippet-key", good)
			if ex := rec.last(t); ex.Status != 502 {
				t.Errorf("5xx path: gateway answered %d", ex.Status)
			}
			checkFailure(t, sn.kind, r, "all_providers_failed", true)

			// 429 provider_throttled: every provider throttles the tenant for a moment; worth a retry.
			r = runSnippet(t, sn.kind, sn.file, proxy.URL, "throttled-snippet-key", good)
			if ex := rec.last(t); ex.Status != 429 {
				t.Errorf("throttled path: gateway answered %d", ex.Status)
			}
			checkFailure(t, sn.kind, r, "provider_throttled", true)
		})
	}

	t.Run("custom-phone-provider retries reuse one idempotency key", func(t *testing.T) {
		sc := map[string]string{"recipient": "+14155550199", "text": "Your code is 777001", "code": "777001"}
		runSnippet(t, "custom-phone-provider", snippets[1].file, proxy.URL, "acme-snippet-key", sc)
		first := rec.last(t)
		runSnippet(t, "custom-phone-provider", snippets[1].file, proxy.URL, "acme-snippet-key", sc)
		second := rec.last(t)
		if first.Idempotency == "" || first.Idempotency != second.Idempotency || first.Answer["id"] != second.Answer["id"] {
			t.Errorf("keys %q/%q ids %v/%v: a retry must replay, not resend", first.Idempotency, second.Idempotency, first.Answer["id"], second.Answer["id"])
		}
	})

	t.Run("unreachable gateway", func(t *testing.T) {
		const dead = "http://127.0.0.1:1" // served nowhere; a released ":0" port could be taken again
		start := time.Now()
		r := runSnippet(t, "custom-phone-provider", snippets[1].file, dead, "k", good)
		if r.Retry == nil || !strings.Contains(*r.Retry, "smsgate unreachable") {
			t.Errorf("cpp with the gateway down must retry: %+v", r)
		}
		if r := runSnippet(t, "action", snippets[0].file, dead, "k", good); r.Threw == nil || !strings.Contains(*r.Threw, "could not reach") {
			t.Errorf("action with the gateway down must throw: %+v", r)
		}
		if time.Since(start) > 20*time.Second {
			t.Errorf("took %v", time.Since(start))
		}
	})
}

func checkFailure(t *testing.T, kind string, r snippetResult, code string, retryable bool) {
	t.Helper()
	var msg *string
	switch kind {
	case "action":
		msg = r.Threw
	case "custom-phone-provider":
		msg = r.Drop
		if retryable {
			msg = r.Retry
		}
		if (r.Retry != nil) == (r.Drop != nil) {
			t.Errorf("cpp must call exactly one of retry and drop: %+v", r)
		}
	case "hook":
		if e, ok := r.CB["error"].(string); ok {
			msg = &e
		}
	}
	if msg == nil || !strings.Contains(*msg, code) {
		t.Errorf("%s: want a failure naming %s, got %+v", kind, code, r)
	}
}

var snippetTimeoutRe = regexp.MustCompile(`(?m)^const SMSGATE_TIMEOUT_MS = (\d+);`)

// TestSnippetTimeoutsOutlastTheGatewayBudget: each snippet waits clearly longer than the gateway's
// default request budget (its clock starts first, and the gateway may answer at the very end of
// its budget after a failover), and less than Auth0's 20 s for one execution.
func TestSnippetTimeoutsOutlastTheGatewayBudget(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("min.yaml", []byte("tenants: [{name: a, api_key: k}]\nproviders: [{name: p, type: mock}]\nroutes: [{name: d, providers: [p]}]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	budget := c.Server.RequestTimeout.D()
	files, _ := filepath.Glob("../../docs/auth0/*.js")
	if len(files) != 3 {
		t.Fatalf("found %d snippets, want 3", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := snippetTimeoutRe.FindSubmatch(b)
		if m == nil {
			t.Errorf("%s: no SMSGATE_TIMEOUT_MS constant", f)
			continue
		}
		ms, _ := strconv.Atoi(string(m[1]))
		got := time.Duration(ms) * time.Millisecond
		if got < budget+2*time.Second || got >= 20*time.Second {
			t.Errorf("%s: SMSGATE_TIMEOUT_MS is %v; want at least the gateway's default budget %v plus 2s, and under Auth0's 20s", f, got, budget)
		}
	}
}

// TestSnippetIdempotencyKeyIsKeyed: the custom-phone-provider snippet's Idempotency-Key is an
// HMAC keyed by the Action's SMSGATE_API_KEY, not a plain hash a six-digit code could be read from.
func TestSnippetIdempotencyKeyIsKeyed(t *testing.T) {
	t.Parallel()
	rec, proxy := startSnippetGateway(t)
	sc := map[string]string{"recipient": "+14155550177", "text": "Your code is 604211", "code": "604211"}
	runSnippet(t, "custom-phone-provider", "../../docs/auth0/custom-phone-provider-action.js", proxy.URL, "acme-snippet-key", sc)
	got := rec.last(t).Idempotency
	// The harness's notification: tenant-1, no correlation id, text delivery, otp_verify, as_text = as_voice = text.
	parts := strings.Join([]string{"tenant-1", "", sc["recipient"], "text", "otp_verify", sc["code"], sc["text"], sc["text"]}, "\x00")
	m := hmac.New(sha256.New, []byte("acme-snippet-key"))
	m.Write([]byte(parts))
	want := "auth0-cpp-" + hex.EncodeToString(m.Sum(nil))[:40]
	plain := sha256.Sum256([]byte(parts))
	if got != want || got == "auth0-cpp-"+hex.EncodeToString(plain[:])[:40] {
		t.Errorf("Idempotency-Key %q, want the HMAC %q", got, want)
	}
}
