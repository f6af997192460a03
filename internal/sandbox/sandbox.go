// Package sandbox runs one untrusted Python program in a jail and reports
// what happened.
//
// A Jail has two implementations behind one interface, and one conformance
// suite (conformance_test.go) that both must pass:
//
//   - nsjail (production, in the Docker image): the policy is the protobuf
//     text file configs/nsjail/python.cfg, read and checked at start;
//     nsjail reads it per run from a memfd, with the program added as a
//     file of the jail's own tmpfs (src_content), and per-run values (time
//     limit, rlimits, cgroup limits when available) appended on the
//     command line. It is started from the same kind of thread as bwrap
//     (root here) in a reused network namespace.
//   - bwrap (bubblewrap; the fallback for development machines): the same
//     namespaces and filesystem, with rlimits set by the Go parent
//     (prlimit(2) while bwrap waits on --block-fd), the network namespace
//     held by the Go thread that starts bwrap (as uid 65534 where bwrap may
//     create the user namespace itself, else in a user namespace the parent
//     creates), and the program passed in a memfd that bwrap copies into
//     the jail's tmpfs root (--ro-bind-data).
//
// Neither writes anything to the host's disk per run.
//
// A Request may run another command than the interpreter (Argv: bash, for
// the workspace package's steps) and bind host directories into the jail
// (Binds, read-only or writable, each one new top-level directory such as
// /workspace) with a working directory (Dir); everything else stays as
// jailed. The caller bounds a writable bind (the workspace package mounts a
// tmpfs capped in bytes and inodes there) and owns it as Jail.Owner says.
//
// Both give the program: uid/gid 65534, fresh user, pid, mount, ipc, uts
// and network namespaces (no interface up, not even loopback), a read-only
// root holding only /usr (and the /bin, /lib, /lib64 links into it), no /etc
// and no /proc, a bounded tmpfs at /tmp, /dev/null, /dev/zero and
// /dev/urandom, the program read-only at /sandbox/main.py and the request's
// stdin; a seccomp filter denying what widens the kernel's surface or gets
// around the limits (seccomp.go), a fresh session keyring (keyring.go), an
// inode cap on /tmp (tmpfs.go). The interpreter runs as `python3 -I -S -u`:
// isolated mode (no PYTHON* variables, no user site), no site-packages,
// unbuffered output so that a program killed at its time limit still shows
// what it printed.
//
// The Go parent does not trust the jail for its own limits: it keeps at most
// Limits.KeepOutputBytes of each stream, kills the jail once the program
// wrote more than Limits.MaxOutputBytes, kills it at the wall-clock limit,
// measures wall time, and kills the whole process tree (the pid namespace
// dies with its init, so nothing survives a run).
//
// There is deliberately no unsandboxed backend.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

// Backend names accepted by New.
const (
	BackendAuto   = "auto"
	BackendNsjail = "nsjail"
	BackendBwrap  = "bwrap"
)

// Limits bounds one run. DefaultLimits gives production values; a zero field
// in a Request means "use the default" (see Limits.withDefaults).
type Limits struct {
	// Wall is the wall-clock limit, enforced by the Go parent (it kills the
	// jail). A context deadline that comes earlier wins. Default 30s.
	Wall time.Duration
	// CPU is RLIMIT_CPU (rounded up to whole seconds), times CPUs:
	// SIGXCPU at the limit, SIGKILL one second later. Default 30s.
	CPU time.Duration
	// CPUs is how many CPUs' worth of time a process may use: its CPU
	// time limit is CPU × CPUs (a program whose threads run on several
	// CPUs uses CPU time faster than wall time). Default 1.
	CPUs int
	// MemoryBytes bounds the program's memory. Where the jail has a memory
	// cgroup (cgroup.go) it is the cgroup's limit for the whole jail (plus
	// TmpfsBytes, since tmpfs pages are charged there): past it the
	// kernel's OOM killer ends the jail (memory_limit), and no
	// address-space rlimit is set. Without one it is RLIMIT_AS, the address
	// space of each process (rounded up to MiB for nsjail): Python raises
	// MemoryError past it, and the jail as a whole holds at most MaxProcs ×
	// MemoryBytes (plus TmpfsBytes). Default 1 GiB: threads reserve their
	// stacks (8 MiB each) in the address space, so 64 threads of a Python
	// test suite take over 512 MiB of it while using little.
	MemoryBytes int64
	// MaxProcs is the number of processes of the jail (the interpreter
	// included; a process's threads do not count): the parent counts the
	// jail's processes every processPollInterval and kills the jail once
	// there are more (runtime_error, "process limit"). Default 16. Between
	// two counts a burst of forks is bounded by MaxThreads.
	MaxProcs int
	// MaxThreads is RLIMIT_NPROC, and the pids cgroup's pids.max where
	// there is one: the threads of all the jail's processes, each
	// process's main thread included; a fork or thread past it fails with
	// EAGAIN. Because the jail's uid is 65534 in a fresh user namespace
	// (and 65534, not root, outside), the count is per jail, not per host.
	// Default 256.
	MaxThreads int
	// MaxFileBytes is RLIMIT_FSIZE, the largest file the program may write
	// (in MiB for nsjail, rounded up). Default 16 MiB.
	MaxFileBytes int64
	// MaxOpenFiles is RLIMIT_NOFILE. Default 64.
	MaxOpenFiles int
	// TmpfsBytes is the size of the /tmp scratch tmpfs. Default 64 MiB.
	TmpfsBytes int64
	// KeepOutputBytes is how much of each stream (stdout, stderr) is kept in
	// the Result: the first and the last half, with a marker in between
	// when the middle was dropped. Default 64 KiB.
	KeepOutputBytes int
	// MaxOutputBytes is the total the program may write to stdout and
	// stderr together; past it the jail is killed (output_limit). Default
	// 1 MiB.
	MaxOutputBytes int64
}

