// Package app wires the config to the drivers, the policy, the message log and the HTTP server,
// and owns start, reload and stop. Tests start it on port 0 with a YAML file.
package app

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/dispatch"
	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/metrics"
	"github.com/smsgate/smsgate/gateway/policy"
	"github.com/smsgate/smsgate/gateway/routing"
	"github.com/smsgate/smsgate/gateway/store"
)

// Options configures New. Every field's zero value is usable.
type Options struct {
	// ConfigPath is the YAML file; required.
	ConfigPath string
	// Listen overrides server.listen when set.
	Listen string
	// LogOutput receives the logs; nil means os.Stderr.
	LogOutput io.Writer
	// Now is the clock of rate limits, idempotency, resend escalation, the message log's updates
	// and report pushes; nil means time.Now.
	Now func() time.Time
	// ReplicaClock, when Now is nil, is the replica's own clock (nil: time.Now), which the
	// shared state corrects to Redis's where replicas compare their times (policy.Redis.Local).
	// For tests of replicas whose clocks disagree.
	ReplicaClock func() time.Time
	// HTTPClient is shared by drivers; nil means one with a tuned transport and no overall timeout.
	HTTPClient *http.Client
	// Version is reported in the startup log line.
	Version string
	// WrapBackend, when set, wraps the message log's backend (storage.driver): tests inject
	// failures with it, an embedder may add instrumentation.
	WrapBackend func(store.Backend) store.Backend
	// healthBudget, for tests, replaces the least bound of a read of delivery health's window
	// (healthBudget, 10 s).
	healthBudget time.Duration
	// choresEvery, for tests, replaces how often the message log's purge and trim run (every
	// hour at most; 10m) and how long after the start they first do (1 to 2 minutes).
	choresEvery time.Duration
	// startWait, adoptEvery, adoptWriteFor, pushSweep and watchIdle, for tests, replace the
	// constants of the same names (10 s, 5 s, 10 s, 5 s and 5 s): how long a start waits for the
	// message log, how often a replica looks for writes handed over and how long it waits for a
	// chunk it took to commit, how often due report pushes are swept, and how often the watch
	// loop looks whether a reload turned server.watch_config on.
	startWait, adoptEvery, adoptWriteFor, pushSweep, watchIdle time.Duration
	// keySecret, for tests, replaces processKeySecret: a replica with the secret another process
	// would have drawn.
	keySecret []byte
}

// App is a running gateway.
type App struct {
	opts    Options
	log     *slog.Logger
	level   *slog.LevelVar
	metrics *metrics.Metrics
	store   *store.Store
	// refuseSends is storage.backlog_full refuse_sends as the process started with it (storage
	// changes take effect on restart, here as in the store's own drops).
	refuseSends bool
	client      *http.Client
	rt          atomic.Pointer[runtime]
	reloadMu    sync.Mutex
	// loaded is the config.Digest of what the last load, or attempt to load, read (watch.go).
	loaded atomic.Pointer[string]

	// inflight counts detached sends still running (Shutdown waits for them).
	inflight atomic.Int64
	// admission counts the sends in flight against server.max_in_flight (admission.go).
	admission admission
	// reconciling counts the spend-limit charges of delivery reports still running (cost.go);
	// Shutdown waits for them before it closes the state store.
	reconciling sync.WaitGroup

	checker policy.Checker
	replays policy.Replays
	resends policy.Resends
	pumping *policy.Pumping
	flight  policy.Flight[flightResult]
	flights policy.SharedFlights // nil: coalescing stays in this process
	// reads admits the calls reading the message log on a tenant's behalf (beginRead).
	reads *readGate
	// gate holds the flood gates in front of the shared state store (floodgate.go).
	gate       policy.MemoryLimiter
	lines      lineGate // bounds the log lines of errors (loglines.go)
	closeState func()
	// stateNow is the clock of what replicas write into the shared state with a time and compare
	// against another's (resend memory, the shared delivery-health window): Redis's clock as the
	// replica estimates it (policy.Redis.Clock), or the replica's own with the state in memory.
	stateNow func() time.Time
	// stateClient is the shared Redis, nil with state.driver memory; statePrefix its keys' prefix.
	stateClient redis.UniversalClient
	statePrefix string
	// foreignLogged is when adopt last said it left a chunk in the hand-over list (leftInList; its
	// goroutine's only).
	foreignLogged time.Time
	// drained holds the providers an operator drained, as this replica last read them (drains.go).
	drainMu  sync.Mutex
	drained  map[string]bool
	failOpen bool

	notifier *notifier
	// sweepMu serialises sweeps of due pushes: two at once would both see a tenant's queue room
	// and claim it twice over.
	sweepMu sync.Mutex
	health  healthTable
	// prices is least-cost routing's table; priceRows the reported prices it was built from.
	prices    atomic.Pointer[priceTable]
	priceRows atomic.Pointer[[]store.PriceRow]
	priceWin  priceWindow
	priceMu   sync.Mutex
	stop      chan struct{}
	stopOnce  sync.Once
	// loops are the background loops that read the message log (delivery health, prices,
	// pushes): Shutdown waits for them before it closes the log, so none reads it as it closes.
	loops sync.WaitGroup
	// stopped is cancelled when stop closes: the loops' reads of the log end with it.
	stopped     context.Context
	cancelReads context.CancelFunc

	srv *http.Server
	ln  net.Listener
	// https: srv serves TLS (server.tls); set by Start.
	https bool
	done  chan error
	// metricsSrv serves GET /metrics alone on server.metrics_listen, when it is set.
	metricsSrv *http.Server
	metricsLn  net.Listener
}

type tenant struct {
	name               string
	clientIDs          map[string]bool
	rules              *policy.Rules
	acceptUnrecognized bool
	// allowSender honours the sender a request names; senders, when set, are the only ones it
	// may name (by gateway.SenderKey, each to its spelling in the config). notifyHosts are the
	// hosts that delivery reports of the Infobip-compatible API may be pushed to, and
	// notifyPrivate lets those pushes reach addresses inside the operator's network.
	allowSender   bool
	senders       map[string]string
	notifyHosts   map[string]bool
	notifyPrivate bool
	// pumping is the tenant's effective pumping detection settings.
	pumping config.Pumping
	// inflight counts this tenant's sends in flight on this replica (admission.go).
	inflight atomic.Int64
}

// spend is the tenant's spend limit; nil when it has none.
func (tn *tenant) spend() *config.Spend {
	if s := tn.rules.Limits.Spend; s.Active() {
		return s
	}
	return nil
}

type memberInfo struct {
	typ string
	cfg any
	// cfgDisabled is the provider's disabled key in the file this runtime was built from.
	cfgDisabled bool
	timeout     time.Duration
	breaker     config.Breaker
	member      *dispatch.Member
	callback    string
	// throughput is the account's rate (nil: unbounded), voiceThroughput its calls' when they
	// have their own (nil: they count in throughput), and share one tenant's part of either
	// (paced.go).
	throughput, voiceThroughput *config.Limit
	share                       float64
}

// apiKey is what an API key names: its tenant, and whether it is one of the tenant's
// previous_api_keys (being rotated out).
type apiKey struct {
	tenant   *tenant
	previous bool
}

