package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smsgate/smsgate/gateway"
)

// pgMigrations are applied in order under an advisory lock, each in a transaction of its own;
// schema_migrations records how many ran, and schema_compat the oldest version whose code can run
// on the schema (oldestReader). Append, never edit. Times are Unix milliseconds, as in
// SQLite, so cursors mean the same.
var pgMigrations = []pgMigration{
	{sql: `CREATE TABLE messages (
		id text PRIMARY KEY,
		tenant text NOT NULL,
		client_id text NOT NULL DEFAULT '',
		route text NOT NULL DEFAULT '',
		message_type text NOT NULL DEFAULT '',
		action text NOT NULL DEFAULT '',
		country text NOT NULL DEFAULT '',
		recipient text NOT NULL DEFAULT '',
		status text NOT NULL,
		provider text NOT NULL DEFAULT '',
		provider_message_id text NOT NULL DEFAULT '',
		attempts jsonb NOT NULL DEFAULT '[]',
		error text NOT NULL DEFAULT '',
		provider_status text NOT NULL DEFAULT '',
		price double precision NOT NULL DEFAULT 0,
		currency text NOT NULL DEFAULT '',
		created_at bigint NOT NULL,
		updated_at bigint NOT NULL,
		delivered_at bigint
	);
	-- Listing a tenant's messages, newest first, with the (created_at, id) cursor.
	CREATE INDEX messages_tenant_created ON messages (tenant, created_at DESC, id DESC);
	-- Delivery reports that carry only the provider's id (Twilio's sid).
	CREATE INDEX messages_provider_pmid ON messages (provider, provider_message_id) WHERE provider_message_id <> '';
	-- Retention purge.
	CREATE INDEX messages_created ON messages (created_at);
	CREATE TABLE pending_reports (
		seq bigserial PRIMARY KEY,
		provider text NOT NULL,
		provider_message_id text NOT NULL,
		message_id text NOT NULL,
		report jsonb NOT NULL,
		received_at bigint NOT NULL
	);
	CREATE INDEX pending_by_pmid ON pending_reports (provider, provider_message_id) WHERE provider_message_id <> '';
	CREATE INDEX pending_by_id ON pending_reports (provider, message_id) WHERE message_id <> '';
	CREATE INDEX pending_received ON pending_reports (received_at);`},
	// 2: messages sent through the Infobip-compatible API.
	{sql: `ALTER TABLE messages ADD COLUMN source text NOT NULL DEFAULT '',
		ADD COLUMN reference text NOT NULL DEFAULT '',
		ADD COLUMN bulk_id text NOT NULL DEFAULT '',
		ADD COLUMN callback_data text NOT NULL DEFAULT '',
		ADD COLUMN notify_url text NOT NULL DEFAULT '',
		ADD COLUMN report_taken boolean NOT NULL DEFAULT false;
	CREATE INDEX messages_untaken ON messages (tenant, created_at) WHERE source <> '' AND NOT report_taken;`},
	// 3: the number range of the recipient (pumping detection's conversion signal).
	{sql: `ALTER TABLE messages ADD COLUMN num_range text NOT NULL DEFAULT '';`},
	// 4: pushes of final reports to notify URLs, kept until done (Due, PushDone).
	{sql: `ALTER TABLE messages ADD COLUMN push_at bigint NOT NULL DEFAULT 0,
		ADD COLUMN push_tries integer NOT NULL DEFAULT 0;
	CREATE INDEX messages_push_due ON messages (tenant, push_at) WHERE push_at > 0;`},
	// 5: reports held until the caller is given the message's id (Release).
	{sql: `ALTER TABLE messages ADD COLUMN report_held boolean NOT NULL DEFAULT false;`},
	// 6: the Infobip-compatible logs' filters (bulkId, the caller's messageId), partial: a message
	// without them (every Auth0 send) writes nothing to them.
	{indexes: []pgIndex{
		{"messages_bulk", "ON messages (tenant, bulk_id, created_at DESC, id DESC) WHERE bulk_id <> ''"},
		{"messages_reference", "ON messages (tenant, reference) WHERE reference <> ''"},
	}},
	// 7: reports to pull (Take): only final reports of messages sent without a notify URL, not
	// yet pulled. messages_untaken held every compat message until pulled or pushed, so a pull
	// walked all of a tenant's messages still waiting for a report (a provider that sends none:
	// all of them) to find none.
	{indexes: []pgIndex{{"messages_unpulled", "ON messages (tenant, created_at) " +
		"WHERE source <> '' AND notify_url = '' AND NOT report_taken AND status IN ('delivered','undelivered','failed','rejected')"}},
		drops: []string{"messages_untaken"}},
	// 8: the parts an SMS was sent as (a report's price counts them; prices are read per part).
	{sql: `ALTER TABLE messages ADD COLUMN parts integer NOT NULL DEFAULT 1;`},
	// 9: when a chore the replicas share last ran (the trim), so that one replica does it per
	// interval (claimChore).
	{sql: `CREATE TABLE chores (name text PRIMARY KEY, ran_at timestamptz NOT NULL);`},
}

