package policy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/smsgate/smsgate/gateway/config"
)

// Redis holds the policy state of several replicas in one Redis: rate-limit buckets, idempotency
// replays, resend memory and claims of requests in flight (SharedFlights). Keys start with Prefix
// and expire by themselves.
type Redis struct {
	// Client is the connection pool.
	Client redis.UniversalClient
	// Prefix starts every key, e.g. "smsgate:".
	Prefix string
	// Now is the clock of the rate limits, spend buckets and idempotency index, for tests. nil
	// (production) means Redis's own clock, read inside each script (TIME): every replica then
	// agrees on the time whatever its own clock says. With each replica's clock, one whose clock
	// ran ahead pushed every bucket it touched ahead by as much, and the other replicas refused
	// those buckets' sends (a tenant's, a recipient's) until their clocks caught up.
	Now func() time.Time
	// Breakers, when set, guard every call: while Redis is down, calls fail at once instead of
	// each spending a dial or a timeout of the send's budget. See NewBreakers.
	Breakers *Breakers
	// Cluster says Client is a Redis Cluster's: the keys named by a caller's Idempotency-Key then
	// carry a hash tag of their own digest (slotted), so that a caller cannot choose their node and
	// the one script that touches two keys finds both on one node (flightKeys).
	Cluster bool

	// MaxTenantReplays bounds the idempotency records one tenant keeps (Put): past it, the
	// tenant's own oldest go, so that one tenant sending under ever new keys cannot fill the
	// memory every tenant's state shares (maxmemory's evictions fall on any tenant's keys,
	// rate-limit buckets among them). 0: no bound.
	MaxTenantReplays int
	// OnReplaysEvicted, when set, hears of the records a tenant lost to MaxTenantReplays.
	OnReplaysEvicted func(tenant string, n int)

	// Local is the replica's own clock, which Clock corrects; nil means time.Now. For tests.
	Local func() time.Time

	// slotsKnown: a call to a cluster has succeeded, so its client holds a map of the slots (it
	// keeps the last one it read) and can name a key's primary without a round trip.
	slotsKnown atomic.Bool
	// offset is Redis's clock less the replica's, as last measured (Clock); measuring says a
	// caller is measuring it.
	offset    atomic.Pointer[clockOffset]
	measuring atomic.Bool
}

// clockOffset is Redis's clock less the replica's, measured at (the replica's clock).
type clockOffset struct {
	d  time.Duration
	at time.Time
}

// clockRefresh is how long a measured offset is used before it is measured again; clockTimeout
// bounds a measure.
const (
	clockRefresh = 10 * time.Second
	clockTimeout = time.Second
)

// redisTime reads Redis's clock on the node holding KEYS[1] (a cluster's primaries each have
// theirs, as each script reads its own).
var redisTime = redis.NewScript(`return redis.call('TIME')`)

func (r *Redis) local() time.Time {
	if r.Local != nil {
		return r.Local()
	}
	return time.Now()
}

// Clock is the time by Redis's clock, as this replica estimates it: its own clock plus the
// offset last measured (TIME, every clockRefresh; off by at most half the round trip), for what
// the replicas write with a time and then compare against another replica's time: resend memory
// and pumping detection's hourly counters and quarantines, which a script cannot stamp as the
// limits' scripts do. Until the thirty-fourth session each replica used its own clock there: one
// 30 s ahead of another took a double click sent to the other for a resend (one behind missed a
// real resend), and one an hour ahead wrote its sends into the next hour's counters. While Redis cannot be reached it keeps the last offset (none: the
// replica's clock). With Now set (tests), Now.
func (r *Redis) Clock() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	local := r.local()
	o := r.offset.Load()
	stale := o == nil || local.Sub(o.at) >= clockRefresh || local.Before(o.at)
	if stale && r.measuring.CompareAndSwap(false, true) { // one caller measures; the others go on
		o = r.measure(o)
		r.measuring.Store(false)
	}
	if o == nil {
		return local
	}
	return local.Add(o.d)
}

