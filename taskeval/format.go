package taskeval

import (
	"fmt"
	"sort"
	"strings"
)

// Lines prints the summary for a terminal, two-space indented: each metric base ->
// adapter with its interval (the primary first), the judge's win rate, answers that
// never end, and the verdict with its reason.
func (s *Summary) Lines() []string {
	if s == nil {
		return nil
	}
	var lines []string
	base := "base"
	if s.Against != "" {
		base = s.Against
		lines = append(lines, fmt.Sprintf("  against    %s (its replies in place of the base model's: %s -> %s below)", s.Against, s.Against, s.Checkpoint))
	}
	names := make([]string, 0, len(s.Metrics))
	for n := range s.Metrics {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == s.Primary) != (names[j] == s.Primary) {
			return names[i] == s.Primary
		}
		return names[i] < names[j]
	})
	for _, n := range names {
		ms := s.Metrics[n]
		if ms.N == 0 {
			lines = append(lines, fmt.Sprintf("  %-10s no example scored (%d errors)", n, ms.Errors))
			continue
		}
		l := fmt.Sprintf("  %-10s %.4g -> %.4g (%+.4g, 95%% interval %+.4g..%+.4g, %d examples)", n, ms.Base, ms.Adapter, ms.Delta, ms.CI95[0], ms.CI95[1], ms.N)
		if ms.Errors > 0 {
			l += fmt.Sprintf(", %d errors", ms.Errors)
		}
		lines = append(lines, l)
	}
	if j := s.Judge; j != nil {
		lines = append(lines, fmt.Sprintf("  judge      win rate %.2f (95%% interval %.2f..%.2f): %d wins, %d ties, %d losses, %d errors",
			j.WinRate, j.CI95[0], j.CI95[1], j.Wins, j.Ties, j.Losses, j.Errors))
	}
	var rambles []string
	if s.DoesNotStop.Base {
		rambles = append(rambles, fmt.Sprintf("%s (%.0f%% ended the turn)", base, s.StopRate.Base*100))
	}
	if s.DoesNotStop.Adapter {
		rambles = append(rambles, fmt.Sprintf("adapter (%.0f%% ended the turn)", s.StopRate.Adapter*100))
	}
	if len(rambles) > 0 {
		lines = append(lines, "  warning    answers run to max_new_tokens instead of ending: "+strings.Join(rambles, ", "))
	}
	lines = append(lines, fmt.Sprintf("  verdict    %s: %s", strings.ReplaceAll(s.Verdict, "_", " "), s.Reason))
	return lines
}
