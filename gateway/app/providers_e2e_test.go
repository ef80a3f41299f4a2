package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
	"github.com/smsgate/smsgate/providers/twilio/twiliotest"
)

const twSID = "AC00000000000000000000000000000001"

const providersConfig = `
server: {request_timeout: 3s, public_url: "https://sms.example.com", admin_token: admin-t0ken}
storage: {driver: sqlite, path: $DIR/log.db}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants: [{name: acme, api_key: acme-key}]
providers:
  - name: infobip-eu
    type: infobip
    base_url: $IB
    api_key: ib-key
    webhook_secret: hook-secret
    sender: InfoSMS
    timeout: 300ms
    breaker: {consecutive_failures: 3, open_timeout: 400ms}
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

// startWithFakes runs a gateway on providersConfig against the Infobip and Twilio fakes.
func startWithFakes(t *testing.T) (*harness, *infobiptest.Fake, *twiliotest.Fake) {
	return startOnFakes(t, providersConfig)
}

// startOnFakes runs a gateway on cfg ($IB and $TW: the fakes' URLs) against fresh fakes.
func startOnFakes(t testing.TB, cfg string) (*harness, *infobiptest.Fake, *twiliotest.Fake) {
	return startOnFakesWith(t, cfg, Options{})
}

// startOnFakesWith is startOnFakes with options (a clock).
func startOnFakesWith(t testing.TB, cfg string, o Options) (*harness, *infobiptest.Fake, *twiliotest.Fake) {
	ib := infobiptest.New("ib-key", true)
	ibs := httptest.NewServer(ib)
	t.Cleanup(ibs.Close)
	t.Cleanup(ib.Release)
	tw := twiliotest.New(twSID, "tw-token", true)
	tws := httptest.NewServer(tw)
	t.Cleanup(tws.Close)
	t.Cleanup(tw.Release)
	return start(t, strings.NewReplacer("$IB", ibs.URL, "$TW", tws.URL).Replace(cfg), o), ib, tw
}

func TestInfobipOutageFailsOverToTwilioAndRecovers(t *testing.T) {
	t.Parallel()
	h, ib, tw := startWithFakes(t)
	send := func(i int) response {
		t.Helper()
		r := h.send("acme-key", `{"message_options":{"recipient":"+14155550104","text":"Your code is 1234`+string(rune('0'+i%10))+`","message_type":"sms"}}`)
		if r.Status != 200 {
			t.Fatalf("send %d failed: %d %s", i, r.Status, r.Raw)
		}
		return r
	}
	// Healthy: Infobip sends, with our id as messageId and the delivery webhook set.
	r := send(0)
	if r.Body["provider"] != "infobip-eu" || r.Body["provider_message_id"] != r.Body["id"] {
		t.Fatalf("healthy send: %s", r.Raw)
	}
	req := ib.Requests()[0]
	msg := req.Body["messages"].([]any)[0].(map[string]any)
	wantHook := "https://sms.example.com/v1/dlr/infobip/infobip-eu?secret=hook-secret"
	if msg["webhooks"].(map[string]any)["delivery"].(map[string]any)["url"] != wantHook || req.Authorization != "App ib-key" {
		t.Errorf("infobip request: %+v", req)
	}
	firstID := r.Body["id"].(string)

	// Outage 1: 503. Three failures open the breaker; later sends skip Infobip without calling it.
	ib.SetMode(infobiptest.Unavailable)
	for i := 1; i <= 5; i++ {
		r := send(i)
		want := []string{"infobip-eu:provider_error", "twilio-us:sent"}
		if i > 3 {
			want = []string{"infobip-eu:unavailable", "twilio-us:sent"}
		}
		if diff := cmp.Diff(want, attempts(r)); diff != "" {
			t.Errorf("send %d during 503s (-want +got):\n%s", i, diff)
		}
	}
	if ib.Calls() != 4 {
		t.Errorf("infobip calls = %d, want 4 (1 ok + 3 before the breaker opened)", ib.Calls())
	}
	// Outage 2: hanging connections. After the open timeout a half-open probe hangs, times out
	// after the provider's 300ms, and Twilio still sends within the request.
	ib.SetMode(infobiptest.Hang)
	time.Sleep(450 * time.Millisecond)
	r = send(6)
	if diff := cmp.Diff([]string{"infobip-eu:timeout", "twilio-us:sent"}, attempts(r)); diff != "" {
		t.Errorf("hanging probe (-want +got):\n%s", diff)
	}
	// Recovery: after the next open timeout the probe succeeds and traffic returns to Infobip.
	ib.SetMode(infobiptest.OK)
	time.Sleep(450 * time.Millisecond)
	for i := 7; i < 10; i++ {
		if r := send(i); r.Body["provider"] != "infobip-eu" {
			t.Errorf("after recovery send %d went to %v", i, r.Body["provider"])
		}
	}
	twReq := tw.Requests()[0]
	if twReq.User != twSID || twReq.Password != "tw-token" || twReq.Form.Get("StatusCallback") != "https://sms.example.com/v1/dlr/twilio/twilio-us" || twReq.Form.Get("To") != "+14155550104" {
		t.Errorf("twilio request: %+v", twReq)
	}

	// Delivery reports reach the message log.
	dlr := `{"results":[{"bulkId":"b","messageId":"` + firstID + `","to":"14155550104","sentAt":"2026-11-28T12:00:00.000+0000","doneAt":"2026-11-28T12:00:04.000+0000","messageCount":1,"price":{"pricePerMessage":0.01,"currency":"EUR"},"status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET"},"error":{"groupId":0,"groupName":"OK","id":0,"name":"NO_ERROR","permanent":false}}]}`
	if r := h.do("POST", "/v1/dlr/infobip/infobip-eu?secret=wrong", "", dlr); r.Status != 403 {
		t.Errorf("wrong secret: %d", r.Status)
	}
	if r := h.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", dlr); r.Status != 200 {
		t.Fatalf("infobip dlr: %d %s", r.Status, r.Raw)
	}
	rec := h.do("GET", "/v1/messages/"+firstID, "acme-key", "")
	if rec.Body["status"] != "delivered" || rec.Body["delivered_at"] != "2026-11-28T12:00:04Z" {
		t.Errorf("after infobip dlr: %s", rec.Raw)
	}

	ib.SetMode(infobiptest.Unavailable)
	var twMsg response
	for i := 0; i < 4; i++ {
		if twMsg = send(11 + i); twMsg.Body["provider"] == "twilio-us" {
			break
		}
	}
	form := url.Values{"MessageSid": {twMsg.Body["provider_message_id"].(string)}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30003"}, "AccountSid": {twSID}}
	sig := independentSignature("tw-token", "https://sms.example.com/v1/dlr/twilio/twilio-us", form)
	post := func(sig string) int {
		req, _ := http.NewRequest("POST", h.url+"/v1/dlr/twilio/twilio-us", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Twilio-Signature", sig)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	tampered := "A" + sig[1:]
	if sig[0] == 'A' {
		tampered = "B" + sig[1:]
	}
	if st := post(tampered); st != 403 {
		t.Errorf("tampered signature: %d, want 403", st)
	}
	if st := post(sig); st != 200 {
		t.Fatalf("signed callback: %d", st)
	}
	rec = h.do("GET", "/v1/messages/"+twMsg.Body["id"].(string), "acme-key", "")
	if rec.Body["status"] != "undelivered" || rec.Body["error"] != "30003" {
		t.Errorf("after twilio callback: %s", rec.Raw)
	}
	if r := h.do("POST", "/v1/dlr/twilio/infobip-eu", "", "x=1"); r.Status != 404 {
		t.Errorf("type/name mismatch: %d", r.Status)
	}
}

// independentSignature follows Twilio's documented algorithm step by step, separately from the
// driver's implementation.
func independentSignature(token, u string, form url.Values) string {
	var keys []string
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := u
	for _, k := range keys {
		s += k + form.Get(k)
	}
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestRecipientRejectedByInfobipStopsChain(t *testing.T) {
	t.Parallel()
	h, ib, tw := startWithFakes(t)
	ib.SetMode(infobiptest.Rejected)
	r := h.send("acme-key", `{"recipient":"+14155550104","text":"code 1234","context":{}}`)
	if r.Status != 422 || errCode(r) != "recipient_rejected" || tw.Calls() != 0 {
		t.Errorf("got %d %s; twilio calls %d", r.Status, r.Raw, tw.Calls())
	}
	if diff := cmp.Diff([]string{"infobip-eu:recipient_error"}, attempts(r)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	ib.SetMode(infobiptest.NoCredit)
	r = h.send("acme-key", `{"recipient":"+14155550104","text":"code 5678","context":{}}`)
	if r.Status != 200 || r.Body["provider"] != "twilio-us" {
		t.Errorf("no credit must fail over: %d %s", r.Status, r.Raw)
	}
	as := r.Body["attempts"].([]any)
	if as[0].(map[string]any)["code"] != "REJECTED_NOT_ENOUGH_CREDITS" {
		t.Errorf("the provider's own status is not in the attempt: %s", r.Raw)
	}
}

// sharedTwilioConfig: one Twilio account shared by every tenant, configured with a messaging
// service only (it cannot place calls), in front of Infobip.
const sharedTwilioConfig = `
server: {request_timeout: 3s, public_url: "https://sms.example.com"}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants: [{name: careless, api_key: careless-key}, {name: other, api_key: other-key}]
providers:
  - name: twilio-shared
    type: twilio
    account_sid: ` + twSID + `
    auth_token: tw-token
    messaging_service_sid: MG0123456789abcdef0123456789abcdef
    base_url: $TW
    breaker: {consecutive_failures: 3, open_timeout: 1h}
  - name: infobip-eu
    type: infobip
    base_url: $IB
    api_key: ib-key
