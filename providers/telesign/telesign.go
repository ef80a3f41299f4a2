// Package telesign is the TeleSign driver: SMS through POST /v1/messaging and voice through
// POST /v1/voice (form bodies), Basic auth or TeleSign's HMAC request signing, classification by
// the body's status.code (not the HTTP status; a 200 with a failure code is a failure), and
// delivery callbacks verified by TeleSign's HMAC over the raw body.
package telesign

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
)

// Provider is the TeleSign driver.
type Provider struct {
	cfg      Config
	kit      *kit.Client
	base     string
	key      []byte   // the decoded API key
	previous [][]byte // the decoded previous_api_keys, for callbacks only
	callback string
	now      func() time.Time
}

// New returns a driver; cfg must have passed Validate.
func New(cfg Config, deps gateway.Deps) *Provider {
	key, _ := base64.StdEncoding.DecodeString(cfg.APIKey.Reveal())
	p := &Provider{cfg: cfg, kit: kit.New(deps, kit.Reveal(cfg.PreviousAPIKeys, cfg.APIKey)...), base: strings.TrimRight(cfg.BaseURL, "/"), key: key,
		callback: deps.CallbackURL, now: time.Now}
	for _, k := range cfg.PreviousAPIKeys {
		b, _ := base64.StdEncoding.DecodeString(k.Reveal())
		p.previous = append(p.previous, b) // an empty key verifies nothing (ParseReports)
	}
	return p
}

// Capabilities implements gateway.Provider: SMS and voice.
func (p *Provider) Capabilities() gateway.Capabilities { return gateway.SMSAndVoice }

// AsksReports implements gateway.ReportReceiver: a callback URL goes with each message.
func (p *Provider) AsksReports() bool { return p.callback != "" }

// ReportReceiver is checked at compile time: the gateway finds report receivers by assertion.
var _ gateway.ReportReceiver = (*Provider)(nil)

// Webhook implements gateway.ReportReceiver.
func (p *Provider) Webhook() gateway.Webhook {
	return gateway.Webhook{Methods: []string{http.MethodPost}, ContentTypes: []string{"application/json"},
		Auth: "Authorization: TSA customer_id:base64(HMAC-SHA256(decoded api_key, raw body))"}
}

// voices maps a language's primary subtag to a TeleSign voice.
var voices = map[string]string{"en": "f-en-US", "de": "f-de-DE", "fr": "f-fr-FR", "es": "f-es-ES", "it": "f-it-IT", "pt": "f-pt-BR", "nl": "f-nl-NL", "ja": "f-ja-JP"}

// Speech returns the voice and the words of a call: the code digit by digit, twice.
func Speech(msg *gateway.Message) (voice, words string) {
	voice, s := kit.Voice(msg, voices, map[string]string{"en-GB": "f-en-GB"})
	return voice, kit.Twice(msg, s)
}

// Send implements gateway.Provider.
func (p *Provider) Send(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	f := url.Values{"phone_number": {strings.TrimPrefix(msg.To, "+")}, "message_type": {p.cfg.MessageType}}
	path := "/v1/messaging"
	if msg.Type == gateway.Voice {
		path = "/v1/voice"
		voice, words := Speech(msg)
		f.Set("message", words)
		f.Set("voice", voice)
	} else {
		f.Set("message", msg.Text)
		f.Set("external_id", msg.ID)
		if sender := kit.Sender(msg, p.cfg.Senders, p.cfg.SenderID); sender != "" {
			f.Set("sender_id", sender)
		}
		if msg.Attempt > 0 {
			f.Set("is_primary", "false") // TeleSign is a backup for this message
		}
	}
	if p.callback != "" {
		f.Set("callback_url", p.callback)
	}
	body := f.Encode()
	req, err := kit.Post(p.base+path, "application/x-www-form-urlencoded", "application/json", []byte(body))
	if err != nil {
		return gateway.Result{}, err
	}
	if p.cfg.Auth == "hmac" {
		var nonce [16]byte
		_, _ = rand.Read(nonce[:])
		date := p.now().UTC().Format(http.TimeFormat)
		n := hex.EncodeToString(nonce[:])
		req.Header.Set("Date", date)
		req.Header.Set("x-ts-auth-method", "HMAC-SHA256")
		req.Header.Set("x-ts-nonce", n)
		req.Header.Set("Authorization", "TSA "+p.cfg.CustomerID+":"+p.Signature(http.MethodPost, "application/x-www-form-urlencoded", date, n, body, path))
	} else {
		req.SetBasicAuth(p.cfg.CustomerID, p.cfg.APIKey.Reveal())
	}
	res, err := p.kit.Do(ctx, req)
	if err != nil {
		return gateway.Result{}, err
	}
	var a answer
	parsed := json.Unmarshal(res.Body, &a) == nil && a.Status.Code != 0
	if !res.OK() || (parsed && !accepted[a.Status.Code]) {
		return gateway.Result{}, p.kit.Classify(res, p.classify)
	}
	if !parsed || a.ReferenceID == "" {
		return gateway.Result{}, p.kit.NoID(res)
	}
	return gateway.Result{ProviderMessageID: a.ReferenceID, Status: strconv.Itoa(a.Status.Code)}, nil
}

