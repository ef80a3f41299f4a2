package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"

	"github.com/smsgate/smsgate/gateway"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestParseValid(t *testing.T) {
	b, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("valid.yaml", b, env(map[string]string{"ACME_API_KEY": "s3cret"}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	yes := true
	probe := 0.05
	fiveCents := 0.05
	ret := gateway.Duration(720 * time.Hour)
	maxInFlight, errorLines := 1024, 10
	want := &Config{
		Server: Server{Listen: "127.0.0.1:9000", RequestTimeout: gateway.Duration(5 * time.Second), PublicURL: "https://sms.example.com",
			MaxBodyBytes: 65536, MaxInFlight: &maxInFlight, ShutdownTimeout: gateway.Duration(15 * time.Second), ReadTimeout: gateway.Duration(10 * time.Second)},
		Log:     Log{Format: "json", Level: "info", ErrorLinesPerSecond: &errorLines},
		Storage: Storage{Driver: "sqlite", Path: "data/smsgate.db", Retention: &ret, CommitTimeout: gateway.Duration(200 * time.Millisecond), WriteTimeout: gateway.Duration(10 * time.Second), RetryBuffer: 65536, BacklogFull: "drop_oldest", SQLiteMmap: &yes},
		State:   State{Driver: "memory", OnError: "open", MaxIdempotencyRecords: 100000, MaxKeys: 250000, Redis: RedisState{Addr: "127.0.0.1:6379", KeyPrefix: "smsgate:", Timeout: gateway.Duration(200 * time.Millisecond), MaxIdempotencyRecordsPerTenant: 1000000}},
		Policy: Policy{DeniedCountries: []string{"KP"}, DeniedNumberTypes: &[]string{"premium_rate", "shared_cost", "pager", "uan", "voicemail"},
			RateLimits: RateLimits{PerRecipient: &Limit{10, time.Hour}, PerIP: &Limit{20, time.Minute}, PerTenant: &Limit{50, time.Second},
				PerCountry: map[string]Limit{"NG": {10, time.Hour}}, Spend: &Spend{20.5, 24 * time.Hour}, API: &Limit{100, time.Second}},
			Idempotency:      Idempotency{TTL: gateway.Duration(24 * time.Hour)},
			ResendEscalation: ResendEscalation{Enabled: &yes, After: gateway.Duration(20 * time.Second), Within: gateway.Duration(10 * time.Minute)},
			Pumping: Pumping{Enabled: &yes, Action: "block", RangeDigits: 2, Baseline: gateway.Duration(168 * time.Hour), Warmup: gateway.Duration(24 * time.Hour),
				Factor: 8, MinVolume: 20, ConversionFloor: 0.3, ConversionWindow: gateway.Duration(time.Hour), ConversionDelay: gateway.Duration(5 * time.Minute),
				Throttle: &Limit{5, time.Hour}, Cooldown: gateway.Duration(time.Hour), Refresh: gateway.Duration(10 * time.Second)}},
		Routing: Routing{DeliveryHealth: DeliveryHealth{Enabled: &yes, Window: gateway.Duration(30 * time.Minute), MinSamples: 20, MinRate: 0.7, Margin: 0.1,
			ReportTimeout: gateway.Duration(10 * time.Minute), ProbeShare: &probe, Refresh: gateway.Duration(10 * time.Second)},
			LeastCost: LeastCost{Currency: "EUR", Rates: map[string]float64{"USD": 0.9}, Window: gateway.Duration(24 * time.Hour), MinReports: 5, Floor: 0.7, Refresh: gateway.Duration(time.Minute)}},
		Tenants: []Tenant{{Name: "acme", APIKey: "s3cret", ClientIDs: []string{"abc123"}, AllowedCountries: []string{"US", "GB"},
			RateLimits: &RateLimits{PerRecipient: &Limit{5, 10 * time.Minute}}, Pumping: &TenantPumping{Action: "alert"}}},
		Providers: []Provider{
			{Name: "primary-mock", Type: "mock", Timeout: gateway.Duration(2 * time.Second),
				Breaker: Breaker{ConsecutiveFailures: 3, FailureRatio: 0.5, MinRequests: 10, OpenTimeout: gateway.Duration(10 * time.Second), Interval: gateway.Duration(time.Minute), HalfOpenRequests: 1},
				Prices:  &Prices{Currency: "EUR", Default: &fiveCents, Countries: map[string]float64{"GB": 0.03}}},
			{Name: "backup-mock", Type: "mock", Timeout: gateway.Duration(3 * time.Second),
				Breaker: Breaker{ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20, OpenTimeout: gateway.Duration(30 * time.Second), Interval: gateway.Duration(time.Minute), HalfOpenRequests: 1},
				Prices:  &Prices{Currency: "USD", Countries: map[string]float64{"GB": 0.02}}},
		},
		Routes: []Route{
			{Name: "acme-us", Match: &Match{Tenants: []string{"acme"}, ClientIDs: []string{"abc123"}, Countries: []string{"US", "CA"},
				MessageTypes: []string{"sms"}, Actions: []string{"enrollment"}, Languages: []string{"en"}},
				Providers: []string{"primary-mock", "backup-mock"}, FailoverOnTimeout: &yes, Strategy: "ordered"},
			{Name: "default", Providers: []string{"primary-mock"}, FailoverOnTimeout: &yes, Strategy: "least_cost"},
		},
		File: "valid.yaml",
	}
	if diff := cmp.Diff(want, c, cmpopts.IgnoreFields(Config{}, "Decoder"), cmpopts.IgnoreFields(Provider{}, "Options")); diff != "" {
		t.Errorf("config mismatch (-want +got):\n%s", diff)
	}
	if got := c.Providers[0].Options["latency"]; got == nil || got.Value != "5ms" {
		t.Errorf("driver option latency not kept: %+v", got)
	}
	if p := c.EffectivePumping(&c.Tenants[0]); p.Action != "alert" || p.Factor != 8 {
		t.Errorf("tenant pumping override: %+v", p)
	}
	eff := c.EffectiveLimits(&c.Tenants[0])
	if *eff.PerRecipient != (Limit{5, 10 * time.Minute}) || *eff.PerIP != (Limit{20, time.Minute}) || eff.PerCountry["NG"] != (Limit{10, time.Hour}) || *eff.Spend != (Spend{20.5, 24 * time.Hour}) {
		t.Errorf("tenant limits do not inherit the global ones: %+v", eff)
	}
}

func TestNoPolicyBlockLimitsOnlyPerRecipient(t *testing.T) {
	c, err := Parse("x.yaml", []byte("tenants: [{name: a, api_key: k}]\nproviders: [{name: p, type: mock}]\nroutes: [{name: d, providers: [p]}]\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	got := c.EffectiveLimits(&c.Tenants[0])
	want := RateLimits{PerRecipient: &Limit{10, time.Hour}, PerIP: &Limit{}, PerTenant: &Limit{}, Spend: &Spend{}, API: &Limit{100, time.Second}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("default limits (-want +got):\n%s", diff)
	}
}

var wantRe = regexp.MustCompile(`(?m)^# want: (\d+): (.*)$`)

// TestInvalidConfigs checks every file under testdata/invalid: each "# want: LINE: text" comment
// must appear in the problems as FILE:LINE: text (LINE 0: no line).
func TestInvalidConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) < 10 {
		t.Fatalf("expected the invalid cases, found %d files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(f, b, env(nil))
			if err == nil {
				t.Fatal("Parse accepted an invalid file")
			}
			got := err.Error()
			wants := wantRe.FindAllStringSubmatch(string(b), -1)
			if len(wants) == 0 {
				t.Fatal("the test file has no # want: line")
			}
			for _, w := range wants {
				prefix := f + ":" + w[1] + ": "
				if w[1] == "0" {
					prefix = f + ": "
				}
				if !strings.Contains(got, prefix+w[2]) {
					t.Errorf("problems do not contain %q; got:\n%s", prefix+w[2], got)
				}
			}
		})
	}
}

func TestEveryProblemReportedAtOnce(t *testing.T) {
	src := "server: {listn: x, request_timeout: nope, read_timeout: nope}\ntenants: [{name: a}]\nproviders: [{name: p}]\nroutes: [{name: d, providers: [q]}]\n"
	_, err := Parse("x.yaml", []byte(src), env(nil))
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("want Problems, got %T %v", err, err)
	}
	var paths []string
	for _, p := range ps {
		paths = append(paths, p.Path)
	}
	// One problem a key: an invalid value is not also "must be positive".
	want := []string{"server.listn", "server.request_timeout", "server.read_timeout", "tenants[0].api_key", "providers[0].type", "routes[0].providers[0]"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("problem paths (-want +got):\n%s\n%s", diff, err)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	c, err := Parse("x.yaml", []byte("server: {admin_token: \"${T}\"}\ntenants: [{name: a, api_key: \"${K}\"}]\nproviders: [{name: p, type: mock}]\nroutes: [{name: d, providers: [p]}]\n"),
		env(map[string]string{"T": "admin-XYZZY", "K": "key-PLUGH"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tenants[0].APIKey.Reveal() != "key-PLUGH" {
		t.Fatalf("expansion failed: %q", c.Tenants[0].APIKey.Reveal())
	}
	out, _ := yaml.Marshal(c.Tenants)
	s := string(out) + c.Tenants[0].APIKey.String() + c.Server.AdminToken.GoString()
	for _, secret := range []string{"admin-XYZZY", "key-PLUGH"} {
		if strings.Contains(s, secret) {
			t.Errorf("secret %q printed: %s", secret, s)
		}
	}
}

func TestLimitParse(t *testing.T) {
	tests := []struct {
		in   string
		want Limit
		bad  bool
	}{
		{in: "10/1h", want: Limit{10, time.Hour}},
		{in: "20/m", want: Limit{20, time.Minute}},
		{in: "0", want: Limit{}},
		{in: "5/10m", want: Limit{5, 10 * time.Minute}},
		{in: "10/.5h", want: Limit{10, 30 * time.Minute}}, // read as 10/1.5h until the forty-third session
		{in: "10/-5m", bad: true},
		{in: "-1/1h", bad: true},
		{in: "10", bad: true},
		{in: "10/0s", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			var l Limit
			err := l.UnmarshalText([]byte(tc.in))
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v, bad = %v", err, tc.bad)
			}
			if !tc.bad && l != tc.want {
				t.Errorf("got %+v, want %+v", l, tc.want)
			}
			if !tc.bad && l.Active() != (tc.want.N > 0) {
				t.Errorf("Active() = %v for %+v", l.Active(), l)
			}
			if want := map[string]string{"10/1h": "10/1h0m0s", "0": "0"}[tc.in]; want != "" && l.String() != want {
				t.Errorf("String() = %q, want %q", l.String(), want)
			}
		})
	}
}

// TestATenantsOwnLimitsAndPumping: a tenant's rate_limits replace the global ones key by key,
// each key it leaves out inherited; its pumping settings override enabled and action alone; a
// tenant's spend limit of 0 is none, and needs no prices.
func TestATenantsOwnLimitsAndPumping(t *testing.T) {
	src := `policy:
  rate_limits: {per_recipient: 3/1h, per_ip: 4/1h, per_tenant: 5/1s, per_country: {NG: 6/1h}, spend: 0, api: 7/1s}
  pumping: {enabled: true, action: block}
tenants:
  - {name: acme, api_key: k1, rate_limits: {per_ip: 40/1h}, pumping: {enabled: false}}
  - {name: beta, api_key: k2, rate_limits: {spend: 0}}
providers: [{name: p1, type: mock}]
routes: [{name: default, providers: [p1]}]
`
	c, err := Parse("t.yaml", []byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	l := c.EffectiveLimits(&c.Tenants[0])
	got := []string{l.PerRecipient.String(), l.PerIP.String(), l.PerTenant.String(), l.PerCountry["NG"].String(), l.Spend.String(), l.API.String()}
	want := []string{"3/1h0m0s", "40/1h0m0s", "5/1s", "6/1h0m0s", "0", "7/1s"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("acme's limits (-want +got):\n%s", d)
	}
	if p := c.EffectivePumping(&c.Tenants[0]); *p.Enabled || p.Action != "block" {
		t.Errorf("acme's pumping: enabled %v, action %s; want false, block", *p.Enabled, p.Action)
	}
	if p := c.SpendLimitPath(); p != "" {
		t.Errorf("spend limits of 0 are a spend limit at %q", p)
	}
}

func TestSpendParse(t *testing.T) {
	tests := []struct {
		in   string
		want Spend
		bad  bool
	}{
		{in: "25/24h", want: Spend{25, 24 * time.Hour}},
		{in: "2.5/h", want: Spend{2.5, time.Hour}},
		{in: "0", want: Spend{}},
		{in: "-1/1h", bad: true},
		{in: "NaN/1h", bad: true},
		{in: "Inf/1h", bad: true},
		{in: "25", bad: true},
		{in: "25/0s", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			var s Spend
			err := s.UnmarshalText([]byte(tc.in))
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v, bad = %v", err, tc.bad)
			}
			if !tc.bad && s != tc.want {
				t.Errorf("got %+v, want %+v", s, tc.want)
			}
			if want := map[string]string{"25/24h": "25/24h0m0s", "2.5/h": "2.5/1h0m0s", "0": "0"}[tc.in]; !tc.bad && s.String() != want {
				t.Errorf("String() = %q, want %q", s.String(), want)
			}
		})
	}
}

func TestNonGeographicCountryAccepted(t *testing.T) {
	src := `policy:
  allowed_countries: ["001", US]
  rate_limits: {per_country: {"001": 5/1h}}
tenants: [{name: a, api_key: k, denied_countries: ["001"], allowed_countries: ["001"]}]
providers: [{name: p, type: mock}]
routes:
  - {name: sat, match: {countries: ["001"]}, providers: [p]}
  - {name: d, providers: [p]}
`
	c, err := Parse("x.yaml", []byte(src), env(nil))
	if err != nil {
		t.Fatalf("001 must be accepted wherever a country is: %v", err)
	}
	if got := c.Policy.RateLimits.PerCountry["001"]; got != (Limit{5, time.Hour}) {
		t.Errorf("per_country 001 = %v", got)
	}
}

// TestPrivateNotifyHostsOnlyWhenAllowed: a tenant's notify host inside the operator's network is
// refused unless the tenant has notify_private_addresses (the refusals are in
// testdata/invalid/private-notify-host.yaml); with it, the same hosts load, and only the tenant
// that has it may use them.
func TestPrivateNotifyHostsOnlyWhenAllowed(t *testing.T) {
	const base = `
tenants:
  - {name: inside, api_key: k1-0123456789abcdef, notify_hosts: ["10.0.0.7:80", "localhost:9000", "169.254.169.254"]%s}
providers: [{name: p1, type: mock}]
routes: [{name: default, providers: [p1]}]
`
	cfg, err := Parse("inside.yaml", []byte(fmt.Sprintf(base, ", notify_private_addresses: true")), env(nil))
	if err != nil {
		t.Fatalf("a tenant allowed private addresses was refused: %v", err)
	}
	if !cfg.Tenants[0].NotifyPrivateAddresses {
		t.Error("notify_private_addresses was not read")
	}
	_, err = Parse("inside.yaml", []byte(fmt.Sprintf(base, "")), env(nil))
	if err == nil || strings.Count(err.Error(), "is not a public address") != 3 {
		t.Errorf("without notify_private_addresses: %v", err)
	}
}

// TestNotifyHosts: a host or host:port is a notify host; a URL, a path, a user or a port that is
// no number is not (it would match no notify URL, and every request naming one would be refused).
func TestNotifyHosts(t *testing.T) {
	for h, want := range map[string]bool{
		"hooks.example.com": true, "HOOKS.example.com:8443": true, "[::1]:9000": true, "::1": true, "10.0.0.7:80": true,
		"": false, "https://hooks.example.com": false, "hooks.example.com/reports": false, "user@hooks.example.com": false,
		"hooks.example.com:http": false, "hooks.example.com:0": false, "hooks.example.com:70000": false, ":8443": false, "hooks example.com": false,
	} {
		if got := validHost(h); got != want {
			t.Errorf("validHost(%q) = %v, want %v", h, got, want)
		}
	}
}

// TestNotifyProxyNeverShown: server.notify_proxy may hold the proxy's password; a problem with it
// names the key, never the value, and a valid one is kept as a secret.
func TestNotifyProxyNeverShown(t *testing.T) {
	const base = `
server: {notify_proxy: %q}
tenants: [{name: acme, api_key: k1-0123456789abcdef}]
providers: [{name: p1, type: mock}]
routes: [{name: default, providers: [p1]}]
`
	for _, bad := range []string{"socks5://gw:hunter2-proxy@proxy:1080", "http://gw:hunter2-proxy@proxy:3128/path", "gw:hunter2-proxy@proxy:3128"} {
		_, err := Parse("p.yaml", []byte(fmt.Sprintf(base, bad)), env(nil))
		if err == nil || !strings.Contains(err.Error(), "server.notify_proxy") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	cfg, err := Parse("p.yaml", []byte(fmt.Sprintf(base, "http://gw:hunter2-proxy@proxy:3128")), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %+v", cfg.Server.NotifyProxy, cfg.Server); strings.Contains(s, "hunter2") {
		t.Errorf("the proxy's password shows when the config is printed: %s", s)
	}
}

// TestDeniedNumberTypesDefaultAndNone: an absent policy.denied_number_types is the default list
// (premium rate and the other types no person reads a code on), and an empty list denies none.
func TestDeniedNumberTypesDefaultAndNone(t *testing.T) {
	const rest = `
tenants: [{name: acme, api_key: k1}]
providers: [{name: p1, type: mock}]
routes: [{name: default, providers: [p1]}]
`
	for _, tc := range []struct {
		policy string
		want   []string
	}{
		{"", DefaultDeniedNumberTypes},
		{"policy: {denied_number_types: []}", []string{}},
		{"policy: {denied_number_types: [toll_free]}", []string{"toll_free"}},
	} {
		c, err := Parse("t.yaml", []byte(tc.policy+rest), env(nil))
		if err != nil {
			t.Fatalf("%q: %v", tc.policy, err)
		}
		if c.Policy.DeniedNumberTypes == nil {
			t.Fatalf("%q: denied_number_types left nil", tc.policy)
		}
		if diff := cmp.Diff(tc.want, *c.Policy.DeniedNumberTypes); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.policy, diff)
		}
	}
}

