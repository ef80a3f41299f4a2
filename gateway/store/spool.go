package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The spool: writes waiting for the database, kept in a local file.
//
// While the database fails, the writes of answered sends wait in the writer's memory (the retry
// buffer). Close hands them over (Options.HandOff) or drops them, but a process killed outright
// (SIGKILL, the kernel's out-of-memory killer, a liveness probe that gave up) does neither: it
// loses them. With a spool (OpenSpool, Options.Spool), the writer appends each write it keeps
// for another try to a file, marks in it each batch of them that commits, and empties it once
// the buffer is written; a process started on the same directory reads the file back and
// writes what it holds first (Spool.Recovered). What survives is what the kernel took: the file
// is written, not synced, so it outlives the process, not the machine, unless SyncWrites asked
// for each write to be synced before it is answered (storage.spool_sync).
//
// The file is a sequence of frames: a 4-byte length, a 4-byte CRC-32C, then what both cover, a
// kind and its body. The first is spoolVersion (the format, one byte); then spoolWrites frames (a
// first number, then the next gob message of one stream that runs through the file: the writes,
// numbered from it, of one add) and spoolDone frames (every write numbered up to the one given has
// committed, or was given up). One stream, not a chunk with its own type descriptions per frame:
// during an outage writes arrive one by one, and a frame for each with its own descriptions took
// four times the bytes and ten times the CPU. A frame cut short or damaged (a kill in the middle
// of a write) ends the file there; a file that opens with another version is moved aside.
//
// A write marked done is not written again. One that committed just before a kill, before its
// mark, is written again at the next start, as a write handed over can be (handoff.go): an insert
// of a record already there leaves it as it is, and a report never moves a record backwards nor
// charges its price twice.

// Kinds of spool frames.
const (
	spoolVersion byte = 'V'
	spoolWrites  byte = 'W'
	spoolDone    byte = 'D'
)

// spoolFormat is the version frame's body.
const spoolFormat byte = 1

// spoolFile is the spool's data file in its directory; spoolLock the file its owner locks.
const (
	spoolFile = "writes"
	spoolLock = "lock"
)

// ErrSpoolInUse is OpenSpool's error for a directory another process holds.
var ErrSpoolInUse = errors.New("the spool directory is in use by another process")

// errLocked is lockFile's error for a file another process holds locked.
var errLocked = errors.New("locked")

var spoolCRC = crc32.MakeTable(crc32.Castagnoli)

// Spool is a directory where the writer keeps the writes that wait for the database.
type Spool struct {
	dir  string
	lock *os.File
	f    *os.File
	// size is the file's length after its last whole frame.
	size int64
	// next is the number the next spooled write gets; written is what the writes in the file
	// count (opWeight), done or not.
	next, written uint64
	// enc writes the file's stream into encoded; a frame that failed to be appended leaves it
	// ahead of the file, and broken set: the file must be written anew (rewrite).
	enc     *gob.Encoder
	encoded *bytes.Buffer
	broken  bool
	// recovered is what the file held at open, in order, not yet done (the writer takes it);
	// recoveredN is its length.
	recovered  []Op
	recoveredN int
	// sync: each add is synced to the disk, and the directory when the file is made anew.
	sync bool
}

// syncFile syncs a spool file to the disk, and syncSpoolDir its directory (tests hold both).
var (
	syncFile     = (*os.File).Sync
	syncSpoolDir = syncDir
)

// SyncWrites has the spool sync to the disk each write it adds, before the writer answers it, and
// its directory whenever the file is made anew: what it holds then outlives the machine (a power
// cut, a kernel panic), not only the process. It syncs the directory at once, for the file made
// at OpenSpool.
func (sp *Spool) SyncWrites() error {
	sp.sync = true
	return syncSpoolDir(sp.dir)
}

