package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/app"
	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/gateway/store/pgtest"
)

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateExample(t *testing.T) {
	code, out, errs := runCmd("validate", "--config", "../../config.example.yaml")
	if code != 0 || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
	// The file a newcomer starts from holds nothing validate would warn of.
	if strings.Contains(errs, "warning") {
		t.Errorf("the example warns:\n%s", errs)
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte(`server:
  listen: 127.0.0.1:1
  request_timout: 3s
tenants:
  - name: a
    api_key: ${SMSGATE_SURELY_UNSET}
providers:
  - name: p
    type: mock
    fail_with: fire
  - name: q
    type: carrier-pigeon
routes:
  - name: d
    providers: [p, r]
`), 0o600)
	code, _, errs := runCmd("validate", "-c", path)
	want := []string{
		path + ":3: server.request_timout: unknown key \"request_timout\"",
		path + ":6: tenants[0].api_key: environment variable SMSGATE_SURELY_UNSET is not set",
		path + ":15: routes[0].providers[1]: provider \"r\" is not defined under providers",
		path + ":10: providers[0].fail_with: must be provider, recipient, destination, throttled or timeout, not \"fire\"",
		path + ":12: providers[1].type: unknown provider type \"carrier-pigeon\"",
		path + ": 5 problem(s)",
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, w := range want {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
}

// TestValidateChecksWhatRoutesCanSend: a route that names voice but whose providers can only send
// SMS is a problem; a catch-all that matches voice implicitly gets a warning and stays valid.
func TestValidateChecksWhatRoutesCanSend(t *testing.T) {
	cfg := `tenants: [{name: a, api_key: k}]
providers:
  - {name: tw, type: twilio, account_sid: AC0123456789abcdef0123456789abcdef, auth_token: t, messaging_service_sid: MG0123456789abcdef0123456789abcdef}
  - {name: m, type: mock, types: [sms]}
routes:
%s  - name: default
    providers: [tw, m]
`
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(fmt.Sprintf(cfg, "  - name: calls\n    match: {message_types: [voice]}\n    providers: [tw, m]\n")), 0o600)
	code, _, errs := runCmd("validate", "-c", bad)
	if code != 1 || !strings.Contains(errs, bad+`:8: routes[0].providers: route "calls" matches voice, but none of its providers can send voice`) {
		t.Errorf("exit %d:\n%s", code, errs)
	}
	// A provider whose options are wrong is its own problem: the route is not also said to have no
	// provider for voice.
	os.WriteFile(bad, []byte(strings.Replace(fmt.Sprintf(cfg, "  - name: calls\n    match: {message_types: [voice]}\n    providers: [tw, m]\n"), "auth_token: t, ", "", 1)), 0o600)
	code, _, errs = runCmd("validate", "-c", bad)
	if code != 1 || !strings.Contains(errs, "providers[0]") || strings.Contains(errs, "none of its providers can send") {
		t.Errorf("with a provider that does not build: exit %d:\n%s", code, errs)
	}
	ok := filepath.Join(dir, "ok.yaml")
	os.WriteFile(ok, []byte(fmt.Sprintf(cfg, "")), 0o600)
	code, out, errs := runCmd("validate", "-c", ok)
	if code != 0 || !strings.Contains(out, "configuration is valid") || !strings.Contains(errs, `warning: `+ok+`:7: routes[0].providers: route "default" matches voice too`) {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
	// So does a route whose match block names no message types.
	os.WriteFile(ok, []byte(fmt.Sprintf(cfg, "  - name: a-only\n    match: {tenants: [a]}\n    providers: [m]\n")), 0o600)
	code, _, errs = runCmd("validate", "-c", ok)
	if code != 0 || !strings.Contains(errs, `warning: `+ok+`:8: routes[0].providers: route "a-only" matches voice too`) {
		t.Errorf("a route matching tenants only: exit %d\n%s", code, errs)
	}
}

// TestRouteCommandValidatesDriverOptions: every command loads the whole file, driver options
// included (smsgate route used to skip them).
func TestRouteCommandValidatesDriverOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("tenants: [{name: a, api_key: k}]\nproviders: [{name: ib, type: infobip, api_key: k, base_url: ftp://x}]\nroutes: [{name: d, providers: [ib]}]\n"), 0o600)
	code, _, errs := runCmd("route", "-c", path, "--tenant", "a", "--to", "+14155550104")
	if code != 1 || !strings.Contains(errs, `providers[0].base_url: "ftp://x" is not an http(s) URL`) {
		t.Errorf("exit %d: %s", code, errs)
	}
}

