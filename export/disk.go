package export

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// base is the base model of a run as resolved.json names it.
type base struct {
	NameOrPath string `json:"name_or_path"`
	Revision   string `json:"revision"`
	// Dir is the local directory holding it (the path, or its snapshot in the HF
	// cache); empty when it cannot be found here.
	Dir string `json:"-"`
}

func baseModel(resolved string) (base, error) {
	b, err := os.ReadFile(resolved)
	if err != nil {
		return base{}, invalidf("the run has no readable %s: %v", filepath.Base(resolved), err)
	}
	var r struct {
		Model base `json:"model"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Model.NameOrPath == "" {
		return base{}, invalidf("%s: no model.name_or_path", resolved)
	}
	m := r.Model
	if st, err := os.Stat(m.NameOrPath); err == nil && st.IsDir() {
		m.Dir = m.NameOrPath
	} else {
		m.Dir = hubSnapshot(m.NameOrPath, m.Revision)
	}
	return m, nil
}

// hubSnapshot finds a hub id's snapshot in the Hugging Face cache, or "".
func hubSnapshot(id, revision string) string {
	hub := os.Getenv("HF_HUB_CACHE")
	if hub == "" {
		home := os.Getenv("HF_HOME")
		if home == "" {
			h, _ := os.UserHomeDir()
			home = filepath.Join(h, ".cache", "huggingface")
		}
		hub = filepath.Join(home, "hub")
	}
	repo := filepath.Join(hub, "models--"+strings.ReplaceAll(id, "/", "--"))
	if revision == "" {
		revision = "main"
	}
	if ref, err := os.ReadFile(filepath.Join(repo, "refs", revision)); err == nil {
		revision = strings.TrimSpace(string(ref))
	}
	dir := filepath.Join(repo, "snapshots", revision)
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return dir
	}
	return ""
}

// weightBytes sums a model dir's weight files (followed through the HF cache's links)
// and reads the bytes per parameter of the dtype it is stored in.
func weightBytes(dir string) (total int64, elem int64) {
	entries, _ := os.ReadDir(dir)
	var st, bin int64
	for _, e := range entries {
		info, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(e.Name(), ".safetensors"):
			st += info.Size()
		case strings.HasSuffix(e.Name(), ".bin") && strings.HasPrefix(e.Name(), "pytorch_model"):
			bin += info.Size()
		}
	}
	total = st
	if total == 0 {
		total = bin
	}
	elem = 2
	if b, err := os.ReadFile(filepath.Join(dir, "config.json")); err == nil {
		var c struct {
			DType      string `json:"dtype"`
			TorchDType string `json:"torch_dtype"`
		}
		_ = json.Unmarshal(b, &c)
		if c.DType == "float32" || (c.DType == "" && c.TorchDType == "float32") {
			elem = 4
		}
	}
	return total, elem
}

// slack covers the tokenizer, configs and the docs.
const slack = 32 << 20

// estimate is the disk an export needs at its peak, in the temp dir. A GGUF export
// holds the merged safetensors and the GGUF at once. Zero: unknown (a base that is not
// on this machine, which the export will then fail to load anyway).
func estimate(mode, quant, adapter string, b base) (int64, error) {
	var ad int64
	for _, name := range []string{"adapter_model.safetensors", "adapter_config.json"} {
		if info, err := os.Stat(filepath.Join(adapter, name)); err == nil {
			ad += info.Size()
		}
	}
	if mode == "adapter" {
		return ad + slack, nil
	}
	if b.Dir == "" {
		return 0, nil
	}
	w, elem := weightBytes(b.Dir)
	switch mode {
	case "merge":
		return w + slack, nil
	default:
		params := w / elem
		g := params * 2
		if quant != "f16" {
			g = params * 34 / 32
		}
		if quant == "q4_k_m" { // the f16 file is written first, then quantized
			g += params * 2
		}
		return w + g + slack, nil
	}
}

// freeBytes is the space available to this user on dir's file system.
func freeBytes(dir string) (uint64, error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		return 0, err
	}
	return uint64(s.Bavail) * uint64(s.Bsize), nil
}

// human prints a byte count in binary units.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
