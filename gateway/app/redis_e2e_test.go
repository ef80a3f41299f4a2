package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/policy/redistest"
	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/gateway/store/pgtest"
)

const replicaConfig = `
storage: {driver: memory}
state: {driver: redis, redis: {addr: "$REDIS", key_prefix: "e2e:"}, on_error: $ONERROR, key_secret: "e2e-key-secret-0123456789"}
policy: {rate_limits: {per_recipient: 2/1h}}
tenants: [{name: acme, api_key: acme-key}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`

// TestReplicasShareStateThroughRedis runs two gateways on one Redis: a recipient's limit and an
// idempotency key hold across both.
func TestReplicasShareStateThroughRedis(t *testing.T) {
	t.Parallel()
	client := redistest.Start(t)
	cfg := strings.NewReplacer("$REDIS", client.Options().Addr, "$ONERROR", "open").Replace(replicaConfig)
	replicasShareState(t, start(t, cfg, Options{}), start(t, cfg, Options{}))
}

// replicasShareState checks that an idempotency key and a recipient's limit (per_recipient 2/1h,
// replicaConfig's) hold across replicas a and b.
func replicasShareState(t *testing.T, a, b *harness) {
	t.Helper()
	body := `{"recipient":"+14155550104","text":"Your code is 246810","context":{}}`
	if r := a.send("acme-key", body, "Idempotency-Key", "n-1"); r.Status != 200 {
		t.Fatalf("a: %d %s", r.Status, r.Raw)
	}
	first := a.send("acme-key", body, "Idempotency-Key", "n-1")
	replay := b.send("acme-key", body, "Idempotency-Key", "n-1")
	if replay.Status != 200 || replay.Body["id"] != first.Body["id"] {
		t.Errorf("replica b did not replay a's answer: %s vs %s", replay.Raw, first.Raw)
	}
	if n := testutil.ToFloat64(b.app.MetricSet().Attempts.WithLabelValues("m", "sent")); n != 0 {
		t.Errorf("replica b called the provider %v times for a replayed key", n)
	}
	// per_recipient 2/1h: one send on a (the replays above used no token), one on b, the third is refused.
	if r := b.send("acme-key", strings.Replace(body, "246810", "135791", 2)); r.Status != 200 {
		t.Fatalf("b: %d %s", r.Status, r.Raw)
	}
	if r := a.send("acme-key", strings.Replace(body, "246810", "112233", 2)); r.Status != 429 || errCode(r) != "rate_limited" {
		t.Errorf("third send across replicas: %d %s", r.Status, r.Raw)
	}
}

func TestRedisDownFailsOpenOrClosed(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"open", "closed"} {
		t.Run(mode, func(t *testing.T) {
			addr, stop := redistest.Server(t)
			clk := &testClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)} // one second of lines
			// A paced provider: its throughput is read from the store too.
			h := start(t, strings.NewReplacer("$REDIS", addr, "$ONERROR", mode, "{name: m, type: mock}", "{name: m, type: mock, throughput: 100/1s}").Replace(replicaConfig), Options{Now: clk.Now})
			stop()
			r := h.send("acme-key", `{"recipient":"+14155550104","text":"Your code is 246810","context":{}}`, "Idempotency-Key", "k")
			want, code := 200, ""
			if mode == "closed" {
				want, code = 503, "policy_unavailable"
			}
			if r.Status != want || errCode(r) != code {
				t.Errorf("got %d %s, want %d %q", r.Status, r.Raw, want, code)
			}
			// The cross-replica claim is the first call; with on_error open the send goes on and
			// meets the idempotency lookup next.
			se := h.app.MetricSet().StateErrors
			claim, idem := testutil.ToFloat64(se.WithLabelValues("flight_claim")), testutil.ToFloat64(se.WithLabelValues("idempotency_get"))
			if wantIdem := map[string]float64{"open": 1, "closed": 0}[mode]; claim != 1 || idem != wantIdem {
				t.Errorf("state errors counted: flight_claim %v, idempotency_get %v (want 1, %v)", claim, idem, wantIdem)
			}
			// With on_error open the send goes on to the provider's pace, which fails too, and lets
			// it through (the provider enforces its throughput itself).
			if paced, want := testutil.ToFloat64(se.WithLabelValues("throughput")), map[string]float64{"open": 1, "closed": 0}[mode]; paced != want {
				t.Errorf("state errors counted for throughput: %v, want %v", paced, want)
			}
			if !strings.Contains(h.logs.String(), "policy state store failed") {
				t.Error("the failure was not logged")
			}
			// A call that reads the log takes a token of rate_limits.api from the store: it goes
			// through either way (reading costs no provider anything), and the failure is counted.
			before := testutil.ToFloat64(se.WithLabelValues("rate_limit"))
			if g := h.do("GET", "/v1/messages?limit=1", "acme-key", ""); g.Status != 200 {
				t.Errorf("a read while the store is down: %d %s", g.Status, g.Raw)
			}
			if n := testutil.ToFloat64(se.WithLabelValues("rate_limit")) - before; n != 1 {
				t.Errorf("state errors counted for the read's rate limit: %v, want 1", n)
			}
			// Every send meets the dead store: its lines are bounded like errors (10 a second by
			// default for each operation), the metric counts them all.
			for i := range 30 {
				h.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is 246810","context":{}}`, i))
			}
			byOp := map[string]int{}
			for _, l := range logLines(t, h, "policy state store failed") {
				byOp[l["op"].(string)]++
			}
			if byOp["flight_claim"] != 10 {
				t.Errorf("lines for 31 sends on a dead store, by operation: %v; want 10 flight_claim", byOp)
			}
			if n := testutil.ToFloat64(se.WithLabelValues("flight_claim")); n != 31 {
				t.Errorf("flight_claim errors counted: %v, want 31", n)
			}
		})
	}
}

// TestAReplicaStartsWhileRedisIsLoading: a Redis that answers but cannot serve yet (LOADING, as
// one restarting does while it reads its data back) does not stop the start, as an unreachable
// one does not; it used to, since any answer of Redis's counted as a config it refused.
func TestAReplicaStartsWhileRedisIsLoading(t *testing.T) {
	t.Parallel()
	addr := fakeRedis(t, func([]string) string { return "-LOADING Redis is loading the dataset in memory\r\n" })
	h := start(t, strings.NewReplacer("$REDIS", addr, "$ONERROR", "open").Replace(replicaConfig), Options{})
	if !strings.Contains(h.logs.String(), "state store unreachable at start") || !strings.Contains(h.logs.String(), "LOADING") {
		t.Errorf("the start did not say Redis could not serve yet: %s", h.logs.String())
	}
	if r := h.send("acme-key", `{"recipient":"+14155550104","text":"Your code is 246810","context":{}}`); r.Status != 200 {
		t.Errorf("a send while Redis loads, on_error open: %d %s", r.Status, r.Raw)
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{redisErr("WRONGPASS invalid username-password pair or user is disabled."), true},
		{redisErr("NOAUTH Authentication required."), true},
		{redisErr("NOPERM User u has no permissions to run the 'ping' command"), true},
		{redisErr("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"), true},
		{redisErr("ERR DB index is out of range"), true},
		{redisErr("LOADING Redis is loading the dataset in memory"), false},
		{redisErr("ERR max number of clients reached"), false},
		{redisErr("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), false},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), false},
	} {
		if got := redisConfigRefused(c.err); got != c.want {
			t.Errorf("%v: refused %v, want %v", c.err, got, c.want)
		}
	}
}

// answerLoading answers every command on c as a Redis loading its data does.
// fakeRedis serves RESP on a loopback port until the test ends, answering each command (its
// arguments) with reply's raw RESP, and returns its address.
func fakeRedis(t *testing.T, reply func(args []string) string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	serve := func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
			args := make([]string, 0, n)
			for range n {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				size, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l, "$")))
				arg := make([]byte, size+2)
				if _, err := io.ReadFull(r, arg); err != nil {
					return
				}
				args = append(args, string(arg[:size]))
			}
			if len(args) == 0 {
				return
			}
			if _, err := c.Write([]byte(reply(args))); err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

// redisErr is an error as Redis answers it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

// TestAReplicaStartsWhileRedisIsDown: a Redis that cannot be reached does not stop the start (a
// replica restarted during a Redis outage would otherwise stay down with it): state.on_error
// decides each send, as when Redis fails while the replica runs, and the replica uses Redis once
// it is back. A Redis that answers no (a wrong password) still stops the start.
func TestAReplicaStartsWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	addr, stop := redistest.Server(t)
	stop()
	h := start(t, strings.NewReplacer("$REDIS", addr, "$ONERROR", "open").Replace(replicaConfig), Options{})
	if !strings.Contains(h.logs.String(), "state store unreachable at start") {
		t.Errorf("the start did not say Redis was unreachable: %s", h.logs.String())
	}
	send := func(i int) response {
		return h.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is 246810","context":{}}`, i), "Idempotency-Key", fmt.Sprint("k-", i))
	}
	if r := send(0); r.Status != 200 {
		t.Fatalf("a send with Redis down and on_error open: %d %s", r.Status, r.Raw)
	}
	// The Redis client's own lines come through the gateway's log, as JSON, not on stderr.
	if lines := logLines(t, h, "state store client"); len(lines) == 0 || !strings.Contains(fmt.Sprint(lines[0]["detail"]), "connection refused") {
		t.Errorf("the Redis client's lines: %v", lines)
	}
	redistest.ServerOn(t, addr)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	// The state store's breaker holds a failed Redis off for redisOpenFor; then sends use it.
	for i := 1; ; i++ {
		if r := send(i); r.Status != 200 {
			t.Fatalf("send %d: %d %s", i, r.Status, r.Raw)
		}
		if keys, _ := client.Keys(context.Background(), "e2e:*").Result(); len(keys) > 0 {
			break
		}
		if i > 150 {
			t.Fatal("the replica did not use Redis once it was back")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A Redis that answers with a refusal is a wrong config.
	locked, stopLocked := redistest.Server(t)
	stopLocked()
	redistest.ServerOn(t, locked, "--requirepass", "right-password")
	_, err := New(context.Background(), Options{ConfigPath: writeConfig(t, strings.NewReplacer("$REDIS", locked, "$ONERROR", "open").Replace(replicaConfig))})
	if err == nil || !strings.Contains(err.Error(), "state.redis") {
		t.Errorf("a Redis that refused the replica: err = %v", err)
	}
}

// TestSimultaneousDuplicatesAcrossReplicasSendOnce: the same retried request reaches three
// replicas at the same moment, with and without an Idempotency-Key: one provider call, one id.
func TestSimultaneousDuplicatesAcrossReplicasSendOnce(t *testing.T) {
	t.Parallel()
	client := redistest.Start(t)
	duplicatesSendOnce(t, client.Options().Addr, "")
}

// TestADuplicateWaitsOutASlowRun: a request whose providers take seconds (a slow provider, or a
// failover after a timeout) is still sent once when its duplicate reaches another replica: the
// claim lasts the request's whole budget, so the waiting replica never takes the run for dead and
// sends it again.
func TestADuplicateWaitsOutASlowRun(t *testing.T) {
	t.Parallel()
	client := redistest.Start(t)
	cfg := strings.NewReplacer("$REDIS", client.Options().Addr, "$ONERROR", "closed", "providers: [{name: m, type: mock}]",
		"providers: [{name: m, type: mock, latency: 1500ms}]", "per_recipient: 2/1h", "per_recipient: 0").Replace(replicaConfig)
	cfg = "server: {request_timeout: 4s}\n" + cfg
	gws := []*harness{start(t, cfg, Options{}), start(t, cfg, Options{})}
	res := make([]response, len(gws))
	var wg sync.WaitGroup
	for i, g := range gws {
		wg.Go(func() {
			res[i] = g.send("acme-key", `{"recipient":"+14155550104","text":"Your code is 246810","context":{}}`, "Idempotency-Key", "slow-1")
		})
	}
	wg.Wait()
	sent := 0.0
	for i, g := range gws {
		if r := res[i]; r.Status != 200 || r.Body["id"] != res[0].Body["id"] {
			t.Errorf("replica %d: %d %s (first: %s)", i, r.Status, r.Raw, res[0].Raw)
		}
		sent += testutil.ToFloat64(g.app.MetricSet().Attempts.WithLabelValues("m", "sent"))
	}
	if sent != 1 {
		t.Errorf("%v provider calls for one request taking 1.5 s on two replicas, want 1", sent)
	}
}

// TestARequestWhoseClaimantDiedIsRunHere: a replica that claimed a request and died (its claim
// left in Redis, no answer ever stored) holds up a duplicate on another replica only until the
// claim expires: the waiting replica then claims the request and sends it itself, once. A claim
// that outlives the request's budget answers 504 and sends nothing.
func TestARequestWhoseClaimantDiedIsRunHere(t *testing.T) {
	t.Parallel()
	client := redistest.Start(t)
	cfg := strings.NewReplacer("$REDIS", client.Options().Addr, "$ONERROR", "closed", "per_recipient: 2/1h", "per_recipient: 0").Replace(replicaConfig)
	h := start(t, "server: {request_timeout: 2s, shutdown_timeout: 5s}\n"+cfg, Options{})
	sent := func() float64 { return testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("m", "sent")) }
	ctx := context.Background()
	if _, won, err := h.app.flights.Claim(ctx, "k|acme|dead-1", 600*time.Millisecond); err != nil || !won {
		t.Fatalf("the dead replica's claim: %v %v", won, err)
	}
	answered := make(chan response, 1)
	go func() {
		answered <- h.send("acme-key", `{"recipient":"+14155550104","text":"Your code is 246810","context":{}}`, "Idempotency-Key", "dead-1")
	}()
	select {
	case r := <-answered:
		t.Fatalf("answered while another replica's claim held: %d %s", r.Status, r.Raw)
	case <-time.After(300 * time.Millisecond):
	}
	if n := sent(); n != 0 {
		t.Fatalf("%v sends while another replica's claim held", n)
	}
	if r := <-answered; r.Status != 200 || sent() != 1 {
		t.Errorf("after the claim expired: %d %s, %v sends (want 200, one)", r.Status, r.Raw, sent())
	}

	if _, won, err := h.app.flights.Claim(ctx, "k|acme|dead-2", time.Minute); err != nil || !won {
		t.Fatalf("a claim held past the budget: %v %v", won, err)
	}
	r := h.send("acme-key", `{"recipient":"+14155550105","text":"Your code is 246811","context":{}}`, "Idempotency-Key", "dead-2")
	time.Sleep(100 * time.Millisecond) // the detached run ends at the same deadline
	if r.Status != 504 || errCode(r) != "deadline_exceeded" || sent() != 1 {
		t.Errorf("a claim that outlives the budget: %d %s, %v sends (want 504 and no new send)", r.Status, r.Raw, sent())
	}
}

