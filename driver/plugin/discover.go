package plugin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// PluginsDirEnv names the environment variable that overrides the default plugins dir.
const PluginsDirEnv = "LORACTL_PLUGINS_DIR"

// validName is what a driver name may look like. It keeps a config value from ever
// naming a path ("../../bin/sh") when it becomes an executable name.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ErrNotFound means no executable for the driver was found.
var ErrNotFound = errors.New("driver plugin not found")

// ValidName reports whether name can name an external driver.
func ValidName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid driver name %q: use lowercase letters, digits, '-' and '_'", name)
	}
	return nil
}

// DefaultDir is the plugins dir when --plugins-dir is not given: $LORACTL_PLUGINS_DIR,
// else ~/.config/loractl/plugins (following XDG_CONFIG_HOME).
func DefaultDir() (string, error) {
	if d := os.Getenv(PluginsDirEnv); d != "" {
		return d, nil
	}
	cfg, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no plugins dir: set %s or --plugins-dir: %w", PluginsDirEnv, err)
	}
	return filepath.Join(cfg, "loractl", "plugins"), nil
}

// Find returns the absolute path of the executable loractl-driver-<name>, looked up
// first in dir (skipped when empty) and then in each directory of pathList (a PATH
// value). Only regular files with an execute bit count. The error lists every place
// searched so a user can see why a driver was not found.
func Find(name, dir, pathList string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	file := ExecutablePrefix + name
	var searched []string
	if dir != "" {
		searched = append(searched, dir)
	}
	for _, d := range filepath.SplitList(pathList) {
		if d == "" || !filepath.IsAbs(d) {
			// An empty or relative PATH entry ("." or "bin") names a place relative
			// to the working directory; a driver is never picked up from wherever
			// the user happens to stand.
			continue
		}
		searched = append(searched, d)
	}
	for _, d := range searched {
		p := filepath.Join(d, file)
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		return abs, nil
	}
	return "", fmt.Errorf("%w: no executable %s in %q", ErrNotFound, file, searched)
}
