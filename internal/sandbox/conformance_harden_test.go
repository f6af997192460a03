//go:build amd64

package sandbox

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

// The weaknesses of issue 18 as conformance cases: each runs the attack as
// it was reproduced and asserts the contained outcome, under every backend
// present. (System call numbers are x86_64's, hence the build tag.)

// pySyscall is a Python prelude: sc(name, nr, *args) makes a raw system
// call and prints the name and OK or the errno's name.
const pySyscall = `import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(name, nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *args)
    e = ctypes.get_errno()
    if r == 0 and nr == 56:  # a clone that worked: this is the child
        os._exit(0)
    print(name, "OK" if r >= 0 else errno.errorcode.get(e, e), flush=True)
def sock(name, family, kind):
    try:
        socket.socket(family, kind).close()
        print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
`

func init() {
	conformanceCases = append(conformanceCases, hardeningCases...)
}

var hardeningCases = []conformanceCase{
	{
		name: "SysV shared memory beyond the limit",
		// The reproduction: 128 MiB segments, attached, filled, detached,
		// sixteen times (2 GiB under a 256 MiB rlimit_as). The filter
		// denies shmget: not one segment.
		code: pySyscall + `IPC_PRIVATE, IPC_CREAT = 0, 0o1000
held = 0
for i in range(16):
    ctypes.set_errno(0)
    id = libc.syscall(ctypes.c_long(29), ctypes.c_long(IPC_PRIVATE), ctypes.c_long(128 << 20), ctypes.c_long(IPC_CREAT | 0o600))
    if id < 0:
        print("shmget", errno.errorcode[ctypes.get_errno()])
        break
    addr = libc.syscall(ctypes.c_long(30), ctypes.c_long(id), None, ctypes.c_long(0))
    ctypes.memset(ctypes.c_void_p(addr), 1, 128 << 20)
    libc.syscall(ctypes.c_long(67), ctypes.c_void_p(addr))
    held += 128
print("held", held, "MiB")
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, "shmget EPERM\nheld 0 MiB\n")
		},
	},
	{
		name: "memory files beyond the limit",
		code: `import errno, os
try:
    fd = os.memfd_create("x")
    print("memfd OK")
except OSError as e:
    print("memfd", errno.errorcode[e.errno])
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, "memfd EPERM\n")
		},
	},
	{
		name: "inode flood in /tmp",
		// A host that refused the cap of a run (see inodeCapRefused).
		skipAfter: func(j Jail) string {
			if b, ok := j.(*jail).l.(*bwrapJail); ok && b.capRefused() {
				return "the kernel refused the inode cap of this host's bwrap jails (fspick: EPERM); they run uncapped, as the runtime warns"
			}
			return ""
		},
		skip: func(j Jail) string {
			if b, ok := j.(*jail).l.(*bwrapJail); ok && !b.capInodes {
				return "bwrap without CAP_SYS_ADMIN: no inode cap on /tmp (bwrap has no tmpfs inode option)"
			}
			return ""
		},
		// The reproduction made 1.2 M directories in 20 s; the cap stops
		// it at nr_inodes (the tmpfs's root is one).
		code: `import errno, os
n = 0
try:
    while n < 2000000:
        os.mkdir("/tmp/d%d" % n)
        n += 1
    print("made", n, "no error")
except OSError as e:
    print("made", n, errno.errorcode[e.errno])
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			m := regexp.MustCompile(`^made (\d+) ENOSPC\n$`).FindStringSubmatch(res.Stdout)
			if m == nil {
				t.Fatalf("stdout = %q, want mkdir to stop with ENOSPC", res.Stdout)
			}
			n, _ := strconv.Atoi(m[1])
			if limit := tmpfsInodes(testLimits().TmpfsBytes); n >= int(limit) || n < int(limit)/2 {
				t.Errorf("made %d directories, want fewer than the cap of %d inodes (and most of them)", n, limit)
			}
		},
	},
	{
		name: "kernel interfaces denied",
		code: pySyscall + `sc("io_uring_setup", 425, ctypes.c_long(1), None)
sc("userfaultfd", 323, ctypes.c_long(0))
sc("keyctl", 250, ctypes.c_long(0), ctypes.c_long(-3), ctypes.c_long(0))
sc("add_key", 248, b"user", b"note", b"x", ctypes.c_long(1), ctypes.c_long(-3))
sc("request_key", 249, b"user", b"note", None, ctypes.c_long(0))
sc("bpf", 321, ctypes.c_long(5), None, ctypes.c_long(0))
sc("perf_event_open", 298, None, ctypes.c_long(0), ctypes.c_long(-1), ctypes.c_long(-1), ctypes.c_long(0))
sc("ptrace", 101, ctypes.c_long(0), ctypes.c_long(0), None, None)
sc("mount", 165, b"none", b"/tmp", b"tmpfs", ctypes.c_long(0), None)
sc("fsopen", 430, b"tmpfs", ctypes.c_long(0))
sock("netlink", socket.AF_NETLINK, socket.SOCK_RAW)
sock("vsock", 40, socket.SOCK_STREAM)
sock("packet", 17, socket.SOCK_RAW)
sc("clone3", 435, None, ctypes.c_long(0))
# What a program does need still works.
sock("unix", socket.AF_UNIX, socket.SOCK_STREAM)
sock("inet", socket.AF_INET, socket.SOCK_STREAM)
sock("inet6", socket.AF_INET6, socket.SOCK_DGRAM)
a, b = socket.socketpair()
print("socketpair OK")
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitpid(pid, 0)[1] >> 8)
import threading
t = threading.Thread(target=lambda: None)
t.start()
t.join()
print("thread OK")
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, strings.Join([]string{
				"io_uring_setup EPERM", "userfaultfd EPERM", "keyctl EPERM", "add_key EPERM",
				"request_key EPERM", "bpf EPERM", "perf_event_open EPERM", "ptrace EPERM",
				"mount EPERM", "fsopen EPERM", "netlink EPERM", "vsock EPERM", "packet EPERM",
				"clone3 ENOSYS",
				"unix OK", "inet OK", "inet6 OK", "socketpair OK", "fork 7", "thread OK",
			}, "\n")+"\n")
		},
	},
	{
		name: "i386 system call",
		// int 0x80 from a 64-bit process: i386 numbers, which a filter
		// checking only x86_64 numbers would let through. getpid (20):
		// the jail's pid 1 if it ran.
		code: `import ctypes, mmap
code = bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3])  # mov eax, 20; int 0x80; ret
m = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(code)
f = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))
print("int 0x80 getpid:", f(), flush=True)
`,
		check: func(t *testing.T, res Result) {
			// bwrap's filter returns EPERM; Kafel (nsjail) kills the
			// process for a call of another architecture.
			if res.Signal == "SIGSYS" && res.Stdout == "" {
				return
			}
			wantOK(t, res)
			wantStdout(t, res, "int 0x80 getpid: -1\n")
		},
	},
	{
		name: "nested user namespace",
		// The reproduction: unshare(CLONE_NEWUSER) gave all capabilities
		// in a new namespace (nf_tables, a 2 GB tmpfs).
		code: pySyscall + `CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17
sc("unshare", 272, ctypes.c_long(CLONE_NEWUSER))
sc("unshare+net", 272, ctypes.c_long(CLONE_NEWUSER | CLONE_NEWNET))
sc("clone", 56, ctypes.c_long(CLONE_NEWUSER | SIGCHLD), None, None, None, None)
sc("unshare net alone", 272, ctypes.c_long(CLONE_NEWNET))
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			// A network namespace alone takes CAP_SYS_ADMIN, which the jail
			// has not: EPERM from the kernel, not the filter.
			wantStdout(t, res, "unshare EPERM\nunshare+net EPERM\nclone EPERM\nunshare net alone EPERM\n")
		},
	},
	{
		name: "12 processes x 200 MiB",
		// The reproduction held 2.2 GB in one jail: rlimit_as is per
		// process. Without a memory cgroup the bound is the process cap
		// times rlimit_as: here 6 x 256 MiB. The interpreter is one of the
		// six, so at most 5 children get their 200 MiB, and none gets more
		// than its rlimit_as.
		limits: func(l *Limits) { l.MaxProcs, l.MaxThreads = 6, 6; l.Wall = 20 * l.Wall },
		// With a memory cgroup the jail is bounded as a whole: the same
		// program, both ways, is in TestLimitsProcessesHoldingMemory.
		skip: func(j Jail) string {
			if cgroupsOf(j).memory {
				return "a memory cgroup bounds this jail as a whole (TestLimitsProcessesHoldingMemory)"
			}
			return ""
		},
		code: `import os, sys, time
r, w = os.pipe()
kids, refused = [], 0
for i in range(12):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        os.close(r)
        try:
            b = b"\x01" * (200 << 20)
            ok = "1"
        except MemoryError:
            ok = "0"
        try:
            c = b"\x01" * (300 << 20)
            ok += "1"
        except MemoryError:
            ok += "0"
        os.write(w, ok.encode())
        time.sleep(2)
        os._exit(0)
    kids.append(pid)
os.close(w)
got = os.read(r, 64).decode()
while True:
    more = os.read(r, 64).decode()
    if not more:
        break
    got += more
for p in kids:
    os.waitpid(p, 0)
held = sum(1 for i in range(0, len(got), 2) if got[i] == "1")
over = sum(1 for i in range(1, len(got), 2) if got[i] == "1")
print("forked", len(kids), "refused", refused, "held200", held, "held300", over)
`,
		check: func(t *testing.T, res Result) {
			// With a memory cgroup (nsjail on a host that delegates one) the
			// jail may instead be killed at memory.max.
			if res.ErrorType == core.ErrMemoryLimit {
				return
			}
			wantOK(t, res)
			var forked, refused, held, over int
			if _, err := fmt.Sscanf(res.Stdout, "forked %d refused %d held200 %d held300 %d", &forked, &refused, &held, &over); err != nil {
				t.Fatalf("stdout = %q", res.Stdout)
			}
			if forked > 5 || forked+refused != 12 || held > forked || over != 0 {
				t.Errorf("forked %d, refused %d, %d held 200 MiB, %d held 300 MiB: want at most 5 children (6 processes), none past 256 MiB", forked, refused, held, over)
			}
			if held < 1 {
				t.Errorf("no child could hold 200 MiB under a 256 MiB rlimit_as: %q", res.Stdout)
			}
		},
	},
}
