package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestOwnDatabaseIsolatesIndexBuilds: while a snapshot is held open in one test's database, an
// index build (CREATE INDEX CONCURRENTLY) in another test's database completes, and one in the
// same database waits for it, which is why tests that hold snapshots take OwnDatabase. (It holds
// its snapshot in a database of its own too: held in the shared one, it would hold up every other
// package's migrations running at the time.)
func TestOwnDatabaseIsolatesIndexBuilds(t *testing.T) {
	held := OwnDatabase(t)
	_, end := HoldSnapshot(t, held)
	defer end()
	build := func(dsn string, within time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, `CREATE TABLE built (a int)`); err != nil {
			t.Fatal(err)
		}
		_, err = c.Exec(ctx, `CREATE INDEX CONCURRENTLY built_a ON built (a)`)
		return err
	}
	if err := build(OwnDatabase(t), 10*time.Second); err != nil {
		t.Errorf("the build in a database of its own: %v", err)
	}
	if err := build(held, time.Second); err == nil {
		t.Error("the build in the snapshot's database did not wait for it")
	}
}
