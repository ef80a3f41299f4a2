// Package redistest gives tests a real Redis: the one at $SMSGATE_TEST_REDIS (host:port) if set,
// else a private redis-server started on a free loopback port and stopped after the test. Without
// either the test is skipped, except in CI (CI set), where that is a failure.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Start returns a client on an empty database.
func Start(t testing.TB) *redis.Client {
	t.Helper()
	addr := os.Getenv("SMSGATE_TEST_REDIS")
	if addr == "" {
		addr, _ = Server(t)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	for i := 0; ; i++ {
		if err := c.Ping(context.Background()).Err(); err == nil {
			break
		} else if i > 200 {
			t.Fatalf("redis at %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

// Server starts a private redis-server on a free loopback port and returns its address and a
// function that kills it (also called at cleanup). It skips or fails the test like Start.
func Server(t testing.TB) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	return addr, ServerOn(t, addr)
}

// ServerOn starts a private redis-server on addr (a loopback host:port), with extra arguments
// such as "--requirepass", "secret", and returns a function that kills it, like Server.
func ServerOn(t testing.TB, addr string, args ...string) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is required in CI (.ci/run installs it)")
		}
		t.Skip("redis-server not installed")
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) }
	t.Cleanup(stop)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		} else if i > 300 {
			t.Fatalf("redis-server did not start on %s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return stop
}

// Prefix returns a key prefix unique to the test, so tests sharing one Redis do not collide.
func Prefix(t testing.TB) string {
	return fmt.Sprintf("smsgate-test:%s:%d:", t.Name(), time.Now().UnixNano())
}
