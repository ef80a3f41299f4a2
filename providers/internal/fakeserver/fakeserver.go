// Package fakeserver holds what the fake provider servers (infobiptest, twiliotest) share: a mode
// switched at run time, a response latency, a call counter, a request log and hanging connections
// that can be released.
package fakeserver

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Control is embedded by each fake; R is the fake's recorded-request type.
type Control[R any] struct {
	mode    atomic.Int32
	latency atomic.Int64
	calls   atomic.Int64
	record  bool
	mu      sync.Mutex
	reqs    []R
	release chan struct{}
	relOnce sync.Once
	answer  *Answer
}

// Answer is a scripted answer that replaces the fake's own for every send.
type Answer struct {
	Status      int
	ContentType string
	Body        string
}

// SetAnswer makes every later send (once method, path and authentication passed) get a; nil
// returns to the fake's modes.
func (c *Control[R]) SetAnswer(a *Answer) {
	c.mu.Lock()
	c.answer = a
	c.mu.Unlock()
}

// Scripted writes the scripted answer, if one is set, and reports whether it did.
func (c *Control[R]) Scripted(w http.ResponseWriter) bool {
	c.mu.Lock()
	a := c.answer
	c.mu.Unlock()
	if a == nil {
		return false
	}
	if a.ContentType != "" {
		w.Header().Set("Content-Type", a.ContentType)
	}
	w.WriteHeader(a.Status)
	io.WriteString(w, a.Body)
	return true
}

// Init prepares the control; record keeps every request for Requests.
func (c *Control[R]) Init(record bool) {
	c.record = record
	c.release = make(chan struct{})
}

// SetModeValue stores the fake's mode (each fake wraps it in its own typed SetMode).
func (c *Control[R]) SetModeValue(m int32) { c.mode.Store(m) }

// ModeValue returns the current mode.
func (c *Control[R]) ModeValue() int32 { return c.mode.Load() }

// SetLatency delays every answer by d.
func (c *Control[R]) SetLatency(d time.Duration) { c.latency.Store(int64(d)) }

// Calls counts the send requests received.
func (c *Control[R]) Calls() int64 { return c.calls.Load() }

// NextCall counts this call and returns its number (1 for the first): a fake numbers its ids with it.
func (c *Control[R]) NextCall() int64 { return c.calls.Add(1) }

// Record keeps req when recording is on.
func (c *Control[R]) Record(req R) {
	if !c.record {
		return
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, req)
	c.mu.Unlock()
}

// Requests returns the recorded requests.
func (c *Control[R]) Requests() []R {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]R(nil), c.reqs...)
}

// Release ends every hanging request (call it before closing the server).
func (c *Control[R]) Release() { c.relOnce.Do(func() { close(c.release) }) }

// Hang blocks until the client gives up or Release is called.
func (c *Control[R]) Hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-c.release:
	}
}

// Delay waits for the configured latency; false means the client went away meanwhile.
func (c *Control[R]) Delay(r *http.Request) bool {
	d := time.Duration(c.latency.Load())
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// Begin is the start every fake's send shares, after its auth checks: a scripted answer if one is
// set, then the fake's hang mode (hang is that fake's value of it), then the latency. It returns
// the mode to answer with, and false when the request is already answered or the client went away.
func (c *Control[R]) Begin(w http.ResponseWriter, r *http.Request, hang int32) (int32, bool) {
	if c.Scripted(w) {
		return 0, false
	}
	mode := c.ModeValue()
	if mode == hang {
		c.Hang(r)
		return mode, false
	}
	return mode, c.Delay(r)
}

// WriteJSON writes a JSON answer.
func WriteJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}
