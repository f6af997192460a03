package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// TaskType says which runtime serves a task.
type TaskType string

const (
	TaskCode      TaskType = "code"
	TaskWeb       TaskType = "web"
	TaskReasoning TaskType = "reasoning"
)

// TaskTypes lists every valid task type.
var TaskTypes = []TaskType{TaskCode, TaskWeb, TaskReasoning}

// Valid reports whether t is a known task type.
func (t TaskType) Valid() bool {
	switch t {
	case TaskCode, TaskWeb, TaskReasoning:
		return true
	}
	return false
}

// Defaults and bounds of a TaskSpec. The bounds reject values that are surely
// mistakes (a timeout of a week, a million steps) rather than values that are
// merely large; a runtime may cap them further (SANDBOX_MAX_TIMEOUT).
const (
	DefaultMaxSteps = 10
	DefaultTimeout  = 300 // seconds
	DefaultPriority = 1
	DefaultSamples  = 1

	MaxMaxSteps    = 100
	MaxTimeout     = 3600 // seconds: one hour per task
	MinPriority    = 0
	MaxPriority    = 100
	MaxSamples     = 100
	MaxTaskIDBytes = 200
	// MaxTaskBytes bounds one task's JSON (one line of tasks.jsonl or one
	// stream entry). Scripted programs and tests fit easily; a larger line is
	// rejected with a reason instead of being buffered.
	MaxTaskBytes = 1 << 20
	// MaxDescriptionBytes bounds the description, which goes into LLM prompts.
	MaxDescriptionBytes = 64 << 10
)

// TaskSpec is one task: one line of tasks.jsonl, or the `task` field of a
// stream entry.
type TaskSpec struct {
	TaskID        string   `json:"task_id"`
	TaskType      TaskType `json:"task_type"`
	Description   string   `json:"description"`
	ExpectedTools []string `json:"expected_tools"`
	// Constraints are the task's constraints as written: the wire form,
	// encoded back unchanged. Read them typed, decoded once by the parse,
	// with Code or Web, and the kind they decide with Kind; a spec whose
	// Constraints are set or changed in Go is decoded again by Validate.
	Constraints map[string]any `json:"constraints"`
	MaxSteps    int            `json:"max_steps"`
	Timeout     int            `json:"timeout"` // seconds
	Priority    int            `json:"priority"`
	// Samples is how many independent attempts of the task to make (1..100).
	// A task of one attempt (or a hand-made spec that leaves it 0) is
	// encoded without the field, as before attempts existed.
	Samples int `json:"samples,omitempty"`
	// Sampling overrides the runtime's model sampling defaults.
	Sampling *Sampling `json:"sampling,omitempty"`
	// SampleIndex is the attempt this spec stands for (0-based). It travels
	// beside the task in its stream entry, not in the task's JSON.
	SampleIndex int `json:"-"`

	// typedC are Constraints decoded by Validate (which every parse runs).
	typedC *typedConstraints
}

// Sampling is a task's model sampling settings (task field `sampling`);
// a nil field means the runtime's default (LLM_TEMPERATURE, LLM_TOP_P,
// LLM_MAX_TOKENS, LLM_SEED).
type Sampling struct {
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	MaxTokens   *int     `json:"max_tokens,omitempty"`
	// Seed: attempt k sends Seed+k, so a rerun asks for the same thing.
	Seed *int64 `json:"seed,omitempty"`
}

// InvalidTaskError says which field of a task is wrong and why. Line is the
// 1-based line of tasks.jsonl when known, 0 otherwise.
type InvalidTaskError struct {
	Line   int
	TaskID string
	Field  string
	Reason string
}

func (e *InvalidTaskError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.TaskID != "" {
		fmt.Fprintf(&b, "task %q: ", e.TaskID)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "%s: ", e.Field)
	}
	b.WriteString(e.Reason)
	return b.String()
}

