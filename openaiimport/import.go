// Package openaiimport turns an OpenAI fine-tuning job — its chat JSONL files and the job
// object the fine-tuning jobs API returns — into a loractl run directory: a commented
// loractl.yaml, train.jsonl and eval.jsonl, checked like `loractl data check` checks them.
// It converts what OpenAI's format has and loractl's spells differently (legacy
// functions, null content beside tool calls, text parts, JSON-string tool arguments),
// refuses what does not carry over (DPO rows, images) with line numbers, maps the
// hyperparameters, and proposes open base models that fit the GPU.
package openaiimport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/plan"
)

// ErrInput marks a failure caused by the inputs (files, flags, their content): the CLI
// exits 2 on it. Nothing has been written when it is returned.
var ErrInput = errors.New("invalid input")

// ErrNoFit means no proposed base model fits the memory available (the CLI exits 3).
var ErrNoFit = errors.New("no base model fits")

func inputf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInput, fmt.Sprintf(format, a...))
}

// Files written into the output directory.
const (
	ConfigFile = "loractl.yaml"
	TrainFile  = "train.jsonl"
	EvalFile   = "eval.jsonl"
)

// Options configure Import.
type Options struct {
	TrainingFile   string
	ValidationFile string
	// JobFile is the fine-tuning job JSON; empty: every hyperparameter is "auto".
	JobFile string
	// Model is the base model (hub id or local directory); empty: propose one.
	Model string
	// GPUMemory is the memory to fit the proposals in, in bytes; 0: the GPU with the
	// most free memory that GPU reports (none: proposals are not judged).
	GPUMemory uint64
	// GPU is the GPU manager (NVML in the binary); nil means no GPU.
	GPU             gpu.Manager
	SkipUnsupported bool
	OutDir          string
	Force           bool
	// MaxListed caps the lines listed in an error; 0 means 20.
	MaxListed int
	// Tokenizer counts tokens with the base model's tokenizer and chat template (a local
	// model directory); nil: the data check's estimate.
	Tokenizer dataset.TokenCounter
}

// Result is what Import did.
type Result struct {
	OutDir string `json:"out_dir"`
	Config string `json:"config"`
	Train  Counts `json:"train"`
	// Eval is nil without a validation file.
	Eval           *Counts `json:"eval,omitempty"`
	ValidationFrom string  `json:"validation_from,omitempty"`
	Job            *Job    `json:"job,omitempty"`
	Settings       Train   `json:"settings"`
	// Class is the size class proposed for the job's base model.
	Class      SizeClass `json:"size_class"`
	ClassKnown bool      `json:"size_class_known"`
	Model      string    `json:"model"`
	ModelFrom  string    `json:"model_from"`
	// Quantization is "none" or "4bit" (a proposal that fits only as QLoRA).
	Quantization    string          `json:"quantization"`
	Proposals       []Proposal      `json:"proposals,omitempty"`
	AvailableBytes  uint64          `json:"available_bytes"`
	AvailableSource string          `json:"available_source"`
	Estimate        *plan.Estimate  `json:"estimate,omitempty"`
	EstimateNote    string          `json:"estimate_note,omitempty"`
	Check           *dataset.Report `json:"check"`
}

