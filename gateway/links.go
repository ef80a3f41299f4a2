package gateway

import (
	"iter"
	"net/netip"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// LinkHosts yields the host of each link in text, in lower case: whatever a phone would make
// clickable and a phishing text needs. A link is
//   - a scheme and "://" (https://, HTTP://, hxxps://, intent://), the host after it and after any
//     user info ("https://acme.com@evil.example/" is evil.example) and without its port;
//   - "www." where a name starts ("www.evil.example", "Visit:www.evil.example");
//   - a domain name or an IPv4 address followed by a path, with or without a port ("bit.ly/x",
//     "evil.com:8443/login", "192.0.2.1/x", "Visit:evil.com/x"): labels of letters, digits and
//     '-', the last a top-level domain of the public suffix list's ICANN part ("com", "io", "рф",
//     "xn--p1ai";
//     "1234.Ignore/delete", a code and a missing space, is no link: "ignore" is no such domain,
//     and a phone would not make it one).
//
// Every link a word holds is yielded, in whichever form and wherever it is (wordLinks): one link
// can hide another in its path or query.
//
// A bare domain name without a path ("acme.com", or the origin line of a WebOTP text, "@acme.com
// #123456") is not a link here unless bare is set: product names and abbreviations look the same.
// With bare (policy.bare_domain_links), every domain name in the text is yielded too, wherever it
// is (BareNames). A link whose host cannot be read ("https:///", a percent-encoded host) yields
// what it has, possibly "": no allowed host matches it, so it is refused, never let through.
func LinkHosts(text string, bare bool) iter.Seq[string] {
	return func(yield func(string) bool) {
		if bare {
			for host := range BareNames(text) {
				if !yield(host) {
					return
				}
			}
		}
		if strings.IndexByte(text, '/') < 0 && !hasWWW(text) {
			return // every link form holds one or the other; most codes hold neither
		}
		var held [maxSeen]string
		seen := held[:0] // the word's hosts yielded so far (the first few: a host found twice only costs its check twice)
		for w := range strings.FieldsFuncSeq(text, wordBreak) {
			seen = seen[:0]
			if !wordLinks(w, func(host string) bool {
				if slices.Contains(seen, host) {
					return true
				}
				if len(seen) < maxSeen {
					seen = append(seen, host)
				}
				return yield(host)
			}) {
				return
			}
		}
	}
}

// BareNames yields, in lower case, each domain name in text whose last label is a top-level
// domain of the public suffix list's ICANN part: "acme.com", "Evil.COM." (the sentence's full stop
// is not the name's), "bob@evil.example.org" (an address: its domain), "evil。com" (IDNA maps the
// ideographic full stop to '.'), "пример.рф" (the top-level domain in Unicode, looked up in
// punycode), and each IPv4 address ("203.0.113.5"). What a phone may make clickable without a
// scheme or a path, and what a phishing text needs once links with paths are refused. Unlike the
// link forms, a name inside a link's path counts too ("https://acme.com/go/evil.com" yields
// evil.com), and a missing space after a sentence can make one ("Code 4829.It expires":
// "4829.it"): the rule errs towards a name. A top-level domain that is not a real one is no name
// ("1234.Ignore", "node.js", and the Chinese sentence "验证码482913。请勿泄露", whose last "label"
// is no domain).
func BareNames(text string) iter.Seq[string] {
	return func(yield func(string) bool) {
		if !strings.ContainsAny(text, ".。．｡") {
			return // a name holds a full stop; most codes hold none
		}
		start, stop := -1, false // the run of name characters being read: where, and whether it holds a full stop
		for i, r := range text {
			switch {
			case nameChar(r):
				if start < 0 {
					start = i
				}
				stop = stop || fullStop(r)
			case start >= 0:
				if stop && !yieldName(text[start:i], yield) {
					return
				}
				start, stop = -1, false
			}
		}
		if start >= 0 && stop {
			yieldName(text[start:], yield)
		}
	}
}

// nameChar reports whether r may be part of a domain name: a letter, a digit, '-' or a full stop.
func nameChar(r rune) bool {
	if r < utf8.RuneSelf {
		return asciiAlnum(byte(r)) || r == '-' || r == '.'
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r) || fullStop(r)
}

// yieldName yields run, a run of name characters, without the full stops and hyphens around it,
// in lower case, if it is a domain name with a known top-level domain or an IPv4 address; it
// returns what yield did.
func yieldName(run string, yield func(string) bool) bool {
	name := strings.TrimFunc(run, func(r rune) bool { return r == '-' || fullStop(r) })
	if ipv4(name) {
		return yield(name)
	}
	return !DomainName(name) || !knownTLD(name) || yield(strings.ToLower(name))
}

// hasWWW reports whether text holds "www." in any case.
func hasWWW(text string) bool {
	for i := range text {
		if wwwAt(text, i) {
			return true
		}
	}
	return false
}

// wwwAt reports whether s holds "www." in any case at i.
func wwwAt(s string, i int) bool {
	return i+4 <= len(s) && s[i]|0x20 == 'w' && strings.EqualFold(s[i:i+4], "www.")
}

// wordBreak ends a word of text: spaces, quotes and brackets, which no host holds and which
// surround a link in prose.
func wordBreak(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune("\"'`<>()[]{},;|^", r)
}

// maxSeen bounds the hosts of one word LinkHosts remembers so as not to yield them again, and so
// the comparisons each further host costs (a word of 1,600 characters holds some 200 links).
const maxSeen = 8

// wordLinks yields the host of every link in one word (LinkHosts), each form at every place it
// is found. One link in a word can hide another: "evil.com/https://acme.com" is a link to
// evil.com whose path holds acme.com's URL, and "evil.com/x?u=www.acme.com" one whose query holds
// acme.com's name; a phone follows evil.com. Yielding only the form found first let such a text
// through on acme.com's allowance, so every form found anywhere in the word counts, and a name
// in a link's path does too ("https://acme.com/r/evil.com/x" yields evil.com): the rule errs
// towards a link. It returns false when yield did.
func wordLinks(w string, yield func(string) bool) bool {
	for off := 0; ; {
		i := strings.Index(w[off:], "://")
		if i < 0 {
			break
		}
		i += off
		off = i + 3
		j := i
		for j > 0 && schemeChar(w[j-1]) {
			j--
		}
		for j < i && !letter(w[j]) { // a scheme starts with a letter
			j++
		}
		if j < i && !yield(authorityHost(strings.TrimLeft(w[i+3:], `/\`))) {
			return false
		}
	}
	for i := range w {
		// "www." where a name starts: at the word's start or after what no name holds
		// ("Visit:www.evil.example"), not inside one ("awww.").
		if wwwAt(w, i) && (i == 0 || !asciiAlnum(w[i-1])) && !yield(authorityHost(w[i:])) {
			return false
		}
	}
	for k := 0; k < len(w); k++ {
		if w[k] != '/' {
			continue
		}
		// The name just before a slash, and its port: "Visit:evil.example:8443/x",
		// "Code/evil.example/x". Each scan back stops at the slash before: linear in the word.
		head := w[:k]
		i := nameStart(head)
		host := head[i:]
		if i > 1 && head[i-1] == ':' && host != "" && strings.Trim(host, "0123456789") == "" {
			head = head[:i-1]
			host = head[nameStart(head):]
		}
		if (DomainName(host) && icannTLD(host) || ipv4(host)) && !yield(strings.ToLower(host)) {
			return false
		}
	}
	return true
}

// nameStart is where the run of name characters (letters, digits, '-' and the full stops
// DomainName takes) that ends s begins.
func nameStart(s string) int {
	i := len(s)
	for i > 0 {
		r, n := utf8.DecodeLastRuneInString(s[:i])
		if !nameChar(r) {
			break
		}
		i -= n
	}
	return i
}

// ipv4 reports whether s is an IPv4 address in dotted form.
func ipv4(s string) bool {
	if s == "" || s[0] < '0' || s[0] > '9' || strings.Count(s, ".") != 3 {
		return false // the cheap answer for most names: ParseAddr allocates its error
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}

func fullStop(r rune) bool { return r == '.' || r == '。' || r == '．' || r == '｡' }

func asciiAlnum(c byte) bool { return letter(c) || isDigit(c) }

// authorityHost is the host of a URL's authority at the start of s: up to its path, query or
// fragment, after any user info, without a port, in lower case and without a trailing dot.
func authorityHost(s string) string {
	if i := strings.IndexAny(s, `/?#\`); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimRight(strings.ToLower(s), ".")
}

// DomainName reports whether s is a domain name of two labels or more: letters, digits and '-',
// the last label of two characters or more with a letter among them ("5.5" and "e.g" are not;
// "xn--p1ai", a top-level domain in punycode, is). The ideographic and full-width full stops
// separate labels too, as IDNA maps them to '.' ("evil。example").
func DomainName(s string) bool {
	labels, size, letter := 1, 0, false // size and letter: of the label so far
	for _, r := range s {
		switch {
		case fullStop(r):
			if size == 0 {
				return false
			}
			labels, size, letter = labels+1, 0, false
		case unicode.IsLetter(r):
			size, letter = size+1, true
		case unicode.IsDigit(r) || r == '-':
			size++
		default:
			return false
		}
	}
	return labels >= 2 && size >= 2 && letter
}

// icannTLD reports whether the last label of domain name s is a top-level domain of the public
// suffix list's ICANN part ("com", "io", "xn--p1ai"; not "ignore"). A label with letters beyond
// ASCII (an internationalized top-level domain, which the list holds in punycode) counts as one
// unchecked: the rule errs towards a link (knownTLD looks it up).
func icannTLD(s string) bool {
	return strings.IndexFunc(lastLabel(s), nonASCII) >= 0 || knownTLD(s)
}

// knownTLD reports whether the last label of domain name s is a top-level domain of the public
// suffix list's ICANN part, a label beyond ASCII looked up in punycode.
func knownTLD(s string) bool {
	tld := lastLabel(s)
	if strings.IndexFunc(tld, nonASCII) >= 0 {
		a, err := idna.Lookup.ToASCII(tld)
		if err != nil {
			return false
		}
		tld = a
	}
	_, icann := publicsuffix.PublicSuffix(strings.ToLower(tld))
	return icann
}

// lastLabel is what follows the last full stop of s (all of s without one).
func lastLabel(s string) string {
	if i := strings.LastIndexFunc(s, fullStop); i >= 0 {
		_, n := utf8.DecodeRuneInString(s[i:])
		return s[i+n:]
	}
	return s
}

func nonASCII(r rune) bool { return r >= utf8.RuneSelf }

func schemeChar(c byte) bool {
	return asciiAlnum(c) || c == '+' || c == '-' || c == '.'
}

func letter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// HostAllowed reports whether host is one of hosts or a name under one ("login.acme.com" under
// "acme.com"); hosts are in lower case.
func HostAllowed(host string, hosts []string) bool {
	for _, h := range hosts {
		if host == h || strings.HasSuffix(host, "."+h) {
			return true
		}
	}
	return false
}
