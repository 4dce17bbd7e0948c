// Package runs implements `loractl runs`: the run store at a glance.
package runs

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/termsafe"
)

// Options are runs' flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	JSON    bool
}

// NewCmdRuns builds the runs command.
func NewCmdRuns(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List runs with their state, progress and eval loss",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runsRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the manifests as a JSON array")
	return cmd
}

func runsRun(ctx context.Context, o *Options) error {
	store, err := o.Factory.Store()
	if err != nil {
		return err
	}
	ms, unreadable, err := store.Scan()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(unreadable))
	for name := range unreadable {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		o.Factory.Log.Warn().Str("run", name).Err(unreadable[name]).Msg("run not listed: its manifest cannot be read")
	}
	for i, m := range ms {
		ms[i] = cmdutil.RefreshRun(ctx, o.Factory, store, m)
	}
	out := o.Factory.IO.Out
	steps := make([]*int, len(ms))
	for i, m := range ms {
		steps[i] = stepOf(store, m)
	}
	if o.JSON {
		// The manifest plus the step it has reached (live runs included).
		type row struct {
			*run.Manifest
			Step *int `json:"step,omitempty"`
		}
		rows := make([]row, len(ms))
		for i, m := range ms {
			rows[i] = row{m, steps[i]}
		}
		b, err := json.MarshalIndent(rows, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", termsafe.JSON(b))
		return nil
	}
	if len(ms) == 0 {
		fmt.Fprintf(out, "no runs in %s\n", store.Base)
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATE\tDRIVER\tSTEP\tEVAL LOSS\tSTARTED\tDURATION")
	for i, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termsafe.Line(m.RunID), termsafe.Line(string(m.State)), termsafe.Line(m.Driver), showStep(steps[i]), evalLoss(m), started(m), duration(m))
	}
	return tw.Flush()
}

// stepOf is the step a run has reached: its result's, else (running, or ended without
// an end event, say killed) the newest step its events report; nil when unknown.
func stepOf(store *run.Store, m *run.Manifest) *int {
	if m.Result != nil {
		s := m.Result.Step
		return &s
	}
	if s, ok := run.LastStep(store.Dir(m.RunID)); ok {
		return &s
	}
	return nil
}

func showStep(s *int) string {
	if s == nil {
		return "-"
	}
	return fmt.Sprint(*s)
}

func evalLoss(m *run.Manifest) string {
	r := m.Result
	if r == nil || r.EvalLossBefore == nil {
		return "-"
	}
	if r.EvalLossAfter == nil {
		return fmt.Sprintf("%.4f -> ?", *r.EvalLossBefore)
	}
	s := fmt.Sprintf("%.4f -> %.4f", *r.EvalLossBefore, *r.EvalLossAfter)
	if r.Improved != nil && !*r.Improved {
		s += " (no gain)"
	}
	return s
}

func started(m *run.Manifest) string {
	if m.StartedAt.IsZero() {
		return "-"
	}
	return m.StartedAt.Local().Format("2006-01-02 15:04")
}

func duration(m *run.Manifest) string {
	if m.StartedAt.IsZero() {
		return "-"
	}
	end := m.EndedAt
	if end.IsZero() {
		end = time.Now()
	}
	return end.Sub(m.StartedAt).Round(time.Second).String()
}
