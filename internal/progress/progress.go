// Package progress renders run events for people: a live status line on a terminal,
// plain lines elsewhere, or the raw JSON events.
package progress

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/termsafe"
)

// Progress renders run events for people: on a terminal one live status line that
// rewrites itself (step/total, loss, lr, tokens/s, ETA) with notable events printed
// above it; elsewhere one plain line per event; with JSON, the events themselves.
type Progress struct {
	Out  io.Writer
	TTY  bool
	JSON bool

	// mu orders the live line against the signal handler and log lines written
	// through Above from other goroutines.
	mu         sync.Mutex
	total      int
	firstStep  int
	firstAt    time.Time
	lastAt     time.Time
	lastStep   int
	lastStatus string
	gpu        string
	now        func() time.Time
}

// Event renders one event.
func (p *Progress) Event(e *run.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.now == nil {
		p.now = time.Now
	}
	if p.JSON {
		fmt.Fprintf(p.Out, "%s\n", termsafe.JSON(e.Raw))
		return
	}
	switch e.Type {
	case run.EventStart:
		p.total = e.TotalSteps
		// A new attempt: its rate starts here, not at the previous attempt's steps
		// (the time between attempts trained nothing).
		p.firstAt = time.Time{}
		msg := fmt.Sprintf("trainer started on %s (%s): %s trainable of %s parameters, %d steps",
			orDash(e.Device), orDash(e.Precision), humanCount(e.TrainableParams), humanCount(e.TotalParams), e.TotalSteps)
		if d := e.Distributed; d != nil {
			msg += fmt.Sprintf(", %d processes (%s over %d node(s), %s)", d.WorldSize, d.Strategy, d.Nodes, d.Backend)
		}
		if e.ResumeFrom != "" {
			msg += fmt.Sprintf(", resuming at step %d", e.ResumeStep)
		}
		p.line(msg)
	case run.EventLog:
		if e.TotalSteps > 0 {
			p.total = e.TotalSteps
		}
		p.trackRate(e.Step, p.when(e))
		status := p.status(e)
		if p.TTY {
			p.lastStatus = status
			fmt.Fprintf(p.Out, "\r\033[K%s", status)
		} else {
			fmt.Fprintln(p.Out, status)
		}
	case run.EventEval:
		if e.EvalLoss != nil {
			p.line(fmt.Sprintf("eval (%s) at step %d: eval_loss %.4f", e.Phase, e.Step, *e.EvalLoss))
		}
	case run.EventBaseEvalCache:
		what := "evaluation"
		if e.Phase == "generate" {
			what = "replies"
		}
		if e.Status == "reused" {
			p.line(fmt.Sprintf("base model's %s reused from run %s (cached; --no-cache computes it again)", what, e.StoredBy))
		}
	case run.EventCheckpoint:
		p.line(fmt.Sprintf("checkpoint saved at step %d: %s", e.Step, e.Path))
	case run.EventWarning:
		p.line(fmt.Sprintf("warning [%s]: %s", e.Code, e.Message))
	case run.EventError:
		msg := fmt.Sprintf("error: %s: %s", e.ErrorType, e.Message)
		if e.Hint != "" {
			msg += "\n  hint: " + e.Hint
		}
		p.line(msg)
	case run.EventGPU:
		p.gpu = fmt.Sprintf("gpu%d %s", e.Index, humanBytes(e.MemoryUsedBytes))
		if e.UtilizationPercent != nil {
			p.gpu += fmt.Sprintf(" %.0f%%", *e.UtilizationPercent)
		}
	case run.EventEnd:
		p.line(fmt.Sprintf("trainer %s at step %d", e.Status, e.Step))
	}
}

// line prints a notable event, keeping the live status line below it on a terminal.
func (p *Progress) line(s string) {
	s = termsafe.Text(s) // event text comes from a run's files: never raw escapes
	if p.TTY {
		fmt.Fprintf(p.Out, "\r\033[K%s\n", s)
		if p.lastStatus != "" {
			fmt.Fprint(p.Out, p.lastStatus)
		}
		return
	}
	fmt.Fprintln(p.Out, s)
}

