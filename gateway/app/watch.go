package app

import (
	"context"
	"crypto/sha256"
	"os"
	"time"

	"github.com/smsgate/smsgate/gateway/config"
)

// watchIdle is how often the watch loop looks whether a reload turned server.watch_config on.
const watchIdle = 5 * time.Second

// configPrint is a digest of the config file and of every file it reads (tenant_files, and
// secrets: ${file:PATH}), as they are now: a file that cannot be read counts as such, so its appearing is
// a change too. Only digests are kept, never what the files hold.
func configPrint(path string) string {
	h := sha256.New()
	b, err := os.ReadFile(path)
	if err != nil {
		h.Write([]byte("unreadable\x00"))
	}
	h.Write(b)
	for _, f := range config.Watched(path, b) {
		h.Write([]byte("\x00" + f + "\x00"))
		if s, err := config.ReadWatched(f); err == nil { // never a FIFO, nor a large file whole
			h.Write([]byte{1})
			h.Write(s)
		}
	}
	return string(h.Sum(nil))
}

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
			wait = watchIdle
		}
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		if every <= 0 || configPrint(a.opts.ConfigPath) == *a.loaded.Load() {
			continue
		}
		a.log.Info("config file changed; reloading", "file", a.opts.ConfigPath)
		ctx, cancel := context.WithTimeout(a.background(), time.Minute)
		_ = a.Reload(ctx) // logs why when the new file is invalid
		cancel()
	}
}
