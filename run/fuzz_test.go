package run

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzEvents feeds arbitrary bytes to the events readers. Whole-file reading and
// following the file while it grows (split at any point, as a live trainer's writes
// are) must never panic and must agree on the events, and LastStep must not panic.
//
//	go test ./run -run '^$' -fuzz FuzzEvents -fuzztime 30s
func FuzzEvents(f *testing.F) {
	f.Add([]byte(`{"type":"start","time":"2026-01-01T00:00:00Z","resume_step":8}`+"\n"+`{"type":"log","time":"2026-01-01T00:00:01Z","step":9,"loss":1.5}`+"\n"), 40)
	f.Add([]byte("\x00garbage\n{\"type\":\"end\",\"time\":\"2026-01-01T00:00:00Z\",\"status\":\"failed\"}"), 3)
	f.Add([]byte(`{"type":"warning","time":"2026-01-01T00:00:00Z","message":"\u001b[2J"}`+"\n"), 0)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		dir := t.TempDir()
		path := filepath.Join(dir, EventsFile)
		if split < 0 || split > len(data) {
			split = len(data) / 2
		}
		if err := os.WriteFile(path, data[:split], 0o644); err != nil {
			t.Fatal(err)
		}
		fl := NewFollower(path)
		got, err := fl.Poll()
		if err != nil {
			t.Fatal(err)
		}
		fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.Write(data[split:]); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		more, err := fl.Poll()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, more...)
		if e := fl.Rest(); e != nil {
			got = append(got, e)
		}
		whole, err := ReadEvents(path)
		if err != nil {
			return // a line over the scanner's limit: ReadEvents says so
		}
		if len(got) != len(whole) {
			t.Fatalf("followed %d events, whole-file read %d", len(got), len(whole))
		}
		for i := range got {
			a, b := *got[i], *whole[i]
			a.Raw, b.Raw = bytes.TrimSpace(a.Raw), bytes.TrimSpace(b.Raw)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("event %d differs:\n%+v\n%+v", i, a, b)
			}
		}
		_, _ = LastStep(dir)
	})
}

// FuzzMarker: a completion marker of any content never panics the verifier and never
// makes an empty checkpoint directory complete.
func FuzzMarker(f *testing.F) {
	f.Add([]byte(`{"step": 8}`))
	f.Add([]byte(`{"step": 8, "version": 2, "files": [{"path": "a", "size": 1, "sha256": "` + string(bytes.Repeat([]byte("a"), 64)) + `"}]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, marker []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, CompleteMarker), marker, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyCheckpoint(dir, true); err == nil {
			t.Fatalf("an empty checkpoint verified with marker %q", marker)
		}
	})
}
