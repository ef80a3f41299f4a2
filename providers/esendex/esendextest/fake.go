// Package esendextest is a fake Esendex REST API for tests, written from the documented shapes
// (Esendex publishes no spec): POST /v1.0/messagedispatcher with HTTP Basic and the XML the
// official SDKs send, answering messageheaders XML, 402 for no credits, XML or plain-text errors.
// It records requests and switches modes at run time.
package esendextest

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"

	"github.com/smsgate/smsgate/providers/internal/fakeserver"
)

// Mode is how the fake answers.
type Mode int32

// Modes.
const (
	OK           Mode = iota // 200 messageheaders
	Unavailable              // 503 plain text
	Hang                     // never answers until the client gives up or Release is called
	NoCredits                // 402 plain text
	BadRecipient             // 400 XML error naming the recipient
)

// Messages is the dispatcher's request, as recorded.
type Messages struct {
	AccountReference string `xml:"accountreference"`
	From             string `xml:"from"`
	Type             string `xml:"type"`
	Lang             string `xml:"lang"`
	CharacterSet     string `xml:"characterset"`
	Message          []struct {
		To   string `xml:"to"`
		Body string `xml:"body"`
	} `xml:"message"`
}

// Request is one recorded call.
type Request struct {
	Method, Path, ContentType, User string
	Body                            Messages
}

// Fake is the handler; use it with httptest.NewServer.
type Fake struct {
	fakeserver.Control[Request]
	user, password, account string
}

// New returns a fake for one login and account reference.
func New(user, password, account string, record bool) *Fake {
	f := &Fake{user: user, password: password, account: account}
	f.Init(record)
	return f
}

// SetMode switches how sends are answered.
func (f *Fake) SetMode(m Mode) { f.SetModeValue(int32(m)) }

func text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1.0/messagedispatcher" {
		text(w, 404, "Not Found")
		return
	}
	raw, _ := io.ReadAll(r.Body)
	n := f.NextCall()
	u, pw, _ := r.BasicAuth()
	req := Request{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), User: u}
	xmlErr := xml.Unmarshal(raw, &req.Body)
	f.Record(req)
	switch {
	case r.Method != http.MethodPost:
		text(w, 405, "Method Not Allowed")
		return
	case r.Header.Get("Authorization") == "":
		text(w, 401, "Unauthorized")
		return
	case u != f.user || pw != f.password:
		text(w, 403, "Forbidden")
		return
	case xmlErr != nil || len(req.Body.Message) == 0:
		text(w, 400, "Bad Request: malformed body")
		return
	case req.Body.AccountReference != f.account:
		text(w, 403, "Forbidden: account reference")
		return
	}
	m, ok := f.Begin(w, r, int32(Hang))
	if !ok {
		return
	}
	mode := Mode(m)
	switch mode {
	case Unavailable:
		text(w, 503, "Service Unavailable")
		return
	case NoCredits:
		text(w, 402, "Payment Required")
		return
	case BadRecipient:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(400)
		fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?><errors xmlns="http://api.esendex.com/ns/"><error><description>Invalid recipient: not a valid phone number</description></error></errors>`)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?><messageheaders batchid="F8BF9867-FF81-49E4-ACC5-774DE793B776" xmlns="http://api.esendex.com/ns/"><messageheader uri="https://api.esendex.com/v1.0/messageheaders/%[1]s" id="%[1]s" /></messageheaders>`,
		fmt.Sprintf("1183C73D-%04X-46A4-9E12-%012X", n%0x10000, n))
}
