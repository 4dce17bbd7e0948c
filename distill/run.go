package distill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/llm"
)

// Filter reasons: why an answer was not written.
const (
	FilterEmpty       = "empty"
	FilterLength      = "length"
	FilterRefusal     = "refusal"
	FilterInvalidJSON = "invalid_json"
	FilterDuplicate   = "duplicate"
)

// Event is one progress report. Type is "start", "progress", "failed", "end", "split"
// or "check".
type Event struct {
	Type string `json:"type"`
	// Done counts the samples finished (resumed ones included) of Total.
	Done  int `json:"done"`
	Total int `json:"total"`
	// Resumed is how many samples an earlier run had finished (start).
	Resumed  int            `json:"resumed,omitempty"`
	OK       int            `json:"ok"`
	Filtered map[string]int `json:"filtered,omitempty"`
	Failed   int            `json:"failed"`
	Retries  int64          `json:"retries"`
	// Rate is samples per second in this run; ETA the seconds left at that rate.
	Rate float64 `json:"rate"`
	ETA  float64 `json:"eta_s"`
	// Line and Error describe a failed prompt (failed).
	Line  int    `json:"line,omitempty"`
	Error string `json:"error,omitempty"`
	// Path names the file an event is about (end, split, check).
	Path string `json:"path,omitempty"`
}

// Result is what Run did. It is returned with the error too, as far as the run got.
type Result struct {
	Out, EvalOut, FailedPath, StatePath, ProvenancePath string
	Provenance                                          *Provenance
	// Check is the data check of the result (nil when it did not run).
	Check *dataset.Report
	// Split is the train/eval split (nil without --eval-fraction, or when it did not run).
	Split *dataset.SplitResult
	// AlreadyComplete: an earlier run had finished everything (and split it).
	AlreadyComplete bool
}

// Paths beside OUT.
func StatePath(out string) string      { return out + ".distill-state" }
func FailedPath(out string) string     { return out + ".failed.jsonl" }
func ProvenancePath(out string) string { return out + ".distill.json" }

// job is one sample to ask for.
type job struct {
	key  sampleKey
	line int
	msgs []llm.Message
}

// outcome is a job's answer or failure.
type outcome struct {
	job
	resp *llm.Response
	err  error
}

