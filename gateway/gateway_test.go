package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMaskPhone(t *testing.T) {
	tests := map[string]string{
		"+447911123456": "+44******3456",
		"+14155550104":  "+14*****0104",
		"447911123456":  "44******3456",
		"+1234":         "+****",
		"":              "",
		// A short number keeps at least five digits masked.
		"+6531234567": "+******4567", // ten digits: no first digits shown
		"+50012345":   "+*****345",   // eight: three last ones
		"+6834002":    "+*****02",    // seven: two
		"+290123":     "+*****3",
		"+12345":      "+*****",
	}
	for in, want := range tests {
		if got := MaskPhone(in); got != want {
			t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExtractCode(t *testing.T) {
	tests := []struct{ text, code, extracted string }{
		{"Your code is 123456", "123456", "123456"},
		{"Your code is 123456. Valid 10 min", "", "123456"},
		{"Code 12 for 2026-11-28", "", "2026"},
		{"Use 1234 or 5678901", "", "5678901"},
		// A run longer than 10 digits is a number (a phone number, a reference), not the code.
		{"Code 482913, ref 44791112345678", "", "482913"},
		// Two runs of one length: the first is the code ("1234, valid until 2027").
		{"Use 1234 by 2027", "", "1234"},
		{"no digits", "", ""},
	}
	for _, tc := range tests {
		if got := ExtractCode(tc.text, tc.code); got != tc.extracted {
			t.Errorf("ExtractCode(%q) = %q, want %q", tc.text, got, tc.extracted)
		}
	}
	if got := SpokenDigits("4821"); got != "4, 8, 2, 1" {
		t.Errorf("SpokenDigits = %q", got)
	}
}

func TestSecretNeverFormats(t *testing.T) {
	s := Secret("hunter2")
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %+v %#v", s, s, struct{ K Secret }{s}, s), fmt.Sprint(&struct{ K Secret }{s})} {
		if out == "" || strings.Contains(out, "hunter2") {
			t.Errorf("secret leaked: %q", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Error("Reveal lost the value")
	}
}

func TestClassOf(t *testing.T) {
	tests := []struct {
		err  error
		want Class
	}{
		{&Error{Class: ClassRecipient}, ClassRecipient},
		{fmt.Errorf("wrapped: %w", &Error{Class: ClassUnavailable}), ClassUnavailable},
		{context.Canceled, ClassCancelled},
		{context.DeadlineExceeded, ClassProvider},
		{errors.New("boom"), ClassProvider},
	}
	for _, tc := range tests {
		if got := ClassOf(tc.err); got != tc.want {
			t.Errorf("ClassOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if e := AsError(context.DeadlineExceeded); !e.Timeout || !e.MaybeSent || e.Class != ClassProvider || !errors.Is(e, context.DeadlineExceeded) {
		t.Errorf("AsError(deadline) = %+v, want a provider timeout that may have sent", e)
	}
	if e := AsError(fmt.Errorf("call: %w", context.Canceled)); e.Class != ClassCancelled || e.MaybeSent {
		t.Errorf("AsError(cancelled) = %+v", e)
	}
	boom := errors.New("boom")
	if e := AsError(boom); e.Class != ClassProvider || e.Timeout || e.MaybeSent || !errors.Is(e, boom) {
		t.Errorf("AsError(boom) = %+v, want a provider error wrapping it", e)
	}
}

// TestClassNames: a class's name is what the dispatch statistics and smsgate send show, and how
// an error names itself.
func TestClassNames(t *testing.T) {
	want := map[Class]string{ClassProvider: "provider", ClassRecipient: "recipient", ClassUnavailable: "unavailable", ClassCaller: "caller",
		ClassCancelled: "cancelled", ClassDestination: "destination", ClassThrottled: "throttled", Class(99): "unknown"}
	for c, name := range want {
		if c.String() != name {
			t.Errorf("Class(%d) = %q, want %q", int(c), c.String(), name)
		}
	}
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{&Error{Class: ClassRecipient, Code: "21211", HTTPStatus: 400, Message: "not a valid number"}, "recipient error 21211 (HTTP 400): not a valid number"},
		{&Error{Class: ClassThrottled, HTTPStatus: 429}, "throttled error (HTTP 429)"},
		{&Error{Class: ClassProvider}, "provider error"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestOneLine(t *testing.T) {
	tests := map[string]string{
		"The 'To' number +14155550104 is not\n a valid phone number.": "The 'To' number +*********** is not a valid phone number.",
		"Error 21211 at 12:30": "Error 21211 at 12:30",
		// A number written for reading is masked too, its grouping kept.
		"Invalid number +1 (415) 555-0104.":    "Invalid number +* (***) ***-****.",
		"Number +44 7911 123456 is barred":     "Number +** **** ****** is barred",
		"+33 6-12-34-56-78":                    "+** *-**-**-**-**",
		"Error 1234 - 5678, 12 (34) and 1-2-3": "Error 1234 - 5678, 12 (34) and 1-2-3", // fewer than 6 digits each
		// A dot or a slash joins groups alone: the US and German ways of writing a number.
		"Call 415.555.0104 or +1.415.555.0104": "Call ***.***.**** or +*.***.***.****",
		"Nummer 0171/1234567 gesperrt":         "Nummer ****/******* gesperrt",
		"from 203.0.113.9, on 12/04/2026":      "from ***.*.***.*, on **/**/****",      // an address and a date are masked too
		"Error 21211. 12 retries, 1.5/10.2":    "Error 21211. 12 retries, 1.5/10.2",    // a dot with a space, and fewer than 6 digits
		"Error 21211.. 1, 412//555 2, 4155.-5": "Error 21211.. 1, 412//555 2, 4155.-5", // two dots, two slashes, a dot then a dash
		strings.Repeat("x", 200):               strings.Repeat("x", 160),
		strings.Repeat("y", 161):               strings.Repeat("y", 160),
		// The cut at 160 bytes falls inside the first "é" (bytes 159 and 160): the text ends before it.
		strings.Repeat("z", 159) + "éé": strings.Repeat("z", 159),
	}
	for in, want := range tests {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzRedactor: a Redactor removes from any text exactly what RedactSecrets removes, for
// secrets of any length (shorter than a piece, empty, overlapping, repeated).
func FuzzRedactor(f *testing.F) {
	f.Add("bad key K3y-9f8e7d6c5b4a given, pw9x! too", "K3y-9f8e7d6c5b4a", "pw9x!")
	f.Add("aaaaaaaaaa", "aaaaaaa", "")
	f.Add("", "secret-one", "x")
	f.Fuzz(func(t *testing.T, s, a, b string) {
		if want, got := RedactSecrets(s, a, b), NewRedactor(a, b).Redact(s); got != want {
			t.Fatalf("Redact(%q) with %q, %q = %q; RedactSecrets gives %q", s, a, b, got, want)
		}
	})
}

// BenchmarkRedact: removing a config's secrets from a provider's error text, each secret looked
// for in turn (RedactSecrets) and through a Redactor built once, with 10 to 1,000 secrets (a
// tenant's API key each).
func BenchmarkRedact(b *testing.B) {
	text := "The 'To' number +14155550104 is not a valid phone number (code 21211). " + strings.Repeat("x", 90)
	for _, n := range []int{10, 100, 1000} {
		var secrets []string
		for i := range n {
			secrets = append(secrets, fmt.Sprintf("tenant-%04d-key-0123456789abcdef", i))
		}
		b.Run(fmt.Sprintf("RedactSecrets/%d", n), func(b *testing.B) {
			for b.Loop() {
				RedactSecrets(text, secrets...)
			}
		})
		r := NewRedactor(secrets...)
		b.Run(fmt.Sprintf("Redactor/%d", n), func(b *testing.B) {
			for b.Loop() {
				r.Redact(text)
			}
		})
	}
}

// FuzzOneLine: for any text, OneLine ends, gives one line of at most 160 bytes, valid UTF-8 for
// valid UTF-8, and leaves no number of 6 digits or more readable.
func FuzzOneLine(f *testing.F) {
	for _, s := range []string{"+1 (415) 555-0104", "a 1-2-3-4-5-6 b", "12 34 56", "415.555.0104", "1/2.3 4/5.6", "1./2.-3..4", "1(2)3(4)5(6)", "9  9 9 9 9 9", "--1--"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := OneLine(s)
		if len(got) > 160 || strings.ContainsAny(got, "\n\t") || (utf8.ValidString(s) && !utf8.ValidString(got)) {
			t.Fatalf("OneLine(%q) = %q", s, got)
		}
		for i := range got {
			if _, digits := numberAt(got, i); digits >= 6 {
				t.Fatalf("OneLine(%q) = %q leaves a number of %d digits at %d", s, got, digits, i)
			}
		}
	})
}

// TestSafeTextRemovesSecretsBeforeCutting: secrets are removed first, whole or in pieces of 6+
// characters, and only then is the text masked and cut, so no piece of a secret survives.
func TestSafeTextRemovesSecretsBeforeCutting(t *testing.T) {
	key := "K3y-9f8e7d6c5b4a"
	tests := []struct{ name, in, want string }{
		{"whole", "bad key " + key + " given", "bad key <secret> given"},
		{"a piece", "key starts 9f8e7d6c and ends", "key starts <secret> and ends"},
		{"five characters are not a piece", "9f8e7 is fine", "9f8e7 is fine"},
		{"twice, overlapping runs merged", key + key[2:], "<secret>"},
		{"cut at 160 after redaction", strings.Repeat("x", 155) + key, strings.Repeat("x", 155) + "<secr"},
		{"digits masked after", "number 4155550104, key " + key, "number **********, key <secret>"},
	}
	// A secret shorter than a piece is removed where it stands whole.
	if got := SafeText("bad password pw9x! given", "pw9x!"); got != "bad password <secret> given" {
		t.Errorf("a short secret: %q", got)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SafeText(tc.in, key, ""); got != tc.want {
				t.Errorf("SafeText(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	// The old order (cut, then replace the whole key) left most of a key readable.
	long := strings.Repeat("y", 150) + key
	if got := SafeText(long, key); strings.Contains(got, key[:6]) {
		t.Errorf("a piece of the key survived the cut: %q", got)
	}
	if got := OneLine(strings.Repeat("é", 100)); !utf8.ValidString(got) {
		t.Errorf("OneLine cut a character in two: %q", got)
	}
}
