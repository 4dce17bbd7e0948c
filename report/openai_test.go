package report

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadOpenAIResults(t *testing.T) {
	res, err := ReadOpenAIResults("testdata/openai_results.csv")
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 80 || len(res.TrainLoss) != 80 || len(res.ValidLoss) != 8 || len(res.FullValidLoss) != 1 || len(res.ValidAccuracy) != 8 {
		t.Fatalf("steps %d, train %d, valid %d, full %d", res.Steps, len(res.TrainLoss), len(res.ValidLoss), len(res.FullValidLoss))
	}
	if p := res.FullValidLoss[0]; p.Step != 80 || p.Value != 1.98213 {
		t.Errorf("full valid loss = %+v", p)
	}
}

// The Files API hands the results file out base64-encoded.
func TestReadOpenAIResultsBase64(t *testing.T) {
	raw, err := os.ReadFile("testdata/openai_results.csv")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "step_metrics.csv")
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := ReadOpenAIResults(p)
	if err != nil || res.Steps != 80 || len(res.TrainLoss) != 80 {
		t.Fatalf("%v %+v", err, res)
	}
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString([]byte("step,loss\n1,x\n"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOpenAIResults(p); err == nil || !strings.Contains(err.Error(), "(base64-decoded):1: not OpenAI's") {
		t.Errorf("err = %v", err)
	}
	// base64 of "hello": not a CSV
	if err := os.WriteFile(p, []byte("aGVsbG8="), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOpenAIResults(p); err == nil || !strings.Contains(err.Error(), "step_metrics.csv:1: not OpenAI's") {
		t.Errorf("err = %v", err)
	}
}

func TestParseOpenAIResultsErrors(t *testing.T) {
	const header = "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n"
	tests := []struct {
		name, csv, want string
	}{
		{"empty", "", "results.csv:1: empty file"},
		{"wrong header", "step,loss,accuracy\n1,2,3\n", "results.csv:1: not OpenAI's fine-tuning results CSV: the header lacks train_loss, train_accuracy, valid_loss, valid_mean_token_accuracy"},
		{"not a number", header + "1,2.5,0.3,,\n2,abc,0.4,,\n", `results.csv:3:3: column 2 (train_loss): "abc" is not a number`},
		{"bad accuracy", header + "1,2.5,0.3,1.1,high\n", `results.csv:2:15: column 5 (valid_mean_token_accuracy): "high" is not a number`},
		{"bad step", header + "1.5,2.5,0.3,,\n", `results.csv:2:1: column 1 (step): "1.5" is not a step number`},
		{"missing step", header + ",2.5,0.3,,\n", `column 1 (step): "" is not a step number`},
		{"field count", header + "1,2.5,0.3\n", "results.csv:2:1: wrong number of fields"},
		{"header only", header, "results.csv:2: no rows after the header"},
		// Rows without a single number compare nothing: every figure would be "–".
		{"no numbers", header + "1,,,,\n2,NaN,nan,,\n", "results.csv: 2 rows but no train_loss, train_accuracy, valid_loss or valid_mean_token_accuracy value"},
		{"step 0 only", header + "0,,,,\n", "results.csv: 1 row but no train_loss"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOpenAIResults("results.csv", strings.NewReader(tt.csv))
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want an InputError containing %q", err, tt.want)
			}
		})
	}
}

func TestParseOpenAIResultsTolerates(t *testing.T) {
	csv := "\ufeffvalid_loss,step,extra,train_loss,train_accuracy,valid_mean_token_accuracy\r\n" +
		",1,x,2.0,0.5,\r\n3.0,2,y,NaN,0.6,0.55\r\n"
	res, err := parseOpenAIResults("r.csv", strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.TrainLoss) != 1 || len(res.ValidLoss) != 1 || res.ValidLoss[0] != (Point{2, 3}) || res.Steps != 2 {
		t.Errorf("%+v", res)
	}
}

func TestCompareOpenAI(t *testing.T) {
	res, err := ReadOpenAIResults("testdata/openai_results.csv")
	if err != nil {
		t.Fatal(err)
	}
	c, err := CompareOpenAI(fixture, res)
	if err != nil {
		t.Fatal(err)
	}
	// The fixture run: last logged train loss at step 75, eval after at 76 (1.8594);
	// the before-training evaluation is the base model's and is left out.
	if f := c.Run.ValidLoss; f.Final == nil || f.Final.Step != 76 || f.Best.Step != 76 {
		t.Errorf("run valid loss = %+v", f)
	}
	if f := c.Run.TrainAccuracy; f.Final == nil || f.Final.Step != 75 {
		t.Errorf("run train accuracy = %+v", f)
	}
	if f := c.OpenAI.TrainLoss; f.Best == nil || f.Best.Step != 73 || f.Final.Step != 80 {
		t.Errorf("openai best train loss = %+v", f.Best)
	}
	var text bytes.Buffer
	if err := c.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"LORACTL", "OPENAI", "valid loss final", "1.8594 (step 76)", "1.9282 (step 80)", "full valid loss final", "1.9821 (step 80)", "OPENAI VALID"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	var html bytes.Buffer
	if err := c.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	if strings.Count(html.String(), "<svg") != 2 || !strings.Contains(html.String(), "OpenAI valid loss") {
		t.Error("the page lacks the loss and accuracy charts of both")
	}
}