// runtime is one loaded config, swapped atomically on reload.
type runtime struct {
	cfg *config.Config
	// keys are the tenants by the SHA-256 of each API key they have.
	keys map[[32]byte]apiKey
	// byName are the same tenants by name (delivery reports, spend charges and listings name them).
	byName  map[string]*tenant
	routes  *routing.Table
	members map[string]*memberInfo
	// paced is true when some provider has a throughput; pace is then dispatch.Chain.Pace for
	// this runtime, built once (paced.go).
	paced bool
	pace  func(ctx context.Context, provider, tenant string, typ gateway.MessageType) (bool, time.Duration)
	// pushes is true when some tenant may have reports pushed (notify_hosts; notify.go).
	pushes bool
	order  []string
	// keySecret keys every hash derived from a code or a body (see mac); macs holds HMACs under
	// it for reuse (one is built per call otherwise: two allocations and the key schedule).
	keySecret []byte
	macs      sync.Pool
	// secrets are every configured secret value, and redactor removes them from a text (scrub).
	secrets  []string
	redactor *gateway.Redactor
	// warnings are config findings that are valid but probably not meant (smsgate validate).
	warnings []string
}

// mac is HMAC-SHA256 over parts under the runtime's key secret: state.key_secret, or a random
// per-process secret. Keys derived from codes (resend memory, duplicate detection) and request
// fingerprints are never plain hashes, which a six-digit code would reverse in microseconds.
func (rt *runtime) mac(parts ...string) [32]byte {
	m, _ := rt.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, rt.keySecret)
	}
	defer func() { m.Reset(); rt.macs.Put(m) }()
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// scrub removes every configured secret (any run of gateway.SecretRun characters of one) from s.
func (rt *runtime) scrub(s string) string { return rt.redactor.Redact(s) }

// processKeySecret is the key secret of a process whose state is its own (state.driver memory).
var processKeySecret = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}()

// collectSecrets returns every gateway.Secret value reachable from v (structs, pointers, maps,
// slices), so that a new driver's secrets are scrubbed without being listed anywhere.
func collectSecrets(v reflect.Value, out *[]string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			collectSecrets(v.Elem(), out)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				collectSecrets(v.Field(i), out)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			collectSecrets(v.Index(i), out)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			collectSecrets(v.MapIndex(k), out)
		}
	case reflect.String:
		if v.Type() == reflect.TypeFor[gateway.Secret]() && v.Len() > 0 {
			*out = append(*out, v.String())
		}
	}
}

// New loads the config, opens the message log and builds everything, without listening yet.
func New(ctx context.Context, o Options) (*App, error) {
	seen := config.Digest(o.ConfigPath)
	cfg, err := config.Load(o.ConfigPath, Drivers)
	if err != nil {
		return nil, err
	}
	out := o.LogOutput
	if out == nil {
		out = os.Stderr
	}
	a := &App{opts: o, level: new(slog.LevelVar), metrics: metrics.New(), done: make(chan error, 1), drained: map[string]bool{}}
	a.metrics.BuildInfo.WithLabelValues(cmp.Or(o.Version, "dev"), goruntime.Version()).Set(1)
	a.loaded.Store(&seen)
	a.metrics.ConfigLoaded.Set(1)
	a.log = newLogger(out, cfg.Log.Format, a.level)
	a.setLevel(cfg.Log.Level)
	a.flight.OnPanic = func(_ string, v any) { a.log.Error("panic in send", "panic", fmt.Sprint(v)) }
	a.notifier = newNotifier(a)
	a.client = o.HTTPClient
	if a.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		tr.ResponseHeaderTimeout = 0
		a.client = &http.Client{Transport: tr}
	}
	if err := a.openState(ctx, cfg); err != nil {
		return nil, err
	}
	rt, err := a.build(cfg, nil)
	if err != nil {
		a.closeState()
		return nil, err
	}
	a.apply(rt, nil)
	a.rt.Store(rt)
	spool, err := a.openSpool(cfg.Storage)
	if err != nil {
		a.closeState()
		return nil, err
	}
	var backend store.Backend
	switch cfg.Storage.Driver {
	case "memory":
		m := store.NewMemory()
		m.Now = o.Now
		backend = m
	default:
		b, err := a.openLog(cfg.Storage)
		if err != nil {
			if spool != nil {
				spool.Close()
			}
			a.closeState()
			return nil, err
		}
		backend = b
	}
	if o.WrapBackend != nil {
		backend = o.WrapBackend(backend)
	}
	a.refuseSends = cfg.Storage.BacklogFull == "refuse_sends"
	a.metrics.LogRetention.Set(cfg.Storage.Retention.D().Seconds())
	a.reads = newReadGate(readsPerTenant, backend.ReadConns)
	a.store = store.New(store.Options{Backend: backend, Logger: a.log, Retention: cfg.Storage.Retention.D(), RecordBounds: a.recordBounds(cfg.Storage.MaxRecordsPerTenant), TrimEvery: o.choresEvery, PurgeEvery: o.choresEvery, StartDelay: o.choresEvery,
		CommitTimeout: cfg.Storage.CommitTimeout.D(), WriteTimeout: cfg.Storage.WriteTimeout.D(), RetryBuffer: cfg.Storage.RetryBuffer, ExactDrops: a.refuseSends,
		OnBatch: func(n int, err error) {
			res := "ok"
			if err != nil {
				res = "error"
			}
			a.metrics.LogWrites.WithLabelValues(res).Add(float64(n))
			a.metrics.LogBatch.Observe(float64(n))
		},
		OnBacklog: func(n int) { a.metrics.LogBacklog.Set(float64(n)) },
		OnDrop:    func(n int) { a.metrics.LogDropped.Add(float64(n)) },
		OnTrim:    func(tenant string, n int) { a.metrics.LogTrimmed.WithLabelValues(tenant).Add(float64(n)) },
		OnPurge: func(n int, oldest time.Time, known bool) {
			a.metrics.LogPurged.Add(float64(n))
			if known {
				a.metrics.LogOldest.Set(unixSeconds(oldest))
			}
		},
		OnSpoolFailure: a.metrics.LogSpoolFailures.Inc,
		OnCharge:       a.charge,
		HandOff:        a.handOffFor(cfg),
		OnHandOff:      func(n int) { a.metrics.LogHandedOver.WithLabelValues("out").Add(float64(n)) },
		Spool:          spool,
		InFlight:       func() int { return int(a.inflight.Load()) },
		Linger:         500 * time.Microsecond,
	})
	a.rebuildPrices()
	return a, nil
}

// openSpool opens storage.spool_dir (nil without one) and says how many writes a process killed
// before this one left there: the store writes them first.
func (a *App) openSpool(cfg config.Storage) (*store.Spool, error) {
	if cfg.SpoolDir == "" {
		return nil, nil
	}
	sp, err := store.OpenSpool(cfg.SpoolDir)
	if err != nil {
		return nil, fmt.Errorf("storage.spool_dir: %w", err)
	}
	if cfg.SpoolSync {
		if err := sp.SyncWrites(); err != nil {
			sp.Close()
			return nil, fmt.Errorf("storage.spool_sync: %w", err)
		}
	}
	if n := sp.Recovered(); n > 0 {
		a.log.Warn("message log writes recovered from the spool: a process on it stopped before the database took them; they are written first", "writes", n, "dir", cfg.SpoolDir)
	}
	return sp, nil
}

// sqliteOptions are the SQLite log's options that cfg sets.
func sqliteOptions(cfg config.Storage) store.SQLiteOptions {
	return store.SQLiteOptions{Unmapped: cfg.SQLiteMmap != nil && !*cfg.SQLiteMmap}
}