func TestRouteExplains(t *testing.T) {
	code, out, errs := runCmd("route", "-c", "../../config.example.yaml", "--tenant", "demo", "--to", "+1 876 555 1234", "--type", "voice", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got Explanation
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	want := Explanation{Number: "+18*****1234", Country: "JM", Tenant: "demo", Route: "voice", Strategy: "ordered",
		Why: []string{`message_type "voice" is in [voice]`}, Providers: []string{"backup-mock", "primary-mock"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if strings.Contains(out, "555") {
		t.Errorf("the full number is in the output:\n%s", out)
	}
	code, out, _ = runCmd("route", "-c", "../../config.example.yaml", "--tenant", "demo", "--to", "+447911123456")
	wantText := `number:    +44******3456 (country GG)
route:     default
  because  catch-all: the route has no match block
  skipped  voice: message_type "sms" is not in [voice]
providers (in order, strategy ordered):
  1. primary-mock
  2. backup-mock
`
	if diff := cmp.Diff(wantText, out); code != 0 || diff != "" {
		t.Errorf("text output: exit %d (-want +got):\n%s", code, diff)
	}
	code, out, _ = runCmd("route", "-c", "../../config.example.yaml", "--tenant", "demo", "--to", "+19002123456")
	if code != 0 || !strings.Contains(out, "  type     premium_rate") {
		t.Errorf("a premium-rate number's type is not said:\n%s", out)
	}
	if code, _, errs := runCmd("route", "-c", "../../config.example.yaml", "--tenant", "nobody", "--to", "+447911123456"); code != 1 ||
		errs != "smsgate route: no tenant \"nobody\" in ../../config.example.yaml\n" {
		t.Errorf("unknown tenant: exit %d %q, want 1 and the tenant named", code, errs)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "+447911123456"}, "--config, --tenant and --to are required"},
		{[]string{"--tenant", "demo"}, "--config, --tenant and --to are required"},
		{[]string{"--tenant", "demo", "--to", "+447911123456", "--type", "fax"}, "--type must be sms or voice"},
	} {
		if code, _, errs := runCmd(append([]string{"route", "-c", "../../config.example.yaml"}, c.args...)...); code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("route %v: exit %d %q, want 2 and %q", c.args, code, errs, c.want)
		}
	}
	// An unrecognized +1 number may be in several regions: the output says which.
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte(`
tenants: [{name: loose, api_key: loose-key-0123456789, accept_unrecognized_numbers: true}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd("route", "-c", cfg, "--tenant", "loose", "--to", "+15555550123")
	if code != 0 || !strings.Contains(out, "  may be   in ") || !strings.Contains(out, "country lists must allow each") {
		t.Errorf("an unrecognized +1 number: exit %d\n%s%s", code, out, errs)
	}
}

func TestUsageAndVersion(t *testing.T) {
	for _, v := range []string{"version", "--version", "-v"} {
		if code, out, _ := runCmd(v); code != 0 || out != "smsgate "+version+" "+runtime.Version()+"\n" {
			t.Errorf("%s: %d %q, want the build and the Go it was built with", v, code, out)
		}
	}
	if code, out, errs := runCmd(); code != 2 || out != "" || !strings.Contains(errs, "smsgate serve") {
		t.Errorf("no command: exit %d, stdout %q, stderr %q; want 2 and the usage on stderr", code, out, errs)
	}
	if code, out, _ := runCmd("help"); code != 0 || !strings.Contains(out, "smsgate serve") {
		t.Errorf("help: exit %d %q", code, out)
	}
	if code, _, _ := runCmd("frobnicate"); code != 2 {
		t.Errorf("unknown command exit %d", code)
	}
	if code, _, _ := runCmd("serve"); code != 2 {
		t.Errorf("serve without config exit %d", code)
	}
	// A config that does not load is 1 (the file is wrong), not 2 (the command line is).
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("tenants: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"migrate", "spool", "serve"} {
		if code, _, errs := runCmd(cmd, "--config", bad); code != 1 || !strings.Contains(errs, "bad.yaml") {
			t.Errorf("%s with a config that does not load: exit %d, %q", cmd, code, errs)
		}
	}
}

// health over HTTPS checks the certificate unless --insecure: a replica with server.tls probes
// itself on loopback, which its certificate does not name.
func TestHealthOverTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	if code, _, errOut := runCmd("health", "--url", srv.URL+"/healthz"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("health on an unknown certificate: exit %d, %q; want 1 and the certificate's error", code, errOut)
	}
	if code, out, errOut := runCmd("health", "--insecure", "--url", srv.URL+"/healthz"); code != 0 || out != "ok\n" {
		t.Errorf("health --insecure: exit %d, %q %q", code, out, errOut)
	}
	if code, _, _ := runCmd("health", "--insecure", "--url", srv.URL+"/nope"); code != 1 {
		t.Errorf("health --insecure on a 404 exited %d", code)
	}
}

func TestServeHealthAndSignals(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := os.ReadFile("../../config.example.yaml")
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte(strings.Replace(string(cfg), "path: data/smsgate.db", "path: "+filepath.Join(dir, "db.sqlite"), 1)), 0o600)
	addr := freeAddr(t)
	done := make(chan int)
	var stderr bytes.Buffer
	go func() { done <- run([]string{"serve", "-c", path, "--listen", addr}, io.Discard, &stderr) }()
	url := "http://" + addr + "/healthz"
	for i := 0; ; i++ {
		if code, _, _ := runCmd("health", "--url", url); code == 0 {
			break
		}
		if i > 200 {
			t.Fatalf("server did not come up: %s", stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	if code, _, _ := runCmd("health", "--url", "http://"+addr+"/nope"); code != 1 {
		t.Errorf("health on a 404 exited %d", code)
	}
	// SIGHUP reloads (the process survives), SIGTERM drains and exits 0.
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	time.Sleep(100 * time.Millisecond)
	if code, _, _ := runCmd("health", "--url", url); code != 0 {
		t.Fatal("not serving after SIGHUP")
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

// TestRouteShowsDemotions: smsgate route reads the message log of the same config and shows a
// provider that delivery health moves behind the others for the number's country.
func TestRouteShowsDemotions(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "log.db")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("storage: {path: "+db+"}\ntenants: [{name: a, api_key: k}]\nproviders: [{name: p1, type: mock}, {name: p2, type: mock}, {name: p3, type: mock}]\nroutes: [{name: d, providers: [p1, p2]}]\n"), 0o600)
	code, out, errs := runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+14155550104")
	if code != 0 || strings.Contains(out, "demoted") || !strings.Contains(out, "1. p1") {
		t.Fatalf("without a log: %d %s %s", code, out, errs)
	}
	// log writes 25 messages of provider to US a minute ago, of type typ, in status.
	log := func(provider, typ, status string) {
		t.Helper()
		logRecords(t, db, "a", provider, typ, status, 25, time.Minute)
	}
	log("p1", "sms", gateway.StatusUndelivered)
	log("p3", "sms", gateway.StatusUndelivered) // p3, demoted too, is on no route of the tenant's: not shown.
	code, out, errs = runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+14155550104")
	if code != 0 || !strings.Contains(out, "demoted  p1: delivery rate 0.00 over 25 messages to US") || !strings.Contains(out, "1. p2") || strings.Contains(out, "p3") {
		t.Errorf("%d\n%s\n%s", code, out, errs)
	}
	// Neither the number's voice calls nor another country are affected.
	if _, out, _ := runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+14155550104", "--type", "voice"); strings.Contains(out, "demoted") {
		t.Errorf("voice followed the SMS demotion: %s", out)
	}
	if _, out, _ := runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+447400100001"); strings.Contains(out, "demoted") {
		t.Errorf("GB: %s", out)
	}
	// Voice has its own: p2's calls nobody answered do not count, its failed calls do.
	log("p2", "voice", gateway.StatusUndelivered)
	if _, out, _ := runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+14155550104", "--type", "voice"); strings.Contains(out, "demoted") {
		t.Errorf("unanswered calls demoted p2: %s", out)
	}
	log("p2", "voice", gateway.StatusFailed)
	if _, out, _ := runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+14155550104", "--type", "voice"); !strings.Contains(out, "demoted  p2: delivery rate 0.00 over 25 messages to US") ||
		strings.Contains(out, "demoted  p1") {
		t.Errorf("voice: %s", out)
	}
	if _, out, _ := runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+14155550104"); strings.Contains(out, "demoted  p2") {
		t.Errorf("SMS followed the voice demotion: %s", out)
	}
	// Several demoted on one route are listed by name, behind the healthy in their order; a route
	// with delivery_health: false keeps its order and shows none.
	log("p4", "sms", gateway.StatusUndelivered)
	// four is the config of a route with p1 to p4, in reverse, and route settings extra.
	four := func(extra string) []byte {
		return []byte("storage: {path: " + db + "}\ntenants: [{name: a, api_key: k}]\nproviders: [{name: p1, type: mock}, {name: p2, type: mock}, {name: p3, type: mock}, {name: p4, type: mock}]\nroutes: [{name: d, providers: [p4, p3, p2, p1]" + extra + "}]\n")
	}
	os.WriteFile(cfg, four(""), 0o600)
	code, out, errs = runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+14155550104", "--json")
	var ex Explanation
	if err := json.Unmarshal([]byte(out), &ex); code != 0 || err != nil {
		t.Fatalf("route --json: %d %v %s", code, err, errs)
	}
	want := []app.Demotion{{Provider: "p1", Samples: 25}, {Provider: "p3", Samples: 25}, {Provider: "p4", Samples: 25}}
	if diff := cmp.Diff(want, ex.Demoted); diff != "" || cmp.Diff([]string{"p2", "p4", "p3", "p1"}, ex.Providers) != "" {
		t.Errorf("three demoted: providers %v, demoted (-want +got):\n%s", ex.Providers, diff)
	}
	os.WriteFile(cfg, four(", delivery_health: false"), 0o600)
	if code, out, errs := runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+14155550104"); code != 0 || strings.Contains(out, "demoted") || !strings.Contains(out, "1. p4\n  2. p3\n  3. p2\n  4. p1\n") {
		t.Errorf("a route with delivery_health: false: %d %s %s", code, out, errs)
	}
}

// logRecords writes n messages of tenant by provider to US, of type typ, created age ago and now
// in status, to the SQLite message log at db.
func logRecords(t *testing.T, db, tenant, provider, typ, status string, n int, age time.Duration) {
	t.Helper()
	sq, err := store.OpenSQLite(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	var ops []store.Op
	for i := range n {
		ops = append(ops, store.Op{Insert: &store.Record{ID: fmt.Sprint(tenant, provider, typ, status, age, i), Tenant: tenant, Provider: provider, Country: "US",
			MessageType: typ, Status: status, CreatedAt: time.Now().Add(-age), UpdatedAt: time.Now()}})
	}
	if _, err := sq.Apply(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
}

// TestRouteDemotesAsServeWould: smsgate route demotes by the rules a running gateway applies:
// messages without a report count only against a provider that asks for reports (a mock never
// does; an Infobip provider does when the gateway has a public URL), a rate at min_rate is no
// demotion, and the rate shown is the tenants' (their weighted median), the one that demotes.
func TestRouteDemotesAsServeWould(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "log.db")
	cfg := filepath.Join(dir, "c.yaml")
	// config writes a route of p1 (a mock) and p2 (Infobip) for tenants a and b, on the server
	// settings given.
	config := func(server string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte("server: {"+server+"}\nstorage: {path: "+db+"}\ntenants: [{name: a, api_key: key-a-0123456789}, {name: b, api_key: key-b-0123456789}]\n"+
			"providers:\n  - {name: p1, type: mock}\n  - {name: p2, type: infobip, base_url: \"https://example.api.infobip.com\", api_key: ib-key, webhook_secret: s3cret-for-reports}\n"+
			"routes: [{name: d, providers: [p1, p2]}]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	demoted := func() []app.Demotion {
		t.Helper()
		code, out, errs := runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+14155550104", "--json")
		var ex Explanation
		if err := json.Unmarshal([]byte(out), &ex); code != 0 || err != nil {
			t.Fatalf("route --json: %d %v %s", code, err, errs)
		}
		return ex.Demoted
	}
	config(`public_url: "https://sms.example.com"`)
	// 25 messages each, sent 15 minutes ago (past report_timeout) and never reported.
	logRecords(t, db, "a", "p1", "sms", gateway.StatusSent, 25, 15*time.Minute)
	logRecords(t, db, "a", "p2", "sms", gateway.StatusSent, 25, 15*time.Minute)
	if diff := cmp.Diff([]app.Demotion{{Provider: "p2", Samples: 25}}, demoted()); diff != "" {
		t.Errorf("unreported messages, with a public URL (-want +got):\n%s", diff)
	}
	config("")
	if got := demoted(); len(got) != 0 {
		t.Errorf("unreported messages, without a public URL: %+v demoted, want none (no report could come)", got)
	}

	// p1: 18 of 25 delivered, 0.72 against min_rate 0.7; a log of its own from here on.
	db = filepath.Join(dir, "log2.db")
	config("")
	logRecords(t, db, "a", "p1", "sms", gateway.StatusDelivered, 18, time.Minute)
	logRecords(t, db, "a", "p1", "sms", gateway.StatusUndelivered, 7, time.Minute)
	if got := demoted(); len(got) != 0 {
		t.Errorf("a rate of 0.72: %+v demoted, want none", got)
	}
	// p2: tenant a's 20 messages none delivered, b's 8 half: 4 of 28 delivered (0.14), but the
	// tenants' median is a's 0, which demotes and is shown.
	logRecords(t, db, "a", "p2", "sms", gateway.StatusUndelivered, 20, time.Minute)
	logRecords(t, db, "b", "p2", "sms", gateway.StatusDelivered, 4, time.Minute)
	logRecords(t, db, "b", "p2", "sms", gateway.StatusUndelivered, 4, time.Minute)
	if diff := cmp.Diff([]app.Demotion{{Provider: "p2", Rate: 0, Samples: 28}}, demoted()); diff != "" {
		t.Errorf("two tenants (-want +got):\n%s", diff)
	}
}

// TestRouteShowsPrices: for a least_cost route smsgate route shows each provider's price, its
// rank and why, with reported prices from the message log replacing the configured ones.
func TestRouteShowsPrices(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "log.db")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("storage: {path: "+db+"}\ntenants: [{name: a, api_key: k}]\n"+
		"routing: {least_cost: {min_reports: 5}}\n"+
		"providers: [{name: p1, type: mock, prices: {countries: {GB: 0.04}}}, {name: p2, type: mock, prices: {countries: {GB: 0.01}}}, {name: p3, type: mock}]\n"+
		"routes: [{name: d, strategy: least_cost, providers: [p1, p2, p3]}]\n"), 0o600)
	code, out, errs := runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+447400100001")
	if code != 0 || !strings.Contains(out, "strategy least_cost") || !strings.Contains(out, "1. p2\n       0.0100 EUR (configured); rank 1 of 2") ||
		!strings.Contains(out, "2. p1") || !strings.Contains(out, "3. p3\n       no price; no price for GB") {
		t.Fatalf("configured prices: %d\n%s\n%s", code, out, errs)
	}
	sq, err := store.OpenSQLite(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ops []store.Op
	for i := range 5 {
		ops = append(ops, store.Op{Insert: &store.Record{ID: fmt.Sprint("m", i), Tenant: "a", Provider: "p2", Country: "GB", Status: gateway.StatusDelivered,
			Price: 0.06, Currency: "EUR", CreatedAt: time.Now().Add(-time.Minute), UpdatedAt: time.Now()}})
	}
	if _, err := sq.Apply(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	sq.Close()
	code, out, errs = runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+447400100001")
	if code != 0 || !strings.Contains(out, "1. p1\n       0.0400 EUR (configured); rank 1 of 2") || !strings.Contains(out, "2. p2\n       0.0600 EUR (reported); rank 2 of 2") {
		t.Errorf("reported prices: %d\n%s\n%s", code, out, errs)
	}
}

// TestValidateWarnsOfCallsWithoutVoicePrices: a spend limit with providers that can call but no
// voice_prices counts each call at an SMS price; validate says so, and says nothing once a
// provider has them.
func TestValidateWarnsOfCallsWithoutVoicePrices(t *testing.T) {
	const cfg = `tenants: [{name: a, api_key: k1, rate_limits: {spend: 5/24h}}, {name: b, api_key: k2}]
providers: [{name: m, type: mock, prices: {default: 0.05}%s}, {name: m2, type: mock, prices: {default: 0.04}}]
routes: [{name: d, providers: [m, m2]}]
`
	// One provider's voice_prices are enough: a call priced nowhere then counts at the highest
	// price of either kind, a voice price.
	warnsOnlyWithout(t, cfg, ":1: tenants[0].rate_limits.spend: providers can send voice, but none has voice_prices", ", voice_prices: {default: 0.3}")
	// Providers that cannot call need no voice prices.
	smsOnly := strings.ReplaceAll(fmt.Sprintf(cfg, ""), "prices: {default:", "types: [sms], prices: {default:")
	if path, _, errs := validWarnings(t, smsOnly); len(warnedAt(errs, path, "voice_prices")) > 0 {
		t.Errorf("warned of SMS-only providers:\n%s", errs)
	}
}

// warnsOnlyWithout validates cfg with "" and then with fix in its %s: the first is valid with the
// warning (FILE+want), the second is valid without it.
func warnsOnlyWithout(t *testing.T, cfg, want, fix string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	for _, extra := range []string{"", fix} {
		os.WriteFile(path, []byte(fmt.Sprintf(cfg, extra)), 0o600)
		code, out, errs := runCmd("validate", "-c", path)
		warned := strings.Contains(errs, path+want)
		if code != 0 || !strings.Contains(out, "configuration is valid") || warned != (extra == "") {
			t.Errorf("with %q: exit %d, warned %v\n%s", extra, code, warned, errs)
		}
	}
}

// validWarnings writes cfg to a file and runs smsgate validate on it, which must find it valid;
// it returns the file's path and what validate wrote: out, and its warnings on stderr.
func validWarnings(t *testing.T, cfg string) (path, out, errs string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	code, out, errs := runCmd("validate", "-c", path)
	if code != 0 || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	return path, out, errs
}

// warnedAt is where each of validate's warnings about path that holds marker points: "LINE: key".
func warnedAt(errs, path, marker string) []string {
	var at []string
	for _, l := range strings.Split(errs, "\n") {
		if strings.Contains(l, marker) {
			f := strings.SplitN(strings.TrimPrefix(l, "warning: "+path+":"), ": ", 3)
			at = append(at, f[0]+": "+f[1])
		}
	}
	return at
}

// TestValidateWarnsOfGuessableKeys: an API key, admin token or provider's webhook secret shorter
// than 16 characters is named by its place, never by its value; long ones are not.
func TestValidateWarnsOfGuessableKeys(t *testing.T) {
	const cfg = `server: {admin_token: adm1n, previous_admin_tokens: [old-admin-token-0123, 0ldadm]}
tenants:
  - {name: a, api_key: sh0rt, previous_api_keys: [0123456789abcdef, t1ny]}
  - {name: b, api_key: b-key-long-enough-0123}
providers:
  - {name: m, type: mock}
  - {name: ib, type: infobip, api_key: k, base_url: "https://x.api.infobip.com", webhook_secret: h00k, previous_webhook_secrets: [old-hook-secret-0123, 0ld]}
  - {name: eum, type: aws-sms-voice, region: eu-west-1, origination_identity: "+14155550000", webhook_secret: sns-hook-secret-0123}
  - {name: mi, type: mitto, api_key: k, from: smsgate, webhook_secret: m1tto}
  - {name: ib2, type: infobip, api_key: k, base_url: "https://y.api.infobip.com"}
routes: [{name: d, providers: [m]}]
`
	// (ib2 asks for no reports: a secret left out is not a weak one.)
	path, out, errs := validWarnings(t, cfg)
	weak := warnedAt(errs, path, "shorter than 16 characters")
	want := []string{"1: server.admin_token", "1: server.previous_admin_tokens[1]", "3: tenants[0].api_key", "3: tenants[0].previous_api_keys[1]",
		"7: providers[1].webhook_secret", "7: providers[1].previous_webhook_secrets[1]", "9: providers[3].webhook_secret"}
	if diff := cmp.Diff(want, weak); diff != "" {
		t.Errorf("warned of (-want +got):\n%s\n%s", diff, errs)
	}
	for _, secret := range []string{"adm1n", "0ldadm", "sh0rt", "t1ny", "h00k", "0ld", "m1tto"} {
		if strings.Contains(errs+out, secret) {
			t.Errorf("the warning shows %q", secret)
		}
	}
}

// TestValidateWarnsOfMetricsWhereTenantsReachThem: a gateway reachable from outside (public_url)
// with GET /metrics on its API listener shows every tenant's figures to anyone; metrics_listen
// ends the warning.
func TestValidateWarnsOfMetricsWhereTenantsReachThem(t *testing.T) {
	const cfg = `server: {public_url: "https://sms.example.com"%s}
tenants: [{name: a, api_key: a-key-long-enough-0123}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`
	warnsOnlyWithout(t, cfg, ":1: server.public_url: GET /metrics is served on server.listen, which tenants reach", ", metrics_listen: 0.0.0.0:9464")
	// Nor is a gateway that nobody outside reaches (no public_url) warned of.
	path, _, errs := validWarnings(t, fmt.Sprintf(strings.Replace(cfg, `public_url: "https://sms.example.com"`, `listen: "127.0.0.1:8080"`, 1), ""))
	if at := warnedAt(errs, path, "GET /metrics"); len(at) > 0 {
		t.Errorf("warned without public_url: %v", at)
	}
}

// TestValidateWarnsOfNarrowPumpingRanges: ranges of 4 or more national digits are about as
// narrow as numbers, and their counters are kept for the baseline; validate says so while any
// tenant has detection on, and stays quiet at 3 digits or with detection off for every tenant.
func TestValidateWarnsOfNarrowPumpingRanges(t *testing.T) {
	const cfg = `policy:
  pumping: {range_digits: %s, enabled: %s}
tenants: [{name: a, api_key: a-key-long-enough-0123}, {name: b, api_key: b-key-long-enough-0123, pumping: {enabled: %s}}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`
	path := filepath.Join(t.TempDir(), "c.yaml")
	for _, c := range []struct {
		digits, global, b string
		warned            bool
	}{{"4", "true", "true", true}, {"6", "false", "true", true}, {"3", "true", "true", false}, {"5", "false", "false", false}} {
		os.WriteFile(path, []byte(fmt.Sprintf(cfg, c.digits, c.global, c.b)), 0o600)
		code, out, errs := runCmd("validate", "-c", path)
		want := path + ":2: policy.pumping.range_digits: " + c.digits + " digits make nearly every number a range of its own: each range's counters are kept for the baseline and two hours (170h)"
		if code != 0 || !strings.Contains(out, "configuration is valid") || strings.Contains(errs, want) != c.warned {
			t.Errorf("%+v: exit %d\n%s", c, code, errs)
		}
	}
}

// TestValidateWarnsOfARetentionShorterThanItsReaders: a message log kept shorter than delivery
// health's window, or than least-cost prices' window while a route uses least_cost, is read
// short without an error; validate says so, and stays quiet when the reader is off or the log
// is kept long enough (or forever).
func TestValidateWarnsOfARetentionShorterThanItsReaders(t *testing.T) {
	const cfg = `storage: {retention: %s}
routing: {delivery_health: {enabled: %s}}
tenants: [{name: a, api_key: a-key-long-enough-0123}]
providers: [{name: m, type: mock, prices: {default: 0.01}}]
routes: [{name: d, strategy: %s, providers: [m]}]
`
	path := filepath.Join(t.TempDir(), "c.yaml")
	health := ":1: storage.retention: 10m0s keeps less of the message log than routing.delivery_health.window (30m0s) reads"
	prices := ":1: storage.retention: %s keeps less of the message log than routing.least_cost.window (24h0m0s) reads"
	for _, c := range []struct {
		retention, health, strategy string
		want                        []string
		not                         []string
	}{
		{"10m", "true", "ordered", []string{health}, []string{"least_cost.window"}},
		{"10m", "false", "ordered", nil, []string{"storage.retention"}},
		{"10m", "false", "least_cost", []string{fmt.Sprintf(prices, "10m0s")}, []string{"delivery_health.window"}},
		{"12h", "true", "least_cost", []string{fmt.Sprintf(prices, "12h0m0s")}, []string{"delivery_health.window"}},
		{"0s", "true", "least_cost", nil, []string{"storage.retention"}},
		{"24h", "true", "least_cost", nil, []string{"storage.retention"}}, // as long as the window: enough
		{"720h", "true", "least_cost", nil, []string{"storage.retention"}},
	} {
		os.WriteFile(path, []byte(fmt.Sprintf(cfg, c.retention, c.health, c.strategy)), 0o600)
		code, out, errs := runCmd("validate", "-c", path)
		if code != 0 || !strings.Contains(out, "configuration is valid") {
			t.Fatalf("%+v: exit %d\n%s", c, code, errs)
		}
		for _, w := range c.want {
			if !strings.Contains(errs, path+w) {
				t.Errorf("%+v: no warning %q:\n%s", c, w, errs)
			}
		}
		for _, w := range c.not {
			if strings.Contains(errs, w) {
				t.Errorf("%+v: a warning of %s:\n%s", c, w, errs)
			}
		}
	}
}

// TestValidateWarnsOfTenantsUnboundedInRedis: with Redis, a tenant without per_tenant has nothing
// bounding what it keeps in the store every replica shares.
func TestValidateWarnsOfTenantsUnboundedInRedis(t *testing.T) {
	const cfg = `state: {driver: redis, key_secret: "validate-key-secret-0123456789"}
policy: {rate_limits: {per_tenant: %s}}
tenants: [{name: a, api_key: k1}, {name: b, api_key: k2, rate_limits: {per_tenant: 0}}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`
	dir := t.TempDir()
	for _, c := range []struct{ global, want string }{{"0", "(a, b)"}, {"50/1s", "(b)"}} {
		path := filepath.Join(dir, "c.yaml")
		os.WriteFile(path, []byte(fmt.Sprintf(cfg, c.global)), 0o600)
		code, out, errs := runCmd("validate", "-c", path)
		if code != 0 || !strings.Contains(out, "configuration is valid") ||
			!strings.Contains(errs, path+":1: state.driver: tenants without rate_limits.per_tenant "+c.want) {
			t.Errorf("per_tenant %s: exit %d\n%s", c.global, code, errs)
		}
	}
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(strings.Replace(fmt.Sprintf(cfg, "50/1s"), "{name: b, api_key: k2, rate_limits: {per_tenant: 0}}", "{name: b, api_key: k2}", 1)), 0o600)
	if _, _, errs := runCmd("validate", "-c", filepath.Join(dir, "c.yaml")); strings.Contains(errs, "per_tenant") {
		t.Errorf("warned although every tenant has a per_tenant limit:\n%s", errs)
	}
	// In memory, each replica's state is its own: a tenant without per_tenant is not warned of.
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(strings.Replace(fmt.Sprintf(cfg, "0"), "driver: redis", "driver: memory", 1)), 0o600)
	if code, _, errs := runCmd("validate", "-c", filepath.Join(dir, "c.yaml")); code != 0 || strings.Contains(errs, "per_tenant") {
		t.Errorf("state.driver memory: exit %d\n%s", code, errs)
	}
}

// TestValidateWarnsOfTenantsThatMayNameAnySender: allow_sender without allowed_senders lets a
// tenant send as another tenant's brand from the accounts they share; validate names the key, and
// a tenant held to its own senders is not named.
func TestValidateWarnsOfTenantsThatMayNameAnySender(t *testing.T) {
	const cfg = `tenants:
  - {name: a, api_key: a-key-long-enough-0123}
  - {name: any, api_key: b-key-long-enough-0123, allow_sender: true}
  - {name: own, api_key: c-key-long-enough-0123, allow_sender: true, allowed_senders: [OWN]}
  - {name: listed, api_key: d-key-long-enough-0123, allowed_senders: [LISTED]}
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`
	path, _, errs := validWarnings(t, cfg)
	if diff := cmp.Diff([]string{"3: tenants[1].allow_sender"}, warnedAt(errs, path, "may send as any sender")); diff != "" {
		t.Errorf("warned of (-want +got):\n%s\n%s", diff, errs)
	}
}

// TestValidateWarnsOfClientIDsAnyTenantMayName: with several tenants, a route by a client id that
// no tenant declares and without match.tenants can be taken by any tenant naming that id; a route
// whose tenants do not own a declared client id never matches by it. validate names file, line and
// key; a declared client id, or a route scoped to tenants, is not named.
func TestValidateWarnsOfClientIDsAnyTenantMayName(t *testing.T) {
	const cfg = `tenants:
  - {name: acme, api_key: a-key-long-enough-0123, client_ids: [acme-app]}
  - {name: beta, api_key: b-key-long-enough-0123}
providers: [{name: m, type: mock}, {name: acme-account, type: mock}]
routes:
  - {name: acme, match: {client_ids: [acme-app, acme-web]}, providers: [acme-account]}
  - {name: beta, match: {tenants: [beta], client_ids: [beta-app, acme-app]}, providers: [m]}
  - {name: d, providers: [m]}
`
	path, _, errs := validWarnings(t, cfg)
	if diff := cmp.Diff([]string{"6: routes[0].match.client_ids[1]"}, warnedAt(errs, path, "any tenant's request may name it")); diff != "" {
		t.Errorf("warned of (-want +got):\n%s\n%s", diff, errs)
	}
	if diff := cmp.Diff([]string{"7: routes[1].match.client_ids[1]"}, warnedAt(errs, path, "never matches by this client id")); diff != "" {
		t.Errorf("warned of (-want +got):\n%s\n%s", diff, errs)
	}
	one := strings.Replace(cfg, "  - {name: beta, api_key: b-key-long-enough-0123}\n", "", 1)
	one = strings.Replace(one, "tenants: [beta], ", "", 1)
	if _, _, errs := validWarnings(t, one); strings.Contains(errs, "client id") {
		t.Errorf("one tenant: no other tenant can take its routes, yet warned:\n%s", errs)
	}
}

// TestValidateWarnsOfAllowedURLShorteners: a URL shortener among allowed_link_hosts lets a link
// to anywhere through; validate names the file, line and key, and not the tenant's own host.
func TestValidateWarnsOfAllowedURLShorteners(t *testing.T) {
	const cfg = `policy: {allowed_link_hosts: [help.example.com, Bit.ly]}
tenants:
  - {name: a, api_key: a-key-long-enough-0123, allowed_link_hosts: [a.example.com, tinyurl.com]}
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`
	path, _, errs := validWarnings(t, cfg)
	want := []string{"1: policy.allowed_link_hosts[1]", "3: tenants[0].allowed_link_hosts[1]"}
	if diff := cmp.Diff(want, warnedAt(errs, path, "is a URL shortener")); diff != "" {
		t.Errorf("warned of (-want +got):\n%s\n%s", diff, errs)
	}
}

// TestValidateWarnsOfActionsAuth0DoesNotSend: a route rule with a misspelt action matches nothing
// Auth0 sends; validate names the file, line and key, and stays quiet for the actions Auth0 does send.
func TestValidateWarnsOfActionsAuth0DoesNotSend(t *testing.T) {
	const cfg = `tenants: [{name: a, api_key: k1}]
providers: [{name: m, type: mock}]
routes:
  - {name: enrol, match: {actions: [%s]}, providers: [m]}
  - {name: d, providers: [m]}
`
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(cfg, "second-factor-authentication, enrolment")), 0o600)
	code, out, errs := runCmd("validate", "-c", path)
	if code != 0 || !strings.Contains(out, "configuration is valid") ||
		!strings.Contains(errs, path+`:4: routes[0].match.actions[1]: "enrolment" is no action Auth0 sends`) {
		t.Errorf("exit %d\n%s", code, errs)
	}
	os.WriteFile(path, []byte(fmt.Sprintf(cfg, "enrollment, authentication, second-factor-authentication, blocked_account, change_password, password_breach")), 0o600)
	if _, _, errs := runCmd("validate", "-c", path); strings.Contains(errs, "no action") {
		t.Errorf("warned of an action Auth0 sends:\n%s", errs)
	}
}

// TestValidateWarnsOfAnEmptyList: countries: [] (what a template writes for no values) in a
// route's match narrows nothing, and allowed_countries: [] allows every country; validate names
// each such key, and none of a list that holds values or a key left out. A match block whose lists
// are all empty is refused (config's TestInvalidConfigs).
func TestValidateWarnsOfAnEmptyList(t *testing.T) {
	const cfg = `policy: {allowed_countries: []}
tenants: [{name: a, api_key: k1, allowed_countries: []}, {name: b, api_key: k2, allowed_countries: [GB]}, {name: c, api_key: k3, allowed_countries: null}]
providers: [{name: m, type: mock}]
routes:
  - {name: a-only, match: {tenants: [a], countries: [], languages: []}, providers: [m]}
  - {name: gb, match: {countries: [GB], actions: null}, providers: [m]}
  - {name: d, providers: [m]}
`
	path, _, errs := validWarnings(t, cfg)
	want := []string{"5: routes[0].match.countries", "5: routes[0].match.languages"}
	if diff := cmp.Diff(want, warnedAt(errs, path, "an empty list matches every value")); diff != "" {
		t.Errorf("warned of (-want +got):\n%s\n%s", diff, errs)
	}
	want = []string{"1: policy.allowed_countries", "2: tenants[0].allowed_countries"}
	if diff := cmp.Diff(want, warnedAt(errs, path, "an empty list allows every destination country")); diff != "" {
		t.Errorf("warned of (-want +got):\n%s\n%s", diff, errs)
	}
	if !strings.Contains(errs, `route "a-only" is not narrowed by countries`) {
		t.Errorf("the warning does not name the route and key:\n%s", errs)
	}
}

// TestValidateWarnsOfReportsWithNowhereToGo: providers that take delivery reports, and no
// server.public_url to give them a callback URL under; or a public URL and no webhook secret.
func TestValidateWarnsOfReportsWithNowhereToGo(t *testing.T) {
	const cfg = `%stenants: [{name: a, api_key: k1}]
providers:
  - {name: m, type: mock}
  - {name: ib, type: infobip, base_url: "https://api.example.com", api_key: x, webhook_secret: y}
  - {name: mi, type: mitto, api_key: k, from: smsgate, webhook_secret: mitto-hook-secret-0123}
routes: [{name: d, providers: [m, ib]}]
`
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(cfg, "")), 0o600)
	code, out, errs := runCmd("validate", "-c", path)
	if code != 0 || !strings.Contains(out, "configuration is valid") ||
		!strings.Contains(errs, path+":4: providers[1]: providers take delivery reports (ib, mi), but server.public_url is empty") {
		t.Errorf("exit %d\n%s", code, errs)
	}
	os.WriteFile(path, []byte(fmt.Sprintf(cfg, "server: {public_url: \"https://sms.example.com\", metrics_listen: \"127.0.0.1:9464\"}\n")), 0o600)
	if _, _, errs := runCmd("validate", "-c", path); strings.Contains(errs, "public_url") || strings.Contains(errs, "no delivery reports") {
		t.Errorf("warned with a public_url and a webhook secret:\n%s", errs)
	}
	// A public URL, but no webhook_secret to put in the callback URL: no report is asked for.
	os.WriteFile(path, []byte(strings.Replace(fmt.Sprintf(cfg, "server: {public_url: \"https://sms.example.com\", metrics_listen: \"127.0.0.1:9464\"}\n"), ", webhook_secret: y", "", 1)), 0o600)
	if _, _, errs := runCmd("validate", "-c", path); !strings.Contains(errs, path+":5: providers[1]: ib is asked for no delivery reports") {
		t.Errorf("no warning without a webhook secret:\n%s", errs)
	}
}

// TestMigrateAppliesAndRouteDoesNot: smsgate migrate applies the message log's migrations and
// says at which version the log is; smsgate route, which only reads, leaves a log that lacks
// some as it is (it says so and routes without delivery health) instead of changing the schema
// under the replicas of the build that runs on it.
func TestMigrateAppliesAndRouteDoesNot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "log.db")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("storage: {path: "+db+"}\ntenants: [{name: a, api_key: k}]\nproviders: [{name: p1, type: mock}]\nroutes: [{name: d, providers: [p1]}]\n"), 0o600)
	code, out, errs := runCmd("migrate", "-c", cfg)
	sq, err := store.OpenSQLite(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	known, _ := sq.SchemaVersion(ctx)
	if want := fmt.Sprintf("message log at schema version %d\n", known); code != 0 || out != want {
		t.Fatalf("migrate: %d %q %s, want %q", code, out, errs, want)
	}
	// The log of the build before migration 6.
	sq.Close()
	raw, err := sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	version := func() int {
		t.Helper()
		var v int
		if err := raw.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if _, err := raw.ExecContext(ctx, `DROP INDEX messages_bulk; DROP INDEX messages_reference; DROP INDEX messages_unpulled; ALTER TABLE messages DROP COLUMN parts;
		CREATE INDEX messages_untaken ON messages(tenant, created_at) WHERE source != '' AND report_taken = 0;
		UPDATE schema_version SET version = 5`); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd("route", "-c", cfg, "--tenant", "a", "--to", "+14155550104")
	if code != 0 || !strings.Contains(out, "1. p1") || !strings.Contains(errs, "schema version 5, this build knows") || !strings.Contains(errs, "smsgate migrate applies them") {
		t.Errorf("route on a log that lacks migrations: %d\n%s\n%s", code, out, errs)
	}
	if v := version(); v != 5 {
		t.Errorf("route migrated the log to %d", v)
	}
	if code, out, errs := runCmd("migrate", "-c", cfg); code != 0 || version() != known {
		t.Errorf("migrate from 5: %d %s %s; version %d, want %d", code, out, errs, version(), known)
	}
	// A newer build's log (a rollback): said, and nothing applied.
	if _, err := raw.ExecContext(ctx, fmt.Sprintf(`UPDATE schema_version SET version = %d; UPDATE schema_compat SET requires = 1`, known+1)); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("message log at schema version %d, newer than this build knows (%d), which may run on it; nothing applied\n", known+1, known)
	if code, out, errs := runCmd("migrate", "-c", cfg); code != 0 || out != want || version() != known+1 {
		t.Errorf("migrate on a newer log: %d %q %s, want %q", code, out, errs, want)
	}
	os.WriteFile(cfg, []byte("storage: {driver: memory}\ntenants: [{name: a, api_key: k}]\nproviders: [{name: p1, type: mock}]\nroutes: [{name: d, providers: [p1]}]\n"), 0o600)
	if code, out, _ := runCmd("migrate", "-c", cfg); code != 0 || !strings.Contains(out, "nothing to migrate") {
		t.Errorf("migrate with storage.driver memory: %d %s", code, out)
	}
	if code, _, errs := runCmd("migrate"); code != 2 || !strings.Contains(errs, "--config FILE is required") {
		t.Errorf("migrate without a config: %d %s", code, errs)
	}
}

// TestMigrateOnPostgres: smsgate migrate applies a PostgreSQL log's migrations, and a second run
// finds nothing to apply.
func TestMigrateOnPostgres(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	dsn := pgtest.DSN(t)
	os.WriteFile(cfg, []byte(fmt.Sprintf("storage: {driver: postgres, dsn: %q}\ntenants: [{name: a, api_key: k}]\nproviders: [{name: p1, type: mock}]\nroutes: [{name: d, providers: [p1]}]\n", dsn)), 0o600)
	for run := 1; run <= 2; run++ {
		code, out, errs := runCmd("migrate", "-c", cfg)
		p, err := store.OpenPostgresAsIs(context.Background(), dsn)
		if err != nil {
			t.Fatalf("run %d: the log is not fully migrated: %v (%d %s %s)", run, err, code, out, errs)
		}
		v, _ := p.SchemaVersion(context.Background())
		p.Close()
		if want := fmt.Sprintf("message log at schema version %d\n", v); code != 0 || out != want {
			t.Errorf("run %d: %d %q %s, want %q", run, code, out, errs, want)
		}
	}
}

// downLog is a message log whose database refuses every batch, as during an outage.
type downLog struct{ store.Backend }

func (downLog) Apply(context.Context, []store.Op) ([]store.Charge, error) {
	return nil, errors.New("database down")
}

// TestSpoolWritesWhatAReplicaLeft: smsgate spool writes the records a stopped replica left in its
// spool (a volume no replica will start on again) into the message log, and empties the spool; a
// database it cannot open, or a spool a running replica holds, leaves the spool as it was.
func TestSpoolWritesWhatAReplicaLeft(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	spoolDir, db := filepath.Join(dir, "spool"), filepath.Join(dir, "log.db")
	// A replica during an outage: three sends answered, their records spooled, then it stops.
	sp, err := store.OpenSpool(spoolDir)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{Backend: downLog{store.NewMemory()}, Spool: sp, CommitTimeout: 20 * time.Millisecond, CloseTimeout: 50 * time.Millisecond})
	now := time.Now().UTC().Truncate(time.Millisecond)
	ids := []string{"msg_1", "msg_2", "msg_3"}
	for _, id := range ids {
		r := &store.Record{ID: id, Tenant: "a", Route: "d", MessageType: "sms", Country: "US", Recipient: "+1415*****04", Status: "sent", Provider: "p1", CreatedAt: now, UpdatedAt: now}
		if err := st.Insert(ctx, r); !errors.Is(err, store.ErrNotCommitted) {
			t.Fatalf("insert during the outage: %v", err)
		}
	}
	st.Close()

	conf := func(path string) string {
		t.Helper()
		cfg := filepath.Join(dir, "c.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("storage: {path: %q, spool_dir: %q}\ntenants: [{name: a, api_key: k}]\nproviders: [{name: p1, type: mock}]\nroutes: [{name: d, providers: [p1]}]\n", path, spoolDir)), 0o600)
		return cfg
	}
	held := func() int {
		t.Helper()
		sp, err := store.OpenSpool(spoolDir)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		return sp.Recovered()
	}
	if n := held(); n != 3 {
		t.Fatalf("the replica left %d writes in its spool, want 3", n)
	}

	// A database that cannot be opened: nothing is lost.
	os.WriteFile(filepath.Join(dir, "not-a-dir"), nil, 0o600) // a file where the log's directory would be
	code, out, errs := runCmd("spool", "-c", conf(filepath.Join(dir, "not-a-dir", "log.db")), "--timeout", "1s")
	if code != 1 || !strings.Contains(errs, "smsgate spool:") || held() != 3 {
		t.Errorf("with a log that cannot be opened: %d %q %q, %d writes left, want exit 1 and all 3 kept", code, out, errs, held())
	}
	// A spool a running replica holds is not touched.
	running, err := store.OpenSpool(spoolDir)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCmd("spool", "-c", conf(db))
	running.Close()
	if code != 1 || !strings.Contains(errs, "in use by another process") || held() != 3 {
		t.Errorf("with the spool held by a replica: %d %q, %d writes left", code, errs, held())
	}

	// A database that opens but refuses a write (here a trigger; in production a full disk or a
	// constraint): what it refused stays in the spool, and the tool says so and exits 1.
	if code, out, errs := runCmd("migrate", "-c", conf(db)); code != 0 {
		t.Fatalf("migrate: %d %q %s", code, out, errs)
	}
	raw, err := sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd("spool", "-c", conf(db), "--timeout", "300ms")
	if code != 1 || out != "" || !strings.Contains(errs, "smsgate spool: 0 of 3 writes written; the database refused the other 3, which stay in the spool (run it again)\n") || held() != 3 {
		t.Errorf("with a database refusing the writes: %d %q %q, %d writes left, want exit 1 and all 3 kept", code, out, errs, held())
	}

	// A database that comes back within --timeout: the tool keeps trying until it takes the writes.
	dropped := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, err := raw.Exec(`DROP TRIGGER refuse`)
		dropped <- err
	}()
	code, out, errs = runCmd("spool", "-c", conf(db), "--timeout", "20s")
	if err := <-dropped; err != nil {
		t.Fatal(err)
	}
	if code != 0 || out != "3 writes written into the message log; the spool is empty\n" {
		t.Fatalf("spool with a database back 300 ms into its 20 s: %d %q %s", code, out, errs)
	}
	if n := held(); n != 0 {
		t.Errorf("the spool still holds %d writes", n)
	}
	sq, err := store.OpenSQLite(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	for _, id := range ids {
		if r, err := sq.Get(ctx, "a", id); err != nil || r.Status != "sent" || r.Recipient != "+1415*****04" {
			t.Errorf("record %s in the log: %+v %v", id, r, err)
		}
	}
	if code, out, _ := runCmd("spool", "-c", conf(db)); code != 0 || out != "the spool holds no writes\n" {
		t.Errorf("spool again: %d %q", code, out)
	}
	// An empty spool leaves the database alone: nothing is opened or migrated.
	unopened := filepath.Join(dir, "never.db")
	if code, out, _ := runCmd("spool", "-c", conf(unopened)); code != 0 || out != "the spool holds no writes\n" {
		t.Errorf("spool with an empty spool: %d %q", code, out)
	}
	if _, err := os.Stat(unopened); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an empty spool opened the message log: %v", err)
	}
	// Without a database (storage.driver memory) there is nowhere to write a spool.
	mem := filepath.Join(dir, "mem.yaml")
	os.WriteFile(mem, []byte("storage: {driver: memory}\ntenants: [{name: a, api_key: k}]\nproviders: [{name: p1, type: mock}]\nroutes: [{name: d, providers: [p1]}]\n"), 0o600)
	if code, _, errs := runCmd("spool", "-c", mem, "--dir", spoolDir); code != 1 || !strings.Contains(errs, "storage.driver is memory: there is no database to write the spool into") {
		t.Errorf("spool with storage.driver memory: %d %q", code, errs)
	}
}

// TestValidateWithoutSecrets: --without-secrets checks a config where the replicas' environment
// and secret files are not (a CI job): no reference is read, the keys holding one are not judged,
// and every other problem is still found, a reference a team's file may not hold among them.
func TestValidateWithoutSecrets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "smsgate.yaml")
	src := `server: {admin_token: "${SMSGATE_SURELY_UNSET_ADMIN}", public_url: "${SMSGATE_SURELY_UNSET_URL}", metrics_listen: "127.0.0.1:9464"}
policy: {rate_limits: {per_tenant: 100/1m}}
storage: {driver: postgres, dsn: "${SMSGATE_SURELY_UNSET_DSN}"}
state: {driver: redis, key_secret: "${file:/surely/absent/key-secret}", redis: {addr: "${SMSGATE_SURELY_UNSET_ADDR}"}}
tenant_files: [{path: "teams/*.yaml", names: "pay*", secret_files: "keys/*"}]
tenants: [{name: a, api_key: "${file:keys/a}"}]
providers:
  - {name: tw, type: twilio, account_sid: "${SMSGATE_SURELY_UNSET_SID}", auth_token: "${SMSGATE_SURELY_UNSET_TOKEN}", from: "+14155550100"}
routes:
  - {name: odd, match: {actions: ["${SMSGATE_SURELY_UNSET_ACTION}"]}, providers: [tw]}
  - {name: d, providers: [tw]}
`
	if err := os.WriteFile(path, []byte(strings.Replace(src, "server:", "server: {request_timout: 3s}\nx_server:", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "teams"), 0o700); err != nil {
		t.Fatal(err)
	}
	team := filepath.Join(dir, "teams", "pay.yaml")
	if err := os.WriteFile(team, []byte("tenants:\n  - {name: pay, api_key: \"${SMSGATE_SURELY_UNSET_PAY}\", rate_limits: {per_tenant: 100/1m}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCmd("validate", "--config", path, "--without-secrets")
	for _, want := range []string{
		path + ":1: server.request_timout: unknown key",
		path + ":2: x_server: unknown key",
		team + ":2: tenants[1].api_key: a file of tenant_files[0] (a team's) may not read the environment (${SMSGATE_SURELY_UNSET_PAY})",
		team + ":2: tenants[1].rate_limits: a file of tenant_files[0] (a team's) may not set rate_limits",
		path + ": 4 problem(s)",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if code != 1 || strings.Contains(errs, "is not set") || strings.Contains(errs, "no such file") {
		t.Errorf("exit %d, want 1, and no problem of a reference not read:\n%s", code, errs)
	}

	// Mended, the config is valid but for the keys holding references; read, it is not.
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(team, []byte("tenants:\n  - {name: pay, api_key: \"${file:../keys/pay}\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("validate", "--config", path, "--without-secrets")
	if want := path + ": configuration is valid, but for the 10 key(s) whose values hold a ${NAME} or ${file:PATH}, not read (--without-secrets)"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("exit %d, stdout %q, want 0 and %q\nstderr %s", code, out, want, errs)
	}
	if strings.Contains(errs, "warning") {
		t.Errorf("a warning about a value not read:\n%s", errs)
	}
	if code, _, errs := runCmd("validate", "--config", path); code != 1 || !strings.Contains(errs, "environment variable SMSGATE_SURELY_UNSET_DSN is not set") {
		t.Errorf("read: exit %d, want 1 and the unset variables\n%s", code, errs)
	}
}
