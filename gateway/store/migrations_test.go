package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smsgate/smsgate/gateway/store/pgtest"
	"github.com/smsgate/smsgate/gateway/syncbuf"
)

// TestPostgresIndexBuildResumes: an index whose concurrent build stopped half way is left invalid
// by PostgreSQL; the next start drops it and builds it again rather than keeping it (IF NOT EXISTS
// alone would). An upgrade from the schema before the index builds it over the rows already there.
func TestPostgresIndexBuildResumes(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	p, err := OpenPostgres(ctx, dsn, nil)
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
	exec(fmt.Sprintf(`DROP INDEX %s; DROP INDEX %s; DROP INDEX messages_unpulled; ALTER TABLE messages DROP COLUMN parts; DROP TABLE chores;
		CREATE INDEX messages_untaken ON messages (tenant, created_at) WHERE source <> '' AND NOT report_taken;
		UPDATE schema_migrations SET version = %d`, first, second, six-1))
	exec(`INSERT INTO messages (id, tenant, status, created_at, updated_at, source, bulk_id, reference)
		SELECT 'm' || g, 'acme', 'sent', g, g, 'infobip-sms-v3', 'b' || (g % 7), 'ref-' || g FROM generate_series(1, 500) g`)
	exec(`CREATE INDEX ` + first + ` ` + m.indexes[0].def)
	exec(`UPDATE pg_index SET indisvalid = false WHERE indexrelid = '` + first + `'::regclass`)
	if _, v := valid(first); v {
		t.Fatal("the index was not made invalid")
	}
	again, err := OpenPostgres(ctx, dsn, nil)
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

// sqliteAtVersion5 opens a new SQLite log whose schema is that of version 5, before migrations 6
// to 8, and returns its path.
func sqliteAtVersion5(t *testing.T) (string, *SQLite) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.db")
	s, err := OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.Exec(sqliteVersion5); err != nil {
		t.Fatal(err)
	}
	return path, s
}

// sqliteVersion5 takes a SQLite log of this build's schema back to that of version 5.
const sqliteVersion5 = `DROP INDEX messages_bulk; DROP INDEX messages_reference; DROP INDEX messages_unpulled; ALTER TABLE messages DROP COLUMN parts;
		CREATE INDEX messages_untaken ON messages(tenant, created_at) WHERE source != '' AND report_taken = 0;
		UPDATE schema_version SET version = 5`

// toVersion5 takes the closed SQLite log at path back to the schema of version 5, its rows kept.
func toVersion5(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(sqliteVersion5); err != nil {
		t.Fatal(err)
	}
}