// pgMigration is one step of the schema: sql runs in a transaction with the version's update.
// indexes, on tables that may already be large, are built before it with CREATE INDEX
// CONCURRENTLY, and drops are dropped after the builds with DROP INDEX CONCURRENTLY, both outside
// any transaction: a plain CREATE INDEX would hold every replica's writes to the table for as long
// as the build takes, and a plain DROP INDEX every query behind the slowest read running.
type pgMigration struct {
	sql     string
	indexes []pgIndex
	drops   []string
}

// pgIndex is an index built concurrently: its name, and its definition after the name.
type pgIndex struct{ name, def string }

// Postgres is a Backend on PostgreSQL (jackc/pgx v5 with a pool), shared by every replica: any
// replica reads any message and applies any delivery report.
//
// Concurrency between replicas: a record and a report about it can be written by two replicas at
// once. Each batch takes transaction-scoped advisory locks on the (provider, id) keys it touches,
// in sorted order (no deadlocks), so of two such transactions the second waits for the first and
// then sees its rows: an early report is either found by the record's insert or finds the record.
type Postgres struct {
	// pool serves migrations and the reads made on a tenant's behalf (its message, its listings,
	// the reports it pulls: Get, List, Take); sys, a pool of its own, the reads every tenant
	// relies on (delivery reports' look-ups, delivery health, prices, pushes) and the chores
	// (purge, trim): however long tenants' reads hold every connection of pool, reports are still
	// matched and routing still reads its health. writer, a pool of its own, serves only the
	// writer's batches, so that however many reads run, every tenant's records still commit.
	pool, sys, writer *pgxpool.Pool
	// readConns is pool's size (ReadConns; the app's read gate asks for it at every read).
	readConns int
	// Now is the clock for updated_at and for when a report falls due to be pushed; nil means time.Now.
	Now func() time.Time
	// PurgeChunk bounds the rows one purge statement deletes; default 5000.
	PurgeChunk int
	// ahead is the schema version found at open when it is newer than this build knows, else 0.
	ahead int
	// look is what this replica's last count of every tenant's records found (Trim).
	look trimLook
}

// Ahead returns the schema version found at open and the version this build knows, when the
// schema is newer (a rollback to an older build, which runs on it without migrating); else 0, 0.
func (p *Postgres) Ahead() (version, known int) {
	if p.ahead == 0 {
		return 0, 0
	}
	return p.ahead, len(pgMigrations)
}

// OpenPostgres connects to dsn and applies the migrations under an advisory lock, so replicas
// starting together do not race. The DSN's password is never printed in errors. Connecting is
// bounded by the DSN's connect_timeout, 10 s when it sets none; migrations are not (see
// migrateProbe), and log (nil: none) gets a line on their progress while they run long.
func OpenPostgres(ctx context.Context, dsn string, log *slog.Logger) (*Postgres, error) {
	return openPostgres(ctx, dsn, log, true)
}

// OpenPostgresAsIs connects to dsn without migrating, for tools that only read (smsgate route):
// it fails with ErrSchemaOld when this build's migrations are not all applied, and as
// OpenPostgres does when the schema is newer than this build can run on.
func OpenPostgresAsIs(ctx context.Context, dsn string) (*Postgres, error) {
	return openPostgres(ctx, dsn, nil, false)
}

func openPostgres(ctx context.Context, dsn string, log *slog.Logger, migrate bool) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("message log: storage.dsn is not a valid PostgreSQL connection string")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	cfg.ConnConfig.OnPgError = dropOnReadOnly(cfg.ConnConfig.OnPgError)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The pool of tenants' reads: at least pgTenantReads (each tenant may run 2 reads at once on a
	// replica), unless the DSN's pool_max_conns says otherwise: an operator fitting replicas into
	// the database's max_connections decides.
	if cfg.MaxConns < pgTenantReads && !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = pgTenantReads
	}
	// Two at least: migrations hold one while their watcher asks on another (migrateProbe), and
	// would take a watcher left waiting for a connection for a database that stopped answering.
	cfg.MaxConns = max(cfg.MaxConns, 2)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("message log: %s", redactDSN(err.Error(), cfg.ConnConfig.Password))
	}
	p := &Postgres{pool: pool, readConns: int(cfg.MaxConns)}
	if err := p.migrate(ctx, log, migrate); err != nil {
		var st *errStalled
		if errors.As(err, &st) {
			// pgx closes a connection by asking the server, on a new one, to cancel what it ran,
			// for up to 15 s: the database is not answering, so the attempt does not wait for it.
			go pool.Close()
		} else {
			pool.Close()
		}
		msg := fmt.Sprintf("message log %s@%s/%s: %s", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Database, redactDSN(err.Error(), cfg.ConnConfig.Password))
		if unreachable(err) {
			return nil, &unreachableError{msg}
		}
		return nil, errors.New(msg)
	}
	// One writer goroutine applies batches; a second connection covers one being replaced.
	wcfg := cfg.Copy()
	wcfg.MaxConns, wcfg.MinConns = 2, 0
	if p.writer, err = pgxpool.NewWithConfig(ctx, wcfg); err != nil {
		pool.Close()
		return nil, fmt.Errorf("message log: %s", redactDSN(err.Error(), cfg.ConnConfig.Password))
	}
	scfg := cfg.Copy()
	scfg.MaxConns, scfg.MinConns = pgSharedReads, 0
	if p.sys, err = pgxpool.NewWithConfig(ctx, scfg); err != nil {
		pool.Close()
		p.writer.Close()
		return nil, fmt.Errorf("message log: %s", redactDSN(err.Error(), cfg.ConnConfig.Password))
	}
	return p, nil
}

