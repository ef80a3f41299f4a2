package telesign

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
	"github.com/smsgate/smsgate/providers/providertest"
	"github.com/smsgate/smsgate/providers/telesign/telesigntest"
)

const (
	customer = "FFFFFFFF-EEEE-DDDD-1234-AB1234567890"
	cbURL    = "https://gw.example.com/v1/dlr/telesign/ts"
)

// apiKey is base64, as TeleSign issues keys.
var apiKey = base64.StdEncoding.EncodeToString([]byte("telesign-raw-key-0123456789"))

func newDriver(t testing.TB, base string, edit func(*Config)) *Provider {
	t.Helper()
	c := Config{BaseURL: base, CustomerID: customer, APIKey: gateway.Secret(apiKey), SenderID: "SMSGate", Senders: map[string]string{"GB": "SMSGateUK"}}
	if edit != nil {
		edit(&c)
	}
	c.Defaults()
	if p := c.Validate(); len(p) > 0 {
		t.Fatalf("config: %v", p)
	}
	return New(c, gateway.Deps{Name: "ts", HTTPClient: &http.Client{}, CallbackURL: cbURL})
}

func serve(t *testing.T) (*telesigntest.Fake, *httptest.Server) {
	f := telesigntest.New(customer, apiKey, true)
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	t.Cleanup(f.Release)
	return f, s
}

func last(f *telesigntest.Fake) telesigntest.Request {
	r := f.Requests()
	return r[len(r)-1]
}

