// Command loractl-driver-exec is an example external loractl driver: it runs the
// trainer as a local process under a small supervisor. Build it into the plugins dir
// and select it with `driver: {name: exec}`:
//
//	go build -o ~/.config/loractl/plugins/loractl-driver-exec ./examples/driver-exec
//
// See docs/plugins.md for writing one of your own.
package main

import (
	"fmt"
	"os"

	"github.com/loractl/loractl/driver/plugin"
	"github.com/loractl/loractl/examples/driver-exec/execdriver"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == execdriver.SuperviseArg {
		os.Exit(execdriver.Supervise(os.Args[2:]))
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loractl-driver-exec:", err)
		os.Exit(1)
	}
	logger := plugin.NewPluginLogger(execdriver.Name)
	plugin.Serve(execdriver.New(self, logger), logger)
}
