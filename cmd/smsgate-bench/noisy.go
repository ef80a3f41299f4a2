package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// noisyTenants adds the two tenants of the noisy-neighbour mode to the bench config.
const noisyTenants = `  - name: flood
    api_key: flood-key
  - name: quiet
    api_key: quiet-key
`

// twoTenants is the bench config with the flood and quiet tenants added.
func twoTenants(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "cmd", "smsgate-bench", "smsgate.yaml"))
	return strings.Replace(string(b), "tenants:\n", "tenants:\n"+noisyTenants, 1), err
}

// noisy measures what a flooding tenant does to a quiet one on the same replica: the quiet tenant
// (8 callers) alone, then beside a flood of -concurrency callers with server.max_in_flight off, then
// with it at -max-in-flight (1024, the default), each for -duration. Providers answer after
// -latency.
func noisy(o options, root, dir, gwBin, ibURL, twURL string) error {
	base, err := twoTenants(root)
	if err != nil {
		return err
	}
	const quietWorkers = 8
	fmt.Printf("## Noisy neighbour: a quiet tenant (%d callers) beside a flooding one (%d callers), %s each, providers after %v\n\n",
		quietWorkers, o.concurrency, o.duration, o.latency)
	fmt.Println("| phase | quiet req/s | quiet not 200 | quiet p50 ms | quiet p99 ms | flood req/s | flood 503 overloaded | flood other not 200 |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for i, ph := range []struct {
		name, cap string
		flood     bool
	}{{"quiet alone", "0", false}, {"with the flood, max_in_flight 0 (no cap)", "0", true},
		{fmt.Sprintf("with the flood, max_in_flight %d", o.maxInFlight), fmt.Sprint(o.maxInFlight), true}} {
		floodWorkers := 0
		if ph.flood {
			floodWorkers = o.concurrency
		}
		cfg := strings.Replace(base, "server:\n", "server:\n  max_in_flight: "+ph.cap+"\n", 1)
		quiet, flood, err := beside(o, cfg, fmt.Sprintf("noisy-%d", i), dir, gwBin, ibURL, twURL, floodWorkers, quietWorkers, false)
		if err != nil {
			return err
		}
		q := summarize(quiet, o.duration)
		fRate, shed, fOther := "—", "—", "—"
		if ph.flood {
			n503, other := 0, 0
			for _, s := range flood {
				switch {
				case s.status == 503:
					n503++
				case s.status != 200:
					other++
				}
			}
			fRate = fmt.Sprintf("%.0f", float64(len(flood)-n503-other)/o.duration.Seconds())
			shed, fOther = fmt.Sprint(n503), fmt.Sprint(other)
		}
		fmt.Printf("| %s | %.0f | %d | %s | %s | %s | %s | %s |\n", ph.name, q.rps, q.errors, ms(q.p50), ms(q.p99), fRate, shed, fOther)
	}
	fmt.Println()
	return nil
}

// beside runs a gateway on cfg (written to dir as name.yaml, its database name.db) and, for
// o.duration, floodWorkers callers of the flood tenant (none: 0) and, 200 ms later (the flood
// first, as a noisy neighbour is), quietWorkers of the quiet one; then stops it.
func beside(o options, cfg, name, dir, gwBin, ibURL, twURL string, floodWorkers, quietWorkers int, keepProvider bool) (quiet, flood []sample, err error) {
	cfg = strings.Replace(cfg, "smsgate.db", name+".db", 1)
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, nil, err
	}
	gw, err := startGateway(path, dir, gwBin, ibURL, twURL, nil)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	var wg sync.WaitGroup
	if floodWorkers > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); flood = load(ctx, gw.url, "flood-key", floodWorkers, keepProvider, nil) }()
		time.Sleep(200 * time.Millisecond)
	}
	quiet = load(ctx, gw.url, "quiet-key", quietWorkers, keepProvider, nil)
	wg.Wait()
	cancel()
	return quiet, flood, gw.stop()
}
