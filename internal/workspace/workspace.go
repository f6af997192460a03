// Package workspace gives a task attempt a persistent, jailed working
// directory: a shell whose working directory and exported variables carry
// over from one call to the next, Python runs, file tools, and the diff of
// the workspace against its seed (the patch SWE-style training uses).
//
// # Layout
//
// A Manager owns one directory on the host (Config.Root); each Workspace is
// a directory beneath it:
//
//	<root>/mgr-<pid>-<id>/ws-<id>/
//	    seed/   the pristine copy of the seed (read-only to the jail, for the diff)
//	    live/   a tmpfs of Config.MaxBytes and Config.MaxFiles inodes (where the
//	            runtime may mount one; a plain directory otherwise), holding
//	        work/   bound read-write at /workspace: the agent's files
//	        state/  bound read-write at /adp-state: the shell's saved state
//
// Everything the jail may write is owned by the jail's outside uid
// (sandbox.Jail.Owner), so uid 65534 in the jail can write it.
//
// # Steps
//
// Every Bash or Python call is its own jail run (sandbox.Jail.Run), jailed
// as a single program is (uid 65534, no network, read-only root, rlimits,
// process cap, seccomp filter, bounded /tmp), with /workspace (the work
// directory, read-write) as its working directory and /adp-state (the
// shell's state, read-write) besides. A wrapper script, bash as the jail's
// pid 1, restores the state the previous call saved (its `export -p` and
// its working directory), runs the command with `eval`, and saves the state
// again when it exits. Because each call is one jail, whatever a call left
// running (a background process, a daemon that closed its output) dies with
// the call: the pid namespace ends with its init. A call that passes its
// timeout is killed with everything it started and returns what it printed
// so far with a timeout note; its changes to the working directory and the
// exports are lost (the next call starts from the state before it), the
// files it wrote stay.
//
// # The runtime's side
//
// File tools, the copy-in of seeds, size checks and cleanup never follow a
// path out of the workspace: they open beneath the workspace with os.Root
// (which refuses symlinks and ".." that lead out), check what they opened
// with fstat (regular files only: a FIFO could block the runtime), and
// never call os.ReadFile(filepath.Join(ws, userPath)). The diff runs in a
// jail (git diff --no-index of the seed against the work directory), so no
// path of the agent's is followed on the host at all.
//
// # Caps
//
// Config.MaxBytes and Config.MaxFiles bound the workspace: the tmpfs's
// size= and nr_inodes= enforce them in the kernel during a step (a write
// past them fails with ENOSPC); after the step the runtime sees the tmpfs
// full and the Observation carries ErrorType output_limit: the attempt
// ends there. RLIMIT_FSIZE bounds each file a step writes.
//
// Observations are bounded by Config.ObservationBytes: stdout and stderr
// keep their head and tail, the middle is cut with a marker.
package workspace

import (
	"context"
	"fmt"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/sandbox"
)

// Defaults of Config, the defaults of the sandbox runtime's variables
// (README, Configuration).
const (
	// DefaultMaxBytes is SANDBOX_WORKSPACE_MB's default in bytes.
	DefaultMaxBytes = 256 << 20
	// DefaultMaxFiles is SANDBOX_WORKSPACE_FILES's default: files and
	// directories of one workspace.
	DefaultMaxFiles = 20000
	// DefaultObservationBytes is SANDBOX_OBSERVATION_BYTES's default: what
	// a model sees of one step's output.
	DefaultObservationBytes = 16 << 10
	// DefaultMaxOpen is SANDBOX_MAX_WORKSPACES's default: workspaces open at once.
	DefaultMaxOpen = 8
	// DefaultStepTimeout is a step's timeout when the caller gives none.
	DefaultStepTimeout = 30 * time.Second
	// DefaultDiffBytes bounds Diff when it is given no bound.
	DefaultDiffBytes = 256 << 10
)

// Config configures a Manager. Zero fields take the defaults above.
type Config struct {
	// Root is the host directory where live workspaces are made (each
	// manager makes a directory of its own beneath it). Default:
	// $TMPDIR/adp-workspaces. It and its parents must be traversable by
	// the jail's uid.
	Root string
	// SeedRoot is where task `workspace` seeds live (WORKSPACE_ROOT,
	// default $OUTPUT_DIR/workspaces): Seed.From is a path beneath it.
	SeedRoot string
	// MaxBytes caps the bytes of one workspace (SANDBOX_WORKSPACE_MB).
	MaxBytes int64
	// MaxFiles caps its files and directories (SANDBOX_WORKSPACE_FILES).
	MaxFiles int
	// ObservationBytes bounds what a step's Observation keeps of its
	// output (SANDBOX_OBSERVATION_BYTES).
	ObservationBytes int
	// MaxOpen bounds the workspaces open at once (SANDBOX_MAX_WORKSPACES);
	// Open waits for a free one. It is separate from SANDBOX_CONCURRENCY,
	// which bounds the jails running at once: an open workspace holds no
	// jail while its model thinks.
	MaxOpen int
}

// Manager owns the workspaces of one runtime. It is safe for concurrent use.
type Manager struct {
	cfg    Config
	jail   sandbox.Jail
	limits sandbox.Limits
	slots  chan struct{}
}

// NewManager returns a manager whose steps run in jail (normally the
// runtime's sandbox.Limit'ed jail, so steps count against
// SANDBOX_CONCURRENCY) under limits (the wall limit of a step is its own
// timeout). It removes what managers of dead processes left under
// cfg.Root.
func NewManager(cfg Config, jail sandbox.Jail, limits sandbox.Limits) (*Manager, error) {
	return &Manager{cfg: cfg, jail: jail, limits: limits, slots: make(chan struct{}, max(cfg.MaxOpen, 1))}, nil
}