// TestSecretsFromFiles: ${file:PATH} reads a secret mounted as a file (a Kubernetes Secret
// volume, a Docker secret), absolute or relative to the config file, without the line break that
// ends it; a file that cannot be read is a problem naming the file, line, key and path, never a
// word of what any file holds.
func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("acme", "key-PLUGH\n")
	write("beta", "key-XYZZY\r\n\n")
	write("admin", "admin token with spaces ")
	write("big", strings.Repeat("x", maxSecretFile+1))
	file := filepath.Join(dir, "smsgate.yaml")
	src := "server: {admin_token: \"${file:" + secrets + "/admin}\"}\n" +
		"tenants:\n  - {name: acme, api_key: \"${file:secrets/acme}\"}\n  - {name: beta, api_key: \"pre-${file:./secrets/beta}-${K}\"}\n" +
		"providers: [{name: p, type: mock}]\nroutes: [{name: d, providers: [p]}]\n"
	c, err := Parse(file, []byte(src), env(map[string]string{"K": "env"}))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{c.Server.AdminToken.Reveal(), c.Tenants[0].APIKey.Reveal(), c.Tenants[1].APIKey.Reveal()}
	if diff := cmp.Diff([]string{"admin token with spaces ", "key-PLUGH", "pre-key-XYZZY-env"}, got); diff != "" {
		t.Errorf("secrets read (-want +got):\n%s", diff)
	}
	wantFiles := []string{filepath.Join(secrets, "admin"), filepath.Join(secrets, "acme"), filepath.Join(secrets, "beta")}
	if diff := cmp.Diff(wantFiles, Watched(file, []byte(src+"# again: ${file:secrets/acme}\n"))); diff != "" {
		t.Errorf("Watched (-want +got):\n%s", diff)
	}

	bad := "tenants:\n  - {name: acme, api_key: \"${file:secrets/missing}\"}\n  - {name: beta, api_key: \"${file:secrets/big}\"}\n" +
		"  - {name: gamma, api_key: \"${file:secrets}\"}\nproviders: [{name: p, type: mock}]\nroutes: [{name: d, providers: [p]}]\n"
	_, err = Parse(file, []byte(bad), env(nil))
	if err == nil {
		t.Fatal("Parse accepted secrets it could not read")
	}
	msg := err.Error()
	problemsHold(t, msg, []string{
		file + ":2: tenants[0].api_key: ${file:...}: stat " + filepath.Join(secrets, "missing") + ": no such file or directory",
		file + ":3: tenants[1].api_key: ${file:...}: " + filepath.Join(secrets, "big") + " holds more than 64 KiB",
		file + ":4: tenants[2].api_key: ${file:...}: " + secrets + " is not a regular file",
	})
	if strings.Contains(msg, "xxxx") || strings.Contains(msg, "PLUGH") {
		t.Errorf("a problem shows what a file holds:\n%s", msg)
	}
}

