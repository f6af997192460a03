package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/sandbox"
)

// shellScript is the wrapper every step runs: bash as the jail's pid 1,
// reading its orders from stdin (a mode line, then the command or the
// program), restoring the shell's state saved by the previous step and
// saving it for the next. The state is `export -p` (sourced back) and the
// working directory, written as *.next; the runtime keeps them (renames them
// over env and cwd) only when the step ended by itself, so a step killed
// at its timeout leaves the state as it was before it.
//
// The first step starts with PYTHONDONTWRITEBYTECODE=1 exported (no
// __pycache__ in the diff); the agent may unset it.
//
// The command runs through eval in this shell, with stdin from /dev/null:
// its cd and export are the shell's own, and `exit N` ends the step with
// N (the EXIT trap saves the state first). A command that replaces the
// EXIT trap or execs another program ends the step without saving.
const shellScript = `IFS= read -r __adp_mode
IFS= read -r -d '' __adp_in
exec </dev/null
if [ "$__adp_mode" = exec ]; then
  export PYTHONDONTWRITEBYTECODE=1
  unset __adp_mode; eval "$__adp_in"; exit
fi
if [ -f ` + jailStateDir + `/env ]; then . ` + jailStateDir + `/env; else export PYTHONDONTWRITEBYTECODE=1; fi
__adp_cwd=` + jailDirMark + `
if [ -f ` + jailStateDir + `/cwd ]; then IFS= read -r -d '' __adp_cwd < ` + jailStateDir + `/cwd; fi
cd -- "$__adp_cwd" 2>/dev/null || cd ` + jailDirMark + `
unset __adp_cwd
__adp_save() {
  __adp_rc=$?
  export -n SANDBOX_RUN_ID
  export -p > ` + jailStateDir + `/env.next
  printf '%s' "$PWD" > ` + jailStateDir + `/cwd.next
  exit "$__adp_rc"
}
trap __adp_save EXIT
case $__adp_mode in
bash) unset __adp_mode; eval "$__adp_in" ;;
python) unset __adp_mode; printf '%s' "$__adp_in" | python3 -u - ;;
esac
`

// jailDirMark stands for the workspace's directory in the jail (JailDir,
// or an image's working directory) in the scripts; scriptIn puts it in.
const jailDirMark = "@ADP_WORKSPACE@"

// scriptIn is script with the workspace at dir in the jail (a clean
// absolute path of plain names: see workspaceDirIn), single-quoted.
func scriptIn(script, dir string) string {
	return strings.ReplaceAll(script, jailDirMark, "'"+dir+"'")
}

// shellArgv runs script with bash, no startup files, as `bash -c`, so that
// bash names itself "bash" in its messages.
func shellArgv(script string) []string {
	return bashArgv(defaultBash, script)
}

// defaultBash is bash on the host's root (and most images').
const defaultBash = "/bin/bash"

// bashArgv is shellArgv with the bash at path.
func bashArgv(path, script string) []string {
	return []string{path, "--norc", "--noprofile", "-c", script, "bash"}
}

// State files in the state directory.
const (
	stateEnv     = "env"
	stateCwd     = "cwd"
	stateNext    = ".next"
	maxStateFile = 1 << 20
)

// Bash runs command in the workspace's shell (see the package doc). A
// timeout of 0 means DefaultStepTimeout. The error is non-nil only when
// the jail itself failed or ctx ended; a failing command is an Observation.
func (w *Workspace) Bash(ctx context.Context, command string, timeout time.Duration) (Observation, error) {
	return w.step(ctx, "bash", command, timeout)
}

// Exec runs command in a fresh shell at /workspace: the shell's saved
// state (the agent's exports and working directory) is neither restored
// nor changed, so nothing the agent exported (a PATH to a fake python, say)
// reaches it. For setup commands (the hidden check runs with Verify);
// otherwise like Bash (jailed the same, the same caps; the files it writes
// stay).
func (w *Workspace) Exec(ctx context.Context, command string, timeout time.Duration) (Observation, error) {
	return w.step(ctx, "exec", command, timeout)
}

// Python runs code with python3 (reading the program from stdin, so
// tracebacks name "<stdin>") in the shell's working directory and
// environment; each call is a fresh interpreter. Otherwise like Bash.
func (w *Workspace) Python(ctx context.Context, code string, timeout time.Duration) (Observation, error) {
	return w.step(ctx, "python", code, timeout)
}

// errClosed is returned by a workspace's methods after Close.
var errClosed = errors.New("workspace: closed")

