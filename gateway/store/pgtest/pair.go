package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// Server is a private PostgreSQL server of a test (Pair): its port on 127.0.0.1 and its data
// directory.
type Server struct {
	Port string
	dir  string
	run  func(args ...string) error
}

// Kill stops the server at once, as a crash would (pg_ctl stop -m immediate).
func (s *Server) Kill() error { return s.run("pg_ctl", "-D", s.dir, "-m", "immediate", "-w", "stop") }

// Promote makes a standby the primary (pg_ctl promote), once it takes writes.
func (s *Server) Promote() error { return s.run("pg_ctl", "-D", s.dir, "-w", "promote") }

// Pair starts a private PostgreSQL primary and a standby streaming from it, on free loopback
// ports with trust authentication for the user postgres, and stops both after the test. With
// synchronous, the primary commits only once the standby has the commit (synchronous_standby_names
// '*'), so a failover to it loses nothing committed. It needs PostgreSQL's server programs
// (initdb, pg_ctl, pg_basebackup: on the PATH or under /usr/lib/postgresql/*/bin) and, run as root,
// the user postgres to run them as; without them the test is skipped, except in CI ($CI set).
func Pair(t testing.TB, synchronous bool) (primary, standby *Server) {
	t.Helper()
	run := runner(t)
	// Not t.TempDir: its parent is root's alone, and the servers run as postgres.
	dir, err := os.MkdirTemp("", "pgtest-pair-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			unavailable(t, "PostgreSQL's programs run as root need the user postgres")
		}
		uid, _ := strconv.Atoi(u.Uid)
		if err := os.Chown(dir, uid, -1); err != nil {
			t.Fatal(err)
		}
	}
	primary = &Server{Port: freePort(t), dir: filepath.Join(dir, "primary"), run: run}
	standby = &Server{Port: freePort(t), dir: filepath.Join(dir, "standby"), run: run}
	if err := run("initdb", "-D", primary.dir, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		t.Fatal(err)
	}
	opts := func(s *Server, extra string) string {
		return "-p " + s.Port + " -k " + dir + " -c listen_addresses=127.0.0.1 -c fsync=off" + extra
	}
	sync := ""
	if synchronous {
		sync = " -c synchronous_standby_names=*"
	}
	if err := run("pg_ctl", "-D", primary.dir, "-o", opts(primary, " -c wal_level=replica"+sync), "-l", primary.dir+".log", "-w", "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { primary.Kill() })
	if err := run("pg_basebackup", "-h", "127.0.0.1", "-p", primary.Port, "-U", "postgres", "-D", standby.dir, "-R", "-X", "stream"); err != nil {
		t.Fatal(err)
	}
	if err := run("pg_ctl", "-D", standby.dir, "-o", opts(standby, ""), "-l", standby.dir+".log", "-w", "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Kill() })
	return primary, standby
}

// runner finds PostgreSQL's server programs and returns how to run one of them: as the user
// postgres when the test runs as root (initdb refuses root).
func runner(t testing.TB) func(args ...string) error {
	t.Helper()
	bin := ""
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real // a link on the PATH to the version's directory, which has every program
		}
		bin = filepath.Dir(p)
	} else if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(dirs) > 0 {
		slices.Sort(dirs)
		bin = dirs[len(dirs)-1]
	} else {
		unavailable(t, "PostgreSQL's server programs (pg_ctl, initdb, pg_basebackup) are not installed")
	}
	return func(args ...string) error {
		prog := filepath.Join(bin, args[0])
		cmd := exec.Command(prog, args[1:]...)
		if os.Geteuid() == 0 {
			cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", prog}, args[1:]...)...)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", args[0], err, out)
		}
		return nil
	}
}

// unavailable skips the test, or fails it in CI, where everything must run.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why + " (required in CI)")
	}
	t.Skip(why)
}

// freePort is a free port on 127.0.0.1.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
