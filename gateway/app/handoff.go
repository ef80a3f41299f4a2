package app

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/store"
)

// Message log writes handed over between replicas (storage.driver postgres with state.driver redis).
//
// While PostgreSQL fails, each replica keeps the records of the sends it answered in memory (the
// store's retry buffer) until the database takes them. A replica stopped meanwhile (a rolling
// upgrade, a scale-down, a node drained during the outage) would lose them when its store closes.
// Instead the store hands them to handOff, which pushes them onto a Redis list; every replica
// whose message log keeps up writes the list's chunks (adoptLoop) and removes each once written,
// so whichever replica outlives the outage, or starts after it, writes them. On PostgreSQL a
// write applied twice is harmless (store/handoff.go: no report moves a record backwards, charges
// a price twice or arms a push again). With a SQLite log, each replica's own file, there is no
// other replica to write them, and nothing is handed over.

// handOffKey is the Redis list of chunks handed over.
func (a *App) handOffKey() string { return a.statePrefix + "log-handoff" }

// adoptEvery is how often a replica looks for writes handed over, and adoptWriteFor how long it
// waits for a chunk it took to commit before it leaves the chunk in the list (Options replaces
// both for tests).
const adoptEvery, adoptWriteFor = 5 * time.Second, 10 * time.Second

// handOffFor is store.Options.HandOff for cfg: nil unless the message log is PostgreSQL and the
// state is in Redis.
func (a *App) handOffFor(cfg *config.Config) func(context.Context, [][]byte) error {
	if cfg.Storage.Driver != "postgres" || a.stateClient == nil {
		return nil
	}
	return a.handOff
}

// handOff is store.Options.HandOff: the chunks go to the end of the list. The list has no expiry,
// unlike every other key but the drains: with maxmemory-policy volatile-lru, Redis would evict it
// like any key that expires, and the records with it. It lives only until the replicas take it
// (Redis removes a list once empty), which any replica does while its database takes writes.
func (a *App) handOff(ctx context.Context, chunks [][]byte) error {
	rt := a.rt.Load()
	vals := make([]any, len(chunks))
	for i, c := range chunks {
		sig := rt.mac("log-handoff", string(c))
		vals[i] = append(sig[:], c...)
	}
	return a.stateClient.RPush(ctx, a.handOffKey(), vals...).Err()
}

// signed returns the chunk of a list entry signed under this fleet's state.key_secret, or false
// for an entry that is not: the list is in Redis, where anything else that can write (or a
// replica of another fleet with the same key_prefix) could put records for any tenant, and
// pushes to any notify URL, into the log.
func (a *App) signed(entry []byte) ([]byte, bool) {
	if len(entry) < sha256.Size {
		return nil, false
	}
	sig, chunk := entry[:sha256.Size], entry[sha256.Size:]
	want := a.rt.Load().mac("log-handoff", string(chunk))
	return chunk, hmac.Equal(sig, want[:])
}

// adoptLoop takes handed-over writes while this replica's message log keeps up, at start and
// every adoptEvery, until stop.
func (a *App) adoptLoop(stop <-chan struct{}) {
	a.adopt()
	every(stop, cmp.Or(a.opts.adoptEvery, adoptEvery), a.adopt)
}

// adopt writes the chunks of the list, one at a time, while this replica's database has been
// reached and none of its own writes wait (it takes writes), and it is not stopping. A chunk
// leaves the list only once its writes have committed (LINDEX, Adopt, then LREM): a replica that
// dies between the two leaves it for another, and writing it twice is harmless. Each replica starts at a chunk of its own
// choosing, so that replicas taking the list together seldom write the same one.
func (a *App) adopt() {
	ctx := a.background()
	for a.store.Backlog() == 0 && a.store.Reached() && ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		entry, err := a.pickChunk(rctx)
		cancel()
		if errors.Is(err, redis.Nil) {
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				a.stateError("log_handoff", err)
			}
			return
		}
		chunk, ok := a.signed(entry)
		if !ok {
			a.leftInList(errUnsigned)
			return
		}
		wctx, cancel := context.WithTimeout(ctx, cmp.Or(a.opts.adoptWriteFor, adoptWriteFor))
		n, err := a.store.Adopt(wctx, chunk)
		cancel()
		if errors.Is(err, store.ErrHandoffFormat) {
			a.leftInList(err)
			return
		}
		if err != nil {
			// Not committed yet (or this replica's log closed under it): the chunk stays in the
			// list, and what was queued here is written too, or handed over again.
			a.log.Warn("message log writes handed over by another replica: not written yet, left in the list", "writes", n, "err", err.Error())
			return
		}
		a.metrics.LogHandedOver.WithLabelValues("in").Add(float64(n))
		a.log.Info("message log writes handed over by another replica written", "writes", n)
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		err = a.stateClient.LRem(rctx, a.handOffKey(), 1, entry).Err()
		cancel()
		if err != nil {
			a.stateError("log_handoff", err) // written: another replica may write it again, harmlessly
			return
		}
	}
}

// leftInList says, once a minute, that adopt leaves a chunk in the list: one not signed by this
// fleet, or of a format this build cannot read (a rolling upgrade under way), for a replica that
// reads it or an operator.
func (a *App) leftInList(why error) {
	if now := time.Now(); now.Sub(a.foreignLogged) >= time.Minute {
		a.foreignLogged = now
		a.log.Warn("message log writes in the hand-over list not written: left for another replica", "list", a.handOffKey(), "err", why.Error())
	}
}

// errUnsigned is adopt's error for a list entry not signed under this fleet's state.key_secret.
var errUnsigned = errors.New("not signed under this replica's state.key_secret")

// pickChunk reads a chunk of the list at random, leaving it there; redis.Nil when there is none.
// It sets smsgate_message_log_handoff_waiting_chunks to the list's length.
func (a *App) pickChunk(ctx context.Context) ([]byte, error) {
	n, err := a.stateClient.LLen(ctx, a.handOffKey()).Result()
	if err != nil {
		return nil, err
	}
	a.metrics.LogHandOffWaiting.Set(float64(n))
	if n == 0 {
		return nil, redis.Nil
	}
	return a.stateClient.LIndex(ctx, a.handOffKey(), rand.Int64N(n)).Bytes()
}
