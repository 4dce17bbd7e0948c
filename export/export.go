// Package export turns a finished run into something a server loads: the adapter with
// its tokenizer and chat template, the adapter merged into the base model, or a GGUF
// file with an Ollama Modelfile. Every export carries a model card (README.md) and the
// exact serving commands (SERVING.md), and verifies itself before it reports success.
//
// The checks that need no model (the run has an adapter, the checkpoint is complete,
// the destination is free, the disk has room) run here, before Python starts; the model
// work runs in the embedded python/export_model.py with the trainer's interpreter. The
// export is built in a temp dir beside the destination and renamed into place last, so
// a refused or failed export leaves nothing behind.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loractl/loractl/run"
)

// ErrInvalid marks a refusal: the export cannot be made as asked (exit 2).
var ErrInvalid = errors.New("invalid export")

// Formats and GGUF quantizations accepted.
var (
	Formats    = []string{"safetensors", "gguf"}
	GGUFQuants = []string{"f16", "q8_0", "q4_k_m"}
)

// Options say what to export and where.
type Options struct {
	// RunDir is the run's directory; Manifest its manifest.
	RunDir   string
	Manifest *run.Manifest
	// Out is the destination directory; Force replaces an existing one.
	Out   string
	Force bool
	// Merge writes the merged full model; Format "gguf" implies it.
	Merge     bool
	Format    string
	GGUFQuant string
	// Checkpoint exports checkpoints/checkpoint-<Checkpoint> instead of the final adapter (0).
	Checkpoint int
	// Tolerance is the max abs logit difference the merge check allows (0: by dtype).
	Tolerance float64
	// Python is the trainer's interpreter.
	Python string
	// SystemPrompt is the run's data.system_prompt (for SERVING.md and the Modelfile).
	SystemPrompt string
	// Version is loractl's version, for the model card.
	Version string
	// Stderr receives the Python helper's progress lines.
	Stderr io.Writer
	// FreeBytes reports the free space of a directory's file system; nil: the real one.
	FreeBytes func(dir string) (uint64, error)
}

// Result is what an export wrote and measured.
type Result struct {
	Dir     string `json:"dir"`
	Mode    string `json:"mode"` // adapter, merge, gguf
	Adapter string `json:"adapter"`
	// Files are the file names in Dir.
	Files []string `json:"files"`
	Bytes int64    `json:"bytes"`
	// EstimatedBytes is what the disk check assumed.
	EstimatedBytes int64 `json:"estimated_bytes"`
	// Probes is how many conversations the template check (and merge check) used.
	Probes     int         `json:"probes"`
	StopTokens []string    `json:"stop_tokens"`
	StopIDs    []int       `json:"stop_token_ids"`
	Verify     *Verify     `json:"verify,omitempty"`
	GGUF       *GGUFRecord `json:"gguf,omitempty"`
}

// Verify is the merged model's self-check: logits against base + adapter.
type Verify struct {
	DType        string    `json:"dtype"`
	MaxAbsDiff   float64   `json:"max_abs_diff"`
	PerProbe     []float64 `json:"per_probe"`
	Tolerance    float64   `json:"tolerance"`
	MergeSeconds float64   `json:"merge_seconds"`
}

