package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/syncbuf"
)

// spoolChild names the spool directory of TestHelperSpoolProcess when it runs as a child.
const spoolChild = "SMSGATE_TEST_SPOOL_CHILD"

// TestHelperSpoolProcess is the process TestAProcessKilledDuringAnOutageLeavesItsWritesInTheSpool
// kills: a store whose database fails, with a spool, that has answered writes and says so.
func TestHelperSpoolProcess(t *testing.T) {
	dir := os.Getenv(spoolChild)
	if dir == "" {
		t.Skip("run as a child process only")
	}
	sp, err := OpenSpool(dir)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	s := New(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Spool: sp, CommitTimeout: time.Millisecond})
	ctx := context.Background()
	writeSixHundredThree(s) // more than one frame
	s.Flush(ctx)            // one more try, which fails: everything is in the spool once it returns
	fmt.Println("answered")
	time.Sleep(time.Minute) // killed long before
	os.Exit(2)
}

// TestAProcessKilledDuringAnOutageLeavesItsWritesInTheSpool: a process whose database fails is
// killed with SIGKILL (no Close, nothing handed over); the next store on its spool writes every
// write it had answered, every field of them, in their order (the report after its record, the
// release of the other), and empties the spool.
func TestAProcessKilledDuringAnOutageLeavesItsWritesInTheSpool(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSpoolProcess$", "-test.v")
	cmd.Env = append(os.Environ(), spoolChild+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	var said []string
	for lines.Scan() && lines.Text() != "answered" {
		said = append(said, lines.Text())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if lines.Err() != nil || len(said) > 0 && strings.HasPrefix(said[len(said)-1], "error") {
		t.Fatalf("the child did not answer its writes: %v %q", lines.Err(), said)
	}

	sp, err := OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Recovered() != 603 {
		t.Errorf("the spool held %d writes, want 603", sp.Recovered())
	}
	m := NewMemory()
	var logs syncbuf.Buffer
	s := New(Options{Backend: m, Spool: sp, Logger: jsonLogger(&logs)})
	ctx := context.Background()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkSixHundredThree(t, m, "written from the spool")
	if fi, err := os.Stat(filepath.Join(dir, spoolFile)); err != nil || fi.Size() != 0 {
		t.Errorf("the spool was not emptied once written: %v %v", fi, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if logs.Len() > 0 {
		t.Errorf("a clean recovery logged: %s", logs.String())
	}
}

// TestASpoolIsOneProcesssAtATime: a second open of a spool held open fails with ErrSpoolInUse,
// and succeeds once the first is closed.
func TestASpoolIsOneProcesssAtATime(t *testing.T) {
	dir, sp := newSpool(t)
	if _, err := OpenSpool(dir); !errors.Is(err, ErrSpoolInUse) {
		t.Errorf("second open: %v, want ErrSpoolInUse", err)
	}
	sp.Close()
	sp, err := OpenSpool(dir)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	sp.Close()
}

// TestWritesThatCommitAreNotWrittenAgain: a database that takes the first batches after an
// outage and fails again: the spool marks what committed, so a later start writes only the rest;
// once the buffer is written the spool is empty. Writes that arrive one by one are added to the
// spool one by one; writes that arrive together are added together, several to a frame, and a
// batch that ends inside such a frame marks only its own writes.
func TestWritesThatCommitAreNotWrittenAgain(t *testing.T) {
	for _, together := range []bool{false, true} {
		t.Run(fmt.Sprint("together=", together), func(t *testing.T) {
			dir, sp := newSpool(t)
			fb := &flaky{Backend: NewMemory(), down: true}
			s := New(Options{Backend: fb, Spool: sp, CommitTimeout: time.Millisecond, CloseTimeout: time.Millisecond})
			defer s.Close()
			ctx := context.Background()
			var wg sync.WaitGroup
			for i := range 1200 {
				insert := func() { s.Insert(ctx, record(fmt.Sprint("m", i), "beta", "p", fmt.Sprint("pm", i), t0)) }
				if together {
					wg.Go(insert)
				} else {
					insert()
				}
			}
			wg.Wait()
			s.Flush(ctx)
			if n := spooled(t, dir); n != 1200 {
				t.Fatalf("%d writes in the spool during the outage, want 1200", n)
			}
			fb.allow(2) // two batches of 512 commit, the third fails
			s.Flush(ctx)
			if n := spooled(t, dir); n != 1200-2*maxBatch {
				t.Errorf("%d writes left in the spool after two batches committed, want %d", n, 1200-2*maxBatch)
			}
			fb.set(false)
			s.Flush(ctx)
			if n := spooled(t, dir); n != 0 {
				t.Errorf("%d writes left in the spool once all committed", n)
			}
			if fi, _ := os.Stat(filepath.Join(dir, spoolFile)); fi.Size() != 0 {
				t.Errorf("the spool holds %d bytes once all committed", fi.Size())
			}
		})
	}
}

// newSpool opens a spool in a new directory.
func newSpool(t *testing.T) (string, *Spool) {
	t.Helper()
	dir := t.TempDir()
	sp, err := OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, sp
}

// newSyncedSpool is newSpool with SyncWrites on (storage.spool_sync).
func newSyncedSpool(t *testing.T) (string, *Spool) {
	t.Helper()
	dir, sp := newSpool(t)
	if err := sp.SyncWrites(); err != nil {
		t.Fatal(err)
	}
	return dir, sp
}

// spooled is how many writes the spool in dir would give a new start.
func spooled(t *testing.T, dir string) int {
	t.Helper()
	return len(spooledOps(t, dir))
}

// spooledOps reads the writes in a spool's file that are not marked done.
func spooledOps(t *testing.T, dir string) []Op {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, spoolFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ops, err := readSpool(f)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// TestWritesStillFailingAtCloseStayInTheSpool: without a hand-over (or with one that fails) a
// store closing on a failing database keeps its writes in the spool, not dropped, and the next
// start writes them.
func TestWritesStillFailingAtCloseStayInTheSpool(t *testing.T) {
	for _, handOver := range []bool{false, true} {
		t.Run(fmt.Sprint("hand-over failing ", handOver), func(t *testing.T) {
			dir := t.TempDir()
			sp, err := OpenSpool(dir)
			if err != nil {
				t.Fatal(err)
			}
			var c counters
			var logs syncbuf.Buffer
			o := c.opts(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Spool: sp, Logger: jsonLogger(&logs), CommitTimeout: time.Millisecond, CloseTimeout: 20 * time.Millisecond})
			if handOver {
				h := handOffs{err: errors.New("redis: connection refused")}
				o = h.opts(o)
			}
			s := New(o)
			ctx := context.Background()
			s.Insert(ctx, record("m1", "acme", "p", "pm1", t0))
			s.Insert(ctx, record("m2", "acme", "p", "pm2", t0))
			s.Close()
			if _, _, dropped := c.get(); dropped != 0 {
				t.Errorf("%d writes dropped at close with a spool", dropped)
			}
			if !strings.Contains(logs.String(), `"msg":"message log writes kept in the spool for the next start`) {
				t.Errorf("keeping them was not logged: %s", logs.String())
			}
			sp, err = OpenSpool(dir)
			if err != nil {
				t.Fatal(err)
			}
			m := NewMemory()
			s = New(Options{Backend: m, Spool: sp})
			s.Flush(ctx)
			for _, id := range []string{"m1", "m2"} {
				if r, err := m.Get(ctx, "acme", id); err != nil || r.ProviderMessageID != "p"+id {
					t.Errorf("%s not written from the spool: %+v %v", id, r, err)
				}
			}
			s.Close()
		})
	}
}

// TestAHandOffEmptiesTheSpool: writes handed over at Close are another replica's to write: the
// spool keeps none of them, or both would be written.
func TestAHandOffEmptiesTheSpool(t *testing.T) {
	dir, sp := newSpool(t)
	var h handOffs
	s := New(h.opts(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Spool: sp, CommitTimeout: time.Millisecond, CloseTimeout: 20 * time.Millisecond}))
	s.Insert(context.Background(), record("m1", "acme", "p", "pm1", t0))
	s.Close()
	if h.n != 1 {
		t.Fatalf("handed over %d, want 1", h.n)
	}
	if n := spooled(t, dir); n != 0 {
		t.Errorf("%d handed-over writes still in the spool", n)
	}
}

// TestASpoolCutShortKeepsItsWholeFrames: a kill in the middle of a frame, or a frame damaged on
// disk, ends the file there: the frames before it are read back, and the file is cut after them
// so that what is added next is read too.
func TestASpoolCutShortKeepsItsWholeFrames(t *testing.T) {
	dir, sp := newSpool(t)
	first := []Op{{Insert: record("m1", "acme", "p", "pm1", t0)}, {Insert: record("m2", "acme", "p", "pm2", t0)}}
	if err := sp.add(first); err != nil {
		t.Fatal(err)
	}
	whole := sp.size
	if err := sp.add([]Op{{Insert: record("m3", "acme", "p", "pm3", t0)}}); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	path := filepath.Join(dir, spoolFile)
	raw, _ := os.ReadFile(path)

	for name, damaged := range map[string][]byte{
		"cut short": raw[:len(raw)-3],
		"a flipped byte": func() []byte {
			b := append([]byte(nil), raw...)
			b[len(b)-10] ^= 0x40
			return b
		}(),
		"a length of garbage": append(append([]byte(nil), raw[:whole]...), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0),
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(path, damaged, 0o600)
			sp, err := OpenSpool(dir)
			if err != nil {
				t.Fatal(err)
			}
			if sp.Recovered() != 2 {
				t.Errorf("recovered %d writes, want the 2 before the damage", sp.Recovered())
			}
			if err := sp.add([]Op{{Insert: record("m4", "acme", "p", "pm4", t0)}}); err != nil {
				t.Fatal(err)
			}
			sp.Close()
			if n := spooled(t, dir); n != 3 {
				t.Errorf("%d writes read after one added behind the cut, want 3", n)
			}
		})
	}
}

// TestASpoolOfAnotherFormatIsMovedAside: a spool this build cannot read (a newer build's) is
// not written over nor thrown away: it is moved aside, named in the error.
func TestASpoolOfAnotherFormatIsMovedAside(t *testing.T) {
	dir, sp := newSpool(t)
	var buf bytes.Buffer
	frame(&buf, spoolVersion, []byte{spoolFormat + 1})
	if err := sp.append(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	_, err := OpenSpool(dir)
	if !errors.Is(err, ErrHandoffFormat) || !strings.Contains(err.Error(), ".unreadable") {
		t.Fatalf("open of an unreadable spool: %v", err)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, spoolFile+".*.unreadable"))
	if len(aside) != 1 {
		t.Errorf("moved aside: %q", aside)
	}
	sp, err = OpenSpool(dir)
	if err != nil || sp.Recovered() != 0 {
		t.Fatalf("the next open: %v", err)
	}
	sp.Close()
}

// TestASpoolStaysBoundedThroughALongOutage: a full retry buffer that keeps pushing its oldest
// writes out does not grow its spool beyond twice the buffer (and some): the file is written
// again with the buffer alone. Both are reckoned in weight (opWeight), not in writes: with
// records that carry a long callbackData, as the Infobip-compatible API's may, a bound counted in
// writes would let the file grow several times larger.
func TestASpoolStaysBoundedThroughALongOutage(t *testing.T) {
	// The heavy records' case is shorter (it is slow under -race): 4,000 writes of weight 3 are
	// twice the bound's weight, had the file grown without it.
	for _, tc := range []struct{ pad, writes int }{{0, 20000}, {3000, 4000}} {
		pad, writes := tc.pad, tc.writes
		t.Run(fmt.Sprint("callbackData of ", pad, " bytes"), func(t *testing.T) {
			dir, sp := newSpool(t)
			s := New(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Spool: sp, RetryBuffer: 1024, CommitTimeout: time.Microsecond, CloseTimeout: time.Millisecond, HandOff: func(context.Context, [][]byte) error { return nil }})
			ctx := context.Background()
			most := 0
			for i := range writes {
				r := record(fmt.Sprint("m", i), "beta", "p", fmt.Sprint("pm", i), t0)
				r.CallbackData = strings.Repeat("c", pad)
				s.Insert(ctx, r)
				if i%1000 == 999 {
					s.Flush(ctx)
					most = max(most, spooledWeight(t, dir))
				}
			}
			s.Flush(ctx)
			if most > 2*1024+spoolSlack {
				t.Errorf("the spool held writes of weight up to %d for a buffer of 1024", most)
			}
			if ops := spooledOps(t, dir); len(ops) < s.Backlog() || ops[len(ops)-1].Insert.ID != fmt.Sprint("m", writes-1) {
				t.Errorf("the spool lost the buffer's writes: %d in it, %d in the buffer", len(ops), s.Backlog())
			}
			s.Close()
		})
	}
}