// OpenSpool locks dir (creating it) and reads back the writes its file holds. A directory locked
// by another live process is ErrSpoolInUse; a file this build cannot read is moved aside (its
// name then ends in .unreadable) and named in the error, so that nothing is written over it.
func OpenSpool(dir string) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, spoolLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("%w: %s", ErrSpoolInUse, dir)
		}
		return nil, err
	}
	sp := &Spool{dir: dir, lock: lock}
	if err := sp.open(); err != nil {
		lock.Close()
		return nil, err
	}
	return sp, nil
}

// open reads the file back, then writes what it holds anew (a stream of its own, numbered from 1)
// or empties it.
func (sp *Spool) open() error {
	path := filepath.Join(sp.dir, spoolFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	ops, err := readSpool(f)
	if err != nil {
		f.Close()
		aside := fmt.Sprintf("%s.%d.unreadable", path, time.Now().UnixNano())
		if rerr := os.Rename(path, aside); rerr != nil {
			return fmt.Errorf("spool %s: %w (and it could not be moved aside: %s)", path, err, rerr.Error())
		}
		return fmt.Errorf("spool %s moved aside to %s: %w", path, aside, err)
	}
	sp.f = f
	sp.fresh()
	if len(ops) > 0 {
		err = sp.rewrite(ops) // renamed over the file: a kill meanwhile leaves it whole
	} else {
		err = f.Truncate(0)
	}
	if err != nil {
		sp.f.Close()
		return err
	}
	sp.recovered, sp.recoveredN = ops, len(ops)
	return nil
}

// readSpool reads a spool file: the writes not marked done, in order.
func readSpool(r io.Reader) ([]Op, error) {
	br := bufio.NewReader(r)
	var stream bytes.Buffer
	dec := gob.NewDecoder(&stream)
	var ops []Op
	var done uint64
	for i := 0; ; i++ {
		kind, body, ok := readFrame(br)
		if !ok {
			break
		}
		switch {
		case i == 0:
			if kind != spoolVersion || len(body) != 1 || body[0] != spoolFormat {
				return nil, fmt.Errorf("%w: a spool of another format", ErrHandoffFormat)
			}
		case kind == spoolDone && len(body) == 8:
			done = max(done, binary.BigEndian.Uint64(body))
		case kind == spoolWrites && len(body) > 8:
			stream.Write(body[8:])
			var chunk []Op
			if err := dec.Decode(&chunk); err != nil {
				return nil, fmt.Errorf("%w: %s", ErrHandoffFormat, err.Error())
			}
			if err := cleanOps(chunk); err != nil {
				return nil, err
			}
			first := binary.BigEndian.Uint64(body)
			for i := range chunk {
				chunk[i].seq = first + uint64(i)
			}
			ops = append(ops, chunk...)
		default:
			return nil, fmt.Errorf("%w: a spool frame of kind %q", ErrHandoffFormat, kind)
		}
	}
	return slices.DeleteFunc(ops, func(op Op) bool { return op.seq <= done }), nil
}

// readFrame reads one frame: its kind and its body; ok is false at the file's end or at a frame
// cut short or damaged.
func readFrame(br *bufio.Reader) (kind byte, body []byte, ok bool) {
	var head [8]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return 0, nil, false
	}
	size := binary.BigEndian.Uint32(head[:4])
	if size == 0 || size > maxSpoolFrame {
		return 0, nil, false
	}
	// Read into what grows with what is there: a damaged length allocates no more than the file.
	var buf bytes.Buffer
	if n, _ := io.CopyN(&buf, br, int64(size)); n < int64(size) || crc32.Checksum(buf.Bytes(), spoolCRC) != binary.BigEndian.Uint32(head[4:]) {
		return 0, nil, false
	}
	return buf.Bytes()[0], buf.Bytes()[1:], true
}

// maxSpoolFrame bounds a frame's length: maxBatch writes of the largest records the log cleans
// them to are far below it, and a length above it is damage.
const maxSpoolFrame = 64 << 20