func (w *Workspace) step(ctx context.Context, mode, payload string, timeout time.Duration) (Observation, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Observation{}, errClosed
	}
	if timeout <= 0 {
		timeout = DefaultStepTimeout
	}
	ctx, stop := mergeCancel(ctx, w.ctx)
	defer stop()

	// Leftovers of a step that did not save.
	_ = w.state.Remove(stateEnv + stateNext)
	_ = w.state.Remove(stateCwd + stateNext)

	if why := w.rootBroken(); why != "" {
		// Not the jail's failure (a retry would meet the same root): the
		// agent's own doing ends its attempt.
		return Observation{ExitCode: -1, Cwd: w.cwd, ErrorType: core.ErrRuntime,
			Note: "the jail cannot start on the root as the commands left it (" + why + "): the attempt ends here"}, nil
	}
	lim := w.limits
	lim.Wall, lim.CPU = timeout, timeout
	lim.KeepOutputBytes = w.m.cfg.ObservationBytes
	res, err := w.m.jail.Run(ctx, sandbox.Request{
		Argv:  bashArgv(w.bash, scriptIn(shellScript, w.jailDir)),
		Stdin: []byte(mode + "\n" + payload),
		Binds: []sandbox.Bind{
			{Host: w.workHost, Jail: w.jailDir, Writable: true},
			{Host: w.hostPath(liveDir, stateDir), Jail: jailStateDir, Writable: true},
		},
		Dir:    w.jailDir,
		Limits: lim,
		Image:  w.image,
	})
	if err != nil {
		if w.ctx.Err() != nil {
			return Observation{}, errClosed
		}
		return Observation{}, fmt.Errorf("workspace %s step: %w", mode, err)
	}
	obs := Observation{ExitCode: res.ExitCode, Duration: res.Wall, Stdout: res.Stdout, Stderr: res.Stderr,
		Truncated: res.StdoutTruncated || res.StderrTruncated}
	var notes []string
	switch res.ErrorType {
	case core.ErrTimeout:
		obs.TimedOut = true
		limit := timeout.String()
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 0 && res.Wall < timeout {
			limit = res.Wall.Round(time.Millisecond).String() + " (the task's own time ran out)"
		}
		notes = append(notes, fmt.Sprintf("the command timed out after %s and was killed, with every process it started; "+
			"the shell goes on from the working directory and exported variables it had before this command", limit))
	case core.ErrOutputLimit:
		notes = append(notes, fmt.Sprintf("the command wrote more than %d bytes of output and was killed; the shell goes on from the state it had before this command", lim.MaxOutputBytes))
	default:
		if res.ProcessLimit { // (limits, issue 27) the jail's process count, sandbox.Limits.MaxProcs
			notes = append(notes, fmt.Sprintf("the command had more than %d processes at once and was killed, with every process it started; "+
				"the shell goes on from the state it had before this command", lim.MaxProcs))
			break
		}
		if mode != "exec" {
			w.keepState()
		}
	}
	if mode == "exec" {
		obs.Cwd = w.jailDir
	} else {
		w.cwd = w.readCwd()
		obs.Cwd = w.cwd
	}
	if note := w.checkCaps(); note != "" {
		obs.ErrorType = core.ErrOutputLimit
		notes = append(notes, note)
	}
	obs.Stdout, obs.Stderr, obs.Truncated = fitOutput(obs.Stdout, obs.Stderr, w.m.cfg.ObservationBytes, obs.Truncated)
	if obs.Truncated {
		notes = append(notes, "the middle of the output was cut")
	}
	obs.Note = strings.Join(notes, "; ")
	return obs, nil
}

// rootBroken says why a jail cannot start on a writable root as the
// steps left it (its bash removed, the image's user's /etc/passwd entry
// gone); empty when it can, and always on a root no step can write.
func (w *Workspace) rootBroken() string {
	if w.image == nil || !w.image.Writable {
		return ""
	}
	if err := sandbox.CheckImageRoot(w.image); err != nil {
		return err.Error()
	}
	r, err := os.OpenRoot(w.image.Root)
	if err != nil {
		return err.Error()
	}
	defer r.Close()
	if _, err := r.Lstat(w.bash[1:]); err != nil {
		return w.bash + " is gone"
	}
	return ""
}

// hostPath is a path of the workspace on the host.
func (w *Workspace) hostPath(elem ...string) string {
	return w.dir + "/" + strings.Join(elem, "/")
}

// keepState makes the state a step saved the shell's (renames env.next and
// cwd.next). Renames happen beneath the state root: whatever the jail put
// there, nothing outside is touched.
func (w *Workspace) keepState() {
	for _, f := range []string{stateEnv, stateCwd} {
		if _, err := w.state.Lstat(f + stateNext); err == nil {
			_ = w.state.Rename(f+stateNext, f)
		}
	}
}

// readCwd returns the shell's working directory as the last saved state
// says, the workspace's directory when there is none.
func (w *Workspace) readCwd() string {
	b, err := readRegular(w.state, stateCwd, 4096)
	if err != nil || len(b) == 0 {
		return w.jailDir
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// checkCaps returns a note for the model when the workspace reached its
// size or file cap, empty otherwise.
func (w *Workspace) checkCaps() string {
	cfg := w.m.cfg
	if w.tmpfs {
		isFull, err := full(w.hostPath(liveDir))
		if err != nil || !isFull {
			return ""
		}
	} else {
		bytes, files, err := usage(w.ctx, w.work)
		if err != nil || (bytes <= w.maxBytes && files <= cfg.MaxFiles) {
			return ""
		}
	}
	return fmt.Sprintf("the workspace reached its cap (%d MiB, %d files and directories): the attempt ends here", w.maxBytes>>20, cfg.MaxFiles)
}

// mergeCancel returns a context that ends with ctx or with other.
func mergeCancel(ctx, other context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(other, func() { cancel(errClosed) })
	return ctx, func() { stop(); cancel(nil) }
}
