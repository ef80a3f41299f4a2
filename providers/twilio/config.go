package twilio

import (
	"encoding/hex"
	"net/url"
	"strings"

	"github.com/smsgate/smsgate/gateway"
)

// Config is the twilio provider's YAML block (besides name, type, timeout and breaker).
type Config struct {
	// AccountSID is the account (AC...), used in the URL path and as the basic-auth user.
	AccountSID string `yaml:"account_sid"`
	// AuthToken is the basic-auth password and the key of X-Twilio-Signature.
	AuthToken gateway.Secret `yaml:"auth_token"`
	// PreviousAuthTokens still verify status callbacks while the auth token is rotated: Twilio
	// signs callbacks with the account's primary token, which stays the old one until the new
	// (secondary) token is promoted. Never used to send.
	PreviousAuthTokens []gateway.Secret `yaml:"previous_auth_tokens"`
	// From is the sender number in E.164; exactly one of From and MessagingServiceSID is set.
	From string `yaml:"from"`
	// MessagingServiceSID (MG...) lets Twilio pick the sender.
	MessagingServiceSID string `yaml:"messaging_service_sid"`
	// VoiceFrom is the caller id of voice calls, a number in E.164; default From when From is
	// one. Calls need a number: with a messaging service, or a sender ID or short code as From,
	// and no voice_from, the provider declares SMS only and voice skips it.
	VoiceFrom string `yaml:"voice_from"`
	// BaseURL is the API root; default https://api.twilio.com (tests point it at a fake).
	BaseURL string `yaml:"base_url"`
}

// Defaults fills what the config leaves out.
func (c *Config) Defaults() {
	if c.VoiceFrom == "" && isE164(c.From) { // a sender ID or a short code places no call: SMS only
		c.VoiceFrom = c.From
	}
	if c.BaseURL == "" {
		c.BaseURL = "https://api.twilio.com"
	}
}

// Validate returns the config's problems in key order.
func (c *Config) Validate() []gateway.Problem {
	var p []gateway.Problem
	add := func(k, m string) { p = append(p, gateway.Problem{Key: k, Message: m}) }
	switch {
	case c.AccountSID == "":
		add("account_sid", "is required")
	case !isSID(c.AccountSID, "AC"):
		add("account_sid", "is not a Twilio account SID (AC and 32 hex digits)")
	}
	if c.AuthToken == "" {
		add("auth_token", "is required")
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		add("base_url", "is not an http(s) URL")
	}
	switch {
	case c.From == "" && c.MessagingServiceSID == "":
		add("from", "set from or messaging_service_sid")
	case c.From != "" && c.MessagingServiceSID != "":
		add("messaging_service_sid", "set either from or messaging_service_sid, not both (Twilio: From must be empty with a messaging service)")
	case c.MessagingServiceSID != "" && !isSID(c.MessagingServiceSID, "MG"):
		add("messaging_service_sid", "is not a Twilio messaging service SID (MG and 32 hex digits)")
	}
	if c.From != "" && !gateway.ValidSender(c.From) {
		add("from", "must be a number of 3 to 15 digits (+ first for E.164) or a sender ID of 3 to 11 letters, digits, spaces, '-' and '.'")
	}
	// A call's From is a number of the account's in E.164.
	if c.VoiceFrom != "" && !isE164(c.VoiceFrom) {
		add("voice_from", "must be a number in E.164 (+ and 7 to 15 digits): calls need a number as caller id")
	}
	return p
}

// isE164 reports whether s is "+" and 7 to 15 digits.
func isE164(s string) bool {
	d, ok := strings.CutPrefix(s, "+")
	return ok && len(d) >= 7 && len(d) <= 15 && strings.Trim(d, "0123456789") == ""
}

// isSID reports whether s is a Twilio SID of the given two-letter prefix: the prefix and 32 hex
// digits, the pattern Twilio's OpenAPI spec gives AccountSid and MessagingServiceSid. Checking it
// at validate time turns a typo, or a value pasted with a stray character, into a config error
// instead of a 401 or 404 at the first send.
func isSID(s, prefix string) bool {
	digits, ok := strings.CutPrefix(s, prefix)
	_, err := hex.DecodeString(digits)
	return ok && len(digits) == 32 && err == nil
}
