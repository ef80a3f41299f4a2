package infobip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
	"github.com/smsgate/smsgate/providers/providertest"
)

const apiKey = "ib-KEY-0123456789abcdef"

const cbBase = "https://gw.example.com/v1/dlr/infobip/infobip-test"

func newDriver(t testing.TB, base string, edit func(*Config)) *Provider {
	t.Helper()
	c := Config{BaseURL: base, APIKey: apiKey, Sender: "InfoSMS", Senders: map[string]string{"US": "+15550001111"},
		Voice: Voice{Language: "en", VoiceName: "Joanna", From: "41793026700"}, WebhookSecret: "hook-SECRET"}
	if edit != nil {
		edit(&c)
	}
	c.Defaults()
	if p := c.Validate(); len(p) > 0 {
		t.Fatalf("config problems: %v", p)
	}
	return New(c, gateway.Deps{Name: "infobip-test", HTTPClient: &http.Client{}, CallbackURL: cbBase})
}

// serve starts the one Infobip fake, recording requests.
func serve(t *testing.T) (*infobiptest.Fake, *httptest.Server) {
	f := infobiptest.New(apiKey, true)
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	t.Cleanup(f.Release)
	return f, s
}

func last(f *infobiptest.Fake) infobiptest.Request {
	r := f.Requests()
	return r[len(r)-1]
}

var sms = &gateway.Message{ID: "msg_1", To: "+14155550104", Country: "US", Type: gateway.SMS, Text: "Your code is 123456", Code: "123456"}

// noCallback is a driver without a webhook secret: it asks for no delivery reports.
func noCallback(c *Config) { c.WebhookSecret = "" }

