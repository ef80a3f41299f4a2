package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway/store/pgtest"
)

// compatRecords writes, for tenants acme and other alike, seven messages through the
// Infobip-compatible API (bulks b1 of five and b2 of two, references ref-0 to ref-6) and one
// native message, and a message of acme whose reference is another message's id.
func compatRecords(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	for _, tenant := range []string{"acme", "other"} {
		for i := range 7 {
			r := record(fmt.Sprintf("%s-c%d", tenant, i), tenant, "ib", fmt.Sprintf("%s-p%d", tenant, i), t0.Add(time.Duration(i)*time.Second))
			r.Source, r.Reference, r.BulkID = "infobip-sms-v3", fmt.Sprint("ref-", i), "b1"
			if i >= 5 {
				r.BulkID = "b2"
			}
			s.Insert(ctx, r)
		}
		s.Insert(ctx, record(tenant+"-native", tenant, "ib", tenant+"-pn", t0))
	}
	r := record("acme-x", "acme", "ib", "acme-px", t0.Add(time.Minute))
	r.Source, r.Reference = "infobip-sms-v2", "acme-c0"
	s.Insert(ctx, r)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCompatLogFilters: the Infobip-compatible logs' filters (a bulk, our id or the caller's
// reference) select the tenant's own messages only, newest first, page by the cursor, and combine
// with the other filters.
func TestCompatLogFilters(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		compatRecords(t, s)
		ids := func(q Query) []string {
			t.Helper()
			got, err := s.List(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, r := range got {
				out = append(out, r.ID)
			}
			return out
		}
		acme := func(q Query) Query { q.Tenant, q.Compat = "acme", true; return q }
		for _, c := range []struct {
			name string
			q    Query
			want []string
		}{
			{"a bulk, newest first", acme(Query{BulkID: "b1", Limit: 10}), []string{"acme-c4", "acme-c3", "acme-c2", "acme-c1", "acme-c0"}},
			{"a bulk, a page", acme(Query{BulkID: "b1", Limit: 2}), []string{"acme-c4", "acme-c3"}},
			{"a bulk, the next page", acme(Query{BulkID: "b1", Limit: 2, Before: &Cursor{CreatedAt: t0.Add(3 * time.Second), ID: "acme-c3"}}), []string{"acme-c2", "acme-c1"}},
			{"a bulk and a time", acme(Query{BulkID: "b1", Limit: 10, Since: t0.Add(2 * time.Second)}), []string{"acme-c4", "acme-c3", "acme-c2"}},
			{"a bulk no message has", acme(Query{BulkID: "b9", Limit: 10}), []string{}},
			{"the caller's reference", acme(Query{ID: "ref-5", Limit: 10}), []string{"acme-c5"}},
			{"our id", acme(Query{ID: "acme-c6", Limit: 10}), []string{"acme-c6"}},
			{"our id, also another message's reference", acme(Query{ID: "acme-c0", Limit: 10}), []string{"acme-x", "acme-c0"}},
			{"our id, of another tenant's message", acme(Query{ID: "other-c1", Limit: 10}), []string{}},
			{"a native message is not in the compat logs", acme(Query{ID: "acme-native", Limit: 10}), []string{}},
			{"a native message by id outside them", Query{Tenant: "acme", ID: "acme-native", Limit: 10}, []string{"acme-native"}},
			{"a reference and a bulk", acme(Query{ID: "ref-6", BulkID: "b1", Limit: 10}), []string{}},
			{"a reference and its bulk", acme(Query{ID: "ref-6", BulkID: "b2", Limit: 10}), []string{"acme-c6"}},
			{"a reference, limit 1", acme(Query{ID: "acme-c0", Limit: 1}), []string{"acme-x"}},
		} {
			if diff := cmp.Diff(c.want, ids(c.q)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", c.name, diff)
			}
		}
	})
}

// TestCompatFiltersUseTheirIndexes: a listing by bulk or by id is answered from the partial
// indexes (and the primary key), and a pull of reports from the index of final reports not yet
// pulled, not by walking every message of the tenant: on a large log that walk took tens of
// milliseconds per read at 20,000 messages of the tenant (docs/benchmarks.md).
func TestCompatFiltersUseTheirIndexes(t *testing.T) {
	byBulk := Query{Tenant: "acme", Compat: true, BulkID: "b1", Limit: 50}
	byID := Query{Tenant: "acme", Compat: true, ID: "ref-1", Limit: 50}
	t.Run("sqlite", func(t *testing.T) {
		s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "log.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		plan := func(sql string, args []any) string {
			rows, err := s.db.Query(`EXPLAIN QUERY PLAN `+sql, args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var lines []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				lines = append(lines, detail)
			}
			return strings.Join(lines, "\n")
		}
		list := func(q Query) string {
			where, args := listSQL(q)
			return plan(`SELECT `+cols+where, args)
		}
		assertPlan(t, list(byBulk), []string{"USING INDEX messages_bulk"}, "messages_tenant_created")
		assertPlan(t, list(byID), []string{"INDEX messages_reference", "sqlite_autoindex_messages_1"}, "messages_tenant_created")
		where, args := takeWhere(TakeQuery{Tenant: "acme", Limit: 50})
		assertPlan(t, plan(`SELECT id FROM messages WHERE `+where+` ORDER BY created_at LIMIT 50`, args), []string{"INDEX messages_unpulled"}, "messages_tenant_created")
	})
	t.Run("postgres", func(t *testing.T) {
		p, err := OpenPostgres(context.Background(), pgtest.DSN(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ctx := context.Background()
		// 20,000 native messages of the tenant, 20 through the compat API, then fresh statistics:
		// the planner picks by them.
		if _, err := p.pool.Exec(ctx, `INSERT INTO messages (id, tenant, status, created_at, updated_at, source, bulk_id, reference)
			SELECT 'm' || g, 'acme', 'sent', g, g, CASE WHEN g % 1000 = 0 THEN 'infobip-sms-v3' ELSE '' END,
				CASE WHEN g % 1000 = 0 THEN 'b' || (g / 10000) ELSE '' END, CASE WHEN g % 1000 = 0 THEN 'ref-' || (g / 1000) ELSE '' END
			FROM generate_series(1, 20000) g`); err != nil {
			t.Fatal(err)
		}
		if _, err := p.pool.Exec(ctx, `ANALYZE messages`); err != nil {
			t.Fatal(err)
		}
		plan := func(sql string, args ...any) string {
			rows, err := p.pool.Query(ctx, `EXPLAIN `+sql, args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var lines []string
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				lines = append(lines, line)
			}
			return strings.Join(lines, "\n")
		}
		list := func(q Query) string {
			where, args := listSQL(q)
			return plan(numbered(`SELECT `+pgCols+where), args...)
		}
		assertPlan(t, list(byBulk), []string{"messages_bulk"}, "Seq Scan")
		assertPlan(t, list(byID), []string{"messages_reference", "messages_pkey"}, "Seq Scan")
		assertPlan(t, plan(pgTakeIDs, "acme", "", "", 50), []string{"messages_unpulled"}, "Seq Scan")
	})
}

func assertPlan(t *testing.T, plan string, want []string, notWant string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(plan, w) {
			t.Errorf("the plan does not use %s:\n%s", w, plan)
		}
	}
	if strings.Contains(plan, notWant) {
		t.Errorf("the plan uses %s:\n%s", notWant, plan)
	}
}