// lockedAtVersion5 is sqliteAtVersion5's log, closed, and another connection to it (another
// process, as SQLite sees it) holding its write lock until it runs ROLLBACK.
func lockedAtVersion5(t *testing.T) (string, *sql.DB) {
	t.Helper()
	path, s := sqliteAtVersion5(t)
	s.Close()
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	other.SetMaxOpenConns(1)
	if _, err := other.Exec(`BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	return path, other
}

// TestALongSQLiteMigrationSaysSo: SQLite migrations that run long (an index built over a large
// file; here migrations waiting for another process's write to the file) log what they do and for
// how long every migrateLogEvery, as PostgreSQL's do, and go on to the end. They used to fail at
// once with SQLITE_BUSY: the transaction began deferred, and WAL mode does not wait to upgrade a
// reader to a writer. Beside the same writer, a log opened as it is (no migration) still opens.
func TestALongSQLiteMigrationSaysSo(t *testing.T) {
	ctx := context.Background()
	path, other := lockedAtVersion5(t)
	fastMigrationWatch(t)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	go func() {
		time.Sleep(500 * time.Millisecond)
		other.Exec(`ROLLBACK`)
	}()
	s, err := OpenSQLite(ctx, path, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
		t.Errorf("schema version %d, want %d", v, len(migrations))
	}
	if got := logs.String(); !strings.Contains(got, `msg="message log migrations still running" step="waiting for the file's write lock (another process is writing to it)" running_for=`) {
		t.Errorf("no progress line saying what the migrations wait for: %s", got)
	}
	at := len(logs.String())
	time.Sleep(250 * time.Millisecond)
	if more := logs.String()[at:]; more != "" {
		t.Errorf("progress lines after the migrations ended: %s", more)
	}
	// A log opened as it is (smsgate route, which only reads) does not take the write lock: it
	// would wait busy_timeout for the writer's, then fail.
	if _, err := other.Exec(`BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	defer other.Exec(`ROLLBACK`)
	ro, err := OpenSQLiteAsIs(ctx, path, SQLiteOptions{})
	if err != nil {
		t.Fatalf("opened as it is beside a writer: %v", err)
	}
	ro.Close()
}

// TestASQLiteFileLockedElsewhereIsAnOutage: a SQLite log whose write lock another process holds
// for longer than busy_timeout (a long smsgate migrate beside a starting serve) fails the open as
// an outage does (Unreachable: the start serves and tries again), not as a config it refuses (which
// stopped the start).
func TestASQLiteFileLockedElsewhereIsAnOutage(t *testing.T) {
	path, other := lockedAtVersion5(t)
	defer other.Exec(`ROLLBACK`)
	_, err := OpenSQLite(context.Background(), path, nil)
	if err == nil || !Unreachable(err) || !strings.Contains(err.Error(), "locked") {
		t.Errorf("open beside another process's write: %v (Unreachable %v), want an outage", err, Unreachable(err))
	}
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSQLite(context.Background(), filepath.Join(file, "log.db"), nil); err == nil || Unreachable(err) {
		t.Errorf("a path under a file: %v, want a refusal", err)
	}
}

// TestSQLiteUpgradeBuildsTheIndexes: a log written by the version before migration 6 gets the
// indexes of migrations 6 and 7 at the next start, over the rows already there.
func TestSQLiteUpgradeBuildsTheIndexes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "log.db")
	s, err := OpenSQLite(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := New(Options{Backend: s})
	compatRecords(t, st) // written by this build, then the schema taken back to version 5
	st.Close()
	toVersion5(t, path)
	s, err = OpenSQLite(ctx, path, nil)
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
// gateway's queries (here 200 ms, in the DSN) does not cut the migrations short: migration 6's
// index build waits 600 ms for a session holding a snapshot, three times the timeout, and
// completes. (A timeout of 1 ms, as this test had, failed it on a loaded machine: the timer can
// fire during the migration's own SET that lifts it, and PostgreSQL then cancels the statement
// after it "due to user request".)
func TestPostgresMigrationsIgnoreTheRolesStatementTimeout(t *testing.T) {
	const held = 600 * time.Millisecond
	dsn := pgtest.OwnDatabase(t)
	atVersion5(t, dsn)
	_, end := pgtest.HoldSnapshot(t, dsn)
	released := make(chan struct{})
	go func() {
		time.Sleep(held)
		end()
		close(released)
	}()
	defer func() { <-released }()
	start := time.Now()
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	p, err := OpenPostgres(context.Background(), dsn+sep+"options=-c%20statement_timeout%3D200", nil)
	if err != nil {
		t.Fatalf("migrations under a 200 ms statement_timeout: %v", err)
	}
	p.Close()
	if d := time.Since(start); d < held {
		t.Errorf("the migrations took %s: their index build did not wait for the held snapshot, so the timeout was not put to the test", d)
	}
}

// atVersion5 takes the schema of dsn back to version 5, before the index builds of migrations 6
// and 7, with rows for them to read.
func atVersion5(t *testing.T, dsn string) {
	t.Helper()
	ctx := context.Background()
	p, err := OpenPostgres(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.pool.Exec(ctx, `DROP INDEX messages_bulk; DROP INDEX messages_reference; DROP INDEX messages_unpulled; ALTER TABLE messages DROP COLUMN parts; DROP TABLE chores;
		CREATE INDEX messages_untaken ON messages (tenant, created_at) WHERE source <> '' AND NOT report_taken;
		UPDATE schema_migrations SET version = 5;
		INSERT INTO messages (id, tenant, status, created_at, updated_at, source, bulk_id, reference)
		SELECT 'm' || g, 'acme', 'sent', g, g, 'infobip-sms-v3', 'b' || (g % 7), 'ref-' || g FROM generate_series(1, 200) g`); err != nil {
		t.Fatal(err)
	}
}

// fastMigrationWatch shrinks the watcher's periods and every bound of an open for one test.
func fastMigrationWatch(t *testing.T) {
	old := []time.Duration{connectTimeout, migrateProbe, migrateProbeTimeout, migrateLogEvery}
	connectTimeout, migrateProbe, migrateProbeTimeout, migrateLogEvery = 300*time.Millisecond, 30*time.Millisecond, 300*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() {
		connectTimeout, migrateProbe, migrateProbeTimeout, migrateLogEvery = old[0], old[1], old[2], old[3]
	})
}

// TestALongMigrationIsNotCutShort: an index build that waits (here for a transaction left open)
// outlasts every bound of an open, and the start's wait: the first attempt goes on in the
// background, says what it waits for (the index, the phase, the session it waits for), and ends
// once that session does, without a failure or a second attempt. Each attempt used to be cut at
// 10 s: an index build that takes longer (a large message log) left an invalid index, started over
// at the next attempt and never ended, and the replica never reached its message log.
func TestALongMigrationIsNotCutShort(t *testing.T) {
	dsn := pgtest.OwnDatabase(t)
	atVersion5(t, dsn)
	fastMigrationWatch(t)
	holder, end := pgtest.HoldSnapshot(t, dsn)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var failures atomic.Int32
	opened := make(chan struct{})
	l, ended, _ := OpenLater(func(ctx context.Context) (Backend, error) { return OpenPostgres(ctx, dsn, log) }, 10*time.Millisecond, 200*time.Millisecond,
		func(err error) { t.Errorf("an attempt failed: %v", err); failures.Add(1) }, func() { close(opened) })
	defer l.Close()
	if ended {
		t.Fatal("the first attempt ended while its index build waited")
	}
	within(t, 10*time.Second, "a progress line names the held session", func() bool {
		return strings.Contains(logs.String(), fmt.Sprintf("waiting_for_pid=%d", holder))
	})
	line := logs.String()
	for _, want := range []string{`msg="message log migrations still running"`, `step="migration 6: building index messages_bulk"`, "its_application=held-open"} {
		if !strings.Contains(line, want) {
			t.Errorf("the progress lines lack %s:\n%s", want, line)
		}
	}
	// A second replica waits for the first's migration lock and names the session that holds it.
	var second syncbuf.Buffer
	secondDone := make(chan error, 1)
	go func() {
		p, err := OpenPostgres(context.Background(), dsn, slog.New(slog.NewTextHandler(&second, nil)))
		if err == nil {
			p.Close()
		}
		secondDone <- err
	}()
	within(t, 10*time.Second, "the second replica names the lock's holder", func() bool {
		return strings.Contains(second.String(), `step="waiting for the migration lock`) && strings.Contains(second.String(), "its_state=active")
	})
	time.Sleep(time.Second) // past every bound of the open: connecting, the watcher's checks
	if l.Open() {
		t.Fatal("migrated while the build waited")
	}
	end()
	select {
	case <-opened:
	case <-time.After(15 * time.Second):
		t.Fatal("the migration did not end after the held session did")
	}
	if v, err := l.cur.Load().Backend.(*Postgres).SchemaVersion(context.Background()); err != nil || v != len(pgMigrations) {
		t.Errorf("schema version %d (%v), want %d", v, err, len(pgMigrations))
	}
	if failures.Load() != 0 {
		t.Errorf("%d failed attempts", failures.Load())
	}
	if err := <-secondDone; err != nil {
		t.Errorf("the second replica: %v", err)
	}
}

// TestAMigrationWhoseDatabaseStopsAnsweringIsCutShort: migrations have no time bound, so a
// database that stops answering without closing the connection (a vanished host) must not hold
// them for good: the watcher's check gets no answer, and the attempt ends as an outage, to be
// tried again; once the database answers again, the next attempt finishes the build.
func TestAMigrationWhoseDatabaseStopsAnsweringIsCutShort(t *testing.T) {
	direct := pgtest.OwnDatabase(t)
	dsn, stall := pgtest.StallingTo(t, direct)
	atVersion5(t, direct)
	fastMigrationWatch(t)
	holder, end := pgtest.HoldSnapshot(t, direct)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	done := make(chan error, 1)
	go func() {
		p, err := OpenPostgres(context.Background(), dsn, log)
		if err == nil {
			p.Close()
		}
		done <- err
	}()
	within(t, 10*time.Second, "the build waits for the held session", func() bool {
		return strings.Contains(logs.String(), fmt.Sprintf("waiting_for_pid=%d", holder))
	})
	stall(true)
	t0 := time.Now()
	select {
	case err := <-done:
		t.Logf("ended after %s: %v", time.Since(t0), err)
		if !Unreachable(err) || !strings.Contains(err.Error(), "stopped answering while migrating") {
			t.Errorf("the open ended with %v, want a stall, classed as unreachable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the migration still waits 10 s after the database stopped answering")
	}
	stall(false)
	end()
	p, err := OpenPostgres(context.Background(), dsn, nil)
	if err != nil {
		t.Fatalf("the attempt after the stall: %v", err)
	}
	defer p.Close()
	if v, err := p.SchemaVersion(context.Background()); err != nil || v != len(pgMigrations) {
		t.Errorf("schema version %d (%v), want %d", v, err, len(pgMigrations))
	}
}

// TestARollbackRunsOnANewerSchema: a build rolled back to after a newer one migrated the log runs
// on the newer schema without touching it, as long as the log says builds that know as many
// migrations as it does can (schema_compat); it refuses to start, saying why, when a migration
// since needs the newer code, or when the log does not say. Before, any newer schema stopped the
// start, so a rollback after an upgrade failed on every replica.
func TestARollbackRunsOnANewerSchema(t *testing.T) {
	ctx := context.Background()
	type backend struct {
		open    func() (Backend, error)
		exec    func(sql string) // on a connection of its own
		query   func(sql string) int
		version string // the table of the schema version
		known   int
	}
	dsn := pgtest.DSN(t)
	path := filepath.Join(t.TempDir(), "log.db")
	for name, be := range map[string]backend{
		"sqlite": {
			open: func() (Backend, error) { return OpenSQLite(ctx, path, nil) },
			exec: func(q string) {
				db, err := sql.Open("sqlite", "file:"+path)
				if err == nil {
					_, err = db.ExecContext(ctx, q)
					db.Close()
				}
				if err != nil {
					t.Fatal(err)
				}
			},
			query: func(q string) (n int) {
				db, err := sql.Open("sqlite", "file:"+path)
				if err == nil {
					err = db.QueryRowContext(ctx, q).Scan(&n)
					db.Close()
				}
				if err != nil {
					t.Fatal(err)
				}
				return n
			},
			version: "schema_version",
			known:   len(migrations),
		},
		"postgres": {
			open: func() (Backend, error) { return OpenPostgres(ctx, dsn, nil) },
			exec: func(q string) {
				c, err := pgx.Connect(ctx, dsn)
				if err == nil {
					_, err = c.Exec(ctx, q)
					c.Close(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
			},
			query: func(q string) (n int) {
				c, err := pgx.Connect(ctx, dsn)
				if err == nil {
					err = c.QueryRow(ctx, q).Scan(&n)
					c.Close(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
				return n
			},
			version: "schema_migrations",
			known:   len(pgMigrations),
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := be.open()
			if err != nil {
				t.Fatal(err)
			}
			ahead := func(b Backend) (int, int) { return b.(interface{ Ahead() (int, int) }).Ahead() }
			if v, k := ahead(b); v != 0 || k != 0 {
				t.Errorf("a log at this build's schema: ahead %d, %d", v, k)
			}
			b.Close()
			// Opened again, at this build's schema: still not ahead, and it says which older
			// builds may run on it.
			if b, err = be.open(); err != nil {
				t.Fatal(err)
			}
			if v, k := ahead(b); v != 0 || k != 0 {
				t.Errorf("a log at this build's schema, opened again: ahead %d, %d", v, k)
			}
			b.Close()
			if got := be.query(`SELECT requires FROM schema_compat`); got != oldestReader {
				t.Errorf("schema_compat says builds of %d migrations may run on the log, want %d (oldestReader)", got, oldestReader)
			}
			// A newer build's additive migrations: older builds may run on its schema.
			newer := be.known + 2
			be.exec(fmt.Sprintf(`UPDATE %s SET version = %d; UPDATE schema_compat SET requires = 1`, be.version, newer))
			if b, err = be.open(); err != nil {
				t.Fatalf("a rollback onto a schema older builds may run on: %v", err)
			}
			if v, k := ahead(b); v != newer || k != be.known {
				t.Errorf("ahead %d, %d; want %d, %d", v, k, newer, be.known)
			}
			if v, err := b.(interface {
				SchemaVersion(context.Context) (int, error)
			}).SchemaVersion(ctx); err != nil || v != newer {
				t.Errorf("the rollback changed the schema version to %d (%v)", v, err)
			}
			s := New(Options{Backend: b})
			if err := s.Insert(ctx, record("m-rollback", "acme", "p", "", t0)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, "acme", "m-rollback"); err != nil {
				t.Errorf("a record written after the rollback: %v", err)
			}
			s.Close()
			for _, c := range []struct{ sql, want string }{
				// A newer build's migration that older code cannot run on.
				{fmt.Sprintf(`UPDATE schema_compat SET requires = %d`, be.known+1),
					fmt.Sprintf("needs a build that knows at least %d migrations, this one knows %d", be.known+1, be.known)},
				// A log that does not say.
				{`DELETE FROM schema_compat`, "does not say which older builds can run on it"},
			} {
				be.exec(c.sql)
				if b, err := be.open(); err == nil {
					b.Close()
					t.Errorf("after %s: opened", c.sql)
				} else if !strings.Contains(err.Error(), ErrSchemaTooNew.Error()) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("after %s: %v, want %q", c.sql, err, c.want)
				}
			}
		})
	}
}

// TestPostgresOpenAsIsChangesNothing: opened as it is (smsgate route), a PostgreSQL log that lacks
// this build's migrations, or has none yet, is refused with ErrSchemaOld and left as it was; one
// at this build's version opens.
func TestPostgresOpenAsIsChangesNothing(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	if _, err := OpenPostgresAsIs(ctx, dsn); err == nil || !strings.Contains(err.Error(), "schema version 0, this build knows") {
		t.Errorf("an empty schema opened as it is: %v", err)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&n); err != nil || n != 0 {
		t.Errorf("opening as it is created %d tables (%v)", n, err)
	}
	atVersion5(t, dsn)
	if _, err := OpenPostgresAsIs(ctx, dsn); err == nil || !strings.Contains(err.Error(), "schema version 5, this build knows") {
		t.Errorf("a log at version 5 opened as it is: %v", err)
	}
	var v int
	if err := c.QueryRow(ctx, `SELECT version FROM schema_migrations`).Scan(&v); err != nil || v != 5 {
		t.Errorf("version %d after opening as it is (%v)", v, err)
	}
	p, err := OpenPostgres(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	p, err = OpenPostgresAsIs(ctx, dsn)
	if err != nil {
		t.Fatalf("a migrated log opened as it is: %v", err)
	}
	p.Close()
}