// measure reads Redis's clock and keeps its offset from the replica's, reckoned at the middle of
// the round trip; a measure that fails keeps prev's offset until the next refresh.
func (r *Redis) measure(prev *clockOffset) *clockOffset {
	ctx, cancel := context.WithTimeout(context.Background(), clockTimeout)
	defer cancel()
	k := r.Prefix + "clock"
	var t []any
	start := r.local()
	err := r.guard(ctx, k, func() (err error) {
		t, err = redisTime.Run(ctx, r.Client, []string{k}).Slice()
		return err
	})
	end := r.local()
	o := &clockOffset{at: end}
	if prev != nil {
		o.d = prev.d
	}
	if err == nil && len(t) == 2 {
		sec, e1 := strconv.ParseInt(fmt.Sprint(t[0]), 10, 64)
		usec, e2 := strconv.ParseInt(fmt.Sprint(t[1]), 10, 64)
		if e1 == nil && e2 == nil {
			o.d = time.Unix(sec, usec*1000).Sub(start.Add(end.Sub(start) / 2))
		}
	}
	r.offset.Store(o)
	return o
}

// Breakers guard the calls to the state store. One Redis (or Sentinel's primary) has one breaker.
// A Redis Cluster has one for each primary, the one holding the call's key: a primary that is
// down (until the cluster promotes its replica) then fails fast only the calls for the keys it
// holds, and sends whose keys live on the other primaries go on checked as before; with a single
// breaker, three failures in a row from the one node opened it for every send of every tenant.
// A pipeline over keys on several primaries counts against each of their breakers (guardKeys).
type Breakers struct {
	openFor time.Duration
	whole   *gobreaker.TwoStepCircuitBreaker[struct{}]
	mu      sync.RWMutex
	nodes   map[string]*gobreaker.TwoStepCircuitBreaker[struct{}] // by primary's address
}

// maxNodeBreakers bounds Breakers.nodes: a cluster's nodes take new addresses as they are
// replaced, and past this many the breakers of all are forgotten (and made anew as calls need
// them), which costs at most a few failed calls to a node still down.
const maxNodeBreakers = 256

// NewBreakers returns breakers that open after 3 failed calls in a row and probe again after
// openFor.
func NewBreakers(openFor time.Duration) *Breakers {
	return &Breakers{openFor: openFor, whole: newStateBreaker("redis", openFor), nodes: map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]{}}
}

func newStateBreaker(name string, openFor time.Duration) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{Name: name, Timeout: openFor,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 3 },
		IsSuccessful: answered,
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) }})
}

// answered reports whether a call's error says Redis answered it: none, or redis.Nil (no such key).
func answered(err error) bool { return err == nil || errors.Is(err, redis.Nil) }

