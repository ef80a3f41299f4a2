package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Connecting is bounded; migrating is not. A migration that builds an index over a month of
// messages takes as long as the table is large (about 0.5 s a million records on the project's
// machine, minutes in a busy production), and one cut at a fixed bound would leave an invalid
// index, start over at the next attempt and never end. Instead a watcher asks the database, on
// another connection, every migrateProbe how the migration does: an answer within
// migrateProbeTimeout says the database is alive, and every migrateLogEvery it is logged (what is
// being built, its phase, and what it waits for); no answer cuts the migration short, as an
// outage (errStalled), to be tried again.
var (
	connectTimeout       = 10 * time.Second
	migrateProbe         = 5 * time.Second
	migrateProbeTimeout  = 10 * time.Second
	migrateLogEvery      = 30 * time.Second
	migrateResetDeadline = 5 * time.Second
)

// errStalled is a migration cut short because the database stopped answering the watcher.
type errStalled struct{ err error }

func (e *errStalled) Error() string {
	return "the database stopped answering while migrating: " + e.err.Error()
}

func (e *errStalled) Unwrap() error { return e.err }

// migrate applies the migrations this build knows and the database lacks; with apply false it
// only checks that there are none (ErrSchemaOld).
func (p *Postgres) migrate(ctx context.Context, log *slog.Logger, apply bool) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	w := watchMigrations(ctx, p.pool, conn.Conn().PgConn().PID(), log)
	if apply {
		p.ahead, err = migrateOn(w.ctx, conn.Conn(), w)
	} else {
		p.ahead, err = checkSchema(w.ctx, conn.Conn())
	}
	return w.stop(err)
}

