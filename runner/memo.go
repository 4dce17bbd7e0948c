package runner

import (
	"os"
	"sync"
	"time"

	"github.com/loractl/loractl/run"
)

// A sweep prepares and launches hundreds of runs from one config directory and one
// data set in one process; these memos keep it from hashing the same data file and
// asking git about the same directory once per run.

var (
	gitMemo  sync.Map // dir → *run.GitInfo (nil: not a repository)
	hashMemo sync.Map // path → fileSum
)

type fileSum struct {
	size  int64
	mtime time.Time
	sum   string
}

// gitInfoCached is gitInfo, asked once per directory per process.
func gitInfoCached(dir string) *run.GitInfo {
	if v, ok := gitMemo.Load(dir); ok {
		return copyGit(v.(*run.GitInfo))
	}
	gi := gitInfo(dir)
	gitMemo.Store(dir, gi)
	return copyGit(gi)
}

func copyGit(gi *run.GitInfo) *run.GitInfo {
	if gi == nil {
		return nil
	}
	c := *gi
	return &c
}

// hashFileCached is run.HashFile, reused while the file's size and modification time
// are unchanged.
func hashFileCached(path string) (string, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	if v, ok := hashMemo.Load(path); ok {
		if s := v.(fileSum); s.size == fi.Size() && s.mtime.Equal(fi.ModTime()) {
			return s.sum, s.size, nil
		}
	}
	sum, n, err := run.HashFile(path)
	if err == nil && n == fi.Size() {
		hashMemo.Store(path, fileSum{size: n, mtime: fi.ModTime(), sum: sum})
	}
	return sum, n, err
}
