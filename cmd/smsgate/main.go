// Command smsgate is the multi-provider SMS gateway: serve, validate a config, explain a routing
// decision, send one test message through one provider, migrate the message log, write a spool
// left behind into it, or print the version. It only parses flags and handles signals; gateway/app does the work.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/app"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/intake"
	"github.com/smsgate/smsgate/gateway/routing"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// stdin is where `smsgate send` reads its confirmation (tests replace it).
var stdin io.Reader = os.Stdin

const usage = `smsgate: one SMS endpoint for all tenants, many providers behind it.

Usage:
  smsgate serve    --config FILE [--listen ADDR] [--cpuprofile FILE] [--memprofile FILE]
  smsgate validate --config FILE [--without-secrets]
                   (--without-secrets: read no ${NAME} or ${file:PATH}; the keys holding one
                   are not judged: for a CI job that has not the replicas' secrets)
  smsgate route    --config FILE --tenant NAME --to NUMBER [--client-id ID] [--type sms|voice]
                   [--action A] [--language L] [--json]
  smsgate send     --config FILE --provider NAME --to NUMBER [--type sms|voice] [--text T]
                   [--language L] [--yes] [--json]
                   (one real message through one provider, bypassing routing and policy)
  smsgate migrate  --config FILE   (apply the message log's migrations, as serve does at start, and exit)
  smsgate spool    --config FILE [--dir DIR] [--timeout 30s]
                   (write what a spool directory holds into the message log, and exit: for a
                   replica's storage.spool_dir no replica will start on again)
  smsgate health   [--url http://127.0.0.1:8080/healthz] [--insecure]   (exit 0 on HTTP 200; for HEALTHCHECK;
                   --insecure: an https URL's certificate is not checked)
  smsgate version  (the build and the Go it was built with)
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "route":
		return route(args[1:], stdout, stderr)
	case "health":
		return health(args[1:], stdout, stderr)
	case "migrate":
		return migrate(args[1:], stdout, stderr)
	case "send":
		return send(args[1:], stdin, stdout, stderr)
	case "spool":
		return spool(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		// The Go it was built with: the standard library's fixes come with Go's releases, so this
		// is what to check a binary against an advisory with (docs/security.md).
		fmt.Fprintln(stdout, "smsgate", version, runtime.Version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "smsgate: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func flags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("smsgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := new(string)
	fs.StringVar(cfg, "config", "", "config file (YAML)")
	fs.StringVar(cfg, "c", "", "config file (short for --config)")
	return fs, cfg
}

// parseConfig parses args into fs, whose --config (cfg) is required: 0 when they are good, else
// the exit code.
func parseConfig(fs *flag.FlagSet, cfg *string, args []string, stderr io.Writer) int {
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfg == "" {
		fmt.Fprintln(stderr, fs.Name()+": --config FILE is required")
		return 2
	}
	return 0
}

// loadConfig parses args as parseConfig does and loads the config: nil and the exit code when
// either fails.
func loadConfig(fs *flag.FlagSet, cfg *string, args []string, stderr io.Writer) (*config.Config, int) {
	if code := parseConfig(fs, cfg, args, stderr); code != 0 {
		return nil, code
	}
	c, err := config.Load(*cfg, app.Drivers)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, 1
	}
	return c, 0
}

func serve(args []string, stderr io.Writer) int {
	fs, cfg := flags("serve", stderr)
	listen := fs.String("listen", "", "listen address, overrides server.listen")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for go run ./cmd/smsgate-bench)")
	memprofile := fs.String("memprofile", "", "write an allocation profile of the whole run to this file at exit (for go run ./cmd/smsgate-bench)")
	if code := parseConfig(fs, cfg, args, stderr); code != 0 {
		return code
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		defer func() {
			f, err := os.Create(*memprofile)
			if err == nil {
				err = errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
			}
			if err != nil {
				fmt.Fprintln(stderr, err)
			}
		}()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, app.Options{ConfigPath: *cfg, Listen: *listen, Version: version})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // before Start: a SIGHUP must never kill a serving process
	defer signal.Stop(hup)
	if err := a.Start(); err != nil {
		fmt.Fprintln(stderr, err)
		_ = a.Shutdown(context.Background())
		return 1
	}
	for {
		select {
		case <-hup:
			_ = a.Reload(ctx) // logs why when the new file is invalid
		case err := <-a.Done():
			if err != nil {
				fmt.Fprintln(stderr, err)
				_ = a.Shutdown(context.Background())
				return 1
			}
			return 0
		case <-ctx.Done():
			stop() // a second signal kills the process the default way
			if err := a.Shutdown(context.Background()); err != nil {
				return 1
			}
			return 0
		}
	}
}

// migrate applies the message log's migrations and exits: before a rollout (a Kubernetes Job,
// a step of a pipeline), so that no replica starts on a log still migrating. Long migrations log
// their progress to stderr; SIGINT or SIGTERM stops them (an index build cut
// short is built again at the next run).
func migrate(args []string, stdout, stderr io.Writer) int {
	fs, cfg := flags("migrate", stderr)
	c, code := loadConfig(fs, cfg, args, stderr)
	if c == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	v, known, err := app.Migrate(ctx, c, slog.New(slog.NewTextHandler(stderr, nil)))
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "smsgate migrate: %v\n", err)
		return 1
	case c.Storage.Driver == "memory":
		fmt.Fprintln(stdout, "storage.driver is memory: nothing to migrate")
	case known > 0:
		fmt.Fprintf(stdout, "message log at schema version %d, newer than this build knows (%d), which may run on it; nothing applied\n", v, known)
	default:
		fmt.Fprintf(stdout, "message log at schema version %d\n", v)
	}
	return 0
}

// spool writes a spool directory's writes into the message log: 0 when none is left, 1 when the
// database still refused some (they stay for another run) or the spool could not be read.
func spool(args []string, stdout, stderr io.Writer) int {
	fs, cfg := flags("spool", stderr)
	dir := fs.String("dir", "", "the spool directory (default: storage.spool_dir)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to keep trying a database that refuses the writes")
	c, code := loadConfig(fs, cfg, args, stderr)
	if c == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	held, left, err := app.FlushSpool(ctx, c, *dir, *timeout, slog.New(slog.NewTextHandler(stderr, nil)))
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "smsgate spool: %v\n", err)
		return 1
	case held == 0:
		fmt.Fprintln(stdout, "the spool holds no writes")
	case left > 0:
		fmt.Fprintf(stderr, "smsgate spool: %d of %d writes written; the database refused the other %d, which stay in the spool (run it again)\n", held-left, held, left)
		return 1
	default:
		fmt.Fprintf(stdout, "%d writes written into the message log; the spool is empty\n", held)
	}
	return 0
}

// health probes a running gateway, so a distroless image (no shell, no curl) can have a HEALTHCHECK.
func health(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("smsgate health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	u := fs.String("url", "http://127.0.0.1:8080/healthz", "URL to probe")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait")
	insecure := fs.Bool("insecure", false, "with an https URL, do not check the certificate (a replica probing itself on loopback with server.tls, whose certificate names its public host)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := &http.Client{Timeout: *timeout}
	if *insecure {
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	res, err := c.Get(*u)
	if err != nil {
		fmt.Fprintln(stderr, "smsgate health:", err)
		return 1
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "smsgate health:", res.Status)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

func validate(args []string, stdout, stderr io.Writer) int {
	fs, cfg := flags("validate", stderr)
	without := fs.Bool("without-secrets", false, "read no ${NAME} or ${file:PATH}: the keys holding one are not judged")
	if code := parseConfig(fs, cfg, args, stderr); code != 0 {
		return code
	}
	var warnings []string
	var err error
	unread := 0
	if *without {
		warnings, unread, err = app.CheckWithoutSecrets(*cfg)
	} else {
		warnings, err = app.Check(*cfg)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		var ps config.Problems
		if errors.As(err, &ps) {
			fmt.Fprintf(stderr, "%s: %d problem(s)\n", *cfg, len(ps))
		}
		return 1
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if *without {
		fmt.Fprintf(stdout, "%s: configuration is valid, but for the %d key(s) whose values hold a ${NAME} or ${file:PATH}, not read (--without-secrets)\n", *cfg, unread)
		return 0
	}
	fmt.Fprintf(stdout, "%s: configuration is valid\n", *cfg)
	return 0
}

// Explanation is the output of `smsgate route --json`.
type Explanation struct {
	// Demoted are providers that delivery health moves behind the others for this country, as
	// the message log stands now; Providers is then the order a send uses (a probe share aside).
	Demoted []app.Demotion `json:"demoted,omitempty"`
	// Strategy is the route's; Costs each provider's price and rank (least_cost routes).
	Strategy string                   `json:"strategy"`
	Costs    map[string]*httpapi.Cost `json:"costs,omitempty"`
	// Number is the recipient as routing reads it (E.164), masked as in logs: the output of an
	// operator's check ends up in tickets and CI logs.
	Number  string `json:"number"`
	Country string `json:"country"`
	// NumberType is the number's type when it is a special one (premium_rate, toll_free, ...:
	// policy.denied_number_types); AlsoIn the other regions an unrecognized number may be in,
	// each of which country lists must allow.
	NumberType string   `json:"number_type,omitempty"`
	AlsoIn     []string `json:"also_in,omitempty"`
	Tenant     string   `json:"tenant"`
	Route      string   `json:"route"`
	Why        []string `json:"why"`
	Skipped    []string `json:"skipped,omitempty"`
	Providers  []string `json:"providers"`
}

func route(args []string, stdout, stderr io.Writer) int {
	fs, cfg := flags("route", stderr)
	tenant := fs.String("tenant", "", "tenant name")
	to := fs.String("to", "", "recipient number")
	clientID := fs.String("client-id", "", "Auth0 client id")
	typ := fs.String("type", "sms", "sms or voice")
	action := fs.String("action", "", "Auth0 action, e.g. enrollment")
	lang := fs.String("language", "", "language tag, e.g. en")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfg == "" || *tenant == "" || *to == "" {
		fmt.Fprintln(stderr, "smsgate route: --config, --tenant and --to are required")
		return 2
	}
	c, err := config.Load(*cfg, app.Drivers)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var tn *config.Tenant
	for i := range c.Tenants {
		if c.Tenants[i].Name == *tenant {
			tn = &c.Tenants[i]
		}
	}
	if tn == nil {
		fmt.Fprintf(stderr, "smsgate route: no tenant %q in %s\n", *tenant, *cfg)
		return 1
	}
	num, err := intake.NormalizeNumber(*to, tn.AcceptUnrecognizedNumbers)
	if err != nil {
		fmt.Fprintf(stderr, "smsgate route: %v\n", err)
		return 1
	}
	if *typ != "sms" && *typ != "voice" {
		fmt.Fprintln(stderr, "smsgate route: --type must be sms or voice")
		return 2
	}
	msg := &gateway.Message{Tenant: *tenant, ClientID: *clientID, To: num.E164, Country: num.Country, Type: gateway.MessageType(*typ), Action: *action, Language: *lang}
	d := routing.Compile(c.Routes, c.Tenants).Explain(msg)
	ex := Explanation{Number: gateway.MaskPhone(num.E164), Country: num.Country, NumberType: num.Type, AlsoIn: num.AlsoIn, Tenant: *tenant, Route: d.Route.Name, Why: d.Why, Skipped: d.Skipped, Providers: d.Route.Providers}
	plan, err := app.Plan(context.Background(), c, d.Route.Name, num.Country, msg.Type, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "smsgate route: the message log could not be read for delivery health and prices: %v\n", err)
	}
	if plan != nil {
		ex.Strategy, ex.Providers, ex.Demoted, ex.Costs = plan.Strategy, plan.Providers, plan.Demoted, plan.Costs
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ex)
		return 0
	}
	fmt.Fprintf(stdout, "number:    %s (country %s)\n", ex.Number, ex.Country)
	if ex.NumberType != "" {
		fmt.Fprintf(stdout, "  type     %s (refused where policy.denied_number_types or the tenant's names it)\n", ex.NumberType)
	}
	if len(ex.AlsoIn) > 0 {
		fmt.Fprintf(stdout, "  may be   in %s too: an unrecognized range, and country lists must allow each\n", strings.Join(ex.AlsoIn, ", "))
	}
	fmt.Fprintf(stdout, "route:     %s\n", ex.Route)
	for _, w := range ex.Why {
		fmt.Fprintf(stdout, "  because  %s\n", w)
	}
	for _, s := range ex.Skipped {
		fmt.Fprintf(stdout, "  skipped  %s\n", s)
	}
	for _, x := range ex.Demoted {
		fmt.Fprintf(stdout, "  demoted  %s: delivery rate %.2f over %d messages to %s (below routing.delivery_health.min_rate)\n", x.Provider, x.Rate, x.Samples, ex.Country)
	}
	fmt.Fprintf(stdout, "providers (in order, strategy %s):\n", ex.Strategy)
	for i, p := range ex.Providers {
		fmt.Fprintf(stdout, "  %d. %s\n", i+1, p)
		if c := ex.Costs[p]; c != nil {
			price := "no price"
			if c.Price != nil {
				price = fmt.Sprintf("%.4f %s (%s)", *c.Price, c.Currency, c.Source)
			}
			fmt.Fprintf(stdout, "       %s; %s\n", price, c.Note)
		}
	}
	return 0
}

// send is `smsgate send`: one message through one named provider, for an operator checking new
// credentials. It prints the provider's answer and its classification; exit 0 when the provider
// accepted the message, 1 when it refused or failed, 2 for bad usage.
func send(args []string, in io.Reader, stdout, stderr io.Writer) int {
	fs, cfg := flags("send", stderr)
	name := fs.String("provider", "", "provider name from the config")
	to := fs.String("to", "", "recipient number (E.164 or with a + and country code)")
	typ := fs.String("type", "sms", "sms or voice")
	text := fs.String("text", "", "message text (default: a test text with a random 6-digit code)")
	lang := fs.String("language", "en", "language tag (voice)")
	yes := fs.Bool("yes", false, "send without asking (required for anything but a mock when stdin is not a terminal)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfg == "" || *name == "" || *to == "" {
		fmt.Fprintln(stderr, "smsgate send: --config, --provider and --to are required")
		return 2
	}
	if *typ != "sms" && *typ != "voice" {
		fmt.Fprintln(stderr, "smsgate send: --type must be sms or voice")
		return 2
	}
	c, err := config.Load(*cfg, app.Drivers)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	num, err := intake.NormalizeNumber(*to, true)
	if err != nil {
		fmt.Fprintf(stderr, "smsgate send: %v\n", err)
		return 2
	}
	code := fmt.Sprintf("%06d", time.Now().UnixNano()%1000000)
	msg := &gateway.Message{Tenant: "smsgate-send", To: num.E164, Country: num.Country, Type: gateway.MessageType(*typ), Text: *text, Language: *lang}
	if msg.Text == "" {
		msg.Text, msg.Code = "smsgate test message, code "+code, code
	}
	ptype, ok := app.ProviderType(c, *name)
	if !ok {
		fmt.Fprintf(stderr, "smsgate send: no provider %q in %s\n", *name, *cfg)
		return 2
	}
	if !*yes && ptype != "mock" {
		fmt.Fprintf(stderr, "Send a real %s to %s through %q? This may cost money. Type yes: ", *typ, gateway.MaskPhone(num.E164), *name)
		var answer string
		if _, err := fmt.Fscanln(in, &answer); err != nil || answer != "yes" {
			fmt.Fprintln(stderr, "\nsmsgate send: not sent (pass --yes to send without asking)")
			return 1
		}
	}
	res, err := app.TestSend(context.Background(), c, *name, msg, nil)
	if err != nil { // a driver that could not be built, or a message it cannot send
		fmt.Fprintln(stderr, "smsgate send:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		fmt.Fprintf(stdout, "provider:   %s (%s)\nto:         %s (%s)\nsmsgate id: %s\nelapsed:    %d ms\n", res.Provider, res.Type, res.To, res.Country, res.ID, res.ElapsedMS)
		if res.Sent {
			fmt.Fprintf(stdout, "result:     accepted\nprovider id: %s\nstatus:     %s\n", res.ProviderMessageID, res.ProviderStatus)
		} else {
			fmt.Fprintf(stdout, "result:     failed\nclass:      %s (%s)\ncode:       %s\nmessage:    %s\nhttp:       %d\nmaybe sent: %v\n",
				res.Class, classMeaning(res.Class), res.Code, res.Message, res.HTTPStatus, res.MaybeSent)
		}
	}
	if !res.Sent {
		return 1
	}
	return 0
}

// classMeaning says what the gateway would do with a failure of this class.
func classMeaning(class string) string {
	switch class {
	case "provider":
		return "the provider's fault: a send would fail over, and the breaker counts it"
	case "recipient":
		return "the number's fault: a send would stop here; the provider is fine"
	case "destination":
		return "this provider cannot reach this destination or sender: a send would fail over; the breaker does not count it"
	case "unavailable":
		return "the provider was not called"
	case "cancelled":
		return "cancelled"
	}
	return "a bad request"
}
