package vonage

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"hash"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/providertest"
	"github.com/smsgate/smsgate/providers/vonage/vonagetest"
)

const (
	apiKey    = "a1b2c3d4"
	apiSecret = "vonage-SECRET-0123456789"
	appID     = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
	sigSecret = "sig-SECRET-abcdefghijkl"
	hookSec   = "hook-SECRET-mnopqrstu"
	cbBase    = "https://gw.example.com/v1/dlr/vonage/vonage-eu"
)

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	keyPEM  string
)

func testKey(t testing.TB) (*rsa.PrivateKey, string) {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rsaKey = k
		keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	})
	return rsaKey, keyPEM
}

func config(t testing.TB, base string, edit func(*Config)) Config {
	_, pemKey := testKey(t)
	c := Config{BaseURL: base, VoiceBaseURL: base, APIKey: apiKey, APISecret: apiSecret, From: "SMSGate", Senders: map[string]string{"US": "14155550000"},
		ApplicationID: appID, PrivateKey: gateway.Secret(pemKey), VoiceFrom: "+14155550001", SignatureSecret: sigSecret}
	if edit != nil {
		edit(&c)
	}
	c.Defaults()
	if p := c.Validate(); len(p) > 0 {
		t.Fatalf("config: %v", p)
	}
	return c
}

func newDriver(t testing.TB, base string, edit func(*Config)) *Provider {
	t.Helper()
	return New(config(t, base, edit), gateway.Deps{Name: "vonage-eu", HTTPClient: &http.Client{}, CallbackURL: cbBase})
}

func serve(t *testing.T) (*vonagetest.Fake, *httptest.Server) {
	k, _ := testKey(t)
	f := vonagetest.New(apiKey, apiSecret, appID, &k.PublicKey, true)
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	t.Cleanup(f.Release)
	return f, s
}

func last(f *vonagetest.Fake) vonagetest.Request {
	r := f.Requests()
	return r[len(r)-1]
}

func TestSendSMS(t *testing.T) {
	f, s := serve(t)
	p := newDriver(t, s.URL, nil)
	res, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+14155550104", Country: "US", Type: gateway.SMS, Text: "Your code is 123456"})
	if err != nil || res.ProviderMessageID == "" || res.Status != "accepted (1 parts)" {
		t.Fatalf("res %+v err %v", res, err)
	}
	want := url.Values{"api_key": {apiKey}, "api_secret": {apiSecret}, "from": {"14155550000"}, "to": {"14155550104"},
		"text": {"Your code is 123456"}, "type": {"text"}, "client-ref": {"msg_1"}, "callback": {cbBase}}
	got := last(f)
	if diff := cmp.Diff(want, got.Form); diff != "" || got.ContentType != "application/x-www-form-urlencoded" {
		t.Errorf("form (-want +got):\n%s", diff)
	}
	// Not GSM-7: unicode. Long: several parts, the first part's id, success only when all are in.
	cyr := strings.Repeat("Ваш код 123456. ", 15)
	res, err = p.Send(context.Background(), &gateway.Message{ID: "msg_2", To: "+447911123456", Country: "GG", Type: gateway.SMS, Text: cyr})
	if err != nil || !strings.HasPrefix(res.ProviderMessageID, "0000") || res.Status != "accepted (2 parts)" {
		t.Fatalf("long unicode: %+v %v", res, err)
	}
	if got := last(f).Form; got.Get("type") != "unicode" || got.Get("from") != "SMSGate" {
		t.Errorf("type %q from %q", got.Get("type"), got.Get("from"))
	}
	// Without signed webhooks the callback carries the webhook secret.
	p = newDriver(t, s.URL, func(c *Config) { c.SignatureSecret, c.WebhookSecret = "", hookSec })
	p.Send(context.Background(), &gateway.Message{ID: "msg_3", To: "+14155550104", Type: gateway.SMS, Text: "x"})
	if got := last(f).Form.Get("callback"); got != cbBase+"?secret="+hookSec {
		t.Errorf("callback %q", got)
	}
}

