package policy

import (
	"context"
	"time"

	"github.com/smsgate/smsgate/gateway/config"
)

// Spends keeps spend limits (rate_limits.spend): one bucket of money per key, refilled at
// Amount per Per. A send's price is known only once a provider accepted it, so what it may cost
// (the highest price of its route's providers) is reserved before the send and the difference
// settled after it: sends in flight at once cannot together take the bucket further into debt
// than one reservation each had when it was taken, however many a tenant starts at once.
type Spends interface {
	// Reserve takes amount from key's bucket when the bucket holds anything (into debt if need
	// be) and reports ok, in one step, so no two reservations see the same room; when it holds
	// nothing it takes nothing and says how long until it holds something.
	Reserve(ctx context.Context, key string, l config.Spend, amount float64) (ok bool, retryAfter time.Duration, err error)
	// Charge takes amount from key's bucket; a negative amount gives it back, never beyond a
	// full bucket.
	Charge(ctx context.Context, key string, l config.Spend, amount float64) error
	// Used is what each bucket has spent and not yet refilled (above its Amount: in debt), in
	// the order asked: one read for all of them (the admin API asks for every tenant at once).
	Used(ctx context.Context, buckets []SpendBucket) ([]float64, error)
}

// SpendBucket names one spend limit's bucket for Spends.Used.
type SpendBucket struct {
	Key   string
	Limit config.Spend
}

// spendUsed is what a bucket at tat has spent and not yet refilled.
func spendUsed(tat, now time.Time, l config.Spend) float64 {
	ahead := tat.Sub(now)
	if ahead <= 0 || l.Per <= 0 {
		return 0
	}
	return float64(ahead) / float64(l.Per) * l.Amount
}

// spendTAT is the cell rate algorithm weighted by price: a bucket is its "theoretical arrival
// time" tat, how far ahead of now the spending so far has run (Per/Amount per unit of money).
// The bucket holds something while tat is less than Per ahead of now.
func spendTAT(tat, now time.Time, l config.Spend, amount float64) time.Time {
	if tat.Before(now) {
		tat = now
	}
	return tat.Add(spendStep(l, amount))
}

// spendStep is how far a charge of amount moves a bucket's tat: Per per Amount, and never more
// than maxDebt periods (a price far above a tiny limit must not overflow the clock).
func spendStep(l config.Spend, amount float64) time.Duration {
	if !(amount > 0) {
		// NaN too: converted to a Duration it moved the bucket back past now, emptying it of any
		// debt (config and drivers give no such price; this is the last line).
		return 0
	}
	return time.Duration(min(amount/l.Amount, maxDebt) * float64(l.Per))
}

// maxDebt bounds one charge, in periods of the limit.
const maxDebt = 1000

// spendWait is how long until a bucket at tat holds something again (0: it does now).
func spendWait(tat, now time.Time, l config.Spend) time.Duration {
	if ahead := tat.Sub(now); ahead >= l.Per {
		return ahead - l.Per + time.Millisecond
	}
	return 0
}

// Reserve implements Spends. Spend buckets are per tenant (and limit), so they are few; one that
// has refilled is dropped when it is next read.
func (m *MemoryLimiter) Reserve(_ context.Context, key string, l config.Spend, amount float64) (bool, time.Duration, error) {
	now := m.now()
	m.spendMu.Lock()
	defer m.spendMu.Unlock()
	tat, ok := m.spends[key]
	if ok && !tat.After(now) {
		delete(m.spends, key)
	}
	if w := spendWait(tat, now, l); w > 0 {
		return false, w, nil
	}
	if amount > 0 && l.Amount > 0 {
		if m.spends == nil {
			m.spends = map[string]time.Time{}
		}
		m.spends[key] = spendTAT(tat, now, l, amount)
	}
	return true, 0, nil
}

// Used implements Spends.
func (m *MemoryLimiter) Used(_ context.Context, buckets []SpendBucket) ([]float64, error) {
	now := m.now()
	out := make([]float64, len(buckets))
	m.spendMu.Lock()
	defer m.spendMu.Unlock()
	for i, b := range buckets {
		out[i] = spendUsed(m.spends[b.Key], now, b.Limit)
	}
	return out, nil
}

// Charge implements Spends.
func (m *MemoryLimiter) Charge(_ context.Context, key string, l config.Spend, amount float64) error {
	if amount == 0 || l.Amount <= 0 {
		return nil
	}
	now := m.now()
	m.spendMu.Lock()
	defer m.spendMu.Unlock()
	if amount < 0 {
		tat, ok := m.spends[key]
		if !ok {
			return nil // full already
		}
		if tat = tat.Add(-spendStep(l, -amount)); tat.After(now) {
			m.spends[key] = tat
		} else {
			delete(m.spends, key)
		}
		return nil
	}
	if m.spends == nil {
		m.spends = map[string]time.Time{}
	}
	m.spends[key] = spendTAT(m.spends[key], now, l, amount)
	return nil
}