// Production defaults. The blueprint's sample used 128 MB, 30 s CPU, 10
// processes and a 30 s wall limit; a real repository's test suite needs
// threads (a ThreadPoolExecutor starts up to 32) and the address space
// their stacks reserve.
const (
	defaultWall            = 30 * time.Second
	defaultCPU             = 30 * time.Second
	defaultMemoryBytes     = 1 << 30
	defaultMaxProcs        = 16
	defaultMaxThreads      = 256
	defaultMaxFileBytes    = 16 << 20
	defaultMaxOpenFiles    = 64
	defaultTmpfsBytes      = 64 << 20
	defaultKeepOutputBytes = 64 << 10
	defaultMaxOutputBytes  = 1 << 20
)

// DefaultLimits returns the production limits: wall 30s, CPU 30s, 1 GiB
// of memory, 16 processes, 256 threads in all, 16 MiB per file, 64 open files, 64
// MiB /tmp, 64 KiB kept per stream, killed past 1 MiB of output.
func DefaultLimits() Limits {
	return Limits{
		Wall:            defaultWall,
		CPU:             defaultCPU,
		CPUs:            1,
		MemoryBytes:     defaultMemoryBytes,
		MaxProcs:        defaultMaxProcs,
		MaxThreads:      defaultMaxThreads,
		MaxFileBytes:    defaultMaxFileBytes,
		MaxOpenFiles:    defaultMaxOpenFiles,
		TmpfsBytes:      defaultTmpfsBytes,
		KeepOutputBytes: defaultKeepOutputBytes,
		MaxOutputBytes:  defaultMaxOutputBytes,
	}
}

// cpuTime is the CPU time a process may use: CPU × CPUs.
func (l Limits) cpuTime() time.Duration { return l.CPU * time.Duration(max(l.CPUs, 1)) }

// For returns l with what a task's resources constraint asks in place of
// l's values (a field the task leaves out keeps l's). It does not check
// the runtime's caps: core.Resources.Within does, before.
func (l Limits) For(r core.Resources) Limits {
	if r.MemoryMB > 0 {
		l.MemoryBytes = r.MemoryMB << 20
	}
	if r.MaxProcs > 0 {
		l.MaxProcs = r.MaxProcs
	}
	if r.MaxThreads > 0 {
		l.MaxThreads = r.MaxThreads
	}
	if r.CPUs > 0 {
		l.CPUs = int(math.Ceil(r.CPUs))
	}
	return l
}

// withDefaults fills every zero (or negative) field from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.Wall <= 0 {
		l.Wall = d.Wall
	}
	if l.CPU <= 0 {
		l.CPU = d.CPU
	}
	l.CPUs = max(l.CPUs, 1)
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = d.MemoryBytes
	}
	if l.MaxProcs <= 0 {
		l.MaxProcs = d.MaxProcs
	}
	if l.MaxThreads <= 0 {
		l.MaxThreads = d.MaxThreads
	}
	// Every process has a thread.
	l.MaxThreads = max(l.MaxThreads, l.MaxProcs)
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxOpenFiles <= 0 {
		l.MaxOpenFiles = d.MaxOpenFiles
	}
	if l.TmpfsBytes <= 0 {
		l.TmpfsBytes = d.TmpfsBytes
	}
	if l.KeepOutputBytes <= 0 {
		l.KeepOutputBytes = d.KeepOutputBytes
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = d.MaxOutputBytes
	}
	return l
}