// pgTenantReads is the default size of the pool of tenants' reads (storage.dsn's pool_max_conns
// sets it), pgSharedReads the size of the pool of the reads every tenant relies on and of the
// chores. With the writer's two, a replica opens at most 6 + 4 + 2 connections by default.
const (
	pgTenantReads = 6
	pgSharedReads = 4
)

// ReadConns implements Backend.
func (p *Postgres) ReadConns() int { return p.readConns }

// readOnly reports whether err is a server refusing a write as read-only (SQLSTATE 25006).
func readOnly(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == readOnlySQLTransaction
}

// readOnlySQLTransaction is SQLSTATE read_only_sql_transaction.
const readOnlySQLTransaction = "25006"

// dropOnReadOnly closes a connection whose server refused a write as read-only (SQLSTATE 25006),
// and leaves every other error to next (pgx's own handler, which closes on FATAL). A server that
// became a standby under open connections (a failover that kept the old primary up) answers so;
// the pool would keep the connection, and the writer retry each batch on it until the
// connection's lifetime ended (an hour). Closed, it is replaced at the next acquire by one to the
// host that takes writes now (with target_session_attrs=read-write, or a name that moved).
func dropOnReadOnly(next pgconn.PgErrorHandler) pgconn.PgErrorHandler {
	return func(c *pgconn.PgConn, e *pgconn.PgError) bool {
		if e.Code == readOnlySQLTransaction {
			return false
		}
		return next == nil || next(c, e)
	}
}

// unreachableError is an open that failed before the database could answer.
type unreachableError struct{ msg string }

func (e *unreachableError) Error() string { return e.msg }

// Unreachable reports whether err, from OpenPostgres or OpenSQLite, says the database could not be
// reached (a refused or timed-out connection, a name that did not resolve, a server starting up or
// shutting down, no host of the kind target_session_attrs asks for; a SQLite file another process
// holds locked), as opposed to an answer of the database that a retry will not change: a wrong
// password, a role or database that does not exist, a file that cannot be opened, a migration it
// refused.
func Unreachable(err error) bool {
	var u *unreachableError
	return errors.As(err, &u)
}

// unreachable classifies an error of connecting and migrating.
func unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Connection exceptions; the server starting up, shutting down or in recovery; and
		// insufficient resources (53: too many connections, out of memory or disk), which pass
		// as connections end and the operator makes room: a replica started while the database
		// had no connection left to give serves and reaches it later, instead of failing its
		// start again and again.
		// And a server that takes no writes (25006: a standby, where a failover has not yet moved
		// the DSN's name), which cannot be told from one the DSN names by mistake: the replica
		// serves without its log and says so, as in any outage, rather than refuse to start.
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P") || strings.HasPrefix(pe.Code, "53") || pe.Code == readOnlySQLTransaction
	}
	var ne net.Error
	var st *errStalled
	return errors.As(err, &st) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		noHostOfTheKindAsked(err)
}

// noHostOfTheKindAsked reports whether every host the DSN lists answered, but none is of the kind
// its target_session_attrs asks for (read-write, say, from a DSN that lists a primary and its
// standbys): a failover under way, the state of the servers, not of the config.
func noHostOfTheKindAsked(err error) bool {
	for _, kind := range []error{pgconn.ErrReadOnlyConnection, pgconn.ErrStandbyConnection, pgconn.ErrReadWriteConnection, pgconn.ErrPrimaryConnection} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}

func redactDSN(s, password string) string {
	if password == "" {
		return s
	}
	return strings.ReplaceAll(s, password, "<secret>")
}

// lockKey is the advisory lock of one purpose in the current schema (tests run each in a schema
// of their own).
const lockKeySQL = `hashtextextended(current_schema() || $1, 0)`

// SchemaVersion returns how many migrations have been applied.
func (p *Postgres) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := p.pool.QueryRow(ctx, `SELECT version FROM schema_migrations`).Scan(&v)
	return v, err
}

func (p *Postgres) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// key is the advisory-lock key of (provider, id): a record takes it for its own id and its
// provider id, a report for the ids it carries.
func key(provider, id string) int64 {
	h := fnv.New64a()
	h.Write([]byte(provider))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return int64(h.Sum64())
}

