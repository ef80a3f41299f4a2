// Command bench measures smsgate: throughput and latency against a minimal forwarder (the
// baseline) measured alternately in the same run, and an outage drill in which the fake Infobip
// fails (503), then hangs, then recovers while a steady load runs on the route [infobip, twilio],
// and a silent-outage drill in which Infobip accepts but never delivers, until delivery-aware
// routing moves the traffic, then delivers again until it comes back.
//
//	go run ./cmd/smsgate-bench                       # both parts, defaults below
//	go run ./cmd/smsgate-bench -mode load -concurrency 64 -duration 20s -rounds 5
//	go run ./cmd/smsgate-bench -mode drill -phase 5s
//	go run ./cmd/smsgate-bench -mode curve -duration 5s -latency 0
//	go run ./cmd/smsgate-bench -mode cost -day 24000     # a simulated day, ordered vs least_cost
//	go run ./cmd/smsgate-bench -mode pumping             # two simulated weeks of pumping detection
//	go run ./cmd/smsgate-bench -mode throughput          # a flood and a quiet tenant on one provider account, paced or not
//	go run ./cmd/smsgate-bench -smoke                # 2 seconds of each, for CI (asserts nothing about speed)
//	go run ./cmd/smsgate-bench -cpuprofile cpu.prof  # profile the gateway process during the load part
//	go run ./cmd/smsgate-bench -memprofile mem.prof  # its allocations (go tool pprof -sample_index=alloc_space)
//
// Everything runs on loopback: the fakes in this process, the gateway and the baseline as child
// processes built from this checkout (so their peak RSS is their own).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
	"github.com/smsgate/smsgate/providers/twilio/twiliotest"
)

type options struct {
	mode        string
	concurrency int
	duration    time.Duration
	rounds      int
	latency     time.Duration
	phase       time.Duration
	cpuprofile  string
	memprofile  string
	selfprofile string
	baseprofile string
	config      string
	keep        bool
	day         int
	maxInFlight int
	accountRate int
	baselineLog bool
	tls         bool
	// smoke runs everything as briefly as it can (CI): the pumping simulation, whose weeks take
	// as long as they take, runs one of its two variants.
	smoke bool
}