// TestTenantFiles: tenant_files reads more tenants from files matching its patterns (relative to
// the config file), each file's tenants in order after the config's own; a ${file:...} in a
// tenant file is relative to that file. Problems in a tenant file name that file and its lines.
func TestTenantFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) { t.Helper(); writeIn(t, dir, name, content) }
	write("tenants.d/20-gamma.yaml", "tenants:\n  - {name: gamma, api_key: gamma-key-0123456789}\n")
	write("tenants.d/10-beta.yaml", "# beta's team\ntenants:\n  - name: beta\n    api_key: \"${file:../keys/beta}\"\n    allowed_countries: [GB]\n")
	write("tenants.d/30-empty.yaml", "")
	write("tenants.d/notes.txt", "not a tenant file")
	write("extra.yaml", "tenants: [{name: delta, api_key: delta-key-0123456789}]\n")
	write("keys/beta", "beta-key-0123456789\n")
	file := filepath.Join(dir, "smsgate.yaml")
	src := "tenant_files: [\"tenants.d/*.yaml\", extra.yaml, \"tenants.d/1*.yaml\"]\ntenants: [{name: alpha, api_key: alpha-key-0123456789}]\n" +
		"providers: [{name: p, type: mock}]\nroutes: [{name: d, providers: [p]}]\n"
	c, err := Parse(file, []byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tn := range c.Tenants {
		got = append(got, tn.Name+"="+tn.APIKey.Reveal())
	}
	want := []string{"alpha=alpha-key-0123456789", "beta=beta-key-0123456789", "gamma=gamma-key-0123456789", "delta=delta-key-0123456789"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tenants (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"GB"}, c.Tenants[1].AllowedCountries); diff != "" {
		t.Errorf("beta's countries (-want +got):\n%s", diff)
	}
	wantWatched := []string{filepath.Join(dir, "tenants.d/10-beta.yaml"), filepath.Join(dir, "tenants.d/20-gamma.yaml"),
		filepath.Join(dir, "tenants.d/30-empty.yaml"), filepath.Join(dir, "extra.yaml"), filepath.Join(dir, "keys/beta")}
	if diff := cmp.Diff(wantWatched, Watched(file, []byte(src))); diff != "" {
		t.Errorf("Watched (-want +got):\n%s", diff)
	}

	// Problems: each in its own file, at its own line.
	write("tenants.d/40-dup.yaml", "tenants:\n  - {name: gamma, api_key: other-key-0123456789}\n  - {name: eps, api_key: alpha-key-0123456789, allowed_countries: [Germany]}\n")
	write("tenants.d/50-routes.yaml", "tenants: []\nroutes: [{name: x}]\n")
	write("tenants.d/60-broken.yaml", "tenants:\n  - {name: zeta\n")
	_, err = Parse(file, []byte(strings.Replace(src, "\"tenants.d/1*.yaml\"", "\"[\"", 1)), env(nil))
	if err == nil {
		t.Fatal("Parse accepted broken tenant files")
	}
	msg := err.Error()
	problemsHold(t, msg, []string{
		file + ":1: tenant_files[2]: \"[\" is not a valid pattern",
		filepath.Join(dir, "tenants.d/40-dup.yaml") + ":2: tenants[3].name: duplicate tenant name \"gamma\" (first defined at " + filepath.Join(dir, "tenants.d/20-gamma.yaml") + ":2)",
		filepath.Join(dir, "tenants.d/40-dup.yaml") + ":3: tenants[4].api_key: is the same key as tenants[0] (alpha)",
		filepath.Join(dir, "tenants.d/40-dup.yaml") + ":3: tenants[4].allowed_countries[0]: \"Germany\"",
		filepath.Join(dir, "tenants.d/50-routes.yaml") + ":2: routes: unknown key in a tenant file",
		filepath.Join(dir, "tenants.d/60-broken.yaml") + ":",
	})
}