// openLog opens the message log (SQLite or PostgreSQL). A database that answers no (a wrong
// password, no such database, a file that cannot be opened, a migration it refused) stops the
// start: the config is wrong. A PostgreSQL that cannot be reached does not: the replica serves as
// it would had the database failed while it ran (records wait in the retry buffer, reads answer
// 503) and reaches it in the background (store.Later). Else a database outage would keep every
// replica that starts during it from serving. Nor do migrations that run long (an index built
// over a large log): the start waits startWait for them, then serves the same way while they go
// on. (A start that waited for them would not listen meanwhile, and a liveness probe would kill
// it, and the migration with it, again and again.)
func (a *App) openLog(cfg config.Storage) (store.Backend, error) {
	open := func(ctx context.Context) (store.Backend, error) {
		if cfg.Driver == "postgres" {
			pg, err := store.OpenPostgres(ctx, cfg.DSN.Reveal(), a.log)
			if err != nil {
				return nil, err
			}
			pg.Now = a.opts.Now
			a.logAhead(pg.Ahead())
			return pg, nil
		}
		so := sqliteOptions(cfg)
		so.OnWAL = func(n int64) { a.metrics.LogWAL.Set(float64(n)) }
		so.OnReadsInterrupted = func(n int) { a.metrics.LogReadsInterrupted.Add(float64(n)) }
		sq, err := store.OpenSQLiteWith(ctx, cfg.Path, so, a.log)
		if err != nil {
			return nil, err
		}
		sq.Now = a.opts.Now
		a.logAhead(sq.Ahead())
		return sq, nil
	}
	wait := cmp.Or(a.opts.startWait, startWait)
	l, ended, err := store.OpenLater(open, time.Second, wait,
		func(err error) { a.log.Error("message log still not reached; trying again", "err", err.Error()) },
		func() { a.log.Info("message log reached; its migrations are applied") })
	switch {
	case ended && err == nil:
	case ended && !store.Unreachable(err):
		l.Close()
		return nil, err
	case ended:
		a.log.Error("message log unreachable at start; serving anyway: records wait in the retry buffer (storage.retry_buffer) and reads answer 503 until it is reached", "err", err.Error())
	default:
		a.log.Error("message log not reached within " + wait.String() + " (unreachable, or its migrations still running); serving anyway: records wait in the retry buffer (storage.retry_buffer) and reads answer 503 until it is reached")
	}
	return l, nil
}

// logAhead says that the message log's schema is newer than this build (a rollback after an
// upgrade): it runs on it without migrating, which the log said builds like it may.
func (a *App) logAhead(version, known int) {
	if version > 0 {
		a.log.Warn("the message log's schema is newer than this build (a rollback?): running on it without migrating, which its schema_compat allows",
			"schema_version", version, "this_build_knows", known)
	}
}

// background is the context of the loops' reads of the message log: cancelled at shutdown (the
// background before Start).
func (a *App) background() context.Context {
	if a.stopped == nil {
		return context.Background()
	}
	return a.stopped
}

// quietRead reports whether a background read's error (delivery health, prices, due pushes)
// goes unlogged: the message log not reached yet (store.ErrNotOpen; the start said so, and so
// does each attempt to reach it), or a read cancelled by the shutdown. Their metrics still
// count them.
func (a *App) quietRead(err error) bool {
	return errors.Is(err, store.ErrNotOpen) || a.background().Err() != nil
}

// startWait is how long a start waits for the message log's database before it serves without.
const startWait = 10 * time.Second

// redisOpenFor is how long the state store's breaker, once open, keeps sends off Redis before one
// probes it. Short: a Redis back (a restart, a Sentinel failover, which takes about a second when
// asked for) is used again within it, and sends meet state.on_error only that much longer than
// the outage (5 s made a crash that Sentinel healed in 2 s cost 5). Each probe is one send of the
// replica's, a second, waiting up to state.redis.timeout.
const redisOpenFor = time.Second

// redisClient is the client of state.redis: the primary at addr, or the one the Sentinels name
// (followed through their failovers), over TLS when rc says so. where names it in logs and errors.
func redisClient(rc config.RedisState) (client redis.UniversalClient, where string, err error) {
	tlsConfig, err := rc.TLSConfig()
	if err != nil {
		return nil, "", err
	}
	t := rc.Timeout.D()
	o := &redis.UniversalOptions{Addrs: []string{rc.Addr}, Username: rc.Username, Password: rc.Password.Reveal(), DB: rc.DB, TLSConfig: tlsConfig,
		DialTimeout: t, ReadTimeout: t, WriteTimeout: t, ContextTimeoutEnabled: true,
		// One quick retry (a pooled connection may have gone stale); more would spend the send's
		// budget waiting on a Redis that is down.
		MaxRetries: 1, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 10 * time.Millisecond,
		DialerRetries: 1, DialerRetryTimeout: 5 * time.Millisecond}
	where = rc.Addr
	if s := rc.Sentinel; len(s.Addrs) > 0 {
		// A master name makes it a failover client, which asks these addresses for the primary.
		o.Addrs, o.MasterName, o.SentinelUsername, o.SentinelPassword = s.Addrs, s.MasterName, s.Username, s.Password.Reveal()
		where = "sentinel " + s.MasterName + " at " + strings.Join(s.Addrs, ",")
	}
	if cl := rc.Cluster; len(cl.Addrs) > 0 {
		// A cluster client, also with one address (a managed service's configuration endpoint):
		// it learns the nodes and their slots from any of them and follows MOVED and ASK.
		o.Addrs, o.IsClusterMode = cl.Addrs, true
		where = "cluster at " + strings.Join(cl.Addrs, ",")
	}
	return redis.NewUniversalClient(o), where, nil
}

// redisTooOld reads redis_version from INFO server and reports whether it is older than 5.0 (the
// scripts read TIME before they write, and the idempotency index pops a sorted set, which older
// Redis refuses). An answer without a version is not judged.
func redisTooOld(info string) (version string, old bool) {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			major, _, _ := strings.Cut(v, ".")
			n, err := strconv.Atoi(major)
			return v, err == nil && n < 5
		}
	}
	return "", false
}

// redisConfigRefused reports whether err is Redis refusing the config (authentication, a user's
// permissions, the database index), which no retry will change, as opposed to an outage or a
// state that passes (LOADING, max clients, MASTERDOWN, TRYAGAIN, ...).
func redisConfigRefused(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return redis.IsAuthError(err) || redis.IsPermissionError(err) ||
		strings.Contains(msg, "AUTH") || strings.Contains(msg, "password") || strings.Contains(msg, "DB index")
}

// redisLogApp is the App whose log takes the Redis client's own lines (one per process: the
// client's logger is global; the last App started with Redis takes them).
var (
	redisLogApp  atomic.Pointer[App]
	redisLogOnce sync.Once
)

// routeRedisLog sends the Redis client's own lines (a failed dial, a pool's trouble) into a's log,
// as JSON like every other line and bounded like errors, instead of plain text on stderr.
func routeRedisLog(a *App) {
	redisLogApp.Store(a)
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
}

type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	a := redisLogApp.Load()
	if a == nil {
		return
	}
	var left int
	if a.rt.Load() != nil {
		ok, n := a.errorLine("state|client")
		if !ok {
			return
		}
		left = n
	}
	a.log.Warn("state store client", append([]any{"detail", fmt.Sprintf(format, v...)}, leftOut(left)...)...)
}