// spooledWeight is what the writes in a spool's file that are not marked done weigh (opWeight).
func spooledWeight(t *testing.T, dir string) int {
	t.Helper()
	ops, n := spooledOps(t, dir), 0
	for i := range ops {
		n += opWeight(&ops[i])
	}
	return n
}

// TestASpoolThatFailsLeavesTheWritesInMemory: a spool whose file cannot be written says so
// (once a minute) and the writer goes on as without it: the writes wait in memory and are
// written when the database recovers.
func TestASpoolThatFailsLeavesTheWritesInMemory(t *testing.T) {
	_, sp := newSpool(t)
	sp.f.Close() // every write to it fails now
	var logs syncbuf.Buffer
	m := NewMemory()
	fb := &flaky{Backend: m, down: true}
	var failures atomic.Int32
	s := New(Options{Backend: fb, Spool: sp, Logger: jsonLogger(&logs), CommitTimeout: time.Millisecond, OnSpoolFailure: func() { failures.Add(1) }})
	ctx := context.Background()
	s.Insert(ctx, record("m1", "acme", "p", "pm1", t0))
	s.Flush(ctx)
	s.Insert(ctx, record("m2", "acme", "p", "pm2", t0))
	s.Flush(ctx)
	if n := strings.Count(logs.String(), "message log spool failed"); n != 1 {
		t.Errorf("%d lines of the spool's failure, want 1: %s", n, logs.String())
	}
	if n := failures.Load(); n < 1 { // the metric smsgate_message_log_spool_failures_total
		t.Errorf("%d spool failures counted, want at least 1", n)
	}
	fb.set(false)
	s.Flush(ctx)
	for _, id := range []string{"m1", "m2"} {
		if _, err := m.Get(ctx, "acme", id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	s.Close()
}

// TestAWriteIsSpooledBeforeItIsAnswered: a write that arrives while the database fails is in the
// spool before Insert gives up waiting for its commit (when its send is answered), however long
// the writer's backoff before its next try: a kill right after the answer finds it there.
func TestAWriteIsSpooledBeforeItIsAnswered(t *testing.T) {
	dir, sp := newSpool(t)
	s := New(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Spool: sp, CloseTimeout: time.Millisecond})
	ctx := context.Background()
	if err := s.Insert(ctx, record("m0", "acme", "p", "pm0", t0)); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("insert on a failing database: %v", err)
	}
	if n := spooled(t, dir); n != 1 {
		t.Errorf("%d writes in the spool after the first failed try, want 1", n)
	}
	time.Sleep(800 * time.Millisecond) // the writer's backoff grows to 400 ms and more
	for i := 1; i <= 3; i++ {
		s.Insert(ctx, record(fmt.Sprint("m", i), "acme", "p", fmt.Sprint("pm", i), t0))
		if n := spooled(t, dir); n != i+1 {
			t.Errorf("%d writes in the spool once write %d was answered, want %d", n, i, i+1)
		}
	}
	s.Close()
}

