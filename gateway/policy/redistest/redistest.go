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
	return onFreePort(t, nil, func(addr, port string) (func(), error) { return tryStart(t, addr, serverArgs(port)...) })
}

// ServerOn starts a private redis-server on addr (a loopback host:port), with extra arguments
// such as "--requirepass", "secret", and returns a function that kills it, like Server.
func ServerOn(t testing.TB, addr string, args ...string) (stop func()) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	return start(t, addr, serverArgs(port, args...)...)
}

// serverArgs are the arguments of a server on port without TLS, args after them.
func serverArgs(port string, args ...string) []string {
	return append([]string{"--port", port, "--protected-mode", "yes"}, args...)
}

// binary is redis-server's path; without one the test is skipped, or fails in CI.
func binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is required in CI (.ci/run installs it)")
		}
		t.Skip("redis-server not installed")
	}
	return bin
}

// Prefix returns a key prefix unique to the test, so tests sharing one Redis do not collide.
func Prefix(t testing.TB) string {
	return fmt.Sprintf("smsgate-test:%s:%d:", t.Name(), time.Now().UnixNano())
}
