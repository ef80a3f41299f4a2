// Package metrics defines smsgate's Prometheus metrics (all prefixed smsgate_) on a registry of
// its own, and implements dispatch.Observer. Labels hold only bounded, configured values (tenant,
// route and provider names, outcome classes): never phone numbers, codes or free text.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/sony/gobreaker/v2"
)

// Metrics holds every collector.
type Metrics struct {
	Registry            *prometheus.Registry
	Requests            *prometheus.CounterVec
	RequestDuration     *prometheus.HistogramVec
	Attempts            *prometheus.CounterVec
	ProviderLatency     *prometheus.HistogramVec
	BreakerState        *prometheus.GaugeVec
	BreakerTransitions  *prometheus.CounterVec
	TenantBreakerOpens  *prometheus.CounterVec
	Failovers           *prometheus.CounterVec
	PolicyRejections    *prometheus.CounterVec
	DeliveryReports     *prometheus.CounterVec
	LogWrites           *prometheus.CounterVec
	LogBatch            prometheus.Histogram
	LogBacklog          prometheus.Gauge
	LogDropped          prometheus.Counter
	LogTrimmed          *prometheus.CounterVec
	LogPurged           prometheus.Counter
	LogOldest           prometheus.Gauge
	LogRetention        prometheus.Gauge
	LogWAL              prometheus.Gauge
	LogReadsInterrupted prometheus.Counter
	LogCommitTimeouts   prometheus.Counter
	LogSpoolFailures    prometheus.Counter
	LogHandedOver       *prometheus.CounterVec
	LogHandOffWaiting   prometheus.Gauge
	Notify              *prometheus.CounterVec
	PreviousKeys        *prometheus.CounterVec
	DeliveryRate        *prometheus.GaugeVec
	Demotions           *prometheus.CounterVec
	Reloads             *prometheus.CounterVec
	// ConfigLoaded is 1 while the last load of the config (start or reload) succeeded.
	ConfigLoaded prometheus.Gauge
	// TLSExpiry is when server.tls's certificate expires (Unix seconds); 0 without server.tls.
	TLSExpiry        prometheus.Gauge
	ProviderDisabled *prometheus.GaugeVec
	ProviderDrained  *prometheus.GaugeVec
	StateErrors      *prometheus.CounterVec
	Spend            *prometheus.CounterVec
	EstimatedSpend   *prometheus.CounterVec
	Quarantines      *prometheus.CounterVec
	CodesUsed        *prometheus.CounterVec
	StateMemoryUsed  prometheus.Gauge
	StateMemoryMax   *prometheus.GaugeVec
	StateEvictedKeys prometheus.Gauge
	ReplaysEvicted   *prometheus.CounterVec
	Paced            *prometheus.CounterVec
	WindowReads      *prometheus.CounterVec
	WindowReadTime   *prometheus.HistogramVec
	// BuildInfo is 1, labelled with the build's version and Go's.
	BuildInfo *prometheus.GaugeVec
}

