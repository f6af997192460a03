package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// jailUID is the uid and gid of every jailed program.
const jailUID = 65534

// bwrapOverheadProcs is what bwrap adds to the jail's process count
// against RLIMIT_NPROC: nothing, the program is the pid namespace's init
// (--as-pid-1) and the supervisor lives outside the jail's namespaces.
const bwrapOverheadProcs = 0

// bwrapSetupTimeout bounds the wait for bwrap's status before the jail's
// rlimits are applied (it normally takes about a millisecond).
const bwrapSetupTimeout = 10 * time.Second

// bwrapJail runs programs under bubblewrap.
//
// Layout of one run (the parent is root with CAP_SYS_ADMIN, and
// unprivileged user namespaces are allowed):
//
//	Go parent (root)
//	└─ bwrap (supervisor), uid 65534: vforked from a thread of the parent
//	   that runs as 65534 in a network namespace with no interface up,
//	   reused from an earlier jail that is gone (see netnsThread)
//	   └─ python3 -I -S -u /sandbox/main.py: pid 1 of a new pid namespace,
//	      uid 65534 in a user namespace bwrap created, no capabilities,
//	      no_new_privs; before its exec it waits on fd 4 (--block-fd)
//
// Where bwrap cannot create a user namespace as 65534, the parent forks it
// into one of its own (uid 0 inside = 65534 outside), from a root thread in
// a reused network namespace; without CAP_SYS_ADMIN, into a new network
// namespace too. A non-root parent maps its own uid.
//
// The program is the pid namespace's init (--as-pid-1), as under nsjail:
// when it exits the kernel kills whatever it left behind. bwrap's own init
// would outlive its supervisor by a moment (the supervisor returns as soon
// as init reports the program's status) and be left as a zombie for the
// host's pid 1 to reap, which in a container may never happen. As init the
// program cannot be killed by signals it does not handle from inside the
// jail (a SIGXCPU at the CPU soft limit included: the hard limit's SIGKILL
// a second later ends it), only from outside.
//
// Why bwrap never runs as root: bwrap run by root maps the jail's uid to
// root outside, and the kernel does not enforce RLIMIT_NPROC for root.
// Run as 65534 (or from a namespace that maps to 65534), the jail is 65534
// outside, so the limit holds; the kernel counts it per user namespace,
// and every jail has its own, so it is per jail, not shared by every
// uid-65534 process on the host (TestProcessLimitPerJail). bwrap's own
// --unshare-net would bring loopback up; the parent's network namespaces
// leave it down.
//
// Rlimits: bwrap has none of its own. While the jailed process waits on
// --block-fd (its sandbox set up, the interpreter not yet executed) the
// parent sets them on it with prlimit(2), from the thread that started it
// when that thread runs as 65534 (the same uid needs no CAP_SYS_RESOURCE),
// then releases it. This saves the exec of prlimit(1) on every run.
//
// Issue 18's layers: bwrap installs the seccomp filter (seccomp.go, on fd
// 6) just before it executes the program; the thread that forks bwrap has
// just joined a fresh session keyring (keyring.go, run.go's start); and a
// parent with
// CAP_SYS_ADMIN caps the inodes of the jail's /tmp once bwrap has read the
// block byte (tmpfs.go).
type bwrapJail struct {
	bwrap      string
	interp     interpreter
	root       []rootEntry
	hostUID    int // the outer namespace's uid 0 maps to this
	hostGID    int
	privileged bool // the parent is root
	// netns, when set, provides network namespaces to start jails in;
	// otherwise each jail is forked into a new one (CLONE_NEWNET).
	netns *netnsPool
	// filter is the seccomp filter (seccomp.go) bwrap installs before it
	// executes the program; nil only in tests of what it guards against.
	filter []byte
	// capInodes: the parent sets nr_inodes on the jail's /tmp
	// (capTmpfsInodesAfterBlock), which takes CAP_SYS_ADMIN.
	capInodes bool
	// inodeCapRefused is set when the kernel refused the cap of a run
	// (fspick: EPERM, as some container engines' profiles do for some
	// runs): from then on jails run without it, and a warning says so once.
	// (int32 for sync/atomic, so that tests may copy a bwrapJail.)
	inodeCapRefused int32
	// cg: the cgroup controllers each jail gets a cgroup of (cgroup.go).
	cg cgroupSupport
}

