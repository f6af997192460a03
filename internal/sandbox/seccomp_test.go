//go:build amd64

package sandbox

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// runBPF interprets a seccomp filter (the instructions it uses) against one
// system call, as the kernel would, and returns the action.
func runBPF(t *testing.T, prog []unix.SockFilter, arch, nr uint32, args ...uint64) uint32 {
	t.Helper()
	var data [64]byte
	binary.LittleEndian.PutUint32(data[0:], nr)
	binary.LittleEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K%4 != 0 || in.K+4 > uint32(len(data)) {
				t.Fatalf("pc %d: load of offset %d", pc, in.K)
			}
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			var cond bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				cond = acc == in.K
			case unix.BPF_JGE:
				cond = acc >= in.K
			case unix.BPF_JSET:
				cond = acc&in.K != 0
			}
			if cond {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("pc %d: unexpected instruction %#x", pc, in.Code)
		}
	}
	t.Fatal("the filter ran off its end")
	return 0
}

func TestSeccompFilterDecisions(t *testing.T) {
	prog, err := assemble(seccompProgram())
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) > 4096 {
		t.Fatalf("%d instructions: more than the kernel takes", len(prog))
	}
	const (
		x86  = unix.AUDIT_ARCH_X86_64
		i386 = unix.AUDIT_ARCH_I386
	)
	allow := uint32(unix.SECCOMP_RET_ALLOW)
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	enosys := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	cases := []struct {
		name string
		arch uint32
		nr   uint32
		args []uint64
		want uint32
	}{
		{"write", x86, unix.SYS_WRITE, nil, allow},
		{"execve", x86, unix.SYS_EXECVE, nil, allow},
		{"mmap", x86, unix.SYS_MMAP, nil, allow},
		{"fork (clone SIGCHLD)", x86, unix.SYS_CLONE, []uint64{uint64(unix.SIGCHLD)}, allow},
		{"thread (clone CLONE_VM|CLONE_THREAD...)", x86, unix.SYS_CLONE, []uint64{0x3d0f00}, allow},
		{"clone CLONE_NEWUSER", x86, unix.SYS_CLONE, []uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, eperm},
		{"clone CLONE_NEWUSER|CLONE_NEWNS, high bits set", x86, unix.SYS_CLONE, []uint64{1<<40 | unix.CLONE_NEWUSER | unix.CLONE_NEWNS}, eperm},
		{"clone3", x86, unix.SYS_CLONE3, nil, enosys},
		{"unshare CLONE_NEWUSER", x86, unix.SYS_UNSHARE, []uint64{unix.CLONE_NEWUSER}, eperm},
		{"unshare CLONE_NEWNS", x86, unix.SYS_UNSHARE, []uint64{unix.CLONE_NEWNS}, allow},
		{"socket AF_UNIX", x86, unix.SYS_SOCKET, []uint64{unix.AF_UNIX, unix.SOCK_STREAM}, allow},
		{"socket AF_INET", x86, unix.SYS_SOCKET, []uint64{unix.AF_INET, unix.SOCK_DGRAM}, allow},
		{"socket AF_INET6", x86, unix.SYS_SOCKET, []uint64{unix.AF_INET6, unix.SOCK_STREAM}, allow},
		{"socket AF_UNIX in the low half only", x86, unix.SYS_SOCKET, []uint64{1<<32 | unix.AF_UNIX}, allow},
		{"socket AF_NETLINK", x86, unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW}, eperm},
		{"socket AF_VSOCK", x86, unix.SYS_SOCKET, []uint64{unix.AF_VSOCK, unix.SOCK_STREAM}, eperm},
		{"socket AF_PACKET", x86, unix.SYS_SOCKET, []uint64{unix.AF_PACKET, unix.SOCK_RAW}, eperm},
		{"socketpair AF_UNIX", x86, unix.SYS_SOCKETPAIR, []uint64{unix.AF_UNIX}, allow},
		{"socketpair AF_TIPC", x86, unix.SYS_SOCKETPAIR, []uint64{unix.AF_TIPC}, eperm},
		{"i386 write (int 0x80)", i386, 4, nil, eperm},
		{"i386 with an x86_64-allowed number", i386, unix.SYS_WRITE, nil, eperm},
		{"x32 write", x86, 0x40000000 | unix.SYS_WRITE, nil, eperm},
		{"x32 keyctl", x86, 0x40000000 | unix.SYS_KEYCTL, nil, eperm},
		{"x32 ptrace (521)", x86, 0x40000000 | 521, nil, eperm},
	}
	for _, d := range seccompDenied {
		cases = append(cases, struct {
			name string
			arch uint32
			nr   uint32
			args []uint64
			want uint32
		}{d.name, x86, d.nr, nil, eperm})
	}
	for _, c := range cases {
		if got := runBPF(t, prog, c.arch, c.nr, c.args...); got != c.want {
			t.Errorf("%s: action %#x, want %#x", c.name, got, c.want)
		}
	}
}

func TestSeccompFilterEncoding(t *testing.T) {
	b, err := seccompFilter()
	if err != nil {
		t.Fatal(err)
	}
	prog, _ := assemble(seccompProgram())
	if len(b) != 8*len(prog) {
		t.Fatalf("encoded %d bytes for %d instructions", len(b), len(prog))
	}
	// The first instruction loads the arch: code 0x20, k 4.
	if binary.LittleEndian.Uint16(b) != unix.BPF_LD|unix.BPF_W|unix.BPF_ABS || binary.LittleEndian.Uint32(b[4:]) != seccompDataArch {
		t.Errorf("first instruction % x", b[:8])
	}
	if _, err := assemble([]bpfInsn{bpfJump(unix.BPF_JEQ, 1, "nowhere", "")}); err == nil {
		t.Error("a jump to a missing label assembled")
	}
}
