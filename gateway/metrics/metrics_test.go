package metrics

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"
)

// TestLatencyOnlyOfCallsMade: attempts that never called the provider are counted but add no
// zero to its latency; calls it answered, whatever the answer, do.
func TestLatencyOnlyOfCallsMade(t *testing.T) {
	m := New()
	for _, o := range []string{"skipped", "unavailable", "throttled"} {
		m.OnAttempt("p", o, 0)
	}
	m.OnAttempt("p", "cancelled", 40*time.Millisecond)
	m.OnAttempt("p", "sent", 20*time.Millisecond)
	m.OnAttempt("p", "throttled", 15*time.Millisecond)
	if n := testutil.CollectAndCount(m.ProviderLatency); n != 1 {
		t.Fatalf("%d latency series, want 1", n)
	}
	h := testutil.ToFloat64(m.Attempts.WithLabelValues("p", "throttled"))
	if h != 2 {
		t.Errorf("throttled attempts counted %v, want 2", h)
	}
	// Two observations: the sent and the answered throttled call, 35 ms in all.
	mf, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range mf {
		if f.GetName() != "smsgate_provider_latency_seconds" {
			continue
		}
		hs := f.GetMetric()[0].GetHistogram()
		if hs.GetSampleCount() != 2 || hs.GetSampleSum() < 0.0349 || hs.GetSampleSum() > 0.0351 {
			t.Errorf("latency: %d observations summing to %v s, want 2 and 0.035", hs.GetSampleCount(), hs.GetSampleSum())
		}
		return
	}
	t.Error("no smsgate_provider_latency_seconds")
}

// vector is one of Metrics' labelled collectors.
type vector struct {
	name   string
	labels []string
	with   reflect.Value // its WithLabelValues
}

// vectors lists Metrics' labelled collectors with their label names, read from their
// descriptions, so that a metric added later is covered without being listed here.
func vectors(t *testing.T, m *Metrics) []vector {
	t.Helper()
	labelsRe := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	var out []vector
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		c, ok := f.Interface().(prometheus.Collector)
		with := f.MethodByName("WithLabelValues")
		if !ok || !with.IsValid() {
			continue
		}
		ch := make(chan *prometheus.Desc, 1)
		c.Describe(ch)
		sm := labelsRe.FindStringSubmatch((<-ch).String())
		if sm == nil || sm[2] == "" {
			t.Fatalf("%s: no labels read from its description", v.Type().Field(i).Name)
		}
		out = append(out, vector{name: sm[1], labels: strings.Split(sm[2], ","), with: with})
	}
	if len(out) < 20 {
		t.Fatalf("only %d labelled metrics found", len(out))
	}
	return out
}

// series makes a series of vec whose labels named in set take those values, the others "x".
func (vec vector) series(set map[string]string) {
	args := make([]reflect.Value, len(vec.labels))
	for i, l := range vec.labels {
		val, ok := set[l]
		if !ok {
			val = "x"
		}
		args[i] = reflect.ValueOf(val)
	}
	vec.with.Call(args)
}

// labelled counts the gathered series that carry label name with value val.
func labelled(t *testing.T, m *Metrics, name, val string) map[string]int {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == name && l.GetValue() == val {
					n[mf.GetName()]++
				}
			}
		}
	}
	return n
}

// TestAProviderThatLeftLeavesNoSeries: DeleteProvider removes every series that names the provider
// (as provider, or as either end of a failover) from every metric, and only those.
func TestAProviderThatLeftLeavesNoSeries(t *testing.T) {
	m := New()
	named := map[string]bool{}
	for _, vec := range vectors(t, m) {
		switch {
		case slices.Contains(vec.labels, "provider"): // from and to, if any, are breaker states
			named[vec.name] = true
			vec.series(map[string]string{"provider": "gone"})
			vec.series(map[string]string{"provider": "kept"})
		case slices.Contains(vec.labels, "from"): // a failover from one provider to another
			named[vec.name] = true
			vec.series(map[string]string{"from": "gone", "to": "kept"})
			vec.series(map[string]string{"from": "kept", "to": "gone"})
			vec.series(map[string]string{"from": "kept", "to": "kept"})
		}
	}
	if len(named) < 10 {
		t.Fatalf("only %d metrics name a provider: %v", len(named), named)
	}
	m.DeleteProvider("gone")
	for _, l := range []string{"provider", "from", "to"} {
		if n := labelled(t, m, l, "gone"); len(n) > 0 {
			t.Errorf("series with %s=\"gone\" left: %v", l, n)
		}
	}
	kept := labelled(t, m, "provider", "kept")
	for k, v := range labelled(t, m, "from", "kept") {
		kept[k] += v
	}
	for name := range named {
		if kept[name] != 1 {
			t.Errorf("%s: %d series of the provider that stayed, want 1", name, kept[name])
		}
	}
}

