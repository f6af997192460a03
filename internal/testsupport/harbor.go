package testsupport

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

// HarborTask writes a Harbor task folder dir/name of files (path →
// content; a content starting with "#!" is executable) and returns its
// path.
func HarborTask(t testing.TB, dir, name string, files map[string]string) string {
	t.Helper()
	root := filepath.Join(dir, name)
	for p, body := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if len(body) > 1 && body[:2] == "#!" {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// HarborImageDataset writes, under dir, a Harbor dataset of three task
// folders whose environment/Dockerfile builds on debian:bookworm-slim
// (a COPY, a RUN that installs a tool, a RUN that writes data) and whose
// checks need what the image adds: the oracle (solution/solve.sh) scores 1
// on each and a no-op agent 0 only when the task runs in its own image.
// The workspace is /workspace. Returns the dataset's directory and its
// task names.
func HarborImageDataset(t testing.TB, dir string) (string, []string) {
	t.Helper()
	ds := filepath.Join(dir, "harbor-images")
	toml := "version = \"1.0\"\n[verifier]\ntimeout_sec = 60.0\n[agent]\ntimeout_sec = 60.0\n[environment]\nbuild_timeout_sec = 300.0\ncpus = 1\nmemory_mb = 1024\n"
	check := func(cond string) string {
		return "#!/bin/bash\nif " + cond + "; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi\n"
	}
	tasks := map[string]map[string]string{
		// COPY: a file only the image has.
		"copy-greeting": {
			"instruction.md":           "Copy /opt/greeting.txt to out.txt in the current directory.\n",
			"environment/Dockerfile":   "FROM debian:bookworm-slim\nCOPY greeting.txt /opt/greeting.txt\n",
			"environment/greeting.txt": "hello from the task image\n",
			"tests/test.sh":            check(`[ -f /workspace/out.txt ] && cmp -s /opt/greeting.txt /workspace/out.txt`),
			"solution/solve.sh":        "#!/bin/bash\ncp /opt/greeting.txt out.txt\n",
		},
		// RUN: a tool installed in the image, used by the oracle and the check.
		"image-tool": {
			"instruction.md":         "Write the output of `shout harbor` to shout.txt.\n",
			"environment/Dockerfile": "FROM debian:bookworm-slim\nRUN printf '#!/bin/sh\\necho \"$1\" | tr a-z A-Z\\n' > /usr/local/bin/shout && chmod 755 /usr/local/bin/shout\n",
			"tests/test.sh":          check(`[ "$(cat /workspace/shout.txt 2>/dev/null)" = "$(shout harbor)" ] && [ "$(shout harbor)" = HARBOR ]`),
			"solution/solve.sh":      "#!/bin/bash\nshout harbor > shout.txt\n",
		},
		// RUN writing data, and a hidden expected answer under /tests.
		"sum-numbers": {
			"instruction.md":         "Write the sum of the numbers in /data/numbers.txt to sum.txt.\n",
			"environment/Dockerfile": "FROM debian:bookworm-slim\nRUN mkdir -p /data && seq 1 100 > /data/numbers.txt\n",
			"tests/test.sh":          check(`[ "$(cat /workspace/sum.txt 2>/dev/null)" = "$(cat /tests/expected.txt)" ]`),
			"tests/expected.txt":     "5050\n",
			"solution/solve.sh":      "#!/bin/bash\nawk '{s += $1} END {print s}' /data/numbers.txt > sum.txt\n",
		},
	}
	var names []string
	for name, files := range tasks {
		files["task.toml"] = toml
		HarborTask(t, ds, name, files)
		names = append(names, name)
	}
	sort.Strings(names)
	return ds, names
}

// RequireWorkspaceImages skips the test unless core runs workspace tasks
// (test_command, actions: every Harbor task) in an image: until the
// wsimage work of issue 27 is merged, such a task line is refused.
func RequireWorkspaceImages(t testing.TB) {
	t.Helper()
	_, err := core.ParseTask([]byte(`{"task_id":"p","task_type":"code","description":"d","constraints":{"environment":"x:1","test_command":"true"}}`))
	if err != nil {
		t.Skipf("workspace tasks in an image are not supported on this branch yet (wsimage, issue 27): %v", err)
	}
}
