package gateway

import (
	"strings"
	"unicode/utf16"
)

// SMSParts is how many parts an SMS of text is sent as, and billed as by providers that price
// per part: up to 160 septets of the GSM 03.38 alphabet (its extension characters, such as
// € [ ] { } ~ ^ | \, take two) in one part, else 153 a part; a text with any other character is
// sent as UCS-2, up to 70 UTF-16 units in one part, else 67 a part. An empty text is one part.
// National language shift tables, which some providers use to keep a text in 7 bits, are not
// counted: the figure is the most a text may cost, as spend limits need.
func SMSParts(text string) int {
	return parts(smsLength(text))
}

// SMSSize is SMSParts and the characters left in the last part: what Infobip's preview
// (POST /sms/1/preview) calls messageCount and charactersRemaining, in septets for a GSM 03.38
// text and UTF-16 units for any other.
func SMSSize(text string) (count, remaining int) {
	n, single, each := smsLength(text)
	count = parts(n, single, each)
	if count == 1 {
		return 1, single - n
	}
	return count, count*each - n
}

// smsLength is how long text is as sent, in septets of GSM 03.38 or else UTF-16 units, with what
// one part holds alone and what each holds of several.
func smsLength(text string) (n, single, each int) {
	for _, r := range text {
		s := septets(r)
		if s == 0 {
			units := 0
			for _, r := range text {
				units += utf16.RuneLen(r)
			}
			return units, 70, 67
		}
		n += s
	}
	return n, 160, 153
}

// GSM7 reports whether text can be sent in the GSM 03.38 alphabet (7 bits a character); otherwise
// it goes as UCS-2 (unicode).
func GSM7(text string) bool {
	for _, r := range text {
		if septets(r) == 0 {
			return false
		}
	}
	return true
}

func parts(n, single, each int) int {
	if n <= single {
		return 1
	}
	return (n + each - 1) / each
}

// septets is how many septets r takes in GSM 03.38: 1 in its basic alphabet, 2 in its extension
// table (an escape and the character), 0 when it is in neither.
func septets(r rune) int {
	if r < 0x80 {
		return int(asciiSeptets[r])
	}
	return septetsBeyondASCII(r)
}

// septetsBeyondASCII is septets of a character outside ASCII; kept out of line, so that septets
// is inlined in the loops.
//
//go:noinline
func septetsBeyondASCII(r rune) int {
	switch {
	case strings.ContainsRune(gsmBasicNonASCII, r):
		return 1
	case r == '€':
		return 2
	}
	return 0
}

// gsmBasicNonASCII are the GSM 03.38 basic alphabet's characters outside ASCII.
const gsmBasicNonASCII = "£¥èéùìòÇØøÅåΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà"

// asciiSeptets is septets for ASCII: the printable characters but ` and those of the extension
// table (^ { } \ [ ~ ] | and form feed, two each), line feed and carriage return.
var asciiSeptets = func() (t [0x80]uint8) {
	for r := ' '; r < 0x7f; r++ {
		t[r] = 1
	}
	t['\n'], t['\r'], t['`'] = 1, 1, 0
	for _, r := range "^{}\\[~]|\f" {
		t[r] = 2
	}
	return t
}()
