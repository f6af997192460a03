package codeagent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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
// pass. The program is hostile: it may rebind any name, patch any module,
// read any frame it can reach, print anything and exit any way.
//
// Appending the tests to the program and passing on exit status 0 is not a
// check: a program that ends in sys.exit(0) or os._exit(0), or registers an
// atexit hook that calls os._exit(0), exits 0 whether or not the tests ran.
// The harness instead runs the program, then the tests, as __main__ of one
// interpreter, and a pass is a line "<tag> pass" that only the tests' own
// last line can make the harness write, tag being "\x1eADP-" and a per-run
// nonce that arrives on stdin ahead of the program's own input.
//
// Before the program runs, the harness takes everything it uses later
// (compile, exec, posix.write and _exit, sys.audit, ...) into locals,
// compiles both the program and the tests (with an appended last line that
// raises the audit event adp.end), copies the builtins, and installs an
// audit hook, the guard (_adp_guard), which a program can neither remove nor
// list. The nonce then exists only in the guard's closure: no frame on the
// stack while the program or the tests run holds it (a program can always
// climb f_back to the harness's frames, unaudited), and taking a frame is
// an audit event. The guard
//   - writes the boundary ("<tag> end <status> <seconds> <how>", on both
//     streams) when the harness's own frame raises adp.mid after the
//     program, and hands the tests' code and fresh builtins to that frame
//     once, at adp.tests;
//   - writes "<tag> pass" and exits 0 at once when adp.end comes from a
//     frame running exactly the tests' code object, called by the harness's
//     frame, with the globals and builtins it handed out. Anything else
//     raising an adp.* event is tampering;
//   - ends the run with "<tag> tampered <event>" and status 86 where the
//     program reaches what would let it read the nonce or rewrite the
//     check: gc.get_objects/get_referrers/get_referents,
//     sys._current_frames, sys.settrace/setprofile (threading.settrace
//     too, when its thread starts), code.__new__ (code.replace; except
//     types.coroutine's flag), marshal.loads other than the importer's,
//     sys.addaudithook, importing ctypes/_ctypes/_testcapi and the like,
//     any ctypes.* event, opening or symlinking a path whose last part is
//     "mem" (/proc/self/mem) or a path given as a str or bytes subclass,
//     and taking a frame from code run inside the guard (a garbage
//     collector callback, a finaliser);
//   - never lets an exception out (its traceback would reach the guard's
//     frame, and through its functions' closures the nonce): any exception
//     inside it, e.g. a RecursionError of a program that recursed to the
//     limit, or an event with arguments it does not expect, ends the run
//     with status 86 and no line; and never calls the program's code: on
//     events' arguments only type() and "is", str methods only on exact
//     str;
//   - writes the tag only to the stdout and stderr the run started with
//     (the same device and inode): a program that put a pipe of its own on
//     fd 1 would read the boundary's tag back.
// The tests run in a copy of the program's namespace whose builtins are the
// copy taken before the program ran (the builtins module is restored too);
// the modules the program imported are dropped from sys.modules, those
// loaded before it put back, and sys.meta_path, path_hooks, path and
// path_importer_cache reset, so a test's own import is fresh and found by
// the interpreter's finders (builtins.abs or math.isclose patched by the
// program, or a finder of its own serving a fake math, does not reach it).
// The attributes of modules loaded before the program (sys, time, io, ...)
// other than builtins are not restored.
//
// What cannot be prevented is flagged and reported on the pass line, then
// in metadata.flags (harnessFlags): an __eq__ or __ne__ that ignores its
// argument (a static check of the syntax tree, made only when the source
// names one), a frame taken by the program (sys._getframe, tb_frame,
// gi_frame, ... from code other than the tests' and the standard library
// modules that take one only to read a module name or print a traceback),
// and a source that names frame or stack introspection. Flagged successes
// stay successes; the exports and the template cache leave them out.
//
// A signal handler is passed the frame it interrupted, without an audit
// event: one that ran while the guard is on the stack would read the
// nonce. So _signal.signal is replaced, before the program runs, by a
// function that asks the guard (adp.signal), which installs the program's
// handler wrapped (_adp_deferred): where a frame of the guard (its
// functions run with globals of their own, marked _ADP_GUARD) is on the
// stack, the wrapper trips the signal again and returns, and the handler
// runs at the first check of the eval breaker after the guard. The
// original signal function lives only in the guard's closure, and
// _imp.create_builtin, which would make a fresh _signal module without an
// audit event, is answered by the guard too (adp.builtin).
//
// Known limits (issue 23 §1): a signal that arrives while the guard runs
// reaches the program's handler late, and a wakeup fd may see it more
// than once; the allowance for
// the standard library is by file name, which a program can give its own
// code (compile(src, "/usr/lib/python3.11/typing.py", ...)), so the frame
// flag is a hint, not a proof; tests that use a module they do not import
// themselves use the program's module, patches included; and a class from
// a module both import is a different class in the tests (the program's
// collections.Counter is not the tests' fresh one). Blocking is by event:
// tests that themselves call gc.get_objects or import ctypes are stopped
// as tampered.
//
// The boundary between the program's output and the tests' lets one run
// yield the program's own output (the run step) and the tests' verdict
// (the verify step) separately.