// taskJSON is the wire form: pointers tell an absent field (default) from
// an explicit zero (an error).
type taskJSON struct {
	TaskID        *string         `json:"task_id"`
	TaskType      *string         `json:"task_type"`
	Description   *string         `json:"description"`
	ExpectedTools []string        `json:"expected_tools"`
	Constraints   json.RawMessage `json:"constraints"`
	MaxSteps      *int            `json:"max_steps"`
	Timeout       *int            `json:"timeout"`
	Priority      *int            `json:"priority"`
	Samples       *int            `json:"samples"`
	Sampling      json.RawMessage `json:"sampling"`
}

// ParseTask decodes and validates one task, applies defaults, and gives an
// empty task_id a UUID. Unknown fields are rejected so that a typo
// ("max_step") is an error rather than a silent default. The error is an
// *InvalidTaskError.
func ParseTask(data []byte) (TaskSpec, error) {
	return parseTask(data, uuid.NewString)
}

// ParseTaskWithDefaultID is ParseTask, but an empty task_id becomes
// defaultID instead of a fresh UUID. Consumers use it for hand-written stream
// entries so that a re-delivered entry keeps the same id (and file).
func ParseTaskWithDefaultID(data []byte, defaultID string) (TaskSpec, error) {
	return parseTask(data, func() string { return defaultID })
}

// ParseTaskWithDefaultIDFunc is ParseTaskWithDefaultID with the default
// computed only when needed.
func ParseTaskWithDefaultIDFunc(data []byte, defaultID func() string) (TaskSpec, error) {
	return parseTask(data, defaultID)
}

func parseTask(data []byte, defaultID func() string) (TaskSpec, error) {
	if len(data) > MaxTaskBytes {
		return TaskSpec{}, &InvalidTaskError{Reason: fmt.Sprintf("task is %d bytes, more than the limit of %d", len(data), MaxTaskBytes)}
	}
	if !utf8.Valid(data) {
		return TaskSpec{}, &InvalidTaskError{Reason: "not valid UTF-8"}
	}
	var raw taskJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return TaskSpec{}, jsonError(err, raw.TaskID)
	}
	if dec.More() {
		return TaskSpec{}, &InvalidTaskError{TaskID: deref(raw.TaskID), Reason: "unexpected data after the JSON object"}
	}

	t := TaskSpec{
		TaskID:        deref(raw.TaskID),
		TaskType:      TaskType(deref(raw.TaskType)),
		Description:   deref(raw.Description),
		ExpectedTools: raw.ExpectedTools,
		MaxSteps:      orDefault(raw.MaxSteps, DefaultMaxSteps),
		Timeout:       orDefault(raw.Timeout, DefaultTimeout),
		Priority:      orDefault(raw.Priority, DefaultPriority),
		Samples:       orDefault(raw.Samples, DefaultSamples),
	}
	if c := bytes.TrimSpace(raw.Sampling); len(c) > 0 && !bytes.Equal(c, []byte("null")) {
		sp, err := parseSampling(c)
		if err != nil {
			return TaskSpec{}, &InvalidTaskError{TaskID: printableID(t.TaskID), Field: "sampling", Reason: err.Error()}
		}
		t.Sampling = sp
	}
	if c := bytes.TrimSpace(raw.Constraints); len(c) > 0 && !bytes.Equal(c, []byte("null")) {
		if c[0] != '{' {
			return TaskSpec{}, &InvalidTaskError{TaskID: t.TaskID, Field: "constraints", Reason: "must be a JSON object"}
		}
		if err := json.Unmarshal(c, &t.Constraints); err != nil {
			return TaskSpec{}, &InvalidTaskError{TaskID: t.TaskID, Field: "constraints", Reason: err.Error()}
		}
	}
	// Validate before giving a missing id its default, so that errors name
	// the user's id (or none), not a generated one.
	given := t.TaskID
	if given == "" {
		t.TaskID = "placeholder"
	}
	if err := t.Validate(); err != nil {
		if given == "" {
			var inv *InvalidTaskError
			if errors.As(err, &inv) {
				inv.TaskID = ""
			}
		}
		return TaskSpec{}, err
	}
	t.TaskID = given
	if t.TaskID == "" {
		t.TaskID = defaultID()
	}
	return t, nil
}

