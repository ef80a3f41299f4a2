package infobipcompat

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/smsgate/smsgate/gateway"
)

// ParsePreview reads the body of POST /sms/1/preview and returns the text to preview. The
// request's languageCode and transliteration are read past: smsgate sends neither (a text goes in
// the GSM 03.38 alphabet or as UCS-2, whichever provider the route reaches), so the one
// configuration it can preview is the one it sends.
func ParsePreview(body []byte) (string, *Error) {
	if !utf8.Valid(body) {
		return "", bad("the body is not valid UTF-8")
	}
	var r struct {
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", bad("the body is not a JSON object of the expected shape")
	}
	if r.Text == nil || *r.Text == "" {
		return "", bad("text is required")
	}
	return *r.Text, nil
}

// Preview is the answer to POST /sms/1/preview for text: one preview, of the configuration
// smsgate sends it in (Infobip's empty configuration), with the parts it is sent and billed as
// and the characters left in the last one (gateway.SMSSize).
func Preview(text string) []byte {
	type preview struct {
		TextPreview         string   `json:"textPreview"`
		MessageCount        int      `json:"messageCount"`
		CharactersRemaining int      `json:"charactersRemaining"`
		Configuration       struct{} `json:"configuration"`
	}
	p := preview{TextPreview: text}
	p.MessageCount, p.CharactersRemaining = gateway.SMSSize(text)
	b, _ := json.Marshal(struct {
		OriginalText string    `json:"originalText"`
		Previews     []preview `json:"previews"`
	}{text, []preview{p}})
	return b
}
