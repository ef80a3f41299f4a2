package intake

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
)

func TestDecodeShapes(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Request
	}{
		{
			name: "actions send-phone-message event",
			body: `{"message_options":{"recipient":"+14155550104","text":"Your code is 123456","action":"second-factor-authentication","code":"123456","message_type":"sms"},
				"client":{"client_id":"abc123","name":"App","metadata":{}},"request":{"ip":"203.0.113.9","method":"POST","language":"en-US","geoip":{"countryCode":"US"}},
				"user":{"user_id":"auth0|1"},"tenant":{"id":"t1"},"secrets":{}}`,
			want: Request{Shape: ShapeAction, Recipient: "+14155550104", Text: "Your code is 123456", Code: "123456", Type: gateway.SMS,
				Action: "second-factor-authentication", Language: "en-US", IP: "203.0.113.9", ClientID: "abc123", ClientName: "App"},
		},
		{
			name: "custom-phone-provider voice",
			body: `{"notification":{"recipient":"+447911123456","as_text":"t 1234","as_voice":"Your code is 1. 2. 3. 4","code":"1234","delivery_method":"voice","locale":"en_GB","message_type":"otp_verify","from":"+15550001111"},
				"client":{"client_id":"c9"},"request":{"ip":"198.51.100.1"},"tenant":{"id":"t"}}`,
			want: Request{Shape: ShapeCustomPhoneProvider, Recipient: "+447911123456", Text: "Your code is 1. 2. 3. 4", Code: "1234", Type: gateway.Voice,
				Action: "second-factor-authentication", Language: "en_GB", IP: "198.51.100.1", ClientID: "c9", From: "+15550001111"},
		},
		{
			name: "custom-phone-provider text enrollment, language from request",
			body: `{"notification":{"recipient":"+447911123456","as_text":"code 1234","delivery_method":"text","message_type":"otp_enroll"},"request":{"language":"fr"}}`,
			want: Request{Shape: ShapeCustomPhoneProvider, Recipient: "+447911123456", Text: "code 1234", Type: gateway.SMS, Action: "enrollment", Language: "fr"},
		},
		{
			name: "custom-phone-provider without a delivery method: a text",
			body: `{"notification":{"recipient":"+447911123456","as_text":"code 1234","as_voice":"code 1. 2. 3. 4","message_type":"otp_verify"}}`,
			want: Request{Shape: ShapeCustomPhoneProvider, Recipient: "+447911123456", Text: "code 1234", Type: gateway.SMS, Action: "second-factor-authentication"},
		},
		{
			name: "legacy hook, nested client (hook reference example)",
			body: `{"recipient":"1-808-555-5555","text":"Here is your one time password: 999111","context":{"message_type":"sms","action":"enrollment","language":"en","code":"123456","ip":"127.0.0.1","user_agent":"Mozilla/5.0","client":{"client_id":"1235","name":"Test Application","client_metadata":{}},"user":{"user_id":"auth0|test12345"}}}`,
			want: Request{Shape: ShapeHook, Recipient: "1-808-555-5555", Text: "Here is your one time password: 999111", Code: "123456", Type: gateway.SMS,
				Action: "enrollment", Language: "en", IP: "127.0.0.1", ClientID: "1235", ClientName: "Test Application"},
		},
		{
			name: "legacy hook, flat client and factor_type",
			body: `{"recipient":"+1 (415) 555-0104","text":"code 4321","context":{"factor_type":"second","message_type":"voice","action":"authentication","language":"es","code":"4321","ip":"10.0.0.1","client_id":"flat1","name":"Flat App","client_metadata":{"a":"b"}}}`,
			want: Request{Shape: ShapeHook, Recipient: "+1 (415) 555-0104", Text: "code 4321", Code: "4321", Type: gateway.Voice,
				Action: "authentication", Language: "es", IP: "10.0.0.1", ClientID: "flat1", ClientName: "Flat App"},
		},
		{
			// A nested client without an id or a name leaves the flat ones.
			name: "legacy hook, flat client id beside a nested client without one",
			body: `{"recipient":"+14155550104","text":"code 4321","context":{"client_id":"flat1","name":"Flat App","client":{"client_id":"","name":" "}}}`,
			want: Request{Shape: ShapeHook, Recipient: "+14155550104", Text: "code 4321", Type: gateway.SMS, ClientID: "flat1", ClientName: "Flat App"},
		},
		{
			// A hook call without a text is still a hook call: its code (in the context) is sent.
			name: "legacy hook without a text",
			body: `{"recipient":"+14155550104","context":{"code":"4321","message_type":"voice"}}`,
			want: Request{Shape: ShapeHook, Recipient: "+14155550104", Text: "4321", Code: "4321", Type: gateway.Voice},
		},
		{
			name: "flat body as in Auth0's custom provider example",
			body: `{"from":"+15550001111","recipient":"+14155550104","message_type":"text","text":"code 5555","code":5555,"language":"en","action":"enrollment"}`,
			want: Request{Shape: ShapeFlat, Recipient: "+14155550104", Text: "code 5555", Code: "5555", Type: gateway.SMS, Action: "enrollment", Language: "en", From: "+15550001111"},
		},
		{
			name: "unknown fields and a numeric recipient are tolerated",
			body: `{"recipient":14155550104,"text":"x 1234","context":{"new_field":[1,2],"message_type":"sms"},"extra":{"deep":true}}`,
			want: Request{Shape: ShapeHook, Recipient: "14155550104", Text: "x 1234", Type: gateway.SMS},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tc.want, *got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestCheckTakesTheCodeForABlankText: a request that reaches Check without Decode (the
// Infobip-compatible API, whose strings are not trimmed) and has a text of blanks sends its code
// as the text, or is refused without one: never a message of blanks.
func TestCheckTakesTheCodeForABlankText(t *testing.T) {
	r := &Request{Recipient: "+14155550104", Text: " \t \n", Code: "123456"}
	if err := Check(r); err != nil || r.Text != "123456" {
		t.Errorf("blank text with a code: %v, text %q; want the code as the text", err, r.Text)
	}
	var ie *Error
	if err := Check(&Request{Recipient: "+14155550104", Text: " \t \n"}); !errors.As(err, &ie) || ie.Code != "invalid_request" {
		t.Errorf("blank text without a code: %v, want invalid_request", err)
	}
}

// TestCheckRefusesABlankRecipient: Decode trims what it reads, the Infobip-compatible API's
// destinations reach Check as given.
func TestCheckRefusesABlankRecipient(t *testing.T) {
	var ie *Error
	if err := Check(&Request{Recipient: " \t ", Text: "Code 1234"}); !errors.As(err, &ie) || ie.Code != "invalid_request" || ie.Message != "the recipient is missing" {
		t.Errorf("blank recipient: %v, want invalid_request saying the recipient is missing", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ name, body, code string }{
		{"empty", ``, "invalid_json"},
		{"not json", `hello`, "invalid_json"},
		{"array", `[1,2]`, "invalid_json"},
		{"trailing data", `{"recipient":"1","text":"t"} {}`, "invalid_json"},
		{"unknown shape", `{"to":"+14155550104","body":"hi"}`, "unknown_shape"},
		{"missing recipient", `{"message_options":{"text":"hi","message_type":"sms"}}`, "invalid_request"},
		{"missing text", `{"recipient":"+14155550104","context":{}}`, "invalid_request"},
		{"bad message type", `{"recipient":"+14155550104","text":"t","context":{"message_type":"fax"}}`, "invalid_request"},
		{"bad delivery method", `{"notification":{"recipient":"+1","as_text":"t","delivery_method":"pigeon"}}`, "invalid_request"},
		{"object where string", `{"recipient":{"a":1},"text":"t","context":{}}`, "invalid_json"},
		// Not UTF-8: refused whether or not the string holds an escape (encoding/json would
		// replace the byte in one case and keep it in the other).
		{"text not UTF-8", "{\"recipient\":\"+14155550104\",\"text\":\"code \xff 1234\",\"context\":{}}", "invalid_json"},
		{"text not UTF-8, escaped", "{\"recipient\":\"+14155550104\",\"text\":\"code \\n \xc3 1234\",\"context\":{}}", "invalid_json"},
		{"client id not UTF-8", "{\"message_options\":{\"recipient\":\"+14155550104\",\"text\":\"t\"},\"client\":{\"client_id\":\"\xed\xa0\x80\"}}", "invalid_json"},
		// A code is at most 32 letters or digits, also when it becomes the text.
		{"code of 33 digits", `{"message_options":{"recipient":"+14155550104","code":"` + strings.Repeat("1", 33) + `","message_type":"sms"}}`, "invalid_request"},
		{"code of 20000 digits, no text", `{"message_options":{"recipient":"+14155550104","code":"` + strings.Repeat("7", 20000) + `","message_type":"sms"}}`, "invalid_request"},
		{"code with punctuation", `{"recipient":"+14155550104","text":"t","context":{"code":"12<34"}}`, "invalid_request"},
		{"code with a dash", `{"recipient":"+14155550104","text":"t","context":{"code":"123-456"}}`, "invalid_request"},
		{"blank recipient", `{"recipient":" \t ","text":"t","context":{}}`, "invalid_request"},
		{"text of 1601 characters", `{"recipient":"+14155550104","text":"` + strings.Repeat("a", 1601) + `","context":{}}`, "invalid_request"},
		{"voice text of 1601 characters", `{"notification":{"recipient":"+14155550104","as_voice":"` + strings.Repeat("ж", 1601) + `","delivery_method":"voice"}}`, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.body))
			var ie *Error
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if ie.Code != tc.code {
				t.Errorf("code = %q, want %q (%s)", ie.Code, tc.code, ie.Message)
			}
		})
	}
}

// TestDecodeSaysWhatIsWrong: data after the object and a broken object get different messages.
func TestDecodeSaysWhatIsWrong(t *testing.T) {
	for body, want := range map[string]string{
		`{"recipient":"1","text":"t"} {}`:              "the body has data after the JSON object",
		`{"recipient":"1","text":"t"} xy`:              "the body has data after the JSON object",
		`{"recipient":"1","text":"t"`:                  "the body is not a JSON object: syntax error at byte 27",
		`{"recipient":"1","text":"t"}  \n`:             "the body has data after the JSON object",
		`[]`:                                           "the body is a JSON array, not an object",
		`"+14155550104"`:                               "the body is a JSON string, not an object",
		`{"message_options":[1]}`:                      "field message_options has the wrong type (array)",
		`{"recipient":["+1"],"text":"x","context":{}}`: "field recipient has the wrong type (array)",
		`5`: "the body is a JSON number, not an object",
		`{"message_options":{"recipient":{"a":1},"text":"x"}}`: "field message_options.recipient has the wrong type (object)",
	} {
		_, err := Decode([]byte(body))
		var ie *Error
		if !errors.As(err, &ie) || ie.Message != want {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
	if _, err := Decode([]byte("{\"recipient\":\"+14155550104\",\"text\":\"t\",\"context\":{}} \n\t")); err != nil {
		t.Errorf("white space after the object: %v", err)
	}
}

// TestTextLimitCountsCharacters: the 1600 limit is in characters, not bytes, and a code that is
// within its limit becomes the text.
func TestTextLimitCountsCharacters(t *testing.T) {
	cyr := strings.Repeat("ж", 900) // 1800 bytes
	r, err := Decode([]byte(`{"recipient":"+14155550104","text":"` + cyr + `","context":{}}`))
	if err != nil {
		t.Fatalf("a 900-character Cyrillic text was refused: %v", err)
	}
	if r.Text != cyr {
		t.Errorf("text changed")
	}
	full := strings.Repeat("я", 1600)
	if _, err := Decode([]byte(`{"recipient":"+14155550104","text":"` + full + `","context":{}}`)); err != nil {
		t.Errorf("exactly 1600 characters refused: %v", err)
	}
	code := strings.Repeat("9", 32)
	r, err = Decode([]byte(`{"message_options":{"recipient":"+14155550104","code":"` + code + `","message_type":"sms"}}`))
	if err != nil || r.Text != code {
		t.Errorf("a 32-digit code without text: %+v, %v", r, err)
	}
}

func TestNormalizeNumber(t *testing.T) {
	tests := []struct {
		in         string
		accept     bool
		want       Number
		wantErrish bool
	}{
		{in: "+1 (415) 555-0104", want: Number{"+14155550104", "US", true, "", nil}},
		{in: "1-808-555-5555", want: Number{"+18085555555", "US", true, "", nil}},
		{in: "0044 7911 123456", want: Number{"+447911123456", "GG", true, "", nil}},
		{in: "+44 7911 123456", want: Number{"+447911123456", "GG", true, "", nil}},
		{in: "+1 876 555 1234", want: Number{"+18765551234", "JM", true, "", nil}},
		{in: "+41 79 302 67 27", want: Number{"+41793026727", "CH", true, "", nil}},
		{in: "+44 7700 900123", wantErrish: true},
		{in: "+44 7700 900123", accept: true, want: Number{"+447700900123", "GB", false, "", []string{"GG", "JE"}}},
		// An unrecognized number under a shared calling code is counted where its digits say
		// (the area code 876 is Jamaica's, whatever follows), or may be in each region they do
		// not rule out: an unrecognized range is no way around a country list (policy).
		{in: "+1 876 000 0000", wantErrish: true},
		{in: "+1 876 000 0000", accept: true, want: Number{"+18760000000", "JM", false, "", nil}},
		{in: "+1 284 123 4567", accept: true, want: Number{"+12841234567", "VG", false, "", nil}},
		{in: "+1 770 000 0000", accept: true, want: Number{"+17700000000", "US", false, "", []string{"CA"}}},
		{in: "+44 1481 000000", accept: true, want: Number{"+441481000000", "GB", false, "", []string{"GG"}}},
		{in: "+7 600 000 0000", accept: true, want: Number{"+76000000000", "RU", false, "", []string{"KZ"}}},
		// Digits that only one of the code's regions has numbers like (Réunion's, not Mayotte's;
		// Britain's, not Guernsey's or Jersey's) are counted there alone.
		{in: "+262 600 000 176", accept: true, want: Number{"+262600000176", "RE", false, "", nil}},
		{in: "+44 100 000 196", accept: true, want: Number{"+44100000196", "GB", false, "", nil}},
		{in: "+358 18 000", accept: true, want: Number{"+35818000", "AX", false, "", nil}},
		{in: "+46 70 000", accept: true, want: Number{"+4670000", "SE", false, "", nil}},
		{in: "hello", wantErrish: true},
		{in: "+1", wantErrish: true},
		// 6 to 17 digits, whatever accept_unrecognized_numbers says.
		{in: "+1 2345", accept: true, wantErrish: true},
		{in: "+1 23456", accept: true, want: Number{"+123456", "US", false, "", []string{"CA"}}},
		{in: "+1 2345 6789 0123 4567", accept: true, want: Number{"+12345678901234567", "US", false, "", []string{"CA"}}},
		{in: "+1 2345 6789 0123 4567 8", accept: true, wantErrish: true},
		{in: "+999 1234567", accept: true, wantErrish: true},
		// Letters are an error, never keypad digits; only digits, spaces and + - . ( ) pass.
		{in: "+1 415 555 CODE", wantErrish: true},
		{in: "+1 415 555 CODE", accept: true, wantErrish: true},
		{in: "+1-415-555-0104 ext", wantErrish: true},
		{in: "+1/415/555/0104", wantErrish: true},
		{in: "+1.415.555.0104", want: Number{"+14155550104", "US", true, "", nil}},
		// Special types are told (policy.denied_number_types reads them): the US's premium rate
		// +1 900, Germany's shared cost +49 180, the UK's personal numbers +44 70.
		{in: "+1 900 212 3456", want: Number{"+19002123456", "US", true, "premium_rate", nil}},
		{in: "+49 180 12345", want: Number{"+4918012345", "DE", true, "shared_cost", nil}},
		{in: "+44 843 123 4567", want: Number{"+448431234567", "GB", true, "premium_rate", nil}},
		{in: "+44 70 1234 5678", want: Number{"+447012345678", "GB", true, "personal_number", nil}},
		{in: "+1 800 234 5678", want: Number{"+18002345678", "US", true, "toll_free", nil}},
		// Numbers of no country have the country 001, recognized or not.
		{in: "+979 123456789", want: Number{"+979123456789", "001", true, "premium_rate", nil}},
		{in: "+881 612345678", want: Number{"+881612345678", "001", true, "", nil}},
		{in: "+800 1234 5678", want: Number{"+80012345678", "001", true, "toll_free", nil}},
		{in: "+888 123456789", wantErrish: true},
		{in: "+888 123456789", accept: true, want: Number{"+888123456789", "001", false, "", nil}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeNumber(tc.in, tc.accept)
			if tc.wantErrish {
				var ie *Error
				if !errors.As(err, &ie) || ie.Code != "invalid_number" {
					t.Fatalf("err = %v (%+v), want invalid_number", err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestNormalizeNumberBoundsItsLength: a recipient longer than libphonenumber parses (250
// characters) is refused whatever it holds, and one at that length is taken, whether the fast
// path parses it (+1 ...) or the library does (+44 07...). Before the bound, spaces between the
// digits got a long recipient through the fast path and not through the library
// (FuzzFastParse found it).
func TestNormalizeNumberBoundsItsLength(t *testing.T) {
	for _, tc := range []struct{ head, tail, want string }{
		{"+1 415", "555 0104", "+14155550104"},
		{"+44 07911", "123456", "+447911123456"},
	} {
		pad := func(n int) string { return tc.head + strings.Repeat(" ", n-len(tc.head)-len(tc.tail)) + tc.tail }
		got, err := NormalizeNumber(pad(250), false)
		if err != nil || got.E164 != tc.want {
			t.Errorf("%s at 250 characters: %+v, %v; want %s", tc.want, got, err, tc.want)
		}
		_, err = NormalizeNumber(pad(251), false)
		var ie *Error
		if !errors.As(err, &ie) || ie.Code != "invalid_number" || !strings.Contains(ie.Message, "longer than 250 characters") {
			t.Errorf("%s at 251 characters: %v, want invalid_number saying it is too long", tc.want, err)
		}
	}
}

// FuzzDecode: any input either decodes to a request with a recipient and a known type, or fails
// with a caller error; it never panics. Normalizing the recipient never panics either.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"message_options":{"recipient":"+14155550104","text":"c 1","message_type":"sms"}}`,
		`{"notification":{"recipient":"+447911123456","as_voice":"v","delivery_method":"voice"}}`,
		`{"recipient":"1-808-555-5555","text":"t","context":{"client":{"client_id":"x"}}}`,
		`{"recipient":5,"text":true}`, `{}`, `null`, `[`, `{"recipient":"+1","context":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			var ie *Error
			if !errors.As(err, &ie) || ie.Code == "" {
				t.Fatalf("error without a code: %v", err)
			}
			return
		}
		if r.Recipient == "" || (r.Type != gateway.SMS && r.Type != gateway.Voice) {
			t.Fatalf("accepted an incomplete request: %+v", r)
		}
		_, _ = NormalizeNumber(r.Recipient, true)
	})
}

func BenchmarkDecode(b *testing.B) {
	body := []byte(`{"message_options":{"recipient":"+14155550104","text":"Your code is 123456","action":"second-factor-authentication","code":"123456","message_type":"sms"},"client":{"client_id":"abc123","name":"App","metadata":{}},"request":{"ip":"203.0.113.9","method":"POST","language":"en-US"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNormalizeNumber: the common form (parseInternational) and one libphonenumber must
// parse itself (a national prefix after the calling code).
func BenchmarkNormalizeNumber(b *testing.B) {
	for _, n := range []struct{ name, number string }{
		{"international", "+1 (415) 555-0104"},
		{"national-prefix", "+44 07400 123456"},
	} {
		b.Run(n.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NormalizeNumber(n.number, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestDecodeEscapedStrings(t *testing.T) {
	r, err := Decode([]byte(`{"recipient":"+1 415 555 0104","text":"Code \"1234\" \u00e9t\u00e9\n","context":{"client":{"client_id":"a\/b"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Text != "Code \"1234\" été" || r.ClientID != "a/b" {
		t.Errorf("text %q client %q", r.Text, r.ClientID)
	}
}

// TestCheckSender: a sender in a form providers take passes, another is a 400 invalid_request
// (gateway.TestValidSender has the forms).
func TestCheckSender(t *testing.T) {
	for from, want := range map[string]bool{"+15005550006": true, "MyBank": true, "": false, "My Brand Ltd 2026": false, "Bank!": false} {
		err := CheckSender(from)
		var ie *Error
		if (err == nil) != want || (err != nil && (!errors.As(err, &ie) || ie.Code != "invalid_request")) {
			t.Errorf("CheckSender(%q) = %v", from, err)
		}
	}
}

// TestTextControlCharacters: tab and line breaks pass; NUL, other C0 controls, DEL and C1
// controls are a 400 before any provider sees them.
func TestTextControlCharacters(t *testing.T) {
	for text, ok := range map[string]bool{
		"Code 1234\r\n\tbye": true, "Code \u0085": true, "Code\u00a0 1234 é": true,
		"Code\x00 1234": false, "Code \x1b[31m": false, "Code\x1f": false, "Code\x7f": false,
		"Code \u0080": false, "Code \u009b31m": false, "Code \u009f": false, "Code\v1234": false,
	} {
		r := &Request{Recipient: "+14155550104", Text: text}
		if err := Check(r); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want ok %v", text, err, ok)
		}
	}
}

// TestCheckRefusesFieldsThatAreNotUTF8: the ways in without a JSON body (a query string) reach
// Check with whatever bytes they decoded.
func TestCheckRefusesFieldsThatAreNotUTF8(t *testing.T) {
	for name, set := range map[string]func(*Request){
		"text": func(r *Request) { r.Text = "Code \xff 1234" }, "client id": func(r *Request) { r.ClientID = "app\xc3" },
		"action": func(r *Request) { r.Action = "\xed\xa0\x80" }, "language": func(r *Request) { r.Language = "en\x80" },
		"sender": func(r *Request) { r.From = "Acme\xfe" },
	} {
		r := &Request{Recipient: "+14155550104", Text: "Code 1234", ClientID: "app", Action: "enrollment", Language: "en", From: "Acme"}
		if err := Check(r); err != nil {
			t.Fatalf("%s: the valid request: %v", name, err)
		}
		set(r)
		var ie *Error
		if err := Check(r); !errors.As(err, &ie) || ie.Code != "invalid_request" {
			t.Errorf("%s not UTF-8: %v", name, err)
		}
	}
}

// TestFieldsAreBounded: the client id, the action and the language are held to what Auth0 could
// send, at the limit and one byte over, through every shape that carries them.
func TestFieldsAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name, field string
		most        int
	}{{"client id", "client_id", MaxClientIDLen}, {"action", "action", MaxActionLen}, {"language", "language", MaxLanguageLen}} {
		for _, n := range []int{tc.most, tc.most + 1} {
			body := `{"recipient":"+14155550104","text":"Code 1234","` + tc.field + `":"` + strings.Repeat("x", n) + `"}`
			_, err := Decode([]byte(body))
			if (err == nil) != (n == tc.most) {
				t.Errorf("%s of %d bytes: err = %v", tc.name, n, err)
			}
		}
	}
	hook := `{"recipient":"+14155550104","text":"Code 1234","context":{"client":{"client_id":"` + strings.Repeat("a", MaxClientIDLen+1) + `"}}}`
	if _, err := Decode([]byte(hook)); err == nil {
		t.Errorf("a hook's long client id passed")
	}
}

// TestIPKey: an address is counted as itself (IPv4, also mapped into IPv6) or by its /64 (IPv6);
// anything else is refused.
func TestIPKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.9":              "203.0.113.9",
		"::ffff:203.0.113.9":       "203.0.113.9",
		"2001:db8:1:2:3:4:5:6":     "2001:db8:1:2::/64",
		"2001:DB8:1:2::ffff":       "2001:db8:1:2::/64",
		"fe80::1%eth0":             "fe80::/64",
		"203.0.113.9:443":          "",
		"203.0.113.009":            "",
		"example.com":              "",
		strings.Repeat("1", 70000): "",
	} {
		got, ok := IPKey(in)
		if got != want || ok != (want != "") {
			t.Errorf("IPKey(%.20q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	r, err := Decode([]byte(`{"message_options":{"recipient":"+14155550104","text":"Code 1234"},"request":{"ip":"2001:db8:1:2::99"}}`))
	if err != nil || r.IP != "2001:db8:1:2::/64" {
		t.Errorf("Decode: ip %q, err %v", r.IP, err)
	}
	if _, err := Decode([]byte(`{"message_options":{"recipient":"+14155550104","text":"Code 1234"},"request":{"ip":"not-an-ip"}}`)); err == nil {
		t.Errorf("an ip that is no address passed")
	}
}

// TestIPKeyKeepsACanonicalIPv4: the usual address costs no allocation per send.
func TestIPKeyKeepsACanonicalIPv4(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { IPKey("203.0.113.9") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// TestVoiceTextsHoldNoPauses: SSML markup and runs of commas lengthen a call at will (Infobip and
// Vonage read SSML in a voice text; Infobip pauses half a second at each comma), so a voice text
// may hold neither; a text message may.
func TestVoiceTextsHoldNoPauses(t *testing.T) {
	for _, tc := range []struct {
		typ, text string
		ok        bool
	}{
		{"voice", "Your code is 1, 2, 3, 4. Again: 1, 2, 3, 4.", true},
		{"voice", `<speak>Hello<break time="10s"/></speak>`, false},
		{"voice", "Hello < there", false},
		{"voice", "Hello,, there", false},
		// Infobip pauses at each comma whatever stands between: something spoken must.
		{"voice", "Hello, , there", false},
		{"voice", "Hello,\n,there", false},
		{"voice", "Hello,.-, there", false},
		{"voice", "Hello, 1, a, é, 二, there,", true},
		{"sms", "Hello, , there", true},
		{"sms", `<b>1234</b>,, is your code`, true},
	} {
		r := Request{Recipient: "+14155550104", Text: tc.text, Type: gateway.MessageType(tc.typ)}
		err := Check(&r)
		var ie *Error
		if tc.ok && err != nil || !tc.ok && (!errors.As(err, &ie) || ie.Code != "invalid_request") {
			t.Errorf("%s %q: %v", tc.typ, tc.text, err)
		}
	}
}
