// Command baseline is the yardstick of go run ./cmd/smsgate-bench: a minimal forwarder that decodes the same
// Auth0 JSON and POSTs it to the same fake Infobip, with nothing else (no routing, breakers,
// policy, metrics, logs or message log). smsgate's throughput and p99 are reported as ratios to it.
package main

import (
	"bytes"
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
	"syscall"
	"time"
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
	flag.Parse()
	if *cpuprofile != "" {
		profileUntilSignal(*cpuprofile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	http.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	http.HandleFunc("POST /v1/send-phone-message", func(w http.ResponseWriter, r *http.Request) {
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
