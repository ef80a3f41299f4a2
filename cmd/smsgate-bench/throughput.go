package main

import (
	"fmt"
	"strings"

	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
)

// throughputDrill measures what a flooding tenant does to a quiet one when both send through one
// provider account with a throughput (the Infobip fake answers 429 beyond -account-rate sends a
// second): first without pacing, then with the provider's throughput in the config at 90 % of the
// account's (the gateway keeps to it; beyond half of it a tenant takes only what the other leaves). The quiet tenant's 2 callers ask for less than half;
// the flood's -concurrency callers for far more. Twilio is the next provider of the route.
func throughputDrill(o options, root, dir, gwBin, ibURL, twURL string, ib *infobiptest.Fake) error {
	base, err := twoTenants(root)
	if err != nil {
		return err
	}
	const quietWorkers = 2
	fmt.Printf("## Throughput drill: Infobip's account takes %d sends a second; a quiet tenant (%d callers) beside a flooding one (%d callers), %s each, providers after %v\n\n",
		o.accountRate, quietWorkers, o.concurrency, o.duration, o.latency)
	fmt.Println("| phase | quiet req/s | quiet on Infobip | quiet p99 ms | flood req/s | flood on Infobip | Infobip 429s |")
	fmt.Println("|---|---|---|---|---|---|---|")
	ib.SetThroughput(o.accountRate)
	// A little below the account's rate: the provider counts sends as they arrive, on its own
	// clock, and a gateway that filled the account to the last send would draw a 429 now and then.
	paced := o.accountRate * 9 / 10
	defer ib.SetThroughput(0)
	for i, ph := range []struct{ name, pace string }{
		{"no pacing (the account's 429s fall where they fall)", ""},
		{fmt.Sprintf("throughput: %d/1s (90 %% of the account; a tenant's share half of it)", paced), fmt.Sprintf("    throughput: %d/1s\n", paced)},
	} {
		cfg := strings.Replace(base, "    sender: InfoSMS\n", "    sender: InfoSMS\n"+ph.pace, 1)
		before := ib.Throttled()
		quiet, flood, err := beside(o, cfg, fmt.Sprintf("throughput-%d", i), dir, gwBin, ibURL, twURL, o.concurrency, quietWorkers, true)
		if err != nil {
			return err
		}
		q, f := summarize(quiet, o.duration), summarize(flood, o.duration)
		fmt.Printf("| %s | %.0f | %s | %s | %.0f | %s | %d |\n", ph.name, q.rps, onInfobip(quiet), ms(q.p99), f.rps, onInfobip(flood), ib.Throttled()-before)
	}
	fmt.Println()
	return nil
}

// onInfobip is the share of the sent samples that Infobip took.
func onInfobip(s []sample) string {
	sent, ib := 0, 0
	for _, x := range s {
		if x.status == 200 {
			sent++
			if x.provider == "infobip" {
				ib++
			}
		}
	}
	if sent == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f %%", 100*float64(ib)/float64(sent))
}
