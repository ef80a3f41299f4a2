package twilio

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
	"github.com/smsgate/smsgate/providers/providertest"
	"github.com/smsgate/smsgate/providers/twilio/twiliotest"
)

const (
	sid   = "AC0123456789abcdef0123456789abcdef"
	msid  = "MG0123456789abcdef0123456789abcdef"
	token = "tw-TOKEN-fedcba9876543210"
)

const cb = "https://gw.example.com/v1/dlr/twilio/tw"

func newDriver(t testing.TB, base string, edit func(*Config)) *Provider {
	t.Helper()
	c := Config{AccountSID: sid, AuthToken: token, From: "+15005550006", BaseURL: base}
	if edit != nil {
		edit(&c)
	}
	c.Defaults()
	if p := c.Validate(); len(p) > 0 {
		t.Fatalf("config: %v", p)
	}
	return New(c, gateway.Deps{Name: "tw", HTTPClient: &http.Client{}, CallbackURL: cb})
}

// serve starts the one Twilio fake, recording requests.
func serve(t *testing.T) (*twiliotest.Fake, *httptest.Server) {
	f := twiliotest.New(sid, token, true)
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	t.Cleanup(f.Release)
	return f, s
}

func last(f *twiliotest.Fake) twiliotest.Request {
	r := f.Requests()
	return r[len(r)-1]
}