// New registers every collector, plus the Go and process collectors, on a new registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{
		Registry: r,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_requests_total",
			Help: "Send requests by tenant, route and outcome (the response's code)."}, []string{"tenant", "route", "outcome"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "smsgate_request_duration_seconds",
			Help: "Send request latency by outcome.", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 4, 8, 16}}, []string{"outcome"}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_provider_attempts_total",
			Help: "Provider attempts by provider and outcome class."}, []string{"provider", "outcome"}),
		ProviderLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "smsgate_provider_latency_seconds",
			Help: "Latency of provider calls that reached the provider.", Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2, 4, 8}}, []string{"provider"}),
		BreakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "smsgate_breaker_state",
			Help: "Circuit breaker state per provider and channel (sms, voice: each has its own breaker): 0 closed, 1 half-open, 2 open."}, []string{"provider", "channel"}),
		BreakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_breaker_transitions_total",
			Help: "Circuit breaker state changes, per provider and channel."}, []string{"provider", "channel", "from", "to"}),
		TenantBreakerOpens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_tenant_breaker_opens_total",
			Help: "Times a tenant's own breaker of a provider and channel opened: the provider failed for that tenant's sends while other tenants' went through (so the breaker they share stayed closed), or before another tenant's failure corroborated them."}, []string{"provider", "channel", "tenant"}),
		Failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_failovers_total",
			Help: "Moves from a failed or unavailable provider to the next one in a chain."}, []string{"from", "to"}),
		PolicyRejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_policy_rejections_total",
			Help: "Requests refused by policy, by tenant and reason (spend, per_recipient, per_ip, per_tenant, per_country, denied_countries, allowed_countries, non_geographic, number_type, suspected_pumping, pumping_throttle, api: calls other than sends, reads_in_flight)."}, []string{"tenant", "reason"}),
		DeliveryReports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_delivery_reports_total",
			Help: "Delivery reports received, by provider and normalized status."}, []string{"provider", "status"}),
		LogWrites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_message_log_writes_total",
			Help: "Message log writes tried, by result (ok, or error: kept for another try)."}, []string{"result"}),
		LogBatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "smsgate_message_log_batch_records",
			Help: "Records and reports per message log transaction tried (group commit: concurrent sends share one commit).", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}}),
		LogBacklog: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smsgate_message_log_backlog",
			Help: "Message log writes waiting for another try because the database failed."}),
		LogDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "smsgate_message_log_dropped_total",
			Help: "Message log writes given up: the retry buffer was full, or the database still failed at shutdown and they could not be handed over."}),
		LogTrimmed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_message_log_trimmed_total",
			Help: "Records deleted from the message log because their tenant held more than storage.max_records_per_tenant (its oldest), by tenant."}, []string{"tenant"}),
		LogPurged: prometheus.NewCounter(prometheus.CounterOpts{Name: "smsgate_message_log_purged_total",
			Help: "Records deleted from the message log because they were older than storage.retention (by this replica's purges)."}),
		LogOldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smsgate_message_log_oldest_record_timestamp_seconds",
			Help: "When the oldest record in the message log was created (Unix seconds), read after each purge; 0 until the first purge, or while the log is empty."}),
		LogRetention: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smsgate_message_log_retention_seconds",
			Help: "storage.retention in seconds; 0 keeps records forever."}),
		LogWAL: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smsgate_message_log_wal_bytes",
			Help: "How many bytes SQLite's write-ahead log holds, as the last background checkpoint (every 500 ms) saw it; 0 with postgres or memory."}),
		LogReadsInterrupted: prometheus.NewCounter(prometheus.CounterOpts{Name: "smsgate_message_log_reads_interrupted_total",
			Help: "Tenants' reads of the SQLite log interrupted (answered 503) because they still ran a second after the write-ahead log had to start over."}),
		LogSpoolFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "smsgate_message_log_spool_failures_total",
			Help: "Failures of the spool (storage.spool_dir): the writes it could not take wait in memory only, lost if the process is killed before the database takes them."}),
		LogCommitTimeouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "smsgate_message_log_commit_timeouts_total",
			Help: "Sends answered before their record committed (storage.commit_timeout passed; with storage.spool_dir, once the record was in the spool); the record waits in the retry buffer."}),
		LogHandedOver: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_message_log_handed_over_total",
			Help: "Message log writes handed over through the shared state store: out, by a replica that stopped while its database still failed; in, taken back and written by this one."}, []string{"direction"}),
		LogHandOffWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smsgate_message_log_handoff_waiting_chunks",
			Help: "Chunks of message log writes in the shared hand-over list, as this replica last saw it (0 where nothing is handed over)."}),
		Notify: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_infobip_notify_total",
			Help: "Delivery report pushes to notify URLs of the Infobip-compatible API, by tenant and result (ok, retry, failed, given_up, refused, dropped)."}, []string{"tenant", "result"}),
		PreviousKeys: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_previous_api_key_calls_total",
			Help: "Calls authenticated with one of a tenant's previous_api_keys: at zero for long enough, its callers have moved to api_key and the old key can go."}, []string{"tenant"}),
		DeliveryRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "smsgate_delivery_rate",
			Help: "Delivered share of a provider's messages to a country over routing.delivery_health.window, per channel (sms; voice: answered calls, those nobody answered left out), countries with at least min_samples."}, []string{"provider", "country", "channel"}),
		Demotions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_demotions_total",
			Help: "Times a provider was moved behind the healthy ones for a country and channel (delivery rate below min_rate)."}, []string{"provider", "country", "channel"}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_config_reloads_total",
			Help: "Config reloads by result."}, []string{"result"}),
		ConfigLoaded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smsgate_config_last_reload_successful",
			Help: "1 when the last load of the config (the start, or the last reload) succeeded; 0 while the files on disk do not load, and the replica serves the config it loaded before."}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "smsgate_build_info",
			Help: "1, labelled with the version of the replica's build and the Go it was built with: during a rollout, which replicas run which build."}, []string{"version", "go_version"}),
		TLSExpiry: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smsgate_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate server.listen serves (server.tls) expires, in Unix seconds; 0 without server.tls. A renewal whose files do not load leaves it at the old certificate's."}),
		ProviderDisabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "smsgate_provider_disabled",
			Help: "1 when the provider is drained (disabled: in the config, or by an operator through the admin API)."}, []string{"provider"}),
		ProviderDrained: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "smsgate_provider_drained",
			Help: "1 while an operator's drain (POST /v1/providers/{name}/disable) is on: shared by every replica with state.driver redis, it lasts until an operator ends it."}, []string{"provider"}),
		StateErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_state_errors_total",
			Help: "Failed calls to the policy state store (rate limits, idempotency, resends), by operation."}, []string{"op"}),
		Spend: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_spend_total",
			Help: "What providers' delivery reports say the messages cost, in the currency they report, by provider and destination country."}, []string{"provider", "country", "currency"}),
		EstimatedSpend: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_tenant_spend_estimated_total",
			Help: "What a tenant's sent messages count against its spend limit (rate_limits.spend), in routing.least_cost.currency: each at its provider's price for the country, or the highest configured price when it has none, plus what a delivery report said it cost beyond that. Only tenants with a spend limit."}, []string{"tenant"}),
		Quarantines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_pumping_quarantines_total",
			Help: "Number ranges quarantined under suspicion of SMS pumping, by tenant, destination country and action (alert, throttle, block)."}, []string{"tenant", "country", "action"}),
		CodesUsed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_codes_used_total",
			Help: "Codes a tenant reported used (POST /v1/messages/{id}/verified, Infobip's conversion tracking), each message when a report first marks it (two reports racing on two replicas may count it twice): beside the messages sent, the share of codes that reached someone who typed them."}, []string{"tenant"}),
		StateMemoryUsed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smsgate_state_memory_used_bytes",
			Help: "Memory the shared state store (Redis) uses, as its INFO reports it, read every 30 s; 0 with state.driver memory."}),
		StateMemoryMax: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "smsgate_state_memory_max_bytes",
			Help: "The state store's maxmemory (0: none, it grows until its host runs out), labelled with its maxmemory-policy."}, []string{"policy"}),
		Paced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_paced_total",
			Help: "Sends that skipped a provider because its configured throughput (providers[].throughput) had no token left for the tenant: beyond the tenant's share, only what the others leave."}, []string{"provider", "tenant"}),
		WindowReads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_window_reads_total",
			Help: "Reads of the message log that routing decides by (delivery_health: the delivery rates; prices: least-cost routing's reported prices), by result (ok, error: routing keeps the last ones)."}, []string{"read", "result"}),
		WindowReadTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "smsgate_window_read_seconds",
			Help:    "How long those reads took; delivery health's grows with the messages in its window, and its refresh waits at least ten times as long.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"read"}),
		StateEvictedKeys: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smsgate_state_evicted_keys",
			Help: "Keys the state store has evicted since it started (Redis's evicted_keys, or what the memory state evicted at state.max_idempotency_records and state.max_keys): each a rate-limit bucket, idempotency record or the like lost before its time."}),
		ReplaysEvicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smsgate_idempotency_records_evicted_total",
			Help: "Idempotency records a tenant lost before their ttl: with the state in memory, it held the most when state.max_idempotency_records was reached; in Redis, it reached its own state.redis.max_idempotency_records_per_tenant. A retry of such a request sends again."}, []string{"tenant"}),
	}
	for _, c := range []prometheus.Collector{m.Requests, m.RequestDuration, m.Attempts, m.ProviderLatency, m.BreakerState,
		m.BreakerTransitions, m.TenantBreakerOpens, m.Failovers, m.PolicyRejections, m.DeliveryReports, m.LogWrites, m.LogBatch, m.LogBacklog, m.LogDropped, m.LogTrimmed, m.LogPurged, m.LogOldest, m.LogRetention, m.LogWAL, m.LogReadsInterrupted, m.LogCommitTimeouts, m.LogSpoolFailures, m.LogHandedOver, m.LogHandOffWaiting, m.Notify, m.PreviousKeys, m.DeliveryRate, m.Demotions, m.Reloads, m.ConfigLoaded, m.TLSExpiry, m.BuildInfo, m.ProviderDisabled, m.ProviderDrained, m.StateErrors, m.Spend, m.EstimatedSpend, m.Quarantines, m.CodesUsed,
		m.StateMemoryUsed, m.StateMemoryMax, m.StateEvictedKeys, m.ReplaysEvicted, m.Paced, m.WindowReads, m.WindowReadTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	// Series with a fixed set of label values start at 0, so that rate() and alerts see the first
	// error instead of a series that appears from nowhere.
	for _, r := range []string{"ok", "error"} {
		m.LogWrites.WithLabelValues(r)
		m.Reloads.WithLabelValues(r)
	}
	for _, op := range StateOps {
		m.StateErrors.WithLabelValues(op)
	}
	for _, d := range []string{"out", "in"} {
		m.LogHandedOver.WithLabelValues(d)
	}
	for _, read := range []string{"delivery_health", "prices"} {
		m.WindowReads.WithLabelValues(read, "ok")
		m.WindowReads.WithLabelValues(read, "error")
	}
	return m
}