// frame appends one frame of kind and body to b.
func frame(b *bytes.Buffer, kind byte, body ...[]byte) {
	n := 1
	for _, p := range body {
		n += len(p)
	}
	crc := crc32.Update(0, spoolCRC, []byte{kind})
	for _, p := range body {
		crc = crc32.Update(crc, spoolCRC, p)
	}
	var head [8]byte
	binary.BigEndian.PutUint32(head[:4], uint32(n))
	binary.BigEndian.PutUint32(head[4:], crc)
	b.Write(head[:])
	b.WriteByte(kind)
	for _, p := range body {
		b.Write(p)
	}
}

// Recovered is how many writes the spool held when it was opened (the writer writes them first).
func (sp *Spool) Recovered() int { return sp.recoveredN }

// Dir is the spool's directory.
func (sp *Spool) Dir() string { return sp.dir }

// add appends ops to the file, numbering them, in frames of at most maxBatch. On failure the file
// is cut back to its last whole frame, the ops keep their numbers (none: they are tried again with
// the next), and the spool is broken.
func (sp *Spool) add(ops []Op) error {
	if sp.broken {
		return errors.New("the spool must be written anew")
	}
	var b bytes.Buffer
	if sp.size == 0 {
		frame(&b, spoolVersion, []byte{spoolFormat})
	}
	for i := 0; i < len(ops); i += maxBatch {
		sp.encoded.Reset()
		if err := sp.enc.Encode(ops[i:min(len(ops), i+maxBatch)]); err != nil {
			sp.broken = true
			return err
		}
		frame(&b, spoolWrites, binary.BigEndian.AppendUint64(nil, sp.next+uint64(i)), sp.encoded.Bytes())
	}
	before := sp.size
	if err := sp.append(b.Bytes()); err != nil {
		sp.broken = true
		return err
	}
	if sp.sync {
		if err := syncFile(sp.f); err != nil {
			sp.broken = true
			if terr := sp.f.Truncate(before); terr == nil {
				sp.size = before
			}
			return err
		}
	}
	for i := range ops {
		ops[i].seq = sp.next + uint64(i)
		sp.written += uint64(opWeight(&ops[i]))
	}
	sp.next += uint64(len(ops))
	return nil
}

// done marks every write numbered up to seq as committed or dropped.
func (sp *Spool) done(seq uint64) error {
	var b bytes.Buffer
	frame(&b, spoolDone, binary.BigEndian.AppendUint64(nil, seq))
	return sp.append(b.Bytes())
}

// append writes p at the end of the file's whole frames; on failure it cuts the file back there.
func (sp *Spool) append(p []byte) error {
	if _, err := sp.f.WriteAt(p, sp.size); err != nil {
		if terr := sp.f.Truncate(sp.size); terr != nil {
			return fmt.Errorf("%w (and the file could not be cut back: %s)", err, terr.Error())
		}
		return err
	}
	sp.size += int64(len(p))
	return nil
}

// empty cuts the file to nothing (every write in it is done) and starts its stream anew.
func (sp *Spool) empty() error {
	if sp.size > 0 {
		if err := sp.f.Truncate(0); err != nil {
			return err
		}
	}
	sp.fresh()
	return nil
}

// fresh starts an empty file's numbering and stream.
func (sp *Spool) fresh() {
	sp.size, sp.written, sp.next, sp.broken = 0, 0, 1, false
	sp.encoded = new(bytes.Buffer)
	sp.enc = gob.NewEncoder(sp.encoded)
}

