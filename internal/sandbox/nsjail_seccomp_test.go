//go:build amd64

package sandbox

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// x32Only are the x32 numbers of denied calls that x32 does not share with
// x86_64 (arch/x86/entry/syscalls/syscall_64.tbl: "64" entries have an x32
// variant of their own).
var x32Only = map[string]uint32{"ptrace": 521, "kexec_load": 528}

// kafelNames are Kafel's names where they differ from the kernel's.
var kafelNames = map[string]string{"umount2": "umount"}

// kafelPolicy is the Kafel text of the Go filter (seccomp.go), one
// seccomp_string per line: what configs/nsjail/python.cfg must hold.
// Kafel's own arch check kills calls of another architecture; x32 calls
// share x86_64's audit arch, so their numbers (bit 30 set) are listed
// explicitly for every rule (reachable only where the kernel enables x32).
func kafelPolicy() []string {
	x32 := func(name string, nr uint32) uint32 {
		if n, ok := x32Only[name]; ok {
			return x32SyscallBitKafel | n
		}
		return x32SyscallBitKafel | nr
	}
	var names, x32s []string
	for _, d := range seccompDenied {
		name := d.name
		if k, ok := kafelNames[name]; ok {
			name = k
		}
		names = append(names, name)
		x32s = append(x32s, fmt.Sprintf("SYSCALL[%#x]", x32(d.name, d.nr)))
	}
	var families []string
	for _, f := range seccompAllowedFamilies {
		families = append(families, fmt.Sprintf("family != %d", f))
	}
	fam := strings.Join(families, " && ")
	out := []string{"ERRNO(1) {"}
	wrap := func(items []string) {
		line := " "
		for _, it := range items {
			if len(line)+len(it) > 70 {
				out = append(out, line)
				line = " "
			}
			line += " " + it + ","
		}
		out = append(out, line)
	}
	wrap(names)
	out = append(out,
		fmt.Sprintf("  clone { (clone_flags & %#x) != 0 },", unix.CLONE_NEWUSER),
		fmt.Sprintf("  unshare { (unshare_flags & %#x) != 0 },", unix.CLONE_NEWUSER),
		fmt.Sprintf("  socket { %s },", fam),
		fmt.Sprintf("  socketpair { %s },", fam),
	)
	wrap(x32s)
	out = append(out,
		fmt.Sprintf("  SYSCALL[%#x](clone_flags) { (clone_flags & %#x) != 0 },", x32SyscallBitKafel|unix.SYS_CLONE, unix.CLONE_NEWUSER),
		fmt.Sprintf("  SYSCALL[%#x](unshare_flags) { (unshare_flags & %#x) != 0 },", x32SyscallBitKafel|unix.SYS_UNSHARE, unix.CLONE_NEWUSER),
		fmt.Sprintf("  SYSCALL[%#x](family) { %s },", x32SyscallBitKafel|unix.SYS_SOCKET, fam),
		fmt.Sprintf("  SYSCALL[%#x](family) { %s }", x32SyscallBitKafel|unix.SYS_SOCKETPAIR, fam),
		"}",
		fmt.Sprintf("ERRNO(%d) { clone3, SYSCALL[%#x] }", unix.ENOSYS, x32SyscallBitKafel|unix.SYS_CLONE3),
		"DEFAULT ALLOW",
	)
	return out
}

const x32SyscallBitKafel = 0x40000000

// TestNsjailSeccompMatchesGo: the policy file's Kafel filter is the Go
// filter's. On a mismatch it prints the lines the file should hold.
func TestNsjailSeccompMatchesGo(t *testing.T) {
	m, path := shippedPolicy(t)
	var got []string
	for _, f := range m.All("seccomp_string") {
		got = append(got, f.Value)
	}
	want := kafelPolicy()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		var b strings.Builder
		for _, l := range want {
			fmt.Fprintf(&b, "seccomp_string: %q\n", l)
		}
		t.Errorf("%s: the seccomp_string lines differ from the Go filter's; they should be:\n%s", path, b.String())
	}
}
