package workspace

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/agentdataplatform/adp/internal/sandbox"
)

// benchManager is a manager on backend for a benchmark, with room for k
// workspaces at once.
func benchManager(b *testing.B, backend string, k int) *Manager {
	b.Helper()
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
	lim := sandbox.DefaultLimits()
	lim.Wall, lim.CPU = time.Minute, time.Minute
	m, err := NewManager(Config{Root: filepath.Join(base, "live"), MaxOpen: 2 * k}, j, lim)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// benchSetup is a setup that takes seconds, as installing a task's
// packages does: about 1.5 s of CPU (a Python loop) and 200 files
// written into the image's /usr/local.
const benchSetup = `python3 -c 'x = 0
for i in range(15_000_000): x += i
' && mkdir -p /usr/local/lib/pkg && for i in $(seq 1 200); do echo "V = $i" > /usr/local/lib/pkg/m$i.py; done && echo setup > setup.txt`

// The k attempts of one task (a GRPO group) whose setup takes seconds,
// started together, each running one step and taking its diff: with the
// setup run once and every attempt an overlay over its snapshot
// (OpenPrepared), against the setup run in every attempt (Open, setup,
// Snapshot). Both in an image environment with a writable root, which the
// setup installs into. Reported per arm: the wall time of the group and
// the CPU time of the runtime and its jails.
//
//	go test -run '^$' -bench PreparedAttempts -benchtime 1x ./internal/workspace/
func BenchmarkPreparedAttempts(b *testing.B) {
	const k = 8
	img := benchImage(b)
	for _, backend := range []string{sandbox.BackendNsjail, sandbox.BackendBwrap} {
		b.Run(backend, func(b *testing.B) {
			m := benchManager(b, backend, k)
			if !m.canMount() {
				b.Skip("this runtime cannot mount: no writable root, no overlay snapshots")
			}
			seed := Seed{Image: img, WritableRoot: true, Files: map[string][]byte{"main.py": []byte("print(1)\n")}}
			ctx := context.Background()
			attempt := func(w *Workspace) {
				obs, err := w.Bash(ctx, `cat setup.txt && ls /usr/local/lib/pkg | wc -l && echo change >> main.py`, 0)
				if err != nil || obs.Stdout != "setup\n200\n" {
					b.Fatalf("attempt step: %v %+v", err, obs)
				}
				d, err := w.Diff(ctx, 0)
				if err != nil || len(d.Files) != 1 {
					b.Fatalf("attempt diff: %v %+v", err, d)
				}
			}
			setup := func(ctx context.Context, w *Workspace) (any, error) {
				obs, err := w.Exec(ctx, benchSetup, time.Minute)
				if err == nil && obs.ExitCode != 0 {
					err = fmt.Errorf("setup: %+v", obs)
				}
				return nil, err
			}
			var setupTime time.Duration
			snapshotArm := func(round int) {
				key := fmt.Sprintf("bench-%d", round)
				group(b, k, func() {
					p, err := m.OpenPrepared(ctx, key, seed, setup)
					if err != nil {
						b.Fatal(err)
					}
					defer p.Workspace.Close()
					if !p.Reused {
						setupTime += p.SetupTime
					}
					attempt(p.Workspace)
				})
			}
			perAttemptArm := func() {
				group(b, k, func() {
					w, err := m.Open(ctx, seed)
					if err != nil {
						b.Fatal(err)
					}
					defer w.Close()
					if _, err := setup(ctx, w); err != nil {
						b.Fatal(err)
					}
					if err := w.Snapshot(ctx); err != nil {
						b.Fatal(err)
					}
					attempt(w)
				})
			}
			var snapWall, perWall, snapCPU, perCPU time.Duration
			b.ResetTimer()
			for i := range b.N {
				c0, t0 := cpuNow(), time.Now()
				snapshotArm(i)
				snapWall += time.Since(t0)
				c1, t1 := cpuNow(), time.Now()
				perAttemptArm()
				perWall += time.Since(t1)
				snapCPU += c1 - c0
				perCPU += cpuNow() - c1
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(setupTime.Seconds()/n, "setup-wall-s")
			b.ReportMetric(snapWall.Seconds()/n, "snapshot-wall-s")
			b.ReportMetric(perWall.Seconds()/n, "per-attempt-wall-s")
			b.ReportMetric(float64(perWall)/float64(snapWall), "per-attempt/snapshot")
			b.ReportMetric(snapCPU.Seconds()/n, "snapshot-cpu-s")
			b.ReportMetric(perCPU.Seconds()/n, "per-attempt-cpu-s")
		})
	}
}

// group runs fn k times at once and waits for them.
func group(b *testing.B, k int, fn func()) {
	var wg sync.WaitGroup
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	wg.Wait()
}

// The start of a workspace attempt: Open (seed copied, tmpfs mounted, and
// on an image its bash found, with a writable root its overlay mounted),
// a first step (`true`), Close; on the host's root, on an image's root,
// on an image's writable root, and over a post-setup snapshot (an image's
// writable root, the work directory and the root both overlays).
// Reported: the median of each.
//
//	go test -run '^$' -bench WorkspaceStart -benchtime 50x ./internal/workspace/
func BenchmarkWorkspaceStart(b *testing.B) {
	img := benchImage(b)
	for _, backend := range []string{sandbox.BackendNsjail, sandbox.BackendBwrap} {
		b.Run(backend, func(b *testing.B) {
			m := benchManager(b, backend, 4)
			ctx := context.Background()
			files := map[string][]byte{"main.py": []byte("print(1)\n"), "src/lib.py": []byte("X = 1\n")}
			arms := []struct {
				name string
				open func() (*Workspace, error)
			}{
				{"host-root", func() (*Workspace, error) { return m.Open(ctx, Seed{Files: files}) }},
				{"image-root", func() (*Workspace, error) { return m.Open(ctx, Seed{Files: files, Image: img}) }},
			}
			if m.canMount() {
				seed := Seed{Files: files, Image: img, WritableRoot: true}
				arms = append(arms,
					struct {
						name string
						open func() (*Workspace, error)
					}{"image-writable-root", func() (*Workspace, error) { return m.Open(ctx, seed) }},
					struct {
						name string
						open func() (*Workspace, error)
					}{"from-snapshot", func() (*Workspace, error) {
						p, err := m.OpenPrepared(ctx, "start", seed, func(ctx context.Context, w *Workspace) (any, error) {
							_, err := w.Exec(ctx, "mkdir -p /usr/local/lib/pkg && echo 1 > /usr/local/lib/pkg/a.py", 0)
							return nil, err
						})
						return p.Workspace, err
					}})
			}
			times := make([][]time.Duration, len(arms))
			run := func(i int) time.Duration {
				t0 := time.Now()
				w, err := arms[i].open()
				if err != nil {
					b.Fatal(err)
				}
				obs, err := w.Bash(ctx, "true", 0)
				if err != nil || obs.ExitCode != 0 {
					b.Fatalf("%s: %v %+v", arms[i].name, err, obs)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				return time.Since(t0)
			}
			for i := range arms {
				run(i) // the snapshot made, the image's pages read
			}
			b.ResetTimer()
			for range b.N {
				for i := range arms {
					times[i] = append(times[i], run(i))
				}
			}
			b.StopTimer()
			for i, a := range arms {
				slices.Sort(times[i])
				b.ReportMetric(float64(times[i][len(times[i])/2].Microseconds())/1000, a.name+"-ms")
			}
		})
	}
}

var (
	benchImageOnce sync.Once
	benchImg       *sandbox.Image
)

// benchImage is the benchmarks' image: python3, bash and coreutils, no
// working directory (the workspace at /workspace).
func benchImage(b *testing.B) *sandbox.Image {
	benchImageOnce.Do(func() {
		benchImg = testImage(b, v1.Config{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}})
	})
	if benchImg == nil {
		b.Fatal("the benchmark image could not be made")
	}
	return benchImg
}
