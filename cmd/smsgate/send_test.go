package main

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
)

// sendSetup writes a config with one Infobip provider on a fake and returns the config path.
func sendSetup(t *testing.T) (string, *infobiptest.Fake) {
	t.Helper()
	ib := infobiptest.New("send-test-key-0123456789", true)
	srv := httptest.NewServer(ib)
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "c.yaml")
	cfg := `server: {listen: "127.0.0.1:0"}
storage: {driver: memory}
tenants: [{name: t, api_key: tenant-key-0123456789}]
providers:
  - name: ib
    type: infobip
    base_url: ` + srv.URL + `
    api_key: send-test-key-0123456789
    sender: InfoSMS
    timeout: 2s
  - name: m
    type: mock
routes: [{name: default, providers: [ib]}]
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, ib
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
		res.ProviderStatus != "PENDING_ACCEPTED" || res.ProviderMessageID == "" || !strings.Contains(string(req.Raw), res.ID) {
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