// WindowRead counts one read of the message log that routing decides by (read: delivery_health or
// prices) and how long it took.
func (m *Metrics) WindowRead(read string, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.WindowReads.WithLabelValues(read, result).Inc()
	m.WindowReadTime.WithLabelValues(read).Observe(took.Seconds())
}

// StateOps are the values of the op label of smsgate_state_errors_total.
var StateOps = []string{"rate_limit", "idempotency_get", "idempotency_put", "resend_get", "resend_put", "spend_charge", "flight_claim", "flight_answer", "flight_finish", "pumping", "throughput", "drains", "health_window", "log_handoff"}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// DeleteProvider removes every series labelled with a provider that left the config, so that
// dashboards do not show a removed provider as disabled, open or failing forever.
func (m *Metrics) DeleteProvider(name string) {
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.Attempts, m.ProviderLatency, m.BreakerState, m.BreakerTransitions, m.TenantBreakerOpens, m.DeliveryReports, m.ProviderDisabled, m.ProviderDrained, m.DeliveryRate, m.Demotions, m.Spend, m.Paced} {
		v.DeletePartialMatch(prometheus.Labels{"provider": name})
	}
	m.Failovers.DeletePartialMatch(prometheus.Labels{"from": name})
	m.Failovers.DeletePartialMatch(prometheus.Labels{"to": name})
}

