// Package app wires loractl's real dependencies into the command tree and maps the
// outcome to an exit code.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/internal/cmd/root"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
	runreport "github.com/loractl/loractl/report"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// Main runs loractl with args and returns the process exit code.
func Main(args []string) int {
	f, drivers := NewFactory(iostreams.System())
	defer drivers.close()
	cmd := root.NewCmdRoot(f)
	cmd.SetArgs(args)
	cmd.SetOut(f.IO.Out)
	cmd.SetErr(f.IO.ErrOut)
	// Commands that must react to signals themselves (train forwards them to the
	// trainer) install their own handlers; this context only stops waiting commands.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGPIPE)
	defer stop()
	return report(cmd.ExecuteContext(ctx), f.IO.ErrOut)
}

// report prints err (unless it is an exit status that was already explained) and
// returns the exit code. A reader that went away (`loractl runs | head -1`) is not an
// error worth a message: the output was simply not wanted any more.
func report(err error, errOut io.Writer) int {
	if errors.Is(err, syscall.EPIPE) {
		return 0
	}
	if err != nil {
		var ee *cmdutil.ExitError
		if !errors.As(err, &ee) || ee.Err != nil {
			fmt.Fprintln(errOut, "loractl:", err)
		}
	}
	return cmdutil.ExitCode(err)
}

// A finished run's report (report.html, loss.png) is written by the report package;
// the runner only knows the hook, so it does not depend on the HTML and plotting code.
func init() { runner.WriteReport = runreport.WriteFiles }

// NewFactory builds the production dependencies; close the returned catalog when done.
func NewFactory(io *iostreams.IOStreams) (*cmdutil.Factory, *driverCatalog) {
	logOut := iostreams.NewSwapWriter(io.ErrOut)
	l := zerolog.New(zerolog.ConsoleWriter{Out: logOut, NoColor: true}).With().Timestamp().Logger()
	f := &cmdutil.Factory{
		IO:      io,
		Log:     &l,
		LogOut:  logOut,
		RunsDir: run.DefaultBase,
	}
	return f, wireDrivers(f)
}
