package app

import (
	"fmt"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/providers/infobip"
	"github.com/smsgate/smsgate/providers/mock"
	"github.com/smsgate/smsgate/providers/twilio"
)

// ProviderTypes lists the driver types this build knows, for messages.
const ProviderTypes = "infobip, mock, twilio"

// validator is implemented by every driver config: it returns problems as key -> message.
type validator interface{ Validate() map[string]string }

// buildDriver is the single composition point: it maps a provider's type to its driver, decoding
// the driver's own keys. Problems go to c. It returns the driver and its decoded config (compared
// on reload to decide whether a provider changed).
func buildDriver(c *config.Config, i int, deps gateway.Deps) (gateway.Provider, any) {
	p := &c.Providers[i]
	path := fmt.Sprintf("providers[%d]", i)
	check := func(v validator) {
		for k, msg := range v.Validate() {
			c.Problem(path+"."+k, "%s", msg)
		}
	}
	switch p.Type {
	case "mock":
		var mc mock.Config
		c.DecodeOptions(i, &mc)
		check(&mc)
		return mock.New(mc), mc
	case "infobip":
		var ic infobip.Config
		c.DecodeOptions(i, &ic)
		check(&ic)
		return infobip.New(ic, deps), ic
	case "twilio":
		var tc twilio.Config
		c.DecodeOptions(i, &tc)
		check(&tc)
		return twilio.New(tc, deps), tc
	case "":
		return nil, nil // reported by config validation
	default:
		c.Problem(path+".type", "unknown provider type %q (known: %s)", p.Type, ProviderTypes)
		return nil, nil
	}
}
