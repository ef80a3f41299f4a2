package intake

import (
	"regexp"
	"slices"
	"sync"

	"github.com/nyaruka/phonenumbers"

	"github.com/smsgate/smsgate/gateway"
)

// regionOf is, for a number under the rules' calling code, phonenumbers.GetRegionCodeForNumber
// followed by IsValidNumberForRegion for that region, with the same metadata and the same rules,
// but with each pattern compiled once per calling code. The library builds each pattern's cache
// key by string concatenation on every check and checks a +1 number's types twice (once to find
// the region, once to validate it): about 5 KB of garbage per send, 16 % of the gateway's
// allocated bytes (docs/benchmarks.md). It returns the region ("" when the calling code has none)
// and whether the number is valid there, and its type when it is one of the special ones
// (gateway.SpecialNumberTypes). TestRegionOfEqualsLibphonenumber compares the two over the number corpus.
func (rules *callingCodeRules) regionOf(num *phonenumbers.PhoneNumber) (region, kind string, valid bool) {
	if len(rules.regions) == 0 {
		return "", "", false
	}
	national := phonenumbers.GetNationalSignificantNumber(num)
	if len(rules.regions) == 1 {
		r := rules.regions[0]
		kind, valid = r.kind(national)
		return r.id, kind, valid
	}
	for _, r := range rules.regions {
		if r.leading != nil {
			if r.leading.MatchString(national) {
				kind, valid = r.kind(national)
				return r.id, kind, valid
			}
		} else if kind, valid = r.kind(national); valid {
			return r.id, kind, true
		}
	}
	return "", "", false
}

// possibleRegions is where a number the rules do not recognize as valid may be, the region it is
// counted in first. A calling code of one region: that region. A shared one: the region whose
// leading digits the number starts with (JM for +1 876, whatever follows), else the regions
// without leading digits whose general pattern it matches, or all of those when it matches
// none of them (+1 with an area code of neither's known ranges: US and CA). Country lists hold
// for each (policy), so an unrecognized range is not a way around them.
func (rules *callingCodeRules) possibleRegions(national string) []string {
	if len(rules.regions) == 1 {
		return []string{rules.regions[0].id}
	}
	var plain, matching []string
	for _, r := range rules.regions {
		switch {
		case r.leading != nil:
			if r.leading.MatchString(national) {
				return []string{r.id}
			}
		case r.general.matches(national):
			matching = append(matching, r.id)
			plain = append(plain, r.id)
		default:
			plain = append(plain, r.id)
		}
	}
	switch {
	case len(matching) > 0:
		return matching
	case len(plain) > 0:
		return plain
	}
	// Every region has leading digits and none matches (+7 6..., +47 1...): any of them.
	out := make([]string, len(rules.regions))
	for i, r := range rules.regions {
		out[i] = r.id
	}
	return out
}

// LeadingDigits is how many of national's first digits are region's leading digits: the prefix
// that sets a region apart from the others of its calling code (876 for JM under +1, 7624 for IM
// under +44), or 0 for a region that has none (US, GB: the calling code's main region and the
// regions told apart by their number patterns alone).
func LeadingDigits(region, national string) int {
	rules := rulesFor(phonenumbers.GetCountryCodeForRegion(region))
	if rules == nil || len(rules.regions) < 2 {
		return 0
	}
	for _, r := range rules.regions {
		if r.id == region && r.leading != nil {
			return len(r.leading.FindString(national))
		}
	}
	return 0
}

// ApartByPatterns reports whether region shares its calling code, is not the code's main region,
// and has no leading digits of its own: only its number patterns tell its numbers from the main
// region's (CA under +1 beside US, GG and JE under +44 beside GB, YT beside RE). No prefix of a
// few digits then holds its numbers alone.
func ApartByPatterns(region string) bool {
	rules := rulesFor(phonenumbers.GetCountryCodeForRegion(region))
	if rules == nil || len(rules.regions) < 2 {
		return false
	}
	for i, r := range rules.regions {
		if r.id == region {
			return i > 0 && r.leading == nil
		}
	}
	return false
}

// callingCodeRules are the validity rules of the regions that share a calling code, in the
// library's order (the main region first).
type callingCodeRules struct {
	regions []*regionRules
}

// regionRules is one region's metadata as getNumberTypeHelper reads it.
type regionRules struct {
	id      string
	leading *regexp.Regexp // the region's leading digits, nil when it has none
	general numberDesc
	// kinds are the descriptions after the general one whose match makes the number valid:
	// premium rate, toll free, shared cost, VoIP, personal, pager, UAN, voicemail, fixed line,
	// and mobile unless the region's mobile and fixed-line patterns are the same (the library
	// then never checks mobile on its own).
	kinds []numberDesc
}

