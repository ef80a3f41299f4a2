// Package twilio is the Twilio driver: SMS through POST /2010-04-01/Accounts/{sid}/Messages.json
// (form-encoded, HTTP basic auth), voice through Calls.json with TwiML that says the code digit by
// digit twice, errors classified by Twilio code, and status callbacks verified by X-Twilio-Signature.
package twilio

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
)

// Provider is the Twilio driver.
type Provider struct {
	cfg      Config
	kit      *kit.Client
	base     string
	callback string
}

// New returns a driver; cfg must have passed Validate.
func New(cfg Config, deps gateway.Deps) *Provider {
	return &Provider{cfg: cfg, kit: kit.New(deps, kit.Reveal(cfg.PreviousAuthTokens, cfg.AuthToken)...), callback: deps.CallbackURL,
		base: strings.TrimRight(cfg.BaseURL, "/") + "/2010-04-01/Accounts/" + url.PathEscape(cfg.AccountSID)}
}

// Capabilities implements gateway.Provider: SMS always; voice only with a number to call from
// (from or voice_from: a messaging service alone cannot place calls).
func (p *Provider) Capabilities() gateway.Capabilities {
	if p.cfg.VoiceFrom == "" {
		return gateway.SMSOnly
	}
	return gateway.SMSAndVoice
}

// AsksReports implements gateway.ReportReceiver: a callback URL goes with each message.
func (p *Provider) AsksReports() bool { return p.callback != "" }

// ReportReceiver is checked at compile time: the gateway finds report receivers by assertion.
var _ gateway.ReportReceiver = (*Provider)(nil)

// Webhook implements gateway.ReportReceiver.
func (p *Provider) Webhook() gateway.Webhook {
	return gateway.Webhook{Methods: []string{http.MethodPost}, ContentTypes: []string{"application/x-www-form-urlencoded"},
		Auth: "X-Twilio-Signature (HMAC-SHA1 with the auth token over server.public_url and the form)"}
}

