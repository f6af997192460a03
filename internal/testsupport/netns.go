package testsupport

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Netns is a private network namespace (only loopback, up) holding one
// long-running shell command, and in which further commands run. Tests
// whose subject listens on fixed, documented addresses (127.0.0.1:6379,
// 127.0.0.1:8765) use it, so that they collide with nothing on the machine
// and nothing on the machine answers in their place.
type Netns struct {
	t      testing.TB
	dir    string
	env    []string
	cmd    *exec.Cmd
	exited chan struct{}
	// Stdout and Stderr of the long-running command.
	Stdout, Stderr *SyncBuffer
}

// StartInNetns runs the shell line cmd with bash in dir, in a new network
// namespace, with env as its whole environment, in a process group of its
// own. The test is skipped when namespaces cannot be created (not root). At
// cleanup the group is killed if it still runs.
func StartInNetns(t testing.TB, dir string, env []string, cmd string) *Netns {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) not found")
	}
	if out, err := exec.Command(unshare, "--net", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace (needs root): %v %s", err, out)
	}
	n := &Netns{t: t, dir: dir, env: env, exited: make(chan struct{}), Stdout: &SyncBuffer{}, Stderr: &SyncBuffer{}}
	// unshare execs bash, which brings loopback up and execs cmd's shell:
	// the namespace lives at the first process's pid for as long as it runs.
	n.cmd = exec.Command(unshare, "--net", "--", "bash", "-c", `ip link set lo up && exec bash -c "$1"`, "netns", cmd)
	n.cmd.Dir, n.cmd.Env = dir, env
	n.cmd.Stdout, n.cmd.Stderr = n.Stdout, n.Stderr
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start %q in a network namespace: %v", cmd, err)
	}
	go func() {
		_ = n.cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		if n.Running() {
			_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.exited
		}
	})
	return n
}

// Running reports whether the long-running command still runs.
func (n *Netns) Running() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Run runs the shell line cmd with bash in the namespace, in the same
// directory and environment, and returns its stdout, stderr and exit code.
func (n *Netns) Run(cmd string) (stdout, stderr string, code int) {
	n.t.Helper()
	if !n.Running() {
		n.t.Fatalf("cannot run %q: the namespace's command has exited: %s", cmd, n.Stderr.String())
	}
	c := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", n.cmd.Process.Pid), "--", "bash", "-c", cmd)
	c.Dir, c.Env = n.dir, n.env
	var o, e bytes.Buffer
	c.Stdout, c.Stderr = &o, &e
	err := c.Run()
	if err != nil && c.ProcessState == nil {
		n.t.Fatalf("run %q: %v", cmd, err)
	}
	return o.String(), e.String(), c.ProcessState.ExitCode()
}

// Interrupt sends SIGINT to the command's process group, as Ctrl-C in its
// terminal does, and returns its exit code, or fails the test when it has
// not exited within timeout.
func (n *Netns) Interrupt(timeout time.Duration) int {
	n.t.Helper()
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-n.exited:
		return n.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		n.t.Fatalf("still running %s after SIGINT", timeout)
		return -1
	}
}

// Wait waits up to timeout for the command to exit and returns its exit
// code, or fails the test.
func (n *Netns) Wait(timeout time.Duration) int {
	n.t.Helper()
	select {
	case <-n.exited:
		return n.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		n.t.Fatalf("still running after %s: %s", timeout, n.Stderr.String())
		return -1
	}
}

// CleanEnv is os.Environ without the variables named, as a new user's
// shell would have it.
func CleanEnv(drop ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, d := range drop {
			if k == d || (strings.HasSuffix(d, "*") && strings.HasPrefix(k, strings.TrimSuffix(d, "*"))) {
				keep = false
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return env
}