// duplicatesSendOnce starts three replicas on replicaConfig's Redis at addr (or, with cluster
// set, on the Redis Cluster of those addresses), each provider call taking 300 ms, and sends the
// same request to all three at once: one provider call, one answer on every replica.
func duplicatesSendOnce(t *testing.T, addr, cluster string) {
	t.Helper()
	cfg := strings.NewReplacer("$REDIS", addr, "$ONERROR", "closed", "providers: [{name: m, type: mock}]",
		"providers: [{name: m, type: mock, latency: 300ms}]", "per_recipient: 2/1h", "per_recipient: 0").Replace(replicaConfig)
	if cluster != "" {
		cfg = strings.Replace(cfg, `addr: "`+addr+`"`, "cluster: {addrs: ["+cluster+"]}", 1)
	}
	gws := []*harness{start(t, cfg, Options{}), start(t, cfg, Options{}), start(t, cfg, Options{})}
	for _, tc := range []struct {
		name string
		hdr  []string
		body string
	}{
		{"same Idempotency-Key", []string{"Idempotency-Key", "retry-7"}, `{"recipient":"+14155550104","text":"Your code is 246810","context":{}}`},
		{"identical body, no key", nil, `{"recipient":"+14155550105","text":"Your code is 975311","context":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := 0.0
			for _, g := range gws {
				before += testutil.ToFloat64(g.app.MetricSet().Attempts.WithLabelValues("m", "sent"))
			}
			var wg sync.WaitGroup
			res := make([]response, len(gws))
			for i, g := range gws {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res[i] = g.send("acme-key", tc.body, tc.hdr...)
				}()
			}
			wg.Wait()
			for i, r := range res {
				if r.Status != 200 || r.Body["id"] != res[0].Body["id"] {
					t.Errorf("replica %d: %d %s (first: %s)", i, r.Status, r.Raw, res[0].Raw)
				}
			}
			after := 0.0
			for _, g := range gws {
				after += testutil.ToFloat64(g.app.MetricSet().Attempts.WithLabelValues("m", "sent"))
			}
			if after-before != 1 {
				t.Errorf("%v provider calls across three replicas, want 1", after-before)
			}
		})
	}
	// The same key with another body, while the first runs, is a conflict on any replica.
	var wg sync.WaitGroup
	var first, second response
	wg.Add(2)
	go func() {
		defer wg.Done()
		first = gws[0].send("acme-key", `{"recipient":"+14155550106","text":"code 1","context":{}}`, "Idempotency-Key", "k-9")
	}()
	go func() {
		defer wg.Done()
		time.Sleep(50 * time.Millisecond)
		second = gws[1].send("acme-key", `{"recipient":"+14155550106","text":"code 2","context":{}}`, "Idempotency-Key", "k-9")
	}()
	wg.Wait()
	if first.Status != 200 || second.Status != 409 {
		t.Errorf("same key, other body: %d then %d %s", first.Status, second.Status, second.Raw)
	}
}

// TestReplicasShareStateThroughARedisCluster: with state.redis.cluster, replicas share their
// state through a Redis Cluster of three primaries: an idempotency key and a recipient's limit
// hold across two replicas, simultaneous duplicates on three are sent once (the claim and the
// answer of a request in flight, which one script touches together, share a slot), the keys are
// spread over the nodes, and the memory figures are read from the nodes: the fullest node's
// memory, and the keys every node evicted, summed.
func TestReplicasShareStateThroughARedisCluster(t *testing.T) {
	t.Parallel()
	nodes := redistest.Cluster(t, 3)
	cluster := `"` + strings.Join(nodes, `", "`) + `"`
	cfg := strings.NewReplacer(`addr: "$REDIS"`, "cluster: {addrs: ["+cluster+"]}", "$ONERROR", "closed").Replace(replicaConfig)
	a, b := start(t, cfg, Options{}), start(t, cfg, Options{})
	replicasShareState(t, a, b)
	duplicatesSendOnce(t, "unused:6379", cluster)
	// A caller's Idempotency-Keys all holding "{pin}" would have pinned its records to the one
	// node of the slot of "pin": they spread like any others.
	for i := range 12 {
		if r := a.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is 246810","context":{}}`, 200+i), "Idempotency-Key", fmt.Sprintf("{pin}-%d", i)); r.Status != 200 {
			t.Fatalf("send %d: %d %s", i, r.Status, r.Raw)
		}
	}
	holding, pinned := 0, 0
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n})
		if k, err := c.DBSize(context.Background()).Result(); err == nil && k > 0 {
			holding++
		}
		if ks, err := c.Keys(context.Background(), "*idem*{pin}*").Result(); err == nil && len(ks) > 0 {
			pinned++
		}
		c.Close()
	}
	if holding < 2 || pinned < 2 {
		t.Errorf("the state's keys are on %d of 3 nodes, the records of keys holding {pin} on %d: the cluster does not spread them", holding, pinned)
	}
	if used := testutil.ToFloat64(a.app.MetricSet().StateMemoryUsed); used <= 0 {
		t.Errorf("smsgate_state_memory_used_bytes = %v, want a node's figure", used)
	}
	// The node nearest its maxmemory is the one reported, whichever node answers first.
	for i, limit := range []string{"2gb", "64mb", "1gb"} {
		c := redis.NewClient(&redis.Options{Addr: nodes[i]})
		if err := c.ConfigSet(context.Background(), "maxmemory", limit).Err(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	for range 6 {
		a.app.readStateMemory(a.app.stateClient)
		if got := testutil.ToFloat64(a.app.MetricSet().StateMemoryMax.WithLabelValues("noeviction")); got != 64<<20 {
			t.Fatalf("smsgate_state_memory_max_bytes = %v, want the fullest node's 64 MiB", got)
		}
	}
	// Evicted keys are every node's together: each node fills past a small maxmemory and evicts.
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: nodes})
	defer cc.Close()
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		m, err := readNodeMemory(ctx, c)
		if err != nil {
			return err
		}
		return errors.Join(c.ConfigSet(ctx, "maxmemory", strconv.Itoa(int(m.used)+(1<<20))).Err(), c.ConfigSet(ctx, "maxmemory-policy", "allkeys-random").Err())
	})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 64<<10)
	for i := range 120 {
		cc.Set(ctx, fmt.Sprintf("filler:%d", i), big, 0)
	}
	// The nodes' sum, and how many nodes evicted (the replicas' own writes may evict more meanwhile).
	total := func() (sum, nodes int64) {
		var s, n atomic.Int64 // ForEachMaster calls each node's at once
		if err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			m, err := readNodeMemory(ctx, c)
			if m != nil && m.evicted > 0 {
				s.Add(int64(m.evicted))
				n.Add(1)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return s.Load(), n.Load()
	}
	before, nodesEvicting := total()
	if nodesEvicting < 2 {
		t.Fatalf("%d nodes evicted keys, want two or more", nodesEvicting)
	}
	a.app.readStateMemory(cc)
	a.app.readStateMemory(cc) // read twice: the figure is the nodes' count, not added to at each read
	after, _ := total()
	seen := testutil.ToFloat64(a.app.MetricSet().StateEvictedKeys)
	if seen < float64(before) || seen > float64(after) {
		t.Errorf("smsgate_state_evicted_keys = %v, want the %d to %d keys the %d nodes evicted together", seen, before, after, nodesEvicting)
	}
	// A node whose figures cannot be read leaves the figures as they were: the sum of the others'
	// evicted keys would dip, and the alert's increase() reads the rise after a dip as new
	// evictions. (Here INFO is refused to smsgate's user on a node that evicted keys.)
	var refusing *redis.Client
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n})
		if m, err := readNodeMemory(ctx, c); err == nil && m.evicted > 0 && refusing == nil {
			refusing = c
			continue
		}
		c.Close()
	}
	defer refusing.Close()
	if err := refusing.Do(ctx, "ACL", "SETUSER", "default", "-info").Err(); err != nil {
		t.Fatal(err)
	}
	a.app.readStateMemory(cc)
	if err := refusing.Do(ctx, "ACL", "SETUSER", "default", "+info").Err(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(a.app.MetricSet().StateEvictedKeys); got != seen {
		t.Errorf("smsgate_state_evicted_keys = %v after a read one node refused, want %v as it was", got, seen)
	}
}

// TestSpendLimitHoldsAcrossReplicas: two gateways on one Redis charge one spend bucket, so a
// tenant spreading its sends over replicas gets no more than its limit.
func TestSpendLimitHoldsAcrossReplicas(t *testing.T) {
	t.Parallel()
	addr, stop := redistest.Server(t)
	cfg := strings.NewReplacer("$REDIS", addr, "$ONERROR", "closed",
		"storage: {driver: memory}", "server: {admin_token: spend-admin-token}\nstorage: {driver: memory}",
		"per_recipient: 2/1h", "per_recipient: 0, spend: 0.1/24h",
		"providers: [{name: m, type: mock}]", "providers: [{name: m, type: mock, prices: {default: 0.04}}]").Replace(replicaConfig)
	a, b := start(t, cfg, Options{}), start(t, cfg, Options{})
	body := func(i int) string {
		return fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, i, i)
	}
	// 0.04 on a, on b, on a: the third starts at 0.08 of 0.1; the fourth, on b, is refused.
	for i, h := range []*harness{a, b, a} {
		if r := h.send("acme-key", body(i)); r.Status != 200 {
			t.Fatalf("send %d: %d %s", i+1, r.Status, r.Raw)
		}
	}
	if r := b.send("acme-key", body(9)); r.Status != 429 || errCode(r) != "rate_limited" {
		t.Errorf("fourth send across replicas: %d %s", r.Status, r.Raw)
	}
	// Either replica lists what the tenant used of the shared bucket (the 0.12 of three sends,
	// less what refilled since); with Redis gone it says it cannot tell, rather than nothing used.
	if r := b.do("GET", "/v1/admin/tenants", "spend-admin-token", ""); r.Status != 200 || !regexp.MustCompile(`"used":0\.1[12][0-9]*[,}]`).MatchString(r.Raw) {
		t.Errorf("the tenants listed on b: %d %s, want 0.12 used", r.Status, r.Raw)
	}
	stop()
	if r := a.do("GET", "/v1/admin/tenants", "spend-admin-token", ""); r.Status != 503 || errCode(r) != "policy_unavailable" {
		t.Errorf("the tenants listed with Redis gone: %d %s, want 503 policy_unavailable", r.Status, r.Raw)
	}
}

// TestAFloodStopsBeforeTheSharedStateStore: with Redis, every send costs it round trips, even a
// refused one, and a flood that slows it turns every tenant's limits off (on_error open) or every
// tenant's sends away (closed). A tenant's sends beyond twice its per_tenant limit are refused on
// the replica, without Redis: here, once Redis is gone, the flood's next send is still the 429
// its limit gives, while another tenant's send meets the dead store (503, on_error closed). The
// gate is the tenant's own: another tenant with the same read limit is not refused by the flood's,
// and a tenant's sends and reads are two gates. It refills at twice the limit's rate.
func TestAFloodStopsBeforeTheSharedStateStore(t *testing.T) {
	t.Parallel()
	addr, stop := redistest.Server(t)
	clk := &testClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	h := start(t, strings.NewReplacer("$REDIS", addr).Replace(`
storage: {driver: memory}
state: {driver: redis, redis: {addr: "$REDIS", key_prefix: "gate:"}, on_error: closed, key_secret: "e2e-key-secret-0123456789"}
policy: {rate_limits: {per_recipient: 0}}
tenants:
  - {name: flood, api_key: flood-key, rate_limits: {per_tenant: 2/1h, api: 1/1h}}
  - {name: quiet, api_key: quiet-key}
  - {name: calm, api_key: calm-key, rate_limits: {per_tenant: 1/1h, api: 1/1h}}
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`), Options{Now: clk.Now})
	send := func(key string, i int) response {
		return h.send(key, fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, i, i))
	}
	// 2 sent, 2 refused by the shared limit (the gate holds 4), then the gate refuses.
	for i, want := range []int{200, 200, 429, 429, 429} {
		if r := send("flood-key", i); r.Status != want {
			t.Fatalf("flood send %d: %d %s, want %d", i+1, r.Status, r.Raw, want)
		}
	}
	// The same gate stands before rate_limits.api: 1 read, 1 refused by Redis, then the gate.
	for i, want := range []int{200, 429, 429} {
		if r := h.do("GET", "/v1/messages", "flood-key", ""); r.Status != want {
			t.Fatalf("flood read %d: %d %s, want %d", i+1, r.Status, r.Raw, want)
		}
	}
	// Another tenant, whose reads have the flood's limit (api: 1/1h): its own gates, one for sends
	// and one for reads, though both are of one size (2); the shared limit refuses its second send.
	for i, want := range []int{200, 429} {
		if r := send("calm-key", 30+i); r.Status != want {
			t.Errorf("calm send %d after the flood: %d %s, want %d", i+1, r.Status, r.Raw, want)
		}
	}
	if r := h.do("GET", "/v1/messages", "calm-key", ""); r.Status != 200 {
		t.Errorf("calm read after its two sends: %d %s, want 200", r.Status, r.Raw)
	}
	stop()
	// The gate's Retry-After is its own wait, a quarter of an hour, not a moment's: a client that
	// follows it does not come straight back to be refused again.
	r := send("flood-key", 10)
	if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); r.Status != 429 || errCode(r) != "rate_limited" || ra < 14*60 || ra > 15*60 {
		t.Errorf("the flood's send with Redis gone: %d %s (Retry-After %q), want the gate's 429 after 15 minutes", r.Status, r.Raw, r.Header.Get("Retry-After"))
	}
	// The gate (4 an hour) gives one send back each 15 minutes: it passes, and meets the dead store.
	clk.Add(15*time.Minute + time.Second)
	if r := send("flood-key", 11); r.Status != 503 {
		t.Errorf("the flood's send 15 minutes on, Redis gone: %d %s, want 503 (through the gate)", r.Status, r.Raw)
	}
	// A read whose limit Redis cannot check is let through (on_error or not: reads are not abuse
	// of the providers); the flood's is refused by the gate before it gets there.
	if r := h.do("GET", "/v1/messages", "flood-key", ""); r.Status != 429 || errCode(r) != "rate_limited" {
		t.Errorf("the flood's read with Redis gone: %d %s, want the gate's 429", r.Status, r.Raw)
	}
	if r := send("quiet-key", 20); r.Status != 503 {
		t.Errorf("another tenant's send with Redis gone: %d %s, want 503 (it needs the store)", r.Status, r.Raw)
	}
	// Another tenant's read passes the gate, meets the dead store, and goes through, counted.
	before := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("rate_limit"))
	if r := h.do("GET", "/v1/messages", "quiet-key", ""); r.Status != 200 {
		t.Errorf("another tenant's read with Redis gone: %d %s", r.Status, r.Raw)
	}
	if n := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("rate_limit")) - before; n != 1 {
		t.Errorf("the read's failed limit check counted %v times, want 1", n)
	}
}