// TestATenantThatLeftLeavesNoSeries: DeleteTenantsExcept removes every series of a tenant keep
// refuses from every metric labelled by tenant, and keeps the others and the empty tenant's (calls
// no key authenticated).
func TestATenantThatLeftLeavesNoSeries(t *testing.T) {
	m := New()
	named := map[string]bool{}
	for _, vec := range vectors(t, m) {
		if slices.Contains(vec.labels, "tenant") {
			named[vec.name] = true
			for _, tn := range []string{"gone", "kept", ""} {
				vec.series(map[string]string{"tenant": tn})
			}
		}
	}
	if len(named) < 10 {
		t.Fatalf("only %d metrics name a tenant: %v", len(named), named)
	}
	m.DeleteTenantsExcept(func(tn string) bool { return tn == "kept" })
	if n := labelled(t, m, "tenant", "gone"); len(n) > 0 {
		t.Errorf("series of the tenant that left: %v", n)
	}
	for _, tn := range []string{"kept", ""} {
		left := labelled(t, m, "tenant", tn)
		for name := range named {
			if left[name] != 1 {
				t.Errorf("%s: %d series of tenant %q, want 1", name, left[name], tn)
			}
		}
	}
}

// TestBreakerStateValues: smsgate_breaker_state is 0 closed, 1 half-open, 2 open (the dashboard
// and the alerts read these values).
func TestBreakerStateValues(t *testing.T) {
	for s, want := range map[gobreaker.State]int{gobreaker.StateClosed: 0, gobreaker.StateHalfOpen: 1, gobreaker.StateOpen: 2} {
		if got := StateValue(s); got != want {
			t.Errorf("StateValue(%v) = %d, want %d", s, got, want)
		}
	}
}

// TestBreakerChangesAreRecorded: a breaker's change sets its state and counts the transition from
// and to the states it names.
func TestBreakerChangesAreRecorded(t *testing.T) {
	m := New()
	m.OnBreakerChange("p", "sms", gobreaker.StateClosed, gobreaker.StateOpen)
	if got := testutil.ToFloat64(m.BreakerState.WithLabelValues("p", "sms")); got != 2 {
		t.Errorf("state %v, want 2 (open)", got)
	}
	if got := testutil.ToFloat64(m.BreakerTransitions.WithLabelValues("p", "sms", "closed", "open")); got != 1 {
		t.Errorf("closed to open counted %v times, want 1", got)
	}
}

// TestWindowReadsCountedByResult: a read of a window is counted ok or error, and timed either way.
func TestWindowReadsCountedByResult(t *testing.T) {
	m := New()
	m.WindowRead("prices", 10*time.Millisecond, nil)
	m.WindowRead("prices", 30*time.Millisecond, errors.New("the message log did not answer"))
	m.WindowRead("prices", 20*time.Millisecond, nil)
	if ok, failed := testutil.ToFloat64(m.WindowReads.WithLabelValues("prices", "ok")), testutil.ToFloat64(m.WindowReads.WithLabelValues("prices", "error")); ok != 2 || failed != 1 {
		t.Errorf("reads ok %v, failed %v; want 2 and 1", ok, failed)
	}
	if n := testutil.CollectAndCount(m.WindowReadTime); n != 1 {
		t.Errorf("%d read-time series, want 1", n)
	}
}

// TestTenantBreakerOpensCountsOpeningsOnly: a tenant's own breaker is counted each time it opens,
// from closed or again from half-open, and not when it half-opens or closes.
func TestTenantBreakerOpensCountsOpeningsOnly(t *testing.T) {
	m := New()
	steps := []struct {
		from, to gobreaker.State
		want     float64
	}{
		{gobreaker.StateClosed, gobreaker.StateOpen, 1},
		{gobreaker.StateOpen, gobreaker.StateHalfOpen, 1},
		{gobreaker.StateHalfOpen, gobreaker.StateOpen, 2},
		{gobreaker.StateOpen, gobreaker.StateHalfOpen, 2},
		{gobreaker.StateHalfOpen, gobreaker.StateClosed, 2},
	}
	for _, s := range steps {
		m.OnTenantBreakerChange("ib", "sms", "acme", s.from, s.to)
		if got := testutil.ToFloat64(m.TenantBreakerOpens.WithLabelValues("ib", "sms", "acme")); got != s.want {
			t.Errorf("after %s to %s: %v openings, want %v", s.from, s.to, got, s.want)
		}
	}
}
