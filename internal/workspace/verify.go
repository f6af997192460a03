package workspace

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/sandbox"
)

// The verify step runs a task's hidden check (test_command, with its
// test_files) from a state the agent cannot have prepared for it, and
// passes it only on positive evidence that the check ran to its end.
//
//   - A fresh jail and a fresh shell: none of the agent's exports, working
//     directory or shell state; /tmp empty.
//   - The hidden test files read-only at /tests, copied in for this step
//     alone; /logs with /logs/verifier (the Harbor layout's reward
//     directory) and the runtime's /logs/.adp (its sitecustomize and the
//     records) made for this step alone, in the workspace's tmpfs
//     (bounded), where no earlier step could write.
//   - The repository as setup left it: the work directory's .git is
//     replaced by the copy of the base's (none when the base had none),
//     so a hook, core.fsmonitor, a config or a commit of edited tests the
//     agent left in .git is gone; git reads no system or global config,
//     and core.hooksPath=/dev/null and core.fsmonitor=false come from the
//     environment, above any repository's config.
//   - Python reads no bytecode of the workspace (PYTHONPYCACHEPREFIX, a
//     fresh directory of /tmp, so no .pyc stamped with a source's mtime and
//     size, nor a __pycache__ symlinked into .git, is loaded) and writes
//     none; the working directory and a script's directory are not first
//     on sys.path (PYTHONSAFEPATH): the runtime's sitecustomize appends the
//     working directory last, so the standard library and installed
//     packages (unittest, pytest) come before any workspace file of the
//     same name (unittest.py, pytest.py, sitecustomize.py); no user site
//     (PYTHONNOUSERSITE). importlib.metadata finds no distribution under
//     the workspace, so the runner loads no entry point of the agent's (a
//     pytest11 plugin that reports every test passed).
//   - Every Python interpreter the check starts records its start and its
//     normal end (an atexit hook registered before any other, so run
//     last) in /logs/.adp; one that started and never reached its end
//     (os._exit, an atexit hook that exits, exec, a signal) fails the
//     check, as does one that saw unittest's TestCase or TestResult
//     methods replaced by code outside the standard library.
//   - The shell writes a nonce it read from its stdin, which no program it
//     runs can see (no /proc in the jail), with the check's exit status,
//     after the check returned; the runtime reads it back.
//   - The check may write its reward the Harbor way: a number in
//     /logs/verifier/reward.txt, or named numbers (a JSON object) in
//     /logs/verifier/reward.json, not both. The scalar reward is
//     reward.txt's number, or reward.json's "reward" when it has one,
//     else the mean of its values (ScalarReward); the check passes only
//     when it is at least RewardThreshold. The files are read only when
//     the records above show the check ran to its end with exit status 0:
//     written inside the jail by code the agent may have shaped, they are
//     evidence only together with those records.
//
// Code of the agent's that the check imports runs in the same process as
// the check: it can do what the check can, write the records and the
// reward file included. The records are evidence against ending a check
// early or shadowing it, not against code written to forge them.

// Where the verify step's directories appear in the jail.
const (
	jailTestsDir   = "/tests"
	jailLogsDir    = "/logs"
	recordDir      = ".adp"
	jailRecordDir  = jailLogsDir + "/" + recordDir
	rewardFile     = "verifier/reward.txt"
	rewardJSONFile = "verifier/reward.json"
	maxRewardBytes = 64 << 10
	recordPython   = "python"
	recordDone     = "done"
	verifyDirName  = "verify"
	maxRecordBytes = 1 << 20
)

//go:embed verify_site.py
var verifySite []byte

// verifyScript is the verify step's wrapper: its stdin holds the nonce on
// the first line, then the command.
const verifyScript = `IFS= read -r __adp_nonce
IFS= read -r -d '' __adp_in
exec </dev/null
export HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONPYCACHEPREFIX=/tmp/.adp-pycache PYTHONSAFEPATH=1 PYTHONNOUSERSITE=1 PYTHONPATH=` + jailRecordDir + `
export ADP_VERIFY_RECORDS=` + jailRecordDir + `/` + recordPython + ` ADP_VERIFY_WORKSPACE="$PWD"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_COUNT=3
export GIT_CONFIG_KEY_0=core.hooksPath GIT_CONFIG_VALUE_0=/dev/null
export GIT_CONFIG_KEY_1=core.fsmonitor GIT_CONFIG_VALUE_1=false
export GIT_CONFIG_KEY_2=core.untrackedCache GIT_CONFIG_VALUE_2=false
( unset __adp_nonce; eval "$__adp_in" )
__adp_rc=$?
printf '%s %d\n' "$__adp_nonce" "$__adp_rc" > ` + jailRecordDir + `/` + recordDone + `
exit $__adp_rc
`