func TestSendRequests(t *testing.T) {
	msgPath := "/2010-04-01/Accounts/" + sid + "/Messages.json"
	callPath := "/2010-04-01/Accounts/" + sid + "/Calls.json"
	sms := gateway.Message{ID: "msg_1", To: "+14155550104", Type: gateway.SMS, Text: "Your code is 123456", Code: "123456"}
	tests := []struct {
		name    string
		edit    func(*Config)
		msg     gateway.Message
		path    string
		form    url.Values
		wantSID string
	}{
		{"sms with from and status callback", nil, sms, msgPath,
			url.Values{"To": {"+14155550104"}, "From": {"+15005550006"}, "Body": {"Your code is 123456"}, "StatusCallback": {cb}}, "SM"},
		{"sms with messaging service", func(c *Config) { c.From, c.MessagingServiceSID, c.VoiceFrom = "", msid, "+15005550007" }, sms, msgPath,
			url.Values{"To": {"+14155550104"}, "MessagingServiceSid": {msid}, "Body": {"Your code is 123456"}, "StatusCallback": {cb}}, "SM"},
		{"sms as the tenant's own sender", nil, func() gateway.Message { m := sms; m.From = "ACME"; return m }(), msgPath,
			url.Values{"To": {"+14155550104"}, "From": {"ACME"}, "Body": {"Your code is 123456"}, "StatusCallback": {cb}}, "SM"},
		{"a messaging service sends as the sender of its pool the request names", func(c *Config) { c.From, c.MessagingServiceSID, c.VoiceFrom = "", msid, "+15005550007" },
			func() gateway.Message { m := sms; m.From = "ACME"; return m }(), msgPath,
			url.Values{"To": {"+14155550104"}, "MessagingServiceSid": {msid}, "From": {"ACME"}, "Body": {"Your code is 123456"}, "StatusCallback": {cb}}, "SM"},
		{"voice call with TwiML", nil, func() gateway.Message { m := sms; m.Type = gateway.Voice; return m }(), callPath,
			url.Values{"To": {"+14155550104"}, "From": {"+15005550006"}, "StatusCallback": {cb},
				"Twiml": {`<Response><Say language="en-US">Your code is 1, 2, 3, 4, 5, 6.</Say><Pause length="1"/><Say language="en-US">Your code is 1, 2, 3, 4, 5, 6.</Say></Response>`}}, "CA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, s := serve(t)
			res, err := newDriver(t, s.URL, tc.edit).Send(context.Background(), &tc.msg)
			if err != nil || !strings.HasPrefix(res.ProviderMessageID, tc.wantSID) || res.Status != "queued" {
				t.Fatalf("res %+v err %v", res, err)
			}
			want := twiliotest.Request{Method: "POST", Path: tc.path, User: sid, Password: token, ContentType: "application/x-www-form-urlencoded", Accept: "application/json", Form: tc.form}
			if diff := cmp.Diff(want, last(f)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestTwiMLLanguages(t *testing.T) {
	tests := map[string]string{
		"":      `<Say language="en-US">Your code is 4, 2.</Say>`,
		"en-GB": `<Say language="en-GB">Your code is 4, 2.</Say>`,
		"de_AT": `<Say language="de-DE">Ihr Code lautet 4, 2.</Say>`,
		"pt-PT": `<Say language="pt-PT">Seu código é 4, 2.</Say>`,
		"xx":    `<Say language="en-US">Your code is 4, 2.</Say>`,
		"fr-CA": `<Say language="fr-CA">Votre code est 4, 2.</Say>`,
		"fr-BE": `<Say language="fr-FR">Votre code est 4, 2.</Say>`,
		"es-MX": `<Say language="es-MX">Su código es 4, 2.</Say>`,
		"es-US": `<Say language="es-US">Su código es 4, 2.</Say>`,
		"en-AU": `<Say language="en-AU">Your code is 4, 2.</Say>`,
		"en-IN": `<Say language="en-IN">Your code is 4, 2.</Say>`,
		"pt":    `<Say language="pt-BR">Seu código é 4, 2.</Say>`,
	}
	for lang, want := range tests {
		got := TwiML(&gateway.Message{Code: "42", Language: lang})
		if !strings.HasPrefix(got, "<Response>"+want+`<Pause length="1"/>`+want) {
			t.Errorf("%q: %s", lang, got)
		}
	}
	// A text without a code is said once, escaped.
	if got := TwiML(&gateway.Message{Text: `Hi <there> & "you"`}); got != `<Response><Say language="en-US">Hi &lt;there&gt; &amp; &#34;you&#34;</Say></Response>` {
		t.Errorf("a text without a code: %s", got)
	}
}

// TestContract runs the shared driver contract, then Twilio's own error table.
func TestContract(t *testing.T) {
	_, ok := serve(t)
	tw := func(status, code int, msg string) string {
		return fmt.Sprintf(`{"code":%d,"message":%q,"more_info":"https://www.twilio.com/docs/errors/%d","status":%d}`, code, msg, code, status)
	}
	form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}}
	providertest.Run(t, providertest.Contract{
		New: func(base string, deps gateway.Deps) gateway.Provider {
			c := Config{AccountSID: sid, AuthToken: token, From: "+15005550006", BaseURL: base}
			c.Defaults()
			return New(c, deps)
		},
		Accepting: ok.URL,
		Secrets:   []string{token},
		BadReport: func() (*http.Request, []byte) {
			r := httptest.NewRequest("POST", "/v1/dlr/twilio/tw", strings.NewReader(form.Encode()))
			r.Header.Set("X-Twilio-Signature", Signature("not-the-token", "https://gw.example.com/v1/dlr/twilio/tw", form))
			return r, []byte(form.Encode())
		},
		Cases: []providertest.Case{
			{Name: "21211 invalid To quoting the number", Status: 400, Body: tw(400, 21211, "The 'To' number +14155550104 is not a valid phone number."), Class: gateway.ClassRecipient, Code: "21211"},
			{Name: "21614 not mobile", Status: 400, Body: tw(400, 21614, "'To' number is not a valid mobile number"), Class: gateway.ClassRecipient, Code: "21614"},
			{Name: "21610 unsubscribed", Status: 400, Body: tw(400, 21610, "Attempt to send to unsubscribed recipient"), Class: gateway.ClassRecipient, Code: "21610"},
			{Name: "21635 landline", Status: 400, Body: tw(400, 21635, "landline"), Class: gateway.ClassRecipient, Code: "21635"},
			{Name: "21408 region not enabled: destination", Status: 400, Body: tw(400, 21408, "Permission to send an SMS has not been enabled for the region"), Class: gateway.ClassDestination, Code: "21408"},
			{Name: "21612 cannot route: destination", Status: 400, Body: tw(400, 21612, "The 'To' phone number is not currently reachable via SMS"), Class: gateway.ClassDestination, Code: "21612"},
			{Name: "21606 sender not allowed: destination", Status: 400, Body: tw(400, 21606, "The From phone number is not a valid, SMS-capable inbound phone number"), Class: gateway.ClassDestination, Code: "21606"},
			{Name: "20003 auth", Status: 401, Body: tw(401, 20003, "Authenticate"), Class: gateway.ClassProvider, Code: "20003"},
			{Name: "21608 trial", Status: 400, Body: tw(400, 21608, "The number is unverified"), Class: gateway.ClassProvider, Code: "21608"},
			{Name: "20429 throttled", Status: 429, Body: tw(429, 20429, "Too Many Requests"), Class: gateway.ClassThrottled, Code: "20429"},
			{Name: "a recipient code in a 5xx is still the provider's", Status: 503, Body: tw(503, 21211, "odd"), Class: gateway.ClassProvider, Code: "21211"},
			{Name: "unknown code", Status: 400, Body: tw(400, 29999, "something new"), Class: gateway.ClassProvider, Code: "29999"},
			{Name: "an echoed token is removed", Status: 401, Body: tw(401, 29998, "bad token "+token+" / "+token[4:14]), Class: gateway.ClassProvider, Code: "29998"},
			{Name: "201 without sid", Status: 201, Body: `{"status":"queued"}`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "201 with sid", Status: 201, Body: `{"sid":"SM1","status":"queued"}`, OK: true},
		},
	})
}

func TestCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		voice bool
	}{
		{"from number: sms and voice", nil, true},
		{"messaging service only: sms", func(c *Config) { c.From, c.MessagingServiceSID = "", msid }, false},
		{"messaging service and voice_from", func(c *Config) { c.From, c.MessagingServiceSID, c.VoiceFrom = "", msid, "+15005550007" }, true},
		{"sender ID: sms", func(c *Config) { c.From = "ACME" }, false},
		{"short code: sms", func(c *Config) { c.From = "246810" }, false},
		{"sender ID and voice_from", func(c *Config) { c.From, c.VoiceFrom = "ACME", "+15005550007" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caps := newDriver(t, "https://api.twilio.com", tc.edit).Capabilities()
			if caps.Can(gateway.SMS) != true || caps.Can(gateway.Voice) != tc.voice {
				t.Errorf("capabilities %+v, want voice %v", caps, tc.voice)
			}
		})
	}
}