// rewrite replaces the file with ops alone (numbered again from 1), through a new file renamed
// over it: a kill in the middle leaves one file or the other, whole. On failure the ops keep the
// numbers they had in the file still there.
func (sp *Spool) rewrite(ops []Op) error {
	old := make([]uint64, len(ops))
	for i := range ops {
		old[i] = ops[i].seq
	}
	tmp, err := os.CreateTemp(sp.dir, spoolFile+".new-*")
	if err != nil {
		return err
	}
	next := &Spool{dir: sp.dir, f: tmp}
	next.fresh()
	if len(ops) > 0 {
		err = next.add(ops)
	}
	if err == nil {
		err = syncFile(tmp) // the rename must not land before the data
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(sp.dir, spoolFile))
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		for i := range ops {
			ops[i].seq = old[i]
		}
		return err
	}
	sp.f.Close()
	sp.f, sp.size, sp.next, sp.written, sp.broken = tmp, next.size, next.next, next.written, false
	sp.enc, sp.encoded = next.enc, next.encoded
	if sp.sync {
		// The new name must reach the disk too. The writes are in the file either way: a
		// failure here has the next add write it anew again.
		if err := syncSpoolDir(sp.dir); err != nil {
			sp.broken = true
			return err
		}
	}
	return nil
}

