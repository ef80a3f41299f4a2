package policy

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// MemoryPumpState is PumpState in one process.
type MemoryPumpState struct {
	// Now is the clock of expiry; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	counters sweptMap[*memCounters]
	values   sweptMap[memValue]
	sets     map[string]map[string]bool // the quarantine index: one key, and members removed on release
}

type memCounters struct {
	c   map[string]int64
	exp time.Time
}

type memValue struct {
	v   string
	exp time.Time
}

func (m *MemoryPumpState) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// sweep drops expired entries, two of each kind examined per call (never a scan of them all:
// see sweptMap); callers hold mu.
func (m *MemoryPumpState) sweep(now time.Time) {
	m.counters.sweep(2, func(_ string, c *memCounters) bool { return now.After(c.exp) })
	m.values.sweep(2, func(_ string, v memValue) bool { return now.After(v.exp) })
}

// PumpAdd implements PumpState.
func (m *MemoryPumpState) PumpAdd(_ context.Context, incs [][2]string, ttl time.Duration) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	out := make([]int64, len(incs))
	for i, x := range incs {
		c, ok := m.counters.get(x[0])
		if !ok || now.After(c.exp) {
			c = &memCounters{c: map[string]int64{}}
			m.counters.set(x[0], c)
		}
		c.c[x[1]]++
		c.exp = now.Add(ttl)
		out[i] = c.c[x[1]]
	}
	return out, nil
}

// PumpCounters implements PumpState.
func (m *MemoryPumpState) PumpCounters(_ context.Context, key string) (map[string]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	out := map[string]int64{}
	if c, ok := m.counters.get(key); ok && !now.After(c.exp) {
		for f, v := range c.c {
			out[f] = v
		}
	}
	return out, nil
}

// PumpForget implements PumpState.
func (m *MemoryPumpState) PumpForget(_ context.Context, key string, fields []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(m.now())
	if c, ok := m.counters.get(key); ok {
		for _, f := range fields {
			delete(c.c, f)
		}
	}
	return nil
}

// PumpPut implements PumpState.
func (m *MemoryPumpState) PumpPut(_ context.Context, key, val string, ttl time.Duration, nx bool) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	if v, ok := m.values.get(key); nx && ok && !now.After(v.exp) {
		return false, nil
	}
	m.values.set(key, memValue{v: val, exp: now.Add(ttl)})
	return true, nil
}

// PumpGet implements PumpState.
func (m *MemoryPumpState) PumpGet(_ context.Context, key string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	v, ok := m.values.get(key)
	if !ok || now.After(v.exp) {
		return "", false, nil
	}
	return v.v, true, nil
}

// PumpDel implements PumpState.
func (m *MemoryPumpState) PumpDel(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	v, ok := m.values.get(key)
	m.values.del(key)
	return ok && !now.After(v.exp), nil
}

// PumpIndex implements PumpState. The set lives as long as the process; members go when listed
// after their quarantine ended, or on release.
func (m *MemoryPumpState) PumpIndex(_ context.Context, key, member string, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(m.now())
	if m.sets == nil {
		m.sets = map[string]map[string]bool{}
	}
	if m.sets[key] == nil {
		m.sets[key] = map[string]bool{}
	}
	m.sets[key][member] = true
	return nil
}

// PumpUnindex implements PumpState.
func (m *MemoryPumpState) PumpUnindex(_ context.Context, key, member string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sets[key], member)
	return nil
}

// PumpMembers implements PumpState.
func (m *MemoryPumpState) PumpMembers(_ context.Context, key string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(m.now())
	var out []string
	for k := range m.sets[key] {
		out = append(out, k)
	}
	return out, nil
}

// PumpAdd implements PumpState: the increments and the expiries in one round trip.
func (r *Redis) PumpAdd(ctx context.Context, incs [][2]string, ttl time.Duration) ([]int64, error) {
	out := make([]int64, len(incs))
	var keys []string
	for _, x := range incs {
		if k := r.Prefix + x[0]; !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	cmds := make([]*redis.IntCmd, len(incs))
	err := r.guardKeys(ctx, keys, func() ([]redis.Cmder, error) {
		pipe := r.Client.Pipeline()
		for i, x := range incs {
			cmds[i] = pipe.HIncrBy(ctx, r.Prefix+x[0], x[1], 1)
		}
		for _, k := range keys {
			pipe.PExpire(ctx, k, ttl)
		}
		return pipe.Exec(ctx)
	})
	if err != nil {
		return out, err
	}
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// PumpCounters implements PumpState.
func (r *Redis) PumpCounters(ctx context.Context, key string) (map[string]int64, error) {
	var raw map[string]string
	err := r.guard(ctx, r.Prefix+key, func() (err error) {
		raw, err = r.Client.HGetAll(ctx, r.Prefix+key).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(raw))
	for f, v := range raw {
		n, _ := strconv.ParseInt(v, 10, 64)
		out[f] = n
	}
	return out, nil
}

// PumpForget implements PumpState.
func (r *Redis) PumpForget(ctx context.Context, key string, fields []string) error {
	return r.guard(ctx, r.Prefix+key, func() error { return r.Client.HDel(ctx, r.Prefix+key, fields...).Err() })
}

// PumpPut implements PumpState.
func (r *Redis) PumpPut(ctx context.Context, key, val string, ttl time.Duration, nx bool) (bool, error) {
	stored := true
	err := r.guard(ctx, r.Prefix+key, func() (err error) {
		if nx {
			stored, err = r.Client.SetNX(ctx, r.Prefix+key, val, ttl).Result()
			return err
		}
		return r.Client.Set(ctx, r.Prefix+key, val, ttl).Err()
	})
	return stored && err == nil, err
}

// PumpGet implements PumpState.
func (r *Redis) PumpGet(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := r.guard(ctx, r.Prefix+key, func() (err error) {
		v, err = r.Client.Get(ctx, r.Prefix+key).Result()
		return err
	})
	if err == redis.Nil {
		return "", false, nil
	}
	return v, err == nil, err
}

// PumpDel implements PumpState.
func (r *Redis) PumpDel(ctx context.Context, key string) (bool, error) {
	var n int64
	err := r.guard(ctx, r.Prefix+key, func() (err error) {
		n, err = r.Client.Del(ctx, r.Prefix+key).Result()
		return err
	})
	return n > 0, err
}

// indexAdd adds a member to a set and makes the set live at least ARGV[2] ms more: a set without
// an expiry would stay in the shared Redis for good, and a shorter one than a member's own would
// drop another tenant's entry (tenants' cooldowns differ). PTTL is -1 for a key without one.
var indexAdd = redis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`)

// PumpIndex implements PumpState.
func (r *Redis) PumpIndex(ctx context.Context, key, member string, keep time.Duration) error {
	return r.guard(ctx, r.Prefix+key, func() error {
		return indexAdd.Run(ctx, r.Client, []string{r.Prefix + key}, member, keep.Milliseconds()).Err()
	})
}

// PumpUnindex implements PumpState.
func (r *Redis) PumpUnindex(ctx context.Context, key, member string) error {
	return r.guard(ctx, r.Prefix+key, func() error { return r.Client.SRem(ctx, r.Prefix+key, member).Err() })
}

// PumpMembers implements PumpState.
func (r *Redis) PumpMembers(ctx context.Context, key string) ([]string, error) {
	var out []string
	err := r.guard(ctx, r.Prefix+key, func() (err error) {
		out, err = r.Client.SMembers(ctx, r.Prefix+key).Result()
		return err
	})
	return out, err
}