// Validate checks every field of t and returns the first problem as an
// *InvalidTaskError. It does not apply defaults: a zero MaxSteps is an error.
// A valid task keeps its constraints decoded (Kind, Code, Web).
func (t *TaskSpec) Validate() error {
	t.typedC = nil
	bad := func(field, reason string, args ...any) error {
		return &InvalidTaskError{TaskID: printableID(t.TaskID), Field: field, Reason: fmt.Sprintf(reason, args...)}
	}
	if err := ValidateTaskID(t.TaskID); err != nil {
		return &InvalidTaskError{TaskID: printableID(t.TaskID), Field: "task_id", Reason: err.Error()}
	}
	switch {
	case t.TaskType == "":
		return bad("task_type", "missing; one of code, web, reasoning")
	case !t.TaskType.Valid():
		return bad("task_type", "unknown type %q; one of code, web, reasoning", t.TaskType)
	case strings.TrimSpace(t.Description) == "":
		return bad("description", "missing or empty")
	case len(t.Description) > MaxDescriptionBytes:
		return bad("description", "%d bytes, more than the limit of %d", len(t.Description), MaxDescriptionBytes)
	case t.MaxSteps < 1 || t.MaxSteps > MaxMaxSteps:
		return bad("max_steps", "%d is out of range 1..%d", t.MaxSteps, MaxMaxSteps)
	case t.Timeout < 1 || t.Timeout > MaxTimeout:
		return bad("timeout", "%d seconds is out of range 1..%d", t.Timeout, MaxTimeout)
	case t.Priority < MinPriority || t.Priority > MaxPriority:
		return bad("priority", "%d is out of range %d..%d", t.Priority, MinPriority, MaxPriority)
	case t.Samples < 1 || t.Samples > MaxSamples:
		return bad("samples", "%d is out of range 1..%d", t.Samples, MaxSamples)
	case t.SampleIndex < 0 || t.SampleIndex >= t.Samples:
		return bad("sample", "attempt %d is out of range 0..%d", t.SampleIndex, t.Samples-1)
	}
	if err := t.Sampling.validate(); err != nil {
		return bad("sampling."+err.field, "%s", err.reason)
	}
	for i, tool := range t.ExpectedTools {
		if strings.TrimSpace(tool) == "" {
			return bad("expected_tools", "entry %d is empty", i)
		}
	}
	tc, err := t.decodeConstraints()
	if err != nil {
		return err
	}
	t.typedC = tc
	return nil
}

// ValidateTaskID rejects ids that are unsafe as a file name: the id names the
// trajectory file. Allowed: printable UTF-8 without '/', '\\', NUL or "..",
// at most MaxTaskIDBytes bytes, not starting with '.' (hidden and temporary
// files start with '.'), not ending in .sample-<digits> (the file of another
// task's attempt: see TrajectoryFileName).
func ValidateTaskID(id string) error {
	switch {
	case id == "":
		return errors.New("empty")
	case len(id) > MaxTaskIDBytes:
		return fmt.Errorf("%d bytes, more than the limit of %d", len(id), MaxTaskIDBytes)
	case !utf8.ValidString(id):
		return errors.New("not valid UTF-8")
	case strings.Contains(id, ".."):
		return errors.New("must not contain '..'")
	case strings.HasPrefix(id, "."):
		return errors.New("must not start with '.'")
	case hasSampleSuffix(id):
		return errors.New("must not end in .sample-<digits>: that names the file of an attempt (<task_id>.sample-<k>.json) and could collide with another task's")
	}
	for _, r := range id {
		switch {
		case r == '/' || r == '\\':
			return fmt.Errorf("must not contain %q", r)
		case r == 0:
			return errors.New("must not contain NUL")
		case unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ':
			return fmt.Errorf("must not contain the control or unprintable character %U", r)
		}
	}
	return nil
}

// MarshalLine returns t as one compact JSON line without the newline.
// samples is left out when it is the default (1): such entries are the
// bytes they were before attempts existed.
func (t *TaskSpec) MarshalLine() ([]byte, error) {
	if t.Samples == DefaultSamples {
		c := *t
		c.Samples = 0
		return json.Marshal(&c)
	}
	return json.Marshal(t)
}

