package app

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
)

// Infobip is the cheaper provider for GB (0.02 EUR), Twilio the dearer (0.04 USD = 0.036 EUR);
// the route lists Twilio first, so only least_cost puts Infobip first.
const costConfig = `
server: {request_timeout: 3s, public_url: "https://sms.example.com", admin_token: admin-t0ken}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
routing:
  delivery_health: {window: 30m, min_samples: 10, min_rate: 0.7, margin: 0.1, report_timeout: 10m, probe_share: 0, refresh: 1h}
  least_cost: {currency: EUR, rates: {USD: 0.9}, window: 24h, min_reports: 3, floor: 0.9, refresh: 1h}
tenants: [{name: acme, api_key: acme-key}]
providers:
  - name: infobip-eu
    type: infobip
    base_url: $IB
    api_key: ib-key
    webhook_secret: hook-secret
    breaker: {consecutive_failures: 100}
    prices: {default: 0.05, countries: {GB: 0.02, FR: 0.04, DE: 0.03, US: 0.01}}
  - name: twilio-us
    type: twilio
    account_sid: ` + twSID + `
    auth_token: tw-token
    from: "+15005550006"
    base_url: $TW
    prices: {currency: USD, countries: {GB: 0.04}}
routes:
  - name: default
    strategy: least_cost
    providers: [twilio-us, infobip-eu]
`

