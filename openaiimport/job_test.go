package openaiimport

import (
	"errors"
	"strings"
	"testing"
)

func TestParseJob(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; "" means valid
		check   func(t *testing.T, j *Job)
	}{
		{name: "supervised method, explicit",
			in: `{"object":"fine_tuning.job","id":"ftjob-1","model":"gpt-4o-mini-2024-07-18","status":"succeeded","training_file":"file-t","validation_file":"file-v","seed":7,"suffix":"bot",
			      "method":{"type":"supervised","supervised":{"hyperparameters":{"n_epochs":4,"batch_size":8,"learning_rate_multiplier":0.5}}},
			      "hyperparameters":{"n_epochs":1,"batch_size":1,"learning_rate_multiplier":9}}`,
			check: func(t *testing.T, j *Job) {
				h := j.Hyper
				if *h.NEpochs != 4 || *h.BatchSize != 8 || *h.LearningRateMultiplier != 0.5 || j.HyperSource != "method.supervised.hyperparameters" {
					t.Errorf("method hyperparameters not preferred: %+v from %s", h, j.HyperSource)
				}
				if *j.Seed != 7 || j.Suffix != "bot" || j.ValidationFile != "file-v" || j.Model != "gpt-4o-mini-2024-07-18" {
					t.Errorf("job %+v", j)
				}
			}},
		{name: "older job: top-level hyperparameters, auto",
			in: `{"object":"fine_tuning.job","model":"gpt-3.5-turbo-0125","training_file":"file-t","validation_file":null,"suffix":null,
			      "hyperparameters":{"n_epochs":"auto","batch_size":"auto","learning_rate_multiplier":"auto"}}`,
			check: func(t *testing.T, j *Job) {
				if j.Hyper.NEpochs != nil || j.Hyper.BatchSize != nil || j.Hyper.LearningRateMultiplier != nil || j.HyperSource != "hyperparameters" {
					t.Errorf("auto values: %+v", j.Hyper)
				}
				if j.ValidationFile != "" || j.Seed != nil {
					t.Errorf("nulls: %+v", j)
				}
			}},
		{name: "hand-written job without object", in: `{"model":"gpt-4.1-nano","training_file":"file-t","hyperparameters":{"n_epochs":2}}`},
		{name: "a file object", in: `{"object":"file","id":"file-abc","purpose":"fine-tune"}`, wantErr: `object: "file" is not a fine-tuning job`},
		{name: "a list of jobs", in: `{"object":"list","data":[]}`, wantErr: "a list of fine-tuning jobs"},
		{name: "something else", in: `{"name":"x"}`, wantErr: "not a fine-tuning job"},
		{name: "not JSON", in: `model: gpt-4o`, wantErr: "not a fine-tuning job"},
		{name: "DPO job", in: `{"object":"fine_tuning.job","model":"m","training_file":"f","method":{"type":"dpo","dpo":{"hyperparameters":{"beta":0.1}}}}`, wantErr: "cannot train DPO yet"},
		{name: "RFT job", in: `{"object":"fine_tuning.job","model":"m","training_file":"f","method":{"type":"reinforcement"}}`, wantErr: "reinforcement"},
		{name: "n_epochs out of range", in: `{"object":"fine_tuning.job","model":"m","training_file":"f","hyperparameters":{"n_epochs":0}}`, wantErr: "hyperparameters.n_epochs"},
		{name: "batch_size not a number", in: `{"object":"fine_tuning.job","model":"m","training_file":"f","hyperparameters":{"batch_size":"big"}}`, wantErr: "hyperparameters.batch_size"},
		{name: "negative multiplier", in: `{"object":"fine_tuning.job","model":"m","training_file":"f","hyperparameters":{"learning_rate_multiplier":-1}}`, wantErr: "learning_rate_multiplier"},
		{name: "seed not an integer", in: `{"object":"fine_tuning.job","model":"m","training_file":"f","seed":1.5}`, wantErr: "seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := parseJob("job.json", []byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "job.json") {
					t.Fatalf("error %v, want an input error naming job.json and %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, j)
			}
		})
	}
}

