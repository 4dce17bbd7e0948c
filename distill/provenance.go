package distill

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"
)

// Provenance is OUT.distill.json: where the data came from and what happened to it.
// Counts under Totals cover every run of the command (from the state file); LastRun
// covers the run that wrote the file.
type Provenance struct {
	Loractl string            `json:"loractl_version"`
	Teacher ProvenanceTeacher `json:"teacher"`
	Prompts ProvenancePrompts `json:"prompts"`
	Out     string            `json:"out"`
	Totals  ProvenanceCounts  `json:"totals"`
	LastRun ProvenanceLastRun `json:"last_run"`
	Split   *ProvenanceSplit  `json:"split,omitempty"`
	Check   *ProvenanceCheck  `json:"check,omitempty"`
	// CheckError is why the data check could not run.
	CheckError  string `json:"check_error,omitempty"`
	Interrupted bool   `json:"interrupted"`
}

// ProvenanceTeacher is the teacher and the generation parameters. The key's value is
// never recorded, only the name of its variable.
type ProvenanceTeacher struct {
	Kind               string   `json:"kind"`
	URL                string   `json:"url,omitempty"`
	Dir                string   `json:"dir,omitempty"`
	Model              string   `json:"model,omitempty"`
	MaxTokens          int      `json:"max_tokens,omitempty"`
	Temperature        *float64 `json:"temperature,omitempty"`
	N                  int      `json:"n"`
	SystemPrompt       string   `json:"system_prompt,omitempty"`
	SystemPromptSHA256 string   `json:"system_prompt_sha256,omitempty"`
	APIKeyEnv          string   `json:"api_key_env,omitempty"`
	Require            string   `json:"require,omitempty"`
	RefusalPattern     string   `json:"refusal_pattern,omitempty"`
}

// ProvenancePrompts identifies the prompts file.
type ProvenancePrompts struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Count  int    `json:"count"`
}

// ProvenanceCounts count samples: ok rows written, filtered by reason, tokens used,
// retries made.
type ProvenanceCounts struct {
	OK               int            `json:"ok"`
	Filtered         map[string]int `json:"filtered"`
	PromptTokens     int64          `json:"prompt_tokens"`
	CompletionTokens int64          `json:"completion_tokens"`
	Retries          int64          `json:"retries"`
}

// ProvenanceLastRun counts the run that wrote the file.
type ProvenanceLastRun struct {
	StartedAt time.Time `json:"started_at"`
	WallSec   float64   `json:"wall_seconds"`
	// Resumed samples were finished by an earlier run and not sent again.
	Resumed int `json:"resumed"`
	// Sent samples got an answer or a final failure in this run.
	Sent     int            `json:"sent"`
	OK       int            `json:"ok"`
	Filtered map[string]int `json:"filtered"`
	Failed   int            `json:"failed"`
	// Retried counts samples that needed at least one retry; Retries the retries.
	Retried          int   `json:"retried"`
	Retries          int64 `json:"retries"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// DuplicatePrompts were skipped because the same prompt came earlier in the file.
	DuplicatePrompts int     `json:"duplicate_prompts"`
	RowsPerSec       float64 `json:"rows_per_second"`
}

// ProvenanceSplit records the train/eval split.
type ProvenanceSplit struct {
	EvalOut      string  `json:"eval_out"`
	EvalFraction float64 `json:"eval_fraction"`
	Seed         int64   `json:"seed"`
	Train        int     `json:"train"`
	Eval         int     `json:"eval"`
}

// ProvenanceCheck summarises the data check of the result.
type ProvenanceCheck struct {
	Examples int `json:"examples"`
	Errors   int `json:"errors"`
	Warnings int `json:"warnings"`
}

func (w *writer) provenance(opts *Options, s Settings, prompts int, start time.Time) *Provenance {
	t := ProvenanceTeacher{Kind: opts.TeacherKind, Model: opts.Model, MaxTokens: opts.MaxTokens, Temperature: opts.Temperature,
		N: opts.N, SystemPrompt: opts.SystemPrompt, SystemPromptSHA256: s.SystemPromptSHA256, APIKeyEnv: opts.APIKeyEnv,
		Require: opts.Require, RefusalPattern: opts.RefusalPattern}
	if opts.TeacherKind == "local" {
		t.Dir = opts.Teacher
	} else {
		t.URL = opts.Teacher
	}
	wall := time.Since(start).Seconds()
	w.mu.Lock()
	dupes := w.dupes
	w.mu.Unlock()
	p := &Provenance{
		Loractl: orDefault(opts.Version, Version()),
		Teacher: t,
		Prompts: ProvenancePrompts{Path: opts.Prompts, SHA256: s.PromptsSHA256, Count: prompts},
		Out:     opts.Out,
		Totals: ProvenanceCounts{OK: w.prev.totals.OK + w.ok, Filtered: addCounts(w.prev.totals.Filtered, w.filtered),
			PromptTokens: w.prev.totals.PromptTokens + w.promptTok, CompletionTokens: w.prev.totals.CompletionTokens + w.completionTok,
			Retries: w.prev.totals.Retries + w.retries},
		LastRun: ProvenanceLastRun{StartedAt: start.UTC(), WallSec: wall, Resumed: len(w.prev.done), Sent: w.sent, OK: w.ok,
			Filtered: addCounts(nil, w.filtered), Failed: w.failed, Retried: w.retried, Retries: w.retries,
			PromptTokens: w.promptTok, CompletionTokens: w.completionTok, DuplicatePrompts: dupes},
	}
	if wall > 0 {
		p.LastRun.RowsPerSec = float64(w.sent) / wall
	}
	return p
}

// writeProvenance writes p atomically (a temp file renamed over the old one).
func writeProvenance(path string, p *Provenance) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dirOf(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadProvenance reads an OUT.distill.json.
func ReadProvenance(path string) (*Provenance, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p Provenance
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &p, nil
}

// Version is loractl's version as the Go toolchain recorded it: the module version, or
// the VCS revision (with +dirty) of a source build.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		return "(devel) " + rev + dirty
	}
	return orDefault(v, "unknown")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func dirOf(path string) string { return filepath.Dir(path) }

// moveFile renames src to dst, copying when they are on different file systems.
func moveFile(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dirOf(dst), "."+filepath.Base(dst)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
