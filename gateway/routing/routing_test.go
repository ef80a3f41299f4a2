package routing

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
)

func table() *Table {
	return Compile([]config.Route{
		{Name: "tenant", Match: &config.Match{Tenants: []string{"acme"}}, Providers: []string{"a"}},
		{Name: "client", Match: &config.Match{ClientIDs: []string{"c1"}}, Providers: []string{"b"}},
		{Name: "country", Match: &config.Match{Countries: []string{"GB", "GG"}}, Providers: []string{"c"}},
		{Name: "voice", Match: &config.Match{MessageTypes: []string{"voice"}}, Providers: []string{"d"}},
		{Name: "action", Match: &config.Match{Actions: []string{"enrollment"}}, Providers: []string{"e"}},
		{Name: "language", Match: &config.Match{Languages: []string{"pt-BR", "de"}}, Providers: []string{"f"}},
		{Name: "all-of", Match: &config.Match{Tenants: []string{"beta"}, Countries: []string{"US"}, MessageTypes: []string{"sms"}}, Providers: []string{"g"}},
		{Name: "default", Providers: []string{"z", "y"}},
	}, nil)
}

func TestMatchEveryMatcherAndOrder(t *testing.T) {
	base := gateway.Message{Tenant: "other", Country: "FR", Type: gateway.SMS, Action: "second-factor-authentication", Language: "fr"}
	tests := []struct {
		name string
		edit func(m *gateway.Message)
		want string
	}{
		{"nothing matches: catch-all", func(m *gateway.Message) {}, "default"},
		{"tenant", func(m *gateway.Message) { m.Tenant = "acme" }, "tenant"},
		{"client id", func(m *gateway.Message) { m.ClientID = "c1" }, "client"},
		{"country of whole number", func(m *gateway.Message) { m.Country = "GG" }, "country"},
		{"message type", func(m *gateway.Message) { m.Type = gateway.Voice }, "voice"},
		{"action", func(m *gateway.Message) { m.Action = "enrollment" }, "action"},
		{"language exact, other separator and case", func(m *gateway.Message) { m.Language = "PT_br" }, "language"},
		{"language primary subtag", func(m *gateway.Message) { m.Language = "de-AT" }, "language"},
		{"language region does not widen", func(m *gateway.Message) { m.Language = "pt-PT" }, "default"},
		// Only a language has subtags: a client id or an action that begins like a listed one
		// followed by "-" is another value (a tenant could otherwise reach a client's route).
		{"client id with a suffix", func(m *gateway.Message) { m.ClientID = "c1-other" }, "default"},
		{"action with a suffix", func(m *gateway.Message) { m.Action = "enrollment-retry" }, "default"},
		// Only a language compares case-blind: Auth0 sends client ids and actions as they are, and a
		// client id in other capitals is another application's.
		{"client id in other capitals", func(m *gateway.Message) { m.ClientID = "C1" }, "default"},
		{"action in other capitals", func(m *gateway.Message) { m.Action = "Enrollment" }, "default"},
		{"tenant in other capitals", func(m *gateway.Message) { m.Tenant = "ACME" }, "default"},
		{"first match wins over later ones", func(m *gateway.Message) { m.Tenant, m.Type = "acme", gateway.Voice }, "tenant"},
		{"all matchers of a rule must hold", func(m *gateway.Message) { m.Tenant, m.Country = "beta", "US" }, "all-of"},
		{"one matcher failing skips the rule", func(m *gateway.Message) { m.Tenant, m.Country = "beta", "CA" }, "default"},
	}
	tb := table()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := base
			tc.edit(&m)
			if got := tb.Match(&m).Name; got != tc.want {
				t.Errorf("route = %q, want %q", got, tc.want)
			}
			if got := tb.Explain(&m).Route.Name; got != tc.want {
				t.Errorf("Explain route = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	m := &gateway.Message{Tenant: "beta", Country: "US", Type: gateway.SMS}
	d := table().Explain(m)
	want := Decision{Route: d.Route,
		Why: []string{`tenant "beta" is in [beta]`, `country "US" is in [US]`, `message_type "sms" is in [sms]`},
		Skipped: []string{
			`tenant: tenant "beta" is not in [acme]`,
			`client: client_id "" is not in [c1]`,
			`country: country "US" is not in [GB, GG]`,
			`voice: message_type "sms" is not in [voice]`,
			`action: action "" is not in [enrollment]`,
			`language: language "" is not in [de, pt-br]`,
		}}
	if diff := cmp.Diff(want, d, cmp.AllowUnexported(Route{}, matcher{}), cmp.Comparer(func(a, b func(*gateway.Message) string) bool { return true })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if cmp.Diff([]string{"g"}, d.Route.Providers) != "" {
		t.Errorf("providers = %v", d.Route.Providers)
	}
}

// TestADeclaredClientIDRoutesOnlyItsTenants: a client id is what the caller wrote, so one that
// tenants declare as theirs (tenants[].client_ids) takes a route only in their requests; another
// tenant naming it goes down the table. A client id nobody declares routes anyone's request.
func TestADeclaredClientIDRoutesOnlyItsTenants(t *testing.T) {
	tb := Compile([]config.Route{
		{Name: "acme-app", Match: &config.Match{ClientIDs: []string{"acme-client", "shared-client"}}, Providers: []string{"acme-account"}},
		{Name: "loose", Match: &config.Match{ClientIDs: []string{"undeclared"}}, Providers: []string{"b"}},
		{Name: "default", Providers: []string{"z"}},
	}, []config.Tenant{
		{Name: "acme", ClientIDs: []string{"acme-client", "shared-client"}},
		{Name: "acme-eu", ClientIDs: []string{"shared-client"}},
		{Name: "beta"},
	})
	tests := []struct {
		tenant, client, want string
	}{
		{"acme", "acme-client", "acme-app"},
		{"beta", "acme-client", "default"},
		{"acme-eu", "acme-client", "default"},
		{"acme", "shared-client", "acme-app"},
		{"acme-eu", "shared-client", "acme-app"},
		{"beta", "shared-client", "default"},
		{"beta", "undeclared", "loose"},
		{"acme", "undeclared", "loose"},
	}
	for _, tc := range tests {
		m := &gateway.Message{Tenant: tc.tenant, ClientID: tc.client, Type: gateway.SMS}
		if got := tb.Match(m).Name; got != tc.want {
			t.Errorf("tenant %s, client %s: route = %q, want %q", tc.tenant, tc.client, got, tc.want)
		}
		if got := tb.Explain(m).Route.Name; got != tc.want {
			t.Errorf("tenant %s, client %s: Explain route = %q, want %q", tc.tenant, tc.client, got, tc.want)
		}
	}
	// The usual route names one application: its client id is as much its tenant's.
	one := Compile([]config.Route{
		{Name: "acme-app", Match: &config.Match{ClientIDs: []string{"acme-client"}}, Providers: []string{"acme-account"}},
		{Name: "default", Providers: []string{"z"}},
	}, []config.Tenant{{Name: "acme", ClientIDs: []string{"acme-client"}}, {Name: "beta"}})
	for tenant, want := range map[string]string{"acme": "acme-app", "beta": "default"} {
		m := &gateway.Message{Tenant: tenant, ClientID: "acme-client", Type: gateway.SMS}
		if got := one.Match(m).Name; got != want {
			t.Errorf("one client id, tenant %s: route = %q, want %q", tenant, got, want)
		}
	}
	d := tb.Explain(&gateway.Message{Tenant: "beta", ClientID: "shared-client"})
	want := []string{
		`acme-app: client_id "shared-client" is in [acme-client, shared-client], but it is declared by tenant [acme, acme-eu] (their client_ids), not by "beta"`,
		`loose: client_id "shared-client" is not in [undeclared]`,
	}
	if diff := cmp.Diff(want, d.Skipped); diff != "" {
		t.Errorf("Skipped (-want +got):\n%s", diff)
	}
}

// TestAnEmptyListMatchesAnyValue: a matcher given no values is left out, as if the key were
// absent (config warns of it); only a match block whose lists are all empty is refused there.
func TestAnEmptyListMatchesAnyValue(t *testing.T) {
	tb := Compile([]config.Route{
		{Name: "gb", Match: &config.Match{Countries: []string{}, Tenants: []string{"acme"}}, Providers: []string{"a"}},
		{Name: "default", Providers: []string{"z"}},
	}, nil)
	if got := tb.Match(&gateway.Message{Tenant: "acme", Country: "FR", Type: gateway.SMS}).Name; got != "gb" {
		t.Errorf("route = %q, want gb: countries: [] matches any country", got)
	}
}

// TestExplainListsValuesSorted: the values a rejection quotes are in order whatever the map's,
// so that two runs of smsgate route print the same lines.
func TestExplainListsValuesSorted(t *testing.T) {
	countries := []string{"ZW", "US", "GB", "FR", "DE", "CA", "BR", "AU", "JP", "IN", "NG", "MX"}
	tb := Compile([]config.Route{
		{Name: "many", Match: &config.Match{Countries: countries}, Providers: []string{"a"}},
		{Name: "default", Providers: []string{"z"}},
	}, nil)
	want := `many: country "SE" is not in [AU, BR, CA, DE, FR, GB, IN, JP, MX, NG, US, ZW]`
	for range 5 {
		if got := tb.Explain(&gateway.Message{Country: "SE"}).Skipped; cmp.Diff([]string{want}, got) != "" {
			t.Fatalf("Skipped = %q, want %q", got, want)
		}
	}
}
