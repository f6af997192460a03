package prompt

import (
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
)

// WorkspaceSystem is the system prompt of a workspace task (files,
// workspace, setup, test_command): the agent works in a directory over many
// steps.
const WorkspaceSystem = `You are a careful software engineering agent working in a sandboxed workspace: a directory that persists across your tool calls, without network access. Use bash to run shell commands (the working directory and exported variables carry over from one call to the next), python to run Python 3 code, and read_file, write_file and edit_file to look at and change files (paths relative to the workspace). Each call returns its exit code, output and working directory; long output is cut in the middle. Work step by step: inspect, change, run, check. When the task is done, call finish with a short summary of what you did.`

// WorkspaceTask is what the user prompt of a workspace task says of it.
type WorkspaceTask struct {
	Description string
	// Checked: the task has a test_command (never quoted: the grader is
	// not in the prompt).
	Checked bool
}

// WorkspaceUser is the user prompt of a workspace task.
func WorkspaceUser(t WorkspaceTask) string {
	user := "Task: " + t.Description + "\n\nThe workspace is your working directory."
	if t.Checked {
		user += " When you finish, the result will be checked automatically by tests you are not shown."
	}
	return user
}

// The workspace tools, one per action of a workspace task (core's
// CodeAction names; their arguments are ParseCodeAction's).
var (
	Bash = llm.NewTool(core.CodeActionBash,
		"Run a command in a persistent bash shell in the workspace; the working directory and exported variables carry over between calls. A command that passes its timeout is killed (with what it started) and its output so far returned; the shell goes on.",
		`{"type":"object","properties":{"command":{"type":"string","description":"The shell command."},"timeout":{"type":"integer","description":"Seconds before the command is killed (default: the runtime's)."}},"required":["command"]}`)
	Python = llm.NewTool(core.CodeActionPython,
		"Run Python 3 code in the workspace and return its exit code, stdout and stderr.",
		`{"type":"object","properties":{"code":{"type":"string","description":"The Python 3 program."},"timeout":{"type":"integer","description":"Seconds before it is killed (default: the runtime's)."}},"required":["code"]}`)
	ReadFile = llm.NewTool(core.CodeActionReadFile,
		"Read a text file of the workspace, or a range of its lines.",
		`{"type":"object","properties":{"path":{"type":"string","description":"Path relative to the workspace."},"offset":{"type":"integer","description":"The first line to read, counting from 0 (default 0)."},"limit":{"type":"integer","description":"How many lines to read at most (default: to the end)."}},"required":["path"]}`)
	WriteFile = llm.NewTool(core.CodeActionWriteFile,
		"Create or overwrite a file of the workspace with the given content (parent directories are created).",
		`{"type":"object","properties":{"path":{"type":"string","description":"Path relative to the workspace."},"content":{"type":"string","description":"The whole new content."}},"required":["path","content"]}`)
	EditFile = llm.NewTool(core.CodeActionEditFile,
		"Replace exactly one occurrence of old with new in a file of the workspace; it fails if old occurs zero or several times (then give more context).",
		`{"type":"object","properties":{"path":{"type":"string","description":"Path relative to the workspace."},"old":{"type":"string","description":"The exact text to replace; it must occur exactly once."},"new":{"type":"string","description":"The replacement."}},"required":["path","old","new"]}`)
	Finish = llm.NewTool(core.CodeActionFinish,
		"Finish the task: call it when you are done.",
		`{"type":"object","properties":{"answer":{"type":"string","description":"A short summary of what you did, or the answer the task asks for."}}}`)
)

// WorkspaceTools are the tools offered to the model on a workspace task, in
// the order offered.
var WorkspaceTools = []llm.Tool{Bash, Python, ReadFile, WriteFile, EditFile, Finish}
