package importcmd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/gputest"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
)

func chatFile(t *testing.T, dir string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"messages":[{"role":"user","content":"question %d"},{"role":"assistant","content":"answer %d"}]}`+"\n", i, i)
	}
	p := filepath.Join(dir, "train.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImportProposesForTheGPU: without --model and --gpu-memory the proposals fit the free
// memory of the machine's emptiest GPU, and the output says so.
func TestImportProposesForTheGPU(t *testing.T) {
	dir := t.TempDir()
	train := chatFile(t, dir, 12)
	io, _, out, _ := iostreams.Test()
	l := zerolog.Nop()
	f := &cmdutil.Factory{IO: io, Log: &l}
	const gib = 1 << 30
	ran := false
	cmd := NewCmdOpenAI(f, func(o *OpenAIOptions) error {
		ran = true
		o.Manager = func() gpu.Manager {
			return gputest.New(gputest.GPU("Busy", 80*gib, 2*gib), gputest.GPU("Idle 16GB", 16*gib, 15*gib))
		}
		return openAIRun(o)
	})
	cmd.SetArgs([]string{"--training-file", train, "-o", filepath.Join(dir, "out"), "--json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !ran {
		t.Fatal("not run")
	}
	var res struct {
		Model           string `json:"model"`
		AvailableBytes  uint64 `json:"available_bytes"`
		AvailableSource string `json:"available_source"`
		Proposals       []struct {
			Model     string `json:"model"`
			PeakBytes uint64 `json:"peak_bytes"`
		} `json:"proposals"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.AvailableBytes != 15*gib || !strings.Contains(res.AvailableSource, "Idle 16GB") {
		t.Errorf("judged against %d (%s)", res.AvailableBytes, res.AvailableSource)
	}
	if len(res.Proposals) == 0 || res.Model != res.Proposals[0].Model {
		t.Fatalf("proposals %+v, model %q", res.Proposals, res.Model)
	}
	for _, p := range res.Proposals {
		if p.PeakBytes > 15*gib {
			t.Errorf("%s needs %d bytes, over the 15 GiB free", p.Model, p.PeakBytes)
		}
	}
}