// Run distils opts.Prompts into opts.Out. See the package comment. The error wraps
// ErrInput (exit 2), ErrFailed (exit 1) or ErrInterrupted (exit 130), or is another
// failure; ctx ending stops sending new requests and lets the ones in flight finish.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.BaseURL == "" {
		opts.BaseURL = opts.Teacher
	}
	start := time.Now()
	res := &Result{Out: opts.Out, EvalOut: opts.EvalOut, FailedPath: FailedPath(opts.Out),
		StatePath: StatePath(opts.Out), ProvenancePath: ProvenancePath(opts.Out)}
	var refusal *regexp.Regexp
	if opts.RefusalPattern != "" {
		refusal = regexp.MustCompile(opts.RefusalPattern)
	}
	total, settings, err := scan(&opts)
	if err != nil {
		return nil, err
	}
	client, err := llm.New(llm.Config{BaseURL: opts.BaseURL, Model: opts.Model, APIKeyEnv: opts.APIKeyEnv,
		Timeout: opts.Timeout, MaxRetries: opts.MaxRetries, BaseBackoff: opts.BaseBackoff})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}

	w, err := openWriter(&opts, settings)
	if err != nil {
		return nil, err
	}
	defer w.close()
	if w.prev.complete {
		res.AlreadyComplete = true
		prov := w.provenance(&opts, settings, total, start)
		res.Provenance = prov
		return res, nil
	}
	w.refusal = refusal
	w.total = total * opts.N
	w.start = start
	w.emit(Event{Type: "start", Resumed: len(w.prev.done)})

	// The producer streams the prompts again (never all in memory) and hands out the
	// samples no run has finished; workers ask; the writer alone touches the files.
	dispatch, stopDispatch := context.WithCancel(ctx)
	defer stopDispatch()
	w.stopDispatch = stopDispatch
	jobs := make(chan job)
	outcomes := make(chan outcome, opts.Concurrency)
	var prodErr error
	go func() {
		defer close(jobs)
		prodErr = produce(dispatch, &opts, w, jobs)
	}()
	var wg sync.WaitGroup
	for range opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				resp, err := client.Chat(opts.Abort, llm.Request{Messages: j.msgs, MaxTokens: opts.MaxTokens, Temperature: opts.Temperature})
				outcomes <- outcome{job: j, resp: resp, err: err}
			}
		}()
	}
	go func() { wg.Wait(); close(outcomes) }()
	werr := w.consume(outcomes)
	if werr != nil {
		stopDispatch()
		for range outcomes { // let the workers finish; their answers are asked again next run
		}
	}
	syncErr := w.sync()
	prov := w.provenance(&opts, settings, total, start)
	res.Provenance = prov
	if werr == nil {
		werr = syncErr
	}
	if werr == nil && prodErr != nil && !errors.Is(prodErr, context.Canceled) {
		werr = prodErr
	}
	interrupted := ctx.Err() != nil || opts.Abort.Err() != nil
	prov.Interrupted = interrupted
	if werr != nil {
		_ = writeProvenance(res.ProvenancePath, prov)
		return res, werr
	}
	w.emit(Event{Type: "end", Path: opts.Out})
	if interrupted {
		_ = writeProvenance(res.ProvenancePath, prov)
		return res, ErrInterrupted
	}

	// Split only a complete set: a rerun after failures appends to OUT, which must still
	// be the file the state describes.
	failed := w.failed
	if opts.EvalFraction > 0 && failed == 0 && w.fatal == nil {
		sr, err := w.split(ctx)
		if err != nil {
			_ = writeProvenance(res.ProvenancePath, prov)
			return res, err
		}
		res.Split = sr
		prov.Split = &ProvenanceSplit{EvalOut: opts.EvalOut, EvalFraction: opts.EvalFraction, Seed: opts.SplitSeed,
			Train: sr.TrainExamples, Eval: sr.EvalExamples}
		w.emit(Event{Type: "split", Path: opts.EvalOut})
	}
	checkOpts := dataset.Options{Train: opts.Out, SystemPrompt: opts.SystemPrompt}
	if res.Split != nil {
		checkOpts.Eval = opts.EvalOut
	}
	if rep, err := dataset.Check(ctx, checkOpts); err == nil {
		res.Check = rep
		prov.Check = &ProvenanceCheck{Examples: rep.Examples, Errors: rep.ErrorsTotal, Warnings: len(rep.Warnings)}
		w.emit(Event{Type: "check", Path: opts.Out})
	} else if !errors.Is(err, dataset.ErrInput) || w.ok+w.prev.totals.OK > 0 {
		prov.CheckError = err.Error()
	}
	if err := writeProvenance(res.ProvenancePath, prov); err != nil {
		return res, err
	}
	if failed == 0 {
		_ = os.Remove(res.FailedPath) // nothing failed: no file to look into
	}
	switch {
	case w.fatal != nil:
		return res, fmt.Errorf("%w: the teacher refused the requests: %v", ErrFailed, w.fatal)
	case failed > 0:
		return res, fmt.Errorf("%w: %d of %d samples failed after their retries (in %s); run the same command again to retry them",
			ErrFailed, failed, w.total, res.FailedPath)
	}
	return res, nil
}

// scan checks the prompts file and returns its prompt count and the run's settings.
func scan(opts *Options) (int, Settings, error) {
	total, promptsSHA, err := scanPrompts(opts.Prompts, opts.SystemPrompt)
	if err != nil {
		return 0, Settings{}, err
	}
	teacher := opts.Teacher
	if opts.TeacherKind != "local" {
		// http://h:8000/v1, …/v1/ and the bare host are one teacher: resume across them.
		if teacher, err = llm.Endpoint(opts.Teacher); err != nil {
			return 0, Settings{}, fmt.Errorf("%w: --teacher: %v", ErrInput, err)
		}
	}
	s := Settings{Teacher: teacher, TeacherKind: opts.TeacherKind, Model: opts.Model, PromptsSHA256: promptsSHA,
		MaxTokens: opts.MaxTokens, Temperature: opts.Temperature, N: opts.N, Require: opts.Require, RefusalPattern: opts.RefusalPattern}
	if opts.SystemPrompt != "" {
		s.SystemPromptSHA256 = sha256Hex(opts.SystemPrompt)
	}
	return total, s, nil
}