func TestSignature(t *testing.T) {
	// Twilio's documented example (api-snippets, security/signature_validation): token 12345.
	form := url.Values{"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+14158675310"}, "Digits": {"1234"}, "From": {"+14158675310"}, "To": {"+18005551212"}}
	const documented = "GvWf1cFY/Q7PnoempGyD5oXAezc="
	p := New(Config{AccountSID: sid, AuthToken: "12345", From: "+1", BaseURL: "https://api.twilio.com"}, gateway.Deps{})
	tests := []struct {
		name, url, sig string
		form           url.Values
		ok             bool
	}{
		{"documented example", "https://mycompany.com/myapp.php?foo=1&bar=2", documented, form, true},
		{"same with the default port", "https://mycompany.com:443/myapp.php?foo=1&bar=2", documented, form, true},
		{"tampered parameter", "https://mycompany.com/myapp.php?foo=1&bar=2", documented, func() url.Values {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			f.Set("Digits", "9999")
			return f
		}(), false},
		{"another URL (proxy rewrote the host)", "https://evil.example.com/myapp.php?foo=1&bar=2", documented, form, false},
		{"tampered signature", "https://mycompany.com/myapp.php?foo=1&bar=2", "GvWf1cFY/Q7PnoempGyD5oXAezd=", form, false},
		{"no signature", "https://mycompany.com/myapp.php?foo=1&bar=2", "", form, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/dlr/twilio/tw", strings.NewReader(tc.form.Encode()))
			r.Header.Set("X-Twilio-Signature", tc.sig)
			reps, err := p.ParseReports(r, []byte(tc.form.Encode()), tc.url)
			if tc.ok {
				want := []gateway.DeliveryReport{{ProviderMessageID: "CA1234567890ABCDE", Status: gateway.StatusSent}}
				if err != nil || cmp.Diff(want, reps) != "" {
					t.Errorf("reports %+v err %v", reps, err)
				}
			} else if err != gateway.ErrUnauthenticated {
				t.Errorf("err = %v, want ErrUnauthenticated", err)
			}
		})
	}
}

