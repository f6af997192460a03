package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentdataplatform/adp/internal/core"
)

// TraceKey is the key Options.Trace adds to each openai or sharegpt record:
// {"task_id", "task_type", "sample_index", "file"}, the attempt the record
// was made from. Readers that take only the columns they are told
// (LLaMA-Factory: the columns of dataset_info.json; Hugging Face datasets
// and TRL: a column no formatting uses is dropped) ignore it. A reader that
// rejects keys it does not know (this package's validators, which allow
// only the format's keys) must be given the records without it: use
// Options.TraceOut, which writes the same traces to a file of their own,
// line for line, and leaves the records as the format has them.
const TraceKey = "adp_trace"

// Trace names the attempt an exported record was made from.
type Trace struct {
	TaskID      string        `json:"task_id"`
	TaskType    core.TaskType `json:"task_type"`
	SampleIndex int           `json:"sample_index"`
	File        string        `json:"file"` // the trajectory file's name in the exported directory
}

func traceOf(tr *core.Trajectory, path string) Trace {
	return Trace{TaskID: tr.TaskID, TaskType: tr.TaskType, SampleIndex: tr.SampleIndex, File: filepath.Base(path)}
}

// withTrace returns line (one JSON object, already validated) with
// TraceKey added as its last key.
func withTrace(line []byte, t Trace) ([]byte, error) {
	v, err := marshal(t)
	if err != nil {
		return nil, err
	}
	line = bytes.TrimRight(line, "\n ")
	if !bytes.HasSuffix(line, []byte("}")) {
		return nil, errors.New("record is not a JSON object")
	}
	out := append([]byte{}, line[:len(line)-1]...)
	if !bytes.HasSuffix(bytes.TrimSpace(out), []byte("{")) {
		out = append(out, ',')
	}
	out = append(out, `"`+TraceKey+`":`...)
	out = append(out, bytes.TrimRight(v, "\n")...)
	return append(out, '}'), nil
}

// traced finishes a record chosen for output: the trace key added
// (Options.Trace) and the trace line written (Options.TraceOut).
func traced(line []byte, tr *core.Trajectory, path string, opts Options) ([]byte, error) {
	t := traceOf(tr, path)
	if opts.TraceOut != nil {
		v, err := marshal(t)
		if err != nil {
			return nil, err
		}
		if _, err := opts.TraceOut.Write(append(bytes.TrimRight(v, "\n"), '\n')); err != nil {
			return nil, fmt.Errorf("write trace: %w", err)
		}
	}
	if !opts.Trace {
		return line, nil
	}
	return withTrace(line, t)
}

// DatasetInfoFile is LLaMA-Factory's dataset registry, read from the
// directory given as dataset_dir.
const DatasetInfoFile = "dataset_info.json"

// ShareGPTDatasetInfo is the dataset_info.json entry LLaMA-Factory needs to
// read a sharegpt export named fileName with its system prompt and tools
// (without the columns entry it reads the conversations alone).
func ShareGPTDatasetInfo(fileName string) map[string]any {
	return map[string]any{
		"file_name":  fileName,
		"formatting": "sharegpt",
		"columns":    map[string]string{"messages": "conversations", "system": "system", "tools": "tools"},
		"tags": map[string]string{
			"role_tag": "from", "content_tag": "value",
			"user_tag": fromHuman, "assistant_tag": fromGPT, "observation_tag": fromObservation,
			"function_tag": fromFunctionCall, "system_tag": fromSystem,
		},
	}
}

// WriteDatasetInfo adds (or replaces) the entry name for the sharegpt
// export exportPath in the dataset_info.json beside it, keeping the file's
// other entries, and returns the file's path.
func WriteDatasetInfo(exportPath, name string) (string, error) {
	path := filepath.Join(filepath.Dir(exportPath), DatasetInfoFile)
	entries := map[string]json.RawMessage{}
	switch b, err := os.ReadFile(path); {
	case err == nil:
		if err := json.Unmarshal(b, &entries); err != nil {
			return "", fmt.Errorf("%s exists and is not a JSON object of datasets: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return "", err
	}
	entry, err := json.Marshal(ShareGPTDatasetInfo(filepath.Base(exportPath)))
	if err != nil {
		return "", err
	}
	entries[name] = entry
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}
