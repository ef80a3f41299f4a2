package infobip

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"

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
	// PreviousWebhookSecrets are still accepted on reports while a rotated webhook_secret's old
	// value is in callback URLs already given out (reports come for hours after a send).
	PreviousWebhookSecrets []gateway.Secret `yaml:"previous_webhook_secrets"`
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

var isoRe = regexp.MustCompile(`^([A-Z]{2}|001)$`)

// Defaults fills what the config leaves out.
func (c *Config) Defaults() {
	if c.API == "" {
		c.API = "v3"
	}
	if c.Voice.Language == "" {
		c.Voice.Language = "en"
	}
}

// Validate returns the config's problems in key order.
func (c *Config) Validate() []gateway.Problem {
	var p []gateway.Problem
	add := func(k, f string, a ...any) { p = append(p, gateway.Problem{Key: k, Message: fmt.Sprintf(f, a...)}) }
	if c.BaseURL == "" {
		add("base_url", "is required (https://<your-subdomain>.api.infobip.com)")
	} else if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		add("base_url", "%q is not an http(s) URL", c.BaseURL)
	}
	if c.APIKey == "" {
		add("api_key", "is required")
	}
	if c.API != "v2" && c.API != "v3" {
		add("api", "must be v3 or v2, not %q", c.API)
	}
	for _, cc := range slices.Sorted(maps.Keys(c.Senders)) {
		if !isoRe.MatchString(cc) {
			add("senders."+cc, "keys must be ISO 3166-1 alpha-2 country codes (or 001)")
		}
	}
	return p
}