// node is the breaker of the primary at addr.
func (b *Breakers) node(addr string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	b.mu.RLock()
	cb := b.nodes[addr]
	b.mu.RUnlock()
	if cb != nil {
		return cb
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if cb = b.nodes[addr]; cb == nil {
		if len(b.nodes) >= maxNodeBreakers {
			clear(b.nodes)
		}
		cb = newStateBreaker("redis "+addr, b.openFor)
		b.nodes[addr] = cb
	}
	return cb
}

// breaker is the breaker of a call over key ("": the whole store's).
func (r *Redis) breaker(ctx context.Context, key string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	if cc, ok := r.Client.(*redis.ClusterClient); ok && key != "" && r.slotsKnown.Load() {
		// The client's own map of slots, in memory: no round trip. (Before a first call has
		// succeeded the client has none, and asking would read it from the cluster, waiting
		// for a cluster that does not answer before the breaker could fail the call fast.)
		// A slot without a primary falls to the whole-store breaker.
		if node, err := cc.MasterForKey(ctx, key); err == nil {
			return r.Breakers.node(node.Options().Addr)
		}
	}
	return r.Breakers.whole
}

// guard runs fn, a call over key ("": a call the whole store's breaker guards), behind its
// breaker (redis.Nil is a success, a cancelled call is not counted).
func (r *Redis) guard(ctx context.Context, key string, fn func() error) error {
	if r.Breakers == nil {
		return r.relearn(fn())
	}
	cb := r.breaker(ctx, key)
	done, err := cb.Allow()
	if err != nil {
		// A cluster's client learns the slots again here too: the node this breaker is for
		// may have been replaced, and the calls it refuses would never tell the client so.
		// The error names the breaker: "redis", or "redis <primary's address>" on a cluster.
		return r.relearn(fmt.Errorf("%s unavailable: %w", cb.Name(), err))
	}
	err = r.relearn(fn())
	done(err)
	if answered(err) && !r.slotsKnown.Load() {
		r.slotsKnown.Store(true)
	}
	return err
}

// guardKeys runs fn, a pipeline over keys that may live on several primaries of a Redis Cluster
// (fn returns its commands), behind the breaker of each primary holding one of keys: refused at
// once when one of them is open, each then counting only the commands over its own keys (a
// command's key is its first argument). So a primary down opens its own breaker only, as with a
// call over one key, and pipelines over the other primaries' keys go on; with one breaker for
// every pipeline, three over a key on the dead primary refused all of them, every tenant's
// pumping counters with them. Elsewhere, and before a cluster's slots are known, a pipeline has
// the whole store's breaker.
func (r *Redis) guardKeys(ctx context.Context, keys []string, fn func() ([]redis.Cmder, error)) error {
	if _, ok := r.Client.(*redis.ClusterClient); !ok || r.Breakers == nil || !r.slotsKnown.Load() {
		return r.guard(ctx, "", func() error {
			_, err := fn()
			return err
		})
	}
	type breaker = *gobreaker.TwoStepCircuitBreaker[struct{}]
	of := make(map[string]breaker, len(keys))
	var cbs []breaker
	for _, k := range keys {
		cb := r.breaker(ctx, k)
		of[k] = cb
		if !slices.Contains(cbs, cb) {
			cbs = append(cbs, cb)
		}
	}
	dones := make([]func(error), 0, len(cbs))
	for _, cb := range cbs {
		done, err := cb.Allow()
		if err != nil {
			for _, d := range dones {
				d(context.Canceled) // not made: counted neither way
			}
			return r.relearn(fmt.Errorf("%s unavailable: %w", cb.Name(), err))
		}
		dones = append(dones, done)
	}
	cmds, err := fn()
	r.relearn(err)
	failed := make(map[breaker]error, len(cbs))
	for _, c := range cmds {
		var cb breaker
		if args := c.Args(); len(args) > 1 {
			k, _ := args[1].(string)
			cb = of[k]
		}
		if e := c.Err(); !answered(e) && cb != nil && failed[cb] == nil {
			failed[cb] = e
		}
	}
	for i, cb := range cbs {
		outcome := failed[cb]
		if outcome == nil && len(cmds) == 0 {
			outcome = err // failed before any command was made
		}
		dones[i](outcome)
	}
	return err
}

// relearn has a Redis Cluster's client learn the cluster's nodes and slots again after a call
// failed, and returns err. The client reads them only every minute, or when a node answers MOVED:
// a primary that dies answers nothing, so the client kept calling it for up to a minute after
// the cluster had promoted its replica (TestARedisClusterSurvivesAPrimaryCrash). The reload runs
// in the background, one at a time, at most five a second.
func (r *Redis) relearn(err error) error {
	if err != nil && !errors.Is(err, redis.Nil) && !errors.Is(err, context.Canceled) {
		if cc, ok := r.Client.(*redis.ClusterClient); ok {
			cc.ReloadState(context.Background())
		}
	}
	return err
}

func (r *Redis) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// clock is the scripts' ARGV "now": Now's microseconds, or "" for Redis's own clock (scriptNow).
func (r *Redis) clock() any {
	if r.Now != nil {
		return r.Now().UnixMicro()
	}
	return ""
}

// scriptNow starts a script whose ARGV[1] is clock(): now in microseconds, Redis's own when
// ARGV[1] is "" (TIME is allowed in scripts since Redis 5, which replicates their effects).
const scriptNow = `
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
`

// gcra is the generic cell rate algorithm, the token bucket of MemoryLimiter in one key: the key
// holds the bucket's "theoretical arrival time" in microseconds. A request is allowed when the
// new arrival time is at most one period ahead of now (a burst of N), and then stored with an
// expiry of that distance. It returns 0 when allowed, else the microseconds to wait.
var gcra = redis.NewScript(scriptNow + `
local interval = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + interval
if new - now > period then return new - now - period end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000))
return 0
`)

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, l config.Limit) (bool, time.Duration, error) {
	return r.AllowKeeping(ctx, key, l, 0)
}

