package localrun_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/localrun"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// TestHarborDataset runs the Harbor dataset directory
// examples/harbor-images (three tasks whose Dockerfiles build on
// debian:bookworm-slim) as `make run TASKS=DIR`
// does: localrun maps it, the host's engine builds each image once into
// SANDBOX_IMAGE_ARCHIVES, the dispatcher is given the directory itself,
// and the sandbox runtime imports each archive into its image store and
// runs the task in it. With HARBOR_AGENT=oracle every task succeeds with
// reward 1; with HARBOR_AGENT=noop every one fails with reward 0 (the same
// images, not built again).
func TestHarborDataset(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline; skipped with -short")
	}
	testsupport.RequireWorkspaceImages(t)
	engine, err := imagestore.FindEngine(t.Context(), "", nil)
	if err != nil {
		t.Skipf("no container engine to build the task images with: %v", err)
	}
	testsupport.RequireLocalImage(t, engine, "debian:bookworm-slim")
	bins := testsupport.BuildBinaries(t)
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil { // the jail's uid reaches the store
			t.Fatal(err)
		}
	}
	ds, names := testsupport.HarborImageDataset(t)
	archives, store := filepath.Join(root, "archives"), filepath.Join(root, "store")
	if err := os.Mkdir(archives, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, agent := range []struct {
		name    string
		success bool
	}{{"oracle", true}, {"noop", false}} {
		out := filepath.Join(root, "output-"+agent.name)
		var progress bytes.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
		sum, err := localrun.Run(ctx, localrun.Config{
			TaskFile: ds, OutputDir: out, BinDir: bins, Timeout: 6 * time.Minute, StopGrace: 20 * time.Second, Progress: &progress,
			ExtraEnv: []string{"HARBOR_AGENT=" + agent.name, "SANDBOX_IMAGE_ARCHIVES=" + archives, "SANDBOX_IMAGE_STORE=" + store},
		})
		cancel()
		if err != nil {
			logs, _ := filepath.Glob(filepath.Join(out, "logs", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, tail(string(b), 15))
			}
			t.Fatalf("%s: %v\n%s", agent.name, err, progress.String())
		}
		if sum.Tasks != len(names) || sum.Done != len(names) || sum.Rejected != 0 {
			t.Errorf("%s: %d tasks, %d done, %d rejected; want %d, %d, 0\n%s", agent.name, sum.Tasks, sum.Done, sum.Rejected, len(names), len(names), progress.String())
		}
		for _, name := range names {
			tr, err := trajectory.Read(filepath.Join(out, "trajectories", core.TrajectoryFileName(name, 0)))
			if err != nil {
				t.Errorf("%s %s: %v", agent.name, name, err)
				continue
			}
			want := 0.0
			if agent.success {
				want = 1
			}
			if tr.Success != agent.success || tr.Reward == nil || *tr.Reward != want {
				t.Errorf("%s %s: success %v reward %v (%s: %s), want %v", agent.name, name, tr.Success, tr.Reward, tr.ErrorType, tr.ErrorMessage, want)
			}
			if tr.Metadata[core.MetaEnvironmentImage] == nil {
				t.Errorf("%s %s: the trajectory does not name its image (metadata %v)", agent.name, name, tr.Metadata)
			}
		}
	}
	built, _ := filepath.Glob(filepath.Join(archives, "harbor", "*.tar"))
	if len(built) != len(names) {
		t.Errorf("archives %v, want one per task, built once", built)
	}
}

// TestHarborDatasetNoImages runs a dataset directory whose tasks need no
// image (their Dockerfile is a FROM of the sandbox's base) as `make run
// TASKS=DIR` does, the dispatcher given the directory: with the oracle
// both tasks succeed, and the folder that asks for the internet is
// refused and counted as rejected.
func TestHarborDatasetNoImages(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline; skipped with -short")
	}
	bins := testsupport.BuildBinaries(t)
	ds := t.TempDir()
	check := "#!/bin/bash\nif [ \"$(cat /workspace/out.txt 2>/dev/null)\" = %s ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi\n"
	for _, name := range []string{"alpha", "beta"} {
		testsupport.HarborTask(t, ds, name, map[string]string{
			"instruction.md":         "Write " + name + " to out.txt.\n",
			"task.toml":              "[agent]\ntimeout_sec = 30.0\n[verifier]\ntimeout_sec = 30.0\n",
			"environment/Dockerfile": "FROM debian:bookworm-slim\n",
			"tests/test.sh":          fmt.Sprintf(check, name),
			"solution/solve.sh":      "#!/bin/bash\necho " + name + " > out.txt\n",
		})
	}
	testsupport.HarborTask(t, ds, "online", map[string]string{
		"instruction.md": "x\n", "task.toml": "[environment]\nallow_internet = true\n", "tests/test.sh": "#!/bin/bash\n",
	})
	out := filepath.Join(t.TempDir(), "output")
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	sum, err := localrun.Run(ctx, localrun.Config{
		TaskFile: ds, OutputDir: out, BinDir: bins, Timeout: 4 * time.Minute, StopGrace: 20 * time.Second, Progress: &progress,
		ExtraEnv: []string{"HARBOR_AGENT=oracle"},
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if sum.Tasks != 2 || sum.Done != 2 || sum.Rejected != 1 || !strings.Contains(progress.String(), "environment.allow_internet") {
		t.Errorf("%d tasks, %d done, %d rejected; want 2, 2, 1\n%s", sum.Tasks, sum.Done, sum.Rejected, progress.String())
	}
	for _, name := range []string{"alpha", "beta"} {
		tr, err := trajectory.Read(filepath.Join(out, "trajectories", core.TrajectoryFileName(name, 0)))
		if err != nil {
			t.Fatal(err)
		}
		if !tr.Success || tr.Reward == nil || *tr.Reward != 1 {
			t.Errorf("%s: success %v reward %v (%s)", name, tr.Success, tr.Reward, tr.ErrorMessage)
		}
	}
	// The dispatcher read the file the directory maps to (DatasetFile).
	logs, err := os.ReadFile(filepath.Join(out, "logs", "dispatcher.log"))
	if err != nil || !strings.Contains(string(logs), "Harbor dataset") {
		t.Errorf("the dispatcher did not map the dataset itself: %v\n%s", err, logs)
	}
}
