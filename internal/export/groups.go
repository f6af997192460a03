package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/agentdataplatform/adp/internal/core"
)

// A task's attempts (samples > 1; core.TrajectoryFileName) travel together
// in two exports:
//
//   - FormatGroups: one line per task, the unit of GRPO-style RL data (TRL,
//     verl, OpenRLHF): the prompt (the messages before the first model
//     turn), the tools, and every attempt's completion (the messages from
//     the first model turn on) with its reward, exit_reason and
//     sample_index. Each attempt is its openai record (recorded.go: the
//     model's exchange as sent and received; for scripted, cached or rules
//     attempts, which have no recorded exchange, the conversation rendered
//     from the steps as described in the package doc, marked
//     "recorded": false so a trainer can leave them out). The group's
//     prompt and tools are those of its lowest attempt; an attempt whose
//     own differ (bytes) carries them beside its completion. An attempt
//     that failed before any model action has no completion: it is left
//     out and counted as Empty. Options.MinAttempts skips tasks with fewer
//     attempts left (counted in TooFewAttempts).
//   - Options.BestOf with openai or sharegpt: per task, only the attempt of
//     highest reward (a trajectory without a reward counts 1 when it
//     succeeded, else 0), ties to the shortest record, then the lowest
//     sample index: rejection-sampling SFT.
//
// Options.OnlySuccess leaves out unsuccessful attempts before either.

// FormatGroups is one JSON line per task with all its attempts (see above).
const FormatGroups Format = "groups"

// Group is one line of FormatGroups.
type Group struct {
	TaskID   string            `json:"task_id"`
	TaskType core.TaskType     `json:"task_type"`
	Prompt   []json.RawMessage `json:"prompt"`
	Tools    json.RawMessage   `json:"tools"`
	Attempts []GroupAttempt    `json:"attempts"`
}

// GroupAttempt is one attempt of a Group.
type GroupAttempt struct {
	SampleIndex int             `json:"sample_index"`
	Reward      *float64        `json:"reward"` // null: the task has no verifier
	Success     bool            `json:"success"`
	ExitReason  core.ExitReason `json:"exit_reason"`
	// Recorded is true when the messages are the model's exchange as
	// recorded, false when rendered from a scripted, cached or rules run.
	Recorded   bool              `json:"recorded"`
	Completion []json.RawMessage `json:"completion"`
	// LLM and ModelCalls are the trajectory's: what the requests were sent
	// with (model, endpoint, sampling, seed) and each call's reply, usage,
	// logprobs and token ids with their coverage; absent when no model
	// was called.
	LLM        *core.LLMRecord  `json:"llm,omitempty"`
	ModelCalls []core.ModelCall `json:"model_calls,omitempty"`
	// Prompt and Tools are set only where they differ from the group's.
	Prompt []json.RawMessage `json:"prompt,omitempty"`
	Tools  json.RawMessage   `json:"tools,omitempty"`
}

// attemptFile is one trajectory file of a task, from its name.
type attemptFile struct {
	path string
	k    int
}

// walkTasks calls fn once per task id, in id order, with the files of its
// attempts in sample order. The files are grouped by name
// (core.ParseAttemptName); the same files as Walk are considered.
func walkTasks(dir string, fn func(id string, files []attemptFile) error) error {
	names, err := trajectoryFiles(dir)
	if err != nil {
		return err
	}
	byID := map[string][]attemptFile{}
	for _, name := range names {
		id, k := core.ParseAttemptName(strings.TrimSuffix(name, ".json"))
		byID[id] = append(byID[id], attemptFile{filepath.Join(dir, name), k})
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		files := byID[id]
		sort.Slice(files, func(i, j int) bool { return files[i].k < files[j].k })
		if err := fn(id, files); err != nil {
			return err
		}
	}
	return nil
}

// readAttempt reads one attempt's file and checks that it holds the
// attempt its name says.
func readAttempt(id string, f attemptFile) (*core.Trajectory, error) {
	tr, err := read(f.path)
	if err != nil {
		return nil, err
	}
	if tr.TaskID != id || tr.SampleIndex != f.k {
		return nil, fmt.Errorf("holds attempt %d of task %q, not what its name says (attempt %d of %q)", tr.SampleIndex, tr.TaskID, f.k, id)
	}
	return tr, nil
}

// taskAttempts reads a task's attempts for an export: unreadable files and
// what opts leave out (leftOut) are counted in sum and left out.
func taskAttempts(id string, files []attemptFile, opts Options, sum *Summary) []*core.Trajectory {
	var out []*core.Trajectory
	for _, f := range files {
		sum.Files++
		tr, err := readAttempt(id, f)
		if err != nil {
			sum.Invalid = append(sum.Invalid, FileError{Path: f.path, Err: err.Error()})
			continue
		}
		if leftOut(tr, opts, sum) {
			continue
		}
		out = append(out, tr)
	}
	return out
}