// Done ends the live line, keeping the last status as a line of its own.
func (p *Progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.TTY && p.lastStatus != "" {
		fmt.Fprintln(p.Out)
		p.lastStatus = ""
	}
}

// Clear erases the live line and keeps it erased until the next step: after Ctrl-C or
// `loractl stop` its step, rate and ETA are no longer news.
func (p *Progress) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.TTY && p.lastStatus != "" {
		fmt.Fprint(p.Out, "\r\033[K")
		p.lastStatus = ""
	}
}

// Above returns a writer for log lines (the controller's warnings): each write appears
// on lines of its own above the live status line, which is drawn again below it. On
// a terminal both streams share the screen; without this a warning would continue the
// status line.
func (p *Progress) Above(w io.Writer) io.Writer { return aboveWriter{p: p, w: w} }

type aboveWriter struct {
	p *Progress
	w io.Writer
}

func (a aboveWriter) Write(b []byte) (int, error) {
	p := a.p
	if !p.TTY {
		// No live line to move: the log line goes straight out, never waiting on an
		// event stuck writing to a stdout nobody reads (the Ctrl-C warning is logged
		// before the signal is forwarded to the trainer).
		return a.w.Write(b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.TTY && p.lastStatus != ""
	if live {
		fmt.Fprint(p.Out, "\r\033[K")
	}
	n, err := a.w.Write(b)
	if live {
		if !bytes.HasSuffix(b, []byte("\n")) {
			fmt.Fprintln(a.w)
		}
		fmt.Fprint(p.Out, p.lastStatus)
	}
	return n, err
}

// when is the event's own time, so a replay (`loractl logs`) computes the rate and
// ETA the run had then; an event without a time is now.
func (p *Progress) when(e *run.Event) time.Time {
	if !e.Time.IsZero() {
		return e.Time
	}
	return p.now()
}

func (p *Progress) trackRate(step int, at time.Time) {
	if p.firstAt.IsZero() {
		p.firstStep, p.firstAt = step, at
	}
	p.lastStep, p.lastAt = step, at
}

func (p *Progress) status(e *run.Event) string {
	var b strings.Builder
	if p.total > 0 {
		fmt.Fprintf(&b, "step %d/%d %s", e.Step, p.total, bar(e.Step, p.total, 20))
	} else {
		fmt.Fprintf(&b, "step %d", e.Step)
	}
	if e.Loss != nil {
		fmt.Fprintf(&b, " loss %.4f", *e.Loss)
	}
	if e.LearningRate != nil {
		fmt.Fprintf(&b, " lr %.2e", *e.LearningRate)
	}
	if e.TokensPerSecond != nil {
		fmt.Fprintf(&b, " %.0f tok/s", *e.TokensPerSecond)
	}
	if eta, ok := p.eta(e.Step); ok {
		fmt.Fprintf(&b, " ETA %s", eta.Round(time.Second))
	}
	if p.gpu != "" {
		b.WriteString(" | " + p.gpu)
	}
	return b.String()
}

// eta extrapolates from the steps of this attempt (not from step 0: a resumed run's
// earlier steps took no time here), measured between their events' times.
func (p *Progress) eta(step int) (time.Duration, bool) {
	done := step - p.firstStep
	if p.total <= 0 || done <= 0 {
		return 0, false
	}
	per := p.lastAt.Sub(p.firstAt) / time.Duration(done)
	return per * time.Duration(p.total-step), true
}

func bar(n, total, width int) string {
	if total <= 0 {
		return ""
	}
	filled := min(width, n*width/total)
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

func humanBytes(b uint64) string {
	const gib = 1 << 30
	if b >= gib {
		return fmt.Sprintf("%.1f GiB", float64(b)/gib)
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}
