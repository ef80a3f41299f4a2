package aws

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	sv "github.com/aws/aws-sdk-go-v2/service/pinpointsmsvoicev2"
	svtypes "github.com/aws/aws-sdk-go-v2/service/pinpointsmsvoicev2/types"
	"golang.org/x/time/rate"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
)

// SMSVoiceConfig is the aws-sms-voice provider's YAML block (besides name, type, timeout and breaker).
type SMSVoiceConfig struct {
	Common `yaml:",inline"`
	// OriginationIdentity is the phone number, sender id, pool or their ARN to send from; Senders
	// per country. Voice needs a phone number or pool that can call.
	OriginationIdentity string            `yaml:"origination_identity"`
	Senders             map[string]string `yaml:"senders"`
	// ConfigurationSet sends events (delivery) to its event destinations; empty: none.
	ConfigurationSet string `yaml:"configuration_set"`
	// Voice sends voice messages too (SendVoiceMessage); default true.
	Voice *bool `yaml:"voice"`
	// EventTopics are the ARNs of the SNS topics whose HTTPS subscriptions may post delivery events
	// to this provider: only their subscriptions are confirmed and their messages accepted.
	EventTopics []string `yaml:"event_topics"`
	// WebhookSecret, when set, must come with every post as the password of HTTP basic auth (the
	// subscription's URL https://smsgate:SECRET@host/...; SNS sends it after a 401 challenge),
	// checked before the signature: a post without it costs no certificate fetch.
	WebhookSecret gateway.Secret `yaml:"webhook_secret"`
	// PreviousWebhookSecrets are still accepted while the subscriptions move to a new secret.
	PreviousWebhookSecrets []gateway.Secret `yaml:"previous_webhook_secrets"`
}

// urlSafe are the characters a password in a URL may hold unescaped.
const urlSafe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"

var arnRe = regexp.MustCompile(`^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$`)

// Defaults fills what the config leaves out.
func (c *SMSVoiceConfig) Defaults() {
	if c.Voice == nil {
		t := true
		c.Voice = &t
	}
}

// Validate returns the config's problems in key order.
func (c *SMSVoiceConfig) Validate() []gateway.Problem {
	var p []gateway.Problem
	add := func(k, f string, a ...any) { p = append(p, gateway.Problem{Key: k, Message: fmt.Sprintf(f, a...)}) }
	c.Common.validate(add)
	if c.OriginationIdentity == "" {
		add("origination_identity", "is required (a phone number, sender id, pool, or its ARN)")
	}
	for _, cc := range slices.Sorted(maps.Keys(c.Senders)) {
		if !isoRe.MatchString(cc) {
			add("senders."+cc, "keys must be ISO 3166-1 alpha-2 country codes (or 001)")
		}
	}
	for i, t := range c.EventTopics {
		if !arnRe.MatchString(t) {
			add(fmt.Sprintf("event_topics[%d]", i), "%q is not an SNS topic ARN", t)
		}
	}
	if s := c.WebhookSecret.Reveal(); strings.Trim(s, urlSafe) != "" {
		// It is written into the subscription's URL as it is: no character that URL would need escaped.
		add("webhook_secret", "may hold only letters, digits and -._~ (it is the password in the SNS subscription's URL)")
	}
	return p
}

// SMSVoice is the AWS End User Messaging SMS and Voice v2 driver.
type SMSVoice struct {
	cfg    SMSVoiceConfig
	kit    *kit.Client
	client *sv.Client
	err    error
	http   *http.Client

	// fetchCert fetches a signing certificate (a test seam; by default an HTTPS GET).
	fetchCert func(ctx context.Context, u string) ([]byte, error)
	// confirm visits a SubscribeURL (a test seam; by default an HTTPS GET).
	confirm func(ctx context.Context, u string) error
	certs   sync.Map // URL -> *x509.Certificate, at most maxCerts
	ncerts  atomic.Int32
	// fetches paces the fetches of certificates not yet cached: whoever knows a listed topic's
	// ARN can post messages naming new certificate URLs, and each would be a GET to AWS.
	fetches *rate.Limiter
}