// harnessPy is the harness's source, run as the jail's main program. Its
// standard input: the nonce line, a line with the byte lengths of the
// program and the tests, the program, the tests, then the program's stdin.
var harnessPy = strings.NewReplacer("@TRACEBACK@", harnessTracebackPy, "@EQ@", harnessEqPy, "@READ@", stdinReaderPy).Replace(harnessMainPy)

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
EQ = r'''@EQ@'''
TAIL = "__import__('sys').audit('adp.end')\n"
@READ@def _adp_harness():
    # Only modules the interpreter has loaded already (posix, not os): the
    # harness adds no start-up cost to the program's run, nor to its
    # tracebacks (see show). What it uses once the program has started is
    # taken here, before: the program may rebind any name.
    t0 = time.perf_counter()
    clock, audit, write, exit_ = time.perf_counter, sys.audit, posix.write, posix._exit
    compile_, exec_, type_, dict_, list_, set_, len_, isinstance_, int_, print_ = compile, exec, type, dict, list, set, len, isinstance, int, print
    BaseException_, SystemExit_ = BaseException, SystemExit
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
    nonce = readline()
    n_prog, n_tests = map(int, readline().split())
    prog, tests = readn(n_prog), readn(n_tests)
    fname = globals().get("__file__") or "main.py"
    main = type(sys)("__main__")
    main.__dict__.update(__file__=fname, __builtins__=__builtins__, __cached__=None)
    mods = sys.modules
    mods["__main__"] = main
    sources = {fname: prog, "tests.py": tests}
    stdio = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    bdict = __builtins__.__dict__ if type(__builtins__) is type(sys) else __builtins__
    # What imports go through, as the program found it.
    sysmod, loaded = sys, dict(mods)
    finders = (list(sys.meta_path), list(sys.path_hooks), list(sys.path))

    # Both are compiled before the program runs (rebinding compile or exec
    # later changes nothing); a syntax error is raised when its part runs.
    flags = []
    prog_code = tests_code = prog_err = tests_err = None
    try:
        prog_code = _adp_compile(prog, fname, flags)
    except BaseException as e:
        prog_err = e.with_traceback(None)
    try:
        tests_code = compile(tests + "\n" + TAIL, "tests.py", "exec")
    except BaseException as e:
        tests_err = e.with_traceback(None)
    here = sys._getframe()
    # The nonce lives on only in the guard's closure (see _adp_guard).
    # The guard's functions run with globals of their own, marked, which
    # tell their frames from all others (f_code is an audited read).
    b0 = dict(bdict)
    guard = type_(_adp_guard)(_adp_guard.__code__, {"__builtins__": b0, "posix": posix, "sys": sys, "_adp_patch": _adp_patch, "_adp_deferred": _adp_deferred, "_ADP_GUARD": True})
    sys.addaudithook(guard(b"\x1eADP-" + nonce, here, tests_code, b0, flags, stdio))
    del b0
    del nonce, tests_code, flags

    def flush():
        for f in stdio:
            try:
                f.flush()
            except BaseException_:
                pass

    def show(e):
        try:
            # Compiled only when there is a traceback to print.
            g = {"sys": sys, "sources": sources}
            exec_(compile_(TRACEBACK, "<adp-traceback>", "exec"), g)
            g["show"](e)
        except BaseException_:
            try:
                stdio[3].write("%s: %s\n" % (type_(e).__name__, e))
            except BaseException_:
                pass

    def status(e):
        c = e.code
        if c is None:
            return 0
        if not isinstance_(c, int_):
            try:
                print_(c, file=stdio[1])
            except BaseException_:
                pass
            return 1
        return c

    how, code = "ran", 0
    try:
        if prog_err is not None:
            raise prog_err
        exec_(prog_code, main.__dict__)
    except SystemExit_ as e:
        how, code = "exit", status(e)
    except BaseException_ as e:
        show(e)
        how, code = "error", 1
    flush()
    audit("adp.mid", b"%d %.6f %s" % (code & 0xff, clock() - t0, how.encode()))
    if how != "ran":
        exit_(code & 0xff)

    # The tests run in a copy of the program's namespace, with the builtins
    # as they were before the program ran, and import afresh the modules
    # the program imported, through the finders the program found (not a
    # finder of its own). The guard hands out their code and builtins.
    for k in list_(mods):
        if k not in loaded:
            del mods[k]
    for k, m in loaded.items():
        if mods.get(k) is not m:
            mods[k] = m
    sysmod.modules = mods
    sysmod.meta_path, sysmod.path_hooks, sysmod.path = list_(finders[0]), list_(finders[1]), list_(finders[2])
    sysmod.path_importer_cache = {}
    box = [dict_(main.__dict__)]
    audit("adp.tests", box)
    g, tests_code, b = box
    del box
    if len_(bdict) != len_(b):
        for k in set_(bdict) - set_(b):
            del bdict[k]
    bdict.update(b)
    g["__builtins__"] = b
    try:
        if tests_err is not None:
            raise tests_err
        exec_(tests_code, g)
    except SystemExit_ as e:
        flush()
        print_("the tests called sys.exit(%r) before their end; tests must run to their last line" % (status(e),), file=stdio[3])
    except BaseException_ as e:
        show(e)
    # Tests that reached their end have exited in the guard.
    flush()
    exit_(1)