func TestCall(t *testing.T) {
	f, s := serve(t)
	p := newDriver(t, s.URL, nil)
	res, err := p.Send(context.Background(), &gateway.Message{ID: "msg_4", To: "+14155550104", Type: gateway.Voice, Code: "4271", Text: "4271", Language: "de-AT"})
	if err != nil || !strings.HasSuffix(res.ProviderMessageID, "-aaaa-bbbb-cccc-000000000000") || res.Status != "started" {
		t.Fatalf("res %+v err %v", res, err)
	}
	got := last(f)
	want := map[string]any{"to": []any{map[string]any{"type": "phone", "number": "14155550104"}}, "from": map[string]any{"type": "phone", "number": "14155550001"},
		"ncco":      []any{map[string]any{"action": "talk", "text": "Ihr Code lautet 4, 2, 7, 1.", "language": "de-DE", "loop": float64(2)}},
		"event_url": []any{cbBase}, "event_method": "POST"}
	if diff := cmp.Diff(want, got.Body); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	// The fake verified the JWT with crypto/rsa; its claims are the application's.
	if got.Claims["application_id"] != appID || got.Claims["jti"] == "" {
		t.Errorf("claims %v", got.Claims)
	}
	exp, iat := got.Claims["exp"].(float64), got.Claims["iat"].(float64)
	if exp-iat != 300 {
		t.Errorf("exp - iat = %v", exp-iat)
	}
	for lang, want := range map[string][2]string{"": {"en-US", "Your code is 4, 2."}, "en-GB": {"en-GB", "Your code is 4, 2."},
		"fr-CA": {"fr-CA", "Votre code est 4, 2."}, "fr-BE": {"fr-FR", "Votre code est 4, 2."}, "en-IN": {"en-IN", "Your code is 4, 2."},
		"en-AU": {"en-AU", "Your code is 4, 2."}, "es-MX": {"es-MX", "Su código es 4, 2."}, "pt-PT": {"pt-PT", "Seu código é 4, 2."}, "xx": {"en-US", "Your code is 4, 2."}, "pt": {"pt-BR", "Seu código é 4, 2."}} {
		if text, l := Talk(&gateway.Message{Code: "42", Language: lang}); l != want[0] || text != want[1] {
			t.Errorf("%q: %q %q", lang, l, text)
		}
	}
	// A text without a code is read once, as every driver reads it (a spend limit counts it so).
	p.Send(context.Background(), &gateway.Message{To: "+14155550104", Type: gateway.Voice, Text: "Your appointment is tomorrow."})
	if ncco := last(f).Body["ncco"].([]any)[0].(map[string]any); ncco["loop"] != float64(1) || ncco["text"] != "Your appointment is tomorrow." {
		t.Errorf("a text without a code: %v", ncco)
	}
	// No voice number: Vonage picks one of the application's.
	p = newDriver(t, s.URL, func(c *Config) { c.VoiceFrom = "" })
	p.Send(context.Background(), &gateway.Message{To: "+14155550104", Type: gateway.Voice, Code: "1"})
	if b := last(f).Body; b["random_from_number"] != true || b["from"] != nil {
		t.Errorf("random from: %v", b)
	}
}

// TestSendDetails: what an error says (the part that failed, the table's description or Vonage's
// own text, a problem's detail), the call's status as Vonage gives it, and a driver without a
// callback URL, which asks for no receipts nor events.
func TestSendDetails(t *testing.T) {
	// send answers msg with status and answer from a server at the path its type is sent to.
	send := func(msg *gateway.Message, status int, answer string) (*Provider, gateway.Result, error) {
		path := "/sms/json"
		if msg.Type == gateway.Voice {
			path = "/v1/calls"
		}
		srv := providertest.Answering(t, "POST", path, status, []byte(answer))
		p := newDriver(t, srv.URL, func(c *Config) { c.VoiceBaseURL = srv.URL })
		res, err := p.Send(context.Background(), msg)
		return p, res, err
	}
	for _, tc := range []struct {
		typ    gateway.MessageType
		status int
		answer string
		want   string
	}{
		{gateway.SMS, 200, `{"messages":[{"status":"7","error-text":"Number barred."}]}`, "number barred"},
		{gateway.SMS, 200, `{"messages":[{"status":"99","error-text":"Something new"}]}`, "Something new"},
		{gateway.SMS, 200, `{"messages":[{"status":"0","message-id":"A1"},{"status":"0","message-id":"A2"},{"status":"9","error-text":"Quota"}]}`, "part 3 of 3: partner quota exceeded"},
		{gateway.Voice, 401, `{"type":"https://developer.nexmo.com/api-errors#unauthorized","title":"Unauthorized","detail":"Invalid Token"}`, "Unauthorized: Invalid Token"},
	} {
		_, _, err := send(&gateway.Message{ID: "msg_1", To: "+14155550104", Type: tc.typ, Text: "x", Code: "1"}, tc.status, tc.answer)
		var ge *gateway.Error
		if !errors.As(err, &ge) || !strings.Contains(ge.Message, tc.want) {
			t.Errorf("%s: %v, want a message with %q", tc.answer, err, tc.want)
		}
	}
	p, res, err := send(&gateway.Message{ID: "msg_2", To: "+14155550104", Type: gateway.Voice, Code: "1"}, 201, `{"uuid":"63f61863","status":"queued"}`)
	if err != nil || res.Status != "queued" {
		t.Errorf("call: %+v %v", res, err)
	}

	f, fs := serve(t)
	quiet := New(config(t, fs.URL, func(c *Config) { c.VoiceBaseURL = fs.URL }), gateway.Deps{Name: "vonage-eu", HTTPClient: &http.Client{}})
	if quiet.AsksReports() || !p.AsksReports() {
		t.Error("AsksReports should follow the callback URL")
	}
	quiet.Send(context.Background(), &gateway.Message{ID: "msg_3", To: "+14155550104", Type: gateway.SMS, Text: "x"})
	if form := last(f).Form; form.Has("callback") {
		t.Errorf("an SMS without a callback URL: %v", form)
	}
	quiet.Send(context.Background(), &gateway.Message{ID: "msg_4", To: "+14155550104", Type: gateway.Voice, Code: "1"})
	if b := last(f).Body; b["event_url"] != nil || b["event_method"] != nil {
		t.Errorf("a call without a callback URL: %v", b)
	}
}

func TestCapabilities(t *testing.T) {
	withVoice := newDriver(t, "https://rest.nexmo.com", nil)
	smsOnly := newDriver(t, "https://rest.nexmo.com", func(c *Config) { c.ApplicationID, c.PrivateKey = "", "" })
	if !withVoice.Capabilities().Can(gateway.Voice) || smsOnly.Capabilities().Can(gateway.Voice) || !smsOnly.Capabilities().Can(gateway.SMS) {
		t.Errorf("capabilities: %+v %+v", withVoice.Capabilities(), smsOnly.Capabilities())
	}
}

