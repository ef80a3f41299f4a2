// Package infobip is the Infobip driver: SMS through POST /sms/3/messages (or /sms/2/text/advanced),
// voice through the text-to-speech API POST /tts/3/advanced, exact error classification (a 200
// whose status group is REJECTED or UNDELIVERABLE is not a success), and delivery reports
// (v2 and v3 bodies) authenticated by a per-provider secret.
package infobip

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
)

// Provider is the Infobip driver.
type Provider struct {
	cfg      Config
	kit      *kit.Client
	base     string
	callback string
}

// New returns a driver; cfg must have passed Validate.
func New(cfg Config, deps gateway.Deps) *Provider {
	p := &Provider{cfg: cfg, kit: kit.New(deps, kit.Reveal(cfg.PreviousWebhookSecrets, cfg.APIKey, cfg.WebhookSecret)...), base: strings.TrimRight(cfg.BaseURL, "/")}
	// Infobip signs nothing: the webhook secret rides in the callback URL (see docs/security.md
	// for basic auth instead). Without a secret no callback is requested, as reports would be refused.
	p.callback = kit.SecretURL(deps.CallbackURL, cfg.WebhookSecret)
	return p
}

// Capabilities implements gateway.Provider: SMS and text-to-speech voice, everywhere.
func (p *Provider) Capabilities() gateway.Capabilities { return gateway.SMSAndVoice }

// AsksReports implements gateway.ReportReceiver: a callback URL goes with each message.
func (p *Provider) AsksReports() bool { return p.callback != "" }

// ReportReceiver is checked at compile time: the gateway finds report receivers by assertion.
var _ gateway.ReportReceiver = (*Provider)(nil)

// Webhook implements gateway.ReportReceiver.
func (p *Provider) Webhook() gateway.Webhook {
	return gateway.Webhook{Methods: []string{http.MethodPost}, ContentTypes: []string{"application/json"},
		Auth: "webhook_secret as ?secret= in the callback URL, or as the HTTP basic auth password"}
}

// Wire types, as the OpenAPI spec names the fields.
type destination struct {
	To        string `json:"to"`
	MessageID string `json:"messageId,omitempty"`
}

type v3Message struct {
	Sender       string        `json:"sender,omitempty"`
	Destinations []destination `json:"destinations"`
	Content      struct {
		Text string `json:"text"`
	} `json:"content"`
	Webhooks *v3Webhooks `json:"webhooks,omitempty"`
}

type v3Webhooks struct {
	Delivery struct {
		URL string `json:"url"`
	} `json:"delivery"`
	ContentType string `json:"contentType"`
}

type v2Message struct {
	From              string        `json:"from,omitempty"`
	Destinations      []destination `json:"destinations"`
	Text              string        `json:"text"`
	NotifyURL         string        `json:"notifyUrl,omitempty"`
	NotifyContentType string        `json:"notifyContentType,omitempty"`
}

type ttsMessage struct {
	From              string        `json:"from,omitempty"`
	Destinations      []destination `json:"destinations"`
	Text              string        `json:"text"`
	Language          string        `json:"language,omitempty"`
	Voice             *ttsVoice     `json:"voice,omitempty"`
	NotifyURL         string        `json:"notifyUrl,omitempty"`
	NotifyContentType string        `json:"notifyContentType,omitempty"`
}

type ttsVoice struct {
	Name string `json:"name"`
}

type status struct {
	GroupID     int    `json:"groupId"`
	GroupName   string `json:"groupName"`
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
}

type sendResponse struct {
	BulkID   string `json:"bulkId"`
	Messages []struct {
		MessageID string `json:"messageId"`
		Status    status `json:"status"`
	} `json:"messages"`
}