func newBwrap(cfg Config) (Jail, error) {
	bw, err := lookPath(cfg.BwrapPath, "bwrap")
	if err != nil {
		return nil, fmt.Errorf("%w: bwrap not found (%v): install bubblewrap (apt-get install bubblewrap) or set its path", ErrNoJail, err)
	}
	py, err := resolveInterpreter(cfg.PythonPath)
	if err != nil {
		return nil, err
	}
	filter, err := seccompFilter()
	if err != nil {
		return nil, err
	}
	closeInheritedFDsOnExec()
	killOrphanedJails(bw, cfg.SandboxUID)
	b := &bwrapJail{bwrap: bw, interp: py, root: hostRootEntries(), filter: filter}
	if os.Geteuid() == 0 {
		b.cg = detectCgroups(cfg.Cgroups, cgroupV2Mount)
		b.privileged, b.hostUID, b.hostGID = true, cfg.SandboxUID, cfg.SandboxUID
		if py.prefix != "" {
			if err := traversableByOthers(py.prefix); err != nil {
				return nil, fmt.Errorf("sandbox: python interpreter %s: %w", cfg.PythonPath, err)
			}
		}
		b.startThreads()
	} else {
		// Unprivileged: map to ourselves. Works where unprivileged user
		// namespaces are allowed; RLIMIT_NPROC then counts our own uid.
		b.hostUID, b.hostGID = os.Geteuid(), os.Getegid()
	}
	return &jail{name: BackendBwrap, l: b}, nil
}

// startThreads picks how privileged jails are started (b.netns): from
// threads in reused network namespaces, running as jailUID where bwrap may
// create the jail's user namespace itself (unprivileged user namespaces
// allowed: a probe run tells), as root otherwise. Without CAP_SYS_ADMIN
// there are no such threads (nil): each jail is forked into new namespaces.
func (b *bwrapJail) startThreads() {
	for _, asJailUser := range []bool{true, false} {
		t, err := newNetnsThreadAs(asJailUser, b.hostUID)
		if err != nil {
			continue
		}
		b.netns = &netnsPool{maxIdle: max(8, 2*runtime.NumCPU()), asJailUser: asJailUser, uid: b.hostUID}
		b.netns.put(t)
		// With CAP_SYS_ADMIN (these threads need it too) the parent can
		// normally cap the inodes of the jail's /tmp; where something
		// else forbids it (a container engine's profile refusing fspick),
		// a probe run tells, and jails run without that cap rather than
		// not at all (the inode-flood conformance case then says so).
		for _, capInodes := range []bool{true, false} {
			b.capInodes = capInodes
			if (&jail{name: BackendBwrap, l: b}).Check(context.Background()) == nil {
				if !capInodes {
					slog.Warn("sandbox bwrap: the inodes of a jail's /tmp cannot be capped here (fspick refused); jails run without that cap")
				}
				return
			}
		}
		b.capInodes = false
		if !asJailUser {
			return // as before: the root threads stay, a failing jail says why
		}
		b.netns.drain()
		b.netns = nil
	}
}

// killOrphanedJails kills what a sandbox runtime killed while bwrap was
// setting up a jail leaves behind: the jail's first process, blocked on
// bwrap's internal eventfd for a supervisor that is gone, re-parented to
// init. It has run nothing and never will; it is matched by uid (the jails'
// outside uid, Config.SandboxUID),
// parent 1, and a command line that is ours: the bwrap binary with the
// run id variable. A jail whose supervisor lives has that supervisor as its
// parent, so no running jail, of this runtime or another, matches.
func killOrphanedJails(bwrap string, uid int) {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || parentPid(pid) != 1 {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || st.Uid != uint32(uid) {
			continue
		}
		cmdline, err := os.ReadFile(p + "/cmdline")
		argv0, _, _ := strings.Cut(string(cmdline), "\x00")
		if err != nil || argv0 != bwrap || !strings.Contains(string(cmdline), "\x00"+runIDEnv+"\x00") {
			continue
		}
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

var inheritedFDsOnce sync.Once

// closeInheritedFDsOnExec marks every descriptor this process inherited
// without close-on-exec (Go opens all of its own with it) close-on-exec.
// bwrap passes whatever it inherits on to the jailed program, and a
// supervisor may have left anything open in our process: a socket, a log
// file. The parent itself keeps using them; only children stop inheriting
// them. nsjail closes them itself.
func closeInheritedFDsOnExec() {
	inheritedFDsOnce.Do(func() {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return
		}
		for _, e := range entries {
			fd, err := strconv.Atoi(e.Name())
			if err != nil || fd < 3 {
				continue
			}
			flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			if err == nil && flags&unix.FD_CLOEXEC == 0 {
				_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags|unix.FD_CLOEXEC)
			}
		}
	})
}

