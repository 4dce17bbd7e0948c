package dataset

import (
	"fmt"
	"math"
	"slices"
)

// report assembles the Report once every pass is done.
func (c *checker) report() *Report {
	r := &Report{
		File:     c.train.name,
		Examples: c.train.records,
		Warnings: []Warning{},
	}
	// Size guidance counts what would train: valid examples, each once.
	n := c.train.valid - c.train.duplicates
	switch {
	case n < MinExamples:
		c.datasetError("", CodeTooFewExamples, fmt.Sprintf(
			"%d distinct valid examples: at least %d are needed to fine-tune, and under %d few-shot prompting is the better tool", n, MinExamples, FewExamples))
	case n < FewExamples:
		c.dataset(CodeTooFewExamples, fmt.Sprintf("%d distinct valid examples: under %d, fine-tuning is rarely worth it; few-shot prompting with some of these examples is the better tool", n, FewExamples))
	case n < SmallDataset:
		c.dataset(CodeSmallDataset, fmt.Sprintf("%d distinct valid examples: under %d, expect modest gains; consistent, high-quality examples matter more than more of them", n, SmallDataset))
	}
	if c.eval != nil && c.eval.valid == 0 {
		c.datasetError(c.eval.name, CodeNoEvalExamples, "the eval file has no valid example: the trainer cannot evaluate, and the before/after comparison needs it")
	}
	for _, fs := range []*fileState{c.train, c.eval} {
		c.allTruncated(fs)
	}
	if c.opts.Eval == "" && c.opts.EvalSplit <= 0 {
		c.dataset(CodeNoEvalSet, "no eval set (neither an eval file nor an eval split): without evaluation there is no way to tell whether the fine-tune helped")
	}
	if t := c.template; t != nil && !t.EndsWithEOS {
		msg := "the chat template does not end assistant turns with an end-of-sequence token: the model will not learn to stop"
		if t.Problem != "" {
			msg = t.Problem
		}
		c.dataset(CodeMissingEOSInTemplate, msg)
	}
	c.inconsistentSystem(c.train)
	if c.eval != nil {
		c.inconsistentSystem(c.eval)
	}
	c.evalShape()

	r.Errors = c.errors
	if r.Errors == nil {
		r.Errors = []LineError{}
	}
	slices.SortStableFunc(r.Errors, func(a, b LineError) int {
		if a.File != b.File {
			if a.File == "" {
				return -1
			}
			return 1
		}
		return a.Line - b.Line
	})
	r.ErrorsTotal = c.errorsTotal
	for _, code := range warningOrder {
		for _, fs := range []*fileState{c.train, c.eval} {
			if fs == nil {
				continue
			}
			if w := c.warns[warnKey{fs.eval, code}]; w != nil {
				r.Warnings = append(r.Warnings, c.warning(fs, code, w))
			}
		}
	}
	r.Stats = c.stats(c.train)
	if c.eval != nil {
		r.EvalFile = c.eval.name
		ev := c.stats(c.eval)
		r.Stats.Eval = &ev
	}
	return r
}

// datasetError records an error about a file as a whole (file "" is the train
// file): listed first, whatever the cap.
func (c *checker) datasetError(file, code, msg string) {
	c.errorsTotal++
	c.errors = slices.Insert(c.errors, 0, LineError{File: file, Code: code, Message: msg})
	if len(c.errors) > c.opts.MaxListed {
		c.errors = c.errors[:c.opts.MaxListed]
	}
}

// allTruncated turns labels_truncated_away into an error when it hits every example
// the tokenizer counted: such a run would train (or evaluate) on nothing, and the
// trainer would only find out after loading the model. Estimated counts only warn.
func (c *checker) allTruncated(fs *fileState) {
	if fs == nil || c.opts.Tokenizer == nil || fs.counted == 0 {
		return
	}
	k := warnKey{fs.eval, CodeLabelsTruncatedAway}
	w := c.warns[k]
	if w == nil || w.count < fs.counted {
		return
	}
	delete(c.warns, k)
	file := ""
	if fs.eval {
		file = fs.name
	}
	c.datasetError(file, CodeLabelsTruncatedAway, fmt.Sprintf(
		"all %d examples lose every assistant token to truncation at max_length %d: nothing would be learned; raise train.max_length or shorten the examples", fs.counted, c.opts.MaxLength))
}

