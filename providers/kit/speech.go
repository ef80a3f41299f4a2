package kit

import (
	"strings"

	"github.com/smsgate/smsgate/gateway"
)

// phrases are "Your code is" in the languages the voice drivers speak, by primary subtag.
var phrases = map[string]string{
	"en": "Your code is", "de": "Ihr Code lautet", "fr": "Votre code est", "es": "Su código es",
	"it": "Il suo codice è", "pt": "Seu código é", "nl": "Uw code is", "ja": "あなたのコードは",
}

// Language splits a request's language tag ("de_AT", "pt-br") into its primary subtag, lower
// case, and its region, upper case.
func Language(tag string) (primary, region string) {
	p, r, _ := strings.Cut(strings.ReplaceAll(tag, "_", "-"), "-")
	return strings.ToLower(p), strings.ToUpper(r)
}

// CodeSentence is what a call says once: "<Your code is> 1, 2, 3, 4." in the language of primary
// when there is a phrase for it (else English), or the message's text when it carries no code.
func CodeSentence(msg *gateway.Message, primary string) string {
	phrase, ok := phrases[primary]
	if !ok {
		phrase = phrases["en"]
	}
	code := gateway.ExtractCode(msg.Text, msg.Code)
	if code == "" {
		return msg.Text
	}
	return phrase + " " + gateway.SpokenDigits(code) + "."
}

// Voice is what a voice driver says once and in which voice or language: voices by the request's
// primary language subtag (English when it has none), overridden by regional for the full tag
// ("en-GB"), and the code sentence in that language.
func Voice(msg *gateway.Message, voices, regional map[string]string) (voice, sentence string) {
	primary, region := Language(msg.Language)
	voice, ok := voices[primary]
	if !ok {
		primary, voice = "en", voices["en"]
	}
	if v, ok := regional[primary+"-"+region]; ok {
		voice = v
	}
	return voice, CodeSentence(msg, primary)
}

// Readings is how many times a call says its sentence: twice when the message carries a code
// (once is easy to miss), else once, as a spend limit counts the call (a text said twice made a
// call twice as long as counted).
func Readings(msg *gateway.Message) int {
	if gateway.ExtractCode(msg.Text, msg.Code) == "" {
		return 1
	}
	return 2
}

// Twice is sentence said Readings times, for drivers that send one text to speak.
func Twice(msg *gateway.Message, sentence string) string {
	if Readings(msg) == 1 {
		return sentence
	}
	return sentence + " " + sentence
}