def _adp_compile(src, name, flags):
    # The program's code. A comparison method that ignores its argument is
    # flagged (only programs that name one pay for the syntax tree).
    for hint in ("_getframe", "currentframe", "f_back", "f_code", "f_globals", "f_locals", "co_filename", "findCaller", "inspect.stack", ".stack()", "getouterframes", "extract_stack", "format_stack", "print_stack", "walk_stack", "walk_tb", "tb_frame", "gi_frame", "cr_frame"):
        if hint in src:
            flags.append("frame_source")
            break
    for m in _ADP_COMPARISONS:
        if m in src:
            break
    else:
        return compile(src, name, "exec")
    tree = compile(src, name, "exec", 0x400)  # ast.PyCF_ONLY_AST
    g = {}
    exec(compile(EQ, "<adp-eq>", "exec"), g)  # compiled only when needed
    if g["eq_ignores"](tree, _ADP_COMPARISONS):
        flags.append("eq_ignores_argument")
    return compile(tree, name, "exec")

_ADP_COMPARISONS = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__")

def _adp_guard(tag, harness, tests_code, builtins, flags, stdio):
    # The audit hook that guards the run; it holds the nonce (tag) in its
    # closure and nowhere else. It never raises (a traceback would show its
    # frame) and never calls the program's code: on events' arguments it
    # uses only type() and "is", and str methods on str it checked.
    exit_, getframe, type_, str_, bytes_, int_, list_, dict_, len_ = posix._exit, sys._getframe, type, str, bytes, int, list, dict, len
    BaseException_ = BaseException
    posix_write, fstat = posix.write, posix.fstat
    # The guard writes the tag only to the stdout and stderr the run
    # started with: a program may have put a pipe of its own on fd 1 or 2
    # to read the tag back.
    out, err = fstat(1), fstat(2)
    streams = {1: (out.st_dev, out.st_ino), 2: (err.st_dev, err.st_ino)}
    frame_t, code_t = type(harness), type(harness.f_code)
    bytecode = sys.modules["_frozen_importlib_external"]._compile_bytecode.__code__
    lib = getattr(sys, "_stdlib_dir", None) or "%s/lib/python%d.%d" % (sys.base_prefix, sys.version_info[0], sys.version_info[1])
    # Frames the standard library takes only to read a module name.
    readers = frozenset(lib + "/" + f for f in ("typing.py", "collections/__init__.py", "enum.py"))
    # Where frame attributes are read to print a traceback.
    # (types.py takes the frame type from a traceback at its import.)
    printers = frozenset([lib + "/" + f for f in ("traceback.py", "logging/__init__.py", "types.py", "asyncio/coroutines.py", "asyncio/base_tasks.py")] + ["<adp-traceback>"])
    logging, coroutine = lib + "/logging/__init__.py", lib + "/types.py"
    # (The sets of events, modules and attributes below are literals in
    # the tests: constants of the code, not built per run.)
    # Signal handlers (issue 23 §1). A Python signal handler gets the
    # frame it interrupted, without an audit event: one that ran while this
    # guard is on the stack would read the tag from its frames. So every
    # handler the program installs is wrapped (_adp_deferred): one that
    # would interrupt the guard runs instead at the first check of the
    # eval breaker after it. The originals of _signal.signal, and of
    # _imp.create_builtin (which makes a fresh _signal, or _imp, module,
    # without an audit event), live on only here; what the program calls
    # instead raises adp.signal and adp.builtin, handled below.
    sigmod, impmod = sys.modules["_signal"], sys.modules["_imp"]
    signal_, create_ = sigmod.signal, impmod.create_builtin
    kept = {"_signal": sigmod, "_imp": impmod}
    trip, ident, callable_, spec_t = sys.modules["_thread"].interrupt_main, sys.modules["_thread"].get_ident, callable, type(sys.implementation)
    TypeError_ = TypeError
    handlers = {}  # wrapper: the program's handler
    _adp_patch(sigmod, impmod, sys.audit, sigmod.getsignal, handlers)
    deferred_ = _adp_deferred
    seen = list_(flags)
    state = 0  # 1: the program's boundary written, 2: the tests handed out
    g = b = None
    # Per thread (the interpreter may switch threads inside the hook): the
    # threads in which the guard takes a frame itself, and how many calls
    # of the hook are under way in each.
    mine = set()
    depth = {}

    def write(fd, line):
        st = fstat(fd)
        if (st.st_dev, st.st_ino) != streams[fd]:
            exit_(87)
        posix_write(fd, line)

    def tampered(what):
        try:
            write(1, tag + b" tampered " + what.encode() + b"\n")
        except BaseException_:
            pass
        exit_(86)

    def caller():
        # The frame that raised the event (after caller, check and hook);
        # None when there is none (a thread running a C function).
        t = ident()
        mine.add(t)
        try:
            f = getframe(3)
        except BaseException_:
            f = None
        mine.discard(t)
        return f

    def named(s, want):
        return type_(s) is str_ and s == want

    def note(flag):
        if flag not in seen:
            seen.append(flag)

    def path(ev, p):
        t = type_(p)
        if t is str_:
            if p == "mem" or p.endswith("/mem"):
                tampered(ev + " /proc/*/mem")
        elif t is bytes_:
            if p == b"mem" or p.endswith(b"/mem"):
                tampered(ev + " /proc/*/mem")
        elif t is not int_ and p is not None:
            tampered(ev + " path")  # a str or bytes subclass: not read safely

    def hook(ev, args):
        try:
            t = ident()
            d = depth.get(t, 0)
            if d:
                # Code run while the hook runs (a garbage collector
                # callback, a finaliser) must not take a frame: the hook's
                # would be in reach.
                if t in mine and ev == "sys._getframe":
                    return
                if ev == "sys._getframe" or (ev == "object.__getattr__" and args[1] in {"tb_frame", "gi_frame", "cr_frame", "ag_frame"}):
                    tampered("hook_frame")
            depth[t] = d + 1
            check(ev, args)
            if d:
                depth[t] = d
            else:
                del depth[t]
        except BaseException_:
            # An exception's traceback would reach this frame and, through
            # its functions' closures, the nonce: events with arguments the
            # guard does not expect come only from the program, and a
            # RecursionError from a program that recursed to the limit
            # before an event. posix._exit, a C function, still runs there.
            exit_(86)

    def answer(ev, box):
        # adp.signal and adp.builtin, raised by what the program calls
        # instead of _signal.signal and _imp.create_builtin (_adp_patch),
        # or by the program itself: either way it gets only what those
        # would give it. False for a box of another shape (tampering).
        if ev == "adp.signal" and len_(box) == 2:
            n, h = box
            if type_(n) is not int_ or not (type_(h) is int_ or callable_(h)):
                box += [None, TypeError_("signal(): an int signal number and an int or callable handler")]
                return True
            if type_(h) is not int_:
                w = deferred_(h, trip)
            else:
                w = h
            try:
                old = signal_(n, w)
            except BaseException_ as e:
                box += [None, e.with_traceback(None)]
                return True
            if w is not h:
                handlers[w] = h
            box += [handlers.get(old, old), None]
            return True
        if ev == "adp.builtin" and len_(box) == 1:
            name = box[0]
            if type_(name) is not str_:
                box += [None, TypeError_("create_builtin(): the spec's name must be a str")]
            elif name in kept:
                box += [kept[name], None]
            else:
                try:
                    # A spec of the guard's, whose name cannot change
                    # between reads.
                    box += [create_(spec_t(name=name)), None]
                except BaseException_ as e:
                    box += [None, e.with_traceback(None)]
            return True
        return False

    def check(ev, args):
        nonlocal state, g, b
        if ev in {"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._current_frames",
                  "sys._current_exceptions", "sys.settrace", "sys.setprofile", "code.__new__", "marshal.load",
                  "sys.addaudithook"}:
            if ev == "code.__new__":
                # types.coroutine sets a flag of a function's code, the
                # only change of code the standard library makes.
                f = caller()
                if f is not None and named(f.f_code.co_filename, coroutine) and named(f.f_code.co_name, "coroutine"):
                    return
            tampered(ev)
        elif ev == "sys._getframe":
            f = caller()
            if f is None:
                note("frame")
                return
            if f.f_globals is g:
                return
            fn = f.f_code.co_filename
            if type_(fn) is str_ and fn in readers:
                return
            if named(fn, logging) and type_(args[0]) is frame_t and named(args[0].f_code.co_filename, logging):
                # logging takes its own frame and walks out of itself.
                return
            note("frame")
        elif ev == "object.__getattr__":
            if args[1] in {"tb_frame", "gi_frame", "cr_frame", "ag_frame"}:
                f = caller()
                if f is None:
                    note("frame")
                    return
                fn = f.f_code.co_filename
                if f.f_globals is not g and not (type_(fn) is str_ and fn in printers):
                    note("frame")
        elif ev == "import":
            n = args[0]
            if type_(n) is not str_:
                tampered("import")
            if n.partition(".")[0] in {"ctypes", "_ctypes", "_testcapi", "_testinternalcapi", "_testbuffer", "_xxsubinterpreters", "_xxtestfuzz"}:
                tampered("import " + n.partition(".")[0])
        elif ev == "open" or ev == "os.symlink":
            path(ev, args[0])
        elif ev == "marshal.loads":
            f = caller()
            if f is None or f.f_code is not bytecode:
                tampered(ev)
        elif ev[:7] == "ctypes.":
            tampered(ev)
        elif ev[:4] == "adp.":
            if (ev == "adp.signal" or ev == "adp.builtin") and len_(args) == 1 and type_(args[0]) is list_:
                if answer(ev, args[0]):
                    return
            f = caller()
            if f is None:
                tampered(ev)
            if ev == "adp.mid" and state == 0 and f is harness and len_(args) == 1 and type_(args[0]) is bytes_:
                state = 1
                write(1, tag + b" end " + args[0] + b"\n")
                write(2, tag + b" end\n")
                return
            if ev == "adp.tests" and state == 1 and f is harness and len_(args) == 1 and type_(args[0]) is list_ and len_(args[0]) == 1 and type_(args[0][0]) is dict_:
                state = 2
                g, b = args[0][0], dict_(builtins)
                args[0].append(tests_code)
                args[0].append(b)
                return
            if ev == "adp.end" and state == 2 and f.f_code is tests_code and f.f_back is harness and f.f_globals is g and f.f_builtins is b:
                for s in stdio[2:]:
                    try:
                        s.flush()
                    except BaseException_:
                        pass
                write(1, tag + b" pass" + "".join(" " + s for s in seen).encode() + b"\n")
                exit_(0)
            tampered(ev)
    return hook

