package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway"
	ib "github.com/smsgate/smsgate/gateway/infobipcompat"
	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
	"github.com/smsgate/smsgate/providers/providertest"
	"github.com/smsgate/smsgate/providers/twilio/twiliotest"
)

// compatConfig: tenant acme reaches its route through Infobip then Twilio (both fakes); it may
// have reports pushed to $HOOKHOST, a loopback address (notify_private_addresses). Tenant tight has a rate limit of one message an hour.
const compatConfig = `
server: {request_timeout: 3s, public_url: "https://sms.example.com"}
storage: {driver: sqlite, path: $DIR/log.db}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}, denied_countries: [KP]}
tenants:
  - {name: acme, api_key: acme-ib-key, notify_hosts: ["$HOOKHOST"], notify_private_addresses: true}
  - {name: tight, api_key: tight-key, rate_limits: {per_tenant: 1/1h}}
  - {name: sender, api_key: sender-key, allow_sender: true}
  - {name: brand, api_key: brand-key, allowed_senders: [ACME, "+14155550100"]}
  - {name: apps, api_key: apps-key, client_ids: [acme-app]}
providers:
  - name: infobip-eu
    type: infobip
    base_url: $IB
    api_key: ib-key
    webhook_secret: hook-secret
    sender: GatewaySMS
    timeout: 500ms
  - name: twilio-us
    type: twilio
    account_sid: ` + twSID + `
    auth_token: tw-token
    from: "+15005550006"
    base_url: $TW
routes:
  - name: default
    providers: [infobip-eu, twilio-us]
`

type compatHarness struct {
	*harness
	ib    *infobiptest.Fake
	tw    *twiliotest.Fake
	hooks chan []byte
}

func startCompat(t *testing.T) *compatHarness {
	hooks := make(chan []byte, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hooks <- b
	}))
	t.Cleanup(hook.Close)
	cfg := strings.ReplaceAll(compatConfig, "$HOOKHOST", strings.TrimPrefix(hook.URL, "http://"))
	h, ib, tw := startOnFakes(t, cfg)
	return &compatHarness{harness: h, ib: ib, tw: tw, hooks: hooks}
}

