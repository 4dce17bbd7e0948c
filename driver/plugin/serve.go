package plugin

import (
	"os"
	"strings"
	"time"

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
	exitWithParent(time.Second)
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(d),
		GRPCServer:      goplugin.DefaultGRPCServer,
		Logger:          logger,
	})
}

// exitWithParent ends the plugin once the controller that started it is gone.
// go-plugin has no such check: a controller killed with SIGKILL would leave its
// plugins running, idle, forever. A reparented process sees its parent pid change.
func exitWithParent(every time.Duration) {
	parent := os.Getppid()
	go func() {
		for range time.Tick(every) {
			if os.Getppid() != parent {
				os.Exit(0)
			}
		}
	}()
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

// handshakeEnv are the variables go-plugin sets for the plugin process alone.
var handshakeEnv = map[string]bool{
	Handshake.MagicCookieKey:    true,
	"PLUGIN_MIN_PORT":           true,
	"PLUGIN_MAX_PORT":           true,
	"PLUGIN_PROTOCOL_VERSIONS":  true,
	"PLUGIN_CLIENT_CERT":        true,
	"PLUGIN_UNIX_SOCKET_DIR":    true,
	"PLUGIN_UNIX_SOCKET_GROUP":  true,
	"PLUGIN_MULTIPLEX_GRPC":     true,
	"PLUGIN_CLIENT_CERT_CACHED": true,
}

// Environ is the plugin's environment without go-plugin's handshake variables: the
// controller's environment, which is what a driver should hand the trainer (it holds
// the variables Task.PassEnv names). The handshake values mean nothing to a trainer,
// and a trainer that is itself a Go plugin host must not see them.
func Environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !handshakeEnv[k] {
			env = append(env, kv)
		}
	}
	return env
}
