// Package gateway holds the domain of smsgate: the message a tenant asks to send, the result of
// sending it, the error classes that drive failover, the Provider interface that every driver
// implements, and what a text is made of (its SMS parts, its links) and what a sender may be.
// It is a leaf package: it imports nothing else of this module.
package gateway

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// MessageType says how a message reaches the phone.
type MessageType string

// Message types.
const (
	SMS   MessageType = "sms"
	Voice MessageType = "voice"
)

// Message is one normalized request to deliver a one-time code or text to one phone.
type Message struct {
	// ID is smsgate's own message id; drivers send it to providers that accept a client reference.
	ID string
	// Tenant is the name of the tenant whose key sent the request.
	Tenant string
	// ClientID is the Auth0 client (application) id, empty when unknown.
	ClientID string
	// To is the recipient in E.164 form, for example "+14155550104".
	To string
	// Country is the ISO 3166-1 alpha-2 region of To, for example "US".
	Country string
	// NumberType is To's type when libphonenumber knows it as one of SpecialNumberTypes
	// ("premium_rate", "toll_free", ...); "" for a fixed-line or mobile number and for a number
	// it does not recognize.
	NumberType string
	// AlsoIn names the other regions To may be in, when it is a number libphonenumber does not
	// recognize under a calling code several regions share and its digits do not tell which (US,
	// AlsoIn [CA]). Country lists hold for each of them; routes and limits see Country.
	AlsoIn []string
	// Type is sms or voice.
	Type MessageType
	// Text is the rendered message. It contains the code; never log or store it as is.
	Text string
	// Code is the one-time code when the caller sent it separately; empty otherwise.
	Code string
	// Action is the Auth0 action, for example "enrollment" or "second-factor-authentication".
	Action string
	// Language is the caller's language tag, for example "en" or "pt-BR"; empty when unknown.
	Language string
	// IP is the end user's IP address as the caller reported it.
	IP string
	// From is a sender the caller asked for (set only when the tenant may choose one); drivers
	// use it instead of their configured sender when they can.
	From string
	// Attempt is the provider's position among the providers tried for this message, from 0 (the
	// dispatcher sets it per attempt): a driver can tell its provider it is a backup.
	Attempt int
}

// Result is what a provider answered when it accepted a message.
type Result struct {
	// ProviderMessageID is the provider's id for the message (Infobip messageId, Twilio sid).
	ProviderMessageID string
	// Status is the provider's own status name, for example "PENDING_ACCEPTED" or "queued".
	Status string
}

// Provider is the interface every driver implements. Send must honour ctx's deadline and return
// a *Error (or an error wrapping one) that says which class of failure happened.
type Provider interface {
	// Send delivers msg through the provider. A nil error means the provider accepted it.
	Send(ctx context.Context, msg *Message) (Result, error)
	// Capabilities says what the provider can send, as its config allows. The dispatcher skips a
	// provider that cannot send a message (not called, not counted by its breaker).
	Capabilities() Capabilities
}

// Capabilities is what a configured provider can send.
type Capabilities struct {
	// Types are the message types it can send; a type not listed is skipped.
	Types []MessageType
	// VoiceLanguages, when not empty, are the only languages it speaks: primary subtags ("en")
	// or full tags ("en-GB"), matched case-insensitively. A voice message in another language, or
	// without one, is skipped.
	VoiceLanguages []string
	// Countries, when not empty, are the only destination countries it reaches.
	Countries []string
}

// Supports reports whether msg is within c, and when not, why (a short phrase for the attempt record).
func (c Capabilities) Supports(msg *Message) (bool, string) {
	typeOK := false
	for _, t := range c.Types {
		if t == msg.Type {
			typeOK = true
		}
	}
	if !typeOK {
		return false, "cannot send " + string(msg.Type)
	}
	if len(c.Countries) > 0 && !containsFold(c.Countries, msg.Country) {
		return false, "does not reach " + msg.Country
	}
	if msg.Type == Voice && len(c.VoiceLanguages) > 0 {
		tag := strings.ReplaceAll(msg.Language, "_", "-")
		primary, _, _ := strings.Cut(tag, "-")
		if tag == "" || !containsFold(c.VoiceLanguages, tag) && !containsFold(c.VoiceLanguages, primary) {
			return false, "does not speak " + orNone(msg.Language)
		}
	}
	return true, ""
}

// Can reports whether c includes message type t (for config checks).
func (c Capabilities) Can(t MessageType) bool {
	for _, x := range c.Types {
		if x == t {
			return true
		}
	}
	return false
}