func (c *compatHarness) call(method, path, auth, body string) response {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	checkAPI(c.t, method, c.url+path, req.Header, []byte(body), res, raw)
	r := response{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
	if err := json.Unmarshal(raw, &r.Body); err != nil {
		c.t.Errorf("%s %s: not JSON: %q", method, path, raw)
	}
	return r
}

func messagesOf(r response) []map[string]any {
	var out []map[string]any
	ms, _ := r.Body["messages"].([]any)
	for _, m := range ms {
		out = append(out, m.(map[string]any))
	}
	return out
}

func statusName(m map[string]any) string { return m["status"].(map[string]any)["name"].(string) }

// checkSpec validates an answer against Infobip's spec: documented statuses as they are, and the
// body of an undocumented one (429, 503) against the operation's 400 error schema.
func checkSpec(t *testing.T, spec *providertest.Spec, path, method string, r response) {
	t.Helper()
	status := map[int]string{200: "200", 400: "400", 401: "401", 404: "404"}[r.Status]
	if status == "" {
		status = "400"
	}
	if errs := spec.ResponseErrors(path, method, status, []byte(r.Raw)); len(errs) > 0 {
		t.Errorf("%s %s answer %d does not match the spec: %v\n%s", method, path, r.Status, errs, r.Raw)
	}
}

func TestInfobipCompatibleSends(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	voice := providertest.LoadSpec(t, "infobip-voice.openapi.json")

	t.Run("v2: each destination is one send; refused ones say why", func(t *testing.T) {
		r := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"bulkId":"bulk-7","messages":[{"destinations":[
			{"to":"14155550104","messageId":"my-ref-1"},{"to":"hello"},{"to":"+850 2 123 4567"}],"text":"Your code is 123456"}]}`)
		if r.Status != 200 || r.Body["bulkId"] != "bulk-7" {
			t.Fatalf("%d %s", r.Status, r.Raw)
		}
		ms := messagesOf(r)
		if len(ms) != 3 || statusName(ms[0]) != "PENDING_ACCEPTED" || statusName(ms[1]) != "REJECTED_DESTINATION" || statusName(ms[2]) != "REJECTED_COUNTRY_NOT_ALLOWED" {
			t.Fatalf("statuses: %s", r.Raw)
		}
		checkSpec(t, sms, "/sms/2/text/advanced", "POST", r)
		id := ms[0]["messageId"].(string)
		rec, err := c.app.Store().Get(context.Background(), "acme", id)
		if err != nil || rec.Source != "infobip-sms-v2" || rec.Reference != "my-ref-1" || rec.BulkID != "bulk-7" || rec.Provider != "infobip-eu" {
			t.Errorf("record %+v %v", rec, err)
		}
		// The route's sender, not the caller's: this tenant may not choose one.
		if got := c.ib.Requests()[len(c.ib.Requests())-1].Body["messages"].([]any)[0].(map[string]any)["sender"]; got != "GatewaySMS" {
			t.Errorf("sender %v", got)
		}
	})
	t.Run("v3 with Bearer, and the tenant's own sender where allowed", func(t *testing.T) {
		r := c.call("POST", "/sms/3/messages", "Bearer sender-key", `{"messages":[{"sender":"MyBrand","destinations":[{"to":"447911123456"}],"content":{"text":"Your code is 4321"}}]}`)
		if r.Status != 200 || statusName(messagesOf(r)[0]) != "PENDING_ACCEPTED" || messagesOf(r)[0]["destination"] != "447911123456" {
			t.Fatalf("%d %s", r.Status, r.Raw)
		}
		checkSpec(t, sms, "/sms/3/messages", "POST", r)
		if got := c.ib.Requests()[len(c.ib.Requests())-1].Body["messages"].([]any)[0].(map[string]any)["sender"]; got != "MyBrand" {
			t.Errorf("sender %v", got)
		}
		// A sender no provider takes in that form is refused before any provider sees it.
		before := len(c.ib.Requests())
		for _, bad := range []string{"My Brand Ltd 2026", "X", "Brand!"} {
			r := c.call("POST", "/sms/3/messages", "Bearer sender-key", `{"messages":[{"sender":"`+bad+`","destinations":[{"to":"447911123456"}],"content":{"text":"Your code is 4321"}}]}`)
			if r.Status != 400 || !strings.Contains(r.Raw, "refused as invalid") {
				t.Errorf("sender %q: %d %s", bad, r.Status, r.Raw)
			}
		}
		if n := len(c.ib.Requests()); n != before {
			t.Errorf("%d requests reached Infobip with a sender it would refuse", n-before)
		}
	})
	t.Run("a tenant that may not choose its sender sends as the route's, whatever it names", func(t *testing.T) {
		lastSender := func() any {
			return c.ib.Requests()[len(c.ib.Requests())-1].Body["messages"].([]any)[0].(map[string]any)["sender"]
		}
		r := c.call("POST", "/sms/3/messages", "Bearer acme-ib-key", `{"messages":[{"sender":"MyBrand","destinations":[{"to":"447911123456"}],"content":{"text":"Your code is 4321"}}]}`)
		if r.Status != 200 || lastSender() != "GatewaySMS" {
			t.Errorf("compat: %d %s, sent as %v", r.Status, r.Raw, lastSender())
		}
		n := c.send("acme-ib-key", `{"notification":{"recipient":"+447911123456","as_text":"Your code is 4321","code":"4321","from":"MyBrand"}}`)
		if n.Status != 200 || lastSender() != "GatewaySMS" {
			t.Errorf("native: %d %s, sent as %v", n.Status, n.Raw, lastSender())
		}
	})
	t.Run("a tenant with allowed_senders sends as those alone", func(t *testing.T) {
		// Tenant brand may send as ACME and as its own number; any other sender is refused before
		// a provider sees it, on both APIs, so it cannot send as another tenant's brand (here
		// MyBrand, which tenant sender uses) through the accounts they share.
		lastSender := func() any {
			return c.ib.Requests()[len(c.ib.Requests())-1].Body["messages"].([]any)[0].(map[string]any)["sender"]
		}
		for from, want := range map[string]string{"ACME": "ACME", "acme": "ACME", "14155550100": "+14155550100"} {
			r := c.call("POST", "/sms/3/messages", "Bearer brand-key", `{"messages":[{"sender":"`+from+`","destinations":[{"to":"447911123456"}],"content":{"text":"Your code is 4321"}}]}`)
			if r.Status != 200 || statusName(messagesOf(r)[0]) != "PENDING_ACCEPTED" {
				t.Fatalf("sender %q: %d %s", from, r.Status, r.Raw)
			}
			if got := lastSender(); got != want {
				t.Errorf("sender %q reached Infobip as %v, want %s", from, got, want)
			}
		}
		// Naming none is fine: the route's sender.
		r := c.call("POST", "/sms/3/messages", "Bearer brand-key", `{"messages":[{"destinations":[{"to":"447911123456"}],"content":{"text":"Your code is 4321"}}]}`)
		if r.Status != 200 || lastSender() != "GatewaySMS" {
			t.Errorf("no sender: %d %s, sent as %v", r.Status, r.Raw, lastSender())
		}
		before := len(c.ib.Requests())
		for _, other := range []string{"MyBrand", "ACME1", "+14155550101"} {
			r := c.call("POST", "/sms/3/messages", "Bearer brand-key", `{"messages":[{"sender":"`+other+`","destinations":[{"to":"447911123456"}],"content":{"text":"Your code is 4321"}}]}`)
			if r.Status != 400 {
				t.Errorf("compat, sender %q: %d %s", other, r.Status, r.Raw)
			}
			checkSpec(t, sms, "/sms/3/messages", "POST", r)
			n := c.send("brand-key", `{"notification":{"recipient":"+447911123456","as_text":"Your code is 4321","code":"4321","from":"`+other+`"}}`)
			if n.Status != 403 || errCode(n) != "sender_not_allowed" {
				t.Errorf("native, sender %q: %d %s", other, n.Status, n.Raw)
			}
			if strings.Contains(n.Raw, other) || strings.Contains(r.Raw, other) {
				t.Errorf("the refusal repeats the sender %q (it may be a phone number): %s %s", other, n.Raw, r.Raw)
			}
		}
		if n := len(c.ib.Requests()); n != before {
			t.Errorf("%d requests reached Infobip with a sender the tenant may not use", n-before)
		}
		// Beside a destination that is sent, a refused one says why.
		r = c.call("POST", "/sms/2/text/advanced", "App brand-key", `{"messages":[{"from":"MyBrand","destinations":[{"to":"447911123456"}],"text":"Your code is 4321"},{"from":"ACME","destinations":[{"to":"447911123457"}],"text":"Your code is 4321"}]}`)
		if ms := messagesOf(r); r.Status != 200 || len(ms) != 2 || statusName(ms[0]) != "REJECTED_SENDER" || statusName(ms[1]) != "PENDING_ACCEPTED" {
			t.Errorf("one refused sender beside one allowed: %d %s", r.Status, r.Raw)
		}
	})
	t.Run("a key held to its Auth0 applications", func(t *testing.T) {
		// Infobip's requests name no client id: a tenant held to client_ids sends nothing here,
		// and is told why, not that a country is refused.
		before := len(c.ib.Requests())
		r := c.call("POST", "/sms/2/text/advanced", "App apps-key", `{"messages":[{"destinations":[{"to":"447911123456"}],"text":"Your code is 4321"}]}`)
		if r.Status != 400 || !strings.Contains(r.Raw, "client_ids") {
			t.Errorf("compat send of a tenant held to client_ids: %d %s", r.Status, r.Raw)
		}
		checkSpec(t, sms, "/sms/2/text/advanced", "POST", r)
		if n := len(c.ib.Requests()); n != before {
			t.Errorf("%d requests reached Infobip", n-before)
		}
	})
	t.Run("Basic auth, text/query and TTS", func(t *testing.T) {
		basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("anyone:acme-ib-key"))
		r := c.call("GET", "/sms/1/text/query?username=x&password=acme-ib-key&to=14155550123,14155550124&text=Code%20777111", "", "")
		if r.Status != 200 || len(messagesOf(r)) != 2 {
			t.Errorf("text/query: %d %s", r.Status, r.Raw)
		}
		// A text whose query string decodes to a byte that is not UTF-8 reaches no provider.
		before := len(c.ib.Requests())
		r = c.call("GET", "/sms/1/text/query?password=acme-ib-key&to=14155550127&text=Code%FF%20777111", "", "")
		if r.Status != 400 || len(c.ib.Requests()) != before {
			t.Errorf("text/query not UTF-8: %d %s, %d requests reached Infobip", r.Status, r.Raw, len(c.ib.Requests())-before)
		}
		r = c.call("POST", "/tts/3/single", basic, `{"text":"Your code is 5 5 5","language":"en","to":"14155550125"}`)
		if r.Status != 200 || statusName(messagesOf(r)[0]) != "PENDING_ACCEPTED" {
			t.Fatalf("tts single: %d %s", r.Status, r.Raw)
		}
		checkSpec(t, voice, "/tts/3/single", "POST", r)
		if last := c.ib.Requests()[len(c.ib.Requests())-1]; last.Path != "/tts/3/advanced" {
			t.Errorf("a TTS request went to %s", last.Path)
		}
		r = c.call("POST", "/tts/3/advanced", basic, `{"messages":[{"destinations":[{"to":"14155550126"}],"text":"Your code is 1 2 3","language":"de"}]}`)
		if r.Status != 200 {
			t.Errorf("tts advanced: %d %s", r.Status, r.Raw)
		}
		checkSpec(t, voice, "/tts/3/advanced", "POST", r)
		// The call is made in the request's language, and every send so far gave back its
		// place among the replica's sends in flight (server.max_in_flight).
		last := c.ib.Requests()[len(c.ib.Requests())-1]
		if ms, _ := last.Body["messages"].([]any); len(ms) != 1 || ms[0].(map[string]any)["language"] != "de" {
			t.Errorf("tts advanced in German reached Infobip as %s", last.Raw)
		}
		if n := c.app.admission.total.Load(); n != 0 {
			t.Errorf("%d sends in flight after every answer", n)
		}
		// A voice text with SSML or a run of commas (pauses that lengthen a call at will) is
		// refused here too, and never reaches Infobip.
		before = len(c.ib.Requests())
		for _, text := range []string{`Hello <break time=\"10s\"/>`, "Hello,,,,,,,,,,,,,,,,,,,,"} {
			r = c.call("POST", "/tts/3/advanced", basic, `{"messages":[{"destinations":[{"to":"14155550127"}],"text":"`+text+`"}]}`)
			if r.Status != 400 {
				t.Errorf("tts %q: %d %s", text, r.Status, r.Raw)
			}
			checkSpec(t, voice, "/tts/3/advanced", "POST", r)
		}
		if n := len(c.ib.Requests()); n != before {
			t.Errorf("%d TTS requests with pauses reached Infobip", n-before)
		}
	})
	t.Run("nothing sent: non-2xx in Infobip's shapes", func(t *testing.T) {
		r := c.call("POST", "/sms/2/text/advanced", "App wrong", `{"messages":[{"destinations":[{"to":"14155550104"}],"text":"x"}]}`)
		if r.Status != 401 || !strings.Contains(r.Raw, `"messageId":"UNAUTHORIZED"`) {
			t.Errorf("wrong key: %d %s", r.Status, r.Raw)
		}
		checkSpec(t, sms, "/sms/2/text/advanced", "POST", r)
		r = c.call("POST", "/sms/3/messages", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"nope"}],"content":{"text":"x"}}]}`)
		if r.Status != 400 || r.Body["errorCode"] != "BAD_REQUEST" {
			t.Errorf("v3 all invalid: %d %s", r.Status, r.Raw)
		}
		checkSpec(t, sms, "/sms/3/messages", "POST", r)
		r = c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[`+strings.Repeat(`{"to":"14155550104"},`, 100)+`{"to":"1"}],"text":"x"}]}`)
		if r.Status != 400 || !strings.Contains(r.Raw, "at most 100 destinations") {
			t.Errorf("101 destinations: %d %s", r.Status, r.Raw)
		}
		ok := c.call("POST", "/sms/2/text/advanced", "App tight-key", `{"messages":[{"destinations":[{"to":"14155550150"}],"text":"Code 1"}]}`)
		r = c.call("POST", "/sms/2/text/advanced", "App tight-key", `{"messages":[{"destinations":[{"to":"14155550151"}],"text":"Code 2"}]}`)
		if ok.Status != 200 || r.Status != 429 || r.Header.Get("Retry-After") == "" {
			t.Errorf("rate limited: %d, then %d %s (Retry-After %q)", ok.Status, r.Status, r.Raw, r.Header.Get("Retry-After"))
		}
		checkSpec(t, sms, "/sms/2/text/advanced", "POST", r)
		c.ib.SetMode(infobiptest.Unavailable)
		c.tw.SetMode(twiliotest.Unavailable)
		r = c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550160"}],"text":"Code 3"}]}`)
		c.ib.SetMode(infobiptest.OK)
		c.tw.SetMode(twiliotest.OK)
		if r.Status != 503 || !strings.Contains(r.Raw, "SERVICE_UNAVAILABLE") {
			t.Errorf("providers down: %d %s", r.Status, r.Raw)
		}
		checkSpec(t, sms, "/sms/2/text/advanced", "POST", r)
		// Longer than Infobip takes: refused whole, before any send, so that 100 destinations
		// cannot write a long value 100 times into the message log every tenant shares.
		before := len(c.ib.Requests())
		for _, tc := range []struct{ path, body, field string }{
			{"/sms/2/text/advanced", `{"messages":[{"destinations":[{"to":"14155550170"},{"to":"14155550171"}],"text":"Code 4","callbackData":"` + strings.Repeat("c", 4001) + `"}]}`, "callbackData"},
			{"/sms/3/messages", `{"messages":[{"destinations":[{"to":"14155550172"}],"content":{"text":"Code 5"},"webhooks":{"callbackData":"` + strings.Repeat("c", 4001) + `"}}]}`, "callbackData"},
			{"/tts/3/advanced", `{"messages":[{"destinations":[{"to":"14155550173"}],"text":"Code 6","language":"en","callbackData":"` + strings.Repeat("c", 701) + `"}]}`, "callbackData"},
			{"/sms/2/text/advanced", `{"messages":[{"destinations":[{"to":"14155550174","messageId":"` + strings.Repeat("m", 201) + `"}],"text":"Code 7"}]}`, "messageId"},
			{"/sms/2/text/advanced", `{"bulkId":"` + strings.Repeat("b", 101) + `","messages":[{"destinations":[{"to":"14155550175"}],"text":"Code 8"}]}`, "bulkId"},
		} {
			r := c.call("POST", tc.path, "App acme-ib-key", tc.body)
			if r.Status != 400 || !strings.Contains(r.Raw, tc.field+" is longer than") {
				t.Errorf("%s with a long %s: %d %.200s", tc.path, tc.field, r.Status, r.Raw)
			}
		}
		if n := len(c.ib.Requests()); n != before {
			t.Errorf("%d sends went out for requests with fields over the limits", n-before)
		}
		r = c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550176"}],"text":"Code 9","callbackData":"`+strings.Repeat("c", 4000)+`"}]}`)
		if r.Status != 200 {
			t.Errorf("callbackData of exactly 4000: %d %.200s", r.Status, r.Raw)
		}
		r = c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550104"}],"text":"x","notifyUrl":"https://evil.example.com/steal"}]}`)
		if r.Status != 400 || !strings.Contains(r.Raw, "notify_hosts") {
			t.Errorf("notify URL on a host not allowed: %d %s", r.Status, r.Raw)
		}
	})
}

