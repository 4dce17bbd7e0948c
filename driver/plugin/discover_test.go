package plugin

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeExe(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	plugins := filepath.Join(root, "plugins")
	bin1 := filepath.Join(root, "bin1")
	bin2 := filepath.Join(root, "bin2")
	writeExe(t, filepath.Join(plugins, "loractl-driver-both"), 0o755)
	writeExe(t, filepath.Join(bin1, "loractl-driver-both"), 0o755)
	writeExe(t, filepath.Join(bin2, "loractl-driver-onpath"), 0o755)
	writeExe(t, filepath.Join(bin1, "loractl-driver-noexec"), 0o644)
	writeExe(t, filepath.Join(bin2, "loractl-driver-noexec"), 0o755)
	if err := os.MkdirAll(filepath.Join(plugins, "loractl-driver-adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := strings.Join([]string{"", bin1, bin2}, string(os.PathListSeparator))

	tests := []struct {
		name, driver, dir string
		want              string
		wantErr           string
	}{
		{"plugins dir first", "both", plugins, filepath.Join(plugins, "loractl-driver-both"), ""},
		{"then PATH", "onpath", plugins, filepath.Join(bin2, "loractl-driver-onpath"), ""},
		{"no plugins dir", "both", "", filepath.Join(bin1, "loractl-driver-both"), ""},
		{"skips files without an execute bit", "noexec", plugins, filepath.Join(bin2, "loractl-driver-noexec"), ""},
		{"skips directories", "adir", plugins, "", "no executable loractl-driver-adir"},
		{"missing lists where it looked", "nope", plugins, "", plugins},
		{"path traversal", "../../bin/sh", plugins, "", "invalid driver name"},
		{"upper case", "Exec", plugins, "", "invalid driver name"},
		{"empty", "", plugins, "", "invalid driver name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Find(tc.driver, tc.dir, path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Find(%q) = %q, %v; want an error containing %q", tc.driver, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Find(%q) = %q, %v; want %q", tc.driver, got, err, tc.want)
			}
		})
	}
	if _, err := Find("nope", plugins, path); !errors.Is(err, ErrNotFound) {
		t.Errorf("a missing driver is %v, want ErrNotFound", err)
	}
}

func TestFindIgnoresTheWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	writeExe(t, filepath.Join(dir, "loractl-driver-here"), 0o755)
	t.Chdir(dir)
	if got, err := Find("here", "", ""); err == nil {
		t.Fatalf("Find picked %q from the working directory through an empty PATH entry", got)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeExe(t, filepath.Join(dir, "bin", "loractl-driver-here"), 0o755)
	for _, rel := range []string{".", "bin", "./bin"} {
		if got, err := Find("here", "", rel); err == nil {
			t.Fatalf("Find picked %q through the relative PATH entry %q", got, rel)
		}
	}
}

func TestDefaultDir(t *testing.T) {
	tests := []struct {
		name, env, xdg, home, want string
	}{
		{"env wins", "/opt/loractl-plugins", "/xdg", "/home/u", "/opt/loractl-plugins"},
		{"XDG config home", "", "/xdg", "/home/u", "/xdg/loractl/plugins"},
		{"home", "", "", "/home/u", "/home/u/.config/loractl/plugins"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(PluginsDirEnv, tc.env)
			t.Setenv("XDG_CONFIG_HOME", tc.xdg)
			t.Setenv("HOME", tc.home)
			got, err := DefaultDir()
			if err != nil || got != tc.want {
				t.Fatalf("DefaultDir() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestVerifyChecksum(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loractl-driver-x")
	if err := os.WriteFile(path, []byte("hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const sum = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" // sha256("hello\n")
	tests := []struct {
		name, pinned string
		want         error
		wantText     string
	}{
		{"match", sum, nil, ""},
		{"match with upper case and spaces", " " + strings.ToUpper(sum) + "\n", nil, ""},
		{"mismatch", strings.Repeat("0", 64), ErrChecksum, "has sha256 " + sum},
		{"not hex", "xyz", nil, "not a SHA-256"},
		{"too short", sum[:10], nil, "not a SHA-256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyChecksum(path, tc.pinned)
			if tc.wantText == "" {
				if err != nil {
					t.Fatalf("VerifyChecksum = %v, want ok", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("VerifyChecksum = %v, want an error containing %q", err, tc.wantText)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.want)
			}
		})
	}
}
