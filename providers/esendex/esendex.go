// Package esendex is the Esendex (api.esendex.com, UK/EU) driver: SMS and voice through the
// message dispatcher (POST /v1.0/messagedispatcher, XML, HTTP Basic), errors by HTTP status with
// XML or plain-text bodies, and push notifications (MessageDelivered, MessageFailed) that Esendex
// posts as XML and does not sign, so a secret authenticates them.
package esendex

import (
	"context"
	"encoding/xml"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
)

// Provider is the Esendex driver.
type Provider struct {
	cfg  Config
	kit  *kit.Client
	base string
	// asks: the gateway has a public URL and a webhook secret, so the notifications the Esendex
	// portal posts there can be taken.
	asks bool
}

// New returns a driver; cfg must have passed Validate.
func New(cfg Config, deps gateway.Deps) *Provider {
	return &Provider{cfg: cfg, kit: kit.New(deps, kit.Reveal(cfg.PreviousWebhookSecrets, cfg.Password, cfg.WebhookSecret)...), base: strings.TrimRight(cfg.BaseURL, "/"),
		asks: deps.CallbackURL != "" && cfg.WebhookSecret != ""}
}

// VoiceLanguages are the languages Esendex speaks.
var VoiceLanguages = []string{"en-GB", "en-AU", "fr-FR", "es-ES", "de-DE"}

// primaries maps a primary subtag to Esendex's language for it.
var primaries = map[string]string{"en": "en-GB", "fr": "fr-FR", "es": "es-ES", "de": "de-DE"}

// Capabilities implements gateway.Provider: SMS, and voice only in the languages Esendex speaks
// (a voice request in another language skips it instead of failing).
func (p *Provider) Capabilities() gateway.Capabilities {
	if p.cfg.Voice != nil && !*p.cfg.Voice {
		return gateway.SMSOnly
	}
	langs := append(slices.Clone(VoiceLanguages), "en", "fr", "es", "de") // any English, French, Spanish, German
	return gateway.Capabilities{Types: []gateway.MessageType{gateway.SMS, gateway.Voice}, VoiceLanguages: langs}
}

// AsksReports implements gateway.ReportReceiver: Esendex has no per-message callback; the
// portal's push notifications can be taken with a public URL and a webhook secret.
func (p *Provider) AsksReports() bool { return p.asks }

// ReportReceiver is checked at compile time: the gateway finds report receivers by assertion.
var _ gateway.ReportReceiver = (*Provider)(nil)

// Webhook implements gateway.ReportReceiver.
func (p *Provider) Webhook() gateway.Webhook {
	return gateway.Webhook{Methods: []string{http.MethodPost}, ContentTypes: []string{"text/xml", "application/xml"},
		Auth: "webhook_secret as ?secret= in the URL set in the Esendex portal, or as its basic-auth password (Esendex signs nothing)"}
}

// Language returns Esendex's language for a request's language tag, "" when it speaks none.
func Language(tag string) string {
	tag = strings.ReplaceAll(tag, "_", "-")
	for _, l := range VoiceLanguages {
		if strings.EqualFold(l, tag) {
			return l
		}
	}
	primary, _, _ := strings.Cut(tag, "-")
	return primaries[strings.ToLower(primary)]
}

type message struct {
	To   string `xml:"to"`
	Body string `xml:"body"`
}

type messages struct {
	XMLName          xml.Name `xml:"messages"`
	AccountReference string   `xml:"accountreference"`
	From             string   `xml:"from,omitempty"`
	Type             string   `xml:"type"`
	Lang             string   `xml:"lang,omitempty"`
	CharacterSet     string   `xml:"characterset"`
	Message          message  `xml:"message"`
}

