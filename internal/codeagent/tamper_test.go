package codeagent

import (
	"context"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/sandbox"
)

// forEachJail runs fn with an agent on every jail backend present.
func forEachJail(t *testing.T, fn func(t *testing.T, a *Agent)) {
	t.Helper()
	ran := false
	for _, backend := range []string{sandbox.BackendNsjail, sandbox.BackendBwrap} {
		j, err := sandbox.New(backend, sandbox.Config{})
		if err != nil {
			t.Logf("%s: not present: %v", backend, err)
			continue
		}
		ran = true
		lim := sandbox.DefaultLimits()
		lim.Wall = 10 * time.Second
		a := &Agent{Jail: j, Limits: lim, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
		t.Run(backend, func(t *testing.T) { fn(t, a) })
	}
	if !ran {
		t.Skip("no jail on this machine (run scripts/bootstrap.sh --test)")
	}
}

// The outcomes of a hostile or legitimate program under the harness.
const (
	outFail     = "fail"     // the tests fail
	outTampered = "tampered" // the guard stops the run
	outPass     = "pass"     // the tests pass
)

// subAdd is the function under attack: the tests below want add(2, 3) == 5.
const subAdd = "def add(a, b):\n    return a - b\n"

// climb finds frames from the program's own, up to the harness's.
const climb = "import sys\ndef frames(f):\n    while f is not None:\n        yield f\n        f = f.f_back\n"

// TestHarnessTampering runs the attacks of issue 23 §1 and variants, and
// legitimate programs that must pass unflagged, under every jail backend,
// through the agent's real path (the scripted program, one harness run).
func TestHarnessTampering(t *testing.T) {
	tests := "assert add(2, 3) == 5\n"
	cases := []struct {
		name, code, tests string
		want              string
		flags             []string // of a pass
		msg               string   // in error_message
	}{
		// Rebinding what the harness uses after the program.
		{name: "builtins.compile rebound so the tests compile as pass", code: "import builtins\n_c = builtins.compile\nbuiltins.compile = lambda s, f, m, *a, **k: _c('pass', f, m)\n" + subAdd, want: outFail},
		{name: "builtins.exec rebound to skip the tests", code: "import builtins\nbuiltins.exec = lambda *a, **k: None\n" + subAdd, want: outFail},
		{name: "posix._exit patched to exit 0", code: "import posix, os\n_e = posix._exit\nposix._exit = os._exit = lambda c: _e(0)\n" + subAdd, want: outFail},
		{name: "sys.audit rebound", code: "import sys\nsys.audit = lambda *a: None\n" + subAdd, want: outFail},
		{name: "atexit hook exits 0", code: "import atexit, os\natexit.register(lambda: os._exit(0))\n" + subAdd, want: outFail},
		{name: "__import__ shadowed for the tests' last line", code: "def __import__(*a):\n    raise SystemExit(0)\n" + subAdd, want: outFail},
		{name: "builtins.abs patched", code: "import builtins\nbuiltins.abs = lambda x: 0\n" + subAdd, tests: "assert abs(add(2, 3) - 5) < 1e-9\n", want: outFail},
		{name: "math.isclose patched, the tests import math", code: "import math\nmath.isclose = lambda *a, **k: True\n" + subAdd, tests: "import math\nassert math.isclose(add(2, 3), 5)\n", want: outFail},
		// Forging the marker.
		{name: "a guessed pass marker", code: "import os\nprint('\\x1eADP-' + '0' * 32 + ' pass')\nos._exit(0)\n", want: outFail},
		{name: "fake boundary and pass lines", code: "import os, sys\nsys.stdout.write('\\x1eADP-x end 0 0.1 ran\\n\\x1eADP-x pass\\n')\nsys.stderr.write('\\x1eADP-x end\\n')\n" + subAdd, want: outFail},
		{name: "the harness's frames searched for the nonce", code: climb + "for f in frames(sys._getframe()):\n    for v in list(f.f_locals.values()):\n        if isinstance(v, (bytes, str)) and len(v) >= 32:\n            print(v if isinstance(v, str) else v.decode('latin-1'), 'pass')\nimport os\nos._exit(0)\n", want: outFail},
		{name: "the harness re-entered from its frame", code: climb + subAdd + "for f in frames(sys._getframe()):\n    h = f.f_globals.get('_adp_harness')\n    if h:\n        h()\n", want: outFail},
		{name: "a traceback's frame climbed for the nonce", code: "import sys, os\ntry:\n    raise ValueError\nexcept ValueError as e:\n    f = e.__traceback__.tb_frame\nwhile f:\n    for v in f.f_locals.values():\n        if isinstance(v, bytes) and v.startswith(b'\\x1e'):\n            os.write(1, v + b' pass\\n')\n            os._exit(0)\n    f = f.f_back\n" + subAdd, want: outFail},
		{name: "a generator's frame", code: "def g():\n    yield 1\nx = g()\nf = x.gi_frame\n" + subAdd, want: outFail},
		{name: "the end event raised by the program", code: "import sys\nsys.audit('adp.end')\n" + subAdd, want: outTampered, msg: "adp.end"},
		{name: "the end event raised from the function under test", code: "import sys\ndef add(a, b):\n    sys.audit('adp.end')\n    return a - b\n", want: outTampered, msg: "adp.end"},
		{name: "the tests handed out twice", code: "import sys\nsys.audit('adp.tests', [{}])\n" + subAdd, want: outTampered, msg: "adp.tests"},
		// Reaching the interpreter's memory.
		{name: "gc.get_objects", code: "import gc\nfor o in gc.get_objects():\n    pass\n" + subAdd, want: outTampered, msg: "gc.get_objects"},
		{name: "gc.get_referrers", code: "import gc, sys\ngc.get_referrers(sys._getframe())\n" + subAdd, want: outTampered, msg: "gc.get_referrers"},
		{name: "gc.get_referents", code: "import gc, sys\ngc.get_referents(sys._getframe())\n" + subAdd, want: outTampered, msg: "gc.get_referents"},
		{name: "gc.get_objects from the function under test", code: "import gc\ndef add(a, b):\n    gc.get_objects()\n    return a - b\n", want: outTampered, msg: "gc.get_objects"},
		{name: "ctypes", code: "import ctypes\n" + subAdd, want: outTampered, msg: "ctypes"},
		{name: "_ctypes by importlib", code: "import importlib\nimportlib.import_module('_ctypes')\n" + subAdd, want: outTampered, msg: "ctypes"},
		{name: "_testcapi", code: "import _testcapi\n" + subAdd, want: outTampered, msg: "_testcapi"},
		{name: "sys.settrace", code: "import sys\nsys.settrace(lambda *a: None)\n" + subAdd, want: outTampered, msg: "sys.settrace"},
		{name: "sys.setprofile", code: "import sys\nsys.setprofile(lambda *a: None)\n" + subAdd, want: outTampered, msg: "sys.setprofile"},
		{name: "threading.settrace with a thread", code: "import threading\nthreading.settrace(lambda *a: None)\nt = threading.Thread(target=print)\nt.start()\nt.join()\n" + subAdd, want: outTampered, msg: "sys.settrace"},
		{name: "sys._current_frames", code: "import sys\nsys._current_frames()\n" + subAdd, want: outTampered, msg: "sys._current_frames"},
		{name: "code.replace", code: "c = compile('1', 'x', 'eval').replace(co_consts=(2,))\n" + subAdd, want: outTampered, msg: "code.__new__"},
		{name: "marshal.loads", code: "import marshal\nmarshal.loads(marshal.dumps(compile('1', 'x', 'eval')))\n" + subAdd, want: outTampered, msg: "marshal.loads"},
		{name: "/proc/self/mem", code: "open('/proc/self/mem', 'rb')\n" + subAdd, want: outTampered, msg: "/proc/*/mem"},
		{name: "/proc/self/mem by os.open and a relative path", code: "import os\nos.chdir('/tmp')\nos.open('mem', os.O_RDONLY)\n" + subAdd, want: outTampered, msg: "/proc/*/mem"},
		{name: "/proc/self/mem as a str subclass", code: "class S(str):\n    pass\nopen(S('/proc/self/mem'), 'rb')\n" + subAdd, want: outTampered, msg: "subclass"},
		{name: "a symlink to /proc/self/mem", code: "import os\nos.symlink('/proc/self/mem', '/tmp/m')\n" + subAdd, want: outTampered, msg: "/proc/*/mem"},
		{name: "an audit hook of the program's", code: "import sys\nsys.addaudithook(lambda *a: None)\n" + subAdd, want: outTampered, msg: "sys.addaudithook"},
		// What cannot be prevented is flagged.
		{name: "an always-equal object", code: "class A:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return A()\n", want: outPass, flags: []string{"eq_ignores_argument"}},
		{name: "an always-equal object made by type()", code: "def add(a, b):\n    return type('X', (), {'__eq__': lambda s, o: True})()\n", want: outPass, flags: []string{"eq_ignores_argument"}},
		{name: "an __eq__ lambda set on a class", code: "class A:\n    pass\nA.__eq__ = lambda *a: True\ndef add(a, b):\n    return A()\n", want: outPass, flags: []string{"eq_ignores_argument"}},
		{name: "inspect sniffs the caller", code: "import inspect\ndef add(a, b):\n    return a + b if inspect.stack()[1].filename == 'tests.py' else a - b\n", want: outPass, flags: []string{"frame_source", "frame"}},
		{name: "sys._getframe sniffs the caller, hidden from the source", code: "import sys\ng = getattr(sys, '_get' + 'frame')\ndef add(a, b):\n    return a + b if g(1).f_code.co_name == '<module>' else a - b\n", want: outPass, flags: []string{"frame"}},
		{name: "logging.currentframe sniffs the caller", code: "import logging\nf = getattr(logging, 'current' + 'frame')\ndef add(a, b):\n    return a + b if f().f_back.f_back else a - b\n", want: outPass, flags: []string{"frame_source", "frame"}},
		// Legitimate programs pass unflagged.
		{name: "legit: the standard library's frame readers", code: "import collections, enum, dataclasses, logging, warnings, traceback, typing\nP = collections.namedtuple('P', 'x y')\nE = enum.Enum('E', 'a b')\nT = typing.TypeVar('T')\n@dataclasses.dataclass\nclass D:\n    x: int\nlogging.basicConfig()\nlog = logging.getLogger('x')\nwarnings.warn('w')\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.print_exc()\ndef add(a: int, b: int) -> int:\n    log.warning('add %d %d', a, b)\n    warnings.warn('in add')\n    return P(a, b).x + D(b).x\n", want: outPass},
		{name: "legit: an __eq__ that reads its argument", code: "class V:\n    def __init__(self, v):\n        self.v = v\n    def __eq__(self, other):\n        return self.v == other\ndef add(a, b):\n    return V(a + b)\n", want: outPass},
		{name: "legit: asyncio", code: "import asyncio\nasync def f(a, b):\n    return a + b\ndef add(a, b):\n    return asyncio.run(f(a, b))\n", want: outPass},
		{name: "legit: the tests import what the program imported", code: "import math, re\ndef add(a, b):\n    return int(math.fsum([a, b]))\n", tests: "import math, re\nassert math.isclose(add(2, 3), 5) and re.match('5', str(add(2, 3)))\n", want: outPass},
		{name: "legit: a failure in the program's own try", code: "import traceback\ndef add(a, b):\n    try:\n        raise KeyError(a)\n    except KeyError:\n        traceback.format_exc()\n    return a + b\n", want: outPass},
	}
	forEachJail(t, func(t *testing.T, a *Agent) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ts := tc.tests
				if ts == "" {
					ts = tests
				}
				tr, err := a.Execute(context.Background(), task("add", map[string]any{"code": tc.code, "tests": ts}))
				if err != nil {
					t.Fatal(err)
				}
				flags, _ := tr.Metadata[core.MetaFlags].([]string)
				var names []string
				for _, f := range flags {
					name, _, _ := strings.Cut(f, ":")
					names = append(names, name)
				}
				switch tc.want {
				case outPass:
					if !tr.Success {
						t.Fatalf("failed: %s (%s)\n%s", tr.ErrorMessage, tr.ExitReason, lastObservation(tr))
					}
					slices.Sort(names)
					want := slices.Clone(tc.flags)
					slices.Sort(want)
					if !slices.Equal(names, want) {
						t.Errorf("flags = %q, want %v", flags, want)
					}
				case outFail:
					if tr.Success || tr.ExitReason == core.ExitTampered {
						t.Fatalf("success = %v, exit_reason = %q: want a plain failure (%s)\n%s", tr.Success, tr.ExitReason, tr.ErrorMessage, lastObservation(tr))
					}
				case outTampered:
					if tr.Success || tr.ExitReason != core.ExitTampered || !strings.Contains(tr.ErrorMessage, tc.msg) || !strings.HasPrefix(tr.ErrorMessage, "tampered: ") {
						t.Fatalf("success = %v, exit_reason = %q, error %q: want tampered, %q\n%s", tr.Success, tr.ExitReason, tr.ErrorMessage, tc.msg, lastObservation(tr))
					}
					if tr.Reward == nil || *tr.Reward != 0 {
						t.Errorf("reward = %v, want 0", tr.Reward)
					}
				}
				for _, s := range tr.Steps {
					if !strings.Contains(tc.code, "ADP-") && tagPattern.MatchString(s.Observation) {
						t.Errorf("a harness marker is left in an observation:\n%q", s.Observation)
					}
				}
			})
		}
	})
}

// tagPattern matches the harness's markers.
var tagPattern = regexp.MustCompile("\x1eADP-[0-9a-f]{32}")

func lastObservation(tr *core.Trajectory) string {
	if len(tr.Steps) == 0 {
		return ""
	}
	return tr.Steps[len(tr.Steps)-1].Observation
}
