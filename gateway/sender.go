package gateway

import "strings"

// ValidSender reports whether from is a sender every provider takes in form: a phone number of
// 3 to 15 digits, optionally after "+", or a sender ID of 3 to 11 ASCII letters, digits, spaces,
// '-' and '.', with at least one letter and no space at either end.
func ValidSender(from string) bool {
	digits := strings.TrimPrefix(from, "+")
	if n := len(digits); n >= 3 && n <= 15 && strings.Trim(digits, "0123456789") == "" {
		return true
	}
	if len(from) < 3 || len(from) > 11 || strings.TrimSpace(from) != from {
		return false
	}
	letter := false
	for i := 0; i < len(from); i++ {
		switch c := from[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letter = true
		case c >= '0' && c <= '9', c == ' ', c == '-', c == '.':
		default:
			return false
		}
	}
	return letter
}

// SenderKey is the form in which two senders are the same sender: a phone number without its
// "+", a sender ID in lower case ("ACME" and "Acme" show one brand on a handset). A tenant's
// allowed_senders are compared with the sender a request names in this form.
func SenderKey(from string) string {
	if d := strings.TrimPrefix(from, "+"); d != "" && strings.Trim(d, "0123456789") == "" {
		return d
	}
	return strings.ToLower(from)
}