// TestASyncedSpoolAnswersAWriteOnceItIsOnTheDisk: with SyncWrites (storage.spool_sync) a write
// that waits for the database is answered only once the spool holding it has been synced, and
// writes during the backoff each are; without it the spool is never synced.
func TestASyncedSpoolAnswersAWriteOnceItIsOnTheDisk(t *testing.T) {
	var syncs atomic.Int32
	release := make(chan struct{})
	old := syncFile
	t.Cleanup(func() { syncFile = old })
	syncFile = func(f *os.File) error {
		syncs.Add(1)
		<-release
		return f.Sync()
	}
	ctx := context.Background()

	_, plain := newSpool(t)
	s := New(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Spool: plain, CloseTimeout: time.Millisecond})
	if err := s.Insert(ctx, record("m0", "acme", "p", "pm0", t0)); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("insert on a failing database: %v", err)
	}
	s.Close()
	if n := syncs.Load(); n != 0 {
		t.Fatalf("a spool without SyncWrites was synced %d times", n)
	}

	dir, sp := newSyncedSpool(t)
	s = New(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Spool: sp, CloseTimeout: time.Millisecond})
	defer s.Close()
	released := false
	defer func() { // before Close, which would wait for the held sync
		if !released {
			close(release)
		}
	}()
	answered := make(chan error, 1)
	go func() { answered <- s.Insert(ctx, record("m1", "acme", "p", "pm1", t0)) }()
	for deadline := time.Now().Add(10 * time.Second); syncs.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the spool was never synced")
		}
	}
	select {
	case err := <-answered:
		t.Fatalf("the write was answered (%v) while its spool's sync had not returned", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	released = true
	if err := <-answered; !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("insert on a failing database: %v", err)
	}
	time.Sleep(800 * time.Millisecond) // into the writer's backoff
	before := syncs.Load()
	s.Insert(ctx, record("m2", "acme", "p", "pm2", t0))
	if n := syncs.Load() - before; n != 1 {
		t.Errorf("a write during the backoff: %d syncs before its answer, want 1", n)
	}
	if n := spooled(t, dir); n != 2 {
		t.Errorf("%d writes in the spool, want 2", n)
	}
}

