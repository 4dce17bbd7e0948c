package slurm

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
)

// Lines as Slurm 22.05's `scontrol -o show job` printed them on the test cluster.
const (
	scontrolTimeout = `JobId=24 JobName=tl.sh UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901738 Nice=0 Account=(null) QOS=(null) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=143:0 RunTime=00:01:11 TimeLimit=00:01:00 TimeMin=N/A SubmitTime=2026-11-28T04:56:22 EligibleTime=2026-11-28T04:56:22 AccrueTime=2026-11-28T04:56:22 StartTime=2026-11-28T04:56:22 EndTime=2026-11-28T04:57:33 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-28T04:56:22 Scheduler=Backfill Partition=debug AllocNode:Sid=localhost:5635 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=512M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=512M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=/tmp/sltest/tl.sh WorkDir=/tmp/sltest StdErr=/tmp/sltest/tl.log StdIn=/dev/null StdOut=/tmp/sltest/tl.log Power= `
	scontrolArray   = `JobId=4 ArrayJobId=2 ArrayTaskId=1 ArrayTaskThrottle=2 JobName=a.sh UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901758 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=1 BatchFlag=1 Reboot=0 ExitCode=1:0 StartTime=2026-11-28T04:46:57 EndTime=2026-11-28T04:47:00
JobId=3 ArrayJobId=2 ArrayTaskId=0 ArrayTaskThrottle=2 JobName=a.sh UserId=root(0) GroupId=root(0) MCS_label=N/A JobState=COMPLETED Reason=None Restarts=0 ExitCode=0:0 StartTime=2026-11-28T04:46:51 EndTime=2026-11-28T04:46:53`
	scontrolPendingRequeued = `JobId=2 JobName=r.sh UserId=root(0) GroupId=root(0) JobState=PENDING Reason=BeginTime Dependency=(null) Requeue=1 Restarts=1 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 StartTime=2026-11-28T04:46:09 EndTime=Unknown Comment=two words here`
)

func TestParseScontrol(t *testing.T) {
	recs, err := parseScontrol(scontrolTimeout)
	if err != nil || len(recs) != 1 {
		t.Fatalf("parseScontrol = %v, %v", recs, err)
	}
	r := recs[0]
	for k, want := range map[string]string{
		"JobId": "24", "JobState": "TIMEOUT", "Reason": "TimeLimit", "ExitCode": "143:0",
		"AllocNode:Sid": "localhost:5635", "CPUs/Task": "1", "Power": "", "StdOut": "/tmp/sltest/tl.log",
	} {
		if r[k] != want {
			t.Errorf("%s = %q, want %q", k, r[k], want)
		}
	}
	recs, _ = parseScontrol(scontrolPendingRequeued)
	if got := recs[0]["Comment"]; got != "two words here" {
		t.Errorf("a value with spaces parsed as %q", got)
	}
	if _, err := parseScontrol("slurm_load_jobs error: Invalid job id specified"); err == nil {
		t.Error("parseScontrol accepted output without a JobId")
	}
}

func TestPickRecord(t *testing.T) {
	recs, err := parseScontrol(scontrolArray)
	if err != nil {
		t.Fatal(err)
	}
	if got := pickRecord(recs, "0")["JobId"]; got != "3" {
		t.Errorf("task 0 picked job %s, want 3", got)
	}
	if got := pickRecord(recs, "1")["JobId"]; got != "4" {
		t.Errorf("task 1 picked job %s, want 4", got)
	}
	ji := infoFromScontrol(pickRecord(recs, "1"))
	if ji.State != "FAILED" || ji.ExitCode != 1 || ji.Restarts != 1 || ji.Start.IsZero() {
		t.Errorf("infoFromScontrol = %+v", ji)
	}
}

