//go:build amd64 || arm64

package sandbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// The jail's system-call filter (seccomp-bpf), for bwrap's --seccomp; the
// nsjail policy file holds the same rules in Kafel (configs/nsjail/python.cfg,
// kept in step by TestNsjailSeccompMatchesGo).
//
// The filter allows by default and denies a list: what a Python program has
// no use for and what widens the kernel's attack surface or gets around
// the jail's limits. Every denied call fails with EPERM (clone3 with ENOSYS,
// so that glibc falls back to clone, whose flags the filter can see), never
// a kill, so a program fails with a readable error. Denied:
//
//   - new user namespaces: unshare and clone with CLONE_NEWUSER (clone3
//     hides its flags in memory a filter cannot read, hence ENOSYS);
//   - the kernel keyrings (keyctl, add_key, request_key): one per uid,
//     shared by every jail of that uid;
//   - io_uring, userfaultfd, bpf, perf_event_open, ptrace: the usual kernel
//     privilege-escalation routes (ptrace is denied outright: a filter cannot
//     tell a child from another process);
//   - sockets of any family but AF_UNIX, AF_INET and AF_INET6 (netlink,
//     AF_VSOCK, packet, ...): AF_VSOCK is not confined by network
//     namespaces on older kernels;
//   - mount, umount2, pivot_root and the new mount API, setns;
//   - kexec and kernel modules;
//   - System V IPC (shared memory, semaphores, message queues): segments
//     outlive the process that made them and are counted by no rlimit; and
//     memfd_create/memfd_secret: memory files are counted by no rlimit but
//     RLIMIT_FSIZE per file.
//
// Only the native architecture's system calls pass (seccompAuditArch): on
// x86_64 the i386 ones (int 0x80 from a 64-bit process) and x32's (numbers
// with bit 30 set) are all denied, on arm64 the 32-bit arm ones.
//
// The kernel caches, per system call number, that a filter allows it
// whatever its arguments (Linux 5.11 and later), so the common calls never
// run the filter; clone, unshare, socket and socketpair do, through a
// few dozen instructions.

// seccompErrno is the errno of a denied call.
const seccompErrno = unix.EPERM

// seccompDenied are the calls the filter refuses whatever their arguments.
// The names are the kernel's (Kafel calls umount2 umount).
var seccompDenied = []struct {
	name string
	nr   uint32
}{
	{"keyctl", unix.SYS_KEYCTL},
	{"add_key", unix.SYS_ADD_KEY},
	{"request_key", unix.SYS_REQUEST_KEY},
	{"io_uring_setup", unix.SYS_IO_URING_SETUP},
	{"io_uring_enter", unix.SYS_IO_URING_ENTER},
	{"io_uring_register", unix.SYS_IO_URING_REGISTER},
	{"userfaultfd", unix.SYS_USERFAULTFD},
	{"bpf", unix.SYS_BPF},
	{"perf_event_open", unix.SYS_PERF_EVENT_OPEN},
	{"ptrace", unix.SYS_PTRACE},
	{"mount", unix.SYS_MOUNT},
	{"umount2", unix.SYS_UMOUNT2},
	{"pivot_root", unix.SYS_PIVOT_ROOT},
	{"open_tree", unix.SYS_OPEN_TREE},
	{"move_mount", unix.SYS_MOVE_MOUNT},
	{"fsopen", unix.SYS_FSOPEN},
	{"fsconfig", unix.SYS_FSCONFIG},
	{"fsmount", unix.SYS_FSMOUNT},
	{"fspick", unix.SYS_FSPICK},
	{"mount_setattr", unix.SYS_MOUNT_SETATTR},
	{"setns", unix.SYS_SETNS},
	{"kexec_load", unix.SYS_KEXEC_LOAD},
	{"kexec_file_load", unix.SYS_KEXEC_FILE_LOAD},
	{"init_module", unix.SYS_INIT_MODULE},
	{"finit_module", unix.SYS_FINIT_MODULE},
	{"delete_module", unix.SYS_DELETE_MODULE},
	{"shmget", unix.SYS_SHMGET},
	{"shmat", unix.SYS_SHMAT},
	{"shmctl", unix.SYS_SHMCTL},
	{"shmdt", unix.SYS_SHMDT},
	{"semget", unix.SYS_SEMGET},
	{"semop", unix.SYS_SEMOP},
	{"semtimedop", unix.SYS_SEMTIMEDOP},
	{"semctl", unix.SYS_SEMCTL},
	{"msgget", unix.SYS_MSGGET},
	{"msgsnd", unix.SYS_MSGSND},
	{"msgrcv", unix.SYS_MSGRCV},
	{"msgctl", unix.SYS_MSGCTL},
	{"memfd_create", unix.SYS_MEMFD_CREATE},
	{"memfd_secret", unix.SYS_MEMFD_SECRET},
}

// seccompAllowedFamilies are the socket families a jail may create (the
// network namespace has no interface up, so AF_INET and AF_INET6 reach
// nothing).
var seccompAllowedFamilies = []uint32{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6}