// Import converts the OpenAI files into opts.OutDir (written atomically: a temp directory
// renamed into place, an existing directory replaced only with Force). On ErrInput or
// ErrNoFit nothing is written.
func Import(ctx context.Context, opts Options) (*Result, error) {
	if opts.MaxListed <= 0 {
		opts.MaxListed = 20
	}
	if opts.OutDir == "" {
		return nil, inputf("-o DIR is required")
	}
	if opts.TrainingFile == "" {
		return nil, inputf("--training-file is required")
	}
	for _, p := range []string{opts.TrainingFile, opts.ValidationFile} {
		if p != "" {
			if err := checkInput(p); err != nil {
				return nil, err
			}
		}
	}
	res := &Result{OutDir: opts.OutDir}
	if opts.JobFile != "" {
		j, err := ReadJob(opts.JobFile)
		if err != nil {
			return nil, err
		}
		res.Job = j
	}
	if err := res.findValidation(&opts); err != nil {
		return nil, err
	}
	if err := checkOutDir(opts); err != nil {
		return nil, err
	}
	// The temp directory goes in DIR's nearest existing ancestor (the same filesystem, so
	// the final rename is atomic); DIR's missing parents are made only once all went well.
	parent := filepath.Dir(filepath.Clean(opts.OutDir))
	tmp, err := os.MkdirTemp(existingAncestor(parent), "."+filepath.Base(filepath.Clean(opts.OutDir))+".import-")
	if err != nil {
		return nil, fmt.Errorf("creating a temp directory beside %s: %w", opts.OutDir, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed into place

	train, err := convertFile(ctx, opts.TrainingFile, filepath.Join(tmp, TrainFile), opts.SkipUnsupported)
	if err != nil {
		return nil, wrapDataset(err)
	}
	if err := train.problemsError(opts.TrainingFile, opts.MaxListed); err != nil {
		return nil, err
	}
	res.Train = train.counts
	var eval *fileResult
	evalPath := ""
	if opts.ValidationFile != "" {
		evalPath = filepath.Join(tmp, EvalFile)
		if eval, err = convertFile(ctx, opts.ValidationFile, evalPath, opts.SkipUnsupported); err != nil {
			return nil, wrapDataset(err)
		}
		if err := eval.problemsError(opts.ValidationFile, opts.MaxListed); err != nil {
			return nil, err
		}
		res.Eval = &eval.counts
	}

	// First pass of the data check: structure and lengths, to size max_length.
	check := func(maxLength, epochs int) (*dataset.Report, error) {
		rep, err := dataset.Check(ctx, dataset.Options{Train: filepath.Join(tmp, TrainFile), Eval: evalPath,
			MaxLength: maxLength, Epochs: float64(epochs), MaxListed: opts.MaxListed, Tokenizer: opts.Tokenizer})
		if err != nil {
			return nil, wrapDataset(err)
		}
		if rep.HasErrors() {
			return nil, checkError(rep, opts, train, eval)
		}
		return rep, nil
	}
	rep, err := check(0, 1)
	if err != nil {
		return nil, err
	}
	s := mapJob(res.Job, rep.Stats.ValidExamples)
	longest := rep.Stats.Tokens.PerExample.Max
	if ev := rep.Stats.Eval; ev != nil {
		longest = max(longest, ev.Tokens.PerExample.Max)
	}
	s.MaxLength = MaxLengthFor(longest)
	how := "estimated"
	if !rep.Stats.Tokens.Estimated {
		how = "the model's tokenizer"
	}
	s.MaxLengthFrom = fmt.Sprintf("longest example ~%d tokens (%s) + 10%%: nothing is truncated", longest, how)
	if s.MaxLength < longest {
		s.MaxLengthFrom = fmt.Sprintf("capped at %d: the longest example has ~%d tokens (%s); longer ones are truncated", MaxLengthCap, longest, how)
	}
	res.Settings = s
	// The check as it will run before training, with the run's length and epochs.
	if res.Check, err = check(s.MaxLength, s.Epochs); err != nil {
		return nil, err
	}

	if err := res.chooseModel(opts); err != nil {
		return nil, err
	}
	cfg, err := renderConfig(res, opts)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, ConfigFile), cfg, 0o644); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, inputf("-o %s: %v", opts.OutDir, err)
	}
	if err := place(tmp, opts.OutDir, opts.Force); err != nil {
		return nil, err
	}
	res.Config = filepath.Join(opts.OutDir, ConfigFile)
	return res, nil
}

// existingAncestor is dir, or its nearest ancestor that exists.
func existingAncestor(dir string) string {
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			return dir
		}
		dir = up
	}
}

// checkInput refuses a missing file, a directory or a pipe up front.
func checkInput(p string) error {
	f, err := dataset.OpenInput(p)
	if err != nil {
		return wrapDataset(err)
	}
	return f.Close()
}

