// Package infobipcompat speaks Infobip's API to callers, so that an integration written for
// Infobip (an Auth0 hook posting to /sms/2/text/advanced, an Infobip SDK, a script) gains
// smsgate's routing, failover, abuse protection and message log by changing its base URL and key.
// It parses Infobip's request shapes into one Destination per recipient and renders answers,
// errors, delivery reports and logs in Infobip's shapes. It does no I/O: gateway/app runs each
// destination through the same pipeline as /v1/send-phone-message.
package infobipcompat

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smsgate/smsgate/gateway"
)

// Kinds of request, also the message log's Source of what they send.
const (
	SMSv2 = "infobip-sms-v2" // POST /sms/2/text/advanced, GET /sms/1/text/query
	SMSv3 = "infobip-sms-v3" // POST /sms/3/messages, GET /sms/3/text/query
	TTS   = "infobip-tts"    // POST /tts/3/single, POST /tts/3/advanced
)

// MaxDestinations is the most destinations one request may carry: each is a full smsgate send
// (policy, routing, failover, a record), run one after another within the request's budget.
const MaxDestinations = 100

// Destination is one recipient of one message: one smsgate send.
type Destination struct {
	To, Text string
	// Voice is true for text-to-speech requests; Language is their language.
	Voice    bool
	Language string
	// From is the sender the caller asked for (honoured only where the tenant allows it).
	From string
	// Reference is the caller's messageId for this destination, BulkID the request's.
	Reference, BulkID string
	// NotifyURL and CallbackData come back with the delivery report.
	NotifyURL, CallbackData string
}

// Error is a request that cannot be read, in Infobip's terms.
type Error struct {
	Status int
	ID     string
	Text   string
}

func (e *Error) Error() string { return e.ID + ": " + e.Text }

func bad(text string) *Error { return &Error{Status: 400, ID: "BAD_REQUEST", Text: text} }

type dest struct {
	To        string `json:"to"`
	MessageID string `json:"messageId"`
}

type v2Message struct {
	From         string `json:"from"`
	Destinations []dest `json:"destinations"`
	Text         string `json:"text"`
	NotifyURL    string `json:"notifyUrl"`
	CallbackData string `json:"callbackData"`
	// Language is a string on TTS advanced ("en"), the language the text is spoken in; on SMS an
	// object, {"languageCode": "TR"}, the national language table to encode the text with,
	// which smsgate does not apply (see language).
	Language json.RawMessage `json:"language"`
}

// language is a v2 message's language as a request's: a string as it is; an object (SMS's
// national language table) as none, since it names an encoding, not the reader's language; on
// TTS anything but a string is refused.
func language(kind string, raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var table struct {
		LanguageCode string `json:"languageCode"`
	}
	if kind == TTS || json.Unmarshal(raw, &table) != nil {
		return "", bad("language is not of the expected shape")
	}
	return "", nil
}

type v3Message struct {
	Sender       string `json:"sender"`
	Destinations []dest `json:"destinations"`
	Content      struct {
		Text string `json:"text"`
	} `json:"content"`
	Webhooks *struct {
		Delivery *struct {
			URL string `json:"url"`
		} `json:"delivery"`
		CallbackData string `json:"callbackData"`
	} `json:"webhooks"`
}

