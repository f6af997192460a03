package codeagent

import (
	"context"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

// TestHarnessTracebacks checks the harness's own traceback printer (it does
// without the traceback module) against what the traceback module prints:
// the frames with their source lines and carets, chained exceptions, syntax
// errors and the exception line, for errors of the program and of the tests.
func TestHarnessTracebacks(t *testing.T) {
	a := newAgent(t, nil, nil)
	cases := []struct {
		name, code, tests string
		step              int // the step whose observation holds the traceback
		errType           core.ErrorType
		want              []string // in this order
	}{
		{
			name: "program error shows its frames and carets",
			code: "def f(x):\n    return 1/x\nf(0)\n", tests: "assert True",
			step: 0, errType: core.ErrRuntime,
			want: []string{"Traceback (most recent call last):\n", "line 3, in <module>\n    f(0)\n",
				"line 2, in f\n    return 1/x\n           ^^^\n", "ZeroDivisionError: division by zero\n"},
		},
		{
			name: "failed assert names tests.py and its line",
			code: "def add(a, b):\n    return a - b\n", tests: "def check(c):\n    assert c(2, 3) == 5, 'got %r' % c(2, 3)\ncheck(add)\n",
			step: 1, errType: core.ErrWrongAnswer,
			want: []string{`File "tests.py", line 3, in <module>` + "\n    check(add)\n",
				`File "tests.py", line 2, in check` + "\n    assert c(2, 3) == 5, 'got %r' % c(2, 3)\n           ^^^^^^^^^^^^\n",
				"AssertionError: got -1\n"},
		},
		{
			name: "chained exceptions in order",
			code: "class Bad(Exception):\n    pass\ntry:\n    {}['k']\nexcept KeyError as e:\n    raise Bad('no k') from e\n", tests: "assert True",
			step: 0, errType: core.ErrRuntime,
			want: []string{"KeyError: 'k'\n", "\nThe above exception was the direct cause of the following exception:\n\n",
				"raise Bad('no k') from e\n", "Bad: no k\n"},
		},
		{
			name: "syntax error with its caret is a compile error",
			code: "def f(:\n    pass\n", tests: "assert True",
			step: 0, errType: core.ErrCompile,
			want: []string{"line 1\n    def f(:\n          ^\n", "SyntaxError: invalid syntax\n"},
		},
		{
			name: "deep recursion is collapsed",
			code: "def r(n):\n    return r(n + 1)\nr(0)\n", tests: "assert True",
			step: 0, errType: core.ErrRuntime,
			want: []string{"return r(n + 1)\n", "more times]\n", "RecursionError: maximum recursion depth exceeded\n"},
		},
		{
			name: "an exception whose str fails",
			code: "class E(Exception):\n    def __str__(self):\n        raise RuntimeError\nraise E()\n", tests: "assert True",
			step: 0, errType: core.ErrRuntime,
			want: []string{"raise E()\n", "E: <exception str() failed>\n"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := a.Execute(context.Background(), task("traceback", map[string]any{"code": tc.code, "tests": tc.tests}))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success {
				t.Fatal("a failing program succeeded")
			}
			if len(tr.Steps) <= tc.step {
				t.Fatalf("%d steps, want step %d", len(tr.Steps), tc.step+1)
			}
			s := tr.Steps[tc.step]
			if s.ErrorType != tc.errType {
				t.Errorf("step %d error_type = %q, want %q (%s)", tc.step+1, s.ErrorType, tc.errType, s.ErrorMessage)
			}
			obs := s.Observation
			for _, w := range tc.want {
				i := strings.Index(obs, w)
				if i < 0 {
					t.Fatalf("observation lacks %q (in order):\n%s", w, s.Observation)
				}
				obs = obs[i+len(w):]
			}
			if strings.Count(s.Observation, "Traceback (most recent call last):") > 2 {
				t.Errorf("harness frames or repeated tracebacks shown:\n%s", s.Observation)
			}
		})
	}
}

func TestHarnessTracebackIsEmbeddable(t *testing.T) {
	for name, src := range map[string]string{"harnessTracebackPy": harnessTracebackPy, "harnessEqPy": harnessEqPy} {
		if strings.Contains(src, "'''") {
			t.Fatalf("%s contains ''' and would end the string that embeds it", name)
		}
	}
	if !strings.Contains(harnessPy, "def eq_ignores(tree, names):") || strings.Contains(harnessPy, "@EQ@") {
		t.Fatal("the comparison check is not embedded in the harness")
	}
	if !strings.Contains(harnessPy, "def show(e):") || strings.Contains(harnessPy, "@TRACEBACK@") {
		t.Fatal("the traceback printer is not embedded in the harness")
	}
	if !strings.Contains(harnessPy, "def _adp_read(n):") || strings.Contains(harnessPy, "@READ@") {
		t.Fatal("the stdin reader is not embedded in the harness")
	}
}

// TestCompiledHarness checks that the harness the jails run is the compiled
// one, and that it and its source fallback (taken when the interpreter's
// magic number differs) give the same verdicts, outputs and tracebacks as
// the source itself, the exits that must not pass included.
func TestCompiledHarness(t *testing.T) {
	a := newAgent(t, nil, nil)
	ctx := context.Background()
	compiled := a.harness(ctx, nil, "")
	if compiled == sourceHarness || !strings.HasPrefix(compiled.prog, "import marshal, posix, sys\n") {
		t.Fatalf("the agent runs the harness from source, not compiled: %.80q", compiled.prog)
	}
	if len(compiled.prog) > 1024 {
		t.Errorf("the compiled harness's program is %d bytes: its code belongs on stdin", len(compiled.prog))
	}
	fallback := compiled
	fallback.prog = strings.Replace(compiled.prog, `MAGIC_NUMBER == bytes.fromhex("`, `MAGIC_NUMBER == bytes.fromhex("00`, 1)
	if fallback.prog == compiled.prog {
		t.Fatal("no magic number check in the compiled harness")
	}
	add := "def add(a, b):\n    return a + b\n"
	cases := []struct {
		name, code, tests, stdin string
		pass                     bool
	}{
		{"tests pass", add + "print(add(1, 2))\n", "assert add(2, 3) == 5\n", "", true},
		{"tests fail", "def add(a, b):\n    return a - b\n", "assert add(2, 3) == 5, 'wrong'\n", "", false},
		{"program reads its stdin", "import sys\n" + add + "print(sys.stdin.read().upper())\n", "assert add(1, 1) == 2\n", "hello\n", true},
		{"sys.exit(0) skips the tests", "import sys\ndef add(a, b):\n    return a - b\nsys.exit(0)\n", "assert add(2, 3) == 5\n", "", false},
		{"os._exit(0) skips the tests", "import os\ndef add(a, b):\n    return a - b\nos._exit(0)\n", "assert add(2, 3) == 5\n", "", false},
		{"atexit os._exit(0) hides a failure", "import atexit, os\natexit.register(lambda: os._exit(0))\ndef add(a, b):\n    return a - b\n", "assert add(2, 3) == 5\n", "", false},
		{"tests that exit early", add, "import sys\nsys.exit(0)\nassert add(2, 3) == 6\n", "", false},
		{"program error", "def f(x):\n    return 1/x\nf(0)\n", "assert True\n", "", false},
		{"syntax error", "def f(:\n    pass\n", "assert True\n", "", false},
		{"tests with a syntax error", add, "assert add(2, 3) == 5\nif:\n", "", false},
		{"tests with a comparison the program defines", "class V:\n    def __init__(self, v):\n        self.v = v\n    def __eq__(self, other):\n        return self.v == other\n" + add, "assert V(add(2, 3)) == 5\n", "", true},
	}
	type verdict struct {
		split, exited, passed     bool
		progOut, progErr          string
		progCode                  int
		testsOut, testsErr        string
		testsCode                 int
		progErrType, testsErrType core.ErrorType
	}
	run := func(t *testing.T, hs harness, code, tests, stdin string) verdict {
		t.Helper()
		h, req := newHarnessRun(hs, code, tests, stdin, a.Limits)
		res, err := a.Jail.Run(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		hr := h.read(res, a.Limits)
		return verdict{hr.split, hr.programExited, hr.passed, hr.program.Stdout, hr.program.Stderr, hr.program.ExitCode,
			hr.tests.Stdout, hr.tests.Stderr, hr.tests.ExitCode, hr.program.ErrorType, hr.tests.ErrorType}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := run(t, sourceHarness, tc.code, tc.tests, tc.stdin)
			if want.passed != tc.pass {
				t.Fatalf("source harness: passed = %v, want %v (%+v)", want.passed, tc.pass, want)
			}
			for name, h := range map[string]harness{"compiled": compiled, "fallback": fallback} {
				if got := run(t, h, tc.code, tc.tests, tc.stdin); got != want {
					t.Errorf("%s harness:\n got %+v\nwant %+v", name, got, want)
				}
			}
		})
	}
}

// TestHarnessFallsBackToSource: where the compiled harness cannot be made
// (here its program does not fit the output the jail keeps), the agent
// runs the harness from source, and the verdicts still hold.
func TestHarnessFallsBackToSource(t *testing.T) {
	a := newAgent(t, nil, nil)
	a.Limits.KeepOutputBytes = 4 << 10
	if h := a.harness(context.Background(), nil, ""); h != sourceHarness {
		t.Fatalf("harness = %.80q, want the source", h.prog)
	}
	for _, tc := range []struct {
		code string
		pass bool
	}{{"def add(a, b):\n    return a + b\n", true}, {"def add(a, b):\n    return a - b\n", false}} {
		tr, err := a.Execute(context.Background(), task("fallback", map[string]any{"code": tc.code, "tests": "assert add(2, 3) == 5"}))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Success != tc.pass {
			t.Errorf("%q: success = %v, want %v (%s)", tc.code, tr.Success, tc.pass, tr.ErrorMessage)
		}
	}
}