func TestParseSacct(t *testing.T) {
	// sacct -c keeps a record per requeue; the last one for the id is the job's end.
	out := "1|PENDING|0:0|2026-11-28T04:44:52|2026-11-28T04:44:52\n" +
		"10|FAILED|3:0|2026-11-28T04:45:00|2026-11-28T04:45:01\n" +
		"1|CANCELLED by 0|0:15|2026-11-28T04:44:58|2026-11-28T04:45:30\n"
	ji, ok := parseSacct(out, "1")
	if !ok || ji.State != "CANCELLED" || ji.ExitSignal != 15 || ji.End.IsZero() {
		t.Errorf("parseSacct = %+v, %v", ji, ok)
	}
	if _, ok := parseSacct(out, "2"); ok {
		t.Error("parseSacct found a job that is not there")
	}
}

func TestParseSubmit(t *testing.T) {
	tests := []struct {
		out, id, cluster string
		ok               bool
	}{
		{"12\n", "12", "", true},
		{"12;loractl\n", "12", "loractl", true},
		{"sbatch: warning: something\n13\n", "13", "", true},
		{"Submitted batch job 12\n", "", "", false},
		{"12;bad cluster\n", "", "", false},
	}
	for _, tc := range tests {
		s, err := parseSubmit(tc.out)
		if (err == nil) != tc.ok || tc.ok && (s.JobID != tc.id || s.Cluster != tc.cluster) {
			t.Errorf("parseSubmit(%q) = %+v, %v", tc.out, s, err)
		}
	}
}

func code(n int) *int { return &n }

