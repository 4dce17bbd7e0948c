package root

import (
	"github.com/spf13/cobra"

	chatcmd "github.com/loractl/loractl/internal/cmd/chat"
	"github.com/loractl/loractl/internal/cmd/compare"
	datacmd "github.com/loractl/loractl/internal/cmd/data"
	distillcmd "github.com/loractl/loractl/internal/cmd/distill"
	"github.com/loractl/loractl/internal/cmd/doctor"
	evalcmd "github.com/loractl/loractl/internal/cmd/eval"
	exportcmd "github.com/loractl/loractl/internal/cmd/export"
	gpucmd "github.com/loractl/loractl/internal/cmd/gpu"
	importcmd "github.com/loractl/loractl/internal/cmd/import"
	initcmd "github.com/loractl/loractl/internal/cmd/init"
	"github.com/loractl/loractl/internal/cmd/logs"
	plancmd "github.com/loractl/loractl/internal/cmd/plan"
	"github.com/loractl/loractl/internal/cmd/render"
	reportcmd "github.com/loractl/loractl/internal/cmd/report"
	"github.com/loractl/loractl/internal/cmd/reproduce"
	"github.com/loractl/loractl/internal/cmd/runs"
	schemacmd "github.com/loractl/loractl/internal/cmd/schema"
	"github.com/loractl/loractl/internal/cmd/stop"
	sweepcmd "github.com/loractl/loractl/internal/cmd/sweep"
	"github.com/loractl/loractl/internal/cmd/train"
	"github.com/loractl/loractl/internal/cmdutil"
)

// commands lists every top-level command, in help order. One line per command keeps
// additions from colliding.
var commands = []func(*cmdutil.Factory) *cobra.Command{
	func(f *cmdutil.Factory) *cobra.Command { return initcmd.NewCmdInit(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return render.NewCmdRender(f, nil) },
	datacmd.NewCmdData,
	importcmd.NewCmdImport,
	func(f *cmdutil.Factory) *cobra.Command { return distillcmd.NewCmdDistill(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return plancmd.NewCmdPlan(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return train.NewCmdTrain(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return evalcmd.NewCmdEval(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return sweepcmd.NewCmdSweep(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return reproduce.NewCmdReproduce(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return chatcmd.NewCmdChat(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return exportcmd.NewCmdExport(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return runs.NewCmdRuns(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return logs.NewCmdLogs(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return reportcmd.NewCmdReport(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return compare.NewCmdCompare(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return stop.NewCmdStop(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return gpucmd.NewCmdGPU(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return doctor.NewCmdDoctor(f, nil) },
	func(f *cmdutil.Factory) *cobra.Command { return schemacmd.NewCmdSchema(f, nil) },
}
