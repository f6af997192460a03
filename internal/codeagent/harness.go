package codeagent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/sandbox"
)

// The test harness: how a program and its tests (constraints.tests) run in
// one interpreter without the program being able to pass tests it did not
// run.
//
// Appending the tests to the program and passing on exit status 0 is not a
// check: a program that ends in sys.exit(0) or os._exit(0), or registers an
// atexit hook that calls os._exit(0), exits 0 whether or not the tests ran.
// The harness instead runs the program, then the tests, as __main__ of one
// interpreter, and only after the tests' last line writes a marker carrying a
// per-run nonce to stdout. The nonce arrives on stdin, ahead of the program's
// own input, and is read before the program runs, so the program never finds
// it on any descriptor; a verdict is a pass only when the run exited 0 and its
// stdout ends with the marker. Exiting early, crashing, killing itself,
// exiting from inside the tests or closing stdout all leave the marker out.
//
// Between the program and the tests the harness writes a boundary marker to
// both streams, with the program's exit status and duration, so that one run
// yields the program's own output (the run step) and the tests' verdict (the
// verify step) separately.
//
// Known limit: the harness and the program share one interpreter, so a
// program written to search the harness's memory (its frames or the garbage
// collector's objects) for the nonce could forge the marker; the check stops
// programs that exit, crash or skip the tests, not a deliberate exploit of
// the interpreter.

// harnessPy is the harness's source, run as the jail's main program. Its
// standard input: the nonce line, a line with the byte lengths of the
// program and the tests, the program, the tests, then the program's stdin.
var harnessPy = strings.NewReplacer("@TRACEBACK@", harnessTracebackPy, "@READ@", stdinReaderPy).Replace(harnessMainPy)

// stdinReaderPy defines _adp_read(n): exactly n bytes of stdin, read with
// posix.read so that nothing past them is buffered where the program could
// find it. The harness and the compiled harness's loader both read so.
const stdinReaderPy = `def _adp_read(n):
    b = bytearray()
    while len(b) < n:
        c = posix.read(0, n - len(b))
        if not c:
            posix._exit(3)
        b += c
    return bytes(b)
`

const harnessMainPy = `import posix, sys, time
TRACEBACK = r'''@TRACEBACK@'''
@READ@def _adp_harness():
    # Only modules the interpreter has loaded already (posix, not os): the
    # harness adds no start-up cost to the program's run, nor to its
    # tracebacks (see show).
    t0 = time.perf_counter()
    def readline():
        b = bytearray()
        while True:
            c = posix.read(0, 1)
            if not c:
                posix._exit(3)
            if c == b"\n":
                return bytes(b)
            b += c
    def readn(n):
        return _adp_read(n).decode("utf-8")
    tag = b"\x1eADP-" + readline()
    n_prog, n_tests = map(int, readline().split())
    prog, tests = readn(n_prog), readn(n_tests)
    fname = globals().get("__file__") or "main.py"
    main = type(sys)("__main__")
    main.__dict__.update(__file__=fname, __builtins__=__builtins__, __cached__=None)
    sys.modules["__main__"] = main
    sources = {fname: prog, "tests.py": tests}

    def flush():
        for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                f.flush()
            except BaseException:
                pass

    def run(src, name):
        try:
            exec(compile(src, name, "exec"), main.__dict__)
        except SystemExit as e:
            c = e.code
            if c is None:
                c = 0
            elif not isinstance(c, int):
                try:
                    print(c, file=sys.stderr)
                except BaseException:
                    pass
                c = 1
            return "exit", c
        except BaseException as e:
            try:
                # Compiled only when there is a traceback to print.
                g = {"sys": sys, "sources": sources}
                exec(compile(TRACEBACK, "<adp-traceback>", "exec"), g)
                g["show"](e)
            except BaseException:
                try:
                    sys.stderr.write("%s: %s\n" % (type(e).__name__, e))
                except BaseException:
                    pass
            return "error", 1
        return "ran", 0

    how, code = run(prog, fname)
    flush()
    posix.write(1, tag + b" end %d %.6f %s\n" % (code & 0xff, time.perf_counter() - t0, how.encode()))
    posix.write(2, tag + b" end\n")
    if how != "ran":
        posix._exit(code & 0xff)
    how, code = run(tests, "tests.py")
    flush()
    if how != "ran":
        if how == "exit":
            print("the tests called sys.exit(%r) before their end; tests must run to their last line" % (code,), file=sys.stderr)
            flush()
        posix._exit(1)
    posix.write(1, tag + b" pass\n")
    posix._exit(0)
_adp_harness()
`

