package distill

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// The state file records every finished sample, one line each, written after its row
// is appended to OUT:
//
//	{"loractl_distill_state": 1, "settings": {...}}      header
//	HASH K STATUS ANSWER PTOK CTOK RETRIES OFFSET           one finished sample
//	split SIZE                                               a split is being put in place
//	complete                                                 the run finished and was split
//
// HASH is the prompt's hash (32 hex), K the sample index, STATUS "ok" or a filter
// reason, ANSWER the answer's hash (16 hex, "-" when filtered), OFFSET OUT's size after
// the row. On resume, rows past the last recorded OFFSET (written, then killed before
// their state line) are cut from OUT and asked again, and state lines whose OFFSET is
// past OUT's end (OUT lost them in a crash) are dropped: nothing is lost, nothing is
// written twice.
//
// The split renames two files, which no single write makes atomic: "split SIZE" (OUT's
// size before the split) is written and synced first, then the eval file and OUT are
// renamed into place (in that order), then "complete". A run that finds "split SIZE"
// last knows from OUT's size whether the renames happened: OUT still SIZE bytes long
// means they did not (the split is done again), any other size means they did.

const stateVersion = 1

// sampleKey identifies one sample: a prompt's hash and the sample's index.
type sampleKey struct {
	prompt [16]byte
	k      uint32
}

type stateHeader struct {
	Version  int      `json:"loractl_distill_state"`
	Settings Settings `json:"settings"`
}

// stateTotals are the counts over every finished sample of every run.
type stateTotals struct {
	OK               int
	Filtered         map[string]int
	PromptTokens     int64
	CompletionTokens int64
	Retries          int64
}

// loadedState is what a previous run left.
type loadedState struct {
	done     map[sampleKey]struct{}
	answers  map[[16]byte]struct{} // prompt hash XOR answer hash, for --n duplicates
	totals   stateTotals
	offset   int64 // OUT's size after the last recorded row
	size     int64 // the state file's valid length
	complete bool
}

func newLoadedState() *loadedState {
	return &loadedState{done: map[sampleKey]struct{}{}, answers: map[[16]byte]struct{}{},
		totals: stateTotals{Filtered: map[string]int{}}}
}

// loadState reads the state file at path. A missing file gives (nil, nil). A header
// from other settings is an input error naming what differs. outSize is OUT's size now.
func loadState(path string, want Settings, outSize int64, keepAnswers bool) (*loadedState, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 256<<10)
	head, err := r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("%w: %s: no header line: remove it (and OUT) to start over", ErrInput, path)
	}
	var h stateHeader
	if err := json.Unmarshal(head, &h); err != nil || h.Version != stateVersion {
		return nil, fmt.Errorf("%w: %s is not a distill state file of this version: remove it (and OUT) to start over", ErrInput, path)
	}
	if d := h.Settings.diff(want); len(d) > 0 {
		return nil, fmt.Errorf("%w: OUT was made by a different distill command (%s differ): use another -o, or remove OUT and %s to start over",
			ErrInput, strings.Join(d, ", "), path)
	}
	st := newLoadedState()
	st.size = int64(len(head))
	// A finished and split run ends the file with "complete": OUT no longer matches the
	// recorded offsets (the split rewrote it), so they are not checked against it.
	last := lastLine(f)
	var pendingSplit int64 = -1
	switch {
	case last == "complete":
		st.complete = true
	case strings.HasPrefix(last, "split "):
		n, err := strconv.ParseInt(strings.TrimPrefix(last, "split "), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: malformed last line %q: remove it (and OUT) to start over", ErrInput, path, last)
		}
		pendingSplit = n
		st.complete = outSize != n // OUT was replaced: the split is in place
	}
	for {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 || line[len(line)-1] != '\n' {
			break // EOF, or a torn last line: it is cut off below
		}
		if string(line) == "complete\n" {
			st.size += int64(len(line))
			continue
		}
		if bytes.HasPrefix(line, []byte("split ")) {
			if pendingSplit >= 0 && !st.complete {
				break // the split never happened: drop the marker, split again
			}
			st.size += int64(len(line))
			continue
		}
		e, perr := parseStateLine(line)
		if perr != nil {
			return nil, fmt.Errorf("%w: %s: byte %d: %v: remove it (and OUT) to start over", ErrInput, path, st.size, perr)
		}
		if !st.complete && e.offset > outSize {
			break // OUT lost rows the state had recorded (a crash before fsync): ask again
		}
		st.size += int64(len(line))
		st.offset = max(st.offset, e.offset)
		st.done[e.key] = struct{}{}
		if e.status == statusOK {
			st.totals.OK++
			if keepAnswers {
				st.answers[answerKey(e.key.prompt, e.answer)] = struct{}{}
			}
		} else {
			st.totals.Filtered[e.status]++
		}
		st.totals.PromptTokens += e.ptok
		st.totals.CompletionTokens += e.ctok
		st.totals.Retries += e.retries
		if err != nil {
			break
		}
	}
	return st, nil
}

const statusOK = "ok"

type stateEntry struct {
	key             sampleKey
	status          string
	answer          [8]byte
	ptok, ctok      int64
	retries, offset int64
}

func parseStateLine(line []byte) (stateEntry, error) {
	var e stateEntry
	f := strings.Fields(string(line))
	if len(f) != 8 {
		return e, errors.New("malformed state line")
	}
	if b, err := hex.DecodeString(f[0]); err != nil || len(b) != 16 {
		return e, errors.New("malformed prompt hash")
	} else {
		copy(e.key.prompt[:], b)
	}
	k, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return e, errors.New("malformed sample index")
	}
	e.key.k = uint32(k)
	e.status = f[2]
	if f[3] != "-" {
		if b, err := hex.DecodeString(f[3]); err != nil || len(b) != 8 {
			return e, errors.New("malformed answer hash")
		} else {
			copy(e.answer[:], b)
		}
	}
	nums := [4]*int64{&e.ptok, &e.ctok, &e.retries, &e.offset}
	for i, p := range nums {
		v, err := strconv.ParseInt(f[4+i], 10, 64)
		if err != nil || v < 0 {
			return e, errors.New("malformed number")
		}
		*p = v
	}
	return e, nil
}

func appendStateLine(b []byte, e stateEntry) []byte {
	b = hex.AppendEncode(b, e.key.prompt[:])
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(e.key.k), 10)
	b = append(b, ' ')
	b = append(b, e.status...)
	b = append(b, ' ')
	if e.status == statusOK {
		b = hex.AppendEncode(b, e.answer[:])
	} else {
		b = append(b, '-')
	}
	for _, v := range []int64{e.ptok, e.ctok, e.retries, e.offset} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, v, 10)
	}
	return append(b, '\n')
}

func answerKey(prompt [16]byte, answer [8]byte) [16]byte {
	k := prompt
	for i := range answer {
		k[i] ^= answer[i]
		k[8+i] ^= answer[i] // both halves: the key still tells prompts apart
	}
	return k
}

// writeStateHeader starts a fresh state file.
func writeStateHeader(w io.Writer, s Settings) error {
	b, err := json.Marshal(stateHeader{Version: stateVersion, Settings: s})
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// lastLine is the last complete line of f (without its newline; "" when none), read
// from the end so f's offset is kept.
func lastLine(f *os.File) string {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return ""
	}
	n := min(st.Size(), 128)
	b := make([]byte, n)
	if _, err := f.ReadAt(b, st.Size()-n); err != nil {
		return ""
	}
	if b[len(b)-1] != '\n' {
		return "" // a torn last line
	}
	b = b[:len(b)-1]
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return string(b)
}
