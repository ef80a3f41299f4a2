//go:build !unix

package store

import "os"

// lockFile takes no lock where flock(2) is missing: two processes must not share a spool there.
func lockFile(*os.File) error { return nil }

// syncDir does nothing where a directory cannot be synced (Windows): its names reach the disk
// with its files' data.
func syncDir(string) error { return nil }