// Check is a task's hidden check.
type Check struct {
	// Command is the shell command (test_command), run at /workspace.
	Command string
	// TestFiles are the hidden test files, by relative path, read-only at
	// /tests. A file whose content starts with "#!" is executable.
	TestFiles map[string][]byte
	// Timeout bounds the step (0: DefaultStepTimeout).
	Timeout time.Duration
}

// Verdict is what the verify step found.
type Verdict struct {
	Observation
	// Passed: the command exited 0 and every piece of evidence holds.
	Passed bool
	// Reason says why the check did not pass when its exit status alone
	// would not tell (no completion record, an interpreter that did not
	// reach its end, a reward file that is not 1); empty otherwise.
	Reason string
	// Tampered: an interpreter saw the test framework replaced.
	Tampered bool
	// Rewards are the numbers the check wrote to reward.txt (named
	// "reward") or reward.json, read only when the check ran to its end
	// with exit status 0; nil when it wrote neither or did not.
	Rewards map[string]float64
	// Reward is ScalarReward(Rewards) when Rewards is not nil.
	Reward *float64
}

// RewardThreshold is the scalar reward a check's reward file must reach
// for the check to pass.
const RewardThreshold = 1.0

// ScalarReward is the one reward of a reward file's named numbers: the
// value of "reward" when there is one (reward.txt's number is recorded
// under that name), else the mean of the values. ok is false when there
// are none.
func ScalarReward(rewards map[string]float64) (r float64, ok bool) {
	if len(rewards) == 0 {
		return 0, false
	}
	if r, ok := rewards["reward"]; ok {
		return r, true
	}
	names := make([]string, 0, len(rewards))
	for k := range rewards {
		names = append(names, k)
	}
	sort.Strings(names) // a fixed order: the same sum on every run
	var sum float64
	for _, k := range names {
		sum += rewards[k]
	}
	return sum / float64(len(names)), true
}

// Verify runs check as described above. The error is non-nil only when
// the jail itself failed or ctx ended.
func (w *Workspace) Verify(ctx context.Context, check Check) (Verdict, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Verdict{}, errClosed
	}
	timeout := check.Timeout
	if timeout <= 0 {
		timeout = DefaultStepTimeout
	}
	ctx, stop := mergeCancel(ctx, w.ctx)
	defer stop()

	ro := w.hostPath(verifyDirName) // the tests
	rw := w.hostPath(liveDir, verifyDirName)
	// Nothing is mounted beneath them: os.RemoveAll, not removeTree, which
	// reads the mount table.
	for _, d := range []string{ro, rw} {
		_ = os.RemoveAll(d)
	}
	defer func() {
		_ = os.RemoveAll(ro)
		_ = os.RemoveAll(rw)
	}()
	if err := w.prepareVerify(ctx, ro, rw, check.TestFiles); err != nil {
		if ctx.Err() != nil {
			return Verdict{}, fmt.Errorf("workspace verify: %w", context.Cause(ctx))
		}
		// What the agent left can make this fail (a full tmpfs, a .git
		// the runtime cannot remove): a check that did not run, not a
		// failure of the runtime to retry.
		why := "the check could not be prepared: " + err.Error()
		return Verdict{Observation: Observation{ExitCode: -1, Cwd: w.jailDir, Note: why}, Reason: why}, nil
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return Verdict{}, err
	}
	nonceHex := hex.EncodeToString(nonce)

	// Each bind costs the jail a mount: /tests only when there are tests.
	binds := []sandbox.Bind{
		{Host: w.workHost, Jail: w.jailDir, Writable: true},
		{Host: rw, Jail: jailLogsDir, Writable: true},
	}
	if len(check.TestFiles) > 0 {
		binds = append(binds, sandbox.Bind{Host: ro, Jail: jailTestsDir})
	}
	lim := w.limits
	lim.Wall, lim.CPU = timeout, timeout
	lim.KeepOutputBytes = w.m.cfg.ObservationBytes
	// On a writable root, the root setup left, not the agent's.
	img, unmount, err := w.verifyRoot()
	if err != nil {
		return Verdict{}, fmt.Errorf("workspace verify: %w", err)
	}
	defer unmount()
	res, err := w.m.jail.Run(ctx, sandbox.Request{
		Argv:   bashArgv(w.bash, verifyScript),
		Stdin:  []byte(nonceHex + "\n" + check.Command),
		Binds:  binds,
		Dir:    w.jailDir,
		Limits: lim,
		Image:  img,
	})
	if err != nil {
		if w.ctx.Err() != nil {
			return Verdict{}, errClosed
		}
		return Verdict{}, fmt.Errorf("workspace verify: %w", err)
	}
	v := Verdict{Observation: Observation{ExitCode: res.ExitCode, Duration: res.Wall, Stdout: res.Stdout, Stderr: res.Stderr,
		Truncated: res.StdoutTruncated || res.StderrTruncated, Cwd: w.jailDir}}
	var notes []string
	switch res.ErrorType {
	case core.ErrTimeout:
		v.TimedOut = true
		notes = append(notes, fmt.Sprintf("the check timed out after %s and was killed", timeout))
	case core.ErrOutputLimit:
		notes = append(notes, fmt.Sprintf("the check wrote more than %d bytes of output and was killed", lim.MaxOutputBytes))
	}
	if note := w.checkCaps(); note != "" {
		v.ErrorType = core.ErrOutputLimit
		notes = append(notes, note)
	}
	v.Stdout, v.Stderr, v.Truncated = fitOutput(v.Stdout, v.Stderr, w.m.cfg.ObservationBytes, v.Truncated)
	if v.Truncated {
		notes = append(notes, "the middle of the output was cut")
	}
	if res.ErrorType == core.ErrNone && v.ErrorType == core.ErrNone {
		v.Reason, v.Tampered, v.Rewards = w.evidence(rw, nonceHex)
		if r, ok := ScalarReward(v.Rewards); ok {
			v.Reward = &r
		}
		v.Passed = v.Reason == ""
		if v.Reason != "" {
			notes = append(notes, v.Reason)
		}
	}
	v.Note = strings.Join(notes, "; ")
	return v, nil
}

