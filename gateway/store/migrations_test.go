package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/smsgate/smsgate/gateway/store/pgtest"
)

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