func TestContract(t *testing.T) {
	_, ok := serve(t)
	status := func(s string) string {
		return `{"message-count":"1","messages":[{"status":"` + s + `","error-text":"simulated"}]}`
	}
	providertest.Run(t, providertest.Contract{
		New: func(base string, deps gateway.Deps) gateway.Provider {
			return New(config(t, base, nil), deps)
		},
		Accepting: ok.URL,
		Secrets:   []string{apiSecret, sigSecret},
		BadReport: func() (*http.Request, []byte) {
			q := "messageId=0A1&status=delivered&client-ref=msg_1&timestamp=" + itoa(time.Now().Unix()) + "&sig=00ff"
			return httptest.NewRequest("GET", "/v1/dlr/vonage/v?"+q, nil), nil
		},
		Cases: []providertest.Case{
			{Name: "status 6 invalid message: recipient", Status: 200, Body: status("6"), Class: gateway.ClassRecipient, Code: "VONAGE_6"},
			{Name: "status 7 number barred: recipient", Status: 200, Body: status("7"), Class: gateway.ClassRecipient, Code: "VONAGE_7"},
			{Name: "status 33 de-activated: recipient", Status: 200, Body: status("33"), Class: gateway.ClassRecipient, Code: "VONAGE_33"},
			{Name: "status 29 not whitelisted: destination", Status: 200, Body: status("29"), Class: gateway.ClassDestination, Code: "VONAGE_29"},
			{Name: "status 12 too long: destination", Status: 200, Body: status("12"), Class: gateway.ClassDestination, Code: "VONAGE_12"},
			{Name: "a part without a status: a bad answer", Status: 200, Body: `{"message-count":"1","messages":[{"message-id":"A1"}]}`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "accepted without a message-id: a bad answer", Status: 200, Body: `{"message-count":"1","messages":[{"status":"0"}]}`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "status 1 throttled", Status: 200, Body: status("1"), Class: gateway.ClassThrottled, Code: "VONAGE_1"},
			{Name: "status 4 credentials", Status: 200, Body: status("4"), Class: gateway.ClassProvider, Code: "VONAGE_4"},
			{Name: "status 9 no credit", Status: 200, Body: status("9"), Class: gateway.ClassProvider, Code: "VONAGE_9"},
			{Name: "status 14 signature", Status: 200, Body: status("14"), Class: gateway.ClassProvider, Code: "VONAGE_14"},
			{Name: "status 15 sender", Status: 200, Body: status("15"), Class: gateway.ClassProvider, Code: "VONAGE_15"},
			{Name: "unknown status", Status: 200, Body: status("99"), Class: gateway.ClassProvider, Code: "VONAGE_99"},
			{Name: "partial failure: part 2 barred", Status: 200, Body: `{"message-count":"2","messages":[{"status":"0","message-id":"A1"},{"status":"7","error-text":"barred"}]}`, Class: gateway.ClassRecipient, Code: "VONAGE_7"},
			{Name: "two parts accepted", Status: 200, Body: `{"message-count":"2","messages":[{"status":"0","message-id":"A1"},{"status":"0","message-id":"A2"}]}`, OK: true},
			{Name: "call 201", Type: gateway.Voice, Status: 201, Body: `{"uuid":"63f61863-4a51-4f6b-86e1-46edebcf9356","status":"started","direction":"outbound","conversation_uuid":"CON-f972836a"}`, OK: true},
			{Name: "call 400 about to: recipient", Type: gateway.Voice, Status: 400, Body: `{"type":"https://developer.nexmo.com/api-errors#bad-request","title":"Bad Request","invalid_parameters":[{"name":"to[0].number","reason":"invalid"}]}`, Class: gateway.ClassRecipient, Code: "VONAGE_BAD-REQUEST"},
			{Name: "call 201 without a uuid: a bad answer", Type: gateway.Voice, Status: 201, Body: `{"status":"started"}`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			{Name: "call 400 about To in capitals: recipient", Type: gateway.Voice, Status: 400, Body: `{"type":"https://developer.nexmo.com/api-errors#bad-request","title":"Bad Request","invalid_parameters":[{"name":"To","reason":"invalid"}]}`, Class: gateway.ClassRecipient, Code: "VONAGE_BAD-REQUEST"},
			{Name: "call 400 about to and from: provider", Type: gateway.Voice, Status: 400, Body: `{"type":"https://developer.nexmo.com/api-errors#bad-request","title":"Bad Request","invalid_parameters":[{"name":"to[0].number","reason":"invalid"},{"name":"from.number","reason":"invalid"}]}`, Class: gateway.ClassProvider, Code: "VONAGE_BAD-REQUEST"},
			{Name: "call 400 naming no parameter: provider", Type: gateway.Voice, Status: 400, Body: `{"type":"https://developer.nexmo.com/api-errors#bad-request","title":"Bad Request","detail":"malformed"}`, Class: gateway.ClassProvider, Code: "VONAGE_BAD-REQUEST"},
			{Name: "call 422 about to: provider", Type: gateway.Voice, Status: 422, Body: `{"type":"https://developer.nexmo.com/api-errors#invalid-parameters","title":"Invalid","invalid_parameters":[{"name":"to[0].number","reason":"invalid"}]}`, Class: gateway.ClassProvider, Code: "VONAGE_INVALID-PARAMETERS"},
			{Name: "call problem with a type alone", Type: gateway.Voice, Status: 503, Body: `{"type":"https://developer.nexmo.com/api-errors#unavailable"}`, Class: gateway.ClassProvider, Code: "VONAGE_UNAVAILABLE"},
			{Name: "call problem with a title alone", Type: gateway.Voice, Status: 500, Body: `{"title":"Internal Error"}`, Class: gateway.ClassProvider, Code: "VONAGE_INTERNAL_ERROR"},
			{Name: "call problem whose type is a fragment", Type: gateway.Voice, Status: 500, Body: `{"type":"#server-error","title":"Internal Error"}`, Class: gateway.ClassProvider, Code: "VONAGE_SERVER-ERROR"},
			{Name: "call 401", Type: gateway.Voice, Status: 401, Body: `{"type":"https://developer.nexmo.com/api-errors#unauthorized","title":"Unauthorized","detail":"Invalid Token"}`, Class: gateway.ClassProvider, Code: "VONAGE_UNAUTHORIZED"},
		},
	})
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// independentMD5 signs the way Vonage's documentation describes, written out for these parameters
// by hand (not with the driver's Sign).
func independentMD5(p url.Values, secret string) string {
	s := "&client-ref=" + p.Get("client-ref") + "&err-code=" + p.Get("err-code") + "&messageId=" + p.Get("messageId") +
		"&msisdn=" + p.Get("msisdn") + "&nonce=" + p.Get("nonce") + "&price=" + p.Get("price") + "&status=" + p.Get("status") + "&timestamp=" + p.Get("timestamp")
	sum := md5.Sum([]byte(s + secret))
	return hex.EncodeToString(sum[:])
}

func independentSHA256(p url.Values, secret string) string {
	s := "&client-ref=" + p.Get("client-ref") + "&err-code=" + p.Get("err-code") + "&messageId=" + p.Get("messageId") +
		"&msisdn=" + p.Get("msisdn") + "&nonce=" + p.Get("nonce") + "&price=" + p.Get("price") + "&status=" + p.Get("status") + "&timestamp=" + p.Get("timestamp")
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))
}

