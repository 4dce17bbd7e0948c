package run

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrSymlink means a run file is a symbolic link: loractl never follows one in a run
// directory, so a link planted there cannot redirect a write (or a read) elsewhere.
var ErrSymlink = errors.New("is a symbolic link (refused: run files are never followed through links)")

// OpenNoFollow opens a regular file for reading without following a final symbolic
// link and without blocking on a FIFO or device, which it refuses.
func OpenNoFollow(p string) (*os.File, error) {
	return OpenFileNoFollow(p, os.O_RDONLY, 0)
}

// OpenFileNoFollow is os.OpenFile with O_NOFOLLOW (and O_NONBLOCK, so that opening a
// FIFO cannot hang): a link at p is refused with ErrSymlink, and so is anything that
// is not a regular file.
func OpenFileNoFollow(p string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(p, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s %w", p, ErrSymlink)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%s): refused", p, fi.Mode().Type())
	}
	return f, nil
}
