package app

import (
	"context"
	"fmt"
	"testing"

	"github.com/smsgate/smsgate/gateway/httpapi"
)

// BenchmarkSendPipeline measures one send through the whole pipeline (decode, normalize, policy,
// route, breaker, mock driver, message log, metrics, log line) without HTTP.
func BenchmarkSendPipeline(b *testing.B) {
	for _, storage := range []string{"memory", "sqlite"} {
		b.Run(storage, func(b *testing.B) {
			cfg := `
storage: {driver: ` + storage + `, path: $DIR/b.db}
policy: {rate_limits: {per_recipient: 1000000/1h}, resend_escalation: {enabled: false}}
tenants: [{name: t, api_key: k}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`
			h := start(b, cfg, Options{})
			bodies := make([][]byte, 1024)
			for i := range bodies {
				bodies[i] = []byte(fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is %06d","code":"%06d","message_type":"sms"},"client":{"client_id":"c"},"request":{"ip":"203.0.113.9","language":"en"}}`, i, i, i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					r := h.app.Send(context.Background(), httpapi.SendRequest{APIKey: "k", Body: bodies[i%len(bodies)]})
					if r.Status != 200 {
						b.Errorf("status %d: %s", r.Status, r.Body)
						return
					}
				}
			})
			b.StopTimer()
		})
	}
}