// Offsets in struct seccomp_data.
const (
	seccompDataNr      = 0
	seccompDataArch    = 4
	seccompDataArg0Low = 16 // args[0], low 32 bits (little-endian)
)

// bpfInsn is one instruction with symbolic jump targets ("" = the next
// instruction), resolved by assemble.
type bpfInsn struct {
	label  string // names this instruction as a target
	code   uint16
	k      uint32
	jt, jf string
}

func bpfLoad(off uint32) bpfInsn {
	return bpfInsn{code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, k: off}
}

func bpfJump(op uint16, k uint32, jt, jf string) bpfInsn {
	return bpfInsn{code: unix.BPF_JMP | op | unix.BPF_K, k: k, jt: jt, jf: jf}
}

func bpfRet(label string, k uint32) bpfInsn {
	return bpfInsn{label: label, code: unix.BPF_RET | unix.BPF_K, k: k}
}

// seccompProgram is the filter as instructions.
func seccompProgram() []bpfInsn {
	p := []bpfInsn{
		bpfLoad(seccompDataArch),
		bpfJump(unix.BPF_JEQ, seccompAuditArch, "", "deny"),
		bpfLoad(seccompDataNr),
	}
	if seccompX32Bit != 0 {
		p = append(p, bpfJump(unix.BPF_JGE, seccompX32Bit, "deny", ""))
	}
	for _, d := range seccompDenied {
		p = append(p, bpfJump(unix.BPF_JEQ, d.nr, "deny", ""))
	}
	p = append(p,
		bpfJump(unix.BPF_JEQ, unix.SYS_CLONE3, "enosys", ""),
		bpfJump(unix.BPF_JEQ, unix.SYS_CLONE, "newuser", ""),
		bpfJump(unix.BPF_JEQ, unix.SYS_UNSHARE, "newuser", ""),
		bpfJump(unix.BPF_JEQ, unix.SYS_SOCKET, "family", ""),
		bpfJump(unix.BPF_JEQ, unix.SYS_SOCKETPAIR, "family", ""),
		bpfRet("", unix.SECCOMP_RET_ALLOW),
		// clone and unshare: the flags are the first argument (on x86_64
		// and arm64 alike).
		bpfInsn{label: "newuser", code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, k: seccompDataArg0Low},
		bpfJump(unix.BPF_JSET, unix.CLONE_NEWUSER, "deny", "allow"),
		// socket and socketpair: the family is an int, the low half of
		// the first argument.
		bpfInsn{label: "family", code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, k: seccompDataArg0Low},
	)
	for _, f := range seccompAllowedFamilies {
		p = append(p, bpfJump(unix.BPF_JEQ, f, "allow", ""))
	}
	// Jumps go forward only: the returns come last.
	return append(p,
		bpfRet("deny", unix.SECCOMP_RET_ERRNO|uint32(seccompErrno)),
		bpfRet("enosys", unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)),
		bpfRet("allow", unix.SECCOMP_RET_ALLOW),
	)
}

// assemble resolves the jump targets.
func assemble(p []bpfInsn) ([]unix.SockFilter, error) {
	at := map[string]int{}
	for i, in := range p {
		if in.label != "" {
			if _, dup := at[in.label]; dup {
				return nil, fmt.Errorf("seccomp: label %q defined twice", in.label)
			}
			at[in.label] = i
		}
	}
	rel := func(i int, label string) (uint8, error) {
		if label == "" {
			return 0, nil
		}
		t, ok := at[label]
		if !ok {
			return 0, fmt.Errorf("seccomp: no label %q", label)
		}
		off := t - i - 1
		if off < 0 || off > 255 {
			return 0, fmt.Errorf("seccomp: jump from %d to %q (%d) out of range", i, label, t)
		}
		return uint8(off), nil
	}
	out := make([]unix.SockFilter, len(p))
	for i, in := range p {
		jt, err := rel(i, in.jt)
		if err != nil {
			return nil, err
		}
		jf, err := rel(i, in.jf)
		if err != nil {
			return nil, err
		}
		out[i] = unix.SockFilter{Code: in.code, Jt: jt, Jf: jf, K: in.k}
	}
	return out, nil
}

// encodeFilter is the filter as the kernel's struct sock_filter array, the
// format bwrap reads from --seccomp.
func encodeFilter(f []unix.SockFilter) []byte {
	b := make([]byte, 0, 8*len(f))
	for _, in := range f {
		b = binary.LittleEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.LittleEndian.AppendUint32(b, in.K)
	}
	return b
}

var seccompOnce = sync.OnceValues(func() ([]byte, error) {
	f, err := assemble(seccompProgram())
	if err != nil {
		return nil, err
	}
	return encodeFilter(f), nil
})

// seccompFilter returns the encoded filter, built once.
func seccompFilter() ([]byte, error) { return seccompOnce() }

// seccompPipe returns a pipe's read end holding the filter, for bwrap's
// --seccomp, which reads it to the end. The filter (about 60 instructions,
// under 500 bytes) fits in the pipe's buffer.
func seccompPipe(filter []byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	_, err = w.Write(filter)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("sandbox: writing the seccomp filter: %w", err)
	}
	return r, nil
}
