package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
	"github.com/smsgate/smsgate/providers/providertest"
)

// sendSetup writes a config with one Infobip provider on a fake and returns the config path.
func sendSetup(t *testing.T) (string, *infobiptest.Fake) {
	t.Helper()
	ib := infobiptest.New("send-test-key-0123456789", true)
	srv := httptest.NewServer(ib)
	t.Cleanup(srv.Close)
	return writeSendConfig(t, `server: {listen: "127.0.0.1:0"}
storage: {driver: memory}
tenants: [{name: t, api_key: tenant-key-0123456789}]
providers:
  - name: ib
    type: infobip
    base_url: `+srv.URL+`
    api_key: send-test-key-0123456789
    sender: InfoSMS
    timeout: 2s
  - name: m
    type: mock
routes: [{name: default, providers: [ib]}]
`), ib
}

func withStdin(t *testing.T, s string) {
	old := stdin
	stdin = strings.NewReader(s)
	t.Cleanup(func() { stdin = old })
}

func TestSendAsksBeforeARealProvider(t *testing.T) {
	path, ib := sendSetup(t)
	withStdin(t, "no\n")
	code, out, errs := runCmd("send", "--config", path, "--provider", "ib", "--to", "+14155550123")
	if code != 1 || ib.Calls() != 0 || !strings.Contains(errs, "not sent") || out != "" {
		t.Fatalf("exit %d, %d calls\nstdout %s\nstderr %s", code, ib.Calls(), out, errs)
	}
	// The prompt shows the masked number only.
	if strings.Contains(errs, "+14155550123") || !strings.Contains(errs, "+14*****0123") {
		t.Errorf("prompt: %s", errs)
	}
	withStdin(t, "yes\n")
	if code, out, errs := runCmd("send", "--config", path, "--provider", "ib", "--to", "+14155550123"); code != 0 || ib.Calls() != 1 {
		t.Fatalf("after yes: exit %d, %d calls\n%s\n%s", code, ib.Calls(), out, errs)
	}
	// A mock needs no confirmation.
	withStdin(t, "")
	if code, out, errs := runCmd("send", "--config", path, "--provider", "m", "--to", "+14155550123"); code != 0 || !strings.Contains(out, "accepted") {
		t.Fatalf("mock: exit %d\n%s\n%s", code, out, errs)
	}
}

