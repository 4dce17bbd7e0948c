package data

import (
	"fmt"
	"io"
	"strings"

	"github.com/loractl/loractl/dataset"
)

// writeReport prints a check report for a person: the verdict, errors, warnings, stats.
func writeReport(w io.Writer, rep *dataset.Report) {
	fmt.Fprintf(w, "%s: %s\n", rep.File, describe(rep))
	if len(rep.Errors) > 0 {
		fmt.Fprintf(w, "\nErrors:\n")
		writeErrors(w, rep.Errors, rep.ErrorsTotal)
	}
	if len(rep.Warnings) > 0 {
		fmt.Fprintf(w, "\nWarnings:\n")
		for _, wa := range rep.Warnings {
			where := ""
			if wa.File != "" {
				where = " [" + wa.File + "]"
			}
			fmt.Fprintf(w, "  %s%s: %s\n", wa.Code, where, wa.Message)
			if len(wa.Lines) > 0 {
				fmt.Fprintf(w, "      lines %s%s\n", joinInts(wa.Lines), more(wa.Count, len(wa.Lines)))
			}
		}
	}
	fmt.Fprintf(w, "\nStats:\n")
	writeStats(w, &rep.Stats, true)
	if ev := rep.Stats.Eval; ev != nil {
		fmt.Fprintf(w, "\nEval (%s):\n", rep.EvalFile)
		writeStats(w, ev, false)
	}
	if rep.HasErrors() {
		fmt.Fprintf(w, "\nFix the errors above before training (loractl train refuses this data).\n")
	}
}

// writeErrors lists errors one per line and says how many more were counted.
func writeErrors(w io.Writer, errs []dataset.LineError, total int) {
	for _, e := range errs {
		loc := "file"
		if e.Line > 0 {
			loc = fmt.Sprintf("line %d", e.Line)
		}
		if e.File != "" {
			loc = e.File + " " + loc
		}
		path := ""
		if e.Path != "" {
			path = " " + e.Path
		}
		fmt.Fprintf(w, "  %s: %s%s: %s\n", loc, e.Code, path, e.Message)
	}
	if rest := total - len(errs); rest > 0 {
		fmt.Fprintf(w, "  … and %d more (raise --max-errors to list them)\n", rest)
	}
}

// writeStats prints one file's stats; train adds the totals over all epochs.
func writeStats(w io.Writer, s *dataset.Stats, train bool) {
	row := func(k, format string, a ...any) {
		fmt.Fprintf(w, "  %-18s %s\n", k, fmt.Sprintf(format, a...))
	}
	row("examples", "%s (%s valid, %s duplicates)", thousands(int64(s.Examples)), thousands(int64(s.ValidExamples)), thousands(int64(s.Duplicates)))
	m := s.MessagesPerExample
	row("messages/example", "min %d, mean %.2f, max %d", m.Min, m.Mean, m.Max)
	t := s.Tokens
	label := ""
	if t.Estimated {
		label = " (estimate)"
	}
	row("tokens/example", "p50 %s, p95 %s, max %s%s", thousands(int64(t.PerExample.P50)), thousands(int64(t.PerExample.P95)), thousands(int64(t.PerExample.Max)), label)
	if t.MaxLength > 0 {
		row("tokens/epoch", "%s after truncation to %s, %s of them assistant%s", thousands(t.PerEpoch), thousands(int64(t.MaxLength)), thousands(t.AssistantPerEpoch), label)
	} else {
		row("tokens/epoch", "%s, %s of them assistant%s", thousands(t.PerEpoch), thousands(t.AssistantPerEpoch), label)
	}
	if train {
		row("tokens in total", "%s for %g epochs", thousands(t.Total), t.Epochs)
	}
	row("roles", "system %s, user %s, assistant %s, tool %s", thousands(int64(s.Roles["system"])), thousands(int64(s.Roles["user"])), thousands(int64(s.Roles["assistant"])), thousands(int64(s.Roles["tool"])))
	sp := s.SystemPrompts
	row("system prompts", "%d distinct, %s examples without one", sp.Distinct, thousands(int64(sp.Without)))
	for _, u := range sp.Top {
		row("", "%s× %q (first at line %d)", thousands(int64(u.Count)), u.Preview, u.FirstLine)
	}
	if tpl := t.Template; tpl != nil {
		eos := "ends assistant turns with " + tpl.EOSToken
		if !tpl.EndsWithEOS {
			eos = "does NOT end assistant turns with an end token"
		}
		row("chat template", "generation markers: %s; %s", yesNo(tpl.GenerationMarkers), eos)
	}
	if t.Note != "" {
		row("token counts", "%s", t.Note)
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

func more(count, shown int) string {
	if count > shown {
		return fmt.Sprintf(", … (%s in all)", thousands(int64(count)))
	}
	return ""
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
