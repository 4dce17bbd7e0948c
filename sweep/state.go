package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/loractl/loractl/run"
)

// Files in a sweep directory (sweeps/<sweep-id>/).
const (
	// SweepFileName is a copy of the sweep file as last run; BaseFileName a copy of
	// its base config when that is a file of its own.
	SweepFileName = "sweep.yaml"
	BaseFileName  = "base.yaml"
	// PointsFileName holds the expanded points, their run ids and states.
	PointsFileName = "points.json"
	// ResultsFileName is the results table, ranked by the sweep's metric.
	ResultsFileName = "results.csv"
)

// EnvSweepsDir overrides where sweeps are kept.
const EnvSweepsDir = "LORACTL_SWEEPS_DIR"

// StateVersion is the points.json schema version.
const StateVersion = 1

// Queued is the state of a point no run has been launched for yet.
const Queued run.State = "queued"

// DefaultBase is where sweeps live: $LORACTL_SWEEPS_DIR, else "sweeps" beside the run
// store's directory (./runs → ./sweeps), so one --runs-dir keeps a project together.
func DefaultBase(runsBase string) string {
	if d := os.Getenv(EnvSweepsDir); d != "" {
		return d
	}
	return filepath.Join(filepath.Dir(filepath.Clean(runsBase)), "sweeps")
}

