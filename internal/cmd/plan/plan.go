// Package plan implements `loractl plan`: the estimated peak GPU memory of a run,
// term by term, whether it fits the GPU it would use, and what would make it fit.
package plan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/launch"
	"github.com/loractl/loractl/plan"
)

// Options are plan's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	Config  string
	Sets    []string
	JSON    bool
	// processes is the run's process count (distributed), for the per-rank estimate.
	processes int
	// GPUMemory, when set, is the memory to judge the fit against instead of a
	// GPU's free memory ("24GiB").
	GPUMemory string
	// GPU is the device to judge against, or -1 for the config's or the most free.
	GPU     int
	AutoFit bool
	// WorstCase estimates every row at max_length instead of the data's lengths.
	WorstCase bool
	// python is the trainer's interpreter spec from the config, for the token count.
	python string
	// Manager builds the GPU manager (NVML in the binary, fakes in tests).
	Manager func() gpu.Manager
}

// NewCmdPlan builds the plan command; runF replaces the work in tests.
func NewCmdPlan(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f, Manager: func() gpu.Manager { return gpu.NewNVML() }}
	cmd := &cobra.Command{
		Use:   "plan CONFIG",
		Short: "Estimate a run's peak GPU memory, judge the fit, and say what would make it fit",
		Long: `Estimate the peak GPU memory of the training run CONFIG describes (a YAML run
config, or a resolved.json), as a breakdown: base weights, LoRA parameters with their
gradients and optimizer states, activations, logits and loss, the backward pass's
working memory, allocator slack and the CUDA context. The model's shape comes from its
config.json (a local directory or the Hugging Face cache) or a built-in table.

The estimate is for the longest micro-batch the data can form (token lengths from the
data check, with the model's tokenizer when the model is a local directory, else
approximate); --worst-case takes every row at max_length. With train.batch_size auto the
micro-batch is the largest that fits in 90% of the memory judged against.

The estimate is compared with the free memory of the GPU the run would use (or with
--gpu-memory) and judged fits, tight (within 10%) or does not fit, followed by the
changes that would make it fit, each with its new estimate. --auto-fit applies them,
gentlest first, and prints the adjusted resolved config with --json.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Config = args[0]
			if runF != nil {
				return runF(opts)
			}
			return planRun(opts)
		},
	}
	cmdutil.SetFlag(cmd.Flags(), &opts.Sets, "train.batch_size=2")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the estimate as JSON (estimate.peak_bytes, estimate.breakdown in bytes)")
	cmd.Flags().StringVar(&opts.GPUMemory, "gpu-memory", "", "judge the fit against this much memory (24GiB, 80GB) instead of a GPU's free memory")
	cmd.Flags().IntVar(&opts.GPU, "gpu", preflight.AnyGPU, "judge the fit on this GPU index (default: the config's gpu, else the one with most free memory)")
	cmd.Flags().BoolVar(&opts.AutoFit, "auto-fit", false, "apply the changes that make the run fit and show the adjusted config")
	cmd.Flags().BoolVar(&opts.WorstCase, "worst-case", false, "estimate every row at max_length (the bound for any data) instead of the longest batch this data forms")
	return cmd
}

// report is plan's JSON output.
type report struct {
	Model    string        `json:"model"`
	Arch     *plan.Arch    `json:"arch"`
	Estimate *estimateJSON `json:"estimate"`
	// GPU is the device judged against; nil with --gpu-memory or without a GPU.
	GPU             *preflight.Candidate `json:"gpu"`
	AvailableBytes  uint64               `json:"available_bytes"`
	AvailableSource string               `json:"available_source"`
	Verdict         plan.Verdict         `json:"verdict,omitempty"`
	Advice          []plan.Advice        `json:"advice,omitempty"`
	AutoFit         *autoFitJSON         `json:"auto_fit,omitempty"`
	Run             runJSON              `json:"run"`
	// DataNote says why the estimate is on the max_length basis when data was asked for.
	DataNote string `json:"data_note,omitempty"`
	// PerRank is one process's estimate in a distributed run; the verdict judges it.
	PerRank *perRankJSON `json:"per_rank,omitempty"`
}

// perRankJSON is a distributed run's per-process estimate (plan.PerRank).
type perRankJSON struct {
	WorldSize int    `json:"world_size"`
	Strategy  string `json:"strategy"`
	PeakBytes uint64 `json:"peak_bytes"`
}

// runJSON is the batch the estimate is for.
type runJSON struct {
	BatchSize          int    `json:"batch_size"`
	GradAccum          int    `json:"grad_accum"`
	EffectiveBatchSize int    `json:"effective_batch_size"`
	BatchSizeAuto      bool   `json:"batch_size_auto"`
	BatchChoice        string `json:"batch_choice,omitempty"`
}

type estimateJSON struct {
	*plan.Estimate
	Breakdown map[string]uint64 `json:"breakdown"`
}

type autoFitJSON struct {
	Changes  []plan.Change    `json:"changes"`
	Estimate *estimateJSON    `json:"estimate"`
	Verdict  plan.Verdict     `json:"verdict"`
	Resolved *config.Resolved `json:"resolved"`
	Error    string           `json:"error,omitempty"`
}

func wrap(e *plan.Estimate) *estimateJSON {
	return &estimateJSON{Estimate: e, Breakdown: e.Breakdown()}
}

// load returns the resolved config and the GPU index the config asks for.
func (o *Options) load() (*config.Resolved, int, error) {
	r, isJSON, err := readFileIfJSON(o.Config)
	if isJSON {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, 0, cmdutil.Invalidf("config %s does not exist", o.Config)
			}
			return nil, 0, cmdutil.Invalid(err)
		}
		if len(o.Sets) > 0 {
			return nil, 0, cmdutil.Invalidf("--set applies to YAML run configs, not to a resolved.json")
		}
		o.processes = max(r.Distributed.Processes(), 1)
		return r, preflight.AnyGPU, nil
	}
	cfg, err := cmdutil.LoadConfig(o.Factory, o.Config, o.Sets, "")
	if err != nil {
		return nil, 0, err
	}
	o.python = cfg.Spec.Python
	o.processes = cfg.Processes()
	return &cfg.Resolved, cfg.GPU, nil
}

func planRun(o *Options) error {
	resolved, cfgGPU, err := o.load()
	if err != nil {
		return err
	}
	run, err := launch.RunFromResolved(resolved)
	if err != nil {
		return cmdutil.Invalid(err)
	}
	rep := &report{Model: run.Model}
	if o.WorstCase {
		run.WorstCase = true
	} else {
		py, _, _ := pyenv.Find(o.python) // no interpreter: approximate lengths
		if run.Data, err = launch.DataLengths(context.Background(), resolved, py, pyenv.TokenCacheDir()); err != nil {
			rep.DataNote = fmt.Sprintf("no data lengths (%v): every row taken at max_length", err)
		}
	}
	if err := o.available(rep, cfgGPU); err != nil {
		return err
	}
	run, choice, err := launch.ChooseBatch(run, resolved.Train, rep.AvailableBytes, max(o.processes, 1))
	if err != nil {
		choice = err.Error()
	}
	rep.Run = runJSON{BatchSize: run.BatchSize, GradAccum: run.GradAccum, EffectiveBatchSize: resolved.Train.EffectiveBatchSize,
		BatchSizeAuto: resolved.Train.BatchSizeAuto, BatchChoice: choice}
	est, err := run.Estimate()
	if err != nil {
		return cmdutil.Invalid(err)
	}
	rep.Arch, rep.Estimate = run.Arch, wrap(est)
	if resolved.Train.BatchSizeAuto {
		// The adjusted config auto-fit prints carries the choice.
		adj := *resolved
		adj.Train.BatchSize, adj.Train.GradAccum = run.BatchSize, run.GradAccum
		resolved = &adj
	}
	need := est.PeakBytes
	if d := resolved.Distributed; d != nil {
		need = plan.PerRank(est, d.Strategy, o.processes)
		rep.PerRank = &perRankJSON{WorldSize: o.processes, Strategy: d.Strategy, PeakBytes: need}
	}
	if rep.AvailableBytes > 0 {
		rep.Verdict = plan.Judge(need, rep.AvailableBytes)
		if rep.Verdict != plan.Fits {
			if rep.Advice, err = plan.Advise(run, rep.AvailableBytes); err != nil {
				return cmdutil.Invalid(err)
			}
		}
	}
	if o.AutoFit {
		if rep.AvailableBytes == 0 {
			return cmdutil.Invalidf("--auto-fit needs a GPU to fit to: none was found, so give --gpu-memory (e.g. 24GiB)")
		}
		_, changes, fe, ferr := plan.AutoFit(run, rep.AvailableBytes)
		if fe != nil {
			adj := *resolved
			if err := launch.ApplyChanges(&adj, changes); err != nil {
				return cmdutil.Failed(err)
			}
			rep.AutoFit = &autoFitJSON{Changes: changes, Estimate: wrap(fe), Verdict: plan.Judge(fe.PeakBytes, rep.AvailableBytes), Resolved: &adj}
			if rep.AutoFit.Changes == nil {
				rep.AutoFit.Changes = []plan.Change{}
			}
			if ferr != nil {
				rep.AutoFit.Error = ferr.Error()
			}
		} else if ferr != nil {
			return cmdutil.Invalid(ferr)
		}
	}
	out := o.Factory.IO.Out
	if o.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(out, &run, rep)
	return nil
}

// available fills in the memory to judge against: --gpu-memory, else the free
// memory of the GPU the run would get (the same choice `loractl train` makes).
func (o *Options) available(rep *report, cfgGPU int) error {
	if o.GPUMemory != "" {
		n, err := ParseBytes(o.GPUMemory)
		if err != nil {
			return cmdutil.Invalidf("--gpu-memory: %v", err)
		}
		rep.AvailableBytes, rep.AvailableSource = n, "--gpu-memory "+o.GPUMemory
		return nil
	}
	m, err := gpu.Open(o.Manager())
	if err != nil {
		return cmdutil.Failed(err)
	}
	defer func() { _ = m.Shutdown() }()
	cands, unusable, err := preflight.Survey(m)
	if err != nil {
		return cmdutil.Failed(err)
	}
	if len(cands) == 0 {
		rep.AvailableSource = "no GPU found; give --gpu-memory to judge a fit"
		if len(unusable) > 0 {
			rep.AvailableSource = fmt.Sprintf("no usable GPU: %s; give --gpu-memory to judge a fit", unusable[0])
		}
		return nil
	}
	index := o.GPU
	if index == preflight.AnyGPU {
		index = cfgGPU
	}
	c, ok := preflight.Pick(cands, index)
	if !ok {
		return cmdutil.Invalidf("GPU %d does not exist (this machine has GPUs 0-%d)", index, cands[len(cands)-1].Index)
	}
	rep.GPU, rep.AvailableBytes = &c, c.Free
	rep.AvailableSource = fmt.Sprintf("GPU %d (%s) free memory", c.Index, c.Name)
	return nil
}

func gibs(n uint64) string { return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30)) }

func printReport(w io.Writer, r *plan.Run, rep *report) {
	e := rep.Estimate
	a := r.Arch
	fmt.Fprintf(w, "Model   %s: %s, %d layers, hidden %d (%s)\n", r.Model, a.Family, a.Layers, a.Hidden, a.Source)
	fmt.Fprintf(w, "        %s parameters, %s trainable (%.2f%%)\n", count(e.TotalParams), count(e.TrainableParams),
		100*float64(e.TrainableParams)/float64(e.TotalParams))
	gc := "off"
	if r.GradientCheckpointing {
		gc = "on"
	}
	quant := r.Quantization
	if quant == "" || quant == "none" {
		quant = "16-bit"
	}
	fmt.Fprintf(w, "Run     micro-batch %d × grad_accum %d (effective batch %d), max_length %d, gradient checkpointing %s, base %s\n",
		r.BatchSize, r.GradAccum, rep.Run.EffectiveBatchSize, r.MaxLength, gc, quant)
	if rep.Run.BatchChoice != "" {
		fmt.Fprintf(w, "        batch_size %s\n", rep.Run.BatchChoice)
	}
	switch {
	case e.Basis == plan.BasisData:
		approx := ""
		if e.LengthsApproximate {
			approx = ", lengths approximate (no tokenizer)"
		}
		layout := fmt.Sprintf("rows padded to %d", e.SeqLen)
		switch {
		case r.Packing:
			layout = fmt.Sprintf("packed bins of %d", e.SeqLen)
		case r.PaddingFree:
			layout = "one padding-free sequence"
		}
		fmt.Fprintf(w, "Basis   the longest micro-batch this data forms: %d tokens, %s%s; every row at max_length: %s (--worst-case)\n\n",
			e.BatchTokens, layout, approx, gibs(e.WorstCasePeakBytes))
	case rep.DataNote != "":
		fmt.Fprintf(w, "Basis   max_length: %s\n\n", rep.DataNote)
	default:
		fmt.Fprintf(w, "Basis   every row at max_length\n\n")
	}
	printEstimate(w, "Estimated peak GPU memory", e.Estimate)
	need := e.PeakBytes
	if pr := rep.PerRank; pr != nil {
		need = pr.PeakBytes
		fmt.Fprintf(w, "\nPer process (%d processes, %s): %s", pr.WorldSize, pr.Strategy, gibs(need))
		if pr.Strategy == "fsdp" {
			fmt.Fprintf(w, " (base weights sharded %d ways; the layer being gathered not counted)", pr.WorldSize)
		}
		fmt.Fprintln(w)
	}
	if rep.AvailableBytes == 0 {
		fmt.Fprintf(w, "\nFit: %s.\n", rep.AvailableSource)
		return
	}
	fmt.Fprintf(w, "\nFit: %s against %s of %s → %s\n", gibs(need), gibs(rep.AvailableBytes), rep.AvailableSource, rep.Verdict)
	if len(rep.Advice) > 0 {
		fmt.Fprintf(w, "\nWhat would make it fit:\n")
		for _, a := range rep.Advice {
			still := ""
			if a.Partial {
				still = ", not enough alone"
			}
			fmt.Fprintf(w, "  - %s: %s (%s%s)\n", a.Summary, gibs(a.PeakBytes), a.Verdict, still)
		}
	} else if rep.Verdict != plan.Fits {
		fmt.Fprintf(w, "\nNo single change the estimator knows improves this verdict.\n")
	}
	if rep.Verdict != plan.Fits && rep.AutoFit == nil {
		fmt.Fprintf(w, "\n`loractl plan --auto-fit` combines these changes, gentlest first, and prints the adjusted config (with --json).\n")
	}
	if af := rep.AutoFit; af != nil {
		fmt.Fprintf(w, "\nAuto-fit:\n")
		if len(af.Changes) == 0 {
			fmt.Fprintf(w, "  nothing to change\n")
		}
		for _, c := range af.Changes {
			fmt.Fprintf(w, "  set %s = %v\n", c.Setting, c.Value)
		}
		if af.Error != "" {
			fmt.Fprintf(w, "  %s\n", af.Error)
		}
		fmt.Fprintln(w)
		printEstimate(w, fmt.Sprintf("Adjusted estimate (%s)", af.Verdict), af.Estimate.Estimate)
	}
}

func printEstimate(w io.Writer, title string, e *plan.Estimate) {
	fmt.Fprintf(w, "%s: %s (peak during %s)\n", title, gibs(e.PeakBytes), e.Phase)
	for _, t := range e.Terms {
		if t.Bytes == 0 {
			continue
		}
		fmt.Fprintf(w, "  %-18s %10s   %s\n", t.Name, gibs(t.Bytes), t.Detail)
	}
	for _, n := range e.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

func count(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	}
	return fmt.Sprintf("%d", n)
}
