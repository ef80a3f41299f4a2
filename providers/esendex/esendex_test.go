package esendex

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/esendex/esendextest"
	"github.com/smsgate/smsgate/providers/providertest"
)

const (
	user     = "ops@example.com"
	password = "esendex-PASSWORD-0123456789"
	account  = "EX0123456"
	hook     = "esendex-hook-SECRET-42"
)

func newDriver(t testing.TB, base string) *Provider {
	t.Helper()
	c := Config{BaseURL: base, Username: user, Password: password, AccountReference: account, From: "SMSGate", Senders: map[string]string{"AU": "61400000000"}, WebhookSecret: hook}
	c.Defaults()
	if p := c.Validate(); len(p) > 0 {
		t.Fatalf("config: %v", p)
	}
	return New(c, gateway.Deps{Name: "esendex", HTTPClient: &http.Client{}})
}

func serve(t *testing.T) (*esendextest.Fake, *httptest.Server) {
	f := esendextest.New(user, password, account, true)
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	t.Cleanup(f.Release)
	return f, s
}

func TestSendRequests(t *testing.T) {
	f, s := serve(t)
	p := newDriver(t, s.URL)
	res, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+447911123456", Country: "GG", Type: gateway.SMS, Text: "Your code is 123456"})
	if err != nil || !strings.HasPrefix(res.ProviderMessageID, "1183C73D-") {
		t.Fatalf("res %+v err %v", res, err)
	}
	reqs := f.Requests()
	got := reqs[len(reqs)-1]
	want := esendextest.Request{Method: "POST", Path: "/v1.0/messagedispatcher", ContentType: "application/xml", User: user,
		Body: esendextest.Messages{AccountReference: account, From: "SMSGate", Type: "SMS", CharacterSet: "Auto"}}
	want.Body.Message = append(want.Body.Message, struct {
		To   string `xml:"to"`
		Body string `xml:"body"`
	}{To: "447911123456", Body: "Your code is 123456"})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := p.Send(context.Background(), &gateway.Message{To: "+61412345678", Country: "AU", Type: gateway.Voice, Code: "4271", Language: "en-AU"}); err != nil {
		t.Fatal(err)
	}
	v := f.Requests()[len(f.Requests())-1].Body
	if v.Type != "Voice" || v.Lang != "en-AU" || v.From != "61400000000" || v.Message[0].Body != "4, 2, 7, 1. 4, 2, 7, 1." {
		t.Errorf("voice request %+v", v)
	}
	// A call whose request gave a text and no code (an Infobip-compatible one) speaks the code
	// the text holds, digit by digit.
	if _, err := p.Send(context.Background(), &gateway.Message{To: "+61412345678", Country: "AU", Type: gateway.Voice, Text: "Your code is 5832", Language: "en-AU"}); err != nil {
		t.Fatal(err)
	}
	if v := f.Requests()[len(f.Requests())-1].Body; v.Message[0].Body != "5, 8, 3, 2. 5, 8, 3, 2." {
		t.Errorf("a call from a text with a code: body %q", v.Message[0].Body)
	}
}

func TestVoiceOnlyInItsLanguages(t *testing.T) {
	p := newDriver(t, "https://api.esendex.com")
	for lang, want := range map[string]bool{"en-GB": true, "en": true, "en-US": true, "fr-CA": true, "de-DE": true, "es": true, "it-IT": false, "pt-BR": false, "": false} {
		ok, _ := p.Capabilities().Supports(&gateway.Message{Type: gateway.Voice, Language: lang})
		if ok != want {
			t.Errorf("voice in %q: %v, want %v", lang, ok, want)
		}
	}
	for tag, want := range map[string]string{"en-AU": "en-AU", "en_US": "en-GB", "fr-CA": "fr-FR", "de": "de-DE", "it": "", "EN-au": "en-AU", "FR": "fr-FR"} {
		if got := Language(tag); got != want {
			t.Errorf("Language(%q) = %q, want %q", tag, got, want)
		}
	}
	off := false
	c := Config{BaseURL: "https://x", Username: "u", Password: "p", AccountReference: "EX1", Voice: &off}
	if New(c, gateway.Deps{}).Capabilities().Can(gateway.Voice) {
		t.Error("voice: false still declares voice")
	}
}

