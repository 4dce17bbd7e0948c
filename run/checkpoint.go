package run

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CompleteMarker is written last into a checkpoint directory by the trainer; a
// checkpoint without a marker that verifies was interrupted while saving (or damaged
// since) and must not be resumed from. python/train_lora_support.py defines the same
// name and the same rules (verify_checkpoint); run/contract_test.go checks they agree.
const CompleteMarker = "loractl-complete.json"

// CheckpointPrefix starts every checkpoint directory's name: checkpoint-<step>
// (the trainer's CHECKPOINT_PREFIX, checked by TestConstantsAgreeWithTrainer).
const CheckpointPrefix = "checkpoint-"

// MarkerVersion is the marker format that lists every file of the checkpoint.
// Markers without a version (or without "files") are legacy: see VerifyCheckpoint.
const MarkerVersion = 2

// maxMarkerBytes bounds what a verifier reads of a marker: a real one is a few KiB.
const maxMarkerBytes = 1 << 20

// RequiredCheckpointFiles must be in every checkpoint: the adapter, the optimizer and
// LR schedule (the Trainer skips a missing optimizer.pt silently and restarts them),
// and the trainer state that holds the step.
var RequiredCheckpointFiles = []string{
	"adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json",
}

// MarkerFile is one file a completion marker vouches for.
type MarkerFile struct {
	Path   string `json:"path"` // relative, slash-separated
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Marker is a checkpoint's completion marker.
type Marker struct {
	Version        int          `json:"version,omitempty"`
	Step           int          `json:"step"`
	Time           string       `json:"time,omitempty"`
	EvalLossBefore *float64     `json:"eval_loss_before,omitempty"`
	ResolvedSHA256 string       `json:"resolved_sha256,omitempty"`
	Files          []MarkerFile `json:"files,omitempty"`
	// Legacy is true for a marker without a file list (written before version 2).
	Legacy bool `json:"-"`
}

// ErrIncomplete wraps every reason a checkpoint does not verify.
var ErrIncomplete = errors.New("checkpoint is not complete")

func incomplete(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrIncomplete, fmt.Sprintf(format, a...))
}

// VerifyCheckpoint checks that dir holds a complete checkpoint and returns its marker.
//
// A version-2 marker lists every file with its size and sha256: each must be a regular
// file (not a link) of that size and, when deep is true, that hash; the required files
// must be among them. A legacy marker (no file list) counts only when the required files
// are there and load: JSON parses, .pt archives pass their CRC checks, the safetensors
// header is consistent with the file size. deep=false checks sizes only (for listing
// runs); a resume always verifies deeply.
func VerifyCheckpoint(dir string, deep bool) (*Marker, error) {
	b, err := readRegular(filepath.Join(dir, CompleteMarker), maxMarkerBytes)
	if err != nil {
		return nil, incomplete("%s: %v", CompleteMarker, err)
	}
	m, err := parseMarker(b)
	if err != nil {
		return nil, incomplete("%s: %v", CompleteMarker, err)
	}
	if m.Legacy {
		for _, name := range RequiredCheckpointFiles {
			if err := loadable(filepath.Join(dir, name), deep); err != nil {
				return nil, incomplete("legacy marker (no file list) and %s", err)
			}
		}
		return m, nil
	}
	listed := map[string]bool{}
	for _, f := range m.Files {
		listed[f.Path] = true
		if err := checkFile(dir, f, deep); err != nil {
			return nil, incomplete("%v", err)
		}
	}
	for _, name := range RequiredCheckpointFiles {
		if !listed[name] {
			return nil, incomplete("%s is not among the files the marker lists", name)
		}
	}
	return m, nil
}

