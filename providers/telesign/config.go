package telesign

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"

	"github.com/smsgate/smsgate/gateway"
)

// Config is the telesign provider's YAML block (besides name, type, timeout and breaker).
type Config struct {
	// BaseURL is the API root; default https://rest-api.telesign.com (Enterprise accounts:
	// https://rest-ww.telesign.com).
	BaseURL string `yaml:"base_url"`
	// CustomerID and APIKey (base64, as TeleSign issues it) are the account's credentials.
	CustomerID string         `yaml:"customer_id"`
	APIKey     gateway.Secret `yaml:"api_key"`
	// PreviousAPIKeys still verify callbacks while api_key is rotated (callbacks of messages sent
	// before are signed with the key of the time); never used to send.
	PreviousAPIKeys []gateway.Secret `yaml:"previous_api_keys"`
	// Auth is basic (default: Basic customer_id:api_key) or hmac (each request signed).
	Auth string `yaml:"auth"`
	// SenderID is the default sender (must be allowlisted by TeleSign); Senders per country.
	SenderID string            `yaml:"sender_id"`
	Senders  map[string]string `yaml:"senders"`
	// MessageType is OTP (default), ARN or MKT.
	MessageType string `yaml:"message_type"`
}

var isoRe = regexp.MustCompile(`^([A-Z]{2}|001)$`)

// Defaults fills what the config leaves out.
func (c *Config) Defaults() {
	if c.BaseURL == "" {
		c.BaseURL = "https://rest-api.telesign.com"
	}
	if c.Auth == "" {
		c.Auth = "basic"
	}
	if c.MessageType == "" {
		c.MessageType = "OTP"
	}
}

// Validate returns the config's problems in key order.
func (c *Config) Validate() []gateway.Problem {
	var p []gateway.Problem
	add := func(k, f string, a ...any) { p = append(p, gateway.Problem{Key: k, Message: fmt.Sprintf(f, a...)}) }
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		add("base_url", "%q is not an http(s) URL", c.BaseURL)
	}
	if c.CustomerID == "" {
		add("customer_id", "is required")
	}
	if c.APIKey == "" {
		add("api_key", "is required")
	} else if _, err := base64.StdEncoding.DecodeString(c.APIKey.Reveal()); err != nil {
		add("api_key", "is not base64 (TeleSign's keys are; callbacks are verified with the decoded key)")
	}
	for i, k := range c.PreviousAPIKeys {
		if _, err := base64.StdEncoding.DecodeString(k.Reveal()); err != nil || k == "" {
			add(fmt.Sprintf("previous_api_keys[%d]", i), "is not a base64 key")
		}
	}
	if c.Auth != "basic" && c.Auth != "hmac" {
		add("auth", "must be basic or hmac, not %q", c.Auth)
	}
	for _, cc := range slices.Sorted(maps.Keys(c.Senders)) {
		if !isoRe.MatchString(cc) {
			add("senders."+cc, "keys must be ISO 3166-1 alpha-2 country codes (or 001)")
		}
	}
	switch c.MessageType {
	case "OTP", "ARN", "MKT":
	default:
		add("message_type", "must be OTP, ARN or MKT, not %q", c.MessageType)
	}
	return p
}
