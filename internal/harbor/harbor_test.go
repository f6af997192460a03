package harbor

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

const (
	testSh  = "#!/bin/bash\ntest \"$(cat hello.txt)\" = hi && echo 1 > /logs/verifier/reward.txt || echo 0 > /logs/verifier/reward.txt\n"
	solveSh = "#!/bin/bash\necho hi > hello.txt\n"
)

// task is a good task folder's files with changes (an empty value
// removes a file).
func task(changes map[string]string) map[string]string {
	files := map[string]string{
		"instruction.md":         "Write hi to hello.txt.\n",
		"task.toml":              "version = \"1.0\"\n[metadata]\ndifficulty = \"easy\"\n[verifier]\ntimeout_sec = 60.0\n[agent]\ntimeout_sec = 120.0\n[environment]\nbuild_timeout_sec = 600.0\ncpus = 1\nmemory_mb = 2048\nstorage_mb = 10240\ngpus = 0\nallow_internet = false\nmcp_servers = []\n",
		"environment/Dockerfile": "# the base\nFROM debian:bookworm-slim\n",
		"tests/test.sh":          testSh,
		"tests/data.bin":         "\x00\x01\xff",
		"solution/solve.sh":      solveSh,
	}
	for k, v := range changes {
		if v == "" {
			delete(files, k)
		} else {
			files[k] = v
		}
	}
	return files
}

