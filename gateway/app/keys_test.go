package app

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAKeyIsRotatedWithoutAFailedCall: with the new key as api_key and the old one under
// previous_api_keys, both are the tenant's on every API (sends, the Infobip-compatible API, the
// message listing), and calls with the old one are counted; once it is dropped, it is refused.
// With one key per tenant, a rotation had a moment between the reload and the callers' switch in
// which every login failed.
func TestAKeyIsRotatedWithoutAFailedCall(t *testing.T) {
	c := startCompat(t)
	raw, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	reload := func(cfg string) {
		t.Helper()
		if err := os.WriteFile(c.path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.app.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
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
	previous := func() float64 { return testutil.ToFloat64(c.app.metrics.PreviousKeys.WithLabelValues("acme")) }

	reload(strings.Replace(string(raw), "api_key: acme-ib-key", `api_key: acme-new-key, previous_api_keys: ["acme-ib-key"]`, 1))
	if got := calls("acme-ib-key"); got != ok {
		t.Errorf("the previous key during the rotation: %v", got)
	}
	if n := previous(); n != 3 {
		t.Errorf("%v calls counted with the previous key, want 3", n)
	}
	if got := calls("acme-new-key"); got != ok {
		t.Errorf("the new key during the rotation: %v", got)
	}
	if n := previous(); n != 3 {
		t.Errorf("calls with the new key counted as previous: %v", n)
	}
	reload(strings.Replace(string(raw), "api_key: acme-ib-key", "api_key: acme-new-key", 1))
	if got := calls("acme-ib-key"); got != refused {
		t.Errorf("the dropped key: %v", got)
	}
	if got := calls("acme-new-key"); got != ok {
		t.Errorf("the new key after the rotation: %v", got)
	}
	c.app.Shutdown(context.Background())
	if logs := c.logs.String(); strings.Contains(logs, "acme-new-key") || strings.Contains(logs, "acme-ib-key") {
		t.Error("a key reached the log")
	}
}
