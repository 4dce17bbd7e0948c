package dataset

import (
	"cmp"
	"slices"
	"unicode/utf8"
)

// checker holds the state of one Check call.
type checker struct {
	opts       Options
	lc         lineChecker
	fb         factBuilder
	prodSystem *hashKey // hash of the normalised production system prompt

	train, eval *fileState

	errors      []LineError
	errorsTotal int
	warns       map[warnKey]*warnAcc
	template    *TemplateInfo     // from the tokenizer, when there is one
	messages    map[string]string // dataset-level warning messages by code
}

type warnKey struct {
	eval bool
	code string
}

// warnAcc accumulates one warning: a count, the first few lines, and for pair warnings
// (duplicates, overlap) the first pair, to name in the message.
type warnAcc struct {
	count       int
	lines       []int
	pairA, pair int
}

func newChecker(opts Options) *checker {
	c := &checker{opts: opts, warns: map[warnKey]*warnAcc{}, messages: map[string]string{}}
	if opts.SystemPrompt != "" {
		h := sum128([]byte(normalizeString(opts.SystemPrompt)))
		c.prodSystem = &h
	}
	return c
}

func (c *checker) newFile(name string, eval bool) *fileState {
	fs := &fileState{
		name:     name,
		eval:     eval,
		seen:     map[hashKey]uint32{},
		sys:      map[hashKey]*sysEntry{},
		messages: newDist(),
	}
	if !eval && c.opts.Eval != "" {
		fs.prompts = map[hashKey]uint32{}
	}
	return fs
}

func (c *checker) addError(fs *fileState, line int, code, path, msg string) {
	c.errorsTotal++
	if len(c.errors) >= c.opts.MaxListed {
		return
	}
	e := LineError{Line: line, Code: code, Path: path, Message: msg}
	if fs != nil && fs.eval {
		e.File = fs.name
	}
	c.errors = append(c.errors, e)
}

func (c *checker) acc(fs *fileState, code string) *warnAcc {
	k := warnKey{fs.eval, code}
	w := c.warns[k]
	if w == nil {
		w = &warnAcc{}
		c.warns[k] = w
	}
	return w
}

// warnLine counts one example (at line) towards a warning.
func (c *checker) warnLine(fs *fileState, code string, line int) {
	w := c.acc(fs, code)
	w.count++
	if len(w.lines) < warningLines {
		w.lines = append(w.lines, line)
	}
}

// warnPair is warnLine for a warning that relates line to an earlier line.
func (c *checker) warnPair(fs *fileState, code string, line, earlier int) {
	w := c.acc(fs, code)
	if w.count == 0 {
		w.pairA, w.pair = line, earlier
	}
	c.warnLine(fs, code, line)
}

// fileState is what the pass over one file accumulates.
type fileState struct {
	name    string
	eval    bool
	bytes   int64
	records int
	valid   int
	// validLines is a bitset of the lines that passed, so the tokenizer's results for
	// broken lines can be ignored.
	validLines []uint64

	messages   dist
	roles      [numRoles]int
	duplicates int
	// seen maps the hash of each distinct example to its first line; prompts (train
	// file only, when there is an eval file) does the same for the prompt part.
	seen    map[hashKey]uint32
	prompts map[hashKey]uint32

	sys        map[hashKey]*sysEntry
	noSys      int
	noSysLines []int

	// multiTurn counts examples with more than one assistant turn.
	multiTurn      int
	multiTurnLines []int

	est, tok tokenAcc
	counted  int // examples the tokenizer counted
}

type sysEntry struct {
	count     int
	firstLine int
	// lines are the first warningLines lines that use this prompt: a warning about
	// the examples that differ lists them all, not only where each prompt first appears.
	lines   []int
	preview string
}

func (fs *fileState) setValid(line int) {
	i := line / 64
	for len(fs.validLines) <= i {
		fs.validLines = append(fs.validLines, 0)
	}
	fs.validLines[i] |= 1 << (line % 64)
}

func (fs *fileState) isValid(line int) bool {
	i := line / 64
	return line >= 0 && i < len(fs.validLines) && fs.validLines[i]&(1<<(line%64)) != 0
}

func (fs *fileState) systemPrompt(f *facts, line int) {
	if !f.hasSystem {
		fs.noSys++
		if len(fs.noSysLines) < warningLines {
			fs.noSysLines = append(fs.noSysLines, line)
		}
		return
	}
	e := fs.sys[f.systemHash]
	if e == nil {
		e = &sysEntry{firstLine: line, preview: preview(f.system, 60)}
		fs.sys[f.systemHash] = e
	}
	e.count++
	if len(e.lines) < warningLines {
		e.lines = append(e.lines, line)
	}
}

// sysByUse returns the distinct system prompts, most used first (ties: first seen first).
func (fs *fileState) sysByUse() []*sysEntry {
	out := make([]*sysEntry, 0, len(fs.sys))
	for _, e := range fs.sys {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *sysEntry) int {
		if a.count != b.count {
			return b.count - a.count
		}
		return a.firstLine - b.firstLine
	})
	return out
}

func preview(b []byte, runes int) string {
	n, i := 0, 0
	for i < len(b) && n < runes {
		_, size := utf8.DecodeRune(b[i:])
		i += size
		n++
	}
	if i < len(b) {
		return string(b[:i]) + "…"
	}
	return string(b)
}

// dist accumulates min/mean/max.
type dist struct {
	min, max, n int
	sum         int64
}

func newDist() dist { return dist{min: -1} }

func (d *dist) add(v int) {
	if d.min < 0 || v < d.min {
		d.min = v
	}
	d.max = max(d.max, v)
	d.sum += int64(v)
	d.n++
}

func (d *dist) out() Distribution {
	if d.n == 0 {
		return Distribution{}
	}
	return Distribution{Min: d.min, Max: d.max, Mean: round2(float64(d.sum) / float64(d.n))}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// tokenAcc accumulates token counts of one file.
type tokenAcc struct {
	perExample []uint32
	perEpoch   int64
	assistant  int64
}

func (t *tokenAcc) add(total, kept, maxLength int) {
	t.perExample = append(t.perExample, uint32(min(total, 1<<31)))
	if maxLength > 0 {
		total = min(total, maxLength)
	}
	t.perEpoch += int64(total)
	t.assistant += int64(kept)
}

// LongestKept is how many of the longest examples' lengths a report keeps.
const LongestKept = 512

// longest returns the k largest counts, largest first.
func (t *tokenAcc) longest(k int) []int {
	s := slices.Clone(t.perExample)
	slices.SortFunc(s, func(a, b uint32) int { return cmp.Compare(b, a) })
	out := make([]int, 0, min(k, len(s)))
	for _, v := range s[:min(k, len(s))] {
		out = append(out, int(v))
	}
	return out
}

func (t *tokenAcc) percentiles() Percentiles {
	if len(t.perExample) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(t.perExample)
	slices.Sort(s)
	at := func(q float64) int {
		// Nearest-rank percentile.
		i := int(q*float64(len(s))+0.999999) - 1
		return int(s[max(0, min(i, len(s)-1))])
	}
	return Percentiles{P50: at(0.50), P95: at(0.95), Max: int(s[len(s)-1])}
}