// dataset records a warning about the train file as a whole.
func (c *checker) dataset(code, msg string) {
	w := c.acc(c.train, code)
	w.count = max(w.count, 1)
	c.datasetMsg(code, msg)
}

func (c *checker) datasetMsg(code, msg string) {
	c.messages[code] = msg
}

// evalShape warns when the eval set cannot carry the adopt verdict: too few examples
// to tell a real difference from noise, or conversations unlike anything trained.
func (c *checker) evalShape() {
	n, what := 0, ""
	switch {
	case c.eval != nil:
		n, what = c.eval.valid, plural(c.eval.valid, "eval example", "eval examples")
	case c.opts.EvalSplit > 0:
		// Rounded up, as the trainer's split (datasets' train_test_split) rounds: a
		// fraction of one example is an eval set of one, not none.
		n = int(math.Ceil(float64(c.train.valid-c.train.duplicates) * c.opts.EvalSplit))
		what = plural(n, "eval example", "eval examples") + " (about, from data.eval_split)"
	}
	if what != "" && n > 0 && n < FewEvalExamples {
		msg := fmt.Sprintf("%d %s: the adopt verdict rests on them, and with under %d a real difference cannot be told from noise; hold out more (loractl data split --eval-fraction 0.1)", n, what, FewEvalExamples)
		if c.eval != nil {
			w := c.acc(c.eval, CodeSmallEvalSet)
			w.count = n
		} else {
			c.acc(c.train, CodeSmallEvalSet).count = n
		}
		c.datasetMsg(CodeSmallEvalSet, msg)
	}
	if c.eval != nil && c.eval.multiTurn > 0 && c.train.multiTurn == 0 {
		w := c.acc(c.eval, CodeEvalMultiTurn)
		w.count, w.lines = c.eval.multiTurn, slices.Clone(c.eval.multiTurnLines)
		c.datasetMsg(CodeEvalMultiTurn, fmt.Sprintf("%d eval %s more than one assistant turn, while no train example does: the eval measures conversations the adapter never trained on", c.eval.multiTurn, plural(c.eval.multiTurn, "example has", "examples have")))
	}
}

// inconsistentSystem warns when the examples do not share one system prompt.
func (c *checker) inconsistentSystem(fs *fileState) {
	byUse := fs.sysByUse()
	if len(byUse) == 0 || len(byUse) == 1 && fs.noSys == 0 {
		return // none anywhere, or the same one everywhere
	}
	w := c.acc(fs, CodeInconsistentSystemPrompt)
	// The examples that differ from the most common choice (a prompt, or none).
	top := 0
	if len(byUse) > 0 {
		top = byUse[0].count
	}
	if fs.noSys > top {
		w.count = fs.valid - fs.noSys
		for _, e := range byUse {
			w.lines = append(w.lines, e.lines...)
		}
	} else {
		w.count = fs.valid - top
		for _, e := range byUse[1:] {
			w.lines = append(w.lines, e.lines...)
		}
		w.lines = append(w.lines, fs.noSysLines...)
	}
	slices.Sort(w.lines)
	w.lines = w.lines[:min(len(w.lines), warningLines)]
	msg := fmt.Sprintf("%d distinct system prompts", len(byUse))
	if fs.noSys > 0 {
		msg += fmt.Sprintf(" and %d examples without one", fs.noSys)
	}
	if len(byUse) == 1 {
		msg = fmt.Sprintf("%d %s a system prompt and %d %s none", fs.valid-fs.noSys, plural(fs.valid-fs.noSys, "example has", "examples have"), fs.noSys, plural(fs.noSys, "has", "have"))
	}
	c.messages[CodeInconsistentSystemPrompt+fileTag(fs)] = msg + ": the model learns a mix of behaviours; use the production system prompt in every example"
}

func fileTag(fs *fileState) string {
	if fs.eval {
		return "/eval"
	}
	return ""
}

