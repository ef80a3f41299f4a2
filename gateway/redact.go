package gateway

import "strings"

// Secret is a string that prints as "<secret>" in logs, errors and JSON; use Reveal to read it.
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return "<secret>" }

// GoString implements fmt.GoStringer so %#v does not leak it either.
func (Secret) GoString() string { return "<secret>" }

// MarshalText keeps secrets out of JSON and YAML output.
func (Secret) MarshalText() ([]byte, error) { return []byte("<secret>"), nil }

// Reveal returns the secret value; call it only where the value is sent to its owner.
func (s Secret) Reveal() string { return string(s) }

// MaskPhone keeps the "+" and the first two digits (the calling code or its start) and the last
// four digits, masking the rest: "+447911123456" -> "+44******3456". At least minMasked digits
// are always masked: a shorter number shows fewer (no first digits, then fewer last ones), since
// two or three digits masked of a short number (Niue's "+6834002", the Falklands' "+50012345")
// leave it all but whole: "+6834002" -> "+*****02". Five digits or fewer are masked entirely.
func MaskPhone(e164 string) string {
	digits := strings.TrimPrefix(e164, "+")
	plus := len(e164) - len(digits) // 1 with a "+"
	n := len(digits)
	head, tail := 2, 4
	if n-head-tail < minMasked {
		head = 0
	}
	if n-tail < minMasked {
		tail = max(0, n-minMasked)
	}
	var b strings.Builder
	b.Grow(len(e164))
	b.WriteString(e164[:plus+head])
	for range n - head - tail {
		b.WriteByte('*')
	}
	b.WriteString(e164[len(e164)-tail:])
	return b.String()
}

// minMasked is how many digits of a number MaskPhone masks at least.
const minMasked = 5

// SpokenDigits spells a code digit by digit for text-to-speech: "1234" -> "1, 2, 3, 4".
func SpokenDigits(code string) string {
	var b strings.Builder
	for i, r := range code {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ExtractCode returns the code the caller sent, or the longest run of 4-10 digits in text.
func ExtractCode(text, code string) string {
	if code != "" {
		return code
	}
	best := ""
	i := 0
	for i < len(text) {
		j := i
		for j < len(text) && isDigit(text[j]) {
			j++
		}
		if n := j - i; n >= 4 && n <= 10 && n > len(best) {
			best = text[i:j]
		}
		if j == i {
			j++
		}
		i = j
	}
	return best
}