// migrateOn migrates on conn; ahead is the schema version found when it is newer than this build
// knows and may be run on (else 0).
func migrateOn(ctx context.Context, conn *pgx.Conn, w *migrationWatch) (ahead int, err error) {
	// A role's statement_timeout is for the gateway's queries, not for building an index over a
	// month of messages: cut short, the build would start over at every start and never end.
	if _, err := conn.Exec(ctx, `SET statement_timeout = 0`); err != nil {
		return 0, err
	}
	defer reset(ctx, conn, `RESET statement_timeout`)
	w.at("waiting for the migration lock (another replica is migrating)")
	if err := lockMigrations(ctx, conn); err != nil {
		return 0, err
	}
	defer reset(ctx, conn, `SELECT pg_advisory_unlock(`+lockKeySQL+`)`, ":migrate")
	w.at("reading the schema version")
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version int NOT NULL)`); err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_migrations)`); err != nil {
		return 0, err
	}
	var v int
	if err := conn.QueryRow(ctx, `SELECT version FROM schema_migrations`).Scan(&v); err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_compat (requires int NOT NULL)`); err != nil {
		return 0, err
	}
	if v > len(pgMigrations) {
		return newerSchema(ctx, conn, v)
	}
	for i := v; i < len(pgMigrations); i++ {
		if err := applyPG(ctx, conn, i+1, pgMigrations[i], w); err != nil {
			return 0, fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	_, err = conn.Exec(ctx, `DELETE FROM schema_compat; INSERT INTO schema_compat (requires) VALUES (`+strconv.Itoa(oldestReader)+`)`)
	return 0, err
}

// newerSchema decides whether this build may run on a schema at version v, newer than it knows
// (checkNewer), and returns v when it may.
func newerSchema(ctx context.Context, conn *pgx.Conn, v int) (int, error) {
	var requires int
	err := conn.QueryRow(ctx, `SELECT requires FROM schema_compat`).Scan(&requires)
	var pe *pgconn.PgError
	if err != nil && !errors.Is(err, pgx.ErrNoRows) && !(errors.As(err, &pe) && pe.Code == "42P01") { // undefined_table
		return 0, err
	}
	if err := checkNewer(v, len(pgMigrations), requires, err == nil); err != nil {
		return 0, err
	}
	return v, nil
}

// checkSchema checks, without changing anything, that this build's migrations are all applied
// and that it may run on the schema; ahead as migrateOn's.
func checkSchema(ctx context.Context, conn *pgx.Conn) (ahead int, err error) {
	var v int
	err = conn.QueryRow(ctx, `SELECT version FROM schema_migrations`).Scan(&v)
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows) || errors.As(err, &pe) && pe.Code == "42P01": // no log there yet
		return 0, schemaOld(0, len(pgMigrations))
	case err != nil:
		return 0, err
	case v > len(pgMigrations):
		return newerSchema(ctx, conn, v)
	case v < len(pgMigrations):
		return 0, schemaOld(v, len(pgMigrations))
	}
	return 0, nil
}

// reset undoes what migrateOn set on its session, within migrateResetDeadline, unless the
// watcher found the database not answering: its connection is broken then, and goes with the
// pool (OpenPostgres closes it), which ends the session's lock too.
func reset(ctx context.Context, conn *pgx.Conn, sql string, args ...any) {
	var st *errStalled
	if errors.As(context.Cause(ctx), &st) {
		return
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), migrateResetDeadline)
	defer cancel()
	_, _ = conn.Exec(uctx, sql, args...)
}

// lockMigrations takes the migration lock, trying again until it is free rather than waiting in
// pg_advisory_lock: a replica waiting there holds a snapshot, and CREATE INDEX CONCURRENTLY in the
// replica that migrates waits for every snapshot older than its own, the waiters' too, a deadlock.
func lockMigrations(ctx context.Context, conn *pgx.Conn) error {
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+lockKeySQL+`) IS NOT FALSE`, ":migrate").Scan(&ok); err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// applyPG applies migration m, which makes the schema version version.
func applyPG(ctx context.Context, conn *pgx.Conn, version int, m pgMigration, w *migrationWatch) error {
	step := "migration " + strconv.Itoa(version)
	for _, ix := range m.indexes {
		w.at(step + ": building index " + ix.name)
		// A concurrent build that stopped half way (a crash, a cancelled start) leaves an invalid
		// index behind, which IF NOT EXISTS would keep: drop it and build again.
		var invalid bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace AND NOT i.indisvalid)`, ix.name).Scan(&invalid); err != nil {
			return err
		}
		if invalid {
			if _, err := conn.Exec(ctx, `DROP INDEX CONCURRENTLY IF EXISTS `+ix.name); err != nil {
				return err
			}
		}
		if _, err := conn.Exec(ctx, `CREATE INDEX CONCURRENTLY IF NOT EXISTS `+ix.name+` `+ix.def); err != nil {
			return fmt.Errorf("index %s: %w", ix.name, err)
		}
	}
	for _, name := range m.drops {
		w.at(step + ": dropping index " + name)
		if _, err := conn.Exec(ctx, `DROP INDEX CONCURRENTLY IF EXISTS `+name); err != nil {
			return fmt.Errorf("index %s: %w", name, err)
		}
	}
	w.at(step)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if m.sql != "" {
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE schema_migrations SET version = $1`, version); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// migrationWatch is the watcher of one replica's migrations (see migrateProbe).
type migrationWatch struct {
	*migrationSteps
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
}

func watchMigrations(ctx context.Context, pool *pgxpool.Pool, pid uint32, log *slog.Logger) *migrationWatch {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &migrationWatch{migrationSteps: newMigrationSteps(), ctx: wctx, cancel: cancel, done: make(chan struct{})}
	go w.run(pool, pid, log)
	return w
}

// stop ends the watcher and returns err, or the watcher's reason when it cut the migration short.
func (w *migrationWatch) stop(err error) error {
	w.cancel(nil)
	<-w.done
	var st *errStalled
	if cause := context.Cause(w.ctx); errors.As(cause, &st) && err != nil {
		return st
	}
	return err
}

func (w *migrationWatch) run(pool *pgxpool.Pool, pid uint32, log *slog.Logger) {
	defer close(w.done)
	logged := w.began
	t := time.NewTicker(migrateProbe)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		pr, err := probeMigration(w.ctx, pool, pid)
		var pe *pgconn.PgError
		switch {
		case w.ctx.Err() != nil:
			return
		case errors.As(err, &pe) || errors.Is(err, pgx.ErrNoRows):
			// The database answered: alive, though it could not say more (a PostgreSQL-compatible
			// database without the progress view).
		case err != nil:
			w.cancel(&errStalled{err})
			return
		}
		if time.Since(logged) >= migrateLogEvery {
			logged = time.Now()
			w.log(log, pr.attrs()...)
		}
	}
}

// migrationProgress is what PostgreSQL says of the migrating session.
type migrationProgress struct {
	waitType, wait, phase   string
	blocksDone, blocksTotal int64
	lockerPID               int64
	lockerApp, lockerState  string
	lockerXactSeconds       int64
}

// probeMigration reads pg_stat_activity and pg_stat_progress_create_index (PostgreSQL 12 and
// later) for the migrating session pid, and for the session it waits for: the one whose
// transaction its index build waits for, or, while it waits for the migration lock, the one that
// holds the lock (another replica migrating; or, after a network cut, a session whose client is
// gone, which PostgreSQL ends only when its keepalives give up).
func probeMigration(ctx context.Context, pool *pgxpool.Pool, pid uint32) (migrationProgress, error) {
	ctx, cancel := context.WithTimeout(ctx, migrateProbeTimeout)
	defer cancel()
	var pr migrationProgress
	err := pool.QueryRow(ctx, `WITH me AS (SELECT a.pid, a.wait_event_type, a.wait_event, p.phase, p.blocks_done, p.blocks_total,
				coalesce(nullif(p.current_locker_pid, 0), (
					SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.pid <> a.pid
						AND l.classid = ((k.k >> 32) & 4294967295)::oid AND l.objid = (k.k & 4294967295)::oid LIMIT 1)) AS locker
			FROM pg_stat_activity a
			LEFT JOIN pg_stat_progress_create_index p ON p.pid = a.pid
			CROSS JOIN (SELECT `+strings.Replace(lockKeySQL, "$1", "$2", 1)+` AS k) k
			WHERE a.pid = $1)
		SELECT coalesce(me.wait_event_type, ''), coalesce(me.wait_event, ''), coalesce(me.phase, ''),
			coalesce(me.blocks_done, 0), coalesce(me.blocks_total, 0), coalesce(me.locker, 0),
			coalesce(l.application_name, ''), coalesce(l.state, ''), coalesce(extract(epoch FROM now() - l.xact_start)::bigint, 0)
		FROM me LEFT JOIN pg_stat_activity l ON l.pid = me.locker`, int64(pid), ":migrate").Scan(&pr.waitType, &pr.wait, &pr.phase, &pr.blocksDone, &pr.blocksTotal,
		&pr.lockerPID, &pr.lockerApp, &pr.lockerState, &pr.lockerXactSeconds)
	return pr, err
}

// attrs are the progress line's fields: only what PostgreSQL reports that there is.
func (pr migrationProgress) attrs() []any {
	var a []any
	if pr.phase != "" {
		a = append(a, "phase", pr.phase)
	}
	if pr.blocksTotal > 0 {
		a = append(a, "blocks_done", pr.blocksDone, "blocks_total", pr.blocksTotal)
	}
	if pr.waitType != "" {
		a = append(a, "waiting_on", pr.waitType+"/"+pr.wait)
	}
	if pr.lockerPID != 0 {
		a = append(a, "waiting_for_pid", pr.lockerPID, "its_application", pr.lockerApp, "its_state", pr.lockerState,
			"its_transaction_open_s", pr.lockerXactSeconds)
	}
	return a
}
