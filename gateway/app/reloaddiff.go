package app

import (
	"reflect"
	"slices"
	"strings"

	"github.com/smsgate/smsgate/gateway/config"
)

// reloadChanges are the attributes of the "config reloaded" line that say what the reload changed:
// the tenants, providers and routes added, removed and changed, by name (never a key or any other
// value), and whether anything else changed. With server.watch_config nobody issues a reload by
// hand, so the log is where an operator reads what a change of the files did.
func reloadChanges(prev, next *config.Config) []any {
	var attrs []any
	add := func(what string, names []string) {
		if len(names) > 0 {
			attrs = append(attrs, what, strings.Join(names, ","))
		}
	}
	diff := func(what string, prev, next map[string]any) {
		var added, removed, changed []string
		for name, v := range next {
			if p, ok := prev[name]; !ok {
				added = append(added, name)
			} else if !reflect.DeepEqual(p, v) {
				changed = append(changed, name)
			}
		}
		for name := range prev {
			if _, ok := next[name]; !ok {
				removed = append(removed, name)
			}
		}
		slices.Sort(added)
		slices.Sort(removed)
		slices.Sort(changed)
		add(what+"_added", added)
		add(what+"_removed", removed)
		add(what+"_changed", changed)
	}
	diff("tenants", byName(prev.Tenants, func(t config.Tenant) string { return t.Name }), byName(next.Tenants, func(t config.Tenant) string { return t.Name }))
	// A provider compares by what it was decoded into, not by its YAML (which holds lines).
	provider := func(p config.Provider) string { return p.Name }
	withoutYAML := func(ps []config.Provider) []config.Provider {
		out := slices.Clone(ps)
		for i := range out {
			out[i].Options = nil
		}
		return out
	}
	diff("providers", byName(withoutYAML(prev.Providers), provider), byName(withoutYAML(next.Providers), provider))
	diff("routes", byName(prev.Routes, func(r config.Route) string { return r.Name }), byName(next.Routes, func(r config.Route) string { return r.Name }))
	// The table is first match wins: the routes both have, in another order, route otherwise.
	both := func(from, other []config.Route) []string {
		var names []string
		for _, r := range from {
			if slices.ContainsFunc(other, func(o config.Route) bool { return o.Name == r.Name }) {
				names = append(names, r.Name)
			}
		}
		return names
	}
	if !slices.Equal(both(prev.Routes, next.Routes), both(next.Routes, prev.Routes)) {
		add("routes_order", []string{"reordered"})
	}
	var rest []string
	for _, f := range []struct{ field, key string }{{"Server", "server"}, {"Log", "log"}, {"Storage", "storage"}, {"State", "state"},
		{"Policy", "policy"}, {"TenantFiles", "tenant_files"}, {"Routing", "routing"}} {
		if !reflect.DeepEqual(reflect.ValueOf(*prev).FieldByName(f.field).Interface(), reflect.ValueOf(*next).FieldByName(f.field).Interface()) {
			rest = append(rest, f.key)
		}
	}
	add("sections_changed", rest)
	if len(attrs) == 0 {
		attrs = append(attrs, "changed", "nothing")
	}
	return attrs
}

// byName maps each of xs to its name.
func byName[T any](xs []T, name func(T) string) map[string]any {
	m := make(map[string]any, len(xs))
	for _, x := range xs {
		m[name(x)] = x
	}
	return m
}
