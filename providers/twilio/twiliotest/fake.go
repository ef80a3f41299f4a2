// Package twiliotest is a fake Twilio API v2010 for tests and the bench tool: a real HTTP handler
// that checks the path's account sid, HTTP basic auth and the form body, records requests, and
// answers 201 with a Message or Call resource. Its mode switches at run time.
package twiliotest

import (
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
	OK               Mode = iota // 201 with status queued
	Unavailable                  // 503 with a Twilio error body
	Hang                         // never answers until the client gives up or Release is called
	InvalidTo                    // 400 with code 21211
	RegionNotEnabled             // 400 with code 21408: this account may not send to the region
)

// Request is one recorded call.
type Request struct {
	Method, Path, User, Password, ContentType, Accept string
	Form                                              url.Values
}

// Fake is the handler; use it with httptest.NewServer.
type Fake struct {
	fakeserver.Control[Request]
	sid, token string
}

// New returns a fake for one account; record keeps every request.
func New(accountSID, authToken string, record bool) *Fake {
	f := &Fake{sid: accountSID, token: authToken}
	f.Init(record)
	return f
}

// SetMode switches how requests are answered.
func (f *Fake) SetMode(m Mode) { f.SetModeValue(int32(m)) }

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	prefix := "/2010-04-01/Accounts/" + f.sid + "/"
	kind := strings.TrimPrefix(r.URL.Path, prefix)
	if !strings.HasPrefix(r.URL.Path, prefix) || (kind != "Messages.json" && kind != "Calls.json") {
		writeJSON(w, 404, `{"code":20404,"message":"The requested resource was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}`)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(raw))
	n := f.NextCall()
	user, pass, _ := r.BasicAuth()
	f.Record(Request{Method: r.Method, Path: r.URL.Path, User: user, Password: pass, ContentType: r.Header.Get("Content-Type"), Accept: r.Header.Get("Accept"), Form: form})
	if user != f.sid || pass != f.token {
		writeJSON(w, 401, `{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}`)
		return
	}
	m, ok := f.Begin(w, r, int32(Hang))
	if !ok {
		return
	}
	mode := Mode(m)
	switch {
	case mode == Unavailable:
		writeJSON(w, 503, `{"code":20500,"message":"Service unavailable","more_info":"https://www.twilio.com/docs/errors/20500","status":503}`)
		return
	case mode == RegionNotEnabled:
		writeJSON(w, 400, `{"code":21408,"message":"Permission to send an SMS has not been enabled for the region indicated by the 'To' number","more_info":"https://www.twilio.com/docs/errors/21408","status":400}`)
		return
	case mode == InvalidTo:
		writeJSON(w, 400, `{"code":21211,"message":"The 'To' number is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}`)
		return
	case form.Get("To") == "":
		writeJSON(w, 400, `{"code":21604,"message":"A 'To' phone number is required.","more_info":"https://www.twilio.com/docs/errors/21604","status":400}`)
		return
	}
	if kind == "Calls.json" {
		writeJSON(w, 201, fmt.Sprintf(`{"sid":"CA%032x","account_sid":%q,"to":%q,"from":%q,"status":"queued","direction":"outbound-api","api_version":"2010-04-01"}`, n, f.sid, form.Get("To"), form.Get("From")))
		return
	}
	// Twilio answers null, not "", for a message sent without a messaging service (the spec's
	// pattern refuses ""), and likewise for a from that a messaging service picks later.
	nullable := func(v string) string {
		if v == "" {
			return "null"
		}
		return fmt.Sprintf("%q", v)
	}
	writeJSON(w, 201, fmt.Sprintf(`{"sid":"SM%032x","account_sid":%q,"to":%q,"from":%s,"messaging_service_sid":%s,"body":"","status":"queued","num_segments":"1","direction":"outbound-api","api_version":"2010-04-01","price":null,"error_code":null,"error_message":null}`,
		n, f.sid, form.Get("To"), nullable(form.Get("From")), nullable(form.Get("MessagingServiceSid"))))
}

func writeJSON(w http.ResponseWriter, status int, body string) { fakeserver.WriteJSON(w, status, body) }
