package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
)

// ErrChecksum means a driver executable does not match the checksum pinned for it.
var ErrChecksum = errors.New("driver plugin checksum mismatch")

// LaunchConfig says which driver executable to start and how.
type LaunchConfig struct {
	// Path is the executable, as Find returns it.
	Path string
	// SHA256 is the pinned checksum (hex) from the user's config
	// (driver.plugin.sha256); empty means not pinned. When set, an executable that
	// does not match is refused before it runs.
	SHA256 string
	// Logger receives the plugin's stderr logs and go-plugin's own messages.
	Logger zerolog.Logger
	// StartTimeout bounds the handshake; zero means go-plugin's default (1 minute).
	StartTimeout time.Duration
}

// Plugin is a running driver executable.
type Plugin struct {
	client *goplugin.Client
	driver driver.Driver
}

// Driver is the remote driver; it is a driver.Renderer or driver.ArraySubmitter when
// the plugin's driver is.
func (p *Plugin) Driver() driver.Driver { return p.driver }

// Close stops the plugin process (gracefully, then by force). Tasks it launched are
// the driver's business: most outlive it and are reattached through their handles.
func (p *Plugin) Close() { p.client.Kill() }

// Launch starts a driver executable over gRPC with automatic mutual TLS and returns
// the driver it serves.
func Launch(cfg LaunchConfig) (*Plugin, error) {
	var secure *goplugin.SecureConfig
	if cfg.SHA256 != "" {
		want, err := VerifyChecksum(cfg.Path, cfg.SHA256)
		if err != nil {
			return nil, err
		}
		// go-plugin checks again right before it starts the process, which narrows
		// the window in which the file could be swapped after our check.
		secure = &goplugin.SecureConfig{Checksum: want, Hash: sha256.New()}
	}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          PluginSet(nil),
		Cmd:              exec.Command(cfg.Path),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		SecureConfig:     secure,
		Logger:           NewHCLogger(cfg.Logger),
		StartTimeout:     cfg.StartTimeout,
	})
	d, err := dispense(client)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("failed to start driver plugin %s: %w", cfg.Path, err)
	}
	return &Plugin{client: client, driver: d}, nil
}

func dispense(client *goplugin.Client) (driver.Driver, error) {
	rpc, err := client.Client()
	if err != nil {
		if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) {
			return nil, fmt.Errorf("%w: the executable changed after it was verified", ErrChecksum)
		}
		return nil, err
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		return nil, err
	}
	d, ok := raw.(driver.Driver)
	if !ok {
		return nil, fmt.Errorf("plugin served %T, not a driver", raw)
	}
	return d, nil
}

// VerifyChecksum checks the file at path against a pinned hex SHA-256 and returns the
// pinned sum as bytes. The error names both sums so a user can re-pin deliberately.
func VerifyChecksum(path, pinned string) ([]byte, error) {
	want, err := hex.DecodeString(strings.TrimSpace(pinned))
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("driver.plugin.sha256: %q is not a SHA-256 (64 hex digits)", pinned)
	}
	got, err := FileSHA256(path)
	if err != nil {
		return nil, err
	}
	if got != hex.EncodeToString(want) {
		return nil, fmt.Errorf("%w: %s has sha256 %s, but driver.plugin.sha256 pins %s; refusing to run it",
			ErrChecksum, path, got, hex.EncodeToString(want))
	}
	return want, nil
}

// FileSHA256 returns the hex SHA-256 of a file, the value to pin in driver.plugin.sha256.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