// writeByTask runs line for every task and writes what it returns (nil:
// nothing).
func writeByTask(w io.Writer, dir string, opts Options, sum *Summary,
	line func(id string, trs []*core.Trajectory, paths map[*core.Trajectory]string) ([]byte, error)) error {
	bw := bufio.NewWriter(w)
	err := walkTasks(dir, func(id string, files []attemptFile) error {
		trs := taskAttempts(id, files, opts, sum)
		paths := map[*core.Trajectory]string{}
		for i, tr := range trs {
			for _, f := range files {
				if f.k == tr.SampleIndex {
					paths[trs[i]] = f.path
				}
			}
		}
		b, err := line(id, trs, paths)
		if err != nil || b == nil {
			return err
		}
		if _, err := bw.Write(b); err != nil {
			return err
		}
		sum.Written++
		return bw.WriteByte('\n')
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// record is Record with errEmpty counted and other failures listed.
func record(tr *core.Trajectory, path string, format Format, opts Options, sum *Summary) []byte {
	_, b := recordWith(tr, path, format, opts, sum)
	return b
}

// recordWith is record with the conversation the line renders.
func recordWith(tr *core.Trajectory, path string, format Format, opts Options, sum *Summary) (*conversation, []byte) {
	c, b, err := recordOf(tr, format, opts)
	switch {
	case errors.Is(err, errEmpty):
		sum.Empty++
		return nil, nil
	case err != nil:
		sum.Invalid = append(sum.Invalid, FileError{Path: path, Err: err.Error()})
		return nil, nil
	}
	return c, b
}

// writeBestOf writes, per task, the record of its best attempt.
func writeBestOf(w io.Writer, dir string, format Format, opts Options) (Summary, error) {
	var sum Summary
	err := writeByTask(w, dir, opts, &sum, func(_ string, trs []*core.Trajectory, paths map[*core.Trajectory]string) ([]byte, error) {
		var best []byte
		var bestTr *core.Trajectory
		bestScore := -1.0
		for _, tr := range trs { // in sample order: the lowest index wins a full tie
			b := record(tr, paths[tr], format, opts, &sum)
			if b == nil {
				continue
			}
			s := score(tr)
			if best == nil || s > bestScore || s == bestScore && len(b) < len(best) {
				if best != nil {
					sum.NotBest++
				}
				best, bestTr, bestScore = b, tr, s
			} else {
				sum.NotBest++
			}
		}
		if best == nil {
			return nil, nil
		}
		return traced(best, bestTr, paths[bestTr], opts)
	})
	return sum, err
}

// score is an attempt's reward for --best-of: its reward, else 1 for a
// success and 0 for a failure.
func score(tr *core.Trajectory) float64 {
	if tr.Reward != nil {
		return *tr.Reward
	}
	if tr.Success {
		return 1
	}
	return 0
}

// writeGroups writes FormatGroups.
func writeGroups(w io.Writer, dir string, opts Options) (Summary, error) {
	var sum Summary
	err := writeByTask(w, dir, opts, &sum, func(id string, trs []*core.Trajectory, paths map[*core.Trajectory]string) ([]byte, error) {
		var g *Group
		for _, tr := range trs {
			// The openai record is made and validated; the group takes its
			// messages and tools from the conversation it rendered.
			c, _ := recordWith(tr, paths[tr], FormatOpenAI, opts, &sum)
			if c == nil {
				continue
			}
			first := c.firstModelTurn()
			a := GroupAttempt{
				SampleIndex: tr.SampleIndex, Reward: tr.Reward, Success: tr.Success, ExitReason: tr.ExitReason,
				Recorded: c.recorded, Completion: raws(c.messages[first:]),
				LLM: tr.LLM, ModelCalls: tr.ModelCalls,
			}
			prompt := raws(c.messages[:first])
			if g == nil {
				g = &Group{TaskID: id, TaskType: tr.TaskType, Prompt: prompt, Tools: c.tools}
			} else {
				if !sameMessages(prompt, g.Prompt) {
					a.Prompt = prompt
				}
				if !bytes.Equal(c.tools, g.Tools) {
					a.Tools = c.tools
				}
			}
			g.Attempts = append(g.Attempts, a)
		}
		if g == nil {
			return nil, nil
		}
		if len(g.Attempts) < opts.MinAttempts {
			sum.TooFewAttempts++
			return nil, nil
		}
		return marshal(g)
	})
	return sum, err
}

func sameMessages(a, b []json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
