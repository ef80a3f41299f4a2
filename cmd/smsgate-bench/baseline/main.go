// Command baseline is the yardstick of go run ./cmd/smsgate-bench: a minimal forwarder that decodes the same
// Auth0 JSON and POSTs it to the same fake Infobip, with nothing else (no routing, breakers,
// policy, metrics, logs or message log). smsgate's throughput and p99 are reported as ratios to it.
//
// With -log FILE it also records each send in smsgate's own SQLite message log, answering once
// the record has committed, as smsgate does: the forwarder plus the message log and nothing
// else, to measure what the log alone costs (bench -baseline-log).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/store"
)

type event struct {
	MessageOptions struct {
		Recipient string `json:"recipient"`
		Text      string `json:"text"`
	} `json:"message_options"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	infobip := flag.String("infobip", "", "Infobip base URL")
	key := flag.String("key", "", "Infobip API key")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here until SIGTERM")
	logPath := flag.String("log", "", "also record each send in a SQLite message log at this path")
	flag.Parse()
	if *cpuprofile != "" {
		profileUntilSignal(*cpuprofile)
	}
	var msgLog *store.Store
	var inFlight atomic.Int64
	var seq atomic.Int64
	if *logPath != "" {
		sq, err := store.OpenSQLite(context.Background(), *logPath, nil)
		if err != nil {
			log.Fatal(err)
		}
		// The gateway's settings: group commit, lingering while sends are on their way.
		msgLog = store.New(store.Options{Backend: sq, CommitTimeout: 200 * time.Millisecond,
			InFlight: func() int { return int(inFlight.Load()) }, Linger: 500 * time.Microsecond})
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	http.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	http.HandleFunc("POST /v1/send-phone-message", func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		var ev event
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, `{"error":{"code":"invalid_json"}}`, http.StatusBadRequest)
			return
		}
		body, _ := json.Marshal(map[string]any{"messages": []any{map[string]any{
			"destinations": []any{map[string]string{"to": strings.TrimPrefix(ev.MessageOptions.Recipient, "+")}},
			"content":      map[string]string{"text": ev.MessageOptions.Text},
		}}})
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, *infobip+"/sms/3/messages", bytes.NewReader(body))
		req.Header.Set("Authorization", "App "+*key)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			http.Error(w, `{"error":{"code":"upstream"}}`, http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		var out struct {
			Messages []struct {
				MessageID string `json:"messageId"`
			} `json:"messages"`
		}
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || json.Unmarshal(raw, &out) != nil || len(out.Messages) == 0 {
			http.Error(w, `{"error":{"code":"upstream"}}`, http.StatusBadGateway)
			return
		}
		if msgLog != nil {
			now := time.Now()
			rec := &store.Record{ID: fmt.Sprintf("msg_%016x", seq.Add(1)), Tenant: "bench", Route: "default", MessageType: "sms",
				Country: "US", Recipient: gateway.MaskPhone(ev.MessageOptions.Recipient), Status: gateway.StatusSent, Provider: "infobip",
				ProviderMessageID: out.Messages[0].MessageID, Attempts: []store.Attempt{{Provider: "infobip", Outcome: "sent"}},
				CreatedAt: now, UpdatedAt: now}
			if err := msgLog.Insert(context.WithoutCancel(r.Context()), rec); err != nil {
				http.Error(w, `{"error":{"code":"log"}}`, http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"sent","provider_message_id":%q}`, out.Messages[0].MessageID)
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}

// profileUntilSignal profiles the process until SIGTERM or SIGINT, then writes the profile out
// and exits (the server itself has no graceful stop: it is killed between runs).
func profileUntilSignal(path string) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sig
		pprof.StopCPUProfile()
		f.Close()
		os.Exit(0)
	}()
}