// parseMarker decodes and validates a marker's JSON (rules shared with the trainer).
func parseMarker(b []byte) (*Marker, error) {
	var raw map[string]json.RawMessage
	// Not UTF-8: encoding/json would decode it with replacements, the trainer refuses it.
	if !utf8.Valid(b) {
		return nil, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return nil, errors.New("not a JSON object")
	}
	m := &Marker{}
	step, ok := raw["step"]
	if !ok {
		return nil, errors.New(`no "step"`)
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(step)))
	if err != nil || n < 0 {
		return nil, fmt.Errorf(`"step" %s is not a non-negative integer`, step)
	}
	m.Step = n
	filesRaw, hasFiles := raw["files"]
	if !hasFiles {
		m.Legacy = true
		return m, nil
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(filesRaw, &entries); err != nil {
		return nil, errors.New(`"files" is not a list of objects`)
	}
	if len(entries) == 0 {
		return nil, errors.New(`"files" is empty`)
	}
	_ = json.Unmarshal(raw["version"], &m.Version)
	seen := map[string]bool{}
	for i, e := range entries {
		// Decoded key by key: encoding/json matches struct fields case-insensitively,
		// and the trainer's reader does not.
		var f MarkerFile
		if json.Unmarshal(e["path"], &f.Path) != nil || !validMarkerPath(f.Path) {
			return nil, fmt.Errorf("files[%d]: path %s is not a plain relative path", i, e["path"])
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("file %q listed twice", f.Path)
		}
		seen[f.Path] = true
		n, err := strconv.ParseInt(string(e["size"]), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("file %q: size %s is not a non-negative integer", f.Path, e["size"])
		}
		f.Size = n
		if json.Unmarshal(e["sha256"], &f.SHA256) != nil || !isSHA256(f.SHA256) {
			return nil, fmt.Errorf("file %q: sha256 %s is not 64 lower-case hex digits", f.Path, e["sha256"])
		}
		m.Files = append(m.Files, f)
	}
	return m, nil
}

func isSHA256(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// validMarkerPath accepts "a" and "a/b", never "", "/a", "../a", "a/./b" or the marker.
func validMarkerPath(p string) bool {
	// U+FFFD: what encoding/json makes of a lone surrogate escape, which Python keeps
	// (and cannot turn into a file name); refused on both sides.
	if p == "" || p == CompleteMarker || strings.ContainsAny(p, "\\\x00\uFFFD") || path.IsAbs(p) || path.Clean(p) != p {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == "." {
			return false
		}
	}
	return true
}

func checkFile(dir string, f MarkerFile, deep bool) error {
	p := filepath.Join(dir, filepath.FromSlash(f.Path))
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s is missing", f.Path)
		}
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s)", f.Path, fi.Mode().Type())
	}
	if fi.Size() != f.Size {
		return fmt.Errorf("%s has %d bytes, the marker says %d", f.Path, fi.Size(), f.Size)
	}
	if !deep {
		return nil
	}
	sum, err := FileSHA256(p)
	if err != nil {
		return err
	}
	if sum != f.SHA256 {
		return fmt.Errorf("%s: sha256 %.12s, the marker says %.12s (changed after it was saved)", f.Path, sum, f.SHA256)
	}
	return nil
}

// FileSHA256 is the hex sha256 of a file's content, read without following a link.
func FileSHA256(p string) (string, error) {
	f, err := OpenNoFollow(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// loadable checks that a required file of a legacy checkpoint is there and loads.
func loadable(p string, deep bool) error {
	name := filepath.Base(p)
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s is missing", name)
		}
		return err
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return fmt.Errorf("%s is not a non-empty regular file", name)
	}
	switch {
	case strings.HasSuffix(name, ".json"):
		b, err := readRegular(p, 64<<20)
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		if !json.Valid(b) {
			return fmt.Errorf("%s does not parse", name)
		}
	case strings.HasSuffix(name, ".pt"):
		if err := zipIntact(p, deep); err != nil {
			return fmt.Errorf("%s does not load: %v", name, err)
		}
	case strings.HasSuffix(name, ".safetensors"):
		if err := safetensorsIntact(p, fi.Size()); err != nil {
			return fmt.Errorf("%s does not load: %v", name, err)
		}
	}
	return nil
}

// zipIntact opens a torch.save archive (a zip) and, when deep, reads every member to
// the end so that archive/zip checks its CRC-32.
func zipIntact(p string, deep bool) error {
	r, err := zip.OpenReader(p)
	if err != nil {
		return err
	}
	defer r.Close()
	if len(r.File) == 0 {
		return errors.New("empty archive")
	}
	if !deep {
		return nil
	}
	for _, f := range r.File {
		rc, err := f.Open()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: %v", f.Name, err)
		}
	}
	return nil
}