// TestWritesAppliedAgainLeaveTheRecordWhereItWas: a write the database took just before a kill,
// before the spool marked it done (or before a hand-over's chunk left Redis), is applied again,
// with the writes that followed it. On every backend that moves no record backwards, loses no
// report and charges no price twice: a record already there is kept, and a report following
// its insert again in the same batch reaches it.
func TestWritesAppliedAgainLeaveTheRecordWhereItWas(t *testing.T) {
	again := func(ops ...Op) []Op { // as the spool and Adopt give them back
		chunks, err := encodeOps(ops)
		if err != nil {
			t.Fatal(err)
		}
		out, err := decodeOps(chunks[0])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	backends(t, func(t *testing.T, open func() Backend) {
		b := open()
		defer b.Close()
		ctx := context.Background()
		rec := record("m1", "acme", "p", "pm1", t0)
		rep := &gateway.DeliveryReport{Provider: "p", ProviderMessageID: "pm1", Status: gateway.StatusDelivered, Price: 0.05, Currency: "EUR"}
		charged := 0
		for i, batch := range [][]Op{
			{{Insert: rec}},                         // the insert committed, then the kill
			again(Op{Insert: rec}, Op{Report: rep}), // the insert again, with the report behind it
			again(Op{Insert: rec}, Op{Report: rep}), // both again
			again(Op{Insert: rec}),                  // the insert alone
		} {
			charges, err := b.Apply(ctx, batch)
			if err != nil {
				t.Fatalf("batch %d: %v", i, err)
			}
			charged += len(charges)
		}
		got, err := b.Get(ctx, "acme", "m1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != gateway.StatusDelivered || got.Price != 0.05 || charged != 1 {
			t.Errorf("after the writes applied again: status %s, price %v, %d charges; want delivered, 0.05, 1", got.Status, got.Price, charged)
		}
	})
}

// FuzzReadSpool: no file left in a spool directory panics the start that reads it; it is read
// (up to what is damaged) or refused as of another format.
func FuzzReadSpool(f *testing.F) {
	dir := f.TempDir()
	sp, err := OpenSpool(dir)
	if err != nil {
		f.Fatal(err)
	}
	ops := []Op{{Insert: record("m1", "acme", "p", "pm1", t0)},
		{Report: &gateway.DeliveryReport{Provider: "p", ProviderMessageID: "pm1", Status: gateway.StatusDelivered, Price: 0.01, Currency: "EUR"}},
		{Release: "m1"}}
	if err := sp.add(ops[:2]); err != nil {
		f.Fatal(err)
	}
	if err := sp.done(1); err != nil {
		f.Fatal(err)
	}
	if err := sp.add(ops[2:]); err != nil {
		f.Fatal(err)
	}
	sp.Close()
	raw, err := os.ReadFile(filepath.Join(dir, spoolFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(raw[:len(raw)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, file []byte) {
		ops, err := readSpool(bytes.NewReader(file))
		if err != nil && !errors.Is(err, ErrHandoffFormat) {
			t.Fatalf("readSpool: %v, want ErrHandoffFormat", err)
		}
		for _, op := range ops {
			if op.Insert == nil && op.Report == nil && op.Release == "" || !op.again || op.seq == 0 {
				t.Fatalf("readSpool gave %+v", op)
			}
		}
	})
}

// TestWritesAnsweredDuringAHangingTryAreSpooled: a try that hangs on a database that stopped
// answering holds the writer up to write_timeout while sends are answered after commit_timeout;
// the writes they answered are in the spool meanwhile, the one being tried and those arriving
// behind it (a Flush among them, which is no write), so a kill during the hang loses none. Once
// the database answers, they are written in their order and the spool is emptied.
func TestWritesAnsweredDuringAHangingTryAreSpooled(t *testing.T) {
	dir, sp := newSpool(t)
	m := NewMemory()
	h := &flaky{Backend: m, hold: make(chan struct{})}
	s := New(Options{Backend: h, Spool: sp, CommitTimeout: 20 * time.Millisecond, WriteTimeout: time.Minute, CloseTimeout: time.Millisecond})
	defer s.Close()
	released := false
	defer func() { // before Close, which would wait for the hanging try
		if !released {
			close(h.hold)
		}
	}()
	ctx := context.Background()
	for i := range 5 {
		if err := s.Insert(ctx, record(fmt.Sprint("m", i), "acme", "p", fmt.Sprint("pm", i), t0)); !errors.Is(err, ErrNotCommitted) {
			t.Fatalf("insert %d during the hang: %v", i, err)
		}
		// In the file once answered, not a moment later: the first write's sender started
		// waiting before its try did, and was answered before the watcher of the try spooled it.
		if n := spooled(t, dir); n != i+1 {
			t.Fatalf("%d writes in the spool once write %d was answered during the hang, want %d", n, i, i+1)
		}
	}
	s.Report(ctx, &gateway.DeliveryReport{Provider: "p", ProviderMessageID: "pm2", Status: gateway.StatusDelivered})
	if n := spooled(t, dir); n != 6 {
		t.Fatalf("%d writes in the spool once the report was answered, want 6", n)
	}
	// A Flush during the hang waits behind the try; its barrier is no write, and the spool holding
	// one would be unreadable at the next start.
	fctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	s.Flush(fctx)
	cancel()
	s.Insert(ctx, record("m5", "acme", "p", "pm5", t0))
	if n := spooled(t, dir); n != 7 {
		t.Fatalf("%d writes in the spool once a Flush and one more write went by, want 7", n)
	}
	close(h.hold) // the database answers
	released = true
	written := func() bool { r, _ := m.Get(ctx, "acme", "m2"); return r != nil && r.Status == gateway.StatusDelivered }
	for start := time.Now(); !written(); time.Sleep(time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%d writes still wait once the database answers", s.Backlog())
		}
	}
	s.Flush(ctx)
	for i := range 6 {
		if _, err := m.Get(ctx, "acme", fmt.Sprint("m", i)); err != nil {
			t.Errorf("m%d: %v", i, err)
		}
	}
	if r, _ := m.Get(ctx, "acme", "m2"); r == nil || r.Status != gateway.StatusDelivered {
		t.Errorf("the report behind its record: %+v", r)
	}
	if n := spooled(t, dir); n != 0 {
		t.Errorf("%d writes left in the spool once written", n)
	}
}

// TestWritesTakenDuringASlowTryThatCommitsAreKept: a try of a full buffer that runs past
// commit_timeout and then commits: the writes the watcher took meanwhile join the buffer after the
// committed batch has left it. Joining before, they pushed the batch's oldest out (counted as
// dropped, though committed) and took their place in the batch's bookkeeping: marked committed,
// never written.
func TestWritesTakenDuringASlowTryThatCommitsAreKept(t *testing.T) {
	_, sp := newSpool(t)
	m := NewMemory()
	b := &flaky{Backend: m, down: true, hold: make(chan struct{})}
	var c counters
	s := New(c.opts(Options{Backend: b, Spool: sp, RetryBuffer: 8, CommitTimeout: 10 * time.Millisecond, WriteTimeout: time.Minute, CloseTimeout: time.Millisecond}))
	defer s.Close()
	ctx := context.Background()
	for i := range 8 { // a full buffer while the database fails
		s.Insert(ctx, record(fmt.Sprint("a", i), "acme", "p", fmt.Sprint("pa", i), t0))
	}
	b.set(false)
	go s.Flush(ctx) // a try of all eight, which hangs
	for start := time.Now(); !b.held(); time.Sleep(time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("no try began")
		}
	}
	for i := range 4 { // taken by the watcher while the try hangs
		s.Insert(ctx, record(fmt.Sprint("b", i), "acme", "p", fmt.Sprint("pb", i), t0))
	}
	close(b.hold) // the try commits
	all := func() bool {
		recs, _ := m.List(ctx, Query{Tenant: "acme", Limit: 100})
		return len(recs) == 12
	}
	for start := time.Now(); !all(); time.Sleep(time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			recs, _ := m.List(ctx, Query{Tenant: "acme", Limit: 100})
			_, _, dropped := c.get()
			t.Fatalf("%d of 12 records written, %d counted dropped", len(recs), dropped)
		}
	}
	if _, _, dropped := c.get(); dropped != 0 {
		t.Errorf("%d writes counted dropped, none was", dropped)
	}
}

