package gateway

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLinkHosts(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		// Auth0's own templates, and texts like them: no link.
		{"123456 is your verification code for Acme. Please enter this code to verify your enrollment.", nil},
		{"Your code is 482913", nil},
		{"Your Acme.com code is 482913. Don't share it.", nil},
		{"Your code is 482913\n\n@acme.com #482913", nil}, // WebOTP's origin line
		{"Code 1/2: 4829, valid 5.5 min, e.g./i.e. km/h", nil},
		{"Votre code : 482913", nil},
		{"", nil},
		// Links.
		{"Your account is locked: https://acme-secure.example/login", []string{"acme-secure.example"}},
		{"HTTP://EVIL.Example:8080/x?y#z", []string{"evil.example"}},
		{"see https://acme.com@evil.example/ now", []string{"evil.example"}},
		{"https:///evil.example/x", []string{"evil.example"}},
		{`https:\\evil.example`, nil}, // no "://": not a link a phone follows
		{"hxxps://evil.example/", []string{"evil.example"}},
		{"(https://evil.example/a), 'www.other.example'", []string{"evil.example", "www.other.example"}},
		{"www.evil.example.", []string{"www.evil.example"}},
		{"go to bit.ly/3xYz and evil.com/login.", []string{"bit.ly", "evil.com"}},
		{"代码482913请访问https://evil.example/", []string{"evil.example"}},
		{"Code 4829 evil.рф/x", []string{"evil.рф"}},
		{"Code 4829 evil。com/x and evil．net/y", []string{"evil。com", "evil．net"}},
		{"a..b/c .ab/c ab./c a.b1/c", nil},
		{"http://192.0.2.1/x", []string{"192.0.2.1"}},
		{"Code 4829: 192.0.2.1/x evil.com:8443/y", []string{"192.0.2.1", "evil.com"}},
		{"Code 4829: 1.2/3 10:30/11:00 a:/b", nil},
		{"Code 4829. Visit:www.evil.example or:evil.com:8443/x or 482913.evil.io/y", []string{"www.evil.example", "evil.com", "482913.evil.io"}},
		{"awww.no hmm.www.yes.example", []string{"www.yes.example"}},
		{"Code/evil.COM/login", []string{"evil.com"}},
		// A name before a slash is a link when it ends in a top-level domain, not in any word:
		// a code and a missing space are not one ("ignore", "valid" and "example" are none).
		{"code:1234.Ignore/delete if not you. 482913.Valid/usable 5 min. See acme.example/x", nil},
		{"Code 4829 acme.app/x acme.co.uk/x 163.com/x", []string{"acme.app", "acme.co.uk", "163.com"}},
		{"Code 4829 evil.xn--p1ai/x", []string{"evil.xn--p1ai"}}, // a top-level domain in punycode
		{"https://%65vil.example/", []string{"%65vil.example"}},
		{"https://", []string{""}},
		{"intent://scan/#Intent;scheme=zxing;end", []string{"scan"}},
		{"Visit WWW.Evil.Example now", []string{"www.evil.example"}},
		// The host ends where a browser ends it: at a path, a query or a fragment, a backslash
		// (a slash to a browser) among them, and after the last "@" of the user info; what follows
		// cannot name another host.
		{`https://evil.example\@acme.com/`, []string{"evil.example", "acme.com"}},
		{"https://evil.example?@acme.com", []string{"evil.example"}},
		{"https://evil.example#@acme.com", []string{"evil.example"}},
		{"https://x@y@evil.example/", []string{"evil.example"}},
		{"Code 4829 evil｡com/x", []string{"evil｡com"}}, // the halfwidth ideographic full stop
		{"Code 4829 a..com/x", nil},                    // an empty label: no name
		{"Code 4829 evil.зло/x", []string{"evil.зло"}}, // a top-level domain beyond ASCII counts unchecked
		// One link can hide another in its path or query: the phone follows the first, so every
		// form found anywhere in a word counts (only the first found did, so these passed on
		// acme.com's allowance).
		{"evil.com/https://acme.com", []string{"acme.com", "evil.com"}},
		{"Code 1234 evil.com/login!https://acme.com/", []string{"acme.com", "evil.com"}},
		{"evil.com/x?u=www.acme.com", []string{"www.acme.com", "evil.com"}},
		{"https://acme.com/x/https://evil.com/y", []string{"acme.com", "evil.com"}},
		{"https://acme.com/r/partner.io/x", []string{"acme.com", "partner.io"}}, // errs towards a link
	} {
		got := slices.Collect(LinkHosts(tc.text, false))
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("LinkHosts(%q) (-want +got):\n%s", tc.text, diff)
		}
	}
}

