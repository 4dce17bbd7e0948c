package slurm

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// sbatchLine is what an #SBATCH line may look like: an option name and a value with no
// white space, quotes or shell syntax (sbatch reads these lines itself; a value that
// could end the line or start another option must never get here).
var sbatchLine = regexp.MustCompile(`^#SBATCH --[a-z][a-z-]*(=[^\s'"\\$` + "`" + `;|&<>()]*)?$`)

// FuzzRender renders the batch script from arbitrary driver.slurm options. Options
// that pass validation must render deterministically, with every #SBATCH line of the
// safe form and no value breaking out of its line; nothing may panic.
//
//	go test ./driver/slurm -run '^$' -fuzz FuzzRender -fuzztime 30s
func FuzzRender(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"partition": "gpu", "time": "1-02:00:00", "gpus": "a100:2", "mem": "64G", "setup": ["module load cuda/12.1"]}`,
		`{"extra_directives": ["--mail-type=END"], "container": {"image": "/sif/t.sif", "bind": ["/data:/data:ro"]}}`,
		`{"setup": ["echo '$(touch PWNED)'"], "account": "a;b"}`,
		`{"nodelist": "node[01-04],gpu7", "max_requeues": 0, "signal_grace": 120}`,
	} {
		f.Add([]byte(s))
	}
	for _, h := range hostile {
		b, _ := json.Marshal(map[string]any{"partition": h, "setup": []string{"echo " + h}, "python": "/opt/" + h})
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, opts []byte) {
		tk := baseTask("/runs/r1", string(opts))
		d := New()
		a, err := d.Render(tk)
		if err != nil {
			return
		}
		b, _ := d.Render(tk)
		if !bytes.Equal(a, b) {
			t.Fatal("rendering is not deterministic")
		}
		if bytes.ContainsAny(a, "\x00\r") {
			t.Fatalf("NUL or CR in the script:\n%s", a)
		}
		for _, line := range strings.Split(string(a), "\n") {
			if strings.HasPrefix(line, "#SBATCH") && !sbatchLine.MatchString(line) {
				t.Fatalf("unsafe #SBATCH line %q from options %s", line, opts)
			}
		}
	})
}