func TestSendPrintsTheProvidersAnswer(t *testing.T) {
	path, ib := sendSetup(t)
	code, out, errs := runCmd("send", "--config", path, "--provider", "ib", "--to", "+44 7400 123456", "--yes", "--json", "--text", "Your code is 481516")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	var res struct {
		Provider, Type, ID, To, Country string
		ProviderMessageID               string `json:"provider_message_id"`
		ProviderStatus                  string `json:"provider_status"`
		Sent                            bool
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	req := ib.Requests()[0]
	if req.Method != "POST" || req.Path != "/sms/3/messages" || req.Authorization != "App send-test-key-0123456789" {
		t.Errorf("request %s %s %q", req.Method, req.Path, req.Authorization)
	}
	if !strings.Contains(string(req.Raw), `"to":"447400123456"`) || !strings.Contains(string(req.Raw), "481516") {
		t.Errorf("body %s", req.Raw)
	}
	if !res.Sent || res.Provider != "ib" || res.Type != "infobip" || res.Country != "GB" || res.To != "+44******3456" ||
		res.ProviderStatus != "PENDING_ACCEPTED" || res.ProviderMessageID == "" ||
		!strings.HasPrefix(res.ID, "msg_") || !strings.Contains(string(req.Raw), `"messageId":"`+res.ID+`"`) {
		t.Errorf("result %+v", res)
	}
	for _, leak := range []string{"481516", "7400123456", "send-test-key"} {
		if strings.Contains(out+errs, leak) {
			t.Errorf("output leaks %q: %s", leak, out)
		}
	}
	// A refusal: exit 1, with the class that says what a real send would do.
	ib.SetMode(infobiptest.Rejected)
	code, out, _ = runCmd("send", "--config", path, "--provider", "ib", "--to", "+14155550123", "--yes")
	if code != 1 || !strings.Contains(out, "result:     failed") || !strings.Contains(out, "REJECTED_DESTINATION") || !strings.Contains(out, "class:") {
		t.Errorf("rejected: exit %d\n%s", code, out)
	}
	ib.SetMode(infobiptest.Unavailable)
	code, out, _ = runCmd("send", "--config", path, "--provider", "ib", "--to", "+14155550123", "--yes")
	if code != 1 || !strings.Contains(out, "class:      provider") || !strings.Contains(out, "http:       503") {
		t.Errorf("unavailable: exit %d\n%s", code, out)
	}
}

func TestSendUsage(t *testing.T) {
	path, ib := sendSetup(t)
	for _, args := range [][]string{
		{"send", "--config", path, "--provider", "nope", "--to", "+14155550123", "--yes"},
		{"send", "--config", path, "--provider", "ib", "--yes"},
		{"send", "--config", path, "--provider", "ib", "--to", "+14155550123", "--type", "fax", "--yes"},
		{"send", "--config", path, "--provider", "ib", "--to", "12", "--yes"},
	} {
		if code, out, errs := runCmd(args...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d\n%s\n%s", args, code, out, errs)
		}
	}
	if ib.Calls() != 0 {
		t.Errorf("%d calls", ib.Calls())
	}
}

// writeSendConfig writes cfg to a file of the test's and returns its path.
func writeSendConfig(t *testing.T, cfg string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// With server.public_url, the test send asks for delivery reports as serve would: at the
// provider's report URL, carrying its webhook secret, which the output never shows.
func TestSendAsksForReportsAtThePublicURL(t *testing.T) {
	ib := infobiptest.New("send-test-key-0123456789", true)
	srv := httptest.NewServer(ib)
	t.Cleanup(srv.Close)
	path := writeSendConfig(t, `server: {public_url: "https://sms.example.com"}
storage: {driver: memory}
tenants: [{name: t, api_key: tenant-key-0123456789}]
providers:
  - {name: ib, type: infobip, base_url: `+srv.URL+`, api_key: send-test-key-0123456789, sender: InfoSMS, webhook_secret: hook-secret-0123456789}
routes: [{name: default, providers: [ib]}]
`)
	code, out, errs := runCmd("send", "--config", path, "--provider", "ib", "--to", "+14155550123", "--yes")
	if code != 0 || ib.Calls() != 1 {
		t.Fatalf("exit %d, %d calls\n%s\n%s", code, ib.Calls(), out, errs)
	}
	if want := `"delivery":{"url":"https://sms.example.com/v1/dlr/infobip/ib?secret=hook-secret-0123456789"}`; !strings.Contains(string(ib.Requests()[0].Raw), want) {
		t.Errorf("request %s, want %s", ib.Requests()[0].Raw, want)
	}
	if strings.Contains(out+errs, "hook-secret") {
		t.Errorf("the output shows the webhook secret:\n%s\n%s", out, errs)
	}
}

// A provider that echoes a secret of the config in its error (here a tenant's API key and the
// admin token, which its driver does not know): the output shows neither.
func TestSendHidesEverySecretAProviderEchoes(t *testing.T) {
	srv := providertest.Answering(t, "POST", "/sms/3/messages", http.StatusUnauthorized,
		[]byte(`{"errorCode":"E401 AcmeLiveQwErTy987654","description":"refused: OpsAdminZx81Vb42Nm and AcmeLiveQwErTy987654"}`))
	path := writeSendConfig(t, `server: {admin_token: OpsAdminZx81Vb42Nm}
storage: {driver: memory}
tenants: [{name: t, api_key: AcmeLiveQwErTy987654}]
providers:
  - {name: ib, type: infobip, base_url: `+srv.URL+`, api_key: send-test-key-0123456789, sender: InfoSMS}
routes: [{name: default, providers: [ib]}]
`)
	code, out, errs := runCmd("send", "--config", path, "--provider", "ib", "--to", "+14155550123", "--yes", "--json")
	if code != 1 || !strings.Contains(out, `"class": "provider"`) || !strings.Contains(out, `"http_status": 401`) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	// Digits in a provider's text are masked before the scrub: a secret's first letters must go too.
	for _, secret := range []string{"AcmeLiveQwErTy987654", "OpsAdminZx81Vb42Nm"} {
		if strings.Contains(out+errs, secret[:10]) {
			t.Errorf("the output holds (a part of) %s:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, `"message": "refused:`) || !strings.Contains(out, `"code": "E401`) {
		t.Errorf("the provider's code and message are not shown:\n%s", out)
	}
}

// The provider's timeout bounds the test send: a provider that never answers is given up at it,
// and the result says the message may have been sent.
func TestSendGivesUpAtTheProvidersTimeout(t *testing.T) {
	srv, _ := providertest.Hanging(t)
	path := writeSendConfig(t, `storage: {driver: memory}
tenants: [{name: t, api_key: tenant-key-0123456789}]
providers:
  - {name: ib, type: infobip, base_url: `+srv.URL+`, api_key: send-test-key-0123456789, sender: InfoSMS, timeout: 200ms}
routes: [{name: default, providers: [ib]}]
`)
	done := make(chan struct{})
	var code int
	var out string
	go func() {
		defer close(done)
		code, out, _ = runCmd("send", "--config", path, "--provider", "ib", "--to", "+14155550123", "--yes", "--json")
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second): // a hundred times the timeout: the send was not bounded by it
		t.Fatalf("the send outlived the provider's timeout of 200ms")
	}
	if code != 1 || !strings.Contains(out, `"maybe_sent": true`) || !strings.Contains(out, `"class": "provider"`) {
		t.Errorf("exit %d\n%s", code, out)
	}
}

// A provider that cannot send the message's type is not called: the command says why.
func TestSendRefusesWhatTheProviderCannotSend(t *testing.T) {
	path := writeSendConfig(t, `storage: {driver: memory}
tenants: [{name: t, api_key: tenant-key-0123456789}]
providers: [{name: m, type: mock, types: [sms]}]
routes: [{name: default, providers: [m]}]
`)
	code, out, errs := runCmd("send", "--config", path, "--provider", "m", "--to", "+14155550123", "--type", "voice")
	if code != 1 || out != "" || !strings.Contains(errs, `provider "m" cannot send this message: cannot send voice`) {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
}