// spoolOps are n inserts named prefix0, prefix1, ...
func spoolOps(prefix string, n int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		ops[i] = Op{Insert: record(fmt.Sprint(prefix, i), "acme", "p", fmt.Sprint("p", prefix, i), t0)}
	}
	return ops
}

// TestASpoolIsReadByItsNumbersAndMarks: what a start makes of the frames a kill, the disk or
// another build leaves. A mark inside a frame of several writes (or inside the second frame of
// one add) keeps the writes after it; a lower mark after a higher one takes nothing back; a tail
// of zeros (a file the kernel extended before its data reached the disk) ends the file like any
// damage; a version frame or a mark of the wrong length is a spool of another format, moved aside.
func TestASpoolIsReadByItsNumbersAndMarks(t *testing.T) {
	recovered := func(t *testing.T, dir string) []string {
		t.Helper()
		sp, err := OpenSpool(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		var ids []string
		for _, op := range sp.recovered {
			ids = append(ids, op.Insert.ID)
		}
		return ids
	}
	t.Run("a mark inside a frame", func(t *testing.T) {
		dir, sp := newSpool(t)
		if err := sp.add(spoolOps("w", 600)); err != nil { // two frames: 512 writes and 88
			t.Fatal(err)
		}
		if err := sp.done(550); err != nil { // the writes are numbered from 1: w0 is 1, w549 550
			t.Fatal(err)
		}
		sp.Close()
		ids := recovered(t, dir)
		if len(ids) != 50 || ids[0] != "w550" || ids[49] != "w599" {
			t.Errorf("recovered %d writes (%v ... ), want w550 to w599", len(ids), ids[:min(len(ids), 3)])
		}
	})
	t.Run("the number a write was given", func(t *testing.T) { // as the writer marks what committed
		dir, sp := newSpool(t)
		ops := spoolOps("w", 3)
		if err := sp.add(ops); err != nil {
			t.Fatal(err)
		}
		sp.done(ops[1].seq)
		sp.Close()
		if ids := recovered(t, dir); !slices.Equal(ids, []string{"w2"}) {
			t.Errorf("recovered %v once w1 was marked, want [w2]", ids)
		}
	})
	t.Run("a lower mark after a higher one", func(t *testing.T) {
		dir, sp := newSpool(t)
		if err := sp.add(spoolOps("w", 10)); err != nil {
			t.Fatal(err)
		}
		sp.done(8)
		sp.done(3)
		sp.Close()
		if ids := recovered(t, dir); !slices.Equal(ids, []string{"w8", "w9"}) {
			t.Errorf("recovered %v, want [w8 w9]", ids)
		}
	})
	t.Run("a tail of zeros", func(t *testing.T) {
		dir, sp := newSpool(t)
		if err := sp.add(spoolOps("w", 2)); err != nil {
			t.Fatal(err)
		}
		sp.Close()
		f, err := os.OpenFile(filepath.Join(dir, spoolFile), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(make([]byte, 4096))
		f.Close()
		if ids := recovered(t, dir); !slices.Equal(ids, []string{"w0", "w1"}) {
			t.Errorf("recovered %v, want [w0 w1]", ids)
		}
	})
	for name, bad := range map[string]func(b *bytes.Buffer){
		"a version frame of two bytes": func(b *bytes.Buffer) { frame(b, spoolVersion, []byte{spoolFormat, 0}) },
		"a mark of four bytes": func(b *bytes.Buffer) {
			frame(b, spoolVersion, []byte{spoolFormat})
			frame(b, spoolDone, []byte{0, 0, 0, 1})
		},
		"a frame of writes without a stream": func(b *bytes.Buffer) {
			frame(b, spoolVersion, []byte{spoolFormat})
			frame(b, spoolWrites, binary.BigEndian.AppendUint64(nil, 1))
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir, sp := newSpool(t)
			var b bytes.Buffer
			bad(&b)
			if err := sp.append(b.Bytes()); err != nil {
				t.Fatal(err)
			}
			sp.Close()
			if _, err := OpenSpool(dir); !errors.Is(err, ErrHandoffFormat) || !strings.Contains(err.Error(), ".unreadable") {
				t.Errorf("open: %v, want the file moved aside as of another format", err)
			}
		})
	}
}

// failSyncs has syncFile fail the calls fails names (counted from 1), as a full disk does, until
// the test ends.
func failSyncs(t *testing.T, fails func(call int32) bool) {
	var calls atomic.Int32
	old := syncFile
	t.Cleanup(func() { syncFile = old })
	syncFile = func(f *os.File) error {
		if fails(calls.Add(1)) {
			return errors.New("no space left on device (simulated)")
		}
		return f.Sync()
	}
}

// TestASpoolThatFailedIsWrittenAnewAfterItsPause: a spool whose write failed (its sync, here) is
// cut back to its whole frames and left alone for spoolPause: the writes answered meanwhile are
// in memory only. The first write after the pause has the file written anew with the whole
// buffer; a Close during the pause tries it at once rather than drop what it holds.
func TestASpoolThatFailedIsWrittenAnewAfterItsPause(t *testing.T) {
	ctx := context.Background()
	open := func(t *testing.T) (string, *Store, *atomic.Int32) {
		dir, sp := newSyncedSpool(t)
		var failures atomic.Int32
		s := New(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Spool: sp, CommitTimeout: time.Millisecond, CloseTimeout: time.Millisecond,
			OnSpoolFailure: func() { failures.Add(1) }})
		return dir, s, &failures
	}
	t.Run("the next write after the pause", func(t *testing.T) {
		failSyncs(t, func(call int32) bool { return call == 1 })
		dir, s, failures := open(t)
		defer s.Close()
		s.Insert(ctx, record("m1", "acme", "p", "pm1", t0))
		s.Insert(ctx, record("m2", "acme", "p", "pm2", t0))
		if n := spooled(t, dir); n != 0 || failures.Load() != 1 {
			t.Errorf("%d writes in the spool and %d failures during the pause, want 0 and 1", n, failures.Load())
		}
		time.Sleep(spoolPause + 100*time.Millisecond)
		s.Insert(ctx, record("m3", "acme", "p", "pm3", t0))
		if n := spooled(t, dir); n != 3 || failures.Load() != 1 {
			t.Errorf("%d writes in the spool and %d failures after the pause, want 3 and 1", n, failures.Load())
		}
	})
	t.Run("a directory not synced after the file was written anew", func(t *testing.T) {
		// The first add fails (its file's sync), and the file written anew after the pause has its
		// directory's sync fail: the new name may not be on the disk, so the spool is written anew
		// again at the next write after the next pause, and its directory synced again.
		failSyncs(t, func(call int32) bool { return call == 1 })
		var dirSyncs atomic.Int32
		old := syncSpoolDir
		t.Cleanup(func() { syncSpoolDir = old })
		syncSpoolDir = func(dir string) error {
			if dirSyncs.Add(1) == 2 { // 1 is SyncWrites'
				return errors.New("input/output error (simulated)")
			}
			return old(dir)
		}
		dir, s, failures := open(t)
		defer s.Close()
		for i := range 3 {
			if i > 0 {
				time.Sleep(spoolPause + 100*time.Millisecond)
			}
			s.Insert(ctx, record(fmt.Sprint("m", i), "acme", "p", fmt.Sprint("pm", i), t0))
		}
		if n := spooled(t, dir); n != 3 || failures.Load() != 2 || dirSyncs.Load() != 3 {
			t.Errorf("%d writes in the spool, %d failures and %d syncs of its directory, want 3, 2 and 3", n, failures.Load(), dirSyncs.Load())
		}
	})
	t.Run("a close during the pause", func(t *testing.T) {
		failSyncs(t, func(call int32) bool { return call == 1 })
		dir, s, _ := open(t)
		s.Insert(ctx, record("m1", "acme", "p", "pm1", t0))
		s.Close()
		if n := spooled(t, dir); n != 1 {
			t.Errorf("%d writes kept in the spool at a close during its pause, want 1", n)
		}
	})
}

