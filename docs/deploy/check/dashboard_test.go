package check

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Counters that a gateway exposes at 0 from its start: increase() over them sees every count.
var countedFromStart = map[string]bool{
	"smsgate_message_log_dropped_total":         true,
	"smsgate_message_log_commit_timeouts_total": true,
	"smsgate_message_log_handed_over_total":     true,
	"smsgate_message_log_spool_failures_total":  true,
}

// firstCounts are the dashboard's counters whose series appear only at their first count (their
// labels are known only then), with the labels a test series needs beside the panel's by-labels.
var firstCounts = map[string]string{
	"smsgate_demotions_total":                   ``,
	"smsgate_spend_total":                       ``,
	"smsgate_pumping_quarantines_total":         ``,
	"smsgate_tenant_spend_estimated_total":      ``,
	"smsgate_tenant_breaker_opens_total":        ``,
	"smsgate_idempotency_records_evicted_total": ``,
	"smsgate_window_reads_total":                `result="error"`,
	"smsgate_codes_used_total":                  ``,
	"smsgate_requests_total":                    `outcome="sent"`,
}

var (
	increaseOf = regexp.MustCompile(`increase\((smsgate_[a-z_]+)`)
	sumBy      = regexp.MustCompile(`^sum by \(([a-z_, ]+)\)`)
)

// dashboardExprs returns the Grafana dashboard's queries with its variables replaced by values
// promtool takes: every range 1h, every tenant.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../grafana/smsgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "1h", "$__range", "1h", "$tenant", ".*")
	var exprs []string
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			if q.Expr != "" {
				exprs = append(exprs, vars.Replace(q.Expr))
			}
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("read %d queries from the dashboard", len(exprs))
	}
	return exprs
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is missing (.ci/run installs it)")
		}
		t.Skip("promtool is not installed")
	}
	return p
}

// TestDashboardCountsFirstEvents: every dashboard panel that counts a counter's increase over a
// range also counts a series that first appeared within it. increase() sees no increase in a
// series' first sample, so a counter whose labels are known only at its first count (a provider's
// first demotion for a country, a tenant's first quarantine) showed one event too few, and a
// single event as none. The panels are evaluated by promtool against series: one counting through
// the whole hour (its increase), one that appeared within it at 1 and counted once more (2, all of
// its counts). Every query of the dashboard must also parse.
func TestDashboardCountsFirstEvents(t *testing.T) {
	tool := promtool(t)
	exprs := dashboardExprs(t)

	var rules, cases strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	cases.WriteString("rule_files: []\nevaluation_interval: 1m\ntests:\n")
	tested := map[string]bool{}
	for i, e := range exprs {
		fmt.Fprintf(&rules, "      - record: dashboard:query%d\n        expr: %q\n", i, e)
		for _, m := range increaseOf.FindAllStringSubmatch(e, -1) {
			metric := m[1]
			if countedFromStart[metric] {
				continue
			}
			extra, ok := firstCounts[metric]
			by := sumBy.FindStringSubmatch(e)
			switch {
			case !ok:
				t.Errorf("the dashboard counts the increase of %s, which has no first-count case here: %s", metric, e)
				continue
			case by == nil:
				t.Errorf("cannot read the labels of %q", e)
				continue
			}
			tested[metric] = true
			// labels(v) is the panel's by-labels all set to v (the output), with extra for the input.
			labels := func(v string, extra string) string {
				var l []string
				for _, name := range strings.Split(by[1], ",") {
					l = append(l, fmt.Sprintf("%s=%q", strings.TrimSpace(name), v))
				}
				if extra != "" {
					l = append(l, extra)
				}
				return "{" + strings.Join(l, ",") + "}"
			}
			fmt.Fprintf(&cases, `  - interval: 1m
    input_series:
      - series: '%s%s'
        values: '0+1x100'
      - series: '%s%s'
        values: '_x40 1x9 2x30'
    promql_expr_test:
      - expr: %q
        eval_time: 70m
        exp_samples:
          - labels: '%s'
            value: 60
          - labels: '%s'
            value: 2
`, metric, labels("old", extra), metric, labels("new", extra), e, labels("old", ""), labels("new", ""))
		}
	}
	for metric := range firstCounts {
		if !tested[metric] {
			t.Errorf("no dashboard panel counts %s any more: drop its case", metric)
		}
	}
	dir := t.TempDir()
	for file, text := range map[string]string{"dashboard.yml": rules.String(), "dashboard_test.yml": cases.String()} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(tool, "check", "rules", filepath.Join(dir, "dashboard.yml")).CombinedOutput(); err != nil {
		t.Fatalf("the dashboard's queries do not parse:\n%s", out)
	}
	if out, err := exec.Command(tool, "test", "rules", filepath.Join(dir, "dashboard_test.yml")).CombinedOutput(); err != nil {
		t.Errorf("the dashboard's counts of first events:\n%s", out)
	}
}