const pgCols = `id, tenant, client_id, route, message_type, action, country, recipient, status, provider,
	provider_message_id, attempts, error, provider_status, price, currency, created_at, updated_at, delivered_at,
	source, reference, bulk_id, callback_data, notify_url, report_taken, num_range, push_at, push_tries, report_held, parts`

// pgColsM is pgCols qualified by the alias m.
var pgColsM = "m." + strings.ReplaceAll(strings.Join(strings.Fields(pgCols), " "), ", ", ", m.")

// Apply implements Backend: the whole batch in one transaction, in two round trips: BEGIN, the
// locks and the lookups; then the writes and COMMIT (pgx sends each batch as one pipeline).
func (p *Postgres) Apply(ctx context.Context, ops []Op) ([]Charge, error) {
	ap := &applier{now: p.now().UTC()}
	if err := p.apply(ctx, ops, ap); err != nil {
		if refusedByPostgres(err) {
			return nil, refusedError{err}
		}
		if readOnly(err) {
			// The server is a standby now: the reads' connections to it go too (they would read
			// what it still holds, and refuse the claims of pushes and pulls), and are made again
			// to the server that takes writes.
			p.pool.Reset()
			p.sys.Reset()
		}
		return nil, err
	}
	return ap.charges, nil
}

// refusedByPostgres reports whether err is PostgreSQL refusing the data (ErrRefused): a data
// exception (class 22, such as a NUL byte or a bad encoding), an integrity constraint (23) or a
// program limit (54, such as an index entry too large). Connection, lock and serialization
// failures are not: those writes are kept and tried again.
func refusedByPostgres(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}

// apply writes ops in one transaction and two round trips: lockAndLook takes the locks and reads
// what the batch needs, match applies the reports in Go, writeAndCommit writes the result.
func (p *Postgres) apply(ctx context.Context, ops []Op, ap *applier) error {
	inserts := make([]*Record, 0, len(ops))
	for _, op := range ops {
		if op.Insert != nil {
			r := *op.Insert
			inserts = append(inserts, &r)
		}
	}
	conn, err := p.writer.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	committed := false
	defer func() {
		// A failed batch leaves the transaction open (or aborted): end it so the connection goes
		// back to the pool. If even that fails, Release closes a connection left in a transaction.
		if !committed && conn.Conn().PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			conn.Exec(rctx, "ROLLBACK")
		}
	}()
	look, err := lockAndLook(ctx, conn, ops, inserts)
	if err != nil {
		return err
	}
	w := match(ops, inserts, look, ap)
	if err := writeAndCommit(ctx, conn, ops, inserts, w, ap.now); err != nil {
		return err
	}
	committed = true
	return nil
}