// hs256 makes a JWT by hand: base64url header and claims, HMAC-SHA256.
func hs256(secret string, claims map[string]any) string {
	return jwtByHand(`{"alg":"HS256","typ":"JWT"}`, sha256.New, secret, claims)
}

// jwtByHand makes a JWT with the header given, signed with an HMAC of h.
func jwtByHand(header string, h func() hash.Hash, secret string, claims map[string]any) string {
	c, _ := json.Marshal(claims)
	s := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(s))
	return s + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TestSignEveryMethod: Sign, against the string to sign written out by hand: keys sorted, sig
// and our own secret left out, & and = inside values replaced by _; md5hash (also the default)
// appends the secret, the others are HMACs keyed by it.
func TestSignEveryMethod(t *testing.T) {
	params := map[string]string{"status": "delivered", "client-ref": "a=b&c", "messageId": "0B1", "sig": "old", "secret": hookSec}
	const str = "&client-ref=a_b_c&messageId=0B1&status=delivered"
	hmacOf := func(h func() hash.Hash) string {
		m := hmac.New(h, []byte(sigSecret))
		m.Write([]byte(str))
		return hex.EncodeToString(m.Sum(nil))
	}
	sum := md5.Sum([]byte(str + sigSecret))
	md5hash := hex.EncodeToString(sum[:])
	for method, want := range map[string]string{"": md5hash, "md5hash": md5hash, "md5": hmacOf(md5.New), "sha1": hmacOf(sha1.New),
		"sha256": hmacOf(sha256.New), "sha512": hmacOf(sha512.New)} {
		if got := Sign(params, sigSecret, method); got != want {
			t.Errorf("Sign with %q = %s, want %s", method, got, want)
		}
	}
}

// TestReceiptDetails: a receipt's timestamp may be no further ahead than behind; a price that
// is not positive is none (a negative one would pay back spend); statuses map case-blind.
func TestReceiptDetails(t *testing.T) {
	now := time.Now()
	p := newDriver(t, "https://x", nil)
	receipt := func(ts time.Time, status, price string) ([]gateway.DeliveryReport, error) {
		q := map[string]string{"messageId": "0B1", "client-ref": "msg_1", "status": status, "price": price, "timestamp": itoa(ts.Unix())}
		v := url.Values{}
		for k, x := range q {
			v.Set(k, x)
		}
		v.Set("sig", Sign(q, sigSecret, "md5hash"))
		return p.ParseReports(httptest.NewRequest("GET", "/v?"+v.Encode(), nil), nil, "")
	}
	if _, err := receipt(now.Add(10*time.Minute), "delivered", "0.03"); err != gateway.ErrUnauthenticated {
		t.Errorf("a timestamp ten minutes ahead: %v", err)
	}
	if _, err := receipt(now.Add(2*time.Minute), "delivered", "0.03"); err != nil {
		t.Errorf("a timestamp two minutes ahead: %v", err)
	}
	for _, price := range []string{"-0.5", "0", "NaN", "-Inf", "abc"} {
		if reps, err := receipt(now, "delivered", price); err != nil || reps[0].Price != 0 || reps[0].Currency != "" {
			t.Errorf("price %q: %+v %v", price, reps, err)
		}
	}
	for status, want := range map[string]string{"DELIVERED": gateway.StatusDelivered, "rejected": gateway.StatusFailed, "failed": gateway.StatusFailed,
		"Expired": gateway.StatusUndelivered, "buffered": gateway.StatusSent} {
		if reps, err := receipt(now, status, ""); err != nil || reps[0].Status != want {
			t.Errorf("status %q: %+v %v", status, reps, err)
		}
	}
	// A body with a uuid but no conversation_uuid is not a voice event: a valid voice token
	// does not make it a receipt.
	body := `{"uuid":"63f61863","status":"completed"}`
	r := httptest.NewRequest("POST", "/v", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+hs256(sigSecret, map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}))
	if _, err := p.ParseReports(r, []byte(body), ""); err != gateway.ErrUnauthenticated {
		t.Errorf("uuid without conversation_uuid: %v", err)
	}
}

