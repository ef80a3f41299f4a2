package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// The cost mode simulates one day of traffic twice, on a route [infobip, twilio] with strategy
// ordered and then least_cost, and adds up what it cost at the price table below. The day is
// compressed: each hour lasts -phase/5 and sends -day/24 messages in the stated country mix.
// From hour 8 to hour 16 Infobip delivers only half of its messages to India (a silent partial
// outage); both providers deliver 98% everywhere else. A message counts as delivered when the
// bench confirms it (POST /v1/messages/{id}/verified), which is what delivery health reads.

// costMix is the day's share of each destination country, with a number generator for it.
var costMix = []struct {
	country string
	share   float64
	number  func(rng *rand.Rand) string
}{
	{"US", 0.40, func(r *rand.Rand) string { return fmt.Sprintf("+1415555%04d", r.IntN(10000)) }},
	{"GB", 0.20, func(r *rand.Rand) string { return fmt.Sprintf("+447400%06d", r.IntN(1000000)) }},
	{"DE", 0.15, func(r *rand.Rand) string { return fmt.Sprintf("+49151%08d", r.IntN(100000000)) }},
	{"IN", 0.15, func(r *rand.Rand) string { return fmt.Sprintf("+9198%08d", r.IntN(100000000)) }},
	{"BR", 0.10, func(r *rand.Rand) string { return fmt.Sprintf("+55119%08d", r.IntN(100000000)) }},
}

// costPrices are illustrative per-message prices (not quotes): Infobip's in EUR, Twilio's in USD.
var costPrices = map[string]struct {
	currency string
	country  map[string]float64
}{
	"infobip": {"EUR", map[string]float64{"US": 0.0080, "GB": 0.0350, "DE": 0.0800, "IN": 0.0030, "BR": 0.0300}},
	"twilio":  {"USD", map[string]float64{"US": 0.0079, "GB": 0.0420, "DE": 0.0880, "IN": 0.0600, "BR": 0.0250}},
}

// usdToEUR is the bench's one configured rate.
const usdToEUR = 0.92

func eur(provider, country string) float64 {
	p := costPrices[provider]
	v := p.country[country]
	if p.currency == "USD" {
		v *= usdToEUR
	}
	return v
}

// costConfig writes the bench config with prices, least-cost settings, compressed delivery health
// and the route's strategy.
func costConfig(root, dir, strategy string, hour time.Duration) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "cmd", "smsgate-bench", "smsgate.yaml"))
	if err != nil {
		return "", err
	}
	s := strings.Replace(string(b), "smsgate.db", "cost-"+strategy+".db", 1)
	for name, p := range costPrices {
		var cs []string
		for cc, v := range p.country {
			cs = append(cs, fmt.Sprintf("%s: %v", cc, v))
		}
		slices.Sort(cs)
		s = strings.Replace(s, "  - name: "+name+"\n", fmt.Sprintf("  - name: %s\n    prices: {currency: %s, countries: {%s}}\n", name, p.currency, strings.Join(cs, ", ")), 1)
	}
	s = strings.Replace(s, "    providers: [infobip, twilio]", "    providers: [infobip, twilio]\n    strategy: "+strategy, 1)
	ms := func(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }
	s += fmt.Sprintf(`
routing:
  delivery_health: {enabled: true, window: %s, report_timeout: %s, min_samples: 20, min_rate: 0.7, margin: 0.1, probe_share: 0.05, refresh: %s}
  least_cost: {currency: EUR, rates: {USD: %v}, floor: 0.9, refresh: 1h}
`, ms(2*hour), ms(hour/4), ms(hour/10), usdToEUR)
	path := filepath.Join(dir, "cost-"+strategy+".yaml")
	return path, os.WriteFile(path, []byte(s), 0o600)
}

type dayResult struct {
	sent, failed, delivered int
	cost                    float64
	share                   map[string]map[string]int // country -> provider -> messages
}