// maxCerts bounds the certificate cache. SNS signs with one certificate per region at a time, and
// only a certificate AWS serves is cached.
const maxCerts = 32

// NewSMSVoice returns a driver; cfg must have passed Validate.
func NewSMSVoice(cfg SMSVoiceConfig, deps gateway.Deps) *SMSVoice {
	d := &SMSVoice{cfg: cfg, kit: kit.New(deps, kit.Reveal(cfg.PreviousWebhookSecrets, cfg.WebhookSecret)...), http: deps.HTTPClient, fetches: rate.NewLimiter(rate.Every(time.Second), 4)}
	if d.http == nil {
		d.http = http.DefaultClient
	}
	d.fetchCert, d.confirm = d.get, func(ctx context.Context, u string) error { _, err := d.get(ctx, u); return err }
	ac, err := sdkConfig(cfg.Common, deps)
	if err != nil {
		d.err = configError(deps.Name, err)
		return d
	}
	d.client = sv.NewFromConfig(ac, func(o *sv.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = sdkaws.String(cfg.Endpoint)
		}
	})
	return d
}

// Capabilities implements gateway.Provider.
func (d *SMSVoice) Capabilities() gateway.Capabilities {
	if d.cfg.Voice != nil && !*d.cfg.Voice {
		return gateway.SMSOnly
	}
	return gateway.SMSAndVoice
}

// smsVoiceErrors is the error table, by exception and reason. Opted-out and invalid numbers are
// the recipient's; a destination country blocked or not enabled for this account, an identity not
// valid for the country, an unverified sandbox number concern this destination only; throttling
// is throttling; the rest (access denied, spend limits, internal errors) is the provider's.
var smsVoiceErrors = codeClass{
	"ConflictException/DESTINATION_PHONE_NUMBER_OPTED_OUT":                          gateway.ClassRecipient,
	"ValidationException/INVALID_PHONE_NUMBER":                                      gateway.ClassRecipient,
	"ValidationException/DESTINATION_COUNTRY_BLOCKED":                               gateway.ClassDestination,
	"ValidationException/COUNTRY_NOT_ENABLED":                                       gateway.ClassDestination,
	"ValidationException/INVALID_IDENTITY_FOR_DESTINATION_COUNTRY":                  gateway.ClassDestination,
	"ConflictException/DESTINATION_COUNTRY_BLOCKED_BY_PROTECT_CONFIGURATION":        gateway.ClassDestination,
	"ConflictException/DESTINATION_PHONE_NUMBER_NOT_VERIFIED":                       gateway.ClassDestination,
	"ConflictException/DESTINATION_PHONE_NUMBER_BLOCKED_BY_PROTECT_NUMBER_OVERRIDE": gateway.ClassDestination,
	"ServiceQuotaExceededException":                                                 gateway.ClassProvider,
	"AccessDeniedException":                                                         gateway.ClassProvider,
	"ThrottlingException":                                                           gateway.ClassThrottled,
	"InternalServerException":                                                       gateway.ClassProvider,
	"ResourceNotFoundException":                                                     gateway.ClassProvider,
}

// reasonOf is the Reason of End User Messaging's typed exceptions.
func reasonOf(err error) string {
	var v *svtypes.ValidationException
	var c *svtypes.ConflictException
	var q *svtypes.ServiceQuotaExceededException
	var a *svtypes.AccessDeniedException
	switch {
	case errors.As(err, &v):
		return string(v.Reason)
	case errors.As(err, &c):
		return string(c.Reason)
	case errors.As(err, &q):
		return string(q.Reason)
	case errors.As(err, &a):
		return string(a.Reason)
	}
	return ""
}

// voices maps a primary language subtag to an End User Messaging voice.
var voices = map[string]string{"en": "JOANNA", "de": "VICKI", "fr": "LEA", "es": "LUCIA", "it": "CARLA", "pt": "CAMILA", "nl": "LOTTE"}