// TestBareNames: with policy.bare_domain_links every domain name is a link, wherever it is, and
// a word that only looks like one (an abbreviation, a file name, a sentence without its space in
// a script that has no spaces) is none.
func TestBareNames(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"123456 is your verification code for Acme. Please enter this code to verify your enrollment.", nil},
		{"Your code is 482913.", nil},
		{"Code 1/2: 4829, valid 5.5 min, e.g./i.e. km/h, U.S., Ph.D, node.js, 1234.Ignore", nil},
		{"您的验证码是482913。请勿泄露", nil}, // the ideographic full stop between two sentences
		{"Your Acme.com code is 482913. Don't share it.", []string{"acme.com"}},
		{"Your code is 482913\n\n@acme.com #482913", []string{"acme.com"}}, // WebOTP's origin line
		{"Account locked. Verify at acme-secure-login.com.", []string{"acme-secure-login.com"}},
		{"Reply to bob@Evil.Example.ORG", []string{"evil.example.org"}},
		{"-evil.io- and (evil.co.uk)", []string{"evil.io", "evil.co.uk"}},
		{"Code 4829 пример.рф and evil。com", []string{"пример.рф", "evil。com"}},
		{"Код 4829: evil。com", []string{"evil。com"}}, // no ASCII full stop in the text
		{"Code: evil٣.com", []string{"evil٣.com"}},   // a digit beyond ASCII is part of the name
		{"https://acme.com/go/evil.com/x", []string{"acme.com", "evil.com"}},
		{"Code 4829.It expires in 5 min", []string{"4829.it"}}, // errs towards a name
		{"Code 4829 evil.xn--p1ai", []string{"evil.xn--p1ai"}},
		{"evil.com", []string{"evil.com"}},
		{"Code 4829, see 203.0.113.5. Version 1.2.3 of 1.2.3.4.5", []string{"203.0.113.5"}},
	} {
		got := slices.Collect(BareNames(tc.text))
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("BareNames(%q) (-want +got):\n%s", tc.text, diff)
		}
	}
	// LinkHosts with bare: the bare names, then the links the other forms find.
	got := slices.Collect(LinkHosts("Visit acme.com or bit.ly/x", true))
	if diff := cmp.Diff([]string{"acme.com", "bit.ly", "bit.ly"}, got); diff != "" {
		t.Errorf("LinkHosts with bare names (-want +got):\n%s", diff)
	}
	if got := slices.Collect(LinkHosts("Visit acme.com", false)); got != nil {
		t.Errorf("LinkHosts without bare names yielded %q", got)
	}
}

func TestHostAllowed(t *testing.T) {
	hosts := []string{"acme.com", "acme.co.uk"}
	for host, want := range map[string]bool{
		"acme.com": true, "login.acme.com": true, "www.acme.co.uk": true,
		"evilacme.com": false, "acme.com.evil.example": false, "": false, "com": false,
	} {
		if got := HostAllowed(host, hosts); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

func BenchmarkLinkHosts(b *testing.B) {
	for _, text := range []string{"123456 is your verification code for Acme. Please enter this code to verify your enrollment.", "Your account is locked: https://acme-secure.example/login",
		"Code 482913.Valid/usable 5 min; help at acme.com/help",
		strings.Repeat("1/", 800),    // the longest text, a name and a path at every other character
		strings.Repeat("a.bc/", 320), // a name to look up in the public suffix list at every fifth
		distinctLinks(1600)} {        // a link to another host at every seventh character, in one word
		b.Run(text[:10], func(b *testing.B) {
			for b.Loop() {
				for range LinkHosts(text, false) {
				}
			}
		})
		b.Run(text[:10]+"/bare", func(b *testing.B) {
			for b.Loop() {
				for range LinkHosts(text, true) {
				}
			}
		})
	}
}

// distinctLinks is a word of n bytes that links to another host every few characters:
// "https://h0.io/h1.io/h2.io/...".
func distinctLinks(n int) string {
	var b strings.Builder
	b.WriteString("https://")
	for i := 0; b.Len() < n-8; i++ {
		fmt.Fprintf(&b, "h%d.io/", i)
	}
	return b.String()
}

// FuzzLinkHosts: any text is scanned without a panic (the scan runs on every tenant's text), and
// each host is one word's, in lower case, found only where a link form can be.
func FuzzLinkHosts(f *testing.F) {
	for _, s := range []string{"https://acme.com@evil.example:8/x", "www.x", "a.bc/d", "代码https://例子.测试/", "1.2.3.4:5/x", "https:///", ":/", "://", "www."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for host := range BareNames(text) {
			if !DomainName(host) && !ipv4(host) || host != strings.ToLower(host) || !strings.Contains(strings.ToLower(text), host) {
				t.Errorf("BareNames(%q) yielded %q, not a domain name or an address of the text in lower case", text, host)
			}
		}
		for host := range LinkHosts(text, false) {
			if strings.ContainsFunc(host, wordBreak) {
				t.Errorf("LinkHosts(%q) yielded %q, more than a word", text, host)
			}
			if host != strings.ToLower(host) {
				t.Errorf("LinkHosts(%q) yielded %q, not in lower case", text, host)
			}
			if !strings.Contains(text, "/") && !hasWWW(text) {
				t.Errorf("LinkHosts(%q) yielded %q with no link form in the text", text, host)
			}
		}
	})
}