func TestSendBodies(t *testing.T) {
	cb := "https://gw.example.com/v1/dlr/infobip/infobip-test?secret=hook-SECRET"
	tests := []struct {
		name     string
		edit     func(*Config)
		msg      gateway.Message
		path     string
		wantBody map[string]any
	}{
		{name: "sms v3", msg: *sms, path: "/sms/3/messages", wantBody: map[string]any{"messages": []any{map[string]any{
			"sender":       "+15550001111",
			"destinations": []any{map[string]any{"to": "14155550104", "messageId": "msg_1"}},
			"content":      map[string]any{"text": "Your code is 123456"},
			"webhooks":     map[string]any{"delivery": map[string]any{"url": cb}, "contentType": "application/json"},
		}}}},
		{name: "sms v2, default sender, no callback", edit: func(c *Config) { c.API = "v2"; noCallback(c) },
			msg:  gateway.Message{ID: "msg_2", To: "+447911123456", Country: "GG", Type: gateway.SMS, Text: "code 4321"},
			path: "/sms/2/text/advanced", wantBody: map[string]any{"messages": []any{map[string]any{
				"from":         "InfoSMS",
				"destinations": []any{map[string]any{"to": "447911123456", "messageId": "msg_2"}},
				"text":         "code 4321",
			}}}},
		{name: "sms v2 with callback", edit: func(c *Config) { c.API = "v2" }, msg: *sms,
			path: "/sms/2/text/advanced", wantBody: map[string]any{"messages": []any{map[string]any{
				"from":              "+15550001111",
				"destinations":      []any{map[string]any{"to": "14155550104", "messageId": "msg_1"}},
				"text":              "Your code is 123456",
				"notifyUrl":         cb,
				"notifyContentType": "application/json",
			}}}},
		{name: "voice speaks the code digit by digit", msg: func() gateway.Message { m := *sms; m.Type = gateway.Voice; return m }(),
			path: "/tts/3/advanced", wantBody: map[string]any{"messages": []any{map[string]any{
				"from":              "41793026700",
				"destinations":      []any{map[string]any{"to": "14155550104", "messageId": "msg_1"}},
				"text":              "Your code is 1, 2, 3, 4, 5, 6. Again, your code is 1, 2, 3, 4, 5, 6.",
				"language":          "en",
				"voice":             map[string]any{"name": "Joanna"},
				"notifyUrl":         cb,
				"notifyContentType": "application/json",
			}}}},
		{name: "voice in the configured language keeps its voice", edit: noCallback, msg: func() gateway.Message {
			m := *sms
			m.Type, m.Language = gateway.Voice, "EN_us"
			return m
		}(), path: "/tts/3/advanced", wantBody: map[string]any{"messages": []any{map[string]any{
			"from":         "41793026700",
			"destinations": []any{map[string]any{"to": "14155550104", "messageId": "msg_1"}},
			"text":         "Your code is 1, 2, 3, 4, 5, 6. Again, your code is 1, 2, 3, 4, 5, 6.",
			"language":     "en",
			"voice":        map[string]any{"name": "Joanna"},
		}}}},
		{name: "voice without a voice name or a code: the text, no voice", edit: func(c *Config) { noCallback(c); c.Voice.VoiceName = "" }, msg: func() gateway.Message {
			m := *sms
			m.Type, m.Text, m.Code = gateway.Voice, "Your appointment is at noon", ""
			return m
		}(), path: "/tts/3/advanced", wantBody: map[string]any{"messages": []any{map[string]any{
			"from":         "41793026700",
			"destinations": []any{map[string]any{"to": "14155550104", "messageId": "msg_1"}},
			"text":         "Your appointment is at noon",
			"language":     "en",
		}}}},
		{name: "voice in the caller's language drops the English voice", edit: noCallback, msg: func() gateway.Message {
			m := *sms
			m.Type, m.Language = gateway.Voice, "DE_at"
			return m
		}(), path: "/tts/3/advanced", wantBody: map[string]any{"messages": []any{map[string]any{
			"from":         "41793026700",
			"destinations": []any{map[string]any{"to": "14155550104", "messageId": "msg_1"}},
			"text":         "Your code is 1, 2, 3, 4, 5, 6. Again, your code is 1, 2, 3, 4, 5, 6.",
			"language":     "de",
		}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, s := serve(t)
			p := newDriver(t, s.URL+"/", tc.edit)
			res, err := p.Send(context.Background(), &tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if res.ProviderMessageID != tc.msg.ID || res.Status != "PENDING_ACCEPTED" {
				t.Errorf("result %+v", res)
			}
			got := last(f)
			want := infobiptest.Request{Method: "POST", Path: tc.path, Authorization: "App " + apiKey, ContentType: "application/json", Accept: "application/json", Body: tc.wantBody}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(infobiptest.Request{}, "Raw", "At")); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestContract runs the shared driver contract, then Infobip's own answers.
func TestContract(t *testing.T) {
	_, ok := serve(t)
	rejected := func(group string, gid, id int, name string) string {
		return `{"bulkId":"b","messages":[{"messageId":"m","status":{"groupId":` + itoa(gid) + `,"groupName":"` + group + `","id":` + itoa(id) + `,"name":"` + name + `","description":"d"},"destination":"1"}]}`
	}
	rep := `{"results":[{"messageId":"m1","status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET"}}]}`
	providertest.Run(t, providertest.Contract{
		New: func(base string, deps gateway.Deps) gateway.Provider {
			c := Config{BaseURL: base, APIKey: apiKey, WebhookSecret: "hook-SECRET-42"}
			c.Defaults()
			return New(c, deps)
		},
		Accepting: ok.URL,
		Secrets:   []string{apiKey, "hook-SECRET-42"},
		BadReport: func() (*http.Request, []byte) {
			return httptest.NewRequest("POST", "/v1/dlr/infobip/x?secret=hook-SECRET-41", strings.NewReader(rep)), []byte(rep)
		},
		Cases: []providertest.Case{
			{Name: "v3 ApiError 401", Status: 401, Body: `{"errorCode":"E401","description":"Invalid login details","action":"Check credentials","violations":[],"resources":[]}`, Class: gateway.ClassProvider, Code: "E401"},
			{Name: "legacy 401", Status: 401, Body: `{"requestError":{"serviceException":{"messageId":"UNAUTHORIZED","text":"Invalid login details"}}}`, Class: gateway.ClassProvider, Code: "UNAUTHORIZED"},
			{Name: "403 scopes", Status: 403, Body: `{"errorCode":"E403","description":"Insufficient permissions","action":"","violations":[],"resources":[]}`, Class: gateway.ClassProvider, Code: "E403"},
			{Name: "429 legacy", Status: 429, Body: `{"requestError":{"serviceException":{"messageId":"TOO_MANY_REQUESTS","text":"Too many requests"}}}`, Class: gateway.ClassThrottled, Code: "TOO_MANY_REQUESTS"},
			{Name: "500 v3", Status: 500, Body: `{"errorCode":"E500","description":"Something went wrong.","action":"","violations":[],"resources":[]}`, Class: gateway.ClassProvider, Code: "E500"},
			{Name: "502 html from a proxy", Status: 502, ContentType: "text/html", Body: `<html><body>Bad Gateway</body></html>`, Class: gateway.ClassProvider, Code: "HTTP_502"},
			{Name: "404 wrong base url", Status: 404, ContentType: "text/plain", Body: `not found`, Class: gateway.ClassProvider, Code: "HTTP_404"},
			{Name: "400 about the destination", Status: 400, Body: `{"errorCode":"E400","description":"Request cannot be processed.","action":"","violations":[{"property":"messages[0].destinations[0].to","violation":"invalid"}],"resources":[]}`, Class: gateway.ClassRecipient, Code: "E400"},
			// Only a 400 is the destination's: a 403 is about the account (its key or scopes), whatever field it names.
			{Name: "403 about the destination", Status: 403, Body: `{"errorCode":"E403","description":"Forbidden destination.","action":"","violations":[{"property":"messages[0].destinations[0].to","violation":"not allowed"}],"resources":[]}`, Class: gateway.ClassProvider, Code: "E403"},
			{Name: "400 legacy about to", Status: 400, Body: `{"requestError":{"serviceException":{"messageId":"BAD_REQUEST","text":"Bad request","validationErrors":{"messages[0].destinations[0].to":["invalid destination address"]}}}}`, Class: gateway.ClassRecipient, Code: "BAD_REQUEST"},
			{Name: "400 quoting the number", Status: 400, Body: `{"requestError":{"serviceException":{"messageId":"BAD_REQUEST","text":"Invalid destination address 14155550104"}}}`, Class: gateway.ClassProvider, Code: "BAD_REQUEST"},
			{Name: "400 about our body", Status: 400, Body: `{"errorCode":"E400","description":"Request cannot be processed.","action":"","violations":[{"property":"messages[0].content.text","violation":"must not be blank"}],"resources":[]}`, Class: gateway.ClassProvider, Code: "E400"},
			{Name: "an echoed key is removed, whole or cut", Status: 401, Body: `{"errorCode":"E401","description":"Invalid key App ` + apiKey + ` (` + apiKey[3:12] + `)","action":"","violations":[],"resources":[]}`, Class: gateway.ClassProvider, Code: "E401"},
			{Name: "200 REJECTED_DESTINATION", Status: 200, Body: rejected("REJECTED", 5, 52, "REJECTED_DESTINATION"), Class: gateway.ClassRecipient, Code: "REJECTED_DESTINATION"},
			{Name: "200 REJECTED_PREFIX_MISSING", Status: 200, Body: rejected("REJECTED", 5, 8, "REJECTED_PREFIX_MISSING"), Class: gateway.ClassRecipient, Code: "REJECTED_PREFIX_MISSING"},
			{Name: "200 MISSING_TO without messageId", Status: 200, Body: `{"messages":[{"to":"","status":{"groupId":5,"groupName":"REJECTED","id":51,"name":"MISSING_TO","description":"Missing destination"}}]}`, Class: gateway.ClassRecipient, Code: "MISSING_TO"},
			{Name: "200 blocklisted", Status: 200, Body: rejected("REJECTED", 5, 14, "REJECTED_DESTINATION_BLOCKLISTED"), Class: gateway.ClassRecipient, Code: "REJECTED_DESTINATION_BLOCKLISTED"},
			{Name: "200 DND", Status: 200, Body: rejected("REJECTED", 5, 10, "REJECTED_DND"), Class: gateway.ClassRecipient, Code: "REJECTED_DND"},
			{Name: "200 not enough credits", Status: 200, Body: rejected("REJECTED", 5, 12, "REJECTED_NOT_ENOUGH_CREDITS"), Class: gateway.ClassProvider, Code: "REJECTED_NOT_ENOUGH_CREDITS"},
			{Name: "200 route not available: destination", Status: 200, Body: rejected("REJECTED", 5, 19, "REJECTED_ROUTE_NOT_AVAILABLE"), Class: gateway.ClassDestination, Code: "REJECTED_ROUTE_NOT_AVAILABLE"},
			{Name: "200 network rejected: destination", Status: 200, Body: rejected("REJECTED", 5, 6, "REJECTED_NETWORK"), Class: gateway.ClassDestination, Code: "REJECTED_NETWORK"},
			{Name: "200 sender not allowed: destination", Status: 200, Body: rejected("REJECTED", 5, 13, "REJECTED_SENDER"), Class: gateway.ClassDestination, Code: "REJECTED_SENDER"},
			{Name: "200 system error", Status: 200, Body: rejected("REJECTED", 5, 21, "REJECTED_SYSTEM_ERROR"), Class: gateway.ClassProvider, Code: "REJECTED_SYSTEM_ERROR"},
			{Name: "200 undeliverable", Status: 200, Body: rejected("UNDELIVERABLE", 2, 4, "UNDELIVERABLE_REJECTED_OPERATOR"), Class: gateway.ClassProvider, Code: "UNDELIVERABLE_REJECTED_OPERATOR"},
			{Name: "200 id only, lower-case group", Status: 200, Body: `{"messages":[{"messageId":"m","status":{"groupId":5,"groupName":"rejected","id":52}}]}`, Class: gateway.ClassRecipient, Code: "REJECTED_DESTINATION"},
			{Name: "200 unknown new group", Status: 200, Body: rejected("QUARANTINED", 9, 99, "QUARANTINED_NEW"), Class: gateway.ClassProvider, Code: "QUARANTINED_NEW"},
			{Name: "200 without messages", Status: 200, Body: `{"bulkId":"x","messages":[]}`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "200 pending without a messageId", Status: 200, Body: `{"messages":[{"messageId":"","status":{"groupId":1,"groupName":"PENDING","id":26,"name":"PENDING_ACCEPTED"}}]}`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "400 legacy about to alone", Status: 400, Body: `{"requestError":{"serviceException":{"messageId":"BAD_REQUEST","text":"Bad request","validationErrors":{"to":["invalid"]}}}}`, Class: gateway.ClassRecipient, Code: "BAD_REQUEST"},
			{Name: "400 about a message's to, in capitals", Status: 400, Body: `{"errorCode":"E400","description":"Request cannot be processed.","action":"","violations":[{"property":"Messages[0].To","violation":"invalid"}],"resources":[]}`, Class: gateway.ClassRecipient, Code: "E400"},
			{Name: "200 not json", Status: 200, ContentType: "text/plain", Body: `OK`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "lenient decoding: unknown fields and enum values", Status: 200, OK: true,
				Body: `{"bulkId":"b","newTopLevel":{"x":[1]},"messages":[{"messageId":"m9","status":{"groupId":1,"groupName":"PENDING","id":7,"name":"PENDING_SOMETHING_NEW","action":"none","extra":true},"destination":"1","details":{"messageCount":1,"newField":"x"}}]}`},
			{Name: "voice: 200 PENDING", Type: gateway.Voice, Status: 200, OK: true,
				Body: `{"bulkId":"b","messages":[{"to":"1","status":{"groupId":1,"groupName":"PENDING","id":26,"name":"PENDING_ACCEPTED"},"messageId":"v1"}]}`},
		},
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestDeliveryReports(t *testing.T) {
	p := newDriver(t, "https://x.api.infobip.com", nil)
	v2 := `{"results":[{"bulkId":"BULK-ID-123-xyz","messageId":"msg_1","to":"41793026727","sentAt":"2019-11-09T16:00:00.000+0000","doneAt":"2019-11-09T16:00:05.000+0100","smsCount":3,"callbackData":"callbackData","price":{"pricePerMessage":0.125,"currency":"EUR"},"status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET","description":"Message delivered to handset"},"error":{"groupId":0,"groupName":"Ok","id":0,"name":"NO_ERROR","description":"No Error","permanent":false}}]}`
	v3 := `{"results":[{"bulkId":"b","messageId":"msg_2","to":"41793026727","sender":"InfoSMS","sentAt":"2019-11-09T16:00:00.000+0000","doneAt":"2019-11-09T16:00:00.000+0000","messageCount":2,"price":{"pricePerMessage":0.25,"currency":"EUR"},"status":{"groupId":2,"groupName":"UNDELIVERABLE","id":9,"name":"UNDELIVERABLE_NOT_DELIVERED","description":"d"},"error":{"groupId":1,"groupName":"HANDSET_ERRORS","id":27,"name":"EC_ABSENT_SUBSCRIBER","description":"d","permanent":false},"platform":{"entityId":"e","applicationId":"a"},"newField":1},
		{"messageId":"msg_3","status":{"groupId":1,"groupName":"PENDING","id":7,"name":"PENDING_ENROUTE"}},
		{"messageId":"msg_4","status":{"groupId":3,"groupName":"DELIVERED","id":2,"name":"DELIVERED_TO_OPERATOR"}},
		{"messageId":"msg_5","status":{"groupId":5,"groupName":"REJECTED","id":12,"name":"REJECTED_NOT_ENOUGH_CREDITS"}}]}`
	voice := `{"results":[{"bulkId":"b","messageId":"msg_6","from":"41793026700","to":"41793026727","sentAt":"2019-11-09T16:00:00.000+0000","doneAt":"2019-11-09T16:00:30.000+0000","voiceCall":{"duration":10,"chargedDuration":30},"price":{"pricePerSecond":0.0625,"currency":"EUR"},"status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET"},"error":{"groupId":0,"groupName":"OK","id":5000,"name":"VOICE_ANSWERED","permanent":true}},
		{"messageId":"msg_7","voiceCall":{"duration":12},"price":{"pricePerSecond":0.0625,"currency":"EUR"},"status":{"groupName":"DELIVERED","name":"DELIVERED_TO_HANDSET"}},
		{"messageId":"msg_8","price":{"pricePerSecond":0.0625,"currency":"EUR"},"status":{"groupName":"DELIVERED","name":"DELIVERED_TO_HANDSET"}}]}`
	// Prices are per part of an SMS and per second charged of a call: the report's cost is the
	// product (a 3-part SMS at 0.125 cost 0.375; a call charged 30 s at 0.0625 a second, 1.875).
	// A rate without the seconds it applies to leaves the message unpriced.
	at := func(s string) time.Time { t, _ := time.Parse(TimeLayout, s); return t.UTC() }
	tests := []struct {
		name, body string
		want       []gateway.DeliveryReport
	}{
		{"v2", v2, []gateway.DeliveryReport{{ProviderMessageID: "msg_1", MessageID: "msg_1", Status: gateway.StatusDelivered, ProviderStatus: "DELIVERED_TO_HANDSET",
			Price: 0.375, Currency: "EUR", SentAt: at("2019-11-09T16:00:00.000+0000"), DoneAt: at("2019-11-09T16:00:05.000+0100")}}},
		{"v3", v3, []gateway.DeliveryReport{
			{ProviderMessageID: "msg_2", MessageID: "msg_2", Status: gateway.StatusUndelivered, ProviderStatus: "UNDELIVERABLE_NOT_DELIVERED", Error: "EC_ABSENT_SUBSCRIBER",
				Price: 0.5, Currency: "EUR", SentAt: at("2019-11-09T16:00:00.000+0000"), DoneAt: at("2019-11-09T16:00:00.000+0000")},
			{ProviderMessageID: "msg_3", MessageID: "msg_3", Status: gateway.StatusSent, ProviderStatus: "PENDING_ENROUTE"},
			{ProviderMessageID: "msg_4", MessageID: "msg_4", Status: gateway.StatusSent, ProviderStatus: "DELIVERED_TO_OPERATOR"},
			{ProviderMessageID: "msg_5", MessageID: "msg_5", Status: gateway.StatusFailed, ProviderStatus: "REJECTED_NOT_ENOUGH_CREDITS"},
		}},
		{"voice", voice, []gateway.DeliveryReport{{ProviderMessageID: "msg_6", MessageID: "msg_6", Status: gateway.StatusDelivered, ProviderStatus: "DELIVERED_TO_HANDSET",
			Price: 1.875, Currency: "EUR", SentAt: at("2019-11-09T16:00:00.000+0000"), DoneAt: at("2019-11-09T16:00:30.000+0000")},
			{ProviderMessageID: "msg_7", MessageID: "msg_7", Status: gateway.StatusDelivered, ProviderStatus: "DELIVERED_TO_HANDSET", Price: 0.75, Currency: "EUR"},
			{ProviderMessageID: "msg_8", MessageID: "msg_8", Status: gateway.StatusDelivered, ProviderStatus: "DELIVERED_TO_HANDSET"}}},
	}
	smsSpec := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	for name, body := range map[string]string{"receive-outbound-sms-message-reports": v2, "receive-outbound-sms-message-reports-v3": v3} {
		// The test bodies are the shapes the spec's webhooks define (v3's extra "newField" aside,
		// which checks leniency).
		if errs := smsSpec.RequestErrors("webhook:"+name, "POST", []byte(strings.Replace(body, `,"newField":1`, "", 1))); len(errs) > 0 {
			t.Errorf("%s test body does not match the spec: %v", name, errs)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/dlr/infobip/infobip-test?secret=hook-SECRET", strings.NewReader(tc.body))
			got, err := p.ParseReports(r, []byte(tc.body), "")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("basic auth password works too", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/v1/dlr/infobip/infobip-test", strings.NewReader(v2))
		r.SetBasicAuth("infobip", "hook-SECRET")
		if _, err := p.ParseReports(r, []byte(v2), ""); err != nil {
			t.Error(err)
		}
	})
	for _, target := range []string{"/v1/dlr/infobip/x", "/v1/dlr/infobip/x?secret=wrong", "/v1/dlr/infobip/x?secret="} {
		r := httptest.NewRequest("POST", target, strings.NewReader(v2))
		if _, err := p.ParseReports(r, []byte(v2), ""); err != gateway.ErrUnauthenticated {
			t.Errorf("%s: err = %v, want ErrUnauthenticated", target, err)
		}
	}
	// A rotated secret: reports of messages sent before still carry the old one.
	rotated := newDriver(t, "https://x", func(c *Config) {
		c.WebhookSecret, c.PreviousWebhookSecrets = "hook-NEW", []gateway.Secret{"hook-SECRET"}
	})
	for secret, ok := range map[string]bool{"hook-SECRET": true, "hook-NEW": true, "hook-OLDEST": false} {
		r := httptest.NewRequest("POST", "/v1/dlr/infobip/x?secret="+secret, strings.NewReader(v2))
		if _, err := rotated.ParseReports(r, []byte(v2), ""); (err == nil) != ok {
			t.Errorf("after a rotation, secret %q: err = %v", secret, err)
		}
	}
	noSecret := newDriver(t, "https://x", func(c *Config) { c.WebhookSecret = "" })
	r := httptest.NewRequest("POST", "/v1/dlr/infobip/x?secret=", strings.NewReader(v2))
	if _, err := noSecret.ParseReports(r, []byte(v2), ""); err != gateway.ErrUnauthenticated {
		t.Errorf("without a configured secret reports must be refused, err = %v", err)
	}
	r = httptest.NewRequest("POST", "/v1/dlr/infobip/x?secret=hook-SECRET", strings.NewReader("<xml/>"))
	if _, err := p.ParseReports(r, []byte("<xml/>"), ""); gateway.ClassOf(err) != gateway.ClassCaller {
		t.Errorf("malformed body: err = %v", err)
	}
}

// TestReportStatuses: the status groups case-blind; a DELIVERED report is only sent while it
// names the operator, by name or by id 2 (a report may carry either alone).
func TestReportStatuses(t *testing.T) {
	for _, tc := range []struct {
		s    status
		want string
	}{
		{status{GroupName: "DELIVERED", ID: 5, Name: "DELIVERED_TO_HANDSET"}, gateway.StatusDelivered},
		{status{GroupName: "delivered", Name: "DELIVERED_TO_HANDSET"}, gateway.StatusDelivered},
		{status{GroupName: "DELIVERED", ID: 2}, gateway.StatusSent},
		{status{GroupName: "DELIVERED", Name: "delivered_to_operator"}, gateway.StatusSent},
		{status{GroupName: "EXPIRED", ID: 15, Name: "EXPIRED_EXPIRED"}, gateway.StatusUndelivered},
		{status{GroupName: "Undeliverable", ID: 9}, gateway.StatusUndelivered},
		{status{GroupName: "REJECTED", ID: 12}, gateway.StatusFailed},
		{status{GroupName: "PENDING", ID: 7}, gateway.StatusSent},
		{status{GroupName: "SOMETHING_NEW"}, gateway.StatusSent},
	} {
		if got := reportStatus(tc.s); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.s, got, tc.want)
		}
	}
}

// TestDeliveryReportsOfInfobipsExamples: the delivery reports Infobip's specs give as examples of
// its webhooks (SMS v2 and v3, voice) parse, each into reports with a message id and a status.
func TestDeliveryReportsOfInfobipsExamples(t *testing.T) {
	p := newDriver(t, "https://x", nil)
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	voice := providertest.LoadSpec(t, "infobip-voice.openapi.json")
	n := 0
	for _, hook := range []struct {
		spec *providertest.Spec
		name string
	}{{sms, "receive-outbound-sms-message-reports"}, {sms, "receive-outbound-sms-message-reports-v3"}, {voice, "receive-voice-delivery-reports"}} {
		examples, err := hook.spec.RequestExamples("webhook:"+hook.name, "POST")
		if err != nil || len(examples) == 0 {
			t.Fatalf("%s: %d examples, %v", hook.name, len(examples), err)
		}
		for name, body := range examples {
			r := httptest.NewRequest("POST", "/v1/dlr/infobip/infobip-test?secret=hook-SECRET", bytes.NewReader(body))
			reps, err := p.ParseReports(r, body, "")
			if err != nil || len(reps) == 0 {
				t.Errorf("%s, %q: %v %v\n%s", hook.name, name, reps, err, body)
			}
			for _, rep := range reps {
				n++
				if rep.MessageID == "" || rep.ProviderStatus == "" || rep.Status == "" {
					t.Errorf("%s, %q: report %+v", hook.name, name, rep)
				}
			}
		}
	}
	if n < 3 {
		t.Errorf("%d reports from the examples", n)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{BaseURL: "ftp://x", API: "v9", Senders: map[string]string{"usa": "1", "001": "SatSender", "123": "x"}}
	c.Defaults()
	got := c.Validate()
	want := []gateway.Problem{{Key: "base_url", Message: `"ftp://x" is not an http(s) URL`}, {Key: "api_key", Message: "is required"},
		{Key: "api", Message: `must be v3 or v2, not "v9"`}, {Key: "senders.123", Message: "keys must be ISO 3166-1 alpha-2 country codes (or 001)"},
		{Key: "senders.usa", Message: "keys must be ISO 3166-1 alpha-2 country codes (or 001)"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for base, want := range map[string]string{"": "is required (https://<your-subdomain>.api.infobip.com)", "https://": `"https://" is not an http(s) URL`} {
		if p := (&Config{BaseURL: base, APIKey: "k", API: "v3"}).Validate(); len(p) != 1 || p[0] != (gateway.Problem{Key: "base_url", Message: want}) {
			t.Errorf("base_url %q: %v", base, p)
		}
	}
	c = Config{BaseURL: "https://x.api.infobip.com", APIKey: "k"}
	c.Defaults()
	if p := c.Validate(); len(p) != 0 || c.API != "v3" || c.Voice.Language != "en" {
		t.Errorf("defaults: %v, api %q, voice language %q", p, c.API, c.Voice.Language)
	}
}

// TestRequestsAndFakeConformToTheSpec checks every body the driver sends, and every answer the
// shared fake gives, against Infobip's official OpenAPI specs.
func TestRequestsAndFakeConformToTheSpec(t *testing.T) {
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	voice := providertest.LoadSpec(t, "infobip-voice.openapi.json")
	fake := infobiptest.New(apiKey, true)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	msgs := []*gateway.Message{
		{ID: "msg_1", To: "+14155550104", Country: "US", Type: gateway.SMS, Text: "Your code is 123456"},
		{ID: "msg_2", To: "+447911123456", Country: "GG", Type: gateway.Voice, Text: "Your code is 4321", Language: "de"},
		{ID: "msg_3", To: "+447911123456", Country: "GG", Type: gateway.Voice, Text: "Your code is 4321"},
	}
	for _, api := range []string{"v3", "v2"} {
		p := newDriver(t, srv.URL, func(c *Config) { c.API = api })
		for _, m := range msgs {
			if _, err := p.Send(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, r := range fake.Requests() {
		spec := sms
		if strings.HasPrefix(r.Path, "/tts/") {
			spec = voice
		}
		body, _ := json.Marshal(r.Body)
		if errs := spec.RequestErrors(r.Path, "POST", body); len(errs) > 0 {
			t.Errorf("%s request does not conform: %v\n%s", r.Path, errs, body)
		}
	}
	if n := len(fake.Requests()); n != 6 {
		t.Fatalf("checked %d requests, want 6", n)
	}
	// Answers: validate each endpoint's success body with the right key.
	for path, spec := range map[string]*providertest.Spec{"/sms/3/messages": sms, "/sms/2/text/advanced": sms, "/tts/3/advanced": voice} {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(`{"messages":[{"destinations":[{"to":"41793026727","messageId":"m1"}]}]}`))
		req.Header.Set("Authorization", "App "+apiKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		ans, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if errs := spec.ResponseErrors(path, "POST", "200", ans); len(errs) > 0 {
			t.Errorf("fake answer for %s does not conform: %v\n%s", path, errs, ans)
		}
	}
}

func TestSpecCheckCatchesAWrongField(t *testing.T) {
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	// COURIER sends "from" on v3; the spec's field is "sender".
	errs := sms.RequestErrors("/sms/3/messages", "POST", []byte(`{"messages":[{"from":"InfoSMS","destinations":[{"to":"41793026727"}],"content":{"text":"hi"}}]}`))
	if len(errs) != 1 || !strings.Contains(errs[0], "'from' at '$.body.messages[0].from' is not declared in schema") {
		t.Errorf("errs = %v", errs)
	}
	if errs := sms.RequestErrors("/sms/3/messages", "POST", []byte(`{"messages":[{"destinations":[{"to":"41793026727"}]}]}`)); len(errs) == 0 {
		t.Error("a message without content passed")
	}
}

// FuzzParseReports: any JSON (or not) behind the right secret gives reports or a 400, never a panic.
func FuzzParseReports(f *testing.F) {
	p := newDriver(f, "https://x.api.infobip.com", nil)
	providertest.FuzzReports(f, p, []string{apiKey, "hook-SECRET"}, func(in []byte) (*http.Request, []byte, string) {
		return httptest.NewRequest("POST", "/v1/dlr/infobip/infobip-test?secret=hook-SECRET", bytes.NewReader(in)), in, ""
	},
		`{"results":[{"bulkId":"b","messageId":"msg_1","to":"41793026727","sentAt":"2019-11-09T16:00:00.000+0000","doneAt":"2019-11-09T16:00:05.000+0100","price":{"pricePerMessage":0.01,"currency":"EUR"},"status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET"},"error":{"groupId":0,"groupName":"Ok","id":0,"name":"NO_ERROR"}}]}`,
		`{"results":[{"messageId":"msg_3","status":{"groupName":"PENDING","name":"PENDING_ENROUTE"}},{"messageId":"","status":{}}]}`,
		`{"results":[{"messageId":"m","voiceCall":{"duration":10},"price":{"pricePerSecond":0.005,"currency":"EUR"},"status":{"groupName":"REJECTED"}}]}`,
		`{"results":null}`, `[]`, `<xml/>`, ``)
}

// TestFakeThroughput: the fake account at its throughput answers 429 with Retry-After: 1, which
// the driver reads as throttling (the bench's throughput drill relies on both).
func TestFakeThroughput(t *testing.T) {
	f, s := serve(t)
	f.SetThroughput(3)
	p := newDriver(t, s.URL, nil)
	got := ""
	for range 5 {
		_, err := p.Send(context.Background(), sms)
		var ge *gateway.Error
		switch {
		case err == nil:
			got += "ok "
		case errors.As(err, &ge) && ge.Class == gateway.ClassThrottled && ge.RetryAfter == time.Second:
			got += "throttled "
		default:
			got += "other(" + err.Error() + ") "
		}
	}
	if got != "ok ok ok throttled throttled " || f.Throttled() != 2 {
		t.Errorf("sends: %s(fake counted %d throttled)", got, f.Throttled())
	}
}

// TestSendReadsInfobipsExamples: every answer Infobip's specs give as an example of a send (SMS
// v2 and v3, TTS) is read as accepted, with its first message's id as the provider's message id.
func TestSendReadsInfobipsExamples(t *testing.T) {
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	voice := providertest.LoadSpec(t, "infobip-voice.openapi.json")
	for _, tc := range []struct {
		spec *providertest.Spec
		path string
		api  string
		typ  gateway.MessageType
	}{
		{sms, "/sms/2/text/advanced", "v2", gateway.SMS},
		{sms, "/sms/3/messages", "v3", gateway.SMS},
		{voice, "/tts/3/advanced", "v3", gateway.Voice},
	} {
		examples, err := tc.spec.ResponseExamples(tc.path, "POST", "200")
		if err != nil || len(examples) == 0 {
			t.Fatalf("%s: %d examples, %v", tc.path, len(examples), err)
		}
		for name, body := range examples {
			var want struct {
				Messages []struct {
					MessageID string `json:"messageId"`
				} `json:"messages"`
			}
			if err := json.Unmarshal(body, &want); err != nil || len(want.Messages) == 0 || want.Messages[0].MessageID == "" {
				t.Fatalf("%s, %q: no messageId (%v)", tc.path, name, err)
			}
			srv := providertest.Answering(t, http.MethodPost, tc.path, http.StatusOK, body)
			p := newDriver(t, srv.URL, func(c *Config) { c.API = tc.api })
			res, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+41793026727", Type: tc.typ, Text: "Your code is 123456", Code: "123456"})
			if err != nil || res.ProviderMessageID != want.Messages[0].MessageID {
				t.Errorf("%s, %q: %+v %v, want %s", tc.path, name, res, err, want.Messages[0].MessageID)
			}
		}
	}
}

// TestClassifyStatus: a message status is accepted or classified by its group, then its name (in
// any case; else the name of its id; else the group and the id), and the rules for names Infobip
// adds (anything blocklisted or blacklisted, anything ending _DND, is the recipient's).
func TestClassifyStatus(t *testing.T) {
	for _, tc := range []struct {
		s     status
		class gateway.Class
		code  string // "" when accepted
	}{
		{status{GroupName: "DELIVERED", GroupID: 3, ID: 5, Name: "DELIVERED_TO_HANDSET"}, 0, ""},
		{status{GroupName: "Pending", GroupID: 1, ID: 7, Name: "PENDING_ENROUTE"}, 0, ""},
		// No group name: an accepting group id with an id and a name of no rejection.
		{status{GroupID: 0, ID: 0}, 0, ""},
		{status{GroupID: 3, ID: 5, Name: "DELIVERED_TO_HANDSET"}, 0, ""},
		{status{GroupID: 1, ID: 52}, gateway.ClassRecipient, "REJECTED_DESTINATION"},
		{status{GroupID: 1, ID: 999, Name: "rejected_something_new"}, gateway.ClassProvider, "REJECTED_SOMETHING_NEW"},
		{status{GroupName: "REJECTED", GroupID: 5, ID: 52, Name: "rejected_destination"}, gateway.ClassRecipient, "REJECTED_DESTINATION"},
		{status{GroupName: "REJECTED", GroupID: 5, ID: 8}, gateway.ClassRecipient, "REJECTED_PREFIX_MISSING"},
		{status{GroupName: "REJECTED", GroupID: 5, ID: 51}, gateway.ClassRecipient, "MISSING_TO"},
		{status{GroupName: "REJECTED", GroupID: 5, ID: 77}, gateway.ClassProvider, "REJECTED_77"},
		{status{GroupName: "REJECTED", ID: 25}, gateway.ClassRecipient, "REJECTED_MESSAGE_TOO_LONG"},
		{status{GroupName: "REJECTED", ID: 24}, gateway.ClassRecipient, "REJECTED_INVALID_UDH"},
		{status{GroupName: "REJECTED", ID: 11}, gateway.ClassDestination, "REJECTED_SOURCE"},
		{status{GroupName: "REJECTED", ID: 18}, gateway.ClassDestination, "REJECTED_DESTINATION_NOT_REGISTERED"},
		{status{GroupName: "REJECTED", Name: "REJECTED_NUMBER_BLACKLISTED_BY_OPERATOR"}, gateway.ClassRecipient, "REJECTED_NUMBER_BLACKLISTED_BY_OPERATOR"},
		{status{GroupName: "REJECTED", Name: "REJECTED_BLOCKLIST_NEW"}, gateway.ClassRecipient, "REJECTED_BLOCKLIST_NEW"},
		{status{GroupName: "REJECTED", Name: "REJECTED_NATIONAL_DND"}, gateway.ClassRecipient, "REJECTED_NATIONAL_DND"},
	} {
		got := classifyStatus(tc.s)
		switch {
		case tc.code == "" && got != nil:
			t.Errorf("%+v: %v, want accepted", tc.s, got)
		case tc.code != "" && (got == nil || got.Class != tc.class || got.Code != tc.code):
			t.Errorf("%+v: %+v, want %v %s", tc.s, got, tc.class, tc.code)
		}
	}
}

// TestARefusedMessageKeepsTheAnswersStatus: a message refused in a 200 answer says it was a 200.
func TestARefusedMessageKeepsTheAnswersStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"messages":[{"messageId":"m","status":{"groupId":5,"groupName":"REJECTED","id":52,"name":"REJECTED_DESTINATION"}}]}`))
	}))
	defer srv.Close()
	_, err := newDriver(t, srv.URL, noCallback).Send(context.Background(), sms)
	if ge := gateway.AsError(err); ge.Code != "REJECTED_DESTINATION" || ge.HTTPStatus != 200 {
		t.Errorf("%+v", ge)
	}
}
