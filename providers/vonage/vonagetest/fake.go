// Package vonagetest is a fake Vonage for tests: the SMS API (POST /sms/json, a form with
// api_key and api_secret, answering 200 with a status per message part as the spec describes,
// long texts in several parts) and the Voice API (POST /v1/calls, checking the RS256 JWT with the
// application's public key, done here with crypto/rsa and not a JWT library). It records requests
// and switches modes at run time.
package vonagetest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/smsgate/smsgate/providers/internal/fakeserver"
)

// Mode is how the fake answers.
type Mode int32

// Modes.
const (
	OK          Mode = iota // every part status "0"
	Unavailable             // 503
	Hang                    // never answers until the client gives up or Release is called
	Throttled               // 200 with status "1"
	Barred                  // 200 with status "7" (number barred)
	Partial                 // 200 with two parts: "0" then "5"
)

// Request is one recorded call.
type Request struct {
	Method, Path, ContentType string
	// Form is the SMS API's form; Body the Voice API's JSON; Claims the verified JWT's claims.
	Form   url.Values
	Body   map[string]any
	Claims map[string]any
}

// Fake is the handler; use it with httptest.NewServer.
type Fake struct {
	fakeserver.Control[Request]
	key, secret, appID string
	pub                *rsa.PublicKey
}

// New returns a fake for one account and one application (pub verifies its JWTs).
func New(apiKey, apiSecret, appID string, pub *rsa.PublicKey, record bool) *Fake {
	f := &Fake{key: apiKey, secret: apiSecret, appID: appID, pub: pub}
	f.Init(record)
	return f
}

// SetMode switches how sends are answered.
func (f *Fake) SetMode(m Mode) { f.SetModeValue(int32(m)) }

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	n := f.NextCall()
	req := Request{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type")}
	switch r.URL.Path {
	case "/sms/json":
		req.Form, _ = url.ParseQuery(string(raw))
		f.Record(req)
		if r.Method != http.MethodPost {
			w.WriteHeader(405)
			return
		}
		if req.Form.Get("api_key") != f.key || req.Form.Get("api_secret") != f.secret {
			write(w, 200, `{"message-count":"1","messages":[{"status":"4","error-text":"Bad Credentials"}]}`)
			return
		}
	case "/v1/calls":
		_ = json.Unmarshal(raw, &req.Body)
		claims, err := f.verify(r.Header.Get("Authorization"))
		req.Claims = claims
		f.Record(req)
		if err != nil {
			write(w, 401, fmt.Sprintf(`{"type":"https://developer.nexmo.com/api-errors#unauthorized","title":"Unauthorized","detail":%q}`, err.Error()))
			return
		}
	default:
		write(w, 404, `{"type":"https://developer.nexmo.com/api-errors#not-found","title":"Not Found"}`)
		return
	}
	m, ok := f.Begin(w, r, int32(Hang))
	if !ok {
		return
	}
	mode := Mode(m)
	if mode == Unavailable {
		write(w, 503, `{"type":"https://developer.nexmo.com/api-errors#internal-error","title":"Internal Error"}`)
		return
	}
	if r.URL.Path == "/v1/calls" {
		write(w, 201, fmt.Sprintf(`{"uuid":"%08x-aaaa-bbbb-cccc-000000000000","status":"started","direction":"outbound","conversation_uuid":"CON-%08x-aaaa-bbbb-cccc-000000000000"}`, n, n))
		return
	}
	to, ref := req.Form.Get("to"), req.Form.Get("client-ref")
	part := func(i int, status string) string {
		if status != "0" {
			return fmt.Sprintf(`{"status":%q,"error-text":"simulated"}`, status)
		}
		return fmt.Sprintf(`{"to":%q,"message-id":"%04X%012X","status":"0","remaining-balance":"3.14","message-price":"0.0333","network":"23410","client-ref":%q}`, to, i, n, ref)
	}
	parts := []string{part(0, "0")}
	switch mode {
	case Throttled:
		parts = []string{part(0, "1")}
	case Barred:
		parts = []string{part(0, "7")}
	case Partial:
		parts = append(parts, part(1, "5"))
	default:
		for i := 1; i < (len([]rune(req.Form.Get("text")))+152)/153 && len([]rune(req.Form.Get("text"))) > 160; i++ {
			parts = append(parts, part(i, "0"))
		}
	}
	write(w, 200, fmt.Sprintf(`{"message-count":"%d","messages":[%s]}`, len(parts), strings.Join(parts, ",")))
}

// verify checks "Bearer <jwt>": RS256 over header.payload with the public key, and the claims
// application_id (this application's), iat, jti and exp.
func (f *Fake) verify(h string) (map[string]any, error) {
	tok, ok := strings.CutPrefix(h, "Bearer ")
	parts := strings.Split(tok, ".")
	if !ok || len(parts) != 3 {
		return nil, fmt.Errorf("no bearer JWT")
	}
	var head map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if json.Unmarshal(hb, &head) != nil || head["alg"] != "RS256" {
		return nil, fmt.Errorf("not RS256")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("bad signature encoding")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(f.pub, crypto.SHA256, sum[:], sig); err != nil {
		return nil, fmt.Errorf("bad signature")
	}
	var claims map[string]any
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if json.Unmarshal(pb, &claims) != nil {
		return nil, fmt.Errorf("bad claims")
	}
	for _, c := range []string{"iat", "jti", "exp"} {
		if claims[c] == nil {
			return claims, fmt.Errorf("claim %s missing", c)
		}
	}
	if claims["application_id"] != f.appID {
		return claims, fmt.Errorf("wrong application")
	}
	return claims, nil
}

func write(w http.ResponseWriter, status int, body string) { fakeserver.WriteJSON(w, status, body) }
