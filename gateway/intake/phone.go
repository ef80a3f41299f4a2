package intake

import (
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// Number is a normalized recipient.
type Number struct {
	// E164 is the number in E.164 form.
	E164 string
	// Country is the ISO region of the whole number (GG for +44 7911..., JM for +1 876...).
	Country string
	// Recognized is false when libphonenumber does not know the number as valid.
	Recognized bool
}

// NonGeographic is the country of numbers that belong to no country, as libphonenumber names it.
// Policy refuses them unless an allow list names it (see docs/security.md).
const NonGeographic = "001"

// validRecipientChar reports whether r may appear in a recipient as written: digits, spaces and
// + - . ( ). Letters are refused rather than read as keypad digits.
func validRecipientChar(r rune) bool {
	switch {
	case r >= '0' && r <= '9':
		return true
	case r == ' ' || r == '+' || r == '-' || r == '.' || r == '(' || r == ')':
		return true
	}
	return false
}

// NormalizeNumber parses a recipient in any common form ("+1 (415) 555-0104", "1-808-555-5555",
// "0044 7911 123456") to E.164. Numbers without "+" or "00" are read as international. A number
// libphonenumber does not recognize as valid is an invalid_number error unless acceptUnrecognized
// is set, in which case its country comes from the calling code.
func NormalizeNumber(raw string, acceptUnrecognized bool) (Number, error) {
	s := strings.TrimSpace(raw)
	for _, r := range s {
		if !validRecipientChar(r) {
			return Number{}, bad("invalid_number", "the recipient may hold only digits, spaces and + - . ( )")
		}
	}
	switch {
	case strings.HasPrefix(s, "+"):
	case strings.HasPrefix(s, "00"):
		s = "+" + s[2:]
	default:
		s = "+" + s
	}
	digits := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			digits++
		}
	}
	if digits < 6 || digits > 17 {
		return Number{}, bad("invalid_number", "the recipient is not a phone number")
	}
	num, err := phonenumbers.Parse(s, "ZZ")
	if err != nil {
		return Number{}, bad("invalid_number", "the recipient is not a phone number")
	}
	n := Number{E164: phonenumbers.Format(num, phonenumbers.E164)}
	// IsValidNumber would find the region and then check it: find it once and check it here.
	if region := phonenumbers.GetRegionCodeForNumber(num); region != "" && phonenumbers.IsValidNumberForRegion(num, region) {
		n.Recognized, n.Country = true, region
		return n, nil
	}
	if !acceptUnrecognized {
		return Number{}, bad("invalid_number", "the recipient is not a number in a recognized range; a tenant may allow such numbers with accept_unrecognized_numbers")
	}
	n.Country = phonenumbers.GetRegionCodeForCountryCode(int(num.GetCountryCode()))
	if n.Country == "" {
		n.Country = "ZZ"
	}
	return n, nil
}
