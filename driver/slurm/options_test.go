package slurm

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/loractl/loractl/driver"
)

func TestDecodeOptionsValid(t *testing.T) {
	raw := `{
		"partition": "gpu", "account": "proj-42", "qos": "high", "time": "1-12:00:00",
		"gpus": 2, "cpus_per_task": 8, "mem": "64G", "constraint": "a100&ib",
		"nodelist": "node[01-04],gpu7", "exclude": "node03",
		"extra_directives": ["--mail-type=END,FAIL", "mail-user=me@example.org", "--exclusive"],
		"setup": ["module load cuda/12.1", "source /opt/env.sh", "export HF_HOME=/scratch/hf"],
		"python": "/opt/venv/bin/python",
		"container": {"image": "/shared/img/trainer.sif", "bind": ["/scratch:/scratch:ro"]},
		"signal_grace": 300, "max_requeues": 0
	}`
	o, err := DecodeOptions(json.RawMessage(raw))
	if err != nil {
		t.Fatalf("DecodeOptions: %v", err)
	}
	if o.GPUs != "2" || o.SignalGrace != 300 || *o.MaxRequeues != 0 || o.Container.Runtime != "apptainer" {
		t.Errorf("decoded %+v (container %+v)", o, o.Container)
	}
}

func TestDecodeOptionsDefaults(t *testing.T) {
	for _, raw := range []string{"", "null", "{}"} {
		o, err := DecodeOptions(json.RawMessage(raw))
		if err != nil {
			t.Fatalf("DecodeOptions(%q): %v", raw, err)
		}
		if o.SignalGrace != DefaultSignalGrace || o.MaxRequeues == nil || *o.MaxRequeues != DefaultMaxRequeues {
			t.Errorf("DecodeOptions(%q) = %+v, want the defaults", raw, o)
		}
	}
}

func TestGPURequestDecodes(t *testing.T) {
	tests := []struct {
		raw  string
		want GPURequest
	}{
		{`{"gpus": 4}`, "4"},
		{`{"gpus": "4"}`, "4"},
		{`{"gpus": "a100:2"}`, "a100:2"},
	}
	for _, tc := range tests {
		o, err := DecodeOptions(json.RawMessage(tc.raw))
		if err != nil || o.GPUs != tc.want {
			t.Errorf("DecodeOptions(%s) = %v, %v; want gpus %q", tc.raw, o, err, tc.want)
		}
	}
}

// optionKeys returns the keys of the OptionErrors in err.
func optionKeys(t *testing.T, err error) []string {
	t.Helper()
	list := []error{err}
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		list = m.Unwrap()
	}
	var keys []string
	for _, e := range list {
		var oe *driver.OptionError
		if !errors.As(e, &oe) {
			t.Fatalf("error %v (%T) is not a *driver.OptionError", e, e)
		}
		keys = append(keys, oe.Key)
	}
	return keys
}