func TestStatusCallbacks(t *testing.T) {
	p := newDriver(t, "https://api.twilio.com", nil)
	const u = "https://gw.example.com/v1/dlr/twilio/tw"
	tests := []struct {
		form url.Values
		want gateway.DeliveryReport
	}{
		{url.Values{"MessageSid": {"SM1"}, "SmsSid": {"SM1"}, "MessageStatus": {"delivered"}, "AccountSid": {sid}, "To": {"+14155550104"}, "RawDlrDoneDate": {"2611281200"}},
			gateway.DeliveryReport{ProviderMessageID: "SM1", Status: gateway.StatusDelivered, ProviderStatus: "delivered"}},
		{url.Values{"MessageSid": {"SM2"}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30003"}},
			gateway.DeliveryReport{ProviderMessageID: "SM2", Status: gateway.StatusUndelivered, ProviderStatus: "undelivered", Error: "30003"}},
		{url.Values{"MessageSid": {"SM3"}, "MessageStatus": {"failed"}, "ErrorCode": {"30006"}},
			gateway.DeliveryReport{ProviderMessageID: "SM3", Status: gateway.StatusFailed, ProviderStatus: "failed", Error: "30006"}},
		{url.Values{"MessageSid": {"SM4"}, "MessageStatus": {"sent"}},
			gateway.DeliveryReport{ProviderMessageID: "SM4", Status: gateway.StatusSent, ProviderStatus: "sent"}},
		{url.Values{"CallSid": {"CA5"}, "CallStatus": {"completed"}},
			gateway.DeliveryReport{ProviderMessageID: "CA5", Status: gateway.StatusDelivered, ProviderStatus: "completed"}},
		{url.Values{"CallSid": {"CA6"}, "CallStatus": {"no-answer"}},
			gateway.DeliveryReport{ProviderMessageID: "CA6", Status: gateway.StatusUndelivered, ProviderStatus: "no-answer"}},
		{url.Values{"MessageSid": {"SM7"}, "MessageStatus": {"read"}},
			gateway.DeliveryReport{ProviderMessageID: "SM7", Status: gateway.StatusDelivered, ProviderStatus: "read"}},
		{url.Values{"MessageSid": {"SM8"}, "MessageStatus": {"canceled"}},
			gateway.DeliveryReport{ProviderMessageID: "SM8", Status: gateway.StatusFailed, ProviderStatus: "canceled"}},
		// Older callbacks name the status SmsStatus only.
		{url.Values{"MessageSid": {"SM9"}, "SmsSid": {"SM9"}, "SmsStatus": {"delivered"}},
			gateway.DeliveryReport{ProviderMessageID: "SM9", Status: gateway.StatusDelivered, ProviderStatus: "delivered"}},
	}
	for _, tc := range tests {
		body := tc.form.Encode()
		r := httptest.NewRequest("POST", "/v1/dlr/twilio/tw", strings.NewReader(body))
		r.Header.Set("X-Twilio-Signature", Signature(token, u, tc.form))
		got, err := p.ParseReports(r, []byte(body), u)
		if err != nil {
			t.Fatalf("%v: %v", tc.form, err)
		}
		if diff := cmp.Diff([]gateway.DeliveryReport{tc.want}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	}
}

// TestAnAppendedValueBreaksTheSignature: every value of a parameter is signed, so a value
// added to a signed callback (a second MessageStatus) is refused, not read past.
func TestAnAppendedValueBreaksTheSignature(t *testing.T) {
	p := newDriver(t, "https://api.twilio.com", nil)
	const u = "https://gw.example.com/v1/dlr/twilio/tw"
	form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}}
	// By hand, per Twilio's rule: the URL, then each key and value, keys sorted.
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(u + "MessageSid" + "SM1" + "MessageStatus" + "delivered"))
	sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{form.Encode(), true},
		{form.Encode() + "&MessageStatus=failed", false},
		{"MessageStatus=failed&" + form.Encode(), false},
	} {
		r := httptest.NewRequest("POST", "/v1/dlr/twilio/tw", strings.NewReader(tc.body))
		r.Header.Set("X-Twilio-Signature", sig)
		_, err := p.ParseReports(r, []byte(tc.body), u)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want accepted %v", tc.body, err, tc.ok)
		}
	}
}