func report(id, group string) string {
	return reportBody(id, group, `{"pricePerMessage":0.01,"currency":"EUR"}`)
}

// reportBody is an Infobip delivery report of one message: group DELIVERED or UNDELIVERABLE,
// with price (a JSON price object) when it is not empty.
func reportBody(id, group, price string) string {
	st := map[string]string{"DELIVERED": `{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET"}`,
		"UNDELIVERABLE": `{"groupId":2,"groupName":"UNDELIVERABLE","id":9,"name":"UNDELIVERABLE_NOT_DELIVERED"}`,
		"REJECTED":      `{"groupId":5,"groupName":"REJECTED","id":6,"name":"REJECTED_NETWORK"}`}[group]
	if price != "" {
		st += `,"price":` + price
	}
	return `{"results":[{"messageId":"` + id + `","status":` + st + `}]}`
}

func TestInfobipCompatibleReportsAndLogs(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	r := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"bulkId":"b1","messages":[{"destinations":[{"to":"14155550170","messageId":"ref-a"},{"to":"14155550171"}],"text":"Code 9911","callbackData":"cb-1"}]}`)
	pushed := c.call("POST", "/sms/3/messages", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550172"}],"content":{"text":"Code 9912"},"webhooks":{"delivery":{"url":"`+"http://"+hostOfHook(c)+`/reports"},"callbackData":"cb-3"}}]}`)
	if r.Status != 200 || pushed.Status != 200 {
		t.Fatalf("sends: %s / %s", r.Raw, pushed.Raw)
	}
	ids := []string{messagesOf(r)[0]["messageId"].(string), messagesOf(r)[1]["messageId"].(string), messagesOf(pushed)[0]["messageId"].(string)}
	for i, id := range ids {
		group := "DELIVERED"
		if i == 1 {
			group = "UNDELIVERABLE"
		}
		if rr := c.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", report(id, group)); rr.Status != 200 {
			t.Fatalf("dlr: %d %s", rr.Status, rr.Raw)
		}
	}
	// Pushed to the notify URL, in v3's shape, with the caller's callbackData.
	select {
	case b := <-c.hooks:
		if !strings.Contains(string(b), `"messageId":"`+ids[2]+`"`) || !strings.Contains(string(b), `"callbackData":"cb-3"`) || !strings.Contains(string(b), "DELIVERED_TO_HANDSET") ||
			!strings.Contains(string(b), `"messageCount":1`) || strings.Contains(string(b), "smsCount") {
			t.Errorf("pushed report: %s", b)
		}
		if errs := sms.RequestErrors("webhook:receive-outbound-sms-message-reports-v3", "POST", b); len(errs) > 0 {
			t.Errorf("pushed report does not match the spec's webhook: %v\n%s", errs, b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no report pushed to the notify URL")
	}
	// Pulled once (the pushed one is not pulled).
	got := c.call("GET", "/sms/1/reports?bulkId=b1&limit=10", "App acme-ib-key", "")
	res, _ := got.Body["results"].([]any)
	if got.Status != 200 || len(res) != 2 || !strings.Contains(got.Raw, `"callbackData":"cb-1"`) || !strings.Contains(got.Raw, "UNDELIVERABLE_NOT_DELIVERED") {
		t.Fatalf("reports: %d %s", got.Status, got.Raw)
	}
	checkSpec(t, sms, "/sms/1/reports", "GET", got)
	if again := c.call("GET", "/sms/1/reports", "App acme-ib-key", ""); !strings.Contains(again.Raw, `"results":[]`) {
		t.Errorf("reports handed out twice: %s", again.Raw)
	}
	// Logs, tenant-scoped, by the caller's reference too.
	logs := c.call("GET", "/sms/1/logs?messageId=ref-a", "App acme-ib-key", "")
	if rs, _ := logs.Body["results"].([]any); len(rs) != 1 || !strings.Contains(logs.Raw, ids[0]) {
		t.Errorf("logs by reference: %s", logs.Raw)
	}
	checkSpec(t, sms, "/sms/1/logs", "GET", logs)
	v3 := c.call("GET", "/sms/3/logs?bulkId=b1&generalStatus=DELIVERED", "App acme-ib-key", "")
	if rs, _ := v3.Body["results"].([]any); len(rs) != 1 {
		t.Errorf("v3 logs: %s", v3.Raw)
	}
	checkSpec(t, sms, "/sms/3/logs", "GET", v3)
	if other := c.call("GET", "/sms/1/logs", "App sender-key", ""); strings.Contains(other.Raw, ids[0]) {
		t.Errorf("another tenant sees acme's logs: %s", other.Raw)
	}
	// Each API's push in its own shape: v3's counts messageCount, v2's smsCount (either shape
	// passes the other's webhook schema, so the field itself is checked).
	v2 := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550173"}],"text":"Code 9913","notifyUrl":"http://`+hostOfHook(c)+`/reports"}]}`)
	if v2.Status != 200 {
		t.Fatalf("v2 send: %s", v2.Raw)
	}
	v2id := messagesOf(v2)[0]["messageId"].(string)
	if rr := c.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", report(v2id, "DELIVERED")); rr.Status != 200 {
		t.Fatalf("dlr: %d %s", rr.Status, rr.Raw)
	}
	select {
	case b := <-c.hooks:
		if !strings.Contains(string(b), `"messageId":"`+v2id+`"`) || !strings.Contains(string(b), `"smsCount":1`) || strings.Contains(string(b), "messageCount") {
			t.Errorf("pushed report of a v2 message: %s", b)
		}
		if errs := sms.RequestErrors("webhook:receive-outbound-sms-message-reports", "POST", b); len(errs) > 0 {
			t.Errorf("pushed report does not match the spec's v2 webhook: %v\n%s", errs, b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no report pushed to the v2 message's notifyUrl")
	}
}

// TestInfobipCompatibleCountsParts: a text sent as two parts is counted as two in the send's
// answer (v3 details.messageCount), the reports and the logs (smsCount, messageCount), and priced
// a part as Infobip prices it: the pricePerMessage Infobip's report brought in is the one given
// out, while the message log keeps the message's price, both parts.
func TestInfobipCompatibleCountsParts(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	text := strings.Repeat("Code 5511 ", 17) // 170 GSM characters: two parts
	r := c.call("POST", "/sms/3/messages", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550190"}],"content":{"text":"`+text+`"}}]}`)
	if r.Status != 200 || !strings.Contains(r.Raw, `"details":{"messageCount":2}`) {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	checkSpec(t, sms, "/sms/3/messages", "POST", r)
	id := messagesOf(r)[0]["messageId"].(string)
	// Infobip reports the parts it sent (smsCount) and the price of one.
	dlr := `{"results":[{"messageId":"` + id + `","smsCount":2,"price":{"pricePerMessage":0.01,"currency":"EUR"},"status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET"}}]}`
	if rr := c.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", dlr); rr.Status != 200 {
		t.Fatalf("dlr: %d %s", rr.Status, rr.Raw)
	}
	if rec, err := c.app.Store().Get(t.Context(), "acme", id); err != nil || math.Abs(rec.Price-0.02) > 1e-9 {
		t.Fatalf("the record's price: %v %v, want 0.02 for two parts", rec, err)
	}
	for _, tc := range []struct{ path, count string }{
		{"/sms/3/reports", `"messageCount":2`},
		{"/sms/1/logs", `"smsCount":2`},
		{"/sms/3/logs", `"messageCount":2`},
	} {
		got := c.call("GET", tc.path, "App acme-ib-key", "")
		if got.Status != 200 || !strings.Contains(got.Raw, id) || !strings.Contains(got.Raw, tc.count) || !strings.Contains(got.Raw, `"pricePerMessage":0.01,`) {
			t.Errorf("%s: %d %s, want %s at 0.01 a part", tc.path, got.Status, got.Raw, tc.count)
		}
		checkSpec(t, sms, tc.path, "GET", got)
	}
	// A call is one message, however many minutes its text takes read aloud (its parts, against
	// voice prices).
	speech := strings.Repeat("Please listen carefully. ", 40) // 1,000 characters: two minutes
	v := c.call("POST", "/tts/3/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550191"}],"text":"`+speech+`","language":"en"}]}`)
	if v.Status != 200 {
		t.Fatalf("call: %d %s", v.Status, v.Raw)
	}
	call := messagesOf(v)[0]["messageId"].(string)
	if rec, err := c.app.Store().Get(t.Context(), "acme", call); err != nil || rec.Parts != 2 {
		t.Fatalf("the call's record: %+v %v, want 2 minutes", rec, err)
	}
	logs := c.call("GET", "/sms/1/logs?limit=1", "App acme-ib-key", "")
	if !strings.Contains(logs.Raw, call) || !strings.Contains(logs.Raw, `"smsCount":1`) {
		t.Errorf("the call's log: %s, want an smsCount of 1", logs.Raw)
	}
}

// TestInfobipCompatibleConversionTracking: POST /ct/1/log/end/{messageId}, Infobip's conversion
// tracking, reports a message's code used as POST /v1/messages/{id}/verified does, by smsgate's
// id or by the caller's own messageId, for the caller's tenant only; answers in Infobip's shapes.
func TestInfobipCompatibleConversionTracking(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	r := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550180"},{"to":"14155550181","messageId":"conv-ref"},{"to":"14155550182"}],"text":"Code 5511"}]}`)
	if r.Status != 200 || len(messagesOf(r)) != 3 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	ids := []string{messagesOf(r)[0]["messageId"].(string), messagesOf(r)[1]["messageId"].(string), messagesOf(r)[2]["messageId"].(string)}
	verified := func(id string) bool {
		t.Helper()
		rec, err := c.app.Store().Get(t.Context(), "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		return rec.ProviderStatus == verifiedStatus && rec.Status == gateway.StatusDelivered
	}
	processKey := regexp.MustCompile(`^\{"processKey":"[0-9A-F]{32}"\}$`)
	for _, tc := range []struct{ name, path, id string }{
		{"by smsgate's id", ids[0], ids[0]},
		{"by the caller's messageId", "conv-ref", ids[1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // a second report of the same code is answered the same
				v := c.call("POST", "/ct/1/log/end/"+tc.path, "App acme-ib-key", "")
				if v.Status != 200 || !processKey.MatchString(v.Raw) {
					t.Fatalf("%d %s", v.Status, v.Raw)
				}
				checkSpec(t, sms, "/ct/1/log/end/"+tc.path, "POST", v)
			}
			if !verified(tc.id) {
				t.Error("the message is not recorded as verified")
			}
		})
	}
	// Two messages reported used, twice each: two codes used.
	if n := testutil.ToFloat64(c.app.MetricSet().CodesUsed.WithLabelValues("acme")); n != 2 {
		t.Errorf("smsgate_codes_used_total{tenant=acme} = %v, want 2", n)
	}
	t.Run("another tenant's message, or none, is not found", func(t *testing.T) {
		for _, tc := range []struct{ key, path string }{{"App sender-key", ids[2]}, {"App acme-ib-key", "msg_nope"}, {"Bearer sender-key", "conv-ref"},
			{"App acme-ib-key", strings.Repeat("r", 201)}} {
			v := c.call("POST", "/ct/1/log/end/"+tc.path, tc.key, "")
			if v.Status != 404 || !strings.Contains(v.Raw, `"messageId":"NOT_FOUND"`) {
				t.Errorf("%s %s: %d %s", tc.key, tc.path, v.Status, v.Raw)
			}
			checkSpec(t, sms, "/ct/1/log/end/"+tc.path, "POST", v)
		}
		if verified(ids[2]) {
			t.Error("another tenant's call verified acme's message")
		}
		if n := testutil.ToFloat64(c.app.MetricSet().CodesUsed.WithLabelValues("sender")) + testutil.ToFloat64(c.app.MetricSet().CodesUsed.WithLabelValues("acme")); n != 2 {
			t.Errorf("calls that found no message counted codes used: %v in all, want acme's 2", n)
		}
		if v := c.call("POST", "/ct/1/log/end/"+ids[2], "App wrong-key", ""); v.Status != 401 {
			t.Errorf("a wrong key: %d %s", v.Status, v.Raw)
		}
	})
	t.Run("a message no provider accepted has no code to use", func(t *testing.T) {
		c.ib.SetMode(infobiptest.Unavailable)
		c.tw.SetMode(twiliotest.Unavailable)
		failed := c.send("acme-ib-key", `{"recipient":"+14155550183","text":"Your code is 5512","context":{}}`)
		c.ib.SetMode(infobiptest.OK)
		c.tw.SetMode(twiliotest.OK)
		id, _ := failed.Body["id"].(string)
		if failed.Status < 500 || id == "" {
			t.Fatalf("send: %d %s", failed.Status, failed.Raw)
		}
		v := c.call("POST", "/ct/1/log/end/"+id, "App acme-ib-key", "")
		if v.Status != 400 || !strings.Contains(v.Raw, "no provider accepted") {
			t.Errorf("%d %s", v.Status, v.Raw)
		}
		checkSpec(t, sms, "/ct/1/log/end/"+id, "POST", v)
	})
}

