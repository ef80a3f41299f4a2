package app

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway/config"
)

// TestReloadSaysWhatChanged: the "config reloaded" line names the tenants, providers and routes
// a reload added, removed or changed, and the other sections it changed, never a value: a rotated
// key is "tenants_changed".
func TestReloadSaysWhatChanged(t *testing.T) {
	t.Parallel()
	const base = `
policy: {rate_limits: {per_recipient: 10/1h}}
tenants:
  - {name: acme, api_key: acme-key-0123456789}
  - {name: beta, api_key: beta-key-0123456789}
providers:
  - {name: one, type: mock, latency: 10ms}
  - {name: two, type: mock}
routes:
  - {name: gb, match: {countries: [GB]}, providers: [two, one]}
  - {name: us, match: {countries: [US]}, providers: [two]}
  - {name: default, providers: [one, two]}
`
	parse := func(src string) *config.Config {
		t.Helper()
		c, err := config.ParseWith("c.yaml", []byte(src), func(string) (string, bool) { return "", false }, Drivers)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		edit func(string) string
		want []any
	}{
		{"nothing", func(s string) string { return s + "# a comment\n" }, []any{"changed", "nothing"}},
		{"a provider moved in the file, not changed", func(s string) string {
			return strings.Replace(s, "  - {name: one, type: mock, latency: 10ms}\n  - {name: two, type: mock}\n",
				"  - {name: two, type: mock}\n  - {name: one, type: mock, latency: 10ms}\n", 1)
		}, []any{"changed", "nothing"}},
		{"a key rotated, a tenant added, one removed", func(s string) string {
			s = strings.Replace(s, "acme-key-0123456789", "acme-key-9876543210", 1)
			return strings.Replace(s, "  - {name: beta, api_key: beta-key-0123456789}", "  - {name: gamma, api_key: gamma-key-0123456789}", 1)
		}, []any{"tenants_added", "gamma", "tenants_removed", "beta", "tenants_changed", "acme"}},
		{"a route added before others is not a reorder", func(s string) string {
			return strings.Replace(s, "routes:\n", "routes:\n  - {name: jp, match: {countries: [JP]}, providers: [one]}\n", 1)
		}, []any{"routes_added", "jp"}},
		{"a driver option, a route's order, a policy", func(s string) string {
			s = strings.Replace(s, "latency: 10ms", "latency: 20ms", 1)
			s = strings.Replace(s, "  - {name: gb, match: {countries: [GB]}, providers: [two, one]}\n  - {name: us, match: {countries: [US]}, providers: [two]}\n",
				"  - {name: us, match: {countries: [US]}, providers: [two]}\n  - {name: gb, match: {countries: [GB]}, providers: [two, one]}\n", 1)
			return strings.Replace(s, "10/1h", "5/1h", 1)
		}, []any{"providers_changed", "one", "routes_order", "reordered", "sections_changed", "policy"}},
		{"several changed, named in order", func(s string) string {
			s = strings.Replace(s, "providers: [two, one]}", "providers: [one]}", 1)
			s = strings.Replace(s, "countries: [US]}, providers: [two]}", "countries: [US]}, providers: [one]}", 1)
			return strings.Replace(s, "name: default, providers: [one, two]", "name: default, providers: [two, one]", 1)
		}, []any{"routes_changed", "default,gb,us"}},
		{"routes removed and the routing section", func(s string) string {
			s = strings.Replace(s, "  - {name: gb, match: {countries: [GB]}, providers: [two, one]}\n  - {name: us, match: {countries: [US]}, providers: [two]}\n", "", 1)
			return "routing: {least_cost: {currency: USD}}\n" + s
		}, []any{"routes_removed", "gb,us", "sections_changed", "routing"}},
		{"the server, log, storage and state sections", func(s string) string {
			return "server: {max_in_flight: 64}\nlog: {level: debug}\nstorage: {driver: memory}\nstate: {max_keys: 5000}\n" + s
		}, []any{"sections_changed", "server,log,storage,state"}},
		{"a team's bounds", func(s string) string {
			return "tenant_files: [{path: \"teams/*.yaml\", max_tenants: 3}]\n" + s
		}, []any{"sections_changed", "tenant_files"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := reloadChanges(parse(base), parse(tc.edit(base)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			if strings.Contains(fmt.Sprint(got), "key-") {
				t.Errorf("a key in the changes: %v", got)
			}
		})
	}
	// Names come sorted whichever order the maps give them in: eight routes removed at once.
	many := base
	for _, n := range []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"} {
		many = strings.Replace(many, "routes:\n", "routes:\n  - {name: "+n+", match: {countries: [JP]}, providers: [one]}\n", 1)
	}
	if got := reloadChanges(parse(many), parse(base)); !cmp.Equal(got, []any{"routes_removed", "r1,r2,r3,r4,r5,r6,r7,r8"}) {
		t.Errorf("eight routes removed: %v", got)
	}
}
