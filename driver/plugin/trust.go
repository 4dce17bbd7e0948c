package plugin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrUntrusted means an unpinned driver executable could have been replaced by
// someone other than the user: loractl refuses to run it, as ssh refuses a key file
// others can write.
var ErrUntrusted = errors.New("refusing to run an unpinned external driver that others could have replaced")

// CheckTrusted decides whether the executable at exe may run without a pinned
// checksum. The file (after links) and the directory holding it must be owned by the
// user or root and writable by nobody else (no group or other write bit), and every
// directory above must not let others replace an entry in it: owned by the user or
// root, and not writable by others unless it has the sticky bit and belongs to root
// (like /tmp). A driver pinned with driver.plugin.sha256 skips this check, since its
// content is verified instead.
func CheckTrusted(exe string) error {
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return err
	}
	paths := []string{exe}
	if real != exe {
		paths = append(paths, real)
	}
	uid := os.Getuid()
	for _, p := range paths {
		if err := trustedEntry(p, uid, true); err != nil {
			return err
		}
		dir := filepath.Dir(p)
		if err := trustedEntry(dir, uid, true); err != nil {
			return err
		}
		for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
			if err := trustedEntry(d, uid, false); err != nil {
				return err
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	return nil
}

// trustedEntry checks one file or directory. strict refuses any group or other write
// bit; otherwise only other-write, and a root-owned sticky directory is accepted.
func trustedEntry(p string, uid int, strict bool) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil // not a Unix file system view: nothing to check against
	}
	owner := int(st.Uid)
	if owner != uid && owner != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d, not by you (uid %d) or root; pin it with driver.plugin.sha256 or fix the owner", ErrUntrusted, p, owner, uid)
	}
	perm := fi.Mode().Perm()
	switch {
	case strict && perm&0o022 != 0:
		return fmt.Errorf("%w: %s is writable by others (mode %04o); run chmod go-w %s, or pin it with driver.plugin.sha256", ErrUntrusted, p, perm, p)
	case !strict && perm&0o002 != 0 && !(fi.Mode()&os.ModeSticky != 0 && owner == 0):
		return fmt.Errorf("%w: %s is writable by everyone (mode %04o); run chmod o-w %s, or pin it with driver.plugin.sha256", ErrUntrusted, p, perm, p)
	}
	return nil
}
