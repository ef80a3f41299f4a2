package app

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/gateway/config"
)

// TestOnlyAPostgresLogWithRedisStateHandsOver: records are handed over only where another replica
// writes to the same log (PostgreSQL) and can find them (Redis). A replica's SQLite file is its
// own: another replica writing them there would put them in the wrong log.
func TestOnlyAPostgresLogWithRedisStateHandsOver(t *testing.T) {
	t.Parallel()
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rc.Close()
	for _, c := range []struct {
		driver string
		redis  bool
		want   bool
	}{
		{"postgres", true, true},
		{"postgres", false, false},
		{"sqlite", true, false},
		{"memory", true, false},
	} {
		a := &App{}
		if c.redis {
			a.stateClient = rc
		}
		if got := a.handOffFor(&config.Config{Storage: config.Storage{Driver: c.driver}}) != nil; got != c.want {
			t.Errorf("storage %s, state in Redis %v: hands over %v, want %v", c.driver, c.redis, got, c.want)
		}
	}
}