// problemsHold fails t for each of wants that the problems msg do not hold.
func problemsHold(t *testing.T, msg string, wants []string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(msg, want) {
			t.Errorf("problems lack %q:\n%.3000s", want, msg)
		}
	}
}

// writeIn writes content to the file name under dir, making its directories.
func writeIn(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDelegatedTenantFiles: a tenant_files entry written as a mapping makes the files it matches a
// team's: within its bounds they load like any tenant file; past them each tenant is refused at
// its file and line, and no problem prints what a secret file holds.
func TestDelegatedTenantFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) { t.Helper(); writeIn(t, dir, name, content) }
	write("keys/payments-prod", "payments-prod-key-0123456789\n")
	write("keys/infobip", "INFOBIP-ACCOUNT-SECRET\n")
	write("ops/main.yaml", "tenants: [{name: ops-audit, api_key: ops-key-0123456789, client_ids: [ops-app], rate_limits: {per_tenant: 1000/1m}}]\n")
	write("teams/payments/prod.yaml", `tenants:
  - name: payments-prod
    api_key: "${file:../../keys/payments-prod}"
    client_ids: [pay-app]
    allowed_countries: [GB, DE]
    rate_limits: {per_tenant: 50/1m}
`)
	write("teams/search/prod.yaml", "tenants:\n  - {name: search-prod, api_key: search-key-0123456789, allowed_countries: [US], denied_number_types: [toll_free]}\n")
	file := filepath.Join(dir, "smsgate.yaml")
	src := `tenant_files:
  - ops/*.yaml
  - teams/*/*.yaml
  - path: teams/payments/*.yaml
    names: "payments-*"
    max_tenants: 2
    keys: [client_ids, allowed_countries, rate_limits]
    secret_files: keys/payments-*
  - {path: teams/search/*.yaml}
tenants: [{name: alpha, api_key: alpha-key-0123456789, client_ids: [alpha-app]}]
providers: [{name: p, type: mock}]
routes: [{name: d, providers: [p]}]
`
	vars := env(map[string]string{"INFOBIP_KEY": "INFOBIP-ENV-SECRET"})
	c, err := Parse(file, []byte(src), vars)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tn := range c.Tenants {
		got = append(got, tn.Name+"="+tn.APIKey.Reveal())
	}
	want := []string{"alpha=alpha-key-0123456789", "ops-audit=ops-key-0123456789", "payments-prod=payments-prod-key-0123456789", "search-prod=search-key-0123456789"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tenants within their bounds (-want +got):\n%s", diff)
	}
	if !c.TenantFiles[3].Delegated || c.TenantFiles[0].Delegated || *c.TenantFiles[3].MaxTenants != 10 || c.TenantFiles[3].Names != "*" {
		t.Errorf("entries: %+v", c.TenantFiles)
	}

	// Past the bounds: each rule at its own line. The search team's entry lets its files set the
	// default keys only, read no secret file, and a file of the operator's (ops/) may do anything;
	// the operator's broad teams/*/*.yaml, listed first, does not lift the teams' bounds.
	pay := filepath.Join(dir, "teams/payments/staging.yaml")
	write("teams/payments/staging.yaml", `tenants:
  - name: payments-staging
    api_key: "${file:../../keys/infobip}"
    notify_private_addresses: true
    allowed_countries: [GB, "001"]
    client_ids: [pay-staging-app, alpha-app]
  - name: billing
    api_key: "${INFOBIP_KEY}"
    allowed_countries: ["${file:../../keys/infobip}"]
`)
	search := filepath.Join(dir, "teams/search/staging.yaml")
	write("teams/search/staging.yaml", `tenants:
  - name: search-staging
    api_key: "${file:../../keys/payments-prod}"
    rate_limits: {per_tenant: 100000/1m}
    allow_sender: true
    client_ids: [ops-app]
`)
	_, err = Parse(file, []byte(src), vars)
	if err == nil {
		t.Fatal("Parse accepted tenant files past their bounds")
	}
	msg := err.Error()
	problemsHold(t, msg, []string{
		pay + ":3: tenants[3].api_key: a file of tenant_files[2] (a team's) may read secrets only from files its secret_files matches; " + filepath.Join(dir, "keys/infobip") + " does not",
		pay + ":4: tenants[3].notify_private_addresses: a file of tenant_files[2] (a team's) may not set notify_private_addresses; its keys: name, api_key, client_ids, allowed_countries, rate_limits",
		pay + ":5: tenants[3].allowed_countries[1]: a file of tenant_files[2] (a team's) may not allow 001",
		pay + ":6: tenants[3].client_ids[1]: client id \"alpha-app\" is declared by a tenant outside the files of tenant_files[2] too",
		pay + ":7: tenants[4].name: \"billing\" does not match tenant_files[2].names (\"payments-*\")",
		pay + ":7: tenants[4]: the files of tenant_files[2] hold more than 2 tenants (max_tenants)",
		pay + ":8: tenants[4].api_key: a file of tenant_files[2] (a team's) may not read the environment (${INFOBIP_KEY})",
		pay + ":9: tenants[4].allowed_countries[0]: a file of tenant_files[2] (a team's) may read a file only into api_key or previous_api_keys",
		search + ":3: tenants[6].api_key: a file of tenant_files[3] (a team's) may read secrets only from files its secret_files matches",
		search + ":4: tenants[6].rate_limits: a file of tenant_files[3] (a team's) may not set rate_limits; its keys: name, api_key, previous_api_keys, client_ids, allowed_countries, denied_countries, denied_number_types",
		search + ":5: tenants[6].allow_sender: a file of tenant_files[3] (a team's) may not set allow_sender",
		search + ":6: tenants[6].client_ids[0]: client id \"ops-app\" is declared by a tenant outside the files of tenant_files[3] too",
	})
	for _, secret := range []string{"INFOBIP-ACCOUNT-SECRET", "INFOBIP-ENV-SECRET", "payments-prod-key"} {
		if strings.Contains(msg, secret) {
			t.Errorf("the problems print a secret (%s):\n%s", secret, msg)
		}
	}
	if strings.Contains(msg, "ops/main.yaml") || strings.Contains(msg, "teams/payments/prod.yaml") || strings.Contains(msg, "teams/search/prod.yaml") {
		t.Errorf("a file within its bounds has a problem:\n%s", msg)
	}

	// The entries themselves are checked.
	bad := `tenant_files:
  - ops/*.yaml
  - teams/*/*.yaml
  - path: teams/payments/*.yaml
    names: "["
    max_tenants: 0
    keys: [client_id, allowed_countries]
  - {names: "search-*"}
` + src[strings.Index(src, "\ntenants:")+1:]
	_, err = Parse(file, []byte(bad), vars)
	if err == nil {
		t.Fatal("Parse accepted broken tenant_files entries")
	}
	if strings.Contains(err.Error(), "regular file") || strings.Contains(err.Error(), "more than 0 tenants") || strings.Contains(err.Error(), "does not match") {
		t.Errorf("a broken entry's problems run on into its files:\n%s", err)
	}
	problemsHold(t, err.Error(), []string{
		file + ":7: tenant_files[2].keys[0]: unknown tenant key \"client_id\" (known keys: ",
		file + ":6: tenant_files[2].max_tenants: must be at least 1, not 0",
		file + ":5: tenant_files[2].names: \"[\" is not a valid pattern",
		file + ":8: tenant_files[3].path: is required",
	})
}