// AllowKeeping implements Limiter: the bucket's tolerance is shortened by keep tokens' time, so
// that a token is taken only while keep more would be left.
func (r *Redis) AllowKeeping(ctx context.Context, key string, l config.Limit, keep int) (bool, time.Duration, error) {
	period := l.Per.Microseconds()
	interval := max(1, period/int64(l.N)) // at least a microsecond: PX 0 is an error
	var wait int64
	err := r.guard(ctx, r.Prefix+"rl:"+key, func() (err error) {
		wait, err = gcra.Run(ctx, r.Client, []string{r.Prefix + "rl:" + key}, r.clock(), interval, period-int64(keep)*interval).Int64()
		return err
	})
	if err != nil {
		return false, 0, err
	}
	if wait > 0 {
		return false, time.Duration(wait) * time.Microsecond, nil
	}
	return true, 0, nil
}

// spendCharge moves a spend bucket's theoretical arrival time (microseconds, see spendTAT) by
// ARGV[2], forward to charge or back to give back, never before now (a full bucket), and keeps
// the key until the bucket has refilled.
var spendCharge = redis.NewScript(scriptNow + `
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
tat = tat + tonumber(ARGV[2])
if tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
return 0
`)

// spendReserve is Reserve in one step: when the bucket is a whole period (ARGV[3]) or more ahead
// of now it returns the microseconds until it is not, and otherwise moves it by ARGV[2] and
// returns 0.
var spendReserve = redis.NewScript(scriptNow + `
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local ahead = tat - now
local per = tonumber(ARGV[3])
if ahead >= per then return ahead - per + 1000 end
local inc = tonumber(ARGV[2])
if inc > 0 then
  tat = tat + inc
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
end
return 0
`)

// parseSpendTAT reads a spend bucket's GET: the zero time for a missing key.
func parseSpendTAT(get *redis.StringCmd) (time.Time, error) {
	v, err := get.Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	us, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("spend bucket %q: %w", v, err)
	}
	return time.UnixMicro(us), nil
}

// Reserve implements Spends.
func (r *Redis) Reserve(ctx context.Context, key string, l config.Spend, amount float64) (bool, time.Duration, error) {
	var inc int64
	if amount > 0 && l.Amount > 0 {
		inc = spendMicros(l, amount)
	}
	var wait int64
	err := r.guard(ctx, r.Prefix+"sp:"+key, func() (err error) {
		wait, err = spendReserve.Run(ctx, r.Client, []string{r.Prefix + "sp:" + key}, r.clock(), inc, l.Per.Microseconds()).Int64()
		return err
	})
	if err != nil {
		return false, 0, err
	}
	if wait > 0 {
		return false, time.Duration(wait) * time.Microsecond, nil
	}
	return true, 0, nil
}

// spendMicros is spendStep in whole microseconds, at least one: a price too small to move the
// clock must still leave a key with a positive expiry (PX 0 is an error).
func spendMicros(l config.Spend, amount float64) int64 {
	return max(1, int64(math.Ceil(float64(spendStep(l, amount))/float64(time.Microsecond))))
}

