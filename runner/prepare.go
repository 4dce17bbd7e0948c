// Package runner drives one run through its life: prepare (hash and name it), launch
// (run dir, manifest, driver), follow (events), finish (outcome into the manifest),
// and refresh (bring a detached run's manifest up to date from its driver). The train,
// runs, logs, stop and sweep commands all go through it.
package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/python"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/version"
)

// Prepared is a config turned into everything a launch needs, before anything is
// written: the resolved JSON, the run id and the hashes the manifest records.
type Prepared struct {
	Config       *config.Config
	ResolvedJSON []byte
	ConfigHash   string
	Data         []run.FileHash
	Trainer      run.FileHash
	RunID        string
}

// Prepare hashes the resolved config, the data and the trainer, and derives the run id.
func Prepare(cfg *config.Config) (*Prepared, error) {
	resolved, err := RenderResolved(cfg)
	if err != nil {
		return nil, err
	}
	p := &Prepared{Config: cfg, ResolvedJSON: resolved, ConfigHash: run.HashBytes(resolved)}
	var dataHashes []string
	for _, f := range []struct{ role, path string }{{"train", cfg.Resolved.Data.Train}, {"eval", cfg.Resolved.Data.Eval}} {
		if f.path == "" {
			continue
		}
		sum, n, err := hashFileCached(f.path)
		if err != nil {
			return nil, fmt.Errorf("hash %s data: %w", f.role, err)
		}
		p.Data = append(p.Data, run.FileHash{Role: f.role, Path: f.path, SHA256: sum, Bytes: n})
		dataHashes = append(dataHashes, f.role+":"+sum)
	}
	sum, n, err := python.TrainerHash()
	if err != nil {
		return nil, fmt.Errorf("embedded trainer: %w", err)
	}
	p.Trainer = run.FileHash{Path: run.TrainerFile, SHA256: sum, Bytes: n}
	p.RunID, err = run.ID(cfg.Resolved.Name, resolved, dataHashes)
	return p, err
}

// RenderResolved is resolved.json exactly as the trainer will read it.
func RenderResolved(cfg *config.Config) ([]byte, error) {
	b, err := json.MarshalIndent(cfg.Resolved, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// newManifest starts a manifest for a prepared run.
func newManifest(p *Prepared, driverName string) *run.Manifest {
	m := &run.Manifest{
		Version:    run.ManifestVersion,
		RunID:      p.RunID,
		Name:       p.Config.Resolved.Name,
		State:      run.StateCreated,
		ConfigPath: p.Config.Path,
		Overrides:  p.Config.Overrides,
		ConfigHash: p.ConfigHash,
		Data:       p.Data,
		Trainer:    p.Trainer,
		Seed:       p.Config.Resolved.Train.Seed,
		Git:        gitInfoCached(p.Config.Dir),
		Host:       hostInfo(),
		Driver:     driverName,
	}
	return m
}

func hostInfo() run.HostInfo {
	h := run.HostInfo{OS: runtime.GOOS + "/" + runtime.GOARCH, Loractl: version.String()}
	h.Hostname, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	}
	return h
}

// gitInfo records the commit of the repository holding the config, if any.
func gitInfo(dir string) *run.GitInfo {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return nil
	}
	gi := &run.GitInfo{Commit: strings.TrimSpace(string(out))}
	if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		gi.Dirty = len(strings.TrimSpace(string(st))) > 0
	}
	return gi
}

// writeRunFiles lays out a new run dir: the config as given and resolved.json. (The
// trainer's checkpoints/ appears when the trainer saves; its code lives in the store's
// content-addressed trainer dir.)
func writeRunFiles(dir string, p *Prepared) error {
	files := map[string][]byte{
		run.ConfigFile:   p.Config.Source,
		run.ResolvedFile: p.ResolvedJSON,
	}
	// Plain writes, no fsync: these land in a fresh directory before its manifest,
	// which is written atomically and synced and is what makes the run exist. Syncing
	// each file cost a 1,000-point sweep seconds of fsyncs; resume re-checks
	// resolved.json against the manifest's hash instead (see repairResolved).
	for name, data := range files {
		f, err := run.OpenFileNoFollow(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// repairResolved makes sure a resumed run's resolved.json is the one its manifest
// hashed (a crash right after the run was created could have lost the unsynced
// write); the caller has already checked that p resolves to that hash.
func repairResolved(dir string, p *Prepared) error {
	path := filepath.Join(dir, run.ResolvedFile)
	if b, err := os.ReadFile(path); err == nil && run.HashBytes(b) == p.ConfigHash {
		return nil
	}
	return run.WriteFileAtomic(path, p.ResolvedJSON, 0o644)
}
