package dataset

// Report is the outcome of a data check. Its JSON form is what `loractl data check --json`
// prints and what `loractl train` records in the run manifest.
type Report struct {
	File     string `json:"file"`
	EvalFile string `json:"eval_file,omitempty"`
	// Examples counts the records (non-empty lines) of the train file.
	Examples int `json:"examples"`
	// Errors lists the first Options.MaxListed errors; ErrorsTotal counts all of them.
	Errors      []LineError `json:"errors"`
	ErrorsTotal int         `json:"errors_total"`
	Warnings    []Warning   `json:"warnings"`
	Stats       Stats       `json:"stats"`
}

// HasErrors reports whether training on this data must be refused.
func (r *Report) HasErrors() bool { return r.ErrorsTotal > 0 }

// Warning returns the first warning with code, or nil.
func (r *Report) Warning(code string) *Warning {
	for i := range r.Warnings {
		if r.Warnings[i].Code == code {
			return &r.Warnings[i]
		}
	}
	return nil
}

// LineError is one error at one line. Line is 0 for a dataset-level error (too few
// examples). File is set only for errors in the eval file.
type LineError struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line"`
	Code    string `json:"code"`
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Warning is one dataset-level finding: how many examples it concerns and a few of their
// line numbers. File is set only for warnings about the eval file.
type Warning struct {
	Code    string `json:"code"`
	File    string `json:"file,omitempty"`
	Message string `json:"message"`
	Count   int    `json:"count"`
	Lines   []int  `json:"lines"`
}

// Stats describes one file's examples. Eval, when an eval file was checked, describes it.
type Stats struct {
	Examples           int               `json:"examples"`
	ValidExamples      int               `json:"valid_examples"`
	MessagesPerExample Distribution      `json:"messages_per_example"`
	Tokens             TokenStats        `json:"tokens"`
	Roles              map[string]int    `json:"roles"`
	SystemPrompts      SystemPromptStats `json:"system_prompts"`
	Duplicates         int               `json:"duplicates"`
	Bytes              int64             `json:"bytes"`
	Eval               *Stats            `json:"eval,omitempty"`
}

// Distribution is min/mean/max of a per-example quantity.
type Distribution struct {
	Min  int     `json:"min"`
	Mean float64 `json:"mean"`
	Max  int     `json:"max"`
}

// TokenStats are token counts of the valid examples, from the real tokenizer and chat
// template (Method "tokenizer") or estimated from bytes and words (Method "estimate").
type TokenStats struct {
	Method    string `json:"method"`
	Estimated bool   `json:"estimated"`
	Note      string `json:"note,omitempty"`
	MaxLength int    `json:"max_length"`
	// PerExample is before truncation.
	PerExample Percentiles `json:"per_example"`
	// Longest are the token counts of the longest examples, longest first, before
	// truncation (at most LongestKept): the memory estimate's longest micro-batch.
	Longest []int `json:"longest,omitempty"`
	// PerEpoch and AssistantPerEpoch are after truncation to MaxLength: what one epoch
	// feeds the model and how many of those tokens carry loss.
	PerEpoch          int64         `json:"per_epoch"`
	AssistantPerEpoch int64         `json:"assistant_per_epoch"`
	Epochs            float64       `json:"epochs"`
	Total             int64         `json:"total"`
	Template          *TemplateInfo `json:"template,omitempty"`
}

// Percentiles of tokens per example.
type Percentiles struct {
	P50 int `json:"p50"`
	P95 int `json:"p95"`
	Max int `json:"max"`
}

// SystemPromptStats counts the distinct system prompts (after whitespace normalisation).
type SystemPromptStats struct {
	Distinct int `json:"distinct"`
	Without  int `json:"examples_without"`
	// Top lists up to three of the most used prompts, shortened.
	Top []SystemPromptUse `json:"top,omitempty"`
}

// SystemPromptUse is one system prompt and how many examples use it.
type SystemPromptUse struct {
	Preview   string `json:"preview"`
	Count     int    `json:"count"`
	FirstLine int    `json:"first_line"`
}

// TemplateInfo is what the token counter learned about the tokenizer's chat template.
type TemplateInfo struct {
	Tokenizer         string `json:"tokenizer"`
	GenerationMarkers bool   `json:"generation_markers"`
	// TrainingTemplate: the counts come from TRL's training version of the template,
	// the one the trainer swaps in for a template without generation markers.
	TrainingTemplate bool   `json:"training_template,omitempty"`
	EOSToken         string `json:"eos_token"`
	// EndsWithEOS: the template closes each assistant turn with an end-of-sequence token
	// (and, with generation markers, inside the part that carries loss).
	EndsWithEOS bool `json:"ends_assistant_with_eos"`
	// Problem explains EndsWithEOS == false.
	Problem string `json:"problem,omitempty"`
}