// TestReplaysPassTheFloodGateUpToTwiceTheLimit: replays of an idempotency key do not count
// against per_tenant, so the flood gate (twice the limit) lets a tenant within its limit replay
// each of its sends once; past that, the gate refuses. Without a shared state store there is no
// gate: the limit itself is in the replica, and replays pass however many.
func TestReplaysPassTheFloodGateUpToTwiceTheLimit(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Server(t)
	for _, state := range []string{`{driver: redis, redis: {addr: "` + addr + `", key_prefix: "replay-gate:"}, key_secret: "e2e-key-secret-0123456789"}`, `{driver: memory}`} {
		shared := strings.Contains(state, "redis")
		h := start(t, `
storage: {driver: memory}
state: `+state+`
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key, rate_limits: {per_tenant: 2/1h}}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, Options{})
		send := func(i int) response {
			return h.send("acme-key", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, i, i), "Idempotency-Key", fmt.Sprint("k", i))
		}
		var ids []any
		for i := range 2 {
			r := send(i)
			if r.Status != 200 {
				t.Fatalf("%s: send %d: %d %s", state, i, r.Status, r.Raw)
			}
			ids = append(ids, r.Body["id"])
		}
		for i := range 2 {
			if r := send(i); r.Status != 200 || r.Body["id"] != ids[i] {
				t.Errorf("%s: replay %d: %d %s, want the answer of %v", state, i, r.Status, r.Raw, ids[i])
			}
		}
		if n := testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("m", "sent")); n != 2 {
			t.Errorf("%s: %v sends, want the 2 (the others replayed)", state, n)
		}
		r := send(0)
		if shared && (r.Status != 429 || errCode(r) != "rate_limited") {
			t.Errorf("a fifth request past a gate of 4: %d %s", r.Status, r.Raw)
		}
		if !shared && r.Status != 200 {
			t.Errorf("without a shared store, a third replay: %d %s", r.Status, r.Raw)
		}
	}
}

// TestRedisKeysNameNoNumberOrAddress: Redis is shared and often less guarded than the message
// log; the per-recipient and per-IP buckets' keys hold an HMAC, not the number or the address.
func TestRedisKeysNameNoNumberOrAddress(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Server(t)
	h := start(t, strings.NewReplacer("$REDIS", addr, "$ONERROR", "closed", "per_recipient: 2/1h", "per_recipient: 2/1h, per_ip: 5/1m").Replace(replicaConfig), Options{})
	r := h.send("acme-key", `{"message_options":{"recipient":"+14155550177","text":"Your code is 246810"},"request":{"ip":"198.51.100.23"}}`)
	if r.Status != 200 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	keys, err := c.Keys(context.Background(), "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	buckets := 0
	for _, k := range keys {
		if strings.Contains(k, "4155550177") || strings.Contains(k, "198.51.100") {
			t.Errorf("Redis key %q names the number or the address", k)
		}
		if strings.Contains(k, "rl:r|") || strings.Contains(k, "rl:i|") {
			buckets++
		}
	}
	if buckets != 2 {
		t.Errorf("%d per-recipient and per-IP buckets in %v, want 2", buckets, keys)
	}
}

// hygieneConfig turns on everything that keeps state in Redis: every rate limit, a spend limit,
// resend escalation, pumping detection, idempotency and the cross-replica claims.
const hygieneConfig = `
storage: {driver: memory}
state: {driver: redis, redis: {addr: "$REDIS", key_prefix: "hy:"}, on_error: closed, key_secret: "hygiene-key-secret-0123456789"}
policy:
  rate_limits: {per_tenant: 100/1s, per_country: {GB: 50/1m}, per_ip: 20/1m, per_recipient: 5/1h, spend: 100/24h}
  resend_escalation: {enabled: true, after: 0s, within: 10m}
  pumping: {action: block, warmup: 1h, min_volume: 5, cooldown: 30m}
tenants:
  - {name: acme, api_key: acme-key}
providers:
  - {name: m, type: mock, prices: {currency: EUR, countries: {US: 0.01, GB: 0.04}}}
  - {name: n, type: mock, prices: {currency: EUR, countries: {US: 0.02, GB: 0.05}}}
routes: [{name: d, providers: [m, n]}]
`

// TestSharedStateExpiresAndHoldsNoSecret: every key smsgate writes to the Redis all replicas share
// expires by itself (a key without a TTL would grow that store for as long as tenants send), and
// no key or value holds a recipient's number, an end user's address or a one-time code.
func TestSharedStateExpiresAndHoldsNoSecret(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Server(t)
	h := start(t, strings.ReplaceAll(hygieneConfig, "$REDIS", addr), Options{})
	sends := []struct{ body, idem string }{
		{`{"message_options":{"recipient":"+14155550177","text":"Your code is 246810","code":"246810","action":"enrollment"},"request":{"ip":"198.51.100.23"}}`, "k-1"},
		{`{"message_options":{"recipient":"+14155550177","text":"Your code is 246810","code":"246810","action":"enrollment"},"request":{"ip":"198.51.100.23"}}`, "k-1"},
		{`{"message_options":{"recipient":"+14155550177","text":"Your code is 246810","code":"246810","action":"enrollment"},"request":{"ip":"198.51.100.23"}}`, ""},
		{`{"recipient":"+447400123987","text":"Your code is 975310","context":{"ip":"2001:db8::7"}}`, ""},
		{`{"notification":{"recipient":"+14155550188","as_text":"Your code is 864209","code":"864209","delivery_method":"text"},"request":{"ip":"203.0.113.77"}}`, "n-1"},
	}
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	secrets := []string{"4155550177", "7400123987", "4155550188", "4155550199", "198.51.100.23", "2001:db8", "203.0.113.77",
		"246810", "975310", "864209", "135792"}
	kinds := map[string]bool{}
	// scan checks every key there is now (some live for milliseconds or seconds: scanned after
	// each call, each kind is seen while it lives).
	scan := func() {
		t.Helper()
		for _, k := range sharedKeysExpire(t, c, "hy:*") {
			kind, _, _ := strings.Cut(strings.TrimPrefix(k, "hy:"), ":")
			kind, _, _ = strings.Cut(kind, "|")
			dump, err := c.Dump(ctx, k).Result()
			if errors.Is(err, redis.Nil) {
				continue // expired since KEYS
			} else if err != nil {
				t.Fatalf("dump %s: %v", k, err)
			}
			kinds[kind] = true
			for _, s := range secrets {
				if strings.Contains(k, s) || strings.Contains(dump, s) {
					t.Errorf("key %s or its value holds %q", k, s)
				}
			}
		}
	}
	var first string
	for i, s := range sends {
		var hdr []string
		if s.idem != "" {
			hdr = []string{"Idempotency-Key", s.idem}
		}
		r := h.send("acme-key", s.body, hdr...)
		if r.Status != 200 {
			t.Fatalf("send %d: %d %s", i, r.Status, r.Raw)
		}
		if i == 0 {
			first = r.Body["id"].(string)
		}
		scan()
	}
	if r := h.do("POST", "/v1/messages/"+first+"/verified", "acme-key", ""); r.Status != 200 {
		t.Fatalf("verified: %d %s", r.Status, r.Raw)
	}
	// The claim that counts the code used once, for the conversion window (1 h by default).
	if ttl := c.PTTL(ctx, "hy:pump|v|acme|"+first).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("the code used's claim has TTL %v, want the conversion window", ttl)
	}
	r := h.do("POST", "/sms/2/text/advanced", "", `{"messages":[{"destinations":[{"to":"14155550199"}],"text":"Your code is 135792"}]}`,
		"Authorization", "App acme-key")
	if r.Status != 200 {
		t.Fatalf("infobip-compatible send: %d %s", r.Status, r.Raw)
	}
	scan()
	// The sends above reached every kind of state: without these the test would prove nothing.
	for _, want := range []string{"rl", "idem", "resend", "flight-answer", "sp", "pump"} {
		if !kinds[want] {
			t.Errorf("no %q key seen (kinds seen: %v)", want, kinds)
		}
	}
}

// sharedKeysExpire returns the Redis keys matching pattern and checks that each expires by itself,
// within the longest anything is kept (pumping's counters: its baseline, 7 days, and 2 hours).
func sharedKeysExpire(t *testing.T, c *redis.Client, pattern string) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		// PTTL is -1 for a key without an expiry, -2 (or 0) for one that expired since KEYS.
		if ttl := c.PTTL(ctx, k).Val(); ttl == -1 || ttl > 170*time.Hour {
			t.Errorf("key %s (%s) has TTL %v: it must expire, within the pumping baseline", k, c.Type(ctx, k).Val(), ttl)
		}
	}
	return keys
}

// TestStateStoreMemoryIsWatched: a gateway on Redis shows how much memory the shared store uses,
// its maxmemory and policy, and the keys it evicted (each a limit or record lost before its time).
func TestStateStoreMemoryIsWatched(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Server(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for _, kv := range [][2]string{{"maxmemory", "3mb"}, {"maxmemory-policy", "volatile-lru"}} {
		if err := c.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	h := start(t, strings.NewReplacer("$REDIS", addr, "$ONERROR", "open").Replace(replicaConfig), Options{})
	m := h.app.MetricSet()
	if used := testutil.ToFloat64(m.StateMemoryUsed); used < 100_000 {
		t.Errorf("smsgate_state_memory_used_bytes = %v after start", used)
	}
	if max := testutil.ToFloat64(m.StateMemoryMax.WithLabelValues("volatile-lru")); max != 3<<20 {
		t.Errorf("smsgate_state_memory_max_bytes{policy=volatile-lru} = %v, want %d", max, 3<<20)
	}
	if n := testutil.ToFloat64(m.StateEvictedKeys); n != 0 {
		t.Errorf("evicted keys %v before any eviction", n)
	}
	// Fill it past maxmemory with keys that expire: Redis evicts some.
	big := strings.Repeat("x", 64<<10)
	for i := range 100 {
		c.Set(ctx, fmt.Sprintf("filler:%d", i), big, time.Hour)
	}
	h.app.readStateMemory(h.app.stateClient)
	if n := testutil.ToFloat64(m.StateEvictedKeys); n == 0 {
		t.Error("smsgate_state_evicted_keys is 0 after Redis evicted keys")
	}
	if c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err() != nil {
		t.Fatal("config set")
	}
	h.app.readStateMemory(h.app.stateClient)
	if n := testutil.CollectAndCount(m.StateMemoryMax); n != 1 || testutil.ToFloat64(m.StateMemoryMax.WithLabelValues("noeviction")) != 3<<20 {
		t.Errorf("after a policy change: %d series, noeviction %v", n, testutil.ToFloat64(m.StateMemoryMax.WithLabelValues("noeviction")))
	}
}

const drainConfig = `
server: {admin_token: drain-admin-token-0123}
storage: {driver: memory}
state: {driver: redis, redis: {addr: "$REDIS", key_prefix: "drain:"}, key_secret: "e2e-key-secret-0123456789"}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: primary, type: mock}, {name: backup, type: mock}, {name: spare, type: mock, disabled: true}]
routes: [{name: d, providers: [primary, backup]}]
`

// TestADrainReachesEveryReplica: behind a load balancer the drain call reaches one replica; every
// replica drains the provider (within a poll), a replica started during the drain starts
// drained, and ending it on any replica ends it on all. Enabling a provider the config disables
// is refused, and a drain Redis does not take changes nothing. The drain was once the replica's
// own: the runbook's call through the load balancer drained one replica of three.
func TestADrainReachesEveryReplica(t *testing.T) {
	t.Parallel()
	addr, stop := redistest.Server(t)
	cfg := strings.Replace(drainConfig, "$REDIS", addr, 1)
	a, b := start(t, cfg, Options{}), start(t, cfg, Options{})
	n := 0
	sentBy := func(h *harness) string {
		n++
		r := h.send("acme-key-0123456789", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is %06d","context":{}}`, n, n))
		s, _ := r.Body["provider"].(string)
		return s
	}
	// eventually waits (a few polls at most) until every replica sends through want.
	eventually := func(want string, hs ...*harness) {
		t.Helper()
		for _, h := range hs {
			deadline := time.Now().Add(5 * drainPoll)
			for sentBy(h) != want {
				if time.Now().After(deadline) {
					t.Fatalf("a replica still does not send through %s", want)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	const admin = "drain-admin-token-0123"
	if r := a.do("POST", "/v1/providers/primary/disable", admin, ""); r.Status != 200 || r.Body["disabled"] != true {
		t.Fatalf("disable on a: %d %s", r.Status, r.Raw)
	}
	if got := sentBy(a); got != "backup" {
		t.Errorf("a, which took the drain, sent through %s", got)
	}
	eventually("backup", b)
	// The one key without an expiry (volatile-lru must never end a drain): a field per drained
	// provider, gone when the drain ends.
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	ctx := context.Background()
	if keys, ttl := rc.HKeys(ctx, "drain:drains").Val(), rc.PTTL(ctx, "drain:drains").Val(); !slices.Equal(keys, []string{"primary"}) || ttl != -1 {
		t.Errorf("drains in Redis: %v with TTL %v", keys, ttl)
	}
	// Each replica says who changed it: the one called, the operator; the others, one elsewhere.
	for h, by := range map[*harness]string{a: "operator", b: "operator on another replica"} {
		lines := logLines(t, h, "provider drain changed")
		if len(lines) != 1 || lines[0]["provider"] != "primary" || lines[0]["disabled"] != true || lines[0]["by"] != by {
			t.Errorf("drain lines: %v, want one for primary by %q", lines, by)
		}
	}
	bm := b.app.MetricSet()
	if dis, dr := testutil.ToFloat64(bm.ProviderDisabled.WithLabelValues("primary")), testutil.ToFloat64(bm.ProviderDrained.WithLabelValues("primary")); dis != 1 || dr != 1 {
		t.Errorf("on b: smsgate_provider_disabled{primary} = %v, smsgate_provider_drained = %v", dis, dr)
	}
	if dis, dr := testutil.ToFloat64(bm.ProviderDisabled.WithLabelValues("spare")), testutil.ToFloat64(bm.ProviderDrained.WithLabelValues("spare")); dis != 1 || dr != 0 {
		t.Errorf("the config's spare on b: disabled %v, drained %v (a config key is no drain)", dis, dr)
	}
	c := start(t, cfg, Options{})
	if got := sentBy(c); got != "backup" {
		t.Errorf("a replica started during the drain sent through %s first", got)
	}
	if r := b.do("POST", "/v1/providers/primary/enable", admin, ""); r.Status != 200 || r.Body["disabled"] != false {
		t.Fatalf("enable on b: %d %s", r.Status, r.Raw)
	}
	eventually("primary", a, b, c)
	if n := rc.Exists(ctx, "drain:drains").Val(); n != 0 {
		t.Errorf("the drains hash outlived the last drain")
	}
	if dr := testutil.ToFloat64(a.app.MetricSet().ProviderDrained.WithLabelValues("primary")); dr != 0 {
		t.Errorf("smsgate_provider_drained{primary} on a after the drain ended: %v", dr)
	}
	if r := c.do("POST", "/v1/providers/spare/enable", admin, ""); r.Status != 409 || errCode(r) != "disabled_in_config" {
		t.Errorf("enabling a provider the config disables: %d %s", r.Status, r.Raw)
	}
	// Draining it is taken (it then stays drained should the config enable it), and ended again.
	for _, op := range []string{"disable", "enable"} {
		want := map[string]int{"disable": 200, "enable": 409}[op]
		if r := c.do("POST", "/v1/providers/spare/"+op, admin, ""); r.Status != want {
			t.Errorf("%s a provider the config disables: %d %s, want %d", op, r.Status, r.Raw, want)
		}
	}
	rc.HDel(ctx, "drain:drains", "spare")
	stop()
	if r := a.do("POST", "/v1/providers/primary/disable", admin, ""); r.Status != 503 || errCode(r) != "policy_unavailable" {
		t.Errorf("a drain Redis did not take: %d %s", r.Status, r.Raw)
	}
	if got := sentBy(a); got != "primary" {
		t.Errorf("a drain Redis did not take changed this replica: sent through %s", got)
	}
}

// TestAReplicaStartsWhilePostgresIsDown: a message log that cannot be reached does not stop the
// start. Sends are answered and their records wait in the retry buffer; reads answer 503; once
// PostgreSQL is reached (and migrated) the records are written and read. A PostgreSQL that
// answers no (a role that does not exist) still stops the start.
func TestAReplicaStartsWhilePostgresIsDown(t *testing.T) {
	t.Parallel()
	dsn, up := pgtest.Unreachable(t)
	o := Options{pushSweep: 300 * time.Millisecond} // sweeps often
	h := start(t, logConfig(postgresLog(dsn)), o)
	if !strings.Contains(h.logs.String(), "message log unreachable at start") {
		t.Errorf("the start did not say the message log was unreachable: %s", h.logs.String())
	}
	id := sendOne(t, h, "a send with the message log down")
	if g := h.do("GET", "/v1/messages/"+id, "acme-key-0123456789", ""); g.Status != 503 || errCode(g) != "store_unavailable" {
		t.Errorf("a read with the message log down: %d %s", g.Status, g.Raw)
	}
	if got := h.app.store.Backlog(); got != 1 {
		t.Errorf("backlog %d, want the one record", got)
	}
	// The reads in the background (prices at start, due pushes every pushSweep) do not repeat
	// what the start said.
	time.Sleep(5 * o.pushSweep)
	for _, noise := range []string{"could not be read from the message log", "could not be refreshed from the message log"} {
		if strings.Contains(h.logs.String(), noise) {
			t.Errorf("while the log was not reached, a background read logged %q: %s", noise, h.logs.String())
		}
	}
	up()
	waitWritten(t, h, id)
	if !strings.Contains(h.logs.String(), "message log reached") {
		t.Error("reaching the message log was not logged")
	}

	u, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User("no_such_role_smsgate")
	_, err = New(context.Background(), Options{ConfigPath: writeConfig(t, logConfig(fmt.Sprintf("{driver: postgres, dsn: %q}", u.String())))})
	if err == nil || !strings.Contains(err.Error(), "no_such_role_smsgate") {
		t.Errorf("a PostgreSQL that refused the replica: err = %v", err)
	}
}

// TestAReplicaStartsDuringALongMigration: a migration that runs long (an index build over a large
// message log; here one waiting for a transaction left open) does not hold the start, nor is it cut
// short: the replica serves after startWait as it does while PostgreSQL is down, the migration
// goes on, and once it ends the records are written, with no failed attempt.
func TestAReplicaStartsDuringALongMigration(t *testing.T) {
	t.Parallel()
	dsn := pgtest.OwnDatabase(t)
	_, end := pgtest.HoldSnapshot(t, dsn)
	h := start(t, logConfig(postgresLog(dsn)), Options{startWait: 300 * time.Millisecond})
	if !strings.Contains(h.logs.String(), "message log not reached within 300ms") {
		t.Errorf("the start did not say it serves without its message log: %s", h.logs.String())
	}
	id := sendOne(t, h, "a send while the migration runs")
	time.Sleep(500 * time.Millisecond)
	end()
	waitWritten(t, h, id)
	logs := h.logs.String()
	if !strings.Contains(logs, "message log reached") || strings.Contains(logs, "still not reached") {
		t.Errorf("want the log reached at the first attempt: %s", logs)
	}
}

// startOnPostgres starts a gateway whose message log is the PostgreSQL of dsn, with one tenant.
func startOnPostgres(t *testing.T, dsn string) *harness {
	t.Helper()
	return startOnLog(t, postgresLog(dsn))
}

// postgresLog is the storage key of a message log in PostgreSQL at dsn.
func postgresLog(dsn string) string {
	return fmt.Sprintf("{driver: postgres, dsn: %q, commit_timeout: 50ms}", dsn)
}

// waitWritten waits until the message id of acme reads as sent from the message log.
func waitWritten(t *testing.T, h *harness, id string) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		g := h.do("GET", "/v1/messages/"+id, "acme-key-0123456789", "")
		if g.Status == 200 && g.Body["status"] == "sent" {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("the record was not written once the message log was reached: %d %s", g.Status, g.Raw)
		}
	}
}

// TestAPostgresThatStopsAnsweringCostsSecondsNotHangs: PostgreSQL stops answering without closing
// its connections. Sends are still answered (their records wait), and a tenant's reads of the
// message log answer 503 within server.request_timeout instead of waiting as long as the caller
// does, each holding a connection of the read pool.
func TestAPostgresThatStopsAnsweringCostsSecondsNotHangs(t *testing.T) {
	t.Parallel()
	dsn, stall := pgtest.Stalling(t)
	h := start(t, fmt.Sprintf(`
server: {request_timeout: 500ms}
storage: {driver: postgres, dsn: %q, commit_timeout: 50ms, write_timeout: 500ms}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, dsn), Options{})
	defer stall(false) // before the harness stops
	key := "acme-key-0123456789"
	r := h.send(key, `{"recipient":"+14155550104","text":"Your code is 246810","context":{}}`)
	if r.Status != 200 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	id := r.Body["id"].(string)
	stall(true)
	within := func(what string, call func() response, check func(response) bool) {
		t.Helper()
		got := make(chan response, 1)
		go func() { got <- call() }()
		select {
		case r := <-got:
			if !check(r) {
				t.Errorf("%s during the stall: %d %s", what, r.Status, r.Raw)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s still waiting 5 s into the stall", what)
		}
	}
	is503 := func(r response) bool { return r.Status == 503 && errCode(r) == "store_unavailable" }
	within("a send", func() response {
		return h.send(key, `{"recipient":"+14155550105","text":"Your code is 246810","context":{}}`)
	}, func(r response) bool { return r.Status == 200 })
	within("reading a message", func() response { return h.do("GET", "/v1/messages/"+id, key, "") }, is503)
	within("listing messages", func() response { return h.do("GET", "/v1/messages", key, "") }, is503)
	within("the Infobip-compatible logs", func() response { return h.do("GET", "/sms/1/logs", "", "", "Authorization", "App "+key) },
		func(r response) bool { return r.Status == 503 && r.Header.Get("Retry-After") == "1" })
}

// TestReplicasShareOneReadOfTheHealthWindow: replicas on one PostgreSQL log and one Redis read the
// delivery-health window once between them per refresh: the first to refresh reads it and
// publishes the rows, the other applies them (demoting the same provider) without reading; once
// they are due, whichever refreshes next reads. While another replica holds the read and nothing
// is published, the table stays as it is. Without Redis each reads its own, and replicas of
// another log (SQLite files of their own, another PostgreSQL schema) never share theirs.
func TestReplicasShareOneReadOfTheHealthWindow(t *testing.T) {
	t.Parallel()
	addr, stop := redistest.Server(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	clk := &testClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	config := func(storage string) string {
		return fmt.Sprintf(`
storage: %s
state: {driver: redis, redis: {addr: %q, key_prefix: "share:"}, key_secret: "e2e-key-secret-0123456789"}
routing: {delivery_health: {window: 30m, min_samples: 4, min_rate: 0.7, margin: 0.1, report_timeout: 10m, refresh: 1m}}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m1, type: mock}, {name: m2, type: mock}]
routes: [{name: d, providers: [m1, m2]}]
`, storage, addr)
	}
	undelivered := func(h *harness, n int) {
		t.Helper()
		for i := range n {
			if err := h.app.Store().Insert(context.Background(), &store.Record{ID: fmt.Sprintf("u%d-%d", i, clk.Now().UnixNano()), Tenant: "acme", Provider: "m1", Country: "GB",
				Status: gateway.StatusUndelivered, CreatedAt: clk.Now().Add(-5 * time.Minute), UpdatedAt: clk.Now()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	reads := func(h *harness) float64 {
		return testutil.ToFloat64(h.app.metrics.WindowReads.WithLabelValues("delivery_health", "ok"))
	}
	refresh := func(h *harness) error {
		t.Helper()
		return h.app.refreshHealth(context.Background())
	}
	demoted := func(h *harness) bool {
		v := healthOf(h.app, smsKey("m1", "GB"))
		return v != nil && v.demoted
	}

	// Replicas with logs of their own each read theirs, Redis or not.
	dir := t.TempDir()
	// commit_timeout is long: the records inserted must be committed when Insert returns, on a
	// loaded machine too (200 ms was not, once in CI).
	s1 := start(t, config(fmt.Sprintf("{driver: sqlite, path: %q, commit_timeout: 5s}", filepath.Join(dir, "1.db"))), Options{Now: clk.Now})
	s2 := start(t, config(fmt.Sprintf("{driver: sqlite, path: %q, commit_timeout: 5s}", filepath.Join(dir, "2.db"))), Options{Now: clk.Now})
	undelivered(s1, 4)
	if err := errors.Join(refresh(s1), refresh(s2)); err != nil || reads(s1) != 1 || reads(s2) != 1 || !demoted(s1) || demoted(s2) {
		t.Errorf("SQLite replicas: %v; reads %v and %v (want one each), demoted %v and %v (want the one with the messages)", err, reads(s1), reads(s2), demoted(s1), demoted(s2))
	}

	dsn := pgtest.DSN(t)
	a := start(t, config(fmt.Sprintf("{driver: postgres, dsn: %q, commit_timeout: 5s}", dsn)), Options{Now: clk.Now})
	b := start(t, config(fmt.Sprintf("{driver: postgres, dsn: %q, commit_timeout: 5s}", dsn)), Options{Now: clk.Now})
	undelivered(a, 4)
	if err := refresh(a); err != nil || reads(a) != 1 || !demoted(a) {
		t.Fatalf("a: %v; reads %v, demoted %v", err, reads(a), demoted(a))
	}
	if err := refresh(b); err != nil || reads(b) != 0 || !demoted(b) {
		t.Errorf("b after a's read: %v; reads %v (want none), demoted %v (want a's rows applied)", err, reads(b), demoted(b))
	}
	// Due after refresh (a read that takes little is paced by refresh alone): b reads, a uses it.
	clk.Add(time.Minute + time.Second)
	if err := errors.Join(refresh(b), refresh(a)); err != nil || reads(b) != 1 || reads(a) != 1 || !demoted(a) || !demoted(b) {
		t.Errorf("the next refreshes: %v; reads a %v b %v (want 1 and 1), demoted %v %v", err, reads(a), reads(b), demoted(a), demoted(b))
	}
	// A replica of another log (here another schema) on the same Redis reads its own.
	c := start(t, config(fmt.Sprintf("{driver: postgres, dsn: %q, commit_timeout: 5s}", pgtest.DSN(t))), Options{Now: clk.Now})
	if err := refresh(c); err != nil || reads(c) != 1 || demoted(c) {
		t.Errorf("a replica of another log: %v; reads %v (want its own), demoted %v (want not: its log has no message)", err, reads(c), demoted(c))
	}
	// So does one of the same log whose window differs (a rollout changing report_timeout): its
	// rows would count other messages as pending.
	d := start(t, strings.Replace(config(fmt.Sprintf("{driver: postgres, dsn: %q, commit_timeout: 5s}", dsn)), "report_timeout: 10m", "report_timeout: 9m", 1), Options{Now: clk.Now})
	if err := refresh(d); err != nil || reads(d) != 1 {
		t.Errorf("a replica with another report_timeout: %v; reads %v (want its own)", err, reads(d))
	}
	e := start(t, strings.Replace(config(fmt.Sprintf("{driver: postgres, dsn: %q, commit_timeout: 5s}", dsn)), "window: 30m", "window: 20m", 1), Options{Now: clk.Now})
	if err := refresh(e); err != nil || reads(e) != 1 {
		t.Errorf("a replica with another window: %v; reads %v (want its own)", err, reads(e))
	}
	// Another replica reads and nothing is published yet: no read, the table as it was.
	window, lock := a.app.healthKeys()
	ctx := context.Background()
	if err := errors.Join(client.Del(ctx, window).Err(), client.Set(ctx, lock, "another", time.Minute).Err()); err != nil {
		t.Fatal(err)
	}
	if err := refresh(a); err != errReadElsewhere || reads(a) != 1 || !demoted(a) {
		t.Errorf("while another reads: %v (want errReadElsewhere); reads %v, demoted %v", err, reads(a), demoted(a))
	}
	if ttl := client.TTL(ctx, lock).Val(); ttl <= 0 || client.Get(ctx, lock).Val() != "another" {
		t.Errorf("another reader's lock was touched: %v %q", ttl, client.Get(ctx, lock).Val())
	}
	// A published read that does not decode (another build's, a stray write) is as none, even
	// where the fields read before the one that failed say it is fresh: a reads the log and
	// publishes its own, rather than taking no rows as the table until the value expires.
	stray := `{"read":true,"next":"2099-01-01T00:00:00Z","rows":"not rows"}`
	if err := errors.Join(client.Del(ctx, lock).Err(), client.Set(ctx, window, stray, time.Minute).Err()); err != nil {
		t.Fatal(err)
	}
	if err := refresh(a); err != nil || reads(a) != 2 || !demoted(a) {
		t.Errorf("over a published read that does not decode: %v; reads %v (want one more), demoted %v", err, reads(a), demoted(a))
	}
	var published sharedWindow
	if raw, err := client.Get(ctx, window).Bytes(); err != nil || json.Unmarshal(raw, &published) != nil || !published.Read {
		t.Errorf("a's read was not published in its place: %v %+v", err, published)
	}
	// A bound published without rows (a first read that its bound cut) is no read, even where its
	// time says it is fresh: it is published due at once, but a replica whose estimate of the
	// shared clock runs behind the publisher's finds it still ahead. a reads the log rather than
	// taking no rows as the table.
	if err := client.Set(ctx, window, `{"read":false,"next":"2099-01-01T00:00:00Z","budget":1000000000}`, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := refresh(a); err != nil || reads(a) != 3 || !demoted(a) {
		t.Errorf("over a published bound without rows: %v; reads %v (want one more), demoted %v", err, reads(a), demoted(a))
	}
	// A read that its bound cuts leaves the last rows published (due now, for the next reader),
	// and a replica that finds them due while another reads takes them rather than nothing.
	// (The published bound is set to 1ns so that a's read is cut.)
	clk.Add(time.Minute + time.Second)
	published.Budget = time.Nanosecond
	if raw, err := json.Marshal(published); err != nil || client.Set(ctx, window, raw, time.Minute).Err() != nil {
		t.Fatal(err)
	}
	if _, err := a.app.refreshHealthWithin(ctx, time.Nanosecond); !wasCut(err) {
		t.Fatalf("a read bounded by 1ns: %v, want it cut", err)
	}
	var kept sharedWindow
	if raw, err := client.Get(ctx, window).Bytes(); err != nil || json.Unmarshal(raw, &kept) != nil || !kept.Read ||
		cmp.Diff(published.Rows, kept.Rows) != "" || kept.Next.After(clk.Now()) {
		t.Errorf("after a cut read the published read is %v %+v, want the last rows (%+v), due now", err, kept, published.Rows)
	}
	if err := client.Set(ctx, lock, "another", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := refresh(b); err != nil || reads(b) != 1 || !demoted(b) {
		t.Errorf("b, the published rows due and another reading: %v (want the rows taken); reads %v (want none more), demoted %v", err, reads(b), demoted(b))
	}
	// A published read that does not decode while another reads: no rows to take, so the table
	// stays as it is (not emptied of its demotions).
	if err := client.Set(ctx, window, stray, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := refresh(b); err != errReadElsewhere || !demoted(b) {
		t.Errorf("b, a read that does not decode and another reading: %v (want errReadElsewhere), demoted %v", err, demoted(b))
	}
	// The read and its lock are under the fleet's key_prefix, like every key it writes (an ACL
	// may give the fleet that prefix alone).
	if keys, err := client.Keys(ctx, "*").Result(); err != nil || len(keys) == 0 {
		t.Errorf("keys: %v %v", keys, err)
	} else {
		for _, k := range keys {
			if !strings.HasPrefix(k, "share:") {
				t.Errorf("key %q is outside the key_prefix", k)
			}
		}
	}
	// Redis gone: each reads its own.
	stop()
	if err := errors.Join(refresh(a), refresh(b)); err != nil || reads(a) != 4 || reads(b) != 2 {
		t.Errorf("without Redis: %v; reads a %v b %v (want one more each)", err, reads(a), reads(b))
	}
	if n := testutil.ToFloat64(a.app.metrics.StateErrors.WithLabelValues("health_window")); n < 1 {
		t.Errorf("the failed share was not counted: %v", n)
	}
}

// TestASharedHealthReadGrowsItsBoundForAll: a window that outgrew the read's bound is cut, and the
// bound the next reader needs (twice this one's) is published with the read, whichever replica
// reads next: the replicas' cut reads together double it until one ends, as one replica's do.
func TestASharedHealthReadGrowsItsBoundForAll(t *testing.T) {
	t.Parallel()
	client := redistest.Start(t)
	dsn := pgtest.DSN(t)
	cfg := fmt.Sprintf(`
storage: {driver: postgres, dsn: %q, commit_timeout: 50ms}
state: {driver: redis, redis: {addr: %q, key_prefix: "grow:"}, key_secret: "e2e-key-secret-0123456789"}
routing: {delivery_health: {refresh: 1h}}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, dsn, client.Options().Addr)
	replica := func() (*harness, *windowLog) {
		wl := &windowLog{took: 500 * time.Millisecond}
		return start(t, cfg, Options{WrapBackend: func(b store.Backend) store.Backend { wl.Backend = b; return wl }, healthBudget: 50 * time.Millisecond}), wl
	}
	a, _ := replica()
	b, bl := replica()
	reads := func(h *harness, result string) float64 {
		return testutil.ToFloat64(h.app.metrics.WindowReads.WithLabelValues("delivery_health", result))
	}
	ctx := context.Background()
	// Reads of 500 ms, by turns: cut at 50, 100, 200 and 400 ms, then one ends within 800 ms; b
	// then uses a's rows. (Margins of 100 ms and more either way, for a loaded machine.)
	for i, h := range []*harness{a, b, a, b, a} {
		err := h.app.refreshHealth(ctx)
		if want := i < 4; wasCut(err) != want {
			t.Fatalf("read %d: %v, want cut %v", i+1, err, want)
		}
	}
	if err := b.app.refreshHealth(ctx); err != nil || len(bl.starts()) != 2 {
		t.Errorf("b after a's read: %v, %d reads of its own (want the two cut)", err, len(bl.starts()))
	}
	if got := []float64{reads(a, "error"), reads(a, "ok"), reads(b, "error"), reads(b, "ok")}; !slices.Equal(got, []float64{2, 1, 2, 0}) {
		t.Errorf("a cut/ended, b cut/ended: %v, want [2 1 2 0]", got)
	}
}

