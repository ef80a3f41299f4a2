package esendex

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"

	"github.com/smsgate/smsgate/gateway"
)

// Config is the esendex provider's YAML block (besides name, type, timeout and breaker).
type Config struct {
	// BaseURL is the API root; default https://api.esendex.com (not esendex.us, another API).
	BaseURL string `yaml:"base_url"`
	// Username (the login e-mail) and Password are the account's HTTP Basic credentials.
	Username string         `yaml:"username"`
	Password gateway.Secret `yaml:"password"`
	// AccountReference is the account to send from (EX0000000).
	AccountReference string `yaml:"account_reference"`
	// From is the sender: a number or up to 11 letters and digits; empty: the account's default.
	From string `yaml:"from"`
	// Senders overrides From per destination country (ISO alpha-2 or 001).
	Senders map[string]string `yaml:"senders"`
	// Voice sends voice messages too (in the languages Esendex speaks); default true.
	Voice *bool `yaml:"voice"`
	// WebhookSecret authenticates push notifications (Esendex signs nothing): as ?secret= in the
	// URL set in the Esendex portal, or as the basic-auth password of that URL. Empty: refused.
	WebhookSecret gateway.Secret `yaml:"webhook_secret"`
	// PreviousWebhookSecrets are still accepted on reports while a rotated webhook_secret's old
	// value is in callback URLs already given out (reports come for hours after a send).
	PreviousWebhookSecrets []gateway.Secret `yaml:"previous_webhook_secrets"`
}

var (
	isoRe    = regexp.MustCompile(`^([A-Z]{2}|001)$`)
	senderRe = regexp.MustCompile(`^([A-Za-z0-9 ]{1,11}|\+?[0-9]{3,16})$`)
	refRe    = regexp.MustCompile(`^EX[0-9]+$`)
)

// Defaults fills what the config leaves out.
func (c *Config) Defaults() {
	if c.BaseURL == "" {
		c.BaseURL = "https://api.esendex.com"
	}
	if c.Voice == nil {
		t := true
		c.Voice = &t
	}
}

// Validate returns the config's problems in key order.
func (c *Config) Validate() []gateway.Problem {
	var p []gateway.Problem
	add := func(k, f string, a ...any) { p = append(p, gateway.Problem{Key: k, Message: fmt.Sprintf(f, a...)}) }
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		add("base_url", "%q is not an http(s) URL", c.BaseURL)
	}
	if c.Username == "" {
		add("username", "is required (the Esendex login)")
	}
	if c.Password == "" {
		add("password", "is required")
	}
	if !refRe.MatchString(c.AccountReference) {
		add("account_reference", "must be the account reference, EX followed by digits")
	}
	if c.From != "" && !senderRe.MatchString(c.From) {
		add("from", "must be a number or at most 11 letters and digits")
	}
	for _, cc := range slices.Sorted(maps.Keys(c.Senders)) {
		if !isoRe.MatchString(cc) {
			add("senders."+cc, "keys must be ISO 3166-1 alpha-2 country codes (or 001)")
		}
	}
	return p
}