// wrapDataset keeps dataset's input errors input errors of this package.
func wrapDataset(err error) error {
	if errors.Is(err, dataset.ErrInput) && !errors.Is(err, ErrInput) {
		return inputf("%s", strings.TrimPrefix(err.Error(), dataset.ErrInput.Error()+": "))
	}
	return err
}

// findValidation resolves the validation file: --validation-file, else the file the job
// names, found beside the job JSON or the training file as FILE-ID or FILE-ID.jsonl
// (how `openai files content` output is usually saved). A job that names one that cannot
// be found is refused: a local run without it would have no before/after comparison.
func (r *Result) findValidation(opts *Options) error {
	if opts.ValidationFile != "" {
		r.ValidationFrom = "--validation-file " + opts.ValidationFile
		if r.Job != nil && r.Job.ValidationFile != "" {
			r.ValidationFrom += " (job validation_file " + r.Job.ValidationFile + ")"
		}
		return nil
	}
	if r.Job == nil || r.Job.ValidationFile == "" {
		return nil
	}
	id := r.Job.ValidationFile
	if strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
		return inputf("%s: validation_file: %q is not an OpenAI file id", opts.JobFile, id)
	}
	for _, dir := range []string{filepath.Dir(opts.JobFile), filepath.Dir(opts.TrainingFile)} {
		for _, name := range []string{id + ".jsonl", id} {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				opts.ValidationFile = p
				r.ValidationFrom = "job validation_file " + id + ", found as " + p
				return nil
			}
		}
	}
	return inputf("%s: validation_file: the job was validated on %s, which was not given and is not beside the job or the "+
		"training file as %s.jsonl: download it (GET /v1/files/%s/content) and pass --validation-file FILE",
		opts.JobFile, id, id, id)
}

