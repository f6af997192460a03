// Package export turns trajectory files into training data: one JSON line
// per trajectory, in the OpenAI chat fine-tuning format or in
// LLaMA-Factory's sharegpt format (or, with Options.BestOf, per task: its
// best attempt); or one JSON line per task with all its attempts
// (FormatGroups, groups.go).
//
// A trajectory whose actions a model chose carries its exchange with the
// model (core.Trajectory.Messages and Tools, recorded as sent and received);
// its record is that exchange, unchanged (recorded.go).
//
// How any other trajectory (scripted, cached, rules) becomes a conversation,
// from the agents' own prompts and tools (internal/prompt):
//   - system: the agent's system prompt for the task's kind (code or web),
//     or Options.SystemPrompt.
//   - user: the agent's user prompt: the description, the program's stdin
//     for code tasks that have one, and, for web tasks, the page the runtime
//     opened before any action (the first step, a goto: it is the first
//     observation, not a model action).
//   - one tool call and its observation per model action: a code step
//     (purpose "run") is run_python {code}; a web step is its action (goto,
//     click, fill, press, select, scroll, wait, extract, finish, ...) with the
//     step's other params as arguments. The observation is the step's, with
//     its error appended when the observation does not already state it.
//   - left out, because the model did not make them: verification runs (code
//     steps with purpose "verify", the task's tests run by the platform) and
//     LLM failures (tool_call steps with tool "llm").
//   - final assistant message: metadata.answer (the model's own last words)
//     when recorded, else final_result, else a sentence stating the failure.
//     A finish call stays a tool call; the answer follows its observation.
//   - tools: everything the runtime offers for the task's kind (run_python;
//     or the web actions), plus any other tool a step used, so the model
//     learns to choose among the same options it had. A call's arguments are
//     the ones its tool declares (a step's other params are the runtime's);
//     a tool no agent offers is declared from its calls' arguments.
//
// A trajectory that failed without a single model action is skipped and
// counted as Empty: it holds nothing to learn from. Unreadable files, and
// records that fail their format's validator, are skipped and listed in
// Summary.Invalid.
package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/agentdataplatform/adp/internal/core"
)

// Format is an output format of Write.
type Format string

const (
	// FormatOpenAI is OpenAI's chat fine-tuning format:
	// {"messages": [...], "tools": [...]}, with tool_calls on assistant
	// messages and tool messages answering them by tool_call_id.
	FormatOpenAI Format = "openai"
	// FormatShareGPT is LLaMA-Factory's sharegpt format:
	// {"conversations": [{"from","value"}...], "system": "...", "tools": "<JSON>"}
	// with roles human, function_call, observation and gpt.
	FormatShareGPT Format = "sharegpt"
)

// Formats lists the formats of one line per trajectory.
var Formats = []Format{FormatOpenAI, FormatShareGPT}