// TestATeamsFileAtItsBoundsEdges: a secret path that climbs out of what secret_files matches
// ("*" matches "..") is refused by the match, before the read; 001 is refused first in a list as
// anywhere; two tenants of one team may share a client id; a max_bytes past 16 MiB or below 1 KiB
// is refused, and the files are read within the default bound meanwhile.
func TestATeamsFileAtItsBoundsEdges(t *testing.T) {
	dir := t.TempDir()
	writeIn(t, dir, "keys/token", "OPERATOR-SECRET-0123456789\n")
	writeIn(t, dir, "keys/payments/prod/token", "payments-key-0123456789\n")
	team := filepath.Join(dir, "teams/payments/prod.yaml")
	writeIn(t, dir, "teams/payments/prod.yaml", `tenants:
  - name: payments-prod
    api_key: "${file:`+dir+`/keys/payments/../token}"
    allowed_countries: ["001", GB]
    client_ids: [pay-app]
  - name: payments-eu
    api_key: "${file:`+filepath.Join(dir, "keys/payments/prod/token")+`}"
    client_ids: [pay-app]
`)
	writeIn(t, dir, "teams/search/prod.yaml", "tenants:\n  - {name: search-prod, api_key: search-key-0123456789, allowed_countries: [US, GB, DE, FR]}\n")
	file := filepath.Join(dir, "smsgate.yaml")
	src := `tenant_files:
  - path: teams/payments/*.yaml
    secret_files: keys/payments/*/token
    max_bytes: 17000000
  - {path: teams/search/*.yaml, max_bytes: 100}
tenants: [{name: alpha, api_key: alpha-key-0123456789}]
providers: [{name: p, type: mock}]
routes: [{name: d, providers: [p]}]
`
	_, err := Parse(file, []byte(src), env(nil))
	if err == nil {
		t.Fatal("Parse accepted a team's file past its bounds")
	}
	msg := err.Error()
	problemsHold(t, msg, []string{
		file + ":4: tenant_files[0].max_bytes: must be from 1024 to 16777216 (16 MiB), not 17000000",
		file + ":5: tenant_files[1].max_bytes: must be from 1024 to 16777216 (16 MiB), not 100",
		team + ":3: tenants[1].api_key: a file of tenant_files[0] (a team's) may read secrets only from files its secret_files matches; " + dir + "/keys/payments/../token does not",
		team + ":4: tenants[1].allowed_countries[0]: a file of tenant_files[0] (a team's) may not allow 001",
	})
	if n := strings.Count(msg, "\n") + 1; n != 4 || strings.Contains(msg, "OPERATOR-SECRET") {
		t.Errorf("%d problems, want the 4 above (two tenants of one team share a client id, and the search team's file is read within the default bound):\n%s", n, msg)
	}
}