// Request is one program to run.
type Request struct {
	// Code is the Python source, run as /sandbox/main.py.
	Code string
	// Stdin is the program's standard input (empty: /dev/null).
	Stdin []byte
	// Limits bounds the run; zero fields take DefaultLimits values.
	Limits Limits
	// Argv, when set, is run instead of the interpreter (python3 -I -S -u
	// /sandbox/main.py); argv[0] is an absolute path in the jail. Code is
	// still the read-only file /sandbox/main.py (a script for argv to run).
	// Everything else is as jailed as a Python program: the same uid,
	// namespaces, root, rlimits, filter and environment.
	Argv []string
	// Binds are host directories bound into the jail (see Bind).
	Binds []Bind
	// Dir is the working directory in the jail. Default /tmp, or the
	// Image's WorkingDir.
	Dir string
	// Image, when set, is the jail's root (see Image); the interpreter is
	// then the image's python3, run with its site-packages.
	Image *Image
}

// Result is what happened to a program. A program that failed (exception,
// exit status, limit) is a Result with ErrorType set, not an error.
type Result struct {
	// Stdout and Stderr are the kept parts of each stream (see
	// Limits.KeepOutputBytes), valid UTF-8.
	Stdout, Stderr string
	// StdoutTruncated and StderrTruncated report that part of a stream was
	// dropped.
	StdoutTruncated, StderrTruncated bool
	// ExitCode is the program's exit status; 128+N when it was killed by
	// signal N (both jails report it so, so a program that calls
	// sys.exit(139) is indistinguishable from a segfault).
	ExitCode int
	// Signal names the signal that killed the program ("SIGSEGV",
	// "SIGKILL"), empty when it exited.
	Signal string
	// Wall is the measured wall-clock time from launch to reaping.
	Wall time.Duration
	// ErrorType classifies a failure; core.ErrNone on success. One of
	// compile_error, runtime_error, timeout, memory_limit, output_limit,
	// system_error (wrong_answer is decided later, by verification).
	ErrorType core.ErrorType
	// ErrorMessage says what went wrong in one line, for people and models.
	ErrorMessage string
	// ProcessLimit reports that the parent killed the jail for having
	// more than Limits.MaxProcs processes (ErrorType runtime_error).
	ProcessLimit bool
	// RunID names the run: it is set as SANDBOX_RUN_ID in the program's
	// environment, so logs and process listings can be correlated.
	RunID string
}

// OK reports whether the program exited 0 within every limit.
func (r Result) OK() bool { return r.ErrorType == core.ErrNone }

// Jail runs untrusted programs. Implementations are safe for concurrent use;
// each Run is one fresh jail.
type Jail interface {
	// Name is the backend: "nsjail" or "bwrap".
	Name() string
	// Run executes req in a fresh jail and waits for it. The error is
	// non-nil only when the jail itself could not run the program (the
	// jail failed to launch, ctx was cancelled); the Result then has ErrorType system_error.
	// Cancelling ctx kills the jail; a ctx deadline earlier than
	// req.Limits.Wall acts as the wall limit (timeout, not an error).
	Run(ctx context.Context, req Request) (Result, error)
	// Check runs a trivial program and returns an error unless it printed
	// what it should: the readiness probe behind /healthz.
	Check(ctx context.Context) error
	// Owner is the host uid and gid that the jail's uid and gid (65534)
	// are outside: a directory bound writable must be owned by them for
	// the jail to write it.
	Owner() (uid, gid int)
}

// Config says where the jail's binaries and files are. Zero fields take
// defaults.
type Config struct {
	// SandboxUID is the uid and gid, outside the jail, of the bwrap
	// backend's jails and of the runtime threads that start them, when the
	// runtime is root (inside, the program is always 65534). Default (0) 65534.
	// Any process of that uid on the host may signal those threads, and a
	// signal to one thread stops or kills the whole runtime: on a host
	// where other processes run as 65534 (nobody), set it to a uid nothing
	// else uses. The nsjail backend maps the jail to the uid of its policy
	// file (65534).
	SandboxUID int
	// PythonPath is the interpreter run inside the jail. Default
	// /usr/bin/python3. An interpreter outside /usr (pyenv, /opt) has its
	// installation prefix bound read-only into the jail as well.
	PythonPath string
	// NsjailPath is the nsjail binary. Default: "nsjail" looked up in PATH.
	NsjailPath string
	// NsjailConfig is the policy file. Default configs/nsjail/python.cfg,
	// located by FindNsjailConfig.
	NsjailConfig string
	// BwrapPath is the bubblewrap binary. Default: "bwrap" in PATH.
	BwrapPath string
	// Cgroups is CgroupsAuto (default: use the cgroup v2 memory and pids
	// controllers where the host delegates them, see cgroup.go),
	// CgroupsV1 (also writable v1 hierarchies) or CgroupsOff (rlimits
	// only).
	Cgroups string
}