// recordBounds gives the message log's bounds of each tenant's records: storage.max_records_per_tenant
// as the replica started with it (storage changes need a restart), and each tenant's max_records
// as the running config has it.
func (a *App) recordBounds(perTenant int) func() store.RecordBounds {
	return func() store.RecordBounds {
		b := store.RecordBounds{Default: perTenant}
		rt := a.rt.Load()
		if rt == nil {
			return b
		}
		for i := range rt.cfg.Tenants {
			if t := &rt.cfg.Tenants[i]; t.MaxRecords > 0 {
				if b.Tenants == nil {
					b.Tenants = map[string]int{}
				}
				b.Tenants[t.Name] = t.MaxRecords
			}
		}
		return b
	}
}

// openState connects the policy state: in memory, or in Redis shared by every replica.
func (a *App) openState(ctx context.Context, cfg *config.Config) error {
	a.failOpen = cfg.State.OnError == "open"
	if cfg.State.Driver != "redis" {
		l := policy.NewMemoryLimiter(a.opts.Now, cfg.State.MaxKeys, a.bucketEvicted)
		a.checker.Limiter, a.checker.Spends = l, l
		replays := policy.NewMemoryReplays(a.opts.Now, cfg.State.MaxIdempotencyRecords)
		replays.OnEvict = a.replayEvicted
		a.replays = replays
		a.resends = policy.NewMemoryResends(a.opts.Now, cfg.State.MaxKeys, a.resendEvicted)
		a.pumping = &policy.Pumping{State: &policy.MemoryPumpState{Now: a.opts.Now}, Now: a.opts.Now}
		a.closeState, a.stateNow = func() {}, a.now
		return nil
	}
	routeRedisLog(a)
	rc := cfg.State.Redis
	client, where, err := redisClient(rc)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A Redis that answers no to the config (a wrong password, a wrong user, a database index it
	// does not have) stops the start: the config is wrong. One that cannot be reached, or
	// answers that it cannot serve yet (loading its data after a restart, no client left, its
	// primary down), does not: the replica starts as it would run had Redis failed
	// (state.on_error decides each send), and the client reconnects by itself.
	if err := client.Ping(pctx).Err(); redisConfigRefused(err) {
		client.Close()
		return fmt.Errorf("state.redis %s: %w", where, err)
	} else if err != nil {
		a.log.Error("state store unreachable at start; serving anyway, state.on_error decides each send until it is reached", "addr", where, "on_error", cfg.State.OnError, "err", err.Error())
	} else if info, err := client.Info(pctx, "server").Result(); err == nil {
		if v, old := redisTooOld(info); old {
			client.Close()
			return fmt.Errorf("state.redis %s: Redis %s is older than 5.0, which smsgate's scripts need (every limit check would fail, and state.on_error decide every send)", where, v)
		}
	}
	a.gate.Now = a.opts.Now
	r := &policy.Redis{Client: client, Prefix: rc.KeyPrefix, Now: a.opts.Now, Local: a.opts.ReplicaClock, Breakers: policy.NewBreakers(redisOpenFor), Cluster: len(rc.Cluster.Addrs) > 0,
		MaxTenantReplays: rc.MaxIdempotencyRecordsPerTenant, OnReplaysEvicted: a.redisReplaysEvicted}
	a.checker.Limiter, a.checker.Spends, a.replays, a.resends, a.flights = r, r, r, r, r
	// Redis keys of per-recipient and per-IP buckets hold an HMAC under state.key_secret, not the
	// number or the address.
	a.checker.Blind = func(v string) string {
		h := a.rt.Load().mac("limit", v)
		return base64.RawURLEncoding.EncodeToString(h[:16])
	}
	a.pumping = &policy.Pumping{State: r, Now: r.Clock}
	a.stateNow = r.Clock
	a.stateClient, a.statePrefix = client, rc.KeyPrefix
	a.closeState = func() { client.Close() }
	return nil
}

// Check loads a config file and builds its drivers without starting anything, returning every
// problem (for `smsgate validate`), and warnings: things that are valid but probably not meant.
func Check(path string) (warnings []string, err error) {
	cfg, err := config.Load(path, Drivers)
	if err != nil {
		return nil, err
	}
	return check(cfg)
}

// CheckWithoutSecrets is Check reading no ${NAME} or ${file:PATH} (config.LoadUnread), for a check
// where the replicas' environment and secret files are not (a CI job, a team's pipeline checking
// its tenant file): the keys holding a reference are not judged, and unread says how many there
// are. Whether a reference may stand where it does (a team's file) is still checked.
func CheckWithoutSecrets(path string) (warnings []string, unread int, err error) {
	cfg, err := config.LoadUnread(path, Drivers)
	if err != nil {
		return nil, 0, err
	}
	warnings, err = check(cfg)
	return warnings, cfg.Decoder.DropUnjudged(), err
}

func check(cfg *config.Config) (warnings []string, err error) {
	a := &App{log: slog.New(slog.DiscardHandler), metrics: metrics.New(), client: http.DefaultClient}
	rt, err := a.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	return rt.warnings, nil
}

func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}

func (a *App) setLevel(s string) {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	a.level.Set(l)
}

// Logger returns the app's logger.
func (a *App) Logger() *slog.Logger { return a.log }

// build compiles cfg into a runtime, reusing members of prev whose config did not change (so
// their breaker state survives a reload; drains are kept apart, by name: drains.go).
func (a *App) build(cfg *config.Config, prev *runtime) (*runtime, error) {
	rt := &runtime{cfg: cfg, keys: map[[32]byte]apiKey{}, byName: map[string]*tenant{}, routes: routing.Compile(cfg.Routes, cfg.Tenants), members: map[string]*memberInfo{}, keySecret: processKeySecret}
	switch {
	case cfg.State.KeySecret != "":
		rt.keySecret = []byte(cfg.State.KeySecret.Reveal())
	case a.opts.keySecret != nil:
		rt.keySecret = a.opts.keySecret
	}
	collectSecrets(reflect.ValueOf(cfg), &rt.secrets) // the drivers' settings too (config.Provider.Settings)
	for i := range cfg.Tenants {
		t := &cfg.Tenants[i]
		tn := &tenant{name: t.Name, rules: policy.Compile(cfg, t), acceptUnrecognized: t.AcceptUnrecognizedNumbers, allowSender: t.AllowSender,
			notifyHosts: map[string]bool{}, notifyPrivate: t.NotifyPrivateAddresses, pumping: cfg.EffectivePumping(t)}
		for _, h := range t.NotifyHosts {
			tn.notifyHosts[strings.ToLower(h)] = true
		}
		rt.pushes = rt.pushes || len(t.NotifyHosts) > 0
		if len(t.AllowedSenders) > 0 {
			tn.allowSender, tn.senders = true, map[string]string{}
			for _, from := range t.AllowedSenders {
				tn.senders[gateway.SenderKey(from)] = from
			}
		}
		if len(t.ClientIDs) > 0 {
			tn.clientIDs = map[string]bool{}
			for _, id := range t.ClientIDs {
				tn.clientIDs[id] = true
			}
		}
		rt.keys[sha256.Sum256([]byte(t.APIKey.Reveal()))] = apiKey{tenant: tn}
		for _, k := range t.PreviousAPIKeys {
			rt.keys[sha256.Sum256([]byte(k.Reveal()))] = apiKey{tenant: tn, previous: true}
		}
		rt.byName[t.Name] = tn
	}
	for i := range cfg.Providers {
		p := &cfg.Providers[i]
		deps := gateway.Deps{Name: p.Name, HTTPClient: a.client, CallbackURL: callbackURL(cfg, p)}
		mi := &memberInfo{typ: p.Type, cfg: p.Settings, callback: deps.CallbackURL, timeout: p.Timeout.D(), breaker: p.Breaker, cfgDisabled: p.Disabled}
		if p.Paced() {
			mi.share = *p.TenantShare
			if p.Throughput.Active() {
				mi.throughput = p.Throughput
			}
			if p.VoiceThroughput.Active() {
				mi.voiceThroughput = p.VoiceThroughput
			}
			rt.paced = true
		}
		if prev != nil {
			if old, ok := prev.members[p.Name]; ok && old.typ == mi.typ && old.timeout == mi.timeout && old.callback == mi.callback &&
				old.breaker == mi.breaker && reflect.DeepEqual(old.cfg, mi.cfg) {
				mi.member = old.member
			}
		}
		var drv gateway.Provider
		if mi.member == nil {
			if drv = buildDriver(cfg, i, deps); drv == nil {
				continue
			}
		}
		if mi.member == nil {
			b := p.Breaker
			mi.member = dispatch.NewMember(dispatch.MemberOptions{Name: p.Name, Provider: drv, Timeout: p.Timeout.D(), Observer: a.metrics, Disabled: p.Disabled,
				Breaker: dispatch.BreakerSettings{ConsecutiveFailures: b.ConsecutiveFailures, FailureRatio: b.FailureRatio, MinRequests: b.MinRequests,
					OpenTimeout: b.OpenTimeout.D(), Interval: b.Interval.D(), HalfOpenRequests: b.HalfOpenRequests}})
		}
		rt.members[p.Name] = mi
		rt.order = append(rt.order, p.Name)
	}
	rt.redactor = gateway.NewRedactor(rt.secrets...)
	rt.pace = a.pace(rt)
	rt.checkRouteCapabilities()
	rt.checkVoicePrices()
	rt.checkTenantRates()
	rt.checkSenders()
	rt.checkLinkHosts()
	rt.checkRouteActions()
	rt.checkEmptyLists()
	rt.checkRouteClientIDs()
	rt.checkPublicURL()
	rt.checkCredentials()
	rt.checkMetricsListener()
	rt.checkPumpingRanges()
	rt.checkRetention()
	rt.checkTeamNames()
	rt.checkTLS(a.now())
	if cfg.Decoder.Unread { // a check without the secrets: what they would hold is not judged
		cfg.Decoder.DropUnjudged()
	}
	if len(cfg.Decoder.Problems) > 0 {
		cfg.Decoder.RedactProblems()
		cfg.Decoder.Problems.Sort()
		return nil, cfg.Decoder.Problems
	}
	return rt, nil
}