// TestProblemsNeverQuoteASecret: a value read from the environment or a file and put in a key
// that refuses it (a key in base_url by a slip of the variable's name) is quoted in the problem
// as the reference that read it, never as what it read; values too short to be secrets are
// quoted as they are.
func TestProblemsNeverQuoteASecret(t *testing.T) {
	dir := t.TempDir()
	writeIn(t, dir, "keys/infobip", "FILE-SECRET-0123456789\n")
	file := filepath.Join(dir, "smsgate.yaml")
	src := `policy: {allowed_countries: ["${COUNTRY}", "${SHORT}"]}
tenants: [{name: a, api_key: a-key-0123456789, notify_hosts: ["${HOOK}"]}]
providers: [{name: p, type: mock}]
routes: [{name: d, providers: [p], match: {countries: ["${file:keys/infobip}"]}}]
`
	vars := env(map[string]string{"COUNTRY": "ENV-SECRET-0123456789", "SHORT": "ZZ", "HOOK": "https://ENV-SECRET-0123456789@hooks.example.com/"})
	_, err := Parse(file, []byte(src), vars)
	if err == nil {
		t.Fatal("Parse accepted a secret in place of a country")
	}
	msg := err.Error()
	problemsHold(t, msg, []string{
		file + `:1: policy.allowed_countries[0]: "${COUNTRY}" is not a country`,
		file + `:1: policy.allowed_countries[1]: "ZZ" is not a country`,
		file + `:2: tenants[0].notify_hosts[0]: "${HOOK}" is not a host`,
		file + `:4: routes[0].match.countries[0]: "${file:keys/infobip}" is not a country`,
	})
	if strings.Contains(msg, "SECRET") {
		t.Errorf("a problem quotes a secret:\n%s", msg)
	}
}

// TestManyBrokenTenantsCostLinearTime: a tenant file of many broken tenants (a team's file with
// keys it may not set in each, each tenant's API key read from a file) costs a load time in
// proportion to its size. Each problem once looked through every problem found before it, and
// every secret read before it (to quote none), so a 16 MiB file, some 150,000 tenants, held every
// replica's reload for minutes (40,000 tenants with a problem and a key file each: 19 s). Timed, compared as a ratio in one run: 16 times the
// tenants take 16 to 20 times as long (sorting the problems), where the old code took over 60.
func TestManyBrokenTenantsCostLinearTime(t *testing.T) {
	load := func(n int) (parse, watched time.Duration) {
		dir := t.TempDir()
		var b strings.Builder
		b.WriteString("tenants:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - {name: t%d, api_key: \"${file:../keys/t%d}\", rate_limits: {per_tenant: 1/1m}, allow_sender: true, "+
				"allowed_link_hosts: [a.example], notify_hosts: [b.example], pumping: {action: alert}, bare_domain_links: false}\n", i, i)
			writeIn(t, dir, fmt.Sprintf("keys/t%d", i), fmt.Sprintf("key-%d-0123456789abcdef\n", i))
		}
		writeIn(t, dir, "teams/a.yaml", b.String())
		src := "tenant_files: [{path: \"teams/*.yaml\", max_tenants: 100000, max_bytes: 16777216, secret_files: \"keys/*\"}]\ntenants: [{name: alpha, api_key: alpha-key-0123456789}]\nproviders: [{name: p, type: mock}]\nroutes: [{name: d, providers: [p]}]\n"
		parse, watched = time.Duration(1<<62), time.Duration(1<<62)
		for range 3 { // the quickest of three: what the load costs, without a noisy neighbour's share
			start := time.Now()
			_, err := Parse(filepath.Join(dir, "s.yaml"), []byte(src), env(nil))
			parse = min(parse, time.Since(start))
			start = time.Now()
			if w := Watched(filepath.Join(dir, "s.yaml"), []byte(src)); len(w) != n+1 {
				t.Fatalf("Watched lists %d files, want %d", len(w), n+1)
			}
			watched = min(watched, time.Since(start))
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != 6*n { // six keys each tenant may not set
				t.Fatalf("%d tenants: %d problems, want %d", n, len(ps), 6*n)
			}
		}
		return parse, watched
	}
	small, smallWatch := load(500)
	large, largeWatch := load(8000)
	t.Logf("500 tenants %v (what the watch looks at: %v), 8,000 %v (%v)", small, smallWatch, large, largeWatch)
	if ratio := float64(large) / float64(small); ratio > 40 {
		t.Errorf("16 times the tenants took %.1f times as long to load (%v, %v): want about 16", ratio, small, large)
	}
	if ratio := float64(largeWatch) / float64(smallWatch); ratio > 40 {
		t.Errorf("16 times the key files took %.1f times as long to list for the watch (%v, %v): want about 16", ratio, smallWatch, largeWatch)
	}
}