// traversableByOthers checks that uid 65534 can reach files under dir:
// bwrap binds an interpreter prefix from inside the jail's user namespace,
// as uid 65534.
func traversableByOthers(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := abs; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s: %s (mode %v) is not traversable by others, so the jail (uid %d) cannot reach it; use a path like /tmp, /usr or /opt",
				abs, p, st.Mode().Perm(), jailUID)
		}
		if p == "/" {
			return nil
		}
	}
}

// command hands the program to bwrap in a memfd, which bwrap copies into
// the jail's own tmpfs (--ro-bind-data): no per-run directory on the host's
// disk to create and remove on every run.
func (b *bwrapJail) command(lim Limits, code string, spec runSpec, runID string) (*launch, error) {
	prog, err := memfdWith("adp-program", code)
	if err != nil {
		return nil, fmt.Errorf("sandbox: passing the program to the jail: %w", err)
	}
	argv := b.bwrapArgs(lim, spec, runID)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	blockR, blockW, err := os.Pipe()
	if err != nil {
		prog.Close()
		return nil, err
	}
	// fd 4: --block-fd; fd 5: --ro-bind-data; fd 6: --seccomp.
	childFiles := []*os.File{blockR, prog}
	if b.filter != nil {
		filter, err := seccompPipe(b.filter)
		if err != nil {
			closeAll(prog, blockR, blockW)
			return nil, err
		}
		childFiles = append(childFiles, filter)
	}
	var thread *netnsThread
	if b.netns != nil {
		if thread, err = b.netns.get(); err != nil {
			closeAll(blockW)
			closeAll(childFiles...)
			return nil, err
		}
	}
	cmd.SysProcAttr = b.sysProcAttr(thread)
	var cg *runCgroup
	ln := &launch{
		cmd:        cmd,
		childFiles: childFiles,
		started: func(r *running) error {
			defer blockW.Close()
			pid, err := waitAux(r, bwrapSetupTimeout, bwrapChildPid)
			if err != nil {
				return err
			}
			// Still bwrap's child (not a process that reused the pid of
			// a child that died in its setup)?
			if parentPid(pid) != r.pid() {
				return errors.New("the jailed process exited during setup")
			}
			set := func() error { return setRlimits(pid, rlimits(lim, b.cg)) }
			if thread != nil && thread.asJailUser {
				// Same uid as the jail: no CAP_SYS_RESOURCE needed.
				err = thread.do(set)
			} else {
				err = set()
			}
			if err != nil {
				return err
			}
			if b.cg.any() {
				// Before the program runs: everything it starts is in
				// the cgroup too.
				if cg, err = newRunCgroup(b.cg, runID, lim); err != nil {
					return err
				}
				if err := cg.add(pid); err != nil {
					return err
				}
			}
			if !b.capInodes || b.capRefused() {
				_, err = blockW.Write([]byte{1})
				return err
			}
			err = capTmpfsInodesAfterBlock(pid, b.hostUID, b.hostGID, tmpfsInodes(lim.TmpfsBytes), blockW, bwrapSetupTimeout)
			if errors.Is(err, unix.EPERM) && errInPick(err) {
				// The jail was released before the cap (it is applied
				// while the interpreter starts): it runs on, uncapped.
				if atomic.SwapInt32(&b.inodeCapRefused, 1) == 0 {
					slog.Warn("sandbox bwrap: the kernel refused to cap the inodes of a jail's /tmp; jails run without that cap from now on", "err", err)
				}
				return nil
			}
			return err
		},
		memoryKilled: func() bool { return cg.oomKilled() },
		done: func(supervisorExited bool) {
			blockW.Close()
			cg.remove()
			if thread == nil {
				return
			}
			if supervisorExited {
				b.netns.put(thread)
			} else {
				// The jail may still be dying: never share its namespace.
				thread.retire()
			}
		},
	}
	if thread != nil {
		ln.spawn = thread.do
	}
	return ln, nil
}

// rlimit is one resource limit to set.
type rlimit struct {
	resource   int
	name       string
	soft, hard uint64
}