// harnessTracebackPy prints tracebacks in the traceback module's layout,
// without it: importing traceback (and linecache, tokenize, re, ...) costs
// about as much CPU as a small program's whole run, and most failing
// programs print one. The harness compiles it only when there is one to
// print. It must not contain three single quotes in a row.
const harnessTracebackPy = `# Tracebacks in the traceback module's layout, without it: importing
# traceback (and linecache, tokenize, re, ...) costs about as much CPU as
# a small program's whole run, and most failing programs print one.
lines = {}
def source_line(name, n):
    if name not in lines:
        s = sources.get(name)
        if s is None:
            try:
                with open(name, encoding="utf-8", errors="replace") as f:
                    s = f.read()
            except BaseException:
                s = ""
        lines[name] = s.splitlines()
    ls = lines[name]
    return ls[n - 1] if 0 < n <= len(ls) else ""

def chars(line, offset):
    return len(line.encode("utf-8")[:offset].decode("utf-8", "replace"))

# The carets under the failing expression, as the traceback module
# draws them (all "^": its "~" anchors need the ast module).
def carets(tb, line):
    try:
        pos = tuple(tb.tb_frame.f_code.co_positions())[tb.tb_lasti // 2]
    except BaseException:
        return ""
    lineno, end_lineno, col, end_col = pos
    if lineno != tb.tb_lineno or col is None or end_col is None:
        return ""
    code = line.strip()
    indent = len(line) - len(line.lstrip())
    start, end = chars(line, col), chars(line, end_col)
    if end_lineno != lineno:
        end = indent + len(code)
    if end - start >= len(code):
        return ""
    return "    " + " " * (start - indent) + "^" * (end - start) + "\n"

def only(x):
    t = type(x)
    name, mod = t.__qualname__, t.__module__
    if mod not in ("__main__", "builtins"):
        name = mod + "." + name
    r = ""
    if isinstance(x, SyntaxError):
        r = '  File "%s", line %s\n' % (x.filename or "<string>", x.lineno)
        text = x.text
        if x.filename in sources and x.lineno:
            # The interpreter reads the text from the file of that
            # name: this harness, not the program.
            text = source_line(x.filename, x.lineno)
        if text:
            text = text.rstrip("\n")
            code = text.lstrip()
            r += "    " + code + "\n"
            if x.offset is not None and x.offset > 0:
                start = max(x.offset - 1 - (len(text) - len(code)), 0)
                width = 1
                if x.end_offset is not None and x.end_lineno in (None, x.lineno):
                    width = max(x.end_offset - x.offset, 1)
                r += "    " + " " * start + "^" * width + "\n"
        msg = str(x.msg)
    else:
        try:
            msg = str(x)
        except BaseException:
            msg = "<exception str() failed>"
    r += name + (": " + msg if msg else "") + "\n"
    for note in getattr(x, "__notes__", None) or ():
        r += str(note) + "\n"
    return r

def frames(tb):
    out, last, count = [], None, 0
    def repeated():
        if count > 3:
            out.append("  [Previous line repeated %d more times]\n" % (count - 3))
    while tb is not None:
        co = tb.tb_frame.f_code
        key = (co.co_filename, tb.tb_lineno, co.co_name)
        if key == last:
            count += 1
        else:
            repeated()
            last, count = key, 1
        if count <= 3:
            out.append('  File "%s", line %d, in %s\n' % key)
            line = source_line(key[0], key[1])
            if line.strip():
                out.append("    " + line.strip() + "\n" + carets(tb, line))
        tb = tb.tb_next
    repeated()
    return "".join(out)

groups = getattr(sys.modules["builtins"], "BaseExceptionGroup", ())
def show(e):
    w, seen = sys.stderr.write, set()
    def emit(x, tb):
        seen.add(id(x))
        cause, context = x.__cause__, x.__context__
        if cause is not None and id(cause) not in seen:
            emit(cause, cause.__traceback__)
            w("\nThe above exception was the direct cause of the following exception:\n\n")
        elif context is not None and not x.__suppress_context__ and id(context) not in seen:
            emit(context, context.__traceback__)
            w("\nDuring handling of the above exception, another exception occurred:\n\n")
        if tb is not None:
            w("Traceback (most recent call last):\n" + frames(tb))
        w(only(x))
        if isinstance(x, groups):
            for i, sub in enumerate(x.exceptions, 1):
                w("+---------------- %d ----------------\n" % i)
                emit(sub, sub.__traceback__)
    # The first entry is this harness's exec.
    emit(e, e.__traceback__.tb_next if e.__traceback__ else None)
`

