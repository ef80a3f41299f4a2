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
			piece := sec[i : i+w]
			for from := 0; from+w <= len(s); {
				j := strings.Index(s[from:], piece)
				if j < 0 {
					break
				}
				if hide == nil {
					hide = make([]bool, len(s))
				}
				for k := from + j; k < from+j+w; k++ {
					hide[k] = true
				}
				from += j + 1
			}
		}
	}
	if hide == nil {
		return s
	}
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

// OneLine makes provider text safe and short for errors and attempt records: runs of 6 or more
// digits (providers quote the phone number: "The 'To' number +1415... is not valid") are masked,
// and the text is folded to one line of at most 160 bytes (never cutting a UTF-8 character).
// It does not know secrets: use SafeText for text that may echo one.
func OneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		switch {
		case j-i >= 6:
			b.WriteString(strings.Repeat("*", j-i))
			i = j
		case j > i:
			b.WriteString(s[i:j])
			i = j
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
