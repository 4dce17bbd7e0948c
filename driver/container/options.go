package container

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/loractl/loractl/driver"
)

// DefaultImage is the image the container drivers run when the config names none: the
// one `docker build -f Dockerfile.gpu -t loractl-trainer:latest .` produces.
const DefaultImage = "loractl-trainer:latest"

// Defaults applied by DecodeOptions for keys the config leaves out.
const (
	DefaultPython    = "python3"
	DefaultShmSize   = "8g"
	DefaultNetwork   = "none"
	DefaultStopGrace = 60 * time.Second
	// MaxStopGrace bounds stop_grace (and so --stop-timeout): longer is a typo.
	MaxStopGrace = time.Hour
)

// GPU request styles (the gpu_request option).
const (
	// GPURequestAuto is Docker's --gpus for docker and CDI for podman.
	GPURequestAuto = "auto"
	// GPURequestFlag is Docker's --gpus device=N (needs the NVIDIA container toolkit).
	GPURequestFlag = "flag"
	// GPURequestCDI is --device nvidia.com/gpu=N (needs a CDI spec from nvidia-ctk).
	GPURequestCDI = "cdi"
)

// Options are a container driver's settings: its section of the run config
// (`driver: {name: docker, docker: {...}}`), as JSON. Zero values take the defaults.
type Options struct {
	// Image is the trainer image (default DefaultImage).
	Image string `json:"image,omitempty"`
	// Binary is the engine executable, a name on PATH or an absolute path
	// (default "docker" or "podman").
	Binary string `json:"binary,omitempty"`
	// Python is the interpreter inside the image; it replaces the task's Command[0],
	// which names the host's interpreter (default "python3").
	Python string `json:"python,omitempty"`
	// ShmSize is /dev/shm's size; PyTorch data loader workers share batches through it
	// and the engines' 64 MB default is too small (default "8g").
	ShmSize string `json:"shm_size,omitempty"`
	// Memory caps the container's memory ("32g"); over it the kernel OOM-kills the
	// trainer and the driver reports OOMKilled. Empty means no cap.
	Memory string `json:"memory,omitempty"`
	// Env names more host variables to pass by name (-e NAME), on top of the task's.
	Env []string `json:"env,omitempty"`
	// ReadOnly lists more host paths to mount read-only at the same path.
	ReadOnly []string `json:"read_only,omitempty"`
	// User is "uid:gid" inside the container (default: the invoking user's, so the
	// files the trainer writes into the run dir belong to them).
	User string `json:"user,omitempty"`
	// Network is the container network (default "none": a trainer with a local model
	// or a populated HF cache needs none; "bridge" or "host" to download a model).
	Network string `json:"network,omitempty"`
	// GPURequest is how GPUs are requested: auto, flag or cdi (default auto).
	GPURequest string `json:"gpu_request,omitempty"`
	// Ulimits are extra --ulimit values, "name=soft:hard" (podman 4.3 on some hosts
	// needs nofile and nproc capped).
	Ulimits []string `json:"ulimits,omitempty"`
	// Init runs a tiny init as PID 1 that forwards signals to the trainer and reaps
	// data loader workers (default true). Without it the trainer is PID 1, and the
	// kernel drops SIGTERM until Python installs its handler.
	Init *bool `json:"init,omitempty"`
	// InitPath is the init binary for --init-path (podman uses catatonit by default).
	InitPath string `json:"init_path,omitempty"`
	// Pull is the engine's pull policy: always, missing or never (default: the engine's).
	Pull string `json:"pull,omitempty"`
	// StopGrace is how long `loractl stop` waits after SIGTERM before killing, when the
	// caller gives no grace; also the container's --stop-timeout (default 60s).
	StopGrace Duration `json:"stop_grace,omitempty"`
}

// Duration is a time.Duration that reads from JSON as "90s"/"2m" or a number of seconds.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return &durationError{fmt.Sprintf("%q is not a duration like 90s or 2m", s)}
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return &durationError{fmt.Sprintf("%s is not a duration like \"90s\" or a number of seconds", b)}
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// DecodeOptions reads a container driver's config section, refusing unknown keys,
// validates it, and fills in the defaults. Errors are *driver.OptionError naming the key.
func DecodeOptions(raw json.RawMessage) (*Options, error) {
	var o Options
	if len(bytes.TrimSpace(raw)) > 0 && string(bytes.TrimSpace(raw)) != "null" {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return nil, decodeError(err)
		}
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.applyDefaults()
	return &o, nil
}

// DecodeOptionsFor is DecodeOptions plus the checks that depend on the engine: the
// config layer validates a "docker:" or "podman:" section with it.
func DecodeOptionsFor(engine Engine, raw json.RawMessage) (*Options, error) {
	o, err := DecodeOptions(raw)
	if err != nil {
		return nil, err
	}
	if err := o.checkEngine(engine); err != nil {
		return nil, err
	}
	return o, nil
}

// checkEngine refuses options the engine's CLI has no flag for.
func (o *Options) checkEngine(engine Engine) error {
	switch {
	case engine == Docker && o.InitPath != "":
		return &driver.OptionError{Key: "init_path", Message: "podman only: docker's init binary is the daemon's setting (dockerd --init-path)"}
	case engine == Podman && o.GPURequest == GPURequestFlag:
		return &driver.OptionError{Key: "gpu_request", Message: "podman has no --gpus flag: use cdi (or auto)"}
	}
	return nil
}

