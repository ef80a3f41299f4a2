package store

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// migrationSteps is what a replica's migrations are doing now and since when, for the progress
// lines both databases write every migrateLogEvery while migrations run long.
type migrationSteps struct {
	began time.Time
	step  atomic.Pointer[string]
}

func newMigrationSteps() *migrationSteps {
	m := &migrationSteps{began: time.Now()}
	m.at("starting")
	return m
}

// at says what the migrations are doing now.
func (m *migrationSteps) at(step string) { m.step.Store(&step) }

// log writes a progress line: the step, how long the migrations have run, then attrs (what the
// database says of them).
func (m *migrationSteps) log(log *slog.Logger, attrs ...any) {
	log.Info("message log migrations still running", append([]any{
		"step", *m.step.Load(), "running_for", time.Since(m.began).Round(time.Second).String()}, attrs...)...)
}
