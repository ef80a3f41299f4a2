// Package infobiptest is a fake Infobip API for tests and the bench tool: a real HTTP handler that
// checks the method, path and "Authorization: App <key>" header, records requests, and answers
// with the spec's bodies. Its mode switches at run time (OK, 503, hanging, REJECTED in a 200) so
// tests and outage drills can take it down and bring it back.
package infobiptest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/smsgate/smsgate/providers/internal/fakeserver"
)

// Mode is how the fake answers sends.
type Mode int32

// Modes.
const (
	OK          Mode = iota // 200 with a PENDING_ACCEPTED status
	Unavailable             // 503 with a legacy error body
	Hang                    // never answers until the client gives up or Release is called
	Rejected                // 200 with REJECTED_DESTINATION
	NoCredit                // 200 with REJECTED_NOT_ENOUGH_CREDITS
	Throttled               // 429 TOO_MANY_REQUESTS with Retry-After: 30
)

// Request is one recorded call.
type Request struct {
	Method, Path, Authorization, ContentType, Accept string
	Body                                             map[string]any
	// Raw is the body as sent.
	Raw []byte
	At  time.Time
}

// Fake is the handler; use it with httptest.NewServer.
type Fake struct {
	fakeserver.Control[Request]
	apiKey string
	// voiceDown makes the voice API answer 503 whatever the mode: an outage of Infobip's voice
	// platform alone, while SMS works.
	voiceDown atomic.Bool
	// failText makes a message whose text contains it draw a 500: a provider's bug that one
	// tenant's content sets off.
	failText atomic.Pointer[string]
	// throughput, when set, is the account's rate: sends beyond it draw a 429 (throttled counts them).
	throughput atomic.Pointer[rate.Limiter]
	throttled  atomic.Int64
}

// SetThroughput gives the account a rate of perSecond sends (a burst of as many), beyond which a
// send draws 429 TOO_MANY_REQUESTS with Retry-After: 1, as an account at its throughput does;
// 0 removes it.
func (f *Fake) SetThroughput(perSecond int) {
	if perSecond <= 0 {
		f.throughput.Store(nil)
		return
	}
	f.throughput.Store(rate.NewLimiter(rate.Limit(perSecond), perSecond))
}

// Throttled is how many sends the throughput refused.
func (f *Fake) Throttled() int64 { return f.throttled.Load() }

// SetVoiceDown switches the voice API's outage on or off.
func (f *Fake) SetVoiceDown(down bool) { f.voiceDown.Store(down) }

// SetFailText makes every message whose text contains s answer 500 whatever the mode ("": none).
func (f *Fake) SetFailText(s string) { f.failText.Store(&s) }

// New returns a fake that accepts apiKey; record keeps every request for inspection.
func New(apiKey string, record bool) *Fake {
	f := &Fake{apiKey: apiKey}
	f.Init(record)
	return f
}

// SetMode switches how sends are answered.
func (f *Fake) SetMode(m Mode) { f.SetModeValue(int32(m)) }