// Used implements Spends: one pipeline of GETs, so one round trip however many tenants the
// admin API lists (a pipeline, not MGET, so that a Redis Cluster may hold the keys on any node).
func (r *Redis) Used(ctx context.Context, buckets []SpendBucket) ([]float64, error) {
	out := make([]float64, len(buckets))
	if len(buckets) == 0 {
		return out, nil
	}
	gets := make([]*redis.StringCmd, len(buckets))
	var clock *redis.Cmd // Redis's own, as the buckets were charged by it (Now)
	keys := make([]string, len(buckets))
	for i, b := range buckets {
		keys[i] = r.Prefix + "sp:" + b.Key
	}
	err := r.guardKeys(ctx, keys, func() ([]redis.Cmder, error) {
		return r.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				gets[i] = p.Get(ctx, k)
			}
			if r.Now == nil {
				// From the first key's node: a keyless TIME would go to any primary of a
				// cluster, the one that is down among them, and fail figures read elsewhere.
				clock = p.Eval(ctx, `local t = redis.call('TIME') return t[1] * 1000000 + t[2]`, keys[:1])
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	now := r.now()
	if clock != nil {
		us, err := clock.Int64()
		if err != nil {
			return nil, err
		}
		now = time.UnixMicro(us)
	}
	for i, b := range buckets {
		tat, err := parseSpendTAT(gets[i])
		if err != nil {
			return nil, err
		}
		out[i] = spendUsed(tat, now, b.Limit)
	}
	return out, nil
}

// Charge implements Spends.
func (r *Redis) Charge(ctx context.Context, key string, l config.Spend, amount float64) error {
	if amount == 0 || l.Amount <= 0 {
		return nil
	}
	var inc int64
	if amount > 0 {
		inc = spendMicros(l, amount)
	} else if inc = -int64(spendStep(l, -amount) / time.Microsecond); inc == 0 {
		return nil // too little to give back: a bucket is never given more than it was charged
	}
	return r.guard(ctx, r.Prefix+"sp:"+key, func() error {
		return spendCharge.Run(ctx, r.Client, []string{r.Prefix + "sp:" + key}, r.clock(), inc).Err()
	})
}

// Get implements Replays.
func (r *Redis) Get(ctx context.Context, key string) (*Replay, bool, error) {
	var vals map[string]string
	err := r.guard(ctx, r.Prefix+"idem:"+r.slotted(key), func() (err error) {
		vals, err = r.Client.HGetAll(ctx, r.Prefix+"idem:"+r.slotted(key)).Result()
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if len(vals) == 0 {
		return nil, false, nil
	}
	status, err := strconv.Atoi(vals["status"])
	if err != nil || len(vals["hash"]) != 32 {
		return nil, false, errors.New("malformed idempotency record")
	}
	rep := &Replay{Status: status, Body: []byte(vals["body"])}
	copy(rep.BodyHash[:], vals["hash"])
	return rep, true, nil
}

// Put implements Replays. The first answer wins: a key already stored is not overwritten. With
// MaxTenantReplays, the record is also listed in its tenant's index (at the same time, so that
// the Put still costs one round trip), and the tenant's oldest records past the bound are deleted
// (a round trip more, only at the bound).
func (r *Redis) Put(ctx context.Context, key string, rep *Replay, ttl time.Duration) error {
	k := r.Prefix + "idem:" + r.slotted(key)
	var (
		indexed   sync.WaitGroup
		popped    []string
		indexErr  error
		tenant    = kindTenant(key)
		withBound = r.MaxTenantReplays > 0
	)
	if withBound {
		indexed.Go(func() { popped, indexErr = r.indexReplay(ctx, tenant, k, ttl) })
	}
	err := r.guard(ctx, k, func() error {
		_, err := r.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSetNX(ctx, k, "hash", string(rep.BodyHash[:]))
			p.HSetNX(ctx, k, "status", strconv.Itoa(rep.Status))
			p.HSetNX(ctx, k, "body", string(rep.Body))
			p.PExpire(ctx, k, ttl)
			return nil
		})
		return err
	})
	if !withBound {
		return err
	}
	indexed.Wait()
	if len(popped) > 0 { // out of the index already: deleted even when this record failed
		err = errors.Join(err, r.evictReplays(ctx, tenant, popped))
	}
	return errors.Join(err, indexErr)
}

// indexReplayScript lists a record (ARGV[3]) created now (ARGV[1], scriptNow) in its tenant's
// index (KEYS[1], a sorted set by creation time in µs, kept as long as its newest record: the
// ttl, ARGV[2] µs), drops entries of records expired by now, and takes the oldest entries past
// the bound (ARGV[4]) out of it, returning those whose records still live (the ones to delete;
// an expired one is gone already). A record listed already keeps its entry (a repeated Put stores
// nothing). Both steps take at most indexStep entries a call: an index that a quiet day left full
// of expired entries (or a bound lowered by a restart) is worked off over the tenant's next sends,
// never in one call, which for a million entries held Redis, every tenant's, for 0.4 s.
var indexReplayScript = redis.NewScript(scriptNow + `
local ttl = tonumber(ARGV[2])
local cutoff = now - ttl
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', cutoff), 'LIMIT', 0, ` + indexStep + `)
if #expired > 0 then
  redis.call('ZREM', KEYS[1], unpack(expired))
end
redis.call('ZADD', KEYS[1], 'NX', string.format('%.0f', now), ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000))
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
local live = {}
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], math.min(over, ` + indexStep + `))
  for i = 1, #popped, 2 do
    if tonumber(popped[i + 1]) >= cutoff then
      live[#live + 1] = popped[i]
    end
  end
end
return live
`)

// indexStep bounds the entries one Put takes out of a tenant's index, expired or past the bound.
const indexStep = "128"

// indexReplay lists the record k of tenant in the tenant's index and returns the keys of the
// tenant's oldest live records past MaxTenantReplays (one a Put as a tenant at the bound goes
// on), taken out of the index. The index costs about 150 bytes a record.
func (r *Redis) indexReplay(ctx context.Context, tenant, k string, ttl time.Duration) ([]string, error) {
	idx := r.Prefix + "idem-index:" + r.slotted(tenant)
	var keys []string
	err := r.guard(ctx, idx, func() (err error) {
		keys, err = indexReplayScript.Run(ctx, r.Client, []string{idx},
			r.clock(), ttl.Microseconds(), k, r.MaxTenantReplays).StringSlice()
		return err
	})
	return keys, err
}

// evictReplays deletes the records of tenant that the index let go (indexReplay).
func (r *Redis) evictReplays(ctx context.Context, tenant string, keys []string) error {
	err := r.guardKeys(ctx, keys, func() ([]redis.Cmder, error) {
		return r.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Del(ctx, k)
			}
			return nil
		})
	})
	if err == nil && r.OnReplaysEvicted != nil {
		r.OnReplaysEvicted(tenant, len(keys))
	}
	return err
}

