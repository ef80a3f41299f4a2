// Package pgtest gives tests a PostgreSQL schema of their own (or a database of their own, for
// tests that hold snapshots open: OwnDatabase): on the server at $SMSGATE_TEST_POSTGRES, else
// postgres://postgres@127.0.0.1:5432/test (this project's machines run PostgreSQL 15 there with
// trust authentication). It is dropped after the test. Without a reachable server the test is
// skipped, except in CI ($CI set), where that is a failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	schema, err := create(t, "SCHEMA", "DROP SCHEMA %s CASCADE")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(BaseDSN())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// create makes a schema or a database (kind) under a new name on the server, dropped after the
// test with drop (a format for the name). Without a reachable server it skips the test, except in
// CI ($CI set), where that is a failure.
func create(t testing.TB, kind, drop string) (string, error) {
	t.Helper()
	base := BaseDSN()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
	name := "t_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE "+kind+" "+name); err != nil {
		return "", err
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), fmt.Sprintf(drop, name))
	})
	return name, nil
}

// OwnDatabase creates a database of its own (instead of DSN's schema), dropped after the test,
// and returns a DSN for it. Tests that hold a snapshot open (HoldSnapshot) need one: CREATE INDEX
// CONCURRENTLY waits for every older snapshot in its database, a concurrent build of an index with
// a WHERE clause among them, so in a shared database a test waiting for its build to wait for its
// own held snapshot could find the build waiting for another package's build (go test runs
// packages at once), itself waiting for that held snapshot: each waited for the other until the
// test gave up. The database holds the public schema only. Without the right to create
// databases it falls back to DSN, and says so.
func OwnDatabase(t testing.TB) string {
	t.Helper()
	name, err := create(t, "DATABASE", "DROP DATABASE %s WITH (FORCE)")
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "42501": // insufficient_privilege
		t.Logf("no database of its own (%v): a schema instead", err)
		return DSN(t)
	case err != nil:
		t.Fatal(err)
	}
	u, err := url.Parse(BaseDSN())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// HoldSnapshot opens a transaction with a snapshot on the database of dsn, as a session left open
// in psql does: a concurrent index build waits for it to end. Its application_name is held-open.
// It returns the session's pid and the end of the transaction. Give it a database of its own
// (OwnDatabase).
func HoldSnapshot(t testing.TB, dsn string) (pid uint32, end func()) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	if _, err := c.Exec(ctx, `SET application_name = 'held-open'; BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1`); err != nil {
		t.Fatal(err)
	}
	return c.PgConn().PID(), func() {
		if _, err := c.Exec(ctx, `COMMIT`); err != nil {
			t.Error(err)
		}
	}
}

// Unreachable returns a DSN like DSN's whose server cannot be reached until up is called: it
// names a loopback port where nothing listens, and up starts a proxy there to the real server.
func Unreachable(t testing.TB) (dsn string, up func()) {
	t.Helper()
	p := newProxy(t, DSN(t))
	return p.dsn, p.up
}

// Stalling returns a DSN like DSN's through a proxy to the real server, and stall, which holds
// every byte in both directions while on, the connections left open: a database host that
// vanished without closing them.
func Stalling(t testing.TB) (dsn string, stall func(on bool)) {
	t.Helper()
	return StallingTo(t, DSN(t))
}

// StallingTo is Stalling to the server and database of target.
func StallingTo(t testing.TB, target string) (dsn string, stall func(on bool)) {
	t.Helper()
	p := newProxy(t, target)
	p.up()
	return p.dsn, func(on bool) { p.stalled.Store(on) }
}

// proxy forwards a loopback port to the test server once up.
type proxy struct {
	t       testing.TB
	dsn     string
	addr    string // where it listens
	server  string // the real server's host:port
	once    sync.Once
	stalled atomic.Bool
}

func newProxy(t testing.TB, target string) *proxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, server: u.Host}
	if u.Port() == "" {
		p.server = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	ln.Close() // nothing listens there until up
	u.Host = p.addr
	p.dsn = u.String()
	return p
}

func (p *proxy) up() {
	p.once.Do(func() {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			p.t.Fatalf("the proxy cannot listen on %s again: %v", p.addr, err)
		}
		p.t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go p.forward(c)
			}
		}()
	})
}

// forward copies c to a new connection to the server and back until either side closes.
func (p *proxy) forward(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.server)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{}, 2)
	go func() { p.copy(s, c); done <- struct{}{} }()
	go func() { p.copy(c, s); done <- struct{}{} }()
	<-done
}

// copy is io.Copy that holds what it read while the proxy is stalled.
func (p *proxy) copy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.stalled.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
