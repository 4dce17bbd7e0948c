package plan

import (
	"fmt"
	"math"
	"strings"
)

// Run is what the estimator needs to know about a training run: the resolved
// config's memory-relevant settings plus the model's architecture.
type Run struct {
	// Model is the name or path, for messages.
	Model string
	Arch  *Arch
	LoRA  LoRA
	// Quantization is "none", "4bit" (NF4) or "8bit" (LLM.int8).
	Quantization string
	// DoubleQuant quantizes the 4-bit block constants again (bnb_4bit_use_double_quant).
	DoubleQuant   bool
	BatchSize     int
	EvalBatchSize int
	// GradAccum does not change the peak; advice keeps the effective batch with it.
	GradAccum             int
	MaxLength             int
	GradientCheckpointing bool
	// Precision is "auto", "bf16", "fp16" or "fp32"; auto means 16-bit on a GPU.
	Precision string
	// LossType is TRL's: "nll" (also "chunked_nll", "dft") computes the loss in
	// tiles without the full logits; "full_logits" is the model's own
	// cross-entropy over materialised logits (a custom loss, label smoothing, or a
	// training loop without TRL).
	LossType string
	// Optimizer is the transformers optim name ("adamw_torch", "paged_adamw_8bit", ...).
	Optimizer string
	// Packing without padding needs no attention mask.
	Packing bool
	// Eval is set when the run evaluates (it always does with an eval set).
	Eval bool
	// Data holds the token lengths the data check counted; with it (and without
	// WorstCase) the estimate is for the longest micro-batch this data can form.
	Data *Lengths
	// WorstCase estimates every row at max_length even when Data is known.
	WorstCase bool
	// PaddingFree flattens each micro-batch into one sequence without padding
	// (TRL's padding_free): the batch holds only its rows' own tokens.
	PaddingFree bool
	// FlashAttention is flash_attention_2: variable-length attention, no mask.
	FlashAttention bool
	// Liger is liger-kernel's RMSNorm and SwiGLU kernels (and, for a loss over full
	// logits, its fused linear cross-entropy).
	Liger bool
}

// LoRA is the adapter's shape.
type LoRA struct {
	R int
	// Targets are module names (q_proj, ...) or the single entry "all-linear".
	Targets []string
	Dropout float64
	DoRA    bool
}

// Term is one line of the breakdown.
type Term struct {
	Name   string `json:"name"`
	Bytes  uint64 `json:"bytes"`
	Detail string `json:"detail"`
}

// Lengths are the token lengths of a run's examples under the chat template,
// before truncation, as the data check counted them.
type Lengths struct {
	// Train and Eval hold the longest examples of each set, longest first (at most
	// LongestKept of them: enough for any micro-batch the search considers).
	Train, Eval []int
	// TrainCount and EvalCount are the number of examples of each set.
	TrainCount, EvalCount int
	// Approximate: counted without the model's tokenizer (estimated from bytes).
	Approximate bool
}

// Basis values: what the estimate's micro-batch is made of.
const (
	// BasisData is the longest micro-batch the data can form.
	BasisData = "data"
	// BasisMaxLength is every row max_length long (the bound for any data).
	BasisMaxLength = "max_length"
)

