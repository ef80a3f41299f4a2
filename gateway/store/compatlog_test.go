package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

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
		s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "log.db"))
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
		p, err := OpenPostgres(context.Background(), pgtest.DSN(t))
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

// TestPostgresIndexBuildResumes: an index whose concurrent build stopped half way is left invalid
// by PostgreSQL; the next start drops it and builds it again rather than keeping it (IF NOT EXISTS
// alone would). An upgrade from the schema before the index builds it over the rows already there.
func TestPostgresIndexBuildResumes(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	p, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const six = 6 // the migration that builds messages_bulk and messages_reference
	m := pgMigrations[six-1]
	if len(m.indexes) != 2 {
		t.Fatal("migration 6 builds two indexes")
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := p.pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	valid := func(name string) (exists, valid bool) {
		t.Helper()
		err := p.pool.QueryRow(ctx, `SELECT true, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace`, name).Scan(&exists, &valid)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return exists, valid
	}
	first, second := m.indexes[0].name, m.indexes[1].name
	// The schema of version 5, with rows the indexes must hold; then the first index as a stopped
	// build leaves it (PostgreSQL marks it invalid; here by hand), the second not begun.
	exec(fmt.Sprintf(`DROP INDEX %s; DROP INDEX %s; DROP INDEX messages_unpulled;
		CREATE INDEX messages_untaken ON messages (tenant, created_at) WHERE source <> '' AND NOT report_taken;
		UPDATE schema_migrations SET version = %d`, first, second, six-1))
	exec(`INSERT INTO messages (id, tenant, status, created_at, updated_at, source, bulk_id, reference)
		SELECT 'm' || g, 'acme', 'sent', g, g, 'infobip-sms-v3', 'b' || (g % 7), 'ref-' || g FROM generate_series(1, 500) g`)
	exec(`CREATE INDEX ` + first + ` ` + m.indexes[0].def)
	exec(`UPDATE pg_index SET indisvalid = false WHERE indexrelid = '` + first + `'::regclass`)
	if _, v := valid(first); v {
		t.Fatal("the index was not made invalid")
	}
	again, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	for _, name := range []string{first, second, "messages_unpulled"} {
		if e, v := valid(name); !e || !v {
			t.Errorf("index %s: exists %v, valid %v", name, e, v)
		}
	}
	if e, _ := valid("messages_untaken"); e {
		t.Error("messages_untaken is still there")
	}
	if v, err := again.SchemaVersion(ctx); err != nil || v != len(pgMigrations) {
		t.Errorf("schema version %d (%v), want %d", v, err, len(pgMigrations))
	}
	got, err := again.List(ctx, Query{Tenant: "acme", Compat: true, BulkID: "b3", Limit: 1000})
	if err != nil || len(got) != 72 {
		t.Errorf("bulk b3 after the rebuild: %d messages (%v), want 72", len(got), err)
	}
}

// TestSQLiteUpgradeBuildsTheIndexes: a log written by the version before migration 6 gets the
// indexes of migrations 6 and 7 at the next start, over the rows already there.
func TestSQLiteUpgradeBuildsTheIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	ctx := context.Background()
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	// The schema of version 5.
	if _, err := s.w.ExecContext(ctx, `DROP INDEX messages_bulk; DROP INDEX messages_reference; DROP INDEX messages_unpulled;
		CREATE INDEX messages_untaken ON messages(tenant, created_at) WHERE source != '' AND report_taken = 0;
		UPDATE schema_version SET version = 5`); err != nil {
		t.Fatal(err)
	}
	st := New(Options{Backend: s})
	compatRecords(t, st)
	st.Close()
	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('messages_bulk', 'messages_reference', 'messages_unpulled')`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d of the three indexes (%v)", n, err)
	}
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 'messages_untaken'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("messages_untaken is still there (%v)", err)
	}
	if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
		t.Errorf("schema version %d, want %d", v, len(migrations))
	}
	got, err := s.List(ctx, Query{Tenant: "acme", Compat: true, BulkID: "b2", Limit: 10})
	if err != nil || len(got) != 2 || got[0].ID != "acme-c6" {
		t.Errorf("bulk b2 after the upgrade: %v %v", got, err)
	}
}

// TestSQLitePurgeLetsTheWriterIn: the purge deletes in chunks, each its own statement on the
// writer's connection, and a batch of records commits between two chunks; a purge in one
// statement held SQLite's lock, and every send's record with it, for seconds on a large log.
func TestSQLitePurgeLetsTheWriterIn(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "log.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var batch []Op
	for i := range 95 {
		batch = append(batch, Op{Insert: record(fmt.Sprint("old-", i), "acme", "ib", "", t0.Add(-48*time.Hour))})
	}
	if _, err := s.Apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
	s.PurgeChunk = 10
	chunks, during := 0, 0
	s.afterPurgeChunk = func() {
		chunks++
		if chunks == 3 { // a batch of the writer, between two chunks
			if _, err := s.Apply(ctx, []Op{{Insert: record("new", "acme", "ib", "", t0)}}); err != nil {
				t.Errorf("a batch during the purge: %v", err)
			}
			during++
		}
	}
	n, err := s.Purge(ctx, t0.Add(-time.Hour))
	if err != nil || n != 95 {
		t.Fatalf("purged %d (%v), want 95", n, err)
	}
	// 10 chunks of messages (the last one short), then one of unmatched reports.
	if chunks != 11 || during != 1 {
		t.Errorf("%d chunks, %d batches between them", chunks, during)
	}
	if _, err := s.Get(ctx, "acme", "new"); err != nil {
		t.Errorf("the record written during the purge: %v", err)
	}
}

// TestPostgresMigrationsIgnoreTheRolesStatementTimeout: a statement_timeout meant for the
// gateway's queries (here 1 ms, in the DSN) does not cut the migrations short.
func TestPostgresMigrationsIgnoreTheRolesStatementTimeout(t *testing.T) {
	dsn := pgtest.DSN(t) + "&options=-c%20statement_timeout%3D1"
	p, err := OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatalf("migrations under a 1 ms statement_timeout: %v", err)
	}
	p.Close()
}
