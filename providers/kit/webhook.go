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
	ok := subtle.ConstantTimeCompare([]byte(got), []byte(want.Reveal()))
	for _, w := range previous {
		if w != "" {
			ok |= subtle.ConstantTimeCompare([]byte(got), []byte(w.Reveal()))
		}
	}
	return ok == 1
}

// Reveal is the values of secrets and of more, for New (the texts kept out of errors): a driver's
// own secrets, and the previous values of one it rotates.
func Reveal(more []gateway.Secret, secrets ...gateway.Secret) []string {
	out := make([]string, 0, len(secrets)+len(more))
	for _, s := range append(secrets, more...) {
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