// TestASpoolThatKeepsFailingDropsLoudlyAtClose: a spool that fails every write is tried again
// after each pause, logged once a minute (counted each time), and at Close, when it cannot take
// the buffer either (a file written anew must be synced before it replaces the old one), what
// is left is dropped and said to be.
func TestASpoolThatKeepsFailingDropsLoudlyAtClose(t *testing.T) {
	failSyncs(t, func(int32) bool { return true })
	_, sp := newSyncedSpool(t)
	var logs syncbuf.Buffer
	var failures, dropped atomic.Int32
	s := New(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Spool: sp, CommitTimeout: time.Millisecond, CloseTimeout: time.Millisecond,
		Logger: jsonLogger(&logs), OnSpoolFailure: func() { failures.Add(1) }, OnDrop: func(n int) { dropped.Add(int32(n)) }})
	ctx := context.Background()
	s.Insert(ctx, record("m1", "acme", "p", "pm1", t0))
	time.Sleep(spoolPause + 100*time.Millisecond)
	s.Insert(ctx, record("m2", "acme", "p", "pm2", t0))
	s.Close()
	out := logs.String()
	if n := strings.Count(out, "message log spool failed"); n != 1 {
		t.Errorf("%d lines of the spool's failures, want 1 (a minute apart): %s", n, out)
	}
	if n := failures.Load(); n != 3 {
		t.Errorf("%d spool failures counted, want 3 (a write, a write after the pause, the close)", n)
	}
	if !strings.Contains(out, "could not be kept in the spool either") || dropped.Load() != 2 {
		t.Errorf("%d writes counted dropped, want 2, and the close said so: %s", dropped.Load(), out)
	}
}