func jsonError(err error, id *string) error {
	e := &InvalidTaskError{TaskID: printableID(deref(id)), Reason: "invalid JSON: " + err.Error()}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field == "":
		e.Reason = fmt.Sprintf("each line must be one JSON object, not a JSON %s", typeErr.Value)
	case errors.As(err, &typeErr):
		e.Field = typeErr.Field
		e.Reason = mustBe(typeErr)
	case errors.As(err, &syntaxErr):
		e.Reason = fmt.Sprintf("invalid JSON at byte %d: %s", syntaxErr.Offset, syntaxErr.Error())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		e.Field = strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		e.Reason = "unknown field"
	case errors.Is(err, io.EOF) || err.Error() == "unexpected EOF":
		e.Reason = "empty or truncated JSON: each line must be one whole JSON object (join a task printed across several lines onto one)"
	}
	return e
}

// mustBe says what a JSON value of the wrong type should have been, in the
// words of the task format, never Go's: "must be an integer, not a JSON
// string".
func mustBe(typeErr *json.UnmarshalTypeError) string {
	return fmt.Sprintf("must be %s, not a JSON %s", typeName(typeErr.Type), typeErr.Value)
}

// typeName names the JSON shape a Go type decodes from.
func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case reflect.TypeOf(WebAction{}):
		return "an action object"
	case reflect.TypeOf([]WebAction{}):
		return "a list of actions"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		if e := t.Elem(); e.Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	}
	return "another JSON type"
}

// printableID keeps error messages and logs readable when the id itself is
// the problem: it is cut and quoted by the caller.
func printableID(id string) string {
	if len(id) > 64 {
		id = id[:64] + "…"
	}
	return strings.ToValidUTF8(id, "�")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orDefault(v *int, def int) int {
	if v == nil {
		return def
	}
	return *v
}

func parseSampling(data []byte) (*Sampling, error) {
	if data[0] != '{' {
		return nil, errors.New("must be a JSON object")
	}
	var sp Sampling
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sp); err != nil {
		var inv *InvalidTaskError
		if errors.As(jsonError(err, nil), &inv) && inv.Field != "" {
			return nil, fmt.Errorf("%s: %s", inv.Field, inv.Reason)
		}
		return nil, err
	}
	return &sp, nil
}

type samplingError struct{ field, reason string }

// MaxSeed bounds a seed so that every attempt's seed+k is a signed 32-bit
// integer, which every server's sampler takes (some seed NumPy, which
// refuses 2^32 and more).
const MaxSeed = 1<<31 - 1 - MaxSamples

// Check reports the first field out of the bounds a task's sampling has,
// for settings that do not come from a task (the runtimes' LLM_* defaults).
func (sp *Sampling) Check() error {
	if e := sp.validate(); e != nil {
		return fmt.Errorf("%s: %s", e.field, e.reason)
	}
	return nil
}

// validate checks the bounds the OpenAI-compatible servers accept.
func (sp *Sampling) validate() *samplingError {
	if sp == nil {
		return nil
	}
	switch {
	case sp.Temperature != nil && (*sp.Temperature < 0 || *sp.Temperature > 2):
		return &samplingError{"temperature", fmt.Sprintf("%g is out of range 0..2", *sp.Temperature)}
	case sp.TopP != nil && (*sp.TopP <= 0 || *sp.TopP > 1):
		return &samplingError{"top_p", fmt.Sprintf("%g is out of range (0, 1]", *sp.TopP)}
	case sp.MaxTokens != nil && *sp.MaxTokens < 1:
		return &samplingError{"max_tokens", fmt.Sprintf("%d must be at least 1", *sp.MaxTokens)}
	case sp.Seed != nil && (*sp.Seed < 0 || *sp.Seed > MaxSeed):
		return &samplingError{"seed", fmt.Sprintf("%d is out of range 0..%d", *sp.Seed, MaxSeed)}
	}
	return nil
}
