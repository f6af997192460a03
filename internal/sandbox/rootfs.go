package sandbox

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// rootEntry is one top-level entry of the jail's root besides /usr: a
// symlink into /usr on merged-/usr systems, a read-only bind otherwise.
type rootEntry struct {
	path   string // e.g. /lib
	target string // symlink target ("usr/lib"); empty for a directory
}

// topLevelLinks are the entries the interpreter and its libraries may be
// reached through (the ELF interpreter is /lib64/ld-linux-x86-64.so.2).
var topLevelLinks = []string{"/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin"}

// hostRootEntries inspects the host's layout: which of topLevelLinks
// exist, and whether each is a symlink or a directory.
func hostRootEntries() []rootEntry {
	var out []rootEntry
	for _, p := range topLevelLinks {
		st, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if st.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				continue
			}
			out = append(out, rootEntry{path: p, target: target})
			continue
		}
		if st.IsDir() {
			out = append(out, rootEntry{path: p})
		}
	}
	return out
}

// interpreter is the Python binary as the jail sees it.
type interpreter struct {
	path string // what the jail executes
	// prefix is the installation directory to bind read-only when the
	// interpreter lives outside /usr (pyenv, /opt); empty otherwise.
	prefix string
}

// resolveInterpreter checks that path is an executable ELF binary (not a
// pyenv shim or another script, which would need a shell and more inside
// the jail) and finds what must be bound for it.
func resolveInterpreter(path string) (interpreter, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return interpreter{}, fmt.Errorf("sandbox: python interpreter %q: %w (set PYTHON_PATH to the interpreter binary)", path, err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return interpreter{}, fmt.Errorf("sandbox: python interpreter %q: %w", path, err)
	}
	if !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return interpreter{}, fmt.Errorf("sandbox: python interpreter %q (%s) is not an executable file", path, real)
	}
	f, err := os.Open(real)
	if err != nil {
		return interpreter{}, fmt.Errorf("sandbox: python interpreter %q: %w", path, err)
	}
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	f.Close()
	if err != nil || !bytes.Equal(magic, []byte("\x7fELF")) {
		return interpreter{}, fmt.Errorf("sandbox: python interpreter %q (%s) is not a binary (a pyenv shim or a script?); set PYTHON_PATH to the interpreter itself, e.g. /usr/bin/python3", path, real)
	}
	if under(path, "/usr") && under(real, "/usr") {
		return interpreter{path: path}, nil
	}
	// <prefix>/bin/python3.X: bind <prefix>, which holds lib/python3.X.
	return interpreter{path: real, prefix: filepath.Dir(filepath.Dir(real))}, nil
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// pythonArgs is the interpreter's command line inside the jail: isolated
// mode (-I: no PYTHON* variables, no user site, script dir not on sys.path),
// no site module (-S: stdlib only) unless site is set (an image's python3:
// its site-packages are part of the environment the task named),
// unbuffered (-u: output written before a kill is not lost).
func pythonArgs(python string, site bool) []string {
	if site {
		return []string{python, "-I", "-u", jailCodeDir + "/" + scriptName}
	}
	return []string{python, "-I", "-S", "-u", jailCodeDir + "/" + scriptName}
}

// jailEnv is the program's whole environment; the nsjail policy file sets
// the same variables (a test keeps them in step), the run id comes from the
// command line.
func jailEnv(runID string) []string {
	return append(policyEnv[:len(policyEnv):len(policyEnv)], runIDEnv+"="+runID)
}

// policyEnv is the fixed part of the jail's environment.
// MALLOC_ARENA_MAX: glibc reserves 64 MiB of address space per malloc arena
// and creates one per thread; under RLIMIT_AS that would cap a program at a
// handful of threads long before RLIMIT_NPROC does.
var policyEnv = []string{
	"PATH=/usr/bin:/bin",
	"HOME=/tmp",
	"TMPDIR=/tmp",
	"LANG=C.UTF-8",
	"MALLOC_ARENA_MAX=2",
}
