package config

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
)

// TestProblemsSortByLineKeepingTheirOrder: Sort orders problems by line and keeps the order in
// which problems on one line were found (a flow-style line holds many keys).
func TestProblemsSortByLineKeepingTheirOrder(t *testing.T) {
	var ps Problems
	for i := range 100 {
		ps = append(ps, Problem{Line: (i * 7) % 5, Msg: fmt.Sprint(i)})
	}
	ps.Sort()
	seen := map[int]int{}
	for i, p := range ps {
		if i > 0 && p.Line < ps[i-1].Line {
			t.Fatalf("line %d after line %d", p.Line, ps[i-1].Line)
		}
		var n int
		fmt.Sscan(p.Msg, &n)
		if last, ok := seen[p.Line]; ok && n < last {
			t.Fatalf("on line %d, problem %d after problem %d", p.Line, n, last)
		}
		seen[p.Line] = n
	}
}

// TestHasProblemAfterProblemsWereDropped: the index HasProblem keeps is built anew once
// DropUnjudged has removed problems, so that a problem added after still counts.
func TestHasProblemAfterProblemsWereDropped(t *testing.T) {
	d := &Decoder{File: "x.yaml", Unread: true, unread: map[string]bool{"server.admin_token": true}}
	d.Add(1, "server.admin_token", "is not judged")
	d.Add(2, "server.listen", "first")
	d.Add(3, "storage.path", "second")
	if !d.HasProblem("storage.path") {
		t.Fatal("a problem added is not seen")
	}
	d.DropUnjudged()
	d.Add(4, "log.level", "after the drop")
	if !d.HasProblem("log.level") || !d.HasProblem("server.listen") || d.HasProblem("server.admin_token") {
		t.Errorf("after a drop: log.level %v, server.listen %v, server.admin_token %v; want true, true, false",
			d.HasProblem("log.level"), d.HasProblem("server.listen"), d.HasProblem("server.admin_token"))
	}
}

// TestRedactHidesEveryValueReadSoFar: a value read from a reference after Redact was first used
// is hidden too, by the first reference that gave it; a value of four bytes is hidden, one of
// three (a country, an "on") is not.
func TestRedactHidesEveryValueReadSoFar(t *testing.T) {
	d := &Decoder{}
	d.remember("secret-one", "${A}")
	if got := d.Redact("secret-one"); got != "${A}" {
		t.Fatalf("Redact = %q", got)
	}
	d.remember("secret-two", "${B}")
	d.remember("secret-two", "${C}")
	d.remember("abcd", "${D}")
	d.remember("xyz", "${E}")
	if got, want := d.Redact("secret-one secret-two abcd xyz"), "${A} ${B} ${D} xyz"; got != want {
		t.Errorf("Redact = %q, want %q", got, want)
	}
}

// TestAQuotedReferenceTakesTheKeysType: "${VAR}" quoted (as YAML linters ask) in a number's or a
// bool's key is read as the number or the bool it holds, not refused as a string.
func TestAQuotedReferenceTakesTheKeysType(t *testing.T) {
	src := `storage: {retry_buffer: "${RB}", spool_dir: /tmp/x, spool_sync: '${SYNC}'}
tenants: [{name: acme, api_key: k1}]
providers: [{name: p1, type: mock}]
routes: [{name: default, providers: [p1]}]
`
	c, err := Parse("q.yaml", []byte(src), env(map[string]string{"RB": "4096", "SYNC": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.RetryBuffer != 4096 || !c.Storage.SpoolSync {
		t.Errorf("retry_buffer %d, spool_sync %v; want 4096, true", c.Storage.RetryBuffer, c.Storage.SpoolSync)
	}
}

// TestASingleValueKeyRefusesAMapping: a key that takes one value written as text (a limit such
// as 5/1h) says so when given a mapping, rather than that an empty text is invalid.
func TestASingleValueKeyRefusesAMapping(t *testing.T) {
	src := `policy: {rate_limits: {per_recipient: {n: 5, per: 1h}}}
tenants: [{name: acme, api_key: k1}]
providers: [{name: p1, type: mock}]
routes: [{name: default, providers: [p1]}]
`
	_, err := Parse("m.yaml", []byte(src), env(nil))
	if err == nil {
		t.Fatal("Parse accepted a mapping for a limit")
	}
	if got, want := err.Error(), "m.yaml:1: policy.rate_limits.per_recipient: expected a single value, got a mapping"; got != want {
		t.Errorf("problems:\n%s\nwant only:\n%s", got, want)
	}
}

// TestAKeyGivenTwiceInAMappingIsAProblem: a key given twice in one mapping (a second routes: at
// the top, a tenant's api_key, a country of a per_country map, a driver's own option) is a
// problem at the second's line naming the first's, instead of one of the two values being kept
// without a word. The same key in two mappings is no problem.
func TestAKeyGivenTwiceInAMappingIsAProblem(t *testing.T) {
	src := `tenants:
  - name: acme
    api_key: k1
    api_key: k2
    rate_limits: {per_country: {US: 5/1h, FR: 2/1h, US: 50/1h}}
  - {name: other, api_key: k3}
providers:
  - {name: p1, type: mock, latency: 1ms, latency: 2ms}
routes: [{name: default, providers: [p1]}]
routes: [{name: other, providers: [p1]}]
`
	_, err := Parse("d.yaml", []byte(src), env(nil))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse: %v, want problems", err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	want := []string{
		`d.yaml:4: tenants[0].api_key: given twice in one mapping (first on line 3): remove one`,
		`d.yaml:5: tenants[0].rate_limits.per_country.US: given twice in one mapping (first on line 5): remove one`,
		`d.yaml:8: providers[0].latency: given twice in one mapping (first on line 8): remove one`,
		`d.yaml:10: routes: given twice in one mapping (first on line 9): remove one`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
}

// TestDriverOptionsAreDecodedAtTheirLines: a driver's own keys (DecodeOptions) are decoded as
// strictly as the rest, each problem at its key's line, and those on one line in the order of
// their keys.
func TestDriverOptionsAreDecodedAtTheirLines(t *testing.T) {
	src := `tenants: [{name: acme, api_key: k1}]
providers:
  - name: p1
    type: mock
    latency: soon
    failure_rate: 0.5
  - {name: p2, type: mock, zeta: 1, alpha: 2, beta: 3}
  - name: p3
    type: mock
    colour: red
routes: [{name: default, providers: [p1, p2, p3]}]
`
	c, err := Parse("o.yaml", []byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var opts [3]struct {
		Latency     gateway.Duration `yaml:"latency"`
		FailureRate float64          `yaml:"failure_rate"`
	}
	c.DecodeOptions(0, &opts[0])
	c.DecodeOptions(1, &opts[1])
	c.DecodeOptions(2, &opts[2])
	var got []string
	for _, p := range c.Decoder.Problems {
		got = append(got, p.String())
	}
	want := []string{
		`o.yaml:5: providers[0].latency: invalid value "soon": time: invalid duration "soon"`,
		`o.yaml:7: providers[1].alpha: unknown key "alpha" (known keys: failure_rate, latency)`,
		`o.yaml:7: providers[1].beta: unknown key "beta" (known keys: failure_rate, latency)`,
		`o.yaml:7: providers[1].zeta: unknown key "zeta" (known keys: failure_rate, latency)`,
		`o.yaml:10: providers[2].colour: unknown key "colour" (known keys: failure_rate, latency)`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
	if opts[0].FailureRate != 0.5 {
		t.Errorf("failure_rate = %v", opts[0].FailureRate)
	}
}
