package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
)

// TestSendResult is what `smsgate send` prints: the provider's answer and how smsgate classified
// it. It holds no secret, code or full number (To is masked).
type TestSendResult struct {
	Provider string `json:"provider"`
	Type     string `json:"type"`
	// ID is the smsgate id the message carried (drivers pass it as the client reference).
	ID      string `json:"id"`
	To      string `json:"to"`
	Country string `json:"country"`
	// Sent is true when the provider accepted the message.
	Sent              bool   `json:"sent"`
	ProviderMessageID string `json:"provider_message_id,omitempty"`
	ProviderStatus    string `json:"provider_status,omitempty"`
	// Class, Code, Message, HTTPStatus and MaybeSent describe a failure as the dispatcher would
	// see it (Class decides failover and the breaker; see docs/architecture.md).
	Class      string `json:"class,omitempty"`
	Code       string `json:"code,omitempty"`
	Message    string `json:"message,omitempty"`
	HTTPStatus int    `json:"http_status,omitempty"`
	MaybeSent  bool   `json:"maybe_sent,omitempty"`
	ElapsedMS  int64  `json:"elapsed_ms"`
}

// ErrNoProvider is returned by TestSend for a provider name the config does not define.
var ErrNoProvider = errors.New("no provider with this name in the config")

// ProviderType returns the type of the config's provider name, and whether there is one.
func ProviderType(c *config.Config, name string) (string, bool) {
	if i := providerIndex(c, name); i >= 0 {
		return c.Providers[i].Type, true
	}
	return "", false
}

// providerIndex is the index in c.Providers of the provider called name, or -1.
func providerIndex(c *config.Config, name string) int {
	return slices.IndexFunc(c.Providers, func(p config.Provider) bool { return p.Name == name })
}

// TestSend sends msg through the one named provider, built exactly as serve builds it (same HTTP
// client settings, same delivery-report callback), bypassing routing, policy, breakers and the
// message log: the "test your set-up" step for an operator checking new credentials. msg.To and
// msg.Country must be set (intake.NormalizeNumber). The provider's timeout bounds the call.
func TestSend(ctx context.Context, c *config.Config, name string, msg *gateway.Message, client *http.Client) (TestSendResult, error) {
	idx := providerIndex(c, name)
	if idx < 0 {
		return TestSendResult{}, fmt.Errorf("%w: %q", ErrNoProvider, name)
	}
	p := &c.Providers[idx]
	if client == nil {
		client = http.DefaultClient
	}
	deps := gateway.Deps{Name: p.Name, HTTPClient: client, CallbackURL: callbackURL(c, p)}
	drv := buildDriver(c, idx, deps)
	if drv == nil {
		return TestSendResult{}, fmt.Errorf("provider %q (type %q) could not be built", name, p.Type)
	}
	if ok, why := drv.Capabilities().Supports(msg); !ok {
		return TestSendResult{}, fmt.Errorf("provider %q cannot send this message: %s", name, why)
	}
	var secrets []string
	collectSecrets(reflect.ValueOf(c), &secrets) // the drivers' settings too (config.Provider.Settings)
	scrub := func(s string) string { return gateway.RedactSecrets(s, secrets...) }

	if msg.ID == "" {
		msg.ID = newID(time.Now())
	}
	out := TestSendResult{Provider: p.Name, Type: p.Type, ID: msg.ID, To: gateway.MaskPhone(msg.To), Country: msg.Country}
	if p.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.Timeout.D())
		defer cancel()
	}
	start := time.Now()
	res, err := drv.Send(ctx, msg)
	out.ElapsedMS = time.Since(start).Milliseconds()
	if err == nil {
		out.Sent, out.ProviderMessageID, out.ProviderStatus = true, res.ProviderMessageID, res.Status
		return out, nil
	}
	ge := gateway.AsError(err)
	out.Class, out.Code, out.HTTPStatus, out.MaybeSent = ge.Class.String(), scrub(ge.Code), ge.HTTPStatus, ge.MaybeSent
	out.Message = scrub(ge.Message)
	return out, nil
}