func main() {
	var o options
	smoke := flag.Bool("smoke", false, "run everything for about 2 seconds (CI smoke test)")
	flag.StringVar(&o.mode, "mode", "all", "all, load, drill, cost (a simulated day, ordered vs least_cost), pumping (two simulated weeks of detection), curve (throughput, p99 and RSS at 1 to 512 callers), noisy (a quiet tenant beside a flooding one, with and without server.max_in_flight), or throughput (a quiet tenant beside a flooding one on a provider account with a throughput, with and without pacing)")
	flag.IntVar(&o.day, "day", 24000, "messages in the cost mode's simulated day")
	flag.IntVar(&o.maxInFlight, "max-in-flight", 1024, "server.max_in_flight of the noisy mode's capped phase")
	flag.BoolVar(&o.baselineLog, "baseline-log", false, "also run a second baseline that records each send in smsgate's SQLite message log, and report smsgate against both (what the log alone costs a forwarder)")
	flag.BoolVar(&o.tls, "tls", false, "the load and curve modes: smsgate serves HTTPS (server.tls, a certificate made for the run) and the load speaks HTTPS to it, on kept-alive connections; the baselines stay plain HTTP")
	flag.IntVar(&o.accountRate, "account-rate", 300, "sends a second the Infobip fake's account takes in the throughput mode")
	flag.IntVar(&o.concurrency, "concurrency", 32, "closed-loop workers")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each load round")
	flag.IntVar(&o.rounds, "rounds", 3, "alternating baseline/smsgate rounds")
	flag.DurationVar(&o.latency, "latency", 20*time.Millisecond, "fake providers' response latency")
	flag.DurationVar(&o.phase, "phase", 5*time.Second, "length of each drill phase (healthy, 503, hanging)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write the gateway's CPU profile of the load part here")
	flag.StringVar(&o.memprofile, "memprofile", "", "write the gateway's allocation profile of the load part here")
	flag.StringVar(&o.config, "config", "", "the gateway's config for the load, curve and drill modes (default cmd/smsgate-bench/smsgate.yaml; it may use the same ${BENCH_*} variables)")
	flag.StringVar(&gatewayEnv, "gateway-env", "", "extra environment of the gateway process only, space-separated KEY=VALUE (for example GOGC=200)")
	flag.StringVar(&o.baseprofile, "baseprofile", "", "write the baseline's CPU profile of the load part here")
	flag.StringVar(&o.selfprofile, "selfprofile", "", "write this process's CPU profile (the load generator and the fakes) here")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (gateway log, database)")
	flag.Parse()
	if o.smoke = *smoke; o.smoke {
		o.duration, o.rounds, o.phase, o.concurrency, o.day = time.Second, 1, 700*time.Millisecond, 8, 960
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.selfprofile != "" {
		f, err := os.Create(o.selfprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.mode == "pumping" {
		return pumpingSim(1, o.smoke)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "smsgate-bench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Println("work directory:", dir)
	}
	if o.tls {
		if o.mode != "load" && o.mode != "curve" {
			return fmt.Errorf("-tls is for -mode load and curve, not %s", o.mode)
		}
		if err := makeTLS(dir); err != nil {
			return err
		}
	}
	gwBin, baseBin := filepath.Join(dir, "smsgate"), filepath.Join(dir, "baseline")
	for bin, pkg := range map[string]string{gwBin: "./cmd/smsgate", baseBin: "./cmd/smsgate-bench/baseline"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir, cmd.Stderr = root, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	ib := infobiptest.New("bench-infobip-key", false)
	ib.SetLatency(o.latency)
	ibs := httptest.NewServer(ib)
	defer ibs.Close()
	defer ib.Release()
	tw := twiliotest.New("AC00000000000000000000000000be4c11", "bench-twilio-token", false)
	tw.SetLatency(o.latency)
	tws := httptest.NewServer(tw)
	defer tws.Close()

	fmt.Printf("# smsgate bench, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Printf("machine: %s/%s, %d CPUs, %s; fake provider latency %v; concurrency %d\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), o.latency, o.concurrency)
	if o.tls {
		fmt.Printf("smsgate serves HTTPS (server.tls, ECDSA P-256); the baselines plain HTTP\n\n")
	}

	var profile []string
	if o.cpuprofile != "" {
		abs, _ := filepath.Abs(o.cpuprofile)
		profile = []string{"--cpuprofile", abs}
	}
	if o.memprofile != "" {
		abs, _ := filepath.Abs(o.memprofile)
		profile = append(profile, "--memprofile", abs)
	}
	gwConfig := filepath.Join(root, "cmd", "smsgate-bench", "smsgate.yaml")
	if o.config != "" {
		if gwConfig, err = filepath.Abs(o.config); err != nil {
			return err
		}
	}
	if o.mode == "curve" {
		return curve(o, gwConfig, dir, gwBin, baseBin, ibs.URL, tws.URL)
	}
	if o.mode == "noisy" {
		return noisy(o, root, dir, gwBin, ibs.URL, tws.URL)
	}
	if o.mode == "throughput" {
		return throughputDrill(o, root, dir, gwBin, ibs.URL, tws.URL, ib)
	}
	if o.mode == "all" || o.mode == "load" {
		gw, err := startGateway(gwConfig, dir, gwBin, ibs.URL, tws.URL, profile)
		if err != nil {
			return err
		}
		var baseArgs []string
		if o.baseprofile != "" {
			abs, _ := filepath.Abs(o.baseprofile)
			baseArgs = []string{"-cpuprofile", abs}
		}
		base, err := startBaseline("baseline", baseBin, ibs.URL, baseArgs...)
		if err != nil {
			gw.stop()
			return err
		}
		bases := []*process{base}
		if o.baselineLog {
			// The second yardstick: the same forwarder keeping smsgate's message log.
			logged, err := startBaseline("baseline+log", baseBin, ibs.URL, "-log", filepath.Join(dir, "baseline.db"))
			if err != nil {
				base.stop()
				gw.stop()
				return err
			}
			bases = append(bases, logged)
		}
		err = loadRounds(o, gw, bases)
		for _, b := range bases {
			b.stop()
		}
		if stopErr := gw.stop(); err == nil {
			err = stopErr
		}
		if err != nil {
			return err
		}
	}
	if o.mode == "cost" {
		return costDay(o, root, dir, gwBin, ibs.URL, tws.URL)
	}
	if o.mode == "all" || o.mode == "drill" {
		gw, err := startGateway(gwConfig, dir, gwBin, ibs.URL, tws.URL, nil)
		if err != nil {
			return err
		}
		err = drill(o, gw, ib)
		if stopErr := gw.stop(); err == nil {
			err = stopErr
		}
		if err != nil {
			return err
		}
		cfg, err := silentConfig(root, dir)
		if err != nil {
			return err
		}
		if gw, err = startGateway(cfg, dir, gwBin, ibs.URL, tws.URL, nil); err != nil {
			return err
		}
		err = silentDrill(o, gw, ib)
		if stopErr := gw.stop(); err == nil {
			err = stopErr
		}
		if err != nil || o.mode != "all" {
			return err
		}
	}
	if o.mode == "all" {
		if err := costDay(o, root, dir, gwBin, ibs.URL, tws.URL); err != nil {
			return err
		}
		if err := throughputDrill(o, root, dir, gwBin, ibs.URL, tws.URL, ib); err != nil {
			return err
		}
		return pumpingSim(1, o.smoke)
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run go run ./cmd/smsgate-bench from inside the smsgate module")
	}
	return filepath.Dir(mod), nil
}

type process struct {
	name string
	url  string
	cmd  *exec.Cmd
	log  *os.File
}

// probe asks the processes started whether they are ready (makeTLS makes it trust the gateway's
// certificate).
var probe = &http.Client{}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startProcess(name, health string, cmd *exec.Cmd, logPath string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{name: name, cmd: cmd, log: f}
	for i := 0; i < 400; i++ {
		if res, err := probe.Get(health); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p, nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("%s did not become ready; see %s", name, logPath)
}

func startGateway(config, dir, bin, ibURL, twURL string, extra []string) (*process, error) {
	config, err := withTLS(config, dir)
	if err != nil {
		return nil, err
	}
	addr := freeAddr()
	args := append([]string{"serve", "--config", config}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "BENCH_LISTEN="+addr, "BENCH_DIR="+dir, "BENCH_INFOBIP_URL="+ibURL, "BENCH_TWILIO_URL="+twURL)
	cmd.Env = append(cmd.Env, strings.Fields(gatewayEnv)...)
	p, err := startProcess("smsgate", scheme()+addr+"/readyz", cmd, filepath.Join(dir, "smsgate.log"))
	if err != nil {
		return nil, err
	}
	p.url = scheme() + addr
	return p, nil
}

func startBaseline(name, bin, ibURL string, extra ...string) (*process, error) {
	addr := freeAddr()
	cmd := exec.Command(bin, append([]string{"-listen", addr, "-infobip", ibURL, "-key", "bench-infobip-key"}, extra...)...)
	p, err := startProcess(name, "http://"+addr+"/healthz", cmd, filepath.Join(filepath.Dir(bin), strings.ReplaceAll(name, "+", "-")+".log"))
	if err != nil {
		return nil, err
	}
	p.url = "http://" + addr
	return p, nil
}

// peakRSS reads the process's high-water resident set size (Linux).
func (p *process) peakRSS() string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return "n/a"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
		}
	}
	return "n/a"
}

// cpu reads the process's CPU time so far, user and system (Linux; 0 when unreadable).
func (p *process) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields counted from the ')' after it do not.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
	return time.Duration(ut+st) * time.Second / clockTicks
}