// warn records a warning about the key at path: FILE:LINE: path: message. No value a reference
// read is quoted back (Decoder.Redact), and in a check without the secrets (Decoder.Unread), a
// key holding a reference is not judged.
func (rt *runtime) warn(path, format string, args ...any) {
	d := rt.cfg.Decoder
	if d.Unread && d.Unjudged(path) {
		return
	}
	rt.warnings = append(rt.warnings, d.Redact(fmt.Sprintf("%s: %s: ", d.Where(path), path)+fmt.Sprintf(format, args...)))
}

// checkVoicePrices warns when spend limits are set and providers can send voice, but none has
// voice_prices: a call then counts at the highest SMS price, which most calls cost more than.
func (rt *runtime) checkVoicePrices() {
	path := rt.cfg.SpendLimitPath()
	voice := false
	for _, p := range rt.cfg.Providers {
		if p.VoicePrices.Any() {
			return
		}
		if mi := rt.members[p.Name]; mi != nil && mi.member.Provider().Capabilities().Can(gateway.Voice) {
			voice = true
		}
	}
	if path != "" && voice {
		rt.warn(path, "providers can send voice, but none has voice_prices: spend limits count a call at the highest SMS price, and calls usually cost more")
	}
}

// minCredential is the length under which validate warns of an API key or admin token.
const minCredential = 16

// checkCredentials warns of API keys and admin tokens shorter than minCredential: a wrong key is
// answered at once and nothing slows down a caller trying keys, so a short one can be found by
// trying. The warning names the key's place, never its value.
func (rt *runtime) checkCredentials() {
	weak := func(path string, s gateway.Secret) {
		if s != "" && len(s) < minCredential {
			rt.warn(path, "shorter than %d characters: whoever reaches the gateway can find it by trying (wrong keys are answered at once, without limit); use a random value such as `openssl rand -hex 16`",
				minCredential)
		}
	}
	weak("server.admin_token", rt.cfg.Server.AdminToken)
	for i, s := range rt.cfg.Server.PreviousAdminTokens {
		weak(fmt.Sprintf("server.previous_admin_tokens[%d]", i), s)
	}
	for i, t := range rt.cfg.Tenants {
		weak(fmt.Sprintf("tenants[%d].api_key", i), t.APIKey)
		for k, s := range t.PreviousAPIKeys {
			weak(fmt.Sprintf("tenants[%d].previous_api_keys[%d]", i, k), s)
		}
	}
	// The secrets that authenticate delivery reports: a guessed one lets anyone post reports as
	// the provider.
	for i, p := range rt.cfg.Providers {
		reportSecrets(p.Settings, func(key string, s gateway.Secret) {
			weak(fmt.Sprintf("providers[%d].%s", i, key), s)
		})
	}
}

// reportSecretKeys are the driver config keys that hold a secret a delivery report must carry,
// chosen by the gateway's operator (the providers' own credentials, which they generate, are not
// among them).
var reportSecretKeys = map[string]bool{"webhook_secret": true, "previous_webhook_secrets": true}

// reportSecrets calls f with each of a driver's settings (a pointer to its config struct) held
// under reportSecretKeys, by key (list items as key[i]), inline structs included.
func reportSecrets(settings any, f func(key string, s gateway.Secret)) {
	reportSecretsOf(reflect.ValueOf(settings), f)
}

func reportSecretsOf(v reflect.Value, f func(key string, s gateway.Secret)) {
	v = reflect.Indirect(v)
	if v.Kind() != reflect.Struct {
		return
	}
	for i := range v.NumField() {
		sf, fv := v.Type().Field(i), v.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		switch {
		case !sf.IsExported():
		case opts == "inline":
			reportSecretsOf(fv, f)
		case !reportSecretKeys[name]:
		case fv.Type() == reflect.TypeFor[gateway.Secret]():
			f(name, fv.Interface().(gateway.Secret))
		case fv.Type() == reflect.TypeFor[[]gateway.Secret]():
			for k, s := range fv.Interface().([]gateway.Secret) {
				f(fmt.Sprintf("%s[%d]", name, k), s)
			}
		}
	}
}

// checkMetricsListener warns when the gateway is reachable from outside (server.public_url is
// set) and GET /metrics is on the listener tenants reach: its labels name every tenant, and its
// figures show each one's volume, spend, countries and quarantines to anyone who asks.
func (rt *runtime) checkMetricsListener() {
	if rt.cfg.Server.PublicURL == "" || rt.cfg.Server.MetricsListen != "" {
		return
	}
	rt.warn("server.public_url", "GET /metrics is served on server.listen, which tenants reach: it shows every tenant's volume, spend, countries and quarantines to anyone who asks; set server.metrics_listen (for example 0.0.0.0:9464) and scrape that, or block /metrics in front")
}

// wideRangeDigits is where policy.pumping.range_digits starts to warn: from 4 national digits, a
// range is about as narrow as a number (215 calling codes x 10,000 ranges each).
const wideRangeDigits = 4

