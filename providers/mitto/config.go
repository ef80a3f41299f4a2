package mitto

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"

	"github.com/smsgate/smsgate/gateway"
)

// Config is the mitto provider's YAML block (besides name, type, timeout and breaker).
type Config struct {
	// BaseURL is the API root; default https://rest.mittoapi.net (regional hosts such as
	// https://rest-fra.mittoapi.net work too; tests point it at a fake).
	BaseURL string `yaml:"base_url"`
	// APIKey is sent as X-Mitto-API-Key.
	APIKey gateway.Secret `yaml:"api_key"`
	// From is the sender: alphanumeric (3 to 11) or a number (3 to 14 digits). Required.
	From string `yaml:"from"`
	// Senders overrides the sender per destination country (ISO alpha-2 or 001).
	Senders map[string]string `yaml:"senders"`
	// WebhookSecret authenticates delivery reports: Mitto signs nothing, so the callback URL
	// carries ?secret=<it>. Empty: no callback is requested and reports are refused.
	WebhookSecret gateway.Secret `yaml:"webhook_secret"`
	// PreviousWebhookSecrets are still accepted on reports while a rotated webhook_secret's old
	// value is in callback URLs already given out (reports come for hours after a send).
	PreviousWebhookSecrets []gateway.Secret `yaml:"previous_webhook_secrets"`
}

var (
	isoRe    = regexp.MustCompile(`^([A-Z]{2}|001)$`)
	senderRe = regexp.MustCompile(`^([A-Za-z0-9 ]{3,11}|\+?[0-9]{3,14})$`)
)

// Defaults fills what the config leaves out.
func (c *Config) Defaults() {
	if c.BaseURL == "" {
		c.BaseURL = "https://rest.mittoapi.net"
	}
}

// Validate returns the config's problems in key order.
func (c *Config) Validate() []gateway.Problem {
	var p []gateway.Problem
	add := func(k, f string, a ...any) { p = append(p, gateway.Problem{Key: k, Message: fmt.Sprintf(f, a...)}) }
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		add("base_url", "%q is not an http(s) URL", c.BaseURL)
	}
	if c.APIKey == "" {
		add("api_key", "is required")
	}
	switch {
	case c.From == "":
		add("from", "is required (Mitto needs a sender)")
	case !senderRe.MatchString(c.From):
		add("from", "must be 3 to 11 letters or digits, or a number of 3 to 14 digits")
	}
	for _, cc := range slices.Sorted(maps.Keys(c.Senders)) {
		if !isoRe.MatchString(cc) {
			add("senders."+cc, "keys must be ISO 3166-1 alpha-2 country codes (or 001)")
		} else if !senderRe.MatchString(c.Senders[cc]) {
			add("senders."+cc, "must be 3 to 11 letters or digits, or a number of 3 to 14 digits")
		}
	}
	return p
}
