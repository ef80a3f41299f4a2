package kit

import (
	"crypto/subtle"
	"net/http"
	"net/url"

	"github.com/smsgate/smsgate/gateway"
)

// SecretURL is the callback URL of a provider that signs nothing: the webhook secret rides as
// ?secret= (such URLs reach the provider's and proxies' access logs; the driver pages say so).
// Without a callback or a secret it is "": reports would be refused, so none is asked for.
func SecretURL(callback string, secret gateway.Secret) string {
	if callback == "" || secret == "" {
		return ""
	}
	return callback + "?secret=" + url.QueryEscape(secret.Reveal())
}

// SecretMatches compares a secret a report carried with the configured one, and with those it
// replaced (previous_webhook_secrets: reports of messages sent before a rotation carry the old
// one for hours), each in constant time and every one compared; an empty configured secret
// matches nothing.
func SecretMatches(got string, want gateway.Secret, previous ...gateway.Secret) bool {
	if want == "" {
		return false
	}
	ok := 0
	for _, w := range append([]gateway.Secret{want}, previous...) {
		if w != "" {
			ok |= subtle.ConstantTimeCompare([]byte(got), []byte(w.Reveal()))
		}
	}
	return ok == 1
}

// Reveal is the secrets' values, for New (the texts kept out of errors).
func Reveal(secrets ...gateway.Secret) []string {
	out := make([]string, 0, len(secrets))
	for _, s := range secrets {
		out = append(out, s.Reveal())
	}
	return out
}

// RequestSecret is the secret a report request carries: ?secret=, else the password of HTTP
// basic auth.
func RequestSecret(r *http.Request) string {
	got := r.URL.Query().Get("secret")
	if _, pw, ok := r.BasicAuth(); ok && got == "" {
		got = pw
	}
	return got
}