// TestInfobipCompatibleSendWithLanguageTable: a v2 message naming a national language table and
// a transliteration, as Infobip's spec has them (its Turkish example), is sent (through the
// route's providers, as any text); it used to be refused whole as a body of the wrong shape.
func TestInfobipCompatibleSendWithLanguageTable(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	body := `{"messages":[{"destinations":[{"to":"14155550104"}],"text":"Doğrulama kodunuz 123456","language":{"languageCode":"TR"},"transliteration":"TURKISH"}]}`
	if errs := sms.RequestErrors("/sms/2/text/advanced", "POST", []byte(body)); len(errs) > 0 {
		t.Fatalf("the test's request is not Infobip's: %v", errs)
	}
	r := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", body)
	if ms := messagesOf(r); r.Status != 200 || len(ms) != 1 || statusName(ms[0]) != "PENDING_ACCEPTED" {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	checkSpec(t, sms, "/sms/2/text/advanced", "POST", r)
}

// TestInfobipCompatiblePreview: POST /sms/1/preview answers Infobip's own examples as Infobip's
// spec has them (one part and 100 characters left; the Turkish text in two UCS-2 parts, 36 left),
// with the one configuration smsgate sends (a languageCode it does not apply adds no preview),
// sends nothing, and refuses a body without text and a wrong key in Infobip's shapes.
func TestInfobipCompatiblePreview(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	before, err := c.app.Store().List(t.Context(), store.Query{Tenant: "acme", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	turkish := "Mesaj gönderimi yapmadan önce önizleme seçeneğini kullanmanız doğru karar vermenize yardımcı olur."
	for _, tc := range []struct {
		body, text  string
		count, left float64
	}{
		{`{"text":"Let's see how many characters remain unused in this message."}`, "Let's see how many characters remain unused in this message.", 1, 100},
		{`{"text":"` + turkish + `","languageCode":"TR"}`, turkish, 2, 36},
		{`{"text":"Your code is {123456}","transliteration":"GREEK"}`, "Your code is {123456}", 1, 137},
		{`{"text":"` + strings.Repeat("ж", 71) + `"}`, strings.Repeat("ж", 71), 2, 63},
	} {
		if errs := sms.RequestErrors("/sms/1/preview", "POST", []byte(tc.body)); len(errs) > 0 {
			t.Fatalf("the test's request is not Infobip's: %v", errs)
		}
		r := c.call("POST", "/sms/1/preview", "App acme-ib-key", tc.body)
		checkSpec(t, sms, "/sms/1/preview", "POST", r)
		want := map[string]any{"originalText": tc.text, "previews": []any{map[string]any{"textPreview": tc.text, "messageCount": tc.count,
			"charactersRemaining": tc.left, "configuration": map[string]any{}}}}
		if r.Status != 200 || !cmp.Equal(r.Body, want) {
			t.Errorf("%s: %d %s\n%s", tc.body, r.Status, r.Raw, cmp.Diff(want, r.Body))
		}
	}
	for _, body := range []string{`{}`, `{"text":""}`, `{"text":7}`, `[]`, "{\"text\":\"\xff\"}"} {
		r := c.call("POST", "/sms/1/preview", "App acme-ib-key", body)
		if r.Status != 400 || !strings.Contains(r.Raw, `"messageId":"BAD_REQUEST"`) {
			t.Errorf("%q: %d %s", body, r.Status, r.Raw)
		}
		checkSpec(t, sms, "/sms/1/preview", "POST", r)
	}
	if r := c.call("POST", "/sms/1/preview", "App wrong-key", `{"text":"hi"}`); r.Status != 401 {
		t.Errorf("a wrong key: %d %s", r.Status, r.Raw)
	}
	after, err := c.app.Store().List(t.Context(), store.Query{Tenant: "acme", Limit: 100})
	if err != nil || len(after) != len(before) {
		t.Errorf("previews wrote %d records (%v)", len(after)-len(before), err)
	}
}

func hostOfHook(c *compatHarness) string {
	rt := c.app.rt.Load()
	for _, tn := range rt.byName {
		for h := range tn.notifyHosts {
			return h
		}
	}
	return ""
}

// TestInfobipCompatiblePullIsOnce: callers polling at once get each report once.
func TestInfobipCompatiblePullIsOnce(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	var ids []string
	for i := range 20 {
		r := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"1415555`+strings.Repeat("0", 3-len(itoa(i)))+itoa(i)+`0"}],"text":"Code 5500`+itoa(i)+`"}]}`)
		ids = append(ids, messagesOf(r)[0]["messageId"].(string))
	}
	for _, id := range ids {
		c.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", report(id, "DELIVERED"))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.call("GET", "/sms/3/reports?limit=7", "App acme-ib-key", "")
			mu.Lock()
			defer mu.Unlock()
			for _, id := range resultIDs(r) {
				seen[id]++
			}
		}()
	}
	wg.Wait()
	for _, id := range resultIDs(c.call("GET", "/sms/3/reports?limit=100", "App acme-ib-key", "")) {
		seen[id]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("report %s handed out %d times", id, seen[id])
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// resultIDs is the messageId of each of a reports or logs answer's results, in order.
func resultIDs(r response) []string {
	var out []string
	for _, x := range r.Body["results"].([]any) {
		out = append(out, x.(map[string]any)["messageId"].(string))
	}
	return out
}

// TestNotifyQueuesArePerTenant: a tenant whose notify endpoint hangs holds at most notifyWorkers
// pushes in flight and fills only its own queue (the rest of its pushes are dropped, counted and
// left to fall due again); another tenant's report is pushed at once. With one queue and two workers shared by
// every tenant, the first tenant's endpoint held everyone's pushes.
func TestNotifyQueuesArePerTenant(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	release := make(chan struct{})
	var inFlight, most atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	got := make(chan string, 1)
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer fast.Close()
	n := newNotifier(c.app)
	n.private.Timeout, n.backoff = time.Minute, nil
	n.client = n.private            // both tenants' endpoints are on loopback; mallory is in no config
	defer n.close(10 * time.Second) // after the release below: the queued pushes then end at once
	defer close(release)
	dropped := testutil.ToFloat64(c.app.metrics.Notify.WithLabelValues("mallory", "dropped"))
	for i := range notifyQueueMax + 100 {
		n.push(&store.Record{ID: fmt.Sprint("mallory-", i), Tenant: "mallory", Source: "infobip-sms-v3", NotifyURL: slow.URL, Status: gateway.StatusDelivered})
	}
	for end := time.Now().Add(10 * time.Second); inFlight.Load() < notifyWorkers; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d of mallory's pushes reached its endpoint, want %d", inFlight.Load(), notifyWorkers)
		}
	}
	n.push(&store.Record{ID: "acme-1", Tenant: "acme", Source: "infobip-sms-v3", NotifyURL: fast.URL, Status: gateway.StatusDelivered})
	select {
	case b := <-got:
		if !strings.Contains(b, `"messageId":"acme-1"`) {
			t.Errorf("pushed %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acme's report waited behind mallory's hanging endpoint")
	}
	if m := most.Load(); m != notifyWorkers {
		t.Errorf("mallory had %d pushes in flight, want %d", m, notifyWorkers)
	}
	if d := testutil.ToFloat64(c.app.metrics.Notify.WithLabelValues("mallory", "dropped")) - dropped; d < 100-notifyWorkers || d > 100 {
		t.Errorf("%v of mallory's pushes dropped, want about 100", d)
	}
}

// TestInfobipCompatibleIdempotencyKey: an Infobip-compatible request sent again under the same
// Idempotency-Key is answered as the first time, each destination by its own record, without a
// second send; the key holds for each destination on its own (the first destination's record is
// not the second's). Another key sends again.
func TestInfobipCompatibleIdempotencyKey(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	body := `{"messages":[{"destinations":[{"to":"14155550181"},{"to":"14155550182"}],"text":"Your code is 554433"}]}`
	send := func(key string) []string {
		t.Helper()
		r := c.do("POST", "/sms/2/text/advanced", "", body, "Authorization", "App acme-ib-key", "Idempotency-Key", key)
		if r.Status != 200 {
			t.Fatalf("send under %q: %d %s", key, r.Status, r.Raw)
		}
		var ids []string
		for _, m := range messagesOf(r) {
			ids = append(ids, m["messageId"].(string))
		}
		return ids
	}
	first := send("ib-retry-1")
	sent := len(c.ib.Requests())
	if len(first) != 2 || first[0] == first[1] {
		t.Fatalf("message ids %v, want two", first)
	}
	if again := send("ib-retry-1"); !slices.Equal(again, first) || len(c.ib.Requests()) != sent {
		t.Errorf("the same key again: ids %v (first %v), %d more sends", again, first, len(c.ib.Requests())-sent)
	}
	if other := send("ib-retry-2"); slices.Contains(first, other[0]) || slices.Contains(first, other[1]) || len(c.ib.Requests()) == sent {
		t.Errorf("another key: ids %v (first %v), %d more sends", other, first, len(c.ib.Requests())-sent)
	}
}

// TestInfobipCompatibleMakesUpABulkIdForSeveralDestinations: as Infobip does, a request of
// several destinations (one message or several) that names no bulkId gets one made up, returned
// in the answer and kept on every destination's record, so the caller can poll reports and logs
// by it. A request of one destination gets none. Under an Idempotency-Key a retry is answered
// with the same bulkId (and is not a conflict); without one every request gets its own.
func TestInfobipCompatibleMakesUpABulkIdForSeveralDestinations(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	voice := providertest.LoadSpec(t, "infobip-voice.openapi.json")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("x:acme-ib-key"))
	bulkOf := func(r response, what string) string {
		t.Helper()
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", what, r.Status, r.Raw)
		}
		b, _ := r.Body["bulkId"].(string)
		for _, m := range messagesOf(r) {
			rec, err := c.app.Store().Get(context.Background(), "acme", m["messageId"].(string))
			if err != nil || rec.BulkID != b {
				t.Errorf("%s: the record of %v has bulk %q (%v), the answer %q", what, m["messageId"], rec.BulkID, err, b)
			}
		}
		return b
	}
	v2 := `{"messages":[{"destinations":[{"to":"14155550191"},{"to":"14155550192"}],"text":"Your code is 991"}]}`
	r := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", v2)
	made := bulkOf(r, "v2, two destinations")
	checkSpec(t, sms, "/sms/2/text/advanced", "POST", r)
	if !strings.HasPrefix(made, "bulk_") || len(made) != 33 {
		t.Errorf("made-up bulkId %q", made)
	}
	logs := c.call("GET", "/sms/1/logs?bulkId="+made, "App acme-ib-key", "")
	want := []string{messagesOf(r)[0]["messageId"].(string), messagesOf(r)[1]["messageId"].(string)}
	if diff := cmp.Diff(want, resultIDs(logs), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("logs by the made-up bulkId (-want +got):\n%s", diff)
	}
	if again := bulkOf(c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", v2), "v2 again"); again == "" || again == made {
		t.Errorf("a second request without an Idempotency-Key: bulkId %q, the first %q", again, made)
	}
	if b := bulkOf(c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550193"}],"text":"Code 1"}]}`), "v2, one destination"); b != "" {
		t.Errorf("one destination: bulkId %q, want none", b)
	}
	r = c.call("POST", "/sms/3/messages", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550194"}],"content":{"text":"Code 2"}},{"destinations":[{"to":"14155550195"}],"content":{"text":"Code 3"}}]}`)
	if b := bulkOf(r, "v3, two messages"); !strings.HasPrefix(b, "bulk_") {
		t.Errorf("v3, two messages: bulkId %q", b)
	}
	checkSpec(t, sms, "/sms/3/messages", "POST", r)
	if b := bulkOf(c.call("GET", "/sms/1/text/query?password=acme-ib-key&to=14155550196,14155550197&text=Code%204", "", ""), "query, two destinations"); !strings.HasPrefix(b, "bulk_") {
		t.Errorf("query, two destinations: bulkId %q", b)
	}
	r = c.call("POST", "/tts/3/advanced", basic, `{"messages":[{"destinations":[{"to":"14155550198"},{"to":"14155550199"}],"text":"Your code is 5 6"}]}`)
	if b := bulkOf(r, "TTS, two destinations"); !strings.HasPrefix(b, "bulk_") {
		t.Errorf("TTS, two destinations: bulkId %q", b)
	}
	checkSpec(t, voice, "/tts/3/advanced", "POST", r)

	keyedAs := func(apiKey, key string) response {
		t.Helper()
		return c.do("POST", "/sms/2/text/advanced", "", `{"messages":[{"destinations":[{"to":"14155550188"},{"to":"14155550189"}],"text":"Code 5"}]}`,
			"Authorization", "App "+apiKey, "Idempotency-Key", key)
	}
	keyed := func(key string) string { t.Helper(); return bulkOf(keyedAs("acme-ib-key", key), "under "+key) }
	first, sent := keyed("bulk-retry-1"), len(c.ib.Requests())
	if again := keyed("bulk-retry-1"); again != first || !strings.HasPrefix(first, "bulk_") || len(first) != 33 || len(c.ib.Requests()) != sent {
		t.Errorf("a retry under the same key: bulkId %q, the first %q, %d more sends", again, first, len(c.ib.Requests())-sent)
	}
	if other := keyed("bulk-retry-2"); other == first {
		t.Errorf("another key: the same bulkId %q", other)
	}
	if r := keyedAs("sender-key", "bulk-retry-1"); r.Status != 200 || r.Body["bulkId"] == first {
		t.Errorf("another tenant under the same key: %d %s, the same bulkId as acme's %q", r.Status, r.Raw, first)
	}
}

