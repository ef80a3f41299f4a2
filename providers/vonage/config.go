package vonage

import (
	"encoding/pem"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"

	"github.com/golang-jwt/jwt/v5"

	"github.com/smsgate/smsgate/gateway"
)

// Config is the vonage provider's YAML block (besides name, type, timeout and breaker).
type Config struct {
	// BaseURL is the SMS API root; default https://rest.nexmo.com.
	BaseURL string `yaml:"base_url"`
	// APIKey and APISecret are the account's credentials, sent in the SMS form body.
	APIKey    string         `yaml:"api_key"`
	APISecret gateway.Secret `yaml:"api_secret"`
	// From is the SMS sender (a number, or an alphanumeric id where the destination allows it).
	From string `yaml:"from"`
	// Senders overrides From per destination country (ISO alpha-2 or 001).
	Senders map[string]string `yaml:"senders"`

	// VoiceBaseURL is the Voice API root; default https://api.nexmo.com.
	VoiceBaseURL string `yaml:"voice_base_url"`
	// ApplicationID and PrivateKey (PEM, use ${VAR}) are the Vonage application's credentials
	// that sign the Voice API's JWT. Without both the provider declares SMS only.
	ApplicationID string         `yaml:"application_id"`
	PrivateKey    gateway.Secret `yaml:"private_key"`
	// VoiceFrom is the calling number; empty: Vonage picks one of the application's numbers.
	VoiceFrom string `yaml:"voice_from"`

	// SignatureSecret verifies signed SMS receipts and the JWT of voice events; SignatureMethod
	// is md5hash (default), md5, sha1, sha256 or sha512, as set in the Vonage dashboard.
	SignatureSecret gateway.Secret `yaml:"signature_secret"`
	SignatureMethod string         `yaml:"signature_method"`
	// PreviousSignatureSecrets still verify receipts and voice events while signature_secret is
	// rotated: Vonage signs with the new secret from the moment it is changed in the dashboard,
	// and callbacks queued or retried before then carry the old one.
	PreviousSignatureSecrets []gateway.Secret `yaml:"previous_signature_secrets"`
	// WebhookSecret authenticates receipts by ?secret= in the callback URL when signed webhooks
	// are not switched on for the account. Without either, receipts are refused.
	WebhookSecret gateway.Secret `yaml:"webhook_secret"`
	// PreviousWebhookSecrets are still accepted on reports while a rotated webhook_secret's old
	// value is in callback URLs already given out (reports come for hours after a send).
	PreviousWebhookSecrets []gateway.Secret `yaml:"previous_webhook_secrets"`
}

var (
	isoRe = regexp.MustCompile(`^([A-Z]{2}|001)$`)
	numRe = regexp.MustCompile(`^\+?[0-9]{7,15}$`)
)

// Defaults fills what the config leaves out.
func (c *Config) Defaults() {
	if c.BaseURL == "" {
		c.BaseURL = "https://rest.nexmo.com"
	}
	if c.VoiceBaseURL == "" {
		c.VoiceBaseURL = "https://api.nexmo.com"
	}
	if c.SignatureMethod == "" {
		c.SignatureMethod = "md5hash"
	}
}

// Validate returns the config's problems in key order.
func (c *Config) Validate() []gateway.Problem {
	var p []gateway.Problem
	add := func(k, f string, a ...any) { p = append(p, gateway.Problem{Key: k, Message: fmt.Sprintf(f, a...)}) }
	for _, u := range []struct{ key, val string }{{"base_url", c.BaseURL}, {"voice_base_url", c.VoiceBaseURL}} {
		if x, err := url.Parse(u.val); err != nil || (x.Scheme != "https" && x.Scheme != "http") || x.Host == "" {
			add(u.key, "%q is not an http(s) URL", u.val)
		}
	}
	if c.APIKey == "" {
		add("api_key", "is required")
	}
	if c.APISecret == "" {
		add("api_secret", "is required")
	}
	if c.From == "" {
		add("from", "is required")
	}
	for _, cc := range slices.Sorted(maps.Keys(c.Senders)) {
		if !isoRe.MatchString(cc) {
			add("senders."+cc, "keys must be ISO 3166-1 alpha-2 country codes (or 001)")
		}
	}
	switch {
	case (c.ApplicationID == "") != (c.PrivateKey == ""):
		add("application_id", "application_id and private_key go together (voice needs both; without them the provider sends SMS only)")
	case c.PrivateKey != "":
		if _, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(c.PrivateKey.Reveal())); err != nil {
			// A PEM block that is not an RSA key (an EC or Ed25519 key, garbage) is refused too:
			// Vonage signs with RS256, and the driver would otherwise drop voice without a word.
			if b, _ := pem.Decode([]byte(c.PrivateKey.Reveal())); b == nil {
				add("private_key", "is not a PEM private key")
			} else {
				add("private_key", "is not an RSA private key")
			}
		}
	}
	if c.VoiceFrom != "" && !numRe.MatchString(c.VoiceFrom) {
		add("voice_from", "must be a number in E.164")
	}
	if len(c.PreviousSignatureSecrets) > 0 && c.SignatureSecret == "" {
		add("previous_signature_secrets", "rotate signature_secret: set it to the new secret (without it receipts are checked by webhook_secret)")
	}
	switch c.SignatureMethod {
	case "md5hash", "md5", "sha1", "sha256", "sha512":
	default:
		add("signature_method", "must be md5hash, md5, sha1, sha256 or sha512, not %q", c.SignatureMethod)
	}
	return p
}