// checkPumpingRanges warns when pumping detection counts ranges of wideRangeDigits or more digits
// for some tenant. Each range's counters are kept for the baseline and two hours (about 440 bytes
// a new range in memory, 110 in Redis: operations.md), so ranges that narrow keep about that for
// nearly every send; and the signals need min_volume sends to one range, which ranges that narrow
// seldom see.
func (rt *runtime) checkPumpingRanges() {
	pp := rt.cfg.Policy.Pumping
	if pp.RangeDigits < wideRangeDigits {
		return
	}
	for i := range rt.cfg.Tenants {
		if e := rt.cfg.EffectivePumping(&rt.cfg.Tenants[i]); e.Enabled != nil && *e.Enabled {
			rt.warn("policy.pumping.range_digits", "%d digits make nearly every number a range of its own: each range's counters are kept for the baseline and two hours (%.0fh), about 440 bytes a send in memory and 110 in Redis, and few ranges reach min_volume; 2 or 3 is usual (docs/operations.md)",
				pp.RangeDigits, (pp.Baseline.D() + 2*time.Hour).Hours())
			return
		}
	}
}

// checkTeamNames warns of a team's tenant_files entry (delegated) that sets no names: the team may
// then name its tenants as another team's, or the operator's, and a name taken twice rejects the
// whole load, holding every team's changes until it is mended.
func (rt *runtime) checkTeamNames() {
	for i, s := range rt.cfg.TenantFiles {
		path := fmt.Sprintf("tenant_files[%d]", i)
		if _, set := rt.cfg.Decoder.Lines[path+".names"]; s.Delegated && !set {
			rt.warn(path, "a team's entry without names: its files may name a tenant as another team's or as yours, and a name taken twice rejects the whole load, every team's changes with it; give each team a pattern of its own (names: \"payments-*\")")
		}
	}
}

// checkRetention warns when storage.retention keeps the message log shorter than a window read
// from it: delivery health's, and least-cost prices' when a route uses least_cost. The read then
// sees only what is kept, fewer messages than it is set to count, and no error says so.
func (rt *runtime) checkRetention() {
	ret := rt.cfg.Storage.Retention.D()
	if ret <= 0 {
		return // kept forever
	}
	dh, lc := rt.cfg.Routing.DeliveryHealth, rt.cfg.Routing.LeastCost
	windows := []struct {
		key string
		d   time.Duration
		on  bool
	}{
		{"routing.delivery_health.window", dh.Window.D(), dh.Enabled != nil && *dh.Enabled},
		{"routing.least_cost.window", lc.Window.D(), slices.ContainsFunc(rt.cfg.Routes, func(r config.Route) bool { return r.Strategy == "least_cost" })},
	}
	for _, w := range windows {
		if w.on && ret < w.d {
			rt.warn("storage.retention", "%s keeps less of the message log than %s (%s) reads: it counts only what is kept",
				ret, w.key, w.d)
		}
	}
}

// checkTenantRates warns when tenants share Redis without a per_tenant limit: nothing then bounds
// what such a tenant keeps in the store every replica shares (an idempotency record of about 600
// bytes a send, for idempotency.ttl), nor its calls to it (the flood gate is twice per_tenant).
func (rt *runtime) checkTenantRates() {
	if rt.cfg.State.Driver != "redis" {
		return
	}
	var open []string
	for _, t := range rt.cfg.Tenants {
		if tn := rt.byName[t.Name]; tn != nil && !tn.rules.Limits.PerTenant.Active() {
			open = append(open, t.Name)
		}
	}
	if len(open) > 0 {
		rt.warn("state.driver", "tenants without rate_limits.per_tenant (%s): nothing bounds their calls to the Redis every replica shares, nor what each keeps there but its idempotency records (docs/security.md)",
			strings.Join(open, ", "))
	}
}

// checkSenders warns of each tenant that may name any sender (allow_sender without
// allowed_senders): it may send as another tenant's brand, or a bank's, through the providers'
// accounts every tenant shares.
func (rt *runtime) checkSenders() {
	for i, t := range rt.cfg.Tenants {
		if t.AllowSender && len(t.AllowedSenders) == 0 {
			p := fmt.Sprintf("tenants[%d].allow_sender", i)
			rt.warn(p, "tenant %q may send as any sender, another tenant's brand or a bank's included, from the providers' accounts every tenant shares; list the senders it may use in allowed_senders",
				t.Name)
		}
	}
}

// shorteners are public URL shorteners: a link through one goes wherever its maker chose.
var shorteners = []string{"bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "rebrand.ly",
	"cutt.ly", "shorturl.at", "rb.gy", "t.ly", "s.id", "lnkd.in", "tiny.cc", "bl.ink", "short.io", "v.gd"}

// checkLinkHosts warns of an allowed link host that is a URL shortener: allowing it allows a link
// to anywhere, which is what allowed_link_hosts is there to stop.
func (rt *runtime) checkLinkHosts() {
	warn := func(p string, hosts []string) {
		for k, h := range hosts {
			if slices.Contains(shorteners, strings.ToLower(h)) {
				kp := fmt.Sprintf("%s[%d]", p, k)
				rt.warn(kp, "%s is a URL shortener: its links go wherever their maker chose, so allowing it allows a link to anywhere",
					h)
			}
		}
	}
	warn("policy.allowed_link_hosts", rt.cfg.Policy.AllowedLinkHosts)
	for i, t := range rt.cfg.Tenants {
		warn(fmt.Sprintf("tenants[%d].allowed_link_hosts", i), t.AllowedLinkHosts)
	}
}

// checkPublicURL warns when providers take delivery reports but server.public_url is empty: none
// is given a callback URL, so unless a provider's account posts reports to /v1/dlr/... by itself,
// what is built on reports sees nothing. With a public URL it warns of each provider that still
// asks for no reports (no webhook_secret to put in its callback URL; AWS: no configuration set or
// event topics).
func (rt *runtime) checkPublicURL() {
	public := rt.cfg.Server.PublicURL != ""
	var takers []string
	first := -1
	for i, p := range rt.cfg.Providers {
		mi := rt.members[p.Name]
		if mi == nil {
			continue
		}
		rr, ok := mi.member.Provider().(gateway.ReportReceiver)
		if !ok {
			continue
		}
		if !public {
			takers = append(takers, p.Name)
			if first < 0 {
				first = i
			}
		} else if !rr.AsksReports() {
			path := fmt.Sprintf("providers[%d]", i)
			rt.warn(path, "%s is asked for no delivery reports (set webhook_secret; aws-sms-voice: configuration_set and event_topics): delivery-aware routing cannot see it stop delivering, and its reported prices and notify pushes never come",
				p.Name)
		}
	}
	if len(takers) == 0 {
		return
	}
	path := fmt.Sprintf("providers[%d]", first)
	rt.warn(path, "providers take delivery reports (%s), but server.public_url is empty, so none is given a callback URL: unless a provider's account posts reports to /v1/dlr/... by itself, delivery-aware routing cannot see a provider that accepts messages and stops delivering, reported prices reach neither spend limits nor least-cost routing, and notify URLs get no reports",
		strings.Join(takers, ", "))
}

// knownActions are the actions Auth0 sends: the legacy hook's (enrollment, authentication), the
// Actions event's (enrollment, second-factor-authentication), and the custom-phone-provider
// event's message types other than the two it maps to those (intake passes them through).
var knownActions = []string{"enrollment", "authentication", "second-factor-authentication", "blocked_account", "change_password", "password_breach"}