// TestANotifyURLMustBeAPlainHTTPURLOfAListedHost: a notifyUrl on a listed host is still refused
// with credentials in it, in another scheme, or unparsable, before anything is sent.
func TestANotifyURLMustBeAPlainHTTPURLOfAListedHost(t *testing.T) {
	t.Parallel()
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer hook.Close()
	host := strings.TrimPrefix(hook.URL, "http://")
	c := &compatHarness{}
	// Listed: the hook's host:port (that port only) and hooks.example (any port), in any case.
	h, ib, _ := startOnFakes(t, strings.ReplaceAll(compatConfig, `"$HOOKHOST"`, `"`+host+`", Hooks.EXAMPLE`))
	c.harness, c.ib = h, ib
	otherPort := "http://" + hook.Listener.Addr().(*net.TCPAddr).IP.String() + ":1/r"
	for _, u := range []string{"https://user:pw@" + host + "/r", "ftp://" + host + "/r", "http://" + host + "%zz/r", "//" + host + "/r", otherPort, "https://hooks.example.org/r"} {
		r := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550183"}],"text":"x","notifyUrl":"`+u+`"}]}`)
		if r.Status != 400 || !strings.Contains(r.Raw, "notify_hosts") {
			t.Errorf("notifyUrl %s: %d %s", u, r.Status, r.Raw)
		}
	}
	for _, u := range []string{"http://" + host + "/r", "https://HOOKS.Example/r", "https://hooks.EXAMPLE:8443/r"} {
		if r := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550184"}],"text":"x","notifyUrl":"`+u+`"}]}`); r.Status != 200 {
			t.Errorf("notifyUrl %s: %d %s", u, r.Status, r.Raw)
		}
	}
	if n := len(ib.Requests()); n != 3 {
		t.Errorf("%d sends, want the 3 with a notify URL allowed", n)
	}
}

