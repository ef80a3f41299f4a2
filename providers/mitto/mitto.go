// Package mitto is the Mitto driver: SMS through POST /sms (JSON, X-Mitto-API-Key), errors
// classified from responseCode in every answer (a 200 included), and delivery reports that Mitto
// sends by GET or POST as query parameters, authenticated by a secret in the callback URL (Mitto
// signs nothing). Mitto has no public voice API: the driver declares SMS only.
package mitto

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
)

// Provider is the Mitto driver.
type Provider struct {
	cfg      Config
	kit      *kit.Client
	base     string
	callback string
}

// New returns a driver; cfg must have passed Validate.
func New(cfg Config, deps gateway.Deps) *Provider {
	p := &Provider{cfg: cfg, kit: kit.New(deps, kit.Reveal(cfg.PreviousWebhookSecrets, cfg.APIKey, cfg.WebhookSecret)...), base: strings.TrimRight(cfg.BaseURL, "/")}
	p.callback = kit.SecretURL(deps.CallbackURL, cfg.WebhookSecret)
	return p
}

// Capabilities implements gateway.Provider: SMS only (Mitto publishes no voice API).
func (p *Provider) Capabilities() gateway.Capabilities { return gateway.SMSOnly }

// AsksReports implements gateway.ReportReceiver: a callback URL goes with each message.
func (p *Provider) AsksReports() bool { return p.callback != "" }

// ReportReceiver is checked at compile time: the gateway finds report receivers by assertion.
var _ gateway.ReportReceiver = (*Provider)(nil)

// Webhook implements gateway.ReportReceiver.
func (p *Provider) Webhook() gateway.Webhook {
	return gateway.Webhook{Methods: []string{http.MethodGet, http.MethodPost},
		Auth: "webhook_secret as ?secret= in the callback URL (Mitto signs nothing)"}
}

type sendBody struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Text      string `json:"text"`
	Type      string `json:"type"`
	Reference string `json:"reference,omitempty"`
	Callback  string `json:"callback,omitempty"`
}

type answer struct {
	ID           string `json:"id"`
	ResponseCode *int   `json:"responseCode"`
	ResponseText string `json:"responseText"`
}

// recipientCodes are responseCodes about the receiver; every other non-zero code is a provider
// error (internal error, type, text, sender: the account's or our request's problem).
var recipientCodes = map[int]string{7: "empty receiver", 8: "invalid receiver"}

// Send implements gateway.Provider.
func (p *Provider) Send(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	from := kit.Sender(msg, p.cfg.Senders, p.cfg.From)
	b, _ := json.Marshal(sendBody{From: from, To: strings.TrimPrefix(msg.To, "+"), Text: msg.Text, Type: "Auto", Reference: msg.ID, Callback: p.callback})
	req, err := kit.Post(p.base+"/sms", "application/json", "application/json", b)
	if err != nil {
		return gateway.Result{}, err
	}
	req.Header.Set("X-Mitto-API-Key", p.cfg.APIKey.Reveal())
	res, err := p.kit.Exchange(ctx, req, p.classify)
	if err != nil {
		return gateway.Result{}, err
	}
	// An error may come inside a 200: always read responseCode.
	if e := p.classify(res); e != nil {
		return gateway.Result{}, e
	}
	var a answer
	if json.Unmarshal(res.Body, &a) != nil || a.ID == "" || a.ResponseCode == nil {
		return gateway.Result{}, p.kit.NoID(res)
	}
	return gateway.Result{ProviderMessageID: a.ID, Status: "SENT"}, nil
}

// classify reads responseCode: nil for 0 (or no code at all), else the class of the code.
func (p *Provider) classify(res *kit.Response) *gateway.Error {
	var a answer
	if json.Unmarshal(res.Body, &a) != nil || a.ResponseCode == nil || *a.ResponseCode == 0 {
		return nil
	}
	code := *a.ResponseCode
	class := gateway.ClassProvider
	text := a.ResponseText
	if d, ok := recipientCodes[code]; ok {
		class = gateway.ClassRecipient
		if text == "" {
			text = d
		}
	}
	return p.kit.Fail(res, class, "MITTO_"+strconv.Itoa(code), text)
}

// ParseReports implements gateway.ReportReceiver. Mitto calls with query parameters (GET, or
// POST with the same parameters in the query or a form body); the secret is ?secret=.
func (p *Provider) ParseReports(r *http.Request, body []byte, _ string) ([]gateway.DeliveryReport, error) {
	q := r.URL.Query()
	if !kit.SecretMatches(q.Get("secret"), p.cfg.WebhookSecret, p.cfg.PreviousWebhookSecrets...) {
		return nil, gateway.ErrUnauthenticated
	}
	if r.Method == http.MethodPost {
		if form, err := url.ParseQuery(string(body)); err == nil {
			for k, v := range form {
				if q.Get(k) == "" {
					q[k] = v
				}
			}
		}
	}
	get := func(names ...string) string {
		for _, n := range names {
			if v := q.Get(n); v != "" {
				return v
			}
		}
		return ""
	}
	d := gateway.DeliveryReport{ProviderMessageID: get("id", "msgid", "messageId"), MessageID: get("reference", "ref"),
		ProviderStatus: strings.ToUpper(get("status")), Error: get("errorcode", "errorCode", "error")}
	if d.ProviderMessageID == "" && d.MessageID == "" {
		return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "no id or reference"}
	}
	if d.Error == "0" {
		d.Error = ""
	}
	d.Status = reportStatus(d.ProviderStatus)
	return []gateway.DeliveryReport{d}, nil
}

// reportStatus maps Mitto's statuses: DELIVERED; UNDELIVERED and EXPIRED are undelivered; FAILED
// failed; BUFFERED, SENT and anything new keep the message sent.
func reportStatus(s string) string {
	switch s {
	case "DELIVERED":
		return gateway.StatusDelivered
	case "UNDELIVERED", "EXPIRED":
		return gateway.StatusUndelivered
	case "FAILED":
		return gateway.StatusFailed
	}
	return gateway.StatusSent
}