func TestSendRequests(t *testing.T) {
	f, s := serve(t)
	for _, auth := range []string{"basic", "hmac"} {
		t.Run(auth, func(t *testing.T) {
			p := newDriver(t, s.URL, func(c *Config) { c.Auth = auth })
			res, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+447911123456", Country: "GB", Type: gateway.SMS, Text: "Your code is 123456", Attempt: 1})
			if err != nil || len(res.ProviderMessageID) != 32 || res.Status != "290" {
				t.Fatalf("res %+v err %v", res, err)
			}
			want := telesigntest.Request{Method: "POST", Path: "/v1/messaging", ContentType: "application/x-www-form-urlencoded", Auth: auth, Form: url.Values{
				"phone_number": {"447911123456"}, "message": {"Your code is 123456"}, "message_type": {"OTP"}, "sender_id": {"SMSGateUK"},
				"external_id": {"msg_1"}, "callback_url": {cbURL}, "is_primary": {"false"}}}
			if diff := cmp.Diff(want, last(f)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	p := newDriver(t, s.URL, nil)
	if _, err := p.Send(context.Background(), &gateway.Message{ID: "msg_2", To: "+14155550104", Type: gateway.SMS, Text: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := last(f).Form; got.Get("is_primary") != "" || got.Get("sender_id") != "SMSGate" {
		t.Errorf("first in chain: %v", got)
	}
	res, err := p.Send(context.Background(), &gateway.Message{ID: "msg_3", To: "+14155550104", Type: gateway.Voice, Code: "4271", Language: "fr-FR"})
	if err != nil || res.Status != "103" {
		t.Fatalf("voice: %+v %v", res, err)
	}
	if got := last(f); got.Path != "/v1/voice" || got.Form.Get("voice") != "f-fr-FR" ||
		got.Form.Get("message") != "Votre code est 4, 2, 7, 1. Votre code est 4, 2, 7, 1." {
		t.Errorf("voice request %v", got)
	}
}

// TestSendDetails: the signed Date is the time in GMT whatever the clock's zone, a refusal quotes
// TeleSign's description, the voices beyond the primary subtags, and a driver without a callback
// URL asks for no reports.
func TestSendDetails(t *testing.T) {
	var date string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		date = r.Header.Get("Date")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"reference_id":"R1","status":{"code":11000,"description":"Invalid value for parameter phone_number."}}`))
	}))
	defer s.Close()
	p := newDriver(t, s.URL, func(c *Config) { c.Auth = "hmac" })
	p.now = func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.FixedZone("UTC+5", 5*3600)) }
	_, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+14155550104", Type: gateway.SMS, Text: "x"})
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Class != gateway.ClassRecipient || !strings.Contains(ge.Message, "Invalid value for parameter phone_number.") {
		t.Errorf("a refusal: %v", err)
	}
	if want := "Mon, 30 Nov 2026 07:00:00 GMT"; date != want {
		t.Errorf("Date %q, want %q", date, want)
	}
	for lang, want := range map[string]string{"ja": "f-ja-JP", "en-GB": "f-en-GB", "en-US": "f-en-US", "": "f-en-US"} {
		if voice, _ := Speech(&gateway.Message{Code: "42", Language: lang}); voice != want {
			t.Errorf("%q: voice %s, want %s", lang, voice, want)
		}
	}
	if !p.AsksReports() || New(Config{CustomerID: customer, APIKey: gateway.Secret(apiKey)}, gateway.Deps{}).AsksReports() {
		t.Error("AsksReports should follow the callback URL")
	}
}

// TestSignatureFixedVector: TeleSign's string to sign, written out by hand for fixed inputs and
// signed with crypto/hmac here, not with the driver's function.
func TestSignatureFixedVector(t *testing.T) {
	p := newDriver(t, "https://rest-api.telesign.com", func(c *Config) { c.Auth = "hmac" })
	date, nonce, body := "Mon, 30 Nov 2026 12:00:00 GMT", "0123456789abcdef", "message=hi&message_type=OTP&phone_number=14155550104"
	s := "POST\napplication/x-www-form-urlencoded\nMon, 30 Nov 2026 12:00:00 GMT\nx-ts-auth-method:HMAC-SHA256\nx-ts-nonce:0123456789abcdef\n" +
		"message=hi&message_type=OTP&phone_number=14155550104\n/v1/messaging"
	m := hmac.New(sha256.New, []byte("telesign-raw-key-0123456789"))
	m.Write([]byte(s))
	if got, want := p.Signature("POST", "application/x-www-form-urlencoded", date, nonce, body, "/v1/messaging"), base64.StdEncoding.EncodeToString(m.Sum(nil)); got != want {
		t.Errorf("signature %s, want %s", got, want)
	}
	// Without a body, no body line (nor an empty one).
	m = hmac.New(sha256.New, []byte("telesign-raw-key-0123456789"))
	m.Write([]byte("GET\n\nMon, 30 Nov 2026 12:00:00 GMT\nx-ts-auth-method:HMAC-SHA256\nx-ts-nonce:0123456789abcdef\n/v1/messaging/R1"))
	if got, want := p.Signature("GET", "", date, nonce, "", "/v1/messaging/R1"), base64.StdEncoding.EncodeToString(m.Sum(nil)); got != want {
		t.Errorf("signature without a body %s, want %s", got, want)
	}
}

// TestCallbackDetails: the status codes at the edges of each range, a price that is not
// positive (a negative one would pay back spend), the throttling codes, and a driver without a
// key, which takes no callback (an HMAC keyed by nothing can be made by anyone).
func TestCallbackDetails(t *testing.T) {
	for code, want := range map[int]string{
		100: gateway.StatusDelivered, 200: gateway.StatusDelivered,
		103: gateway.StatusSent, 203: gateway.StatusSent, 290: gateway.StatusSent, 295: gateway.StatusSent, 296: gateway.StatusSent,
		101: gateway.StatusUndelivered, 104: gateway.StatusUndelivered, 106: gateway.StatusUndelivered, 107: gateway.StatusUndelivered,
		130: gateway.StatusUndelivered, 207: gateway.StatusUndelivered, 251: gateway.StatusUndelivered, 252: gateway.StatusSent,
		500: gateway.StatusFailed, 521: gateway.StatusFailed, 522: gateway.StatusSent, 10000: gateway.StatusFailed, 10030: gateway.StatusFailed,
	} {
		if got := reportStatus(code); got != want {
			t.Errorf("code %d: %s, want %s", code, got, want)
		}
	}
	p := newDriver(t, "https://rest-api.telesign.com", nil)
	key := []byte("telesign-raw-key-0123456789")
	for _, price := range []string{"-0.5", "0"} {
		body := []byte(`{"reference_id":"R1","status":{"code":200},"additional_info":{"price":` + price + `,"currency":"USD"}}`)
		r := httptest.NewRequest("POST", "/v1/dlr/telesign/ts", bytes.NewReader(body))
		r.Header.Set("Authorization", "TSA "+customer+":"+sign(key, body))
		if reps, err := p.ParseReports(r, body, ""); err != nil || reps[0].Price != 0 || reps[0].Currency != "" {
			t.Errorf("price %s: %+v %v", price, reps, err)
		}
	}
	for _, code := range []string{"10019", "10020"} {
		e := p.classify(&kit.Response{Status: 429, Body: []byte(`{"status":{"code":` + code + `,"description":"rate"}}`)})
		if e == nil || e.Class != gateway.ClassThrottled || e.Code != "TELESIGN_"+code {
			t.Errorf("code %s: %+v", code, e)
		}
	}
	keyless := New(Config{CustomerID: customer, BaseURL: "https://rest-api.telesign.com"}, gateway.Deps{})
	body := []byte(`{"reference_id":"R1","status":{"code":200}}`)
	r := httptest.NewRequest("POST", "/v1/dlr/telesign/ts", bytes.NewReader(body))
	r.Header.Set("Authorization", "TSA "+customer+":"+sign(nil, body))
	if _, err := keyless.ParseReports(r, body, ""); err != gateway.ErrUnauthenticated {
		t.Errorf("a callback signed with an empty key: %v", err)
	}
}

func TestContract(t *testing.T) {
	_, ok := serve(t)
	st := func(code int, desc string) string {
		return `{"reference_id":"0123456789ABCDEF0123456789ABCDEF","status":{"code":` + strconv.Itoa(code) + `,"description":"` + desc + `"}}`
	}
	body := []byte(`{"reference_id":"R1","status":{"code":200,"description":"Delivered"}}`)
	providertest.Run(t, providertest.Contract{
		New: func(base string, deps gateway.Deps) gateway.Provider {
			c := Config{BaseURL: base, CustomerID: customer, APIKey: gateway.Secret(apiKey)}
			c.Defaults()
			return New(c, deps)
		},
		Accepting: ok.URL,
		Secrets:   []string{apiKey},
		BadReport: func() (*http.Request, []byte) {
			r := httptest.NewRequest("POST", "/v1/dlr/telesign/ts", strings.NewReader(string(body)))
			r.Header.Set("Authorization", "TSA "+customer+":"+sign([]byte("another-key"), body))
			return r, body
		},
		Cases: []providertest.Case{
			{Name: "200 with 290: accepted", Status: 200, Body: st(290, "Message in progress"), OK: true},
			{Name: "200 with 291: accepted", Status: 200, Body: st(291, "Queued"), OK: true},
			{Name: "200 with 292: accepted", Status: 200, Body: st(292, "Queued"), OK: true},
			{Name: "200 accepting without a reference_id: a bad answer", Status: 200, Body: `{"status":{"code":290,"description":"Message in progress"}}`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "200 with a reference_id and no status: a bad answer", Status: 200, Body: `{"reference_id":"0123456789ABCDEF0123456789ABCDEF"}`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "400 whose status has no code: by the HTTP status", Status: 400, Body: `{"status":{"description":"odd"}}`, Class: gateway.ClassProvider, Code: "HTTP_400"},
			{Name: "voice 200 with 103", Type: gateway.Voice, Status: 200, Body: st(103, "Call in progress"), OK: true},
			{Name: "400 11000 invalid number: recipient", Status: 400, Body: st(11000, "Invalid value for parameter phone_number."), Class: gateway.ClassRecipient, Code: "TELESIGN_11000"},
			{Name: "400 11001 invalid country code: recipient", Status: 400, Body: st(11001, "Invalid country code"), Class: gateway.ClassRecipient, Code: "TELESIGN_11001"},
			{Name: "400 12000 missing number: recipient", Status: 400, Body: st(12000, "Missing phone_number"), Class: gateway.ClassRecipient, Code: "TELESIGN_12000"},
			{Name: "10032 blocked by TeleSign: recipient", Status: 400, Body: st(10032, "Blocked"), Class: gateway.ClassRecipient, Code: "TELESIGN_10032"},
			{Name: "a 200 with a failure code is a failure", Status: 200, Body: st(11000, "Invalid value for parameter phone_number."), Class: gateway.ClassRecipient, Code: "TELESIGN_11000"},
			{Name: "402 10030 insufficient funds", Status: 402, Body: st(10030, "Insufficient funds in prepaid wallet"), Class: gateway.ClassProvider, Code: "TELESIGN_10030"},
			{Name: "429 10019 throttled", Status: 429, Body: st(10019, "Rate Limit Exceeded"), Class: gateway.ClassThrottled, Code: "TELESIGN_10019"},
			{Name: "401 10008 signature", Status: 401, Body: st(10008, "Invalid signature"), Class: gateway.ClassProvider, Code: "TELESIGN_10008"},
			{Name: "503 10000 unavailable", Status: 503, Body: st(10000, "System unavailable"), Class: gateway.ClassProvider, Code: "TELESIGN_10000"},
			{Name: "unknown code kept", Status: 400, Body: st(13999, "Something new"), Class: gateway.ClassProvider, Code: "TELESIGN_13999"},
			{Name: "a recipient code in a 5xx is the provider's", Status: 500, Body: st(11000, "odd"), Class: gateway.ClassProvider, Code: "TELESIGN_11000"},
		},
	})
}

// sign is TeleSign's callback signature computed here: base64 HMAC-SHA256 of the raw body.
func sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestCallbacks(t *testing.T) {
	p := newDriver(t, "https://rest-api.telesign.com", nil)
	key := []byte("telesign-raw-key-0123456789")
	tests := []struct {
		body string
		want gateway.DeliveryReport
	}{
		{`{"reference_id":"R1","external_id":"msg_1","status":{"code":200,"description":"Delivered to handset","updated_on":"2026-11-30T12:00:05Z"},"submit_timestamp":"2026-11-30T12:00:00Z","additional_info":{"price":0.0125,"currency":"USD","message_parts_count":1}}`,
			gateway.DeliveryReport{ProviderMessageID: "R1", MessageID: "msg_1", ProviderStatus: "200", Status: gateway.StatusDelivered, Price: 0.0125, Currency: "USD"}},
		{`{"reference_id":"R2","external_id":"msg_2","status":{"code":203,"description":"Delivered to gateway"}}`,
			gateway.DeliveryReport{ProviderMessageID: "R2", MessageID: "msg_2", ProviderStatus: "203", Status: gateway.StatusSent}},
		{`{"reference_id":"R3","status":{"code":210,"description":"Temporary phone error"}}`,
			gateway.DeliveryReport{ProviderMessageID: "R3", ProviderStatus: "210", Status: gateway.StatusUndelivered, Error: "210"}},
		{`{"reference_id":"R4","status":{"code":507,"description":"Invalid destination"}}`,
			gateway.DeliveryReport{ProviderMessageID: "R4", ProviderStatus: "507", Status: gateway.StatusFailed, Error: "507"}},
		{`{"reference_id":"R5","status":{"code":107,"description":"Busy"}}`,
			gateway.DeliveryReport{ProviderMessageID: "R5", ProviderStatus: "107", Status: gateway.StatusUndelivered, Error: "107"}},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("POST", "/v1/dlr/telesign/ts", strings.NewReader(tc.body))
		r.Header.Set("Authorization", "TSA "+customer+":"+sign(key, []byte(tc.body)))
		got, err := p.ParseReports(r, []byte(tc.body), "")
		if err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		if diff := cmp.Diff([]gateway.DeliveryReport{tc.want}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	}
	body := []byte(tests[0].body)
	for name, auth := range map[string]string{
		"body changed after signing": "TSA " + customer + ":" + sign(key, append(body, ' ')),
		"another customer":           "TSA other:" + sign(key, body),
		"no header":                  "",
	} {
		r := httptest.NewRequest("POST", "/x", strings.NewReader(string(body)))
		r.Header.Set("Authorization", auth)
		if _, err := p.ParseReports(r, body, ""); err != gateway.ErrUnauthenticated {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestCallbacksDuringAKeyRotation: callbacks signed with a previous API key are still taken; the
// previous key is never used to send.
func TestCallbacksDuringAKeyRotation(t *testing.T) {
	newKey := []byte("telesign-NEW-key-987654321")
	newB64 := base64.StdEncoding.EncodeToString(newKey)
	f := telesigntest.New(customer, newB64, true) // the account knows the new key only
	s := httptest.NewServer(f)
	defer s.Close()
	defer f.Release()
	p := newDriver(t, s.URL, func(c *Config) {
		c.APIKey, c.PreviousAPIKeys = gateway.Secret(newB64), []gateway.Secret{gateway.Secret(apiKey)}
	})
	body := []byte(`{"reference_id":"R1","status":{"code":200,"description":"Delivered to handset"}}`)
	for name, c := range map[string]struct {
		key []byte
		ok  bool
	}{"the new key": {newKey, true}, "the previous key": {[]byte("telesign-raw-key-0123456789"), true}, "a key never configured": {[]byte("other"), false}} {
		r := httptest.NewRequest("POST", "/v1/dlr/telesign/ts", bytes.NewReader(body))
		r.Header.Set("Authorization", "TSA "+customer+":"+sign(c.key, body))
		if _, err := p.ParseReports(r, body, ""); (err == nil) != c.ok {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, auth := range []string{"basic", "hmac"} {
		p := newDriver(t, s.URL, func(c *Config) {
			c.APIKey, c.PreviousAPIKeys, c.Auth = gateway.Secret(newB64), []gateway.Secret{gateway.Secret(apiKey)}, auth
		})
		if _, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+14155550104", Type: gateway.SMS, Text: "x"}); err != nil {
			t.Fatal(err)
		}
		if got := last(f).Auth; got != auth {
			t.Errorf("%s: the fake took the credentials as %q: not sent with the new key", auth, got)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{BaseURL: "ftp://x", APIKey: "not base64!", PreviousAPIKeys: []gateway.Secret{gateway.Secret(apiKey), "not base64!"}, Auth: "digest", MessageType: "SPAM", Senders: map[string]string{"uk": "x"}}
	c.Defaults()
	want := []gateway.Problem{{Key: "base_url", Message: `"ftp://x" is not an http(s) URL`}, {Key: "customer_id", Message: "is required"},
		{Key: "api_key", Message: "is not base64 (TeleSign's keys are; callbacks are verified with the decoded key)"},
		{Key: "previous_api_keys[1]", Message: "is not a base64 key"},
		{Key: "auth", Message: `must be basic or hmac, not "digest"`}, {Key: "senders.uk", Message: "keys must be ISO 3166-1 alpha-2 country codes (or 001)"},
		{Key: "message_type", Message: `must be OTP, ARN or MKT, not "SPAM"`}}
	if diff := cmp.Diff(want, c.Validate()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	c = Config{CustomerID: customer, APIKey: gateway.Secret(apiKey)}
	c.Defaults()
	if c.BaseURL != "https://rest-api.telesign.com" || c.Auth != "basic" || c.MessageType != "OTP" {
		t.Errorf("defaults: %+v", c)
	}
	for _, mt := range []string{"ARN", "MKT"} {
		c := Config{CustomerID: customer, APIKey: gateway.Secret(apiKey), MessageType: mt, Senders: map[string]string{"001": "SMSGate"}}
		c.Defaults()
		if p := c.Validate(); len(p) != 0 {
			t.Errorf("message_type %s: %v", mt, p)
		}
	}
	c = Config{BaseURL: "https://", CustomerID: customer, APIKey: gateway.Secret(apiKey), PreviousAPIKeys: []gateway.Secret{""}}
	c.Defaults()
	want = []gateway.Problem{{Key: "base_url", Message: `"https://" is not an http(s) URL`}, {Key: "previous_api_keys[0]", Message: "is not a base64 key"}}
	if diff := cmp.Diff(want, c.Validate()); diff != "" {
		t.Errorf("a base_url without a host, an empty previous key (-want +got):\n%s", diff)
	}
}

// FuzzParseReports: any body, signed with the API key as TeleSign signs, gives reports or a 400,
// never a panic.
func FuzzParseReports(f *testing.F) {
	p := newDriver(f, "https://rest-api.telesign.com", nil)
	key := []byte("telesign-raw-key-0123456789")
	providertest.FuzzReports(f, p, []string{apiKey, "raw-key-0123456789"}, func(in []byte) (*http.Request, []byte, string) {
		r := httptest.NewRequest("POST", "/v1/dlr/telesign/ts", bytes.NewReader(in))
		r.Header.Set("Authorization", "TSA "+customer+":"+sign(key, in))
		return r, in, ""
	},
		`{"reference_id":"R1","external_id":"msg_1","status":{"code":200,"description":"Delivered to handset","updated_on":"2026-11-30T12:00:05Z"},"submit_timestamp":"2026-11-30T12:00:00Z","additional_info":{"price":0.0125,"currency":"USD","message_parts_count":1}}`,
		`{"reference_id":"R3","status":{"code":210,"description":"Temporary phone error"}}`,
		`{"reference_id":"","status":{"code":-1}}`, `{"status":null}`, `[]`, `{`, ``)
}
