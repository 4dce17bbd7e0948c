package plan

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/gputest"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
)

const gib = uint64(1 << 30)

const llamaConfig = `{"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
 "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": true}`

// fixture writes a model directory with a config.json, a data file and a run config.
func fixture(t *testing.T, trainYAML string) string {
	t.Helper()
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	must(t, os.MkdirAll(model, 0o755))
	must(t, os.WriteFile(filepath.Join(model, "config.json"), []byte(llamaConfig), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}`+"\n"), 0o644))
	cfg := "name: p\nmodel: ./model\ndata:\n  train: train.jsonl\n" + trainYAML
	p := filepath.Join(dir, "run.yaml")
	must(t, os.WriteFile(p, []byte(cfg), 0o644))
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func planFor(t *testing.T, o *Options) (string, error) {
	t.Helper()
	ios, _, out, _ := iostreams.Test()
	o.Factory = &cmdutil.Factory{IO: ios}
	if o.Manager == nil {
		o.Manager = func() gpu.Manager { return gpu.None{} }
	}
	err := planRun(o)
	return out.String(), err
}

type planJSON struct {
	Estimate struct {
		PeakBytes       uint64            `json:"peak_bytes"`
		Breakdown       map[string]uint64 `json:"breakdown"`
		TrainableParams int64             `json:"trainable_params"`
	} `json:"estimate"`
	AvailableBytes uint64               `json:"available_bytes"`
	Verdict        string               `json:"verdict"`
	GPU            *struct{ Index int } `json:"gpu"`
	Advice         []struct {
		Summary   string `json:"summary"`
		PeakBytes uint64 `json:"peak_bytes"`
	} `json:"advice"`
	AutoFit *struct {
		Changes  []struct{ Setting string } `json:"changes"`
		Verdict  string                     `json:"verdict"`
		Resolved struct {
			Train struct {
				GradientCheckpointing bool `json:"gradient_checkpointing"`
				BatchSize             int  `json:"batch_size"`
			} `json:"train"`
		} `json:"resolved"`
	} `json:"auto_fit"`
}

func decode(t *testing.T, out string) planJSON {
	t.Helper()
	var p planJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	return p
}

func TestPlanJSONCarriesPeakAndBreakdown(t *testing.T) {
	cfg := fixture(t, "train:\n  batch_size: 2\n  max_length: 1024\n")
	out, err := planFor(t, &Options{Config: cfg, GPU: -1, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	p := decode(t, out)
	var sum uint64
	for _, v := range p.Estimate.Breakdown {
		sum += v
	}
	if p.Estimate.PeakBytes == 0 || sum != p.Estimate.PeakBytes {
		t.Errorf("peak %d, breakdown sums to %d: %v", p.Estimate.PeakBytes, sum, p.Estimate.Breakdown)
	}
	for _, k := range []string{"base_weights", "lora_params", "lora_gradients", "optimizer_states", "activations",
		"logits_and_loss", "backward_working", "allocator_slack", "cuda_context"} {
		if _, ok := p.Estimate.Breakdown[k]; !ok {
			t.Errorf("breakdown lacks %s", k)
		}
	}
	// r 16 on q,v of a 16-layer Llama: 16 × 16 × ((2048+2048) + (2048+512))
	if p.Estimate.TrainableParams != 1_703_936 {
		t.Errorf("trainable = %d", p.Estimate.TrainableParams)
	}
	if p.Verdict != "" || p.AvailableBytes != 0 {
		t.Errorf("no GPU and no --gpu-memory: verdict %q", p.Verdict)
	}
}

func TestPlanVerdicts(t *testing.T) {
	cfg := fixture(t, "train:\n  batch_size: 8\n  max_length: 2048\n  gradient_checkpointing: false\n")
	tests := []struct {
		name        string
		opts        Options
		wantVerdict string
		wantAdvice  bool
		wantGPU     int
	}{
		{"large card", Options{GPU: -1, GPUMemory: "80GiB"}, "fits", false, -1},
		{"small card", Options{GPU: -1, GPUMemory: "16GB"}, "does not fit", true, -1},
		{"most free GPU", Options{GPU: -1, Manager: func() gpu.Manager {
			return gputest.New(gputest.GPU("A", 80*gib, 8*gib), gputest.GPU("B", 80*gib, 79*gib))
		}}, "fits", false, 1},
		{"the GPU asked for", Options{GPU: 0, Manager: func() gpu.Manager {
			return gputest.New(gputest.GPU("A", 80*gib, 8*gib), gputest.GPU("B", 80*gib, 79*gib))
		}}, "does not fit", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.Config, o.JSON, o.WorstCase = cfg, true, true
			ios, _, out, _ := iostreams.Test()
			o.Factory = &cmdutil.Factory{IO: ios}
			if o.Manager == nil {
				o.Manager = func() gpu.Manager { return gpu.None{} }
			}
			if err := planRun(&o); err != nil {
				t.Fatal(err)
			}
			p := decode(t, out.String())
			if p.Verdict != tt.wantVerdict || (len(p.Advice) > 0) != tt.wantAdvice {
				t.Errorf("verdict %q, advice %v", p.Verdict, p.Advice)
			}
			if tt.wantGPU >= 0 && (p.GPU == nil || p.GPU.Index != tt.wantGPU) {
				t.Errorf("gpu = %+v, want %d", p.GPU, tt.wantGPU)
			}
			for _, a := range p.Advice {
				if a.PeakBytes == 0 || a.PeakBytes >= p.Estimate.PeakBytes {
					t.Errorf("advice %q has estimate %d (run: %d)", a.Summary, a.PeakBytes, p.Estimate.PeakBytes)
				}
			}
		})
	}
}

func TestPlanAutoFit(t *testing.T) {
	cfg := fixture(t, "train:\n  batch_size: 8\n  max_length: 2048\n  gradient_checkpointing: false\n")
	out, err := planFor(t, &Options{Config: cfg, GPU: -1, JSON: true, GPUMemory: "16GiB", AutoFit: true, WorstCase: true})
	if err != nil {
		t.Fatal(err)
	}
	p := decode(t, out)
	if p.AutoFit == nil || p.AutoFit.Verdict != "fits" || len(p.AutoFit.Changes) == 0 {
		t.Fatalf("auto_fit = %+v", p.AutoFit)
	}
	if !p.AutoFit.Resolved.Train.GradientCheckpointing {
		t.Errorf("adjusted resolved config: %+v", p.AutoFit.Resolved)
	}
	human, err := planFor(t, &Options{Config: cfg, GPU: -1, GPUMemory: "16GiB", AutoFit: true, WorstCase: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"does not fit", "What would make it fit:", "Auto-fit:", "set train.gradient_checkpointing = true", "Adjusted estimate (fits)"} {
		if !strings.Contains(human, want) {
			t.Errorf("output lacks %q:\n%s", want, human)
		}
	}
	if _, err := planFor(t, &Options{Config: cfg, GPU: -1, AutoFit: true}); cmdutil.ExitCode(err) != cmdutil.ExitInvalid ||
		!strings.Contains(err.Error(), "--gpu-memory") {
		t.Errorf("auto-fit without a GPU: %v", err)
	}
}

func TestPlanReadsResolvedJSON(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(llamaConfig), 0o644))
	resolved := `{"version": 1, "name": "x", "model": {"name_or_path": "` + dir + `", "revision": "", "trust_remote_code": false},
	 "data": {"train": "/d/train.jsonl", "eval": "", "eval_split": 0},
	 "lora": {"r": 32, "alpha": 64, "dropout": 0, "target_modules": ["q_proj", "v_proj"], "bias": "none", "use_rslora": false, "use_dora": false},
	 "quantization": {"mode": "none", "quant_type": "nf4", "double_quant": true},
	 "train": {"batch_size": 1, "eval_batch_size": 1, "grad_accum": 1, "max_length": 512, "gradient_checkpointing": true,
	   "precision": "bf16", "optim": "adamw_torch", "loss_type": "nll"}}`
	p := filepath.Join(dir, "resolved.json")
	must(t, os.WriteFile(p, []byte(resolved), 0o644))
	out, err := planFor(t, &Options{Config: p, GPU: -1, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, out).Estimate.TrainableParams; got != 2*1_703_936 {
		t.Errorf("trainable = %d", got)
	}
}

func TestPlanErrors(t *testing.T) {
	dir := t.TempDir()
	notResolved := filepath.Join(dir, "x.json")
	must(t, os.WriteFile(notResolved, []byte(`{"model": "m"}`), 0o644))
	unknown := fixture(t, "")
	must(t, os.WriteFile(unknown, []byte("name: p\nmodel: acme/mystery-7b\ndata:\n  train: train.jsonl\n"), 0o644))
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"missing config", Options{GPU: -1, Config: filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
		{"json that is not resolved.json", Options{GPU: -1, Config: notResolved}, "not a resolved.json"},
		{"unknown model", Options{GPU: -1, Config: unknown}, `unknown model "acme/mystery-7b"`},
		{"bad memory size", Options{GPU: -1, Config: fixture(t, ""), GPUMemory: "lots"}, "--gpu-memory"},
		{"no such GPU", Options{Config: fixture(t, ""), GPU: 5, Manager: func() gpu.Manager {
			return gputest.New(gputest.GPU("A", 80*gib, 80*gib))
		}}, "GPU 5 does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := planFor(t, &tt.opts)
			if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v (exit %d), want exit 2 mentioning %q", err, cmdutil.ExitCode(err), tt.want)
			}
		})
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		bad  bool
	}{
		{"24GiB", 24 << 30, false},
		{"24G", 24 << 30, false},
		{"80GB", 80e9, false},
		{"1.5 GiB", 3 << 29, false},
		{"81559MiB", 81559 << 20, false},
		{"1024", 1024, false},
		{"24XB", 0, true},
		{"-1GiB", 0, true},
		{"", 0, true},
		// Under one byte: 0 would mean "no GPU" to the fit judgement.
		{"0.5b", 0, true},
		{"0.0000001", 0, true},
		{"0.0000001KiB", 0, true},
		// Past 2^64 bytes the conversion would wrap.
		{"99999999999TB", 0, true},
		{"16EiB", 0, true},
		{"16777216TiB", 0, true}, // exactly 2^64
		{"16777215TiB", 16777215 << 40, false},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v", tt.in, got, err)
		}
		if tt.bad && err != nil && !strings.Contains(err.Error(), tt.in) {
			t.Errorf("ParseBytes(%q): error %q does not name the input", tt.in, err)
		}
	}
}

func TestFlags(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var got *Options
	cmd := NewCmdPlan(&cmdutil.Factory{IO: ios}, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"run.yaml", "--json", "--gpu-memory", "24GiB", "--auto-fit", "--gpu", "1", "--set", "train.batch_size=2"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Config != "run.yaml" || !got.JSON || got.GPUMemory != "24GiB" || !got.AutoFit || got.GPU != 1 || got.Sets[0] != "train.batch_size=2" {
		t.Errorf("options = %+v", got)
	}
}

// A MIG-enabled GPU without instances is named as the reason there is nothing to
// judge against, not passed off as a machine without a GPU.
func TestPlanSaysWhyAMIGGPUIsUnusable(t *testing.T) {
	mig := gputest.GPU("H100", 80*gib, 80*gib)
	mig.MIGEnabled = true
	out, err := planFor(t, &Options{Config: fixture(t, ""), GPU: -1, Manager: func() gpu.Manager { return gputest.New(mig) }})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "MIG enabled but no MIG instance") {
		t.Errorf("output does not say why the GPU is unusable:\n%s", out)
	}
}

// The data basis: the fixture's one short row is far below max_length, so the
// estimate is smaller than the worst case, and says its lengths are approximate
// without a tokenizer. With batch_size auto the micro-batch follows --gpu-memory and
// the effective batch stays.
func TestPlanDataBasisAndAutoBatch(t *testing.T) {
	type basisJSON struct {
		Estimate struct {
			Basis       string `json:"basis"`
			Peak        uint64 `json:"peak_bytes"`
			Worst       uint64 `json:"worst_case_peak_bytes"`
			Approximate bool   `json:"lengths_approximate"`
		} `json:"estimate"`
		Run struct {
			BatchSize int `json:"batch_size"`
			GradAccum int `json:"grad_accum"`
		} `json:"run"`
	}
	get := func(t *testing.T, yaml string, o Options) basisJSON {
		t.Helper()
		o.Config, o.GPU, o.JSON = fixture(t, yaml), -1, true
		out, err := planFor(t, &o)
		if err != nil {
			t.Fatal(err)
		}
		var p basisJSON
		must(t, json.Unmarshal([]byte(out), &p))
		return p
	}
	data := get(t, "train:\n  batch_size: 8\n  max_length: 2048\n", Options{GPUMemory: "80GiB"})
	if data.Estimate.Basis != "data" || !data.Estimate.Approximate || data.Estimate.Peak >= data.Estimate.Worst {
		t.Errorf("data basis: %+v", data.Estimate)
	}
	worst := get(t, "train:\n  batch_size: 8\n  max_length: 2048\n", Options{GPUMemory: "80GiB", WorstCase: true})
	if worst.Estimate.Basis != "max_length" || worst.Estimate.Peak != data.Estimate.Worst {
		t.Errorf("worst case: %+v (data basis said %d)", worst.Estimate, data.Estimate.Worst)
	}
	auto := "train:\n  batch_size: auto\n  effective_batch_size: 32\n  max_length: 2048\n  gradient_checkpointing: false\n"
	for _, tt := range []struct {
		mem       string
		wantBatch int
	}{{"1TiB", 32}, {"", 8}} {
		p := get(t, auto, Options{GPUMemory: tt.mem, WorstCase: true})
		if p.Run.BatchSize != tt.wantBatch || p.Run.BatchSize*p.Run.GradAccum != 32 {
			t.Errorf("--gpu-memory %q: run %+v, want micro-batch %d", tt.mem, p.Run, tt.wantBatch)
		}
	}
	// A smaller card takes fewer rows per micro-batch, with more accumulation.
	small := get(t, auto, Options{GPUMemory: "24GiB", WorstCase: true})
	if small.Run.BatchSize >= 32 || small.Run.BatchSize*small.Run.GradAccum != 32 {
		t.Errorf("24GiB: run %+v", small.Run)
	}
}

// A run that does not fit points to --auto-fit, and a change that cuts the peak a
// lot without making it fit is still named, marked as not enough alone.
func TestPlanPointsToAutoFit(t *testing.T) {
	cfg := fixture(t, "train:\n  batch_size: 16\n  max_length: 4096\n  gradient_checkpointing: false\n")
	out, err := planFor(t, &Options{Config: cfg, GPU: -1, GPUMemory: "4GiB", WorstCase: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"does not fit", "turn on gradient checkpointing", "not enough alone", "loractl plan --auto-fit"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
