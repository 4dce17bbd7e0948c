package plugin

import (
	"os"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/loractl/loractl/driver"
)

// Serve runs d as a loractl driver plugin; call it from the main of an executable
// named loractl-driver-<name>. It returns when the controller is done with the plugin.
// Run by hand (without the controller's handshake), it prints a short notice and exits.
//
// Log with the logger from NewPluginLogger (or any hclog JSON logger on stderr): the
// controller replays those lines, levels intact, into its own log. Never write to
// stdout: go-plugin owns it for the handshake.
func Serve(d driver.Driver, logger hclog.Logger) {
	if logger == nil {
		logger = NewPluginLogger(d.Name())
	}
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(d),
		GRPCServer:      goplugin.DefaultGRPCServer,
		Logger:          logger,
	})
}

// NewPluginLogger returns the logger a plugin should use: hclog JSON on stderr, which
// the controller parses and forwards at the right level. The controller filters by
// its own level, so the plugin logs everything from debug up.
func NewPluginLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Debug,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}
