package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/gateway/store"
)

// Replicas that share a message log (storage.driver postgres) and a state store (state.driver
// redis) share one read of the delivery-health window: it reads every message of the window, and N
// replicas each reading it put N times the load on the database every refresh. One replica at a
// time takes a lock in Redis, reads the window and publishes the rows it read with the time
// before which nobody reads again (its pace, healthWait); the others use those rows, each
// applying them to its own table as it would its own read. A replica whose log is its own
// (SQLite, memory) reads its own, and so does one whose Redis fails (counted as op
// health_window in smsgate_state_errors_total).

// sharedWindow is the published read.
type sharedWindow struct {
	// Read says that Rows are a read: a first read cut by its bound publishes only its Budget.
	Read bool              `json:"read"`
	Rows []store.HealthRow `json:"rows"`
	// Next is when the rows are due to be read again.
	Next time.Time `json:"next"`
	// Budget is the bound the next reader gives its read (nextHealthBudget of this one's), so that
	// a window that outgrew the least bound is read by whichever replica reads it next.
	Budget time.Duration `json:"budget"`
}

// errReadElsewhere: another replica is reading the window and none was published yet; the table
// stays as it is until the next refresh.
var errReadElsewhere = errors.New("another replica is reading the delivery-health window")

// sharesHealth reports whether this replica shares its reads of the window.
func (a *App) sharesHealth() bool {
	return a.stateClient != nil && a.rt.Load().cfg.Storage.Driver == "postgres"
}

// healthKeys are the keys of the published read and of its lock. They name the message log (a
// digest of where it is: host, port, database, user and search_path, never the password) and the
// window's settings, so that replicas of another log on the same Redis, or of a config that
// changes the window (a rollout), never use each other's rows.
func (a *App) healthKeys() (window, lock string) {
	cfg := a.rt.Load().cfg
	dh := cfg.Routing.DeliveryHealth
	k := a.statePrefix + "health:" + logDigest(cfg.Storage.DSN.Reveal()) + ":" + dh.Window.D().String() + ":" + dh.ReportTimeout.D().String()
	return k, k + ":reader"
}

// logDigest names the PostgreSQL database a DSN reaches, without its password.
func logDigest(dsn string) string {
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "unparsed"
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%s\x00%s\x00%s", pc.Host, pc.Port, pc.Database, pc.User, pc.RuntimeParams["search_path"])))
	return hex.EncodeToString(sum[:8])
}

// releaseLock deletes a lock only while it holds this reader's token.
var releaseLock = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// healthRows returns the rows of the window from since to until: those another replica published
// when they are not yet due, else this replica's own read, published for the others. budget
// bounds that read (the published one's when larger); the rows are due again after healthWait of
// refresh and how long the read took. read reports whether this replica read the message log.
func (a *App) healthRows(ctx context.Context, since, until time.Time, budget, refresh time.Duration) (rows []store.HealthRow, read bool, err error) {
	own := func(err error) ([]store.HealthRow, bool, error) {
		if err != nil {
			a.stateError("health_window", err)
		}
		rows, err := a.readHealth(ctx, since, until, budget)
		return rows, true, err
	}
	if !a.sharesHealth() {
		return own(nil)
	}
	wkey, lkey := a.healthKeys()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// last is the published read; its zero value (none, or one that does not decode) has no rows.
	var last sharedWindow
	raw, err := a.stateClient.Get(rctx, wkey).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return own(err)
	}
	if err == nil && json.Unmarshal(raw, &last) != nil {
		last = sharedWindow{}
	}
	now := a.stateNow() // Next is compared by every replica: on the clock they share
	if last.Read && now.Before(last.Next) {
		return last.Rows, false, nil
	}
	budget = max(budget, last.Budget)
	var tok [12]byte
	rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	// The lock outlives the read's bound by a little: a reader that died leaves it for that long.
	got, err := a.stateClient.SetNX(rctx, lkey, token, budget+5*time.Second).Result()
	switch {
	case err != nil:
		return own(err)
	case !got && last.Read:
		return last.Rows, false, nil
	case !got:
		return nil, false, errReadElsewhere
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		releaseLock.Run(ctx, a.stateClient, []string{lkey}, token)
	}()
	start := time.Now()
	rows, err = a.readHealth(ctx, since, until, budget)
	took := time.Since(start)
	next := sharedWindow{Read: true, Rows: rows, Next: now.Add(healthWait(refresh, took)), Budget: nextHealthBudget(a.leastHealthBudget(), budget, took, wasCut(err))}
	if err != nil {
		// Cut or failed: the last rows (if any) stay published, due now, with the bound the next
		// reader needs.
		next.Read, next.Rows, next.Next = last.Read, last.Rows, now
	}
	if b, merr := json.Marshal(next); merr == nil {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		// Kept for a window: rows older than that say nothing the next read would not.
		ttl := max(a.rt.Load().cfg.Routing.DeliveryHealth.Window.D(), time.Minute)
		if perr := a.stateClient.Set(pctx, wkey, b, ttl).Err(); perr != nil {
			a.stateError("health_window", perr)
		}
	}
	return rows, true, err
}

// readHealth reads the window from the message log within budget, and counts the read. A read
// the budget ended is a *cutError.
func (a *App) readHealth(ctx context.Context, since, until time.Time, budget time.Duration) ([]store.HealthRow, error) {
	rctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	start := time.Now()
	rows, err := a.store.Health(rctx, since, until)
	a.metrics.WindowRead("delivery_health", time.Since(start), err)
	if err != nil && rctx.Err() != nil && ctx.Err() == nil {
		err = &cutError{budget: budget, err: err}
	}
	return rows, err
}

// cutError is a read of the window that its budget ended.
type cutError struct {
	budget time.Duration
	err    error
}

func (e *cutError) Error() string {
	return "cut at its bound of " + e.budget.String() + ": " + e.err.Error()
}
func (e *cutError) Unwrap() error { return e.err }

// wasCut reports whether err is a read its budget ended.
func wasCut(err error) bool {
	var c *cutError
	return errors.As(err, &c)
}

// leastHealthBudget is the least bound of a read of the window (healthBudget, or the test's).
func (a *App) leastHealthBudget() time.Duration {
	if a.opts.healthBudget > 0 {
		return a.opts.healthBudget
	}
	return healthBudget
}
