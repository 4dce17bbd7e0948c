package slurm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/loractl/loractl/driver"
)

// Defaults applied by Options.withDefaults.
const (
	// DefaultSignalGrace is how many seconds before the time limit Slurm sends USR1: long
	// enough for the trainer to finish a step and write a LoRA checkpoint.
	DefaultSignalGrace = 120
	// DefaultMaxRequeues bounds how often a job requeues itself after USR1, so a job that
	// never makes progress cannot loop forever.
	DefaultMaxRequeues = 3
)

// Options is the `driver.slurm` section of a run config. Every field that reaches the
// batch script is checked by Validate (or single-quoted when it reaches the shell body).
type Options struct {
	// Partition, Account and QOS become --partition, --account and --qos.
	Partition string `json:"partition,omitempty"`
	Account   string `json:"account,omitempty"`
	QOS       string `json:"qos,omitempty"`
	// Time is the job's time limit in Slurm's format (MM, MM:SS, HH:MM:SS, D-HH,
	// D-HH:MM, D-HH:MM:SS).
	Time string `json:"time,omitempty"`
	// GPUs is the GPU request as gres: a count (2) or TYPE:COUNT (a100:2).
	GPUs GPURequest `json:"gpus,omitempty"`
	// CPUsPerTask becomes --cpus-per-task.
	CPUsPerTask int `json:"cpus_per_task,omitempty"`
	// Mem is the memory per node, e.g. 32G or 64000M.
	Mem string `json:"mem,omitempty"`
	// Constraint is a node feature expression (--constraint).
	Constraint string `json:"constraint,omitempty"`
	// Nodelist and Exclude are Slurm host lists (node[01-04],gpu7).
	Nodelist string `json:"nodelist,omitempty"`
	Exclude  string `json:"exclude,omitempty"`
	// ExtraDirectives are further `#SBATCH` options ("--mail-type=END"), limited to
	// the names in AllowedDirectives.
	ExtraDirectives []string `json:"extra_directives,omitempty"`
	// Setup lines run before the trainer (module load cuda/12.1, source /opt/env.sh).
	// Each line is one simple command: words, optionally quoted; no shell syntax.
	Setup []string `json:"setup,omitempty"`
	// Python is the interpreter on the compute nodes; empty keeps the controller's.
	Python string `json:"python,omitempty"`
	// Container runs the trainer inside an Apptainer/Singularity image.
	Container *Container `json:"container,omitempty"`
	// SignalGrace is the seconds before the time limit at which Slurm sends USR1 to
	// the batch script (sbatch --signal=B:USR1@N). 0 means DefaultSignalGrace.
	SignalGrace int `json:"signal_grace,omitempty"`
	// MaxRequeues is how many times the job requeues itself after a USR1 checkpoint,
	// counted by Slurm's restart count (which includes requeues after preemption);
	// nil means DefaultMaxRequeues, 0 disables the requeue.
	MaxRequeues *int `json:"max_requeues,omitempty"`
}

// Container is the optional image wrapper: `apptainer exec --nv IMAGE python ...`.
type Container struct {
	// Image is the .sif file (an absolute path on the shared filesystem).
	Image string `json:"image"`
	// Runtime is "apptainer" (default) or "singularity".
	Runtime string `json:"runtime,omitempty"`
	// Bind lists extra host paths to bind (SRC or SRC:DST or SRC:DST:ro); the run
	// directory and the task's read-only inputs are always bound.
	Bind []string `json:"bind,omitempty"`
}

// GPURequest is a GPU count or TYPE:COUNT; it decodes from a JSON number or string.
type GPURequest string

// UnmarshalJSON accepts `2` as well as `"a100:2"`.
func (g *GPURequest) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*g = GPURequest(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &gpuError{fmt.Sprintf("want a count or TYPE:COUNT, got %s", b)}
	}
	*g = GPURequest(s)
	return nil
}