def _adp_patch(sigmod, impmod, audit, getsignal, handlers):
    # What the program calls instead of _signal.signal, getsignal and
    # _imp.create_builtin: they hold nothing of the guard's (only
    # sys.audit, the harmless getsignal and the map of wrappers back to
    # the program's handlers), and ask the guard by an event.
    def ask(event, box, n):
        audit(event, box)
        if len(box) != n + 2:
            raise RuntimeError("the harness did not answer " + event)
        if box[n + 1] is not None:
            raise box[n + 1]
        return box[n]
    int_, isinstance_ = int, isinstance
    def signal(signalnum, handler):
        # The guard takes exact ints (signal.SIGALRM is an IntEnum).
        if isinstance_(signalnum, int_):
            signalnum = int_.__index__(signalnum)
        if isinstance_(handler, int_):
            handler = int_.__index__(handler)
        return ask("adp.signal", [signalnum, handler], 2)
    def getsignal_(signalnum):
        h = getsignal(signalnum)
        return handlers.get(h, h)
    def create_builtin(spec):
        return ask("adp.builtin", [spec.name], 1)
    signal.__doc__, getsignal_.__doc__, create_builtin.__doc__ = sigmod.signal.__doc__, getsignal.__doc__, impmod.create_builtin.__doc__
    getsignal_.__name__ = "getsignal"
    sigmod.signal, sigmod.getsignal, impmod.create_builtin = signal, getsignal_, create_builtin

