package store

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
)

// Handing writes over to another replica.
//
// While the database fails, the writes of every answered send wait in the writer's memory (the
// retry buffer). A replica that stops then, as every replica does in a rolling upgrade during a
// PostgreSQL outage, would lose them once Close's time ran out. With Options.HandOff set, Close
// gives them to it instead, encoded in chunks (the app puts them in Redis), and any replica whose
// database works takes each chunk back with Adopt and writes it. A write applied twice is
// harmless (decodeOps marks every write it gives back as possibly applied already, Op.again): an
// insert of a record already there leaves it as it is, and the reports after it in the batch go
// to it; a report never moves a record backwards, charges a price only the first time one is set
// and arms a push only once, and a release of a released record does nothing
// (TestWritesAppliedAgainLeaveTheRecordWhereItWas, on every backend).

// handoffFormat is the first byte of every chunk: a build that meets a format it does not know
// refuses the chunk (ErrHandoffFormat) instead of writing it wrong.
const handoffFormat byte = 1

// ErrHandoffFormat is Adopt's error for a chunk it cannot read.
var ErrHandoffFormat = errors.New("a handed-off chunk of message log writes this build cannot read")

// encodeOps encodes ops as chunks of at most maxBatch writes each. gob carries every exported
// field of an Op and its record (the ones the record's JSON leaves out too) and leaves out the
// unexported ones, the writer's channels.
func encodeOps(ops []Op) ([][]byte, error) {
	var chunks [][]byte
	for len(ops) > 0 {
		n := min(len(ops), maxBatch)
		var b bytes.Buffer
		b.WriteByte(handoffFormat)
		if err := gob.NewEncoder(&b).Encode(ops[:n]); err != nil {
			return nil, err
		}
		chunks = append(chunks, b.Bytes())
		ops = ops[n:]
	}
	return chunks, nil
}

// decodeOps is encodeOps' inverse for one chunk.
func decodeOps(chunk []byte) ([]Op, error) {
	if len(chunk) == 0 || chunk[0] != handoffFormat {
		return nil, ErrHandoffFormat
	}
	var ops []Op
	if err := gob.NewDecoder(bytes.NewReader(chunk[1:])).Decode(&ops); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrHandoffFormat, err.Error())
	}
	if err := cleanOps(ops); err != nil {
		return nil, err
	}
	return ops, nil
}

// cleanOps cleans writes read back (a chunk, the spool) as the store cleans what it is given, and
// marks them as possibly applied already.
func cleanOps(ops []Op) error {
	for i := range ops {
		op := &ops[i]
		op.again = true
		switch {
		case op.Insert != nil:
			op.Insert = cleanRecord(op.Insert)
		case op.Report != nil:
			op.Report = cleanReport(op.Report)
		case op.Release != "":
			op.Release = cleanID(op.Release)
		default:
			return fmt.Errorf("%w: a write with nothing to write", ErrHandoffFormat)
		}
	}
	return nil
}

// HandsOver reports whether the store hands writes over at Close (Options.HandOff is set): the
// replicas that may hand some over are the ones that take them back.
func (s *Store) HandsOver() bool { return s.opts.HandOff != nil }

// Reached reports whether the database has been reached at least once: false only for a Later
// backend still opening (a replica that started during an outage), which should not take writes
// handed over that it cannot write either.
func (s *Store) Reached() bool {
	if l, ok := s.b.(*Later); ok {
		return l.Open()
	}
	return true
}

// Adopt queues the writes of a chunk that another replica handed over and waits until they have
// committed or ctx ends. It returns how many writes the chunk held. When ctx ends first, the
// writes stay queued here, as any write does (and are handed over again should this replica
// stop before its database takes them).
func (s *Store) Adopt(ctx context.Context, chunk []byte) (int, error) {
	ops, err := decodeOps(chunk)
	if err != nil {
		return 0, err
	}
	for i := range ops {
		ops[i].done = make(chan error, 1)
	}
	// All of them or none: the chunk is no longer anywhere else.
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return 0, ErrClosed
	}
	for _, op := range ops {
		s.ch <- op // the writer always takes the queue, whatever the database does
	}
	s.closeMu.RUnlock()
	for _, op := range ops {
		select {
		case err := <-op.done:
			if err != nil && !errors.Is(err, ErrRefused) {
				return len(ops), err
			}
		case <-ctx.Done():
			return len(ops), ErrNotCommitted
		}
	}
	return len(ops), nil
}