// checkRouteActions warns of a route rule naming an action Auth0 does not send (a typo such as
// "enrolment"): the rule then matches nothing from Auth0, and its requests go down the table.
// A warning, not a problem: callers of the API may name actions of their own.
func (rt *runtime) checkRouteActions() {
	for i, r := range rt.cfg.Routes {
		if r.Match == nil {
			continue
		}
		for j, act := range r.Match.Actions {
			if !slices.Contains(knownActions, act) {
				path := fmt.Sprintf("routes[%d].match.actions[%d]", i, j)
				rt.warn(path, "%q is no action Auth0 sends (%s): route %q matches only requests that name it themselves",
					act, strings.Join(knownActions, ", "), r.Name)
			}
		}
	}
}

// checkEmptyLists warns of a list given empty (countries: [], as a template writes for no values)
// where an empty list restricts nothing, as if the key were left out: a route's match key, and an
// allowed_countries, which then allows every country rather than none. A route whose lists are
// all empty is a config problem.
func (rt *runtime) checkEmptyLists() {
	for i, r := range rt.cfg.Routes {
		if r.Match == nil {
			continue
		}
		for _, l := range r.Match.Lists() {
			if l.Values != nil && len(l.Values) == 0 {
				rt.warn(fmt.Sprintf("routes[%d].match.%s", i, l.Key), "an empty list matches every value, as if the key were left out: route %q is not narrowed by %s; list the values, or leave the key out",
					r.Name, l.Key)
			}
		}
	}
	allowed := func(path string, l []string) {
		if l != nil && len(l) == 0 {
			rt.warn(path, "an empty list allows every destination country, as if the key were left out, not none; list the countries, or leave the key out")
		}
	}
	allowed("policy.allowed_countries", rt.cfg.Policy.AllowedCountries)
	for i, t := range rt.cfg.Tenants {
		allowed(fmt.Sprintf("tenants[%d].allowed_countries", i), t.AllowedCountries)
	}
}

// checkRouteClientIDs warns, when there are several tenants, of a route that matches a client id
// no tenant declares (tenants[].client_ids) and names no tenants: a request's client id is what its
// caller wrote, so any tenant may name it and take the route, its providers and their senders
// (routing.Compile). It also warns of a route whose match.tenants names none of a client id's
// declared tenants: that client id never takes it.
func (rt *runtime) checkRouteClientIDs() {
	if len(rt.cfg.Tenants) < 2 {
		return
	}
	owners := routing.ClientOwners(rt.cfg.Tenants)
	for i, r := range rt.cfg.Routes {
		if r.Match == nil {
			continue
		}
		for j, id := range r.Match.ClientIDs {
			path := fmt.Sprintf("routes[%d].match.client_ids[%d]", i, j)
			switch o := owners[id]; {
			case o == nil && len(r.Match.Tenants) == 0:
				rt.warn(path, "no tenant declares this client id in its client_ids, and the route names no tenants: any tenant's request may name it and take route %q, with its providers and their senders; add it to its tenant's client_ids, or set match.tenants",
					r.Name)
			case o != nil && len(r.Match.Tenants) > 0 && !slices.ContainsFunc(r.Match.Tenants, func(t string) bool { return o[t] }):
				rt.warn(path, "only tenants that declare this client id in their client_ids may take a route by it, and match.tenants of route %q names none of them: it never matches by this client id",
					r.Name)
			}
		}
	}
}

// checkRouteCapabilities finds routes whose providers cannot send a message type the route
// matches. A route that names the type in match.message_types and has no provider for it is a
// problem; a route that matches the type only implicitly (no message_types) gets a warning: its
// requests of that type are answered 503 no_provider_available.
func (rt *runtime) checkRouteCapabilities() {
	for i, r := range rt.cfg.Routes {
		var types []string
		explicit := r.Match != nil && len(r.Match.MessageTypes) > 0
		if explicit {
			types = r.Match.MessageTypes
		} else {
			types = []string{string(gateway.SMS), string(gateway.Voice)}
		}
		for _, t := range types {
			can := false
			for _, name := range r.Providers {
				if mi := rt.members[name]; mi != nil && mi.member.Provider().Capabilities().Can(gateway.MessageType(t)) {
					can = true
				}
			}
			if can || len(rt.members) < len(rt.cfg.Providers) {
				continue // (a provider that failed to build has its own problem)
			}
			path := fmt.Sprintf("routes[%d].providers", i)
			if explicit {
				rt.cfg.Problem(path, "route %q matches %s, but none of its providers can send %s", r.Name, t, t)
			} else {
				rt.warn(path, "route %q matches %s too (no match.message_types), but none of its providers can send %s: such requests get 503 no_provider_available",
					r.Name, t, t)
			}
		}
	}
}

// apply makes a successfully built runtime's provider state true before it is swapped in: it logs
// the config's warnings, disables each provider its disabled key or an operator's drain disables
// (drains.go) and enables the others, and the per-provider metric series follow: set for every
// provider, deleted with a provider that is gone.
func (a *App) apply(rt, prev *runtime) {
	for _, w := range rt.warnings {
		a.log.Warn("config: " + w)
	}
	a.drainMu.Lock()
	a.applyDrains(rt, "config") // the config's disabled keys and the operators' drains (drains.go)
	a.drainMu.Unlock()
	for _, name := range rt.order {
		mi := rt.members[name]
		if prev == nil || prev.members[name] == nil || prev.members[name].member != mi.member {
			for _, ch := range dispatch.Channels {
				a.metrics.BreakerState.WithLabelValues(name, string(ch)).Set(float64(metrics.StateValue(mi.member.ChannelState(ch))))
			}
		}
	}
	if prev != nil {
		for name := range prev.members {
			if _, ok := rt.members[name]; !ok {
				a.metrics.DeleteProvider(name)
			}
		}
		for name := range prev.byName {
			if _, ok := rt.byName[name]; !ok {
				a.forgetTenant(rt, name)
			}
		}
	}
}

