package twilio

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/providertest"
	"github.com/smsgate/smsgate/providers/twilio/twiliotest"
)

const (
	sid   = "AC0123456789abcdef0123456789abcdef"
	token = "tw-TOKEN-fedcba9876543210"
)

type captured struct {
	Method, Path, User, Password, ContentType string
	Form                                      url.Values
}

// fakeTwilio is an API double that records requests and answers as the spec's 201.
type fakeTwilio struct {
	mu     sync.Mutex
	reqs   []captured
	status int
	body   string
}

func (f *fakeTwilio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(raw))
	u, p, _ := r.BasicAuth()
	f.mu.Lock()
	f.reqs = append(f.reqs, captured{Method: r.Method, Path: r.URL.Path, User: u, Password: p, ContentType: r.Header.Get("Content-Type"), Form: form})
	status, body := f.status, f.body
	f.mu.Unlock()
	if status == 0 {
		status = 201
		if strings.HasSuffix(r.URL.Path, "/Calls.json") {
			body = `{"sid":"CA42","account_sid":"` + sid + `","status":"queued","direction":"outbound-api","api_version":"2010-04-01"}`
		} else {
			body = `{"sid":"SM42","account_sid":"` + sid + `","to":"+14155550104","body":"x","status":"queued","num_segments":"1","direction":"outbound-api","api_version":"2010-04-01","price":null,"error_code":null,"error_message":null,"uri":"/2010-04-01/Accounts/` + sid + `/Messages/SM42.json"}`
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (f *fakeTwilio) last() captured {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

func newDriver(t *testing.T, base string, edit func(*Config)) *Provider {
	t.Helper()
	c := Config{AccountSID: sid, AuthToken: token, From: "+15005550006", BaseURL: base}
	if edit != nil {
		edit(&c)
	}
	if p := c.Validate(); len(p) > 0 {
		t.Fatalf("config: %v", p)
	}
	return New(c, gateway.Deps{HTTPClient: &http.Client{}})
}

func serve(t *testing.T) (*fakeTwilio, *httptest.Server) {
	f := &fakeTwilio{}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	return f, s
}

func TestSendRequests(t *testing.T) {
	msgPath := "/2010-04-01/Accounts/" + sid + "/Messages.json"
	callPath := "/2010-04-01/Accounts/" + sid + "/Calls.json"
	sms := gateway.Message{ID: "msg_1", To: "+14155550104", Type: gateway.SMS, Text: "Your code is 123456", Code: "123456", CallbackURL: "https://gw.example.com/v1/dlr/twilio/tw"}
	tests := []struct {
		name   string
		edit   func(*Config)
		msg    gateway.Message
		path   string
		form   url.Values
		wantID string
	}{
		{"sms with from and status callback", nil, sms, msgPath,
			url.Values{"To": {"+14155550104"}, "From": {"+15005550006"}, "Body": {"Your code is 123456"}, "StatusCallback": {"https://gw.example.com/v1/dlr/twilio/tw"}}, "SM42"},
		{"sms with messaging service, no callback", func(c *Config) { c.From, c.MessagingServiceSID, c.VoiceFrom = "", "MG123", "+15005550007" },
			func() gateway.Message { m := sms; m.CallbackURL = ""; return m }(), msgPath,
			url.Values{"To": {"+14155550104"}, "MessagingServiceSid": {"MG123"}, "Body": {"Your code is 123456"}}, "SM42"},
		{"voice call with TwiML", nil, func() gateway.Message { m := sms; m.Type = gateway.Voice; return m }(), callPath,
			url.Values{"To": {"+14155550104"}, "From": {"+15005550006"}, "StatusCallback": {"https://gw.example.com/v1/dlr/twilio/tw"},
				"Twiml": {`<Response><Say language="en-US">Your code is 1, 2, 3, 4, 5, 6.</Say><Pause length="1"/><Say language="en-US">Your code is 1, 2, 3, 4, 5, 6.</Say></Response>`}}, "CA42"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, s := serve(t)
			res, err := newDriver(t, s.URL, tc.edit).Send(context.Background(), &tc.msg)
			if err != nil || res.ProviderMessageID != tc.wantID || res.Status != "queued" {
				t.Fatalf("res %+v err %v", res, err)
			}
			want := captured{Method: "POST", Path: tc.path, User: sid, Password: token, ContentType: "application/x-www-form-urlencoded", Form: tc.form}
			if diff := cmp.Diff(want, f.last()); diff != "" {
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
	}
	for lang, want := range tests {
		got := TwiML(&gateway.Message{Code: "42", Language: lang})
		if !strings.HasPrefix(got, "<Response>"+want+`<Pause length="1"/>`+want) {
			t.Errorf("%q: %s", lang, got)
		}
	}
	if got := TwiML(&gateway.Message{Text: `Hi <there> & "you"`}); !strings.Contains(got, "Hi &lt;there&gt; &amp; &#34;you&#34;") {
		t.Errorf("text not escaped: %s", got)
	}
}

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		class  gateway.Class
		code   string
	}{
		{"21211 invalid To", 400, `{"code":21211,"message":"The 'To' number +14155550104 is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}`, gateway.ClassRecipient, "21211"},
		{"21614 not mobile", 400, `{"code":21614,"message":"'To' number is not a valid mobile number","status":400}`, gateway.ClassRecipient, "21614"},
		{"21610 unsubscribed", 400, `{"code":21610,"message":"Attempt to send to unsubscribed recipient","status":400}`, gateway.ClassRecipient, "21610"},
		{"21635 landline", 400, `{"code":21635,"message":"landline","status":400}`, gateway.ClassRecipient, "21635"},
		{"20003 auth", 401, `{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}`, gateway.ClassProvider, "20003"},
		{"21608 trial", 400, `{"code":21608,"message":"The number is unverified. Trial accounts cannot send messages to unverified numbers","status":400}`, gateway.ClassProvider, "21608"},
		{"21408 region", 400, `{"code":21408,"message":"Permission to send an SMS has not been enabled for the region","status":400}`, gateway.ClassProvider, "21408"},
		{"20429 throttled", 429, `{"code":20429,"message":"Too Many Requests","status":429}`, gateway.ClassProvider, "20429"},
		{"unknown code", 400, `{"code":29999,"message":"something new","status":400}`, gateway.ClassProvider, "29999"},
		{"500 without body", 500, ``, gateway.ClassProvider, "HTTP_500"},
		{"503 html", 503, `<html>Service Unavailable</html>`, gateway.ClassProvider, "HTTP_503"},
		{"201 without sid", 201, `{}`, gateway.ClassProvider, "BAD_RESPONSE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, s := serve(t)
			f.status, f.body = tc.status, tc.body
			_, err := newDriver(t, s.URL, nil).Send(context.Background(), &gateway.Message{To: "+14155550104", Type: gateway.SMS, Text: "Your code is 123456"})
			ge := gateway.AsError(err)
			if err == nil || ge.Class != tc.class || ge.Code != tc.code {
				t.Fatalf("got %v (class %v, code %q), want %v %q", err, ge.Class, ge.Code, tc.class, tc.code)
			}
			for _, bad := range []string{token, "4155550104", "123456"} {
				if strings.Contains(err.Error(), bad) {
					t.Errorf("error %q contains %q", err, bad)
				}
			}
		})
	}
}

func TestContract(t *testing.T) {
	ok := httptest.NewServer(twiliotest.New(sid, token, false))
	defer ok.Close()
	hf := twiliotest.New(sid, token, false)
	hf.SetMode(twiliotest.Hang)
	hang := httptest.NewServer(hf)
	defer hang.Close()
	defer hf.Release()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()
	providertest.Run(t, providertest.Contract{
		Provider: newDriver(t, ok.URL, nil), Hanging: newDriver(t, hang.URL, nil), Refused: newDriver(t, refused, nil),
		Secrets: []string{token, sid},
	})
}

func TestSignature(t *testing.T) {
	// Twilio's documented example (api-snippets, security/signature_validation): token 12345.
	form := url.Values{"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+14158675310"}, "Digits": {"1234"}, "From": {"+14158675310"}, "To": {"+18005551212"}}
	const documented = "GvWf1cFY/Q7PnoempGyD5oXAezc="
	p := New(Config{AccountSID: sid, AuthToken: "12345", From: "+1"}, gateway.Deps{})
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

func TestConfigValidate(t *testing.T) {
	c := Config{From: "+1", MessagingServiceSID: "MG1", BaseURL: "nope"}
	want := map[string]string{"account_sid": "is required", "auth_token": "is required", "base_url": "is not an http(s) URL",
		"messaging_service_sid": "set either from or messaging_service_sid, not both (Twilio: From must be empty with a messaging service)"}
	if diff := cmp.Diff(want, c.Validate()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	c = Config{AccountSID: "AC", AuthToken: "t", MessagingServiceSID: "MG1"}
	if p := c.Validate(); len(p) != 0 || c.BaseURL != "https://api.twilio.com" {
		t.Errorf("defaults: %v %q", p, c.BaseURL)
	}
	// Voice without a number fails over instead of calling from nowhere.
	_, err := New(c, gateway.Deps{}).Send(context.Background(), &gateway.Message{To: "+14155550104", Type: gateway.Voice, Code: "1"})
	if gateway.ClassOf(err) != gateway.ClassProvider {
		t.Errorf("voice without from: %v", err)
	}
}

// TestRequestsAndFakeConformToTheSpec checks the driver's form fields, and the shared fake's
// answers, against Twilio's official OpenAPI spec.
func TestRequestsAndFakeConformToTheSpec(t *testing.T) {
	spec := providertest.LoadSpec(t, "twilio-api-v2010.openapi.json")
	fake := twiliotest.New(sid, token, true)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	for _, edit := range []func(*Config){nil, func(c *Config) { c.From, c.MessagingServiceSID, c.VoiceFrom = "", "MG0123456789abcdef0123456789abcdef", "+15005550007" }} {
		p := newDriver(t, srv.URL, edit)
		for _, typ := range []gateway.MessageType{gateway.SMS, gateway.Voice} {
			if _, err := p.Send(context.Background(), &gateway.Message{To: "+14155550104", Type: typ, Text: "Your code is 1234", CallbackURL: "https://gw.example.com/cb"}); err != nil {
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