// prepareVerify makes the verify step's directories: ro (read-only to the
// jail: the tests, when there are any) and rw (/logs, in the live tmpfs:
// verifier/, and .adp/ with the runtime's sitecustomize beside the records
// it writes), and puts the base's .git in the work directory.
func (w *Workspace) prepareVerify(ctx context.Context, ro, rw string, tests map[string][]byte) error {
	if len(tests) > 0 {
		if err := os.Mkdir(ro, 0o755); err != nil {
			return err
		}
		testsRoot, err := os.OpenRoot(ro)
		if err != nil {
			return err
		}
		defer testsRoot.Close()
		names := make([]string, 0, len(tests))
		for name := range tests {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			p, ok := localPath(name)
			if !ok {
				return fmt.Errorf("test file %q: not a relative path without ..", name)
			}
			data := tests[name]
			perm := fs.FileMode(0o644)
			if bytes.HasPrefix(data, []byte("#!")) {
				perm = 0o755
			}
			if err := writeFile(testsRoot, p, data, perm, owner{}); err != nil {
				return fmt.Errorf("test file %q: %w", name, err)
			}
		}
	}
	for _, d := range []string{rw, filepath.Join(rw, "verifier"), filepath.Join(rw, recordDir)} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		if w.m.owner.chown {
			if err := os.Chown(d, w.m.owner.uid, w.m.owner.gid); err != nil {
				return err
			}
		}
	}
	// The check may rewrite it: code the check runs can do whatever the
	// check does anyway; no step before it can reach it.
	if err := os.WriteFile(filepath.Join(rw, recordDir, "sitecustomize.py"), verifySite, 0o644); err != nil {
		return err
	}
	return w.restoreGit(ctx)
}

// restoreGit replaces the work directory's .git with the base's copy (or
// removes it when the base has none).
func (w *Workspace) restoreGit(ctx context.Context) error {
	if err := w.work.RemoveAll(".git"); err != nil {
		return fmt.Errorf("removing the workspace's .git: %w", err)
	}
	st, err := w.base.Lstat(".git")
	if err != nil || !st.IsDir() {
		return nil
	}
	if err := w.work.Mkdir(".git", 0o755); err != nil {
		return err
	}
	src, err := w.base.OpenRoot(".git")
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := w.work.OpenRoot(".git")
	if err != nil {
		return err
	}
	defer dst.Close()
	if err := chownRoot(dst, w.m.owner); err != nil {
		return err
	}
	cp := copier{o: w.m.owner, caps: unbounded(), anyLink: true}
	return cp.tree(ctx, src, dst)
}

