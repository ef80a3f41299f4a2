package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
	"github.com/smsgate/smsgate/providers/providertest"
)

// seedBaseURL is the Infobip base URL in the seed hook; the test swaps it for the gateway's.
const seedBaseURL = "https://2622w.api.infobip.com"

// nodeModules returns testdata/node/node_modules (.ci/run installs axios and the Infobip SDK
// there), skipping without it on a laptop and failing in CI.
func nodeModules(t *testing.T) string {
	t.Helper()
	dir, _ := filepath.Abs("testdata/node/node_modules")
	_, errNode := exec.LookPath("node")
	_, errMods := os.Stat(filepath.Join(dir, "@infobip-api", "sdk"))
	if errNode != nil || errMods != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node and testdata/node/node_modules are required in CI (.ci/run installs them): %v %v", errNode, errMods)
		}
		t.Skip("node or testdata/node/node_modules missing (npm install --prefix gateway/app/testdata/node)")
	}
	return dir
}

func runHarness(t *testing.T, mods string, stdin io.Reader, args ...string) []map[string]any {
	t.Helper()
	cmd := exec.Command("node", append([]string{"testdata/infobip_harness.js"}, args...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("harness printed %q", sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}

// TestSeedHookVerbatim: the copy in testdata is Auth0's Infobip hook as the project received it.
func TestSeedHookVerbatim(t *testing.T) {
	t.Parallel()
	ref := filepath.Join(filepath.Dir(providertest.SpecDir()), "reference", "seed-infobip-hook.js")
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Skipf("the reference copy is not beside the repository: %v", err)
	}
	got, _ := os.ReadFile("testdata/seed-infobip-hook.js")
	if !bytes.Equal(got, want) || !bytes.Contains(got, []byte(seedBaseURL)) {
		t.Error("testdata/seed-infobip-hook.js is not the seed hook verbatim")
	}
}

// TestSeedInfobipHookAgainstTheGateway runs the hook that posts straight to Infobip, verbatim
// but for its BASE_URL, against smsgate: success, an Infobip outage that fails over, a wrong key.
func TestSeedInfobipHookAgainstTheGateway(t *testing.T) {
	t.Parallel()
	mods := nodeModules(t)
	c := startCompat(t)
	src, err := os.ReadFile("testdata/seed-infobip-hook.js")
	if err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(t.TempDir(), "hook.js")
	os.WriteFile(hook, bytes.Replace(src, []byte(seedBaseURL), []byte(c.url), 1), 0o600)

	out := runHarness(t, mods, nil, "hook", hook, "+14155550181", "Your code is 246810", "acme-ib-key")
	if len(out) != 1 || out[0]["ok"] == nil {
		t.Fatalf("success: %v", out)
	}
	if n := len(c.ib.Requests()); n != 1 {
		t.Errorf("infobip calls %d", n)
	}
	c.ib.SetMode(infobiptest.Unavailable)
	out = runHarness(t, mods, nil, "hook", hook, "+14155550182", "Your code is 135790", "acme-ib-key")
	if len(out) != 1 || out[0]["ok"] == nil || c.tw.Calls() != 1 {
		t.Fatalf("outage: %v (twilio calls %d)", out, c.tw.Calls())
	}
	c.ib.SetMode(infobiptest.OK)
	out = runHarness(t, mods, nil, "hook", hook, "+14155550183", "Your code is 111222", "not-a-key")
	if len(out) != 1 || out[0]["status"] != float64(401) || !strings.Contains(toJSON(out[0]["body"]), "UNAUTHORIZED") {
		t.Fatalf("wrong key: %v", out)
	}
}

// TestInfobipSDKAgainstTheGateway: the official Infobip Node SDK, pointed at smsgate, sends an
// SMS, reads its delivery report, once, and previews a text.
func TestInfobipSDKAgainstTheGateway(t *testing.T) {
	t.Parallel()
	mods := nodeModules(t)
	c := startCompat(t)
	out := runHarness(t, mods, nil, "sdk-send", c.url, "acme-ib-key", "14155550190", "Your code is 909090")
	reqs := c.ib.Requests()
	if len(out) != 1 || len(reqs) != 1 {
		t.Fatalf("send: %v (provider calls %d)", out, len(reqs))
	}
	id := reqs[0].Body["messages"].([]any)[0].(map[string]any)["destinations"].([]any)[0].(map[string]any)["messageId"].(string)
	sent := toJSON(out[0]["sent"])
	if !strings.Contains(sent, `"status":200`) || !strings.Contains(sent, id) || !strings.Contains(sent, "PENDING_ACCEPTED") {
		t.Errorf("send: %s", sent)
	}
	if r := c.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", report(id, "DELIVERED")); r.Status != 200 {
		t.Fatalf("dlr: %d", r.Status)
	}
	out = runHarness(t, mods, nil, "sdk-reports", c.url, "acme-ib-key")
	if len(out) != 1 {
		t.Fatalf("harness: %v", out)
	}
	if rep := toJSON(out[0]["reports"]); !strings.Contains(rep, id) || !strings.Contains(rep, "DELIVERED_TO_HANDSET") {
		t.Errorf("reports: %s", rep)
	}
	if again := toJSON(out[0]["again"]); again != `{"results":[]}` {
		t.Errorf("a report was handed out twice: %s", again)
	}
	// Its preview of a text of 161 GSM characters: two parts, 145 characters left.
	out = runHarness(t, mods, nil, "sdk-preview", c.url, "acme-ib-key", strings.Repeat("7", 161))
	if len(out) != 1 {
		t.Fatalf("harness: %v", out)
	}
	if p := toJSON(out[0]["preview"]); !strings.Contains(p, `"status":200`) || !strings.Contains(p, `"charactersRemaining":145,"configuration":{},"messageCount":2,`) {
		t.Errorf("preview: %s", p)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