// TestLogDigestNamesTheDatabaseNotThePassword: replicas share a read of the window only when
// their DSNs reach one database as one user in one schema; the password, options that do not
// change where the rows are, and the DSN's form (URL or key=value) change nothing.
func TestLogDigestNamesTheDatabaseNotThePassword(t *testing.T) {
	t.Parallel()
	base := logDigest("postgres://smsgate:secret-1@db.internal:5432/gateway?search_path=sms")
	for _, dsn := range []string{
		"postgres://smsgate:other-secret@db.internal:5432/gateway?search_path=sms",
		"postgres://smsgate:secret-1@db.internal:5432/gateway?search_path=sms&connect_timeout=5",
		"host=db.internal port=5432 dbname=gateway user=smsgate password=x search_path=sms",
	} {
		if got := logDigest(dsn); got != base {
			t.Errorf("%s: digest %s, want %s (the same database)", dsn, got, base)
		}
	}
	for _, dsn := range []string{
		"postgres://smsgate:secret-1@db2.internal:5432/gateway?search_path=sms",
		"postgres://smsgate:secret-1@db.internal:5433/gateway?search_path=sms",
		"postgres://smsgate:secret-1@db.internal:5432/gateway2?search_path=sms",
		"postgres://other:secret-1@db.internal:5432/gateway?search_path=sms",
		"postgres://smsgate:secret-1@db.internal:5432/gateway?search_path=sms2",
		"postgres://smsgate:secret-1@db.internal:5432/gateway",
	} {
		if got := logDigest(dsn); got == base {
			t.Errorf("%s: digest %s, the same as another database's", dsn, got)
		}
	}
	if got := logDigest("postgres://%zz"); got != "unparsed" {
		t.Errorf("a DSN that does not parse: %q", got)
	}
}