func TestLeastCostRouting(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	h, ib, _ := startOnFakesWith(t, costConfig, Options{Now: clk.Now})
	n := 0
	send := func(to string) response {
		t.Helper()
		n++
		r := h.send("acme-key", fmt.Sprintf(`{"message_options":{"recipient":%q,"text":"Your code is %06d","message_type":"sms"}}`, to, n))
		if r.Status != 200 {
			t.Fatalf("send: %d %s", r.Status, r.Raw)
		}
		return r
	}
	gb := func(i int) string { return fmt.Sprintf("+4474001%05d", i) }
	firstNote := func(r response) string {
		note, _ := r.Body["attempts"].([]any)[0].(map[string]any)["note"].(string)
		return note
	}
	report := func(id, group string, price float64) {
		infobipReport(t, h, id, group, fmt.Sprintf(`{"pricePerMessage":%v,"currency":"EUR"}`, price))
	}
	costs := func(country string) map[string]map[string]any {
		t.Helper()
		r := h.do("GET", "/v1/providers?country="+country, "admin-t0ken", "")
		if r.Status != 200 {
			t.Fatalf("providers: %d %s", r.Status, r.Raw)
		}
		out := map[string]map[string]any{}
		for _, p := range r.Body["providers"].([]any) {
			p := p.(map[string]any)
			out[p["name"].(string)] = p["cost"].(map[string]any)
		}
		return out
	}

	// 1. The cheaper provider for GB is chosen although the route lists it second; for the US
	// only Infobip has a price (its default), so it comes first there too, Twilio after it.
	r := send(gb(0))
	if diff := cmp.Diff([]string{"infobip-eu:sent"}, attempts(r)); diff != "" {
		t.Fatalf("GB send (-want +got):\n%s", diff)
	}
	if got := firstNote(r); got != "least_cost: cheapest for GB at 0.0200 EUR, configured" {
		t.Errorf("note = %q", got)
	}
	if r := send("+14155550104"); r.Body["provider"] != "infobip-eu" {
		t.Errorf("US send went to %v", r.Body["provider"])
	}
	c := costs("GB")
	if c["infobip-eu"]["rank"] != 1.0 || c["twilio-us"]["rank"] != 2.0 || c["twilio-us"]["price"] != 0.036 || c["infobip-eu"]["source"] != "configured" {
		t.Errorf("GB costs: %v", c)
	}
	if us := costs("US"); us["twilio-us"]["rank"] != 0.0 || us["twilio-us"]["price"] != nil || !strings.HasPrefix(us["twilio-us"]["note"].(string), "no price for US") {
		t.Errorf("US costs: %v", us)
	}

	// 2. Failover works on the reordered chain: Infobip fails, Twilio sends within the request.
	ib.SetMode(infobiptest.Unavailable)
	if r := send(gb(1)); !cmp.Equal(attempts(r), []string{"infobip-eu:provider_error", "twilio-us:sent"}) {
		t.Errorf("failover: %v", attempts(r))
	}
	ib.SetMode(infobiptest.OK)

	// 3. Infobip's GB delivery rate falls to 0.8: above min_rate (not demoted) but under the
	// 0.9 floor, so the dearer Twilio takes over. The reports carry a price of 0.05 EUR.
	var reportedID string
	for i := range 20 {
		r := send(gb(10 + i))
		if r.Body["provider"] != "infobip-eu" {
			t.Fatalf("GB %d went to %v", i, r.Body["provider"])
		}
		status := "DELIVERED"
		if i%5 == 0 {
			status = "UNDELIVERABLE"
		}
		report(r.Body["id"].(string), status, 0.05)
		reportedID = r.Body["id"].(string)
	}
	if rec, err := h.app.Store().Get(context.Background(), "acme", reportedID); err != nil || rec.Price != 0.05 || rec.Currency != "EUR" {
		t.Errorf("the record does not keep the reported price: %+v %v", rec, err)
	}
	if err := h.app.refreshHealth(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = send(gb(40))
	if r.Body["provider"] != "twilio-us" || firstNote(r) != "" {
		t.Errorf("below the floor: %s", r.Raw)
	}
	if note := costs("GB")["infobip-eu"]["note"].(string); !strings.HasPrefix(note, "below the delivery floor for GB: rate 0.80 (the tenants' median) under 0.90 over 20 messages") {
		t.Errorf("infobip GB note = %q", note)
	}
	// Spend is counted from the reported prices: 20 reports at 0.05 EUR.
	if got := testutil.ToFloat64(h.app.MetricSet().Spend.WithLabelValues("infobip-eu", "GB", "EUR")); fmt.Sprintf("%.2f", got) != "1.00" {
		t.Errorf("spend = %v, want 1.00", got)
	}
	rec, err := h.app.Store().Get(context.Background(), "acme", r.Body["id"].(string))
	if err != nil || rec.Price != 0 {
		t.Errorf("a message without a report has no price: %+v %v", rec, err)
	}

	// 4. An hour later the health window is empty (Infobip is back above the floor), but the
	// prices its reports carried (0.05 EUR, 20 reports in the 24h window) replaced the configured
	// 0.02: Twilio is now the cheaper one for GB.
	clk.Add(time.Hour)
	h.app.refreshHealth(context.Background())
	if err := h.app.refreshPrices(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = send(gb(41))
	if r.Body["provider"] != "twilio-us" {
		t.Errorf("after reported prices GB went to %v", r.Body["provider"])
	}
	c = costs("GB")
	if c["twilio-us"]["rank"] != 1.0 || c["infobip-eu"]["rank"] != 2.0 || c["infobip-eu"]["price"] != 0.05 || c["infobip-eu"]["source"] != "reported" {
		t.Errorf("GB costs after reports: %v", c)
	}
	// The default and the other countries keep their configured prices (listed by country).
	p := h.do("GET", "/v1/providers", "admin-t0ken", "")
	ibp := p.Body["providers"].([]any)[0].(map[string]any)
	want := []any{
		map[string]any{"country": "*", "price": 0.05, "currency": "EUR", "source": "default"},
		map[string]any{"country": "DE", "price": 0.03, "currency": "EUR", "source": "configured"},
		map[string]any{"country": "FR", "price": 0.04, "currency": "EUR", "source": "configured"},
		map[string]any{"country": "GB", "price": 0.05, "currency": "EUR", "source": "reported", "reports": 20.0},
		map[string]any{"country": "US", "price": 0.01, "currency": "EUR", "source": "configured"},
	}
	if diff := cmp.Diff(want, ibp["prices"]); diff != "" || ibp["cost"] != nil {
		t.Errorf("infobip prices (-want +got):\n%s", diff)
	}
	if r := h.do("GET", "/v1/providers?country=GBR", "admin-t0ken", ""); r.Status != 400 || errCode(r) != "invalid_query" {
		t.Errorf("bad country: %d %s", r.Status, r.Raw)
	}
}

// TestOrderedRoutesIgnorePrices: prices alone change nothing; strategy ordered is the default.
func TestOrderedRoutesIgnorePrices(t *testing.T) {
	t.Parallel()
	h, _, _ := startOnFakesWith(t, strings.Replace(costConfig, "    strategy: least_cost\n", "", 1), Options{})
	r := h.send("acme-key", `{"message_options":{"recipient":"+447400100000","text":"Your code is 123456","message_type":"sms"}}`)
	if r.Body["provider"] != "twilio-us" {
		t.Errorf("ordered route sent through %v: %s", r.Body["provider"], r.Raw)
	}
}

// TestSpendLabelsStayBounded: a currency that is not an ISO 4217-shaped code is counted as XXX.
func TestSpendLabelsStayBounded(t *testing.T) {
	t.Parallel()
	h := start(t, "tenants: [{name: a, api_key: k}]\nstorage: {driver: memory}\nproviders: [{name: m, type: mock}]\nroutes: [{name: d, providers: [m]}]\n", Options{})
	h.app.charge(store.Charge{Provider: "m", Country: "GB", Currency: "EUR", Price: 0.5})
	h.app.charge(store.Charge{Provider: "m", Country: "GB", Currency: "<script>", Price: 0.25})
	h.app.charge(store.Charge{Provider: "m", Country: "GB", Currency: "EURO", Price: 0.5})
	h.app.charge(store.Charge{Provider: "m", Country: "GB", Currency: "EU", Price: 0.25})
	h.app.charge(store.Charge{Provider: "m", Country: "GB", Currency: "eur", Price: 0.125}) // three letters, not a code
	h.app.charge(store.Charge{Provider: "m", Country: "GB", Currency: "E$R", Price: 0.125})
	s := h.app.MetricSet().Spend
	if eur, xxx := testutil.ToFloat64(s.WithLabelValues("m", "GB", "EUR")), testutil.ToFloat64(s.WithLabelValues("m", "GB", "XXX")); eur != 0.5 || xxx != 1.25 {
		t.Errorf("EUR %v, XXX %v", eur, xxx)
	}
	if n := testutil.CollectAndCount(s); n != 2 {
		t.Errorf("%d spend series, want 2", n)
	}
}

// TestOneTenantCannotMoveThePrice: the reported price of a (provider, country) is the median of
// the tenants' averages, so a tenant sending to expensive (or pumped) ranges does not reorder
// every tenant's traffic; reports in a currency without a rate are left out.
func TestOneTenantCannotMoveThePrice(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("x.yaml", []byte(`
tenants: [{name: acme, api_key: a}, {name: beta, api_key: b}, {name: evil, api_key: e}]
routing: {least_cost: {currency: EUR, rates: {USD: 0.5}, min_reports: 5}}
providers: [{name: ib, type: mock, prices: {countries: {GB: 0.03}}}]
routes: [{name: d, strategy: least_cost, providers: [ib]}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	rows := []store.PriceRow{
		{Provider: "ib", Country: "GB", Currency: "EUR", Tenant: "acme", Sum: 0.20, N: 10},
		{Provider: "ib", Country: "GB", Currency: "USD", Tenant: "beta", Sum: 0.44, N: 10}, // 0.022 EUR each
		{Provider: "ib", Country: "GB", Currency: "EUR", Tenant: "evil", Sum: 45, N: 50},
		{Provider: "ib", Country: "US", Currency: "JPY", Tenant: "acme", Sum: 100, N: 10},
		{Provider: "ib", Country: "US", Currency: "JPY", Tenant: "beta", Sum: 100, N: 10}, // one currency, named once
		{Provider: "gone", Country: "GB", Currency: "EUR", Tenant: "acme", Sum: 1, N: 10},
	}
	pt, skipped := buildPrices(cfg, rows)
	got, ok := pt.lookup("ib", "GB", gateway.SMS)
	if !ok || got.source != priceReported || got.reports != 70 || fmt.Sprintf("%.4f", got.value) != "0.0220" {
		t.Errorf("ib GB = %+v, want the median 0.0220 over 70 reports", got)
	}
	if _, ok := pt.lookup("ib", "US", gateway.SMS); ok || !cmp.Equal(skipped, []string{"JPY"}) {
		t.Errorf("JPY reports: skipped %v", skipped)
	}
	if _, ok := pt.lookup("gone", "GB", gateway.SMS); ok {
		t.Error("a provider no longer configured has a price")
	}
}

// TestOneOfTwoTenantsCannotMoveThePrice: with two tenants reporting for a (provider, country), a
// mean would let either move the price halfway to its own average (a tenant being pumped, or
// sending to premium ranges, made a provider look dearer for both). Each is one word against
// the other: the price is the average nearer the configured price, and without one the lower.
// With four tenants the same holds of the two in the middle; with three the middle one is the
// price, whatever the configured one says. A tenant weighs its reports up to min_reports: two
// tenants with one dear message each do not outvote one that sends there every day.
func TestOneOfTwoTenantsCannotMoveThePrice(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, configured string
		avgs             []float64
		reports          []int // each tenant's; 10 when nil
		want             float64
	}{
		{"a pumped tenant beside an honest one, no configured price", "", []float64{0.02, 0.9}, nil, 0.02},
		{"the configured price nearer the honest one", ", prices: {countries: {GB: 0.03}}", []float64{0.9, 0.02}, nil, 0.02},
		{"the provider's default price", ", prices: {default: 0.025}", []float64{0.9, 0.02}, nil, 0.02},
		{"the configured price nearer the dearer one", ", prices: {countries: {GB: 0.8}}", []float64{0.02, 0.9}, nil, 0.9},
		{"a tenant reporting cheap, no configured price", "", []float64{0.02, 0.001}, nil, 0.001},
		{"a tenant reporting cheap, the configured price nearer the honest one", ", prices: {countries: {GB: 0.03}}", []float64{0.02, 0.001}, nil, 0.02},
		{"four tenants", ", prices: {countries: {GB: 0.03}}", []float64{0.9, 0.02, 0.021, 0.001}, nil, 0.021},
		{"three tenants", ", prices: {countries: {GB: 0.9}}", []float64{0.9, 0.02, 0.021}, nil, 0.021},
		{"two tenants of one dear message each beside a daily one", "", []float64{0.02, 0.9, 0.9}, []int{1000, 1, 1}, 0.02},
		{"a daily tenant beside one of two messages", "", []float64{0.9, 0.02}, []int{1000, 2}, 0.9},
		{"the configured price halfway between the two: the lower", ", prices: {countries: {GB: 0.5}}", []float64{0.75, 0.25}, nil, 0.25},
		{"min_reports in all, and no more", "", []float64{0.02, 0.02}, []int{3, 2}, 0.02},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse("x.yaml", []byte(`
tenants: [{name: a, api_key: a}, {name: b, api_key: b}, {name: c, api_key: c}, {name: d, api_key: d}]
routing: {least_cost: {currency: EUR, min_reports: 5}}
providers: [{name: ib, type: mock`+c.configured+`}]
routes: [{name: d, strategy: least_cost, providers: [ib]}]
`), nil)
			if err != nil {
				t.Fatal(err)
			}
			var rows []store.PriceRow
			for i, avg := range c.avgs {
				n := 10
				if c.reports != nil {
					n = c.reports[i]
				}
				rows = append(rows, store.PriceRow{Provider: "ib", Country: "GB", Currency: "EUR", Tenant: string(rune('a' + i)), Sum: avg * float64(n), N: n})
			}
			pt, _ := buildPrices(cfg, rows)
			got, ok := pt.lookup("ib", "GB", gateway.SMS)
			if !ok || got.source != priceReported {
				t.Fatalf("ib GB = %+v, want a reported price", got)
			}
			if v := math.Round(got.value*1e4) / 1e4; v != c.want {
				t.Errorf("price %v, want %v", v, c.want)
			}
		})
	}
}

// TestReloadAppliesPrices: a reload with new prices reorders at once, without waiting for the
// next refresh of reported prices.
func TestReloadAppliesPrices(t *testing.T) {
	t.Parallel()
	h, _, _ := startOnFakesWith(t, costConfig, Options{})
	gb := `{"message_options":{"recipient":"+447400100000","text":"Your code is 123456","message_type":"sms"}}`
	if r := h.send("acme-key", gb); r.Body["provider"] != "infobip-eu" {
		t.Fatalf("before: %s", r.Raw)
	}
	raw, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(raw), "countries: {GB: 0.02,", "countries: {GB: 0.06,", 1)
	h.rewrite(cfg)
	if r := h.do("POST", "/v1/admin/reload", "admin-t0ken", ""); r.Status != 200 {
		t.Fatalf("reload: %d %s", r.Status, r.Raw)
	}
	if r := h.send("acme-key", strings.Replace(gb, "123456", "654321", 2)); r.Body["provider"] != "twilio-us" {
		t.Errorf("after the reload GB went to %v", r.Body["provider"])
	}
}

// TestOrderByCost: cheapest first; ties keep the configured order; providers without a price
// come after the priced ones, and those below the floor (or demoted) last, both in configured
// order; the tenants' rate decides, not every tenant's messages pooled.
func TestOrderByCost(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("x.yaml", []byte(`
tenants: [{name: a, api_key: a}]
routing: {least_cost: {floor: 0.9}, delivery_health: {min_samples: 10, min_rate: 0.7}}
providers:
  - {name: p1, type: mock, prices: {default: 0.05}}
  - {name: p2, type: mock}
  - {name: p3, type: mock, prices: {countries: {GB: 0.03}}}
  - {name: p4, type: mock, prices: {countries: {GB: 0.03}}}
  - {name: p5, type: mock, prices: {countries: {GB: 0.01}}}
  - {name: p6, type: mock, prices: {countries: {GB: 0.001}}}
  - {name: p7, type: mock, prices: {countries: {GB: 0.002}}}
  - {name: p8, type: mock, prices: {countries: {GB: 0.003}}}
  - {name: p9, type: mock, prices: {countries: {GB: 0.004}}}
routes: [{name: d, strategy: least_cost, providers: [p1, p2, p3, p4, p5, p6, p7, p8, p9]}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := buildPrices(cfg, nil)
	health := map[healthKey]healthView{
		smsKey("p5", "GB"): {rate: 0.95, tenantRate: 0.95, samples: 50},              // above the floor
		smsKey("p6", "GB"): {rate: 0.8, tenantRate: 0.8, samples: 50},                // below the floor (0.9)
		smsKey("p7", "GB"): {rate: 0.2, tenantRate: 0.2, samples: 50, demoted: true}, // demoted
		smsKey("p8", "GB"): {rate: 0.5, tenantRate: 0.95, samples: 50},               // one tenant's low rate
		smsKey("p9", "GB"): {rate: 0.95, tenantRate: 0.5, samples: 50},               // one tenant's high rate
	}
	lookup := func(k healthKey) (healthView, bool) { v, ok := health[k]; return v, ok }
	o := orderByCost(cfg, pt, lookup, "GB", gateway.SMS, cfg.Routes[0].Providers, true)
	if diff := cmp.Diff([]string{"p8", "p5", "p3", "p4", "p1", "p2", "p6", "p7", "p9"}, o.order(false)); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"p7", "p8", "p5", "p3", "p4", "p1", "p2", "p6", "p9"}, o.order(true)); diff != "" {
		t.Errorf("probe order (-want +got):\n%s", diff)
	}
	// With delivery health off every provider counts as above the floor.
	off := orderByCost(cfg, pt, lookup, "GB", gateway.SMS, cfg.Routes[0].Providers, false)
	if diff := cmp.Diff([]string{"p6", "p7", "p8", "p9", "p5", "p3", "p4", "p1", "p2"}, off.order(false)); diff != "" {
		t.Errorf("health off (-want +got):\n%s", diff)
	}
	// A low rate over fewer than min_samples messages is no evidence: ranked by price.
	few := func(healthKey) (healthView, bool) { return healthView{rate: 0.1, tenantRate: 0.1, samples: 9}, true }
	if note, demoted, _ := floorNote(cfg, few, "p5", "GB", false); note != "" || demoted {
		t.Errorf("9 messages at 0.1: %q, demoted %v", note, demoted)
	}
}

// TestLeastCostReadsTheChannelsHealth: a voice message is ranked by voice prices at or above the
// floor of voice delivery health: a provider whose calls fail goes behind, and one whose SMS
// fail keeps its voice rank.
func TestLeastCostReadsTheChannelsHealth(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("x.yaml", []byte(`
tenants: [{name: a, api_key: a}]
routing: {least_cost: {floor: 0.9}, delivery_health: {min_samples: 10, min_rate: 0.7}}
providers:
  - {name: q1, type: mock, voice_prices: {countries: {GB: 0.01}}}
  - {name: q2, type: mock, voice_prices: {countries: {GB: 0.02}}}
routes: [{name: d, strategy: least_cost, providers: [q2, q1]}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := buildPrices(cfg, nil)
	for _, tc := range []struct {
		name string
		bad  healthKey
		want []string
	}{
		{"its SMS fail", smsKey("q1", "GB"), []string{"q1", "q2"}},
		{"its calls fail", healthKey{provider: "q1", country: "GB", voice: true}, []string{"q2", "q1"}},
	} {
		lookup := func(k healthKey) (healthView, bool) {
			return healthView{rate: 0.5, tenantRate: 0.5, samples: 50}, k == tc.bad
		}
		o := orderByCost(cfg, pt, lookup, "GB", gateway.Voice, cfg.Routes[0].Providers, true)
		if diff := cmp.Diff(tc.want, o.order(false)); diff != "" {
			t.Errorf("%s: voice order (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestSpendLimitCountsWhatReportsSay: a send is charged its provider's price for the country when
// it is sent; when the delivery report says it cost more (a premium range of the country, as
// pumping uses), the difference is charged too, and the tenant's next send is refused. A report
// of a lower price gives nothing back, and a text's parts are counted on both sides.
func TestSpendLimitCountsWhatReportsSay(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(healthConfig, "tenants: [{name: acme, api_key: acme-key}]", "tenants: [{name: acme, api_key: acme-key, rate_limits: {spend: 0.05/24h}}]", 1)
	cfg = strings.Replace(cfg, "    webhook_secret: hook-secret\n", "    webhook_secret: hook-secret\n    prices: {default: 0.01}\n", 1)
	h, _, _ := startOnFakesWith(t, cfg, Options{})
	send := func(to string) response {
		return h.send("acme-key", `{"message_options":{"recipient":"`+to+`","text":"Your code is 123456","message_type":"sms"}}`)
	}
	r := send("+447400100001")
	if r.Status != 200 || r.Body["provider"] != "infobip-eu" {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	spent := func() float64 { return testutil.ToFloat64(h.app.MetricSet().EstimatedSpend.WithLabelValues("acme")) }
	if got := spent(); math.Abs(got-0.01) > 1e-9 {
		t.Fatalf("charged %v at the send, want 0.01", got)
	}
	// A report of a lower price gives nothing back: the limit counts at least the configured price.
	cheap := send("+447400100003")
	infobipReport(t, h, cheap.Body["id"].(string), "DELIVERED", `{"pricePerMessage":0.004,"currency":"EUR"}`)
	h.app.reconciling.Wait() // the report's charge started before its answer
	if u := spendUsed(t, h); math.Abs(u-0.02) > 1e-4 {
		t.Fatalf("used %v after a report of a lower price, want the two sends' 0.02", u)
	}
	// A text of two parts is charged two at its send, and a report of its two parts at the
	// configured price charges nothing more.
	long := h.send("acme-key", `{"message_options":{"recipient":"+447400100004","text":"Your code is 123456. `+strings.Repeat("x", 150)+`","message_type":"sms"}}`)
	if long.Status != 200 {
		t.Fatalf("a text of two parts: %d %s", long.Status, long.Raw)
	}
	infobipReport(t, h, long.Body["id"].(string), "DELIVERED", `{"pricePerMessage":0.01,"currency":"EUR"},"smsCount":2`)
	h.app.reconciling.Wait()
	if u := spendUsed(t, h); math.Abs(u-0.04) > 1e-4 {
		t.Fatalf("used %v after a report of a text of two parts at its price, want 0.04", u)
	}
	infobipReport(t, h, r.Body["id"].(string), "DELIVERED", `{"pricePerMessage":0.09,"currency":"EUR"}`)
	deadline := time.Now().Add(5 * time.Second)
	for math.Abs(spent()-0.12) > 1e-9 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := spent(); math.Abs(got-0.12) > 1e-9 {
		t.Fatalf("after the report: %v, want 0.12 (0.09, 0.01 and 0.02)", got)
	}
	if r := send("+447400100002"); r.Status != 429 || !strings.Contains(r.Raw, "spend limit") {
		t.Errorf("the next send, 0.12 of 0.05 spent: %d %s", r.Status, r.Raw)
	}
}

// TestVoiceCallsArePricedAsCalls: a voice call costs what a provider's voice_prices say, not an
// SMS price. Least-cost routing ranks a voice message by voice prices (the provider cheapest for
// SMS is not the one cheapest for calls), and a spend limit counts each call at its voice price,
// or, where its provider has none, at the highest configured price of either kind: a tenant
// calling cannot spend ten times its limit at SMS prices.
func TestVoiceCallsArePricedAsCalls(t *testing.T) {
	t.Parallel()
	h := start(t, `
server: {admin_token: admin-t0ken}
storage: {driver: memory}
policy: {rate_limits: {per_recipient: 0}}
tenants:
  - {name: caller, api_key: caller-key, rate_limits: {spend: 1/24h}}
  - {name: texter, api_key: texter-key}
providers:
  - {name: cheap-sms, type: mock, prices: {default: 0.01}, voice_prices: {default: 0.4}}
  - {name: cheap-voice, type: mock, prices: {default: 0.03}, voice_prices: {default: 0.3}}
  - {name: unpriced, type: mock}
routes:
  - {name: japan, match: {countries: [JP]}, providers: [unpriced]}
  - {name: default, strategy: least_cost, providers: [cheap-sms, cheap-voice]}
`, Options{})
	n := 0
	send := func(key, typ, to string) response {
		n++
		return h.send(key, fmt.Sprintf(`{"message_options":{"recipient":%q,"text":"Your code is %06d","message_type":%q}}`, to, n, typ))
	}
	us := func() string { return fmt.Sprintf("+1415555%04d", n) }
	if r := send("texter-key", "sms", us()); r.Status != 200 || r.Body["provider"] != "cheap-sms" {
		t.Errorf("SMS: %d %s, want cheap-sms", r.Status, r.Raw)
	}
	r := send("texter-key", "voice", us())
	if r.Status != 200 || r.Body["provider"] != "cheap-voice" {
		t.Fatalf("voice: %d %s, want cheap-voice", r.Status, r.Raw)
	}
	if note, _ := r.Body["attempts"].([]any)[0].(map[string]any)["note"].(string); note != "least_cost: cheapest for US at 0.3000 EUR, default per minute of a call" {
		t.Errorf("voice note %q", note)
	}
	// The caller's limit of 1: a call to the US at 0.3, then calls to Japan through a provider with
	// no voice price at 0.4 (the highest configured), into debt at 1.1; the next is refused.
	for i, to := range []string{us(), "+81901234" + fmt.Sprintf("%04d", n), "+81901235" + fmt.Sprintf("%04d", n)} {
		if r := send("caller-key", "voice", to); r.Status != 200 {
			t.Fatalf("call %d: %d %s", i+1, r.Status, r.Raw)
		}
	}
	if r := send("caller-key", "voice", us()); r.Status != 429 || errCode(r) != "rate_limited" {
		t.Errorf("call over the spend limit: %d %s", r.Status, r.Raw)
	}
	if got := testutil.ToFloat64(h.app.MetricSet().EstimatedSpend.WithLabelValues("caller")); math.Abs(got-1.1) > 1e-9 {
		t.Errorf("caller's estimated spend %v, want 1.1", got)
	}
	p := h.do("GET", "/v1/providers", "admin-t0ken", "")
	var got struct {
		Providers []struct {
			Name        string           `json:"name"`
			VoicePrices []map[string]any `json:"voice_prices"`
		} `json:"providers"`
	}
	if err := json.Unmarshal([]byte(p.Raw), &got); err != nil || len(got.Providers) != 3 {
		t.Fatalf("providers: %s (%v)", p.Raw, err)
	}
	want := []map[string]any{{"country": "*", "price": 0.4, "currency": "EUR", "source": "default"}}
	if !cmp.Equal(got.Providers[0].VoicePrices, want) || got.Providers[2].VoicePrices != nil {
		t.Errorf("voice prices: %+v", got.Providers)
	}
}

// TestEstimates: what a send counts against a spend limit before its report. Where no price is
// known, the highest configured one: of country prices too, not only defaults, and for a call
// the highest of either kind (a call with no voice price configured costs at least what an SMS
// would). A call that speaks a code counts one minute, whatever its text; reported prices count
// from min_reports reports on.
func TestEstimates(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("x.yaml", []byte(`
tenants: [{name: a, api_key: a}]
routing: {least_cost: {currency: EUR, min_reports: 5}}
providers:
  - {name: p1, type: mock, prices: {countries: {GB: 0.03, US: 0.2}}}
  - {name: p2, type: mock}
  - {name: p3, type: mock, prices: {countries: {DE: 0.5}}}
routes: [{name: d, strategy: least_cost, providers: [p1, p2, p3]}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := buildPrices(cfg, []store.PriceRow{{Provider: "p1", Country: "FR", Currency: "EUR", Tenant: "a", Sum: 0.5, N: 5},
		// Two tenants, as far from the configured 0.5 either way: the lower.
		{Provider: "p3", Country: "DE", Currency: "EUR", Tenant: "a", Sum: 1.25, N: 5}, {Provider: "p3", Country: "DE", Currency: "EUR", Tenant: "b", Sum: 3.75, N: 5}})
	for _, tc := range []struct {
		provider, country string
		typ               gateway.MessageType
		want              float64
	}{
		{"p1", "GB", gateway.SMS, 0.03},
		{"p2", "GB", gateway.SMS, 0.5},   // no price: the highest configured (a country's)
		{"p2", "GB", gateway.Voice, 0.5}, // no voice price anywhere: the highest of either kind
		{"p1", "FR", gateway.SMS, 0.1},   // five reports of 0.1: min_reports reached
		{"p3", "DE", gateway.SMS, 0.25},
	} {
		if got := pt.estimate(tc.provider, tc.country, tc.typ, 1); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s %s %s: %v, want %v", tc.provider, tc.country, tc.typ, got, tc.want)
		}
	}
	long := strings.Repeat("Your code is 123456. ", 100) // 2,100 characters, three minutes read aloud
	if got := messageParts(&gateway.Message{Type: gateway.Voice, Text: long, Code: "123456"}); got != 1 {
		t.Errorf("a call that speaks a code: %d minutes, want 1", got)
	}
	if got := messageParts(&gateway.Message{Type: gateway.Voice, Text: strings.Repeat("Hello there. ", 162)}); got != 3 {
		t.Errorf("a call reading 2,106 characters: %d minutes, want 3", got)
	}
}

// TestPricesAreReadOnlyWhereUsed: the least-cost window (every reported price of a day) is read
// only when a route ranks by price or a spend limit counts prices.
func TestPricesAreReadOnlyWhereUsed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, extra string
		reads       bool
	}{
		{"ordered routes, no spend limit", "routes: [{name: d, providers: [m]}]\n", false},
		{"a least_cost route", "routes: [{name: d, strategy: least_cost, providers: [m]}]\n", true},
		{"a spend limit", "routes: [{name: d, providers: [m]}]\npolicy: {rate_limits: {spend: 10/24h}}\n", true},
	} {
		hb := &windowLog{}
		h := start(t, "storage: {driver: memory}\ntenants: [{name: acme, api_key: acme-key-0123456789}]\nproviders: [{name: m, type: mock, prices: {default: 0.05}}]\n"+tc.extra,
			Options{WrapBackend: func(b store.Backend) store.Backend { hb.Backend = b; return hb }})
		hb.fail.Store(true)
		if err := h.app.refreshPrices(context.Background()); (err != nil) != tc.reads {
			t.Errorf("%s: refresh err %v, want a read (that fails here) %v", tc.name, err, tc.reads)
		}
	}
}

// TestPricesInACurrencyWithoutARateAreLeftOutAndSaid: reported prices in a currency that
// routing.least_cost.rates cannot convert are left out of the ranking, and the log says which
// currency, so that the operator can add its rate.
func TestPricesInACurrencyWithoutARateAreLeftOutAndSaid(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	h, _, _ := startOnFakesWith(t, costConfig, Options{Now: clk.Now})
	// Sent a minute ago: in the window's newest part, which every refresh reads (an older bucket
	// may have been read, empty, by the refresh at start).
	for i := range 5 {
		if err := h.app.Store().Insert(context.Background(), &store.Record{ID: fmt.Sprint("jpy-", i), Tenant: "acme", Provider: "infobip-eu", Country: "GB",
			MessageType: "sms", Status: gateway.StatusDelivered, Price: 3, Currency: "JPY", CreatedAt: clk.Now().Add(-time.Minute), UpdatedAt: clk.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.app.refreshPrices(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, _ := h.app.prices.Load().lookup("infobip-eu", "GB", gateway.SMS); p.source != priceConfigured {
		t.Errorf("GB's price %+v, want the configured one", p)
	}
	var line struct {
		Level      string   `json:"level"`
		Currencies []string `json:"currencies"`
	}
	for l := range strings.Lines(h.logs.String()) {
		if strings.Contains(l, "reported prices left out of least-cost routing") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line.Level != "WARN" || !cmp.Equal(line.Currencies, []string{"JPY"}) {
		t.Errorf("the warning: %+v, want WARN naming JPY\n%s", line, h.logs.String())
	}
}