// Speech is a voice message: the code digit by digit, twice, in the request's language.
func Speech(msg *gateway.Message) (voice, words string) {
	voice, s := kit.Voice(msg, voices, map[string]string{"en-GB": "AMY"})
	return voice, kit.Twice(msg, s)
}

// Send implements gateway.Provider. Our message id goes into the message's Context, so delivery
// events name it.
func (d *SMSVoice) Send(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	if d.err != nil {
		return gateway.Result{}, d.err
	}
	origin := kit.Sender(msg, d.cfg.Senders, d.cfg.OriginationIdentity)
	var set *string
	if d.cfg.ConfigurationSet != "" {
		set = sdkaws.String(d.cfg.ConfigurationSet)
	}
	mctx := map[string]string{"smsgate_id": msg.ID}
	var id *string
	err := call(ctx, d.kit, smsVoiceErrors, reasonOf, func(ctx context.Context) error {
		if msg.Type == gateway.Voice {
			voice, words := Speech(msg)
			out, err := d.client.SendVoiceMessage(ctx, &sv.SendVoiceMessageInput{DestinationPhoneNumber: sdkaws.String(msg.To),
				OriginationIdentity: sdkaws.String(origin), MessageBody: sdkaws.String(words), MessageBodyTextType: svtypes.VoiceMessageBodyTextTypeText,
				VoiceId: svtypes.VoiceId(voice), ConfigurationSetName: set, Context: mctx})
			if err == nil {
				id = out.MessageId
			}
			return err
		}
		out, err := d.client.SendTextMessage(ctx, &sv.SendTextMessageInput{DestinationPhoneNumber: sdkaws.String(msg.To),
			OriginationIdentity: sdkaws.String(origin), MessageBody: sdkaws.String(msg.Text), MessageType: svtypes.MessageTypeTransactional,
			ConfigurationSetName: set, Context: mctx})
		if err == nil {
			id = out.MessageId
		}
		return err
	})
	if err != nil {
		return gateway.Result{}, err
	}
	if id == nil || *id == "" {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "BAD_RESPONSE", MaybeSent: true, Message: "AWS answered without a MessageId"}
	}
	return gateway.Result{ProviderMessageID: *id, Status: "accepted"}, nil
}

// AsksReports implements gateway.ReportReceiver: events are published only through a
// configuration set, and taken only from the topics listed.
func (d *SMSVoice) AsksReports() bool {
	return d.cfg.ConfigurationSet != "" && len(d.cfg.EventTopics) > 0
}

// ReportReceiver is checked at compile time: the gateway finds report receivers by assertion.
var _ gateway.ReportReceiver = (*SMSVoice)(nil)

// Webhook implements gateway.ReportReceiver: an SNS topic's HTTPS subscription.
func (d *SMSVoice) Webhook() gateway.Webhook {
	return gateway.Webhook{Methods: []string{http.MethodPost}, ContentTypes: []string{"text/plain", "application/json"},
		Auth: d.webhookAuth()}
}

func (d *SMSVoice) webhookAuth() string {
	auth := "SNS message signatures (SignatureVersion 1 and 2, certificates from sns.<region>.amazonaws.com), topics listed in event_topics"
	if d.cfg.WebhookSecret != "" {
		auth = "webhook_secret as the HTTP basic auth password (asked for with a 401), then " + auth
	}
	return auth
}

// envelope is an SNS HTTP(S) delivery.
type envelope struct {
	Type, MessageID, Token, TopicArn, Subject, Message, Timestamp string
	SignatureVersion, Signature, SigningCertURL, SubscribeURL     string
}

func (e *envelope) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*e = envelope{Type: m["Type"], MessageID: m["MessageId"], Token: m["Token"], TopicArn: m["TopicArn"], Subject: m["Subject"],
		Message: m["Message"], Timestamp: m["Timestamp"], SignatureVersion: m["SignatureVersion"], Signature: m["Signature"],
		SigningCertURL: m["SigningCertURL"], SubscribeURL: m["SubscribeURL"]}
	return nil
}

