package intake

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// numberCorpus is every region's example numbers of every type (and the non-geographic
// entities'), each also with separators, with a national prefix or a 0 inserted after the
// calling code, one digit short and one digit long; then forty random national numbers of 2 to 15
// digits under every calling code. The seed is fixed, so a failure reproduces.
func numberCorpus() []string {
	var out []string
	add := func(e164 string, cc int) {
		out = append(out, e164)
		code := strconv.Itoa(cc)
		national := e164[1+len(code):]
		out = append(out,
			"+"+code+" ("+national[:min(3, len(national))]+") "+national[min(3, len(national)):],
			"+"+code+"-"+strings.Join(strings.Split(national, ""), "."),
			"+"+code+"0"+national,
			"+"+code+"1"+national,
			"+"+code+"8"+national,
			e164[:len(e164)-1],
			e164+"7",
		)
	}
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE,
		phonenumbers.TOLL_FREE, phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST,
		phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER, phonenumbers.UAN,
		phonenumbers.VOICEMAIL}
	for region := range phonenumbers.GetSupportedRegions() {
		for _, typ := range types {
			if ex := phonenumbers.GetExampleNumberForType(region, typ); ex != nil {
				add(phonenumbers.Format(ex, phonenumbers.E164), int(ex.GetCountryCode()))
			}
		}
	}
	for cc := range phonenumbers.GetSupportedGlobalNetworkCallingCodes() {
		if ex := phonenumbers.GetExampleNumberForNonGeoEntity(cc); ex != nil {
			add(phonenumbers.Format(ex, phonenumbers.E164), cc)
		}
	}
	rng := rand.New(rand.NewPCG(24, 2026))
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		for range 40 {
			b := []byte("+" + strconv.Itoa(cc))
			for range 2 + rng.IntN(14) {
				b = append(b, byte('0'+rng.IntN(10)))
			}
			out = append(out, string(b))
		}
	}
	// Unassigned calling codes, a leading zero, a second plus.
	return append(out, "+2999123456", "+0441234567", "+44+7400123456", "+1", "+12")
}

// TestFastParseEqualsLibphonenumber: wherever parseInternational answers, it answers exactly
// what phonenumbers.Parse does, field by field, and the E.164 NormalizeNumber builds from it is
// Format's. And it does answer for the common case, or it would be dead weight.
func TestFastParseEqualsLibphonenumber(t *testing.T) {
	corpus := numberCorpus()
	fast := 0
	for _, s := range corpus {
		got, ok := parseInternational(s)
		if !ok {
			continue
		}
		fast++
		want, err := phonenumbers.Parse(s, "ZZ")
		if err != nil {
			t.Errorf("%s: the fast path parsed what Parse refuses (%v)", s, err)
			continue
		}
		if got.GetCountryCode() != want.GetCountryCode() || got.GetNationalNumber() != want.GetNationalNumber() ||
			got.GetItalianLeadingZero() != want.GetItalianLeadingZero() ||
			got.GetNumberOfLeadingZeros() != want.GetNumberOfLeadingZeros() ||
			got.GetExtension() != want.GetExtension() || got.GetRawInput() != want.GetRawInput() ||
			got.GetPreferredDomesticCarrierCode() != want.GetPreferredDomesticCarrierCode() ||
			got.GetCountryCodeSource() != want.GetCountryCodeSource() {
			t.Errorf("%s: fast %v, Parse %v", s, got, want)
		}
		if digits := strings.Count(phonenumbers.Format(want, phonenumbers.E164), "") - 2; digits < 6 || digits > 17 {
			continue // NormalizeNumber's own bounds refuse it before parsing
		}
		n, err := NormalizeNumber(s, true)
		if err != nil || n.E164 != phonenumbers.Format(want, phonenumbers.E164) {
			t.Errorf("%s: NormalizeNumber %q (%v), Format %q", s, n.E164, err, phonenumbers.Format(want, phonenumbers.E164))
		}
	}
	if fast < len(corpus)/3 {
		t.Errorf("the fast path took %d of %d numbers: it no longer serves the common case", fast, len(corpus))
	}
	for _, s := range []string{"+14155550104", "+1 (415) 555-0104", "+447400123456", "+49 151 12345678", "+919812345678"} {
		if _, ok := parseInternational(s); !ok {
			t.Errorf("%s: not on the fast path", s)
		}
	}
	t.Logf("fast path for %d of %d numbers", fast, len(corpus))
}