// Last implements Resends.
func (r *Redis) Last(ctx context.Context, key string) (string, time.Time, bool, error) {
	var vals []any
	err := r.guard(ctx, r.Prefix+"resend:"+key, func() (err error) {
		vals, err = r.Client.HMGet(ctx, r.Prefix+"resend:"+key, "provider", "at").Result()
		return err
	})
	if err != nil {
		return "", time.Time{}, false, err
	}
	p, _ := vals[0].(string)
	at, _ := vals[1].(string)
	us, err := strconv.ParseInt(at, 10, 64)
	if p == "" || err != nil {
		return "", time.Time{}, false, nil
	}
	return p, time.UnixMicro(us), true, nil
}

// Record implements Resends.
func (r *Redis) Record(ctx context.Context, key, provider string, at time.Time, ttl time.Duration) error {
	k := r.Prefix + "resend:" + key
	return r.guard(ctx, k, func() error {
		_, err := r.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, k, "provider", provider, "at", strconv.FormatInt(at.UnixMicro(), 10))
			p.PExpire(ctx, k, ttl)
			return nil
		})
		return err
	})
}

// SharedFlights coalesces identical requests across replicas: of the replicas that receive the
// same request at the same moment, one claims it and runs it; the others wait for the answer it
// stores, or for their own deadline. Only requests that overlap share: once the claim is released,
// a new request runs again (a later retry with an Idempotency-Key is answered by Replays).
type SharedFlights interface {
	// Claim tries to become the one replica running key for at most ttl. token identifies the claim.
	Claim(ctx context.Context, key string, ttl time.Duration) (token string, won bool, err error)
	// Finish releases the claim and stores the answer for the waiters for keep.
	Finish(ctx context.Context, key, token string, answer *Replay, keep time.Duration) error
	// Answer returns the stored answer, if any, and whether a claim on key is still held.
	Answer(ctx context.Context, key string) (answer *Replay, found, held bool, err error)
}

