package workspace

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/sandbox"
)

// The cost of one bash step in a live workspace (a jail run restoring and
// saving the shell's state, the cap check, the observation) against the
// same command run by a bare `bash -c` in a directory of the same files,
// alternating within each iteration so that both see the same load.
// Reported: the median wall time of each and their ratio, and the CPU time
// per step of each (getrusage: the test process, which is the runtime's
// side, plus every reaped child, which is the jail's supervisor and the
// jailed processes; the kernel's own workers are not counted). A third arm,
// the same command in a plain jail run (no workspace, no shell state: a
// bash -c in the jail's /tmp), shows what of a step is the jail's own cost.
//
//	go test -run '^$' -bench BashStep -benchtime 200x ./internal/workspace/

const benchCommand = `cd src && grep -c def main.py && export N=$((N + 1)) && echo "$N" > /dev/null`

func BenchmarkBashStep(b *testing.B) {
	for _, backend := range []string{sandbox.BackendNsjail, sandbox.BackendBwrap} {
		b.Run(backend, func(b *testing.B) {
			j, err := sandbox.New(backend, sandbox.Config{})
			if err != nil {
				b.Skipf("%s: %v", backend, err)
			}
			base := b.TempDir()
			for _, d := range []string{filepath.Dir(base), base} {
				if err := os.Chmod(d, 0o711); err != nil {
					b.Fatal(err)
				}
			}
			m, err := NewManager(Config{Root: filepath.Join(base, "live")}, j, sandbox.DefaultLimits())
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			files := map[string][]byte{"src/main.py": []byte("def f():\n    return 1\n")}
			w, err := m.Open(context.Background(), Seed{Files: files})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			bareDir := filepath.Join(base, "bare")
			if err := os.MkdirAll(filepath.Join(bareDir, "src"), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(bareDir, "src/main.py"), files["src/main.py"], 0o644); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			step := func() {
				// Back to the top each time: the command cds into src.
				obs, err := w.Bash(ctx, "cd /workspace && "+benchCommand, 0)
				if err != nil || obs.ExitCode != 0 || obs.Stdout != "1\n" {
					b.Fatalf("step: %v %+v", err, obs)
				}
			}
			bare := func() {
				cmd := exec.Command("/bin/bash", "--norc", "--noprofile", "-c", benchCommand)
				cmd.Dir = bareDir
				out, err := cmd.Output()
				if err != nil || string(out) != "1\n" {
					b.Fatalf("bare: %v %q", err, out)
				}
			}
			// The same command in a jail with neither workspace nor state:
			// what of a step is the jail's own cost.
			jailed := func() {
				res, err := j.Run(ctx, sandbox.Request{Argv: []string{"/bin/bash", "--norc", "--noprofile", "-c", "mkdir -p src && echo 'def f():' > src/main.py && " + benchCommand}})
				if err != nil || res.Stdout != "1\n" {
					b.Fatalf("jailed: %v %+v", err, res)
				}
			}
			step()
			bare()
			jailed()
			var st, bt, jt []time.Duration
			var sCPU, bCPU, jCPU time.Duration
			b.ResetTimer()
			for range b.N {
				c0 := cpuNow()
				t0 := time.Now()
				step()
				st = append(st, time.Since(t0))
				c1 := cpuNow()
				t0 = time.Now()
				bare()
				bt = append(bt, time.Since(t0))
				c2 := cpuNow()
				t0 = time.Now()
				jailed()
				jt = append(jt, time.Since(t0))
				sCPU += c1 - c0
				bCPU += c2 - c1
				jCPU += cpuNow() - c2
			}
			b.StopTimer()
			slices.Sort(st)
			slices.Sort(bt)
			slices.Sort(jt)
			sm, bm := st[len(st)/2], bt[len(bt)/2]
			b.ReportMetric(float64(jt[len(jt)/2].Nanoseconds()), "jail-median-ns")
			b.ReportMetric(float64(jCPU.Nanoseconds())/float64(b.N), "jail-cpu-ns")
			b.ReportMetric(float64(sm.Nanoseconds()), "step-median-ns")
			b.ReportMetric(float64(bm.Nanoseconds()), "bare-median-ns")
			b.ReportMetric(float64(sm)/float64(bm), "step/bare")
			b.ReportMetric(float64(sCPU.Nanoseconds())/float64(b.N), "step-cpu-ns")
			b.ReportMetric(float64(bCPU.Nanoseconds())/float64(b.N), "bare-cpu-ns")
			b.ReportMetric(float64(sCPU)/float64(max(bCPU, 1)), "step/bare-cpu")
		})
	}
}

// cpuNow is the CPU time of this process and its reaped children.
func cpuNow() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}