// Seed is what a workspace starts with: Files written over the copy of
// From.
type Seed struct {
	// Files maps relative paths (no "..", not absolute) to contents.
	Files map[string][]byte
	// From is a path relative to Config.SeedRoot: a directory, a .tar or a
	// .tar.gz, copied into the workspace (never modified in place).
	From string
}

// SeedError says why a seed cannot make a workspace: the task is invalid
// (a path out of the workspace, a missing seed, too large), as opposed to
// the runtime failing.
type SeedError struct {
	// Path is the offending path (a Files key, an entry of the tar, From).
	Path   string
	Reason string
}

func (e *SeedError) Error() string {
	return fmt.Sprintf("workspace seed %q: %s", e.Path, e.Reason)
}

// ToolError is a file tool's failure as the model should see it (no such
// file, a path out of the workspace, old text not found): an observation,
// not a system error. ErrorType is output_limit when the write would pass
// the workspace's caps (the attempt ends), empty otherwise.
type ToolError struct {
	Msg       string
	ErrorType core.ErrorType
}

func (e *ToolError) Error() string { return e.Msg }

// Open makes a workspace from seed. It waits for a free slot (MaxOpen) or
// ctx. A bad seed is a *SeedError; other errors are the runtime's.
func (m *Manager) Open(ctx context.Context, seed Seed) (*Workspace, error) {
	return nil, fmt.Errorf("workspace: not implemented yet")
}

// Workspace is one attempt's workspace. Its methods are not meant to be
// called concurrently, except Close, which ends a step in progress.
type Workspace struct {
	m *Manager
}

// Observation is what one Bash or Python step did, as the model sees it
// (String) and as the trajectory records it.
type Observation struct {
	// ExitCode is the command's exit status; 128+N when killed by signal N
	// (137 at a timeout).
	ExitCode int
	// Stdout and Stderr are the kept parts of the output: head and tail,
	// with a marker where the middle was cut (Truncated).
	Stdout, Stderr string
	// Duration is the step's wall time.
	Duration time.Duration
	// Cwd is the shell's working directory after the step, as the jail
	// sees it (/workspace/...).
	Cwd string
	// Truncated reports that part of the output was cut.
	Truncated bool
	// TimedOut reports that the step passed its timeout and was killed.
	TimedOut bool
	// ErrorType is set when the step must end the attempt: output_limit
	// when the workspace reached its size or file cap. Empty otherwise (a
	// failing command, a timeout and a cut output are observations).
	ErrorType core.ErrorType
	// Note says what the runtime did (timeout, output cut, cap reached), in
	// a sentence for the model; empty when nothing happened.
	Note string
}

// String is the text the model sees: a header line with the exit code,
// working directory and duration, stdout, stderr and the note, each
// labelled, bounded by the manager's ObservationBytes (plus the labels).
func (o Observation) String() string {
	return fmt.Sprintf("exit code %d", o.ExitCode)
}

// Bash runs command in the workspace's shell (see the package doc). A
// timeout of 0 means DefaultStepTimeout. The error is non-nil only when
// the jail itself failed or ctx ended; a failing command is an Observation.
func (w *Workspace) Bash(ctx context.Context, command string, timeout time.Duration) (Observation, error) {
	return Observation{}, fmt.Errorf("workspace: not implemented yet")
}

// Python runs code with python3 (reading the program from stdin, so
// tracebacks name "<stdin>") in the shell's working directory and
// environment; each call is a fresh interpreter. Otherwise like Bash.
func (w *Workspace) Python(ctx context.Context, code string, timeout time.Duration) (Observation, error) {
	return Observation{}, fmt.Errorf("workspace: not implemented yet")
}

// ReadFile returns lines [offset, offset+limit) of the file at path
// (relative to /workspace, or absolute beneath /workspace); limit 0 means
// to the end. The text is bounded by ObservationBytes (cut at the end with
// a note saying how to read on). Errors a model should see are *ToolError.
func (w *Workspace) ReadFile(path string, offset, limit int) (string, error) {
	return "", fmt.Errorf("workspace: not implemented yet")
}

// WriteFile creates or replaces the file at path with content, making
// parent directories. Errors a model should see are *ToolError.
func (w *Workspace) WriteFile(path, content string) error {
	return fmt.Errorf("workspace: not implemented yet")
}

// EditFile replaces the one occurrence of old in the file at path with
// new; no occurrence or several are a *ToolError.
func (w *Workspace) EditFile(path, old, new string) error {
	return fmt.Errorf("workspace: not implemented yet")
}

// Diff is the workspace's change against its seed.
type Diff struct {
	// Patch is a unified diff in git's format (a/ and b/ prefixes,
	// /dev/null for added and removed files, "Binary files ... differ"
	// for binary files, symlinks as mode 120000), without .git
	// directories. Applies with `git apply` or `patch -p1`.
	Patch string
	// Truncated reports that Patch was cut (at a file boundary where one
	// fits) to the bound given to Diff.
	Truncated bool
	// Files are the changed paths, relative to the workspace.
	Files []string
}

// Diff returns the workspace's diff against its seed, at most maxBytes of
// it (0: DefaultDiffBytes). It runs in a jail (hence ctx).
func (w *Workspace) Diff(ctx context.Context, maxBytes int) (Diff, error) {
	return Diff{}, fmt.Errorf("workspace: not implemented yet")
}

// Close kills what runs in the workspace, removes it, and frees its slot.
// It is safe to call more than once.
func (w *Workspace) Close() error {
	return nil
}
