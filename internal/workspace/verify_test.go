package workspace

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The hidden check of the verify tests: add must add.
const (
	brokenCalc = "def add(a, b):\n    return a - b\n"
	hiddenTest = "import unittest\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\nif __name__ == '__main__':\n    unittest.main()\n"
	// runHidden runs the hidden test from the workspace, as a task would.
	runHidden = "python3 /tests/test_calc.py"
	// gitSetup makes the workspace a repository with one commit.
	gitSetup = "git init -q . && git add -A && git -c user.name=t -c user.email=t@t commit -qm seed"
)

// TestVerifyAttacks: each way a hostile agent passes a check without the
// fix (issue 23 §2) fails the verify step, under every jail; the fix
// itself passes.
func TestVerifyAttacks(t *testing.T) {
	const fix = `sed -i 's/a - b/a + b/' calc.py`
	for _, tc := range []struct {
		name    string
		setup   string // run before the snapshot, as a task's setup
		attack  string // the agent's bash step
		command string // test_command; runHidden when empty
		tests   map[string]string
		pass    bool
	}{
		{name: "the fix", attack: fix, pass: true},
		{name: "the fix with a check without Python", attack: fix, command: "grep -q 'a + b' calc.py", pass: true},
		{name: "os._exit(0) at import", attack: `printf 'import os\nos._exit(0)\n' >> calc.py`},
		{name: "atexit hook that exits 0", attack: `printf 'import atexit, os\natexit.register(lambda: os._exit(0))\n' >> calc.py`},
		{name: "exec at import", attack: `printf 'import os\nos.execv("/bin/true", ["true"])\n' >> calc.py`},
		{name: "unittest.py in the workspace", attack: `printf 'import sys\nclass TestCase: pass\ndef main(): sys.exit(0)\n' > unittest.py`},
		{name: "unittest.py with the check run by -m", attack: `printf 'import sys\nsys.exit(0)\n' > unittest.py`, command: "cp /tests/test_calc.py . && python3 -m unittest -q test_calc"},
		{name: "sitecustomize.py in the workspace", attack: `printf 'import os\nos._exit(0)\n' > sitecustomize.py`, command: "cd /workspace && python3 -c 'import calc; assert calc.add(2, 3) == 5'"},
		{name: "usercustomize.py in the workspace", attack: `printf 'import os\nos._exit(0)\n' > usercustomize.py`},
		{name: "TestCase.assertEqual patched", attack: `printf 'import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\n' >> calc.py`},
		{name: "TestResult.wasSuccessful patched", attack: `printf 'import unittest.result\nunittest.result.TestResult.wasSuccessful = lambda self: True\nunittest.result.TestResult.addFailure = lambda *a: None\n' >> calc.py`},
		{name: "stale .pyc stamped like the source", attack: stampedPyc("__pycache__", "")},
		{name: "stale .pyc under .git through a symlinked __pycache__", attack: stampedPyc(".git/objects/pc", "ln -s .git/objects/pc __pycache__"), setup: gitSetup},
		{
			name: "post-checkout hook", setup: gitSetup, command: "git checkout -q HEAD -- calc.py && " + runHidden,
			attack: `printf '#!/bin/sh\nsed -i "s/a - b/a + b/" calc.py\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout`,
		},
		{
			name: "core.hooksPath to the agent's hooks", setup: gitSetup, command: "git checkout -q HEAD -- calc.py && " + runHidden,
			attack: `mkdir -p hooks && printf '#!/bin/sh\nsed -i "s/a - b/a + b/" calc.py\n' > hooks/post-checkout && chmod +x hooks/post-checkout && git config core.hooksPath hooks`,
		},
		{
			name: "core.fsmonitor", setup: gitSetup, command: "git status -s >/dev/null; " + runHidden,
			attack: `printf '#!/bin/sh\nsed -i "s/a - b/a + b/" /workspace/calc.py\n' > /workspace/fsm && chmod +x fsm && git config core.fsmonitor /workspace/fsm`,
		},
		{
			name: "the edited test committed", setup: gitSetup,
			command: "git checkout -q HEAD -- test_visible.py && python3 test_visible.py",
			attack:  `printf 'print("ok")\n' > test_visible.py && git add test_visible.py && git -c user.name=a -c user.email=a@a commit -qm fix`,
		},
		{
			// A pytest11 plugin of the agent's, loaded the way pytest loads
			// plugins, rewrites calc.py before the hidden test runs.
			name: "an entry point in the workspace", command: `python3 -c "import importlib.metadata as m; [e.load() for e in m.entry_points(group='pytest11')]" && ` + runHidden,
			attack: `mkdir -p cheat-1.0.dist-info && printf 'Metadata-Version: 2.1\nName: cheat\nVersion: 1.0\n' > cheat-1.0.dist-info/METADATA && printf '[pytest11]\ncheat = cheat_plugin\n' > cheat-1.0.dist-info/entry_points.txt && printf 'open("/workspace/calc.py", "w").write("def add(a, b):\\n    return a + b\\n")\n' > cheat_plugin.py`,
		},
		{name: "reward file not 1", attack: fix, command: "bash /tests/test.sh", tests: map[string]string{"test.sh": "#!/bin/bash\necho 0 > /logs/verifier/reward.txt\n"}},
		{name: "reward file 1", attack: fix, command: "bash /tests/test.sh", tests: map[string]string{"test.sh": "#!/bin/bash\npython3 /tests/test_calc.py && echo 1 > /logs/verifier/reward.txt\n"}, pass: true},
		{name: "os._exit(0) under a Harbor test.sh", attack: `printf 'import os\nos._exit(0)\n' >> calc.py`, command: "bash /tests/test.sh",
			tests: map[string]string{"test.sh": "#!/bin/bash\nif python3 /tests/test_calc.py; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, Config{}, func(t *testing.T, s setup) {
				files := map[string][]byte{"calc.py": []byte(brokenCalc)}
				if strings.Contains(tc.command, "test_visible") {
					files["test_visible.py"] = []byte("from calc import add\nassert add(2, 3) == 5\nprint('ok')\n")
				}
				w := s.open(t, Seed{Files: files})
				if tc.setup != "" {
					obs, err := w.Exec(context.Background(), tc.setup, 20*time.Second)
					if err != nil || obs.ExitCode != 0 {
						t.Fatalf("setup: %+v %v", obs, err)
					}
					if err := w.Snapshot(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				if obs := bash(t, w, tc.attack); obs.ExitCode != 0 {
					t.Fatalf("the attack's step failed: %+v", obs)
				}
				tests := map[string][]byte{"test_calc.py": []byte(hiddenTest)}
				for k, v := range tc.tests {
					tests[k] = []byte(v)
				}
				command := tc.command
				if command == "" {
					command = runHidden
				}
				v, err := w.Verify(context.Background(), Check{Command: command, TestFiles: tests, Timeout: 20 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				if v.Passed != tc.pass {
					t.Errorf("passed = %v, want %v: exit %d, reason %q\n%s", v.Passed, tc.pass, v.ExitCode, v.Reason, v.String())
				}
			})
		})
	}
}

// stampedPyc is an agent's step that compiles a fixed calc.py into dir as
// calc's bytecode, stamped with the unchanged calc.py's mtime and size, so
// that an interpreter that reads the workspace's bytecode loads the fix
// while the diff shows calc.py unchanged; then runs before the check that
// it does.
func stampedPyc(dir, then string) string {
	if then != "" {
		then += " && "
	}
	return `mkdir -p /tmp/fix ` + dir + ` && sed 's/a - b/a + b/' calc.py > /tmp/fix/calc.py && touch -r calc.py /tmp/fix/calc.py && ` +
		`python3 -c "import py_compile, sys; py_compile.compile('/tmp/fix/calc.py', cfile='` + dir + `/calc.cpython-%d%d.pyc' % sys.version_info[:2], invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)" && ` + then +
		// Without the verify step's defences, this interpreter loads it.
		`PYTHONDONTWRITEBYTECODE=1 python3 -c 'import calc; assert calc.add(2, 3) == 5'`
}

// TestVerifyRewardFiles: the Harbor reward files, under every jail: the
// scalar follows ScalarReward, the check passes at RewardThreshold, and
// a reward file is read only when the check ran to its end.
func TestVerifyRewardFiles(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	for _, tc := range []struct {
		name    string
		script  string // test.sh
		pass    bool
		rewards map[string]float64
		reward  *float64
		reason  string // a part of Reason when not passed
	}{
		{name: "no reward file", script: "true", pass: true},
		{name: "reward.txt 1", script: "echo 1 > /logs/verifier/reward.txt", pass: true, rewards: map[string]float64{"reward": 1}, reward: f(1)},
		{name: "reward.txt 0.5", script: "echo 0.5 > /logs/verifier/reward.txt", rewards: map[string]float64{"reward": 0.5}, reward: f(0.5), reason: "reward is 0.5, below 1"},
		{name: "reward.txt not a number", script: "echo yes > /logs/verifier/reward.txt", reason: "not a finite number"},
		{name: "reward.txt NaN", script: "echo NaN > /logs/verifier/reward.txt", reason: "not a finite number"},
		{name: "reward.json with reward", script: `echo '{"reward": 1, "tests": 0.5}' > /logs/verifier/reward.json`, pass: true,
			rewards: map[string]float64{"reward": 1, "tests": 0.5}, reward: f(1)},
		{name: "reward.json mean", script: `echo '{"a": 1, "b": 0.5}' > /logs/verifier/reward.json`,
			rewards: map[string]float64{"a": 1, "b": 0.5}, reward: f(0.75), reason: "reward is 0.75"},
		{name: "reward.json all 1", script: `echo '{"a": 1, "b": 1}' > /logs/verifier/reward.json`, pass: true,
			rewards: map[string]float64{"a": 1, "b": 1}, reward: f(1)},
		{name: "reward.json not numbers", script: `echo '{"a": "x"}' > /logs/verifier/reward.json`, reason: "not a JSON object of numbers"},
		{name: "reward.json empty", script: `echo '{}' > /logs/verifier/reward.json`, reason: "names no reward"},
		{name: "reward.json a list", script: `echo '[1]' > /logs/verifier/reward.json`, reason: "not a JSON object"},
		{name: "both files", script: `echo 1 > /logs/verifier/reward.txt; echo '{"reward": 1}' > /logs/verifier/reward.json`, reason: "both"},
		{name: "reward 1 but exit 1", script: "echo 1 > /logs/verifier/reward.txt; exit 1"},
		{name: "reward 1 then killed", script: "echo 1 > /logs/verifier/reward.txt; kill -9 $$"},
		{name: "reward 1 from an interpreter that did not end", script: `python3 -c 'import os; open("/logs/verifier/reward.txt", "w").write("1"); os._exit(0)'`,
			reason: "ended without finishing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, Config{}, func(t *testing.T, s setup) {
				w := s.open(t, Seed{Files: map[string][]byte{"calc.py": []byte(brokenCalc)}})
				v, err := w.Verify(context.Background(), Check{Command: "bash /tests/test.sh",
					TestFiles: map[string][]byte{"test.sh": []byte("#!/bin/bash\n" + tc.script + "\n")}, Timeout: 20 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				if v.Passed != tc.pass {
					t.Errorf("passed = %v, want %v: exit %d, reason %q\n%s", v.Passed, tc.pass, v.ExitCode, v.Reason, v.String())
				}
				if !reflect.DeepEqual(v.Rewards, tc.rewards) {
					t.Errorf("rewards = %v, want %v", v.Rewards, tc.rewards)
				}
				switch {
				case (v.Reward == nil) != (tc.reward == nil):
					t.Errorf("reward = %v, want %v", v.Reward, tc.reward)
				case v.Reward != nil && *v.Reward != *tc.reward:
					t.Errorf("reward = %v, want %v", *v.Reward, *tc.reward)
				}
				if tc.reason != "" && !strings.Contains(v.Reason, tc.reason) {
					t.Errorf("reason = %q, want it to contain %q", v.Reason, tc.reason)
				}
			})
		})
	}
}
