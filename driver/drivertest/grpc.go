package drivertest

import (
	"testing"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/plugin"
)

// OverGRPC wraps factory so that every driver it makes is served over a real gRPC
// connection (go-plugin's in-process test pair) and used through the plugin client,
// as an external driver would be. Run(t, OverGRPC(f)) checks that the transport
// keeps the contract: errors.Is on sentinel errors, context cancellation, handles
// byte for byte, optional interfaces.
func OverGRPC(factory Factory) Factory {
	return func(t *testing.T) driver.Driver {
		t.Helper()
		impl := factory(t)
		client, server := goplugin.TestPluginGRPCConn(t, false, plugin.PluginSet(impl))
		t.Cleanup(func() {
			// Server first: client.Close asks the server to stop itself, and two
			// concurrent Stops race inside go-plugin.
			server.Stop()
			_ = client.Close()
		})
		raw, err := client.Dispense(plugin.PluginName)
		if err != nil {
			t.Fatalf("dispense driver over gRPC: %v", err)
		}
		d, ok := raw.(driver.Driver)
		if !ok {
			t.Fatalf("dispensed %T, not a driver.Driver", raw)
		}
		return d
	}
}