// TestInfobipCompatibleLogsAndReportsFilters: GET /sms/{1,3}/logs narrows by generalStatus (any
// case; EXPIRED is undeliverable; REJECTED is every log whose status is in that group: failed at
// send, and the destination refused by a provider, which the filter once left out), sentSince and sentUntil, messageId,
// bulkId and limit, and lists only messages sent through the Infobip-compatible API; GET /sms/1/reports
// narrows by messageId and bulkId and hands out 50 by default.
func TestInfobipCompatibleLogsAndReportsFilters(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	now := time.Now().UTC().Truncate(time.Second)
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	insert := func(r *store.Record) {
		t.Helper()
		r.Country, r.MessageType, r.Route, r.Recipient = "US", "sms", "default", "+14155550199"
		if r.Tenant == "" {
			r.Tenant = "acme"
		}
		if r.UpdatedAt.IsZero() {
			r.UpdatedAt = r.CreatedAt
		}
		if err := c.app.Store().Insert(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	delivered := at(100 * time.Minute)
	insert(&store.Record{ID: "log-pending", Source: "infobip-sms-v2", BulkID: "bk", Status: gateway.StatusSent, CreatedAt: at(3 * time.Hour)})
	insert(&store.Record{ID: "log-delivered", Source: "infobip-sms-v3", Status: gateway.StatusDelivered, CreatedAt: at(2 * time.Hour), DeliveredAt: &delivered})
	insert(&store.Record{ID: "log-undelivered", Source: "infobip-sms-v2", Status: gateway.StatusUndelivered, CreatedAt: at(time.Hour), DeliveredAt: &delivered})
	insert(&store.Record{ID: "log-failed", Source: "infobip-sms-v2", Status: gateway.StatusFailed, CreatedAt: at(30 * time.Minute)})
	insert(&store.Record{ID: "log-refused", Source: "infobip-sms-v2", Status: gateway.StatusRejected, CreatedAt: at(25 * time.Minute), DeliveredAt: &delivered})
	insert(&store.Record{ID: "log-own-api", Status: gateway.StatusDelivered, CreatedAt: at(20 * time.Minute)})
	insert(&store.Record{ID: "log-other-tenant", Tenant: "sender", Source: "infobip-sms-v2", Status: gateway.StatusSent, CreatedAt: at(10 * time.Minute)})
	ids := func(r response) []string {
		t.Helper()
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Raw)
		}
		return resultIDs(r)
	}
	infobipTime := func(ago time.Duration) string { return strings.ReplaceAll(at(ago).Format(ib.TimeLayout), "+", "%2B") }
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"log-refused", "log-failed", "log-undelivered", "log-delivered", "log-pending"}},
		{"generalStatus=pending", []string{"log-pending"}},
		{"generalStatus=DELIVERED", []string{"log-delivered"}},
		{"generalStatus=UNDELIVERABLE", []string{"log-undelivered"}},
		{"generalStatus=Expired", []string{"log-undelivered"}},
		{"generalStatus=REJECTED", []string{"log-refused", "log-failed"}},
		{"sentSince=" + infobipTime(90*time.Minute), []string{"log-refused", "log-failed", "log-undelivered"}},
		{"sentUntil=" + infobipTime(90*time.Minute), []string{"log-delivered", "log-pending"}},
		{"sentSince=" + infobipTime(150*time.Minute) + "&sentUntil=" + infobipTime(45*time.Minute), []string{"log-undelivered", "log-delivered"}},
		{"messageId=log-delivered", []string{"log-delivered"}},
		{"bulkId=bk", []string{"log-pending"}},
		{"limit=2", []string{"log-refused", "log-failed"}},
		{"limit=0", []string{"log-refused", "log-failed", "log-undelivered", "log-delivered", "log-pending"}},
	} {
		for _, version := range []string{"1", "3"} {
			if diff := cmp.Diff(tc.want, ids(c.call("GET", "/sms/"+version+"/logs?"+tc.query, "App acme-ib-key", ""))); diff != "" {
				t.Errorf("/sms/%s/logs?%s (-want +got):\n%s", version, tc.query, diff)
			}
		}
	}
	for _, q := range []string{"generalStatus=SENT", "sentSince=yesterday", "sentUntil=2026-11-30"} {
		if r := c.call("GET", "/sms/1/logs?"+q, "App acme-ib-key", ""); r.Status != 400 || !strings.Contains(r.Raw, "BAD_REQUEST") {
			t.Errorf("/sms/1/logs?%s: %d %s", q, r.Status, r.Raw)
		}
	}

	// Reports: eight final ones to pull.
	for i := range 8 {
		bulk := "rb-rest"
		switch i {
		case 0:
			bulk = "rb-first"
		case 1:
			bulk = "rb-second"
		}
		insert(&store.Record{ID: fmt.Sprintf("rep-%d", i), Source: "infobip-sms-v2", BulkID: bulk, Status: gateway.StatusDelivered, CreatedAt: at(time.Duration(90-i) * time.Minute), DeliveredAt: &now})
	}
	if diff := cmp.Diff([]string{"rep-5"}, ids(c.call("GET", "/sms/1/reports?messageId=rep-5", "App acme-ib-key", ""))); diff != "" {
		t.Errorf("reports by messageId (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"rep-1"}, ids(c.call("GET", "/sms/1/reports?bulkId=rb-second", "App acme-ib-key", ""))); diff != "" {
		t.Errorf("reports by bulkId (-want +got):\n%s", diff)
	}
	// The rest, oldest first, up to the default 50: the undelivered and failed logs' messages too.
	want := []string{"log-delivered", "rep-0", "rep-2", "rep-3", "rep-4", "rep-6", "rep-7", "log-undelivered", "log-failed", "log-refused"}
	if diff := cmp.Diff(want, ids(c.call("GET", "/sms/1/reports", "App acme-ib-key", ""))); diff != "" {
		t.Errorf("reports without a filter (-want +got):\n%s", diff)
	}

	// The caller's limit when it is a positive number, at most 1000 (not the default: all 101 of
	// a bulk of 101); otherwise the default, 50.
	for i := range 101 {
		insert(&store.Record{ID: fmt.Sprintf("many-%03d", i), Source: "infobip-sms-v2", BulkID: "many", Status: gateway.StatusSent, CreatedAt: at(time.Duration(i) * time.Second)})
	}
	for limit, want := range map[string]int{"": 50, "&limit=abc": 50, "&limit=0": 50, "&limit=-3": 50, "&limit=7": 7, "&limit=1000": 101, "&limit=5000": 101} {
		if n := len(ids(c.call("GET", "/sms/1/logs?bulkId=many"+limit, "App acme-ib-key", ""))); n != want {
			t.Errorf("/sms/1/logs?bulkId=many%s: %d logs, want %d", limit, n, want)
		}
	}
}

