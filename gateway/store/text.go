package store

import (
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/smsgate/smsgate/gateway"
)

// Text that every backend keeps. PostgreSQL refuses a NUL byte in text and in jsonb, and bytes
// that are not UTF-8; the writer keeps a batch it could not write at the front of its retry
// buffer, so one such string from a caller (a client_id, an action, a callbackData) or from a
// provider would stop the log for every tenant on the replica. The Store therefore writes, and
// looks up, every string as valid UTF-8 without NUL: each NUL and each invalid byte becomes
// U+FFFD, the same in every backend, so a record and the reports about it still match.

//
// A provider's message id is also cut to maxIDBytes: it is indexed, and PostgreSQL refuses an
// index entry of more than about 2,700 bytes. Real ids are under 100 bytes; a record and its
// reports are cut alike, so they still match.

// maxIDBytes is the longest provider message id kept (longer ones keep their first bytes).
const maxIDBytes = 1024

// storable reports whether s can be kept as it is.
func storable(s string) bool { return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) }

// clean returns s as every backend keeps it.
func clean(s string) string {
	if storable(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// cleanID is clean for an indexed id: also at most maxIDBytes, cut at a character boundary.
func cleanID(s string) string {
	s = clean(s)
	if len(s) <= maxIDBytes {
		return s
	}
	n := maxIDBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// texts are a record's strings.
func (r *Record) texts() [20]*string {
	return [...]*string{&r.ID, &r.Tenant, &r.ClientID, &r.Route, &r.MessageType, &r.Action, &r.Country,
		&r.Recipient, &r.Range, &r.Status, &r.Provider, &r.ProviderMessageID, &r.Error, &r.ProviderStatus,
		&r.Currency, &r.Source, &r.Reference, &r.BulkID, &r.CallbackData, &r.NotifyURL}
}

func (a *Attempt) texts() [5]*string {
	return [...]*string{&a.Provider, &a.Outcome, &a.Code, &a.Error, &a.Note}
}

func reportTexts(rep *gateway.DeliveryReport) [7]*string {
	return [...]*string{&rep.Provider, &rep.ProviderMessageID, &rep.MessageID, &rep.Status, &rep.ProviderStatus,
		&rep.Error, &rep.Currency}
}

func allStorable(ps []*string) bool {
	for _, p := range ps {
		if !storable(*p) {
			return false
		}
	}
	return true
}

func cleanAll(ps []*string) {
	for _, p := range ps {
		*p = clean(*p)
	}
}

// cleanRecord returns r, or a cleaned copy when a string needs it (the caller's record is not
// changed).
func cleanRecord(r *Record) *Record {
	ok := true
	for i := range r.Attempts {
		ts := r.Attempts[i].texts()
		ok = ok && allStorable(ts[:])
	}
	if ts := r.texts(); ok && allStorable(ts[:]) && len(r.ProviderMessageID) <= maxIDBytes {
		return r
	}
	c := *r
	ts := c.texts()
	cleanAll(ts[:])
	c.ProviderMessageID = cleanID(c.ProviderMessageID)
	c.Attempts = slices.Clone(r.Attempts)
	for i := range c.Attempts {
		ts := c.Attempts[i].texts()
		cleanAll(ts[:])
	}
	return &c
}

// cleanReport returns rep, or a cleaned copy.
func cleanReport(rep *gateway.DeliveryReport) *gateway.DeliveryReport {
	if ts := reportTexts(rep); allStorable(ts[:]) && len(rep.ProviderMessageID) <= maxIDBytes && len(rep.MessageID) <= maxIDBytes {
		return rep
	}
	c := *rep
	ts := reportTexts(&c)
	cleanAll(ts[:])
	c.ProviderMessageID, c.MessageID = cleanID(c.ProviderMessageID), cleanID(c.MessageID)
	return &c
}