def _adp_deferred(handler, trip):
    # The program's signal handler, run only where no frame of the guard
    # (globals marked _ADP_GUARD) is on the stack. Where one is, the signal is tripped
    # again (_thread.interrupt_main, which runs no handler itself) and
    # nothing after it checks the eval breaker in this frame (a list
    # display calls trip, not a CALL instruction): the handler runs at the
    # first check after the guard has returned.
    def deferred(signum, frame):
        f = frame
        while f is not None:
            if "_ADP_GUARD" in f.f_globals:
                [*map(trip, (signum,))]
                return
            f = f.f_back
        return handler(signum, frame)
    return deferred

_adp_harness()
`

// harnessEqPy is the static check of comparison methods (metadata.flags
// eq_ignores_argument), compiled by the harness only for a program that
// names one: most do not, and every run loads the harness's code. It must
// not contain three single quotes in a row.
const harnessEqPy = `def eq_ignores(tree, names):
    # Whether a comparison method (def, assignment, dict key, keyword,
    # setattr) never reads its second argument, or is given something else
    # than a function of its own (another method, a name), or is defined in
    # a string (for exec).
    def fields(n):
        for f in n._fields:
            v = getattr(n, f, None)
            if type(v) is list:
                yield from v
            elif v is not None and hasattr(v, "_fields"):
                yield v
    def ignores(fn):
        a = fn.args
        params = [p.arg for p in a.posonlyargs + a.args]
        if len(params) >= 2:
            other = params[1]
        elif a.vararg is not None:
            other = a.vararg.arg
        else:
            return True
        todo = list(fn.body) if type(fn.body) is list else [fn.body]
        while todo:
            n = todo.pop()
            if type(n).__name__ == "Name" and n.id == other:
                return False
            todo.extend(fields(n))
        return True
    def given(v):
        if v is None:
            return False
        if type(v).__name__ == "Lambda":
            return ignores(v)
        return True
    todo = [tree]
    while todo:
        n = todo.pop()
        k = type(n).__name__
        if k in ("FunctionDef", "AsyncFunctionDef") and n.name in names:
            if ignores(n):
                return True
        elif k in ("Assign", "AnnAssign"):
            ts = n.targets if k == "Assign" else [n.target]
            if any(getattr(t, "id", getattr(t, "attr", None)) in names for t in ts) and given(n.value):
                return True
        elif k == "Dict":
            for key, v in zip(n.keys, n.values):
                if getattr(key, "value", None) in names and given(v):
                    return True
        elif k == "Call":
            if len(n.args) >= 3 and getattr(n.args[1], "value", None) in names and given(n.args[2]):
                return True
            for kw in n.keywords:
                if kw.arg in names and given(kw.value):
                    return True
        elif k == "Constant" and type(n.value) is str and "__" in n.value:
            for m in names:
                if "def " + m in n.value or m + " =" in n.value or m + "=" in n.value:
                    return True
        todo.extend(fields(n))
    return False
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
// number (in hex) and the marshalled code (in base64, which keeps it
// within the 64 KiB of output a run keeps), one per line. Compiling the
// harness from source costs every run 0.4 ms of CPU (more than compiling a
// HumanEval problem and its tests); loading the marshalled code costs a
// fraction of that. The code is compiled under the program's own file name
// (__file__), as it is when the source runs, so tracebacks read the same
// either way.
const harnessCompilerPy = `import binascii, marshal, sys
src = sys.stdin.read()
magic = sys.modules["_frozen_importlib_external"].MAGIC_NUMBER
sys.stdout.write(magic.hex() + "\n" + binascii.b2a_base64(marshal.dumps(compile(src, __file__, "exec")), newline=False).decode() + "\n")
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

// compileHarness returns the harness compiled by jail's interpreter, or
// img's python3 (see
// harnessCompilerPy), checked by a run: a program and passing tests must
// pass, and failing tests must fail.
func compileHarness(ctx context.Context, jail sandbox.Jail, lim sandbox.Limits, img *sandbox.Image) (harness, error) {
	res, err := jail.Run(ctx, sandbox.Request{Code: harnessCompilerPy, Stdin: []byte(harnessPy), Limits: lim, Image: img})
	if err != nil {
		return harness{}, fmt.Errorf("compile the harness: %w", err)
	}
	magic, code, _ := strings.Cut(strings.TrimSuffix(res.Stdout, "\n"), "\n")
	magicBin, errMagic := hex.DecodeString(magic)
	bin, errCode := base64.StdEncoding.DecodeString(code)
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
		req.Image = img
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
	// passed: the tests ran to their end (the guard's pass line closes
	// stdout) and the run exited 0.
	passed bool
	// flags are what the guard saw of a passing run (see harnessFlags).
	flags []string
	// tampered is the event the guard stopped the run at ("" when it did
	// not): the program reached for the harness's memory or the check.
	tampered string
}

// tamperedExit is the exit status of a run the guard stopped.
const tamperedExit = 86

// read splits a harness run's result.
func (h harnessRun) read(res sandbox.Result, lim sandbox.Limits) harnessResult {
	out := harnessResult{tests: res}
	tests := res
	last := tests.Stdout
	if i := strings.LastIndexByte(strings.TrimSuffix(last, "\n"), '\n'); i >= 0 {
		last = last[i+1:]
	}
	if rest, ok := strings.CutPrefix(last, h.tag+" "); ok && strings.HasSuffix(rest, "\n") {
		f := append(strings.Fields(rest), "")
		switch {
		case f[0] == "pass" && res.OK():
			out.passed, out.flags = true, f[1:len(f)-1]
			tests.Stdout = strings.TrimSuffix(tests.Stdout, last)
		case f[0] == "tampered" && res.ExitCode == tamperedExit:
			out.tampered = strings.TrimSpace(strings.TrimPrefix(rest, "tampered"))
			tests.Stdout = strings.TrimSuffix(tests.Stdout, last)
			tests.ErrorType, tests.ErrorMessage = core.ErrRuntime, tamperedMessage(out.tampered)
		}
	}
	res.Stdout = tests.Stdout
	out.tests = tests

	end := h.tag + " end "
	i := strings.Index(tests.Stdout, end)
	j := strings.Index(tests.Stderr, h.tag+" end\n")
	if i < 0 || j < 0 || res.StdoutTruncated || res.StderrTruncated {
		// A truncated stream may have lost its boundary, or hold a
		// boundary with a dropped middle on either side: not split.
		return out
	}
	line, rest, ok := strings.Cut(tests.Stdout[i+len(end):], "\n")
	f := strings.Fields(line)
	if !ok || len(f) != 3 {
		return out
	}
	code, err1 := strconv.Atoi(f[0])
	secs, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil {
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
	if strings.Contains(tests.ErrorMessage, h.tag) {
		// Read off the whole run's stderr, which ends with the boundary
		// when the tests printed nothing.
		tests.ErrorType, tests.ErrorMessage = sandbox.ExitError(tests.ExitCode, tests.Stderr, lim)
	}
	out.split, out.program, out.programExited, out.tests = true, p, f[2] == "exit", tests
	return out
}

// verdict is what a harness run says of the tests: ok, or why not, as the
// verify step's error.
func (hr harnessResult) verdict() (ok bool, et core.ErrorType, msg string) {
	t := hr.tests
	switch {
	case hr.tampered != "":
		return false, core.ErrWrongAnswer, tamperedMessage(hr.tampered)
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

// harnessFlags explain the flags a passing run may carry: what the guard
// saw that can make tests pass without the work they check (an object
// equal to anything, a function that answers according to its caller). A
// flagged success stays a success, marked in metadata.flags, and the
// exports leave it out unless asked (see internal/export).
var harnessFlags = map[string]string{
	"eq_ignores_argument": "an __eq__ or __ne__ in the program ignores its argument: an object equal to anything passes any == test",
	"frame":               "the program took a frame (sys._getframe, a traceback's, generator's or coroutine's frame) and could have read its caller, the tests",
	"frame_source":        "the program's source reads frames or the stack (sys._getframe, inspect.stack, f_back, ...), which can tell the tests from other callers",
}

// flagNotes are a passing run's flags as metadata.flags: "name: what it means".
func flagNotes(flags []string) []string {
	var notes []string
	for _, f := range flags {
		if d, ok := harnessFlags[f]; ok {
			notes = append(notes, f+": "+d)
		} else {
			notes = append(notes, f)
		}
	}
	return notes
}

// tamperedReasons say why an event the guard stops a run at reaches the
// harness's memory or forges the check.
var tamperedReasons = map[string]string{
	"gc.get_objects":          "which reaches every object, the harness's included",
	"gc.get_referrers":        "which reaches the objects that refer to one, the harness's included",
	"gc.get_referents":        "which reaches the objects one refers to, the harness's included",
	"sys._current_frames":     "which reaches the frames of every thread, the harness's included",
	"sys._current_exceptions": "which reaches the frames of every thread, the harness's included",
	"sys.settrace":            "which would run the program's code inside every frame, the harness's included",
	"sys.setprofile":          "which would run the program's code inside every frame, the harness's included",
	"code.__new__":            "which makes code with hand-made bytecode, which can read any memory",
	"marshal.load":            "which can make code with hand-made bytecode, which can read any memory",
	"marshal.loads":           "which can make code with hand-made bytecode, which can read any memory",
	"sys.addaudithook":        "which would see the harness's own events",
}

// tamperedMessage is the error of a run the guard stopped at event.
func tamperedMessage(event string) string {
	const pre = "tampered: the program "
	switch name, rest, _ := strings.Cut(event, " "); {
	case strings.HasPrefix(event, "adp."):
		return pre + "raised the harness's own audit event " + event + ", which only the harness and the tests' last line may raise"
	case event == "hook_frame":
		return pre + "took a frame from code run inside the harness's audit hook (a garbage collector callback, a finaliser), where the check's secret is in reach"
	case event == "import":
		return pre + "imported a module by a name that is not a str, which the harness cannot check"
	case name == "import":
		return pre + "imported " + rest + ", which reaches the interpreter's memory"
	case strings.HasSuffix(event, "/proc/*/mem"):
		return pre + "opened (or linked to) /proc/*/mem, the process's memory"
	case strings.HasSuffix(event, " path"):
		return pre + "opened a path given as a str or bytes subclass, which the harness cannot check"
	case strings.HasPrefix(event, "ctypes."):
		return pre + "called " + event + ", which reaches the interpreter's memory"
	case tamperedReasons[event] != "":
		return pre + "called " + event + ", " + tamperedReasons[event]
	default:
		return pre + "did what the harness forbids (" + event + ")"
	}
}
