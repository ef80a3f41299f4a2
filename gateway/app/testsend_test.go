package app

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
)

// TestSendThroughAProviderTheConfigLacks: TestSend (smsgate send) through a name no provider has
// is ErrNoProvider, naming it, and sends nothing; a known name sends, and gives the message an id
// when it has none.
func TestSendThroughAProviderTheConfigLacks(t *testing.T) {
	t.Parallel()
	c, err := config.ParseWith("x.yaml", []byte("tenants: [{name: a, api_key: a-key-0123456789}]\nproviders: [{name: m, type: mock}]\nroutes: [{name: d, providers: [m]}]\n"),
		func(string) (string, bool) { return "", false }, Drivers)
	if err != nil {
		t.Fatal(err)
	}
	msg := func() *gateway.Message {
		return &gateway.Message{Tenant: "smsgate-send", To: "+14155550104", Country: "US", Type: gateway.SMS, Text: "hello"}
	}
	if res, err := TestSend(context.Background(), c, "nope", msg(), nil); !errors.Is(err, ErrNoProvider) || err.Error() != `no provider with this name in the config: "nope"` || res.Sent {
		t.Errorf("an unknown provider: %+v %v, want ErrNoProvider naming it", res, err)
	}
	if res, err := TestSend(context.Background(), c, "m", msg(), nil); err != nil || !res.Sent || res.Provider != "m" || !strings.HasPrefix(res.ID, "msg_") {
		t.Errorf("the mock: %+v %v, want sent with an id of its own", res, err)
	}
}