// lockKeys are the advisory locks a batch takes, sorted (so that two replicas' batches never wait
// for each other in a cycle): each new record's id and provider id, each report's ids.
func lockKeys(ops []Op) []int64 {
	var keys []int64
	for _, op := range ops {
		switch {
		case op.Insert != nil:
			keys = append(keys, key(op.Insert.Provider, op.Insert.ID))
			if op.Insert.ProviderMessageID != "" {
				keys = append(keys, key(op.Insert.Provider, op.Insert.ProviderMessageID))
			}
		case op.Report != nil:
			if op.Report.MessageID != "" {
				keys = append(keys, key(op.Report.Provider, op.Report.MessageID))
			}
			if op.Report.ProviderMessageID != "" {
				keys = append(keys, key(op.Report.Provider, op.Report.ProviderMessageID))
			}
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// lookups is what a batch's first round trip read.
type lookups struct {
	// early holds the reports that arrived before each new record (by its id), in arrival
	// order; they were deleted from pending_reports in this transaction, so they must be applied.
	early map[string][]pendingReport
	// existing holds the records the batch's reports name, locked for update, by id; and the
	// records of inserts tried again that turned out to be there already.
	existing map[string]*Record
}

// lockAndLook is the first round trip: BEGIN, the locks, the early reports of the new records
// (taken out of pending_reports), and the records the reports name.
func lockAndLook(ctx context.Context, conn *pgxpool.Conn, ops []Op, inserts []*Record) (lookups, error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k`, lockKeys(ops))
	ids, provs, pmids := make([]string, len(inserts)), make([]string, len(inserts)), make([]string, len(inserts))
	for i, r := range inserts {
		ids[i], provs[i], pmids[i] = r.ID, r.Provider, r.ProviderMessageID
	}
	// Two statements each, not one with OR: each side uses its own index.
	b.Queue(`DELETE FROM pending_reports p USING unnest($1::text[], $2::text[]) AS x(id, provider)
		WHERE p.message_id <> '' AND p.provider = x.provider AND p.message_id = x.id
		RETURNING x.id, p.seq, p.report`, ids, provs)
	b.Queue(`DELETE FROM pending_reports p USING unnest($1::text[], $2::text[], $3::text[]) AS x(id, provider, pmid)
		WHERE x.pmid <> '' AND p.provider_message_id <> '' AND p.provider = x.provider AND p.provider_message_id = x.pmid
		RETURNING x.id, p.seq, p.report`, ids, provs, pmids)
	var repIDs, repIDProvs, repPMIDs, repPMIDProvs []string
	for _, op := range ops {
		if op.Insert != nil && op.again { // read it too: it may be there already
			repIDs, repIDProvs = append(repIDs, op.Insert.ID), append(repIDProvs, op.Insert.Provider)
		}
		if rep := op.Report; rep != nil {
			if rep.MessageID != "" {
				repIDs, repIDProvs = append(repIDs, rep.MessageID), append(repIDProvs, rep.Provider)
			}
			if rep.ProviderMessageID != "" {
				repPMIDs, repPMIDProvs = append(repPMIDs, rep.ProviderMessageID), append(repPMIDProvs, rep.Provider)
			}
		}
	}
	b.Queue(`SELECT `+pgColsM+` FROM messages m JOIN unnest($1::text[], $2::text[]) AS x(provider, id)
		ON m.provider = x.provider AND m.id = x.id FOR UPDATE OF m`, repIDProvs, repIDs)
	b.Queue(`SELECT `+pgColsM+` FROM messages m JOIN unnest($1::text[], $2::text[]) AS x(provider, pmid)
		ON m.provider = x.provider AND m.provider_message_id = x.pmid AND m.provider_message_id <> '' FOR UPDATE OF m`, repPMIDProvs, repPMIDs)
	br := conn.SendBatch(ctx, b)
	_, err := br.Exec() // BEGIN
	var earlyRows []earlyRow
	var existingRows []*Record
	if err == nil {
		earlyRows, existingRows, err = readLookups(br)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return lookups{}, err
	}
	seen := map[int64]bool{}
	earlyRows = slices.DeleteFunc(earlyRows, func(e earlyRow) bool { dup := seen[e.seq]; seen[e.seq] = true; return dup })
	slices.SortFunc(earlyRows, func(a, b earlyRow) int { return int(a.seq - b.seq) }) // in arrival order
	look := lookups{early: map[string][]pendingReport{}, existing: map[string]*Record{}}
	for _, e := range earlyRows {
		var rep gateway.DeliveryReport
		if json.Unmarshal(e.raw, &rep) == nil {
			look.early[e.id] = append(look.early[e.id], pendingReport{rep: &rep})
		}
	}
	for _, r := range existingRows {
		if look.existing[r.ID] == nil {
			look.existing[r.ID] = r
		}
	}
	return look, nil
}

// writes is what match leaves to the second round trip.
type writes struct {
	// changed: records read in the first round trip that the batch's reports changed.
	changed map[*Record]bool
	// kept: new records tried again (op.again) that were there already; not inserted.
	kept map[*Record]bool
	// unmatched: reports that found no record, kept for the record that comes later.
	unmatched []*gateway.DeliveryReport
}

// match applies, in Go and in order, the early reports to the new records, then each report to
// the record it names: one of this batch, or one read by lockAndLook.
func match(ops []Op, inserts []*Record, look lookups, ap *applier) writes {
	w := writes{changed: map[*Record]bool{}, kept: map[*Record]bool{}}
	byKey := map[string]*Record{}
	index := func(r *Record) {
		byKey[r.Provider+"\x00i"+r.ID] = r
		if r.ProviderMessageID != "" {
			byKey[r.Provider+"\x00p"+r.ProviderMessageID] = r
		}
	}
	for _, r := range look.existing {
		index(r)
	}
	fresh := map[*Record]bool{}
	insertIdx := 0
	for _, op := range ops {
		switch {
		case op.Insert != nil:
			r := inserts[insertIdx]
			insertIdx++
			if there := look.existing[r.ID]; op.again && there != nil {
				// The record stays as it is; what would have gone to this copy goes to it.
				w.kept[r] = true
				for _, e := range look.early[r.ID] {
					if ap.apply(there, e.rep) {
						w.changed[there] = true
					}
				}
				continue
			}
			for _, e := range look.early[r.ID] {
				ap.apply(r, e.rep)
			}
			// Reports earlier in this same batch that found no record wait for this one too.
			waiting := w.unmatched[:0]
			for _, rep := range w.unmatched {
				if matches(r, rep) {
					ap.apply(r, rep)
				} else {
					waiting = append(waiting, rep)
				}
			}
			w.unmatched = waiting
			index(r)
			fresh[r] = true
		case op.Report != nil:
			rep := op.Report
			r := byKey[rep.Provider+"\x00i"+rep.MessageID]
			if r == nil || rep.MessageID == "" {
				r = nil
				if rep.ProviderMessageID != "" {
					r = byKey[rep.Provider+"\x00p"+rep.ProviderMessageID]
				}
			}
			if r == nil {
				w.unmatched = append(w.unmatched, rep)
				continue
			}
			if ap.apply(r, rep) && !fresh[r] {
				w.changed[r] = true
			}
		}
	}
	return w
}

// writeAndCommit is the second round trip: the new records, the changed ones, the releases, the
// reports left waiting, then COMMIT.
func writeAndCommit(ctx context.Context, conn *pgxpool.Conn, ops []Op, inserts []*Record, w writes, now time.Time) error {
	b := &pgx.Batch{}
	for _, r := range inserts {
		if w.kept[r] {
			continue
		}
		args, err := pgArgs(r)
		if err != nil {
			return err
		}
		// A retried batch that had committed must not fail on its own rows.
		b.Queue(`INSERT INTO messages (`+pgCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29,$30) ON CONFLICT (id) DO NOTHING`, args...)
	}
	for r := range w.changed {
		// push_at as read under the row lock, or armed by this report (armPush).
		b.Queue(`UPDATE messages SET status = $2, provider_status = $3, error = $4, price = $5, currency = $6, updated_at = $7, delivered_at = $8, push_at = $9 WHERE id = $1`,
			r.ID, r.Status, r.ProviderStatus, r.Error, r.Price, r.Currency, r.UpdatedAt.UnixMilli(), msOrNil(r.DeliveredAt), msOrZero(r.PushAt))
	}
	// After the inserts and updates: a record released is one of this batch or of an earlier one.
	for _, op := range ops {
		if op.Release != "" {
			b.Queue(releaseSQL("$1::bigint", "$2"), now.UnixMilli(), op.Release)
		}
	}
	for _, rep := range w.unmatched {
		raw, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		b.Queue(`INSERT INTO pending_reports (provider, provider_message_id, message_id, report, received_at) VALUES ($1,$2,$3,$4,$5)`,
			rep.Provider, rep.ProviderMessageID, rep.MessageID, raw, now.UnixMilli())
	}
	b.Queue(`COMMIT`)
	return conn.SendBatch(ctx, b).Close()
}

func msOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

func pgArgs(r *Record) ([]any, error) {
	att, err := json.Marshal(r.Attempts)
	if err != nil {
		return nil, err
	}
	return []any{r.ID, r.Tenant, r.ClientID, r.Route, r.MessageType, r.Action, r.Country, r.Recipient, r.Status, r.Provider,
		r.ProviderMessageID, att, r.Error, r.ProviderStatus, r.Price, r.Currency, r.CreatedAt.UnixMilli(), r.UpdatedAt.UnixMilli(), msOrNil(r.DeliveredAt),
		r.Source, r.Reference, r.BulkID, r.CallbackData, r.NotifyURL, r.ReportTaken, r.Range, msOrZero(r.PushAt), r.PushTries, r.ReportHeld, max(1, r.Parts)}, nil
}

func scanPG(row pgx.Row) (*Record, error) {
	var r Record
	var att []byte
	var created, updated, pushAt int64
	var delivered *int64
	if err := row.Scan(&r.ID, &r.Tenant, &r.ClientID, &r.Route, &r.MessageType, &r.Action, &r.Country, &r.Recipient, &r.Status, &r.Provider,
		&r.ProviderMessageID, &att, &r.Error, &r.ProviderStatus, &r.Price, &r.Currency, &created, &updated, &delivered,
		&r.Source, &r.Reference, &r.BulkID, &r.CallbackData, &r.NotifyURL, &r.ReportTaken, &r.Range, &pushAt, &r.PushTries, &r.ReportHeld, &r.Parts); err != nil {
		return nil, err
	}
	r.PushAt = timeOrZero(pushAt)
	if err := json.Unmarshal(att, &r.Attempts); err != nil {
		return nil, err
	}
	r.CreatedAt, r.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	if delivered != nil {
		t := time.UnixMilli(*delivered).UTC()
		r.DeliveredAt = &t
	}
	return &r, nil
}

// Get implements Backend.
func (p *Postgres) Get(ctx context.Context, tenant, id string) (*Record, error) {
	r, err := scanPG(p.pool.QueryRow(ctx, `SELECT `+pgCols+` FROM messages WHERE id = $1 AND tenant = $2`, id, tenant))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return r, err
}

// List implements Backend.
func (p *Postgres) List(ctx context.Context, q Query) ([]*Record, error) {
	where, args := listSQL(q)
	rows, err := p.pool.Query(ctx, numbered(`SELECT `+pgCols+where), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return collect(rows, func() (*Record, error) { return scanPG(rows) })
}

// Health implements Backend: one grouped scan of the window (the created_at index), a row per
// (provider, country, tenant).
func (p *Postgres) Health(ctx context.Context, since, pendingBefore time.Time) ([]HealthRow, error) {
	rows, err := p.sys.Query(ctx, numbered(healthSQL), pendingBefore.UnixMilli(), since.UnixMilli(), untilMS(time.Time{}))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanAll(rows, healthFields)
}

// Prices implements Backend.
func (p *Postgres) Prices(ctx context.Context, since, until time.Time) ([]PriceRow, error) {
	rows, err := p.sys.Query(ctx, numbered(strings.Replace(pricesSQL, "COUNT(*)", "COUNT(*)::int", 1)), since.UnixMilli(), untilMS(until))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanAll(rows, priceFields)
}

// earlyRow is a pending report the batch's inserts claimed: the record's id, the report's arrival
// sequence and the report.
type earlyRow struct {
	id  string
	seq int64
	raw []byte
}

// readLookups reads the four lookups of Apply's first round trip: pending reports claimed by id
// and by provider id (a report may come back from both), then the records the batch's reports
// name by id and by provider id.
func readLookups(br pgx.BatchResults) (early []earlyRow, records []*Record, err error) {
	if _, err := br.Exec(); err != nil { // the advisory locks
		return nil, nil, err
	}
	for range 2 {
		rows, err := br.Query()
		if err != nil {
			return nil, nil, err
		}
		got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (earlyRow, error) {
			var e earlyRow
			return e, row.Scan(&e.id, &e.seq, &e.raw)
		})
		if err != nil {
			return nil, nil, err
		}
		early = append(early, got...)
	}
	for range 2 {
		rows, err := br.Query()
		if err != nil {
			return nil, nil, err
		}
		got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Record, error) { return scanPG(row) })
		if err != nil {
			return nil, nil, err
		}
		records = append(records, got...)
	}
	return early, records, nil
}