// gatewayEnv is -gateway-env: environment given to the gateway process and not the baseline.
var gatewayEnv string

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux architecture Go runs on.
const clockTicks = 100

// selfCPU is this process's CPU time so far: the load generator and the fake providers.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measureCPU runs a load round and splits its CPU: the target's and the bench's (load generator
// and fakes) per request, in microseconds, and how busy they kept the machine's cores together.
func measureCPU(p *process, round func() int) (perTarget, perBench, busy float64) {
	t0, b0, w0 := p.cpu(), selfCPU(), time.Now()
	n := round()
	t1, b1, wall := p.cpu(), selfCPU(), time.Since(w0)
	if n == 0 {
		return 0, 0, 0
	}
	perTarget = float64((t1 - t0).Microseconds()) / float64(n)
	perBench = float64((b1 - b0).Microseconds()) / float64(n)
	busy = float64(t1-t0+b1-b0) / float64(wall) / float64(runtime.NumCPU())
	return perTarget, perBench, busy
}

func (p *process) stop() error {
	defer p.log.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil && p.name == "smsgate" {
			return fmt.Errorf("smsgate exited with %v (log: %s)", err, p.log.Name())
		}
		return nil
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("%s did not stop on SIGTERM", p.name)
	}
}

// sample is one request's outcome.
type sample struct {
	start    time.Time
	latency  time.Duration
	status   int
	provider string
}