// safetensorsIntact checks the header (8-byte length, JSON) and that the file holds
// every byte the header's data_offsets promise.
func safetensorsIntact(p string, size int64) error {
	f, err := OpenNoFollow(p)
	if err != nil {
		return err
	}
	defer f.Close()
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		return errors.New("no header")
	}
	if n == 0 || n > 100<<20 || int64(n)+8 > size {
		return fmt.Errorf("header length %d does not fit a %d-byte file", n, size)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return err
	}
	var tensors map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &tensors); err != nil {
		return errors.New("header is not JSON")
	}
	var end int64
	for name, raw := range tensors {
		if name == "__metadata__" {
			continue
		}
		var t struct {
			Offsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &t); err != nil || len(t.Offsets) != 2 {
			return fmt.Errorf("tensor %q has no data_offsets", name)
		}
		end = max(end, t.Offsets[1])
	}
	if 8+int64(n)+end != size {
		return fmt.Errorf("header promises %d data bytes, the file has %d", end, size-8-int64(n))
	}
	return nil
}

// readRegular reads a regular file (not a link, not a FIFO or device) of at most limit bytes.
func readRegular(p string, limit int64) ([]byte, error) {
	f, err := OpenNoFollow(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%d bytes, over the %d-byte limit", fi.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("over the %d-byte limit", limit)
	}
	return b, nil
}

// Checkpoint is one saved training state.
type Checkpoint struct {
	Step     int
	Path     string
	Complete bool
	// Problem says why an incomplete checkpoint does not count ("" when complete).
	Problem string
	// Legacy is true for a complete checkpoint whose marker has no file list.
	Legacy bool
}

// Checkpoints lists the run's checkpoints by ascending step. Complete is decided by
// VerifyCheckpoint without hashing (sizes only); ResumeCheckpoint verifies hashes.
func Checkpoints(runDir string) ([]Checkpoint, error) {
	dir := filepath.Join(runDir, CheckpointsDir)
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Checkpoint
	for _, e := range entries {
		step, ok := checkpointStep(e.Name())
		if !e.IsDir() || !ok {
			continue
		}
		p := filepath.Join(dir, e.Name())
		cp := Checkpoint{Step: step, Path: p}
		if m, err := VerifyCheckpoint(p, false); err != nil {
			cp.Problem = strings.TrimPrefix(err.Error(), ErrIncomplete.Error()+": ")
		} else {
			cp.Complete, cp.Legacy = true, m.Legacy
		}
		out = append(out, cp)
	}
	// Directory order is by name; "checkpoint-100" sorts before "checkpoint-20".
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Step < out[j-1].Step; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// LatestComplete returns the newest complete checkpoint (sizes checked, not hashes),
// or ok=false.
func LatestComplete(runDir string) (Checkpoint, bool, error) {
	cps, err := Checkpoints(runDir)
	if err != nil {
		return Checkpoint{}, false, err
	}
	for i := len(cps) - 1; i >= 0; i-- {
		if cps[i].Complete {
			return cps[i], true, nil
		}
	}
	return Checkpoint{}, false, nil
}

// ResumeCheckpoint returns the newest checkpoint that verifies deeply, and every newer
// one it passed over with the reason (so the caller can say which and why). ok=false
// when none verifies.
func ResumeCheckpoint(runDir string) (cp Checkpoint, skipped []Checkpoint, ok bool, err error) {
	cps, err := Checkpoints(runDir)
	if err != nil {
		return Checkpoint{}, nil, false, err
	}
	for i := len(cps) - 1; i >= 0; i-- {
		c := cps[i]
		if c.Complete {
			m, err := VerifyCheckpoint(c.Path, true)
			if err == nil {
				c.Legacy = m.Legacy
				return c, skipped, true, nil
			}
			c.Complete, c.Problem = false, strings.TrimPrefix(err.Error(), ErrIncomplete.Error()+": ")
		}
		skipped = append(skipped, c)
	}
	return Checkpoint{}, skipped, false, nil
}

// MarkerStep verifies a checkpoint deeply and returns the step its marker records.
func MarkerStep(cpDir string) (int, error) {
	m, err := VerifyCheckpoint(cpDir, true)
	if err != nil {
		return 0, err
	}
	return m.Step, nil
}

func checkpointStep(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, CheckpointPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}
