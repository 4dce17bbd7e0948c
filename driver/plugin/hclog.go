package plugin

import (
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// zlog adapts a zerolog.Logger to hclog.Logger, the logger go-plugin wants. go-plugin
// reads each line a plugin writes to stderr and replays it here at the plugin's
// level (hclog JSON keeps it; plain lines arrive at debug), so a plugin's logs land
// in the controller's own log stream, tagged with the plugin's name.
type zlog struct {
	log     zerolog.Logger
	name    string
	implied []any
}

// NewHCLogger returns an hclog.Logger that writes into l.
func NewHCLogger(l zerolog.Logger) hclog.Logger { return &zlog{log: l} }

// Log implements hclog.Logger.
func (z *zlog) Log(level hclog.Level, msg string, args ...any) {
	zl := toZerologLevel(level)
	if zl == zerolog.Disabled {
		return
	}
	ev := z.log.WithLevel(zl)
	if !ev.Enabled() {
		return
	}
	if z.name != "" {
		ev = ev.Str("plugin", z.name)
	}
	addFields(ev, z.implied)
	addFields(ev, args)
	ev.Msg(msg)
}

// addFields adds hclog's alternating key/value arguments as zerolog fields.
func addFields(ev *zerolog.Event, args []any) {
	for i := 0; i < len(args); i += 2 {
		key := fmt.Sprint(args[i])
		if i+1 == len(args) {
			ev.Interface("EXTRA_VALUE_AT_END", args[i])
			return
		}
		// go-plugin appends the plugin's own timestamp to every replayed line;
		// zerolog stamps its own time, and two "time"-like keys only confuse readers.
		if key == "timestamp" {
			continue
		}
		switch v := args[i+1].(type) {
		case error:
			ev.AnErr(key, v)
		default:
			ev.Interface(key, v)
		}
	}
}

func toZerologLevel(l hclog.Level) zerolog.Level {
	switch l {
	case hclog.Trace:
		return zerolog.TraceLevel
	case hclog.Debug, hclog.NoLevel:
		return zerolog.DebugLevel
	case hclog.Info:
		return zerolog.InfoLevel
	case hclog.Warn:
		return zerolog.WarnLevel
	case hclog.Error:
		return zerolog.ErrorLevel
	}
	return zerolog.Disabled
}

func toHCLevel(l zerolog.Level) hclog.Level {
	switch l {
	case zerolog.TraceLevel:
		return hclog.Trace
	case zerolog.DebugLevel:
		return hclog.Debug
	case zerolog.InfoLevel:
		return hclog.Info
	case zerolog.WarnLevel:
		return hclog.Warn
	case zerolog.ErrorLevel:
		return hclog.Error
	}
	return hclog.Off
}

// Trace implements hclog.Logger.
func (z *zlog) Trace(msg string, args ...any) { z.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (z *zlog) Debug(msg string, args ...any) { z.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (z *zlog) Info(msg string, args ...any) { z.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (z *zlog) Warn(msg string, args ...any) { z.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (z *zlog) Error(msg string, args ...any) { z.Log(hclog.Error, msg, args...) }

// GetLevel implements hclog.Logger: the stricter of the logger's and zerolog's global
// level, so go-plugin skips parsing lines that would be dropped anyway.
func (z *zlog) GetLevel() hclog.Level {
	l := z.log.GetLevel()
	if g := zerolog.GlobalLevel(); g > l {
		l = g
	}
	return toHCLevel(l)
}

// IsTrace implements hclog.Logger.
func (z *zlog) IsTrace() bool { return z.GetLevel() <= hclog.Trace }

// IsDebug implements hclog.Logger.
func (z *zlog) IsDebug() bool { return z.GetLevel() <= hclog.Debug }

// IsInfo implements hclog.Logger.
func (z *zlog) IsInfo() bool { return z.GetLevel() <= hclog.Info }

// IsWarn implements hclog.Logger.
func (z *zlog) IsWarn() bool { return z.GetLevel() <= hclog.Warn }

// IsError implements hclog.Logger.
func (z *zlog) IsError() bool { return z.GetLevel() <= hclog.Error }

// ImpliedArgs implements hclog.Logger.
func (z *zlog) ImpliedArgs() []any { return z.implied }

// With implements hclog.Logger.
func (z *zlog) With(args ...any) hclog.Logger {
	c := *z
	c.implied = append(append([]any{}, z.implied...), args...)
	return &c
}

// Name implements hclog.Logger.
func (z *zlog) Name() string { return z.name }

// Named implements hclog.Logger.
func (z *zlog) Named(name string) hclog.Logger {
	c := *z
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

// ResetNamed implements hclog.Logger.
func (z *zlog) ResetNamed(name string) hclog.Logger {
	c := *z
	c.name = name
	return &c
}

// SetLevel implements hclog.Logger.
func (z *zlog) SetLevel(level hclog.Level) { z.log = z.log.Level(toZerologLevel(level)) }

// StandardLogger implements hclog.Logger.
func (z *zlog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(z.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger: each write (a log.Logger writes one line
// at a time) becomes one info entry.
func (z *zlog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer { return lineWriter{z} }

type lineWriter struct{ z *zlog }

func (w lineWriter) Write(p []byte) (int, error) {
	w.z.Info(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
