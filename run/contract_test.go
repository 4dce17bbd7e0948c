package run

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/loractl/loractl/driver"
)

// The controller and the trainer each implement "is this checkpoint complete" once.
// These tests run the trainer's implementation (python/train_lora_support.py, which
// imports no torch, so any python3 runs it) on the same directories as Go's and
// require the same verdict, plus the same constants.

func pythonDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "python")
}

func python3(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	return py
}

// runSupport runs a Python snippet with train_lora_support importable as sup, stdin in,
// and decodes its JSON stdout.
func runSupport(t *testing.T, snippet string, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python3(t), "-c", "import json, sys\nsys.path.insert(0, sys.argv[1])\nimport train_lora_support as sup\n"+snippet, pythonDir())
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(got, out); err != nil {
		t.Fatalf("python output %q: %v", got, err)
	}
}

func TestConstantsAgreeWithTrainer(t *testing.T) {
	var py struct {
		Marker   string   `json:"marker"`
		Version  int      `json:"version"`
		Exits    []int    `json:"exits"`
		Required []string `json:"required"`
		Prefix   string   `json:"prefix"`
	}
	runSupport(t, `json.dump({"marker": sup.MARKER, "version": sup.MARKER_VERSION, "prefix": sup.CHECKPOINT_PREFIX,
  "exits": [sup.EXIT_OK, sup.EXIT_FAILED, sup.EXIT_INVALID, sup.EXIT_INTERRUPTED],
  "required": list(sup.REQUIRED_CHECKPOINT_FILES)}, sys.stdout)`, nil, &py)
	if py.Marker != CompleteMarker || py.Version != MarkerVersion {
		t.Errorf("marker: python %q v%d, go %q v%d", py.Marker, py.Version, CompleteMarker, MarkerVersion)
	}
	if want := []int{driver.TrainerExitOK, driver.TrainerExitFailed, driver.TrainerExitInvalid, driver.TrainerExitInterrupted}; !equalInts(py.Exits, want) {
		t.Errorf("exit codes: python %v, go %v", py.Exits, want)
	}
	if py.Prefix != CheckpointPrefix {
		t.Errorf("checkpoint prefix: python %q, go %q", py.Prefix, CheckpointPrefix)
	}
	if strings.Join(py.Required, ",") != strings.Join(RequiredCheckpointFiles, ",") {
		t.Errorf("required files: python %v, go %v", py.Required, RequiredCheckpointFiles)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// writeCheckpoint makes a checkpoint dir with the required files and a marker written
// by the trainer's own mark_complete.
func writeCheckpoint(t *testing.T, dir string, step int) {
	t.Helper()
	writeRequired(t, dir)
	var ok bool
	runSupport(t, `a = json.load(sys.stdin)
sup.mark_complete(a["dir"], a["step"], 1.5, "abc")
json.dump(True, sys.stdout)`, map[string]any{"dir": dir, "step": step}, &ok)
}

// writeRequired writes required files that also pass the legacy "loads" checks.
func writeRequired(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("adapter_config.json", []byte(`{"r": 8}`))
	put("trainer_state.json", []byte(`{"global_step": 8}`))
	for _, name := range []string{"optimizer.pt", "scheduler.pt"} {
		var buf bytes.Buffer
		z := zip.NewWriter(&buf)
		w, _ := z.CreateHeader(&zip.FileHeader{Name: "archive/data.pkl", Method: zip.Store}) // as torch.save does
		_, _ = w.Write([]byte("pickled " + name))
		_ = z.Close()
		put(name, buf.Bytes())
	}
	hdr := []byte(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`)
	var st bytes.Buffer
	_ = binary.Write(&st, binary.LittleEndian, uint64(len(hdr)))
	st.Write(hdr)
	st.Write(make([]byte, 8))
	put("adapter_model.safetensors", st.Bytes())
}

func TestCheckpointVerdictsAgreeWithTrainer(t *testing.T) {
	python3(t)
	root := t.TempDir()
	markerPath := func(d string) string { return filepath.Join(d, CompleteMarker) }
	setMarker := func(s string) func(t *testing.T, d string) {
		return func(t *testing.T, d string) {
			if err := os.WriteFile(markerPath(d), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	editMarker := func(edit func(m map[string]any)) func(t *testing.T, d string) {
		return func(t *testing.T, d string) {
			b, _ := os.ReadFile(markerPath(d))
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			edit(m)
			b, _ = json.Marshal(m)
			setMarker(string(b))(t, d)
		}
	}
	appendTo := func(name, s string) func(t *testing.T, d string) {
		return func(t *testing.T, d string) {
			f, err := os.OpenFile(filepath.Join(d, name), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(s); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	flipByte := func(name string) func(t *testing.T, d string) {
		return func(t *testing.T, d string) {
			p := filepath.Join(d, name)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0x20
			_ = os.WriteFile(p, b, 0o644)
		}
	}
	remove := func(name string) func(t *testing.T, d string) {
		return func(t *testing.T, d string) { _ = os.Remove(filepath.Join(d, name)) }
	}
	symlinked := func(name string) func(t *testing.T, d string) {
		return func(t *testing.T, d string) {
			p := filepath.Join(d, name)
			moved := filepath.Join(t.TempDir(), name)
			b, _ := os.ReadFile(p)
			_ = os.WriteFile(moved, b, 0o644)
			_ = os.Remove(p)
			if err := os.Symlink(moved, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	replaceInMarker := func(old, new string) func(t *testing.T, d string) {
		return func(t *testing.T, d string) {
			b, _ := os.ReadFile(markerPath(d))
			if !bytes.Contains(b, []byte(old)) {
				t.Fatalf("marker lacks %s:\n%s", old, b)
			}
			setMarker(string(bytes.Replace(b, []byte(old), []byte(new), 1)))(t, d)
		}
	}
	cases := []struct {
		name   string
		legacy bool // start from the required files and no marker
		damage func(t *testing.T, d string)
		deep   bool // want: complete for a deep check
		quick  bool // want: complete for a size-only check
		reason string
	}{
		{"intact", false, nil, true, true, ""},
		{"optimizer removed", false, remove("optimizer.pt"), false, false, "optimizer.pt is missing"},
		{"scheduler truncated", false, func(t *testing.T, d string) { _ = os.Truncate(filepath.Join(d, "scheduler.pt"), 3) }, false, false, "scheduler.pt has 3 bytes"},
		{"adapter grew", false, appendTo("adapter_model.safetensors", "x"), false, false, "adapter_model.safetensors has"},
		{"byte flipped, same size", false, flipByte("trainer_state.json"), false, true, "trainer_state.json: sha256"},
		{"file replaced by a link", false, symlinked("optimizer.pt"), false, false, "optimizer.pt is not a regular file"},
		{"marker is a link", false, symlinked(CompleteMarker), false, false, CompleteMarker},
		{"marker removed", false, remove(CompleteMarker), false, false, CompleteMarker},
		{"empty marker", false, setMarker(""), false, false, "not a JSON object"},
		{"garbage marker", false, setMarker("\x00\xff garbage"), false, false, "not a JSON object"},
		{"marker is a list", false, setMarker("[1]"), false, false, "not a JSON object"},
		{"step is a string", false, editMarker(func(m map[string]any) { m["step"] = "8" }), false, false, "step"},
		{"step is a float", false, setMarker(`{"step": 8.5}`), false, false, "step"},
		{"step is negative", false, editMarker(func(m map[string]any) { m["step"] = -1 }), false, false, "step"},
		{"no step", false, editMarker(func(m map[string]any) { delete(m, "step") }), false, false, "step"},
		{"empty file list", false, editMarker(func(m map[string]any) { m["files"] = []any{} }), false, false, "empty"},
		{"file list is null", false, editMarker(func(m map[string]any) { m["files"] = nil }), false, false, "files"},
		{"required file not listed", false, editMarker(func(m map[string]any) {
			var keep []any
			for _, f := range m["files"].([]any) {
				if f.(map[string]any)["path"] != "optimizer.pt" {
					keep = append(keep, f)
				}
			}
			m["files"] = keep
		}), false, false, "optimizer.pt is not among"},
		{"path escapes", false, editMarker(func(m map[string]any) {
			m["files"] = append(m["files"].([]any), map[string]any{"path": "../x", "size": 1, "sha256": strings.Repeat("a", 64)})
		}), false, false, "plain relative path"},
		{"size is a string", false, editMarker(func(m map[string]any) {
			m["files"].([]any)[0].(map[string]any)["size"] = "1"
		}), false, false, "size"},
		{"hash upper-case", false, editMarker(func(m map[string]any) {
			f := m["files"].([]any)[0].(map[string]any)
			f["sha256"] = strings.ToUpper(f["sha256"].(string))
		}), false, false, "sha256"},
		{"key in other case", false, editMarker(func(m map[string]any) {
			f := m["files"].([]any)[0].(map[string]any)
			f["PATH"] = f["path"]
			delete(f, "path")
		}), false, false, "path"},
		{"marker not UTF-8", false, replaceInMarker(`"resolved_sha256": "abc"`, "\"resolved_sha256\": \"ab\xff\""), false, false, "not a JSON object"},
		{"lone surrogate in a path", false, replaceInMarker(`"path": "optimizer.pt"`, `"path": "\ud800"`), false, false, "plain relative path"},
		{"legacy, files load", true, setMarker(`{"step": 8, "eval_loss_before": 1.0}`), true, true, ""},
		{"legacy, optimizer removed", true, func(t *testing.T, d string) {
			setMarker(`{"step": 8}`)(t, d)
			remove("optimizer.pt")(t, d)
		}, false, false, "optimizer.pt is missing"},
		{"legacy, optimizer corrupt", true, func(t *testing.T, d string) {
			setMarker(`{"step": 8}`)(t, d)
			p := filepath.Join(d, "optimizer.pt")
			b, _ := os.ReadFile(p)
			i := bytes.Index(b, []byte("pickled"))
			b[i] ^= 1
			_ = os.WriteFile(p, b, 0o644)
		}, false, true, "optimizer.pt does not load"},
		{"legacy, safetensors truncated", true, func(t *testing.T, d string) {
			setMarker(`{"step": 8}`)(t, d)
			p := filepath.Join(d, "adapter_model.safetensors")
			fi, _ := os.Stat(p)
			_ = os.Truncate(p, fi.Size()-1)
		}, false, false, "adapter_model.safetensors does not load"},
		{"legacy, state not JSON", true, func(t *testing.T, d string) {
			setMarker(`{"step": 8}`)(t, d)
			_ = os.WriteFile(filepath.Join(d, "trainer_state.json"), []byte("{"), 0o644)
		}, false, false, "trainer_state.json does not"},
	}
	type verdict struct {
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
	}
	var dirs []string
	for i, tc := range cases {
		d := filepath.Join(root, "checkpoints", "checkpoint-"+string(rune('a'+i)))
		if tc.legacy {
			writeRequired(t, d)
		} else {
			writeCheckpoint(t, d, 8)
		}
		if tc.damage != nil {
			tc.damage(t, d)
		}
		dirs = append(dirs, d)
	}
	var py [][2]verdict
	runSupport(t, `out = []
for d in json.load(sys.stdin):
    row = []
    for deep in (True, False):
        try:
            sup.verify_checkpoint(d, deep)
            row.append({"ok": True, "reason": ""})
        except sup.CheckpointIncomplete as e:
            row.append({"ok": False, "reason": str(e)})
    out.append(row)
json.dump(out, sys.stdout)`, dirs, &py)
	for i, tc := range cases {
		for j, deep := range []bool{true, false} {
			want := tc.deep
			if !deep {
				want = tc.quick
			}
			_, err := VerifyCheckpoint(dirs[i], deep)
			if (err == nil) != want {
				t.Errorf("%s (deep=%v): go err=%v, want complete=%v", tc.name, deep, err, want)
			}
			if py[i][j].OK != want {
				t.Errorf("%s (deep=%v): python %+v, want complete=%v", tc.name, deep, py[i][j], want)
			}
			if !want && tc.reason != "" && deep {
				if err == nil || !strings.Contains(err.Error(), tc.reason) {
					t.Errorf("%s: go reason %v, want %q", tc.name, err, tc.reason)
				}
				if !strings.Contains(py[i][j].Reason, tc.reason) {
					t.Errorf("%s: python reason %q, want %q", tc.name, py[i][j].Reason, tc.reason)
				}
			}
		}
	}
}

func TestResumeCheckpointFallsBackAndSaysWhy(t *testing.T) {
	python3(t)
	run := t.TempDir()
	cp := func(step int) string { return filepath.Join(run, CheckpointsDir, "checkpoint-"+strconv.Itoa(step)) }
	writeCheckpoint(t, cp(4), 4)
	writeCheckpoint(t, cp(8), 8)
	writeCheckpoint(t, cp(12), 12)
	_ = os.Remove(filepath.Join(cp(12), "optimizer.pt"))
	p := filepath.Join(cp(8), "adapter_model.safetensors")
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	_ = os.WriteFile(p, b, 0o644)
	_ = os.MkdirAll(cp(16), 0o755) // interrupted while saving: no marker

	got, skipped, ok, err := ResumeCheckpoint(run)
	if err != nil || !ok || got.Step != 4 {
		t.Fatalf("ResumeCheckpoint = %+v ok=%v err=%v, want checkpoint-4", got, ok, err)
	}
	var why []string
	for _, s := range skipped {
		why = append(why, strconv.Itoa(s.Step)+": "+s.Problem)
	}
	want := []string{"16: " + CompleteMarker, "12: optimizer.pt is missing", "8: adapter_model.safetensors: sha256"}
	if len(why) != len(want) {
		t.Fatalf("skipped %q, want %q", why, want)
	}
	for i := range want {
		if !strings.HasPrefix(why[i], want[i]) {
			t.Errorf("skipped[%d] = %q, want prefix %q", i, why[i], want[i])
		}
	}
	// The listing (sizes only) still counts 8 as complete; only hashing finds the flip.
	latest, _, _ := LatestComplete(run)
	if latest.Step != 8 {
		t.Errorf("LatestComplete = %d, want 8", latest.Step)
	}
}