func TestURLVariants(t *testing.T) {
	for raw, want := range map[string][]string{
		"https://gw.example.com/v1/dlr/twilio/tw?x=1":  {"https://gw.example.com/v1/dlr/twilio/tw?x=1", "https://gw.example.com:443/v1/dlr/twilio/tw?x=1"},
		"https://gw.example.com:443/v1/dlr/twilio/tw":  {"https://gw.example.com:443/v1/dlr/twilio/tw", "https://gw.example.com/v1/dlr/twilio/tw"},
		"http://gw.example.com/v1/dlr/twilio/tw":       {"http://gw.example.com/v1/dlr/twilio/tw", "http://gw.example.com:80/v1/dlr/twilio/tw"},
		"https://gw.example.com:8443/v1/dlr/twilio/tw": {"https://gw.example.com:8443/v1/dlr/twilio/tw"},
		"https://gw.example.com:80/v1/dlr/twilio/tw":   {"https://gw.example.com:80/v1/dlr/twilio/tw"},
		"ftp://gw.example.com/v1/dlr/twilio/tw":        {"ftp://gw.example.com/v1/dlr/twilio/tw"},
		"https://gw.example.com/%zz":                   {"https://gw.example.com/%zz"},
	} {
		if got := urlVariants(raw); cmp.Diff(want, got) != "" {
			t.Errorf("urlVariants(%s) = %v, want %v", raw, got, want)
		}
	}
}