// Send implements gateway.Provider.
func (p *Provider) Send(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	to := strings.TrimPrefix(msg.To, "+")
	dest := []destination{{To: to, MessageID: msg.ID}}
	cb := p.callback
	var path string
	var body any
	switch {
	case msg.Type == gateway.Voice:
		m := ttsMessage{From: p.cfg.Voice.From, Destinations: dest, Text: speech(msg), Language: p.cfg.Voice.Language}
		if lang := primaryLanguage(msg.Language); lang != "" && lang != p.cfg.Voice.Language {
			m.Language = lang
		} else if p.cfg.Voice.VoiceName != "" {
			m.Voice = &ttsVoice{Name: p.cfg.Voice.VoiceName}
		}
		if cb != "" {
			m.NotifyURL, m.NotifyContentType = cb, "application/json"
		}
		path, body = "/tts/3/advanced", map[string]any{"messages": []ttsMessage{m}}
	case p.cfg.API == "v2":
		m := v2Message{From: kit.Sender(msg, p.cfg.Senders, p.cfg.Sender), Destinations: dest, Text: msg.Text}
		if cb != "" {
			m.NotifyURL, m.NotifyContentType = cb, "application/json"
		}
		path, body = "/sms/2/text/advanced", map[string]any{"messages": []v2Message{m}}
	default:
		m := v3Message{Sender: kit.Sender(msg, p.cfg.Senders, p.cfg.Sender), Destinations: dest}
		m.Content.Text = msg.Text
		if cb != "" {
			m.Webhooks = &v3Webhooks{ContentType: "application/json"}
			m.Webhooks.Delivery.URL = cb
		}
		path, body = "/sms/3/messages", map[string]any{"messages": []v3Message{m}}
	}
	return p.post(ctx, path, body)
}

// speech is what the call says: the code digit by digit, twice, or the text when no code is known.
func speech(msg *gateway.Message) string {
	code := gateway.ExtractCode(msg.Text, msg.Code)
	if code == "" {
		return msg.Text
	}
	d := gateway.SpokenDigits(code)
	return "Your code is " + d + ". Again, your code is " + d + "."
}

func primaryLanguage(tag string) string {
	tag = strings.ToLower(strings.ReplaceAll(tag, "_", "-"))
	p, _, _ := strings.Cut(tag, "-")
	return p
}

func (p *Provider) post(ctx context.Context, path string, body any) (gateway.Result, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "ENCODE", Message: "request could not be encoded"}
	}
	req, err := kit.Post(p.base+path, "application/json", "application/json", b)
	if err != nil {
		return gateway.Result{}, err
	}
	req.Header.Set("Authorization", "App "+p.cfg.APIKey.Reveal())
	res, err := p.kit.Exchange(ctx, req, p.classifyHTTP)
	if err != nil {
		return gateway.Result{}, err
	}
	var sr sendResponse
	if err := json.Unmarshal(res.Body, &sr); err != nil || len(sr.Messages) == 0 || sr.Messages[0].MessageID == "" && classifyStatus(sr.Messages[0].Status) == nil {
		return gateway.Result{}, p.kit.NoID(res)
	}
	m := sr.Messages[0]
	if err := classifyStatus(m.Status); err != nil {
		err.HTTPStatus = res.Status
		return gateway.Result{}, err
	}
	return gateway.Result{ProviderMessageID: m.MessageID, Status: m.Status.Name}, nil
}

// recipientStatuses are per-message rejections caused by the destination (or the message itself):
// another provider would fail the same way, so the chain stops and the breaker counts a success.
var recipientStatuses = map[string]bool{
	"REJECTED_DESTINATION":             true,
	"REJECTED_PREFIX_MISSING":          true,
	"MISSING_TO":                       true,
	"REJECTED_DND":                     true,
	"REJECTED_DESTINATION_BLOCKLISTED": true,
	"REJECTED_DESTINATION_BLACKLISTED": true,
	"REJECTED_MESSAGE_TOO_LONG":        true,
	"REJECTED_INVALID_UDH":             true,
}

// destinationStatuses concern only this provider with this destination or sender: Infobip has no
// route to the network, the sender is not allowed there, or the destination needs a registration
// this account lacks. Another provider may well reach the number: fail over, without counting
// against the breaker and without a 422.
var destinationStatuses = map[string]bool{
	"REJECTED_NETWORK":                    true,
	"REJECTED_ROUTE_NOT_AVAILABLE":        true,
	"REJECTED_SENDER":                     true,
	"REJECTED_SOURCE":                     true,
	"REJECTED_DESTINATION_NOT_REGISTERED": true,
}

// statusNames names status ids, for bodies that carry only the id.
var statusNames = map[int]string{
	6: "REJECTED_NETWORK", 8: "REJECTED_PREFIX_MISSING", 10: "REJECTED_DND", 11: "REJECTED_SOURCE",
	12: "REJECTED_NOT_ENOUGH_CREDITS", 13: "REJECTED_SENDER", 14: "REJECTED_DESTINATION_BLOCKLISTED",
	17: "REJECTED_PREPAID_PACKAGE_EXPIRED", 18: "REJECTED_DESTINATION_NOT_REGISTERED", 19: "REJECTED_ROUTE_NOT_AVAILABLE",
	20: "REJECTED_FLOODING_FILTER", 21: "REJECTED_SYSTEM_ERROR", 23: "REJECTED_DUPLICATE_MESSAGE_ID",
	24: "REJECTED_INVALID_UDH", 25: "REJECTED_MESSAGE_TOO_LONG", 51: "MISSING_TO", 52: "REJECTED_DESTINATION",
}

