package app

import (
	"log/slog"
	"sync"
	"time"
)

// lineGate bounds the log lines of errors. The log is one file, one pipeline and one disk for
// every tenant: a line for each request of a flood refused (or failed at once: a tenant's own
// breaker open) would make the answer cost as much as a send (the line is the dearest part of
// it) and fill what the other tenants' lines need. Per key (a tenant and its outcome, a provider
// and the reason its reports were rejected), at most log.error_lines_per_second lines are
// written in any second of the clock; the key's next line says how many were left out. Keys are
// bounded by configured names and the fixed sets of outcomes and reasons.
type lineGate struct {
	mu   sync.Mutex
	keys map[string]*lineWindow
	// swept is the second of the last sweep of keys idle for a minute: keys name tenants, and a
	// team renaming its tenants at each change would otherwise add to them without end.
	swept int64
}

type lineWindow struct {
	sec        int64 // the second n counts in
	n          int   // lines written in it
	suppressed int   // lines left out since the last written
}

// allow reports whether a line for key may be written at now, with at most perSecond a second
// (0: no bound), and how many lines of key were left out before it.
func (g *lineGate) allow(key string, perSecond int, now time.Time) (bool, int) {
	if perSecond <= 0 {
		return true, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if sec := now.Unix(); sec-g.swept >= 60 {
		for k, w := range g.keys {
			if sec-w.sec >= 60 && w.suppressed == 0 {
				delete(g.keys, k)
			}
		}
		g.swept = sec
	}
	w := g.keys[key]
	if w == nil {
		if g.keys == nil {
			g.keys = map[string]*lineWindow{}
		}
		w = &lineWindow{}
		g.keys[key] = w
	}
	if sec := now.Unix(); w.sec != sec {
		w.sec, w.n = sec, 0
	}
	if w.n >= perSecond {
		w.suppressed++
		return false, 0
	}
	w.n++
	left := w.suppressed
	w.suppressed = 0
	return true, left
}

// errorLine reports whether a line of an error under key may be written, and how many lines
// of key were left out before it (say so on the line: leftOut).
func (a *App) errorLine(key string) (bool, int) {
	return a.lines.allow(key, *a.rt.Load().cfg.Log.ErrorLinesPerSecond, a.now())
}

// leftOut is the attribute that says how many lines were left out before this one, if any.
func leftOut(n int) []any {
	if n == 0 {
		return nil
	}
	return []any{slog.Int("suppressed", n)}
}
