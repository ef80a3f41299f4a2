//go:build unix

package store

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes f's exclusive lock without waiting. The kernel lets it go when the process ends,
// however it ends: a process killed outright leaves its spool to the next.
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}

// syncDir syncs directory dir, so that the names of the files made or renamed in it reach the
// disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
