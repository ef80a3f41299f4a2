package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/policy/redistest"
	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/gateway/store/pgtest"
	"github.com/smsgate/smsgate/gateway/syncbuf"
	"github.com/smsgate/smsgate/providers/infobip/infobiptest"
)

// The tests in this file run the built binary, as an operator would, and attack it from outside
// as a hostile tenant would (issue 12).

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds cmd/smsgate once per test run, as the Dockerfile builds it (no cgo, trimmed
// paths): the tests run the binary the image ships, and .ci/run, which builds it so before the
// tests, leaves every package it needs compiled (another configuration compiled them all again,
// SQLite's C-to-Go translation included, beside the race-instrumented tests on a cold machine).
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "smsgate-e2e-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "smsgate")
		cmd := exec.Command("go", "build", "-trimpath", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// gatewayProc is a running smsgate binary.
type gatewayProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	dir  string
	logs *syncbuf.Buffer
	done chan error
}

// freeAddr is a free loopback address for a server this test starts in another process. Its port
// is below the kernel's ephemeral range (32768 and up on Linux, 49152 on macOS): a port taken with
// ":0" and released was, under a loaded CI machine, taken by another test process's ":0" listener
// (a fake provider) before the binary could bind it, and that fake answered the binary's requests.
func freeAddr(t testing.TB) string {
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// serveBinary writes cfg ($DIR: a temp dir) and runs `smsgate serve` on a free port until the test
// ends. The port is answered by the binary's own /healthz before it returns; a binary that could
// not bind it (taken since freeAddr) is started again on another.
func serveBinary(t *testing.T, cfg string) *gatewayProc {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "smsgate.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(cfg, "$DIR", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	for try := 1; ; try++ {
		addr := freeAddr(t)
		p := &gatewayProc{t: t, url: "http://" + addr, dir: dir, logs: &syncbuf.Buffer{}, done: make(chan error, 1)}
		p.cmd = exec.Command(bin, "serve", "--config", path, "--listen", addr)
		p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		up, err := p.waitUp()
		if up {
			t.Cleanup(func() {
				p.cmd.Process.Kill()
				<-p.done
			})
			return p
		}
		if err == nil || try == 3 { // no exit: it hangs
			p.cmd.Process.Kill()
			t.Fatalf("smsgate did not come up (%v):\n%s", err, p.logs.String())
		}
	}
}

// waitUp waits for the binary's /healthz to answer as smsgate's does; it reports false with the
// process's exit when the process ended first, false and nil after 10 s.
func (p *gatewayProc) waitUp() (bool, error) {
	for range 400 {
		select {
		case err := <-p.done:
			return false, fmt.Errorf("exited: %v", err)
		default:
		}
		if res, err := http.Get(p.url + "/healthz"); err == nil {
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 && strings.Contains(string(raw), `"status":"ok"`) {
				return true, nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return false, nil
}

type reply struct {
	Status int
	Body   map[string]any
	Raw    string
}

func (p *gatewayProc) send(ctx context.Context, key, body string) (reply, error) {
	return p.post(ctx, "/v1/send-phone-message", key, body)
}

// post sends a JSON body to path with the tenant key as a bearer token.
func (p *gatewayProc) post(ctx context.Context, path, key, body string) (reply, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", p.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := reply{Status: res.StatusCode, Raw: string(raw)}
	if err := json.Unmarshal(raw, &r.Body); err != nil {
		p.t.Errorf("not JSON: %q", raw)
	}
	return r, nil
}

func (p *gatewayProc) mustSend(key, body string) reply {
	p.t.Helper()
	r, err := p.send(context.Background(), key, body)
	if err != nil {
		p.t.Fatal(err)
	}
	return r
}

func (p *gatewayProc) get(key, path string) reply {
	p.t.Helper()
	req, _ := http.NewRequest("GET", p.url+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := reply{Status: res.StatusCode, Raw: string(raw)}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

// stop sends SIGTERM and waits for the process to exit.
func (p *gatewayProc) stop(within time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			p.t.Errorf("smsgate exited with %v:\n%s", err, p.logs.String())
		}
	case <-time.After(within):
		p.t.Fatalf("smsgate did not stop within %v of SIGTERM", within)
	}
	return time.Since(start)
}

func errorCode(r reply) string {
	e, _ := r.Body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func attemptCount(p *gatewayProc) string {
	for _, line := range strings.Split(p.get("", "/metrics").Raw, "\n") {
		if strings.HasPrefix(line, "smsgate_provider_attempts_total{") {
			return line
		}
	}
	return ""
}

const hostileConfig = `
server: {request_timeout: 3s, shutdown_timeout: 5s, read_timeout: 1s, admin_token: admin-token-e2e}
storage: {driver: sqlite, path: $DIR/log.db}
policy:
  denied_countries: [KP, NG]
  rate_limits: {per_recipient: 0}
tenants:
  - {name: acme, api_key: acme-key}
  - {name: satcom, api_key: satcom-key, allowed_countries: ["001", US]}
providers:
  - name: shared
    type: mock
    latency: 300ms
    breaker: {consecutive_failures: 5, open_timeout: 1h}
routes:
  - name: satellite
    match: {countries: ["001"]}
    providers: [shared]
  - name: default
    providers: [shared]
`

func sms(to, text, code string) string {
	return `{"message_options":{"recipient":"` + to + `","text":"` + text + `","code":"` + code + `","message_type":"sms","action":"second-factor-authentication"},"client":{"client_id":"app1"},"request":{"ip":"203.0.113.9","language":"en"}}`
}

// TestBinaryNumbersOfNoCountry (issue 12, item 1): +979 and +881 pass no deny list; they are
// refused unless an allow list names 001, and carry the country 001 in the log and in routing.
func TestBinaryNumbersOfNoCountry(t *testing.T) {
	p := serveBinary(t, hostileConfig)
	for _, to := range []string{"+979 123456789", "+881 612345678", "+800 1234 5678"} {
		r := p.mustSend("acme-key", sms(to, "Your code is 482913", "482913"))
		if r.Status != 403 || errorCode(r) != "country_not_allowed" {
			t.Errorf("%s: %d %s, want 403 country_not_allowed", to, r.Status, r.Raw)
		}
	}
	if line := attemptCount(p); line != "" {
		t.Errorf("a provider was called for a refused number: %s", line)
	}
	r := p.mustSend("satcom-key", sms("+881 612345678", "Your code is 482913", "482913"))
	if r.Status != 200 || r.Body["route"] != "satellite" {
		t.Fatalf("a tenant whose allow list names 001: %d %s", r.Status, r.Raw)
	}
	// +979 is international premium rate: a number type denied by default, 001 allowed or not.
	if r := p.mustSend("satcom-key", sms("+979 123456789", "Your code is 482913", "482913")); r.Status != 403 || errorCode(r) != "number_type_not_allowed" {
		t.Errorf("+979 for a tenant whose allow list names 001: %d %s, want 403 number_type_not_allowed", r.Status, r.Raw)
	}
	rec := p.get("satcom-key", "/v1/messages/"+r.Body["id"].(string))
	if rec.Body["country"] != "001" {
		t.Errorf("message log country %v, want 001: %s", rec.Body["country"], rec.Raw)
	}
	if !strings.Contains(p.get("", "/metrics").Raw, `smsgate_policy_rejections_total{reason="non_geographic",tenant="acme"} 3`) {
		t.Errorf("rejections not counted with reason non_geographic")
	}
	// smsgate route explains the same.
	out, err := exec.Command(binary(t), "route", "--config", filepath.Join(p.dir, "smsgate.yaml"), "--tenant", "satcom", "--to", "+881612345678").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "country 001") || !strings.Contains(string(out), "route:     satellite") {
		t.Errorf("smsgate route: %v\n%s", err, out)
	}
}

// TestBinaryLengthLimitsAndLetters (items 2 and 3): an oversized code or text, or letters in the
// number, is a 400 before policy or any provider sees it; five such requests open no breaker.
func TestBinaryLengthLimitsAndLetters(t *testing.T) {
	p := serveBinary(t, hostileConfig)
	cases := []struct{ name, body, code string }{
		{"20000-digit code without text", `{"message_options":{"recipient":"+14155550104","code":"` + strings.Repeat("7", 20000) + `","message_type":"sms"}}`, "invalid_request"},
		{"33-character code", sms("+14155550104", "Your code is 1", strings.Repeat("1", 33)), "invalid_request"},
		{"1601-character text", sms("+14155550104", strings.Repeat("x", 1601), "123456"), "invalid_request"},
		{"letters as keypad digits", sms("+1 415 555 CODE", "Your code is 482913", "482913"), "invalid_number"},
	}
	for _, tc := range cases {
		for range 5 {
			r := p.mustSend("acme-key", tc.body)
			if r.Status != 400 || errorCode(r) != tc.code {
				t.Errorf("%s: %d %s, want 400 %s", tc.name, r.Status, r.Raw, tc.code)
				break
			}
		}
	}
	if line := attemptCount(p); line != "" {
		t.Errorf("a provider was called: %s", line)
	}
	// A 900-character Cyrillic text is within the limit (characters, not bytes).
	if r := p.mustSend("acme-key", sms("+14155550104", strings.Repeat("ж", 900), "482913")); r.Status != 200 {
		t.Errorf("900 Cyrillic characters: %d %s", r.Status, r.Raw)
	}
}

// TestBinaryDisconnectDoesNotAbortSharedSend (item 4): the first of two identical requests hangs
// up mid-send; the duplicate waiting on it gets 200 and the message log says sent.
func TestBinaryDisconnectDoesNotAbortSharedSend(t *testing.T) {
	p := serveBinary(t, hostileConfig)
	body := sms("+14155550123", "Your code is 551902", "551902")
	ctx, hangUp := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := p.send(ctx, "acme-key", body)
		first <- err
	}()
	time.Sleep(80 * time.Millisecond)
	second := make(chan reply, 1)
	go func() { second <- p.mustSend("acme-key", body) }()
	time.Sleep(80 * time.Millisecond)
	hangUp()
	<-first
	r := <-second
	if r.Status != 200 || r.Body["status"] != "sent" {
		t.Fatalf("duplicate: %d %s", r.Status, r.Raw)
	}
	rec := p.get("acme-key", "/v1/messages/"+r.Body["id"].(string))
	if rec.Body["status"] != "sent" {
		t.Errorf("record: %s", rec.Raw)
	}
	list := p.get("acme-key", "/v1/messages")
	if msgs, _ := list.Body["messages"].([]any); len(msgs) != 1 {
		t.Errorf("%d records for two coalesced requests, want 1", len(msgs))
	}
}

// TestBinarySlowClientIsCutOff (item 6): a client that stalls mid-body, on the unauthenticated
// delivery-report endpoint, is disconnected after server.read_timeout and does not delay shutdown.
func TestBinarySlowClientIsCutOff(t *testing.T) {
	p := serveBinary(t, hostileConfig)
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/dlr/infobip/nope HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"results\":[")
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The server gives up at read_timeout: it answers the half-read request or closes.
	line, err := bufio.NewReader(conn).ReadString('\n')
	if d := time.Since(start); d > 5*time.Second || d < 500*time.Millisecond {
		t.Errorf("stalled client held the connection for %v (read_timeout 1s): %q %v", d, line, err)
	}
	// A second stalled client while stopping: shutdown does not wait for it.
	conn2, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprintf(conn2, "POST /v1/send-phone-message HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme-key\r\nContent-Length: 5000\r\n\r\n{")
	time.Sleep(50 * time.Millisecond)
	if d := p.stop(4 * time.Second); d > 3*time.Second {
		t.Errorf("shutdown took %v with a stalled client", d)
	}
}

// TestBinaryShutdownKeepsAnsweredSends (item 7): validate refuses a shutdown_timeout not longer
// than request_timeout, naming both keys; a send running at SIGTERM is answered and recorded.
func TestBinaryShutdownKeepsAnsweredSends(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(hostileConfig, "shutdown_timeout: 5s", "shutdown_timeout: 3s", 1)), 0o600)
	out, err := exec.Command(binary(t), "validate", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "server.shutdown_timeout: must be longer than server.request_timeout") {
		t.Errorf("validate accepted shutdown_timeout == request_timeout: %v\n%s", err, out)
	}

	p := serveBinary(t, hostileConfig)
	type result struct {
		r   reply
		err error
	}
	done := make(chan result, 3)
	for i := range 3 {
		go func() {
			r, err := p.send(context.Background(), "acme-key", sms(fmt.Sprintf("+1415555019%d", i), "Your code is 44120"+fmt.Sprint(i), "44120"+fmt.Sprint(i)))
			done <- result{r, err}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	p.stop(6 * time.Second)
	var ids []string
	for range 3 {
		res := <-done
		if res.err != nil || res.r.Status != 200 {
			t.Fatalf("send during shutdown: %+v", res)
		}
		ids = append(ids, res.r.Body["id"].(string))
	}
	sq, err := store.OpenSQLite(context.Background(), filepath.Join(p.dir, "log.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	for _, id := range ids {
		if rec, err := sq.Get(context.Background(), "acme", id); err != nil || rec.Status != gateway.StatusSent {
			t.Errorf("answered send %s missing from the message log: %+v %v", id, rec, err)
		}
	}
}

const clusterConfig = `
server: {request_timeout: 3s, shutdown_timeout: 5s, public_url: "https://sms.example.com"}
log: {level: warn}
storage: {driver: postgres, dsn: "$DSN", retention: 0s}
state: {driver: redis, redis: {addr: "$REDIS", key_prefix: "$PREFIX"}, on_error: closed, key_secret: "cluster-e2e-key-secret-01"}
# api: 0, so that the checks can read every answered message back at once.
policy: {rate_limits: {per_recipient: 0, api: 0}, resend_escalation: {enabled: false}}
tenants: [{name: acme, api_key: acme-key}]
providers:
  - {name: ib, type: infobip, base_url: "$IB", api_key: ib-key, webhook_secret: hook-secret-e2e}
routes:
  - {name: default, providers: [ib]}
`

// TestBinaryClusterOfThreeReplicas (issue 25): three gateway processes on one PostgreSQL and one
// Redis behave as one service: sends spread over the replicas, delivery reports posted to a
// replica other than the sender, reads from the third, one Idempotency-Key retried against all
// three sends once, and a replica killed with SIGKILL under load loses no record it answered.
func TestBinaryClusterOfThreeReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	redisAddr, _ := redistest.Server(t)
	ib := infobiptest.New("ib-key", false)
	ibs := httptest.NewServer(ib)
	defer ibs.Close()
	defer ib.Release()
	cfg := strings.NewReplacer("$DSN", dsn, "$REDIS", redisAddr, "$PREFIX", "cl:", "$IB", ibs.URL).Replace(clusterConfig)
	r := []*gatewayProc{serveBinary(t, cfg), serveBinary(t, cfg), serveBinary(t, cfg)}

	// Sends spread over the replicas; each report goes to the next replica; each read to the third.
	var ids []string
	for i := range 12 {
		rep := r[i%3].mustSend("acme-key", sms(fmt.Sprintf("+1415555%04d", i), "Your code is 31"+fmt.Sprint(1000+i), "31"+fmt.Sprint(1000+i)))
		if rep.Status != 200 {
			t.Fatalf("send %d: %d %s", i, rep.Status, rep.Raw)
		}
		ids = append(ids, rep.Body["id"].(string))
	}
	for i, id := range ids {
		body := `{"results":[{"messageId":"` + id + `","status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET"}}]}`
		res, err := http.Post(r[(i+1)%3].url+"/v1/dlr/infobip/ib?secret=hook-secret-e2e", "application/json", strings.NewReader(body))
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("report %d: %v %v", i, err, res)
		}
		res.Body.Close()
		if got := r[(i+2)%3].get("acme-key", "/v1/messages/"+id); got.Body["status"] != "delivered" {
			t.Errorf("message %d read on a third replica: %s", i, got.Raw)
		}
	}
	if list := r[1].get("acme-key", "/v1/messages?limit=50"); len(list.Body["messages"].([]any)) != 12 {
		t.Errorf("list on one replica sees %d messages, want all 12", len(list.Body["messages"].([]any)))
	}

	// One Idempotency-Key retried against all three at once: one provider call.
	before := ib.Calls()
	var wg sync.WaitGroup
	answers := make([]reply, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", r[i].url+"/v1/send-phone-message", strings.NewReader(sms("+14155550777", "Your code is 600700", "600700")))
			req.Header.Set("Authorization", "Bearer acme-key")
			req.Header.Set("Idempotency-Key", "auth0-retry-1")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			answers[i].Status, answers[i].Raw = res.StatusCode, string(raw)
			json.Unmarshal(raw, &answers[i].Body)
		}()
	}
	wg.Wait()
	for i, a := range answers {
		if a.Status != 200 || a.Body["id"] != answers[0].Body["id"] {
			t.Errorf("replica %d: %d %s", i, a.Status, a.Raw)
		}
	}
	if n := ib.Calls() - before; n != 1 {
		t.Errorf("%d provider calls for one key retried on three replicas, want 1", n)
	}

	// SIGKILL one replica under load: every send any replica answered 200 is in the log.
	ib.SetLatency(5 * time.Millisecond)
	var mu sync.Mutex
	var answered []string
	stop := make(chan struct{})
	var load sync.WaitGroup
	for w := range 6 {
		load.Add(1)
		go func() {
			defer load.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				to := fmt.Sprintf("+1415556%d%03d", w, n%1000)
				rep, err := r[w%2].send(context.Background(), "acme-key", sms(to, fmt.Sprintf("Your code is %06d", w*100000+n), fmt.Sprintf("%06d", w*100000+n)))
				if err == nil && rep.Status == 200 {
					mu.Lock()
					answered = append(answered, rep.Body["id"].(string))
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	r[0].cmd.Process.Kill() // SIGKILL: no drain, no flush
	time.Sleep(300 * time.Millisecond)
	close(stop)
	load.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(answered) < 20 {
		t.Fatalf("only %d sends answered under load", len(answered))
	}
	missing := 0
	for _, id := range answered {
		if got := r[2].get("acme-key", "/v1/messages/"+id); got.Status != 200 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d answered sends are missing from the shared log after SIGKILL", missing, len(answered))
	}
	t.Logf("%d sends answered under load across the kill; all found", len(answered))
}

const spoolConfig = `
server: {request_timeout: 3s, shutdown_timeout: 5s}
log: {level: warn, format: json}
storage: {driver: postgres, dsn: "$DSN", retention: 0s, spool_dir: "$SPOOL", spool_sync: true}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants:
  - {name: acme, api_key: acme-key}
providers:
  - {name: p1, type: mock}
routes:
  - {name: default, providers: [p1]}
`

// TestBinaryKilledDuringAPostgresOutageKeepsItsRecordsInItsSpool: a replica whose database is
// out of reach answers its sends, then is killed with SIGKILL (no drain, no flush, no hand-over):
// the records it answered are in its spool (without the number or the code), and the next
// process on that spool writes them once the database is back. The spool is synced
// (storage.spool_sync), as a deployment that must outlive the machine has it.
func TestBinaryKilledDuringAPostgresOutageKeepsItsRecordsInItsSpool(t *testing.T) {
	dsn, up := pgtest.Unreachable(t)
	spool := t.TempDir()
	cfg := strings.NewReplacer("$DSN", dsn, "$SPOOL", spool).Replace(spoolConfig)
	p := serveBinary(t, cfg)
	var ids []string
	for i := range 3 {
		rep := p.mustSend("acme-key", sms(fmt.Sprintf("+1415555013%d", i), "Your code is 77120"+fmt.Sprint(i), "77120"+fmt.Sprint(i)))
		if rep.Status != 200 {
			t.Fatalf("send %d during the outage: %d %s", i, rep.Status, rep.Raw)
		}
		ids = append(ids, rep.Body["id"].(string))
	}
	p.cmd.Process.Kill() // SIGKILL
	err := <-p.done
	p.done <- err // for the cleanup
	raw, err := os.ReadFile(filepath.Join(spool, "writes"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"4155550130", "771200", "Your code"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the spool holds %q", secret)
		}
	}

	up()
	next := serveBinary(t, cfg)
	for _, id := range ids {
		waitFor(t, 15*time.Second, "record "+id+" written from the spool", func() bool {
			return next.get("acme-key", "/v1/messages/"+id).Status == 200
		})
	}
	if logs := next.logs.String(); !strings.Contains(logs, `"msg":"message log writes recovered from the spool`) || !strings.Contains(logs, `"writes":3`) {
		t.Errorf("the recovery was not logged with its 3 writes:\n%s", logs)
	}
	waitFor(t, 5*time.Second, "the spool emptied", func() bool {
		fi, err := os.Stat(filepath.Join(spool, "writes"))
		return err == nil && fi.Size() == 0
	})
}

// waitFor polls cond every 20 ms until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

const sharedLogConfig = `
server: {request_timeout: 3s, shutdown_timeout: 5s}
log: {level: warn}
storage: {driver: postgres, dsn: "$DSN", retention: 0s, commit_timeout: 1s}
policy: {rate_limits: {per_recipient: 0}, resend_escalation: {enabled: false}}
tenants:
  - {name: acme, api_key: acme-key}
  - {name: mallory, api_key: mallory-key}
providers:
  - {name: shared, type: mock}
routes:
  - {name: default, providers: [shared]}
`

// TestBinaryHostileBytesDoNotStopTheSharedLog: PostgreSQL refuses a NUL byte in text and jsonb,
// and the message log keeps a batch it could not write at the front of its retry buffer. A
// tenant who put "\u0000" into a field that reaches the log (client_id, action, the
// Infobip-compatible callbackData) would have stopped the log for every tenant sharing the
// replica: no record written after it, then the oldest dropped. Every record is written, the
// hostile one with U+FFFD where the NUL was.
func TestBinaryHostileBytesDoNotStopTheSharedLog(t *testing.T) {
	p := serveBinary(t, strings.ReplaceAll(sharedLogConfig, "$DSN", pgtest.DSN(t)))
	hostile := strings.NewReplacer(`"action":"second-factor-authentication"`, `"action":"enroll\u0000ment"`,
		`"client_id":"app1"`, `"client_id":"app\u0000\u0000"`).Replace(sms("+14155550100", "Your code is 123456", "123456"))
	bad := p.mustSend("mallory-key", hostile)
	if bad.Status != 200 {
		t.Fatalf("hostile send: %d %s", bad.Status, bad.Raw)
	}
	compat, err := p.post(context.Background(), "/sms/2/text/advanced", "mallory-key",
		`{"messages":[{"destinations":[{"to":"14155550101"}],"text":"Your code is 654321","callbackData":"cb\u0000"}]}`)
	if err != nil || compat.Status != 200 {
		t.Fatalf("hostile Infobip-compatible send: %v %d %s", err, compat.Status, compat.Raw)
	}
	good := p.mustSend("acme-key", sms("+14155550102", "Your code is 777111", "777111"))
	if good.Status != 200 {
		t.Fatalf("acme's send: %d %s", good.Status, good.Raw)
	}
	if got := p.get("acme-key", "/v1/messages/"+good.Body["id"].(string)); got.Status != 200 {
		t.Errorf("acme's record after mallory's sends: %d %s\n%s", got.Status, got.Raw, p.logs.String())
	}
	got := p.get("mallory-key", "/v1/messages/"+bad.Body["id"].(string))
	if got.Status != 200 || got.Body["action"] != "enroll\uFFFDment" || got.Body["client_id"] != "app\uFFFD\uFFFD" {
		t.Errorf("mallory's record: %d %s", got.Status, got.Raw)
	}
	if list := p.get("mallory-key", "/v1/messages?limit=10"); len(list.Body["messages"].([]any)) != 2 {
		t.Errorf("mallory's records: %s", list.Raw)
	}
	// Lookups by such an id are a plain 404, not a database error; a status no record has is
	// refused before the database is asked.
	for _, path := range []string{"/v1/messages/msg%00x", "/v1/messages?status=sent&provider=%FF%00"} {
		if got := p.get("mallory-key", path); got.Status/100 != 2 && got.Status != 404 {
			t.Errorf("GET %s: %d %s", path, got.Status, got.Raw)
		}
	}
	if got := p.get("mallory-key", "/v1/messages?status=%00"); got.Status != 400 || got.Body["error"].(map[string]any)["code"] != "invalid_query" {
		t.Errorf("GET with status NUL: %d %s", got.Status, got.Raw)
	}
	if strings.Contains(p.logs.String(), "message log write failed") {
		t.Errorf("the log refused a write:\n%s", p.logs.String())
	}
}
