// Package config reads smsgate's YAML file into plain structs: strictly (unknown keys are
// problems, reported with file, line and key path), with ${VAR} expansion for secrets, defaults
// for the keys a file leaves out (a number or a duration written as 0 is read as 0: orDefaultAt),
// and a Validate step that reports every problem at once. Provider-specific keys are kept as YAML
// nodes and handed to a Drivers implementation (the composition point in gateway/app), which
// decodes, defaults and validates them with the driver's own config type during Load: a file
// that loads is valid as a whole.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nyaruka/phonenumbers"
	"gopkg.in/yaml.v3"

	"github.com/smsgate/smsgate/gateway"
)

// Config is the whole file.
type Config struct {
	Server  Server   `yaml:"server"`
	Log     Log      `yaml:"log"`
	Storage Storage  `yaml:"storage"`
	State   State    `yaml:"state"`
	Policy  Policy   `yaml:"policy"`
	Tenants []Tenant `yaml:"tenants"`
	// TenantFiles name files holding more tenants, each a mapping with a tenants list: a team's
	// tenants in a file of their own, or a directory of them (tenants.d/*.yaml). Read again at
	// each load; their tenants follow these.
	TenantFiles []TenantFileSet `yaml:"tenant_files"`
	Providers   []Provider      `yaml:"providers"`
	Routing     Routing         `yaml:"routing"`
	Routes      []Route         `yaml:"routes"`

	// File is the path the config was read from.
	File string `yaml:"-"`
	// Decoder holds the line of every key, for problems found after decoding.
	Decoder *Decoder `yaml:"-"`
}

// Server configures the HTTP listener.
type Server struct {
	// Listen is host:port; default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// MetricsListen, when set (host:port), serves GET /metrics there and nowhere else: the
	// metrics name every tenant, so they stay off the listener tenants reach.
	MetricsListen string `yaml:"metrics_listen"`
	// RequestTimeout is the whole budget of one send request; default 8s.
	RequestTimeout gateway.Duration `yaml:"request_timeout"`
	// PublicURL is the externally reachable base URL (for delivery-report callbacks); empty: none.
	PublicURL string `yaml:"public_url"`
	// AdminToken guards /v1/providers and /v1/admin; empty disables those endpoints.
	AdminToken gateway.Secret `yaml:"admin_token"`
	// PreviousAdminTokens are still accepted while the operators' tools move to AdminToken.
	PreviousAdminTokens []gateway.Secret `yaml:"previous_admin_tokens"`
	// MaxBodyBytes limits request bodies; default 65536.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxInFlight is how many sends one replica runs at once before it sheds the tenants holding
	// more than their fair share of them (503 overloaded); default 1024, 0: no cap.
	MaxInFlight *int `yaml:"max_in_flight"`
	// ShutdownTimeout bounds the drain of in-flight requests on stop; default 15s. It must be
	// longer than RequestTimeout, so that a send that was started is finished and recorded.
	ShutdownTimeout gateway.Duration `yaml:"shutdown_timeout"`
	// ReadTimeout bounds reading one whole request, headers and body; default 10s. A client that
	// stalls mid-body is cut off instead of holding a connection and delaying shutdown.
	ReadTimeout gateway.Duration `yaml:"read_timeout"`
	// NotifyProxy, when set (http://host:port, or https://; it may carry a user and password),
	// is the proxy that delivery report pushes go through, for a network whose egress passes a
	// proxy: the gateway resolves the notify host itself, checks the address, and asks the proxy
	// for that address. Empty: pushes connect directly (never through HTTP_PROXY).
	NotifyProxy gateway.Secret `yaml:"notify_proxy"`
	// WatchConfig, when set, is how often the replica looks at its config file and the files it
	// reads tenants (tenant_files) and secrets (${file:PATH}) from; when any changed, it reloads as
	// on SIGHUP. 0 (default):
	// reloads only on SIGHUP and POST /v1/admin/reload.
	WatchConfig gateway.Duration `yaml:"watch_config"`
	// TLS, when its files are set, serves Listen over HTTPS; empty: plain HTTP (TLS ends in
	// front of the replica).
	TLS ServerTLS `yaml:"tls"`
}