// Send implements gateway.Provider.
func (p *Provider) Send(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	f := url.Values{}
	f.Set("To", msg.To)
	if p.callback != "" {
		f.Set("StatusCallback", p.callback)
	}
	path := "/Messages.json"
	if msg.Type == gateway.Voice {
		path = "/Calls.json"
		f.Set("From", p.cfg.VoiceFrom)
		f.Set("Twiml", TwiML(msg))
	} else {
		// msg.From is the request's sender, set only when its tenant may choose one. With a
		// messaging service it names a sender of the service's pool ("a specific Sender from the
		// Sender Pool", in Twilio's words); without one, Twilio picks from the pool.
		switch {
		case p.cfg.MessagingServiceSID != "":
			f.Set("MessagingServiceSid", p.cfg.MessagingServiceSID)
			if msg.From != "" {
				f.Set("From", msg.From)
			}
		case msg.From != "":
			f.Set("From", msg.From)
		default:
			f.Set("From", p.cfg.From)
		}
		f.Set("Body", msg.Text)
	}
	req, err := kit.Post(p.base+path, "application/x-www-form-urlencoded", "application/json", []byte(f.Encode()))
	if err != nil {
		return gateway.Result{}, err
	}
	req.SetBasicAuth(p.cfg.AccountSID, p.cfg.AuthToken.Reveal())
	res, err := p.kit.Exchange(ctx, req, p.classifyHTTP)
	if err != nil {
		return gateway.Result{}, err
	}
	var ok struct {
		SID    string `json:"sid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(res.Body, &ok); err != nil || ok.SID == "" {
		return gateway.Result{}, p.kit.NoID(res)
	}
	return gateway.Result{ProviderMessageID: ok.SID, Status: ok.Status}, nil
}

// classifyHTTP maps Twilio's {code, message, more_info, status} by its code table; a body
// without a code returns nil (classified by status).
func (p *Provider) classifyHTTP(res *kit.Response) *gateway.Error {
	var b struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(res.Body, &b) != nil || b.Code == 0 {
		return nil
	}
	class, desc := classify(b.Code)
	if desc == "" {
		desc = b.Message
	}
	return p.kit.Fail(res, class, strconv.Itoa(b.Code), desc)
}

// sayLanguages maps a language's primary subtag to a Twilio <Say> language.
var sayLanguages = map[string]string{"en": "en-US", "de": "de-DE", "fr": "fr-FR", "es": "es-ES", "it": "it-IT", "pt": "pt-BR", "nl": "nl-NL"}

// sayRegions are full tags Twilio's <Say> speaks as given.
var sayRegions = map[string]string{"en-US": "en-US", "en-GB": "en-GB", "en-AU": "en-AU", "en-IN": "en-IN", "es-MX": "es-MX", "es-US": "es-US",
	"fr-CA": "fr-CA", "pt-PT": "pt-PT", "de-DE": "de-DE", "fr-FR": "fr-FR", "es-ES": "es-ES", "it-IT": "it-IT", "pt-BR": "pt-BR", "nl-NL": "nl-NL"}

// TwiML is the call script: the code digit by digit, said twice with a pause between, in the
// request's language when Twilio speaks it (else English); without a code, the text said once
// (kit.Readings).
func TwiML(msg *gateway.Message) string {
	lang, say := kit.Voice(msg, sayLanguages, sayRegions)
	s := `<Say language="` + lang + `">` + html.EscapeString(say) + `</Say>`
	if kit.Readings(msg) == 1 {
		return `<Response>` + s + `</Response>`
	}
	return `<Response>` + s + `<Pause length="1"/>` + s + `</Response>`
}

// Signature computes X-Twilio-Signature for a form POST to fullURL: base64(HMAC-SHA1(token,
// URL + each key and value, keys sorted)).
func Signature(token, fullURL string, form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m := hmac.New(sha1.New, []byte(token))
	io.WriteString(m, fullURL)
	for _, k := range keys {
		for _, v := range form[k] {
			io.WriteString(m, k)
			io.WriteString(m, v)
		}
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// urlVariants are the URL as given and with the default port added or removed: Twilio signs the
// URL as it called it, and proxies differ on whether the port shows.
func urlVariants(raw string) []string {
	out := []string{raw}
	u, err := url.Parse(raw)
	if err != nil {
		return out
	}
	def := gateway.DefaultPort(u.Scheme)
	if def == "" {
		return out
	}
	v := *u
	if u.Port() == "" {
		v.Host = u.Host + ":" + def
	} else if u.Port() == def {
		v.Host = u.Hostname()
	} else {
		return out
	}
	return append(out, v.String())
}

// ParseReports implements gateway.ReportReceiver for message and call status callbacks. It
// verifies X-Twilio-Signature against publicURL (the URL Twilio called, built from
// server.public_url) in constant time, with the auth token or one of the previous ones.
func (p *Provider) ParseReports(r *http.Request, body []byte, publicURL string) ([]gateway.DeliveryReport, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "body is not form-encoded"}
	}
	got := []byte(r.Header.Get("X-Twilio-Signature"))
	valid := false
	for _, token := range slices.Concat([]gateway.Secret{p.cfg.AuthToken}, p.cfg.PreviousAuthTokens) {
		for _, u := range urlVariants(publicURL) {
			if token != "" && subtle.ConstantTimeCompare([]byte(Signature(token.Reveal(), u, form)), got) == 1 {
				valid = true
			}
		}
	}
	if !valid {
		return nil, gateway.ErrUnauthenticated
	}
	d := gateway.DeliveryReport{ProviderMessageID: form.Get("MessageSid"), ProviderStatus: form.Get("MessageStatus"), Error: form.Get("ErrorCode")}
	if d.ProviderMessageID == "" {
		d.ProviderMessageID, d.ProviderStatus = form.Get("CallSid"), form.Get("CallStatus")
	}
	if d.ProviderMessageID == "" {
		return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "no MessageSid or CallSid"}
	}
	if d.ProviderStatus == "" {
		d.ProviderStatus = form.Get("SmsStatus")
	}
	d.Status = reportStatus(d.ProviderStatus)
	return []gateway.DeliveryReport{d}, nil
}

// reportStatus maps Twilio message and call statuses to the message log's.
func reportStatus(s string) string {
	switch s {
	case "delivered", "read", "completed":
		return gateway.StatusDelivered
	case "undelivered", "busy", "no-answer":
		return gateway.StatusUndelivered
	case "failed", "canceled":
		return gateway.StatusFailed
	}
	return gateway.StatusSent // accepted, queued, sending, sent, ringing, in-progress, new values
}