// Preflight checks everything Run would refuse (options, the prompts file, an OUT or
// state from another command) without writing or sending anything: the CLI calls it
// before it spends minutes loading a local teacher.
func Preflight(opts Options) error {
	if err := opts.validate(); err != nil {
		return err
	}
	_, settings, err := scan(&opts)
	if err != nil {
		return err
	}
	_, err = checkOut(&opts, settings)
	return err
}

// produce streams the prompts file and sends every unfinished, not yet seen sample.
func produce(ctx context.Context, opts *Options, w *writer, jobs chan<- job) error {
	pr, err := openPrompts(opts.Prompts, opts.SystemPrompt, nil)
	if err != nil {
		return err
	}
	defer pr.Close()
	for {
		p, err := pr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err // the file changed since it was checked
		}
		for k := range opts.N {
			key := sampleKey{prompt: p.hash, k: uint32(k)}
			if !w.claim(key) {
				continue
			}
			select {
			case jobs <- job{key: key, line: p.Line, msgs: p.Messages}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// writer owns OUT, the state file and the failed file. consume runs in one goroutine;
// claim runs in the producer's, hence the mutex.
type writer struct {
	opts     *Options
	out      *os.File
	state    *os.File
	failedF  *os.File
	prev     *loadedState
	outSize  int64
	refusal  *regexp.Regexp
	lastSync time.Time
	buf      []byte

	mu      sync.Mutex
	claimed map[sampleKey]struct{} // prev.done plus everything sent in this run
	dupes   int                    // samples skipped because the prompt came again

	start                    time.Time
	total                    int
	ok, failed               int
	filtered                 map[string]int
	retries                  int64
	retried                  int
	promptTok, completionTok int64
	sent                     int
	fatal                    error
	stopDispatch             func()
}

func openWriter(opts *Options, s Settings) (*writer, error) {
	w := &writer{opts: opts, filtered: map[string]int{}}
	statePath := StatePath(opts.Out)
	prev, err := checkOut(opts, s)
	if err != nil {
		return nil, err
	}
	w.prev = prev
	w.claimed = map[sampleKey]struct{}{}
	if prev.complete {
		return w, nil
	}
	// Cut what no state line vouches for: a row written just before a kill.
	if w.out, err = os.OpenFile(opts.Out, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return nil, err
	}
	if err := w.out.Truncate(prev.offset); err != nil {
		return nil, err
	}
	if _, err := w.out.Seek(prev.offset, io.SeekStart); err != nil {
		return nil, err
	}
	w.outSize = prev.offset
	if w.state, err = os.OpenFile(statePath, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return nil, err
	}
	if prev.size == 0 {
		if err := w.state.Truncate(0); err != nil {
			return nil, err
		}
		if err := writeStateHeader(w.state, s); err != nil {
			return nil, err
		}
	} else {
		if err := w.state.Truncate(prev.size); err != nil {
			return nil, err
		}
		if _, err := w.state.Seek(prev.size, io.SeekStart); err != nil {
			return nil, err
		}
	}
	// The failed file lists this run's failures: earlier ones are asked again.
	if w.failedF, err = os.Create(FailedPath(opts.Out)); err != nil {
		return nil, err
	}
	if err := w.sync(); err != nil {
		return nil, err
	}
	return w, nil
}

// checkOut loads the state beside OUT (a fresh one when there is none) and refuses an
// OUT, state or eval file that another command made.
func checkOut(opts *Options, s Settings) (*loadedState, error) {
	statePath := StatePath(opts.Out)
	outSt, outErr := os.Stat(opts.Out)
	if outErr == nil && !outSt.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: -o %s is not a regular file", ErrInput, opts.Out)
	}
	var outSize int64
	if outErr == nil {
		outSize = outSt.Size()
	}
	prev, err := loadState(statePath, s, outSize, opts.N > 1)
	if err != nil || prev != nil {
		return prev, err
	}
	if outErr == nil {
		return nil, fmt.Errorf("%w: %s exists and no %s beside it says which distill command made it: use another -o, or remove it",
			ErrInput, opts.Out, statePath)
	}
	if opts.EvalOut != "" {
		if _, err := os.Stat(opts.EvalOut); err == nil {
			return nil, fmt.Errorf("%w: --eval-out %s exists and no %s says a distill run wrote it: use another name, or remove it",
				ErrInput, opts.EvalOut, statePath)
		}
	}
	return newLoadedState(), nil
}

func (w *writer) close() {
	for _, f := range []*os.File{w.out, w.state, w.failedF} {
		if f != nil {
			_ = f.Close()
		}
	}
}

func (w *writer) claim(k sampleKey) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, resumed := w.prev.done[k]; resumed {
		return false
	}
	if _, ok := w.claimed[k]; ok {
		w.dupes++
		return false
	}
	w.claimed[k] = struct{}{}
	return true
}

func (w *writer) emit(e Event) {
	if w.opts.Events == nil {
		return
	}
	w.mu.Lock()
	dupes := w.dupes
	w.mu.Unlock()
	total := w.total - dupes
	done := len(w.prev.done) + w.ok + w.failed + sumCounts(w.filtered)
	e.Done, e.Total = done, total
	e.OK = w.prev.totals.OK + w.ok
	e.Filtered = addCounts(w.prev.totals.Filtered, w.filtered)
	e.Failed = w.failed
	e.Retries = w.prev.totals.Retries + w.retries
	if el := time.Since(w.start).Seconds(); el > 0 {
		thisRun := done - len(w.prev.done)
		e.Rate = float64(thisRun) / el
		if e.Rate > 0 && total > done {
			e.ETA = float64(total-done) / e.Rate
		}
	}
	w.opts.Events(e)
}

// consume writes each outcome as it comes; it returns on a write error (the run
// cannot go on) or when every outcome is in.
func (w *writer) consume(outcomes <-chan outcome) error {
	tick := time.NewTicker(w.opts.ProgressInterval)
	defer tick.Stop()
	var answers map[[16]byte]struct{}
	if w.opts.N > 1 {
		answers = w.prev.answers
	}
	for {
		select {
		case <-tick.C:
			w.emit(Event{Type: "progress"})
			if time.Since(w.lastSync) >= w.opts.SyncInterval {
				if err := w.sync(); err != nil {
					return err
				}
			}
		case o, more := <-outcomes:
			if !more {
				return nil
			}
			if err := w.record(o, answers); err != nil {
				return err
			}
			if time.Since(w.lastSync) >= w.opts.SyncInterval {
				if err := w.sync(); err != nil {
					return err
				}
			}
		}
	}
}

func (w *writer) record(o outcome, answers map[[16]byte]struct{}) error {
	if o.err != nil {
		if w.opts.Abort.Err() != nil && (errors.Is(o.err, context.Canceled) || errors.Is(o.err, context.DeadlineExceeded)) {
			return nil // abandoned by a second Ctrl-C: asked again next run
		}
		return w.fail(o)
	}
	w.sent++
	r := o.resp
	w.retries += int64(r.Retries)
	if r.Retries > 0 {
		w.retried++
	}
	w.promptTok += int64(r.Usage.PromptTokens)
	w.completionTok += int64(r.Usage.CompletionTokens)
	ch := r.Choices[0]
	answer := ch.Content
	e := stateEntry{key: o.key, ptok: int64(r.Usage.PromptTokens), ctok: int64(r.Usage.CompletionTokens), retries: int64(r.Retries)}
	sum := sha256.Sum256([]byte(answer))
	copy(e.answer[:], sum[:8])
	e.status = w.filter(ch, answer)
	if e.status == statusOK && answers != nil {
		ak := answerKey(o.key.prompt, e.answer)
		if _, dup := answers[ak]; dup {
			e.status = FilterDuplicate
		} else {
			answers[ak] = struct{}{}
		}
	}
	if e.status == statusOK {
		msgs := append(append(make([]llm.Message, 0, len(o.msgs)+1), o.msgs...), llm.Message{Role: "assistant", Content: answer})
		row, err := json.Marshal(struct {
			Messages []llm.Message `json:"messages"`
		}{msgs})
		if err != nil {
			return err
		}
		// One write per row: a kill leaves whole rows and at most one torn tail, which
		// the next run cuts (its state line was never written).
		if _, err := w.out.Write(append(row, '\n')); err != nil {
			return fmt.Errorf("writing %s: %w", w.opts.Out, err)
		}
		w.outSize += int64(len(row)) + 1
		w.ok++
	} else {
		w.filtered[e.status]++
	}
	e.offset = w.outSize
	w.buf = appendStateLine(w.buf[:0], e)
	if _, err := w.state.Write(w.buf); err != nil {
		return fmt.Errorf("writing %s: %w", StatePath(w.opts.Out), err)
	}
	return nil
}

// filter returns statusOK or the reason the answer is dropped.
func (w *writer) filter(ch llm.Choice, answer string) string {
	switch {
	case strings.TrimSpace(answer) == "":
		return FilterEmpty
	case ch.FinishReason == "length":
		return FilterLength
	case w.refusal != nil && w.refusal.MatchString(answer):
		return FilterRefusal
	case w.opts.Require == RequireJSON && !json.Valid([]byte(answer)):
		return FilterInvalidJSON
	}
	return statusOK
}

// fail records a prompt that failed after its retries in OUT.failed.jsonl. A refusal
// that no retry can fix (bad key, no such model or path) stops the run.
func (w *writer) fail(o outcome) error {
	w.failed++
	w.sent++
	msg := o.err.Error()
	row := map[string]any{"line": o.line, "sample": o.key.k, "messages": o.msgs, "error": msg}
	var le *llm.Error
	if errors.As(o.err, &le) {
		row["status"] = le.StatusCode
		row["retries"] = le.Retries
		w.retries += int64(le.Retries)
		switch le.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
			if w.fatal == nil {
				w.fatal = le
				w.stopDispatch()
			}
		}
	}
	b, err := json.Marshal(row)
	if err != nil {
		return err
	}
	if _, err := w.failedF.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing %s: %w", FailedPath(w.opts.Out), err)
	}
	w.emit(Event{Type: "failed", Line: o.line, Error: msg})
	return nil
}

