// Package plugin carries the driver contract over go-plugin's gRPC transport, so a
// driver can live in its own executable (loractl-driver-<name>) and still be used
// exactly like a built-in one.
//
// The controller side launches and dispenses a plugin (Launch, Find); the plugin side
// calls Serve from its main. Both ends share Handshake and the service in driver/proto.
// The dispensed value is a driver.Driver whose type assertions tell the truth: it is a
// driver.Renderer or driver.ArraySubmitter exactly when the remote driver is one.
package plugin

import (
	"context"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/loractl/loractl/driver"
	pb "github.com/loractl/loractl/driver/proto"
)

// PluginName is the single plugin every driver executable serves.
const PluginName = "driver"

// ExecutablePrefix starts the file name of every external driver: the driver named
// "exec" is the executable loractl-driver-exec.
const ExecutablePrefix = "loractl-driver-"

// Handshake is shared by the controller and every driver executable. The magic cookie
// only stops a user from running a plugin by hand by mistake; ProtocolVersion is
// bumped when driver.proto changes incompatibly, so an old plugin is refused with a
// clear message rather than misread.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "LORACTL_DRIVER_PLUGIN",
	MagicCookieValue: "7f1c3a52-loractl-driver-contract",
}

// GRPCPlugin is the go-plugin glue for one driver. On the plugin side Impl is the
// driver to serve; on the controller side Impl is unused and GRPCClient builds the
// remote driver.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	Impl driver.Driver
}

// GRPCServer registers the driver service for Impl.
func (p *GRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterDriverServer(s, NewServer(p.Impl))
	return nil
}

// GRPCClient returns the remote driver: a driver.Driver, plus driver.Renderer and
// driver.ArraySubmitter where the remote has them.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, _ *goplugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return NewClient(ctx, pb.NewDriverClient(cc))
}

// PluginSet is the plugin map both sides pass to go-plugin. impl may be nil on the
// controller side.
func PluginSet(impl driver.Driver) goplugin.PluginSet {
	return goplugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
}