// stringToSign is what SNS signs, per message type (AWS's "Verifying the signatures of Amazon SNS
// messages").
func (e *envelope) stringToSign() string {
	var b strings.Builder
	add := func(k, v string) { b.WriteString(k + "\n" + v + "\n") }
	add("Message", e.Message)
	add("MessageId", e.MessageID)
	if e.Type == "Notification" {
		if e.Subject != "" {
			add("Subject", e.Subject)
		}
	} else {
		add("SubscribeURL", e.SubscribeURL)
	}
	add("Timestamp", e.Timestamp)
	if e.Type != "Notification" {
		add("Token", e.Token)
	}
	add("TopicArn", e.TopicArn)
	add("Type", e.Type)
	return b.String()
}

// snsURL reports whether raw is an HTTPS URL of SNS in the region of the topic the message names
// (arn:PARTITION:sns:REGION:ACCOUNT:NAME): the only place its certificate and subscription URL
// may come from.
func snsURL(raw, topicARN string) (*url.URL, bool) {
	parts := strings.Split(topicARN, ":")
	if len(parts) != 6 || parts[3] == "" {
		return nil, false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Fragment != "" ||
		u.Host != "sns."+parts[3]+".amazonaws.com" && u.Host != "sns."+parts[3]+".amazonaws.com.cn" {
		return nil, false
	}
	return u, true
}

// certPath is the path of SNS's signing certificates (/SimpleNotificationService-<hex>.pem).
var certPath = regexp.MustCompile(`^/SimpleNotificationService-[A-Za-z0-9]{1,64}\.pem$`)

// certURL reports whether raw names a signing certificate of SNS, as SNS names them: no query,
// which would make each URL of one certificate a new one to fetch and cache.
func certURL(raw, topicARN string) bool {
	u, ok := snsURL(raw, topicARN)
	return ok && u.RawQuery == "" && !u.ForceQuery && certPath.MatchString(u.Path)
}

func (d *SMSVoice) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	res, err := d.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return nil, fmt.Errorf("HTTP %d", res.StatusCode)
	}
	return io.ReadAll(io.LimitReader(res.Body, 64<<10))
}

// errCertUnavailable: the signing certificate could not be fetched now (AWS did not answer, or
// fetches are paced). SNS retries an HTTP delivery answered 5xx but takes a 4xx as final, so this
// is answered 503, not 403: a report must not be lost to a moment's network trouble.
var errCertUnavailable = &gateway.Error{Class: gateway.ClassUnavailable, Code: "certificate", Message: "the signing certificate could not be fetched now"}

// verify checks the topic and the signature; the certificate is fetched only from SNS's own
// hosts, and cached.
func (d *SMSVoice) verify(ctx context.Context, e *envelope) error {
	if !slices.Contains(d.cfg.EventTopics, e.TopicArn) {
		return errors.New("topic not in event_topics")
	}
	if !certURL(e.SigningCertURL, e.TopicArn) {
		return errors.New("certificate not from SNS")
	}
	var cert *x509.Certificate
	if c, ok := d.certs.Load(e.SigningCertURL); ok {
		cert = c.(*x509.Certificate)
	} else {
		if !d.fetches.Allow() {
			return errCertUnavailable
		}
		raw, err := d.fetchCert(ctx, e.SigningCertURL)
		if err != nil {
			return errCertUnavailable
		}
		b, _ := pem.Decode(raw)
		if b == nil {
			return errors.New("certificate is not PEM")
		}
		if cert, err = x509.ParseCertificate(b.Bytes); err != nil {
			return err
		}
		if d.ncerts.Load() < maxCerts {
			if _, had := d.certs.LoadOrStore(e.SigningCertURL, cert); !had {
				d.ncerts.Add(1)
			}
		}
	}
	sig, err := base64.StdEncoding.DecodeString(e.Signature)
	if err != nil {
		return err
	}
	alg := x509.SHA1WithRSA
	switch e.SignatureVersion {
	case "1":
	case "2":
		alg = x509.SHA256WithRSA
	default:
		return errors.New("unknown SignatureVersion")
	}
	return cert.CheckSignature(alg, []byte(e.stringToSign()), sig)
}