func TestContract(t *testing.T) {
	_, ok := serve(t)
	push := `<?xml version="1.0" encoding="utf-8"?><MessageDelivered><Id>1</Id><MessageId>M1</MessageId><AccountId>A</AccountId><OccurredAt>2026-11-30T12:00:05 UTC</OccurredAt></MessageDelivered>`
	xmlErr := func(d string) string {
		return `<?xml version="1.0" encoding="utf-8"?><errors xmlns="http://api.esendex.com/ns/"><error><description>` + d + `</description></error></errors>`
	}
	// Esendex names a recipient it refuses in more than one way.
	providertest.Run(t, providertest.Contract{
		New: func(base string, deps gateway.Deps) gateway.Provider {
			c := Config{BaseURL: base, Username: user, Password: password, AccountReference: account, WebhookSecret: hook}
			c.Defaults()
			return New(c, deps)
		},
		Accepting: ok.URL,
		Secrets:   []string{password, hook},
		BadReport: func() (*http.Request, []byte) {
			return httptest.NewRequest("POST", "/v1/dlr/esendex/e?secret=wrong", strings.NewReader(push)), []byte(push)
		},
		Cases: []providertest.Case{
			{Name: "402 no credits", Status: 402, ContentType: "text/plain", Body: "Payment Required", Class: gateway.ClassProvider, Code: "ESENDEX_NO_CREDITS"},
			{Name: "401", Status: 401, ContentType: "text/plain", Body: "Unauthorized", Class: gateway.ClassProvider, Code: "ESENDEX_AUTH"},
			{Name: "403 feature not enabled", Status: 403, ContentType: "text/plain", Body: "Forbidden: voice not enabled", Class: gateway.ClassProvider, Code: "ESENDEX_AUTH"},
			{Name: "400 XML naming the recipient", Status: 400, ContentType: "application/xml", Body: xmlErr("Invalid recipient: not a valid phone number"), Class: gateway.ClassRecipient, Code: "ESENDEX_RECIPIENT"},
			{Name: "400 plain text naming the recipient", Status: 400, ContentType: "text/plain", Body: "Bad Request: invalid recipient 447911123456", Class: gateway.ClassRecipient, Code: "ESENDEX_RECIPIENT"},
			{Name: "400 naming the to element", Status: 400, ContentType: "application/xml", Body: xmlErr("The &lt;to&gt; element is missing"), Class: gateway.ClassRecipient, Code: "ESENDEX_RECIPIENT"},
			{Name: "400 naming a phone number", Status: 400, ContentType: "text/plain", Body: "Bad Request: not a valid phone number", Class: gateway.ClassRecipient, Code: "ESENDEX_RECIPIENT"},
			{Name: "400 invalid to", Status: 400, ContentType: "text/plain", Body: "Bad Request: invalid to", Class: gateway.ClassRecipient, Code: "ESENDEX_RECIPIENT"},
			{Name: "400 about something else", Status: 400, ContentType: "text/plain", Body: "Bad Request: too many messages", Class: gateway.ClassProvider, Code: "ESENDEX_BAD_REQUEST"},
			{Name: "an echoed password is removed", Status: 403, ContentType: "text/plain", Body: "Forbidden for " + password, Class: gateway.ClassProvider, Code: "ESENDEX_AUTH"},
			{Name: "200 without a messageheader", Status: 200, ContentType: "application/xml", Body: `<messageheaders batchid="x" xmlns="http://api.esendex.com/ns/"/>`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "200 with a messageheader without an id", Status: 200, ContentType: "application/xml", Body: `<messageheaders batchid="x" xmlns="http://api.esendex.com/ns/"><messageheader uri="u"/></messageheaders>`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "200 accepted", Status: 200, ContentType: "application/xml", Body: `<messageheaders batchid="x" xmlns="http://api.esendex.com/ns/"><messageheader uri="u" id="ABC"/></messageheaders>`, OK: true},
		},
	})
}