func TestAutoRules(t *testing.T) {
	for _, tt := range []struct{ n, epochs int }{{3, 25}, {5, 20}, {10, 10}, {30, 3}, {34, 3}, {50, 3}, {8333, 3}, {10000, 2}, {30000, 1}} {
		if got := AutoEpochs(tt.n); got != tt.epochs {
			t.Errorf("AutoEpochs(%d) = %d, want %d", tt.n, got, tt.epochs)
		}
	}
	for _, tt := range []struct{ n, batch int }{{10, 4}, {2000, 4}, {5000, 10}, {200000, 256}} {
		if got := AutoBatchSize(tt.n); got != tt.batch {
			t.Errorf("AutoBatchSize(%d) = %d, want %d", tt.n, got, tt.batch)
		}
	}
	f := func(v float64) *float64 { return &v }
	for _, tt := range []struct {
		m  *float64
		lr float64
	}{{nil, 2e-4}, {f(2), 2e-4}, {f(1), 1e-4}, {f(0.05), 1e-5}, {f(50), 1e-3}} {
		if got := MappedLearningRate(tt.m); got != tt.lr {
			t.Errorf("MappedLearningRate(%v) = %g, want %g", tt.m, got, tt.lr)
		}
	}
	for _, tt := range []struct{ eff, micro, accum int }{{1, 1, 1}, {4, 4, 1}, {6, 3, 2}, {7, 1, 7}, {8, 4, 2}, {256, 4, 64}} {
		if m, a := SplitBatch(tt.eff); m != tt.micro || a != tt.accum {
			t.Errorf("SplitBatch(%d) = %d×%d, want %d×%d", tt.eff, m, a, tt.micro, tt.accum)
		}
	}
	for in, want := range map[string]string{"support bot": "support-bot", "": "openai-import", "--x": "x", "ftjob-AbC_1.2": "ftjob-AbC_1.2",
		strings.Repeat("a", 80): strings.Repeat("a", 64), "é": "openai-import"} {
		if got := RunName(in); got != want {
			t.Errorf("RunName(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"gpt-4o-mini-2024-07-18": "medium (7-14B)", "ft:gpt-4.1-nano-2025-04-14:org:x:id": "small (1-4B)",
		"gpt-4o-2024-08-06": "large (14-72B)", "gpt-3.5-turbo-0125": "small-medium (3-8B)", "babbage-002": "tiny (0.5-2B)"} {
		if c, ok := ClassFor(in); !ok || c.Label != want {
			t.Errorf("ClassFor(%q) = %v %v, want %q", in, c, ok, want)
		}
	}
	if _, ok := ClassFor("some-new-model"); ok {
		t.Error("an unknown base is reported as known")
	}
	for in, want := range map[int]int{0: 512, 35: 512, 500: 768, 4000: 4608, 100000: MaxLengthCap} {
		if got := MaxLengthFor(in); got != want {
			t.Errorf("MaxLengthFor(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestMapJob(t *testing.T) {
	n, b, m, seed := 3, 16, 1.5, int64(99)
	s := mapJob(&Job{Suffix: "my bot", Seed: &seed, HyperSource: "method.supervised.hyperparameters",
		Hyper: Hyperparameters{NEpochs: &n, BatchSize: &b, LearningRateMultiplier: &m}}, 1000)
	if s.Epochs != 3 || s.Effective != 16 || s.BatchSize != 4 || s.GradAccum != 4 || s.LearningRate != 1.5e-4 || *s.Seed != 99 || s.Name != "my-bot" {
		t.Errorf("explicit: %+v", s)
	}
	if !strings.Contains(s.EpochsFrom, "method.supervised.hyperparameters.n_epochs") || !strings.Contains(s.LRFrom, "learning_rate_multiplier = 1.5") {
		t.Errorf("sources: %q %q", s.EpochsFrom, s.LRFrom)
	}
	a := mapJob(nil, 20)
	if a.Epochs != 5 || a.Effective != 4 || a.LearningRate != DefaultLearningRate || a.Seed != nil || a.Name != "openai-import" {
		t.Errorf("auto: %+v", a)
	}
}

func TestPropose(t *testing.T) {
	shape := RunShape{MicroBatch: 4, GradAccum: 2, MaxLength: 1024, Eval: true}
	class, _ := ClassFor("gpt-4o-mini")
	props, err := Propose(class, shape, 24<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(props) == 0 || !props[0].InClass || props[0].Verdict != "fits" {
		t.Fatalf("24 GiB: %+v", props)
	}
	for _, p := range props {
		if p.PeakBytes > 24<<30 {
			t.Errorf("%s proposed at %d bytes, over 24 GiB", p.Model, p.PeakBytes)
		}
	}
	// A bigger GPU never gets a smaller first proposal in the class.
	big, err := Propose(class, shape, 140<<30)
	if err != nil {
		t.Fatal(err)
	}
	if big[0].Params < props[0].Params || big[0].Quantization != "none" {
		t.Errorf("140 GiB proposes %+v, 24 GiB %+v", big[0], props[0])
	}
	// Nothing fits in 1 GiB.
	if tiny, err := Propose(class, shape, 1<<30); err != nil || len(tiny) != 0 {
		t.Errorf("1 GiB: %+v %v", tiny, err)
	}
	// No GPU: the class first, smallest first, no verdicts.
	none, err := Propose(class, shape, 0)
	if err != nil || len(none) != len(Candidates) || !none[0].InClass || none[0].Verdict != "" {
		t.Fatalf("no GPU: %+v %v", none, err)
	}
	for i := 1; i < len(none) && none[i].InClass; i++ {
		if none[i].Params < none[i-1].Params {
			t.Errorf("no GPU: %s before %s", none[i-1].Model, none[i].Model)
		}
	}
}
