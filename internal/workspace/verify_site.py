# The runtime's sitecustomize for a workspace task's verify step (verify.go):
# on PYTHONPATH (the verify step's own directory, which no earlier step could
# reach), found before anything of the workspace.
#  - It records this interpreter's start, and its normal end from an atexit
#    hook registered before any other (atexit runs hooks last in, first out,
#    so this one runs after every hook of the tests and of the code they
#    import): an interpreter that ends by os._exit, by an atexit hook that
#    exits, by exec or by a signal leaves a start without an end.
#  - At its end it checks that unittest's TestCase and TestResult methods are
#    still the standard library's own.
#  - It appends the working directory to sys.path, last: PYTHONSAFEPATH keeps
#    it from the front, where a workspace file would shadow the standard
#    library or the test runner.
#  - It hides the distributions (*.dist-info, *.egg-info) under the workspace
#    (ADP_VERIFY_WORKSPACE) from importlib.metadata: their entry points would
#    otherwise be loaded by the runner (pytest loads every pytest11 plugin),
#    so a plugin of the agent's could report the hidden tests passed without
#    the tests importing anything of the workspace.
def _adp_verify():
    import atexit
    import os
    import sys

    path = os.environ.get("ADP_VERIFY_RECORDS")
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    write, getpid, pid = os.write, os.getpid, os.getpid()
    write(fd, b"start %d\n" % pid)
    stdlib = os.path.dirname(os.__file__)
    function = type(_adp_verify)

    def tampered():
        case = sys.modules.get("unittest.case")
        result = sys.modules.get("unittest.result")
        seen = []
        for mod, cls in ((case, "TestCase"), (result, "TestResult")):
            klass = getattr(mod, cls, None) if mod is not None else None
            if klass is None:
                continue
            for name, value in list(vars(klass).items()):
                if not (name.startswith(("assert", "fail", "add", "_")) or name in ("run", "wasSuccessful", "debug")):
                    continue
                if name.startswith("__") and name not in ("__call__", "__init__"):
                    continue
                code = getattr(value, "__code__", None)
                if isinstance(value, (staticmethod, classmethod)):
                    code = getattr(value.__func__, "__code__", None)
                if code is None:
                    if callable(value) and not isinstance(value, type):
                        seen.append("%s.%s" % (cls, name))
                    continue
                if not code.co_filename.startswith(stdlib + os.sep):
                    seen.append("%s.%s (%s)" % (cls, name, code.co_filename))
        return seen

    def end():
        if getpid() != pid:
            return  # a forked child running its parent's hooks
        try:
            seen = tampered()
        except Exception as e:  # noqa: BLE001 - any failure is a finding
            seen = ["the check itself failed: %r" % (e,)]
        if seen:
            write(fd, ("tampered %d %s\n" % (pid, ", ".join(seen)[:400])).encode("utf-8", "replace"))
        else:
            write(fd, b"end %d\n" % pid)

    atexit.register(end)
    work = os.environ.get("ADP_VERIFY_WORKSPACE")
    if work:
        from importlib.machinery import PathFinder

        find, inside = PathFinder.find_distributions, os.path.abspath(work).rstrip("/") + "/"

        def find_distributions(*args, **kwargs):
            for dist in find(*args, **kwargs):
                # Not the real path: a symlink in the workspace is in it.
                where = os.path.abspath(str(getattr(dist, "_path", "")))
                if not (where + "/").startswith(inside):
                    yield dist

        PathFinder.find_distributions = staticmethod(find_distributions)
    try:
        cwd = os.getcwd()
    except OSError:
        return
    if cwd not in sys.path:
        sys.path.append(cwd)


_adp_verify()
del _adp_verify
