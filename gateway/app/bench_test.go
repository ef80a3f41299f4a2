package app

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/policy"
	"github.com/smsgate/smsgate/gateway/policy/redistest"
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

// worstCaseSends starts a gateway on the state section state and returns its send of the i-th
// message in the worst case a tenant can make within its limits: every limit and pumping
// detection on, and every send to a new recipient, from a new address, under a new
// Idempotency-Key, on a route of two providers (so resend memory too).
func worstCaseSends(b *testing.B, state string) (*harness, func(i int)) {
	cfg := `
storage: {driver: sqlite, path: $DIR/b.db}
log: {level: warn}
state: ` + state + `
policy:
  rate_limits: {per_tenant: 1000000/1s, per_ip: 1000000/1m, per_recipient: 10/1h, spend: 1000000/24h}
  pumping: {action: alert}
tenants: [{name: acme, api_key: k}]
providers: [{name: m, type: mock, prices: {currency: EUR, countries: {US: 0.01}}}, {name: n, type: mock}]
routes: [{name: d, providers: [m, n]}]
`
	h := start(b, cfg, Options{})
	return h, func(i int) {
		body := fmt.Sprintf(`{"message_options":{"recipient":"+1415%07d","text":"Your code is %06d","code":"%06d"},"request":{"ip":"10.%d.%d.%d"}}`,
			2000000+i, i%1000000, i%1000000, i>>16&255, i>>8&255, i&255)
		r := h.app.Send(context.Background(), httpapi.SendRequest{APIKey: "k", Body: []byte(body), IdempotencyKey: fmt.Sprintf("key-%d", i)})
		if r.Status != 200 {
			b.Fatalf("status %d: %s", r.Status, r.Body)
		}
	}
}

// BenchmarkRedisBytesPerSend measures what one send leaves in the shared Redis, in
// worstCaseSends's worst case. It reports Redis's used_memory and key count per send (go test
// -run XXX -bench RedisBytes -benchtime 20000x ./gateway/app).
func BenchmarkRedisBytesPerSend(b *testing.B) {
	addr, _ := redistest.Server(b)
	_, send := worstCaseSends(b, `{driver: redis, redis: {addr: "`+addr+`", key_prefix: "smsgate:"}, key_secret: "bench-key-secret-0123456789"}`)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	used := func() (bytes, keys float64) {
		info := c.InfoMap(ctx, "memory").Val()["Memory"]
		n, _ := strconv.ParseFloat(info["used_memory"], 64)
		return n, float64(c.DBSize(ctx).Val())
	}
	// One send first, so that what every tenant keeps once (its own counters, the script cache)
	// is not counted per send.
	send(-1 & 0xffff)
	bytes0, keys0 := used()
	b.ResetTimer()
	for i := range b.N {
		send(i)
	}
	b.StopTimer()
	bytes1, keys1 := used()
	b.ReportMetric((bytes1-bytes0)/float64(b.N), "redis-bytes/send")
	b.ReportMetric((keys1-keys0)/float64(b.N), "redis-keys/send")
}

// BenchmarkMemoryStateBytesPerSend is BenchmarkRedisBytesPerSend with state.driver memory: what
// one such send leaves in the replica's own heap (after a collection; the message log on disk, no
// log line kept), with state.max_idempotency_records at its default of 100,000 (go test -run XXX
// -bench MemoryStateBytes -benchtime 20000x ./gateway/app; 150000x to see the bound hold).
func BenchmarkMemoryStateBytesPerSend(b *testing.B) {
	h, send := worstCaseSends(b, `{driver: memory}`)
	heap := func() float64 {
		var ms goruntime.MemStats
		goruntime.GC()
		goruntime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc)
	}
	for i := range 1000 {
		send(3000000 + i)
	}
	heap0 := heap()
	b.ResetTimer()
	for i := range b.N {
		send(i)
	}
	b.StopTimer()
	b.ReportMetric((heap()-heap0)/float64(b.N), "heap-bytes/send")
	b.ReportMetric(float64(h.app.replays.(*policy.MemoryReplays).Len()), "idempotency-records")
}