// harness is what a jail runs to run a program and its tests: prog as its
// main program, with stdin ahead of the nonce on its standard input.
type harness struct {
	prog, stdin string
}

// sourceHarness runs harnessPy itself.
var sourceHarness = harness{prog: harnessPy}

// harnessCompilerPy compiles the harness's source (its stdin) with the
// jail's own interpreter and writes that interpreter's bytecode magic
// number and the marshalled code, in hex, one per line. Compiling the
// harness from source costs every run 0.4 ms of CPU (more than compiling a
// HumanEval problem and its tests); loading the marshalled code costs a
// fraction of that. The code is compiled under the program's own file name
// (__file__), as it is when the source runs, so tracebacks read the same
// either way.
const harnessCompilerPy = `import marshal, sys
src = sys.stdin.read()
magic = sys.modules["_frozen_importlib_external"].MAGIC_NUMBER
sys.stdout.write(magic.hex() + "\n" + marshal.dumps(compile(src, __file__, "exec")).hex() + "\n")
`

// compiledHarnessPy is the main program of the compiled harness: it reads
// the marshalled code and the source (lengths %[1]d and %[2]d) from stdin
// exactly, as the harness reads the rest, and runs the code when the
// interpreter's magic number is the one it was compiled by (%[3]s), the
// source otherwise. Both travel on stdin, not in the program, so the
// program stays a few lines that nsjail and bwrap pass on per run instead
// of 28 KB of text.
const compiledHarnessPy = "import marshal, posix, sys\n" + stdinReaderPy + `_adp_code, _adp_src = _adp_read(%[1]d), _adp_read(%[2]d)
if sys.modules["_frozen_importlib_external"].MAGIC_NUMBER == bytes.fromhex("%[3]s"):
    exec(marshal.loads(_adp_code))
else:
    exec(compile(_adp_src.decode("utf-8"), __file__, "exec"))
`

// compileHarness returns the harness compiled by jail's interpreter (see
// harnessCompilerPy), checked by a run: a program and passing tests must
// pass, and failing tests must fail.
func compileHarness(ctx context.Context, jail sandbox.Jail, lim sandbox.Limits) (harness, error) {
	res, err := jail.Run(ctx, sandbox.Request{Code: harnessCompilerPy, Stdin: []byte(harnessPy), Limits: lim})
	if err != nil {
		return harness{}, fmt.Errorf("compile the harness: %w", err)
	}
	magic, code, _ := strings.Cut(strings.TrimSuffix(res.Stdout, "\n"), "\n")
	magicBin, errMagic := hex.DecodeString(magic)
	bin, errCode := hex.DecodeString(code)
	if !res.OK() || res.StdoutTruncated || errMagic != nil || errCode != nil || len(magicBin) == 0 || len(bin) == 0 {
		return harness{}, fmt.Errorf("compile the harness: exit %d, %d bytes of output (truncated: %v): %s",
			res.ExitCode, len(res.Stdout), res.StdoutTruncated, clip(res.Stderr, 300))
	}
	h := harness{
		prog:  fmt.Sprintf(compiledHarnessPy, len(bin), len(harnessPy), magic),
		stdin: string(bin) + harnessPy,
	}
	for _, c := range []struct {
		tests string
		pass  bool
	}{{"assert f() == 1\n", true}, {"assert f() == 2\n", false}} {
		hrun, req := newHarnessRun(h, "def f():\n    return 1\nprint('ran')\n", c.tests, "", lim)
		res, err := jail.Run(ctx, req)
		if err != nil {
			return harness{}, fmt.Errorf("check the compiled harness: %w", err)
		}
		hr := hrun.read(res, lim)
		if !hr.split || hr.program.Stdout != "ran\n" || hr.passed != c.pass {
			return harness{}, fmt.Errorf("check the compiled harness: tests %q: split %v, program output %q, passed %v (want %v): %s",
				c.tests, hr.split, hr.program.Stdout, hr.passed, c.pass, clip(res.Stderr, 300))
		}
	}
	return h, nil
}