// classifyStatus returns nil for an accepted message (groups PENDING, ACCEPTED, DELIVERED) and a
// classified error otherwise. Unknown groups with an unknown name are provider errors.
func classifyStatus(s status) *gateway.Error {
	group := strings.ToUpper(s.GroupName)
	switch group {
	case "PENDING", "ACCEPTED", "DELIVERED":
		return nil
	case "":
		if (s.GroupID == 0 || s.GroupID == 1 || s.GroupID == 3) && statusNames[s.ID] == "" && !strings.HasPrefix(strings.ToUpper(s.Name), "REJECTED") {
			return nil
		}
	}
	name := strings.ToUpper(s.Name)
	if name == "" {
		name = statusNames[s.ID]
	}
	if name == "" {
		name = fmt.Sprintf("%s_%d", group, s.ID)
	}
	class := gateway.ClassProvider
	switch {
	case recipientStatuses[name] || strings.Contains(name, "BLOCKLIST") || strings.Contains(name, "BLACKLIST") || strings.HasSuffix(name, "_DND"):
		class = gateway.ClassRecipient
	case destinationStatuses[name]:
		class = gateway.ClassDestination
	}
	return &gateway.Error{Class: class, Code: name, Message: "message status " + group + "/" + name}
}

// errorBody is the union of Infobip's two error shapes.
type errorBody struct {
	// ApiError (v3).
	ErrorCode   string `json:"errorCode"`
	Description string `json:"description"`
	Violations  []struct {
		Property  string `json:"property"`
		Violation string `json:"violation"`
	} `json:"violations"`
	// ApiException (v2, TTS).
	RequestError *struct {
		ServiceException *struct {
			MessageID        string              `json:"messageId"`
			Text             string              `json:"text"`
			ValidationErrors map[string][]string `json:"validationErrors"`
		} `json:"serviceException"`
	} `json:"requestError"`
}

// classifyHTTP maps Infobip's two error shapes (the kit has already taken 5xx and 429 as
// provider errors); a body that is neither shape returns nil and is classified by status.
func (p *Provider) classifyHTTP(res *kit.Response) *gateway.Error {
	var b errorBody
	fields := []string{}
	if json.Unmarshal(res.Body, &b) != nil {
		return nil
	}
	var e *gateway.Error
	switch {
	case b.ErrorCode != "":
		e = p.kit.Fail(res, gateway.ClassProvider, b.ErrorCode, b.Description)
		for _, v := range b.Violations {
			fields = append(fields, v.Property)
		}
	case b.RequestError != nil && b.RequestError.ServiceException != nil:
		se := b.RequestError.ServiceException
		e = p.kit.Fail(res, gateway.ClassProvider, se.MessageID, se.Text)
		for f := range se.ValidationErrors {
			fields = append(fields, f)
		}
	default:
		return nil
	}
	// A 400 that complains only about the destination is the recipient's problem; any other 4xx
	// (auth, scopes, throttling, our request) and every 5xx is the provider's: fail over.
	if res.Status == http.StatusBadRequest && len(fields) > 0 {
		onlyDest := true
		for _, f := range fields {
			f = strings.ToLower(f)
			if !strings.HasSuffix(f, ".to") && f != "to" && !strings.Contains(f, "destinations") {
				onlyDest = false
			}
		}
		if onlyDest {
			e.Class = gateway.ClassRecipient
		}
	}
	return e
}

