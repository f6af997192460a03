package codeagent

import (
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/rollout"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/testsupport"
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

// sigScan defines scan(f): it climbs from f and, where a local or a
// function's closure holds the harness's tag, writes the pass line.
const sigScan = `import os, signal, sys
def scan(f):
    while f is not None:
        for v in list(f.f_locals.values()):
            for x in [v] + [c.cell_contents for c in (getattr(v, '__closure__', None) or ()) if 'empty' not in repr(c)]:
                if type(x) is bytes and x.startswith(b'\x1eADP-'):
                    os.write(1, x + b' pass\n')
                    os._exit(0)
        f = f.f_back
`

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
		{name: "a finder of the program's serves the tests a fake math", code: "import sys, types\nclass F:\n    def find_spec(self, name, path=None, target=None):\n        if name == 'math':\n            import importlib.machinery as m\n            return m.ModuleSpec(name, self)\n    def create_module(self, spec):\n        mod = types.ModuleType('math')\n        mod.isclose = lambda *a, **k: True\n        return mod\n    def exec_module(self, mod):\n        pass\nsys.meta_path.insert(0, F())\n" + subAdd, tests: "import math\nassert math.isclose(add(2, 3), 5)\n", want: outFail},
		{name: "a module loaded before the program replaced in sys.modules", code: "import sys, types\nfake = types.ModuleType('time')\nfake.time = lambda: 5\nsys.modules['time'] = fake\n" + subAdd, tests: "import time\nassert time.time() == 5 or add(2, 3) == 5\n", want: outFail},
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
		{name: "an event with arguments the guard does not expect", code: "import sys\nsys.audit('open')\n" + subAdd, want: outFail},
		{name: "gc.get_objects at the recursion limit", code: "import gc, sys\ndef deep(n):\n    if n:\n        return deep(n - 1)\n    gc.get_objects()\nsys.setrecursionlimit(60)\nfor n in range(60):\n    try:\n        deep(n)\n    except RecursionError as e:\n        tb = e.__traceback__\n        while tb:\n            if 'tag' in tb.tb_frame.f_locals or 'check' in tb.tb_frame.f_locals:\n                print('leaked')\n            tb = tb.tb_next\n" + subAdd, want: outTampered, msg: "gc.get_objects"},
		{name: "marshal.loads run by a thread with no Python frame", code: "import _thread, marshal, time\n_thread.start_new_thread(marshal.loads, (marshal.dumps(1),))\nfor _ in range(1000):\n    time.sleep(0.01)\n" + subAdd, want: outTampered, msg: "marshal.loads"},
		{name: "an audit hook of the program's", code: "import sys\nsys.addaudithook(lambda *a: None)\n" + subAdd, want: outTampered, msg: "sys.addaudithook"},
		// Signal handlers: one that runs while the guard is on the stack
		// gets the guard's frame, without an audit event (before the fix,
		// each of these passed in every run; see docs/security.md).
		{name: "a signal handler at a high rate searches the interrupted frames", code: sigScan + `busy = []
def h(sig, frame):
    if not busy:
        busy.append(1)
        scan(frame)
        busy.pop()
signal.signal(signal.SIGALRM, h)
signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
for i in range(20000):
    open('/dev/null').close()
signal.setitimer(signal.ITIMER_REAL, 0)
` + subAdd, want: outFail},
		{name: "a C signal handler (list.insert) keeps every interrupted frame", code: sigScan + `got = []
signal.signal(signal.SIGALRM, got.insert)
signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
for i in range(20000):
    open('/dev/null').close()
signal.setitimer(signal.ITIMER_REAL, 0)
for f in got:
    scan(f)
` + subAdd, want: outFail},
		{name: "a thread signals the main thread while it raises audit events", code: sigScan + `import threading, time
got, done = [], []
signal.signal(signal.SIGUSR1, got.insert)
def kill():
    while not done:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.0001)
t = threading.Thread(target=kill)
t.start()
for i in range(20000):
    compile('1', 's', 'eval')
done.append(1)
t.join()
for f in got:
    scan(f)
` + subAdd, want: outFail},
		{name: "a fresh _signal module (create_builtin, reimport) or the original function from closures", code: sigScan + `import _imp, _signal, importlib.machinery as m
fns = [_imp.create_builtin(m.ModuleSpec('_signal', None)).signal]
del sys.modules['_signal']
import _signal as again
fns.append(again.signal)
fresh_imp = _imp.create_builtin(m.ModuleSpec('_imp', None))
fns.append(fresh_imp.create_builtin(m.ModuleSpec('_signal', None)).signal)
for fn in (_signal.signal, _signal.getsignal, _imp.create_builtin, signal.signal):
    for c in getattr(fn, '__closure__', None) or ():
        fns.append(c.cell_contents)
got = []
for fn in fns:
    if callable(fn) and getattr(fn, '__name__', '') == 'signal':
        fn(signal.SIGALRM, got.insert)
        signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
        for i in range(5000):
            open('/dev/null').close()
        signal.setitimer(signal.ITIMER_REAL, 0)
for f in got:
    scan(f)
` + subAdd, want: outFail},
		// What cannot be prevented is flagged.
		{name: "an always-equal object", code: "class A:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return A()\n", want: outPass, flags: []string{"eq_ignores_argument"}},
		{name: "an always-equal object made by type()", code: "def add(a, b):\n    return type('X', (), {'__eq__': lambda s, o: True})()\n", want: outPass, flags: []string{"eq_ignores_argument"}},
		{name: "an __eq__ lambda set on a class", code: "class A:\n    pass\nA.__eq__ = lambda *a: True\ndef add(a, b):\n    return A()\n", want: outPass, flags: []string{"eq_ignores_argument"}},
		{name: "__eq__ set to another comparison", code: "class X(int):\n    pass\nX.__eq__ = X.__le__\ndef add(a, b):\n    return X(a - b)\n", want: outPass, flags: []string{"eq_ignores_argument"}},
		{name: "__lt__ that ignores its argument", code: "class L(float):\n    def __lt__(self, other):\n        return True\n    def __sub__(self, other):\n        return self\n    def __abs__(self):\n        return self\ndef add(a, b):\n    return L(a - b)\n", tests: "assert abs(add(2, 3) - 5) < 1e-9\n", want: outPass, flags: []string{"eq_ignores_argument"}},
		{name: "__eq__ defined in a string for exec", code: "exec('class A:\\n    def __eq__(self, o):\\n        return True\\n')\ndef add(a, b):\n    return A()\n", want: outPass, flags: []string{"eq_ignores_argument"}},
		{name: "stdout replaced by a pipe to read the boundary back", code: "import os\nr, w = os.pipe()\nsaved = os.dup(1)\nos.dup2(w, 1)\ndef add(a, b):\n    tag = os.read(r, 200).split(b' ')[0]\n    os.write(saved, tag + b' pass\\n')\n    os._exit(0)\n", want: outFail},
		{name: "stdout closed before the pass line", code: "import os\ndef add(a, b):\n    os.close(1)\n    return a + b\n", want: outFail},
		{name: "inspect sniffs the caller", code: "import inspect\ndef add(a, b):\n    return a + b if inspect.stack()[1].filename == 'tests.py' else a - b\n", want: outPass, flags: []string{"frame_source", "frame"}},
		{name: "sys._getframe sniffs the caller, hidden from the source", code: "import sys\ng = getattr(sys, '_get' + 'frame')\ndef add(a, b):\n    return a + b if g(1).f_code.co_name == '<module>' else a - b\n", want: outPass, flags: []string{"frame_source", "frame"}},
		{name: "logging.currentframe sniffs the caller", code: "import logging\nf = getattr(logging, 'current' + 'frame')\ndef add(a, b):\n    return a + b if f().f_back.f_back else a - b\n", want: outPass, flags: []string{"frame_source", "frame"}},
		// Legitimate programs pass unflagged.
		{name: "legit: the standard library's frame readers", code: "import collections, enum, dataclasses, logging, warnings, traceback, typing\nP = collections.namedtuple('P', 'x y')\nE = enum.Enum('E', 'a b')\nT = typing.TypeVar('T')\n@dataclasses.dataclass\nclass D:\n    x: int\nlogging.basicConfig()\nlog = logging.getLogger('x')\nwarnings.warn('w')\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.print_exc()\ndef add(a: int, b: int) -> int:\n    log.warning('add %d %d', a, b)\n    warnings.warn('in add')\n    return P(a, b).x + D(b).x\n", want: outPass},
		{name: "legit: an __eq__ that reads its argument", code: "class V:\n    def __init__(self, v):\n        self.v = v\n    def __eq__(self, other):\n        return self.v == other\ndef add(a, b):\n    return V(a + b)\n", want: outPass},
		{name: "legit: asyncio", code: "import asyncio\nasync def f(a, b):\n    return a + b\ndef add(a, b):\n    return asyncio.run(f(a, b))\n", want: outPass},
		{name: "legit: the tests import what the program imported", code: "import math, re\ndef add(a, b):\n    return int(math.fsum([a, b]))\n", tests: "import math, re\nassert math.isclose(add(2, 3), 5) and re.match('5', str(add(2, 3)))\n", want: outPass},
		{name: "legit: a min_stack and a call stack", code: "class MinStack:\n    def __init__(self):\n        self.stack, self.min_stack = [], []\ncall_stack = MinStack()\ndef add(a, b):\n    return a + b\n", want: outPass},
		{name: "legit: a timeout by signal.alarm", code: `import signal
class Timeout(Exception):
    pass
def on_alarm(signum, frame):
    raise Timeout()
prev = signal.signal(signal.SIGALRM, on_alarm)
assert prev == signal.SIG_DFL and signal.getsignal(signal.SIGALRM) is on_alarm
assert signal.signal(signal.SIGALRM, on_alarm) is on_alarm
signal.setitimer(signal.ITIMER_REAL, 0.05)
try:
    while True:
        open('/dev/null').close()
except Timeout:
    pass
def add(a, b):
    return a + b
`, tests: "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_DFL)\nassert add(2, 3) == 5\n", want: outPass},
		// The guard's bookkeeping is per thread: threads that log (logging
		// takes frames) while another raises events must not look like
		// code run inside the guard.
		{name: "legit: threads that log while the main thread opens files", code: "import logging, threading\nlogging.basicConfig()\nlog = logging.getLogger('t')\ndef work():\n    for _ in range(100):\n        log.warning('x')\nts = [threading.Thread(target=work) for _ in range(3)]\nfor t in ts:\n    t.start()\nfor _ in range(300):\n    try:\n        open('/nonexistent')\n    except OSError:\n        pass\nfor t in ts:\n    t.join()\ndef add(a, b):\n    return a + b\n", want: outPass},
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

// TestHiddenChecksNeverReachTheModel (issue 23 §4): a program that fails
// its verification while printing or raising the hidden tests (or the
// expected output) gets back only that a check failed. No request the
// model server receives, and none of the messages the trajectory records,
// carries the hidden text; visible tests may be quoted.
func TestHiddenChecksNeverReachTheModel(t *testing.T) {
	const secret = "SECRET_CHECK_7f3a"
	hidden := "# " + secret + "\nassert add(2, 3) == 5, '" + secret + "'\n"
	// The tests' code object holds their text's constants: the assert's
	// message, and the comment's line through co_filename's source.
	leak := "import sys\ndef add(a, b):\n    raise RuntimeError(repr(sys._getframe(1).f_code.co_consts))\n"
	cases := []struct {
		name        string
		constraints map[string]any
		program     string
		quoted      string // what the feedback must quote, if anything
	}{
		{"hidden tests raise their own text", map[string]any{"tests": hidden}, leak, ""},
		{"hidden tests fail with their message", map[string]any{"tests": hidden}, subAdd, ""},
		{"the program prints what it can read of the tests", map[string]any{"tests": hidden}, "import sys\ndef add(a, b):\n    print(sys._getframe(1).f_code.co_consts, file=sys.stderr)\n    print(sys._getframe(1).f_code.co_consts)\n    return a - b\n", ""},
		{"expected output is not quoted", map[string]any{"expected_output": secret}, "print('nope')\n", ""},
		{"visible tests may be quoted", map[string]any{"visible_tests": "assert add(2, 3) == 5, 'visible message'\n"}, subAdd, "visible message"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, fake := newLLM(t, func(_ testsupport.FakeLLMRequest, n int) (int, any) {
				switch n {
				case 0:
					return 200, testsupport.ToolCallReply("c0", "run_python", map[string]string{"code": tc.program})
				case 1:
					return 200, testsupport.AnswerReply("done")
				}
				return 200, testsupport.AnswerReply("done again")
			})
			a := newAgent(t, client, nil)
			tk := task("Write add(a, b).", tc.constraints)
			tk.MaxSteps = 2
			tr, err := a.Execute(context.Background(), tk)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success {
				t.Fatal("a failing program succeeded")
			}
			reqs := fake.Requests()
			if len(reqs) < 3 {
				t.Fatalf("%d requests: the model was not told the verification failed", len(reqs))
			}
			feedback := reqs[2].LastContent()
			if !strings.Contains(feedback, "Verification failed") {
				t.Errorf("the third request's last message is %q, want the verification's feedback", feedback)
			}
			if tc.quoted != "" && !strings.Contains(feedback, tc.quoted) {
				t.Errorf("feedback %q does not quote the visible tests' %q", feedback, tc.quoted)
			}
			for i, r := range reqs {
				if strings.Contains(string(r.Body), secret) {
					t.Errorf("request %d carries the hidden check:\n%s", i, r.Body)
				}
			}
			for _, m := range tr.Messages {
				if strings.Contains(string(m), secret) {
					t.Errorf("a recorded message carries the hidden check: %s", m)
				}
			}
			for _, c := range tr.ModelCalls {
				b, _ := json.Marshal(c)
				if strings.Contains(string(b), secret) {
					t.Errorf("a recorded model call carries the hidden check: %s", b)
				}
			}
		})
	}
}