// Signature is TeleSign's request signature: base64 HMAC-SHA256, keyed by the decoded API key,
// of "METHOD\nContent-Type\nDate\nx-ts-auth-method:HMAC-SHA256\nx-ts-nonce:NONCE\nBODY\nPATH".
func (p *Provider) Signature(method, ctype, date, nonce, body, path string) string {
	s := method + "\n" + ctype + "\n" + date + "\nx-ts-auth-method:HMAC-SHA256\nx-ts-nonce:" + nonce
	if body != "" {
		s += "\n" + body
	}
	s += "\n" + path
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

type answer struct {
	ReferenceID string `json:"reference_id"`
	ExternalID  string `json:"external_id"`
	Status      struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"status"`
	AdditionalInfo *struct {
		Price    json.Number `json:"price"`
		Currency string      `json:"currency"`
	} `json:"additional_info"`
}

// accepted are the status codes of a message or call under way.
var accepted = map[int]bool{290: true, 291: true, 292: true, 103: true}

// recipientCodes are about the number and throttleCodes about the rate (10019 rate limit
// exceeded, 10020 transaction hard cap); every other failure code is the provider's (10030
// insufficient funds, 100xx authentication, 10000, 500, 503, unknown).
var (
	recipientCodes = map[int]bool{11000: true, 11001: true, 12000: true, 10032: true}
	throttleCodes  = map[int]bool{10019: true, 10020: true}
)

func (p *Provider) classify(res *kit.Response) *gateway.Error {
	var a answer
	if json.Unmarshal(res.Body, &a) != nil || a.Status.Code == 0 {
		return nil
	}
	class := gateway.ClassProvider
	switch {
	case recipientCodes[a.Status.Code]:
		class = gateway.ClassRecipient
	case throttleCodes[a.Status.Code]:
		class = gateway.ClassThrottled
	}
	return p.kit.Fail(res, class, "TELESIGN_"+strconv.Itoa(a.Status.Code), a.Status.Description)
}

// ParseReports implements gateway.ReportReceiver: a JSON callback, authenticated by
// "TSA customer_id:base64(HMAC-SHA256(decoded api_key, raw body))" in constant time, the API key
// being api_key or one of previous_api_keys.
func (p *Provider) ParseReports(r *http.Request, body []byte, _ string) ([]gateway.DeliveryReport, error) {
	cust, sig, ok := strings.Cut(strings.TrimPrefix(r.Header.Get("Authorization"), "TSA "), ":")
	signed := 0
	for _, key := range append([][]byte{p.key}, p.previous...) { // every one compared
		if len(key) > 0 {
			m := hmac.New(sha256.New, key)
			m.Write(body)
			signed |= subtle.ConstantTimeCompare([]byte(sig), []byte(base64.StdEncoding.EncodeToString(m.Sum(nil))))
		}
	}
	if !ok || signed != 1 || subtle.ConstantTimeCompare([]byte(cust), []byte(p.cfg.CustomerID)) != 1 {
		return nil, gateway.ErrUnauthenticated
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil || a.ReferenceID == "" {
		return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "not a TeleSign callback"}
	}
	d := gateway.DeliveryReport{ProviderMessageID: a.ReferenceID, MessageID: a.ExternalID, ProviderStatus: strconv.Itoa(a.Status.Code)}
	d.Status = reportStatus(a.Status.Code)
	if d.Status == gateway.StatusUndelivered || d.Status == gateway.StatusFailed {
		d.Error = d.ProviderStatus
	}
	if ai := a.AdditionalInfo; ai != nil {
		if pr, err := ai.Price.Float64(); err == nil && pr > 0 {
			d.Price, d.Currency = pr, ai.Currency
		}
	}
	return []gateway.DeliveryReport{d}, nil
}

// reportStatus maps TeleSign's callback codes: 200 (and a voice call's 100 answered) delivered;
// 203 delivered to the gateway and 290-295 queued: sent; the handset-side final failures and a
// voice call not answered, busy or blocked: undelivered; carrier and account errors: failed.
func reportStatus(code int) string {
	switch {
	case code == 200 || code == 100:
		return gateway.StatusDelivered
	case code == 101 || code == 104 || code == 106 || code == 107 || code == 130 || (code >= 207 && code <= 251):
		return gateway.StatusUndelivered
	case code >= 500 && code <= 521, code >= 10000:
		return gateway.StatusFailed
	}
	return gateway.StatusSent // 203, a call's 103, 290-295 queued, and codes TeleSign adds
}