// rlimits lists the jail's rlimits. Soft and hard are equal except for
// CPU: SIGXCPU at the limit, SIGKILL a second later. With a memory cgroup
// there is no address-space limit: the jail keeps the runtime's.
func rlimits(lim Limits, cg cgroupSupport) []rlimit {
	cpu := uint64(cpuSeconds(lim.cpuTime()))
	nproc := uint64(lim.MaxThreads + bwrapOverheadProcs)
	var as []rlimit
	if !cg.memory {
		as = []rlimit{{unix.RLIMIT_AS, "RLIMIT_AS", uint64(lim.MemoryBytes), uint64(lim.MemoryBytes)}}
	}
	return append(as, []rlimit{
		{unix.RLIMIT_CPU, "RLIMIT_CPU", cpu, cpu + 1},
		{unix.RLIMIT_NPROC, "RLIMIT_NPROC", nproc, nproc},
		{unix.RLIMIT_FSIZE, "RLIMIT_FSIZE", uint64(lim.MaxFileBytes), uint64(lim.MaxFileBytes)},
		{unix.RLIMIT_NOFILE, "RLIMIT_NOFILE", uint64(lim.MaxOpenFiles), uint64(lim.MaxOpenFiles)},
		{unix.RLIMIT_CORE, "RLIMIT_CORE", 0, 0},
	}...)
}

// setRlimits applies limits to the process pid and reads them back.
func setRlimits(pid int, limits []rlimit) error {
	for _, l := range limits {
		want := unix.Rlimit{Cur: l.soft, Max: l.hard}
		if err := unix.Prlimit(pid, l.resource, &want, nil); err != nil {
			return fmt.Errorf("setting %s of the jail: %w", l.name, err)
		}
		var got unix.Rlimit
		if err := unix.Prlimit(pid, l.resource, nil, &got); err != nil || got != want {
			return fmt.Errorf("setting %s of the jail: got %+v (%v), want %+v", l.name, got, err, want)
		}
	}
	return nil
}

// memfdWith returns a memory file holding data, positioned at its start.
func memfdWith(name, data string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := io.WriteString(f, data); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// bwrapArgs is bwrap's command line, ending with the interpreter's.
func (b *bwrapJail) bwrapArgs(lim Limits, spec runSpec, runID string) []string {
	uid, gid, env, root := jailUID, jailUID, jailEnv(runID), b.root
	if img := spec.image; img != nil {
		// The image's user inside (root included), still 65534 outside.
		uid, gid, env, root = img.uid, img.gid, append(img.env, runIDEnv+"="+runID), nil
	}
	a := []string{b.bwrap,
		// uid/gid 65534 (or the image's user) in a nested user namespace
		// that cannot nest more.
		"--unshare-user", "--uid", strconv.Itoa(uid), "--gid", strconv.Itoa(gid), "--disable-userns",
		"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--hostname", "sandbox",
		"--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
		"--clearenv",
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		a = append(a, "--setenv", k, v)
	}
	if img := spec.image; img != nil {
		for _, e := range img.entries {
			if e.target != "" {
				a = append(a, "--symlink", e.target, e.path)
			} else {
				a = append(a, "--ro-bind", img.root+e.path, e.path)
			}
		}
	} else {
		a = append(a, "--ro-bind", "/usr", "/usr")
	}
	for _, e := range root {
		if e.target != "" {
			a = append(a, "--symlink", e.target, e.path)
		} else {
			a = append(a, "--ro-bind", e.path, e.path)
		}
	}
	if spec.pythonPrefix != "" {
		a = append(a, "--ro-bind", spec.pythonPrefix, spec.pythonPrefix)
	}
	a = append(a,
		// /dev: three device nodes, in a directory of the root, which is
		// made read-only below (bwrap's --dev would add a writable,
		// unbounded /dev and /dev/shm).
		"--dev-bind", "/dev/null", "/dev/null",
		"--dev-bind", "/dev/zero", "/dev/zero",
		"--dev-bind", "/dev/urandom", "/dev/urandom",
		// Scratch space, bounded.
		"--perms", "1777", "--size", strconv.FormatInt(lim.TmpfsBytes, 10), "--tmpfs", "/tmp",
		// The program, from fd 5, in the jail's tmpfs root.
		"--perms", "0444", "--ro-bind-data", "5", jailCodeDir+"/"+scriptName,
	)
	for _, bd := range spec.binds {
		if bd.Writable {
			a = append(a, "--bind", bd.Host, bd.Jail)
		} else {
			a = append(a, "--ro-bind", bd.Host, bd.Jail)
		}
	}
	a = append(a,
		// Only the root: /tmp and writable binds are mounts of their own.
		"--remount-ro", "/",
		"--chdir", spec.dir,
		// fd 3: {"child-pid": N} (the jailed process) then the exit.
		"--json-status-fd", "3",
		// fd 4: the jailed process waits here, set up, until its rlimits
		// are in place (its /tmp's inodes are capped as it goes on).
		"--block-fd", "4",
	)
	if b.filter != nil {
		// fd 6: the system-call filter, installed just before the exec.
		a = append(a, "--seccomp", "6")
	}
	a = append(a, "--")
	return append(a, spec.argv...)
}

func (b *bwrapJail) interpreter() interpreter { return b.interp }

// owner: the outer namespace's uid 0, which bwrap maps to 65534.
func (b *bwrapJail) owner() (int, int) { return b.hostUID, b.hostGID }

// sysProcAttr starts bwrap from thread t (nil: none).
func (b *bwrapJail) sysProcAttr(t *netnsThread) *syscall.SysProcAttr {
	if t != nil && t.asJailUser {
		// bwrap inherits the thread's uid and network namespace and
		// creates the jail's user namespace itself.
		return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	// The jail's network namespace: the forking thread's, which belongs
	// to the host's user namespace, or a new one created after the user
	// namespace, which then belongs to it. Either way nothing brings its
	// loopback up.
	clone := uintptr(syscall.CLONE_NEWUSER)
	if t == nil {
		clone |= syscall.CLONE_NEWNET
	}
	return &syscall.SysProcAttr{
		Setpgid:                    true, // keep terminal signals meant for the parent away
		Pdeathsig:                  syscall.SIGKILL,
		Cloneflags:                 clone,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: b.hostUID, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: b.hostGID, Size: 1}},
		GidMappingsEnableSetgroups: b.privileged,
		// uid 0 in the namespace (65534 outside) with its capabilities
		// there, which bwrap needs; supplementary groups dropped.
		Credential: &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: !b.privileged},
	}
}

