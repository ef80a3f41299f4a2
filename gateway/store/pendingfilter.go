package store

import (
	"context"
	"database/sql"
	"hash/maphash"
)

// pendingFilter tells the SQLite writer whether a record may have reports waiting for it in
// pending_reports, so that an insert queries that table only when one may: a Bloom filter of
// (provider, id) for both ids of every pending report. It has no false negatives and about 1 %
// false positives. Reports that wait for good are usual (a provider's late report about an attempt
// that timed out before another provider sent the message waits until the retention purge), and
// with one of them waiting every insert queried the table: 15 % of the log's throughput.
//
// Only the writer goroutine touches it. Matched and purged reports stay in the filter until it is
// rebuilt from the table, when more ids were added than it was sized for: a rebuild reads every
// pending report (about 50 ms for 50,000) while the writer waits, once per as many ids added as
// there were pending at the last one.
type pendingFilter struct {
	bits  []uint64
	seed  maphash.Seed
	room  int // keys it may still take before its false positives grow past its size
	built bool
}

// pendingBitsPerKey and pendingHashes give about 1 % false positives at the filter's size.
const (
	pendingBitsPerKey = 10
	pendingHashes     = 7
	pendingMinKeys    = 4096
)

// rebuild sizes the filter for twice the ids the pending reports name (each names up to two; at
// least pendingMinKeys) and adds them. A rebuild that fails leaves the filter as it was: one that
// missed some reports would let their records be written without them.
func (f *pendingFilter) rebuild(ctx context.Context, db *sql.DB) error {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pending_reports`).Scan(&n); err != nil {
		return err
	}
	keys := max(4*n, pendingMinKeys)
	nf := pendingFilter{bits: make([]uint64, (keys*pendingBitsPerKey+63)/64), seed: maphash.MakeSeed(), room: keys, built: true}
	rows, err := db.QueryContext(ctx, `SELECT provider, provider_message_id, message_id FROM pending_reports`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var provider, pmid, id string
		if err := rows.Scan(&provider, &pmid, &id); err != nil {
			return err
		}
		nf.add(provider, pmid, id)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	*f = nf
	return nil
}

// add puts a pending report's ids in the filter.
func (f *pendingFilter) add(provider string, ids ...string) {
	for _, id := range ids {
		if id != "" {
			f.room--
			h1, h2 := f.hashes(provider, id)
			for i := range uint64(pendingHashes) {
				b := (h1 + i*h2) % uint64(len(f.bits)*64)
				f.bits[b/64] |= 1 << (b % 64)
			}
		}
	}
}

// mayHave reports whether a pending report may name provider and one of ids.
func (f *pendingFilter) mayHave(provider string, ids ...string) bool {
	if !f.built {
		return true
	}
	for _, id := range ids {
		if id == "" {
			continue
		}
		h1, h2 := f.hashes(provider, id)
		all := true
		for i := range uint64(pendingHashes) {
			b := (h1 + i*h2) % uint64(len(f.bits)*64)
			if f.bits[b/64]&(1<<(b%64)) == 0 {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// hashes are the two hashes the filter's positions derive from (double hashing).
func (f *pendingFilter) hashes(provider, id string) (uint64, uint64) {
	var h maphash.Hash
	h.SetSeed(f.seed)
	h.WriteString(provider)
	h.WriteByte(0)
	h.WriteString(id)
	h1 := h.Sum64()
	h.WriteByte(1)
	return h1, h.Sum64() | 1
}