// report is one delivery report, v2 or v3 (SMS) or voice.
type report struct {
	BulkID    string `json:"bulkId"`
	MessageID string `json:"messageId"`
	SentAt    string `json:"sentAt"`
	DoneAt    string `json:"doneAt"`
	Status    status `json:"status"`
	Error     *struct {
		GroupName string `json:"groupName"`
		ID        int    `json:"id"`
		Name      string `json:"name"`
		Permanent bool   `json:"permanent"`
	} `json:"error"`
	Price *struct {
		PerMessage *float64 `json:"pricePerMessage"`
		PerSecond  *float64 `json:"pricePerSecond"`
		Currency   string   `json:"currency"`
	} `json:"price"`
	// SMSCount (v2) and MessageCount (v3) are how many parts an SMS was sent as: its price is
	// per part.
	SMSCount     int `json:"smsCount"`
	MessageCount int `json:"messageCount"`
	// A voice price is per second of the call: voiceCall.chargedDuration, else its duration
	// (an older report's is at the top level).
	Duration  *float64 `json:"duration"`
	VoiceCall *struct {
		Duration        *float64 `json:"duration"`
		ChargedDuration *float64 `json:"chargedDuration"`
	} `json:"voiceCall"`
}

// cost is what the message cost as the report says: the price per part times the parts of an
// SMS, the price per second times the seconds charged for a call; 0 (unpriced) when the report
// says neither, or when the product is no price (negative, or past what a float holds).
func (r *report) cost() float64 {
	var v float64
	switch {
	case r.Price == nil:
		return 0
	case r.Price.PerMessage != nil:
		v = *r.Price.PerMessage * float64(max(1, r.SMSCount, r.MessageCount))
	case r.Price.PerSecond != nil:
		secs := r.Duration
		if r.VoiceCall != nil && r.VoiceCall.ChargedDuration != nil {
			secs = r.VoiceCall.ChargedDuration
		} else if r.VoiceCall != nil && r.VoiceCall.Duration != nil {
			secs = r.VoiceCall.Duration
		}
		if secs == nil {
			return 0 // a rate without the seconds it applies to is not what the call cost
		}
		v = *r.Price.PerSecond * *secs
	}
	if !(v > 0) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// TimeLayout is Infobip's timestamp layout (not RFC 3339).
const TimeLayout = "2006-01-02T15:04:05.000-0700"

// ParseTime reads a time as Infobip writes it (TimeLayout), or RFC 3339; in UTC.
func ParseTime(s string) (time.Time, error) {
	for _, l := range []string{TimeLayout, time.RFC3339Nano} {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an Infobip time such as 2026-11-30T12:00:00.000+0000", s)
}

// parseTime is ParseTime, zero when s is not a time (a report without one).
func parseTime(s string) time.Time {
	t, _ := ParseTime(s)
	return t
}

// ParseReports implements gateway.ReportReceiver. The request must carry the webhook secret as
// ?secret=... (as smsgate's callback URLs do) or as the password of HTTP basic auth.
func (p *Provider) ParseReports(r *http.Request, body []byte, _ string) ([]gateway.DeliveryReport, error) {
	if !kit.SecretMatches(kit.RequestSecret(r), p.cfg.WebhookSecret, p.cfg.PreviousWebhookSecrets...) {
		return nil, gateway.ErrUnauthenticated
	}
	var env struct {
		Results []report `json:"results"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "body is not an Infobip delivery report"}
	}
	out := make([]gateway.DeliveryReport, 0, len(env.Results))
	for _, res := range env.Results {
		if res.MessageID == "" {
			continue
		}
		d := gateway.DeliveryReport{ProviderMessageID: res.MessageID, MessageID: res.MessageID, ProviderStatus: res.Status.Name,
			SentAt: parseTime(res.SentAt), DoneAt: parseTime(res.DoneAt)}
		d.Status = reportStatus(res.Status)
		if res.Error != nil && res.Error.ID != 0 && !strings.EqualFold(res.Error.GroupName, "OK") {
			d.Error = res.Error.Name
		}
		if d.Price = res.cost(); d.Price > 0 {
			d.Currency = res.Price.Currency
		}
		out = append(out, d)
	}
	return out, nil
}

// reportStatus maps an Infobip status to the message log's: DELIVERED_TO_HANDSET is delivered,
// PENDING and DELIVERED_TO_OPERATOR (a later report follows) are sent, UNDELIVERABLE and EXPIRED
// are undelivered, REJECTED is failed. Unknown groups keep the record as sent.
func reportStatus(s status) string {
	switch strings.ToUpper(s.GroupName) {
	case "DELIVERED":
		if strings.EqualFold(s.Name, "DELIVERED_TO_OPERATOR") || s.ID == 2 {
			return gateway.StatusSent
		}
		return gateway.StatusDelivered
	case "UNDELIVERABLE", "EXPIRED":
		return gateway.StatusUndelivered
	case "REJECTED":
		return gateway.StatusFailed
	}
	return gateway.StatusSent
}