// State is points.json: the sweep's settings and every point with its run id and
// state. The run manifests are the truth; this is the sweep's index of them, and
// the place that counts a point's failures across controller restarts.
type State struct {
	Version     int       `json:"version"`
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	SweepPath   string    `json:"sweep_path"`
	BasePath    string    `json:"base_path"`
	Method      string    `json:"method"`
	Count       int       `json:"count,omitempty"`
	Seed        uint64    `json:"seed"`
	Metric      string    `json:"metric"`
	Goal        string    `json:"goal"`
	MaxParallel int       `json:"max_parallel"`
	Retries     int       `json:"retries"`
	Driver      string    `json:"driver,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Params are the swept keys, in file order (the results table's columns).
	Params     []string      `json:"params"`
	Points     []*PointState `json:"points"`
	Duplicates []Duplicate   `json:"duplicates,omitempty"`
}

// PointState is one point of the sweep as points.json records it.
type PointState struct {
	Index  int       `json:"index"`
	RunID  string    `json:"run_id"`
	Values []Value   `json:"values"`
	Sets   []string  `json:"sets"`
	State  run.State `json:"state"`
	// Launches counts the trainer launches the sweep made for this point (first
	// start, resumes, retries); Failures how many of them failed.
	Launches int    `json:"launches"`
	Failures int    `json:"failures"`
	Error    string `json:"error,omitempty"`
}

// Sweep is an open sweep directory, locked by the one controller running it.
type Sweep struct {
	Dir   string
	State *State
	mu    sync.Mutex
	lock  *run.Lock
}

// ErrRunning means another loractl process is running the sweep.
var ErrRunning = errors.New("the sweep is being run by another loractl process")

// ErrNoSweep means no sweep with that id exists.
var ErrNoSweep = errors.New("no such sweep")

// Open creates or reopens the directory of plan's sweep under base and locks it. An
// earlier run's points.json is merged in: states and failure counts carry over by
// run id, so a stopped sweep continues and a finished one has nothing left to do.
// Counts also carry over from earlier versions of the sweep (the same name, another
// id: a higher count, one more value), so editing the sweep file does not give
// points that used up their retries a fresh set.
func Open(base string, pl *Plan, driverName string) (*Sweep, error) {
	dir := filepath.Join(base, pl.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lock, err := run.LockDir(dir)
	if errors.Is(err, run.ErrLocked) {
		return nil, fmt.Errorf("%s: %w", pl.ID, ErrRunning)
	}
	if err != nil {
		return nil, err
	}
	s := &Sweep{Dir: dir, lock: lock}
	old, err := ReadState(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Unlock()
		return nil, err
	}
	s.State = newState(pl, driverName, old, carried(base, pl.File.Name, dir))
	files := map[string][]byte{SweepFileName: pl.File.Source}
	if pl.File.baseLine == 0 {
		files[BaseFileName] = pl.File.BaseSource
	}
	for name, b := range files {
		if err := run.WriteFileAtomic(filepath.Join(dir, name), b, 0o644); err != nil {
			lock.Unlock()
			return nil, err
		}
	}
	if err := s.Save(); err != nil {
		lock.Unlock()
		return nil, err
	}
	return s, nil
}

func newState(pl *Plan, driverName string, old *State, prev map[string]*PointState) *State {
	f := pl.File
	st := &State{
		Version: StateVersion, ID: pl.ID, Name: f.Name, SweepPath: f.Path, BasePath: f.BasePath,
		Method: f.Method, Seed: f.Seed, Metric: f.Metric, Goal: f.Goal,
		MaxParallel: f.MaxParallel, Retries: f.Retries, Driver: driverName,
		CreatedAt: time.Now().UTC(), Duplicates: pl.Duplicates,
	}
	if f.Method == MethodRandom {
		st.Count = f.Count
	}
	for _, p := range f.Params {
		st.Params = append(st.Params, p.Key)
	}
	if old != nil {
		st.CreatedAt = old.CreatedAt
	}
	for _, p := range pl.Points {
		ps := &PointState{Index: p.Index, RunID: p.RunID(), Values: p.Values, Sets: p.Sets, State: Queued}
		if o, ok := prev[ps.RunID]; ok {
			ps.State, ps.Launches, ps.Failures, ps.Error = o.State, o.Launches, o.Failures, o.Error
		}
		st.Points = append(st.Points, ps)
	}
	return st
}

// carried collects, by run id, the most advanced record of every point of the sweeps
// named name under base (this sweep's own dir included). Every save rewrites every
// point, so the newest file can hold a stale copy of a point another version ran;
// launches only grow, so the record with the most launches (then failures) knows the
// point best. Unreadable states are skipped.
func carried(base, name, self string) map[string]*PointState {
	best := map[string]*PointState{}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		dir := filepath.Join(base, e.Name())
		if !e.IsDir() || (dir != self && !strings.HasPrefix(e.Name(), name+"-")) {
			continue
		}
		st, err := ReadState(dir)
		if err != nil || st.Name != name {
			continue
		}
		for _, p := range st.Points {
			b, ok := best[p.RunID]
			if !ok || p.Launches > b.Launches || p.Launches == b.Launches && p.Failures > b.Failures {
				best[p.RunID] = p
			}
		}
	}
	return best
}

// ReadState loads dir/points.json.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, PointsFileName))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, PointsFileName), err)
	}
	return &st, nil
}

// Find loads the state of sweep id under base. A unique prefix of an id is enough.
func Find(base, id string) (dir string, st *State, err error) {
	if id == "" || filepath.Base(id) != id || id == "." || id == ".." {
		return "", nil, fmt.Errorf("%q: %w", id, ErrNoSweep)
	}
	dir = filepath.Join(base, id)
	if _, err := os.Stat(filepath.Join(dir, PointsFileName)); err != nil {
		entries, _ := os.ReadDir(base)
		var match []string
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), id) {
				match = append(match, e.Name())
			}
		}
		switch {
		case len(match) > 1:
			// An edited sweep gets a new id; both keep the name as their prefix.
			return "", nil, fmt.Errorf("%q in %s is ambiguous, give one of: %s: %w", id, base, strings.Join(match, ", "), ErrNoSweep)
		case len(match) == 0:
			return "", nil, fmt.Errorf("%q in %s: %w", id, base, ErrNoSweep)
		}
		dir = filepath.Join(base, match[0])
	}
	st, err = ReadState(dir)
	return dir, st, err
}

// Save writes points.json atomically.
func (s *Sweep) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.State.UpdatedAt = time.Now().UTC()
	b, err := json.MarshalIndent(s.State, "", "  ")
	if err != nil {
		return err
	}
	return run.WriteFileAtomic(filepath.Join(s.Dir, PointsFileName), append(b, '\n'), 0o644)
}

// set changes one point under the state's lock.
func (s *Sweep) set(ps *PointState, fn func(*PointState)) {
	s.mu.Lock()
	fn(ps)
	s.mu.Unlock()
}

// update changes one point and saves.
func (s *Sweep) update(ps *PointState, fn func(*PointState)) error {
	s.set(ps, fn)
	return s.Save()
}

// Close releases the sweep's lock.
func (s *Sweep) Close() error { return s.lock.Unlock() }