// numberDesc is a PhoneNumberDesc: possible lengths and the national number pattern, and the
// name of its type when it is one of the special ones (gateway.SpecialNumberTypes), else "".
type numberDesc struct {
	name    string
	lengths []int32
	pattern *regexp.Regexp // nil: the description has no pattern, and nothing matches it
}

// matches is the library's isNumberMatchingDesc: a listed length (when lengths are listed), and
// the whole national number matching the pattern.
func (d numberDesc) matches(national string) bool {
	if d.pattern == nil {
		return false
	}
	if len(d.lengths) > 0 && !slices.Contains(d.lengths, int32(len(national))) {
		return false
	}
	return d.pattern.MatchString(national)
}

// kind is getNumberTypeHelper(national): whether it is not UNKNOWN, and the special type's name
// when it is one ("" for a fixed-line or mobile number). The library checks the types in the
// order of kinds and stops at the first that matches, as this does.
func (r *regionRules) kind(national string) (string, bool) {
	if !r.general.matches(national) {
		return "", false
	}
	for _, d := range r.kinds {
		if d.matches(national) {
			return d.name, true
		}
	}
	return "", false
}

// codeRules caches callingCodeRules per calling code, built on first use (about 250 codes, each
// a dozen patterns: compiling them all at start would cost time most replicas never need).
var codeRules sync.Map // int -> *callingCodeRules

func rulesFor(cc int) *callingCodeRules {
	if r, ok := codeRules.Load(cc); ok {
		return r.(*callingCodeRules)
	}
	actual, _ := codeRules.LoadOrStore(cc, buildRules(cc)) // nil too: do not retry on every send
	return actual.(*callingCodeRules)
}

// buildRules compiles the rules of cc's regions, or returns nil when the metadata lacks one of
// them or a pattern does not compile (then regionOf is not trusted for cc; see normalizeRegion).
func buildRules(cc int) *callingCodeRules {
	md := metadata()
	out := &callingCodeRules{}
	for _, id := range phonenumbers.GetRegionCodesForCountryCode(cc) {
		m := md.byRegion[id]
		if id == NonGeographic {
			m = md.nonGeo[cc]
		}
		if m == nil {
			return nil
		}
		r := &regionRules{id: id}
		var ok bool
		if ld := m.GetLeadingDigits(); ld != "" {
			if r.leading, ok = compile("^(?:" + ld + ")"); !ok {
				return nil
			}
		}
		if r.general, ok = desc(m.GetGeneralDesc()); !ok {
			return nil
		}
		kinds := []*phonenumbers.PhoneNumberDesc{m.GetPremiumRate(), m.GetTollFree(), m.GetSharedCost(),
			m.GetVoip(), m.GetPersonalNumber(), m.GetPager(), m.GetUan(), m.GetVoicemail(), m.GetFixedLine()}
		if !m.GetSameMobileAndFixedLinePattern() {
			kinds = append(kinds, m.GetMobile())
		}
		for i, k := range kinds {
			d, ok := desc(k)
			if !ok {
				return nil
			}
			if i < len(gateway.SpecialNumberTypes) {
				d.name = gateway.SpecialNumberTypes[i]
			}
			if d.pattern != nil {
				r.kinds = append(r.kinds, d)
			}
		}
		out.regions = append(out.regions, r)
	}
	return out
}

func desc(d *phonenumbers.PhoneNumberDesc) (numberDesc, bool) {
	p := d.GetNationalNumberPattern()
	if p == "" { // "^(?:)$" matches only an empty national number, which never gets here
		return numberDesc{}, true
	}
	re, ok := compile("^(?:" + p + ")$")
	return numberDesc{lengths: d.GetPossibleLength(), pattern: re}, ok
}

func compile(p string) (*regexp.Regexp, bool) {
	re, err := regexp.Compile(p)
	return re, err == nil
}

// metadataIndex is the library's metadata by region, and the non-geographic entities' by calling
// code.
type metadataIndex struct {
	byRegion map[string]*phonenumbers.PhoneMetadata
	nonGeo   map[int]*phonenumbers.PhoneMetadata
}

var metadata = sync.OnceValue(func() metadataIndex {
	md := metadataIndex{byRegion: map[string]*phonenumbers.PhoneMetadata{}, nonGeo: map[int]*phonenumbers.PhoneMetadata{}}
	coll, err := phonenumbers.MetadataCollection()
	if err != nil { // the embedded metadata does not load: no fast paths, the library reports it
		return md
	}
	for _, m := range coll.GetMetadata() {
		if m.GetId() == NonGeographic {
			md.nonGeo[int(m.GetCountryCode())] = m
		} else {
			md.byRegion[m.GetId()] = m
		}
	}
	return md
})
