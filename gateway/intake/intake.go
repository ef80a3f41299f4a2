// Package intake turns what callers post into a gateway request: it recognizes the three Auth0
// payload shapes (the Actions send-phone-message event, the custom-phone-provider event and the
// legacy Send Phone Message hook call, plus a flat form of the hook) and normalizes recipients to
// E.164 with the country of the whole number (libphonenumber).
package intake

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/smsgate/smsgate/gateway"
)

// Payload shapes.
const (
	ShapeAction              = "send-phone-message"
	ShapeCustomPhoneProvider = "custom-phone-provider"
	ShapeHook                = "hook"
	ShapeFlat                = "flat"
)

// Request is a decoded payload before normalization of the recipient.
type Request struct {
	Shape      string
	Recipient  string
	Text       string
	Code       string
	Type       gateway.MessageType
	Action     string
	Language   string
	IP         string
	ClientID   string
	ClientName string
	From       string
}

// Error is a caller error with a stable code.
type Error struct {
	Code    string
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

func bad(code, msg string) *Error { return &Error{Code: code, Message: msg} }

// Decode parses a request body of any supported shape.
func Decode(body []byte) (*Request, error) {
	// JSON is UTF-8 (RFC 8259). encoding/json would put U+FFFD in place of a bad byte only in
	// strings it unescapes, and str takes the others as they are: one text could reach a provider
	// raw or altered depending on an escape elsewhere in it. Refused instead, whole.
	if !utf8.Valid(body) {
		return nil, bad("invalid_json", "the body is not valid UTF-8")
	}
	var w wire
	// Unmarshal rather than a Decoder: no buffer copied from a reader the body already is (every
	// field is a str, so no number needs UseNumber). A body it refuses is read again by
	// decodeProblem, which says what is wrong; that path is cold.
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, decodeProblem(body, err)
	}
	var r Request
	switch {
	case w.MessageOptions != nil:
		mo := w.MessageOptions
		r = Request{Shape: ShapeAction, Recipient: mo.Recipient.s(), Text: mo.Text.s(), Code: mo.Code.s(),
			Type: gateway.MessageType(mo.MessageType.s()), Action: mo.Action.s()}
		if w.Request != nil {
			r.IP, r.Language = w.Request.IP.s(), w.Request.Language.s()
		}
		r.ClientID, r.ClientName = w.Client.id(), w.Client.name()
	case w.Notification != nil:
		n := w.Notification
		r = Request{Shape: ShapeCustomPhoneProvider, Recipient: n.Recipient.s(), Code: n.Code.s(), Language: n.Locale.s(), From: n.From.s()}
		switch n.DeliveryMethod.s() {
		case "voice":
			r.Type, r.Text = gateway.Voice, n.AsVoice.s()
		case "text", "":
			r.Type, r.Text = gateway.SMS, n.AsText.s()
		default:
			return nil, bad("invalid_request", "notification.delivery_method must be text or voice")
		}
		switch mt := n.MessageType.s(); mt {
		case "otp_enroll":
			r.Action = "enrollment"
		case "otp_verify":
			r.Action = "second-factor-authentication"
		default:
			r.Action = mt
		}
		if w.Request != nil {
			r.IP = w.Request.IP.s()
			if r.Language == "" {
				r.Language = w.Request.Language.s()
			}
		}
		r.ClientID, r.ClientName = w.Client.id(), w.Client.name()
	case w.Recipient != nil && w.Context != nil:
		c := w.Context
		r = Request{Shape: ShapeHook, Recipient: w.Recipient.s(), Text: w.Text.s(), Code: c.Code.s(),
			Type: gateway.MessageType(c.MessageType.s()), Action: c.Action.s(), Language: c.Language.s(), IP: c.IP.s()}
		r.ClientID, r.ClientName = c.ClientID.s(), c.Name.s()
		if c.Client != nil {
			if id := c.Client.id(); id != "" {
				r.ClientID = id
			}
			if n := c.Client.name(); n != "" {
				r.ClientName = n
			}
		}
	case w.Recipient != nil:
		r = Request{Shape: ShapeFlat, Recipient: w.Recipient.s(), Text: w.Text.s(), Code: w.Code.s(),
			Type: gateway.MessageType(w.MessageType.s()), Action: w.Action.s(), Language: w.Language.s(), IP: w.IP.s(), ClientID: w.ClientID.s(), From: w.From.s()}
	default:
		return nil, bad("unknown_shape", "the body is none of the supported shapes: an Auth0 send-phone-message event (message_options), a custom-phone-provider event (notification) or a hook call (recipient, text, context)")
	}
	if err := Check(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Check normalizes a request's type and text and enforces what every request must meet: a
// recipient, a text or a code, the code's and the text's limits. Every way in (the Auth0 shapes,
// the Infobip-compatible API) goes through it.
func Check(r *Request) error {
	if r.Type == "text" || r.Type == "" {
		r.Type = gateway.SMS
	}
	if r.Type != gateway.SMS && r.Type != gateway.Voice {
		return bad("invalid_request", "message_type must be sms or voice")
	}
	if strings.TrimSpace(r.Recipient) == "" {
		return bad("invalid_request", "the recipient is missing")
	}
	if strings.TrimSpace(r.Text) == "" && r.Code == "" {
		return bad("invalid_request", "the text is missing")
	}
	if !validCode(r.Code) {
		return bad("invalid_request", "the code must be at most "+strconv.Itoa(MaxCodeLen)+" letters or digits")
	}
	// The code becomes the text when the payload has none: check what will be sent, in characters.
	if strings.TrimSpace(r.Text) == "" {
		r.Text = r.Code
	}
	// Decode refuses a body that is not UTF-8; this covers the ways in that are no JSON body (the
	// Infobip-compatible text/query takes the text from the query string, where %FF is a byte).
	for _, v := range [...]string{r.Text, r.ClientID, r.Action, r.Language, r.From} {
		if !utf8.ValidString(v) {
			return bad("invalid_request", "the request has a field that is not valid UTF-8")
		}
	}
	if utf8.RuneCountInString(r.Text) > MaxTextChars {
		return bad("invalid_request", "the text is longer than "+strconv.Itoa(MaxTextChars)+" characters")
	}
	// A control character has no place in a message a phone shows or speaks, and a provider that
	// refuses one would count it as its own failure in the breaker every tenant shares.
	if strings.ContainsFunc(r.Text, controlChar) {
		return bad("invalid_request", "the text has a control character (only tab and line breaks are allowed)")
	}
	// A voice text is read aloud by providers that make pauses of what is in it: SSML markup
	// (Infobip, Vonage; <break time="10s"/>) and, on Infobip's calls, each comma (half a second).
	// Either makes a call as long as its caller likes: minutes of the shared account no spend
	// limit counts, holding one of the voice channels every tenant's calls share. Auth0's voice
	// templates hold neither.
	if r.Type == gateway.Voice {
		if strings.ContainsRune(r.Text, '<') {
			return bad("invalid_request", "a voice text may not hold '<': providers read it as SSML markup, whose pauses lengthen a call at will")
		}
		if pausesInARow(r.Text) {
			return bad("invalid_request", "a voice text may not hold two commas with nothing spoken between them: each is half a second of silence in a call")
		}
	}
	// What Auth0 sends in these is far shorter; longer would only grow what every tenant shares
	// (each record of the message log, the state store's keys).
	for _, f := range [...]struct {
		name, v string
		most    int
	}{{"the client id", r.ClientID, MaxClientIDLen}, {"the action", r.Action, MaxActionLen}, {"the language", r.Language, MaxLanguageLen}} {
		if len(f.v) > f.most {
			return bad("invalid_request", f.name+" is longer than "+strconv.Itoa(f.most)+" bytes")
		}
	}
	if r.IP != "" {
		ip, ok := IPKey(r.IP)
		if !ok {
			return bad("invalid_request", "the request's ip is not an IP address")
		}
		r.IP = ip
	}
	return nil
}

// IPKey returns the end user's address as per_ip counts it: an IPv4 address (also when written
// as IPv4-mapped IPv6) as itself, an IPv6 address as its /64, the least a home or a phone is
// given, so that walking through one's own /64 does not escape the limit. The zone is dropped.
func IPKey(s string) (string, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		// Most callers send the canonical form already: keep their string, allocate nothing.
		var buf [15]byte
		if b := a.AppendTo(buf[:0]); string(b) != s {
			return string(b), true
		}
		return s, true
	}
	return netip.PrefixFrom(a, 64).Masked().String(), true
}

// Limits of what a caller may send; longer is a 400 before policy or any provider sees it.
const (
	// MaxCodeLen is the most letters or digits a one-time code may have.
	MaxCodeLen = 32
	// MaxTextChars is the most characters (Unicode code points) a text or voice text may have,
	// after the code is put where it is used.
	MaxTextChars = 1600
	// MaxClientIDLen, MaxActionLen and MaxLanguageLen bound the client id (Auth0's are 32
	// characters), the action (Auth0's longest is under 40) and the language (a BCP 47 tag;
	// RFC 5646 asks for at least 35 characters to be kept), in bytes.
	MaxClientIDLen = 128
	MaxActionLen   = 64
	MaxLanguageLen = 35
)

// CheckSender is nil for a sender gateway.ValidSender takes, else the 400 that says which forms
// are. A sender a tenant chooses (tenants.allow_sender, allowed_senders) is checked before any
// provider sees it: a provider that refuses one in a form it does not take counts that as its
// own failure (Mitto, Esendex and Vonage do), and enough of them would open the breaker that
// every tenant shares.
func CheckSender(from string) error {
	if gateway.ValidSender(from) {
		return nil
	}
	return bad("invalid_request", "from must be a phone number of 3 to 15 digits (optionally after +) or a sender ID of 3 to 11 letters, digits, spaces, '-' or '.' with at least one letter")
}

// controlChar reports whether c is a control character a text may not hold: any (C0, DEL, C1)
// but tab, line feed, carriage return and NEL (U+0085), which are line breaks.
func controlChar(c rune) bool {
	return unicode.IsControl(c) && c != '\t' && c != '\n' && c != '\r' && c != 0x85
}

// pausesInARow reports whether text holds two commas with no letter or digit between them: ",,",
// but also ", ," or ",.,". Infobip pauses half a second at each comma, whatever stands between
// (its documented way to lengthen a call is a run of them), so spaces between commas are no
// way round the rule; "1, 2, 3" speaks something between each.
func pausesInARow(text string) bool {
	comma := false
	for _, c := range text {
		switch {
		case c == ',':
			if comma {
				return true
			}
			comma = true
		case unicode.IsLetter(c) || unicode.IsNumber(c):
			comma = false
		}
	}
	return false
}

// validCode reports whether code is empty or at most MaxCodeLen ASCII letters and digits.
func validCode(code string) bool {
	if len(code) > MaxCodeLen {
		return false
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// decodeProblem explains why Unmarshal refused body with err: data after a whole object (which a
// Decoder reads alone), or err itself.
func decodeProblem(body []byte, err error) *Error {
	var w wire
	if json.NewDecoder(bytes.NewReader(body)).Decode(&w) == nil {
		return bad("invalid_json", "the body has data after the JSON object")
	}
	return bad("invalid_json", jsonProblem(err))
}

func jsonProblem(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return "the body is not a JSON object: syntax error at byte " + itoa(e.Offset)
	case *json.UnmarshalTypeError:
		if e.Field == "" { // the body itself: an array, a string, a number
			return "the body is a JSON " + e.Value + ", not an object"
		}
		return "field " + e.Field + " has the wrong type (" + e.Value + ")"
	}
	return "the body is not a JSON object"
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// str accepts a JSON string, number or bool and keeps its text; objects and arrays are rejected by
// the decoder as wrong types.
type str struct{ v string }

func (x *str) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		// Fast path: most strings need no unescaping (the decoder has already validated b, and
		// Decode its UTF-8).
		if len(b) >= 2 && bytes.IndexByte(b, '\\') < 0 {
			x.v = string(b[1 : len(b)-1])
			return nil
		}
		return json.Unmarshal(b, &x.v)
	}
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '{' {
		return &json.UnmarshalTypeError{Value: "object"}
	}
	if len(b) > 0 && b[0] == '[' {
		return &json.UnmarshalTypeError{Value: "array"}
	}
	x.v = string(b)
	return nil
}

func (x *str) s() string {
	if x == nil {
		return ""
	}
	return strings.TrimSpace(x.v)
}

type client struct {
	ClientID *str `json:"client_id"`
	Name     *str `json:"name"`
}

func (c *client) id() string {
	if c == nil {
		return ""
	}
	return c.ClientID.s()
}

func (c *client) name() string {
	if c == nil {
		return ""
	}
	return c.Name.s()
}

type wire struct {
	// Actions send-phone-message event.
	MessageOptions *struct {
		Recipient   *str `json:"recipient"`
		Text        *str `json:"text"`
		Action      *str `json:"action"`
		Code        *str `json:"code"`
		MessageType *str `json:"message_type"`
	} `json:"message_options"`
	// custom-phone-provider event.
	Notification *struct {
		Recipient      *str `json:"recipient"`
		AsText         *str `json:"as_text"`
		AsVoice        *str `json:"as_voice"`
		Code           *str `json:"code"`
		DeliveryMethod *str `json:"delivery_method"`
		Locale         *str `json:"locale"`
		MessageType    *str `json:"message_type"`
		From           *str `json:"from"`
	} `json:"notification"`
	Client  *client `json:"client"`
	Request *struct {
		IP       *str `json:"ip"`
		Language *str `json:"language"`
	} `json:"request"`
	// Hook call and flat form.
	Recipient *str `json:"recipient"`
	Text      *str `json:"text"`
	Context   *struct {
		MessageType *str    `json:"message_type"`
		Action      *str    `json:"action"`
		Language    *str    `json:"language"`
		Code        *str    `json:"code"`
		IP          *str    `json:"ip"`
		ClientID    *str    `json:"client_id"`
		Name        *str    `json:"name"`
		Client      *client `json:"client"`
	} `json:"context"`
	Code        *str `json:"code"`
	MessageType *str `json:"message_type"`
	Action      *str `json:"action"`
	Language    *str `json:"language"`
	IP          *str `json:"ip"`
	ClientID    *str `json:"client_id"`
	From        *str `json:"from"`
}