func TestAnUnknownCodeKeepsTwiliosMessage(t *testing.T) {
	p := newDriver(t, "https://api.twilio.com", nil)
	e := p.classifyHTTP(&kit.Response{Status: 400, Body: []byte(`{"code":29999,"message":"Something new","status":400}`)})
	if e == nil || e.Code != "29999" || e.Message != "Something new" || e.Class != gateway.ClassProvider {
		t.Errorf("err = %+v", e)
	}
	e = p.classifyHTTP(&kit.Response{Status: 400, Body: []byte(`{"code":21211,"message":"The 'To' number +14155550104 is not valid","status":400}`)})
	if e == nil || e.Message != "invalid 'To' number" || e.Class != gateway.ClassRecipient {
		t.Errorf("a known code: %+v (its own description, never Twilio's text with the number)", e)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{From: "+15005550006", MessagingServiceSID: msid, BaseURL: "nope"}
	c.Defaults()
	want := []gateway.Problem{{Key: "account_sid", Message: "is required"}, {Key: "auth_token", Message: "is required"}, {Key: "base_url", Message: "is not an http(s) URL"},
		{Key: "messaging_service_sid", Message: "set either from or messaging_service_sid, not both (Twilio: From must be empty with a messaging service)"}}
	if diff := cmp.Diff(want, c.Validate()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	c = Config{AccountSID: sid, AuthToken: "t", MessagingServiceSID: msid}
	c.Defaults()
	if p := c.Validate(); len(p) != 0 || c.BaseURL != "https://api.twilio.com" || c.VoiceFrom != "" {
		t.Errorf("defaults: %v %q", p, c.BaseURL)
	}
	// SIDs are two letters and 32 hex digits (Twilio's spec), checked so that a typo fails
	// validation rather than the first send; upper-case hex passes too.
	accountBad := gateway.Problem{Key: "account_sid", Message: "is not a Twilio account SID (AC and 32 hex digits)"}
	serviceBad := gateway.Problem{Key: "messaging_service_sid", Message: "is not a Twilio messaging service SID (MG and 32 hex digits)"}
	for _, tc := range []struct {
		account, service string
		want             []gateway.Problem
	}{
		{sid, msid, nil},
		{strings.ToUpper(sid), "MG" + strings.ToUpper(msid[2:]), nil},
		{"AC0123", msid, []gateway.Problem{accountBad}},
		{sid + "0", msid, []gateway.Problem{accountBad}},
		{"MG" + sid[2:], msid, []gateway.Problem{accountBad}},
		{"ac" + sid[2:], msid, []gateway.Problem{accountBad}},
		{sid[:33] + "g", msid, []gateway.Problem{accountBad}},
		{sid[:33] + "/", msid, []gateway.Problem{accountBad}},
		{" " + sid[1:], msid, []gateway.Problem{accountBad}},
		{sid, "MG1", []gateway.Problem{serviceBad}},
		{sid, sid, []gateway.Problem{serviceBad}},
		{sid, msid[:33] + "z", []gateway.Problem{serviceBad}},
		{"AC" + msid[2:33] + "é", "MG" + sid[2:33] + "é", []gateway.Problem{accountBad, serviceBad}},
	} {
		c := Config{AccountSID: tc.account, AuthToken: "t", MessagingServiceSID: tc.service}
		c.Defaults()
		if diff := cmp.Diff(tc.want, c.Validate()); diff != "" {
			t.Errorf("%q, %q (-want +got):\n%s", tc.account, tc.service, diff)
		}
	}
	// from is a number or a sender ID (gateway.ValidSender); voice_from a number in E.164, from by
	// default when from is one (a sender ID as from leaves voice_from empty: SMS only).
	fromBad := gateway.Problem{Key: "from", Message: "must be a number of 3 to 15 digits (+ first for E.164) or a sender ID of 3 to 11 letters, digits, spaces, '-' and '.'"}
	voiceBad := gateway.Problem{Key: "voice_from", Message: "must be a number in E.164 (+ and 7 to 15 digits): calls need a number as caller id"}
	for _, tc := range []struct {
		from, voice string
		want        []gateway.Problem
	}{
		{"+15005550006", "", nil},
		{"+15005550006", "+15005550007", nil},
		{"ACME", "+15005550007", nil},
		{"ACME", "", nil},
		{"15005550006", "", nil},
		{"+1 500 555 0006", "", []gateway.Problem{fromBad}},
		{"+1", "", []gateway.Problem{fromBad}},
		{"ACME-BRAND-NAME", "+15005550007", []gateway.Problem{fromBad}},
		{"+15005550006", "15005550007", []gateway.Problem{voiceBad}},
		{"+15005550006", "+1500555000612345", []gateway.Problem{voiceBad}},
		{"+15005550006", "ACME", []gateway.Problem{voiceBad}},
	} {
		c := Config{AccountSID: sid, AuthToken: "t", From: tc.from, VoiceFrom: tc.voice}
		c.Defaults()
		if diff := cmp.Diff(tc.want, c.Validate()); diff != "" {
			t.Errorf("from %q, voice_from %q (-want +got):\n%s", tc.from, tc.voice, diff)
		}
	}
}

// TestRequestsAndFakeConformToTheSpec checks the driver's form fields, and the shared fake's
// answers, against Twilio's official OpenAPI spec.
func TestRequestsAndFakeConformToTheSpec(t *testing.T) {
	spec := providertest.LoadSpec(t, "twilio-api-v2010.openapi.json")
	fake := twiliotest.New(sid, token, true)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	for _, edit := range []func(*Config){nil, func(c *Config) {
		c.From, c.MessagingServiceSID, c.VoiceFrom = "", msid, "+15005550007"
	}} {
		p := newDriver(t, srv.URL, edit)
		for _, typ := range []gateway.MessageType{gateway.SMS, gateway.Voice} {
			if _, err := p.Send(context.Background(), &gateway.Message{To: "+14155550104", Type: typ, Text: "Your code is 1234"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	reqs := fake.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests", len(reqs))
	}
	for _, r := range reqs {
		if errs := spec.FormErrors(r.Path, "POST", r.Form); len(errs) > 0 {
			t.Errorf("%s: %v (%v)", r.Path, errs, r.Form)
		}
	}
	for _, kind := range []string{"Messages.json", "Calls.json"} {
		req, _ := http.NewRequest("POST", srv.URL+"/2010-04-01/Accounts/"+sid+"/"+kind, strings.NewReader("To=%2B14155550104&From=%2B15005550006&Body=x"))
		req.SetBasicAuth(sid, token)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if errs := spec.ResponseErrors("/2010-04-01/Accounts/"+sid+"/"+kind, "POST", "201", body); len(errs) > 0 {
			t.Errorf("fake %s answer: %v\n%s", kind, errs, body)
		}
	}
	if errs := spec.FormErrors("/2010-04-01/Accounts/"+sid+"/Messages.json", "POST", url.Values{"To": {"+1"}, "Bodyy": {"x"}}); len(errs) != 1 {
		t.Errorf("a misspelt field must be caught: %v", errs)
	}
}

// FuzzParseReports: any form, signed with the account's token as Twilio signs, gives reports or
// a 400, never a panic.
func FuzzParseReports(f *testing.F) {
	p := newDriver(f, "https://api.twilio.com", nil)
	const u = "https://gw.example.com/v1/dlr/twilio/tw"
	providertest.FuzzReports(f, p, []string{token[len("tw-"):]}, func(in []byte) (*http.Request, []byte, string) {
		r := httptest.NewRequest("POST", "/v1/dlr/twilio/tw", bytes.NewReader(in))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		form, _ := url.ParseQuery(string(in))
		r.Header.Set("X-Twilio-Signature", Signature(token, u, form))
		return r, in, u
	},
		"MessageSid=SM1&SmsSid=SM1&MessageStatus=delivered&AccountSid="+sid+"&To=%2B14155550104&RawDlrDoneDate=2611281200",
		"MessageSid=SM2&MessageStatus=undelivered&ErrorCode=30003", "CallSid=CA5&CallStatus=completed",
		"CallSid=CA6&CallStatus=no-answer", "MessageStatus=delivered", "MessageSid=&MessageStatus=", "%zz", "")
}

// TestAPreviousAuthTokenVerifiesCallbacks: while the auth token is rotated, Twilio signs callbacks
// with the old (still primary) token until the new one is promoted; previous_auth_tokens accepts
// them, and nothing else does. With one token, every callback between the reload and the promotion
// was refused, and Twilio does not retry it by default.
func TestAPreviousAuthTokenVerifiesCallbacks(t *testing.T) {
	form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}}
	const u = "https://gw.example.com/v1/dlr/twilio/tw"
	p := New(Config{AccountSID: sid, AuthToken: "new-token", PreviousAuthTokens: []gateway.Secret{"", "old-token"}, From: "+1",
		BaseURL: "https://api.twilio.com"}, gateway.Deps{})
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"new-token", true}, {"old-token", true}, {"older-token", false}, {"", false}} {
		r := httptest.NewRequest("POST", "/v1/dlr/twilio/tw", strings.NewReader(form.Encode()))
		r.Header.Set("X-Twilio-Signature", Signature(tc.token, u, form))
		_, err := p.ParseReports(r, []byte(form.Encode()), u)
		if ok := err == nil; ok != tc.ok {
			t.Errorf("signed with %q: err %v, want accepted %v", tc.token, err, tc.ok)
		}
	}
}

// TestSendReadsTwiliosExamples: every answer Twilio's spec gives as an example of creating a
// message or a call is read as accepted, with its sid as the provider's message id.
func TestSendReadsTwiliosExamples(t *testing.T) {
	spec := providertest.LoadSpec(t, "twilio-api-v2010.openapi.json")
	for _, tc := range []struct {
		path string
		typ  gateway.MessageType
	}{
		{"/2010-04-01/Accounts/" + sid + "/Messages.json", gateway.SMS},
		{"/2010-04-01/Accounts/" + sid + "/Calls.json", gateway.Voice},
	} {
		examples, err := spec.ResponseExamples(tc.path, "POST", "201")
		if err != nil || len(examples) == 0 {
			t.Fatalf("%s: %d examples, %v", tc.path, len(examples), err)
		}
		for name, body := range examples {
			var want struct {
				SID string `json:"sid"`
			}
			if err := json.Unmarshal(body, &want); err != nil || want.SID == "" {
				t.Fatalf("%s, %q: no sid (%v)", tc.path, name, err)
			}
			srv := providertest.Answering(t, http.MethodPost, tc.path, http.StatusCreated, body)
			res, err := newDriver(t, srv.URL, nil).Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+14155550104", Type: tc.typ, Text: "Your code is 123456", Code: "123456"})
			if err != nil || res.ProviderMessageID != want.SID {
				t.Errorf("%s, %q: %+v %v, want sid %s", tc.path, name, res, err, want.SID)
			}
		}
	}
}

// TestErrorCodesAsDocumented: each code docs/providers/twilio.md's table names has the class its
// row gives, through the driver's own reading of an error body, so the table and the code cannot
// drift apart.
func TestErrorCodesAsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/providers/twilio.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`^\| ([0-9, ]+[0-9])(?: \(HTTP 429\))? \| [^|]+ \| (recipient|destination|provider|throttled)\b`)
	classes := map[string]gateway.Class{"recipient": gateway.ClassRecipient, "destination": gateway.ClassDestination, "provider": gateway.ClassProvider, "throttled": gateway.ClassThrottled}
	p := New(Config{AccountSID: "AC" + strings.Repeat("0", 32), AuthToken: "t", From: "+15005550006"}, gateway.Deps{Name: "tw"})
	n := 0
	for _, line := range strings.Split(string(doc), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, code := range strings.Split(m[1], ", ") {
			n++
			body := fmt.Sprintf(`{"code":%s,"message":"","status":400}`, code)
			e := p.classifyHTTP(&kit.Response{Status: 400, Body: []byte(body)})
			if e == nil || e.Class != classes[m[2]] || e.Code != code || e.Message == "" {
				t.Errorf("code %s: %+v, the docs say %s", code, e, m[2])
			}
		}
	}
	if n < 16 {
		t.Errorf("%d codes found in the docs' table, want every one (at least 16)", n)
	}
	// A body without a code is left to the HTTP status.
	if e := p.classifyHTTP(&kit.Response{Status: 400, Body: []byte(`{"message":"odd","status":400}`)}); e != nil {
		t.Errorf("a body without a code: %+v", e)
	}
}