// TestModelTamperingIsRecorded: a model's program that the guard stops
// when it is verified fails with exit_reason tampered, and the model is
// told what was seen.
func TestModelTamperingIsRecorded(t *testing.T) {
	client, fake := newLLM(t, func(_ testsupport.FakeLLMRequest, n int) (int, any) {
		if n == 0 {
			return 200, testsupport.ToolCallReply("c0", "run_python", map[string]string{"code": "import gc\ndef add(a, b):\n    gc.get_objects()\n    return a + b\n"})
		}
		return 200, testsupport.AnswerReply("done")
	})
	a := newAgent(t, client, nil)
	tk := task("Write add(a, b).", map[string]any{"tests": "assert add(2, 3) == 5\n"})
	tk.MaxSteps = 2
	tr, err := a.Execute(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success || tr.ExitReason != core.ExitTampered || !strings.Contains(tr.ErrorMessage, "gc.get_objects") {
		t.Fatalf("success=%v exit_reason=%q error=%q; want tampered", tr.Success, tr.ExitReason, tr.ErrorMessage)
	}
	if reqs := fake.Requests(); len(reqs) < 3 || !strings.Contains(reqs[2].LastContent(), "gc.get_objects") {
		t.Errorf("the model was not told what was seen")
	}
}

// TestCacheKeepsOnlyChecksItPassed (issue 23 §5): a flagged success is
// not cached; a cached program is replayed only for the check it passed,
// not for the same description with other tests.
func TestCacheKeepsOnlyChecksItPassed(t *testing.T) {
	r := testsupport.StartRedis(t)
	cache := templatecache.New(r.Client, templatecache.Options{})
	ctx := context.Background()
	const desc = "Write add(a, b)."
	alwaysEqual := "class A:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return A()\n"
	right := "def add(a, b):\n    return a + b\n"
	model := func(program string) *llm.Client {
		client, _ := newLLM(t, func(_ testsupport.FakeLLMRequest, n int) (int, any) {
			if n == 0 {
				return 200, testsupport.ToolCallReply("c0", "run_python", map[string]string{"code": program})
			}
			return 200, testsupport.AnswerReply("done")
		})
		return client
	}
	tests := map[string]any{"tests": "assert add(2, 3) == 5\n"}

	// A flagged success is recorded, not cached.
	a := newAgent(t, model(alwaysEqual), cache)
	tr, err := a.Execute(ctx, task(desc, tests))
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Success || tr.Metadata[core.MetaFlags] == nil {
		t.Fatalf("success=%v flags=%v (%s); want a flagged success", tr.Success, tr.Metadata[core.MetaFlags], tr.ErrorMessage)
	}
	if n, err := r.Client.Keys(ctx, core.KeyTemplateCachePrefix+"*").Result(); err != nil || len(n) != 0 {
		t.Fatalf("cache keys after a flagged success: %v, %v", n, err)
	}

	// A clean success is cached, and replayed for the same check.
	a = newAgent(t, model(right), cache)
	if tr, err = a.Execute(ctx, task(desc, tests)); err != nil || !tr.Success || tr.Metadata[core.MetaCacheHit] != false {
		t.Fatalf("clean success: %v %v %v", err, tr.Success, tr.Metadata)
	}
	if tr, err = a.Execute(ctx, task(desc, tests)); err != nil || !tr.Success || tr.Metadata[core.MetaCacheHit] != true {
		t.Fatalf("the same check: %v success=%v %v, want a cache hit", err, tr.Success, tr.Metadata)
	}

	// The same description with other tests is a miss: the model (here one
	// with no program) is asked, and nothing passes.
	a = newAgent(t, model("print('no add')\n"), cache)
	tr, err = a.Execute(ctx, task(desc, map[string]any{"tests": "assert False\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success || tr.Metadata[core.MetaCacheHit] != false || tr.Metadata[core.MetaSource] != string(rollout.SourceLLM) {
		t.Fatalf("other tests: success=%v metadata %v; want a miss and the model's failure", tr.Success, tr.Metadata)
	}
}