// Estimate is the predicted peak GPU memory of a run, as NVML would report it for the
// trainer's process, with the terms that make it up at the moment of the peak.
type Estimate struct {
	// Basis is BasisData or BasisMaxLength; PeakBytes is for that basis.
	Basis     string `json:"basis"`
	PeakBytes uint64 `json:"peak_bytes"`
	// WorstCasePeakBytes is the peak with every row max_length long (the same as
	// PeakBytes on that basis).
	WorstCasePeakBytes uint64 `json:"worst_case_peak_bytes"`
	// BatchTokens and SeqLen describe the micro-batch estimated: tokens in it and the
	// length its rows are padded to (one flattened sequence when padding-free).
	BatchTokens int64 `json:"batch_tokens"`
	SeqLen      int   `json:"seq_len"`
	// LengthsApproximate: the data basis rests on token counts estimated without
	// the model's tokenizer.
	LengthsApproximate bool `json:"lengths_approximate,omitempty"`
	// Phase is where the peak falls: "train" or "eval".
	Phase string `json:"phase"`
	// AllocatedBytes is the part PyTorch allocates at the peak (what
	// torch.cuda.max_memory_allocated measures): the peak less allocator slack and
	// the CUDA context.
	AllocatedBytes uint64 `json:"allocated_bytes"`
	// TrainPeakBytes and EvalPeakBytes are the peaks of each phase.
	TrainPeakBytes uint64 `json:"train_peak_bytes"`
	EvalPeakBytes  uint64 `json:"eval_peak_bytes"`
	// Terms add up to PeakBytes.
	Terms           []Term `json:"terms"`
	TotalParams     int64  `json:"total_params"`
	TrainableParams int64  `json:"trainable_params"`
	// ActivationBytes holds the saved activations with and without gradient
	// checkpointing, whichever the run uses, so both can be compared.
	ActivationBytesGC   uint64   `json:"activation_bytes_gc"`
	ActivationBytesNoGC uint64   `json:"activation_bytes_no_gc"`
	Notes               []string `json:"notes,omitempty"`
}

// Breakdown returns the terms as a name → bytes map (the JSON form of the breakdown).
func (e *Estimate) Breakdown() map[string]uint64 {
	m := make(map[string]uint64, len(e.Terms))
	for _, t := range e.Terms {
		m[t.Name] = t.Bytes
	}
	return m
}

// Constants of the estimate. Each is derived in docs/memory.md; the ones marked
// "calibrated" are where GPU measurements feed back.
const (
	mib = 1 << 20
	// cudaContext is the CUDA context, loaded kernels and library handles of a
	// PyTorch process, outside the caching allocator (calibrated: NVML less torch's
	// reserved memory was 758 MiB in every setting measured on an H200 with torch
	// 2.11 and CUDA 13).
	cudaContext = 758 * mib
	// allocatorSlack is the caching allocator's reserved-over-allocated overhead as
	// a fraction of what PyTorch allocates (calibrated).
	allocatorSlack = 0.05
	// allocatorSlackGC is the same with gradient checkpointing: recomputing a layer
	// inside the backward pass fragments the cache more (measured 4.7-10.4%).
	allocatorSlackGC = 0.10
	// fusedTokens and fusedVocab are the tile of TRL's chunked log-prob kernel
	// (TOKEN_CHUNK_SIZE × _CHUNKED_LOGPROB_CHUNK_SIZE in trl/kernels).
	fusedTokens = 4096
	fusedVocab  = 32768
)

// Linear is one projection of a decoder layer.
type Linear struct {
	Name    string
	In, Out int
	// Group names the tensor the projection reads; projections of one group share
	// their input (q, k and v read the same normed hidden states).
	Group string
}

// Linears lists a layer's projections under the names PEFT's target_modules use.
func (a *Arch) Linears() []Linear {
	q, kv := a.Heads*a.HeadDim, a.KVHeads*a.HeadDim
	if a.Fused {
		return []Linear{
			{"qkv_proj", a.Hidden, q + 2*kv, "attn_in"},
			{"o_proj", q, a.Hidden, "attn_out"},
			{"gate_up_proj", a.Hidden, 2 * a.Intermediate, "mlp_in"},
			{"down_proj", a.Intermediate, a.Hidden, "mlp_out"},
		}
	}
	return []Linear{
		{"q_proj", a.Hidden, q, "attn_in"},
		{"k_proj", a.Hidden, kv, "attn_in"},
		{"v_proj", a.Hidden, kv, "attn_in"},
		{"o_proj", q, a.Hidden, "attn_out"},
		{"gate_proj", a.Hidden, a.Intermediate, "mlp_in"},
		{"up_proj", a.Hidden, a.Intermediate, "mlp_in"},
		{"down_proj", a.Intermediate, a.Hidden, "mlp_out"},
	}
}

