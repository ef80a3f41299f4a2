package intake

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// numberCorpus is every region's example numbers of every type (and the non-geographic
// entities'), each also with separators, with 0, 1 or 8 inserted after the calling code (national
// prefixes and their look-alikes), one digit short and one long; then forty random national numbers
// of 2 to 15 digits under every calling code. The seed and the order are fixed, so a failure reproduces.
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
	for _, region := range slices.Sorted(maps.Keys(phonenumbers.GetSupportedRegions())) {
		for _, typ := range types {
			if ex := phonenumbers.GetExampleNumberForType(region, typ); ex != nil {
				add(phonenumbers.Format(ex, phonenumbers.E164), int(ex.GetCountryCode()))
			}
		}
	}
	for _, cc := range slices.Sorted(maps.Keys(phonenumbers.GetSupportedGlobalNetworkCallingCodes())) {
		if ex := phonenumbers.GetExampleNumberForNonGeoEntity(cc); ex != nil {
			add(phonenumbers.Format(ex, phonenumbers.E164), cc)
		}
	}
	rng := rand.New(rand.NewPCG(24, 2026))
	for _, cc := range slices.Sorted(maps.Keys(phonenumbers.GetSupportedCallingCodes())) {
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
		if agreesWithParse(t, s) {
			fast++
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

// FuzzFastParse: for any input, the fast path either declines or agrees with Parse (go test
// runs the seeds; go test -fuzz FuzzFastParse ./gateway/intake searches further).
func FuzzFastParse(f *testing.F) {
	for _, s := range []string{"+14155550104", "+1 (415) 555-0104", "+44 07400 123456", "+5491112345678", "+39 06 1234 5678", "+800 1234 5678", "+7 800 555 35 35"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { agreesWithParse(t, s) })
}

// agreesWithParse reports whether the fast path answered for s, and fails t if that answer (or
// the E.164 NormalizeNumber builds from it) differs from libphonenumber's.
func agreesWithParse(t *testing.T, s string) bool {
	t.Helper()
	got, ok := parseInternational(s)
	if !ok {
		return false
	}
	want, err := phonenumbers.Parse(s, "ZZ")
	if err != nil {
		t.Errorf("%s: the fast path parsed what Parse refuses (%v)", s, err)
		return true
	}
	if got.GetCountryCode() != want.GetCountryCode() || got.GetNationalNumber() != want.GetNationalNumber() ||
		got.GetItalianLeadingZero() != want.GetItalianLeadingZero() ||
		got.GetNumberOfLeadingZeros() != want.GetNumberOfLeadingZeros() ||
		got.GetExtension() != want.GetExtension() || got.GetRawInput() != want.GetRawInput() ||
		got.GetPreferredDomesticCarrierCode() != want.GetPreferredDomesticCarrierCode() ||
		got.GetCountryCodeSource() != want.GetCountryCodeSource() {
		t.Errorf("%s: fast %v, Parse %v", s, got, want)
	}
	e164 := phonenumbers.Format(want, phonenumbers.E164)
	if digits := len(e164) - 1; digits < 6 || digits > 17 {
		return true // NormalizeNumber's own bounds refuse it before parsing
	}
	if n, err := NormalizeNumber(s, true); err != nil || n.E164 != e164 {
		t.Errorf("%s: NormalizeNumber %q (%v), Format %q", s, n.E164, err, e164)
	}
	return true
}

// TestRegionOfEqualsLibphonenumber: for every number of the corpus that Parse reads, regionOf
// finds the region GetRegionCodeForNumber finds, the validity IsValidNumberForRegion gives
// there and the special type GetNumberType gives. Plenty of both answers occur, across calling codes shared by many regions (+1, +7, +44).
func TestRegionOfEqualsLibphonenumber(t *testing.T) {
	valid, invalid := 0, 0
	for _, s := range numberCorpus() {
		if agreesOnRegion(t, s) {
			valid++
		} else {
			invalid++
		}
	}
	if valid < 2000 || invalid < 2000 {
		t.Errorf("%d valid and %d invalid numbers: the corpus no longer tests both answers", valid, invalid)
	}
	t.Logf("%d valid, %d invalid or unparsable", valid, invalid)
}

// FuzzRegionOf: for any input Parse reads, regionOf agrees with libphonenumber.
func FuzzRegionOf(f *testing.F) {
	for _, s := range []string{"+14155550104", "+18765550104", "+447400123456", "+447911123456", "+79123456789", "+77012345678", "+80012345678", "+390612345678"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { agreesOnRegion(t, s) })
}

// agreesOnRegion fails t when regionOf and libphonenumber disagree on s, and reports whether s is
// a valid number.
func agreesOnRegion(t *testing.T, s string) bool {
	t.Helper()
	num, err := phonenumbers.Parse(s, "ZZ")
	if err != nil {
		return false
	}
	wantRegion := phonenumbers.GetRegionCodeForNumber(num)
	wantValid := wantRegion != "" && phonenumbers.IsValidNumberForRegion(num, wantRegion)
	if wantValid != phonenumbers.IsValidNumber(num) {
		t.Fatalf("%s: the reference itself is inconsistent", s)
	}
	rules := rulesFor(int(num.GetCountryCode()))
	if rules == nil {
		t.Errorf("%s: no rules built for +%d", s, num.GetCountryCode())
		return wantValid
	}
	wantKind := ""
	if wantValid {
		wantKind = specialType(phonenumbers.GetNumberType(num))
	}
	gotRegion, gotKind, gotValid := rules.regionOf(num)
	if gotValid != wantValid || gotRegion != wantRegion || gotKind != wantKind {
		t.Errorf("%s: regionOf %q valid %v type %q, libphonenumber %q valid %v type %q", s, gotRegion, gotValid, gotKind, wantRegion, wantValid, wantKind)
	}
	return wantValid
}
