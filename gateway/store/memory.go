package store

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

// Memory is a Backend that keeps records in this process only.
type Memory struct {
	// Now is the clock for updated_at and for when a report falls due to be pushed; nil means time.Now.
	Now func() time.Time
	// MaxPending bounds the delivery reports kept for records not written yet; default 10000.
	// Past it the oldest are dropped.
	MaxPending int
	// PendingTTL is how long such a report waits for its record; default 24h.
	PendingTTL time.Duration

	mu      sync.RWMutex
	byID    map[string]*Record
	byPMID  map[string]string // provider + "\x00" + provider message id -> id
	pending []pendingReport
}

// pendingReport is a report that arrived before its record, with when it arrived.
type pendingReport struct {
	rep *gateway.DeliveryReport
	at  time.Time
}

// NewMemory returns an empty memory backend.
func NewMemory() *Memory {
	return &Memory{byID: map[string]*Record{}, byPMID: map[string]string{}}
}

func (m *Memory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func pmidKey(provider, pmid string) string { return provider + "\x00" + pmid }

// Apply implements Backend.
func (m *Memory) Apply(_ context.Context, ops []Op) ([]Charge, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().UTC()
	ap := applier{now: now}
	for _, op := range ops {
		switch {
		case op.Insert != nil:
			if op.again && m.byID[op.Insert.ID] != nil {
				continue
			}
			r := *op.Insert
			m.byID[r.ID] = &r
			if r.ProviderMessageID != "" {
				m.byPMID[pmidKey(r.Provider, r.ProviderMessageID)] = r.ID
			}
			kept := m.pending[:0]
			for _, p := range m.pending {
				if matches(&r, p.rep) {
					ap.apply(&r, p.rep)
				} else {
					kept = append(kept, p)
				}
			}
			m.pending = kept
		case op.Report != nil:
			if r := m.find(op.Report); r != nil {
				ap.apply(r, op.Report)
			} else {
				m.addPending(op.Report, now)
			}
		case op.Release != "":
			if r := m.byID[op.Release]; r != nil {
				release(r, now)
			}
		}
	}
	return ap.charges, nil
}

// addPending keeps a report for a record not written yet, dropping expired and, past
// MaxPending, the oldest reports. Callers hold mu.
func (m *Memory) addPending(rep *gateway.DeliveryReport, now time.Time) {
	ttl, limit := m.PendingTTL, m.MaxPending
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	if limit <= 0 {
		limit = 10000
	}
	// Reports arrive in time order: the expired ones are at the front.
	i := 0
	for i < len(m.pending) && now.Sub(m.pending[i].at) >= ttl {
		i++
	}
	if over := len(m.pending) - i + 1 - limit; over > 0 {
		i += over
	}
	if i > 0 {
		m.pending = append(m.pending[:0], m.pending[i:]...)
	}
	m.pending = append(m.pending, pendingReport{rep: rep, at: now})
}

// PendingReports reports how many delivery reports wait for their record.
func (m *Memory) PendingReports() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.pending)
}

// matches reports whether rep is about r: the same provider, and our id or the provider's.
func matches(r *Record, rep *gateway.DeliveryReport) bool {
	if rep.Provider != r.Provider {
		return false
	}
	return (rep.MessageID != "" && rep.MessageID == r.ID) || (rep.ProviderMessageID != "" && rep.ProviderMessageID == r.ProviderMessageID)
}

func (m *Memory) find(rep *gateway.DeliveryReport) *Record {
	if rep.MessageID != "" {
		if r := m.byID[rep.MessageID]; r != nil && r.Provider == rep.Provider {
			return r
		}
	}
	if id, ok := m.byPMID[pmidKey(rep.Provider, rep.ProviderMessageID)]; ok {
		return m.byID[id]
	}
	return nil
}