func TestReceipts(t *testing.T) {
	now := time.Now()
	params := url.Values{"messageId": {"0B00000123"}, "msisdn": {"14155550104"}, "status": {"delivered"}, "err-code": {"0"},
		"client-ref": {"msg_7"}, "price": {"0.0333"}, "nonce": {"n-1"}, "timestamp": {itoa(now.Unix())}}
	want := []gateway.DeliveryReport{{ProviderMessageID: "0B00000123", MessageID: "msg_7", ProviderStatus: "delivered", Status: gateway.StatusDelivered, Price: 0.0333, Currency: "EUR", PerPart: true}}
	signed := func(p url.Values, sig string) url.Values {
		c := url.Values{}
		for k, v := range p {
			c[k] = v
		}
		c.Set("sig", sig)
		return c
	}
	md5Driver := newDriver(t, "https://x", nil)
	shaDriver := newDriver(t, "https://x", func(c *Config) { c.SignatureMethod = "sha256" })
	jsonBody := func(p url.Values) string {
		m := map[string]string{}
		for k := range p {
			m[k] = p.Get(k)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct {
		name   string
		p      *Provider
		method string
		query  string
		ctype  string
		body   string
		ok     bool
	}{
		{"md5hash GET", md5Driver, "GET", signed(params, independentMD5(params, sigSecret)).Encode(), "", "", true},
		{"md5hash POST form, upper-case sig", md5Driver, "POST", "", "application/x-www-form-urlencoded", signed(params, strings.ToUpper(independentMD5(params, sigSecret))).Encode(), true},
		{"md5hash POST JSON", md5Driver, "POST", "", "application/json", jsonBody(signed(params, independentMD5(params, sigSecret))), true},
		{"md5hash POST JSON with a boolean, signed as true", md5Driver, "POST", "", "application/json", func() string {
			// Written out by hand: the parameters in order, "concatenated" after "client-ref".
			str := "&client-ref=msg_7&concatenated=true&err-code=0&messageId=0B00000123&msisdn=14155550104&nonce=n-1&price=0.0333&status=delivered&timestamp=" + params.Get("timestamp")
			sum := md5.Sum([]byte(str + sigSecret))
			b := jsonBody(signed(params, hex.EncodeToString(sum[:])))
			return strings.Replace(b, "{", `{"concatenated":true,`, 1)
		}(), true},
		{"sha256 HMAC", shaDriver, "GET", signed(params, independentSHA256(params, sigSecret)).Encode(), "", "", true},
		{"wrong secret", md5Driver, "GET", signed(params, independentMD5(params, "other")).Encode(), "", "", false},
		{"tampered status", md5Driver, "GET", func() string {
			s := signed(params, independentMD5(params, sigSecret))
			s.Set("status", "failed")
			return s.Encode()
		}(), "", "", false},
		{"too old", md5Driver, "GET", func() string {
			old := url.Values{}
			for k, v := range params {
				old[k] = v
			}
			old.Set("timestamp", itoa(now.Add(-10*time.Minute).Unix()))
			return signed(old, independentMD5(old, sigSecret)).Encode()
		}(), "", "", false},
		{"unsigned", md5Driver, "GET", params.Encode(), "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/v1/dlr/vonage/v?"+tc.query, strings.NewReader(tc.body))
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			got, err := tc.p.ParseReports(r, []byte(tc.body), "")
			if !tc.ok {
				if err != gateway.ErrUnauthenticated {
					t.Errorf("err = %v, want ErrUnauthenticated", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("webhook secret without signing", func(t *testing.T) {
		p := newDriver(t, "https://x", func(c *Config) { c.SignatureSecret, c.WebhookSecret = "", hookSec })
		for _, tc := range []struct {
			name, query, ctype, body string
			want                     gateway.DeliveryReport
		}{
			{"a reference alone", "client-ref=msg_9&status=delivered", "", "",
				gateway.DeliveryReport{MessageID: "msg_9", ProviderStatus: "delivered", Status: gateway.StatusDelivered}},
			{"a JSON type with no body leaves the query", "messageId=2&status=delivered", "application/json", "",
				gateway.DeliveryReport{ProviderMessageID: "2", ProviderStatus: "delivered", Status: gateway.StatusDelivered}},
			{"JSON numbers", "", "application/json", `{"messageId":"3","status":"failed","price":0.0333,"err-code":5}`,
				gateway.DeliveryReport{ProviderMessageID: "3", ProviderStatus: "failed", Status: gateway.StatusFailed, Error: "5", Price: 0.0333, Currency: "EUR", PerPart: true}},
		} {
			r := httptest.NewRequest("POST", "/v?secret="+hookSec+"&"+tc.query, strings.NewReader(tc.body))
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			got, err := p.ParseReports(r, []byte(tc.body), "")
			if diff := cmp.Diff([]gateway.DeliveryReport{tc.want}, got); err != nil || diff != "" {
				t.Errorf("%s: %v (-want +got):\n%s", tc.name, err, diff)
			}
		}
		// A conversation_uuid without a uuid is not a voice event: a receipt without an id.
		r := httptest.NewRequest("POST", "/v?secret="+hookSec, strings.NewReader(`{"conversation_uuid":"CON-1","status":"completed"}`))
		r.Header.Set("Content-Type", "application/json")
		if _, err := p.ParseReports(r, []byte(`{"conversation_uuid":"CON-1","status":"completed"}`), ""); gateway.ClassOf(err) != gateway.ClassCaller {
			t.Errorf("a conversation_uuid without a uuid: %v", err)
		}
		q := "messageId=1&status=expired&err-code=2&client-ref=msg_8&secret=" + hookSec
		got, err := p.ParseReports(httptest.NewRequest("GET", "/v?"+q, nil), nil, "")
		if err != nil || got[0].Status != gateway.StatusUndelivered || got[0].Error != "2" {
			t.Errorf("%+v %v", got, err)
		}
		if _, err := p.ParseReports(httptest.NewRequest("GET", "/v?messageId=1&status=delivered&secret=no", nil), nil, ""); err != gateway.ErrUnauthenticated {
			t.Errorf("wrong secret: %v", err)
		}
	})
	t.Run("a rotated webhook secret", func(t *testing.T) {
		p := newDriver(t, "https://x", func(c *Config) {
			c.SignatureSecret, c.WebhookSecret, c.PreviousWebhookSecrets = "", "vonage-hook-NEW", []gateway.Secret{hookSec}
		})
		for secret, ok := range map[string]bool{hookSec: true, "vonage-hook-NEW": true, "no": false} {
			_, err := p.ParseReports(httptest.NewRequest("GET", "/v?messageId=1&status=delivered&secret="+secret, nil), nil, "")
			if (err == nil) != ok {
				t.Errorf("secret %q: %v", secret, err)
			}
		}
	})
	t.Run("a rotated signature secret", func(t *testing.T) {
		p := newDriver(t, "https://x", func(c *Config) {
			c.SignatureSecret, c.PreviousSignatureSecrets = "sig-NEW-abcdefghijkl", []gateway.Secret{"", sigSecret}
		})
		for secret, ok := range map[string]bool{sigSecret: true, "sig-NEW-abcdefghijkl": true, "other": false, "": false} {
			q := signed(params, independentMD5(params, secret)).Encode()
			if _, err := p.ParseReports(httptest.NewRequest("GET", "/v?"+q, nil), nil, ""); (err == nil) != ok {
				t.Errorf("receipt signed with %q: %v", secret, err)
			}
			ev := `{"uuid":"63f61863","conversation_uuid":"CON-1","status":"completed","direction":"outbound","timestamp":"2026-11-30T12:00:00.000Z"}`
			r := httptest.NewRequest("POST", "/v", strings.NewReader(ev))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer "+hs256(secret, map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}))
			if _, err := p.ParseReports(r, []byte(ev), ""); (err == nil) != ok {
				t.Errorf("voice event signed with %q: %v", secret, err)
			}
		}
	})
	t.Run("voice events with a signed JWT", func(t *testing.T) {
		ev := func(status string) string {
			return `{"uuid":"63f61863","conversation_uuid":"CON-1","status":"` + status + `","direction":"outbound","timestamp":"2026-11-30T12:00:00.000Z"}`
		}
		for status, want := range map[string]string{"completed": gateway.StatusDelivered, "answered": gateway.StatusDelivered, "busy": gateway.StatusUndelivered,
			"unanswered": gateway.StatusUndelivered, "timeout": gateway.StatusUndelivered, "rejected": gateway.StatusUndelivered, "cancelled": gateway.StatusUndelivered,
			"failed": gateway.StatusFailed, "ringing": gateway.StatusSent} {
			r := httptest.NewRequest("POST", "/v", strings.NewReader(ev(status)))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer "+hs256(sigSecret, map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "j1"}))
			got, err := md5Driver.ParseReports(r, []byte(ev(status)), "")
			if err != nil || got[0].Status != want || got[0].ProviderMessageID != "63f61863" {
				t.Errorf("%s: %+v %v", status, got, err)
			}
		}
		// Within the five minutes of leeway, a token just expired (clocks differ) is taken.
		r := httptest.NewRequest("POST", "/v", strings.NewReader(ev("completed")))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+hs256(sigSecret, map[string]any{"iat": now.Add(-5 * time.Minute).Unix(), "exp": now.Add(-2 * time.Minute).Unix()}))
		if _, err := md5Driver.ParseReports(r, []byte(ev("completed")), ""); err != nil {
			t.Errorf("expired two minutes ago: %v", err)
		}
		// A payload_hash (SHA-256 of the body, hex, in either case) that is the body's is taken.
		sum := sha256.Sum256([]byte(ev("completed")))
		for _, h := range []string{hex.EncodeToString(sum[:]), strings.ToUpper(hex.EncodeToString(sum[:]))} {
			r := httptest.NewRequest("POST", "/v", strings.NewReader(ev("completed")))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer "+hs256(sigSecret, map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "payload_hash": h}))
			if got, err := md5Driver.ParseReports(r, []byte(ev("completed")), ""); err != nil || got[0].Status != gateway.StatusDelivered {
				t.Errorf("payload_hash %s of the body: %+v %v", h, got, err)
			}
		}
		otherBody := sha256.Sum256([]byte(ev("failed")))
		for name, token := range map[string]string{
			// A token seen once, carrying another body: its hash is not this body's.
			"payload_hash of another body": hs256(sigSecret, map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "payload_hash": hex.EncodeToString(otherBody[:])}),
			"payload_hash not a string":    hs256(sigSecret, map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "payload_hash": 1}),
			"wrong secret":                 hs256("other", map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}),
			"expired":                      hs256(sigSecret, map[string]any{"iat": now.Add(-time.Hour).Unix(), "exp": now.Add(-30 * time.Minute).Unix()}),
			"none":                         "",
			// Only HS256 is Vonage's: the same secret under another algorithm is not taken.
			"HS512": jwtByHand(`{"alg":"HS512","typ":"JWT"}`, sha512.New, sigSecret, map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}),
		} {
			r := httptest.NewRequest("POST", "/v", strings.NewReader(ev("completed")))
			r.Header.Set("Content-Type", "application/json")
			if token != "" {
				r.Header.Set("Authorization", "Bearer "+token)
			}
			if _, err := md5Driver.ParseReports(r, []byte(ev("completed")), ""); err != gateway.ErrUnauthenticated {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

// callErrors drops the one ambiguity of Vonage's 2021 voice spec: the items of "to" are a oneOf
// of phone, SIP, websocket and VBC endpoints without a discriminator, and SIP's schema accepts a
// phone endpoint too, so every phone endpoint "matches subschemas 0, 1" (phone first, as wanted)
// and the oneOf fails; the call body's own oneOf (ncco or answer_url) then reports the other
// branch. Any other problem stays.
func callErrors(errs []string) []string {
	var out []string
	for _, e := range errs {
		rest := strings.ReplaceAll(e, "$.to[0]: 'oneOf' failed, subschemas 0, 1 matched", "")
		rest = strings.ReplaceAll(rest, ": missing property 'answer_url'", "")
		if strings.Contains(rest, "$.") || strings.Contains(rest, "missing property") {
			out = append(out, e)
		}
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	c := Config{BaseURL: "ftp://x", ApplicationID: appID, PrivateKey: "not a key", SignatureMethod: "crc32", VoiceFrom: "abc"}
	c.Defaults()
	want := []gateway.Problem{{Key: "base_url", Message: `"ftp://x" is not an http(s) URL`}, {Key: "api_key", Message: "is required"},
		{Key: "api_secret", Message: "is required"}, {Key: "from", Message: "is required"}, {Key: "private_key", Message: "is not a PEM private key"},
		{Key: "voice_from", Message: "must be a number in E.164"}, {Key: "signature_method", Message: `must be md5hash, md5, sha1, sha256 or sha512, not "crc32"`}}
	if diff := cmp.Diff(want, c.Validate()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, c := range []Config{{APIKey: "k", APISecret: "s", From: "x", ApplicationID: appID}, {APIKey: "k", APISecret: "s", From: "x", PrivateKey: "x"}} {
		c.Defaults()
		if p := c.Validate(); len(p) != 1 || p[0].Key != "application_id" {
			t.Errorf("application_id without private_key, or the reverse: %v", p)
		}
	}
	// A PEM key that is not RSA (EC in PKCS#8, or a block of garbage) cannot sign RS256.
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	for name, key := range map[string][]byte{"EC": der, "garbage": []byte("not a key")} {
		c := config(t, "https://rest.nexmo.com", nil)
		c.PrivateKey = gateway.Secret(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}))
		if p := c.Validate(); len(p) != 1 || p[0] != (gateway.Problem{Key: "private_key", Message: "is not an RSA private key"}) {
			t.Errorf("%s: %v", name, p)
		}
	}
	for _, u := range []string{"https://", "ftp://api.nexmo.com"} {
		c := config(t, "https://rest.nexmo.com", nil)
		c.VoiceBaseURL = u
		if p := c.Validate(); len(p) != 1 || p[0].Key != "voice_base_url" {
			t.Errorf("voice_base_url %q: %v", u, p)
		}
	}
	for from, ok := range map[string]bool{"1415555": true, "+141555501041234": true, "141555": false, "1415555010412345": false} {
		c := config(t, "https://rest.nexmo.com", nil)
		c.VoiceFrom, c.Senders = from, map[string]string{"001": "SMSGate"}
		if p := c.Validate(); (len(p) == 0) != ok {
			t.Errorf("voice_from %q: %v", from, p)
		}
	}
	for _, m := range []string{"md5", "sha1", "sha512"} {
		c := config(t, "https://rest.nexmo.com", nil)
		c.SignatureMethod = m
		if p := c.Validate(); len(p) != 0 {
			t.Errorf("signature_method %s: %v", m, p)
		}
	}
	c = Config{}
	c.Defaults()
	if c.BaseURL != "https://rest.nexmo.com" || c.VoiceBaseURL != "https://api.nexmo.com" || c.SignatureMethod != "md5hash" {
		t.Errorf("defaults: %+v", c)
	}
	c = Config{APIKey: "k", APISecret: "s", From: "x", WebhookSecret: "w", PreviousSignatureSecrets: []gateway.Secret{"old"}}
	c.Defaults()
	if p := c.Validate(); len(p) != 1 || p[0].Key != "previous_signature_secrets" {
		t.Errorf("previous_signature_secrets without signature_secret: %v", p)
	}
}

// TestRequestsAndFakeConformToTheSpec checks every SMS form and call body the driver sends, and
// the fake's answers, against Vonage's OpenAPI specs.
func TestRequestsAndFakeConformToTheSpec(t *testing.T) {
	sms := providertest.LoadSpec(t, "vonage-sms.yml")
	voice := providertest.LoadSpec(t, "vonage-voice.yml")
	f, s := serve(t)
	p := newDriver(t, s.URL, nil)
	for _, m := range []*gateway.Message{
		{ID: "msg_1", To: "+14155550104", Country: "US", Type: gateway.SMS, Text: "Your code is 123456"},
		{ID: "msg_2", To: "+447911123456", Country: "GG", Type: gateway.SMS, Text: strings.Repeat("Ваш код 1. ", 20)},
		{ID: "msg_3", To: "+14155550104", Type: gateway.Voice, Code: "987654", Language: "fr"},
	} {
		if _, err := p.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range f.Requests() {
		var errs []string
		if r.Path == "/sms/json" {
			errs = sms.FormErrors("/sms/json", "POST", r.Form)
		} else {
			body, _ := json.Marshal(r.Body)
			errs = callErrors(voice.RequestErrors("/v1/calls", "POST", body))
		}
		if len(errs) > 0 {
			t.Errorf("%s does not conform: %v", r.Path, errs)
		}
	}
	if len(f.Requests()) != 3 {
		t.Fatalf("%d requests", len(f.Requests()))
	}
	if errs := callErrors(voice.RequestErrors("/v1/calls", "POST", []byte(`{"to":[{"type":"phone","number":"14155550104"}],"nccoo":[]}`))); len(errs) == 0 {
		t.Error("a call body without ncco passed the spec check")
	}
	if errs := sms.FormErrors("/sms/json", "POST", url.Values{"api_key": {apiKey}, "from": {"x"}, "to": {"1"}, "client_ref": {"x"}}); len(errs) == 0 {
		t.Error("a misspelt field passed the spec check")
	}
}

// TestFakeModes: the fake's own throttling, barred number, partial failure and outage reach the
// driver as the status table says.
func TestFakeModes(t *testing.T) {
	f, s := serve(t)
	p := newDriver(t, s.URL, nil)
	for _, tc := range []struct {
		mode      vonagetest.Mode
		class     gateway.Class
		code      string
		maybeSent bool
	}{
		{vonagetest.Throttled, gateway.ClassThrottled, "VONAGE_1", false},
		{vonagetest.Barred, gateway.ClassRecipient, "VONAGE_7", false},
		{vonagetest.Partial, gateway.ClassProvider, "VONAGE_5", true},
		{vonagetest.Unavailable, gateway.ClassProvider, "HTTP_503", false},
	} {
		f.SetMode(tc.mode)
		_, err := p.Send(context.Background(), &gateway.Message{ID: "m", To: "+14155550104", Type: gateway.SMS, Text: "Your code is 1234"})
		ge := gateway.AsError(err)
		if err == nil || ge.Class != tc.class || ge.Code != tc.code || ge.MaybeSent != tc.maybeSent {
			t.Errorf("mode %d: %v (class %v code %q maybe-sent %v)", tc.mode, err, ge.Class, ge.Code, ge.MaybeSent)
		}
	}
}

// FuzzParseReports: any receipt or voice event with valid credentials gives reports or a 400,
// never a panic. The first byte chooses the way in: a receipt's query string behind the webhook
// secret, the same signed with the signature secret (md5hash), or a voice event's JSON body with
// a signed JWT.
func FuzzParseReports(f *testing.F) {
	plain := newDriver(f, "https://x", func(c *Config) { c.SignatureSecret, c.WebhookSecret = "", hookSec })
	signing := newDriver(f, "https://x", nil)
	var mode int
	rr := receiverFunc(func(r *http.Request, body []byte, u string) ([]gateway.DeliveryReport, error) {
		if mode == 0 {
			return plain.ParseReports(r, body, u)
		}
		return signing.ParseReports(r, body, u)
	})
	providertest.FuzzReports(f, rr, []string{apiSecret[len("vonage-"):], sigSecret, hookSec}, func(in []byte) (*http.Request, []byte, string) {
		if len(in) == 0 {
			in = []byte{0}
		}
		mode = int(in[0] % 3)
		rest := in[1:]
		now := time.Now()
		switch mode {
		case 0:
			r := httptest.NewRequest("GET", "/v1/dlr/vonage/v", nil)
			r.URL.RawQuery = string(rest) + "&secret=" + hookSec
			return r, nil, ""
		case 1:
			q, _ := url.ParseQuery(string(rest))
			q.Set("timestamp", itoa(now.Unix()))
			q.Set("sig", independentMD5(q, sigSecret))
			r := httptest.NewRequest("GET", "/v1/dlr/vonage/v", nil)
			r.URL.RawQuery = q.Encode()
			return r, nil, ""
		}
		r := httptest.NewRequest("POST", "/v1/dlr/vonage/v", bytes.NewReader(rest))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+hs256(sigSecret, map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "j1"}))
		return r, rest, ""
	},
		"\x00messageId=1&status=expired&err-code=2&client-ref=msg_8",
		"\x01messageId=0B00000123&msisdn=14155550104&status=delivered&err-code=0&client-ref=msg_7&price=0.0333&nonce=n-1",
		"\x02"+`{"uuid":"63f61863","conversation_uuid":"CON-1","status":"completed","direction":"outbound","timestamp":"2026-11-30T12:00:00.000Z"}`,
		"\x02"+`{"uuid":"","status":"ringing"}`, "\x00status=delivered", "\x01price=NaN&messageId=x&status=delivered", "\x00price=Inf&messageId=x&status=delivered", "\x02[", "")
}

// receiverFunc makes a ReportReceiver of a function (the fuzz target switches drivers).
type receiverFunc func(r *http.Request, body []byte, publicURL string) ([]gateway.DeliveryReport, error)

func (f receiverFunc) Webhook() gateway.Webhook { return gateway.Webhook{} }
func (f receiverFunc) AsksReports() bool        { return true }
func (f receiverFunc) ParseReports(r *http.Request, body []byte, publicURL string) ([]gateway.DeliveryReport, error) {
	return f(r, body, publicURL)
}
