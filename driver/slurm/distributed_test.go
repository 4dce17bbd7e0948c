package slurm

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/loractl/loractl/driver"
)

// The GPUs per node come from driver.slurm.gpus or distributed.nproc_per_node; a job
// that names neither, or two that disagree, is refused before anything is submitted.
func TestDistributedGPUsPerNode(t *testing.T) {
	cases := []struct {
		name, opts string
		nproc      int
		want       string // a directive, or the error
	}{
		{"from gpus", `{"gpus": 4}`, 0, "--gpus-per-node=4"},
		{"typed gpus kept", `{"gpus": "h100:8"}`, 0, "--gpus-per-node=h100:8"},
		{"from nproc", `{}`, 2, "--gpus-per-node=2"},
		{"both agree", `{"gpus": 2}`, 2, "--gpus-per-node=2"},
		{"neither", `{}`, 0, "driver.slurm.gpus is unset"},
		{"disagree", `{"gpus": 4}`, 2, "nproc_per_node is 2 but driver.slurm.gpus asks for 4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			task := &driver.Task{RunID: "r", RunDir: "/shared/runs/r", Command: []string{"python", "/t/train_lora.py"},
				Options: json.RawMessage(tc.opts), Distributed: &driver.Distributed{Nodes: 2, NprocPerNode: tc.nproc, Port: 29500}}
			got, err := New().Render(task)
			text := string(got)
			if err != nil {
				text = err.Error()
			}
			if !strings.Contains(text, tc.want) {
				t.Fatalf("want %q in:\n%s", tc.want, text)
			}
			if err == nil && (strings.Contains(text, "--gres") || !strings.Contains(text, "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n")) {
				t.Errorf("directives:\n%s", text)
			}
		})
	}
}
