package sandbox

import "golang.org/x/sys/unix"

// seccompAuditArch is the only architecture the filter lets through.
const seccompAuditArch = unix.AUDIT_ARCH_AARCH64

// seccompX32Bit: arm64 has no x32-like ABI sharing its audit arch.
const seccompX32Bit = 0
