package intake

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

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
	// Type is the number's type when it is Recognized as one of gateway.SpecialNumberTypes
	// ("premium_rate", ...), else "".
	Type string
	// AlsoIn is, for a number not Recognized whose calling code several regions share, the other
	// regions it may be in when its digits do not tell which (US with AlsoIn [CA] for a +1 number
	// of a range neither is known to have). Empty otherwise.
	AlsoIn []string
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
// is set, in which case its country comes from its calling code and leading digits, and AlsoIn
// names the other regions it may be in (unrecognizedRegion).
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
	// Parse refuses longer input, however few digits it holds (separators between them): the
	// fast path would have taken it, so whether such a recipient was accepted hung on its digits.
	if len(s) > phonenumbers.MAX_INPUT_STRING_LENGTH {
		return Number{}, bad("invalid_number", "the recipient is longer than "+strconv.Itoa(phonenumbers.MAX_INPUT_STRING_LENGTH)+" characters")
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
	var n Number
	num, ok := parseInternational(s)
	if ok {
		n.E164 = "+" + strconv.Itoa(int(num.GetCountryCode())) + strconv.FormatUint(num.GetNationalNumber(), 10)
	} else {
		var err error
		if num, err = phonenumbers.Parse(s, "ZZ"); err != nil {
			return Number{}, bad("invalid_number", "the recipient is not a phone number")
		}
		n.E164 = phonenumbers.Format(num, phonenumbers.E164)
	}
	if region, kind, valid := normalizeRegion(num); valid {
		n.Recognized, n.Country, n.Type = true, region, kind
		return n, nil
	}
	if !acceptUnrecognized {
		return Number{}, bad("invalid_number", "the recipient is not a number in a recognized range; a tenant may allow such numbers with accept_unrecognized_numbers")
	}
	n.Country, n.AlsoIn = unrecognizedRegion(num)
	return n, nil
}

// unrecognizedRegion is the country of a number libphonenumber does not recognize, and the other
// regions it may be in (possibleRegions). Without rules for its calling code, every region of the
// code is possible.
func unrecognizedRegion(num *phonenumbers.PhoneNumber) (string, []string) {
	cc := int(num.GetCountryCode())
	var regions []string
	if rules := rulesFor(cc); rules != nil {
		regions = rules.possibleRegions(phonenumbers.GetNationalSignificantNumber(num))
	} else {
		regions = phonenumbers.GetRegionCodesForCountryCode(cc)
	}
	switch len(regions) {
	case 0:
		return "ZZ", nil
	case 1:
		return regions[0], nil
	}
	return regions[0], slices.Clone(regions[1:])
}

// normalizeRegion is IsValidNumber, the region it found and the number's special type there:
// regionOf where its rules for the calling code were built, the library otherwise.
func normalizeRegion(num *phonenumbers.PhoneNumber) (region, kind string, valid bool) {
	if rules := rulesFor(int(num.GetCountryCode())); rules != nil {
		return rules.regionOf(num)
	}
	region = phonenumbers.GetRegionCodeForNumber(num)
	if region == "" || !phonenumbers.IsValidNumberForRegion(num, region) {
		return region, "", false
	}
	return region, specialType(phonenumbers.GetNumberType(num)), true
}

// specialType is the name in gateway.SpecialNumberTypes of a libphonenumber type, "" for the
// others.
func specialType(t phonenumbers.PhoneNumberType) string {
	switch t {
	case phonenumbers.PREMIUM_RATE:
		return "premium_rate"
	case phonenumbers.TOLL_FREE:
		return "toll_free"
	case phonenumbers.SHARED_COST:
		return "shared_cost"
	case phonenumbers.VOIP:
		return "voip"
	case phonenumbers.PERSONAL_NUMBER:
		return "personal_number"
	case phonenumbers.PAGER:
		return "pager"
	case phonenumbers.UAN:
		return "uan"
	case phonenumbers.VOICEMAIL:
		return "voicemail"
	}
	return ""
}

// parseInternational is phonenumbers.Parse(s, "ZZ") for the common case, without Parse's regular
// expressions (they were most of the CPU a send spent on its number; see docs/benchmarks.md): one
// "+", then digits and the separators validRecipientChar allows. For such input Parse only splits
// off the calling code, unless the national number begins with a national prefix it would strip
// (or transform), or with a 0 (Italian leading zero). Whenever any of that might apply, or the
// calling code or lengths are not plainly fine, ok is false and the caller runs Parse itself.
// TestFastParseEqualsLibphonenumber checks the two agree over every region's example numbers and
// random numbers under every calling code.
func parseInternational(s string) (*phonenumbers.PhoneNumber, bool) {
	if len(s) < 2 || len(s) > phonenumbers.MAX_INPUT_STRING_LENGTH || s[0] != '+' {
		return nil, false
	}
	var buf [24]byte
	digits := buf[:0]
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			if len(digits) == len(buf) {
				return nil, false
			}
			digits = append(digits, c)
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default: // a second '+' and anything else: Parse decides
			return nil, false
		}
	}
	if len(digits) == 0 || digits[0] == '0' {
		return nil, false
	}
	// The calling code as Parse finds it: the shortest prefix of up to three digits that is one.
	cc, national, code := 0, []byte(nil), 0
	for i := 1; i <= 3 && i < len(digits); i++ {
		code = code*10 + int(digits[i-1]-'0')
		if phonenumbers.GetRegionCodeForCountryCode(code) != "ZZ" {
			if !prefixes().known[code] {
				return nil, false
			}
			cc, national = code, digits[i:]
			break
		}
	}
	// Parse's own bounds (MIN_LENGTH_FOR_NSN 2, MAX_LENGTH_FOR_NSN 17), and the cases it treats
	// specially: leading zeros, a national prefix at the start.
	if cc == 0 || len(national) < 2 || len(national) > 17 || national[0] == '0' {
		return nil, false
	}
	if re := prefixes().forCode[cc]; re != nil && re.Match(national) {
		return nil, false
	}
	var nn uint64 // at most 17 digits: no overflow
	for _, d := range national {
		nn = nn*10 + uint64(d-'0')
	}
	code32 := int32(cc)
	return &phonenumbers.PhoneNumber{CountryCode: &code32, NationalNumber: &nn}, true
}

// nationalPrefixes holds, per calling code, the metadata Parse consults for a number in
// international form: the national prefix for parsing of the code's main region (or of its
// non-geographic entity), anchored at the start as Parse anchors it.
type nationalPrefixes struct {
	known   map[int]bool
	forCode map[int]*regexp.Regexp
}

var prefixes = sync.OnceValue(func() nationalPrefixes {
	p := nationalPrefixes{known: map[int]bool{}, forCode: map[int]*regexp.Regexp{}}
	md := metadata()
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		m := md.byRegion[phonenumbers.GetRegionCodeForCountryCode(cc)]
		if phonenumbers.GetRegionCodeForCountryCode(cc) == NonGeographic {
			m = md.nonGeo[cc]
		}
		if m == nil {
			continue // Parse knows something this table does not: leave it to Parse
		}
		if np := m.GetNationalPrefixForParsing(); np != "" {
			re, ok := compile("^(?:" + np + ")")
			if !ok {
				continue
			}
			p.forCode[cc] = re
		}
		p.known[cc] = true
	}
	return p
})