// TestASharedHealthReadHoldsItsLockForItsBoundOnly: the lock of a shared read of the window
// expires a little after the read's bound (a reader that died holds it no longer), and a reader
// whose lock expired and went to another replica leaves that replica's lock alone when it ends.
// The read it publishes expires after the window, and is due again after healthWait: healthPace
// times a read that took longer than refresh allows.
func TestASharedHealthReadHoldsItsLockForItsBoundOnly(t *testing.T) {
	t.Parallel()
	addr, stop := redistest.Server(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	clk := &testClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	wl := &windowLog{took: 300 * time.Millisecond}
	h := start(t, fmt.Sprintf(`
storage: {driver: postgres, dsn: %q, commit_timeout: 50ms}
state: {driver: redis, redis: {addr: %q, key_prefix: "lock:"}, key_secret: "e2e-key-secret-0123456789"}
routing: {delivery_health: {enabled: false, window: 20m, refresh: 1s}} # read by the test alone
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, pgtest.DSN(t), addr), Options{Now: clk.Now, WrapBackend: func(b store.Backend) store.Backend { wl.Backend = b; return wl }, healthBudget: 2 * time.Second})
	window, lock := h.app.healthKeys()
	ctx := context.Background()
	var held time.Duration
	wl.during = func() {
		held = client.PTTL(ctx, lock).Val()
		// The lock expires during the read and another replica takes it.
		client.Set(ctx, lock, "another", time.Minute)
	}
	if err := h.app.refreshHealth(ctx); err != nil {
		t.Fatal(err)
	}
	if held <= 5*time.Second || held > 7*time.Second {
		t.Errorf("the lock was held for %v, want the read's bound (2s) and 5s more", held)
	}
	if got := client.Get(ctx, lock).Val(); got != "another" {
		t.Errorf("the lock another replica took holds %q after this read ended, want it left alone", got)
	}
	if ttl := client.TTL(ctx, window).Val(); ttl <= 19*time.Minute || ttl > 20*time.Minute {
		t.Errorf("the published read expires in %v, want the window (20m)", ttl)
	}
	var published sharedWindow
	if raw, err := client.Get(ctx, window).Bytes(); err != nil || json.Unmarshal(raw, &published) != nil {
		t.Fatalf("no published read: %v", err)
	}
	if due := published.Next.Sub(clk.Now()); due < healthPace*wl.took {
		t.Errorf("the published read is due in %v, want at least %d times the read's %v", due, healthPace, wl.took)
	}
	// A first read cut by its bound publishes its bound only, no rows: a replica that then finds
	// another reading keeps its table rather than taking no rows for the window.
	wl.during = nil
	client.Del(ctx, window, lock)
	if _, err := h.app.refreshHealthWithin(ctx, time.Nanosecond); !wasCut(err) {
		t.Fatalf("a read bounded by 1ns: %v, want it cut", err)
	}
	var cut sharedWindow
	if raw, err := client.Get(ctx, window).Bytes(); err != nil || json.Unmarshal(raw, &cut) != nil || cut.Read || cut.Budget <= 0 {
		t.Errorf("after a cut first read the published read is %v %+v, want its bound and no read", err, cut)
	}
	// Redis gone during a read: the read is this replica's, and the publication that failed is
	// counted.
	clk.Add(time.Hour)
	client.Del(ctx, lock)
	wl.during = stop
	if err := h.app.refreshHealth(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(h.app.metrics.StateErrors.WithLabelValues("health_window")); n != 1 {
		t.Errorf("failed publications counted: %v, want 1 (%d reads)", n, len(wl.starts()))
	}
}

// redisLimitConfig is a gateway whose state is in the Redis that redis (the YAML of
// state.redis) reaches, refusing sends when it cannot reach it, with one send a recipient an hour.
func redisLimitConfig(redis string) string {
	return `
storage: {driver: memory}
state: {driver: redis, redis: ` + redis + `, on_error: closed, key_secret: "e2e-key-secret-0123456789"}
policy: {rate_limits: {per_recipient: 1/1h}}
tenants: [{name: acme, api_key: acme-key}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`
}

// sendTo sends a code to recipient as redisLimitConfig's tenant.
func sendTo(h *harness, recipient string) response {
	h.t.Helper()
	return h.send("acme-key", `{"recipient":"`+recipient+`","text":"Your code is 246810","context":{}}`)
}

// TestReplicasInOtherProcessesShareARecipientsLimit: each process draws a random key secret of
// its own, and a recipient's Redis bucket is named by an HMAC of the number; replicas, which are
// separate processes, meet on it through state.key_secret alone. (Replicas started in one test
// process would share that process's secret and meet without it, so the second replica here
// draws one of its own, as its own process would.) Keyed by each process's own secret, every
// replica would count a recipient apart, and a pumping tenant would get per_recipient once per
// replica.
func TestReplicasInOtherProcessesShareARecipientsLimit(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Server(t)
	cfg := redisLimitConfig(`{addr: "` + addr + `"}`)
	first := start(t, cfg, Options{})
	second := start(t, cfg, Options{keySecret: bytes.Repeat([]byte{7}, len(processKeySecret))})
	if r := sendTo(first, "+14155550104"); r.Status != 200 {
		t.Fatalf("first send: %d %s", r.Status, r.Raw)
	}
	if r := sendTo(second, "+14155550104"); r.Status != 429 || errCode(r) != "rate_limited" {
		t.Errorf("the same recipient through the other replica: %d %s, want 429 rate_limited (per_recipient 1/1h)", r.Status, r.Raw)
	}
}

// TestRedisOverTLS: with state.redis.tls, the state goes to a Redis that takes TLS connections
// only: a recipient's limit holds (with on_error closed, a send that cannot reach the state is
// refused, 503). The server's certificate is checked: against tls_ca_file, and against
// tls_server_name when set; without the CA, or under another name, the start logs the refusal
// and sends are refused.
func TestRedisOverTLS(t *testing.T) {
	t.Parallel()
	addr, files := redistest.TLSServer(t)
	ca := files.CAFile
	for i, c := range []struct {
		name, redis string
		works       bool
	}{
		{"the CA", `{addr: "` + addr + `", tls: true, tls_ca_file: "` + ca + `"}`, true},
		{"the CA and the certificate's other name", `{addr: "` + addr + `", tls: true, tls_ca_file: "` + ca + `", tls_server_name: redis.test}`, true},
		{"the CA and a name the certificate lacks", `{addr: "` + addr + `", tls: true, tls_ca_file: "` + ca + `", tls_server_name: other.test}`, false},
		{"the system's roots", `{addr: "` + addr + `", tls: true}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, redisLimitConfig(c.redis), Options{})
			to := fmt.Sprintf("+1415555010%d", i) // the cases share the Redis
			first, second := sendTo(h, to), sendTo(h, to)
			if c.works {
				if first.Status != 200 || second.Status != 429 || errCode(second) != "rate_limited" {
					t.Errorf("got %d then %d %s, want 200 then 429 rate_limited", first.Status, second.Status, second.Raw)
				}
				if logs := h.logs.String(); strings.Contains(logs, "unreachable") {
					t.Errorf("the start did not reach Redis: %s", logs)
				}
				return
			}
			if first.Status != 503 || errCode(first) != "policy_unavailable" {
				t.Errorf("got %d %s, want 503 policy_unavailable", first.Status, first.Raw)
			}
			if logs := h.logs.String(); !strings.Contains(logs, "state store unreachable at start") || !strings.Contains(logs, "certificate") {
				t.Errorf("the start did not log the refused certificate: %s", logs)
			}
		})
	}
}

// TestRedisAskingForAClientCertificate: a Redis that asks clients for a certificate (redis.conf's
// default with TLS) takes the gateway's with state.redis.tls_cert_file and tls_key_file, and
// refuses the gateway without one.
func TestRedisAskingForAClientCertificate(t *testing.T) {
	t.Parallel()
	addr, files := redistest.TLSServer(t, "--tls-auth-clients", "yes")
	for i, c := range []struct {
		name, certs string
		works       bool
	}{
		{"with a certificate", `, tls_cert_file: "` + files.CertFile + `", tls_key_file: "` + files.KeyFile + `"`, true},
		{"without", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, redisLimitConfig(`{addr: "`+addr+`", tls: true, tls_ca_file: "`+files.CAFile+`"`+c.certs+`}`), Options{})
			to := fmt.Sprintf("+1415555010%d", i)
			first, second := sendTo(h, to), sendTo(h, to)
			if c.works && (first.Status != 200 || second.Status != 429) {
				t.Errorf("got %d then %d %s, want 200 then 429", first.Status, second.Status, second.Raw)
			}
			if !c.works && (first.Status != 503 || !strings.Contains(h.logs.String(), "state store unreachable at start")) {
				t.Errorf("got %d %s, want 503 and the refusal logged: %s", first.Status, first.Raw, h.logs.String())
			}
		})
	}
}

// TestRedisThroughSentinelOverTLS: with state.redis.sentinel and state.redis.tls together, the
// gateway asks the Sentinel over TLS and reaches the primary it names over TLS (both take TLS
// only, and the Sentinel gives the primary by its IP address, which the certificate carries).
func TestRedisThroughSentinelOverTLS(t *testing.T) {
	t.Parallel()
	primary, files := redistest.TLSServer(t)
	sentinel := redistest.Sentinel(t, primary, "state", &files)
	h := start(t, redisLimitConfig(`{tls: true, tls_ca_file: "`+files.CAFile+`", sentinel: {master_name: state, addrs: ["`+sentinel+`"]}}`), Options{})
	if a, b := sendTo(h, "+14155550104"), sendTo(h, "+14155550104"); a.Status != 200 || b.Status != 429 || errCode(b) != "rate_limited" {
		t.Errorf("got %d then %d %s, want 200 then 429 rate_limited", a.Status, b.Status, b.Raw)
	}
	if logs := h.logs.String(); strings.Contains(logs, "unreachable") {
		t.Errorf("the start did not reach Redis: %s", logs)
	}
}

