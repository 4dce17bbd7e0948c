package sweep

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/run"
)

func TestLocalSlots(t *testing.T) {
	g := func(i int, freeGiB uint64) preflight.Candidate {
		return preflight.Candidate{Index: i, Name: "H100", Visible: string(rune('0' + i)), Free: freeGiB * gpu.GiB, Total: 80 * gpu.GiB}
	}
	cases := []struct {
		name        string
		cands       []preflight.Candidate
		need        uint64
		maxParallel int
		want        string // slot placement
		noFit       bool
	}{
		{"cpu only: max_parallel", nil, 0, 3, "cpu cpu cpu", false},
		{"one gpu, three fit, cap 2", []preflight.Candidate{g(0, 70)}, 20 * gpu.GiB, 2, "gpu 0 gpu 0", false},
		{"one gpu, two fit, cap 8", []preflight.Candidate{g(0, 50)}, 20 * gpu.GiB, 8, "gpu 0 gpu 0", false},
		{"two gpus: spread first", []preflight.Candidate{g(0, 70), g(1, 30)}, 20 * gpu.GiB, 3, "gpu 0 gpu 1 gpu 0", false},
		{"unknown need: one per gpu", []preflight.Candidate{g(0, 70), g(1, 70)}, 0, 4, "gpu 0 gpu 1", false},
		{"nothing fits", []preflight.Candidate{g(0, 10), g(1, 12)}, 20 * gpu.GiB, 2, "", true},
		{"max_parallel below 1 is 1", nil, 0, 0, "cpu", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			slots, err := LocalSlots(c.cands, c.need, c.maxParallel)
			if c.noFit {
				var nf *preflight.NoFitError
				if !errors.As(err, &nf) || nf.Best.Index != 1 {
					t.Fatalf("want a no-fit refusal naming GPU 1 (exit 3), got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range slots {
				got = append(got, s.String())
			}
			if strings.Join(got, " ") != c.want {
				t.Fatalf("slots %q, want %q", strings.Join(got, " "), c.want)
			}
			if s := slots[0]; s.GPU != nil && (s.Env()["CUDA_VISIBLE_DEVICES"] != s.GPU.Visible || s.GPUs()[0] != s.GPU.Index) {
				t.Errorf("slot env %v gpus %v", s.Env(), s.GPUs())
			}
		})
	}
}

func TestResultsCSV(t *testing.T) {
	h := newHarness(t, "name: csv\nbase: base.yaml\ngoal: maximize\nparameters:\n  lora.r: [1, 2]\n  lora.target_modules: [[q_proj, v_proj]]\n")
	_, sw := h.execute(t, newFake(quick(0)), 1, nil)
	tbl, err := Results(h.store, sw.State)
	must(t, err)
	// maximize: eval loss 1/r, so r=1 ranks first.
	if tbl.Best == nil || tbl.Best.Index != 0 {
		t.Fatalf("best %+v", tbl.Best)
	}
	var b bytes.Buffer
	must(t, tbl.WriteCSV(&b))
	recs, err := csv.NewReader(&b).ReadAll()
	must(t, err)
	head := strings.Join(recs[0], ",")
	if !strings.HasPrefix(head, "rank,point,run_id,state,lora.r,lora.target_modules,eval_loss,eval_loss_before,eval_loss_after") {
		t.Fatalf("header %s", head)
	}
	if got := recs[1]; got[0] != "1" || got[1] != "0" || got[4] != "1" || got[5] != `["q_proj","v_proj"]` || got[6] != "1" || got[3] != "completed" {
		t.Fatalf("row %v", got)
	}
	must(t, tbl.Save(sw.Dir))
}

// A metric the trainer wrote as null (NaN: a diverged run) has no value; read as 0
// it would rank that point best.
func TestNullMetricHasNoValue(t *testing.T) {
	var r run.Result
	must(t, json.Unmarshal([]byte(`{"step":3,"metrics":{"train_loss":null,"train_runtime":4.5}}`), &r))
	if v := metricOf(&r, "train_loss"); v != nil {
		t.Fatalf("null metric read as %v", *v)
	}
	if v := metricOf(&r, "train_runtime"); v == nil || *v != 4.5 {
		t.Fatalf("train_runtime = %v", v)
	}
}

// eval.<name> ranks by the adapter's task metric (higher is better unless the sweep
// says otherwise); eval.eval_loss is the loss after training (lower is better).
func TestEvalMetrics(t *testing.T) {
	after := 1.5
	r := &run.Result{EvalLossAfter: &after, EvalMetrics: map[string]float64{"exact": 0.75, "python:score": 0.5}}
	cases := []struct {
		metric string
		want   *float64
		goal   string
	}{
		{"eval.exact", ptr(0.75), Maximize},
		{"eval.python:score", ptr(0.5), Maximize},
		{"eval.chrf", nil, Maximize},
		{"eval.eval_loss", ptr(1.5), Minimize},
		{"eval_loss", ptr(1.5), Minimize},
		{"train_loss", nil, Minimize},
	}
	for _, tc := range cases {
		got := metricOf(r, tc.metric)
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("metricOf(%s) = %v, want %v", tc.metric, got, tc.want)
		}
		if g := DefaultGoal(tc.metric); g != tc.goal {
			t.Errorf("DefaultGoal(%s) = %s, want %s", tc.metric, g, tc.goal)
		}
	}
}

func ptr(f float64) *float64 { return &f }