// sync makes what was written durable: OUT first, then the state that vouches for it.
func (w *writer) sync() error {
	w.lastSync = time.Now()
	for _, f := range []*os.File{w.out, w.state, w.failedF} {
		if f == nil {
			continue
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", f.Name(), err)
		}
	}
	return nil
}

// split splits OUT in place into OUT (train) and EvalOut with the data split's
// leak-free assignment, recording it in the state so that a kill between the two
// renames is recognised by the next run (see the state file's comment).
func (w *writer) split(ctx context.Context) (*dataset.SplitResult, error) {
	opts := w.opts
	dir, err := os.MkdirTemp(dirOf(opts.Out), ".distill-split-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sr, err := dataset.Split(ctx, dataset.SplitOptions{Input: opts.Out, OutDir: dir, EvalFraction: opts.EvalFraction, Seed: opts.SplitSeed})
	if err != nil {
		return nil, fmt.Errorf("splitting %s: %w", opts.Out, err)
	}
	if sr.ErrorsTotal > 0 {
		return nil, fmt.Errorf("splitting %s: %d invalid rows", opts.Out, sr.ErrorsTotal)
	}
	if err := w.stateLine(fmt.Sprintf("split %d\n", w.outSize)); err != nil {
		return nil, err
	}
	if err := moveFile(sr.Eval, opts.EvalOut); err != nil {
		return nil, err
	}
	if err := os.Rename(sr.Train, opts.Out); err != nil {
		return nil, err
	}
	if err := w.stateLine("complete\n"); err != nil {
		return nil, err
	}
	sr.Train, sr.Eval = opts.Out, opts.EvalOut
	return sr, nil
}

// stateLine appends one line to the state file and syncs it.
func (w *writer) stateLine(s string) error {
	if _, err := w.state.WriteString(s); err != nil {
		return err
	}
	return w.state.Sync()
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func addCounts(a, b map[string]int) map[string]int {
	out := make(map[string]int, len(a)+len(b))
	for k, v := range a {
		out[k] += v
	}
	for k, v := range b {
		out[k] += v
	}
	return out
}