// Params counts the model's parameters: decoder linears (the part 4-bit quantizes)
// and everything else (embeddings, head, norms, biases, any vision tower).
func (a *Arch) Params() (linear, other int64) {
	for _, l := range a.Linears() {
		linear += int64(l.In) * int64(l.Out)
	}
	linear *= int64(a.Layers)
	h, L := int64(a.Hidden), int64(a.Layers)
	perLayer := int64(a.NormsPerLayer) * h
	if a.AttnBias {
		perLayer += int64(a.Heads+2*a.KVHeads) * int64(a.HeadDim)
	}
	if a.QKNorm {
		perLayer += 2 * int64(a.HeadDim)
	}
	other = int64(a.Vocab)*h + L*perLayer + h + a.ExtraParams
	if !a.Tied {
		other += int64(a.Vocab) * h
	}
	return linear, other
}

// modulePath is where a projection sits in a decoder layer, as PEFT sees the module
// names (model.layers.N.self_attn.q_proj), with "*" for the layer index.
func (l Linear) modulePath() []string {
	parent := "mlp"
	if l.Group == "attn_in" || l.Group == "attn_out" {
		parent = "self_attn"
	}
	return []string{"model", "layers", "*", parent, l.Name}
}

// matchesTarget is PEFT's rule for a list of target_modules: a name matches a module
// whose full name equals it or ends with "." + it, so "self_attn.q_proj" selects
// every layer's q_proj. A name that reaches into the layer index selects only some
// layers, which the estimator does not model: it matches nothing here.
func (l Linear) matchesTarget(target string) bool {
	path, parts := l.modulePath(), strings.Split(target, ".")
	if len(parts) > len(path) {
		return false
	}
	off := len(path) - len(parts)
	for i, p := range parts {
		if path[off+i] == "*" || path[off+i] != p {
			return false
		}
	}
	return true
}