// AllowedDirectives are the sbatch options extra_directives may set. The options loractl
// sets itself (output, chdir, requeue, signal, export, array, job-name, open-mode) and
// those that change who or what runs (uid, wrap, container) are deliberately absent.
var AllowedDirectives = []string{
	"begin", "clusters", "comment", "cores-per-socket", "cpus-per-gpu", "deadline",
	"dependency", "distribution", "exclusive", "gpu-bind", "gpu-freq", "gpus",
	"gpus-per-node", "gpus-per-socket", "gpus-per-task", "gres", "gres-flags", "hint",
	"licenses", "mail-type", "mail-user", "mem-bind", "mem-per-cpu", "mem-per-gpu",
	"mincpus", "nice", "nodes", "ntasks", "ntasks-per-core", "ntasks-per-gpu",
	"ntasks-per-node", "ntasks-per-socket", "overcommit", "oversubscribe", "power",
	"priority", "profile", "reservation", "sockets-per-node", "spread-job", "switches",
	"thread-spec", "threads-per-core", "time-min", "tmp", "wckey",
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_.+-]+$`)
	// Slurm time limits: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or UNLIMITED.
	timeRE = regexp.MustCompile(`^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}|\d+-\d{1,2}:\d{1,2}|\d+-\d{1,2}:\d{1,2}:\d{1,2}|UNLIMITED|INFINITE)$`)
	gpuRE  = regexp.MustCompile(`^([A-Za-z0-9_.-]+:)?[1-9]\d*$`)
	memRE  = regexp.MustCompile(`^[1-9]\d*[KMGT]?$`)
	// Feature expressions use & | [ ] * and counts; nothing a shell or sbatch's
	// directive parser would treat specially (no space, quote, # or newline).
	constraintRE = regexp.MustCompile(`^[A-Za-z0-9_.,:&|\[\]*!()-]+$`)
	hostlistRE   = regexp.MustCompile(`^[A-Za-z0-9_.,\[\]-]+$`)
	// Directive values: mail addresses, times, lists, counts; never whitespace,
	// quotes, $, backticks, ; or newlines.
	directiveRE      = regexp.MustCompile(`^--?([a-z][a-z-]*)(=([A-Za-z0-9_.,:=+@/%*-]*))?$`)
	absPathRE        = regexp.MustCompile(`^/[A-Za-z0-9_./+@:,=-]*$`)
	setupForbiddenRE = regexp.MustCompile("[$`;|&<>(){}\\\\\n\r*?~#!\x00]")
	// Inside quotes only what a reader would expect to expand is refused: the word is
	// single-quoted when rendered, so the rest is literal anyway.
	setupQuotedForbiddenRE = regexp.MustCompile("[$`\\\\\n\r\x00]")
)

// Validate checks every option and returns all problems joined; each is a
// *driver.OptionError naming its key. It does not apply defaults.
func (o *Options) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, &driver.OptionError{Key: key, Message: fmt.Sprintf(format, a...)})
	}
	for _, f := range []struct{ key, val string }{
		{"partition", o.Partition}, {"account", o.Account}, {"qos", o.QOS},
	} {
		if f.val != "" && !nameRE.MatchString(f.val) {
			bad(f.key, "%q is not a valid name (letters, digits, _ . + - only)", f.val)
		}
	}
	if o.Time != "" && !timeRE.MatchString(o.Time) {
		bad("time", "%q is not a Slurm time limit (MM, HH:MM:SS, D-HH:MM:SS, ...)", o.Time)
	}
	if o.GPUs != "" && !gpuRE.MatchString(string(o.GPUs)) {
		bad("gpus", "%q is not a GPU count or TYPE:COUNT (e.g. 2 or a100:2)", string(o.GPUs))
	}
	if o.CPUsPerTask < 0 {
		bad("cpus_per_task", "must be positive, got %d", o.CPUsPerTask)
	}
	if o.Mem != "" && !memRE.MatchString(o.Mem) {
		bad("mem", "%q is not a memory size (e.g. 32G, 64000M)", o.Mem)
	}
	if o.Constraint != "" && !constraintRE.MatchString(o.Constraint) {
		bad("constraint", "%q is not a feature expression (letters, digits, & | [ ] * ! and commas)", o.Constraint)
	}
	for _, f := range []struct{ key, val string }{{"nodelist", o.Nodelist}, {"exclude", o.Exclude}} {
		if f.val != "" && !hostlistRE.MatchString(f.val) {
			bad(f.key, "%q is not a Slurm host list (e.g. node[01-04],gpu7)", f.val)
		}
	}
	for i, d := range o.ExtraDirectives {
		if err := checkDirective(d); err != nil {
			bad(fmt.Sprintf("extra_directives[%d]", i), "%v", err)
		}
	}
	for i, line := range o.Setup {
		if _, err := splitSetupLine(line); err != nil {
			bad(fmt.Sprintf("setup[%d]", i), "%v", err)
		}
	}
	if o.Python != "" && !absPathRE.MatchString(o.Python) && !nameRE.MatchString(o.Python) {
		bad("python", "%q must be an absolute path or a command name without spaces or shell characters", o.Python)
	}
	if c := o.Container; c != nil {
		if c.Image == "" {
			bad("container.image", "is required (the .sif image on the shared filesystem)")
		} else if !absPathRE.MatchString(c.Image) {
			bad("container.image", "%q must be an absolute path without spaces or shell characters", c.Image)
		}
		if c.Runtime != "" && c.Runtime != "apptainer" && c.Runtime != "singularity" {
			bad("container.runtime", "%q: want apptainer or singularity", c.Runtime)
		}
		for i, b := range c.Bind {
			// Apptainer splits --bind on commas: "/a,/b:/c" would be two binds.
			if !absPathRE.MatchString(b) || strings.Contains(b, ",") {
				bad(fmt.Sprintf("container.bind[%d]", i), "%q must be SRC[:DST[:ro]] with absolute paths and no spaces, commas or shell characters", b)
			}
		}
	}
	if o.SignalGrace < 0 {
		bad("signal_grace", "must be positive seconds, got %d", o.SignalGrace)
	} else if lim := timeSeconds(o.Time); timeRE.MatchString(o.Time) && lim > 0 {
		grace := o.SignalGrace
		if grace == 0 {
			grace = DefaultSignalGrace
		}
		// Otherwise the warning would come at once, before any work to save.
		if grace >= lim {
			bad("signal_grace", "%d s must be shorter than the time limit %s (%d s)", grace, o.Time, lim)
		}
	}
	if o.MaxRequeues != nil && *o.MaxRequeues < 0 {
		bad("max_requeues", "must be 0 or more, got %d", *o.MaxRequeues)
	}
	return errors.Join(errs...)
}