// TestAWriteCommittedInTimeIsNotSpooled: while the database commits within commit_timeout, the
// spool is not written (not one sync of a synced spool) and each write is answered committed: the
// watch of a slow try ends with the try, not at commit_timeout.
func TestAWriteCommittedInTimeIsNotSpooled(t *testing.T) {
	var syncs atomic.Int32
	failSyncs(t, func(int32) bool { syncs.Add(1); return false })
	dir, sp := newSyncedSpool(t)
	s := New(Options{Backend: NewMemory(), Spool: sp, CommitTimeout: time.Second})
	ctx := context.Background()
	for i := range 3 {
		if err := s.Insert(ctx, record(fmt.Sprint("m", i), "acme", "p", fmt.Sprint("pm", i), t0)); err != nil {
			t.Errorf("m%d: %v, want committed", i, err)
		}
	}
	s.Flush(ctx)
	if n := syncs.Load(); n != 0 || spooled(t, dir) != 0 {
		t.Errorf("the spool was synced %d times and holds %d writes, want none: the database took each in time", n, spooled(t, dir))
	}
	s.Close()
}

// TestAWriteSpooledDuringAHangIsSpooledOnce: a write the watcher of a hanging try put in the
// spool keeps its number once the try gives up (write_timeout), so the tries after it do not add
// it again: a long outage of a database that hangs would otherwise grow the file by each write at
// every try, and the next start would read it several times.
func TestAWriteSpooledDuringAHangIsSpooledOnce(t *testing.T) {
	dir, sp := newSpool(t)
	m := NewMemory()
	h := &flaky{Backend: m, hold: make(chan struct{})}
	s := New(Options{Backend: h, Spool: sp, CommitTimeout: 10 * time.Millisecond, WriteTimeout: 50 * time.Millisecond, CloseTimeout: time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	if err := s.Insert(ctx, record("m0", "acme", "p", "pm0", t0)); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("insert during the hang: %v", err)
	}
	within(t, 5*time.Second, "three tries", func() bool { return h.count() >= 3 })
	if n := spooled(t, dir); n != 1 {
		t.Errorf("%d writes in the spool after two tries gave up, want the 1 answered", n)
	}
	close(h.hold)
	s.Flush(ctx)
	if _, err := m.Get(ctx, "acme", "m0"); err != nil || spooled(t, dir) != 0 {
		t.Errorf("once the database answers: %v, %d writes left in the spool", err, spooled(t, dir))
	}
}

// TestASpoolThatFailsPartWayDropsLoudlyAtClose: at Close, a buffer whose first writes are in
// the spool and whose last are not (the spool failed after taking the first) is not kept: what
// is left is dropped and said to be, as when the spool took none of it. Only a buffer wholly in
// the spool is left there for the next start.
func TestASpoolThatFailsPartWayDropsLoudlyAtClose(t *testing.T) {
	failSyncs(t, func(call int32) bool { return call >= 2 }) // m1 is in the file; m2, and the close's rewrite, fail
	_, sp := newSyncedSpool(t)
	var logs syncbuf.Buffer
	var dropped atomic.Int32
	s := New(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Spool: sp, CommitTimeout: time.Millisecond, CloseTimeout: time.Millisecond,
		Logger: jsonLogger(&logs), OnDrop: func(n int) { dropped.Add(int32(n)) }})
	ctx := context.Background()
	s.Insert(ctx, record("m1", "acme", "p", "pm1", t0))
	s.Insert(ctx, record("m2", "acme", "p", "pm2", t0))
	s.Close()
	out := logs.String()
	if !strings.Contains(out, "could not be kept in the spool either") || strings.Contains(out, "kept in the spool for the next start") || dropped.Load() != 2 {
		t.Errorf("%d writes counted dropped, want 2, and the close said so: %s", dropped.Load(), out)
	}
}

