package python

import (
	"slices"
	"testing"
)

func TestWithImports(t *testing.T) {
	tests := []struct {
		entry string
		want  []string // must be present
		not   []string // must be absent
	}{
		// export_model imports train_lora_support, which imports task_metrics lazily
		{"export_model.py", []string{"export_model.py", "train_lora_support.py", "task_metrics.py", "generation.py"}, []string{"train_lora.py"}},
		{"chat.py", []string{"chat.py", "generation.py", "train_lora_support.py", "task_metrics.py"}, nil},
		{"token_stats.py", []string{"token_stats.py", "train_lora_support.py", "task_metrics.py"}, nil},
		{"eval_task.py", []string{"eval_task.py", "task_eval.py", "task_metrics.py", "train_lora.py", "train_lora_support.py"}, nil},
		{"serve_openai.py", []string{"serve_openai.py", "generation.py"}, nil},
		{"no_such_script.py", nil, []string{"no_such_script.py"}},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			got := WithImports(tt.entry)
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("WithImports(%s) = %v, lacks %s", tt.entry, got, w)
				}
			}
			for _, n := range tt.not {
				if slices.Contains(got, n) {
					t.Errorf("WithImports(%s) = %v, has %s", tt.entry, got, n)
				}
			}
		})
	}
}

// Every module a trainer file imports from the embedded set is itself a trainer file:
// the run dir holds TrainerFiles only.
func TestTrainerFilesClosed(t *testing.T) {
	for _, name := range WithImports(TrainerFiles...) {
		if !slices.Contains(TrainerFiles, name) {
			t.Errorf("a trainer file imports %s, which TrainerFiles lacks", name)
		}
	}
}