// forgetTenant drops what the replica keeps of a tenant that left the config: its own breakers.
// (Its metrics' series go at each scrape, with what writes one after the reload: metricsHandler.)
func (a *App) forgetTenant(rt *runtime, name string) {
	for _, mi := range rt.members {
		mi.member.Forget(name)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Reload reads the config file again and swaps it in atomically. An invalid file changes nothing;
// the error then lists its first config.ProblemLines problems, one a line, and how many more.
// Listener address, log format, storage and state need a restart; the log level follows the file.
func (a *App) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	prev := a.rt.Load()
	seen := config.Digest(a.opts.ConfigPath) // before the load: a change during it is seen next time
	a.loaded.Store(&seen)
	cfg, err := config.Load(a.opts.ConfigPath, Drivers)
	var rt *runtime
	if err == nil {
		rt, err = a.build(cfg, prev)
	}
	if err != nil {
		a.metrics.Reloads.WithLabelValues("error").Inc()
		a.metrics.ConfigLoaded.Set(0)
		var ps config.Problems
		n := 1
		if errors.As(err, &ps) { // the first of them, and how many more: a line, not megabytes
			n, err = len(ps), errors.New(strings.Join(ps.Lines(config.ProblemLines), "\n"))
		}
		a.log.Error("config reload rejected; keeping the running config", "file", a.opts.ConfigPath, "problems", n, "err", err.Error())
		return err
	}
	if cfg.Server.Listen != prev.cfg.Server.Listen || cfg.Server.MetricsListen != prev.cfg.Server.MetricsListen || cfg.Server.TLS.On() != prev.cfg.Server.TLS.On() ||
		cfg.Log.Format != prev.cfg.Log.Format || !reflect.DeepEqual(cfg.Storage, prev.cfg.Storage) || !reflect.DeepEqual(cfg.State, prev.cfg.State) {
		a.log.Warn("config reload: changes to server.listen, server.metrics_listen, turning server.tls on or off, log.format, storage and state take effect only after a restart")
	}
	a.setLevel(cfg.Log.Level)
	a.apply(rt, prev)
	a.rt.Store(rt)
	a.rebuildPrices()
	a.metrics.Reloads.WithLabelValues("ok").Inc()
	a.metrics.ConfigLoaded.Set(1)
	a.log.Info("config reloaded", append([]any{"file", a.opts.ConfigPath, "providers", len(rt.members), "routes", len(cfg.Routes), "tenants", len(cfg.Tenants)},
		reloadChanges(prev.cfg, cfg)...)...)
	return nil
}

// Start listens and serves in the background. Addr tells where.
func (a *App) Start() error {
	rt := a.rt.Load()
	var tlsConfig *tls.Config
	var cert *serverCert
	if started := rt.cfg.Server.TLS; started.On() {
		// A reload may name other files; one that turns TLS off (it needs a restart) keeps these.
		cert = &serverCert{log: a.log, expiry: a.metrics.TLSExpiry, files: func() config.ServerTLS {
			return cmp.Or(a.rt.Load().cfg.Server.TLS, started)
		}}
		if err := cert.load(); err != nil {
			return err
		}
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cert.get}
	}
	addr := rt.cfg.Server.Listen
	if a.opts.Listen != "" {
		addr = a.opts.Listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	a.ln = ln
	if m := rt.cfg.Server.MetricsListen; m != "" {
		if a.metricsLn, err = net.Listen("tcp", m); err != nil {
			ln.Close()
			return fmt.Errorf("listen %s (server.metrics_listen): %w", m, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metricsHandler())
		a.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
			ErrorLog: serverErrors(a.log)}
		go func() {
			if err := a.metricsSrv.Serve(a.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("metrics listener stopped", "addr", m, "err", err.Error())
			}
		}()
	}
	e := httpapi.New(a, a.log)
	// ReadTimeout covers headers and body: a client that stalls mid-body is cut off.
	a.srv = &http.Server{Handler: e, ReadHeaderTimeout: min(10*time.Second, rt.cfg.Server.ReadTimeout.D()), ReadTimeout: rt.cfg.Server.ReadTimeout.D(), IdleTimeout: 120 * time.Second,
		ErrorLog: serverErrors(a.log), TLSConfig: tlsConfig}
	a.https = tlsConfig != nil
	a.stop = make(chan struct{})
	a.stopped, a.cancelReads = context.WithCancel(context.Background())
	if a.stateClient != nil {
		a.readDrains() // before the first send: a replica started during a drain starts drained
		go every(a.stop, drainPoll, a.readDrains)
		a.readStateMemory(a.stateClient)
		go every(a.stop, stateMemoryEvery, func() { a.readStateMemory(a.stateClient) })
	}
	if cert != nil {
		a.loops.Go(func() { every(a.stop, tlsRecheck, cert.look) })
	}
	a.loops.Go(func() { a.healthLoop(a.stop) })
	a.loops.Go(func() { a.pushLoop(a.stop) })
	a.loops.Go(func() { a.watchLoop(a.stop) })
	if a.store.HandsOver() {
		a.loops.Go(func() { a.adoptLoop(a.stop) })
	}
	a.loops.Go(func() {
		// Reported prices at once, not a refresh later: a restart must not route on stale prices.
		ctx, cancel := context.WithTimeout(a.background(), 10*time.Second)
		a.logPricesError(a.refreshPrices(ctx))
		cancel()
		a.priceLoop(a.stop)
	})
	go func() {
		var err error
		if tlsConfig != nil {
			err = a.srv.ServeTLS(ln, "", "")
		} else {
			err = a.srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		a.done <- err
	}()
	attrs := []any{"addr", ln.Addr().String(), "version", a.opts.Version, "config", a.opts.ConfigPath,
		"providers", len(rt.members), "routes", len(rt.cfg.Routes), "storage", rt.cfg.Storage.Driver, "tls", tlsConfig != nil}
	if a.metricsLn != nil {
		attrs = append(attrs, "metrics_addr", a.metricsLn.Addr().String())
	}
	a.log.Info("smsgate listening", attrs...)
	return nil
}

// MetricsAddr is where server.metrics_listen listens after Start; empty when it is not set.
func (a *App) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// Addr is the listening address after Start.
func (a *App) Addr() string { return a.ln.Addr().String() }

// URL is http://Addr, or https://Addr with server.tls.
func (a *App) URL() string {
	if a.https {
		return "https://" + a.Addr()
	}
	return "http://" + a.Addr()
}

// Done receives the server's exit error once it stops serving.
func (a *App) Done() <-chan error { return a.done }

// Shutdown stops accepting connections, waits for in-flight requests up to
// server.shutdown_timeout (or ctx), then flushes and closes the message log.
func (a *App) Shutdown(ctx context.Context) error {
	d := a.rt.Load().cfg.Server.ShutdownTimeout.D()
	sctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var err error
	if a.srv != nil {
		err = a.srv.Shutdown(sctx)
		if err != nil {
			a.log.Warn("shutdown: in-flight requests did not finish in time", "err", err.Error())
		}
	}
	// Sends run detached from their callers: wait for those still running, so that every answered
	// send is recorded before the message log closes.
	for a.inflight.Load() > 0 && sctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if n := a.inflight.Load(); n > 0 {
		a.log.Error("shutdown: sends still running when shutdown_timeout ran out", "sends", n)
	}
	if a.stop != nil {
		a.stopOnce.Do(func() { close(a.stop); a.cancelReads() })
	}
	a.notifier.close(2 * time.Second)
	// The loops end at their next turn; one in the middle of a read has it cancelled.
	if !waitAtMost(&a.loops, 2*time.Second) {
		a.log.Warn("shutdown: a read of the message log in the background still running; closing the log under it")
	}
	if cerr := a.store.Close(); cerr != nil && err == nil {
		err = cerr
	}
	// The store's last batch may have recorded reported prices: their spend charges go out first.
	if !waitAtMost(&a.reconciling, 2*time.Second) {
		a.log.Warn("shutdown: spend-limit charges of delivery reports still running")
	}
	a.closeState()
	if a.metricsSrv != nil {
		// Last: the drain above stays visible to Prometheus.
		a.metricsSrv.Close()
	}
	a.log.Info("smsgate stopped")
	return err
}

// waitAtMost waits for wg up to d and reports whether it was done.
func waitAtMost(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Store returns the message log (tests flush it).
func (a *App) Store() *store.Store { return a.store }

// Metrics implements httpapi.Backend: the metrics handler on the API's listener, or nil when
// server.metrics_listen gives them a listener of their own.
func (a *App) Metrics() http.Handler {
	if a.metricsSrv != nil {
		return nil
	}
	return a.metricsHandler()
}

// metricsHandler serves the metrics after dropping the series of tenants no longer in the config
// (Metrics.DeleteTenantsExcept): what wrote them after the reload that removed the tenant (a send
// in flight across it, a report or a push of one of its messages, a trim of its records).
func (a *App) metricsHandler() http.Handler {
	h := a.metrics.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := a.rt.Load()
		a.metrics.DeleteTenantsExcept(func(t string) bool { return rt.byName[t] != nil })
		h.ServeHTTP(w, r)
	})
}

// MetricSet returns the metrics (tests read them).
func (a *App) MetricSet() *metrics.Metrics { return a.metrics }

// unixSeconds is t in Unix seconds, 0 for the zero time.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMilli()) / 1000
}
