package app

import (
	"cmp"
	"context"
	"time"

	"github.com/smsgate/smsgate/gateway/config"
)

// watchIdle is how often the watch loop looks whether a reload turned server.watch_config on
// (Options replaces it for tests).
const watchIdle = 5 * time.Second

// watchLoop reloads the config when the file, or a file it reads tenants or a secret from, differs from what
// the last load read (server.watch_config; SIGHUP and the admin API reload too, and each load
// records what it read, so a change is reloaded once whichever saw it first). A file that fails to
// load is not tried again until it changes again. Kubernetes updates a mounted ConfigMap or Secret
// in place: with it, a tenant's new key or a new tenant reaches every replica without a restart or
// a signal.
func (a *App) watchLoop(stop <-chan struct{}) {
	for {
		every := a.rt.Load().cfg.Server.WatchConfig.D()
		wait := every
		if every <= 0 {
			wait = cmp.Or(a.opts.watchIdle, watchIdle)
		}
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		if every <= 0 || config.Digest(a.opts.ConfigPath) == *a.loaded.Load() {
			continue
		}
		a.log.Info("config file changed; reloading", "file", a.opts.ConfigPath)
		ctx, cancel := context.WithTimeout(a.background(), time.Minute)
		_ = a.Reload(ctx) // logs why when the new file is invalid
		cancel()
	}
}
