// Package version says which loractl build is running: the module version when it was
// installed as a module (`go install ...@v1.2.3`), else the VCS revision the binary was
// built from (with "-dirty" when the tree had uncommitted changes), else "dev".
// A release build may set it with -ldflags "-X github.com/loractl/loractl/version.Override=v1.2.3".
package version

import (
	"runtime/debug"
	"sync"
)

// Override, set at link time, wins over everything read from the build info.
var Override string

var (
	once   sync.Once
	cached string
)

// String returns the version recorded in manifests and printed by `loractl --version`.
func String() string {
	once.Do(func() {
		info, ok := debug.ReadBuildInfo()
		cached = fromBuildInfo(Override, info, ok)
	})
	return cached
}

// fromBuildInfo is String's rule, apart from the process so tests can feed it.
func fromBuildInfo(override string, info *debug.BuildInfo, ok bool) string {
	if override != "" {
		return override
	}
	if !ok || info == nil {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}