// checkDirective accepts "--name=value", "--name" or "name=value" for an allowed name
// and a value free of anything sbatch or a shell would interpret.
func checkDirective(d string) error {
	s := d
	if !strings.HasPrefix(s, "-") {
		s = "--" + s
	}
	m := directiveRE.FindStringSubmatch(s)
	if m == nil {
		name := strings.TrimLeft(strings.SplitN(d, "=", 2)[0], "-")
		if slices.Contains(AllowedDirectives, name) {
			return fmt.Errorf("%q: the value may only hold letters, digits and _ . , : = + @ / %% * -", d)
		}
		return fmt.Errorf("%q is not an sbatch option of the form --name=value", d)
	}
	if !slices.Contains(AllowedDirectives, m[1]) {
		return fmt.Errorf("option %q is not allowed (loractl sets output, chdir, requeue, signal, export and array itself); allowed: %s",
			m[1], strings.Join(AllowedDirectives, ", "))
	}
	return nil
}

// normalizeDirective turns an accepted directive into its "--name=value" form.
func normalizeDirective(d string) string {
	if strings.HasPrefix(d, "--") {
		return d
	}
	return "--" + strings.TrimLeft(d, "-")
}

// splitSetupLine splits one setup line into words. Words may be 'single' or "double"
// quoted to hold spaces; anything a shell would expand or treat as syntax is refused,
// because each word is later single-quoted and run as one simple command.
func splitSetupLine(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'' || c == '"':
			end := strings.IndexByte(line[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("%q: unterminated %c quote", line, c)
			}
			q := line[i+1 : i+1+end]
			if setupQuotedForbiddenRE.MatchString(q) {
				return nil, fmt.Errorf("%q: quoted text may not hold $, backticks, backslashes or newlines (nothing is expanded)", line)
			}
			cur.WriteString(q)
			inWord = true
			i += end + 1
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case setupForbiddenRE.MatchString(string(c)):
			return nil, fmt.Errorf("%q: shell syntax (%q) is not allowed in a setup line; each line is one command with arguments — put anything more in a script and `source` it", line, string(c))
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("empty setup line")
	}
	return words, nil
}

// withDefaults returns a copy with defaults applied.
func (o Options) withDefaults() Options {
	if o.SignalGrace == 0 {
		o.SignalGrace = DefaultSignalGrace
	}
	if o.MaxRequeues == nil {
		n := DefaultMaxRequeues
		o.MaxRequeues = &n
	}
	if o.Container != nil && o.Container.Runtime == "" {
		c := *o.Container
		c.Runtime = "apptainer"
		o.Container = &c
	}
	return o
}

// DecodeOptions reads a driver.slurm section (Task.Options), refusing unknown keys,
// validates it and applies the defaults. Errors are *driver.OptionError naming the key
// (several joined with errors.Join).
func DecodeOptions(raw json.RawMessage) (*Options, error) {
	var o Options
	if t := bytes.TrimSpace(raw); len(t) > 0 && string(t) != "null" {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return nil, decodeError(err)
		}
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	return &o, nil
}

// decodeError turns encoding/json's errors into OptionErrors naming the key.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var ge *gpuError
	switch {
	case errors.As(err, &te) && te.Field == "":
		return &driver.OptionError{Key: "(section)", Message: fmt.Sprintf("expected an object of options, got %s", te.Value)}
	case errors.As(err, &te):
		return &driver.OptionError{Key: te.Field, Message: fmt.Sprintf("expected %s, got %s", te.Type, te.Value)}
	case errors.As(err, &ge):
		return &driver.OptionError{Key: "gpus", Message: ge.msg}
	}
	if k, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &driver.OptionError{Key: strings.Trim(k, `"`), Message: "unknown option"}
	}
	return &driver.OptionError{Key: "(section)", Message: err.Error()}
}

// gpuError is a gpus value that is neither a number nor a string.
type gpuError struct{ msg string }

func (e *gpuError) Error() string { return e.msg }