func TestToStatus(t *testing.T) {
	start := time.Date(2026, 11, 28, 4, 0, 0, 0, time.Local)
	end := start.Add(time.Hour)
	ended := &Attempt{JobID: "5", ExitCode: code(75), Signal: "TERM"}
	killed := &Attempt{JobID: "5"}
	requeued := &Attempt{JobID: "5", ExitCode: code(75), Signal: "USR1", Requeued: true}
	tests := []struct {
		name   string
		ji     jobInfo
		last   *Attempt
		state  driver.TaskState
		reason string
		exit   *driver.ExitResult
	}{
		{"pending", jobInfo{State: "PENDING", Reason: "Resources", Start: end}, nil, driver.StatePending, "Resources", nil},
		{"pending after requeue", jobInfo{State: "PENDING", Reason: "BeginTime", Restarts: 1}, requeued, driver.StatePending, "requeued, attempt 2: BeginTime", nil},
		{"requeued", jobInfo{State: "REQUEUED"}, requeued, driver.StatePending, "requeued", nil},
		{"configuring", jobInfo{State: "CONFIGURING", Reason: "None"}, nil, driver.StatePending, "configuring nodes", nil},
		{"running", jobInfo{State: "RUNNING", Start: start}, nil, driver.StateRunning, "", nil},
		{"running again", jobInfo{State: "RUNNING", Restarts: 2}, nil, driver.StateRunning, "requeued, attempt 3", nil},
		{"completing", jobInfo{State: "COMPLETING"}, nil, driver.StateRunning, "completing", nil},
		{"completed", jobInfo{State: "COMPLETED", Start: start, End: end}, nil, driver.StateExited, "COMPLETED",
			&driver.ExitResult{Reason: "COMPLETED"}},
		{"failed", jobInfo{State: "FAILED", Reason: "NonZeroExitCode", ExitCode: 3}, nil, driver.StateExited, "FAILED: NonZeroExitCode",
			&driver.ExitResult{ExitCode: 3, Reason: "FAILED"}},
		{"launch failure", jobInfo{State: "FAILED", Reason: "JobLaunchFailure"}, nil, driver.StateExited, "FAILED: JobLaunchFailure",
			&driver.ExitResult{ExitCode: 1, Reason: "FAILED"}},
		{"stopped after checkpoint", jobInfo{State: "FAILED", ExitCode: 75}, ended, driver.StateExited, "FAILED",
			&driver.ExitResult{ExitCode: 75, Reason: "FAILED"}},
		{"cancelled, script status", jobInfo{State: "CANCELLED", ExitCode: 75}, ended, driver.StateExited, "CANCELLED",
			&driver.ExitResult{ExitCode: 75, Reason: "CANCELLED"}},
		{"cancelled 0:0, trainer ended", jobInfo{State: "CANCELLED"}, ended, driver.StateExited, "CANCELLED",
			&driver.ExitResult{ExitCode: 75, Reason: "CANCELLED"}},
		{"cancelled 0:0, killed", jobInfo{State: "CANCELLED"}, killed, driver.StateExited, "CANCELLED",
			&driver.ExitResult{Signal: 9, Reason: "CANCELLED"}},
		{"cancelled while pending", jobInfo{State: "CANCELLED"}, nil, driver.StateExited, "CANCELLED",
			&driver.ExitResult{Signal: 15, Reason: "CANCELLED"}},
		{"cancelled while requeued", jobInfo{State: "CANCELLED"}, requeued, driver.StateExited, "CANCELLED",
			&driver.ExitResult{Signal: 15, Reason: "CANCELLED"}},
		{"timeout", jobInfo{State: "TIMEOUT", Reason: "TimeLimit", ExitCode: 143}, nil, driver.StateExited, "TIMEOUT: TimeLimit",
			&driver.ExitResult{ExitCode: 143, Reason: "TIMEOUT"}},
		{"preempted", jobInfo{State: "PREEMPTED"}, killed, driver.StateExited, "PREEMPTED",
			&driver.ExitResult{Signal: 9, Reason: "PREEMPTED"}},
		{"node fail", jobInfo{State: "NODE_FAIL"}, killed, driver.StateExited, "NODE_FAIL",
			&driver.ExitResult{Signal: 9, Reason: "NODE_FAIL"}},
		{"out of memory", jobInfo{State: "OUT_OF_MEMORY", ExitCode: 0, ExitSignal: 9}, nil, driver.StateExited, "OUT_OF_MEMORY",
			&driver.ExitResult{Signal: 9, OOMKilled: true, Reason: "OUT_OF_MEMORY"}},
		{"boot fail", jobInfo{State: "BOOT_FAIL"}, nil, driver.StateExited, "BOOT_FAIL",
			&driver.ExitResult{Signal: 9, Reason: "BOOT_FAIL"}},
		{"unknown", jobInfo{State: "SOMETHING_NEW"}, nil, driver.StateUnknown, "SOMETHING_NEW", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := toStatus(tc.ji, tc.last)
			if st.State != tc.state || st.Reason != tc.reason {
				t.Errorf("state %s (%q), want %s (%q)", st.State, st.Reason, tc.state, tc.reason)
			}
			got, _ := json.Marshal(st.Exit)
			want, _ := json.Marshal(tc.exit)
			if string(got) != string(want) {
				t.Errorf("exit %s, want %s", got, want)
			}
			if tc.state == driver.StatePending && !st.StartedAt.IsZero() {
				t.Errorf("a pending job reports StartedAt %v (Slurm's expected start)", st.StartedAt)
			}
			if tc.exit != nil && tc.exit.ExitCode == 0 && tc.exit.Signal == 0 && tc.ji.State != "COMPLETED" {
				t.Errorf("case reports %s as successful", tc.ji.State)
			}
		})
	}
}

func TestBaseStateAndExitCode(t *testing.T) {
	for in, want := range map[string]string{"CANCELLED by 1000": "CANCELLED", "running": "RUNNING", "COMPLETING+": "COMPLETING", " FAILED ": "FAILED"} {
		if got := baseState(in); got != want {
			t.Errorf("baseState(%q) = %q, want %q", in, got, want)
		}
	}
	if c, s := parseExitCode("0:15"); c != 0 || s != 15 {
		t.Errorf("parseExitCode(0:15) = %d:%d", c, s)
	}
}