// Close closes the file and lets another process have the directory.
func (sp *Spool) Close() error {
	err := sp.f.Close()
	if lerr := sp.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// The writer's side of the spool.

// spoolSlack is how much (opWeight) the file may hold beyond twice the buffer before toSpool
// writes it again with the buffer alone (writes committed before a failure, or pushed out of a
// full buffer, stay in it until then).
const spoolSlack = 4096

// spoolPause is how long the writer leaves a spool that failed before it tries it again.
const spoolPause = time.Second

// toSpool adds the buffer's writes not in the spool yet (the buffer's tail: the writer adds them
// in its order) to it.
func (w *writeLoop) toSpool() { w.spoolTail(w.buf) }

// spoolTail is toSpool for buf, the buffer or a copy of it (numbered there, not in the buffer).
//
// Each write it adds is answered (ErrNotCommitted: kept for another try) once it is in the file,
// or once the spool could not take it (failing, paused after a failure, or given up): with a
// spool the sender waits for that word (Store.wait). Without one (Options.Spool) it does nothing.
func (w *writeLoop) spoolTail(buf []Op) {
	if w.s.opts.Spool == nil {
		return
	}
	i := len(buf)
	for i > 0 && buf[i-1].seq == 0 {
		i--
	}
	if i == len(buf) {
		return
	}
	defer func() {
		for j := i; j < len(buf); j++ {
			answer(buf[j].done, ErrNotCommitted)
			buf[j].done = nil // answered: a spool paused meanwhile must not go over them again
		}
	}()
	sp := w.spool
	if sp == nil || time.Now().Before(w.spoolRetry) {
		return
	}
	adding := 0
	for j := i; j < len(buf); j++ {
		adding += opWeight(&buf[j])
	}
	var err error
	if sp.broken || sp.written+uint64(adding) > 2*uint64(w.weight)+spoolSlack {
		err = sp.rewrite(buf)
	} else {
		err = sp.add(buf[i:])
	}
	if err != nil {
		w.spoolFailed("message log spool failed; the writes waiting for the database are kept in memory only", err)
	}
}

// spoolDone marks every write numbered up to seq done (committed, or given up).
func (w *writeLoop) spoolDone(seq uint64) {
	if w.spool == nil || seq == 0 {
		return
	}
	if err := w.spool.done(seq); err != nil {
		// Not marked: were the process killed now, its next start would write them again, which
		// does no harm (Op.again). Emptying the file at the end of the buffer settles it.
		w.spoolFailed("message log spool failed to mark writes done", err)
	}
}

// spoolEmpty empties the spool once the buffer is. A spool that cannot be emptied is left alone
// from then on: writing to it again would let its old writes be taken for new ones.
func (w *writeLoop) spoolEmpty() {
	if w.spool == nil || len(w.buf) > 0 {
		return
	}
	if err := w.spool.empty(); err != nil {
		w.spoolFailure()
		w.s.log.Error("message log spool could not be emptied; it is no longer used until a restart", "dir", w.spool.Dir(), "err", err.Error())
		w.spool = nil
	}
}

// keepSpooled makes sure the buffer is all in the spool, for the next start (Close).
func (w *writeLoop) keepSpooled() bool {
	if w.spool == nil {
		return false
	}
	w.spoolRetry = time.Time{}
	w.toSpool()
	if w.buf[len(w.buf)-1].seq == 0 {
		w.s.log.Error("message log writes could not be kept in the spool either", "writes", len(w.buf))
		return false
	}
	w.s.log.Warn("message log writes kept in the spool for the next start: the database still failed when the message log closed", "writes", len(w.buf), "dir", w.spool.Dir())
	return true
}

// spoolFailure counts a failure of the spool (Options.OnSpoolFailure).
func (w *writeLoop) spoolFailure() {
	if w.s.opts.OnSpoolFailure != nil {
		w.s.opts.OnSpoolFailure()
	}
}

// spoolFailed logs a failure of the spool (at most a line a minute) and pauses it.
func (w *writeLoop) spoolFailed(msg string, err error) {
	w.spoolFailure()
	now := time.Now()
	w.spoolRetry = now.Add(spoolPause)
	if now.Sub(w.spoolLogged) >= time.Minute {
		w.s.log.Error(msg, "dir", w.spool.Dir(), "err", err.Error())
		w.spoolLogged = now
	}
}

// slowTry is a watcher of one try of the database (watchSlowTry).
type slowTry struct {
	timer      *time.Timer
	stop, done chan struct{}
	// numbered is a copy of the buffer as the watcher numbered it in the spool: the try reads the
	// buffer's ops whole, so their numbers are set once it has returned.
	numbered []Op
	// taken is what it took off the queue meanwhile, in order.
	taken []Op
}

// watchSlowTry, with a spool, watches the try about to start: a try still running after
// CommitTimeout (a database that stopped answering holds it up to WriteTimeout) has senders
// answered without their commit, so the watcher adds the buffer to the spool and then takes the
// queue, adding each write to it as it arrives, until endWatch. The writer is inside the try
// meanwhile and touches neither; the try reads the buffer, so the watcher numbers a copy. A try
// that ends in time costs a timer, no goroutine.
func (w *writeLoop) watchSlowTry() *slowTry {
	if w.spool == nil {
		return nil
	}
	st := &slowTry{stop: make(chan struct{}), done: make(chan struct{})}
	st.timer = time.AfterFunc(w.s.opts.CommitTimeout, func() {
		defer close(st.done)
		st.numbered = slices.Clone(w.buf)
		w.spoolTail(st.numbered)
		// Numbers follow the buffer's order: a write taken is numbered only while everything
		// before it is.
		spooling := w.spool != nil && st.numbered[len(st.numbered)-1].seq != 0
		for {
			select {
			case <-st.stop:
				return
			case op, ok := <-w.s.ch:
				if !ok {
					return
				}
				st.taken = append(st.taken, op)
				if spooling && op.barrier == nil {
					if err := w.spool.add(st.taken[len(st.taken)-1:]); err != nil {
						w.spoolFailed("message log spool failed; the writes waiting for the database are kept in memory only", err)
						spooling = false
					}
				}
				answer(op.done, ErrNotCommitted) // in the spool, or kept in memory only: the try hangs
			}
		}
	})
	return st
}

// endWatch stops the watcher once the try has returned and gives what it took, for the buffer
// once the tried batch has left it (added before, an overflow could push out the batch's writes
// and theirs would take their place).
func (w *writeLoop) endWatch(st *slowTry) []Op {
	if st == nil || st.timer.Stop() {
		return nil // not started: nothing taken
	}
	close(st.stop)
	<-st.done
	for i := range st.numbered {
		w.buf[i].seq = st.numbered[i].seq
	}
	return st.taken
}