func TestLoad(t *testing.T) {
	dir := testsupport.HarborTask(t, t.TempDir(), "hello", task(nil))
	spec, err := Load(t.Context(), dir, Options{Oracle: true})
	if err != nil {
		t.Fatal(err)
	}
	if spec.TaskID != "hello" || spec.TaskType != core.TaskCode || spec.Description != "Write hi to hello.txt.\n" || spec.Timeout != 180 {
		t.Errorf("task %+v", spec)
	}
	c, err := spec.Code()
	if err != nil {
		t.Fatal(err)
	}
	// task.toml's cpus, memory_mb and storage_mb, for the runtime to grant.
	if want := (core.Resources{CPUs: 1, MemoryMB: 2048, WorkspaceMB: 10240}); c.Resources != want {
		t.Errorf("resources %+v, want %+v", c.Resources, want)
	}
	if c.TestCommand != TestCommand || string(c.TestFiles["test.sh"]) != testSh || string(c.TestFiles["data.bin"]) != "\x00\x01\xff" || len(c.TestFiles) != 2 {
		t.Errorf("check %q %q", c.TestCommand, c.TestFiles)
	}
	if len(c.Actions) != 2 || !strings.Contains(c.Actions[0].Command, solveSh) || c.Actions[0].Timeout == nil || *c.Actions[0].Timeout != 120 {
		t.Errorf("oracle %+v", c.Actions)
	}
	// Without --oracle no actions: a model works on it.
	spec, err = Load(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := spec.Code(); err != nil || c.Actions != nil {
		t.Errorf("actions without Oracle")
	}
	line, err := spec.MarshalLine()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.ParseTask(line); err != nil {
		t.Errorf("the line does not parse back: %v", err)
	}
}

func TestLoadVerifierEnv(t *testing.T) {
	dir := testsupport.HarborTask(t, t.TempDir(), "env", task(map[string]string{
		"task.toml": "[verifier]\nenv = { MODE = \"it's strict\", B = \"2\" }\n",
	}))
	spec, err := Load(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := `B='2' MODE='it'\''s strict' bash /tests/test.sh`
	if c, err := spec.Code(); err != nil || c.TestCommand != want {
		t.Errorf("test_command %q (%v), want %q", c.TestCommand, err, want)
	}
	if spec.Timeout != 2*DefaultTimeoutSec {
		t.Errorf("timeout %d, want Harbor's defaults", spec.Timeout)
	}
}

// TestLoadRefused: what cannot run as the task means is refused, naming
// the field.
func TestLoadRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		changes map[string]string
		opts    Options
		field   string
		reason  string
	}{
		{"internet", map[string]string{"task.toml": "[environment]\nallow_internet = true\n"}, Options{}, "environment.allow_internet", "no network"},
		{"a GPU", map[string]string{"task.toml": "[environment]\ngpus = 1\n"}, Options{}, "environment.gpus", "no GPUs"},
		{"compose", map[string]string{"environment/docker-compose.yaml": "services: {}\n"}, Options{}, "environment/docker-compose.yaml", "several containers"},
		{"a prebuilt image without its tag", map[string]string{"task.toml": "[environment]\ndocker_image = \"ghcr.io/x/y\"\n"}, Options{}, "environment.docker_image", "tag or digest"},
		{"a prebuilt archive", map[string]string{"task.toml": "[environment]\ndocker_image = \"archive:x.tar\"\n"}, Options{}, "environment.docker_image", "not an image reference"},
		{"a Dockerfile that builds, nowhere to build it", map[string]string{"environment/Dockerfile": "FROM debian:bookworm-slim\nRUN apt-get install -y jq\n"}, Options{}, "environment/Dockerfile", "line 2 \"RUN apt-get install -y jq\" builds an image, and there is no image archive directory"},
		{"a Dockerfile that builds, no engine", map[string]string{"environment/Dockerfile": "FROM debian:bookworm-slim\nCOPY x /x\n"}, Options{Images: &Images{ArchiveDir: "/nonexistent"}}, "environment/Dockerfile", "line 2 \"COPY x /x\" builds an image, and no container engine"},
		{"another base, no engine", map[string]string{"environment/Dockerfile": "FROM ubuntu:24.04\n"}, Options{Images: &Images{ArchiveDir: "/nonexistent"}}, "environment/Dockerfile", "not a base the sandbox runtime provides"},
		{"multi-stage, no engine", map[string]string{"environment/Dockerfile": "FROM debian:bookworm-slim\nFROM debian:bookworm-slim\n"}, Options{Images: &Images{ArchiveDir: "/nonexistent"}}, "environment/Dockerfile", "line 2: a multi-stage build"},
		{"too much memory", map[string]string{"task.toml": "[environment]\nmemory_mb = 65536\n"}, Options{}, "environment.memory_mb", "--max-memory-mb"},
		{"too much memory as a size", map[string]string{"task.toml": "[environment]\nmemory = \"8G\"\n"}, Options{}, "environment.memory", "--max-memory-mb"},
		{"too many CPUs", map[string]string{"task.toml": "[environment]\ncpus = 2\n"}, Options{MaxCPUs: 1}, "environment.cpus", "--max-cpus"},
		{"too much storage", map[string]string{"task.toml": "[environment]\nstorage_mb = 20480\n"}, Options{}, "environment.storage_mb", "--max-storage-mb"},
		{"MCP servers", map[string]string{"task.toml": "[environment]\nmcp_servers = [{name = \"x\"}]\n"}, Options{}, "environment.mcp_servers", "not supported"},
		{"agent env", map[string]string{"task.toml": "[environment.env]\nKEY = \"v\"\n"}, Options{}, "environment.env", "not supported"},
		{"an unknown environment field", map[string]string{"task.toml": "[environment]\nprivileged = true\n"}, Options{}, "environment.privileged", "not a field"},
		{"too long", map[string]string{"task.toml": "[agent]\ntimeout_sec = 3500.0\n"}, Options{}, "agent.timeout_sec", "more than a task's"},
		{"no test.sh", map[string]string{"tests/test.sh": ""}, Options{}, "tests/test.sh", "missing"},
		{"no solve.sh under --oracle", map[string]string{"solution/solve.sh": "", "solution/x.txt": "x"}, Options{Oracle: true}, "solution/solve.sh", "missing"},
		{"solution files beside solve.sh", map[string]string{"solution/patch.diff": "x"}, Options{Oracle: true}, "solution/solve.sh", "other files"},
		{"bad TOML", map[string]string{"task.toml": "[agent\n"}, Options{}, "task.toml", "not valid TOML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testsupport.HarborTask(t, t.TempDir(), "t", task(tc.changes))
			_, err := Load(t.Context(), dir, tc.opts)
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("err %v, want a RefusedError", err)
			}
			if re.Field != tc.field || !strings.Contains(re.Reason, tc.reason) {
				t.Errorf("refused %q: %q; want %q: …%s…", re.Field, re.Reason, tc.field, tc.reason)
			}
		})
	}
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	testsupport.HarborTask(t, root, "b", task(nil))
	a := testsupport.HarborTask(t, root, "a", task(nil))
	testsupport.HarborTask(t, root, "not-a-task", map[string]string{"README.md": "x"})
	got, err := Find([]string{root, a})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	if len(got) != 2 || !strings.HasSuffix(got[0], "/a") || !strings.HasSuffix(got[1], "/b") {
		t.Errorf("found %s", b)
	}
	if _, err := Find([]string{t.TempDir()}); err == nil {
		t.Error("an empty directory is no dataset")
	}
}