// chownRoot gives root's own directory to o.
func chownRoot(root *os.Root, o owner) error {
	d, err := rootDir(root)
	if err != nil {
		return err
	}
	defer d.Close()
	return o.fchown(d)
}

// evidence reads what the verify step left in rw and says why it is not
// a pass (empty when it is), whether tampering was seen, and the rewards
// the check wrote when it ran to its end.
func (w *Workspace) evidence(rw, nonce string) (reason string, tampered bool, rewards map[string]float64) {
	root, err := os.OpenRoot(rw)
	if err != nil {
		return "the runtime could not read the check's records: " + err.Error(), false, nil
	}
	defer root.Close()
	done, err := readRegular(root, recordDir+"/"+recordDone, 4096)
	if err != nil || string(done) != nonce+" 0\n" {
		return "the check left no record of its completion (the shell did not reach the end of the command)", false, nil
	}
	recs, err := readRegular(root, recordDir+"/"+recordPython, maxRecordBytes)
	if err != nil && !os.IsNotExist(err) {
		return "the check's interpreter records are unreadable: " + err.Error(), false, nil
	}
	if why, bad := pythonRecords(string(recs)); why != "" {
		return why, bad, nil
	}
	rewards, why := readRewards(root)
	if why != "" {
		return why, false, nil
	}
	if r, ok := ScalarReward(rewards); ok && !(r >= RewardThreshold) {
		return fmt.Sprintf("the check's reward is %s, below %s", strconv.FormatFloat(r, 'g', -1, 64), strconv.FormatFloat(RewardThreshold, 'g', -1, 64)), false, rewards
	}
	return "", false, rewards
}

// readRewards reads reward.txt or reward.json from the verify step's
// /logs: nil when there is neither; why is non-empty when a file is
// unreadable, malformed, not a finite number, or both are there.
func readRewards(root *os.Root) (rewards map[string]float64, why string) {
	txtPath, jsonPath := jailLogsDir+"/"+rewardFile, jailLogsDir+"/"+rewardJSONFile
	txt, terr := readRegular(root, rewardFile, maxRewardBytes)
	js, jerr := readRegular(root, rewardJSONFile, maxRewardBytes)
	switch {
	case terr != nil && !os.IsNotExist(terr):
		return nil, "the reward file " + txtPath + " is unreadable: " + terr.Error()
	case jerr != nil && !os.IsNotExist(jerr):
		return nil, "the reward file " + jsonPath + " is unreadable: " + jerr.Error()
	case terr == nil && jerr == nil:
		return nil, "the check wrote both " + txtPath + " and " + jsonPath + "; one reward, one file"
	case terr == nil:
		r, err := strconv.ParseFloat(strings.TrimSpace(string(txt)), 64)
		if err != nil || math.IsNaN(r) || math.IsInf(r, 0) {
			return nil, fmt.Sprintf("the reward file %s reads %q, not a finite number", txtPath, clip(strings.TrimSpace(string(txt)), 40))
		}
		return map[string]float64{"reward": r}, ""
	case jerr == nil:
		var raw map[string]json.Number
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil || dec.More() {
			return nil, fmt.Sprintf("the reward file %s is not a JSON object of numbers: %q", jsonPath, clip(strings.TrimSpace(string(js)), 80))
		}
		if len(raw) == 0 {
			return nil, "the reward file " + jsonPath + " names no reward"
		}
		out := make(map[string]float64, len(raw))
		for k, n := range raw {
			f, err := n.Float64()
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Sprintf("the reward file %s: %q is not a finite number", jsonPath, clip(k, 40))
			}
			out[k] = f
		}
		return out, ""
	}
	return nil, ""
}

// pythonRecords checks the interpreters' records: every "start PID" has
// its "end PID", and no "tampered PID WHAT".
func pythonRecords(recs string) (reason string, tampered bool) {
	open := map[string]bool{}
	var order []string
	for _, line := range strings.Split(recs, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "start":
			if !open[f[1]] {
				order = append(order, f[1])
			}
			open[f[1]] = true
		case "end":
			delete(open, f[1])
		case "tampered":
			return "a Python interpreter of the check saw the test framework replaced by code outside the standard library: " +
				clip(strings.Join(f[2:], " "), 200), true
		}
	}
	for _, pid := range order {
		if open[pid] {
			return fmt.Sprintf("a Python interpreter of the check (pid %s in the jail) ended without finishing (os._exit, an exit from an atexit hook, exec or a signal): its tests did not run to their end", pid), false
		}
	}
	return "", false
}