func TestPushNotifications(t *testing.T) {
	p := newDriver(t, "https://api.esendex.com")
	delivered := `<?xml version="1.0" encoding="utf-8"?><MessageDelivered><Id>n1</Id><MessageId>1183C73D-0001</MessageId><AccountId>acc</AccountId><OccurredAt>2026-11-30T12:00:05 UTC</OccurredAt></MessageDelivered>`
	failed := `<MessageFailed><Id>n2</Id><MessageId>1183C73D-0002</MessageId><AccountId>acc</AccountId><OccurredAt>2026-11-30T12:00:06 UTC</OccurredAt></MessageFailed>`
	for _, tc := range []struct {
		name, target, body string
		basic              bool
		want               []gateway.DeliveryReport
	}{
		{"delivered, secret in the URL", "/v1/dlr/esendex/e?secret=" + hook, delivered, false,
			[]gateway.DeliveryReport{{ProviderMessageID: "1183C73D-0001", ProviderStatus: "MessageDelivered", Status: gateway.StatusDelivered, DoneAt: time.Date(2026, 11, 30, 12, 0, 5, 0, time.UTC)}}},
		{"failed, secret as basic-auth password", "/v1/dlr/esendex/e", failed, true,
			[]gateway.DeliveryReport{{ProviderMessageID: "1183C73D-0002", ProviderStatus: "MessageFailed", Status: gateway.StatusFailed, Error: "MessageFailed", DoneAt: time.Date(2026, 11, 30, 12, 0, 6, 0, time.UTC)}}},
		{"an inbound message is accepted and ignored", "/v1/dlr/esendex/e?secret=" + hook, `<InboundMessage><Id>x</Id></InboundMessage>`, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", tc.target, strings.NewReader(tc.body))
			if tc.basic {
				r.SetBasicAuth("esendex", hook)
			}
			got, err := p.ParseReports(r, []byte(tc.body), "")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	r := httptest.NewRequest("POST", "/x?secret="+hook, strings.NewReader("not xml"))
	if _, err := p.ParseReports(r, []byte("not xml"), ""); gateway.ClassOf(err) != gateway.ClassCaller {
		t.Errorf("malformed: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{BaseURL: "ftp://x", AccountReference: "12345", From: "a sender that is too long", Senders: map[string]string{"uk": "x"}}
	c.Defaults()
	want := []gateway.Problem{{Key: "base_url", Message: `"ftp://x" is not an http(s) URL`}, {Key: "username", Message: "is required (the Esendex login)"},
		{Key: "password", Message: "is required"}, {Key: "account_reference", Message: "must be the account reference, EX followed by digits"},
		{Key: "from", Message: "must be a number or at most 11 letters and digits"}, {Key: "senders.uk", Message: "keys must be ISO 3166-1 alpha-2 country codes (or 001)"}}
	if diff := cmp.Diff(want, c.Validate()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	valid := func(edit func(*Config)) []gateway.Problem {
		c := Config{Username: user, Password: password, AccountReference: account}
		c.Defaults()
		edit(&c)
		return c.Validate()
	}
	if p := valid(func(*Config) {}); len(p) != 0 {
		t.Errorf("defaults: %v", p)
	}
	c = Config{}
	c.Defaults()
	if c.BaseURL != "https://api.esendex.com" || c.Voice == nil || !*c.Voice {
		t.Errorf("defaults: base_url %q, voice %v", c.BaseURL, c.Voice)
	}
	if p := valid(func(c *Config) { c.BaseURL = "https://" }); len(p) != 1 || p[0].Key != "base_url" {
		t.Errorf("a base_url without a host: %v", p)
	}
	for ref, ok := range map[string]bool{"EX0012345": true, "EX1": true, "EX": false, "xEX123": false, "EX123x": false, "ex123": false} {
		if p := valid(func(c *Config) { c.AccountReference = ref }); (len(p) == 0) != ok {
			t.Errorf("account_reference %q: %v", ref, p)
		}
	}
	for from, ok := range map[string]bool{"": true, "SMS Gate": true, "A2345678901": true, "447700900123": true, "+447700900123": true,
		"+1234567890123456": true, "A23456789012": false, "+12345678901234567": false, "SMS-Gate": false, "+SMSGate": false} {
		if p := valid(func(c *Config) { c.From = from }); (len(p) == 0) != ok {
			t.Errorf("from %q: %v", from, p)
		}
	}
}

// FuzzParseReports: any body behind the right secret gives reports or a 400, never a panic.
func FuzzParseReports(f *testing.F) {
	p := newDriver(f, "https://api.esendex.com")
	providertest.FuzzReports(f, p, []string{password[len("esendex-"):], hook[len("esendex-"):]}, func(in []byte) (*http.Request, []byte, string) {
		r := httptest.NewRequest("POST", "/v1/dlr/esendex/e?secret="+hook, bytes.NewReader(in))
		r.Header.Set("Content-Type", "text/xml")
		return r, in, ""
	},
		`<?xml version="1.0" encoding="utf-8"?><MessageDelivered><Id>n1</Id><MessageId>1183C73D-0001</MessageId><AccountId>acc</AccountId><OccurredAt>2026-11-30T12:00:05 UTC</OccurredAt></MessageDelivered>`,
		`<MessageFailed><Id>n2</Id><MessageId>1183C73D-0002</MessageId><AccountId>acc</AccountId><OccurredAt>2026-11-30T12:00:06 UTC</OccurredAt></MessageFailed>`,
		`<InboundMessage><Id>x</Id></InboundMessage>`, `<MessageDelivered><MessageId></MessageId></MessageDelivered>`, `<!DOCTYPE x [<!ENTITY a "b">]><MessageDelivered/>`, `not xml`, ``)
}

// TestRotatedWebhookSecret: notifications of messages sent before a rotation carry the old secret.
func TestRotatedWebhookSecret(t *testing.T) {
	c := Config{BaseURL: "https://x", Username: user, Password: password, AccountReference: account, From: "SMSGate", WebhookSecret: "esendex-hook-NEW",
		PreviousWebhookSecrets: []gateway.Secret{hook}}
	c.Defaults()
	p := New(c, gateway.Deps{Name: "esendex", HTTPClient: &http.Client{}})
	delivered := `<MessageDelivered><Id>n1</Id><MessageId>1183C73D-0001</MessageId><AccountId>acc</AccountId><OccurredAt>2026-11-30T12:00:05 UTC</OccurredAt></MessageDelivered>`
	for s, ok := range map[string]bool{hook: true, "esendex-hook-NEW": true, "esendex-hook-OLDEST": false} {
		_, err := p.ParseReports(httptest.NewRequest("POST", "/v1/dlr/esendex/e?secret="+s, strings.NewReader(delivered)), []byte(delivered), "")
		if (err == nil) != ok {
			t.Errorf("secret %q: %v", s, err)
		}
	}
}

// TestAsksReportsWithASecretAndAPublicURL: Esendex's push notifications are set in its portal;
// they can be taken only with a public URL and a webhook secret (without one every notification
// is refused), so only then does delivery health wait for them.
func TestAsksReportsWithASecretAndAPublicURL(t *testing.T) {
	for _, tc := range []struct {
		secret, callback string
		want             bool
	}{{"s", "https://sms.example.com/v1/dlr/esendex/e", true}, {"", "https://sms.example.com/v1/dlr/esendex/e", false}, {"s", "", false}} {
		c := Config{Username: user, Password: password, AccountReference: account, WebhookSecret: gateway.Secret(tc.secret)}
		c.Defaults()
		if got := New(c, gateway.Deps{CallbackURL: tc.callback}).AsksReports(); got != tc.want {
			t.Errorf("secret %q, callback %q: %v, want %v", tc.secret, tc.callback, got, tc.want)
		}
	}
}

// TestAnErrorKeepsEsendexsCode: an XML error with a code of Esendex's own keeps it before the
// description, for whoever reads the attempt.
func TestAnErrorKeepsEsendexsCode(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`<?xml version="1.0" encoding="utf-8"?><errors xmlns="http://api.esendex.com/ns/"><error><code>UnknownAccount</code><description>the account reference is not known</description></error></errors>`))
	}))
	defer s.Close()
	_, err := newDriver(t, s.URL).Send(context.Background(), &gateway.Message{To: "+447911123456", Country: "GB", Type: gateway.SMS, Text: "Your code is 123456"})
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Code != "ESENDEX_BAD_REQUEST" || !strings.Contains(ge.Message, "UnknownAccount: the account reference is not known") {
		t.Errorf("error %v, want ESENDEX_BAD_REQUEST with Esendex's code and description", err)
	}
}