// recipients numbers the load's recipients: each request of a run goes to a number no earlier
// request went to, so nothing keyed by recipient (limiter buckets, any cache) is reused.
var recipients atomic.Uint64

// recipient is the n-th distinct recipient: +1 415 XXX YYYY over the 800 exchanges 200-999, all
// valid US numbers for libphonenumber, 8 million before it wraps.
// benchKey is the bench config's tenant key.
const benchKey = "bench-key"

func recipient(n uint64) string {
	return fmt.Sprintf("+1415%03d%04d", 200+(n/10000)%800, n%10000)
}

func body(rng *rand.Rand) []byte {
	code := fmt.Sprintf("%06d", rng.IntN(1000000))
	return []byte(`{"message_options":{"recipient":"` + recipient(recipients.Add(1)) +
		`","text":"Your verification code is ` + code + `","code":"` + code + `","action":"second-factor-authentication","message_type":"sms"},` +
		`"client":{"client_id":"bench-client","name":"Bench"},"request":{"ip":"203.0.113.` + strconv.Itoa(rng.IntN(250)) + `","language":"en"}}`)
}

// load runs a closed loop of workers against url until ctx ends. With keepProvider each sample
// records the provider that sent it; onSent, when set, is called after each accepted send with
// the worker's client, the provider and the message id (the silent-outage drill confirms
// deliveries through it).
func load(ctx context.Context, url, key string, workers int, keepProvider bool, onSent func(c *http.Client, provider, id string)) []sample {
	tr := &http.Transport{MaxIdleConns: workers * 2, MaxIdleConnsPerHost: workers * 2, IdleConnTimeout: time.Minute, TLSClientConfig: benchTLS}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	var all []sample
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, seed*7+1))
			var mine []sample
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), "POST", url+"/v1/send-phone-message", bytes.NewReader(body(rng)))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/json")
				s := sample{start: time.Now()}
				res, err := client.Do(req)
				if err != nil {
					s.latency, s.status = time.Since(s.start), 0
				} else {
					raw, _ := io.ReadAll(res.Body)
					res.Body.Close()
					s.latency, s.status = time.Since(s.start), res.StatusCode
					if keepProvider || onSent != nil {
						var b struct {
							Provider string `json:"provider"`
							ID       string `json:"id"`
						}
						_ = json.Unmarshal(raw, &b)
						s.provider = b.Provider
						if onSent != nil && res.StatusCode == 200 {
							onSent(client, b.Provider, b.ID)
						}
					}
				}
				mine = append(mine, s)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}(uint64(w + 1))
	}
	wg.Wait()
	return all
}