// TestCompatMessageIsTheRecordAsInfobipTellsIt: a report or log line gives the number without
// its "+", the price and currency reported, when it was sent, and when it was done: its final
// report's time, or, for a message that failed at send, when the last provider gave up; a message
// still pending is not done.
func TestCompatMessageIsTheRecordAsInfobipTellsIt(t *testing.T) {
	t.Parallel()
	sent := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	reported, gaveUp := sent.Add(time.Minute), sent.Add(2*time.Second)
	for _, tc := range []struct {
		name string
		rec  store.Record
		want ib.Message
	}{
		{"delivered", store.Record{ID: "m1", BulkID: "b", Recipient: "+4474001****", CallbackData: "cb", Status: gateway.StatusDelivered, Price: 0.04, Currency: "EUR",
			CreatedAt: sent, UpdatedAt: reported.Add(time.Hour), DeliveredAt: &reported, ProviderStatus: "DELIVERED_TO_HANDSET", Source: ib.SMSv3},
			ib.Message{ID: "m1", BulkID: "b", To: "4474001****", CallbackData: "cb", Status: gateway.StatusDelivered, Price: 0.04, Currency: "EUR", SentAt: sent, DoneAt: reported}},
		{"failed at send", store.Record{ID: "m2", Recipient: "+14155550100", Status: gateway.StatusFailed, Error: "provider_unavailable", CreatedAt: sent, UpdatedAt: gaveUp},
			ib.Message{ID: "m2", To: "14155550100", Status: gateway.StatusFailed, Error: "provider_unavailable", SentAt: sent, DoneAt: gaveUp}},
		{"pending", store.Record{ID: "m3", Recipient: "+14155550100", Status: gateway.StatusSent, CreatedAt: sent, UpdatedAt: gaveUp},
			ib.Message{ID: "m3", To: "14155550100", Status: gateway.StatusSent, SentAt: sent}},
	} {
		if diff := cmp.Diff(tc.want, compatMessage(&tc.rec)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestACompatRequestsDestinationsAreSentEightAtATimeWithinItsTimeout: the destinations of one
// Infobip-compatible request are sent at once, at most compatParallel of them, and the request as
// a whole ends at server.request_timeout, as a send of smsgate's own API does: a provider that
// hangs longer than that is not waited for, nor is the next provider tried after it.
func TestACompatRequestsDestinationsAreSentEightAtATimeWithinItsTimeout(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(compatConfig, "request_timeout: 3s", "request_timeout: 2s", 1)
	cfg = strings.Replace(cfg, "    timeout: 500ms\n", "    timeout: 30s\n", 1)
	h, ibf, tw := startOnFakes(t, strings.ReplaceAll(cfg, "$HOOKHOST", "hooks.example"))
	ibf.SetMode(infobiptest.Hang)
	dests := make([]string, 10)
	for i := range dests {
		dests[i] = fmt.Sprintf(`{"to":"141555503%02d"}`, i)
	}
	answered := make(chan response, 1)
	go func() {
		answered <- h.do("POST", "/sms/2/text/advanced", "acme-ib-key", `{"messages":[{"destinations":[`+strings.Join(dests, ",")+`],"text":"Your code is 4321"}]}`)
	}()
	waitUntil(t, "eight destinations reached Infobip at once", func() bool { return len(ibf.Requests()) >= compatParallel })
	var r response
	select {
	case r = <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer 10 s after a request_timeout of 2 s")
	}
	if n := len(ibf.Requests()); n != compatParallel {
		t.Errorf("%d destinations reached Infobip, want %d: the rest waited for a place until the request's time was up", n, compatParallel)
	}
	if n := len(tw.Requests()); n != 0 {
		t.Errorf("%d destinations went on to Twilio after the request's time was up", n)
	}
	if r.Status == 200 || strings.Contains(r.Raw, "PENDING") {
		t.Errorf("a request whose every destination ran out of time: %d %s", r.Status, r.Raw)
	}
}

// TestARequestAnsweredWithAnErrorHoldsItsReports: a request that sent nothing is answered with an
// error and no message id, so no report follows for its failed destinations: a pull finds none
// (Infobip's callers never asked about a message they were not given).
func TestARequestAnsweredWithAnErrorHoldsItsReports(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	c.ib.SetMode(infobiptest.Unavailable)
	c.tw.SetMode(twiliotest.Unavailable)
	r := c.call("POST", "/sms/2/text/advanced", "App acme-ib-key", `{"messages":[{"destinations":[{"to":"14155550160"},{"to":"14155550161"}],"text":"Code 3"}]}`)
	c.ib.SetMode(infobiptest.OK)
	c.tw.SetMode(twiliotest.OK)
	if r.Status != 503 || strings.Contains(r.Raw, "msg_") {
		t.Fatalf("providers down: %d %s, want 503 without ids", r.Status, r.Raw)
	}
	if recs, _ := c.app.Store().List(context.Background(), store.Query{Tenant: "acme", Limit: 10}); len(recs) != 2 {
		t.Fatalf("%d records of the failed destinations, want 2", len(recs))
	}
	if got := resultIDs(c.call("GET", "/sms/1/reports", "App acme-ib-key", "")); len(got) != 0 {
		t.Errorf("a pull after a request answered 503 handed out reports of %v", got)
	}
}