var childPidRe = regexp.MustCompile(`"child-pid"\s*:\s*([0-9]+)`)

// bwrapChildPid finds the jailed process's pid (in the parent's pid
// namespace) in bwrap's JSON status.
func bwrapChildPid(status []byte) (int, bool) {
	m := childPidRe.FindSubmatch(status)
	if m == nil {
		return 0, false
	}
	pid, err := strconv.Atoi(string(m[1]))
	return pid, err == nil && pid > 0
}

// stop SIGKILLs the jailed process, the pid namespace's init, which takes
// every process of the jail with it; bwrap's supervisor then reaps it and
// exits. Killing the supervisor first would orphan the jailed process to
// whatever reaps orphans here, so that is only the fallback (running.kill),
// also used when the jailed process's pid is not known yet.
func (b *bwrapJail) stop(r *running) {
	pid, ok := bwrapChildPid(r.auxSnapshot())
	if !ok {
		// bwrap has not reported its child yet: the child is still in
		// bwrap's process group (it has not called setsid), so kill the
		// group, not only bwrap, or the child is orphaned.
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		_ = r.cmd.Process.Kill()
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil { // already gone
		return
	}
	defer unix.Close(fd)
	// The pidfd pins the process; make sure it is bwrap's child and not a
	// process that reused the pid after it was reaped.
	if parentPid(pid) != r.pid() {
		return
	}
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// parentPid reads the parent's pid from /proc/<pid>/stat; 0 on error.
func parentPid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid ...": comm may contain spaces and parens.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// launchFailure: bwrap reports its own setup errors as "bwrap: ..." on
// stderr and exits 1, before the interpreter has run (so stdout is empty).
// A program that prints exactly that and exits 1 is misreported as a jail
// failure; it only harms itself.
func (b *bwrapJail) launchFailure(o outcome, stdout string, _ []byte) (string, bool) {
	if o.exitCode == 1 && o.signal == 0 && stdout == "" && strings.HasPrefix(o.stderr, "bwrap: ") {
		return firstLine(o.stderr), true
	}
	return "", false
}

func (b *bwrapJail) memoryKill() bool { return false }

// errInPick reports whether err is capTmpfsInodes's fspick failure (the
// jail's /tmp could not be reached), not a failed reconfiguration.
func errInPick(err error) bool { return strings.Contains(err.Error(), ": fspick: ") }

// capRefused reports whether the kernel refused an inode cap of a run.
func (b *bwrapJail) capRefused() bool { return atomic.LoadInt32(&b.inodeCapRefused) != 0 }