type stats struct {
	n, errors          int
	rps                float64
	p50, p90, p99, max time.Duration
}

func summarize(s []sample, d time.Duration) stats {
	st := stats{n: len(s)}
	lat := make([]time.Duration, 0, len(s))
	for _, x := range s {
		if x.status != 200 {
			st.errors++
		}
		lat = append(lat, x.latency)
	}
	if len(lat) == 0 {
		return st
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	st.p50, st.p90, st.p99, st.max = pct(0.50), pct(0.90), pct(0.99), lat[len(lat)-1]
	st.rps = float64(len(s)) / d.Seconds()
	return st
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func loadRounds(o options, gw *process, bases []*process) error {
	fmt.Printf("## Load: smsgate vs baseline, %d rounds of %v, alternating\n\n", o.rounds, o.duration)
	fmt.Println("| round | target | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | target CPU µs/req | load+fakes CPU µs/req | cores busy | records per commit |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	targets := append(slices.Clone(bases), gw)
	// Warm up every target (connections, SQLite, caches) for a short while.
	for _, p := range targets {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		load(ctx, p.url, benchKey, o.concurrency, false, nil)
		cancel()
	}
	rps, p99 := map[*process][]float64{}, map[*process][]float64{}
	gwErrors := 0
	for r := 1; r <= o.rounds; r++ {
		// Each round starts with the next target, so that none always runs first or last.
		k := (r - 1) % len(targets)
		order := append(slices.Clone(targets[k:]), targets[:k]...)
		for _, p := range order {
			var s stats
			var batch0 [2]float64 // the gateway's batch histogram (sum, count) before the round
			var batchErr error = errors.New("the baseline has no message log metrics")
			if p == gw {
				batch0[0], batch0[1], batchErr = histogram(p, batchMetric)
			}
			perTarget, perBench, busy := measureCPU(p, func() int {
				ctx, cancel := context.WithTimeout(context.Background(), o.duration)
				defer cancel()
				s = summarize(load(ctx, p.url, benchKey, o.concurrency, false, nil), o.duration)
				return s.n
			})
			commits := "—"
			if batchErr == nil {
				if sum, n, err := histogram(p, batchMetric); err == nil && n > batch0[1] {
					commits = fmt.Sprintf("%.1f", (sum-batch0[0])/(n-batch0[1]))
				}
			}
			fmt.Printf("| %d | %s | %d | %d | %.0f | %s | %s | %s | %s | %.0f | %.0f | %.0f %% | %s |\n", r, p.name, s.n, s.errors, s.rps, ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), perTarget, perBench, 100*busy, commits)
			rps[p], p99[p] = append(rps[p], s.rps), append(p99[p], float64(s.p99))
			if p == gw {
				gwErrors += s.errors
			}
		}
	}
	fmt.Println()
	for i, b := range bases {
		target := " (target >= 0.80)"
		if i > 0 {
			target = ""
		}
		fmt.Printf("median throughput ratio smsgate/%s: **%.2f**%s; median p99 ratio smsgate/%s: **%.2f**\n",
			b.name, median(rps[gw])/median(rps[b]), target, b.name, median(p99[gw])/median(p99[b]))
	}
	if len(bases) > 1 {
		fmt.Printf("the message log alone, %s/%s: **%.2f**\n", bases[1].name, bases[0].name, median(rps[bases[1]])/median(rps[bases[0]]))
	}
	fmt.Printf("peak RSS: smsgate %s", gw.peakRSS())
	for _, b := range bases {
		fmt.Printf(", %s %s", b.name, b.peakRSS())
	}
	fmt.Printf("; smsgate errors: %d\n\n", gwErrors)
	return nil
}

// batchMetric is the gateway's histogram of records per message log commit.
const batchMetric = "smsgate_message_log_batch_records"

// histogram reads a histogram's _sum and _count from the gateway's /metrics.
func histogram(p *process, name string) (sum, count float64, err error) {
	res, err := probe.Get(p.url + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s /metrics: %s", p.name, res.Status)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	found := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || (f[0] != name+"_sum" && f[0] != name+"_count") {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return 0, 0, err
		}
		if f[0] == name+"_sum" {
			sum = v
		} else {
			count = v
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("%s: %s not exposed", p.name, name)
	}
	return sum, count, sc.Err()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func drill(o options, gw *process, ib *infobiptest.Fake) error {
	fmt.Printf("## Outage drill: route [infobip, twilio], %d workers; phases of %v: healthy, Infobip 503, Infobip hanging, recovered\n\n", o.concurrency, o.phase)
	ib.SetMode(infobiptest.OK)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []sample)
	go func() { done <- load(ctx, gw.url, benchKey, o.concurrency, true, nil) }()

	time.Sleep(o.phase)
	callsBefore := ib.Calls()
	outageStart := time.Now()
	ib.SetMode(infobiptest.Unavailable)
	time.Sleep(o.phase)
	calls503 := ib.Calls() - callsBefore
	hangStart := time.Now()
	ib.SetMode(infobiptest.Hang)
	time.Sleep(o.phase)
	callsHang := ib.Calls() - callsBefore - calls503
	recovered := time.Now()
	ib.SetMode(infobiptest.OK)
	// Keep the load on until traffic is back on Infobip (the breaker's open timeout is 2s), at most 6 phases.
	deadline := recovered.Add(6 * o.phase)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if ib.Calls()-callsBefore-calls503-callsHang > int64(o.concurrency) {
			time.Sleep(o.phase / 2)
			break
		}
	}
	cancel()
	all := <-done
	var outage []sample
	failed := 0
	returned := time.Duration(-1)
	for _, s := range all {
		if s.status != 200 {
			failed++
		}
		if !s.start.Before(outageStart) && s.start.Before(recovered) {
			outage = append(outage, s)
		}
		if !s.start.Before(recovered) && s.provider == "infobip" && s.status == 200 {
			if d := s.start.Sub(recovered); returned < 0 || d < returned {
				returned = d
			}
		}
	}
	during := summarize(outage, recovered.Sub(outageStart))
	back := "not within the drill"
	if returned >= 0 {
		back = returned.Round(10 * time.Millisecond).String()
	}
	fmt.Println("| measure | value |")
	fmt.Println("|---|---|")
	fmt.Printf("| requests sent during the drill | %d |\n", len(all))
	fmt.Printf("| requests failed (target 0) | %d |\n", failed)
	fmt.Printf("| requests that reached Infobip while it answered 503 (before its breaker opened, plus half-open probes) | %d |\n", calls503)
	fmt.Printf("| requests that reached Infobip while it hung (half-open probes) | %d |\n", callsHang)
	fmt.Printf("| p50 / p99 / max latency during the outage, ms | %s / %s / %s |\n", ms(during.p50), ms(during.p99), ms(during.max))
	fmt.Printf("| time until traffic returned to Infobip after recovery | %s |\n", back)
	fmt.Printf("| hang phase began after | %v |\n", hangStart.Sub(outageStart).Round(time.Millisecond))
	fmt.Printf("| peak RSS of smsgate | %s |\n\n", gw.peakRSS())
	if failed > 0 {
		return fmt.Errorf("%d requests failed during the drill", failed)
	}
	return nil
}

// silentHealth is the delivery-health block of the silent-outage drill: the defaults' shape with
// times shrunk so the drill takes seconds (production defaults: window 30m, report_timeout 10m,
// refresh 10s).
const silentHealth = `
routing:
  delivery_health: {enabled: true, window: 10s, report_timeout: 2s, min_samples: 20, min_rate: 0.7, margin: 0.1, probe_share: 0.05, refresh: 250ms}
`

// silentConfig writes the bench config with delivery-aware routing on, an admin token (to read
// /v1/providers) and its own message log.
func silentConfig(root, dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "cmd", "smsgate-bench", "smsgate.yaml"))
	if err != nil {
		return "", err
	}
	s := strings.Replace(string(b), "server:\n", "server:\n  admin_token: bench-admin\n", 1)
	s = strings.Replace(s, "smsgate.db", "silent.db", 1) + silentHealth
	path := filepath.Join(dir, "silent.yaml")
	return path, os.WriteFile(path, []byte(s), 0o600)
}