type sendBody struct {
	Messages []struct {
		Text string `json:"text"`
		// Content holds the text in SMS API v3.
		Content struct {
			Text string `json:"text"`
		} `json:"content"`
		Destinations []struct {
			To        string `json:"to"`
			MessageID string `json:"messageId"`
		} `json:"destinations"`
	} `json:"messages"`
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	switch r.URL.Path {
	case "/sms/3/messages", "/sms/2/text/advanced", "/tts/3/advanced":
	default:
		writeJSON(w, 404, `{"requestError":{"serviceException":{"messageId":"NOT_FOUND","text":"Not found"}}}`)
		return
	}
	n := f.NextCall()
	req := Request{Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"),
		Accept: r.Header.Get("Accept"), Raw: raw, At: time.Now()}
	_ = json.Unmarshal(raw, &req.Body)
	f.Record(req)
	if r.Method != http.MethodPost {
		writeJSON(w, 405, `{"requestError":{"serviceException":{"messageId":"BAD_REQUEST","text":"Method not allowed"}}}`)
		return
	}
	if r.Header.Get("Authorization") != "App "+f.apiKey {
		writeJSON(w, 401, `{"requestError":{"serviceException":{"messageId":"UNAUTHORIZED","text":"Invalid login details"}}}`)
		return
	}
	m, ok := f.Begin(w, r, int32(Hang))
	if !ok {
		return
	}
	mode := Mode(m)
	if r.URL.Path == "/tts/3/advanced" && f.voiceDown.Load() {
		mode = Unavailable
	}
	if l := f.throughput.Load(); l != nil && !l.Allow() {
		f.throttled.Add(1)
		w.Header().Set("Retry-After", "1")
		writeJSON(w, 429, `{"requestError":{"serviceException":{"messageId":"TOO_MANY_REQUESTS","text":"Too many requests"}}}`)
		return
	}
	if mode == Throttled {
		w.Header().Set("Retry-After", "30")
		writeJSON(w, 429, `{"requestError":{"serviceException":{"messageId":"TOO_MANY_REQUESTS","text":"Too many requests"}}}`)
		return
	}
	if mode == Unavailable {
		writeJSON(w, 503, `{"requestError":{"serviceException":{"messageId":"GENERAL_ERROR","text":"Something went wrong. Please contact support."}}}`)
		return
	}
	var b sendBody
	if json.Unmarshal(raw, &b) != nil || len(b.Messages) == 0 || len(b.Messages[0].Destinations) == 0 {
		writeJSON(w, 400, `{"errorCode":"E400","description":"Request cannot be processed.","action":"Check the syntax, violations and adjust the request.","violations":[{"property":"messages","violation":"must not be empty"}],"resources":[]}`)
		return
	}
	if ft := f.failText.Load(); ft != nil && *ft != "" && strings.Contains(b.Messages[0].Text+b.Messages[0].Content.Text, *ft) {
		writeJSON(w, 500, `{"requestError":{"serviceException":{"messageId":"GENERAL_ERROR","text":"Something went wrong. Please contact support."}}}`)
		return
	}
	// The voice API's documented limit: a text of at most 1400 characters.
	if r.URL.Path == "/tts/3/advanced" && utf8.RuneCountInString(b.Messages[0].Text) > 1400 {
		writeJSON(w, 400, `{"errorCode":"E400","description":"Request cannot be processed.","action":"Check the syntax, violations and adjust the request.","violations":[{"property":"messages[0].text","violation":"size must be between 1 and 1400"}],"resources":[]}`)
		return
	}
	d := b.Messages[0].Destinations[0]
	id := d.MessageID
	if id == "" {
		id = fmt.Sprintf("ib-%d", n)
	}
	status := `{"groupId":1,"groupName":"PENDING","id":26,"name":"PENDING_ACCEPTED","description":"Message sent to next instance"}`
	switch mode {
	case Rejected:
		status = `{"groupId":5,"groupName":"REJECTED","id":52,"name":"REJECTED_DESTINATION","description":"Invalid destination address"}`
	case NoCredit:
		status = `{"groupId":5,"groupName":"REJECTED","id":12,"name":"REJECTED_NOT_ENOUGH_CREDITS","description":"Not enough credits"}`
	}
	// v3 names the number "destination" and adds details; v2 and TTS name it "to" (as the specs do).
	tail := fmt.Sprintf(`"to":%q`, d.To)
	if r.URL.Path == "/sms/3/messages" {
		tail = fmt.Sprintf(`"destination":%q,"details":{"messageCount":1}`, d.To)
	}
	writeJSON(w, 200, fmt.Sprintf(`{"bulkId":"bulk-%d","messages":[{"messageId":%q,"status":%s,%s}]}`, n, id, status, tail))
}

func writeJSON(w http.ResponseWriter, status int, body string) { fakeserver.WriteJSON(w, status, body) }