// byTenant are the metrics labelled by tenant.
func (m *Metrics) byTenant() []interface {
	prometheus.Collector
	DeletePartialMatch(prometheus.Labels) int
} {
	return []interface {
		prometheus.Collector
		DeletePartialMatch(prometheus.Labels) int
	}{m.Requests, m.TenantBreakerOpens, m.PolicyRejections, m.LogTrimmed, m.Notify, m.PreviousKeys, m.EstimatedSpend, m.Quarantines, m.CodesUsed, m.Paced, m.ReplaysEvicted}
}

// DeleteTenantsExcept removes the series of every tenant keep refuses; the empty tenant (calls
// no key authenticated) stays. A team may rename its tenants at each change of its file: their
// series would otherwise stay on every replica until it restarts, each name adding to what every
// scrape reads and Prometheus keeps, and what writes one after the reload that removed its tenant
// (a send in flight across it, a report or push of one of its messages, a trim of its records)
// would bring it back.
func (m *Metrics) DeleteTenantsExcept(keep func(string) bool) {
	for _, v := range m.byTenant() {
		gone := map[string]bool{}
		ch := make(chan prometheus.Metric, 64)
		go func() {
			v.Collect(ch)
			close(ch)
		}()
		for pm := range ch {
			var d dto.Metric
			if pm.Write(&d) != nil {
				continue
			}
			for _, l := range d.GetLabel() {
				if t := l.GetValue(); l.GetName() == "tenant" && t != "" && !keep(t) {
					gone[t] = true
				}
			}
		}
		for t := range gone {
			v.DeletePartialMatch(prometheus.Labels{"tenant": t})
		}
	}
}

// OnAttempt implements dispatch.Observer. The latency is observed only for calls the provider
// answered: an attempt that never called it (breaker open, disabled, skipped for its
// capabilities, held off after throttling) has no duration, and a zero would pull its latency down.
func (m *Metrics) OnAttempt(provider, outcome string, d time.Duration) {
	m.Attempts.WithLabelValues(provider, outcome).Inc()
	if d > 0 && outcome != "cancelled" {
		m.ProviderLatency.WithLabelValues(provider).Observe(d.Seconds())
	}
}

// OnBreakerChange implements dispatch.Observer; it runs under the breaker's lock and only records.
func (m *Metrics) OnBreakerChange(provider, channel string, from, to gobreaker.State) {
	m.BreakerState.WithLabelValues(provider, channel).Set(float64(StateValue(to)))
	m.BreakerTransitions.WithLabelValues(provider, channel, from.String(), to.String()).Inc()
}

// OnTenantBreakerChange implements dispatch.Observer: it counts a tenant's own breaker opening.
// The series appears at its first opening, at 1 (the alert and the dashboard count a series new in
// their window at its value). Made at 0 with the breaker, as it was, it cost every tenant two series
// (sms, voice) for each provider it had sent through: 20,000 series of zeros for 10,000 tenants on
// one provider, twice the tenants' own requests_total.
func (m *Metrics) OnTenantBreakerChange(provider, channel, tenant string, _, to gobreaker.State) {
	if to == gobreaker.StateOpen {
		m.TenantBreakerOpens.WithLabelValues(provider, channel, tenant).Inc()
	}
}

// OnFailover implements dispatch.Observer.
func (m *Metrics) OnFailover(from, to string) { m.Failovers.WithLabelValues(from, to).Inc() }

// StateValue maps a breaker state to the gauge value: 0 closed, 1 half-open, 2 open.
func StateValue(s gobreaker.State) int {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	}
	return 0
}
