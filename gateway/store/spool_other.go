//go:build !unix

package store

import (
	"errors"
	"os"
)

// errLocked is lockFile's error for a file another process holds locked.
var errLocked = errors.New("locked")

// lockFile takes no lock where flock(2) is missing: two processes must not share a spool there.
func lockFile(*os.File) error { return nil }

// syncDir does nothing where a directory cannot be synced (Windows): its names reach the disk
// with its files' data.
func syncDir(string) error { return nil }
