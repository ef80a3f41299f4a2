// Package gateway holds the domain of smsgate: the message a tenant asks to send, the result of
// sending it, the error classes that drive failover, and the Provider interface that every driver
// implements. It is a leaf package: it imports nothing else of this module.
package gateway

import (
	"context"
	"log/slog"
	"net/http"
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
	// From is a sender the caller asked for; drivers may ignore it.
	From string
	// CallbackURL is the delivery-report URL for this message's provider, empty when none is configured.
	// The dispatcher fills it in per attempt.
	CallbackURL string
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
}

// ReportReceiver is implemented by drivers that accept delivery reports over HTTP.
// publicURL is the exact URL the provider called (needed for signature checks).
type ReportReceiver interface {
	// ParseReports authenticates r and returns the delivery reports it carries. An error of class
	// Caller means the request is malformed; ErrUnauthenticated means its credentials are wrong.
	ParseReports(r *http.Request, body []byte, publicURL string) ([]DeliveryReport, error)
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
	// SentAt and DoneAt are the provider's timestamps; zero when absent.
	SentAt time.Time
	DoneAt time.Time
}

// Deps are what the composition point hands every driver.
type Deps struct {
	// Name is the provider's configured name.
	Name string
	// HTTPClient is shared by drivers; it has no overall timeout (contexts bound each call).
	HTTPClient *http.Client
	// Logger is the gateway's logger; drivers log rarely and never secrets, codes or numbers.
	Logger *slog.Logger
}

// Client returns HTTPClient, or http.DefaultClient when none was given (tests).
func (d Deps) Client() *http.Client {
	if d.HTTPClient != nil {
		return d.HTTPClient
	}
	return http.DefaultClient
}
