package kit

import (
	"testing"

	"github.com/smsgate/smsgate/gateway"
)

// TestReadings: a call says a code twice and a text without one once, as spend limits count it;
// Twice follows it.
func TestReadings(t *testing.T) {
	for _, tc := range []struct {
		msg  gateway.Message
		want int
	}{
		{gateway.Message{Code: "4271"}, 2},
		{gateway.Message{Text: "Your code is 482913"}, 2},
		{gateway.Message{Text: "Your appointment is tomorrow."}, 1},
	} {
		if got := Readings(&tc.msg); got != tc.want {
			t.Errorf("Readings(%+v) = %d, want %d", tc.msg, got, tc.want)
		}
		if got, want := Twice(&tc.msg, "s"), map[int]string{1: "s", 2: "s s"}[tc.want]; got != want {
			t.Errorf("Twice(%+v) = %q, want %q", tc.msg, got, want)
		}
	}
}

// TestVoiceFollowsTheRequestsLanguage: a tag in any case and with either separator finds its
// voice, its regional voice and its phrase; a language without a voice is spoken in English, in
// the region's English voice where there is one, and a language without a phrase says the
// English one; a text without a code is spoken as it is.
func TestVoiceFollowsTheRequestsLanguage(t *testing.T) {
	voices := map[string]string{"en": "en-US-voice", "de": "de-voice", "xx": "xx-voice"}
	regional := map[string]string{"en-GB": "en-GB-voice", "de-AT": "de-AT-voice"}
	for _, tc := range []struct {
		lang, text, voice, sentence string
	}{
		{"DE", "Ihr Code 4271", "de-voice", "Ihr Code lautet 4, 2, 7, 1."},
		{"de_at", "Ihr Code 4271", "de-AT-voice", "Ihr Code lautet 4, 2, 7, 1."},
		{"en-gb", "Code 4271", "en-GB-voice", "Your code is 4, 2, 7, 1."},
		{"cy-GB", "Code 4271", "en-GB-voice", "Your code is 4, 2, 7, 1."},
		{"cy", "Code 4271", "en-US-voice", "Your code is 4, 2, 7, 1."},
		{"xx", "Code 4271", "xx-voice", "Your code is 4, 2, 7, 1."},
		{"de", "Ihr Termin ist morgen.", "de-voice", "Ihr Termin ist morgen."},
	} {
		voice, sentence := Voice(&gateway.Message{Text: tc.text, Language: tc.lang}, voices, regional)
		if voice != tc.voice || sentence != tc.sentence {
			t.Errorf("%s %q: %q, %q; want %q, %q", tc.lang, tc.text, voice, sentence, tc.voice, tc.sentence)
		}
	}
}
