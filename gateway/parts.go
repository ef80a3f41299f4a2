package gateway

import "unicode/utf16"

// SMSParts is how many parts an SMS of text is sent as, and billed as by providers that price
// per part: up to 160 characters of the GSM 03.38 alphabet (its extension characters, such as
// € [ ] { } ~ ^ | \, count twice) in one part, else 153 a part; a text with any other character
// is sent as UCS-2, up to 70 UTF-16 units in one part, else 67 a part. An empty text is one
// part. National language shift tables, which some providers use to keep a text in 7 bits, are
// not counted: the figure is the most a text may cost, as spend limits need.
func SMSParts(text string) int {
	septets, gsm := 0, true
	for _, r := range text {
		if r < 0x80 && asciiSeptets[r] > 0 {
			septets += int(asciiSeptets[r])
			continue
		}
		switch {
		case gsmBasic(r):
			septets++
		case gsmExtension(r):
			septets += 2
		default:
			gsm = false
		}
		if !gsm {
			break
		}
	}
	if gsm {
		return parts(septets, 160, 153)
	}
	units := 0
	for _, r := range text {
		units += utf16.RuneLen(r)
	}
	return parts(units, 70, 67)
}

// asciiSeptets is, for each ASCII character, the septets it takes in GSM 03.38 (0: none, it is
// not in the alphabet): the common case of SMSParts without a call per character.
var asciiSeptets = func() (t [0x80]uint8) {
	for r := range rune(0x80) {
		switch {
		case gsmBasic(r):
			t[r] = 1
		case gsmExtension(r):
			t[r] = 2
		}
	}
	return t
}()

func parts(n, single, each int) int {
	if n <= single {
		return 1
	}
	return (n + each - 1) / each
}

// gsmBasicNonASCII are the GSM 03.38 basic alphabet's characters outside ASCII.
const gsmBasicNonASCII = "£¥èéùìòÇØøÅåΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà"

// gsmBasic reports whether r is in the GSM 03.38 basic alphabet: ASCII but for ` [ \ ] ^ { | } ~
// (and control characters other than line feed and carriage return), and gsmBasicNonASCII.
func gsmBasic(r rune) bool {
	if r < 0x80 {
		switch r {
		case '\n', '\r':
			return true
		case '`', '[', '\\', ']', '^', '{', '|', '}', '~':
			return false
		}
		return r >= 0x20 && r < 0x7f
	}
	for _, c := range gsmBasicNonASCII {
		if c == r {
			return true
		}
	}
	return false
}

// gsmExtension reports whether r is in the GSM 03.38 extension table (an escape and the
// character: two septets).
func gsmExtension(r rune) bool {
	switch r {
	case '^', '{', '}', '\\', '[', '~', ']', '|', '€', '\f':
		return true
	}
	return false
}