// sentinelSetup starts a primary, its replica and a Sentinel watching them under the name
// "state", waits until the Sentinel sees the replica copying the primary, starts a gateway that
// finds its Redis through the Sentinel (redisLimitConfig), and takes the limit of +14155550104
// (a send, then a refusal), then waits until the replica holds all the primary wrote
// (replication is asynchronous: a failover or a crash before that would lose the limit, and the
// tests check that it holds after). It returns the gateway, the replica's address, a client of
// the Sentinel and the function that kills the primary.
func sentinelSetup(t *testing.T) (h *harness, primary, replica string, sentinel *redis.SentinelClient, kill func()) {
	t.Helper()
	primary, kill = redistest.Server(t)
	replica = redistest.Replica(t, primary)
	addr := redistest.Sentinel(t, primary, "state", nil)
	sentinel = redis.NewSentinelClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { sentinel.Close() })
	waitFor(t, 20*time.Second, "the Sentinel sees the replica copying the primary", func() bool {
		rs, _ := sentinel.Replicas(context.Background(), "state").Result()
		return len(rs) == 1 && rs[0]["master-link-status"] == "ok"
	})
	h = start(t, redisLimitConfig(`{sentinel: {master_name: state, addrs: ["`+addr+`"]}}`), Options{})
	if a, b := sendTo(h, "+14155550104"), sendTo(h, "+14155550104"); a.Status != 200 || b.Status != 429 {
		t.Fatalf("through the Sentinel: %d then %d %s, want 200 then 429", a.Status, b.Status, b.Raw)
	}
	// And the state is in the primary the Sentinel names, not in some other Redis.
	c := redis.NewClient(&redis.Options{Addr: primary})
	defer c.Close()
	if n, err := c.DBSize(context.Background()).Result(); err != nil || n == 0 {
		t.Fatalf("the primary holds %d keys (%v)", n, err)
	}
	wrote := replOffset(t, c, "master_repl_offset")
	r := redis.NewClient(&redis.Options{Addr: replica})
	defer r.Close()
	waitFor(t, 10*time.Second, "the replica holds what the primary wrote", func() bool {
		return replOffset(t, r, "slave_repl_offset") >= wrote
	})
	return h, primary, replica, sentinel, kill
}

// replOffset reads a replication offset (field of INFO replication) from c.
func replOffset(t *testing.T, c *redis.Client, field string) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		t.Fatalf("INFO replication: %v", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO replication: %s: %q", field, v)
			}
			return n
		}
	}
	t.Fatalf("INFO replication has no %s: %s", field, info)
	return 0
}

// TestRedisThroughSentinelSurvivesAPrimaryCrash: the primary dies (killed, not failed over by
// request). The Sentinel notices after down-after-milliseconds (1 s here) and promotes the
// replica; meanwhile sends meet on_error (closed here: refused, 503), and once the replica is
// the primary they go through it again, with the limits taken before the crash. The test logs
// how long sends were refused.
func TestRedisThroughSentinelSurvivesAPrimaryCrash(t *testing.T) {
	t.Parallel()
	h, _, _, _, kill := sentinelSetup(t)
	crashed := time.Now()
	kill()
	refused, lastRefused := 0, time.Duration(0)
	waitFor(t, 30*time.Second, "a send goes through the promoted replica", func() bool {
		r := sendTo(h, fmt.Sprintf("+1415555%04d", 3000+refused))
		if r.Status == 200 {
			return true
		}
		if r.Status != 503 || errCode(r) != "policy_unavailable" {
			t.Fatalf("a send while the primary was down: %d %s, want 503 policy_unavailable", r.Status, r.Raw)
		}
		refused, lastRefused = refused+1, time.Since(crashed)
		time.Sleep(20 * time.Millisecond)
		return false
	})
	t.Logf("after the crash, sends were refused for %v (%d of them); the first through the promoted replica came %v after it",
		lastRefused.Round(time.Millisecond), refused, time.Since(crashed).Round(time.Millisecond))
	if r := sendTo(h, "+14155550104"); r.Status != 429 {
		t.Errorf("the limit taken before the crash: %d %s, want 429", r.Status, r.Raw)
	}
}

// TestRedisThroughSentinelFollowsAFailover: with state.redis.sentinel, the gateway finds the
// primary through Redis Sentinel and, when the Sentinel fails it over to its replica, follows:
// sends go on through the failover and after it (on_error closed: none is sent unchecked; the
// test logs how many were refused), the limits taken before the failover still hold, and new
// ones are kept by the new primary.
func TestRedisThroughSentinelFollowsAFailover(t *testing.T) {
	t.Parallel()
	h, primary, replica, sentinel, _ := sentinelSetup(t)
	ctx := context.Background()
	old := redis.NewClient(&redis.Options{Addr: primary})
	defer old.Close()
	failedOver := time.Now()
	if err := sentinel.Failover(ctx, "state").Err(); err != nil {
		t.Fatal(err)
	}
	// Sends go on through the failover, one every 20 ms, each to a new recipient, until one
	// made after the Sentinel named the replica the primary and the old primary became a
	// replica goes through: it can only have been checked on the new primary. (A send between
	// the two could still be taken by the old primary, whose writes its demotion then drops: a
	// rate-limit charge lost in a failover, which Redis's asynchronous replication allows.) With
	// on_error closed, a send that meets the switch is refused (503) rather than sent unchecked.
	sent, refused, moved, demoted := 0, 0, false, false
	waitFor(t, 20*time.Second, "a send goes through the new primary", func() bool {
		if !moved {
			a, _ := sentinel.GetMasterAddrByName(ctx, "state").Result()
			moved = len(a) == 2 && net.JoinHostPort(a[0], a[1]) == replica
		}
		if moved && !demoted {
			role, _ := old.Do(ctx, "ROLE").Slice()
			demoted = len(role) > 0 && role[0] == "slave"
		}
		done := moved && demoted
		r := sendTo(h, fmt.Sprintf("+1415555%04d", 2000+sent+refused))
		if r.Status == 200 {
			sent++
		} else {
			refused++
		}
		time.Sleep(20 * time.Millisecond)
		return done && r.Status == 200
	})
	t.Logf("the failover took %v: %d sends went through during it, %d were refused", time.Since(failedOver).Round(time.Millisecond), sent, refused)
	if r := sendTo(h, "+14155550105"); r.Status != 200 {
		t.Fatalf("a send after the failover: %d %s", r.Status, r.Raw)
	}
	if r := sendTo(h, "+14155550105"); r.Status != 429 {
		t.Errorf("the limit taken on the new primary: %d %s, want 429", r.Status, r.Raw)
	}
	if r := sendTo(h, "+14155550104"); r.Status != 429 {
		t.Errorf("the limit taken before the failover: %d %s, want 429", r.Status, r.Raw)
	}
	newPrimary := redis.NewClient(&redis.Options{Addr: replica})
	defer newPrimary.Close()
	n, err := newPrimary.DBSize(ctx).Result()
	if err != nil || n == 0 {
		t.Errorf("the new primary holds %d keys (%v)", n, err)
	}
}

// TestADSNListingSeveralHosts: a DSN may list several hosts (a primary and its standbys, as
// config.md shows); the gateway connects to the first that answers and takes writes, here the
// second, the first refusing connections, and migrates, writes and reads through it.
func TestADSNListingSeveralHosts(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// Port 1 (tcpmux) is served nowhere and needs privileges to bind; a port taken with ":0" and
	// released could be taken again by any other test's listener.
	const dead = "127.0.0.1:1"
	q := u.Query()
	q.Set("target_session_attrs", "read-write")
	u.RawQuery = q.Encode()
	// url.URL holds one host; the DSN's hosts are a comma-separated list in its place.
	hosts := dead + "," + u.Host
	u.Host = "HOSTS"
	h := startOnPostgres(t, strings.Replace(u.String(), "HOSTS", hosts, 1))
	if logs := h.logs.String(); strings.Contains(logs, "unreachable") {
		t.Errorf("the start did not reach the second host: %s", logs)
	}
	waitWritten(t, h, sendOne(t, h, "a send through the second host"))
}

// TestAReplicaStartsWhilePostgresHasNoPrimary: a PostgreSQL that takes no writes at start does not
// stop it: the replica serves, the record waits, and once a server takes writes again it is
// written. Here a database whose sessions are read-only stands for a standby (it is what pgx's
// check and the migrations see of one), reached two ways: by a DSN that asks for a server taking
// writes (target_session_attrs=read-write, as one listing a primary and its standbys does, every
// host a standby while a failover is under way), and by one that does not (a name the failover has
// not moved yet), whose migration is refused as read-only.
func TestAReplicaStartsWhilePostgresHasNoPrimary(t *testing.T) {
	t.Parallel()
	for _, attrs := range []string{"read-write", ""} {
		t.Run("target_session_attrs="+attrs, func(t *testing.T) {
			dsn := pgtest.OwnDatabase(t)
			u, err := url.Parse(dsn)
			if err != nil {
				t.Fatal(err)
			}
			db := strings.TrimPrefix(u.Path, "/")
			if db == "test" {
				t.Skip("no database of its own to make read-only")
			}
			admin, err := pgx.Connect(context.Background(), pgtest.BaseDSN())
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close(context.Background())
			if _, err := admin.Exec(context.Background(), "ALTER DATABASE "+db+" SET default_transaction_read_only = on"); err != nil {
				t.Fatal(err)
			}
			if attrs != "" {
				q := u.Query()
				q.Set("target_session_attrs", attrs)
				u.RawQuery = q.Encode()
			}
			h := startOnPostgres(t, u.String())
			if !strings.Contains(h.logs.String(), "message log unreachable at start") {
				t.Errorf("the start did not say the message log was unreachable: %s", h.logs.String())
			}
			id := sendOne(t, h, "a send while no server takes writes")
			if _, err := admin.Exec(context.Background(), "ALTER DATABASE "+db+" RESET default_transaction_read_only"); err != nil {
				t.Fatal(err)
			}
			waitWritten(t, h, id)
		})
	}
}

// TestWritesMoveOffAServerThatBecameAStandby: the message log's connections were opened to a
// primary that then became a standby under them (a failover that kept it up), which refuses their
// writes as read-only (SQLSTATE 25006). Here a trigger refuses the writes of exactly those
// connections' backends, as that standby would, and lets new connections write, as the new
// primary would. A record sent then is written once the writer has dropped the refused connection
// for a new one (had it kept the connection, it would have retried on it for its lifetime, an
// hour, and the test would time out), and the reads' connections to the standby are closed too.
func TestWritesMoveOffAServerThatBecameAStandby(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("smsgate-standby-%d", time.Now().UnixNano())
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	h := startOnPostgres(t, u.String())
	waitWritten(t, h, sendOne(t, h, "a send to the primary"))

	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for _, stmt := range []string{
		`CREATE TABLE standby_backends (pid int PRIMARY KEY)`,
		`CREATE FUNCTION refuse_as_standby() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF EXISTS (SELECT 1 FROM standby_backends WHERE pid = pg_backend_pid()) THEN
				RAISE EXCEPTION 'cannot execute % in a read-only transaction', TG_OP USING ERRCODE = '25006';
			END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER refuse_as_standby BEFORE INSERT OR UPDATE ON messages FOR EACH ROW EXECUTE FUNCTION refuse_as_standby()`,
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	tag, err := admin.Exec(ctx, `INSERT INTO standby_backends SELECT pid FROM pg_stat_activity WHERE application_name = $1`, name)
	if err != nil || tag.RowsAffected() == 0 {
		t.Fatalf("no connection of the gateway's to make a standby's (%v)", err)
	}
	waitWritten(t, h, sendOne(t, h, "a send after the failover"))
	// The standby refused the write first (else the test proved nothing).
	if n := testutil.ToFloat64(h.app.MetricSet().LogWrites.WithLabelValues("error")); n == 0 {
		t.Error("no write was refused: the writer's connection was not among the standby's")
	}
	// Reads leave the standby too: none of the connections open to it is left.
	waitFor(t, 5*time.Second, "the connections to the standby are closed", func() bool {
		var open int
		err := admin.QueryRow(ctx, `SELECT count(*) FROM standby_backends s JOIN pg_stat_activity a ON a.pid = s.pid`).Scan(&open)
		return err == nil && open == 0
	})
	if g := h.do("GET", "/v1/messages?limit=5", "acme-key-0123456789", ""); g.Status != 200 {
		t.Errorf("a read after the failover: %d %s", g.Status, g.Raw)
	}
}

// TestTheMessageLogFollowsAPostgresFailover: a real primary and a standby streaming from it
// synchronously, the gateway's DSN naming both with target_session_attrs=read-write. Sends go on,
// one every 10 ms, while the primary dies (killed) and, a second later, the standby is promoted,
// as a failover manager would. Every send answered, before, during and after, is in the new
// primary's log in the end: those answered while no server took writes waited in the retry
// buffer. The test logs how long after the promotion they were written.
func TestTheMessageLogFollowsAPostgresFailover(t *testing.T) {
	t.Parallel()
	primary, standby := pgtest.Pair(t, true)
	dsn := "postgres://postgres@127.0.0.1:" + primary.Port + ",127.0.0.1:" + standby.Port + "/postgres?sslmode=disable&target_session_attrs=read-write"
	h := startOnPostgres(t, dsn)
	var (
		mu        sync.Mutex
		ids       []string
		inBetween []string // answered while no server took writes
		between   bool
	)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			r := h.send("acme-key-0123456789", fmt.Sprintf(`{"recipient":"+1415555%04d","text":"Your code is 246810","context":{}}`, i))
			if r.Status != 200 {
				t.Errorf("send %d during the failover: %d %s", i, r.Status, r.Raw)
				continue
			}
			mu.Lock()
			ids = append(ids, r.Body["id"].(string))
			if between {
				inBetween = append(inBetween, r.Body["id"].(string))
			}
			mu.Unlock()
		}
	}()
	setBetween := func(b bool) { mu.Lock(); between = b; mu.Unlock() }
	time.Sleep(time.Second)
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	setBetween(true)
	time.Sleep(time.Second)
	setBetween(false)
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:"+standby.Port+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	missing := func(ids []string) int {
		n := -1
		_ = conn.QueryRow(ctx, `SELECT count(*) FROM unnest($1::text[]) AS a(id) WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = a.id)`, ids).Scan(&n)
		return n
	}
	mu.Lock()
	waiting := slices.Clone(inBetween)
	mu.Unlock()
	waitFor(t, 30*time.Second, "the sends answered while no server took writes are in the new primary's log", func() bool { return missing(waiting) == 0 })
	written := time.Since(promoted)
	time.Sleep(time.Second)
	close(stop)
	<-done
	waitFor(t, 30*time.Second, "every answered send is in the new primary's log", func() bool { return missing(ids) == 0 })
	if len(waiting) == 0 {
		t.Fatal("no send was answered between the primary's death and the promotion")
	}
	// Reads follow too: the tenant reads a record of the outage through the new primary.
	if g := h.do("GET", "/v1/messages/"+waiting[0], "acme-key-0123456789", ""); g.Status != 200 || g.Body["id"] != waiting[0] {
		t.Errorf("a read after the failover: %d %s", g.Status, g.Raw)
	}
	t.Logf("%d sends answered, %d of them between the primary's death and the promotion (1 s); those were on the new primary %v after the promotion",
		len(ids), len(waiting), written.Round(time.Millisecond))
}

