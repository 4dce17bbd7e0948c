package sweep

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/sweep"
)

// StatusOptions are `sweep status`'s flags.
type StatusOptions struct {
	Factory *cmdutil.Factory
	Parent  *Options
	ID      string
	JSON    bool
}

// NewCmdStatus builds `loractl sweep status ID`.
func NewCmdStatus(f *cmdutil.Factory, parent *Options, runF func(*StatusOptions) error) *cobra.Command {
	opts := &StatusOptions{Factory: f, Parent: parent}
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a sweep's progress: every point's state and run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return statusRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the points as JSON")
	return cmd
}

// loadTable finds sweep id, brings unfinished points up to date through their
// drivers (a detached Slurm array, a killed controller) and ranks the results.
func loadTable(ctx context.Context, f *cmdutil.Factory, sweepsDir, id string) (*run.Store, string, *sweep.State, *sweep.Table, error) {
	store, err := f.Store()
	if err != nil {
		return nil, "", nil, nil, err
	}
	dir, st, err := sweep.Find(sweepsBase(sweepsDir, store), id)
	if errors.Is(err, sweep.ErrNoSweep) || errors.Is(err, os.ErrNotExist) {
		return nil, "", nil, nil, cmdutil.Invalid(err)
	}
	if err != nil {
		return nil, "", nil, nil, err
	}
	for _, ps := range st.Points {
		if m, err := store.Manifest(ps.RunID); err == nil && !m.State.Terminal() {
			cmdutil.RefreshRun(ctx, f, store, m)
		}
	}
	t, err := sweep.Results(store, st)
	return store, dir, st, t, err
}

func statusRun(ctx context.Context, o *StatusOptions) error {
	_, dir, st, t, err := loadTable(ctx, o.Factory, o.Parent.SweepsDir, o.ID)
	if err != nil {
		return err
	}
	w := o.Factory.IO.Out
	if o.JSON {
		return t.WriteJSON(w)
	}
	fmt.Fprintf(w, "sweep %s (%s, %s)\n  %s\n  state %s, updated %s\n\n", st.ID, st.Method, st.Driver,
		sweep.ProgressLine(sweep.Progress(t), len(t.Rows)), dir, st.UpdatedAt.Local().Format(time.DateTime))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POINT\tSTATE\tFAILURES\tRUN ID\tVALUES\tEVAL LOSS")
	rows := append([]sweep.Row(nil), t.Rows...)
	sortByIndex(rows)
	for i := range rows {
		r := &rows[i]
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", r.Index, r.State, r.Failures, r.RunID,
			valuesText(st.Params, r), lossText(r))
	}
	return tw.Flush()
}

func lossText(r *sweep.Row) string {
	if r.EvalLossBefore == nil {
		return "-"
	}
	return fmtFloat(r.EvalLossBefore) + " -> " + fmtFloat(r.EvalLossAfter)
}

// verdictText is the task evaluation's verdict, else the eval-loss comparison's.
func verdictText(r *sweep.Row) string {
	switch {
	case r.Verdict != "":
		return r.Verdict
	case r.Improved == nil:
		return "-"
	case *r.Improved:
		return "adopt"
	}
	return "do_not_adopt"
}

func sortByIndex(rows []sweep.Row) {
	sort.Slice(rows, func(i, j int) bool { return rows[i].Index < rows[j].Index })
}

// ResultsOptions are `sweep results`'s flags.
type ResultsOptions struct {
	Factory *cmdutil.Factory
	Parent  *Options
	ID      string
	JSON    bool
	CSV     bool
}

// NewCmdResults builds `loractl sweep results ID`.
func NewCmdResults(f *cmdutil.Factory, parent *Options, runF func(*ResultsOptions) error) *cobra.Command {
	opts := &ResultsOptions{Factory: f, Parent: parent}
	cmd := &cobra.Command{
		Use:   "results ID",
		Short: "Rank a sweep's points by its metric, with eval loss, wall time and peak memory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			if opts.JSON && opts.CSV {
				return cmdutil.Invalidf("give --json or --csv, not both")
			}
			if runF != nil {
				return runF(opts)
			}
			return resultsRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the table as JSON")
	cmd.Flags().BoolVar(&opts.CSV, "csv", false, "print the table as CSV")
	return cmd
}

func resultsRun(ctx context.Context, o *ResultsOptions) error {
	_, dir, st, t, err := loadTable(ctx, o.Factory, o.Parent.SweepsDir, o.ID)
	if err != nil {
		return err
	}
	// Keep the sweep's own copy current; reading must not fail when it cannot.
	_ = t.Save(dir)
	w := o.Factory.IO.Out
	switch {
	case o.JSON:
		return t.WriteJSON(w)
	case o.CSV:
		return t.WriteCSV(w)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{"RANK", "POINT"}
	head = append(head, st.Params...)
	head = append(head, strings.ToUpper(st.Metric), "EVAL LOSS BEFORE -> AFTER", "VERDICT", "WALL", "PEAK MEM", "STATE")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for i := range t.Rows {
		r := &t.Rows[i]
		rank := "-"
		if r.Rank > 0 {
			rank = fmt.Sprint(r.Rank)
		}
		cells := []string{rank, fmt.Sprint(r.Index)}
		for _, k := range st.Params {
			cells = append(cells, r.Value(k))
		}
		peak := "-"
		if r.PeakMemoryBytes > 0 {
			peak = gpu.FormatBytes(r.PeakMemoryBytes)
		}
		wall := "-"
		if r.WallSeconds > 0 {
			wall = (time.Duration(r.WallSeconds) * time.Second).String()
		}
		cells = append(cells, fmtFloat(r.Metric), lossText(r), verdictText(r), wall, peak, string(r.State))
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if t.Best != nil {
		fmt.Fprintln(w)
		printBest(w, t)
	} else {
		fmt.Fprintf(w, "\nno point has completed with a %s yet\n", st.Metric)
	}
	return nil
}