// event is a configuration set's event, as the SNS event destination publishes it.
type event struct {
	EventType string            `json:"eventType"`
	MessageID string            `json:"messageId"`
	Context   map[string]string `json:"context"`
	// TotalMessagePrice and TotalCarrierFee are what the message cost, in USD (SMS events).
	TotalMessagePrice float64 `json:"totalMessagePrice"`
	TotalCarrierFee   float64 `json:"totalCarrierFee"`
}

// eventStatus maps End User Messaging's event types to the message log's statuses.
func eventStatus(t string) string {
	switch t {
	case "TEXT_DELIVERED", "VOICE_COMPLETED", "VOICE_ANSWERED":
		return gateway.StatusDelivered
	case "TEXT_BLOCKED", "TEXT_CARRIER_BLOCKED", "TEXT_SPAM", "TEXT_TTL_EXPIRED", "TEXT_UNREACHABLE", "TEXT_CARRIER_UNREACHABLE",
		"VOICE_BUSY", "VOICE_NO_ANSWER", "VOICE_TTL_EXPIRED":
		return gateway.StatusUndelivered
	case "TEXT_INVALID", "TEXT_INVALID_MESSAGE", "TEXT_UNKNOWN", "VOICE_FAILED":
		return gateway.StatusFailed
	}
	return gateway.StatusSent // TEXT_PENDING, TEXT_QUEUED, TEXT_SUCCESSFUL, VOICE_INITIATED, VOICE_RINGING, new types
}

// ParseReports implements gateway.ReportReceiver: SNS posts a SubscriptionConfirmation first
// (confirmed only for listed topics), then Notifications carrying the events.
func (d *SMSVoice) ParseReports(r *http.Request, body []byte, _ string) ([]gateway.DeliveryReport, error) {
	if d.cfg.WebhookSecret != "" {
		// Before anything else, the JSON included: a post without the secret costs nothing.
		_, pw, ok := r.BasicAuth()
		if !ok {
			return nil, gateway.ErrChallenge
		}
		if !kit.SecretMatches(pw, d.cfg.WebhookSecret, d.cfg.PreviousWebhookSecrets...) {
			return nil, gateway.ErrUnauthenticated
		}
	}
	var e envelope
	if err := json.Unmarshal(body, &e); err != nil || e.Type == "" {
		return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "not an SNS message"}
	}
	if err := d.verify(r.Context(), &e); err == errCertUnavailable {
		return nil, err
	} else if err != nil {
		return nil, gateway.ErrUnauthenticated
	}
	switch e.Type {
	case "SubscriptionConfirmation":
		if _, ok := snsURL(e.SubscribeURL, e.TopicArn); !ok {
			return nil, gateway.ErrUnauthenticated
		}
		if err := d.confirm(r.Context(), e.SubscribeURL); err != nil {
			return nil, &gateway.Error{Class: gateway.ClassUnavailable, Code: "subscription", Message: "the subscription could not be confirmed now"}
		}
		return nil, nil
	case "Notification":
	default:
		return nil, nil // UnsubscribeConfirmation and the like: nothing to record
	}
	var ev event
	if err := json.Unmarshal([]byte(e.Message), &ev); err != nil || ev.MessageID == "" {
		return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "the notification carries no event"}
	}
	rep := gateway.DeliveryReport{ProviderMessageID: ev.MessageID, MessageID: ev.Context["smsgate_id"], ProviderStatus: ev.EventType, Status: eventStatus(ev.EventType)}
	if price := ev.TotalMessagePrice + ev.TotalCarrierFee; price > 0 && !math.IsInf(price, 0) { // two huge finite values sum to +Inf
		rep.Price, rep.Currency = price, "USD"
	}
	return []gateway.DeliveryReport{rep}, nil
}