// TestARedisClusterOverTLS: with state.redis.cluster and state.redis.tls, the gateway reaches a
// Redis Cluster that takes TLS only (its bus too), the nodes it learns from the cluster as well as
// the one it was given: recipients' limits hold whichever node keeps them. Without the CA the
// certificate is refused and so are sends (on_error closed).
func TestARedisClusterOverTLS(t *testing.T) {
	t.Parallel()
	nodes, files := redistest.TLSCluster(t, 3)
	cluster := `cluster: {addrs: ["` + nodes[0] + `"]}, tls: true`
	h := start(t, redisLimitConfig(`{`+cluster+`, tls_ca_file: "`+files.CAFile+`"}`), Options{})
	for i := range 6 { // six recipients: their buckets fall on more than the node it was given
		to := fmt.Sprintf("+1415555%04d", 400+i)
		if a, b := sendTo(h, to), sendTo(h, to); a.Status != 200 || b.Status != 429 || errCode(b) != "rate_limited" {
			t.Errorf("%s: %d then %d %s, want 200 then 429 rate_limited", to, a.Status, b.Status, b.Raw)
		}
	}
	if logs := h.logs.String(); strings.Contains(logs, "unreachable") {
		t.Errorf("the start did not reach the cluster: %s", logs)
	}
	tlsConfig, err := (config.RedisState{TLS: true, TLSCAFile: files.CAFile}).TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	holding := 0
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n, TLSConfig: tlsConfig})
		if k, err := c.DBSize(context.Background()).Result(); err == nil && k > 0 {
			holding++
		}
		c.Close()
	}
	if holding < 2 {
		t.Errorf("the limits are on %d of 3 nodes: the nodes the gateway learnt were not used", holding)
	}
	untrusted := start(t, redisLimitConfig(`{`+cluster+`}`), Options{})
	if r := sendTo(untrusted, "+14155550999"); r.Status != 503 || errCode(r) != "policy_unavailable" {
		t.Errorf("without the CA: %d %s, want 503 policy_unavailable", r.Status, r.Raw)
	}
}