// Parse reads a POST body of kind (SMSv2, SMSv3, or TTS with single true for /tts/3/single).
func Parse(kind string, single bool, body []byte) ([]Destination, error) {
	// encoding/json would send a text's bad bytes as U+FFFD; a body that is not UTF-8 is not
	// JSON (RFC 8259), and the Auth0 endpoint refuses it too.
	if !utf8.Valid(body) {
		return nil, bad("the body is not valid UTF-8")
	}
	var out []Destination
	switch {
	case kind == TTS && single:
		var r struct {
			Text     string          `json:"text"`
			Language string          `json:"language"`
			From     string          `json:"from"`
			To       json.RawMessage `json:"to"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, bad("the body is not a JSON object of the expected shape")
		}
		var tos []string
		var one string
		if json.Unmarshal(r.To, &one) == nil && one != "" {
			tos = []string{one}
		} else if err := json.Unmarshal(r.To, &tos); err != nil || len(tos) == 0 {
			return nil, bad("to is required")
		}
		for _, to := range tos {
			out = append(out, Destination{To: to, Text: r.Text, Voice: true, Language: r.Language, From: r.From})
		}
	case kind == SMSv3:
		// The bulk's id is options.schedule.bulkId in v3; a bulkId beside messages, as v2 has it,
		// is taken when that is absent (smsgate read only that one until the forty-eighth session).
		var r struct {
			BulkID   string      `json:"bulkId"`
			Messages []v3Message `json:"messages"`
			Options  struct {
				Schedule struct {
					BulkID string `json:"bulkId"`
				} `json:"schedule"`
			} `json:"options"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, bad("the body is not a JSON object of the expected shape")
		}
		bulk := cmp.Or(r.Options.Schedule.BulkID, r.BulkID)
		for _, m := range r.Messages {
			d := Destination{Text: m.Content.Text, From: m.Sender, BulkID: bulk}
			if m.Webhooks != nil {
				d.CallbackData = m.Webhooks.CallbackData
				if m.Webhooks.Delivery != nil {
					d.NotifyURL = m.Webhooks.Delivery.URL
				}
			}
			out = appendDests(out, d, m.Destinations)
		}
	default: // SMSv2, TTS advanced
		var r struct {
			BulkID   string      `json:"bulkId"`
			Messages []v2Message `json:"messages"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, bad("the body is not a JSON object of the expected shape")
		}
		for _, m := range r.Messages {
			lang, err := language(kind, m.Language)
			if err != nil {
				return nil, err
			}
			d := Destination{Text: m.Text, From: m.From, BulkID: r.BulkID, NotifyURL: m.NotifyURL, CallbackData: m.CallbackData,
				Voice: kind == TTS, Language: lang}
			out = appendDests(out, d, m.Destinations)
		}
	}
	return check(out)
}

func appendDests(out []Destination, d Destination, ds []dest) []Destination {
	for _, x := range ds {
		c := d
		c.To, c.Reference = x.To, x.MessageID
		out = append(out, c)
	}
	return out
}

func check(out []Destination) ([]Destination, error) {
	switch {
	case len(out) == 0:
		return nil, bad("at least one message with one destination is required")
	case len(out) > MaxDestinations:
		return nil, bad(fmt.Sprintf("at most %d destinations per request", MaxDestinations))
	}
	for _, d := range out {
		if strings.TrimSpace(d.Text) == "" {
			return nil, bad("the message text is required")
		}
		if strings.TrimSpace(d.To) == "" {
			return nil, bad("every destination needs a to")
		}
		// Infobip's own limits. Each destination becomes a record that keeps these fields, and
		// a push that carries them, so one request of 100 destinations must not multiply a long
		// value 100 times in the message log every tenant shares.
		callback := MaxCallbackData
		if d.Voice {
			callback = MaxVoiceCallbackData
		}
		switch {
		case len(d.CallbackData) > callback:
			return nil, bad(fmt.Sprintf("callbackData is longer than %d characters", callback))
		case len(d.Reference) > MaxMessageID:
			return nil, bad(fmt.Sprintf("messageId is longer than %d characters", MaxMessageID))
		case len(d.BulkID) > MaxBulkID:
			return nil, bad(fmt.Sprintf("bulkId is longer than %d characters", MaxBulkID))
		case len(d.NotifyURL) > MaxNotifyURL:
			return nil, bad(fmt.Sprintf("notifyUrl is longer than %d characters", MaxNotifyURL))
		}
	}
	return out, nil
}

// Limits of the fields a destination's record keeps: Infobip's SMS spec gives callbackData 4000
// characters, messageId 200 and bulkId 100, its voice spec callbackData 700; a notify URL is
// held to 2048 (they give none). Counted in bytes, which is stricter for non-ASCII.
const (
	MaxCallbackData      = 4000
	MaxVoiceCallbackData = 700
	MaxMessageID         = 200
	MaxBulkID            = 100
	MaxNotifyURL         = 2048
)

// ParseQuery reads GET /sms/{1,3}/text/query: from (or sender), to (comma-separated), text,
// bulkId, notifyUrl, callbackData.
func ParseQuery(q url.Values) ([]Destination, error) {
	from := q.Get("from")
	if from == "" {
		from = q.Get("sender")
	}
	var out []Destination
	for _, to := range strings.Split(strings.Join(q["to"], ","), ",") {
		if to = strings.TrimSpace(to); to != "" {
			out = append(out, Destination{To: to, Text: q.Get("text"), From: from, BulkID: q.Get("bulkId"),
				NotifyURL: q.Get("notifyUrl"), CallbackData: q.Get("callbackData")})
		}
	}
	return check(out)
}

// Status is Infobip's message status object.
type Status struct {
	GroupID     int    `json:"groupId"`
	GroupName   string `json:"groupName"`
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Statuses smsgate answers with.
var (
	Pending = Status{GroupID: 1, GroupName: "PENDING", ID: 26, Name: "PENDING_ACCEPTED", Description: "Message accepted by smsgate and sent to a provider"}
	// RejectedDestination: the number is invalid or of a type policy refuses, or a provider
	// refused it.
	RejectedDestination = Status{GroupID: 5, GroupName: "REJECTED", ID: 52, Name: "REJECTED_DESTINATION", Description: "Invalid destination address"}
	// RejectedCountry: smsgate's country policy refuses the destination.
	RejectedCountry = Status{GroupID: 5, GroupName: "REJECTED", ID: 5001, Name: "REJECTED_COUNTRY_NOT_ALLOWED", Description: "smsgate policy: the destination country is not allowed for this account"}
	// RejectedClient: the tenant's key may send only for its Auth0 applications (client_ids), and
	// Infobip's requests name none.
	RejectedClient = Status{GroupID: 5, GroupName: "REJECTED", ID: 5004, Name: "REJECTED_CLIENT_NOT_ALLOWED", Description: "smsgate policy: this account may send only for its Auth0 applications (client_ids), and this API names none"}
	// RejectedSender: the tenant may not send as the sender the request names
	// (tenants.allowed_senders).
	RejectedSender = Status{GroupID: 5, GroupName: "REJECTED", ID: 13, Name: "REJECTED_SENDER", Description: "smsgate policy: this account may not send as this sender"}
	// RejectedLink: the text links to a host the tenant may not link to (allowed_link_hosts).
	RejectedLink = Status{GroupID: 5, GroupName: "REJECTED", ID: 5003, Name: "REJECTED_LINK_NOT_ALLOWED", Description: "smsgate policy: the text links to a host this account may not link to"}
	// RejectedRateLimit: a rate limit refuses it (Infobip's own name for throttling).
	RejectedRateLimit = Status{GroupID: 5, GroupName: "REJECTED", ID: 20, Name: "REJECTED_FLOODING_FILTER", Description: "smsgate policy: a rate limit was reached; retry later"}
	// RejectedProviders: every provider failed or none was available.
	RejectedProviders = Status{GroupID: 5, GroupName: "REJECTED", ID: 21, Name: "REJECTED_SYSTEM_ERROR", Description: "every provider failed; retry later"}
	// RejectedRequest: the destination's request is invalid (code, text length).
	RejectedRequest = Status{GroupID: 5, GroupName: "REJECTED", ID: 5002, Name: "REJECTED_INVALID_REQUEST", Description: "the message was refused as invalid"}
)

// Result is what smsgate did with one destination.
type Result struct {
	Destination Destination
	// MessageID is smsgate's id ("" when refused before one was given).
	MessageID string
	Status    Status
	// HTTPStatus and Code are the native answer's (200, 422 recipient_rejected, 429...).
	HTTPStatus int
	Code       string
	RetryAfter time.Duration
}

// StatusFor maps a native answer to the Infobip status of its destination.
func StatusFor(httpStatus int, code string) Status {
	switch {
	case httpStatus == 200:
		return Pending
	case code == "country_not_allowed":
		return RejectedCountry
	case code == "client_not_allowed":
		return RejectedClient
	case code == "sender_not_allowed":
		return RejectedSender
	case code == "link_not_allowed":
		return RejectedLink
	case code == "rate_limited" || code == "provider_throttled":
		return RejectedRateLimit
	case code == "invalid_number" || code == "recipient_rejected" || code == "number_type_not_allowed" || code == "suspected_pumping":
		return RejectedDestination
	case httpStatus >= 500:
		return RejectedProviders
	}
	return RejectedRequest
}

// Answer renders the answer to a send of kind. When no destination was sent, it is an error in
// Infobip's shape with a non-2xx status, so that the caller's error path runs: 429 (with the
// longest Retry-After) when rate limits or providers' throttling refused them all, 503 when
// providers failed, else 400.
func Answer(kind, bulkID string, rs []Result) (status int, body []byte, retryAfter time.Duration) {
	sent := 0
	var limited, failed bool
	for _, r := range rs {
		if r.HTTPStatus == 200 {
			sent++
		}
		if r.Code == "rate_limited" || r.Code == "provider_throttled" {
			limited = true
			retryAfter = max(retryAfter, r.RetryAfter)
		}
		if r.HTTPStatus >= 500 {
			failed = true
		}
	}
	if sent == 0 {
		switch {
		case failed:
			return 503, ErrorBody(kind, "SERVICE_UNAVAILABLE", "no message could be sent: every provider failed; retry later"), 0
		case limited:
			return 429, ErrorBody(kind, "TOO_MANY_REQUESTS", "no message could be sent: a rate limit was reached or the providers are throttling these sends"), retryAfter
		default:
			return 400, ErrorBody(kind, "BAD_REQUEST", "no message could be sent: "+rs[0].Status.Description), 0
		}
	}
	type msg struct {
		MessageID   string  `json:"messageId,omitempty"`
		Status      Status  `json:"status"`
		To          string  `json:"to,omitempty"`
		Destination string  `json:"destination,omitempty"`
		Details     *detail `json:"details,omitempty"`
	}
	out := struct {
		BulkID   string `json:"bulkId,omitempty"`
		Messages []msg  `json:"messages"`
	}{BulkID: bulkID}
	for _, r := range rs {
		m := msg{MessageID: r.MessageID, Status: r.Status}
		if kind == SMSv3 {
			m.Destination, m.Details = r.Destination.To, &detail{MessageCount: gateway.SMSParts(r.Destination.Text)}
		} else {
			m.To = r.Destination.To
		}
		out.Messages = append(out.Messages, m)
	}
	b, _ := json.Marshal(out)
	return 200, b, 0
}

// detail is a v3 answer's details: messageCount is the parts the text is sent as.
type detail struct {
	MessageCount int `json:"messageCount"`
}

// ErrorBody is an error in the shape of kind's API: v3's ApiError, or the legacy ApiException.
func ErrorBody(kind, id, text string) []byte {
	var b []byte
	if kind == SMSv3 {
		b, _ = json.Marshal(map[string]any{"errorCode": id, "description": text, "action": "", "violations": []any{}, "resources": []any{}})
	} else {
		b, _ = json.Marshal(map[string]any{"requestError": map[string]any{"serviceException": map[string]any{"messageId": id, "text": text}}})
	}
	return b
}
