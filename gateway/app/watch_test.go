package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

const watchedConfig = `
server: {watch_config: 1s}
log: {format: json, level: info}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants:
  - {name: acme, api_key: "${file:keys/acme}"}
providers: [{name: primary, type: mock}]
routes: [{name: default, providers: [primary]}]
`

// writeBeside writes content to the file name in the directory of the config file at path (a
// key, a tenant file), making the directories it needs.
func writeBeside(t *testing.T, path, name, content string) {
	t.Helper()
	p := filepath.Join(filepath.Dir(path), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAChangedConfigReloadsItself: with server.watch_config, a replica reloads when its config
// file or a file it reads a secret from changes, as Kubernetes changes a mounted Secret or
// ConfigMap: a rotated key, then a new tenant whose key file appears only after the config names
// it. Each change is loaded once; a file that fails to load is not tried again until it changes;
// no key reaches the log.
func TestAChangedConfigReloadsItself(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, watchedConfig)
	writeKey := func(name, key string) { t.Helper(); writeBeside(t, path, "keys/"+name, key+"\n") }
	writeKey("acme", "acme-key-ONE-0123456789")
	h := startAt(t, path, Options{})
	body := `{"message_options":{"recipient":"+1 415 555 0104","text":"Your code is 123456"}}`
	if r := h.send("acme-key-ONE-0123456789", body); r.Status != 200 {
		t.Fatalf("the key read from its file: %d %s", r.Status, r.Raw)
	}
	reloads := func(result string) float64 {
		return testutil.ToFloat64(h.app.MetricSet().Reloads.WithLabelValues(result))
	}
	// waitFor sends with key until it gets status, for at most 10 s (the watch looks every second).
	waitFor := func(key string, status int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := h.send(key, body)
			if r.Status == status {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("a send with %s still gets %d %s, want %d", key[:9], r.Status, r.Raw, status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	writeKey("acme", "acme-key-TWO-0123456789")
	waitFor("acme-key-TWO-0123456789", 200)
	if r := h.send("acme-key-ONE-0123456789", body); r.Status != 401 {
		t.Errorf("the rotated-out key: %d, want 401", r.Status)
	}

	cfg := strings.Replace(watchedConfig, "tenants:\n", "tenants:\n  - {name: beta, api_key: \"${file:keys/beta}\"}\n", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for reloads("error") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond) // two more looks at the unchanged files
	if got := reloads("error"); got != 1 {
		t.Errorf("reloads of the config naming a missing key file = %v, want 1 (not tried again until it changes)", got)
	}
	if got := testutil.ToFloat64(h.app.MetricSet().ConfigLoaded); got != 0 {
		t.Errorf("smsgate_config_last_reload_successful = %v while the files do not load, want 0", got)
	}
	waitFor("acme-key-TWO-0123456789", 200) // the running config stayed
	writeKey("beta", "beta-key-THREE-0123456789")
	waitFor("beta-key-THREE-0123456789", 200)
	time.Sleep(1500 * time.Millisecond)
	if got := testutil.ToFloat64(h.app.MetricSet().ConfigLoaded); got != 1 {
		t.Errorf("smsgate_config_last_reload_successful = %v once they load, want 1", got)
	}
	if ok, failed := reloads("ok"), reloads("error"); ok != 2 || failed != 1 {
		t.Errorf("reloads ok %v, error %v; want 2 and 1: each change loaded once", ok, failed)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "config file changed; reloading") || !strings.Contains(logs, "keys/beta: no such file") ||
		!strings.Contains(logs, `"tenants_changed":"acme"`) || !strings.Contains(logs, `"tenants_added":"beta"`) {
		t.Errorf("the log does not tell of the reloads and why one failed:\n%s", logs)
	}
	for _, secret := range []string{"ONE-0123", "TWO-0123", "THREE-0123"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a key (%s):\n%s", secret, logs)
		}
	}
}

// TestWithoutWatchConfigOnlyASignalReloads: by default a changed file waits for SIGHUP or the
// admin API, so an edit in two steps is never served half done.
func TestWithoutWatchConfigOnlyASignalReloads(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(watchedConfig, "server: {watch_config: 1s}", "server: {admin_token: admin-t0ken-0123456789}", 1)
	path := writeConfig(t, cfg)
	writeBeside(t, path, "keys/acme", "acme-key-ONE-0123456789")
	o := Options{watchIdle: 100 * time.Millisecond} // looks often
	h := startAt(t, path, o)
	writeBeside(t, path, "keys/acme", "acme-key-TWO-0123456789")
	time.Sleep(5 * o.watchIdle) // the loop looked five times
	body := `{"message_options":{"recipient":"+1 415 555 0104","text":"Your code is 123456"}}`
	if r := h.send("acme-key-ONE-0123456789", body); r.Status != 200 {
		t.Errorf("the old key before a reload: %d, want 200", r.Status)
	}
	if r := h.do("POST", "/v1/admin/reload", "admin-t0ken-0123456789", ""); r.Status != 200 {
		t.Fatalf("reload: %d %s", r.Status, r.Raw)
	}
	if r := h.send("acme-key-TWO-0123456789", body); r.Status != 200 {
		t.Errorf("the new key after the reload: %d, want 200", r.Status)
	}
}

// TestATenantFileAddedOrRemovedIsReloaded: with tenant_files naming a directory, a team's file
// dropped into it adds its tenants on every replica watching, and its removal removes them.
func TestATenantFileAddedOrRemovedIsReloaded(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, strings.Replace(watchedConfig, "tenants:\n  - {name: acme, api_key: \"${file:keys/acme}\"}\n",
		"tenant_files: [\"tenants.d/*.yaml\"]\ntenants:\n  - {name: acme, api_key: acme-key-0123456789}\n", 1))
	dir := filepath.Join(filepath.Dir(path), "tenants.d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := startAt(t, path, Options{})
	body := `{"message_options":{"recipient":"+1 415 555 0104","text":"Your code is 123456"}}`
	await := func(key string, status int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for r := h.send(key, body); r.Status != status; r = h.send(key, body) {
			if time.Now().After(deadline) {
				t.Fatalf("a send with %s still gets %d, want %d", key[:4], r.Status, status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	await("beta-key-0123456789", 401)
	file := filepath.Join(dir, "beta.yaml")
	writeBeside(t, path, "tenants.d/beta.yaml", "tenants: [{name: beta, api_key: beta-key-0123456789}]\n")
	await("beta-key-0123456789", 200)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	await("beta-key-0123456789", 401)
	await("acme-key-0123456789", 200)
}

// TestAWarningNamesTheTenantFile: validate's warnings about a tenant read from a tenant file
// name that file and its line, not the config file's.
func TestAWarningNamesTheTenantFile(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `
tenant_files: [team.yaml]
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: p, type: mock}]
routes: [{name: d, providers: [p]}]
`)
	team := filepath.Join(filepath.Dir(path), "team.yaml")
	writeBeside(t, path, "team.yaml", "# the team's tenants\ntenants:\n  - name: beta\n    api_key: short\n")
	warnings, err := Check(path)
	if err != nil {
		t.Fatal(err)
	}
	want := team + ":4: tenants[1].api_key: shorter than 16 characters"
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
		t.Errorf("warnings %q, want one starting %q", warnings, want)
	}
}

// TestATeamsFileCannotLoosenItsLimits: a team keeps its tenants in a delegated tenant file (a
// tenant_files entry with bounds). It adds a tenant, and the watch takes it; it then sets itself
// the rate limit it was not given: the reload is refused at its file's line and key, and the
// running config, the operator's limit with it, stays in force.
func TestATeamsFileCannotLoosenItsLimits(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, strings.Replace(watchedConfig, "policy: {rate_limits: {per_recipient: 0}}\ntenants:\n  - {name: acme, api_key: \"${file:keys/acme}\"}\n",
		"policy: {rate_limits: {per_recipient: 0, per_tenant: 2/1h}}\ntenant_files:\n  - {path: \"teams/pay/*.yaml\", names: \"pay-*\"}\ntenants:\n  - {name: acme, api_key: acme-key-0123456789}\n", 1))
	team := filepath.Join(filepath.Dir(path), "teams", "pay", "tenants.yaml")
	write := func(content string) { t.Helper(); writeBeside(t, path, "teams/pay/tenants.yaml", content) }
	write("tenants:\n  - {name: pay-prod, api_key: pay-prod-key-0123456789, allowed_countries: [US]}\n")
	h := startAt(t, path, Options{})
	body := `{"message_options":{"recipient":"+1 415 555 0104","text":"Your code is 123456"}}`
	for i := range 2 {
		if r := h.send("pay-prod-key-0123456789", body); r.Status != 200 {
			t.Fatalf("send %d of the team's tenant: %d %s", i+1, r.Status, r.Raw)
		}
	}
	if r := h.send("pay-prod-key-0123456789", body); r.Status != 429 {
		t.Fatalf("a send past the operator's limit: %d, want 429", r.Status)
	}
	write("tenants:\n  - {name: pay-prod, api_key: pay-prod-key-0123456789, allowed_countries: [US]}\n" +
		"  - {name: pay-staging, api_key: pay-staging-key-0123456789}\n")
	deadline := time.Now().Add(10 * time.Second)
	for r := h.send("pay-staging-key-0123456789", body); r.Status != 200; r = h.send("pay-staging-key-0123456789", body) {
		if time.Now().After(deadline) {
			t.Fatalf("the team's new tenant still gets %d", r.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	failed := testutil.ToFloat64(h.app.MetricSet().Reloads.WithLabelValues("error"))
	write("tenants:\n  - name: pay-prod\n    api_key: pay-prod-key-0123456789\n    rate_limits: {per_tenant: 1000/1m}\n" +
		"  - {name: pay-staging, api_key: pay-staging-key-0123456789}\n")
	for testutil.ToFloat64(h.app.MetricSet().Reloads.WithLabelValues("error")) == failed {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatal("the team's file past its bounds was never tried")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := h.send("pay-prod-key-0123456789", body); r.Status != 429 {
		t.Errorf("after the refused reload, a send past the operator's limit: %d, want 429", r.Status)
	}
	if want := team + ":4: tenants[1].rate_limits: a file of tenant_files[0] (a team's) may not set rate_limits"; !strings.Contains(h.logs.String(), want) {
		t.Errorf("the log lacks %q:\n%s", want, h.logs.String())
	}
}

// TestAWarningNeverQuotesASecret: validate's warnings quote a value read from the environment as
// the reference that read it, as the load's problems do (TestProblemsNeverQuoteASecret).
func TestAWarningNeverQuotesASecret(t *testing.T) {
	// Not parallel: sets the environment (see start).
	t.Setenv("SMSGATE_TEST_ACTION", "ENV-SECRET-0123456789")
	path := writeConfig(t, `
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: p, type: mock}]
routes:
  - {name: odd, match: {actions: ["${SMSGATE_TEST_ACTION}"]}, providers: [p]}
  - {name: d, providers: [p]}
`)
	warnings, err := Check(path)
	if err != nil {
		t.Fatal(err)
	}
	want := path + `:5: routes[0].match.actions[0]: "${SMSGATE_TEST_ACTION}" is no action Auth0 sends`
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
		t.Errorf("warnings %q, want one starting %q", warnings, want)
	}
}

// TestARejectedReloadSaysHowManyProblemsNotAll: a reload refused for many problems (a tenant file
// of many broken tenants) logs the first 100 and how many more, and the admin API answers the
// same: a line of megabytes would fill the log every replica writes.
func TestARejectedReloadSaysHowManyProblemsNotAll(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, strings.Replace(watchedConfig, "server: {watch_config: 1s}", "server: {admin_token: admin-t0ken-0123456789}", 1))
	writeBeside(t, path, "keys/acme", "acme-key-0123456789\n")
	h := startAt(t, path, Options{})
	var b strings.Builder
	b.WriteString("tenants:\n")
	for i := range 150 {
		fmt.Fprintf(&b, "  - {name: t%d, api_key: key-%d-0123456789abcdef, allowed_countries: [XX]}\n", i, i)
	}
	writeBeside(t, path, "team.yaml", b.String())
	if err := os.WriteFile(path, []byte("tenant_files: [team.yaml]\n"+strings.Replace(watchedConfig, "server: {watch_config: 1s}", "server: {admin_token: admin-t0ken-0123456789}", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := h.do("POST", "/v1/admin/reload", "admin-t0ken-0123456789", "")
	var answer struct{ Problems []string }
	if err := json.Unmarshal([]byte(r.Raw), &answer); err != nil || r.Status != 422 {
		t.Fatalf("reload: %d %s", r.Status, r.Raw)
	}
	if n := len(answer.Problems); n != 101 || answer.Problems[100] != "and 50 problem(s) more: smsgate validate lists them all" {
		t.Errorf("the answer lists %d problems, ending %q; want 100 and how many more", n, answer.Problems[n-1])
	}
	var line map[string]any
	for _, l := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(l, "config reload rejected") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	msg, _ := line["err"].(string)
	if line["problems"] != 150.0 || strings.Count(msg, "\n") != 100 || !strings.HasSuffix(msg, "and 50 problem(s) more: smsgate validate lists them all") {
		t.Errorf("the log line: problems %v, %d lines, ending %q", line["problems"], strings.Count(msg, "\n")+1, msg[max(0, len(msg)-80):])
	}
}

// TestATeamsEntryWithoutNamesIsWarnedOf: validate warns of a delegated tenant_files entry that
// sets no names pattern, and of no other entry.
func TestATeamsEntryWithoutNamesIsWarnedOf(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `
tenant_files:
  - ops/*.yaml
  - {path: "teams/pay/*.yaml", names: "pay-*"}
  - {path: "teams/search/*.yaml"}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: p, type: mock}]
routes: [{name: d, providers: [p]}]
`)
	warnings, err := Check(path)
	if err != nil {
		t.Fatal(err)
	}
	want := path + ":5: tenant_files[2]: a team's entry without names"
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
		t.Errorf("warnings %q, want one starting %q", warnings, want)
	}
}
