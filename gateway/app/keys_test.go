package app

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/syncbuf"
)

// TestAKeyIsRotatedWithoutAFailedCall: with the new key as api_key and the old one under
// previous_api_keys, both are the tenant's on every API (sends, the Infobip-compatible API, the
// message listing), and calls with the old one are counted; once it is dropped, it is refused.
// With one key per tenant, a rotation had a moment between the reload and the callers' switch in
// which every login failed.
func TestAKeyIsRotatedWithoutAFailedCall(t *testing.T) {
	t.Parallel()
	c := startCompat(t)
	raw, reload := reloader(t, c.app, c.path)
	i := 0
	calls := func(key string) [3]int {
		i++
		return [3]int{
			c.send(key, fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is 1000%02d","message_type":"sms"}}`, i, i)).Status,
			c.call("POST", "/sms/2/text/advanced", "App "+key, fmt.Sprintf(`{"messages":[{"destinations":[{"to":"1415556%04d"}],"text":"Code %d"}]}`, i, i)).Status,
			c.do("GET", "/v1/messages?limit=1", key, "").Status,
		}
	}
	ok, refused := [3]int{200, 200, 200}, [3]int{401, 401, 401}
	previous := func() int { return int(testutil.ToFloat64(c.app.metrics.PreviousKeys.WithLabelValues("acme"))) }

	reload(strings.Replace(string(raw), "api_key: acme-ib-key", `api_key: acme-new-key, previous_api_keys: ["acme-ib-key"]`, 1))
	rotating(t, calls, previous, ok, 3, "acme-ib-key", "acme-new-key")
	reload(strings.Replace(string(raw), "api_key: acme-ib-key", "api_key: acme-new-key", 1))
	rotated(t, c.app, c.logs, calls, ok, refused, "acme-ib-key", "acme-new-key")
	// A caller left on the dropped key is what SmsgateUnknownAPIKey watches for (operations.md's
	// runbook): its sends are counted under no tenant, on both send APIs. The listing is no send.
	if n := testutil.ToFloat64(c.app.metrics.Requests.WithLabelValues("", "", "unauthorized")); n != 2 {
		t.Errorf("%v calls with the dropped key counted as unauthorized sends, want 2 (one per send API)", n)
	}
}

// TestTheAdminTokenIsRotatedWithoutAFailedCall: with the new token as admin_token and the old one
// under previous_admin_tokens, both open the admin endpoints and calls with the old one are
// logged (without the token); once it is dropped, it is refused. A previous token never opens the
// tenants' endpoints (and none is accepted while admin_token is unset: the test below).
func TestTheAdminTokenIsRotatedWithoutAFailedCall(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	raw, reload := reloader(t, h.app, h.path)
	status := func(token string) [2]int {
		return [2]int{h.do("GET", "/v1/providers", token, "").Status, h.do("GET", "/v1/admin/tenants", token, "").Status}
	}
	ok, refused := [2]int{200, 200}, [2]int{401, 401}
	lines := func() int {
		return strings.Count(h.logs.String(), "admin call with one of server.previous_admin_tokens")
	}

	reload(strings.Replace(string(raw), "admin_token: admin-t0ken", `admin_token: admin-n3w-token
  previous_admin_tokens: ["admin-t0ken", "admin-0lder-t0ken"]`, 1))
	rotating(t, status, lines, ok, 2, "admin-t0ken", "admin-n3w-token")
	if got := status("admin-wrong"); got != refused {
		t.Errorf("a wrong token during the rotation: %v", got)
	}
	if n := lines(); n != 2 {
		t.Errorf("calls with a wrong token logged as previous: %d lines", n)
	}
	if got := status("admin-0lder-t0ken"); got != ok { // each of several previous tokens
		t.Errorf("the second of two previous admin tokens: %v", got)
	}
	if r := h.do("GET", "/v1/messages?limit=1", "admin-t0ken", ""); r.Status != 401 {
		t.Errorf("a previous admin token as a tenant's key: %d", r.Status)
	}
	reload(strings.Replace(string(raw), "admin_token: admin-t0ken", "admin_token: admin-n3w-token", 1))
	rotated(t, h.app, h.logs, status, ok, refused, "admin-t0ken", "admin-n3w-token")
}

// TestAdminEndpointsAreClosedWithoutAnAdminToken: with server.admin_token unset the admin
// endpoints answer 404 admin_disabled to every caller: one that sends no Authorization, an empty
// bearer token (which an empty admin token would equal), or any token; no provider is drained.
func TestAdminEndpointsAreClosedWithoutAnAdminToken(t *testing.T) {
	t.Parallel()
	h := start(t, strings.Replace(baseConfig, "  admin_token: admin-t0ken\n", "", 1), Options{})
	calls := [][2]string{{"GET", "/v1/providers"}, {"GET", "/v1/admin/tenants"}, {"POST", "/v1/providers/primary/disable"}, {"POST", "/v1/admin/reload"}}
	for _, auth := range [][]string{nil, {"Authorization", "Bearer "}, {"Authorization", "Bearer admin-t0ken"}} {
		for _, c := range calls {
			if r := h.do(c[0], c[1], "", "", auth...); r.Status != 404 || errCode(r) != "admin_disabled" {
				t.Errorf("%s %s with %q: %d %s, want 404 admin_disabled", c[0], c[1], auth, r.Status, r.Raw)
			}
		}
	}
	if r := h.send("acme-key", `{"message_options":{"recipient":"+14155550104","text":"Your code is 123456"}}`); r.Status != 200 || r.Body["provider"] != "primary" {
		t.Errorf("a send after the calls: %d %s, want 200 through primary (not drained)", r.Status, r.Raw)
	}
}

// reloader returns the config file at path as it is now, and a function that writes another
// config there and reloads a with it.
func reloader(t *testing.T, a *App, path string) ([]byte, func(string)) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw, func(cfg string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := a.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// rotating checks a rotation under way: calls with the old credential and with the new one are
// ok, and the old one's calls alone are noticed (counted or logged: noticed reads how many).
func rotating[T comparable](t *testing.T, calls func(string) T, noticed func() int, ok T, n int, old, new string) {
	t.Helper()
	if got := calls(old); got != ok {
		t.Errorf("the previous %s during the rotation: %v", old, got)
	}
	if got := noticed(); got != n {
		t.Errorf("%d calls noticed with the previous %s, want %d", got, old, n)
	}
	if got := calls(new); got != ok {
		t.Errorf("the new %s during the rotation: %v", new, got)
	}
	if got := noticed(); got != n {
		t.Errorf("calls with the new %s noticed as previous: %d, want %d", new, got, n)
	}
}

// rotated checks the end of a rotation, once the old credential is dropped: calls with it get
// refused, calls with the new one ok, and neither ever reached the log.
func rotated[T comparable](t *testing.T, a *App, logs *syncbuf.Buffer, calls func(string) T, ok, refused T, old, new string) {
	t.Helper()
	if got := calls(old); got != refused {
		t.Errorf("the dropped %s: %v", old, got)
	}
	if got := calls(new); got != ok {
		t.Errorf("the new %s after the rotation: %v", new, got)
	}
	a.Shutdown(context.Background())
	if l := logs.String(); strings.Contains(l, old) || strings.Contains(l, new) {
		t.Error("a credential reached the log")
	}
}

// TestConfigWarningsAreLogged: what `smsgate validate` warns of is logged at start and at each
// reload too, for operators who never ran it; here the guessable keys of the test config, by
// their place and never their value.
func TestConfigWarningsAreLogged(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	want := h.path + ":4: server.admin_token: shorter than 16 characters"
	if n := strings.Count(h.logs.String(), want); n != 1 {
		t.Errorf("%d warnings at start, want 1 of %q:\n%s", n, want, h.logs.String())
	}
	if err := h.app.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(h.logs.String(), want); n != 2 {
		t.Errorf("%d warnings after a reload, want 2", n)
	}
	if strings.Contains(h.logs.String(), "admin-t0ken") || strings.Contains(h.logs.String(), "acme-key") {
		t.Error("a warning shows a key")
	}
}

// TestPreviousWebhookSecretsNeedTheCurrentOne: every driver that keeps previous_webhook_secrets
// refuses them without the webhook_secret they were replaced by, at the key's line (the rule is
// the registry's, not each driver's).
func TestPreviousWebhookSecretsNeedTheCurrentOne(t *testing.T) {
	t.Parallel()
	for typ, opts := range map[string]string{
		"infobip":       `base_url: "https://x.api.infobip.com", api_key: k, sender: InfoSMS`,
		"vonage":        `api_key: k, api_secret: s, from: "+14155550000"`,
		"esendex":       `username: u, password: p, account_reference: EX0000000`,
		"mitto":         `api_key: k, from: Acme`,
		"aws-sms-voice": `region: eu-west-1, origination_identity: "+14155550000"`,
	} {
		t.Run(typ, func(t *testing.T) {
			for _, secrets := range []string{"", "webhook_secret: new-secret-0123456789, "} {
				in := "tenants: [{name: a, api_key: k}]\nroutes: [{name: d, providers: [p]}]\nproviders:\n" +
					"  - {name: p, type: " + typ + ", " + opts + ", " + secrets + "previous_webhook_secrets: [old-secret-0123456789]}\n"
				_, err := config.ParseWith("x.yaml", []byte(in), func(string) (string, bool) { return "", false }, Drivers)
				const want = "x.yaml:4: providers[0].previous_webhook_secrets: needs webhook_secret (the secret they were replaced by)"
				switch {
				case secrets == "" && (err == nil || !strings.Contains(err.Error(), want)):
					t.Errorf("without webhook_secret: %v, want %q", err, want)
				case secrets != "" && err != nil:
					t.Errorf("with webhook_secret: %v", err)
				}
			}
		})
	}
}

// TestCallsWithoutAKeyAreCounted: a send with no bearer key (none at all, or another scheme) is
// refused as missing its key, and counted with the wrong keys, which SmsgateUnknownAPIKey
// watches: a caller that sends its key the wrong way gets no codes either.
func TestCallsWithoutAKeyAreCounted(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	for _, auth := range []string{"", "Basic eDphY21lLWtleQ==", "App acme-key"} {
		r := h.do("POST", "/v1/send-phone-message", "", actionBody, "Authorization", auth)
		if e, _ := r.Body["error"].(map[string]any); r.Status != 401 || e["message"] != httpapi.MissingKey {
			t.Errorf("Authorization %q: %d %s", auth, r.Status, r.Raw)
		}
	}
	if n := testutil.ToFloat64(h.app.metrics.Requests.WithLabelValues("", "", "unauthorized")); n != 3 {
		t.Errorf("%v calls without a key counted, want 3", n)
	}
}

// TestReportSecretsAreFoundInInlineSettings: a driver whose report secrets sit in settings it
// embeds inline (as the AWS drivers embed their Common keys) has them checked like any other's,
// by validate's weak-secret warning and by the rotation problem. No driver keeps them there
// today; one that does must not escape both checks.
func TestReportSecretsAreFoundInInlineSettings(t *testing.T) {
	t.Parallel()
	type Shared struct {
		WebhookSecret          gateway.Secret   `yaml:"webhook_secret"`
		PreviousWebhookSecrets []gateway.Secret `yaml:"previous_webhook_secrets"`
	}
	type settings struct {
		Region string `yaml:"region"`
		Shared `yaml:",inline"`
	}
	var got []string
	reportSecrets(&settings{Shared: Shared{WebhookSecret: "new", PreviousWebhookSecrets: []gateway.Secret{"old"}}}, func(key string, s gateway.Secret) {
		got = append(got, key+"="+s.Reveal())
	})
	if diff := cmp.Diff([]string{"webhook_secret=new", "previous_webhook_secrets[0]=old"}, got); diff != "" {
		t.Errorf("found (-want +got):\n%s", diff)
	}
	if ps := rotationProblems(&settings{Shared: Shared{PreviousWebhookSecrets: []gateway.Secret{"old"}}}); len(ps) != 1 || ps[0].Key != "previous_webhook_secrets" {
		t.Errorf("previous secrets without the current one: problems %v", ps)
	}
}