// checkOutDir refuses to replace an existing, non-empty directory without force, and with
// force refuses one that holds an input or anything an import does not write (replacing
// it would delete them).
func checkOutDir(opts Options) error {
	st, err := os.Lstat(opts.OutDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return inputf("-o %s: %v", opts.OutDir, err)
	}
	if !st.IsDir() {
		return inputf("-o %s exists and is not a directory", opts.OutDir)
	}
	entries, err := os.ReadDir(opts.OutDir)
	if err != nil {
		return inputf("-o %s: %v", opts.OutDir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if !opts.Force {
		return inputf("-o %s exists and is not empty: give --force to replace it", opts.OutDir)
	}
	// Only what an import writes may go: anything else in DIR (a mistyped -o naming a
	// project or home directory, runs trained there) would be deleted for good.
	for _, e := range entries {
		switch e.Name() {
		case ConfigFile, TrainFile, EvalFile:
			if e.Type().IsRegular() {
				continue
			}
		}
		return inputf("-o %s holds %s, which an import did not write: --force replaces only a directory an earlier import wrote; write elsewhere", opts.OutDir, e.Name())
	}
	out, _ := filepath.Abs(opts.OutDir)
	for _, p := range []string{opts.TrainingFile, opts.ValidationFile, opts.JobFile} {
		if p == "" {
			continue
		}
		a, _ := filepath.Abs(p)
		if rel, err := filepath.Rel(out, a); err == nil && !strings.HasPrefix(rel, "..") {
			return inputf("-o %s holds the input %s: replacing the directory would delete it; write elsewhere", opts.OutDir, p)
		}
	}
	return nil
}

// place renames the finished temp directory to dir. An existing dir (checked by
// checkOutDir) is moved aside first and removed only once the new one is in place.
func place(tmp, dir string, force bool) error {
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if _, err := os.Lstat(dir); err == nil {
		entries, _ := os.ReadDir(dir)
		if len(entries) == 0 {
			if err := os.Remove(dir); err != nil {
				return err
			}
		} else if force {
			old := tmp + ".old"
			if err := os.Rename(dir, old); err != nil {
				return err
			}
			if err := os.Rename(tmp, dir); err != nil {
				_ = os.Rename(old, dir)
				return err
			}
			return os.RemoveAll(old)
		}
	}
	return os.Rename(tmp, dir)
}

// checkError reports the data check's errors at the lines of the input files.
func checkError(rep *dataset.Report, opts Options, train, eval *fileResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "the imported data has %d %s (nothing written):", rep.ErrorsTotal, plural(rep.ErrorsTotal, "error", "errors"))
	for _, e := range rep.Errors {
		src, fr := opts.TrainingFile, train
		if e.File != "" {
			src, fr = opts.ValidationFile, eval
		}
		loc := src
		if e.Line > 0 && fr != nil && e.Line <= len(fr.lineOf) {
			loc = fmt.Sprintf("%s:%d", src, fr.lineOf[e.Line-1])
		}
		path := ""
		if e.Path != "" {
			path = " " + e.Path
		}
		fmt.Fprintf(&b, "\n  %s: %s%s: %s", loc, e.Code, path, e.Message)
	}
	if rest := rep.ErrorsTotal - len(rep.Errors); rest > 0 {
		fmt.Fprintf(&b, "\n  … and %d more", rest)
	}
	return inputf("%s", b.String())
}

// chooseModel sets the base model: --model, or the best proposal for the job's base.
func (r *Result) chooseModel(opts Options) error {
	base := ""
	if r.Job != nil {
		base = r.Job.Model
	}
	r.Class, r.ClassKnown = ClassFor(base)
	if err := r.available(opts); err != nil {
		return err
	}
	shape := RunShape{MicroBatch: r.Settings.BatchSize, GradAccum: r.Settings.GradAccum, MaxLength: r.Settings.MaxLength, Eval: r.Eval != nil}
	r.Quantization = "none"
	if opts.Model != "" {
		r.Model, r.ModelFrom = opts.Model, "--model"
		if st, err := os.Stat(opts.Model); err == nil && st.IsDir() {
			abs, err := filepath.Abs(opts.Model)
			if err != nil {
				return err
			}
			r.Model = abs
		}
		est, _, err := Estimate(r.Model, shape, "none")
		if err != nil {
			r.EstimateNote = "no memory estimate: " + err.Error()
		}
		r.Estimate = est
		return nil
	}
	props, err := Propose(r.Class, shape, r.AvailableBytes)
	if err != nil {
		return err
	}
	r.Proposals = props
	if len(props) == 0 {
		return fmt.Errorf("%w: none of the proposed open models (%s to %s) fits %s of %s, even as 4-bit QLoRA, at micro-batch %d × %d tokens: "+
			"give --model, or --gpu-memory for a larger GPU", ErrNoFit, Candidates[0], Candidates[len(Candidates)-1],
			gpu.FormatBytes(r.AvailableBytes), r.AvailableSource, shape.MicroBatch, shape.MaxLength)
	}
	p := props[0]
	r.Model, r.Quantization = p.Model, p.Quantization
	r.ModelFrom = "proposed for " + describeBase(base) + ", size class " + r.Class.Label
	r.Estimate, _, err = Estimate(p.Model, shape, p.Quantization)
	return err
}

func describeBase(base string) string {
	if base == "" {
		return "no job (default class)"
	}
	return base
}

// available sets the memory the proposals must fit in.
func (r *Result) available(opts Options) error {
	if opts.GPUMemory > 0 {
		r.AvailableBytes, r.AvailableSource = opts.GPUMemory, "--gpu-memory"
		return nil
	}
	if opts.GPU == nil {
		r.AvailableSource = "no GPU found; give --gpu-memory to judge a fit"
		return nil
	}
	m, err := gpu.Open(opts.GPU)
	if err != nil {
		return err
	}
	defer func() { _ = m.Shutdown() }()
	cands, _, err := preflight.Survey(m)
	if err != nil {
		return err
	}
	if len(cands) == 0 {
		r.AvailableSource = "no GPU found; give --gpu-memory to judge a fit"
		return nil
	}
	best := cands[0]
	for _, c := range cands[1:] {
		if c.Free > best.Free {
			best = c
		}
	}
	r.AvailableBytes = best.Free
	r.AvailableSource = fmt.Sprintf("GPU %d (%s) free memory", best.Index, best.Name)
	return nil
}
