package app

import (
	"context"
	"errors"
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
// whose message log keeps up takes chunks off that list (adoptLoop) and writes them, so whichever
// replica outlives the outage, or starts after it, writes them. On PostgreSQL a write applied
// twice is harmless (store/handoff.go). With a SQLite log, each replica's own file, there is no
// other replica to write them, and nothing is handed over.

// handOffKey is the Redis list of chunks handed over.
func (a *App) handOffKey() string { return a.statePrefix + "log-handoff" }

// adoptEvery is how often a replica looks for writes handed over (a variable for the tests).
var adoptEvery = 5 * time.Second

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
	vals := make([]any, len(chunks))
	for i, c := range chunks {
		vals[i] = c
	}
	return a.stateClient.RPush(ctx, a.handOffKey(), vals...).Err()
}

// adoptLoop takes handed-over writes while this replica's message log keeps up, at start and
// every adoptEvery, until stop.
func (a *App) adoptLoop(stop <-chan struct{}) {
	a.adopt()
	every(stop, adoptEvery, a.adopt)
}

// adopt takes chunks off the list and writes them, one at a time, while none of this replica's
// own writes wait (its database takes writes) and it is not stopping. A chunk taken is this
// replica's: it stays in its retry buffer until written, and is handed over again should the
// replica stop first.
func (a *App) adopt() {
	ctx := a.background()
	for a.store.Backlog() == 0 && ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		chunk, err := a.stateClient.LPop(rctx, a.handOffKey()).Bytes()
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
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := a.store.Adopt(wctx, chunk)
		cancel()
		if errors.Is(err, store.ErrHandoffFormat) || errors.Is(err, store.ErrClosed) {
			// Handed over by a build of another format (a rolling upgrade under way), or this
			// replica's log closed under it: back to the list, for a replica that writes it; this
			// one looks again at its next turn, and says so once a minute.
			if now := time.Now(); now.Sub(a.putBackLogged) >= time.Minute {
				a.putBackLogged = now
				a.log.Warn("message log writes handed over by another replica: left for another replica", "err", err.Error())
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if err := a.handOff(rctx, [][]byte{chunk}); err != nil {
				a.log.Error("message log writes handed over by another replica could not be put back; lost", "err", err.Error())
			}
			cancel()
			return
		}
		if err != nil {
			// Not committed yet: the writes stay queued here, and are written or handed over again.
			a.log.Warn("message log writes handed over by another replica: not written yet, kept in this replica's retry buffer", "writes", n, "err", err.Error())
			return
		}
		a.metrics.LogHandedOver.WithLabelValues("in").Add(float64(n))
		a.log.Info("message log writes handed over by another replica written", "writes", n)
	}
}
