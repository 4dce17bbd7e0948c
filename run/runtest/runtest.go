// Package runtest builds run-store fixtures for tests of the packages above run/.
package runtest

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/loractl/loractl/run"
)

// Checkpoint writes a checkpoint at dir for step that run.VerifyCheckpoint accepts: the
// required files (small, but each loads as its kind would) and a version-2 marker
// listing them with sizes and hashes, as the trainer writes it.
func Checkpoint(t testing.TB, dir string, step int) {
	t.Helper()
	if err := WriteCheckpoint(dir, step); err != nil {
		t.Fatal(err)
	}
}

// WriteCheckpoint is Checkpoint for callers without a testing.TB (a fake driver).
func WriteCheckpoint(dir string, step int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var files []run.MarkerFile
	for _, name := range run.RequiredCheckpointFiles {
		b := content(name, step)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		files = append(files, run.MarkerFile{Path: name, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	m, err := json.Marshal(run.Marker{Version: run.MarkerVersion, Step: step, Files: files})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, run.CompleteMarker), m, 0o644)
}

func content(name string, step int) []byte {
	switch filepath.Ext(name) {
	case ".pt":
		var buf bytes.Buffer
		z := zip.NewWriter(&buf)
		w, _ := z.CreateHeader(&zip.FileHeader{Name: "archive/data.pkl", Method: zip.Store})
		_, _ = w.Write([]byte(name))
		_ = z.Close()
		return buf.Bytes()
	case ".safetensors":
		hdr := []byte(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`)
		var buf bytes.Buffer
		_ = binary.Write(&buf, binary.LittleEndian, uint64(len(hdr)))
		buf.Write(hdr)
		buf.Write(make([]byte, 4))
		return buf.Bytes()
	default:
		b, _ := json.Marshal(map[string]int{"global_step": step})
		return b
	}
}
