package report

import (
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromium runs headless Chromium (Debian's package) on a file with extra flags, and
// returns its stdout. The test skips when chromium is not installed.
func chromium(t *testing.T, page string, flags ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (scripts/install-deps.sh installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1400,2000"}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, "file://"+page)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return out
}

// The report as a browser shows it: the page renders (a screenshot that is not blank),
// the generations table has one row per example, and the hostile text in the fixture's
// generations stays text (no element it tried to inject exists, the title is ours).
func TestReportInChromium(t *testing.T) {
	dir := copyRun(t)
	if err := WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, ReportFile)

	shot := filepath.Join(t.TempDir(), "report.png")
	chromium(t, page, "--screenshot="+shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1400 || b.Dy() != 2000 {
		t.Errorf("screenshot is %v", b)
	}
	if v := variance(img); v < 200 {
		t.Errorf("the screenshot is blank (grey-level variance %.1f)", v)
	}
	if keep := os.Getenv("LORACTL_REPORT_SCREENSHOT"); keep != "" {
		b, _ := os.ReadFile(shot)
		if err := os.WriteFile(keep, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	dom := string(chromium(t, page, "--dump-dom"))
	rows := regexp.MustCompile(`<tr class="gen [a-z]+" data-index="\d+">`).FindAllString(dom, -1)
	if len(rows) != 8 {
		t.Errorf("%d generation rows in the DOM, want one per example (8)", len(rows))
	}
	if !strings.Contains(dom, "<title>loractl report: quickstart-8494bb1ebe</title>") {
		t.Error("the page title changed: a script from the run's text ran")
	}
	// Serialised text keeps its markup escaped (&lt;img ...); an element would not be.
	for _, injected := range []string{"<img", `onerror="`, "<textarea"} {
		if strings.Contains(dom, injected) {
			t.Errorf("injected markup became part of the DOM: %s", injected)
		}
	}
	if n := strings.Count(dom, "<script"); n != 1 {
		t.Errorf("%d script elements in the DOM, want only the report's own", n)
	}
	if n := strings.Count(dom, "<svg"); n != 2 {
		t.Errorf("%d charts in the DOM, want the loss and the accuracy chart", n)
	}
}