// TestProblemLinesAreBounded: a log line or an answer lists the first problems and how many more.
func TestProblemLinesAreBounded(t *testing.T) {
	ps := make(Problems, 5)
	for i := range ps {
		ps[i] = Problem{File: "f.yaml", Line: i + 1, Path: "k", Msg: "bad"}
	}
	want := []string{"f.yaml:1: k: bad", "f.yaml:2: k: bad", "and 3 problem(s) more: smsgate validate lists them all"}
	if diff := cmp.Diff(want, ps.Lines(2)); diff != "" {
		t.Errorf("Lines(2) (-want +got):\n%s", diff)
	}
	if got := ps.Lines(5); len(got) != 5 {
		t.Errorf("Lines(5) of 5: %q", got)
	}
}

// TestATeamsFileCannotExhaustMemory: every replica parses a team's files at each reload, and a
// replica killed for its memory starts again on the same files. A team's files hold at most
// max_bytes together (14 MB of client ids once took 800 MB to load), and no file, a team's or
// the operator's, may hold a tree of aliases (a tenant with a long list, named again by a
// thousand lines of `- *t`, decoded into a million values from 14 KB).
func TestATeamsFileCannotExhaustMemory(t *testing.T) {
	dir := t.TempDir()
	ids := func(prefix string, n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%s%06d, ", prefix, i)
		}
		return strings.TrimSuffix(b.String(), ", ")
	}
	// 180 KiB each: the first within the bound, the second past it together.
	writeIn(t, dir, "teams/a.yaml", "tenants:\n  - {name: pay-a, api_key: pay-a-key-0123456789, client_ids: ["+ids("a", 20000)+"]}\n")
	writeIn(t, dir, "teams/b.yaml", "tenants:\n  - {name: pay-b, api_key: pay-b-key-0123456789, client_ids: ["+ids("b", 20000)+"]}\n")
	var bomb strings.Builder
	bomb.WriteString("tenants:\n  - &t {name: ops-x, api_key: ops-x-key-0123456789, client_ids: [" + ids("x", 1000) + "]}\n")
	for range 1000 {
		bomb.WriteString("  - *t\n")
	}
	writeIn(t, dir, "ops/bomb.yaml", bomb.String())
	file := filepath.Join(dir, "smsgate.yaml")
	src := `tenant_files:
  - ops/*.yaml
  - {path: teams/*.yaml, names: "pay-*"}
tenants: [{name: alpha, api_key: alpha-key-0123456789}]
providers: [{name: p, type: mock}]
routes: [{name: d, providers: [p]}]
`
	_, err := Parse(file, []byte(src), env(nil))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse: %v", err)
	}
	want := []string{
		filepath.Join(dir, "ops/bomb.yaml") + ":2: tenants[",
		"]: the file's aliases (*name) expand to more values than 100000 beyond twice its own: it is not read further",
		filepath.Join(dir, "teams/b.yaml") + ": tenant file: the files of tenant_files[1] hold more than 262144 bytes together (max_bytes)",
	}
	msg := err.Error()
	problemsHold(t, msg, want)
	if strings.Contains(msg, "teams/a.yaml") {
		t.Errorf("a team's file within its bounds has a problem:\n%.2000s", msg)
	}
	if len(ps) > 300 {
		t.Errorf("%d problems: the alias tree was read on past the bound", len(ps))
	}

	bad := strings.Replace(src, `names: "pay-*"}`, `names: "pay-*", max_bytes: 100}`, 1)
	if _, err := Parse(file, []byte(bad), env(nil)); err == nil || !strings.Contains(err.Error(), file+":3: tenant_files[1].max_bytes: must be from 1024 to 16777216 (16 MiB), not 100") {
		t.Errorf("max_bytes of 100: %v", err)
	}
}

