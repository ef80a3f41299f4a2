package kit

import (
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/smsgate/smsgate/gateway"
)

func TestWebhookSecrets(t *testing.T) {
	if got := SecretURL("https://sms.example.com/v1/dlr/infobip/ib", "a b&c"); got != "https://sms.example.com/v1/dlr/infobip/ib?secret=a+b%26c" {
		t.Errorf("SecretURL = %q", got)
	}
	if SecretURL("", "s") != "" || SecretURL("https://x", "") != "" {
		t.Error("a callback without a URL or a secret must be empty")
	}
	if !SecretMatches("s3cret", "s3cret") || SecretMatches("s3cre", "s3cret") || SecretMatches("", "") {
		t.Error("SecretMatches: exact match only; an empty configured secret matches nothing")
	}
	// A rotation: the previous values still match, nothing else does, and they alone do not.
	if !SecretMatches("old", "new", "older", "old") || !SecretMatches("new", "new", "old") || SecretMatches("oldest", "new", "old") ||
		SecretMatches("old", "", "old") || SecretMatches("", "new", "") {
		t.Error("SecretMatches with previous secrets")
	}
	if got := Reveal([]gateway.Secret{"old"}, "key", "new"); !slices.Equal(got, []string{"key", "new", "old"}) {
		t.Errorf("Reveal = %q", got)
	}
	r := httptest.NewRequest("POST", "/x?secret=q", nil)
	r.SetBasicAuth("u", "basic")
	if got := RequestSecret(r); got != "q" {
		t.Errorf("query first: %q", got)
	}
	r = httptest.NewRequest("POST", "/x", nil)
	r.SetBasicAuth("u", "basic")
	if got := RequestSecret(r); got != "basic" {
		t.Errorf("basic auth: %q", got)
	}
}

func TestSender(t *testing.T) {
	by := map[string]string{"US": "+15005550006"}
	for _, tc := range []struct {
		msg  gateway.Message
		want string
	}{
		{gateway.Message{Country: "GB"}, "InfoSMS"},
		{gateway.Message{Country: "US"}, "+15005550006"},
		{gateway.Message{Country: "US", From: "Acme"}, "Acme"},
	} {
		if got := Sender(&tc.msg, by, "InfoSMS"); got != tc.want {
			t.Errorf("Sender(%+v) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}