// TestTheFullestNodeIsReported: on a Redis Cluster, the memory figures are those of the primary
// nearest its maxmemory (the first to evict), whatever the others hold, or of one without a
// maxmemory, which may grow until its host runs out.
func TestTheFullestNodeIsReported(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a, b stateMemory
		want bool // a is fuller than b
	}{
		{"nearer its maxmemory, though smaller", stateMemory{used: 90, max: 100}, stateMemory{used: 500, max: 1000}, true},
		{"further from it", stateMemory{used: 50, max: 100}, stateMemory{used: 900, max: 1000}, false},
		{"none beats a maxmemory", stateMemory{used: 1}, stateMemory{used: 99, max: 100}, true},
		{"a maxmemory is beaten by none", stateMemory{used: 99, max: 100}, stateMemory{used: 1}, false},
		{"without maxmemory: the bytes", stateMemory{used: 600}, stateMemory{used: 500}, true},
	} {
		if got := tc.a.fuller(&tc.b); got != tc.want {
			t.Errorf("%s: fuller = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestARedisClusterSurvivesAPrimaryCrash: on a Redis Cluster of three primaries, each with a
// replica, one primary dies (killed). The cluster notices after cluster-node-timeout (2 s here)
// and promotes its replica; meanwhile sends whose keys live there meet on_error (closed here:
// refused, 503), and the replica's breaker on the store may refuse the others for a second. Then
// sends go through again, with the limits taken before the crash. The test logs how long sends
// were refused. The client learns the new primary when a call fails: it used to wait for its
// minute's reload, and sends were refused for 30 s and more.
func TestARedisClusterSurvivesAPrimaryCrash(t *testing.T) {
	t.Parallel()
	primaries, replicas := redistest.ClusterWithReplicas(t, 3)
	var addrs []string
	for _, n := range append(primaries, replicas...) {
		addrs = append(addrs, `"`+n.Addr+`"`)
	}
	h := start(t, redisLimitConfig(`{cluster: {addrs: [`+strings.Join(addrs, ", ")+`]}}`), Options{})
	var taken []string
	for i := range 12 { // limits spread over the three primaries
		to := fmt.Sprintf("+1415555%04d", 100+i)
		if a, b := sendTo(h, to), sendTo(h, to); a.Status != 200 || b.Status != 429 {
			t.Fatalf("%s: %d then %d %s, want 200 then 429", to, a.Status, b.Status, b.Raw)
		}
		taken = append(taken, to)
	}
	time.Sleep(100 * time.Millisecond) // the replicas copy asynchronously
	crashed := time.Now()
	primaries[0].Kill()
	promoted := make(chan time.Duration, 1)
	go func() { // when the cluster promotes the dead primary's replica
		c := redis.NewClient(&redis.Options{Addr: replicas[0].Addr})
		defer c.Close()
		for time.Since(crashed) < 30*time.Second {
			if role, err := c.Do(context.Background(), "ROLE").Slice(); err == nil && len(role) > 0 && role[0] == "master" {
				promoted <- time.Since(crashed)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		promoted <- -1
	}()
	refused, lastRefused, through, passed, n := 0, time.Duration(0), 0, 0, 0
	waitFor(t, 20*time.Second, "ten sends in a row go through after the crash", func() bool {
		n++
		r := sendTo(h, fmt.Sprintf("+1415555%04d", 3000+n))
		if r.Status == 200 {
			through, passed = through+1, passed+1
			return through >= 10
		}
		if r.Status != 503 || errCode(r) != "policy_unavailable" {
			t.Fatalf("a send while a primary was down: %d %s, want 503 policy_unavailable", r.Status, r.Raw)
		}
		through, refused, lastRefused = 0, refused+1, time.Since(crashed)
		time.Sleep(20 * time.Millisecond)
		return false
	})
	t.Logf("after the crash, sends were refused for %v (%d of them, %d went through meanwhile); the cluster promoted the replica %v after it (cluster-node-timeout 2 s)",
		lastRefused.Round(time.Millisecond), refused, passed-10, (<-promoted).Round(time.Millisecond))
	for _, to := range taken {
		if r := sendTo(h, to); r.Status != 429 {
			t.Errorf("the limit of %s taken before the crash: %d %s, want 429", to, r.Status, r.Raw)
		}
	}
}

// TestAReplicaStoppedDuringAPostgresOutageHandsItsRecordsOver: a replica answers sends while
// PostgreSQL is down, so their records wait in its memory, and is stopped before the database
// comes back (a rolling upgrade during the outage). Its records are handed over through Redis
// instead of dropped (the number masked, the code nowhere), and a replica whose database works
// takes them and writes them, once each though two take the list together; the list never expires
// (an evicting Redis would evict it). An entry not signed under state.key_secret (anything else
// that can write to Redis could add records for any tenant) and a chunk of a format this build
// cannot read are left in it, unwritten.
func TestAReplicaStoppedDuringAPostgresOutageHandsItsRecordsOver(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Server(t)
	dsn, up := pgtest.Unreachable(t)
	o := Options{adoptEvery: 100 * time.Millisecond} // looks often
	cfg := fmt.Sprintf(`
storage: {driver: postgres, dsn: %q, commit_timeout: 50ms}
state: {driver: redis, redis: {addr: %q, key_prefix: "ho:"}, key_secret: "e2e-key-secret-0123456789"}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, dsn, addr)
	a := start(t, cfg, o)
	var ids []string
	for _, to := range []string{"+14155550101", "+14155550102", "+14155550103"} {
		r := a.send("acme-key-0123456789", `{"recipient":"`+to+`","text":"Your code is 246810","context":{}}`)
		if r.Status != 200 {
			t.Fatalf("a send with the message log down: %d %s", r.Status, r.Raw)
		}
		ids = append(ids, r.Body["id"].(string))
	}
	if err := a.app.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := testutil.ToFloat64(a.app.MetricSet().LogHandedOver.WithLabelValues("out")); out != 3 {
		t.Errorf("smsgate_message_log_handed_over_total{direction=out} = %v, want 3", out)
	}
	if d := testutil.ToFloat64(a.app.MetricSet().LogDropped); d != 0 {
		t.Errorf("%v records dropped at shutdown", d)
	}
	if !strings.Contains(a.logs.String(), "message log writes handed over to another replica") {
		t.Errorf("the hand-over was not logged: %s", a.logs.String())
	}
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	ctx := context.Background()
	chunks := rc.LRange(ctx, "ho:log-handoff", 0, -1).Val()
	if len(chunks) != 1 {
		t.Fatalf("%d chunks handed over, want 1", len(chunks))
	}
	for _, secret := range []string{"4155550101", "246810"} {
		if strings.Contains(chunks[0], secret) {
			t.Errorf("the handed-over records hold %q", secret)
		}
	}
	// No expiry: volatile-lru evicts only keys that expire.
	if ttl := rc.PTTL(ctx, "ho:log-handoff").Val(); ttl != -1 {
		t.Errorf("the hand-over list expires in %v", ttl)
	}
	// A replica that has not reached its own database takes nothing: the chunk would only wait in
	// its memory too (and push out that replica's own records when its buffer fills).
	early := start(t, cfg, o)
	time.Sleep(5 * o.adoptEvery)
	if n := early.app.store.Backlog(); n != 0 {
		t.Errorf("a replica that has not reached its database took %d handed-over writes into its memory", n)
	}
	if got := rc.LRange(ctx, "ho:log-handoff", 0, -1).Val(); !slices.Equal(got, chunks) {
		t.Errorf("the list while no replica reached the database: %d entries, want the chunk handed over", len(got))
	}
	if err := early.app.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := testutil.ToFloat64(early.app.MetricSet().LogHandedOver.WithLabelValues("out")); out != 0 {
		t.Errorf("a replica that sent nothing handed %v writes over at shutdown", out)
	}
	// Entries a replica must not write, left in the list: the records signed under another
	// state.key_secret (or by anything else that can write to Redis), and a chunk of a format this
	// build cannot read (a newer build's, mid-upgrade).
	real := chunks[0]
	sign := func(chunk string) string {
		sig := a.app.rt.Load().mac("log-handoff", chunk)
		return string(sig[:]) + chunk
	}
	if sign(real[32:]) != real {
		t.Fatal("the handed-over chunk is not signed under state.key_secret")
	}
	// An entry shorter than a signature is not signed either (it must not stop the replica).
	if _, ok := a.app.signed([]byte("short")); ok {
		t.Error("an entry shorter than a signature counts as signed")
	}
	forged, newer := strings.Repeat("x", 32)+real[32:], sign("\x02a newer build's chunk")
	rc.Del(ctx, "ho:log-handoff")
	rc.RPush(ctx, "ho:log-handoff", forged, "short")
	rc.ConfigResetStat(ctx)

	up()
	b, c := start(t, cfg, o), start(t, cfg, o)
	left := func() []string { return rc.LRange(ctx, "ho:log-handoff", 0, -1).Val() }
	waitFor(t, 5*time.Second, "both replicas to meet an entry they leave", func() bool {
		return strings.Contains(b.logs.String(), "left for another replica") && strings.Contains(c.logs.String(), "left for another replica")
	})
	time.Sleep(5 * o.adoptEvery)
	// A list holding only entries a replica leaves is looked at once a look, not read in a loop.
	if n := redisCalls(t, rc, "lindex"); n > 40 {
		t.Errorf("%d reads of the list's entries in about seven looks of two replicas", n)
	}
	rc.LInsert(ctx, "ho:log-handoff", "AFTER", forged, newer)
	// Met at every look, the entries left are logged once a minute, not at each look.
	if n := strings.Count(b.logs.String(), "left for another replica"); n != 1 {
		t.Errorf("the entries left were logged %d times in five looks, want once", n)
	}
	if g := b.do("GET", "/v1/messages/"+ids[0], "acme-key-0123456789", ""); g.Status != 404 {
		t.Errorf("a record of an entry signed under another secret was written: %d %s", g.Status, g.Raw)
	}
	if !slices.Equal(left(), []string{forged, newer, "short"}) {
		t.Errorf("the entries not written did not stay in the list")
	}
	waitFor(t, 5*time.Second, "smsgate_message_log_handoff_waiting_chunks to count the 3 left", func() bool {
		return testutil.ToFloat64(b.app.MetricSet().LogHandOffWaiting) == 3
	})
	// The newer build's chunk, met at the looks that follow, is left like the others: logged once
	// a minute, not once a look as a write that failed.
	time.Sleep(5 * o.adoptEvery)
	if l := b.logs.String() + c.logs.String(); strings.Contains(l, "not written yet") {
		t.Error("a chunk of a newer format was logged as a write that failed")
	}

	// The chunk as handed over: the two replicas take it together, and each record is written
	// once (a chunk both wrote is written twice, harmlessly).
	rc.RPush(ctx, "ho:log-handoff", real)
	for _, id := range ids {
		waitWritten(t, b, id)
	}
	waitFor(t, 5*time.Second, "the written chunk to leave the list", func() bool { return slices.Equal(left(), []string{forged, newer, "short"}) })
	in := func(h *harness) float64 {
		return testutil.ToFloat64(h.app.MetricSet().LogHandedOver.WithLabelValues("in"))
	}
	if n := in(b) + in(c); n != 3 && n != 6 {
		t.Errorf("smsgate_message_log_handed_over_total{direction=in} = %v and %v, want 3 between them (6 had both written the chunk)", in(b), in(c))
	}
	if r := c.do("GET", "/v1/messages?limit=10", "acme-key-0123456789", ""); r.Status != 200 || len(r.Body["messages"].([]any)) != 3 {
		t.Errorf("the log after the hand-over: %d %s", r.Status, r.Raw)
	}
	rc.Del(ctx, "ho:log-handoff")
}

// TestACallWhoseAPILimitCannotBeCheckedGoesThrough: with Redis down, a tenant's call other than a
// send (reading its messages) whose rate_limits.api cannot be checked goes through, as documented,
// and the failure is counted: an outage of the state store must not take the reads away too.
func TestACallWhoseAPILimitCannotBeCheckedGoesThrough(t *testing.T) {
	t.Parallel()
	addr, stop := redistest.Server(t)
	h := start(t, fmt.Sprintf(`
storage: {driver: memory}
state: {driver: redis, redis: {addr: %q, key_prefix: "api:"}, key_secret: "e2e-key-secret-0123456789"}
tenants: [{name: acme, api_key: acme-key, rate_limits: {api: 5/1h}}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, addr), Options{})
	stop()
	if r := h.do("GET", "/v1/messages", "acme-key", ""); r.Status != 200 {
		t.Errorf("a read whose api limit Redis cannot check: %d %s, want 200", r.Status, r.Raw)
	}
	if n := testutil.ToFloat64(h.app.MetricSet().StateErrors.WithLabelValues("rate_limit")); n < 1 {
		t.Errorf("smsgate_state_errors_total{op=rate_limit} = %v, want the failed check counted", n)
	}
}

// TestAReplicaWhoseOwnWritesWaitTakesNoHandedOverWrites: a replica whose database stopped
// answering, its own records waiting in its memory, leaves the writes handed over in the list
// while it does: taken in, they would wait beside its own, and a buffer they fill pushes out its
// oldest records. Once its database answers, it writes its own and then takes the list's.
func TestAReplicaWhoseOwnWritesWaitTakesNoHandedOverWrites(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Server(t)
	dsn, stall := pgtest.Stalling(t)
	o := Options{adoptEvery: 100 * time.Millisecond, adoptWriteFor: time.Second} // looks often, waits less
	cfg := fmt.Sprintf(`
server: {request_timeout: 500ms}
storage: {driver: postgres, dsn: %q, commit_timeout: 50ms, write_timeout: 300ms}
state: {driver: redis, redis: {addr: %q, key_prefix: "wait:"}, key_secret: "e2e-key-secret-0123456789"}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m, type: mock}]
routes: [{name: d, providers: [m]}]
`, dsn, addr)
	leaving, staying := start(t, cfg, o), start(t, cfg, o)
	defer stall(false) // before the harnesses stop
	stall(true)
	send := func(h *harness, to string) string {
		t.Helper()
		r := h.send("acme-key-0123456789", `{"recipient":"`+to+`","text":"Your code is 246810","context":{}}`)
		if r.Status != 200 {
			t.Fatalf("a send with the message log stalled: %d %s", r.Status, r.Raw)
		}
		return r.Body["id"].(string)
	}
	handed, own := send(leaving, "+14155550101"), send(staying, "+14155550102")
	waitFor(t, 5*time.Second, "both records to wait for another try", func() bool {
		return leaving.app.store.Backlog() == 1 && staying.app.store.Backlog() == 1
	})
	if err := leaving.app.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	ctx := context.Background()
	if n := rc.LLen(ctx, "wait:log-handoff").Val(); n != 1 {
		t.Fatalf("%d chunks handed over, want 1", n)
	}
	chunk := rc.LIndex(ctx, "wait:log-handoff", 0).Val()
	rc.ConfigResetStat(ctx)
	time.Sleep(5 * o.adoptEvery)
	if n := redisCalls(t, rc, "lindex"); n != 0 {
		t.Errorf("the replica whose own record waits read %d of the list's entries to take them", n)
	}
	if n := staying.app.store.Backlog(); n != 1 {
		t.Errorf("the replica whose own record waits holds %d writes, want its own only", n)
	}
	if n := rc.LLen(ctx, "wait:log-handoff").Val(); n != 1 {
		t.Errorf("%d chunks in the list while the database stalls, want the one handed over", n)
	}
	stall(false)
	waitWritten(t, staying, own)
	waitWritten(t, staying, handed)
	waitFor(t, 5*time.Second, "the list to be emptied", func() bool { return rc.Exists(ctx, "wait:log-handoff").Val() == 0 })
	if in := testutil.ToFloat64(staying.app.MetricSet().LogHandedOver.WithLabelValues("in")); in != 1 {
		t.Errorf("smsgate_message_log_handed_over_total{direction=in} = %v, want 1", in)
	}

	// A replica whose database stops answering while it writes a chunk it took leaves the chunk
	// in the list: its writes wait in this replica's memory only, which a kill would lose. (The
	// chunk is the one written above, handed over again: written twice, harmlessly.)
	stall(true)
	rc.RPush(ctx, "wait:log-handoff", chunk)
	waitFor(t, 5*time.Second, "the replica to take the chunk and its writes not to commit (it waits adoptWriteFor, 1 s, for them)", func() bool {
		return strings.Contains(staying.logs.String(), "not written yet, left in the list")
	})
	time.Sleep(3 * o.adoptEvery)
	if got := rc.LRange(ctx, "wait:log-handoff", 0, -1).Val(); !slices.Equal(got, []string{chunk}) {
		t.Errorf("the list once the chunk's writes did not commit: %d entries, want the chunk", len(got))
	}
	stall(false)
	waitFor(t, 5*time.Second, "the list to be emptied once the database answers", func() bool { return rc.Exists(ctx, "wait:log-handoff").Val() == 0 })
}

// TestAFloodOfIdempotencyKeysInRedisEvictsOnlyItsOwn: with the state in Redis, a tenant sending
// under ever new Idempotency-Keys kept a record a send for idempotency.ttl, as much of the memory
// every tenant's state shares as its rate allowed, and a Redis that filled evicted any tenant's
// keys. Each tenant keeps at most state.redis.max_idempotency_records_per_tenant now: past it,
// the flood loses its own oldest, and the quiet tenant's retries still replay.
func TestAFloodOfIdempotencyKeysInRedisEvictsOnlyItsOwn(t *testing.T) {
	t.Parallel()
	client := redistest.Start(t)
	cfg := `
storage: {driver: memory}
state: {driver: redis, redis: {addr: "` + client.Options().Addr + `", key_prefix: "` + redistest.Prefix(t) + `", max_idempotency_records_per_tenant: 10}, key_secret: "e2e-key-secret-0123456789"}
log: {error_lines_per_second: 100}
policy: {rate_limits: {per_recipient: 0, per_ip: 0, per_tenant: 0}, resend_escalation: {enabled: false}}
tenants: [{name: quiet, api_key: quiet-key}, {name: flood, api_key: flood-key}]
providers: [{name: m, type: mock, latency: 0s}]
routes: [{name: d, providers: [m]}]
`
	h := start(t, cfg, Options{})
	sent := func() float64 { return testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("m", "sent")) }
	body := func(i int) string {
		return fmt.Sprintf(`{"message_options":{"recipient":"+1415555%04d","text":"Your code is %06d","code":"%06d"}}`, i, i, i)
	}
	var quiet []response
	for i := range 5 {
		quiet = append(quiet, h.send("quiet-key", body(9000+i), "Idempotency-Key", fmt.Sprint("notif-", i)))
	}
	for i := range 30 {
		if r := h.send("flood-key", body(i), "Idempotency-Key", fmt.Sprint("flood-", i)); r.Status != 200 {
			t.Fatalf("flood send %d: %d %s", i, r.Status, r.Raw)
		}
	}
	before := sent()
	for i, first := range quiet {
		if r := h.send("quiet-key", body(9000+i), "Idempotency-Key", fmt.Sprint("notif-", i)); r.Status != 200 || r.Body["id"] != first.Body["id"] {
			t.Errorf("quiet retry %d after the flood: %d %v, want the first answer %v", i, r.Status, r.Body["id"], first.Body["id"])
		}
	}
	if r := h.send("flood-key", body(29), "Idempotency-Key", "flood-29"); r.Status != 200 || sent() != before {
		t.Errorf("the flood's newest key: %d, %v sends, want a replay", r.Status, sent()-before)
	}
	if r := h.send("flood-key", body(0), "Idempotency-Key", "flood-0"); r.Status != 200 || sent() != before+1 {
		t.Errorf("the flood's oldest key: %d, %v sends, want it evicted (sent again)", r.Status, sent()-before)
	}
	m := h.app.MetricSet().ReplaysEvicted
	if flood, q := testutil.ToFloat64(m.WithLabelValues("flood")), testutil.ToFloat64(m.WithLabelValues("quiet")); flood != 21 || q != 0 {
		t.Errorf("smsgate_idempotency_records_evicted_total: flood %v, quiet %v; want 21 (31 records, 10 kept) and 0", flood, q)
	}
	logs := h.logs.String()
	msg := `"msg":"idempotency records evicted before their ttl: the tenant reached state.redis.max_idempotency_records_per_tenant, its oldest went"`
	if !strings.Contains(logs, msg+`,"tenant":"flood"`) || strings.Contains(logs, msg+`,"tenant":"quiet"`) {
		t.Errorf("want warnings naming the flood only:\n%s", logs)
	}
	// A replica keeping 3 (a rollout that lowers the bound): its first record of the flood's
	// evicts 8 at once (10 held and 1 new, 3 kept), each of them counted.
	b := start(t, strings.Replace(cfg, "max_idempotency_records_per_tenant: 10", "max_idempotency_records_per_tenant: 3", 1), Options{})
	if r := b.send("flood-key", body(100), "Idempotency-Key", "flood-100"); r.Status != 200 {
		t.Fatalf("a send through the replica keeping 3: %d %s", r.Status, r.Raw)
	}
	if n := testutil.ToFloat64(b.app.MetricSet().ReplaysEvicted.WithLabelValues("flood")); n != 8 {
		t.Errorf("the replica keeping 3 counted %v evicted, want 8", n)
	}
	if !strings.Contains(b.logs.String(), msg+`,"tenant":"flood","records":8`) {
		t.Errorf("want one warning of 8 records:\n%s", b.logs)
	}
}

// TestAnOldRedisStopsTheStart: smsgate's scripts need Redis 5.0 or later. On an older one every
// limit check would fail, and state.on_error decide every send (with open, no limit at all): the
// start says so instead. The server here answers as Redis 4.0 does: no HELLO, PING and INFO.
func TestAnOldRedisStopsTheStart(t *testing.T) {
	t.Parallel()
	addr := fakeRedis(t, func(args []string) string { // as Redis 4.0.14 answers what a client sends at connect
		switch strings.ToUpper(args[0]) {
		case "PING":
			return "+PONG\r\n"
		case "INFO":
			body := "# Server\r\nredis_version:4.0.14\r\nredis_mode:standalone\r\n"
			return fmt.Sprintf("$%d\r\n%s\r\n", len(body), body)
		}
		return fmt.Sprintf("-ERR unknown command '%s'\r\n", args[0])
	})
	_, err := New(context.Background(), Options{ConfigPath: writeConfig(t, strings.NewReplacer("$REDIS", addr, "$ONERROR", "open").Replace(replicaConfig))})
	if err == nil || !strings.Contains(err.Error(), "Redis 4.0.14 is older than 5.0") {
		t.Errorf("a start on Redis 4.0: err = %v", err)
	}
	for info, old := range map[string]bool{"# Server\r\nredis_version:4.0.14\r\n": true, "redis_version:7.0.15\r\nredis_mode:standalone\r\n": false,
		"redis_version:5.0.0\r\n": false, "# Server\r\n": false} {
		if _, got := redisTooOld(info); got != old {
			t.Errorf("redisTooOld(%q) = %v, want %v", info, got, old)
		}
	}
}

// TestReplicasWithSkewedClocksAgreeOnTime: resend memory and pumping's hourly counters are
// stamped and read on Redis's clock, not each replica's. A code sent twice in a second, a double
// click, through two replicas whose clocks are 45 s apart starts both times at the first
// provider; on their own clocks the second replica saw a resend 45 s later and moved it to the
// next provider. A replica two hours ahead counted its sends in an hour no other replica reads.
func TestReplicasWithSkewedClocksAgreeOnTime(t *testing.T) {
	t.Parallel()
	if left := time.Until(time.Now().Truncate(time.Hour).Add(time.Hour)); left < 5*time.Second {
		time.Sleep(left + 100*time.Millisecond) // all three sends within one hour of Redis's clock
	}
	client := redistest.Start(t)
	prefix := redistest.Prefix(t)
	cfg := `
storage: {driver: memory}
state: {driver: redis, redis: {addr: "` + client.Options().Addr + `", key_prefix: "` + prefix + `"}, key_secret: "e2e-key-secret-0123456789"}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key}]
providers: [{name: first, type: mock}, {name: second, type: mock}]
routes: [{name: d, providers: [first, second]}]
`
	a := start(t, cfg, Options{})
	b := start(t, cfg, Options{ReplicaClock: func() time.Time { return time.Now().Add(45 * time.Second) }})
	body := `{"recipient":"+14155550104","text":"Your code is 424242","context":{"code":"424242"}}`
	if r := a.send("acme-key", body); r.Body["provider"] != "first" {
		t.Fatalf("first send via %v: %s", r.Body["provider"], r.Raw)
	}
	if r := b.send("acme-key", body); r.Body["provider"] != "first" {
		t.Errorf("the double click on the replica 45 s ahead went via %v, want first (not a resend)", r.Body["provider"])
	}
	// Pumping's hourly counters: a replica two hours ahead counts its send in the hour the others do.
	c := start(t, cfg, Options{ReplicaClock: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	if r := c.send("acme-key", strings.ReplaceAll(body, "424242", "135790")); r.Status != 200 {
		t.Fatalf("c: %d %s", r.Status, r.Raw)
	}
	hour := strconv.FormatInt(time.Now().Unix()/3600, 10)
	fields, err := client.HGetAll(context.Background(), prefix+"pump|t|acme").Result()
	if err != nil {
		t.Fatal(err)
	}
	for f, n := range fields {
		if strings.HasPrefix(f, "h:") && f != "h:"+hour && n != "0" {
			t.Errorf("pumping counts %s sends in hour %s, want them in the present hour %s: %v", n, f, hour, fields)
		}
	}
	if fields["h:"+hour] != "3" {
		t.Errorf("the present hour counts %q sends of the three replicas, want 3: %v", fields["h:"+hour], fields)
	}
}

// TestASkewedReplicaSharesTheHealthRead: the shared delivery-health window says when it is next
// due on Redis's clock, so a replica whose clock is 5 minutes ahead uses the window another has
// just read; on its own clock it found every window overdue and read the whole log again at each
// refresh, the read the sharing exists to spare.
func TestASkewedReplicaSharesTheHealthRead(t *testing.T) {
	t.Parallel()
	client := redistest.Start(t)
	cfg := fmt.Sprintf(`
storage: {driver: postgres, dsn: %q, commit_timeout: 5s}
state: {driver: redis, redis: {addr: %q, key_prefix: %q}, key_secret: "e2e-key-secret-0123456789"}
routing: {delivery_health: {window: 30m, min_samples: 4, refresh: 1m}}
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: m1, type: mock}, {name: m2, type: mock}]
routes: [{name: d, providers: [m1, m2]}]
`, pgtest.DSN(t), client.Options().Addr, redistest.Prefix(t))
	a := start(t, cfg, Options{})
	b := start(t, cfg, Options{ReplicaClock: func() time.Time { return time.Now().Add(5 * time.Minute) }})
	reads := func(h *harness) float64 {
		return testutil.ToFloat64(h.app.metrics.WindowReads.WithLabelValues("delivery_health", "ok"))
	}
	if err := a.app.refreshHealth(context.Background()); err != nil || reads(a) != 1 {
		t.Fatalf("a: %v, %v reads", err, reads(a))
	}
	if err := b.app.refreshHealth(context.Background()); err != nil || reads(b) != 0 {
		t.Errorf("the replica 5 minutes ahead, right after a's read: %v, %v reads of its own (want none: a's window is due in a minute)", err, reads(b))
	}
}

// redisCalls is how many times the Redis of rc ran command since its statistics were reset.
func redisCalls(t *testing.T, rc *redis.Client, command string) int {
	t.Helper()
	info, err := rc.InfoMap(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	stat := info["Commandstats"]["cmdstat_"+command] // calls=N,usec=...
	calls, _, _ := strings.Cut(strings.TrimPrefix(stat, "calls="), ",")
	n, _ := strconv.Atoi(calls)
	return n
}