func containsFold(list []string, v string) bool {
	for _, x := range list {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "an unknown language"
	}
	return s
}

// SMSAndVoice is the capability of a driver that sends both types everywhere.
var SMSAndVoice = Capabilities{Types: []MessageType{SMS, Voice}}

// SMSOnly is the capability of a driver that sends SMS only.
var SMSOnly = Capabilities{Types: []MessageType{SMS}}

// Webhook describes a driver's delivery-report endpoint, mounted by the HTTP layer at
// /v1/dlr/{type}/{name} without knowing the provider.
type Webhook struct {
	// Methods the provider calls with, e.g. POST, or GET and POST; others get 405.
	Methods []string
	// ContentTypes the provider posts (media types without parameters); empty accepts any.
	ContentTypes []string
	// Auth says how a report proves where it comes from, for docs and the providers endpoint.
	Auth string
}

// ReportReceiver is implemented by drivers that accept delivery reports over HTTP.
type ReportReceiver interface {
	// Webhook declares the endpoint's methods, content types and authentication.
	Webhook() Webhook
	// ParseReports authenticates r and returns the delivery reports it carries. body is the read
	// body (empty for GET); publicURL is the exact URL the provider called (for signatures). An
	// error of class Caller means the request is malformed; ErrUnauthenticated means its
	// credentials are wrong; class Unavailable means a sound report could not be checked or taken
	// just now (answered 503, which providers retry; they take a 4xx as final).
	ParseReports(r *http.Request, body []byte, publicURL string) ([]DeliveryReport, error)
	// AsksReports says whether the driver's messages are to get delivery reports at all: a
	// callback URL went with them (for most drivers only when the gateway has a public URL and a
	// webhook secret to put in it), or the provider was set up to post them (AWS: a configuration
	// set and its event topics). Delivery health counts a message still without a final report
	// against a provider only when it asked for one.
	AsksReports() bool
}

// Delivery statuses, as the message log records them.
const (
	StatusAccepted    = "accepted"
	StatusSent        = "sent"
	StatusDelivered   = "delivered"
	StatusUndelivered = "undelivered"
	StatusFailed      = "failed"
	StatusRejected    = "rejected"
)

// SpecialNumberTypes are the number types other than fixed line and mobile that libphonenumber
// tells apart, in the order it checks them (a number of two types is the first): the values of
// Message.NumberType and of policy.denied_number_types.
var SpecialNumberTypes = []string{"premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail"}

// RecordStatuses are the statuses a record can have, and a driver may report: a provider's
// "accepted" leaves a record sent.
var RecordStatuses = []string{StatusSent, StatusDelivered, StatusUndelivered, StatusFailed, StatusRejected}

// DeliveryReport is one provider report about one message, normalized.
type DeliveryReport struct {
	// Provider is the configured provider name that received the report.
	Provider string
	// ProviderMessageID is the provider's id of the message.
	ProviderMessageID string
	// MessageID is smsgate's id when the provider echoes it (Infobip does), else empty.
	MessageID string
	// Status is one of StatusSent, StatusDelivered, StatusUndelivered, StatusFailed.
	Status string
	// ProviderStatus is the provider's own status name.
	ProviderStatus string
	// Error is the provider's error name or code, empty when none.
	Error string
	// Price and Currency are what the provider charged, when it says.
	Price    float64
	Currency string
	// PerPart is set when Price is one SMS part's (a provider that reports each part of a long
	// text on its own, every report naming the message): the message cost Price times its parts.
	PerPart bool
	// SentAt and DoneAt are the provider's timestamps; zero when absent.
	SentAt time.Time
	DoneAt time.Time
}

// Deps are what the composition point hands every driver.
type Deps struct {
	// Name is the provider's configured name; drivers use it in error messages.
	Name string
	// HTTPClient is shared by drivers; it has no overall timeout (contexts bound each call).
	// nil means http.DefaultClient (tests).
	HTTPClient *http.Client
	// CallbackURL is where this provider's delivery reports are received
	// (server.public_url + "/v1/dlr/{type}/{name}"), empty when server.public_url is not set. The
	// driver builds its own callback from it (adding a secret or not, as its webhook needs).
	CallbackURL string
}

// Problem is one problem in a driver's config: the key path under the provider ("senders.US")
// and what is wrong. Drivers return them in a stable order.
type Problem struct {
	Key     string
	Message string
}
