// Package pgtest gives tests a PostgreSQL schema of their own: on the server at
// $SMSGATE_TEST_POSTGRES, else postgres://postgres@127.0.0.1:5432/test (this project's machines
// run PostgreSQL 15 there with trust authentication). The schema is dropped after the test. Without
// a reachable server the test is skipped, except in CI ($CI set), where that is a failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultDSN is the server tests use when $SMSGATE_TEST_POSTGRES is not set.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// BaseDSN returns the server's DSN.
func BaseDSN() string {
	if dsn := os.Getenv("SMSGATE_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return DefaultDSN
}

// DSN creates a fresh schema and returns a DSN whose connections use it (search_path).
func DSN(t testing.TB) string {
	t.Helper()
	base := BaseDSN()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL is required in CI (%s): %v", base, err)
		}
		t.Skipf("PostgreSQL not reachable (%s): %v", base, err)
	}
	defer conn.Close(context.Background())
	var b [6]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Unreachable returns a DSN like DSN's whose server cannot be reached until up is called: it
// names a loopback port where nothing listens, and up starts a proxy there to the real server.
func Unreachable(t testing.TB) (dsn string, up func()) {
	t.Helper()
	u, err := url.Parse(DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	server := u.Host
	if u.Port() == "" {
		server = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there until up
	u.Host = addr
	var once sync.Once
	up = func() {
		once.Do(func() {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("the proxy cannot listen on %s again: %v", addr, err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go forward(c, server)
				}
			}()
		})
	}
	return u.String(), up
}

// forward copies c to a new connection to server and back until either side closes.
func forward(c net.Conn, server string) {
	defer c.Close()
	s, err := net.Dial("tcp", server)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(s, c); done <- struct{}{} }()
	go func() { io.Copy(c, s); done <- struct{}{} }()
	<-done
}
