package testsupport

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// BuildBinaries builds cmd/dispatcher, cmd/sandbox-runtime, cmd/web-runtime
// and cmd/adpctl once per test process and returns the directory holding
// them. Tests that run the real binaries as processes use it.
func BuildBinaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, ok := repoRoot()
		if !ok {
			buildErr = fmt.Errorf("repository root not found")
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "adp-bin-")
		if buildErr != nil {
			return
		}
		for _, b := range []string{"dispatcher", "sandbox-runtime", "web-runtime", "adpctl"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, b), "./cmd/"+b)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("build binaries: %v", buildErr)
	}
	return buildDir
}

// Service is one of the platform's binaries running as a process.
type Service struct {
	Name        string
	MetricsAddr string // 127.0.0.1:port
	LogPath     string

	t      testing.TB
	bin    string
	env    []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartService runs bin (a path from BuildBinaries) with env added to the
// test's environment and METRICS_ADDR on a free loopback port, waits for
// /healthz to answer 200 (unless wait is false), and stops it at cleanup.
func StartService(t testing.TB, bin string, env []string, wait bool) *Service {
	t.Helper()
	s := &Service{
		Name: filepath.Base(bin), t: t, bin: bin, env: env,
		MetricsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
	}
	s.LogPath = filepath.Join(t.TempDir(), s.Name+".log")
	s.Start(wait)
	t.Cleanup(func() { s.Stop(10 * time.Second) })
	return s
}

// Start (re)starts the process with the same environment and port.
func (s *Service) Start(wait bool) {
	s.t.Helper()
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd = exec.Command(s.bin)
	s.cmd.Env = append(append(os.Environ(), s.env...), "METRICS_ADDR="+s.MetricsAddr)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.Name, err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); logf.Close(); close(exited) }(s.cmd)
	if wait {
		s.WaitHealthy(60 * time.Second)
	}
}

// WaitHealthy waits until /healthz answers 200.
func (s *Service) WaitHealthy(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if s.Healthz() == http.StatusOK {
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("%s exited while starting:\n%s", s.Name, s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s not healthy after %s:\n%s", s.Name, timeout, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Healthz returns the status code of GET /healthz (0 when unreachable).
func (s *Service) Healthz() int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + s.MetricsAddr + "/healthz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Metrics returns the text of GET /metrics.
func (s *Service) Metrics() string {
	resp, err := http.Get("http://" + s.MetricsAddr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

// Running reports whether the process is alive.
func (s *Service) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to the process group (a crash) and waits for it.
func (s *Service) Kill() {
	if !s.Running() {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// Stop sends SIGTERM and waits up to grace, then kills the group.
func (s *Service) Stop(grace time.Duration) {
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(grace):
		s.t.Logf("%s did not stop within %s; killing it", s.Name, grace)
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// Signal sends sig to the process.
func (s *Service) Signal(sig syscall.Signal) { _ = s.cmd.Process.Signal(sig) }

// Wait waits for the process to exit and returns its exit code.
func (s *Service) Wait(timeout time.Duration) (int, bool) {
	select {
	case <-s.exited:
		return s.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// Log returns the process's log so far.
func (s *Service) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// RemoveBinaries deletes what BuildBinaries built. Call it from TestMain
// after m.Run: the directory is shared by the package's tests.
func RemoveBinaries() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}
