package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/store"
)

// FlushSpool writes what the spool directory dir holds (storage.spool_dir when dir is empty)
// into the message log of cfg, and returns how many writes it held and how many it still holds.
// It is for a spool no replica will start on again: a volume kept after a scale-down, a host
// taken out of service. A running replica holding dir is refused (store.ErrSpoolInUse). The
// writes are tried until closeTimeout passes, as a stopping replica tries its own; what the
// database still refuses then stays in the spool for another run. Prices the written reports
// record are not charged to the tenants' spend limits (a running replica charges those it writes).
func FlushSpool(ctx context.Context, cfg *config.Config, dir string, closeTimeout time.Duration, log *slog.Logger) (held, left int, err error) {
	if dir == "" {
		dir = cfg.Storage.SpoolDir
	}
	if dir == "" {
		return 0, 0, errors.New("no spool: give its directory, or set storage.spool_dir")
	}
	if cfg.Storage.Driver == "memory" {
		return 0, 0, errors.New("storage.driver is memory: there is no database to write the spool into")
	}
	sp, err := store.OpenSpool(dir)
	if err != nil {
		return 0, 0, err
	}
	held = sp.Recovered()
	if held == 0 {
		return 0, 0, sp.Close()
	}
	b, err := openMigrated(ctx, cfg.Storage, log)
	if err != nil {
		sp.Close()
		return held, held, err
	}
	s := store.New(store.Options{Backend: b, Logger: log, Spool: sp, CloseTimeout: closeTimeout,
		WriteTimeout: cfg.Storage.WriteTimeout.D()})
	if err := s.Close(); err != nil {
		return held, held, err
	}
	sp, err = store.OpenSpool(dir)
	if err != nil {
		return held, held, fmt.Errorf("reading the spool again: %w", err)
	}
	return held, sp.Recovered(), sp.Close()
}