// DefaultPythonPath is the interpreter used when Config.PythonPath is empty.
const DefaultPythonPath = "/usr/bin/python3"

// DefaultNsjailConfig is the policy file, relative to the repository root.
const DefaultNsjailConfig = "configs/nsjail/python.cfg"

// installedNsjailConfig is where the Docker image installs the policy.
const installedNsjailConfig = "/etc/adp/nsjail/python.cfg"

// ErrNoJail is returned by New when no jail binary can be found.
var ErrNoJail = errors.New("no sandbox available")

// New returns the jail for backend: "auto" (nsjail when found in
// cfg.NsjailPath or PATH, else bwrap), "nsjail" or "bwrap". There is no
// unsandboxed mode: when nothing usable is installed the error (wrapping
// ErrNoJail) says what to install.
//
// The nsjail backend needs root and a valid policy file (checked here).
// The bwrap backend works as root (the jail is uid 65534 outside too) or,
// where unprivileged user namespaces are allowed, as any user; it marks the
// descriptors this process inherited from its own parent close-on-exec,
// because bwrap would hand them on to the jailed program.
func New(backend string, cfg Config) (Jail, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	switch backend {
	case BackendNsjail:
		return newNsjail(cfg)
	case BackendBwrap:
		return newBwrap(cfg)
	case BackendAuto, "":
		if _, err := lookPath(cfg.NsjailPath, "nsjail"); err == nil {
			return newNsjail(cfg)
		}
		if _, err := lookPath(cfg.BwrapPath, "bwrap"); err == nil {
			return newBwrap(cfg)
		}
		return nil, fmt.Errorf("%w: neither nsjail nor bwrap was found in PATH; "+
			"install nsjail (production: built from https://github.com/google/nsjail, as Dockerfile.sandbox does) "+
			"or bubblewrap (development: apt-get install bubblewrap), or set SANDBOX_BACKEND and the binary's path", ErrNoJail)
	default:
		return nil, fmt.Errorf("sandbox: unknown backend %q: want %q, %q or %q", backend, BackendAuto, BackendNsjail, BackendBwrap)
	}
}

func (c Config) withDefaults() (Config, error) {
	if c.SandboxUID == 0 {
		c.SandboxUID = jailUID
	}
	if c.SandboxUID < 0 || c.SandboxUID >= 1<<31-1 {
		return c, fmt.Errorf("sandbox: SANDBOX_UID %d is not a uid the jail can run as (not root)", c.SandboxUID)
	}
	if c.PythonPath == "" {
		c.PythonPath = DefaultPythonPath
	}
	switch c.Cgroups {
	case "":
		c.Cgroups = CgroupsAuto
	case CgroupsAuto, CgroupsV1, CgroupsOff:
	default:
		return c, fmt.Errorf("sandbox: cgroups setting %q: want %q, %q or %q", c.Cgroups, CgroupsAuto, CgroupsV1, CgroupsOff)
	}
	if !filepath.IsAbs(c.PythonPath) {
		return c, fmt.Errorf("sandbox: python path %q must be absolute: it is resolved inside the jail", c.PythonPath)
	}
	return c, nil
}

// lookPath resolves a configured binary path, or name in PATH when
// configured is empty.
func lookPath(configured, name string) (string, error) {
	if configured != "" {
		return exec.LookPath(configured)
	}
	return exec.LookPath(name)
}

// FindNsjailConfig locates the nsjail policy file. An absolute path is used
// as is. A relative path (default DefaultNsjailConfig) is tried against the
// working directory and each of its parents (so tests and `go run` from any
// package directory find the repository's file), then next to the
// executable, and finally /etc/adp/nsjail/python.cfg (the Docker image).
func FindNsjailConfig(path string) (string, error) {
	if path == "" {
		path = DefaultNsjailConfig
	}
	if filepath.IsAbs(path) {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("sandbox: nsjail config: %w", err)
		}
		return path, nil
	}
	try := func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && !st.IsDir()
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if p := filepath.Join(dir, path); try(p) {
				return p, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), path); try(p) {
			return p, nil
		}
	}
	if try(installedNsjailConfig) {
		return installedNsjailConfig, nil
	}
	return "", fmt.Errorf("sandbox: nsjail config %q not found (tried the working directory and its parents, the executable's directory and %s); set NSJAIL_CONFIG to its path", path, installedNsjailConfig)
}