// simulateDay sends the compressed day through gw.
func simulateDay(gw *process, perDay, workers int, hour time.Duration) dayResult {
	res := dayResult{share: map[string]map[string]int{}}
	var mu sync.Mutex
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2}}
	post := func(path string, body []byte) (int, []byte) {
		req, _ := http.NewRequest("POST", gw.url+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+benchKey)
		req.Header.Set("Content-Type", "application/json")
		r, err := client.Do(req)
		if err != nil {
			return 0, nil
		}
		defer r.Body.Close()
		raw, _ := io.ReadAll(r.Body)
		return r.StatusCode, raw
	}
	perHour := perDay / 24
	for h := range 24 {
		start := time.Now()
		outage := h >= 8 && h < 16
		jobs := make(chan int)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed*0x9E3779B97F4A7C15, uint64(h+1)*0xBF58476D1CE4E5B9))
				for range jobs {
					x, pick := rng.Float64(), costMix[len(costMix)-1]
					for _, m := range costMix {
						if x < m.share {
							pick = m
							break
						}
						x -= m.share
					}
					code := fmt.Sprintf("%06d", rng.IntN(1000000))
					status, raw := post("/v1/send-phone-message", []byte(`{"message_options":{"recipient":"`+pick.number(rng)+
						`","text":"Your verification code is `+code+`","code":"`+code+`","message_type":"sms"}}`))
					var b struct{ Provider, ID string }
					_ = json.Unmarshal(raw, &b)
					if status != 200 {
						mu.Lock()
						res.failed++
						mu.Unlock()
						continue
					}
					rate := 0.98
					if outage && b.Provider == "infobip" && pick.country == "IN" {
						rate = 0.5
					}
					delivered := rng.Float64() < rate
					if delivered {
						if st, raw := post("/v1/messages/"+b.ID+"/verified", nil); st != 200 {
							fmt.Fprintf(os.Stderr, "verified %s: %d %s\n", b.ID, st, raw)
						}
					}
					mu.Lock()
					res.sent++
					res.cost += eur(b.Provider, pick.country)
					if delivered {
						res.delivered++
					}
					if res.share[pick.country] == nil {
						res.share[pick.country] = map[string]int{}
					}
					res.share[pick.country][b.Provider]++
					mu.Unlock()
				}
			}(uint64(w + 1))
		}
		// Spread the hour's messages over the hour.
		gap := hour / time.Duration(perHour+1)
		for i := range perHour {
			time.Sleep(time.Until(start.Add(time.Duration(i) * gap)))
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		time.Sleep(time.Until(start.Add(hour)))
	}
	return res
}

func costDay(o options, root, dir, gwBin, ibURL, twURL string) error {
	hour := o.phase / 5
	perDay := o.day
	fmt.Printf("## Cost of a simulated day: route [infobip, twilio], ordered vs least_cost\n\n")
	fmt.Printf("%d messages in 24 compressed hours of %v; mix", perDay, hour)
	for _, m := range costMix {
		fmt.Printf(" %s %.0f%%", m.country, m.share*100)
	}
	fmt.Printf("; Infobip delivers 50%% to IN in hours 8-16, both deliver 98%% elsewhere; prices (illustrative, per message):\n\n")
	fmt.Println("| country | infobip (EUR) | twilio (USD) | twilio in EUR |")
	fmt.Println("|---|---|---|---|")
	for _, m := range costMix {
		fmt.Printf("| %s | %.4f | %.4f | %.4f |\n", m.country, costPrices["infobip"].country[m.country], costPrices["twilio"].country[m.country], eur("twilio", m.country))
	}
	fmt.Println()
	fmt.Println("| strategy | sent | failed | delivered | cost EUR | EUR per delivered | twilio share per country |")
	fmt.Println("|---|---|---|---|---|---|---|")
	results := map[string]dayResult{}
	for _, strategy := range []string{"ordered", "least_cost"} {
		cfg, err := costConfig(root, dir, strategy, hour)
		if err != nil {
			return err
		}
		gw, err := startGateway(cfg, dir, gwBin, ibURL, twURL, nil)
		if err != nil {
			return err
		}
		r := simulateDay(gw, perDay, o.concurrency, hour)
		if err := gw.stop(); err != nil {
			return err
		}
		results[strategy] = r
		var shares []string
		for _, m := range costMix {
			c := r.share[m.country]
			if n := c["infobip"] + c["twilio"]; n > 0 {
				shares = append(shares, fmt.Sprintf("%s %.0f%%", m.country, 100*float64(c["twilio"])/float64(n)))
			}
		}
		fmt.Printf("| %s | %d | %d | %d | %.2f | %.5f | %s |\n", strategy, r.sent, r.failed, r.delivered, r.cost, r.cost/float64(max(1, r.delivered)), strings.Join(shares, ", "))
	}
	o2, lc := results["ordered"], results["least_cost"]
	if o2.cost > 0 {
		fmt.Printf("\nleast_cost spent **%.1f%%** less than ordered for %+d delivered messages\n\n", 100*(1-lc.cost/o2.cost), lc.delivered-o2.delivered)
	}
	if lc.failed+o2.failed > 0 {
		return fmt.Errorf("%d sends failed", lc.failed+o2.failed)
	}
	return nil
}