// GGUFRecord is what the GGUF read back as.
type GGUFRecord struct {
	File       string `json:"file"`
	Quant      string `json:"quant"`
	Tensors    int    `json:"tensors"`
	Tokens     int    `json:"tokens"`
	EOSTokenID *int   `json:"eos_token_id"`
	EOTTokenID *int   `json:"eot_token_id"`
	Bytes      int64  `json:"bytes"`
}

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// mode is adapter, merge or gguf.
func (o *Options) mode() (string, error) {
	switch o.Format {
	case "", "safetensors":
		if o.GGUFQuant != "" {
			return "", invalidf("--gguf-quant is for --format gguf")
		}
		if o.Merge {
			return "merge", nil
		}
		return "adapter", nil
	case "gguf":
		if o.GGUFQuant == "" {
			o.GGUFQuant = "f16"
		}
		if !contains(GGUFQuants, o.GGUFQuant) {
			return "", invalidf("--gguf-quant %q: must be one of %s", o.GGUFQuant, strings.Join(GGUFQuants, ", "))
		}
		return "gguf", nil
	}
	return "", invalidf("--format %q: must be one of %s", o.Format, strings.Join(Formats, ", "))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// AdapterDir finds the adapter to export: the run's final adapter, or a complete
// checkpoint. It is what `loractl chat --checkpoint` loads too.
func AdapterDir(runDir string, m *run.Manifest, checkpoint int) (string, error) {
	if checkpoint > 0 {
		dir := filepath.Join(runDir, run.CheckpointsDir, "checkpoint-"+strconv.Itoa(checkpoint))
		if _, err := os.Stat(dir); err != nil {
			cps, _ := run.Checkpoints(runDir)
			var have []string
			for _, c := range cps {
				if c.Complete {
					have = append(have, strconv.Itoa(c.Step))
				}
			}
			return "", invalidf("%s has no checkpoint %d (complete checkpoints: %s)", m.RunID, checkpoint, orNone(have))
		}
		if _, err := os.Stat(filepath.Join(dir, run.CompleteMarker)); err != nil {
			return "", invalidf("%s: checkpoint %d is not complete (no %s: it was interrupted while saving)", m.RunID, checkpoint, run.CompleteMarker)
		}
		if _, err := os.Stat(filepath.Join(dir, "adapter_model.safetensors")); err != nil {
			return "", invalidf("%s: checkpoint %d has no adapter_model.safetensors", m.RunID, checkpoint)
		}
		return dir, nil
	}
	dir := filepath.Join(runDir, run.AdapterDir)
	if m.Result != nil && m.Result.AdapterPath != "" {
		dir = m.Result.AdapterPath
	}
	for _, name := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			hint := ""
			if cp, ok, _ := run.LatestComplete(runDir); ok {
				hint = fmt.Sprintf("; its newest complete checkpoint is %d (--checkpoint %d)", cp.Step, cp.Step)
			}
			return "", invalidf("%s (%s) has no adapter: %s is missing%s", m.RunID, m.State, filepath.Join(dir, name), hint)
		}
	}
	return dir, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Run makes the export. Refusals wrap ErrInvalid; nothing is left at Out unless it succeeds.
func Run(ctx context.Context, o Options) (*Result, error) {
	mode, err := o.mode()
	if err != nil {
		return nil, err
	}
	if o.Out == "" {
		return nil, invalidf("an output directory is required (-o DIR)")
	}
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return nil, invalidf("-o %s: %v", o.Out, err)
	}
	adapter, err := AdapterDir(o.RunDir, o.Manifest, o.Checkpoint)
	if err != nil {
		return nil, err
	}
	if st, err := os.Lstat(out); err == nil {
		if !o.Force {
			return nil, invalidf("%s exists: choose another directory or pass --force to replace it", out)
		}
		if !st.IsDir() {
			return nil, invalidf("%s exists and is not a directory", out)
		}
	}
	parent := filepath.Dir(out)
	if st, err := os.Stat(parent); err != nil || !st.IsDir() {
		return nil, invalidf("%s: the parent directory does not exist", parent)
	}
	resolved := filepath.Join(o.RunDir, run.ResolvedFile)
	base, err := baseModel(resolved)
	if err != nil {
		return nil, err
	}
	est, err := estimate(mode, o.GGUFQuant, adapter, base)
	if err != nil {
		return nil, err
	}
	free := o.FreeBytes
	if free == nil {
		free = freeBytes
	}
	if avail, err := free(parent); err == nil && uint64(est) > avail {
		return nil, invalidf("%s has %s free; the %s export needs about %s", parent, human(int64(avail)), mode, human(est))
	}

	tmp, err := os.MkdirTemp(parent, ".loractl-export-")
	if err != nil {
		return nil, fmt.Errorf("creating a temp dir beside %s: %w", out, err)
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(tmp)
		}
	}()
	rec, err := runScript(ctx, o, mode, adapter, resolved, tmp)
	if err != nil {
		return nil, err
	}
	res := &Result{Dir: out, Mode: mode, Adapter: adapter, EstimatedBytes: est, Probes: len(rec.Probes),
		StopTokens: rec.StopTokens, StopIDs: rec.StopIDs, Verify: rec.Verify, GGUF: rec.GGUF}
	card := cardData{Options: &o, Result: res, Base: base, Template: rec.ChatTemplate, Dir: out}
	if err := card.load(o.RunDir); err != nil {
		return nil, err
	}
	if err := writeDocs(tmp, card); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := replace(tmp, out); err != nil {
		return nil, err
	}
	keep = true
	entries, err := os.ReadDir(out)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		res.Files = append(res.Files, e.Name())
		if info, err := e.Info(); err == nil {
			res.Bytes += info.Size()
		}
	}
	return res, nil
}

// replace renames tmp to out; an existing out (--force) is moved aside first and
// removed only once the new export is in place.
func replace(tmp, out string) error {
	var old string
	if _, err := os.Lstat(out); err == nil {
		old = tmp + ".old"
		if err := os.Rename(out, old); err != nil {
			return fmt.Errorf("moving the old %s aside: %w", out, err)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		if old != "" {
			_ = os.Rename(old, out)
		}
		return fmt.Errorf("moving the export into %s: %w", out, err)
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}
