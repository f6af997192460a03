package sandbox

import (
	"context"
	"os/exec"
	"syscall"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

// floodLauncher runs a command that writes without end, in place of a jail:
// the shared run loop's output cap is exercised without any backend.
type floodLauncher struct{}

func (floodLauncher) command(Limits, string, runSpec, string) (*launch, error) {
	cmd := exec.Command("yes", "flood")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return &launch{cmd: cmd}, nil
}
func (floodLauncher) stop(r *running)                                      { _ = r.cmd.Process.Kill() }
func (floodLauncher) launchFailure(outcome, string, []byte) (string, bool) { return "", false }
func (floodLauncher) memoryKill() bool                                     { return false }
func (floodLauncher) interpreter() interpreter                             { return interpreter{path: DefaultPythonPath} }
func (floodLauncher) owner() (int, int)                                    { return jailUID, jailUID }

// TestOutputCapKillsBeforeRunReturns: a reader that passes the output cap
// at once kills the jail through its launcher. Everything the readers use
// must be set before they start (a nil launcher here is a crash, and
// `go test -race` reports the unsynchronized write).
func TestOutputCapKillsBeforeRunReturns(t *testing.T) {
	if _, err := exec.LookPath("yes"); err != nil {
		t.Skip("no yes(1)")
	}
	j := &jail{name: "flood", l: floodLauncher{}}
	lim := testLimits()
	lim.MaxOutputBytes = 1
	for range 20 {
		res, err := j.Run(context.Background(), Request{Code: "x", Limits: lim})
		if err != nil {
			t.Fatal(err)
		}
		if res.ErrorType != core.ErrOutputLimit {
			t.Fatalf("result %s %q, want output_limit", res.ErrorType, res.ErrorMessage)
		}
	}
}
