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
	// States keeps runs in any of these states; Name runs whose name matches (a glob,
	// else a prefix); Sweep the points of the sweeps whose id starts with it.
	States []string
	Name   string
	Sweep  string
}

// view is one listed run: its manifest, and for a running run what its events say now.
type view struct {
	*run.Manifest
	// Step is the step the run has reached (live runs and killed ones included).
	Step *int          `json:"step,omitempty"`
	Live *liveProgress `json:"live,omitempty"`
}

// NewCmdRuns builds the runs command.
func NewCmdRuns(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List runs with their state, progress, eval loss and adoption verdict",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runsRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the manifests as a JSON array (running runs with \"live\": step, loss, ETA)")
	cmd.Flags().StringSliceVar(&opts.States, "state", nil, "only runs in these states (running, completed, failed, interrupted, pending, created; repeatable or comma-separated)")
	cmd.Flags().StringVar(&opts.Name, "name", "", "only runs whose name matches: a glob (\"lr-*\") or a prefix")
	cmd.Flags().StringVar(&opts.Sweep, "sweep", "", "only the points of this sweep (its id or a unique prefix)")
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
	if err := o.checkFilters(); err != nil {
		return err
	}
	if err := o.resolveSweep(ms); err != nil {
		return err
	}
	views := []view{}
	for _, m := range ms {
		if !o.keepBeforeRefresh(m) {
			continue
		}
		m = cmdutil.RefreshRun(ctx, o.Factory, store, m)
		if !o.keep(m) {
			continue
		}
		v := view{Manifest: m, Step: stepOf(store, m)}
		if m.State == run.StateRunning {
			v.Live = readLive(store.Dir(m.RunID))
		}
		views = append(views, v)
	}
	out := o.Factory.IO.Out
	if o.JSON {
		b, err := json.MarshalIndent(views, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", termsafe.JSON(b))
		return nil
	}
	if len(views) == 0 {
		if o.filtered() {
			fmt.Fprintf(out, "no runs in %s match the filters\n", store.Base)
		} else {
			fmt.Fprintf(out, "no runs in %s\n", store.Base)
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATE\tDRIVER\tSTEP\tLOSS\tEVAL LOSS\tVERDICT\tETA\tSTARTED\tDURATION")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termsafe.Line(v.RunID), termsafe.Line(string(v.State)), termsafe.Line(driverCol(v.Manifest)),
			step(v), loss(v), evalLoss(v.Manifest), verdict(v.Manifest), eta(v), started(v.Manifest), duration(v.Manifest))
	}
	return tw.Flush()
}

// driverCol is the driver, with the process layout of a distributed run
// ("slurm 2×4 ddp/nccl").
func driverCol(m *run.Manifest) string {
	if m.Distributed != nil {
		return m.Driver + " " + m.Distributed.String()
	}
	return m.Driver
}

func step(v view) string {
	switch {
	case v.Live != nil && v.Live.TotalSteps > 0:
		return fmt.Sprintf("%d/%d", v.Live.Step, v.Live.TotalSteps)
	case v.Live != nil:
		return fmt.Sprint(v.Live.Step)
	}
	return showStep(v.Step)
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

// loss is the latest logged train loss of a running run.
func loss(v view) string {
	if v.Live == nil || v.Live.Loss == nil {
		return "-"
	}
	return fmt.Sprintf("%.4f", *v.Live.Loss)
}

func eta(v view) string {
	if v.Live == nil || v.Live.ETASeconds == nil {
		return "-"
	}
	return (time.Duration(*v.Live.ETASeconds) * time.Second).Round(time.Second).String()
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

// verdict is the task evaluation's verdict, else the eval-loss comparison's.
func verdict(m *run.Manifest) string {
	r := m.Result
	switch {
	case r == nil:
		return "-"
	case r.Verdict != "":
		return r.Verdict
	case r.Improved == nil:
		return "-"
	case *r.Improved:
		return "adopt"
	}
	return "do_not_adopt"
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