// Adapted resolves target_modules to the layer's projections, or says which names
// are unknown. Names match as PEFT matches them: the projection's name or a suffix
// of its module path (self_attn.q_proj, mlp.down_proj).
func (a *Arch) Adapted(targets []string) ([]Linear, error) {
	all := a.Linears()
	if len(targets) == 1 && targets[0] == "all-linear" {
		return all, nil
	}
	var unknown []string
	picked := make([]bool, len(all))
	for _, t := range targets {
		found := false
		for i, l := range all {
			if l.matchesTarget(t) {
				picked[i], found = true, true
			}
		}
		if !found {
			unknown = append(unknown, t)
		}
	}
	if len(unknown) > 0 {
		names := make([]string, len(all))
		for i, l := range all {
			names[i] = l.Name
		}
		return nil, fmt.Errorf("lora.target_modules: %s not in a %s layer (its projections: %s, or all-linear)",
			strings.Join(unknown, ", "), a.Family, strings.Join(names, ", "))
	}
	var out []Linear
	for i, l := range all {
		if picked[i] {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lora.target_modules is empty")
	}
	return out, nil
}

// TrainableParams is r·(in+out) per adapted projection per layer (plus DoRA's
// magnitude vector of size out).
func (r *Run) TrainableParams() (int64, error) {
	adapted, err := r.Arch.Adapted(r.LoRA.Targets)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range adapted {
		n += int64(r.LoRA.R) * int64(l.In+l.Out)
		if r.LoRA.DoRA {
			n += int64(l.Out)
		}
	}
	return n * int64(r.Arch.Layers), nil
}

func (r *Run) validate() error {
	if r.Arch == nil {
		return fmt.Errorf("no architecture for model %q", r.Model)
	}
	switch {
	case r.LoRA.R <= 0:
		return fmt.Errorf("lora.r must be positive, got %d", r.LoRA.R)
	case r.BatchSize <= 0:
		return fmt.Errorf("train.batch_size must be positive, got %d", r.BatchSize)
	case r.MaxLength <= 0:
		return fmt.Errorf("train.max_length must be positive, got %d", r.MaxLength)
	}
	switch r.Quantization {
	case "", "none", "4bit", "8bit":
	default:
		return fmt.Errorf("quantization.mode %q: want none, 4bit or 8bit", r.Quantization)
	}
	switch r.Precision {
	case "", "auto", "bf16", "fp16", "fp32":
	default:
		return fmt.Errorf("train.precision %q: want auto, bf16, fp16 or fp32", r.Precision)
	}
	switch r.LossType {
	case "", "nll", "chunked_nll", "dft", "full_logits":
	default:
		return fmt.Errorf("train.loss_type %q: want nll, dft or full_logits", r.LossType)
	}
	return nil
}

// quantized reports whether the base weights are 4- or 8-bit.
func (r *Run) quantized() bool { return r.Quantization == "4bit" || r.Quantization == "8bit" }

// wordBytes is the size of one activation element: 2 under 16-bit autocast, 4 in fp32.
func (r *Run) wordBytes() int64 {
	if r.Precision == "fp32" {
		return 4
	}
	return 2
}

// adapterBytes is the size of one adapter parameter: PEFT keeps adapters in fp32 on a
// 16-bit base (autocast_adapter_dtype), and TRL casts them to bf16 on a quantized one.
func (r *Run) adapterBytes() int64 {
	if r.quantized() && r.Precision != "fp32" {
		return 2
	}
	return 4
}

// optimizerStateBytes is the optimizer's state per trainable parameter, and a note
// when the optimizer is not one the estimator knows.
func (r *Run) optimizerStateBytes() (float64, string) {
	o := strings.ToLower(r.Optimizer)
	switch {
	case o == "" || strings.HasPrefix(o, "adamw") && !strings.Contains(o, "8bit") || o == "paged_adamw_32bit":
		return 2 * float64(r.adapterBytes()), "" // two moments in the parameter's dtype
	case strings.Contains(o, "8bit"):
		return 2, "" // two 8-bit moments (block constants are negligible)
	case o == "sgd":
		return 0, ""
	case o == "adafactor":
		return float64(r.adapterBytes()), ""
	default:
		return 2 * float64(r.adapterBytes()), fmt.Sprintf("optimizer %q is not one the estimator knows; counted like AdamW", r.Optimizer)
	}
}

// baseWeightBytes is the resident size of the base model.
func (r *Run) baseWeightBytes() (uint64, string) {
	linear, other := r.Arch.Params()
	wb := float64(r.wordBytes())
	switch r.Quantization {
	case "4bit":
		// NF4: 4 bits per weight plus one absmax per 64-weight block, in fp32 (0.5
		// bit/weight) or, double-quantized, in 8 bits with an fp32 constant per 256
		// blocks (0.127 bit/weight). Embeddings, head and norms stay 16-bit.
		bits := 4.5
		if r.DoubleQuant {
			bits = 4 + 8.0/64 + 32.0/(64*256)
		}
		return uint64(float64(linear)*bits/8 + float64(other)*2),
			fmt.Sprintf("%s linear weights in NF4 (%.3f bit each), %s others in 16-bit", human(linear), bits, human(other))
	case "8bit":
		// int8 weights plus one fp32 scale per output row.
		rows := int64(0)
		for _, l := range r.Arch.Linears() {
			rows += int64(l.Out)
		}
		return uint64(linear + 4*rows*int64(r.Arch.Layers) + other*2),
			fmt.Sprintf("%s linear weights in int8, %s others in 16-bit", human(linear), human(other))
	}
	return uint64(float64(linear+other) * wb), fmt.Sprintf("%s parameters × %d bytes", human(linear+other), int64(wb))
}

// layerTokenBytes is what autograd saves per token in one decoder layer, without the
// per-layer attention mask (see docs/memory.md, "Activations", for each line).
func (r *Run) layerTokenBytes(bt batch, adapted []Linear) int64 {
	a := r.Arch
	wb := r.wordBytes()
	h, i := int64(a.Hidden), int64(a.Intermediate)
	q, kv := int64(a.Heads*a.HeadDim), int64(a.KVHeads*a.HeadDim)
	n := int64(a.NormsPerLayer) * 4 * h // RMSNorm keeps its fp32 input
	if r.Liger {
		n = int64(a.NormsPerLayer) * wb * h // Liger's RMSNorm keeps its 16-bit input
	}
	if a.QKNorm {
		n += 4 * (q + kv)
	}
	// Keys and values reach attention repeated to every head when SDPA gets a mask
	// (transformers only uses SDPA's GQA without one) and always in eager attention.
	repeat := a.EagerAttention || bt.mask
	kvSaved := kv
	if repeat {
		kvSaved = q
	}
	if a.EagerAttention {
		n += wb * (q + 2*kvSaved) // q and k for QKᵀ, v for PV
	} else {
		n += wb*(q+2*kvSaved) + wb*q + 4*int64(a.Heads) // q, k, v, output, log-sum-exp
		if a.Fused && (!repeat || a.KVHeads == a.Heads) {
			// v is a view of the fused qkv output, which keeps all of it alive.
			n += wb * (q + kv)
		}
	}
	if r.Liger {
		n += 2 * wb * i // Liger's SwiGLU keeps gate and up, recomputing the activation
	} else {
		n += 3 * wb * i // gated MLP: activation input and output, up projection
	}
	// LoRA: lora_A keeps its input, lora_B keeps lora_A's output. On a 16-bit base
	// every adapted projection gets its own autocast copy of the input; when the
	// adapter's dtype matches the compute dtype, projections reading the same
	// tensor share it. Dropout adds its mask and a new input tensor per projection.
	shared := map[string]bool{}
	for _, l := range adapted {
		din := int64(l.In)
		switch {
		case r.LoRA.Dropout > 0:
			n += din * (wb + 1)
		case r.adapterBytes() == wb:
			if !shared[l.Group] {
				n += din * wb
				shared[l.Group] = true
			}
		default:
			n += din * wb
		}
		n += int64(r.LoRA.R) * wb
	}
	return n
}

// batch is the micro-batch an estimate is for, as attention sees it.
type batch struct {
	b    int   // sequences (1 when padding-free flattens the rows into one)
	s    int   // the length they are padded to
	n    int64 // tokens
	mask bool  // attention gets an explicit mask
}

// LongestKept is how many of the longest examples the data check keeps for the
// estimate: a micro-batch of more rows counts the rest at the shortest kept length,
// an upper bound.
const LongestKept = 512

// batchFor is the micro-batch of rows sequences the estimate is for. On the
// max_length basis (and with packing, whose bins are max_length long) every row is
// max_length tokens. On the data basis it is the longest batch the sampler can
// build: HF Trainer's sampler (group_by_length off) shuffles the rows and cuts
// batches in order, so any rows can meet, and the worst batch holds the `rows`
// longest examples (truncated to max_length), padded to the longest of them, or,
// padding-free, their lengths added up.
func (r *Run) batchFor(rows int, lengths []int, examples int, basis string) batch {
	L := r.MaxLength
	lens := make([]int, 0, rows)
	if basis == BasisData && !r.Packing && len(lengths) > 0 {
		count := rows
		if examples > 0 {
			count = min(rows, examples) // a set smaller than the batch makes one short batch
		}
		for i := 0; i < count; i++ {
			l := lengths[min(i, len(lengths)-1)]
			lens = append(lens, max(1, min(l, L)))
		}
	} else {
		for i := 0; i < rows; i++ {
			lens = append(lens, L)
		}
	}
	if r.PaddingFree || r.Packing {
		var n int64
		for _, l := range lens {
			n += int64(l)
		}
		if r.Packing {
			// Packed bins are max_length long and attend within themselves.
			return batch{b: rows, s: L, n: int64(rows) * int64(L)}
		}
		// One flattened sequence; SDPA and eager attention get a block-diagonal
		// mask over it, flash attention's variable-length kernel none.
		return batch{b: 1, s: int(n), n: n, mask: len(lens) > 1 && !r.FlashAttention}
	}
	s := lens[0]
	return batch{b: len(lens), s: s, n: int64(len(lens)) * int64(s), mask: len(lens) > 1 && !r.FlashAttention}
}

// layerSeqBytes is the part of a layer's saved activations that grows with s²: the
// float attention bias SDPA makes from a boolean mask, or eager attention's
// probabilities.
func (r *Run) layerSeqBytes(bt batch) int64 {
	a := r.Arch
	wb := r.wordBytes()
	bs2 := int64(bt.b) * int64(bt.s) * int64(bt.s)
	if a.EagerAttention {
		// tanh soft-capped scores, fp32 softmax output, its 16-bit copy, per head.
		return bs2 * int64(a.Heads) * (wb + 4 + wb)
	}
	if bt.mask {
		return bs2 * wb
	}
	return 0
}

// slackFraction is the allocator's overhead for this run.
func (r *Run) slackFraction() float64 {
	if r.GradientCheckpointing {
		return allocatorSlackGC
	}
	return allocatorSlack
}

// recomputeCastBytes is what a checkpointed layer's recomputation adds on a 16-bit
// base with fp32 adapters: PEFT casts each adapted projection's input to the
// adapter's dtype, and in the recomputed forward those fp32 copies stay alive through
// the layer's backward (calibrated on the H200 table: 152 MiB measured against 160
// MiB for Qwen2.5-0.5B all-linear at 4×1024, 87 against 64 for Llama-3.2-1B q,v at
// 2×2048, none on a 4-bit base whose adapters are 16-bit).
func (r *Run) recomputeCastBytes(n int64, adapted []Linear) int64 {
	if r.adapterBytes() == r.wordBytes() {
		return 0
	}
	var in int64
	for _, l := range adapted {
		in += int64(l.In)
	}
	return n * in * r.adapterBytes()
}

// backwardWorkBytes is the working memory of one decoder layer's backward pass on top
// of what is saved: gradients of the layer's activations, alive together for a moment
// (fitted to allocator traces, docs/memory.md), plus the dequantized copy of the
// largest weight a quantized layer needs for its input gradient.
func (r *Run) backwardWorkBytes(n int64) int64 {
	a := r.Arch
	wb := r.wordBytes()
	w := n * 2 * (int64(a.Intermediate) + int64(a.Hidden)) * wb
	if r.quantized() {
		var big int64
		for _, l := range a.Linears() {
			big = max(big, int64(l.In)*int64(l.Out))
		}
		w += big * wb
	}
	return w
}

// lossBytes is the memory of the loss at its peak for n tokens: TRL's fused head
// keeps a compact copy of the final hidden states and works in one logits tile, and
// its backward accumulates the hidden-state gradient in fp32; the model's own loss
// materialises the logits, their fp32 copy and the log-softmax.
func (r *Run) lossBytes(n int64, training bool) (int64, string) {
	a := r.Arch
	wb := r.wordBytes()
	h, v := int64(a.Hidden), int64(a.Vocab)
	if r.LossType == "full_logits" && !r.Liger {
		// The backward of the cross-entropy holds the saved fp32 log-softmax, the
		// gradient coming in and the one going out: 12 bytes per logit, above the
		// forward's 16-bit logits, fp32 copy and log-softmax (10 at 16-bit).
		per := int64(12)
		if !training {
			per = wb + 4
			if wb == 2 {
				per += 4
			}
		}
		if a.Family == "gemma2" {
			per += 2 * wb // final logit soft-capping
		}
		return n * v * per, fmt.Sprintf("full logits: %s tokens × %s vocab × %d bytes", human(n), human(v), per)
	}
	tile := min(n, fusedTokens) * min(v, fusedVocab) * wb
	name := "TRL's fused head"
	if r.LossType == "full_logits" {
		name = "Liger's fused linear cross-entropy"
	}
	if !training {
		return tile + n*h*wb, "one logits tile of " + name
	}
	return tile + n*(2*h*wb+4*h+8), name + ": one logits tile, no full logits"
}

// Estimate computes the peak of the run: for the longest micro-batch its data can
// form when Data is known (and WorstCase is not set), else with every row max_length
// long. WorstCasePeakBytes is always the latter.
func (r Run) Estimate() (*Estimate, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	worst, err := r.estimateOn(BasisMaxLength)
	if err != nil {
		return nil, err
	}
	worst.WorstCasePeakBytes = worst.PeakBytes
	if r.Data == nil || r.WorstCase || len(r.Data.Train) == 0 {
		return worst, nil
	}
	e, err := r.estimateOn(BasisData)
	if err != nil {
		return nil, err
	}
	e.WorstCasePeakBytes = worst.PeakBytes
	e.LengthsApproximate = r.Data.Approximate
	if r.Data.Approximate {
		e.Notes = append(e.Notes, "token lengths are approximate: counted without the model's tokenizer (a local model directory gives exact counts)")
	}
	return e, nil
}

// estimateOn computes the peak for one basis.
func (r Run) estimateOn(basis string) (*Estimate, error) {
	a := r.Arch
	adapted, err := a.Adapted(r.LoRA.Targets)
	if err != nil {
		return nil, err
	}
	trainable, _ := r.TrainableParams()
	linear, other := a.Params()
	e := &Estimate{Basis: basis, TotalParams: linear + other, TrainableParams: trainable}
	wb := r.wordBytes()
	h, L := int64(a.Hidden), int64(a.Layers)
	var trainLens, evalLens []int
	var trainCount, evalCount int
	if r.Data != nil {
		trainLens, evalLens, trainCount, evalCount = r.Data.Train, r.Data.Eval, r.Data.TrainCount, r.Data.EvalCount
		if len(evalLens) == 0 { // an eval split is cut from the training file
			evalLens = trainLens
		}
	}
	bt := r.batchFor(r.BatchSize, trainLens, trainCount, basis)
	n := bt.n
	e.BatchTokens, e.SeqLen = n, bt.s

	base, baseDetail := r.baseWeightBytes()
	ab := r.adapterBytes()
	loraBytes := uint64(trainable * ab)
	loraDetail := fmt.Sprintf("%s trainable × %d bytes", human(trainable), ab)
	if ab != wb {
		// autocast's 16-bit copies of the fp32 adapter, kept for the backward pass
		loraBytes += uint64(trainable * wb)
		loraDetail += fmt.Sprintf(" + %d-byte autocast copies", wb)
	}
	optPer, optNote := r.optimizerStateBytes()
	if optNote != "" {
		e.Notes = append(e.Notes, optNote)
	}
	gradBytes := uint64(trainable * ab)
	optBytes := uint64(float64(trainable) * optPer)

	// Saved activations.
	layer := n*r.layerTokenBytes(bt, adapted) + r.layerSeqBytes(bt)
	normIn := 4 * h // the final norm's fp32 input
	if r.Liger {
		normIn = wb * h
	}
	fixed := n*normIn + 2*n*int64(a.HeadDim)*wb // final norm's input, rotary cos/sin
	if bt.mask {
		fixed += int64(bt.b) * int64(bt.s) * int64(bt.s) // the boolean mask itself
	}
	ckpt := L * n * h * wb // each checkpointed layer keeps its input
	e.ActivationBytesNoGC = uint64(L*layer + fixed)
	e.ActivationBytesGC = uint64(ckpt + fixed + layer)

	loss, lossDetail := r.lossBytes(n, true)
	work := r.backwardWorkBytes(n)
	var acts, atLoss, atBackward int64
	var actDetail string
	if r.GradientCheckpointing {
		// The loss runs with only the checkpoints alive; a layer's backward adds
		// its recomputed activations and working memory.
		atLoss = ckpt + fixed + loss
		work += r.recomputeCastBytes(n, adapted)
		atBackward = ckpt + fixed + layer + work
		actDetail = fmt.Sprintf("checkpointed: %d layer inputs of %s", L, humanBytes(n*h*wb))
	} else {
		atLoss = L*layer + fixed + loss
		atBackward = L*layer + fixed + work
		actDetail = fmt.Sprintf("%d layers × %s saved for backward", L, humanBytes(layer))
	}
	var lossTerm, workTerm int64
	if atLoss >= atBackward {
		lossTerm = loss
		acts = atLoss - loss
		lossDetail += "; peak falls at the loss"
	} else {
		workTerm = work
		acts = atBackward - work
		lossDetail += fmt.Sprintf(" (%s, freed before the peak in a layer's backward)", humanBytes(loss))
		if r.GradientCheckpointing {
			actDetail += " + one recomputed layer"
		}
	}
	torch := base + loraBytes + gradBytes + optBytes + uint64(acts+lossTerm+workTerm)
	slackFrac := r.slackFraction()
	slack := uint64(float64(torch) * slackFrac)
	e.TrainPeakBytes = torch + slack + cudaContext
	e.Terms = []Term{
		{"base_weights", base, baseDetail},
		{"lora_params", loraBytes, loraDetail},
		{"lora_gradients", gradBytes, fmt.Sprintf("%d bytes each", ab)},
		{"optimizer_states", optBytes, fmt.Sprintf("%.0f bytes per trainable parameter", optPer)},
		{"activations", uint64(acts), actDetail},
		{"logits_and_loss", uint64(lossTerm), lossDetail},
		{"backward_working", uint64(workTerm), "gradients of one layer's activations"},
		{"allocator_slack", slack, fmt.Sprintf("%.0f%% of what PyTorch allocates", slackFrac*100)},
		{"cuda_context", cudaContext, "CUDA context, kernels, library handles"},
	}
	e.PeakBytes, e.Phase, e.AllocatedBytes = e.TrainPeakBytes, "train", torch

	if r.Eval {
		eb := r.EvalBatchSize
		if eb <= 0 {
			eb = r.BatchSize
		}
		ebt := r.batchFor(eb, evalLens, evalCount, basis)
		ne := ebt.n
		evalLoss, _ := r.lossBytes(ne, false)
		i := int64(a.Intermediate)
		// No graph is kept: one layer's intermediates, the residual stream and, in
		// eager attention, one layer's probabilities.
		evalWork := ne*(3*i*wb+6*h*wb+8*h) + evalLoss
		if a.EagerAttention {
			evalWork += r.layerSeqBytes(ebt)
		} else if ebt.mask {
			evalWork += int64(ebt.b) * int64(ebt.s) * int64(ebt.s) * (1 + wb)
		}
		torchEval := base + loraBytes + optBytes + uint64(evalWork)
		slackEval := uint64(float64(torchEval) * allocatorSlack)
		e.EvalPeakBytes = torchEval + slackEval + cudaContext
		if e.EvalPeakBytes > e.TrainPeakBytes {
			e.PeakBytes, e.Phase, e.AllocatedBytes = e.EvalPeakBytes, "eval", torchEval
			e.Terms = []Term{
				e.Terms[0], e.Terms[1],
				{"lora_gradients", 0, "none during evaluation"},
				e.Terms[3],
				{"activations", 0, "no graph is kept during evaluation"},
				{"logits_and_loss", uint64(evalLoss), fmt.Sprintf("eval batch %d", eb)},
				{"backward_working", uint64(evalWork - evalLoss), "one layer's forward intermediates (eval)"},
				{"allocator_slack", slackEval, fmt.Sprintf("%.0f%% of what PyTorch allocates", allocatorSlack*100)},
				e.Terms[8],
			}
			e.Notes = append(e.Notes, fmt.Sprintf("the evaluation (batch %d) peaks above training", eb))
		}
	}
	if r.LoRA.DoRA {
		e.Notes = append(e.Notes, "DoRA's weight-norm computation is not modelled; expect more than estimated")
	}
	if a.ExtraParams > 0 {
		e.Notes = append(e.Notes, fmt.Sprintf("includes %s vision-tower parameters kept in 16-bit", human(a.ExtraParams)))
	}
	return e, nil
}

// human renders a count with a k/M/B suffix.
func human(n int64) string {
	f := float64(n)
	switch {
	case f >= 1e9:
		return fmt.Sprintf("%.2fB", f/1e9)
	case f >= 1e6:
		return fmt.Sprintf("%.1fM", f/1e6)
	case f >= 1e3:
		return fmt.Sprintf("%.1fk", f/1e3)
	}
	return fmt.Sprint(n)
}

// humanBytes renders bytes in GiB or MiB.
func humanBytes(n int64) string {
	if math.Abs(float64(n)) >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}
