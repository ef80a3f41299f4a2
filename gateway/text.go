package gateway

import (
	"strings"
	"unicode/utf8"
)

// SecretRun is the length of the shortest piece of a secret that must never appear in a reply,
// the message log or a log line.
const SecretRun = 6

// RedactSecrets replaces every run of SecretRun or more characters that also stands in one of
// secrets with "<secret>" (a secret shorter than SecretRun is replaced where it stands whole).
// A provider that echoes a key, whole or cut, gives back none of it. Run it before anything that
// cuts or masks the text, or a cut could leave part of a secret behind.
func RedactSecrets(s string, secrets ...string) string {
	if s == "" || len(secrets) == 0 {
		return s
	}
	var hide []bool
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		w := min(SecretRun, len(sec))
		for i := 0; i+w <= len(sec); i++ {
			hide = markAll(hide, s, sec[i:i+w])
		}
	}
	if hide == nil {
		return s
	}
	return hidden(s, hide)
}

// Redactor is RedactSecrets for a set of secrets known in advance (every secret of a config),
// built once: a text is scanned once, each run of SecretRun bytes looked up in the set of the
// secrets' pieces, so it costs the same however many secrets there are. RedactSecrets looks for
// each piece of each secret in turn: with a thousand tenants' API keys, some 0.4 ms a text, paid
// for every failed attempt's code and error, and so by every send while a provider is down.
type Redactor struct {
	pieces map[string]struct{} // every run of SecretRun bytes of a secret at least that long
	short  []string            // the secrets shorter than SecretRun, found whole
}

// NewRedactor returns the Redactor of secrets (empty ones are left out).
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{pieces: map[string]struct{}{}}
	for _, sec := range secrets {
		switch {
		case sec == "":
		case len(sec) < SecretRun:
			r.short = append(r.short, sec)
		default:
			for i := 0; i+SecretRun <= len(sec); i++ {
				r.pieces[sec[i:i+SecretRun]] = struct{}{}
			}
		}
	}
	return r
}

// Redact is RedactSecrets(s, the Redactor's secrets...): the same text, found the same way.
func (r *Redactor) Redact(s string) string {
	if s == "" || (len(r.pieces) == 0 && len(r.short) == 0) {
		return s
	}
	var hide []bool
	if len(r.pieces) > 0 {
		for i := 0; i+SecretRun <= len(s); i++ {
			if _, ok := r.pieces[s[i:i+SecretRun]]; ok {
				hide = mark(hide, s, i, SecretRun)
			}
		}
	}
	for _, sec := range r.short {
		hide = markAll(hide, s, sec)
	}
	if hide == nil {
		return s
	}
	return hidden(s, hide)
}

// markAll marks in hide (made for s when nil) every place piece stands in s, overlapping ones too.
func markAll(hide []bool, s, piece string) []bool {
	for from := 0; from+len(piece) <= len(s); {
		j := strings.Index(s[from:], piece)
		if j < 0 {
			break
		}
		hide = mark(hide, s, from+j, len(piece))
		from += j + 1
	}
	return hide
}

// mark marks the n bytes of s from i in hide (made for s when nil).
func mark(hide []bool, s string, i, n int) []bool {
	if hide == nil {
		hide = make([]bool, len(s))
	}
	for k := i; k < i+n; k++ {
		hide[k] = true
	}
	return hide
}

// hidden is s with each run of bytes hide marks replaced by "<secret>".
func hidden(s string, hide []bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if !hide[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString("<secret>")
		for i < len(s) && hide[i] {
			i++
		}
	}
	return b.String()
}

// SafeText is what provider text goes through before it reaches an error, a reply, the message
// log or a log line: secrets are removed first (RedactSecrets), then OneLine masks numbers and
// cuts the text.
func SafeText(s string, secrets ...string) string { return OneLine(RedactSecrets(s, secrets...)) }

// OneLine makes provider text safe and short for errors and attempt records: numbers of 6 or
// more digits have their digits masked (providers quote the phone number: "The 'To' number
// +1415... is not valid"), a number being digits in groups joined by at most two of " -()" or by
// one "." or "/", so that a number written for reading ("+1 (415) 555-0104", "+44 7911 123456",
// "415.555.0104", "0171/1234567") is masked as much as one written as E.164; and the text is
// folded to one line of at most 160 bytes (never cutting a UTF-8 character). It does not know
// secrets: use SafeText for text that may echo one.
func OneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		end, digits := numberAt(s, i)
		switch {
		case digits >= 6:
			for k := i; k < end; k++ {
				if isDigit(s[k]) {
					b.WriteByte('*')
				} else {
					b.WriteByte(s[k])
				}
			}
			i = end
		case end > i:
			b.WriteString(s[i:end])
			i = end
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	s = b.String()
	if len(s) > 160 {
		cut := 160
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// numberAt is the number that starts at s[i] (OneLine): where it ends, after its last digit, and
// how many digits it holds; i itself when s[i] is no digit.
func numberAt(s string, i int) (end, digits int) {
	end = i
	for j := i; j < len(s) && isDigit(s[j]); {
		for j < len(s) && isDigit(s[j]) {
			j++
			digits++
		}
		end = j
		k := j // joining characters, then a digit: the number goes on
		if k < len(s) && (s[k] == '.' || s[k] == '/') {
			k++ // one dot or slash alone: 415.555.0104, 0171/1234567 (not "21211. 12")
		} else {
			for k < len(s) && k-j < 2 && strings.IndexByte(" -()", s[k]) >= 0 {
				k++
			}
		}
		if k == len(s) || !isDigit(s[k]) {
			break
		}
		j = k
	}
	return end, digits
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
