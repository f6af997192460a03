package sandbox

import "golang.org/x/sys/unix"

// seccompAuditArch is the only architecture the filter lets through.
const seccompAuditArch = unix.AUDIT_ARCH_X86_64

// seccompX32Bit marks x32 system calls, which share x86_64's audit arch;
// the filter denies every number at or above it.
const seccompX32Bit = 0x40000000