// numbered turns the ? placeholders of q into PostgreSQL's $1, $2...
func numbered(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Find implements Backend.
func (p *Postgres) Find(ctx context.Context, provider, id, pmid string) (*Record, error) {
	r, err := scanPG(p.sys.QueryRow(ctx, `SELECT `+pgCols+` FROM messages WHERE provider = $1 AND
		((id = $2 AND $2 <> '') OR (provider_message_id = $3 AND $3 <> '')) LIMIT 1`, provider, id, pmid))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return r, err
}

// pgTakeIDs selects the reports to pull (the messages_unpulled index): $1 tenant, $2 bulk or
// "", $3 our id or the caller's reference or "", $4 limit.
const pgTakeIDs = `SELECT id FROM messages WHERE tenant = $1 AND source <> '' AND notify_url = '' AND NOT report_taken
	AND ` + finalSQL + `
	AND ($2 = '' OR bulk_id = $2) AND ($3 = '' OR id = $3 OR reference = $3)
	ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED`

// Take implements Backend: SKIP LOCKED, so replicas polling at once hand out each report once.
func (p *Postgres) Take(ctx context.Context, q TakeQuery) ([]*Record, error) {
	return pgClaimRows(ctx, p.pool, oldestRecords, `UPDATE messages SET report_taken = true WHERE id IN (`+pgTakeIDs+`) RETURNING `+pgCols,
		q.Tenant, q.BulkID, q.ID, q.Limit)
}

// oldestRecords reads rows of pgCols as records, oldest first.
func oldestRecords(rows pgx.Rows) ([]*Record, error) {
	return oldestFirst(rows, func() (*Record, error) { return scanPG(rows) })
}

// pgClaimRows runs q, a statement that changes the rows it returns (UPDATE ... RETURNING), on
// pool: ctx bounds the wait for a connection; the statement then runs, and its rows are read
// with each, to their end whatever happens to ctx (within claimTimeout). Cut short while its rows
// were read (the caller gone), one that had committed would have claimed rows nobody was given:
// reports marked pulled that no pull returned.
func pgClaimRows[T any](ctx context.Context, pool *pgxpool.Pool, each func(pgx.Rows) (T, error), q string, args ...any) (T, error) {
	var zero T
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return zero, err
	}
	defer conn.Release()
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	rows, err := conn.Query(qctx, q, args...)
	if err != nil {
		return zero, err
	}
	defer rows.Close()
	return each(rows)
}