func TestReadAttempts(t *testing.T) {
	dir := t.TempDir()
	if as, err := ReadAttempts(dir); err != nil || as != nil {
		t.Fatalf("ReadAttempts without a file = %v, %v; want none", as, err)
	}
	lines := `{"event":"start","time":"2026-11-28T05:00:00Z","job_id":"7","array_job_id":"","array_task_id":"","restart_count":0,"node":"n1"}
{"event":"end","time":"2026-11-28T05:01:00Z","job_id":"7","array_job_id":"","array_task_id":"","restart_count":0,"node":"n1","exit_code":75,"signal":"USR1","requeued":true}

{"event":"start","time":"2026-11-28T05:01:10Z","job_id":"7","array_job_id":"","array_task_id":"","restart_count":1,"node":"n2"}
{"event":"end","time":"","job_id":"7","array_job_id":"","array_task_id":"","restart_count":1,"node":"n2","exit_code":0,"signal":"","requeued":false}
{"event":"start","time":"2026-11-28T05:03:00Z","job_id":"9","array_job_id":"8","array_task_id":"1","restart_count":0,"node":"n1"}
{"event":"end","time":"2026-1`
	if err := os.WriteFile(filepath.Join(dir, AttemptsName), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	as, err := ReadAttempts(dir)
	if err != nil {
		t.Fatalf("ReadAttempts: %v (a half-written last line must be skipped)", err)
	}
	if len(as) != 3 {
		t.Fatalf("got %d attempts, want 3: %+v", len(as), as)
	}
	if a := as[0]; !a.Requeued || *a.ExitCode != 75 || a.Signal != "USR1" || a.Node != "n1" || a.FinishedAt.Sub(a.StartedAt) != time.Minute {
		t.Errorf("attempt 1 = %+v", a)
	}
	// An end line written while the job was being killed may lack its time; its exit
	// code still counts.
	if a := as[1]; a.Requeued || a.ExitCode == nil || *a.ExitCode != 0 || a.RestartCount != 1 || a.Node != "n2" || !a.FinishedAt.IsZero() {
		t.Errorf("attempt 2 = %+v", a)
	}
	if a := as[2]; a.ExitCode != nil || !a.FinishedAt.IsZero() || a.ArrayTaskID != "1" {
		t.Errorf("attempt 3 (running) = %+v", a)
	}
	if got := lastAttempt(dir, "7"); got == nil || got.RestartCount != 1 {
		t.Errorf("lastAttempt(7) = %+v", got)
	}

	// A broken line followed by more is corruption, reported with its line number.
	if err := os.WriteFile(filepath.Join(dir, AttemptsName), []byte("{oops\n"+strings.SplitN(lines, "\n", 2)[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAttempts(dir); err == nil || !strings.Contains(err.Error(), "attempts.jsonl:1") {
		t.Errorf("ReadAttempts of a corrupt file = %v, want an error naming line 1", err)
	}
}

func TestDecodeHandle(t *testing.T) {
	task := 2
	h, err := newHandle(&handleState{JobID: "12", ArrayTaskID: &task, RunDir: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	if h.ID != "12_2" {
		t.Errorf("array task handle ID %q, want 12_2", h.ID)
	}
	if id, err := JobID(h); err != nil || id != "12_2" {
		t.Errorf("JobID = %q, %v", id, err)
	}
	bad := []string{`{"job_id":"12; scancel -u root"}`, `{"job_id":"-1"}`, `{"job_id":"1","array_task_id":-1}`, `{"job_id":"1","cluster":"a b"}`, `not json`}
	for _, st := range bad {
		hd := &driver.Handle{Driver: Name, Version: driver.HandleVersion, ID: "x", State: json.RawMessage(st)}
		if _, err := decodeHandle(hd); err == nil {
			t.Errorf("decodeHandle accepted state %s", st)
		}
	}
	old := *h
	old.Version = driver.HandleVersion + 1
	if _, err := decodeHandle(&old); !errors.Is(err, driver.ErrHandleVersion) {
		t.Errorf("decodeHandle of a newer handle = %v, want ErrHandleVersion", err)
	}
}