// Get implements Backend.
func (m *Memory) Get(_ context.Context, tenant, id string) (*Record, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.byID[id]
	if !ok || r.Tenant != tenant {
		return nil, ErrNotFound
	}
	c := *r
	return &c, nil
}

// List implements Backend.
func (m *Memory) List(_ context.Context, q Query) ([]*Record, error) {
	m.mu.RLock()
	var out []*Record
	for _, r := range m.byID {
		if r.Tenant != q.Tenant || (len(q.Statuses) > 0 && !slices.Contains(q.Statuses, r.Status)) || (q.Provider != "" && r.Provider != q.Provider) ||
			(!q.Since.IsZero() && r.CreatedAt.Before(q.Since)) || (q.Before != nil && !olderThan(r, q.Before)) ||
			(!q.Until.IsZero() && !r.CreatedAt.Before(q.Until)) || (q.BulkID != "" && r.BulkID != q.BulkID) ||
			(q.ID != "" && r.ID != q.ID && r.Reference != q.ID) || (q.Compat && r.Source == "") {
			continue
		}
		c := *r
		out = append(out, &c)
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Record) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		switch {
		case a.ID > b.ID:
			return -1
		case a.ID < b.ID:
			return 1
		}
		return 0
	})
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

func olderThan(r *Record, c *Cursor) bool {
	return r.CreatedAt.Before(c.CreatedAt) || (r.CreatedAt.Equal(c.CreatedAt) && r.ID < c.ID)
}

// Purge implements Backend.
func (m *Memory) Purge(_ context.Context, before time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, r := range m.byID {
		if r.CreatedAt.Before(before) {
			delete(m.byID, id)
			delete(m.byPMID, pmidKey(r.Provider, r.ProviderMessageID))
			n++
		}
	}
	// Unmatched reports go with the records they could have matched, as in SQLite.
	kept := m.pending[:0]
	for _, p := range m.pending {
		if !p.at.Before(before) {
			kept = append(kept, p)
		}
	}
	m.pending = kept
	return n, nil
}

// Oldest implements Backend.
func (m *Memory) Oldest(context.Context) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var oldest time.Time
	for _, r := range m.byID {
		if oldest.IsZero() || r.CreatedAt.Before(oldest) {
			oldest = r.CreatedAt
		}
	}
	return oldest, nil
}

// Trim implements Backend.
func (m *Memory) Trim(_ context.Context, b RecordBounds) (map[string]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	byTenant := map[string][]*Record{}
	for _, r := range m.byID {
		byTenant[r.Tenant] = append(byTenant[r.Tenant], r)
	}
	cut := map[string]int{}
	for tenant, rs := range byTenant {
		max := b.Of(tenant)
		if max <= 0 || len(rs) <= max {
			continue
		}
		slices.SortFunc(rs, func(a, b *Record) int { // newest first, as the SQL backends' index
			if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(b.ID, a.ID)
		})
		for _, r := range rs[max:] {
			delete(m.byID, r.ID)
			delete(m.byPMID, pmidKey(r.Provider, r.ProviderMessageID))
		}
		cut[tenant] = len(rs) - max
	}
	return cut, nil
}

// Health implements Backend.
func (m *Memory) Health(_ context.Context, since, pendingBefore time.Time) ([]HealthRow, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	type healthGroup struct {
		provider, country, tenant string
		voice                     bool
	}
	rows := map[healthGroup]*HealthRow{}
	for _, r := range m.byID {
		if r.Provider == "" || r.CreatedAt.Before(since) {
			continue
		}
		voice := r.MessageType == string(gateway.Voice)
		k := healthGroup{r.Provider, r.Country, r.Tenant, voice}
		h := rows[k]
		if h == nil {
			h = &HealthRow{Provider: r.Provider, Country: r.Country, Tenant: r.Tenant, Voice: voice}
			rows[k] = h
		}
		switch {
		case r.Status == gateway.StatusDelivered:
			h.Delivered++
		case r.Status == gateway.StatusUndelivered:
			h.Undelivered++
		case r.Status == gateway.StatusFailed:
			h.Failed++
		case r.Status == gateway.StatusSent && r.CreatedAt.Before(pendingBefore):
			h.Pending++
		}
	}
	out := make([]HealthRow, 0, len(rows))
	for _, h := range rows {
		out = append(out, *h)
	}
	return out, nil
}

