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

// SecretMatches compares a secret a report carried with the configured one in constant time;
// an empty configured secret matches nothing.
func SecretMatches(got string, want gateway.Secret) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want.Reveal())) == 1
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