// ParseFormat checks a --format value.
func ParseFormat(s string) (Format, error) {
	for _, f := range append(Formats, FormatGroups) {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown export format %q: use openai or sharegpt (one line per trajectory) or groups (one line per task with its attempts)", s)
}

// Options tune Write.
type Options struct {
	// OnlySuccess keeps only trajectories with success == true.
	OnlySuccess bool
	// SystemPrompt replaces the built-in system prompt of every record.
	// Default "": a prompt for the task's kind (code or web).
	SystemPrompt string
	// BestOf (openai, sharegpt) writes one line per task: its attempt of
	// highest reward, ties to the shortest record (groups.go).
	BestOf bool
	// MinAttempts (groups) skips tasks with fewer exportable attempts.
	MinAttempts int
	// IncludeFlagged keeps, under OnlySuccess and BestOf, the successes
	// the test harness flagged (metadata.flags: an always-equal object, a
	// program that read its caller), which both leave out by default: the
	// tests may not have established them.
	IncludeFlagged bool
	// Trace (openai, sharegpt) adds TraceKey to every record: the task and
	// attempt it was made from.
	Trace bool
	// TraceOut (openai, sharegpt), when set, gets one Trace per record
	// written, line for line, the records left as the format has them.
	TraceOut io.Writer
}

// leftOut reports whether opts leave tr out of an export before its
// record is made: a failure under OnlySuccess, a flagged attempt under
// OnlySuccess or BestOf (unless IncludeFlagged). It counts why in sum.
func leftOut(tr *core.Trajectory, opts Options, sum *Summary) bool {
	switch {
	case opts.OnlySuccess && !tr.Success:
		sum.Filtered++
		return true
	case (opts.OnlySuccess || opts.BestOf) && !opts.IncludeFlagged && flagged(tr):
		sum.Flagged++
		return true
	}
	return false
}

// flagged reports whether the harness flagged tr's success.
func flagged(tr *core.Trajectory) bool {
	switch f := tr.Metadata[core.MetaFlags].(type) {
	case nil:
		return false
	case []any:
		return len(f) > 0
	case []string:
		return len(f) > 0
	}
	return true
}

// Summary says what Write did.
type Summary struct {
	Files    int         `json:"files"`    // trajectory files found
	Written  int         `json:"written"`  // lines written
	Filtered int         `json:"filtered"` // left out by OnlySuccess
	Flagged  int         `json:"flagged"`  // flagged successes left out (see IncludeFlagged)
	Empty    int         `json:"empty"`    // failed without any model action
	Invalid  []FileError `json:"invalid"`  // unreadable or not exportable, skipped
	// NotBest counts attempts left out by BestOf (another attempt of the
	// task was better); TooFewAttempts counts tasks left out by MinAttempts.
	NotBest        int `json:"not_best,omitempty"`
	TooFewAttempts int `json:"too_few_attempts,omitempty"`
}

// String is a one-line report for the operator.
func (s Summary) String() string {
	out := fmt.Sprintf("%d files: %d written, %d filtered (not successful), %d empty (failed before any action), %d invalid",
		s.Files, s.Written, s.Filtered, s.Empty, len(s.Invalid))
	if s.Flagged > 0 {
		out += fmt.Sprintf(", %d flagged by the test harness (--include-flagged keeps them)", s.Flagged)
	}
	if s.NotBest > 0 {
		out += fmt.Sprintf(", %d not the best attempt of their task", s.NotBest)
	}
	if s.TooFewAttempts > 0 {
		out += fmt.Sprintf(", %d tasks with too few attempts", s.TooFewAttempts)
	}
	return out
}

// Write streams every trajectory in dir, in file-name order, to w as JSONL
// in the given format. Unreadable files are skipped and reported in the
// Summary; the error is non-nil only for an unknown format, a directory
// that cannot be listed, or a failed write to w.
func Write(w io.Writer, dir string, format Format, opts Options) (Summary, error) {
	var sum Summary
	if _, err := ParseFormat(string(format)); err != nil {
		return sum, err
	}
	switch {
	case format == FormatGroups:
		if opts.BestOf {
			return sum, errors.New("--best-of chooses one attempt per task for openai or sharegpt; groups keeps them all")
		}
		if opts.Trace || opts.TraceOut != nil {
			return sum, errors.New("a trace is for openai and sharegpt records; a groups line names its task and attempts already")
		}
		return writeGroups(w, dir, opts)
	case opts.MinAttempts > 0:
		return sum, errors.New("--min-attempts applies to the groups format")
	case opts.BestOf:
		return writeBestOf(w, dir, format, opts)
	}
	bw := bufio.NewWriter(w)
	err := Walk(dir, func(path string, tr *core.Trajectory, readErr error) error {
		sum.Files++
		if readErr != nil {
			sum.Invalid = append(sum.Invalid, FileError{Path: path, Err: readErr.Error()})
			return nil
		}
		if leftOut(tr, opts, &sum) {
			return nil
		}
		line := record(tr, path, format, opts, &sum)
		if line == nil {
			return nil
		}
		line, err := traced(line, tr, path, opts)
		if err != nil {
			return err
		}
		if _, err := bw.Write(line); err != nil {
			return err
		}
		sum.Written++
		return bw.WriteByte('\n')
	})
	if err != nil {
		return sum, err
	}
	return sum, bw.Flush()
}

// errEmpty is Record's error for a trajectory with nothing to learn from.
var errEmpty = errors.New("failed without any model action")

// Record returns one trajectory as one line of the format (without the
// newline). The line is checked with the format's validator before it is
// returned, so a trajectory that cannot be expressed legally (e.g. a tool
// name OpenAI rejects) is an error rather than a bad training example.
func Record(tr *core.Trajectory, format Format, opts Options) ([]byte, error) {
	_, line, err := recordOf(tr, format, opts)
	return line, err
}

// recordOf is Record with the conversation the line renders.
func recordOf(tr *core.Trajectory, format Format, opts Options) (*conversation, []byte, error) {
	var (
		render   func(*conversation) ([]byte, error)
		validate func([]byte) error
	)
	switch format {
	case FormatOpenAI:
		render, validate = (*conversation).openAI, ValidateOpenAI
	case FormatShareGPT:
		render, validate = (*conversation).shareGPT, ValidateShareGPT
	case FormatGroups:
		return nil, nil, errors.New("groups is a format of a task's attempts together: use Write")
	default:
		_, err := ParseFormat(string(format))
		return nil, nil, err
	}
	c, err := newConversation(tr, opts)
	if errors.Is(err, errEmpty) {
		return nil, nil, err
	}
	var line []byte
	if err == nil {
		line, err = render(c)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s record: %w", format, err)
	}
	if err := validate(line); err != nil {
		return nil, nil, fmt.Errorf("cannot be exported as %s: %w", format, err)
	}
	return c, line, nil
}

// marshal is json.Marshal without HTML escaping: code and page text keep
// their '<', '>' and '&' readable.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func marshalString(v any) (string, error) {
	b, err := marshal(v)
	return string(b), err
}