// decodeError turns encoding/json's errors into OptionErrors naming the key.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return &driver.OptionError{Key: "(section)", Message: fmt.Sprintf("expected an object of options, got %s", te.Value)}
		}
		return &driver.OptionError{Key: te.Field, Message: fmt.Sprintf("expected %s, got %s", te.Type, te.Value)}
	}
	// encoding/json does not say which field a custom UnmarshalJSON failed in; stop_grace
	// is the only Duration.
	var de *durationError
	if errors.As(err, &de) {
		return &driver.OptionError{Key: "stop_grace", Message: de.msg}
	}
	if k, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &driver.OptionError{Key: strings.Trim(k, `"`), Message: "unknown option"}
	}
	return &driver.OptionError{Key: "(section)", Message: err.Error()}
}

// durationError is a Duration that did not parse.
type durationError struct{ msg string }

func (e *durationError) Error() string { return e.msg }

var (
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	sizeRe   = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?[bkmgBKMG]?$`)
	userRe   = regexp.MustCompile(`^[0-9]+(:[0-9]+)?$`)
	ulimitRe = regexp.MustCompile(`^[a-z]+=-?[0-9]+(:-?[0-9]+)?$`)
	// A network name, never a mode with a colon ("container:ID" joins another
	// container's network namespace, "ns:PATH" any namespace).
	networkRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	// Image references: [registry[:port]/]path[:tag][@digest]. Strict enough that no
	// value can look like a flag to the engine.
	imageRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$`)
)

// Validate checks each option; the error names the first bad key. Empty values are
// fine (they take the defaults).
func (o *Options) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &driver.OptionError{Key: key, Message: fmt.Sprintf(format, args...)}
	}
	if o.Image != "" && (!imageRe.MatchString(o.Image) || len(o.Image) > 255) {
		return bad("image", "%q is not an image reference like loractl-trainer:latest or registry/name@sha256:...", o.Image)
	}
	if o.Binary != "" && strings.ContainsAny(o.Binary, "\x00\n") {
		return bad("binary", "%q is not a file name", o.Binary)
	}
	if o.Python != "" {
		if strings.ContainsAny(o.Python, "\x00\n") || strings.HasPrefix(o.Python, "-") {
			return bad("python", "%q is not an interpreter path", o.Python)
		}
		if strings.Contains(o.Python, "/") && !filepath.IsAbs(o.Python) {
			return bad("python", "%q must be a name on the image's PATH or an absolute path", o.Python)
		}
	}
	for _, kv := range []struct{ key, val string }{{"shm_size", o.ShmSize}, {"memory", o.Memory}} {
		if kv.val != "" && !sizeRe.MatchString(kv.val) {
			return bad(kv.key, "%q is not a size like 8g or 512m", kv.val)
		}
	}
	for i, name := range o.Env {
		if !envName.MatchString(name) {
			return bad(fmt.Sprintf("env[%d]", i), "%q is not an environment variable name (values never go in the config: the driver passes the variable by name)", name)
		}
	}
	for i, p := range o.ReadOnly {
		if err := checkMountPath(p); err != nil {
			return bad(fmt.Sprintf("read_only[%d]", i), "%v", err)
		}
	}
	if o.User != "" && !userRe.MatchString(o.User) {
		return bad("user", "%q is not numeric uid or uid:gid", o.User)
	}
	if o.Network != "" && !networkRe.MatchString(o.Network) {
		if strings.Contains(o.Network, ":") {
			return bad("network", "%q would share another container's or a namespace's network: use none, bridge, host or a named network", o.Network)
		}
		return bad("network", "%q is not a network name like none, bridge or host", o.Network)
	}
	switch o.GPURequest {
	case "", GPURequestAuto, GPURequestFlag, GPURequestCDI:
	default:
		return bad("gpu_request", "%q is not one of auto, flag, cdi", o.GPURequest)
	}
	for i, u := range o.Ulimits {
		if !ulimitRe.MatchString(u) {
			return bad(fmt.Sprintf("ulimits[%d]", i), "%q is not name=soft:hard like nofile=20000:20000", u)
		}
	}
	if o.InitPath != "" && !filepath.IsAbs(o.InitPath) {
		return bad("init_path", "%q must be an absolute path", o.InitPath)
	}
	if o.InitPath != "" && o.Init != nil && !*o.Init {
		return bad("init_path", "set, but init is false")
	}
	switch o.Pull {
	case "", "always", "missing", "never":
	default:
		return bad("pull", "%q is not one of always, missing, never", o.Pull)
	}
	if o.StopGrace < 0 {
		return bad("stop_grace", "must not be negative")
	}
	if time.Duration(o.StopGrace) > MaxStopGrace {
		return bad("stop_grace", "%s is more than %s: a checkpoint save that long means something is wrong", time.Duration(o.StopGrace), MaxStopGrace)
	}
	return nil
}

// applyDefaults fills the zero values Validate accepted. The engine binary's default
// depends on the engine, so Driver fills it.
func (o *Options) applyDefaults() {
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if o.Python == "" {
		o.Python = DefaultPython
	}
	if o.ShmSize == "" {
		o.ShmSize = DefaultShmSize
	}
	if o.Network == "" {
		o.Network = DefaultNetwork
	}
	if o.GPURequest == "" {
		o.GPURequest = GPURequestAuto
	}
	if o.Init == nil {
		t := true
		o.Init = &t
	}
	if o.StopGrace == 0 {
		o.StopGrace = Duration(DefaultStopGrace)
	}
}

// checkMountPath refuses paths the engines' --mount syntax cannot carry (it is
// comma-separated key=value pairs) and relative paths, which would mount relative
// to the engine's working directory rather than the user's.
func checkMountPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case !filepath.IsAbs(p):
		return fmt.Errorf("%q is not an absolute path", p)
	case strings.ContainsAny(p, ",\n\x00"):
		return fmt.Errorf("%q contains a comma or newline, which a container bind mount cannot carry", p)
	}
	return nil
}

// seconds rounds a duration up to whole seconds, the engines' stop timeout unit.
func seconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(s, 10)
}