routes:
  - name: default
    providers: [twilio-shared, infobip-eu]
`

// TestVoiceOnSMSOnlyProviderKeepsBreakerClosed: one tenant's voice requests skip the SMS-only
// provider (not called, breaker untouched); every tenant's SMS still goes through it.
func TestVoiceOnSMSOnlyProviderKeepsBreakerClosed(t *testing.T) {
	t.Parallel()
	h, ib, tw := startOnFakes(t, sharedTwilioConfig)
	for i := range 10 {
		r := h.send("careless-key", fmt.Sprintf(`{"message_options":{"recipient":"+1415555010%d","code":"55%04d","message_type":"voice"},"request":{"language":"en"}}`, i, i))
		if r.Status != 200 || r.Body["provider"] != "infobip-eu" {
			t.Fatalf("voice %d: %d %s", i, r.Status, r.Raw)
		}
		as := r.Body["attempts"].([]any)
		if a := as[0].(map[string]any); a["outcome"] != "skipped" || a["code"] != "unsupported" {
			t.Fatalf("voice %d: first attempt %v", i, a)
		}
	}
	if tw.Calls() != 0 || ib.Calls() != 10 {
		t.Errorf("twilio called %d times for voice, infobip %d", tw.Calls(), ib.Calls())
	}
	for _, ch := range []string{"sms", "voice"} {
		if v := testutil.ToFloat64(h.app.MetricSet().BreakerState.WithLabelValues("twilio-shared", ch)); v != 0 {
			t.Errorf("twilio %s breaker state %v after voice requests, want closed", ch, v)
		}
	}
	r := h.send("other-key", `{"message_options":{"recipient":"+14155550199","text":"Your code is 771122","message_type":"sms"}}`)
	if r.Status != 200 || r.Body["provider"] != "twilio-shared" {
		t.Errorf("another tenant's SMS: %d %s", r.Status, r.Raw)
	}
}

// TestRegionNotPermittedFailsOverWithBreakerClosed: Twilio 21408 (region not enabled) concerns
// one destination: fail over to Infobip, no 422, and the shared breaker stays closed.
func TestRegionNotPermittedFailsOverWithBreakerClosed(t *testing.T) {
	t.Parallel()
	h, ib, tw := startOnFakes(t, sharedTwilioConfig)
	tw.SetMode(twiliotest.RegionNotEnabled)
	for i := range 8 {
		r := h.send("careless-key", fmt.Sprintf(`{"message_options":{"recipient":"+4479111234%02d","text":"Your code is 55%04d","message_type":"sms"}}`, i, i))
		if r.Status != 200 || r.Body["provider"] != "infobip-eu" {
			t.Fatalf("send %d: %d %s", i, r.Status, r.Raw)
		}
		if diff := cmp.Diff([]string{"twilio-shared:destination_error", "infobip-eu:sent"}, attempts(r)); diff != "" {
			t.Fatalf("send %d (-want +got):\n%s", i, diff)
		}
	}
	if tw.Calls() != 8 || ib.Calls() != 8 {
		t.Errorf("calls: twilio %d, infobip %d; want 8 and 8 (the breaker never opened)", tw.Calls(), ib.Calls())
	}
	if v := testutil.ToFloat64(h.app.MetricSet().BreakerState.WithLabelValues("twilio-shared", "sms")); v != 0 {
		t.Errorf("twilio breaker state %v, want closed", v)
	}
	tw.SetMode(twiliotest.OK)
	if r := h.send("other-key", `{"message_options":{"recipient":"+14155550199","text":"Your code is 771122","message_type":"sms"}}`); r.Body["provider"] != "twilio-shared" {
		t.Errorf("another tenant's SMS: %s", r.Raw)
	}
}

// TestWebhookMethodsAndContentTypesAsDeclared: the delivery-report endpoint takes what the
// driver declares and nothing else.
func TestWebhookMethodsAndContentTypesAsDeclared(t *testing.T) {
	t.Parallel()
	h, _, _ := startWithFakes(t)
	body := `{"results":[]}`
	if r := h.do("GET", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", ""); r.Status != 405 || errCode(r) != "method_not_allowed" {
		t.Errorf("GET to a POST-only webhook: %d %s", r.Status, r.Raw)
	}
	req, _ := http.NewRequest("POST", h.url+"/v1/dlr/infobip/infobip-eu?secret=hook-secret", strings.NewReader(body))
	req.Header.Set("Content-Type", "text/xml")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 415 {
		t.Errorf("XML to a JSON webhook: %d", res.StatusCode)
	}
	if r := h.do("POST", "/v1/dlr/twilio/infobip-eu", "", body); r.Status != 404 {
		t.Errorf("type and name that do not belong together: %d", r.Status)
	}
	if r := h.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", body); r.Status != 200 {
		t.Errorf("declared method and type: %d %s", r.Status, r.Raw)
	}
	prov := h.do("GET", "/v1/providers", "admin-t0ken", "")
	if !strings.Contains(prov.Raw, `"reports":{"path":"/v1/dlr/infobip/infobip-eu","methods":["POST"]`) {
		t.Errorf("providers endpoint lacks the webhook: %s", prov.Raw)
	}
}

// TestAGETReportHasNoContentTypeToCheck: a webhook that takes GET (Vonage's receipts, as query
// parameters) is not refused for want of a Content-Type, which a GET has none of; its POSTs are
// held to the types declared.
func TestAGETReportHasNoContentTypeToCheck(t *testing.T) {
	t.Parallel()
	h := start(t, `
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: vg, type: vonage, api_key: k, api_secret: s, from: "+14155550000", webhook_secret: vg-hook-secret-0123456789, base_url: "http://127.0.0.1:9"}]
routes: [{name: d, providers: [vg]}]
`, Options{})
	q := "/v1/dlr/vonage/vg?secret=vg-hook-secret-0123456789&messageId=0B00000012345678&status=delivered&client-ref=msg_unknown"
	if r := h.do("GET", q, "", "", "Content-Type", ""); r.Status != 200 {
		t.Errorf("a GET receipt: %d %s", r.Status, r.Raw)
	}
	if r := h.do("POST", q, "", "<x/>", "Content-Type", "text/xml"); r.Status != 415 {
		t.Errorf("a POST receipt in a type Vonage does not use: %d %s", r.Status, r.Raw)
	}
	if n := testutil.ToFloat64(h.app.MetricSet().DeliveryReports.WithLabelValues("vg", "invalid")); n != 1 {
		t.Errorf("reports counted invalid: %v, want the one in the wrong type", n)
	}
}

// TestAReportsTextsAreCleanedAsAnswersAre: a delivery report's error and status are the
// provider's texts, and are cleaned as its answers are before the message log keeps them: a
// number quoted for reading is masked and a configured secret echoed is removed.
func TestAReportsTextsAreCleanedAsAnswersAre(t *testing.T) {
	t.Parallel()
	h := start(t, `
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: mi, type: mitto, api_key: mitto-key-0123456789, from: Acme, webhook_secret: mi-hook-secret-0123456789, base_url: "http://127.0.0.1:9"}]
routes: [{name: d, providers: [mi]}]
`, Options{})
	ctx := context.Background()
	now := time.Now()
	if err := h.app.Store().Insert(ctx, &store.Record{ID: "msg_report_1", Tenant: "acme", Provider: "mi", ProviderMessageID: "mitto-1",
		Country: "US", MessageType: "sms", Status: gateway.StatusSent, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	q := url.Values{"secret": {"mi-hook-secret-0123456789"}, "id": {"mitto-1"}, "reference": {"msg_report_1"}, "status": {"undelivered"},
		"error": {"Number +1 415-555-0104 barred for mitto-key-0123456789"}}
	if r := h.do("GET", "/v1/dlr/mitto/mi?"+q.Encode(), "", ""); r.Status != 200 {
		t.Fatalf("report: %d %s", r.Status, r.Raw)
	}
	rec, err := h.app.Store().Get(ctx, "acme", "msg_report_1")
	if err != nil {
		t.Fatal(err)
	}
	if want := "Number +* ***-***-**** barred for <secret>"; rec.Error != want || rec.Status != gateway.StatusUndelivered {
		t.Errorf("the record after the report: status %s, error %q; want undelivered, %q", rec.Status, rec.Error, want)
	}
	// The status is the provider's text too (Mitto's, upper-cased): a number in it is masked.
	if err := h.app.Store().Insert(ctx, &store.Record{ID: "msg_report_2", Tenant: "acme", Provider: "mi", ProviderMessageID: "mitto-2",
		Country: "US", MessageType: "sms", Status: gateway.StatusSent, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	q = url.Values{"secret": {"mi-hook-secret-0123456789"}, "id": {"mitto-2"}, "reference": {"msg_report_2"}, "status": {"buffered for +1 415-555-0104"}}
	if r := h.do("GET", "/v1/dlr/mitto/mi?"+q.Encode(), "", ""); r.Status != 200 {
		t.Fatalf("report: %d %s", r.Status, r.Raw)
	}
	if rec, err = h.app.Store().Get(ctx, "acme", "msg_report_2"); err != nil {
		t.Fatal(err)
	}
	if want := "BUFFERED FOR +* ***-***-****"; rec.ProviderStatus != want {
		t.Errorf("the record's provider status after the report: %q, want %q", rec.ProviderStatus, want)
	}
}

// TestAnAWSReportIsAskedForItsSecret: an aws-sms-voice provider with webhook_secret answers a post
// without credentials 401 with a WWW-Authenticate challenge (SNS sends the subscription URL's user
// and password only when challenged), counted as challenged and not logged, as every report's
// first post is; one with another password is refused 403 and logged. Neither reaches the SNS
// checks (no certificate fetch: this test has no network).
func TestAnAWSReportIsAskedForItsSecret(t *testing.T) {
	// Not parallel: sets the environment (see start).
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	h := start(t, `
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers:
  - name: eum
    type: aws-sms-voice
    region: eu-west-1
    origination_identity: "+14155550000"
    configuration_set: smsgate
    event_topics: ["arn:aws:sns:eu-west-1:123456789012:smsgate-events"]
    webhook_secret: sns-hook-secret-0123456789