// claimTimeout bounds a claim that its caller no longer bounds (pgClaimRows): a database that
// stopped answering.
const claimTimeout = 30 * time.Second

// Due implements Backend: SKIP LOCKED, so replicas sweeping at once claim each push once.
func (p *Postgres) Due(ctx context.Context, tenant string, now time.Time, limit int) ([]*Record, error) {
	return pgClaimRows(ctx, p.sys, oldestRecords, `UPDATE messages SET push_tries = push_tries + 1, push_at = `+nextPushSQL("$1", "$2")+` WHERE id IN (
		SELECT id FROM messages WHERE tenant = $3 AND push_at > 0 AND push_at <= $2
		ORDER BY push_at LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING `+pgCols, PushTries, now.UnixMilli(), tenant, limit)
}

// DueTenants implements Backend: a read of the messages_push_due index, which holds only the
// pushes not done.
func (p *Postgres) DueTenants(ctx context.Context, now time.Time) ([]string, error) {
	rows, err := p.sys.Query(ctx, `SELECT DISTINCT tenant FROM messages WHERE push_at > 0 AND push_at <= $1`, now.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanAll(rows, tenantField)
}

// PushDone implements Backend.
func (p *Postgres) PushDone(ctx context.Context, id string) error {
	_, err := p.sys.Exec(ctx, `UPDATE messages SET report_taken = true, push_at = 0 WHERE id = $1`, id)
	return err
}

// Purge implements Backend. It runs on one replica at a time (a session advisory lock; the others
// skip this round) and deletes in chunks of PurgeChunk rows, each its own short transaction, so it
// never holds the writers up for long. Unmatched reports older than the cut-off go too.
func (p *Postgres) Purge(ctx context.Context, before time.Time) (int, error) {
	conn, err := p.sys.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+lockKeySQL+`)`, ":purge").Scan(&got); err != nil {
		return 0, err
	}
	if !got {
		return 0, nil // another replica is purging
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+lockKeySQL+`)`, ":purge")
	chunk := p.PurgeChunk
	if chunk <= 0 {
		chunk = 5000
	}
	cut := before.UnixMilli()
	total, err := deleteChunks(ctx, conn, `DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < $1 LIMIT $2)`, chunk, cut)
	if err != nil {
		return total, err
	}
	_, err = deleteChunks(ctx, conn, `DELETE FROM pending_reports WHERE seq IN (SELECT seq FROM pending_reports WHERE received_at < $1 LIMIT $2)`, chunk, cut)
	return total, err
}

