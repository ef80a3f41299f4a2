// Package routing compiles the YAML routes into a table and picks, for a message, the first route
// whose every matcher accepts it. It also explains the decision (smsgate route).
package routing

import (
	"fmt"
	"slices"
	"strings"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
)

// Route is a compiled routing rule.
type Route struct {
	// Name is the rule's name from the config.
	Name string
	// Providers is the ordered chain of provider names.
	Providers []string
	// FailoverOnTimeout says whether a timeout (which may have sent) moves on to the next provider.
	FailoverOnTimeout bool

	matchers []matcher
}

type matcher struct {
	field  string
	values map[string]bool
	get    func(*gateway.Message) string
	// owners, for client ids, maps a client id that tenants declare as theirs to those tenants.
	owners map[string]map[string]bool
}

// Table is an ordered list of routes; the first match wins.
type Table struct {
	routes []*Route
}

// Decision is the outcome of Match: the route and why it matched.
type Decision struct {
	Route *Route
	// Why lists, for each matcher of the route, the value that satisfied it; empty for a catch-all.
	Why []string
	// Skipped lists the routes tried before, each with the first matcher that rejected the message.
	Skipped []string
}

// Compile builds a table from validated config routes and the tenants they route for.
//
// A request's client id is whatever its caller wrote, and any tenant can write any client id. So
// a client id that tenants declare as theirs (tenants[].client_ids, which binds their keys to it)
// matches a route's client_ids only in those tenants' requests: another tenant naming it does not
// take the route, its providers and their senders. A client id no tenant declares matches any
// tenant's request (smsgate validate warns of it when there are several tenants).
func Compile(routes []config.Route, tenants []config.Tenant) *Table {
	owners := ClientOwners(tenants)
	t := &Table{}
	for _, r := range routes {
		cr := &Route{Name: r.Name, Providers: append([]string(nil), r.Providers...), FailoverOnTimeout: r.FailoverOnTimeout == nil || *r.FailoverOnTimeout}
		if m := r.Match; m != nil {
			cr.add("tenant", m.Tenants, func(x *gateway.Message) string { return x.Tenant }, false)
			cr.add("client_id", m.ClientIDs, func(x *gateway.Message) string { return x.ClientID }, false)
			if len(m.ClientIDs) > 0 {
				cr.matchers[len(cr.matchers)-1].owners = owners
			}
			cr.add("country", m.Countries, func(x *gateway.Message) string { return x.Country }, false)
			cr.add("message_type", m.MessageTypes, func(x *gateway.Message) string { return string(x.Type) }, false)
			cr.add("action", m.Actions, func(x *gateway.Message) string { return x.Action }, false)
			cr.add("language", m.Languages, func(x *gateway.Message) string { return x.Language }, true)
		}
		t.routes = append(t.routes, cr)
	}
	return t
}

// ClientOwners maps each client id that tenants declare (tenants[].client_ids) to those tenants.
func ClientOwners(tenants []config.Tenant) map[string]map[string]bool {
	owners := map[string]map[string]bool{}
	for _, tn := range tenants {
		for _, id := range tn.ClientIDs {
			if owners[id] == nil {
				owners[id] = map[string]bool{}
			}
			owners[id][tn.Name] = true
		}
	}
	return owners
}

func (r *Route) add(field string, vals []string, get func(*gateway.Message) string, fold bool) {
	if len(vals) == 0 {
		return
	}
	m := matcher{field: field, values: make(map[string]bool, len(vals)), get: get}
	for _, v := range vals {
		if fold {
			v = normLang(v)
		}
		m.values[v] = true
	}
	if fold {
		inner := get
		m.get = func(x *gateway.Message) string { return normLang(inner(x)) }
	}
	r.matchers = append(r.matchers, m)
}

// normLang lower-cases and turns "_" into "-", so "en_US" and "EN-us" compare equal.
func normLang(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "-")) }

// ok reports whether the matcher accepts the message's value. For languages a rule "en" also
// accepts "en-us": the primary subtag is enough. A client id that tenants declare is accepted only
// from them.
func (m *matcher) ok(x *gateway.Message) (string, bool) {
	v := m.get(x)
	if m.values[v] {
		return v, m.ownedBy(v, x.Tenant)
	}
	if m.field == "language" {
		if p, _, cut := strings.Cut(v, "-"); cut && m.values[p] {
			return v, true
		}
	}
	return v, false
}

// Match returns the first route that accepts msg. A validated table always ends in a catch-all,
// so the route is never nil for one.
func (t *Table) Match(msg *gateway.Message) *Route {
	for _, r := range t.routes {
		if r.accepts(msg) {
			return r
		}
	}
	return nil
}

// ownedBy reports whether tenant may name client id v: no tenant declares v, or tenant does.
func (m *matcher) ownedBy(v, tenant string) bool {
	o := m.owners[v]
	return o == nil || o[tenant]
}

func (r *Route) accepts(msg *gateway.Message) bool {
	for i := range r.matchers {
		if _, ok := r.matchers[i].ok(msg); !ok {
			return false
		}
	}
	return true
}

// Explain is Match with reasons, for `smsgate route`.
func (t *Table) Explain(msg *gateway.Message) Decision {
	var d Decision
	for _, r := range t.routes {
		var why []string
		rejected := ""
		for i := range r.matchers {
			m := &r.matchers[i]
			v, ok := m.ok(msg)
			if !ok {
				rejected = fmt.Sprintf("%s: %s %q is not in %s", r.Name, m.field, v, keys(m.values))
				if m.values[v] {
					rejected = fmt.Sprintf("%s: %s %q is in %s, but it is declared by tenant %s (their client_ids), not by %q", r.Name, m.field, v, keys(m.values), keys(m.owners[v]), msg.Tenant)
				}
				break
			}
			why = append(why, fmt.Sprintf("%s %q is in %s", m.field, v, keys(m.values)))
		}
		if rejected != "" {
			d.Skipped = append(d.Skipped, rejected)
			continue
		}
		if len(why) == 0 {
			why = []string{"catch-all: the route has no match block"}
		}
		d.Route, d.Why = r, why
		return d
	}
	return d
}

// Routes returns the compiled routes in order.
func (t *Table) Routes() []*Route { return t.routes }

func keys(m map[string]bool) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return "[" + strings.Join(ks, ", ") + "]"
}