// warning renders one accumulated warning.
func (c *checker) warning(fs *fileState, code string, w *warnAcc) Warning {
	out := Warning{Code: code, Count: w.count, Lines: slices.Clone(w.lines)}
	if out.Lines == nil {
		out.Lines = []int{}
	}
	if fs.eval {
		out.File = fs.name
	}
	slices.Sort(out.Lines)
	est := ""
	if c.opts.Tokenizer == nil {
		est = " (estimated: no tokenizer)"
	}
	n := w.count
	switch code {
	case CodeDuplicateExample:
		out.Message = fmt.Sprintf("%d %s an earlier one after whitespace normalisation (line %d = line %d): duplicates over-weight their answers", n, plural(n, "example repeats", "examples repeat"), w.pairA, w.pair)
	case CodeTrainEvalOverlap:
		out.Message = fmt.Sprintf("%d eval %s the same conversation or the same prompt as a train example (eval line %d ~ train line %d): the eval score would be a lie", n, plural(n, "example has", "examples have"), w.pairA, w.pair)
	case CodeExceedsMaxLength:
		out.Message = fmt.Sprintf("%d %s longer than max length %d tokens%s and will be truncated", n, plural(n, "example is", "examples are"), c.opts.MaxLength, est)
	case CodeLabelsTruncatedAway:
		out.Message = fmt.Sprintf("%d %s every assistant token to truncation at %d tokens%s: they train nothing (the loss reads 0)", n, plural(n, "example loses", "examples lose"), c.opts.MaxLength, est)
	case CodeSystemPromptMismatch:
		out.Message = fmt.Sprintf("%d %s a system prompt different from the production one (--system-prompt), or none: the model learns behaviour for a prompt it will not see", n, plural(n, "example uses", "examples use"))
	case CodeLastMessageNotAssistant:
		out.Message = fmt.Sprintf("%d %s with a message that is not an assistant reply: that trailing turn teaches nothing", n, plural(n, "example ends", "examples end"))
	case CodeConsecutiveSameRole:
		out.Message = fmt.Sprintf("%d %s two consecutive messages with the same role: many chat templates reject or merge them", n, plural(n, "example has", "examples have"))
	case CodeSystemNotFirst:
		out.Message = fmt.Sprintf("%d %s a system message after the first position: most chat templates only honour a leading system prompt", n, plural(n, "example has", "examples have"))
	case CodeEmptyUserContent:
		out.Message = fmt.Sprintf("%d %s an empty user message", n, plural(n, "example has", "examples have"))
	case CodeBlankLines:
		out.Message = fmt.Sprintf("%d blank %s between records: the trainer skips them, but they often mean files were joined badly", n, plural(n, "line", "lines"))
	case CodeInconsistentSystemPrompt:
		out.Message = c.messages[code+fileTag(fs)]
	default:
		out.Message = c.messages[code]
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// stats renders one file's statistics.
func (c *checker) stats(fs *fileState) Stats {
	s := Stats{
		Examples:           fs.records,
		ValidExamples:      fs.valid,
		MessagesPerExample: fs.messages.out(),
		Roles:              map[string]int{},
		Duplicates:         fs.duplicates,
		Bytes:              fs.bytes,
	}
	for r := roleSystem; r < numRoles; r++ {
		s.Roles[roleNames[r]] = fs.roles[r]
	}
	s.SystemPrompts = SystemPromptStats{Distinct: len(fs.sys), Without: fs.noSys}
	for _, e := range fs.sysByUse()[:min(3, len(fs.sys))] {
		s.SystemPrompts.Top = append(s.SystemPrompts.Top, SystemPromptUse{Preview: e.preview, Count: e.count, FirstLine: e.firstLine})
	}
	acc := &fs.est
	t := TokenStats{MaxLength: c.opts.MaxLength, Epochs: c.opts.Epochs}
	if c.opts.Tokenizer != nil {
		acc = &fs.tok
		t.Method = "tokenizer"
		t.Template = c.template
		if t.Template != nil {
			t.Note = "chat template of " + t.Template.Tokenizer
			if t.Template.TrainingTemplate {
				t.Note = "TRL's training version of the chat template of " + t.Template.Tokenizer + ", as the trainer uses it"
			}
		}
		if missing := fs.valid - fs.counted; missing > 0 {
			t.Note += fmt.Sprintf("; %d valid examples could not be counted", missing)
		}
	} else {
		t.Method = "estimate"
		t.Estimated = true
		t.Note = fmt.Sprintf("estimated without a tokenizer: max(words × %.2f, bytes ÷ %d) per message + %d per turn; pass --tokenizer DIR for exact counts", estTokensPerWord, estBytesPerToken, estTemplatePerTurn)
	}
	t.PerExample = acc.percentiles()
	t.Longest = acc.longest(LongestKept)
	t.PerEpoch = acc.perEpoch
	t.AssistantPerEpoch = acc.assistant
	t.Total = int64(math.Round(float64(acc.perEpoch) * c.opts.Epochs))
	s.Tokens = t
	return s
}