func TestDecodeOptionsRejects(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		key  string
		msg  string
	}{
		{"unknown key", `{"partitions": "gpu"}`, "partitions", "unknown option"},
		{"not an object", `["gpu"]`, "(section)", "expected an object"},
		{"wrong type", `{"cpus_per_task": "eight"}`, "cpus_per_task", "expected int"},
		{"gpus as list", `{"gpus": [1]}`, "gpus", "TYPE:COUNT"},
		{"partition with space", `{"partition": "gpu; rm -rf /"}`, "partition", "not a valid name"},
		{"account with newline", `{"account": "a\n#SBATCH --uid=0"}`, "account", "not a valid name"},
		{"qos with quote", `{"qos": "hi'gh"}`, "qos", "not a valid name"},
		{"time words", `{"time": "two hours"}`, "time", "Slurm time limit"},
		{"time substitution", `{"time": "$(reboot)"}`, "time", "Slurm time limit"},
		{"gpus zero", `{"gpus": 0}`, "gpus", "GPU count"},
		{"gpus backtick", "{\"gpus\": \"a100:`id`\"}", "gpus", "GPU count"},
		{"cpus negative", `{"cpus_per_task": -1}`, "cpus_per_task", "positive"},
		{"mem unit", `{"mem": "32 GB"}`, "mem", "memory size"},
		{"constraint newline", `{"constraint": "a100\nrm"}`, "constraint", "feature expression"},
		{"nodelist semicolon", `{"nodelist": "n1;n2"}`, "nodelist", "host list"},
		{"exclude dollar", `{"exclude": "$HOST"}`, "exclude", "host list"},
		{"directive not allowed", `{"extra_directives": ["--output=/etc/passwd"]}`, "extra_directives[0]", "not allowed"},
		{"directive uid", `{"extra_directives": ["--uid=0"]}`, "extra_directives[0]", "not allowed"},
		{"directive value space", `{"extra_directives": ["--comment=a b"]}`, "extra_directives[0]", "value may only hold"},
		{"directive newline", `{"extra_directives": ["--mail-type=END\necho pwned"]}`, "extra_directives[0]", "value may only hold"},
		{"directive garbage", `{"extra_directives": ["; reboot"]}`, "extra_directives[0]", "not an sbatch option"},
		{"setup substitution", `{"setup": ["module load $(id)"]}`, "setup[0]", "shell syntax"},
		{"setup semicolon", `{"setup": ["module load cuda; reboot"]}`, "setup[0]", "shell syntax"},
		{"setup backtick", "{\"setup\": [\"echo `id`\"]}", "setup[0]", "shell syntax"},
		{"setup newline", `{"setup": ["module load cuda\nreboot"]}`, "setup[0]", "shell syntax"},
		{"bind comma", `{"container": {"image": "/i.sif", "bind": ["/a,/b:/c"]}}`, "container.bind[0]", "commas"},
		{"setup nul", "{\"setup\": [\"echo a\\u0000b\"]}", "setup[0]", "shell syntax"},
		{"setup pipe", `{"setup": ["cat /etc/passwd | mail x"]}`, "setup[0]", "shell syntax"},
		{"setup redirect", `{"setup": ["echo x > /etc/motd"]}`, "setup[0]", "shell syntax"},
		{"setup quoted dollar", `{"setup": ["echo \"$HOME\""]}`, "setup[0]", "quoted text"},
		{"setup unterminated", `{"setup": ["echo 'abc"]}`, "setup[0]", "unterminated"},
		{"setup empty", `{"setup": ["   "]}`, "setup[0]", "empty"},
		{"python relative with space", `{"python": "my python"}`, "python", "absolute path"},
		{"python substitution", `{"python": "/usr/bin/python$(id)"}`, "python", "absolute path"},
		{"container without image", `{"container": {}}`, "container.image", "required"},
		{"container relative image", `{"container": {"image": "img.sif"}}`, "container.image", "absolute path"},
		{"container runtime", `{"container": {"image": "/i.sif", "runtime": "docker"}}`, "container.runtime", "apptainer or singularity"},
		{"container bind quote", `{"container": {"image": "/i.sif", "bind": ["/a'b"]}}`, "container.bind[0]", "SRC[:DST[:ro]]"},
		{"grace negative", `{"signal_grace": -5}`, "signal_grace", "positive"},
		{"grace over time limit", `{"time": "1", "signal_grace": 60}`, "signal_grace", "shorter than the time limit"},
		{"default grace over time limit", `{"time": "1:30"}`, "signal_grace", "120 s must be shorter"},
		{"requeues negative", `{"max_requeues": -1}`, "max_requeues", "0 or more"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeOptions(json.RawMessage(tc.raw))
			if err == nil {
				t.Fatalf("DecodeOptions(%s) accepted it", tc.raw)
			}
			keys := optionKeys(t, err)
			if len(keys) != 1 || keys[0] != tc.key {
				t.Errorf("error keys %q, want [%s]: %v", keys, tc.key, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	o := Options{Partition: "a b", Mem: "lots", Setup: []string{"ok line", "bad; line"}}
	err := o.Validate()
	got := strings.Join(optionKeys(t, err), ",")
	if got != "partition,mem,setup[1]" {
		t.Errorf("Validate keys = %s, want partition,mem,setup[1]", got)
	}
}

func TestSplitSetupLine(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{"module load cuda/12.1", []string{"module", "load", "cuda/12.1"}},
		{"  source   /opt/env.sh  ", []string{"source", "/opt/env.sh"}},
		{`export MSG="hello world"`, []string{"export", "MSG=hello world"}},
		{`echo 'a b' "c d"e`, []string{"echo", "a b", "c de"}},
		{"export HF_HOME=/scratch/hf", []string{"export", "HF_HOME=/scratch/hf"}},
	}
	for _, tc := range tests {
		got, err := splitSetupLine(tc.line)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("splitSetupLine(%q) = %q, %v; want %q", tc.line, got, err, tc.want)
		}
	}
}

func TestTimeSeconds(t *testing.T) {
	tests := map[string]int{
		"": 0, "UNLIMITED": 0, "30": 1800, "10:30": 630, "2:00:00": 7200,
		"1-0": 86400, "1-2": 93600, "1-2:30": 95400, "1-2:30:15": 95415,
		// Not Slurm times (Validate refuses them): no panic, no limit.
		"0-00:00::": 0, "1:2:3:4": 0,
	}
	for in, want := range tests {
		if got := timeSeconds(in); got != want {
			t.Errorf("timeSeconds(%q) = %d, want %d", in, got, want)
		}
	}
}
