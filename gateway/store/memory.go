package store

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

// Memory is a Backend that keeps records in this process only.
type Memory struct {
	// Now is the clock for updated_at; nil means time.Now.
	Now func() time.Time

	mu      sync.RWMutex
	byID    map[string]*Record
	byPMID  map[string]string // provider + "\x00" + provider message id -> id
	pending []*gateway.DeliveryReport
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
func (m *Memory) Apply(_ context.Context, ops []Op) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().UTC()
	for _, op := range ops {
		switch {
		case op.Insert != nil:
			r := *op.Insert
			m.byID[r.ID] = &r
			if r.ProviderMessageID != "" {
				m.byPMID[pmidKey(r.Provider, r.ProviderMessageID)] = r.ID
			}
			kept := m.pending[:0]
			for _, p := range m.pending {
				if matches(&r, p) {
					applyReport(&r, p, now)
				} else {
					kept = append(kept, p)
				}
			}
			m.pending = kept
		case op.Report != nil:
			if r := m.find(op.Report); r != nil {
				applyReport(r, op.Report, now)
			} else {
				m.pending = append(m.pending, op.Report)
			}
		}
	}
	return nil
}

func matches(r *Record, rep *gateway.DeliveryReport) bool {
	if rep.MessageID != "" && rep.MessageID == r.ID {
		return true
	}
	return rep.ProviderMessageID != "" && rep.Provider == r.Provider && rep.ProviderMessageID == r.ProviderMessageID
}

func (m *Memory) find(rep *gateway.DeliveryReport) *Record {
	if rep.MessageID != "" {
		if r := m.byID[rep.MessageID]; r != nil {
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
		if r.Tenant != q.Tenant || (q.Status != "" && r.Status != q.Status) || (q.Provider != "" && r.Provider != q.Provider) ||
			(!q.Since.IsZero() && r.CreatedAt.Before(q.Since)) || (q.Before != nil && !olderThan(r, q.Before)) {
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
	return n, nil
}

// Close implements Backend.
func (m *Memory) Close() error { return nil }