// Oldest implements Backend (by messages_created: one step of the index).
func (p *Postgres) Oldest(ctx context.Context) (time.Time, error) {
	var at *int64
	if err := p.sys.QueryRow(ctx, oldestSQL).Scan(&at); err != nil || at == nil {
		return time.Time{}, err
	}
	return time.UnixMilli(*at), nil
}

// claimChore records that this replica runs the chore name now, unless a replica ran it within
// 9/10 of every (by the database's clock): false then. every 0 always claims. The tenth spares a
// replica whose timer fires a moment early from skipping a whole interval.
func claimChore(ctx context.Context, conn *pgxpool.Conn, name string, every time.Duration) (bool, error) {
	if every <= 0 {
		return true, nil
	}
	var one int
	err := conn.QueryRow(ctx, `INSERT INTO chores (name, ran_at) VALUES ($1, now())
		ON CONFLICT (name) DO UPDATE SET ran_at = now() WHERE chores.ran_at <= now() - $2 * interval '1 millisecond'
		RETURNING 1`, name, (every * 9 / 10).Milliseconds()).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// deleteChunks runs del (a DELETE of at most its last argument's rows, chunk, after args) until
// it deletes fewer than chunk rows, and returns how many it deleted.
func deleteChunks(ctx context.Context, conn *pgxpool.Conn, del string, chunk int, args ...any) (int, error) {
	total := 0
	for {
		tag, err := conn.Exec(ctx, del, append(args, chunk)...)
		if err != nil {
			return total, err
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < int64(chunk) {
			return total, nil
		}
	}
}

// Trim implements Backend. Like Purge, it runs on one replica at a time (its own advisory lock)
// and deletes in chunks of PurgeChunk rows.
func (p *Postgres) Trim(ctx context.Context, b RecordBounds) (map[string]int, error) {
	conn, err := p.sys.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+lockKeySQL+`)`, ":trim").Scan(&got); err != nil {
		return nil, err
	}
	if !got {
		return nil, nil // another replica is trimming
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+lockKeySQL+`)`, ":trim")
	if ok, err := claimChore(ctx, conn, "trim", b.Every); !ok {
		return nil, err // another replica trimmed within the interval, or the claim failed
	}
	chunk := p.PurgeChunk
	if chunk <= 0 {
		chunk = 5000
	}
	counts, err := p.look.upper(p.now(), func() (map[string]int, error) {
		return pgTenantCounts(ctx, conn, trimAllSQL)
	}, func(from int64) (map[string]int, error) {
		return pgTenantCounts(ctx, conn, trimSinceSQL, from)
	})
	if err != nil {
		return nil, err
	}
	return b.trimEach(counts, func(tenant string, max int) (at int64, id string, err error) {
		err = conn.QueryRow(ctx, numbered(trimCutSQL), tenant, max-1).Scan(&at, &id)
		if errors.Is(err, pgx.ErrNoRows) {
			err = errWithinBound
		}
		return at, id, err
	}, func(tenant string, at int64, id string) (int, error) {
		return deleteChunks(ctx, conn, numbered(`DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE `+trimOlder+` LIMIT ?)`), chunk, tenant, at, id)
	})
}

// pgTenantCounts reads records by tenant (trimAllSQL, trimSinceSQL).
func pgTenantCounts(ctx context.Context, conn *pgxpool.Conn, q string, args ...any) (map[string]int, error) {
	rows, err := conn.Query(ctx, numbered(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return tenantCounts(rows)
}

// Close implements Backend.
func (p *Postgres) Close() error {
	p.pool.Close()
	p.sys.Close()
	p.writer.Close()
	return nil
}