// Prices implements Backend.
func (m *Memory) Prices(_ context.Context, since, until time.Time) ([]PriceRow, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	rows := map[[4]string]*PriceRow{}
	for _, r := range m.byID {
		if r.Provider == "" || r.Price <= 0 || r.CreatedAt.Before(since) || (!until.IsZero() && !r.CreatedAt.Before(until)) || r.MessageType == string(gateway.Voice) {
			continue
		}
		k := [4]string{r.Provider, r.Country, r.Currency, r.Tenant}
		p := rows[k]
		if p == nil {
			p = &PriceRow{Provider: r.Provider, Country: r.Country, Currency: r.Currency, Tenant: r.Tenant}
			rows[k] = p
		}
		p.Sum += r.Price / float64(max(1, r.Parts))
		p.N++
	}
	out := make([]PriceRow, 0, len(rows))
	for _, p := range rows {
		out = append(out, *p)
	}
	return out, nil
}

// Find implements Backend.
func (m *Memory) Find(_ context.Context, provider, id, pmid string) (*Record, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.find(&gateway.DeliveryReport{Provider: provider, MessageID: id, ProviderMessageID: pmid})
	if r == nil {
		return nil, ErrNotFound
	}
	c := *r
	return &c, nil
}

// Take implements Backend.
func (m *Memory) Take(_ context.Context, q TakeQuery) ([]*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var found []*Record
	for _, r := range m.byID {
		if r.Tenant == q.Tenant && r.Source != "" && r.NotifyURL == "" && !r.ReportTaken && r.Final() &&
			(q.BulkID == "" || r.BulkID == q.BulkID) && (q.ID == "" || r.ID == q.ID || r.Reference == q.ID) {
			found = append(found, r)
		}
	}
	slices.SortFunc(found, func(a, b *Record) int { return a.CreatedAt.Compare(b.CreatedAt) })
	if len(found) > q.Limit {
		found = found[:q.Limit]
	}
	out := make([]*Record, len(found))
	for i, r := range found {
		r.ReportTaken = true
		c := *r
		out[i] = &c
	}
	return out, nil
}

// Due implements Backend.
func (m *Memory) Due(_ context.Context, tenant string, now time.Time, limit int) ([]*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var due []*Record
	for _, r := range m.byID {
		if r.Tenant == tenant && !r.PushAt.IsZero() && !r.PushAt.After(now) {
			due = append(due, r)
		}
	}
	slices.SortFunc(due, func(a, b *Record) int { return a.PushAt.Compare(b.PushAt) })
	out := make([]*Record, 0, min(limit, len(due)))
	for _, r := range due[:min(limit, len(due))] {
		r.PushTries++
		r.PushAt = NextPush(now, r.PushTries)
		c := *r
		out = append(out, &c)
	}
	return out, nil
}

// DueTenants implements Backend.
func (m *Memory) DueTenants(_ context.Context, now time.Time) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	for _, r := range m.byID {
		if !r.PushAt.IsZero() && !r.PushAt.After(now) && !seen[r.Tenant] {
			seen[r.Tenant] = true
			out = append(out, r.Tenant)
		}
	}
	return out, nil
}

// ReadConns implements Backend: reads in memory take no connection.
func (m *Memory) ReadConns() int { return 0 }

// PushDone implements Backend.
func (m *Memory) PushDone(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.byID[id]; r != nil {
		r.ReportTaken, r.PushAt = true, time.Time{}
	}
	return nil
}

// Close implements Backend.
func (m *Memory) Close() error { return nil }