// demoted reports whether /v1/providers shows infobip demoted for US.
func demoted(c *http.Client, url string) (bool, error) {
	req, _ := http.NewRequest("GET", url+"/v1/providers", nil)
	req.Header.Set("Authorization", "Bearer bench-admin")
	res, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	var ps struct {
		Providers []struct {
			Name     string `json:"name"`
			Delivery []struct {
				Country string `json:"country"`
				Demoted bool   `json:"demoted"`
			} `json:"delivery"`
		} `json:"providers"`
	}
	if err := json.NewDecoder(res.Body).Decode(&ps); err != nil {
		return false, fmt.Errorf("/v1/providers: %w", err)
	}
	for _, p := range ps.Providers {
		for _, d := range p.Delivery {
			if p.Name == "infobip" && d.Country == "US" {
				return d.Demoted, nil
			}
		}
	}
	return false, nil
}

// silentDrill is the outage no breaker sees: Infobip keeps answering 200 but its messages are
// never delivered (no report, no verification), while every other message is confirmed through
// POST /v1/messages/{id}/verified as an Auth0 Action would after the code is entered. It measures
// how many messages and how long it takes until routing moves US traffic off Infobip, and how
// long until it comes back once Infobip delivers again.
func silentDrill(o options, gw *process, ib *infobiptest.Fake) error {
	fmt.Printf("## Silent-outage drill: route [infobip, twilio], %d workers; Infobip accepts but never delivers, then delivers again\n\n", o.concurrency)
	fmt.Println("delivery_health: window 10s, report_timeout 2s, min_samples 20, min_rate 0.7, margin 0.1, probe_share 0.05, refresh 250ms")
	fmt.Println()
	ib.SetMode(infobiptest.OK)
	var silent atomic.Bool
	var ibSilent, verifyErrors atomic.Int64
	confirm := func(c *http.Client, provider, id string) {
		if provider == "infobip" && silent.Load() {
			ibSilent.Add(1)
			return
		}
		req, _ := http.NewRequest("POST", gw.url+"/v1/messages/"+id+"/verified", nil)
		req.Header.Set("Authorization", "Bearer "+benchKey)
		res, err := c.Do(req)
		if err != nil {
			verifyErrors.Add(1)
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			verifyErrors.Add(1)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []sample)
	go func() { done <- load(ctx, gw.url, benchKey, o.concurrency, true, confirm) }()
	poll := &http.Client{Timeout: 5 * time.Second}
	wait := func(want bool, limit time.Duration) (time.Duration, error) {
		start := time.Now()
		for time.Since(start) < limit {
			d, err := demoted(poll, gw.url)
			if err != nil {
				return 0, err
			}
			if d == want {
				return time.Since(start), nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return -1, nil
	}
	time.Sleep(o.phase)
	silentStart := time.Now()
	silent.Store(true)
	moved, err := wait(true, 30*time.Second)
	lostUntilMove := ibSilent.Load()
	var back time.Duration
	var recovered time.Time
	if err == nil && moved >= 0 {
		time.Sleep(o.phase) // the demoted state under load: probes only
		recovered = time.Now()
		silent.Store(false)
		back, err = wait(false, 40*time.Second)
		if err == nil && back >= 0 {
			time.Sleep(o.phase / 2)
		}
	}
	cancel()
	all := <-done
	if err != nil {
		return err
	}
	failed, demotedIB, demotedAll := 0, 0, 0
	for _, s := range all {
		if s.status != 200 {
			failed++
		}
		if !recovered.IsZero() && s.start.After(silentStart.Add(moved)) && s.start.Before(recovered) {
			demotedAll++
			if s.provider == "infobip" {
				demotedIB++
			}
		}
	}
	secs := func(d time.Duration) string {
		if d < 0 {
			return "not within the drill"
		}
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	fmt.Println("| measure | value |")
	fmt.Println("|---|---|")
	fmt.Printf("| requests sent during the drill | %d |\n", len(all))
	fmt.Printf("| requests failed (target 0) | %d |\n", failed)
	fmt.Printf("| time from the start of the silent outage until US moved off Infobip | %s |\n", secs(moved))
	fmt.Printf("| messages Infobip accepted and never delivered until then | %d |\n", lostUntilMove)
	if demotedAll > 0 {
		fmt.Printf("| share of US traffic still sent to Infobip while demoted (probes; probe_share 0.05) | %.3f (%d of %d) |\n", float64(demotedIB)/float64(demotedAll), demotedIB, demotedAll)
	}
	fmt.Printf("| time from Infobip delivering again until US traffic returned | %s |\n", secs(back))
	fmt.Printf("| confirmations that failed | %d |\n\n", verifyErrors.Load())
	switch {
	case failed > 0:
		return fmt.Errorf("%d requests failed during the silent-outage drill", failed)
	case moved < 0:
		return errors.New("routing did not move US traffic off the silent Infobip within 30 s")
	case back < 0:
		return errors.New("US traffic did not return to Infobip within 40 s of its recovery")
	}
	return nil
}

// curveLevels are the numbers of concurrent callers of the curve mode.
var curveLevels = []int{1, 8, 32, 128, 512}

// curve measures, for each number of concurrent callers, the baseline then the gateway, each on
// fresh processes so that the peak RSS shown is that level's own.
func curve(o options, config, dir, gwBin, baseBin, ibURL, twURL string) error {
	fmt.Printf("## Load curve: baseline and smsgate at %v concurrent callers, %v each\n\n", curveLevels, o.duration)
	fmt.Println("| callers | baseline req/s | smsgate req/s | ratio | baseline p99 ms | smsgate p99 ms | p99 ratio | baseline CPU µs/req | smsgate CPU µs/req | baseline peak RSS | smsgate peak RSS | smsgate errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, c := range curveLevels {
		gw, err := startGateway(config, dir, gwBin, ibURL, twURL, nil)
		if err != nil {
			return err
		}
		base, err := startBaseline("baseline", baseBin, ibURL)
		if err != nil {
			gw.stop()
			return err
		}
		var st [2]stats
		var cpu [2]float64
		for i, p := range []*process{base, gw} {
			warm, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			load(warm, p.url, benchKey, c, false, nil)
			cancel()
			cpu[i], _, _ = measureCPU(p, func() int {
				ctx, cancel := context.WithTimeout(context.Background(), o.duration)
				defer cancel()
				st[i] = summarize(load(ctx, p.url, benchKey, c, false, nil), o.duration)
				return st[i].n
			})
		}
		fmt.Printf("| %d | %.0f | %.0f | %.2f | %s | %s | %.2f | %.0f | %.0f | %s | %s | %d |\n", c, st[0].rps, st[1].rps, st[1].rps/st[0].rps,
			ms(st[0].p99), ms(st[1].p99), float64(st[1].p99)/float64(max(st[0].p99, 1)), cpu[0], cpu[1], base.peakRSS(), gw.peakRSS(), st[1].errors)
		base.stop()
		if err := gw.stop(); err != nil {
			return err
		}
	}
	fmt.Println()
	return nil
}
