// Package telesigntest is a fake TeleSign REST API for tests, written from the documented shapes
// (TeleSign publishes no spec in a public repository): POST /v1/messaging and /v1/voice with a
// form body, Basic auth or TSA HMAC signatures (verified here, independently of the driver),
// answers with status.code in the body. It records requests and switches modes at run time.
package telesigntest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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
	OK                Mode = iota // 200 with 290 (SMS) or 103 (voice)
	Unavailable                   // 503 with 10000
	Hang                          // never answers until the client gives up or Release is called
	InsufficientFunds             // 402 with 10030
	InvalidNumber                 // 400 with 11000
)

// Request is one recorded call.
type Request struct {
	Method, Path, ContentType string
	// Auth is "basic" or "hmac" when the credentials were right, "" otherwise.
	Auth string
	Form url.Values
}

// Fake is the handler; use it with httptest.NewServer.
type Fake struct {
	fakeserver.Control[Request]
	customer, key string
}

// New returns a fake for one account (key: base64, as TeleSign issues it).
func New(customerID, apiKey string, record bool) *Fake {
	f := &Fake{customer: customerID, key: apiKey}
	f.Init(record)
	return f
}

// SetMode switches how sends are answered.
func (f *Fake) SetMode(m Mode) { f.SetModeValue(int32(m)) }

func status(w http.ResponseWriter, http int, code int, desc string) {
	fakeserver.WriteJSON(w, http, fmt.Sprintf(`{"reference_id":"","status":{"code":%d,"description":%q,"updated_on":"2026-11-30T12:00:00Z"}}`, code, desc))
}

// auth checks Basic customer:key, or TSA customer:signature recomputed here from the request.
func (f *Fake) auth(r *http.Request, body string) string {
	if u, p, ok := r.BasicAuth(); ok && u == f.customer && p == f.key {
		return "basic"
	}
	cust, sig, ok := strings.Cut(strings.TrimPrefix(r.Header.Get("Authorization"), "TSA "), ":")
	if !ok || cust != f.customer || r.Header.Get("x-ts-auth-method") != "HMAC-SHA256" {
		return ""
	}
	s := strings.Join([]string{r.Method, r.Header.Get("Content-Type"), r.Header.Get("Date"), "x-ts-auth-method:HMAC-SHA256",
		"x-ts-nonce:" + r.Header.Get("x-ts-nonce"), body, r.URL.Path}, "\n")
	key, _ := base64.StdEncoding.DecodeString(f.key)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	if base64.StdEncoding.EncodeToString(m.Sum(nil)) != sig {
		return ""
	}
	return "hmac"
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/messaging" && r.URL.Path != "/v1/voice" {
		status(w, 404, 10000, "Not found")
		return
	}
	raw, _ := io.ReadAll(r.Body)
	n := f.NextCall()
	req := Request{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Auth: f.auth(r, string(raw))}
	req.Form, _ = url.ParseQuery(string(raw))
	f.Record(req)
	switch {
	case r.Method != http.MethodPost:
		status(w, 405, 10000, "Method not allowed")
		return
	case req.Auth == "":
		status(w, 401, 10008, "Invalid signature")
		return
	case req.Form.Get("phone_number") == "":
		status(w, 400, 12000, "Missing required parameter phone_number")
		return
	}
	m, ok := f.Begin(w, r, int32(Hang))
	if !ok {
		return
	}
	mode := Mode(m)
	switch mode {
	case Unavailable:
		status(w, 503, 10000, "System unavailable, please try again later.")
		return
	case InsufficientFunds:
		status(w, 402, 10030, "Insufficient funds in prepaid wallet")
		return
	case InvalidNumber:
		status(w, 400, 11000, "Invalid value for parameter phone_number.")
		return
	}
	code, desc := 290, "Message in progress"
	if r.URL.Path == "/v1/voice" {
		code, desc = 103, "Call in progress"
	}
	fakeserver.WriteJSON(w, 200, fmt.Sprintf(`{"reference_id":"%032X","status":{"code":%d,"description":%q,"updated_on":"2026-11-30T12:00:00Z"},"additional_info":{"message_parts_count":1}}`, n, code, desc))
}