// TestTheWatchReadsWhatALoadReads: server.watch_config looks at the files a load reads, as far as
// a load reads them (Digest), and no further: a team's file that names any file (a database that
// changes every second, the operator's keys) does not make every replica read it and reload at
// every look; nor do bytes past max_bytes, files past max_tenants, or a secret file past what a
// secret may hold. What a load does read is still watched.
func TestTheWatchReadsWhatALoadReads(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) { t.Helper(); writeIn(t, dir, name, content) }
	write("keys/team-a", "team-a-key-0123456789\n")
	write("keys/operator", "OPERATOR-SECRET\n")
	write("keys/big", strings.Repeat("k", 70<<10))
	write("log.db", "records, changing all the time")
	write("teams/a.yaml", `tenants:
  - name: a
    api_key: "${file:../keys/team-a}"
    previous_api_keys: ["${file:../log.db}", "${file:../keys/operator}"]
`)
	write("teams/b.yaml", "tenants: [{name: b, api_key: b-key-0123456789}]\n#"+strings.Repeat("x", 3000)+"\n")
	write("teams/c.yaml", "")
	write("teams/d.yaml", "tenants: [{name: d, api_key: d-key-0123456789}]\n")
	write("teams/e.yaml", "")
	file := filepath.Join(dir, "smsgate.yaml")
	src := `tenant_files: [{path: teams/*.yaml, max_tenants: 3, max_bytes: 2048, secret_files: keys/team-*}]
tenants: [{name: ops, api_key: "${file:keys/big}"}]
providers: [{name: p, type: mock}]
routes: [{name: d, providers: [p]}]
`
	write("smsgate.yaml", src)
	_, err := Parse(file, []byte(src), env(nil))
	if err == nil {
		t.Fatal("Parse accepted files past their bounds")
	}
	problemsHold(t, err.Error(), []string{
		filepath.Join(dir, "teams/b.yaml") + ": tenant file: the files of tenant_files[0] hold more than 2048 bytes together (max_bytes)",
		filepath.Join(dir, "teams/d.yaml") + ": tenant file: tenant_files[0] matches more than 3 files (max_tenants): it is not read",
		filepath.Join(dir, "teams/e.yaml") + ": tenant file: tenant_files[0] matches more than 3 files (max_tenants)",
		"keys/big holds more than 64 KiB",
		"may read secrets only from files its secret_files matches; " + filepath.Join(dir, "log.db") + " does not",
	})
	var want []string
	for _, f := range []string{"teams/a.yaml", "teams/b.yaml", "teams/c.yaml", "teams/d.yaml", "teams/e.yaml", "keys/team-a", "keys/big"} {
		want = append(want, filepath.Join(dir, f))
	}
	if diff := cmp.Diff(want, Watched(file, []byte(src))); diff != "" {
		t.Errorf("Watched (-want +got):\n%s", diff)
	}

	last := Digest(file)
	for _, c := range []struct {
		what, file, content string
		seen                bool
	}{
		{"a file the team's file names outside secret_files", "log.db", "more records", false},
		{"the operator's key the team's file names", "keys/operator", "OPERATOR-SECRET-ROTATED\n", false},
		{"a byte past max_bytes", "teams/b.yaml", "tenants: [{name: b, api_key: b-key-0123456789}]\n#" + strings.Repeat("x", 2999) + "y\n", false},
		{"a file past max_tenants", "teams/d.yaml", "tenants: [{name: d2, api_key: d-key-0123456789}]\n", false},
		{"a byte past what a secret may hold", "keys/big", strings.Repeat("k", 69<<10) + "j" + strings.Repeat("k", 1<<10-1), false},
		{"the team's key in secret_files", "keys/team-a", "team-a-key-rotated-0123\n", true},
		{"a byte within max_bytes", "teams/b.yaml", "tenants: [{name: b, api_key: b-key-0123456789}]\n#z" + strings.Repeat("x", 2999) + "y\n", true},
		{"a file within max_tenants", "teams/c.yaml", "tenants: []\n", true},
		{"a byte of a secret within what it may hold", "keys/big", "j" + strings.Repeat("k", 70<<10-1), true},
	} {
		write(c.file, c.content)
		now := Digest(file)
		if seen := now != last; seen != c.seen {
			t.Errorf("%s changed: the watch sees it %v, want %v", c.what, seen, c.seen)
		}
		last = now
	}
	if err := os.Remove(filepath.Join(dir, "teams/e.yaml")); err != nil {
		t.Fatal(err)
	}
	if Digest(file) == last {
		t.Error("a file past max_tenants removed: the watch does not see it (which files a pattern matches is part of the config)")
	}
}

// TestAZeroWrittenIsReadAsZero: a number or a duration written as 0 is read as 0 where the key
// takes it (no pumping warm-up, no conversion floor or delay, no delivery-health margin, a
// breaker opened by its failure ratio alone, from the first call): it used to be replaced by the
// default without a word, a conversion_floor of 0 running at 0.3. A key written with no value
// takes its default, as one left out does (keys that refuse 0: testdata/invalid/zeros-*.yaml).
func TestAZeroWrittenIsReadAsZero(t *testing.T) {
	src := `policy:
  pumping:
    warmup: 0s
    conversion_floor: 0
    conversion_delay: 0s
    factor:
routing:
  delivery_health: {margin: 0, min_samples: ~}
tenants: [{name: acme, api_key: k1}]
providers:
  - name: p1
    type: mock
    breaker: {consecutive_failures: 0, min_requests: 0, interval: null}
routes: [{name: default, providers: [p1]}]
`
	c, err := Parse("zeros.yaml", []byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	pp, dh, b := c.Policy.Pumping, c.Routing.DeliveryHealth, c.Providers[0].Breaker
	type read struct {
		Warmup, ConversionDelay      gateway.Duration
		ConversionFloor, Margin      float64
		ConsecutiveFailures, MinReqs uint32
		Factor                       float64
		MinSamples                   int
		Interval                     gateway.Duration
	}
	got := read{pp.Warmup, pp.ConversionDelay, pp.ConversionFloor, dh.Margin, b.ConsecutiveFailures, b.MinRequests, pp.Factor, dh.MinSamples, b.Interval}
	want := read{Factor: 5, MinSamples: 20, Interval: gateway.Duration(time.Minute)} // the three written empty: their defaults
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("values read (-want +got):\n%s", d)
	}
}

// TestEveryKeyReadAsWrittenIsAKey: each path orDefaultAt looks at names a key of the file, so a
// 0 written there is read as 0 (a misspelt path would hand it the default, as before). The test
// writes every such key as 0 and finds each given, none unknown.
func TestEveryKeyReadAsWrittenIsAKey(t *testing.T) {
	var paths []string
	defaultAsked = func(p string) { paths = append(paths, p) }
	t.Cleanup(func() { defaultAsked = nil })
	base := "tenants: [{name: acme, api_key: k1}]\nroutes: [{name: default, providers: [p1]}]\n"
	if _, err := Parse("x.yaml", []byte(base+"providers: [{name: p1, type: mock}]\n"), env(nil)); err != nil {
		t.Fatal(err)
	}
	asked := slices.Clone(paths)
	if len(asked) < 30 {
		t.Fatalf("only %d paths asked about", len(asked))
	}
	// Build the file: every path set to 0, under its sections; the provider's under providers[0].
	root := map[string]any{}
	provider := map[string]any{"name": "p1", "type": "mock"}
	for _, p := range asked {
		at, rest := root, p
		if r, ok := strings.CutPrefix(p, "providers[0]."); ok {
			at, rest = provider, r
		}
		keys := strings.Split(rest, ".")
		for _, k := range keys[:len(keys)-1] {
			next, ok := at[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				at[k] = next
			}
			at = next
		}
		at[keys[len(keys)-1]] = 0
	}
	root["providers"] = []any{provider}
	b, err := yaml.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("zeros.yaml", append(b, base...), env(nil))
	if c == nil {
		t.Fatalf("%v\n%s", err, b)
	}
	for _, p := range asked {
		if !c.Decoder.Given(p) {
			t.Errorf("%s: written, not given", p)
		}
	}
	if err != nil && strings.Contains(err.Error(), "unknown key") {
		t.Errorf("a path names no key:\n%v", err)
	}
}
