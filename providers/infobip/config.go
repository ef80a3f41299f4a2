package infobip

import (
	"fmt"
	"net/url"
	"regexp"

	"github.com/smsgate/smsgate/gateway"
)

// Config is the infobip provider's YAML block (besides name, type, timeout and breaker).
type Config struct {
	// BaseURL is the account's API base, e.g. https://xxxxx.api.infobip.com; any URL (tests use a fake).
	BaseURL string `yaml:"base_url"`
	// APIKey is sent as "Authorization: App <key>".
	APIKey gateway.Secret `yaml:"api_key"`
	// Sender is the default sender id (alphanumeric or a number); empty lets Infobip choose.
	Sender string `yaml:"sender"`
	// Senders overrides the sender per destination country (ISO alpha-2).
	Senders map[string]string `yaml:"senders"`
	// Voice configures text-to-speech calls.
	Voice Voice `yaml:"voice"`
	// API is v3 (POST /sms/3/messages, default) or v2 (POST /sms/2/text/advanced).
	API string `yaml:"api"`
	// WebhookSecret authenticates delivery reports: Infobip calls the callback URL with
	// ?secret=<it>, or uses HTTP basic auth with it as the password. Empty: reports are refused
	// and no callback URL is sent.
	WebhookSecret gateway.Secret `yaml:"webhook_secret"`
}

// Voice configures Infobip text-to-speech.
type Voice struct {
	// Language is the TTS language code; default "en". A request's own language wins when set.
	Language string `yaml:"language"`
	// VoiceName is the voice, e.g. "Joanna"; used only with Language.
	VoiceName string `yaml:"voice_name"`
	// From is the caller id, a number in international format without "+".
	From string `yaml:"from"`
}

var isoRe = regexp.MustCompile(`^[A-Z]{2}$`)

// Validate returns the problems of c as key -> message, and fills defaults.
func (c *Config) Validate() map[string]string {
	p := map[string]string{}
	if c.BaseURL == "" {
		p["base_url"] = "is required (https://<your-subdomain>.api.infobip.com)"
	} else if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p["base_url"] = fmt.Sprintf("%q is not an http(s) URL", c.BaseURL)
	}
	if c.APIKey == "" {
		p["api_key"] = "is required"
	}
	switch c.API {
	case "":
		c.API = "v3"
	case "v2", "v3":
	default:
		p["api"] = fmt.Sprintf("must be v3 or v2, not %q", c.API)
	}
	for cc := range c.Senders {
		if !isoRe.MatchString(cc) {
			p["senders."+cc] = "keys must be ISO 3166-1 alpha-2 country codes"
		}
	}
	if c.Voice.Language == "" {
		c.Voice.Language = "en"
	}
	return p
}