// Send implements gateway.Provider.
func (p *Provider) Send(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	m := messages{AccountReference: p.cfg.AccountReference, From: kit.Sender(msg, p.cfg.Senders, p.cfg.From), Type: "SMS", CharacterSet: "Auto",
		Message: message{To: strings.TrimPrefix(msg.To, "+"), Body: msg.Text}}
	if msg.Type == gateway.Voice {
		m.Type, m.Lang = "Voice", Language(msg.Language)
		if code := gateway.ExtractCode(msg.Text, msg.Code); code != "" {
			d := gateway.SpokenDigits(code)
			m.Message.Body = d + ". " + d + "."
		}
	}
	b, _ := xml.Marshal(m)
	req, err := kit.Post(p.base+"/v1.0/messagedispatcher", "application/xml", "application/xml", append([]byte(xml.Header), b...))
	if err != nil {
		return gateway.Result{}, err
	}
	req.SetBasicAuth(p.cfg.Username, p.cfg.Password.Reveal())
	res, err := p.kit.Exchange(ctx, req, p.classify)
	if err != nil {
		return gateway.Result{}, err
	}
	var h struct {
		BatchID string `xml:"batchid,attr"`
		Headers []struct {
			ID string `xml:"id,attr"`
		} `xml:"messageheader"`
	}
	if xml.Unmarshal(res.Body, &h) != nil || len(h.Headers) == 0 || h.Headers[0].ID == "" {
		return gateway.Result{}, p.kit.NoID(res)
	}
	return gateway.Result{ProviderMessageID: h.Headers[0].ID, Status: "submitted"}, nil
}

// classify maps Esendex's statuses: 402 (no credits), 401 and 403 (authentication, feature not
// enabled) are the provider's; a 400 whose text names the recipient is the recipient's, any other
// 400 the provider's. Bodies are XML (<errors><error><description>) or plain text.
func (p *Provider) classify(res *kit.Response) *gateway.Error {
	text := strings.TrimSpace(string(res.Body))
	var x struct {
		Errors []struct {
			Code        string `xml:"code"`
			Description string `xml:"description"`
		} `xml:"error"`
	}
	if xml.Unmarshal(res.Body, &x) == nil && len(x.Errors) > 0 {
		text = x.Errors[0].Description
		if x.Errors[0].Code != "" {
			text = x.Errors[0].Code + ": " + text
		}
	}
	switch res.Status {
	case http.StatusPaymentRequired:
		return p.kit.Fail(res, gateway.ClassProvider, "ESENDEX_NO_CREDITS", "not enough message credits")
	case http.StatusUnauthorized, http.StatusForbidden:
		return p.kit.Fail(res, gateway.ClassProvider, "ESENDEX_AUTH", "authentication failed or feature not enabled: "+text)
	case http.StatusBadRequest:
		l := strings.ToLower(text)
		if strings.Contains(l, "recipient") || strings.Contains(l, "<to>") || strings.Contains(l, "phone number") || strings.Contains(l, "invalid to") {
			return p.kit.Fail(res, gateway.ClassRecipient, "ESENDEX_RECIPIENT", text)
		}
		return p.kit.Fail(res, gateway.ClassProvider, "ESENDEX_BAD_REQUEST", text)
	}
	return nil
}

type notification struct {
	XMLName    xml.Name
	MessageID  string `xml:"MessageId"`
	OccurredAt string `xml:"OccurredAt"`
}

// ParseReports implements gateway.ReportReceiver: MessageDelivered and MessageFailed pushes.
// Other notifications (MessageReceived, opt-outs) are accepted and ignored, so Esendex does not
// retry them for 72 hours.
func (p *Provider) ParseReports(r *http.Request, body []byte, _ string) ([]gateway.DeliveryReport, error) {
	if !kit.SecretMatches(kit.RequestSecret(r), p.cfg.WebhookSecret, p.cfg.PreviousWebhookSecrets...) {
		return nil, gateway.ErrUnauthenticated
	}
	var n notification
	if err := xml.Unmarshal(body, &n); err != nil {
		return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "body is not an Esendex notification"}
	}
	d := gateway.DeliveryReport{ProviderMessageID: n.MessageID, ProviderStatus: n.XMLName.Local}
	switch n.XMLName.Local {
	case "MessageDelivered":
		d.Status = gateway.StatusDelivered
	case "MessageFailed":
		d.Status, d.Error = gateway.StatusFailed, "MessageFailed"
	default:
		return nil, nil
	}
	if d.ProviderMessageID == "" {
		return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "no MessageId"}
	}
	if t, err := time.Parse("2006-01-02T15:04:05", strings.TrimSuffix(strings.TrimSpace(n.OccurredAt), " UTC")); err == nil {
		d.DoneAt = t.UTC()
	}
	return []gateway.DeliveryReport{d}, nil
}