// harnessRun is one run of the harness: its request and how to read it.
type harnessRun struct {
	tag string // "\x1eADP-<nonce>"
}

// newHarnessRun returns the request that runs h on program and tests with
// the program's stdin.
func newHarnessRun(h harness, program, tests, stdin string, lim sandbox.Limits) (harnessRun, sandbox.Request) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	nonce := hex.EncodeToString(b[:])
	in := fmt.Sprintf("%s%s\n%d %d\n%s%s%s", h.stdin, nonce, len(program), len(tests), program, tests, stdin)
	return harnessRun{tag: "\x1eADP-" + nonce}, sandbox.Request{Code: h.prog, Stdin: []byte(in), Limits: lim}
}

// harnessResult is a harness run read back.
type harnessResult struct {
	// split is false when the program's part could not be told from the
	// tests' (no boundary: the process ended during the program, or the
	// boundary was in a dropped middle of the output).
	split bool
	// program is the program's own run: its output before the boundary,
	// its exit status, duration and error. Valid when split.
	program sandbox.Result
	// programExited: the program ended with sys.exit(), so the tests did
	// not run.
	programExited bool
	// tests is the tests' part of the run (the whole run when !split), the
	// markers removed.
	tests sandbox.Result
	// passed: the tests ran to their end (the pass marker closes stdout)
	// and the run exited 0.
	passed bool
}

// read splits a harness run's result.
func (h harnessRun) read(res sandbox.Result, lim sandbox.Limits) harnessResult {
	out := harnessResult{tests: res}
	pass := h.tag + " pass\n"
	out.passed = res.OK() && strings.HasSuffix(res.Stdout, pass)
	tests := res
	tests.Stdout = strings.TrimSuffix(tests.Stdout, pass)

	end := h.tag + " end "
	i := strings.Index(tests.Stdout, end)
	j := strings.Index(tests.Stderr, h.tag+" end\n")
	if i < 0 || j < 0 || res.StdoutTruncated || res.StderrTruncated {
		// A truncated stream may have lost its boundary, or hold a
		// boundary with a dropped middle on either side: not split.
		out.tests = tests
		return out
	}
	line, rest, ok := strings.Cut(tests.Stdout[i+len(end):], "\n")
	f := strings.Fields(line)
	if !ok || len(f) != 3 {
		out.tests = tests
		return out
	}
	code, err1 := strconv.Atoi(f[0])
	secs, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil {
		out.tests = tests
		return out
	}
	p := sandbox.Result{
		RunID:    res.RunID,
		Stdout:   tests.Stdout[:i],
		Stderr:   tests.Stderr[:j],
		ExitCode: code,
		Wall:     time.Duration(secs * float64(time.Second)),
	}
	if code != 0 {
		p.ErrorType, p.ErrorMessage = sandbox.ExitError(code, p.Stderr, lim)
	}
	tests.Stdout = rest
	tests.Stderr = tests.Stderr[j+len(h.tag+" end\n"):]
	tests.Wall = max(res.Wall-p.Wall, 0)
	out.split, out.program, out.programExited, out.tests = true, p, f[2] == "exit", tests
	return out
}

// verdict is what a harness run says of the tests: ok, or why not, as the
// verify step's error.
func (hr harnessResult) verdict() (ok bool, et core.ErrorType, msg string) {
	t := hr.tests
	switch {
	case hr.passed:
		return true, core.ErrNone, ""
	case hr.split && hr.programExited:
		return false, core.ErrWrongAnswer, fmt.Sprintf("the program ended with sys.exit(%d) before the tests ran", hr.program.ExitCode)
	case t.ErrorType == core.ErrRuntime || t.ErrorType == core.ErrCompile:
		return false, core.ErrWrongAnswer, "tests failed: " + t.ErrorMessage
	case t.ErrorType != core.ErrNone:
		return false, t.ErrorType, "tests failed: " + t.ErrorMessage
	case !hr.split:
		return false, core.ErrWrongAnswer, fmt.Sprintf("the tests did not run: the process exited with status %d before the program finished", t.ExitCode)
	default:
		return false, core.ErrWrongAnswer, fmt.Sprintf("the tests did not run to their end (exit status %d)", t.ExitCode)
	}
}