// ServerTLS is server.tls: the certificate Listen serves HTTPS with.
type ServerTLS struct {
	// CertFile is the PEM certificate chain, the replica's own certificate first; KeyFile is its
	// PEM private key. Each is absolute or relative to the config file's directory; both or
	// neither. The replica reads them again when they change: a renewed certificate needs no
	// restart.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// On reports whether Listen serves HTTPS.
func (t ServerTLS) On() bool { return t.CertFile != "" || t.KeyFile != "" }

// Certificate reads the pair of files; nil when neither is set. Its error is a *TLSError, and
// names the files and what is wrong with them, never what the key file holds.
func (t ServerTLS) Certificate() (*tls.Certificate, error) {
	return keyPair("server.tls.cert_file", t.CertFile, "server.tls.key_file", t.KeyFile)
}

// Read reads what the files hold (Certificate in two steps: Read, then Parse); errors as
// Certificate's.
func (t ServerTLS) Read() (certPEM, keyPEM []byte, err error) {
	return readPair("server.tls.cert_file", t.CertFile, "server.tls.key_file", t.KeyFile)
}

// Parse is the certificate in what Read read.
func (t ServerTLS) Parse(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	return parsePair("server.tls.cert_file", t.CertFile, t.KeyFile, certPEM, keyPEM)
}

// Log configures logging.
type Log struct {
	// Format is json (default) or text.
	Format string `yaml:"format"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// ErrorLinesPerSecond bounds the lines of requests answered with an error (4xx and 5xx),
	// rejected delivery reports and failed report pushes that one source writes: per tenant (or
	// provider) and error, at most this many a second; the next line written counts those left
	// out. Sent messages are always logged. 0: no bound. Default 10.
	ErrorLinesPerSecond *int `yaml:"error_lines_per_second"`
}

// Storage configures the message log.
type Storage struct {
	// Driver is sqlite (default), postgres (shared by replicas) or memory.
	Driver string `yaml:"driver"`
	// Path is the SQLite file; default data/smsgate.db.
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (postgres://user:password@host:5432/db); use ${VAR}.
	DSN gateway.Secret `yaml:"dsn"`
	// CommitTimeout bounds how long a send waits for its record's batch to commit before it is
	// answered anyway (the record then waits in the retry buffer); default 200ms.
	CommitTimeout gateway.Duration `yaml:"commit_timeout"`
	// WriteTimeout bounds one batch's transaction: past it the batch waits in the retry buffer, as
	// in an outage, instead of holding the writer on a database that stopped answering; default 10s.
	WriteTimeout gateway.Duration `yaml:"write_timeout"`
	// RetryBuffer bounds the writes held while the database fails; default 65536.
	RetryBuffer int `yaml:"retry_buffer"`
	// BacklogFull is what happens when the retry buffer is full: drop_oldest (default: keep
	// sending, drop the oldest waiting records, counted and logged) or refuse_sends (answer new
	// sends 503 store_unavailable until the database takes writes again).
	BacklogFull string `yaml:"backlog_full"`
	// Retention is how long records are kept; default 720h; 0 keeps them forever.
	Retention *gateway.Duration `yaml:"retention"`
	// MaxRecordsPerTenant, when above 0, bounds the records one tenant keeps in the log: every
	// 10 minutes a tenant holding more loses its oldest, never another tenant's; default 0 (no
	// bound but the retention).
	MaxRecordsPerTenant int `yaml:"max_records_per_tenant"`
	// StoreFullNumbers keeps unmasked recipients; default false.
	StoreFullNumbers bool `yaml:"store_full_numbers"`
	// SpoolDir, when set, is a local directory where the writes waiting for the database are kept
	// as well as in memory, so that a process killed outright (SIGKILL, out of memory) writes
	// them at its next start on the same directory; default none. One process a directory.
	SpoolDir string `yaml:"spool_dir"`
	// SpoolSync has the spool synced to the disk before each write it adds is answered, so that
	// it outlives the machine (a power cut, a kernel panic), not only the process; default false.
	SpoolSync bool `yaml:"spool_sync"`
	// SQLiteMmap makes the SQLite log's read connections map the file; default true. false reads
	// it through SQLite's page cache, where a disk's read error fails one read instead of ending
	// the process (and the replica's RSS no longer counts the file's pages it read).
	SQLiteMmap *bool `yaml:"sqlite_mmap"`
}

// State says where rate-limit buckets, idempotency replays and resend memory live.
type State struct {
	// Driver is memory (default: per replica) or redis (shared by every replica).
	Driver string `yaml:"driver"`
	// Redis configures the redis driver.
	Redis RedisState `yaml:"redis"`
	// OnError is what a send does when the state store fails: open (default: send without the
	// check, log and count it) or closed (answer 503 policy_unavailable).
	OnError string `yaml:"on_error"`
	// KeySecret keys the HMAC of every state key derived from a code (resend memory, duplicate
	// detection, request fingerprints), so that what is stored cannot be searched for the code.
	// Required with the redis driver (every replica must derive the same keys); with memory a
	// random per-process secret is used when it is empty.
	KeySecret gateway.Secret `yaml:"key_secret"`
	// MaxIdempotencyRecords bounds the idempotency records a replica keeps in memory (driver
	// memory; in Redis, maxmemory does); default 100000. Past it, the tenant holding the most
	// loses its oldest record.
	MaxIdempotencyRecords int `yaml:"max_idempotency_records"`
	// MaxKeys bounds, each on its own, the rate-limit buckets and the resend memory entries a
	// replica keeps in memory (driver memory); default 250000. Past it, the tenant holding the
	// most loses one.
	MaxKeys int `yaml:"max_keys"`
}

// RedisState configures the Redis connection.
type RedisState struct {
	// Addr is host:port; default 127.0.0.1:6379.
	Addr     string         `yaml:"addr"`
	Username string         `yaml:"username"`
	Password gateway.Secret `yaml:"password"`
	DB       int            `yaml:"db"`
	// KeyPrefix starts every key; default "smsgate:".
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds each Redis call; default 200ms.
	Timeout gateway.Duration `yaml:"timeout"`
	// TLS connects over TLS, the server's certificate checked against the system's roots or
	// TLSCAFile's; default false (managed Redis services with encryption in transit need it).
	TLS bool `yaml:"tls"`
	// TLSCAFile is a PEM file of the certificates of the CA that signed the server's
	// certificate, for a private CA; needs TLS.
	TLSCAFile string `yaml:"tls_ca_file"`
	// TLSServerName is the name the server's certificate must carry when it is not the
	// address's host (Sentinel gives the primary by its IP address); needs TLS.
	TLSServerName string `yaml:"tls_server_name"`
	// TLSCertFile and TLSKeyFile are the PEM files of the client certificate the gateway shows a
	// Redis that asks for one (tls-auth-clients yes, redis.conf's default with TLS); both or
	// neither; need TLS.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// Sentinel, when its Addrs are set, finds the primary through Redis Sentinel and follows
	// it through a failover; Addr is then unused.
	Sentinel RedisSentinel `yaml:"sentinel"`
	// Cluster, when its Addrs are set, reaches a Redis Cluster through these nodes (any of them:
	// the client learns the others and which keys each holds); Addr is then unused.
	Cluster RedisCluster `yaml:"cluster"`
	// MaxIdempotencyRecordsPerTenant bounds the idempotency records each tenant keeps in Redis;
	// default 1000000. Past it, the tenant's own oldest go.
	MaxIdempotencyRecordsPerTenant int `yaml:"max_idempotency_records_per_tenant"`
}

// RedisCluster names some nodes of a Redis Cluster.
type RedisCluster struct {
	// Addrs are nodes' host:port (a managed service's configuration endpoint is one).
	Addrs []string `yaml:"addrs"`
}

// RedisSentinel names the Sentinels that watch the primary and the name they know it by.
type RedisSentinel struct {
	// MasterName is the name the Sentinels monitor the primary under.
	MasterName string `yaml:"master_name"`
	// Addrs are the Sentinels' host:port.
	Addrs []string `yaml:"addrs"`
	// Username and Password are the Sentinels' own (requirepass of sentinel.conf), when they
	// ask for them; the primary's are RedisState's.
	Username string         `yaml:"username"`
	Password gateway.Secret `yaml:"password"`
}

// maxTLSFile bounds each TLS file (a bundle of every public root is about
// 200 KB).
const maxTLSFile = 1 << 20

// TLSError is a problem with one of the TLS keys (server.tls's, state.redis's): Key is its path
// (state.redis.tls_ca_file, ...).
type TLSError struct{ Key, Msg string }

func (e *TLSError) Error() string { return e.Key + ": " + e.Msg }

// readTLSFile reads the file that key names: a regular file of at most maxTLSFile only, as a path
// such as /dev/zero or a pipe would hold the start (and smsgate validate) forever. Errors name the
// key and the file, never its content.
func readTLSFile(key, path string) ([]byte, error) {
	if st, err := os.Stat(path); err != nil {
		return nil, &TLSError{key, err.Error()}
	} else if !st.Mode().IsRegular() || st.Size() > maxTLSFile {
		return nil, &TLSError{key, path + " is not a regular file of at most 1 MiB"}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &TLSError{key, err.Error()}
	}
	return b, nil
}

// bothOrNeither is a *TLSError when only one of a certificate's and its key's files is set.
func bothOrNeither(certKey, certPath, keyKey, keyPath string) error {
	switch {
	case certPath == "" && keyPath != "":
		return &TLSError{certKey, "is required with " + keyKey}
	case keyPath == "" && certPath != "":
		return &TLSError{keyKey, "is required with " + certKey}
	}
	return nil
}

// keyPair reads a certificate chain (its own certificate first) and its private key from the PEM
// files at the keys certKey and keyKey: both or neither (nil, nil). Its error is a *TLSError.
func keyPair(certKey, certPath, keyKey, keyPath string) (*tls.Certificate, error) {
	if err := bothOrNeither(certKey, certPath, keyKey, keyPath); err != nil || certPath == "" {
		return nil, err
	}
	certPEM, keyPEM, err := readPair(certKey, certPath, keyKey, keyPath)
	if err != nil {
		return nil, err
	}
	return parsePair(certKey, certPath, keyPath, certPEM, keyPEM)
}

// readPair reads the PEM files of a certificate and its key (readTLSFile).
func readPair(certKey, certPath, keyKey, keyPath string) (certPEM, keyPEM []byte, err error) {
	if certPEM, err = readTLSFile(certKey, certPath); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = readTLSFile(keyKey, keyPath); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// parsePair is the certificate (and key) in certPEM and keyPEM, read from the files at certPath
// (the key certKey) and keyPath. Its error is a *TLSError.
func parsePair(certKey, certPath, keyPath string, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Its text says what is wrong with the PEM data, never what the data holds.
		return nil, &TLSError{certKey, certPath + " and " + keyPath + " are not a certificate and its key: " + err.Error()}
	}
	if cert.Leaf == nil { // X509KeyPair leaves it out under GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, &TLSError{certKey, certPath + ": " + err.Error()}
		}
	}
	return &cert, nil
}

// TLSConfig is the TLS configuration of the connections to Redis: nil without TLS. It reads the
// TLS files; its error is a *TLSError.
func (r RedisState) TLSConfig() (*tls.Config, error) {
	if !r.TLS {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLSServerName}
	if r.TLSCAFile != "" {
		pem, err := readTLSFile("state.redis.tls_ca_file", r.TLSCAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, &TLSError{"state.redis.tls_ca_file", r.TLSCAFile + " holds no PEM certificate"}
		}
	}
	cert, err := keyPair("state.redis.tls_cert_file", r.TLSCertFile, "state.redis.tls_key_file", r.TLSKeyFile)
	if err != nil {
		return nil, err
	}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c, nil
}

// Policy holds the global abuse-protection defaults; tenants may override them.
type Policy struct {
	// AllowedCountries, when set, is the only destinations any tenant may reach.
	AllowedCountries []string `yaml:"allowed_countries"`
	// DeniedCountries are never reached, whatever a tenant says.
	DeniedCountries []string `yaml:"denied_countries"`
	// DeniedNumberTypes are number types (gateway.SpecialNumberTypes) never sent to, whatever a
	// tenant says; nil (absent): DefaultDeniedNumberTypes, an empty list: none.
	DeniedNumberTypes *[]string `yaml:"denied_number_types"`
	// AllowedLinkHosts are the hosts (and the names under them) that any tenant's text may link
	// to (gateway.LinkHosts); "*" lets every link through. Empty: a text with a link is refused
	// unless the tenant's own list allows its host.
	AllowedLinkHosts []string `yaml:"allowed_link_hosts"`
	// BareDomainLinks counts every domain name in a text as a link, with or without a scheme or a
	// path ("acme.com", "bob@evil.example"; gateway.BareNames): each must be a host the tenant may
	// link to. Off: only URLs, "www." names and names with a path are links.
	BareDomainLinks bool `yaml:"bare_domain_links"`
	// RateLimits are the defaults; with no policy block only per_recipient 10/1h applies.
	RateLimits RateLimits `yaml:"rate_limits"`
	// Idempotency configures Idempotency-Key replay.
	Idempotency Idempotency `yaml:"idempotency"`
	// ResendEscalation configures starting a resend at the next provider.
	ResendEscalation ResendEscalation `yaml:"resend_escalation"`
	// Pumping configures SMS-pumping detection; tenants may override enabled and action.
	Pumping Pumping `yaml:"pumping"`
}

// Pumping configures SMS-pumping detection: per tenant and number range (the country calling
// code and the first RangeDigits national digits), the last hour's sends are compared with the
// range's hourly baseline over Baseline, and the range's conversion (codes reported used through
// POST /v1/messages/{id}/verified) with the tenant's other ranges. A range that fires is
// quarantined for Cooldown with Action.
type Pumping struct {
	// Enabled switches detection on; default true (with action alert it changes no traffic).
	Enabled *bool `yaml:"enabled"`
	// Action is alert (default: metric, log line, admin API), throttle (Throttle for the range)
	// or block (403 suspected_pumping).
	Action string `yaml:"action"`
	// RangeDigits is how many national digits name a range; default 2.
	RangeDigits int `yaml:"range_digits"`
	// Baseline is the window of hourly counts a range's normal rate is averaged over; default 168h.
	Baseline gateway.Duration `yaml:"baseline"`
	// Warmup is how long a tenant must have sent before the rate signal applies; default 24h.
	Warmup gateway.Duration `yaml:"warmup"`
	// Factor: the last hour's sends above Factor x the baseline fire; default 5.
	Factor float64 `yaml:"factor"`
	// MinVolume is the fewest sends in the last hour (rate signal) or in the conversion window
	// (conversion signal) that can fire; default 20.
	MinVolume int `yaml:"min_volume"`
	// ConversionFloor: a range converting below it while the tenant's other ranges convert at or
	// above it fires; default 0.3.
	ConversionFloor float64 `yaml:"conversion_floor"`
	// ConversionWindow is how far back conversion is counted; default 1h.
	ConversionWindow gateway.Duration `yaml:"conversion_window"`
	// ConversionDelay leaves out the newest sends, whose codes may not be entered yet; default 5m.
	ConversionDelay gateway.Duration `yaml:"conversion_delay"`
	// Throttle is the limit of a range quarantined with action throttle; default 5/1h.
	Throttle *Limit `yaml:"throttle"`
	// Cooldown is how long a quarantine lasts (and how long a released range is not quarantined
	// again); default 1h.
	Cooldown gateway.Duration `yaml:"cooldown"`
	// Refresh is how long each replica reuses a range's counters for the baseline and conversion;
	// default 10s (the last hour's count is always current).
	Refresh gateway.Duration `yaml:"refresh"`
}

// TenantPumping overrides the global pumping settings for one tenant.
type TenantPumping struct {
	Enabled *bool  `yaml:"enabled"`
	Action  string `yaml:"action"`
}

// RateLimits are limits of the form N/duration; nil inherits, 0 means unlimited.
type RateLimits struct {
	PerRecipient *Limit           `yaml:"per_recipient"`
	PerIP        *Limit           `yaml:"per_ip"`
	PerTenant    *Limit           `yaml:"per_tenant"`
	PerCountry   map[string]Limit `yaml:"per_country"`
	// Spend caps what one tenant's messages may cost (see Spend).
	Spend *Spend `yaml:"spend"`
	// API bounds a tenant's calls other than sends: reading its messages and reporting codes used.
	API *Limit `yaml:"api"`
}

// Spend is a money limit: Amount, in routing.least_cost.currency, per Per ("25/24h"), as a
// bucket of Amount refilled at Amount per Per. A message's price is known once it was sent, so
// a send is allowed while the bucket is not empty and its price is then taken, even into debt.
type Spend struct {
	Amount float64
	Per    time.Duration
}

// UnmarshalText parses "25/24h", "2.5/1h" or "0".
func (s *Spend) UnmarshalText(b []byte) error {
	a, per, err := parseRate(b, `want AMOUNT/duration in routing.least_cost.currency, for example "25/24h", or 0`)
	if err != nil || a == "" {
		*s = Spend{}
		return err
	}
	v, err := strconv.ParseFloat(a, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return errors.New("the amount must be a number >= 0")
	}
	*s = Spend{Amount: v, Per: per}
	return nil
}

// Active reports whether s limits anything (nil and "0" do not).
func (s *Spend) Active() bool { return s != nil && s.Amount > 0 }

// String prints the limit as it is written.
func (s Spend) String() string {
	if s.Amount == 0 {
		return "0"
	}
	return strconv.FormatFloat(s.Amount, 'f', -1, 64) + "/" + s.Per.String()
}

// Idempotency configures replay of Idempotency-Key requests.
type Idempotency struct {
	// TTL is how long a key's first result is replayed; default 24h.
	TTL gateway.Duration `yaml:"ttl"`
}

// ResendEscalation configures the resend rule: the same recipient asking for the same code
// again between After and Within after the last send starts at the next provider.
type ResendEscalation struct {
	// Enabled switches the rule on; default true.
	Enabled *bool `yaml:"enabled"`
	// After is the shortest gap that counts as "did not arrive"; default 20s.
	After gateway.Duration `yaml:"after"`
	// Within is the longest gap that still counts as the same attempt; default 10m.
	Within gateway.Duration `yaml:"within"`
}

// Limit is N events per Per; N == 0 means unlimited.
type Limit struct {
	N   int
	Per time.Duration
}

// parseRate splits "X/period" into X and the period; "0" (no limit) gives "" and 0. want is
// the form the error asks for.
func parseRate(b []byte, want string) (string, time.Duration, error) {
	s := strings.TrimSpace(string(b))
	if s == "0" {
		return "", 0, nil
	}
	x, per, ok := strings.Cut(s, "/")
	if !ok {
		return "", 0, errors.New(want)
	}
	if per != "" && unicode.IsLetter(rune(per[0])) {
		per = "1" + per // "10/h" reads as 10/1h; "10/.5h" is 10 in half an hour, not in 1.5 h
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return "", 0, errors.New("the period must be a positive duration such as 1s, 10m or 1h")
	}
	return x, d, nil
}

// UnmarshalText parses "10/1h", "20/1m", "50/1s" or "0".
func (l *Limit) UnmarshalText(b []byte) error {
	n, per, err := parseRate(b, `want N/duration, for example "10/1h", or 0`)
	if err != nil || n == "" {
		*l = Limit{}
		return err
	}
	c, err := strconv.Atoi(n)
	if err != nil || c < 0 {
		return errors.New("the count must be a whole number >= 0")
	}
	*l = Limit{N: c, Per: per}
	return nil
}

// Active says whether l limits anything (set, and not 0).
func (l *Limit) Active() bool { return l != nil && l.N > 0 }

// String prints the limit as it is written.
func (l Limit) String() string {
	if l.N == 0 {
		return "0"
	}
	return fmt.Sprintf("%d/%s", l.N, l.Per)
}

// Tenant is one caller with its own API key.
type Tenant struct {
	Name   string         `yaml:"name"`
	APIKey gateway.Secret `yaml:"api_key"`
	// PreviousAPIKeys are still accepted for this tenant while its callers move to APIKey: a key
	// is rotated without a moment in which logins fail.
	PreviousAPIKeys []gateway.Secret `yaml:"previous_api_keys"`
	// ClientIDs, when set, are the only Auth0 client ids this key may send for.
	ClientIDs        []string `yaml:"client_ids"`
	AllowedCountries []string `yaml:"allowed_countries"`
	DeniedCountries  []string `yaml:"denied_countries"`
	// DeniedNumberTypes are added to policy.denied_number_types for this tenant.
	DeniedNumberTypes []string `yaml:"denied_number_types"`
	// AllowedLinkHosts are added to policy.allowed_link_hosts for this tenant ("*": any link).
	AllowedLinkHosts []string `yaml:"allowed_link_hosts"`
	// BareDomainLinks, when set, overrides policy.bare_domain_links for this tenant: true counts
	// every domain name in its texts as a link, false only links with a scheme, www. or a path.
	BareDomainLinks *bool       `yaml:"bare_domain_links"`
	RateLimits      *RateLimits `yaml:"rate_limits"`
	// AcceptUnrecognizedNumbers lets numbers libphonenumber does not know as valid through.
	AcceptUnrecognizedNumbers bool `yaml:"accept_unrecognized_numbers"`
	// AllowSender honours the sender a request names (from, sender); default false: the route's
	// provider uses its configured sender.
	AllowSender bool `yaml:"allow_sender"`
	// AllowedSenders, when set, are the only senders a request may name (compared as
	// gateway.SenderKey); another is refused (sender_not_allowed). Setting them honours the
	// sender a request names, as AllowSender does, but only these: with AllowSender alone a
	// tenant may send as any sender, another tenant's brand included.
	AllowedSenders []string `yaml:"allowed_senders"`
	// NotifyHosts are the hosts (host or host:port) that delivery reports of the
	// Infobip-compatible API may be pushed to (notifyUrl, webhooks.delivery.url); empty: none.
	NotifyHosts []string `yaml:"notify_hosts"`
	// NotifyPrivateAddresses lets pushes to NotifyHosts reach loopback, private and link-local
	// addresses (a tenant inside the operator's own network); default false: a push is made only
	// to a public address, whatever the host's DNS says (gateway.PublicAddr).
	NotifyPrivateAddresses bool `yaml:"notify_private_addresses"`
	// Pumping overrides policy.pumping's enabled and action for this tenant.
	Pumping *TenantPumping `yaml:"pumping"`
	// MaxRecords overrides storage.max_records_per_tenant for this tenant; 0: that bound.
	MaxRecords int `yaml:"max_records"`
}

// TenantFileSet is one entry of tenant_files: a glob pattern alone, files the operator keeps (their
// tenants may set any key), or a mapping with the pattern as its path and bounds that make the
// files it matches a team's own (delegated): the team may add and change its tenants, not
// loosen what guards the accounts every tenant shares, take another team's names or client ids,
// multiply its limits by adding tenants, or read the operator's secrets.
type TenantFileSet struct {
	// Path is the glob pattern, relative to the config file's directory.
	Path string `yaml:"path" smsgate:"scalar"`
	// Delegated is set when the entry is a mapping: the bounds below hold, with their defaults.
	Delegated bool `yaml:"-" smsgate:"mapped"`
	// Names is the glob pattern every tenant name in the files must match; default "*".
	Names string `yaml:"names"`
	// MaxTenants bounds how many tenants the files hold together; default 10. Each tenant has
	// limits of its own, so a team adding tenants would add to what it may send.
	MaxTenants *int `yaml:"max_tenants"`
	// Keys are the tenant keys the files may set besides name and api_key; default
	// DelegatedKeys, those that only narrow what a tenant may do.
	Keys []string `yaml:"keys"`
	// MaxBytes bounds what the files hold together; default 256 KiB. Every replica parses them,
	// in up to some 60 times their size of memory: 14 MB of client ids took 800 MB.
	MaxBytes *int `yaml:"max_bytes"`
	// SecretFiles is the glob pattern (relative to the config file's directory) of the files a
	// ${file:PATH} in the files may read; default none. ${NAME} (the environment, the operator's
	// secrets) is refused in them.
	SecretFiles string `yaml:"secret_files"`
}

// DelegatedKeys are the tenant keys a delegated tenant file may set when its entry lists no
// keys: besides name and api_key, those that only narrow what the tenant may do (an
// allowed_countries naming 001 would open numbers of no country, and is refused there).
var DelegatedKeys = []string{"previous_api_keys", "client_ids", "allowed_countries", "denied_countries", "denied_number_types"}

// defaultMaxTenants and defaultMaxBytes are a delegated entry's max_tenants and max_bytes when
// it sets none.
const (
	defaultMaxTenants = 10
	defaultMaxBytes   = 256 << 10
	minMaxBytes       = 1 << 10
)

// Provider is one configured provider; Options holds the driver-specific keys.
type Provider struct {
	Name    string           `yaml:"name"`
	Type    string           `yaml:"type"`
	Timeout gateway.Duration `yaml:"timeout"`
	Breaker Breaker          `yaml:"breaker"`
	// Disabled starts the provider drained (skipped as unavailable).
	Disabled bool `yaml:"disabled"`
	// Prices are what the provider charges per SMS part, for least-cost routing and spend limits.
	Prices *Prices `yaml:"prices"`
	// VoicePrices are what it charges per minute of a voice call (a code spoken twice is one):
	// voice messages are ranked and counted against spend limits by these.
	VoicePrices *Prices `yaml:"voice_prices"`
	// Throughput is the provider account's rate (its documented API or sending limit), shared by
	// every tenant: beyond it, sends skip the provider for the next in their chain instead of
	// drawing its throttling. Nil or 0: unbounded.
	Throughput *Limit `yaml:"throughput"`
	// VoiceThroughput, when set, paces the provider's voice calls on their own (a calls-per-second
	// limit is often apart from the messages'); without it, calls count in Throughput.
	VoiceThroughput *Limit `yaml:"voice_throughput"`
	// TenantShare is one tenant's part of Throughput (and VoiceThroughput), in (0, 1]: beyond it, a tenant's sends take
	// only what lies above the other tenants' part. Default 0.5 when more than one tenant is
	// configured (no tenant can take what the others need), else 1.
	TenantShare *float64 `yaml:"tenant_share"`
	// Options are the remaining keys, decoded by the driver's config type.
	Options map[string]*yaml.Node `yaml:"-" smsgate:"rest"`
	// Settings is the driver's decoded, defaulted and validated config (set by Drivers.Decode).
	Settings any `yaml:"-"`
}

// Paced reports whether the provider has a throughput (for its messages or its calls).
func (p *Provider) Paced() bool {
	return p.Throughput.Active() || p.VoiceThroughput.Active()
}

// Prices are what a provider charges for one message, in Currency: the value of the destination
// country in Countries, else Default. Prices that the provider's delivery reports carry replace
// them once there are routing.least_cost.min_reports of them for a country.
type Prices struct {
	// Currency is an ISO 4217 code; default routing.least_cost.currency.
	Currency string `yaml:"currency"`
	// Default applies to countries without their own value; unset: such countries have no price.
	Default *float64 `yaml:"default"`
	// Countries are per-country prices (ISO 3166-1 alpha-2 keys, or 001).
	Countries map[string]float64 `yaml:"countries"`
}

// Any reports whether p sets a price (nil and an empty block do not).
func (p *Prices) Any() bool { return p != nil && (p.Default != nil || len(p.Countries) > 0) }

// Drivers decodes the driver-specific keys of a provider: the composition point implements it
// with the registry of driver types. Decode records problems on c (see Config.Problem) under
// providers[i] and returns the driver's config, or nil when the type is unknown.
type Drivers interface {
	Decode(c *Config, i int) any
}

// Breaker configures a provider's circuit breaker. It opens after ConsecutiveFailures failures in
// a row, or when at least MinRequests calls in Interval failed at FailureRatio or more.
type Breaker struct {
	ConsecutiveFailures uint32           `yaml:"consecutive_failures"`
	FailureRatio        float64          `yaml:"failure_ratio"`
	MinRequests         uint32           `yaml:"min_requests"`
	OpenTimeout         gateway.Duration `yaml:"open_timeout"`
	Interval            gateway.Duration `yaml:"interval"`
	HalfOpenRequests    uint32           `yaml:"half_open_requests"`
}

// Routing holds what applies to every route.
type Routing struct {
	// DeliveryHealth reorders chains around providers that stopped delivering to a country.
	DeliveryHealth DeliveryHealth `yaml:"delivery_health"`
	// LeastCost configures the prices that routes with strategy least_cost compare.
	LeastCost LeastCost `yaml:"least_cost"`
}

// LeastCost configures least-cost routing: a route with strategy least_cost orders its providers
// by price for the message's country, among those whose delivery rate there is at or above
// Floor; the others keep their configured order behind them.
type LeastCost struct {
	// Currency is the one currency prices are compared and reported in; default EUR.
	Currency string `yaml:"currency"`
	// Rates converts other currencies: how much of Currency one unit is worth (USD: 0.92). A
	// price in a currency neither Currency nor listed here is ignored. No network look-ups.
	Rates map[string]float64 `yaml:"rates"`
	// Window is how far back reported prices are averaged (a moving average); default 24h.
	Window gateway.Duration `yaml:"window"`
	// MinReports is how many reported prices for a (provider, country) replace its configured
	// price; default 5.
	MinReports int `yaml:"min_reports"`
	// Floor is the delivery rate under which a provider is not ranked by price for a country;
	// default routing.delivery_health.min_rate. It is never below min_rate: a demoted provider
	// is always below the floor.
	Floor float64 `yaml:"floor"`
	// Refresh is how often reported prices are re-read from the message log; default 1m.
	Refresh gateway.Duration `yaml:"refresh"`
}

// DeliveryHealth configures delivery-rate-aware routing: a provider whose delivery rate to a
// country over Window falls below MinRate (with at least MinSamples messages) moves behind the
// healthy providers of a chain for that country; ProbeShare of that country's traffic still tries
// it first, and it is restored once its rate is back at MinRate + Margin.
type DeliveryHealth struct {
	// Enabled switches it on; default true.
	Enabled *bool `yaml:"enabled"`
	// Window is the sliding window of messages counted; default 30m.
	Window gateway.Duration `yaml:"window"`
	// MinSamples is the fewest messages a rate needs to count; default 20.
	MinSamples int `yaml:"min_samples"`
	// MinRate is the delivery rate under which a provider is demoted; default 0.7.
	MinRate float64 `yaml:"min_rate"`
	// Margin is how far above MinRate a demoted provider must climb to be restored; default 0.1.
	Margin float64 `yaml:"margin"`
	// ReportTimeout is when a message still without a final report counts as not delivered (for
	// providers that send reports); default 10m.
	ReportTimeout gateway.Duration `yaml:"report_timeout"`
	// ProbeShare is the share of a country's traffic that still tries a demoted provider first;
	// default 0.05.
	ProbeShare *float64 `yaml:"probe_share"`
	// Refresh is how often the rates are recomputed from the message log; default 10s.
	Refresh gateway.Duration `yaml:"refresh"`
}

// Route is one routing rule; a nil Match matches everything.
type Route struct {
	Name      string   `yaml:"name"`
	Match     *Match   `yaml:"match"`
	Providers []string `yaml:"providers"`
	// FailoverOnTimeout tries the next provider after a timeout that may have sent; default true.
	FailoverOnTimeout *bool `yaml:"failover_on_timeout"`
	// DeliveryHealth, when set, switches delivery-rate-aware reordering on or off for this route.
	DeliveryHealth *bool `yaml:"delivery_health"`
	// Strategy is ordered (default: the providers in the order listed) or least_cost (cheapest
	// first among the providers at or above routing.least_cost.floor for the country).
	Strategy string `yaml:"strategy"`
}

// Match lists the values a request must have; an empty list matches anything (smsgate validate
// warns of it), and a match block whose lists are all empty is refused (the catch-all, last, has
// no match block).
type Match struct {
	Tenants      []string `yaml:"tenants"`
	ClientIDs    []string `yaml:"client_ids"`
	Countries    []string `yaml:"countries"`
	MessageTypes []string `yaml:"message_types"`
	Actions      []string `yaml:"actions"`
	Languages    []string `yaml:"languages"`
}

// MatchList is one of a match block's lists and its key.
type MatchList struct {
	Key    string
	Values []string
}

// Lists returns the match block's lists in the order of its keys.
func (m *Match) Lists() []MatchList {
	return []MatchList{{"tenants", m.Tenants}, {"client_ids", m.ClientIDs}, {"countries", m.Countries},
		{"message_types", m.MessageTypes}, {"actions", m.Actions}, {"languages", m.Languages}}
}

// matchesAll reports whether every list is empty: the block then narrows nothing.
func (m *Match) matchesAll() bool {
	for _, l := range m.Lists() {
		if len(l.Values) > 0 {
			return false
		}
	}
	return true
}

// Load reads, decodes, defaults and validates file, driver options included (with drivers; nil
// checks only the generic keys). On failure the error is a Problems.
func Load(file string, drivers Drivers) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, Problems{{File: file, Msg: err.Error()}}
	}
	return ParseWith(file, b, nil, drivers)
}

// LoadUnread is Load reading no reference (Decoder.Unread): each ${NAME} and ${file:PATH} gives
// a placeholder, and problems at the keys holding one are dropped. The config is for checking
// only, never for serving.
func LoadUnread(file string, drivers Drivers) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, Problems{{File: file, Msg: err.Error()}}
	}
	return parse(&Decoder{File: file, Unread: true}, b, drivers)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem is the YAML parser's err about file, at the line it names.
func syntaxProblem(file string, err error) Problem {
	p := Problem{File: file, Msg: err.Error()}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = m[2]
	}
	return p
}

// Parse is Load on bytes without driver options; getenv nil means the process environment.
func Parse(file string, b []byte, getenv func(string) (string, bool)) (*Config, error) {
	return ParseWith(file, b, getenv, nil)
}

// ParseWith is Load on bytes.
func ParseWith(file string, b []byte, getenv func(string) (string, bool), drivers Drivers) (*Config, error) {
	return parse(&Decoder{File: file, Getenv: getenv}, b, drivers)
}

// parse decodes b, the config file d names, with d.
func parse(d *Decoder, b []byte, drivers Drivers) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, Problems{syntaxProblem(d.File, err)}
	}
	c := &Config{File: d.File, Decoder: d}
	if len(root.Content) == 0 {
		d.Add(1, "", "the file is empty")
		return nil, d.Problems
	}
	d.Decode(&root, "", c)
	c.readTenantFiles()
	c.applyDefaults()
	c.validate()
	if drivers != nil {
		for i := range c.Providers {
			if c.Providers[i].Type != "" {
				c.Providers[i].Settings = drivers.Decode(c, i)
			}
		}
	}
	if d.Unread {
		d.DropUnjudged()
	}
	if len(d.Problems) > 0 {
		d.RedactProblems()
		d.Problems.Sort()
		return c, d.Problems
	}
	return c, nil
}

// Problem records a problem found after decoding, located at path's line.
// A path that already has a problem gets no second one (an unset ${VAR} is not also "required").
func (c *Config) Problem(path, format string, args ...any) {
	if c.Decoder.HasProblem(path) {
		return
	}
	c.Decoder.Add(c.Decoder.Line(path), path, format, args...)
}

func (c *Config) applyDefaults() {
	s := &c.Server
	orDefault(&s.Listen, "127.0.0.1:8080")
	orDefaultAt(c, "server.request_timeout", &s.RequestTimeout, gateway.Duration(8*time.Second))
	orDefaultAt(c, "server.max_body_bytes", &s.MaxBodyBytes, 64<<10)
	orDefault(&s.MaxInFlight, ptr(1024))
	orDefaultAt(c, "server.shutdown_timeout", &s.ShutdownTimeout, gateway.Duration(15*time.Second))
	orDefaultAt(c, "server.read_timeout", &s.ReadTimeout, gateway.Duration(10*time.Second))
	s.PublicURL = strings.TrimRight(s.PublicURL, "/")
	for _, f := range []*string{&s.TLS.CertFile, &s.TLS.KeyFile} {
		if *f != "" {
			*f = besideFile(c.File, *f)
		}
	}
	orDefault(&c.Log.Format, "json")
	orDefault(&c.Log.Level, "info")
	orDefault(&c.Log.ErrorLinesPerSecond, ptr(10))
	orDefault(&c.Storage.Driver, "sqlite")
	orDefault(&c.Storage.Path, "data/smsgate.db")
	orDefault(&c.Storage.SQLiteMmap, ptr(true))
	orDefaultAt(c, "storage.commit_timeout", &c.Storage.CommitTimeout, gateway.Duration(200*time.Millisecond))
	orDefaultAt(c, "storage.write_timeout", &c.Storage.WriteTimeout, gateway.Duration(10*time.Second))
	orDefaultAt(c, "storage.retry_buffer", &c.Storage.RetryBuffer, 65536)
	orDefaultAt(c, "state.max_idempotency_records", &c.State.MaxIdempotencyRecords, 100000)
	orDefaultAt(c, "state.max_keys", &c.State.MaxKeys, 250000)
	orDefaultAt(c, "state.redis.max_idempotency_records_per_tenant", &c.State.Redis.MaxIdempotencyRecordsPerTenant, 1000000)
	orDefault(&c.Storage.BacklogFull, "drop_oldest")
	orDefault(&c.Storage.Retention, ptr(gateway.Duration(720*time.Hour)))
	st := &c.State
	orDefault(&st.Driver, "memory")
	orDefault(&st.OnError, "open")
	orDefault(&st.Redis.Addr, "127.0.0.1:6379")
	orDefault(&st.Redis.KeyPrefix, "smsgate:")
	orDefaultAt(c, "state.redis.timeout", &st.Redis.Timeout, gateway.Duration(200*time.Millisecond))
	p := &c.Policy
	orDefault(&p.DeniedNumberTypes, ptr(slices.Clone(DefaultDeniedNumberTypes)))
	orDefault(&p.RateLimits.PerRecipient, &Limit{N: 10, Per: time.Hour})
	orDefault(&p.RateLimits.PerIP, &Limit{})
	orDefault(&p.RateLimits.PerTenant, &Limit{})
	orDefault(&p.RateLimits.Spend, &Spend{})
	orDefault(&p.RateLimits.API, &Limit{N: 100, Per: time.Second})
	orDefaultAt(c, "policy.idempotency.ttl", &p.Idempotency.TTL, gateway.Duration(24*time.Hour))
	r := &p.ResendEscalation
	orDefault(&r.Enabled, ptr(true))
	orDefaultAt(c, "policy.resend_escalation.after", &r.After, gateway.Duration(20*time.Second))
	orDefaultAt(c, "policy.resend_escalation.within", &r.Within, gateway.Duration(10*time.Minute))
	pp := &p.Pumping
	orDefault(&pp.Enabled, ptr(true))
	orDefault(&pp.Action, "alert")
	orDefaultAt(c, "policy.pumping.range_digits", &pp.RangeDigits, 2)
	orDefaultAt(c, "policy.pumping.baseline", &pp.Baseline, gateway.Duration(168*time.Hour))
	orDefaultAt(c, "policy.pumping.warmup", &pp.Warmup, gateway.Duration(24*time.Hour))
	orDefaultAt(c, "policy.pumping.factor", &pp.Factor, 5)
	orDefaultAt(c, "policy.pumping.min_volume", &pp.MinVolume, 20)
	orDefaultAt(c, "policy.pumping.conversion_floor", &pp.ConversionFloor, 0.3)
	orDefaultAt(c, "policy.pumping.conversion_window", &pp.ConversionWindow, gateway.Duration(time.Hour))
	orDefaultAt(c, "policy.pumping.conversion_delay", &pp.ConversionDelay, gateway.Duration(5*time.Minute))
	orDefault(&pp.Throttle, &Limit{N: 5, Per: time.Hour})
	orDefaultAt(c, "policy.pumping.cooldown", &pp.Cooldown, gateway.Duration(time.Hour))
	orDefaultAt(c, "policy.pumping.refresh", &pp.Refresh, gateway.Duration(10*time.Second))
	for i := range c.Providers {
		pr := &c.Providers[i]
		at := fmt.Sprintf("providers[%d]", i)
		orDefaultAt(c, at+".timeout", &pr.Timeout, gateway.Duration(3*time.Second))
		b := &pr.Breaker
		orDefaultAt(c, at+".breaker.consecutive_failures", &b.ConsecutiveFailures, 5)
		orDefaultAt(c, at+".breaker.failure_ratio", &b.FailureRatio, 0.5)
		orDefaultAt(c, at+".breaker.min_requests", &b.MinRequests, 20)
		orDefaultAt(c, at+".breaker.open_timeout", &b.OpenTimeout, gateway.Duration(30*time.Second))
		orDefaultAt(c, at+".breaker.interval", &b.Interval, gateway.Duration(60*time.Second))
		orDefaultAt(c, at+".breaker.half_open_requests", &b.HalfOpenRequests, 1)
		if pr.Paced() {
			share := 1.0
			if len(c.Tenants) > 1 {
				share = 0.5
			}
			orDefault(&pr.TenantShare, &share)
		}
	}
	dh := &c.Routing.DeliveryHealth
	orDefault(&dh.Enabled, ptr(true))
	orDefaultAt(c, "routing.delivery_health.window", &dh.Window, gateway.Duration(30*time.Minute))
	orDefaultAt(c, "routing.delivery_health.min_samples", &dh.MinSamples, 20)
	orDefaultAt(c, "routing.delivery_health.min_rate", &dh.MinRate, 0.7)
	orDefaultAt(c, "routing.delivery_health.margin", &dh.Margin, 0.1)
	orDefaultAt(c, "routing.delivery_health.report_timeout", &dh.ReportTimeout, gateway.Duration(10*time.Minute))
	orDefault(&dh.ProbeShare, ptr(0.05))
	orDefaultAt(c, "routing.delivery_health.refresh", &dh.Refresh, gateway.Duration(10*time.Second))
	lc := &c.Routing.LeastCost
	orDefault(&lc.Currency, "EUR")
	orDefaultAt(c, "routing.least_cost.window", &lc.Window, gateway.Duration(24*time.Hour))
	orDefaultAt(c, "routing.least_cost.min_reports", &lc.MinReports, 5)
	orDefaultAt(c, "routing.least_cost.floor", &lc.Floor, dh.MinRate)
	orDefaultAt(c, "routing.least_cost.refresh", &lc.Refresh, gateway.Duration(time.Minute))
	for i := range c.Providers {
		for _, pr := range []*Prices{c.Providers[i].Prices, c.Providers[i].VoicePrices} {
			if pr != nil && pr.Currency == "" {
				pr.Currency = lc.Currency
			}
		}
	}
	for i := range c.Routes {
		orDefault(&c.Routes[i].Strategy, "ordered")
		orDefault(&c.Routes[i].FailoverOnTimeout, ptr(true))
	}
}

// orDefault sets *p to v when it holds its type's zero value (unset in the file).
func orDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// orDefaultAt is orDefault for a number or a duration at path that the file may give as 0: only a
// key left out (or written with no value) takes the default. A 0 written is read as 0, which the
// key either takes (pumping.warmup: none; delivery_health.margin: none) or refuses as a problem;
// it used to be replaced by the default without a word (a conversion_floor of 0, which validation
// accepts, ran at 0.3).
func orDefaultAt[T comparable](c *Config, path string, p *T, v T) {
	if defaultAsked != nil {
		defaultAsked(path)
	}
	if !c.Decoder.Given(path) {
		orDefault(p, v)
	}
}

// defaultAsked, when set (tests), is told each path orDefaultAt looks at: a path that names no key
// would take its default whatever the file says.
var defaultAsked func(path string)

func ptr[T any](v T) *T { return &v }

// EffectiveLimits returns the tenant's effective rate limits: its own where set, else the global ones.
func (c *Config) EffectiveLimits(t *Tenant) RateLimits {
	g := c.Policy.RateLimits
	if t.RateLimits == nil {
		return g
	}
	o := *t.RateLimits
	if o.PerRecipient == nil {
		o.PerRecipient = g.PerRecipient
	}
	if o.PerIP == nil {
		o.PerIP = g.PerIP
	}
	if o.PerTenant == nil {
		o.PerTenant = g.PerTenant
	}
	if o.PerCountry == nil {
		o.PerCountry = g.PerCountry
	}
	if o.Spend == nil {
		o.Spend = g.Spend
	}
	if o.API == nil {
		o.API = g.API
	}
	return o
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// tlsProblem records err, when it is a *TLSError, at its key.
func (c *Config) tlsProblem(err error) {
	var te *TLSError
	if errors.As(err, &te) {
		c.Problem(te.Key, "%s", te.Msg)
	}
}

// checkRedis checks state.redis's TLS, Sentinel and Cluster keys.
func (c *Config) checkRedis() {
	r := c.State.Redis
	if !r.TLS {
		for _, k := range []struct{ key, value string }{{"tls_ca_file", r.TLSCAFile}, {"tls_server_name", r.TLSServerName},
			{"tls_cert_file", r.TLSCertFile}, {"tls_key_file", r.TLSKeyFile}} {
			if k.value != "" {
				c.Problem("state.redis."+k.key, "needs state.redis.tls: true")
			}
		}
	} else if _, err := r.TLSConfig(); err != nil {
		c.tlsProblem(err)
	}
	s := r.Sentinel
	switch {
	case len(s.Addrs) > 0 && s.MasterName == "":
		c.Problem("state.redis.sentinel.master_name", "is required with sentinel.addrs: the name the Sentinels monitor the primary under")
	case len(s.Addrs) == 0 && (s.MasterName != "" || s.Username != "" || s.Password != ""):
		c.Problem("state.redis.sentinel.addrs", "is required with the other sentinel keys: the Sentinels' host:port")
	}
	for i, a := range s.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			c.Problem(fmt.Sprintf("state.redis.sentinel.addrs[%d]", i), "must be host:port, not %q", a)
		}
	}
	if cl := r.Cluster; len(cl.Addrs) > 0 {
		if len(s.Addrs) > 0 {
			c.Problem("state.redis.cluster.addrs", "cannot go with state.redis.sentinel: a Redis Cluster fails its primaries over itself")
		}
		if r.DB != 0 {
			c.Problem("state.redis.db", "must be 0 with state.redis.cluster: a Redis Cluster has database 0 only")
		}
		for i, a := range cl.Addrs {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				c.Problem(fmt.Sprintf("state.redis.cluster.addrs[%d]", i), "must be host:port, not %q", a)
			}
		}
	}
}

// validate adds a problem for each value the gateway cannot run with, section by section.
func (c *Config) validate() {
	c.validateServer()
	c.validateLog()
	c.validateStorage()
	c.validateState()
	c.validatePolicy()
	tenants := c.validateTenants()
	providers := c.validateProviders()
	c.validateDeliveryHealth()
	c.validateRoutes(tenants, providers)
}

// validateServer checks server.
func (c *Config) validateServer() {
	if c.Server.RequestTimeout <= 0 {
		c.Problem("server.request_timeout", "must be positive")
	}
	if *c.Server.MaxInFlight < 0 {
		c.Problem("server.max_in_flight", "must be 0 (no cap) or more, not %d", *c.Server.MaxInFlight)
	}
	if c.Server.ReadTimeout <= 0 { // 0 would be net/http's none: a slow client holds a connection for ever
		c.Problem("server.read_timeout", "must be positive")
	}
	if w := c.Server.WatchConfig; w != 0 && w < gateway.Duration(time.Second) {
		c.Problem("server.watch_config", "must be 0 (reload on SIGHUP only) or at least 1s, not %s", w.D())
	}
	if c.Server.MaxBodyBytes <= 0 {
		// A bound of 0 or less refused every body as too large: every send a 413.
		c.Problem("server.max_body_bytes", "must be positive, not %d", c.Server.MaxBodyBytes)
	}
	if m := c.Server.MetricsListen; m != "" {
		if _, port, err := net.SplitHostPort(m); err != nil || port == "" {
			c.Problem("server.metrics_listen", "must be host:port (for example 0.0.0.0:9464), not %q", m)
		} else if m == c.Server.Listen {
			c.Problem("server.metrics_listen", "is server.listen itself: metrics would stay on the listener tenants reach")
		}
	}
	if t := c.Server.TLS; c.Decoder.Unread { // validate --without-secrets reads no key
		c.tlsProblem(bothOrNeither("server.tls.cert_file", t.CertFile, "server.tls.key_file", t.KeyFile))
	} else {
		_, err := t.Certificate()
		c.tlsProblem(err)
	}
	for i, tok := range c.Server.PreviousAdminTokens {
		p := fmt.Sprintf("server.previous_admin_tokens[%d]", i)
		switch {
		case c.Server.AdminToken == "":
			c.Problem(p, "needs server.admin_token: without it the admin endpoints are off")
		case tok == "":
			c.Problem(p, "is empty")
		case tok == c.Server.AdminToken:
			c.Problem(p, "is server.admin_token itself")
		}
	}
	if c.Server.ShutdownTimeout <= c.Server.RequestTimeout {
		c.Problem("server.shutdown_timeout", "must be longer than server.request_timeout (%s <= %s): a send still running at shutdown would be cut off after it was answered",
			c.Server.ShutdownTimeout.D(), c.Server.RequestTimeout.D())
	}
	if c.Server.PublicURL != "" && !strings.HasPrefix(c.Server.PublicURL, "http://") && !strings.HasPrefix(c.Server.PublicURL, "https://") {
		c.Problem("server.public_url", "must start with http:// or https://")
	}
	if p := c.Server.NotifyProxy.Reveal(); p != "" {
		// The value may hold a password: problems name its parts, never the value.
		if u, err := url.Parse(p); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			c.Problem("server.notify_proxy", "must be a proxy's URL, http://host:port or https://host:port (with user:password@ if it asks for them)")
		}
	}
}

// validateLog checks log.
func (c *Config) validateLog() {
	if *c.Log.ErrorLinesPerSecond < 0 {
		c.Problem("log.error_lines_per_second", "must be 0 (no bound) or more, not %d", *c.Log.ErrorLinesPerSecond)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		c.Problem("log.format", "must be json or text, not %q", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		c.Problem("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
}

// validateStorage checks storage.
func (c *Config) validateStorage() {
	switch c.Storage.Driver {
	case "sqlite", "memory":
	case "postgres":
		if c.Storage.DSN == "" {
			c.Problem("storage.dsn", "is required with storage.driver postgres (postgres://user:password@host:5432/db; use ${VAR})")
		}
	default:
		c.Problem("storage.driver", "must be sqlite, postgres or memory, not %q", c.Storage.Driver)
	}
	if c.Storage.CommitTimeout <= 0 {
		c.Problem("storage.commit_timeout", "must be positive")
	}
	if c.Storage.WriteTimeout <= 0 || c.Storage.WriteTimeout < c.Storage.CommitTimeout {
		c.Problem("storage.write_timeout", "must be at least storage.commit_timeout (%s): a batch cut short before its senders stop waiting for it commits nothing", c.Storage.CommitTimeout.D())
	}
	if c.Storage.RetryBuffer <= 0 {
		c.Problem("storage.retry_buffer", "must be positive")
	}
	if c.Storage.MaxRecordsPerTenant < 0 {
		c.Problem("storage.max_records_per_tenant", "must be 0 (no bound) or more")
	}
	if c.Storage.BacklogFull != "drop_oldest" && c.Storage.BacklogFull != "refuse_sends" {
		c.Problem("storage.backlog_full", "must be drop_oldest or refuse_sends, not %q", c.Storage.BacklogFull)
	}
	if c.Storage.SpoolDir != "" && c.Storage.Driver == "memory" {
		c.Problem("storage.spool_dir", "has nothing to keep with storage.driver memory, which keeps nothing and never fails a write")
	}
	if c.Storage.SpoolSync && c.Storage.SpoolDir == "" {
		c.Problem("storage.spool_sync", "needs storage.spool_dir: there is no spool to sync")
	}
}

// validateState checks state.
func (c *Config) validateState() {
	if c.State.Driver != "memory" && c.State.Driver != "redis" {
		c.Problem("state.driver", "must be memory or redis, not %q", c.State.Driver)
	}
	if c.State.MaxIdempotencyRecords <= 0 {
		c.Problem("state.max_idempotency_records", "must be positive")
	}
	if c.State.MaxKeys <= 0 {
		c.Problem("state.max_keys", "must be positive")
	}
	if c.State.Redis.MaxIdempotencyRecordsPerTenant <= 0 {
		c.Problem("state.redis.max_idempotency_records_per_tenant", "must be positive")
	}
	if c.State.Redis.Timeout <= 0 { // go-redis reads a negative timeout as none: a hung Redis would hold every send
		c.Problem("state.redis.timeout", "must be positive")
	}
	if c.State.OnError != "open" && c.State.OnError != "closed" {
		c.Problem("state.on_error", "must be open or closed, not %q", c.State.OnError)
	}
	c.checkRedis()
	if c.State.Driver == "redis" && len(c.State.KeySecret) < 16 {
		c.Problem("state.key_secret", "needs at least 16 characters with state.driver redis: every replica must derive the same keys from codes, and nobody else may (use ${VAR})")
	}
}

// validatePolicy checks policy.
func (c *Config) validatePolicy() {
	c.checkCountries("policy.allowed_countries", c.Policy.AllowedCountries)
	c.checkCountries("policy.denied_countries", c.Policy.DeniedCountries)
	c.checkLinkHosts("policy.allowed_link_hosts", c.Policy.AllowedLinkHosts)
	if c.Policy.DeniedNumberTypes != nil {
		c.checkNumberTypes("policy.denied_number_types", *c.Policy.DeniedNumberTypes)
	}
	c.checkLimits("policy.rate_limits", &c.Policy.RateLimits)
	if c.Policy.Idempotency.TTL <= 0 {
		c.Problem("policy.idempotency.ttl", "must be positive")
	}
	if c.Policy.ResendEscalation.After < 0 {
		c.Problem("policy.resend_escalation.after", "must be 0 or positive")
	} else if c.Policy.ResendEscalation.After >= c.Policy.ResendEscalation.Within {
		c.Problem("policy.resend_escalation.after", "must be shorter than within")
	}
	c.checkPumping()
}

// validateTenants checks tenants, their keys against each other and the admin tokens, and
// returns the tenants' indexes by name.
func (c *Config) validateTenants() map[string]int {
	if len(c.Tenants) == 0 {
		c.Problem("tenants", "at least one tenant is required")
	}
	names, keys := map[string]int{}, map[gateway.Secret]int{}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		p := fmt.Sprintf("tenants[%d]", i)
		c.checkName(p, t.Name, names, "tenant")
		if t.APIKey == "" {
			c.Problem(p+".api_key", "is required")
		} else if j, dup := keys[t.APIKey]; dup {
			c.Problem(p+".api_key", "is the same key as tenants[%d] (%s); every tenant needs its own", j, c.Tenants[j].Name)
		} else {
			keys[t.APIKey] = i
		}
		c.checkCountries(p+".allowed_countries", t.AllowedCountries)
		c.checkCountries(p+".denied_countries", t.DeniedCountries)
		c.checkNumberTypes(p+".denied_number_types", t.DeniedNumberTypes)
		c.checkLinkHosts(p+".allowed_link_hosts", t.AllowedLinkHosts)
		c.checkHosts(p+".notify_hosts", t.NotifyHosts, t.NotifyPrivateAddresses)
		for k, from := range t.AllowedSenders {
			if !gateway.ValidSender(from) {
				c.Problem(fmt.Sprintf("%s.allowed_senders[%d]", p, k), "must be a phone number of 3 to 15 digits (optionally after +) or a sender ID of 3 to 11 letters, digits, spaces, '-' or '.' with at least one letter")
			}
		}
		if t.RateLimits != nil {
			c.checkLimits(p+".rate_limits", t.RateLimits)
		}
		if t.Pumping != nil && t.Pumping.Action != "" {
			checkAction(c, p+".pumping.action", t.Pumping.Action)
		}
		if t.MaxRecords < 0 {
			c.Problem(p+".max_records", "must be 0 (storage.max_records_per_tenant) or more")
		}
	}
	// Keys being rotated out, after every current key: a clash is told where it was added.
	for i := range c.Tenants {
		for k, key := range c.Tenants[i].PreviousAPIKeys {
			kp := fmt.Sprintf("tenants[%d].previous_api_keys[%d]", i, k)
			if key == "" {
				c.Problem(kp, "is empty")
			} else if j, dup := keys[key]; dup {
				c.Problem(kp, "is a key tenants[%d] already has; a key names one tenant", j)
			} else {
				keys[key] = i
			}
		}
	}
	// An admin token that is also a tenant's key would let that tenant drain providers, release
	// its own quarantines and read every tenant's status.
	admin := append([]gateway.Secret{c.Server.AdminToken}, c.Server.PreviousAdminTokens...)
	for k, tok := range admin {
		if j, dup := keys[tok]; dup && tok != "" {
			p := "server.admin_token"
			if k > 0 {
				p = fmt.Sprintf("server.previous_admin_tokens[%d]", k-1)
			}
			c.Problem(p, "is also an API key of tenants[%d]: that tenant could call the admin endpoints", j)
		}
	}
	return names
}

// validateProviders checks providers and spend limits' and least-cost routing's prices, and
// returns the providers' indexes by name.
func (c *Config) validateProviders() map[string]int {
	if len(c.Providers) == 0 {
		c.Problem("providers", "at least one provider is required")
	}
	c.checkSpend()
	provs := map[string]int{}
	for i := range c.Providers {
		pr := &c.Providers[i]
		p := fmt.Sprintf("providers[%d]", i)
		c.checkName(p, pr.Name, provs, "provider")
		if pr.Type == "" {
			c.Problem(p+".type", "is required")
		}
		if pr.Timeout <= 0 {
			c.Problem(p+".timeout", "must be positive")
		}
		if pr.Breaker.OpenTimeout <= 0 {
			c.Problem(p+".breaker.open_timeout", "must be positive")
		}
		if pr.Breaker.Interval <= 0 { // 0 would be gobreaker's never: a failure ratio over all time
			c.Problem(p+".breaker.interval", "must be positive")
		}
		if pr.Breaker.HalfOpenRequests < 1 {
			c.Problem(p+".breaker.half_open_requests", "must be at least 1")
		}
		if r := pr.Breaker.FailureRatio; r <= 0 || r > 1 {
			c.Problem(p+".breaker.failure_ratio", "must be in (0, 1], not %v", r)
		}
		if pr.Prices != nil {
			c.checkPrices(p+".prices", pr.Prices)
		}
		if pr.VoicePrices != nil {
			c.checkPrices(p+".voice_prices", pr.VoicePrices)
		}
		if sh := pr.TenantShare; sh != nil && (*sh <= 0 || *sh > 1) {
			c.Problem(p+".tenant_share", "must be in (0, 1], not %v", *sh)
		} else if sh != nil && !pr.Paced() {
			c.Problem(p+".tenant_share", "is a share of throughput, which is not set")
		}
	}
	c.checkLeastCost()
	return provs
}

// validateDeliveryHealth checks routing.delivery_health.
func (c *Config) validateDeliveryHealth() {
	dh := c.Routing.DeliveryHealth
	switch {
	case dh.Window <= 0:
		c.Problem("routing.delivery_health.window", "must be positive")
	case dh.ReportTimeout <= 0 || dh.ReportTimeout >= dh.Window:
		c.Problem("routing.delivery_health.report_timeout", "must be positive and shorter than the window (%s)", dh.Window.D())
	}
	if dh.MinSamples < 1 {
		c.Problem("routing.delivery_health.min_samples", "must be at least 1")
	}
	if dh.MinRate <= 0 || dh.MinRate >= 1 {
		c.Problem("routing.delivery_health.min_rate", "must be between 0 and 1, not %v", dh.MinRate)
	}
	if dh.Margin < 0 || dh.MinRate+dh.Margin > 1 {
		c.Problem("routing.delivery_health.margin", "must be at least 0, and min_rate + margin at most 1")
	}
	if *dh.ProbeShare < 0 || *dh.ProbeShare > 0.5 {
		c.Problem("routing.delivery_health.probe_share", "must be between 0 and 0.5, not %v", *dh.ProbeShare)
	}
	if dh.Refresh <= 0 {
		c.Problem("routing.delivery_health.refresh", "must be positive")
	}
}

// validateRoutes checks routes against the tenants (names) and providers (provs) defined.
func (c *Config) validateRoutes(names, provs map[string]int) {
	if len(c.Routes) == 0 {
		c.Problem("routes", "at least one route is required (the last one without match is the catch-all)")
	}
	routes := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		c.checkName(p, r.Name, routes, "route")
		if len(r.Providers) == 0 {
			c.Problem(p+".providers", "must name at least one provider")
		}
		seen := map[string]bool{}
		for j, name := range r.Providers {
			pp := fmt.Sprintf("%s.providers[%d]", p, j)
			if _, ok := provs[name]; !ok {
				c.Problem(pp, "provider %q is not defined under providers", name)
			}
			if seen[name] {
				c.Problem(pp, "provider %q is listed twice", name)
			}
			seen[name] = true
		}
		last := i == len(c.Routes)-1
		if r.Match == nil && !last {
			c.Problem(p, "only the last route may have no match block: the routes after it could never match")
		}
		if r.Match != nil && last {
			c.Problem(p+".match", "the last route must have no match block (it is the catch-all)")
		}
		if r.Match != nil && !last && r.Match.matchesAll() {
			c.Problem(p+".match", "lists no value, so it matches every request and the routes after it could never match; list the values a request must have")
		}
		if r.Match != nil {
			c.checkMatch(p+".match", r.Match, names)
		}
		if r.Strategy != "ordered" && r.Strategy != "least_cost" {
			c.Problem(p+".strategy", "must be ordered or least_cost, not %q", r.Strategy)
		}
	}
}

func checkAction(c *Config, path, action string) {
	switch action {
	case "alert", "throttle", "block":
	default:
		c.Problem(path, "must be alert, throttle or block, not %q", action)
	}
}

func (c *Config) checkPumping() {
	pp := c.Policy.Pumping
	checkAction(c, "policy.pumping.action", pp.Action)
	if pp.RangeDigits < 1 || pp.RangeDigits > 6 {
		c.Problem("policy.pumping.range_digits", "must be between 1 and 6, not %d", pp.RangeDigits)
	}
	if pp.Baseline < gateway.Duration(2*time.Hour) {
		c.Problem("policy.pumping.baseline", "must be at least 2h (it is counted in hours)")
	}
	if pp.Warmup < 0 {
		c.Problem("policy.pumping.warmup", "must be 0 or positive")
	}
	if pp.Factor <= 1 {
		c.Problem("policy.pumping.factor", "must be above 1, not %v", pp.Factor)
	}
	if pp.MinVolume < 1 {
		c.Problem("policy.pumping.min_volume", "must be at least 1")
	}
	if pp.ConversionFloor < 0 || pp.ConversionFloor >= 1 {
		c.Problem("policy.pumping.conversion_floor", "must be at least 0 and below 1, not %v", pp.ConversionFloor)
	}
	if pp.ConversionWindow < gateway.Duration(10*time.Minute) {
		c.Problem("policy.pumping.conversion_window", "must be at least 10m (it is counted in 5-minute slots)")
	}
	if pp.ConversionDelay < 0 || pp.ConversionDelay >= pp.ConversionWindow {
		c.Problem("policy.pumping.conversion_delay", "must be at least 0 and shorter than conversion_window")
	}
	if pp.Throttle.N == 0 {
		c.Problem("policy.pumping.throttle", "must be a limit such as 5/1h, not 0")
	}
	if pp.Cooldown <= 0 {
		c.Problem("policy.pumping.cooldown", "must be positive")
	}
	if pp.Refresh <= 0 {
		c.Problem("policy.pumping.refresh", "must be positive")
	}
}

// EffectivePumping is tenant t's pumping settings: the global ones with its overrides.
func (c *Config) EffectivePumping(t *Tenant) Pumping {
	p := c.Policy.Pumping
	if t.Pumping != nil {
		if t.Pumping.Enabled != nil {
			p.Enabled = t.Pumping.Enabled
		}
		if t.Pumping.Action != "" {
			p.Action = t.Pumping.Action
		}
	}
	return p
}

var currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)

func (c *Config) checkLeastCost() {
	lc := c.Routing.LeastCost
	if !currencyRe.MatchString(lc.Currency) {
		c.Problem("routing.least_cost.currency", "%q is not an ISO 4217 code such as EUR or USD", lc.Currency)
	}
	for cur, r := range lc.Rates {
		switch {
		case !currencyRe.MatchString(cur):
			c.Problem("routing.least_cost.rates."+cur, "%q is not an ISO 4217 code such as EUR or USD", cur)
		case r <= 0:
			c.Problem("routing.least_cost.rates."+cur, "must be a positive rate (how much %s one %s is worth), not %v", lc.Currency, cur, r)
		}
	}
	if lc.Window <= 0 {
		c.Problem("routing.least_cost.window", "must be positive")
	}
	if lc.MinReports < 1 {
		c.Problem("routing.least_cost.min_reports", "must be at least 1")
	}
	if lc.Refresh <= 0 {
		c.Problem("routing.least_cost.refresh", "must be positive")
	}
	if lc.Floor < c.Routing.DeliveryHealth.MinRate || lc.Floor > 1 {
		c.Problem("routing.least_cost.floor", "must be between routing.delivery_health.min_rate (%v) and 1, not %v: a provider demoted for a country is always below the floor", c.Routing.DeliveryHealth.MinRate, lc.Floor)
	}
}

func (c *Config) checkPrices(path string, p *Prices) {
	lc := c.Routing.LeastCost
	if _, ok := lc.Rates[p.Currency]; p.Currency != lc.Currency && !ok {
		c.Problem(path+".currency", "%q is neither routing.least_cost.currency (%s) nor listed in routing.least_cost.rates", p.Currency, lc.Currency)
	}
	if p.Default != nil && *p.Default < 0 {
		c.Problem(path+".default", "must be at least 0")
	}
	for cc, v := range p.Countries {
		switch {
		case !ValidCountry(cc):
			c.Problem(path+".countries."+cc, "%s", countryProblem(cc))
		case v < 0:
			c.Problem(path+".countries."+cc, "must be at least 0")
		}
	}
}

func (c *Config) checkName(path, name string, seen map[string]int, what string) {
	switch {
	case name == "":
		c.Problem(path+".name", "is required")
	case !nameRe.MatchString(name):
		c.Problem(path+".name", "%q: use lower-case letters, digits, '-', '_' and '.'", name)
	default:
		if j, dup := seen[name]; dup {
			first := fmt.Sprintf("%s[%d].name", path[:strings.Index(path, "[")], j)
			at := fmt.Sprintf("line %d", c.Decoder.Line(first))
			if f := c.Decoder.fileOf(first); f != c.Decoder.fileOf(path) {
				at = fmt.Sprintf("%s:%d", f, c.Decoder.Line(first)) // the other one is in another file (tenant_files)
			}
			c.Problem(path+".name", "duplicate %s name %q (first defined at %s)", what, name, at)
			return
		}
		seen[name] = index(path)
	}
}

// index is the position in the path of a list's entry ("tenants[12]": 12).
func index(path string) int {
	i, _ := strconv.Atoi(path[strings.LastIndex(path, "[")+1 : len(path)-1])
	return i
}

// NonGeographic is the country of numbers that belong to no country (+800, +881, +979...), as
// libphonenumber names it. It may be written wherever a country is.
const NonGeographic = "001"

// regions are the countries a number can be in: every region libphonenumber has a numbering
// plan for (ISO 3166-1 alpha-2 codes, and AC, TA and XK).
var regions = phonenumbers.GetSupportedRegions()

// ValidCountry reports whether cc is a country a number can be in (regions) or NonGeographic. A
// code of the right shape that no number has is refused: UK (the United Kingdom is GB) in a deny
// list denied nothing, and in an allow list refused every British number.
func ValidCountry(cc string) bool { return cc == NonGeographic || regions[cc] }

// countryProblem says why cc is not ValidCountry.
func countryProblem(cc string) string {
	hint := map[string]string{"UK": " (the United Kingdom is GB)", "EL": " (Greece is GR)"}[cc]
	return fmt.Sprintf("%q is not a country of any phone number%s: an ISO 3166-1 alpha-2 code such as US or GB, or 001 (numbers of no country)", cc, hint)
}

func (c *Config) checkCountries(path string, cs []string) {
	for i, cc := range cs {
		if !ValidCountry(cc) {
			c.Problem(fmt.Sprintf("%s[%d]", path, i), "%s", countryProblem(cc))
		}
	}
}

// DefaultDeniedNumberTypes are the number types refused when policy.denied_number_types is
// absent: those that cost the sender more than a call or text to an ordinary number (premium rate,
// shared cost: the classic toll-fraud targets, for voice codes above all) and those no person
// reads a code on (pager, UAN, voicemail).
var DefaultDeniedNumberTypes = []string{"premium_rate", "shared_cost", "pager", "uan", "voicemail"}

func (c *Config) checkNumberTypes(path string, ts []string) {
	for i, t := range ts {
		if !slices.Contains(gateway.SpecialNumberTypes, t) {
			c.Problem(fmt.Sprintf("%s[%d]", path, i), "%q is not a number type; the types are %s", t, strings.Join(gateway.SpecialNumberTypes, ", "))
		}
	}
}

// checkLinkHosts: each is "*" or a domain name (gateway.DomainName, as the link check reads one)
// or an IPv4 address, as a link's host is compared with it (gateway.HostAllowed); a URL, a path,
// a port or an IPv6 address would match no link.
func (c *Config) checkLinkHosts(path string, hosts []string) {
	for i, h := range hosts {
		if ip := net.ParseIP(h); h != "*" && (ip == nil || ip.To4() == nil) && !gateway.DomainName(h) {
			c.Problem(fmt.Sprintf("%s[%d]", path, i), "%q is not a host name such as example.com or an IPv4 address (no scheme, path or port; a name allows the names under it too), or * for any link", h)
		}
	}
}

// checkHosts: each is a host or host:port, as a notify URL's host is compared with it. A URL or
// a path would match no notify URL, and every request naming one would be refused. Unless
// private is set, a host that can only be inside the operator's network (localhost, a loopback,
// private or link-local address) is refused too: no push could ever be made to it.
func (c *Config) checkHosts(path string, hosts []string, private bool) {
	for i, h := range hosts {
		if !validHost(h) {
			c.Problem(fmt.Sprintf("%s[%d]", path, i), "%q is not a host or host:port such as hooks.example.com or hooks.example.com:8443 (no scheme, path or user)", h)
			continue
		}
		host := h
		if hh, _, err := net.SplitHostPort(h); err == nil {
			host = hh
		}
		if !private && !gateway.PublicHost(host) {
			c.Problem(fmt.Sprintf("%s[%d]", path, i), "%q is not a public address, and pushes are made to public addresses only; set notify_private_addresses: true on a tenant inside your own network", h)
		}
	}
}

func validHost(h string) bool {
	if h == "" || strings.ContainsAny(h, "/?#@ \t") {
		return false
	}
	if net.ParseIP(h) != nil {
		return true // an IPv6 address without a port is written bare
	}
	host := h
	if strings.Contains(h, ":") {
		var port string
		var err error
		if host, port, err = net.SplitHostPort(h); err != nil {
			return false
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return false
		}
	}
	return host != ""
}

// checkSpend: a spend limit counts each message at its provider's price, and one with no price
// for the country at the highest configured price; without any configured price it could not
// count the messages it is there to stop.
func (c *Config) checkSpend() {
	path := c.SpendLimitPath()
	if path == "" || slices.ContainsFunc(c.Providers, func(p Provider) bool { return p.Prices.Any() }) {
		return
	}
	c.Problem(path, "needs prices: give at least one provider prices.default (a message whose provider has no price for its country counts at the highest configured price)")
}

// SpendLimitPath is the key of the first spend limit the config sets (the global one first), or
// "" when it sets none.
func (c *Config) SpendLimitPath() string {
	if c.Policy.RateLimits.Spend.Active() {
		return "policy.rate_limits.spend"
	}
	for i := range c.Tenants {
		if rl := c.Tenants[i].RateLimits; rl != nil && rl.Spend.Active() {
			return fmt.Sprintf("tenants[%d].rate_limits.spend", i)
		}
	}
	return ""
}

func (c *Config) checkLimits(path string, l *RateLimits) {
	for cc := range l.PerCountry {
		if !ValidCountry(cc) {
			c.Problem(path+".per_country."+cc, "%s", countryProblem(cc))
		}
	}
}

func (c *Config) checkMatch(path string, m *Match, tenants map[string]int) {
	for i, t := range m.Tenants {
		if _, ok := tenants[t]; !ok {
			c.Problem(fmt.Sprintf("%s.tenants[%d]", path, i), "tenant %q is not defined under tenants", t)
		}
	}
	c.checkCountries(path+".countries", m.Countries)
	for i, t := range m.MessageTypes {
		if t != "sms" && t != "voice" {
			c.Problem(fmt.Sprintf("%s.message_types[%d]", path, i), "must be sms or voice, not %q", t)
		}
	}
}
