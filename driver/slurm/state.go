package slurm

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/loractl/loractl/driver"
)

// jobInfo is what loractl needs from one job record, whichever command produced it.
type jobInfo struct {
	JobID       string // the record's own job id
	ArrayJobID  string
	ArrayTaskID string
	State       string // base state, flags removed: RUNNING, CANCELLED, ...
	Reason      string // pending or end reason; "None" is dropped
	ExitCode    int
	ExitSignal  int
	Restarts    int
	Start, End  time.Time
}

// parseScontrol reads `scontrol -o show job ID` output: one line per record of
// space-separated KEY=VALUE pairs. A token without '=' continues the previous value
// (values such as Reason or Comment may hold spaces).
func parseScontrol(out string) ([]map[string]string, error) {
	var recs []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		rec := map[string]string{}
		last := ""
		for _, tok := range strings.Fields(line) {
			k, v, ok := strings.Cut(tok, "=")
			if !ok || !isScontrolKey(k) {
				if last != "" {
					rec[last] += " " + tok
				}
				continue
			}
			rec[k] = v
			last = k
		}
		if rec["JobId"] == "" {
			return nil, fmt.Errorf("scontrol output without JobId: %q", line)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// isScontrolKey accepts key names, including the few that hold ':' or '/'
// (AllocNode:Sid, CPUs/Task, ReqB:S:C:T, Socks/Node).
func isScontrolKey(k string) bool {
	if k == "" || !(k[0] >= 'A' && k[0] <= 'Z' || k[0] >= 'a' && k[0] <= 'z') {
		return false
	}
	for _, r := range k {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == ':' || r == '/' || r == '_') {
			return false
		}
	}
	return true
}

// pickRecord chooses the record for one array task out of `scontrol show job` output
// (which can list the whole array), or the first record for a plain job.
func pickRecord(recs []map[string]string, taskID string) map[string]string {
	if taskID == "" {
		return recs[0]
	}
	for _, r := range recs {
		if r["ArrayTaskId"] == taskID {
			return r
		}
	}
	return recs[0] // a pending task still inside the array's meta record (0-2%2)
}

// infoFromScontrol converts one scontrol record.
func infoFromScontrol(r map[string]string) jobInfo {
	ji := jobInfo{
		JobID:       r["JobId"],
		ArrayJobID:  r["ArrayJobId"],
		ArrayTaskID: r["ArrayTaskId"],
		State:       baseState(r["JobState"]),
		Reason:      r["Reason"],
		Start:       parseSlurmTime(r["StartTime"]),
		End:         parseSlurmTime(r["EndTime"]),
	}
	ji.ExitCode, ji.ExitSignal = parseExitCode(r["ExitCode"])
	ji.Restarts, _ = strconv.Atoi(r["Restarts"])
	return ji
}

// parseSacct reads `sacct -P -n -o JobID,State,ExitCode,Start,End` output and returns
// the last record for jobID: the job-completion log keeps one record per requeue and
// the newest one is the job's present state.
func parseSacct(out, jobID string) (jobInfo, bool) {
	var ji jobInfo
	found := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) < 5 || f[0] != jobID {
			continue
		}
		ji = jobInfo{JobID: f[0], State: baseState(f[1]), Start: parseSlurmTime(f[3]), End: parseSlurmTime(f[4])}
		ji.ExitCode, ji.ExitSignal = parseExitCode(f[2])
		found = true
	}
	return ji, found
}

// baseState drops sacct's decorations ("CANCELLED by 0") and scontrol's flags.
func baseState(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), " ")
	s, _, _ = strings.Cut(s, "+")
	return strings.ToUpper(s)
}

// parseExitCode splits Slurm's "CODE:SIGNAL".
func parseExitCode(s string) (code, sig int) {
	c, g, _ := strings.Cut(s, ":")
	code, _ = strconv.Atoi(c)
	sig, _ = strconv.Atoi(g)
	return code, sig
}

// parseSlurmTime parses Slurm's local-time timestamps; "Unknown", "None" and empty
// give the zero time.
func parseSlurmTime(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.Local)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Slurm's signal numbers for the terminations it reports without one.
const (
	sigKill = 9
	sigTerm = 15
)

// toStatus maps a Slurm job record onto the driver's states. last is the newest
// attempt the batch script recorded for this job (nil if none): it supplies the
// trainer's own exit code where Slurm reports the scheduler's (0:0 for CANCELLED and
// TIMEOUT in the completion log, 0:15 when scancel ended the script).
func toStatus(ji jobInfo, last *Attempt) *driver.Status {
	if ji.Reason == "None" || ji.Reason == "(null)" {
		ji.Reason = ""
	}
	st := &driver.Status{StartedAt: ji.Start, FinishedAt: ji.End}
	attemptNote := ""
	if ji.Restarts > 0 {
		attemptNote = fmt.Sprintf("requeued, attempt %d", ji.Restarts+1)
	}
	switch ji.State {
	case "PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD":
		st.State = driver.StatePending
		// Slurm shows the expected start of a pending job; the job has not started.
		st.StartedAt, st.FinishedAt = time.Time{}, time.Time{}
		reason := ji.Reason
		switch ji.State {
		case "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED":
			reason = joinReason("requeued", reason)
		case "CONFIGURING":
			reason = joinReason("configuring nodes", reason)
		default:
			reason = joinReason(attemptNote, reason)
		}
		st.Reason = reason
	case "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT":
		st.State = driver.StateRunning
		st.FinishedAt = time.Time{}
		note := ""
		if ji.State != "RUNNING" {
			note = strings.ToLower(ji.State)
		}
		st.Reason = joinReason(note, attemptNote)
	case "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL",
		"OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED":
		st.State = driver.StateExited
		st.Exit = exitResult(ji, last)
		st.Reason = ji.State
		if ji.Reason != "" && ji.State != "COMPLETED" {
			st.Reason += ": " + ji.Reason
		}
	default:
		st.State = driver.StateUnknown
		st.Reason = ji.State
	}
	return st
}

// exitResult builds the end of a finished job. A job that the scheduler ended is never
// reported as successful unless the trainer itself said it finished.
func exitResult(ji jobInfo, last *Attempt) *driver.ExitResult {
	r := &driver.ExitResult{ExitCode: ji.ExitCode, Signal: ji.ExitSignal, Reason: ji.State}
	switch ji.State {
	case "COMPLETED":
		return r
	case "OUT_OF_MEMORY":
		r.OOMKilled = true
	case "FAILED":
		if r.ExitCode == 0 && r.Signal == 0 {
			// A launch failure (unwritable output, missing node) has no exit code.
			r.ExitCode = 1
		}
	case "CANCELLED", "TIMEOUT", "PREEMPTED", "DEADLINE", "NODE_FAIL":
		if r.ExitCode != 0 || r.Signal != 0 {
			return r // the batch script's own status (75 after a checkpoint)
		}
		// Slurm often records 0:0 here; the script's attempt record tells more.
		switch {
		case last != nil && last.ExitCode != nil && !last.Requeued:
			r.ExitCode = *last.ExitCode // the trainer ended by itself
		case last != nil && !last.Requeued:
			r.Signal = sigKill // the attempt was killed before it could record its end
		default:
			r.Signal = sigTerm // ended before an attempt started
		}
	default: // BOOT_FAIL, SPECIAL_EXIT, REVOKED
		if r.ExitCode == 0 && r.Signal == 0 {
			r.Signal = sigKill
		}
	}
	return r
}

func joinReason(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ": " + b
}