// TestASpoolThatFailsDuringAHangingTryIsLeftAlone: the writes answered during a try that hangs
// are added to the spool one by one; once an add fails, the rest of the hang leaves the spool
// alone (its pause) instead of failing again for each write, whether the first add failed or a
// later one.
func TestASpoolThatFailsDuringAHangingTryIsLeftAlone(t *testing.T) {
	for name, fails := range map[string]func(int32) bool{
		"the first add":  func(int32) bool { return true },
		"the second add": func(call int32) bool { return call >= 2 },
	} {
		t.Run(name, func(t *testing.T) {
			failSyncs(t, fails)
			_, sp := newSyncedSpool(t)
			var failures atomic.Int32
			h := &flaky{Backend: NewMemory(), hold: make(chan struct{})}
			s := New(Options{Backend: h, Spool: sp, CommitTimeout: 20 * time.Millisecond, WriteTimeout: time.Minute, CloseTimeout: time.Millisecond,
				OnSpoolFailure: func() { failures.Add(1) }})
			ctx := context.Background()
			for i := range 5 {
				if err := s.Insert(ctx, record(fmt.Sprint("m", i), "acme", "p", fmt.Sprint("pm", i), t0)); !errors.Is(err, ErrNotCommitted) {
					t.Errorf("insert %d during the hang: %v", i, err)
				}
			}
			if n := failures.Load(); n != 1 {
				t.Errorf("%d spool failures counted during the hang, want 1", n)
			}
			close(h.hold)
			s.Close()
		})
	}
}