routes: [{name: d, providers: [eum]}]
`, Options{})
	body := `{"Type":"Notification","MessageId":"n1","TopicArn":"arn:aws:sns:eu-west-1:123456789012:smsgate-events","Message":"{}",` +
		`"Timestamp":"2026-12-01T12:00:00.000Z","SignatureVersion":"2","Signature":"c2ln","SigningCertURL":"https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"}`
	r := h.do("POST", "/v1/dlr/aws-sms-voice/eum", "", body, "Content-Type", "text/plain; charset=UTF-8")
	if r.Status != 401 || errCode(r) != "unauthorized" || r.Header.Get("WWW-Authenticate") != `Basic realm="smsgate delivery reports"` {
		t.Errorf("a post without credentials: %d %v %s", r.Status, r.Header, r.Raw)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("smsgate:another-secret-0123456789"))
	r = h.do("POST", "/v1/dlr/aws-sms-voice/eum", "", body, "Content-Type", "text/plain; charset=UTF-8", "Authorization", basic)
	if r.Status != 403 || errCode(r) != "forbidden" || r.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("a post with another secret: %d %v %s", r.Status, r.Header, r.Raw)
	}
	metrics := h.do("GET", "/metrics", "", "").Raw
	for _, want := range []string{`smsgate_delivery_reports_total{provider="eum",status="challenged"} 1`,
		`smsgate_delivery_reports_total{provider="eum",status="unauthenticated"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if logs := h.logs.String(); strings.Count(logs, "delivery report rejected") != 1 || strings.Contains(logs, "sns-hook-secret") {
		t.Errorf("want one line, for the wrong secret, and no secret: %s", logs)
	}
}