var finishFlight = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[2], 'hash', ARGV[2], 'status', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
`)

// Claim implements SharedFlights with SET NX PX.
func (r *Redis) Claim(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	var won bool
	claim, _ := r.flightKeys(key)
	err := r.guard(ctx, claim, func() (err error) {
		won, err = r.Client.SetNX(ctx, claim, token, ttl).Result()
		return err
	})
	return token, won, err
}

// Finish implements SharedFlights.
func (r *Redis) Finish(ctx context.Context, key, token string, a *Replay, keep time.Duration) error {
	claim, answer := r.flightKeys(key)
	return r.guard(ctx, claim, func() error {
		return finishFlight.Run(ctx, r.Client, []string{claim, answer},
			token, string(a.BodyHash[:]), strconv.Itoa(a.Status), string(a.Body), keep.Milliseconds()).Err()
	})
}

// flightKeys are the keys of a request in flight: its claim and its answer. On a Redis Cluster
// both carry the same hash tag (slotted) and land in one slot, as finishFlight needs.
func (r *Redis) flightKeys(key string) (claim, answer string) {
	key = r.slotted(key)
	return r.Prefix + "flight:" + key, r.Prefix + "flight-answer:" + key
}

// slotted is key as it is stored. On a Redis Cluster it starts with a hash tag of its own
// digest: a cluster places a key by its first "{...}", and an idempotency key's is the caller's
// Idempotency-Key, so a tenant writing "{x}" in each of its keys would have pinned all its
// records to one node, its memory and its calls, beside the other tenants' keys there. On one
// Redis keys are spelt as they always were, so replicas of an older build still find them
// during a rollout.
func (r *Redis) slotted(key string) string {
	if !r.Cluster {
		return key
	}
	d := sha256.Sum256([]byte(key))
	return "{" + hex.EncodeToString(d[:6]) + "}" + key
}

// Answer implements SharedFlights.
func (r *Redis) Answer(ctx context.Context, key string) (*Replay, bool, bool, error) {
	var vals map[string]string
	var held int64
	claim, answer := r.flightKeys(key)
	err := r.guard(ctx, claim, func() error {
		cmds, err := r.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.HGetAll(ctx, answer)
			p.Exists(ctx, claim)
			return nil
		})
		if err != nil {
			return err
		}
		vals, held = cmds[0].(*redis.MapStringStringCmd).Val(), cmds[1].(*redis.IntCmd).Val()
		return nil
	})
	if err != nil {
		return nil, false, false, err
	}
	if len(vals) == 0 {
		return nil, false, held > 0, nil
	}
	status, err := strconv.Atoi(vals["status"])
	if err != nil || len(vals["hash"]) != 32 {
		return nil, false, held > 0, errors.New("malformed flight answer")
	}
	a := &Replay{Status: status, Body: []byte(vals["body"])}
	copy(a.BodyHash[:], vals["hash"])
	return a, true, held > 0, nil
}
